#!/usr/bin/env bash
# Shows the CloudWatch logs of one step of a deployed stack, with `sam logs`.
#
#   scripts/logs.sh STEP [--stack NAME] [--region R] [--profile P] [--since T] [--follow]
#                        [--filter PATTERN] [--dry-run]
#
#   STEP              list-targets, collect, aggregate, evaluate-alerts, export, realtime,
#                     ingest-run, ingest-objects (the Lambda functions; the last two only with
#                     a trail bucket), state-machine (the tracker's execution history log) or
#                     ingest-state-machine (the S3 ingestion's)
#   --stack NAME      stack name (default $IAMTRAIL_STACK, else iamtrail)
#   --region R        region (default: AWS_REGION, AWS_DEFAULT_REGION, then the AWS config)
#   --profile P       AWS profile for the credentials
#   --since T         from when: 30m, 1h, 2d (minutes, hours, days ago) or anything sam logs
#                     takes, e.g. '2026-01-01 10:00:00' (default 1h)
#   --follow          keep following new events (sam logs --tail); stop with Ctrl-C
#   --filter PATTERN  only events matching a CloudWatch Logs filter pattern, e.g. ERROR or
#                     '{ $.level = "ERROR" }' (the functions log JSON)
#   --dry-run         print the sam logs command, do not run it
#
# Runs: sam logs --stack-name NAME -n LOGICAL_ID --region R -s SINCE [--tail] [--filter P], where
# LOGICAL_ID is the template's resource (CollectFunction, ..., TrackerStateMachine, whose log
# group /aws/vendedlogs/states/NAME-tracker SAM finds from its logging configuration).
set -euo pipefail

SCRIPT_NAME=logs
OPS_ACCEPTS="stack region profile dry-run"
SINCE=1h
FOLLOW=0
FILTER=""

script_option() {
    case "$1" in
        --since | --since=*)
            ops_value --since "$@"
            SINCE="$OPS_VALUE"
            ;;
        --follow | --tail | -f)
            FOLLOW=1
            OPS_SHIFT=1
            ;;
        --filter | --filter=*)
            ops_value --filter "$@"
            FILTER="$OPS_VALUE"
            ;;
    esac
}

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STEPS="list-targets collect aggregate evaluate-alerts export realtime ingest-run ingest-objects state-machine ingest-state-machine"

ops_parse "$@"
[[ ${#OPS_ARGS[@]} -ge 1 ]] || die "which step? one of: ${STEPS// /, } (see --help)"
[[ ${#OPS_ARGS[@]} -eq 1 ]] || die "one step at a time: got ${OPS_ARGS[*]}"
step="${OPS_ARGS[0]}"
case "$step" in
    list-targets) logical_id=ListTargetsFunction ;;
    collect) logical_id=CollectFunction ;;
    aggregate) logical_id=AggregateFunction ;;
    evaluate-alerts) logical_id=EvaluateAlertsFunction ;;
    export) logical_id=ExportFunction ;;
    realtime) logical_id=RealtimeFunction ;;
    ingest-run) logical_id=IngestRunFunction ;;
    ingest-objects) logical_id=IngestObjectsFunction ;;
    state-machine) logical_id=TrackerStateMachine ;;
    ingest-state-machine) logical_id=IngestStateMachine ;;
    *) die "unknown step '$step': one of ${STEPS// /, }" ;;
esac

# 30m / 1h / 2d -> "30 minutes ago" / ...; anything else goes to sam as it is.
start="$SINCE"
if [[ "$SINCE" =~ ^([0-9]+)(s|m|min|h|d)$ ]]; then
    case "${BASH_REMATCH[2]}" in
        s) unit=seconds ;;
        m | min) unit=minutes ;;
        h) unit=hours ;;
        d) unit=days ;;
    esac
    start="${BASH_REMATCH[1]} $unit ago"
fi

if [[ $DRY_RUN -eq 0 ]]; then
    require_venv_tools
fi
resolve_region

args=(logs --stack-name "$STACK" -n "$logical_id" --region "$REGION" -s "$start")
[[ -n "$PROFILE" ]] && args+=(--profile "$PROFILE")
[[ $FOLLOW -eq 1 ]] && args+=(--tail)
[[ -n "$FILTER" ]] && args+=(--filter "$FILTER")
if [[ $DRY_RUN -eq 0 ]]; then
    following=""
    [[ $FOLLOW -eq 1 ]] && following=", following (Ctrl-C stops)"
    say "$step ($logical_id) of stack $STACK in $REGION, since $start$following" >&2
fi
run_sam "${args[@]}"
