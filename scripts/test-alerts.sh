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
# Otherwise `iamtrail test-alert` reads the alerts topic from the stack's AlertsTopicArn output
# and publishes to it with the default AWS credentials (cloudformation:DescribeStacks and
# sns:Publish; no AWS CLI needed); the email subscribed through the AlertEmail parameter should
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

region_args=()
[[ -n "$region" ]] && region_args=(--region "$region")

# `iamtrail test-alert` reads the stack's AlertsTopicArn output itself (CloudFormation
# DescribeStacks with the default AWS credentials) and says clearly when the stack is missing.
build_cli
exec "$CARGO_TARGET_DIR/debug/iamtrail" --stack "$stack" ${region_args[@]+"${region_args[@]}"} test-alert
