#!/usr/bin/env bash
# Sends a clearly marked test alert, to check that alert delivery works end to end.
#
#   scripts/test-alerts.sh --local [ARGS...]           # local stack, no AWS account needed
#   scripts/test-alerts.sh [--stack NAME] [--region R]  # a deployed stack (default stack: iamtrail)
#
# --local runs `iamtrail local test-alert`: it starts the local stack, publishes a test alert to
# the local alerts topic, reads it back through an SQS subscription and prints it as the email
# would read. Every argument after --local goes to that command (see --local --help).
#
# Otherwise the alerts topic ARN is read from the stack's AlertsTopicArn output (needs the aws
# CLI and credentials allowed to describe the stack) and `iamtrail test-alert` publishes to it
# with the default AWS credentials; the email subscribed through the AlertEmail parameter should
# receive it within a minute (once its subscription was confirmed).
set -euo pipefail
# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

die() {
    printf 'test-alerts: error: %s\n' "$*" >&2
    exit 1
}

usage() {
    # The header comment, from line 2 to the first line that is not a comment.
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
}

build_cli() {
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found on PATH; install the Rust toolchain (https://rustup.rs)"
    echo "building iamtrail (the first build compiles the AWS SDK and DataFusion: about 10 minutes)"
    cargo build --manifest-path "$REPO_ROOT/Cargo.toml" -p iamtrail
}

# --- Local stack -----------------------------------------------------------------
if [[ "${1:-}" == "--local" ]]; then
    shift
    bash "$REPO_ROOT/scripts/setup-venv.sh"
    build_cli
    # The binary finds statemachine/ and .venv through IAMTRAIL_REPO.
    export IAMTRAIL_REPO="$REPO_ROOT"
    exec "$CARGO_TARGET_DIR/debug/iamtrail" local test-alert "$@"
fi

# --- Deployed stack ----------------------------------------------------------------
stack="iamtrail"
region=""
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
        --local)
            die "--local must be the first argument (the arguments after it go to 'iamtrail local test-alert')"
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
    die "the aws CLI is not on PATH; it is needed to read the stack's outputs (https://aws.amazon.com/cli/), or use --local"

region_args=()
[[ -n "$region" ]] && region_args=(--region "$region")

echo "reading the AlertsTopicArn output of stack $stack${region:+ in $region}"
# stderr apart from the ARN (the CLI may warn on stderr even when it succeeds); shown on failure.
aws_err="$(mktemp "${TMPDIR:-/tmp}/test-alerts.XXXXXX")"
aws_rc=0
topic_arn="$(aws cloudformation describe-stacks ${region_args[@]+"${region_args[@]}"} \
    --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='AlertsTopicArn'].OutputValue" \
    --output text 2>"$aws_err")" || aws_rc=$?
[[ $aws_rc -eq 0 ]] || cat "$aws_err" >&2
rm -f "$aws_err"
if [[ $aws_rc -ne 0 ]]; then
    die "could not describe stack $stack${region:+ in $region} (is it deployed there, and are AWS credentials configured? see --stack/--region)"
fi
topic_arn="$(printf '%s' "$topic_arn" | tr -d '[:space:]')"
if [[ -z "$topic_arn" || "$topic_arn" == "None" ]]; then
    die "stack $stack has no AlertsTopicArn output (deployed before alerting was added? redeploy it)"
fi
[[ "$topic_arn" == arn:*:sns:*:*:* ]] ||
    die "stack $stack's AlertsTopicArn output is not an SNS topic ARN: $topic_arn"
echo "alerts topic: $topic_arn"

build_cli
exec "$CARGO_TARGET_DIR/debug/iamtrail" test-alert --topic-arn "$topic_arn" ${region_args[@]+"${region_args[@]}"}
