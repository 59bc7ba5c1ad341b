#!/usr/bin/env bash
# Deletes a deployed iamtrail stack, keeping its data (the retained tables and analytics bucket).
#
#   scripts/destroy.sh [--stack NAME] [--region R] [--profile P] [--yes] [--dry-run]
#
#   --stack NAME   stack name (default $IAMTRAIL_STACK, else iamtrail)
#   --region R     region (default: AWS_REGION, AWS_DEFAULT_REGION, then the AWS config)
#   --profile P    AWS profile for the credentials
#   --yes          do not ask (without a terminal, nothing is deleted unless --yes is given)
#   --dry-run      show what would be deleted and the commands, delete nothing
#
# It reads the stack's outputs, shows what is deleted and what is retained, by name, and asks.
# Then it empties the Athena results bucket (every object version and delete marker), because
# CloudFormation cannot delete a bucket that holds objects, runs
#   sam delete --stack-name NAME --region R --no-prompts
# which waits for the deletion, and reports the result.
#
# Retained (DeletionPolicy: Retain in template.yaml): the events, control and alerts tables and
# the analytics bucket (the Parquet history). They are printed with the commands that delete them
# by hand. While they exist, a new deployment under the same stack name fails (the names are
# taken): delete them first, or deploy under another name. See docs/deploy.md.
set -euo pipefail

SCRIPT_NAME=destroy
OPS_ACCEPTS="stack region profile yes dry-run"

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ops_parse "$@"
[[ ${#OPS_ARGS[@]} -eq 0 ]] || die "unexpected argument: ${OPS_ARGS[0]} (see --help)"

require_venv_tools
resolve_region

rc=0
load_stack || rc=$?
[[ $rc -ne 3 ]] || die "stack $STACK does not exist in $REGION: nothing to delete (check --stack and --region)"

case "$STACK_STATUS" in
    DELETE_IN_PROGRESS)
        die "stack $STACK is already being deleted; wait, then check with scripts/status.sh --stack $STACK --region $REGION"
        ;;
    *_IN_PROGRESS)
        die "stack $STACK is busy ($STACK_STATUS); wait until it has finished and run this again"
        ;;
esac

results_bucket="$(stack_output AthenaResultsBucketName)"
analytics_bucket="$(stack_output AnalyticsBucketName)"
retained_tables=()
for key in EventsTableName ControlTableName AlertsTableName; do
    name="$(stack_output "$key")"
    [[ -z "$name" ]] || retained_tables+=("$name")
done

echo "Stack $STACK in $REGION ($STACK_STATUS)"
echo
echo "Deleted with the stack: the Lambda functions, the state machines and their schedules,"
echo "the alerts topic and its subscriptions, the KMS key of the topic (scheduled for deletion"
echo "after KMS's 30-day waiting period), the log groups, the IAM roles, the Glue database and"
echo "table, the Athena workgroup with its saved queries and history,"
if [[ -n "$results_bucket" ]]; then
    echo "and the Athena results bucket $results_bucket, which is emptied first."
else
    echo "and the Athena results bucket (no AthenaResultsBucketName output: not emptied first)."
fi
echo
if [[ ${#retained_tables[@]} -gt 0 || -n "$analytics_bucket" ]]; then
    echo "Retained (they stay, with their data and their storage costs):"
    for t in ${retained_tables[@]+"${retained_tables[@]}"}; do
        echo "  DynamoDB table $t"
    done
    [[ -z "$analytics_bucket" ]] || echo "  S3 bucket $analytics_bucket (versioned: the Parquet export)"
    echo
    echo "A new deployment under the name $STACK fails while these exist. To delete them later,"
    echo "by hand (cannot be undone; the AWS CLI, or the console):"
    for t in ${retained_tables[@]+"${retained_tables[@]}"}; do
        echo "  aws dynamodb delete-table --region $REGION --table-name $t"
    done
    if [[ -n "$analytics_bucket" ]]; then
        echo "  the bucket: empty it of every object version (S3 console: select it, Empty), then"
        echo "  aws s3api delete-bucket --region $REGION --bucket $analytics_bucket"
    fi
    echo
fi

if [[ $DRY_RUN -eq 1 ]]; then
    if [[ -n "$results_bucket" ]]; then
        read -r versions markers versioning <<<"$(aws_py bucket-count "$results_bucket")" ||
            die "could not list bucket $results_bucket"
        echo "would empty $results_bucket: $versions object version(s), $markers delete marker(s) (versioning: $versioning)"
    fi
    run_sam delete --stack-name "$STACK" --region "$REGION" --no-prompts ${PROFILE:+--profile "$PROFILE"}
    say "dry run: nothing was deleted"
    exit 0
fi

confirm "Delete stack $STACK in $REGION?" || die "not deleted (answered no)"

if [[ -n "$results_bucket" ]]; then
    say "emptying the Athena results bucket $results_bucket (every version and delete marker)"
    deleted="$(aws_py empty-bucket "$results_bucket")" || die "could not empty bucket $results_bucket (see above); nothing was deleted"
    say "deleted $deleted object version(s) and delete marker(s) from $results_bucket"
fi

say "deleting the stack: $(show_cmd sam delete --stack-name "$STACK" --region "$REGION" --no-prompts ${PROFILE:+--profile "$PROFILE"})"
delete_rc=0
run_sam delete --stack-name "$STACK" --region "$REGION" --no-prompts ${PROFILE:+--profile "$PROFILE"} || delete_rc=$?

rc=0
load_stack || rc=$?
if [[ $rc -eq 3 ]]; then
    say "stack $STACK in $REGION is deleted"
    if [[ ${#retained_tables[@]} -gt 0 || -n "$analytics_bucket" ]]; then
        say "retained: ${retained_tables[*]+${retained_tables[*]}}${analytics_bucket:+ $analytics_bucket} (see above to delete them by hand)"
    fi
    exit 0
fi
[[ $delete_rc -eq 0 ]] || warn "sam delete failed (exit $delete_rc)"
die "stack $STACK is still there ($STACK_STATUS); see the stack's events in the CloudFormation console, fix the cause (docs/deploy.md#troubleshooting) and run this again"
