#!/usr/bin/env bash
# Shows a deployed stack's analytics setup and checks it end to end with one Athena query.
#
#   scripts/setup-athena.sh [--stack NAME] [--region R] [--no-query]   # default stack: iamtrail
#
# Nothing needs creating by hand: the template creates the Glue database and the iam_events
# table with partition projection (no crawler, no MSCK REPAIR: a newly exported day is
# queryable at once), the Athena workgroup (engine v3, encrypted results, bytes-scanned limit)
# and the 15 saved queries. This script reads the stack's outputs, prints the workgroup, the
# database and the table (location, partition keys, projection), then runs
#   iamtrail query run daily_summary --engine athena --days 1
# as a smoke test (skipped with --no-query). Needs the aws CLI and credentials allowed to
# describe the stack, read the Glue table and run Athena queries in the workgroup.
set -euo pipefail
# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

die() {
    printf 'setup-athena: error: %s\n' "$*" >&2
    exit 1
}

usage() {
    # The header comment, from line 2 to the first line that is not a comment.
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
}

stack="iamtrail"
region=""
run_query=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --stack)
            [[ $# -ge 2 && -n "$2" ]] || die "--stack needs a stack name"
            stack="$2"
            shift 2
            ;;
        --stack=*)
            stack="${1#--stack=}"
            [[ -n "$stack" ]] || die "--stack needs a stack name"
            shift
            ;;
        --region)
            [[ $# -ge 2 && -n "$2" ]] || die "--region needs a region"
            region="$2"
            shift 2
            ;;
        --region=*)
            region="${1#--region=}"
            [[ -n "$region" ]] || die "--region needs a region"
            shift
            ;;
        --no-query)
            run_query=0
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage >&2
            die "unknown argument: $1"
            ;;
    esac
done

command -v aws >/dev/null 2>&1 ||
    die "the aws CLI is not on PATH; it is needed to read the stack's outputs (https://aws.amazon.com/cli/)"

region_args=()
[[ -n "$region" ]] && region_args=(--region "$region")

# aws_text ARGS...: run the aws CLI with --output text; stderr is kept apart (the CLI may warn
# there even when it succeeds) and shown only on failure.
aws_text() {
    local err rc=0 out
    err="$(mktemp "${TMPDIR:-/tmp}/setup-athena.XXXXXX")"
    out="$(aws ${region_args[@]+"${region_args[@]}"} "$@" --output text 2>"$err")" || rc=$?
    [[ $rc -eq 0 ]] || cat "$err" >&2
    rm -f "$err"
    [[ $rc -eq 0 ]] || return "$rc"
    printf '%s' "$out"
}

echo "reading the outputs of stack $stack${region:+ in $region}"
outputs="$(aws_text cloudformation describe-stacks --stack-name "$stack" \
    --query 'Stacks[0].Outputs[].[OutputKey,OutputValue]')" ||
    die "could not describe stack $stack${region:+ in $region} (is it deployed there, and are AWS credentials configured? see --stack/--region)"

output() {
    awk -v key="$1" -F '\t' '$1 == key { print $2 }' <<<"$outputs"
}
workgroup="$(output AthenaWorkGroupName)"
database="$(output GlueDatabaseName)"
table="$(output GlueTableName)"
bucket="$(output AnalyticsBucketName)"
results="$(output AthenaResultsBucketName)"
[[ -n "$workgroup" && -n "$database" ]] ||
    die "stack $stack has no AthenaWorkGroupName/GlueDatabaseName outputs (deployed before the analytics resources were added? redeploy it)"
table="${table:-iam_events}"

echo "workgroup:      $workgroup"
workgroup_info="$(aws_text athena get-work-group --work-group "$workgroup" --query \
    'WorkGroup.[Configuration.EngineVersion.EffectiveEngineVersion, Configuration.BytesScannedCutoffPerQuery, Configuration.ResultConfiguration.OutputLocation]')" ||
    die "could not read Athena workgroup $workgroup"
IFS=$'\t' read -r engine cutoff output_location <<<"$workgroup_info"
echo "  engine:       $engine"
echo "  scan limit:   $cutoff bytes per query"
echo "  results:      $output_location (bucket $results, expire after 30 days)"
echo "database:       $database"
# The backticks are a JMESPath literal, not a shell expansion.
# shellcheck disable=SC2016
table_info="$(aws_text glue get-table --database-name "$database" --name "$table" --query \
    'Table.[StorageDescriptor.Location, join(`,`, PartitionKeys[].Name), Parameters."projection.enabled", Parameters."storage.location.template"]')" ||
    die "could not read Glue table $database.$table"
IFS=$'\t' read -r location partition_keys projection template <<<"$table_info"
echo "table:          $table"
echo "  location:     $location (bucket $bucket)"
echo "  partitions:   $partition_keys (projection.enabled=$projection)"
echo "  template:     $template"
case ",$partition_keys," in
    *,region,*)
        # Stacks deployed before the table lost its region key: Athena refuses every query
        # without a region predicate there. Redeploying gives the year/month/day table.
        echo "  note:         this table has the old injected region key: every Athena query must name"
        echo "                its region(s); redeploy the stack to get the table that needs none"
        ;;
esac

if [[ $run_query -eq 0 ]]; then
    exit 0
fi

command -v cargo >/dev/null 2>&1 ||
    die "cargo not found on PATH; install the Rust toolchain (https://rustup.rs), or use --no-query"
echo
echo "building iamtrail (the first build compiles the AWS SDK: 5 to 10 minutes)"
cargo build --quiet --manifest-path "$REPO_ROOT/Cargo.toml" -p iamtrail

export IAMTRAIL_REPO="$REPO_ROOT"
export IAMTRAIL_STACK="$stack"
export IAMTRAIL_ATHENA_WORKGROUP="$workgroup"
export IAMTRAIL_GLUE_DATABASE="$database"
if [[ -n "$region" ]]; then
    export AWS_REGION="$region"
fi
echo "smoke test: iamtrail query run daily_summary --engine athena --days 1"
"$CARGO_TARGET_DIR/debug/iamtrail" query run daily_summary --engine athena --days 1 ||
    die "the smoke query failed (see above): check the credentials' Athena, Glue and S3 permissions"
echo "setup-athena: OK (no rows only means that no day has been exported yet: the tracker exports a day once it is complete)"
