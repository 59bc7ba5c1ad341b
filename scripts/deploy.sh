#!/usr/bin/env bash
# Builds the Lambda functions and deploys (or updates) the iamtrail stack with the SAM CLI.
#
#   scripts/deploy.sh [--stack NAME] [--region R] [--profile P] [--arch arm64|x86_64]
#                     [--email ADDRESS] [--ops-email ADDRESS] [--param KEY=VALUE]... [--guided]
#                     [--yes] [--no-build]
#                     [--dry-run] [-- EXTRA SAM DEPLOY ARGS]
#
#   --stack NAME       stack name (default $IAMTRAIL_STACK, else iamtrail): lowercase letters,
#                      digits and hyphens, starting with a letter, at most 35 characters (the
#                      template derives its S3 bucket names from it)
#   --region R         region (default: AWS_REGION, AWS_DEFAULT_REGION, then the AWS config)
#   --profile P        AWS profile for the credentials
#   --arch A           Lambda architecture: arm64 or x86_64 (default: the deployed stack's
#                      Architecture, arm64 for a new stack); x86_64 needs no aarch64 Rust target
#   --email ADDRESS    subscribe ADDRESS to the alerts topic (AlertEmail parameter)
#   --ops-email ADDRESS
#                      subscribe ADDRESS to the operations topic, which the CloudWatch alarms
#                      notify (OperationsEmail parameter; docs/operations.md)
#   --param K=V        any other template parameter, repeatable (e.g. --param TrackerSchedule='rate(6 hours)')
#   --guided           sam deploy --guided: asks for every parameter (the default for a new stack
#                      when run in a terminal)
#   --yes              no questions: a new stack is deployed with the template defaults and the
#                      options above instead of --guided (needed without a terminal)
#   --no-build         deploy the existing .aws-sam/build (skip scripts/build.sh)
#   --dry-run          print the build and sam commands, do nothing (no AWS calls)
#   -- ARGS            passed to sam deploy as they are (not --parameter-overrides: use --param)
#
# Steps: scripts/build.sh --arch A (sam build into .aws-sam/build), then sam deploy with the
# committed samconfig.toml (CAPABILITY_IAM, --resolve-s3, no changeset confirmation, no failure
# on an empty changeset). On an existing stack only the parameters given here change; the others
# keep their deployed values. A new stack other than "iamtrail" gets GlueDatabaseName
# NAME_analytics (hyphens as underscores) so that two stacks in one region do not collide.
# Afterwards it prints the stack outputs and the next steps. See docs/deploy.md.
set -euo pipefail

SCRIPT_NAME=deploy
OPS_ACCEPTS="stack region profile arch yes dry-run rest"
EMAIL=""
EMAIL_GIVEN=0
OPS_EMAIL=""
OPS_EMAIL_GIVEN=0
GUIDED=0
BUILD=1
PARAMS=()

script_option() {
    case "$1" in
        --email | --email=*)
            ops_value --email "$@"
            EMAIL="$OPS_VALUE"
            EMAIL_GIVEN=1
            ;;
        --ops-email | --ops-email=*)
            ops_value --ops-email "$@"
            OPS_EMAIL="$OPS_VALUE"
            OPS_EMAIL_GIVEN=1
            ;;
        --param | --param=*)
            ops_value --param "$@"
            PARAMS+=("$OPS_VALUE")
            ;;
        --guided | -g)
            GUIDED=1
            OPS_SHIFT=1
            ;;
        --no-build)
            BUILD=0
            OPS_SHIFT=1
            ;;
    esac
}

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ops_parse "$@"

[[ ${#OPS_ARGS[@]} -eq 0 ]] || die "unexpected argument: ${OPS_ARGS[0]} (see --help)"
if [[ $EMAIL_GIVEN -eq 1 && ! "$EMAIL" =~ ^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$ ]]; then
    die "--email '$EMAIL' is not an email address"
fi
if [[ $OPS_EMAIL_GIVEN -eq 1 && ! "$OPS_EMAIL" =~ ^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$ ]]; then
    die "--ops-email '$OPS_EMAIL' is not an email address"
fi
param_keys=" "
# The template's parameter names (the keys of its Parameters section).
template_params="$(awk '/^Parameters:/ { p = 1; next } /^[^ #]/ { p = 0 }
    p && /^  [A-Za-z0-9]+:/ { sub(/:.*/, ""); sub(/^ +/, ""); printf "%s ", $0 }' "$REPO_ROOT/template.yaml")"
for p in ${PARAMS[@]+"${PARAMS[@]}"}; do
    [[ "$p" =~ ^[A-Za-z][A-Za-z0-9]*=.*$ ]] || die "--param '$p' is not KEY=VALUE"
    key="${p%%=*}"
    case "$key" in
        Architecture) die "use --arch, not --param Architecture=..." ;;
        AlertEmail) [[ $EMAIL_GIVEN -eq 0 ]] || die "--email and --param AlertEmail=... both given" ;;
        OperationsEmail) [[ $OPS_EMAIL_GIVEN -eq 0 ]] || die "--ops-email and --param OperationsEmail=... both given" ;;
    esac
    [[ " $template_params " == *" $key "* ]] ||
        die "--param $key: the template has no parameter $key (see Parameters in template.yaml)"
    [[ "${p#*=}" != *'"'* ]] || die "--param $key: the value must not contain a double quote"
    param_keys+="$key "
done
for a in ${OPS_REST[@]+"${OPS_REST[@]}"}; do
    case "$a" in
        --parameter-overrides* | --stack-name* | --region* | --profile*)
            die "do not pass $a after --: use --param KEY=VALUE, --stack, --region, --profile"
            ;;
    esac
done
[[ $GUIDED -eq 0 || $ASSUME_YES -eq 0 ]] || die "--guided asks questions; it cannot be combined with --yes"

if [[ $DRY_RUN -eq 0 ]]; then
    require_venv_tools
fi
resolve_region

# --- The stack as it is -------------------------------------------------------
new_stack=1
if [[ $DRY_RUN -eq 0 ]]; then
    say "checking stack $STACK in $REGION"
    rc=0
    load_stack || rc=$?
    if [[ $rc -eq 0 ]]; then
        new_stack=0
        case "$STACK_STATUS" in
            REVIEW_IN_PROGRESS)
                new_stack=1
                ;;
            ROLLBACK_COMPLETE | ROLLBACK_FAILED | DELETE_FAILED)
                die "stack $STACK is in $STACK_STATUS (its first deployment failed, or a deletion did): CloudFormation cannot update it. Delete it with scripts/destroy.sh --stack $STACK --region $REGION, then deploy again (docs/deploy.md#troubleshooting: leftover retained tables and bucket)"
                ;;
            *_IN_PROGRESS)
                die "stack $STACK is busy ($STACK_STATUS); wait until it has finished and run this again"
                ;;
        esac
        say "stack $STACK exists ($STACK_STATUS): updating it"
    else
        say "stack $STACK does not exist in $REGION yet: creating it"
    fi
fi

if [[ -z "$ARCH" ]]; then
    ARCH=arm64
    if [[ $new_stack -eq 0 ]]; then
        deployed_arch="$(stack_parameter Architecture)"
        ARCH="${deployed_arch:-arm64}"
    fi
fi
say "architecture: $ARCH"

guided=$GUIDED
if [[ $new_stack -eq 1 && $GUIDED -eq 0 && $DRY_RUN -eq 0 ]]; then
    if [[ $ASSUME_YES -eq 1 ]]; then
        say "new stack with --yes: deploying with the template defaults and the given options (no --guided)"
    elif [[ -t 0 ]]; then
        say "new stack: sam deploy --guided asks for the parameters (Enter keeps the default shown)"
        guided=1
    else
        die "stack $STACK is new, and its first deployment asks for the parameters (sam deploy --guided), which needs a terminal. Run in a terminal, or pass --yes to deploy with the template defaults plus --email/--arch/--param."
    fi
fi
if [[ $guided -eq 1 && $DRY_RUN -eq 0 && ! -t 0 ]]; then
    die "--guided asks questions and needs a terminal"
fi

# --- Build ------------------------------------------------------------------------
if [[ $BUILD -eq 1 ]]; then
    if [[ $DRY_RUN -eq 1 ]]; then
        printf 'would run: '
        show_cmd scripts/build.sh --arch "$ARCH"
    else
        [[ -f "$REPO_ROOT/scripts/build.sh" ]] ||
            die "scripts/build.sh is missing from this checkout (it comes with the build tooling: requirements-build.txt, scripts/setup-venv.sh --build); update the checkout, or build yourself and pass --no-build"
        say "building the Lambda functions for $ARCH: scripts/build.sh --arch $ARCH"
        bash "$REPO_ROOT/scripts/build.sh" --arch "$ARCH" ||
            die "the build failed (see above; docs/deploy.md#troubleshooting: aarch64 target, zig, cargo-lambda)"
    fi
fi
if [[ $DRY_RUN -eq 0 && ! -f "$REPO_ROOT/.aws-sam/build/template.yaml" ]]; then
    die "no built template at .aws-sam/build/template.yaml: run scripts/build.sh --arch $ARCH (or drop --no-build)"
fi

# --- Deploy -----------------------------------------------------------------------
overrides=("Architecture=\"$ARCH\"")
if [[ $EMAIL_GIVEN -eq 1 ]]; then
    overrides+=("AlertEmail=\"$EMAIL\"")
fi
if [[ $OPS_EMAIL_GIVEN -eq 1 ]]; then
    overrides+=("OperationsEmail=\"$OPS_EMAIL\"")
fi
if [[ $new_stack -eq 1 && "$param_keys" != *" GlueDatabaseName "* ]]; then
    overrides+=("GlueDatabaseName=\"${STACK//-/_}_analytics\"")
fi
for p in ${PARAMS[@]+"${PARAMS[@]}"}; do
    overrides+=("${p%%=*}=\"${p#*=}\"")
done

args=(deploy --stack-name "$STACK" --region "$REGION")
[[ -n "$PROFILE" ]] && args+=(--profile "$PROFILE")
if [[ $guided -eq 1 ]]; then
    args+=(--guided)
else
    # Also in samconfig.toml; repeated here in case a guided run rewrote that file.
    args+=(--capabilities CAPABILITY_IAM --resolve-s3 --no-confirm-changeset --no-fail-on-empty-changeset)
fi
args+=(--parameter-overrides "${overrides[@]}")
args+=(${OPS_REST[@]+"${OPS_REST[@]}"})

if [[ $DRY_RUN -eq 1 ]]; then
    run_sam "${args[@]}"
    say "dry run: nothing was built or deployed (a new stack would run with --guided in a terminal)"
    exit 0
fi

say "deploying: $(show_cmd sam "${args[@]}")"
deploy_rc=0
run_sam "${args[@]}" || deploy_rc=$?
if [[ $deploy_rc -ne 0 ]]; then
    rc=0
    load_stack || rc=$?
    if [[ $rc -eq 0 ]]; then
        warn "stack $STACK is now $STACK_STATUS"
    fi
    if [[ $rc -eq 0 && "$STACK_STATUS" == ROLLBACK_COMPLETE ]]; then
        warn "the first deployment rolled back: delete the stack with scripts/destroy.sh --stack $STACK --region $REGION before deploying again; tables or buckets it had created are retained and make the next create fail until they are deleted (docs/deploy.md#troubleshooting)"
    fi
    die "sam deploy failed (exit $deploy_rc): see its events above and docs/deploy.md#troubleshooting"
fi

# --- Result -------------------------------------------------------------------------
load_stack || die "stack $STACK is not in $REGION after the deployment (a different stack name was given to --guided?)"
echo
say "stack $STACK in $REGION: $STACK_STATUS"
echo "Outputs:"
print_outputs

cli_opts=""
[[ "$STACK" != iamtrail ]] && cli_opts+=" --stack $STACK"
cli_opts+=" --region $REGION"
email="$(stack_parameter AlertEmail)"
echo
echo "Next steps:"
n=1
if [[ -n "$email" ]]; then
    echo "  $n. Confirm the alerts subscription: AWS sent \"AWS Notification - Subscription Confirmation\""
    echo "     to $email; no alert is emailed until its link is clicked."
    n=$((n + 1))
else
    echo "  $n. No email is subscribed to the alerts topic: redeploy with --email ADDRESS, or subscribe"
    echo "     another endpoint to the AlertsTopicArn output."
    n=$((n + 1))
fi
ops_email="$(stack_parameter OperationsEmail)"
if [[ -n "$ops_email" ]]; then
    echo "  $n. Confirm the operations subscription sent to $ops_email: the CloudWatch alarms"
    echo "     (a failed or partial run, collection lag, ...) reach it only after that."
else
    echo "  $n. No email is subscribed to the operations topic, which the alarms notify: redeploy with"
    echo "     --ops-email ADDRESS, or subscribe an endpoint to the OperationsTopicArn output"
    echo "     (docs/operations.md)."
fi
n=$((n + 1))
echo "  $n. Run the tracker now instead of waiting for the schedule, and follow it:"
echo "       iamtrail$cli_opts run        (iamtrail = cargo run -q -p iamtrail --, see docs/cli.md)"
n=$((n + 1))
echo "  $n. Check it:   scripts/status.sh$cli_opts   and   scripts/logs.sh collect$cli_opts --since 1h"
n=$((n + 1))
echo "  $n. Analytics:  scripts/setup-athena.sh$cli_opts   (needs a day to be exported first for rows)"
n=$((n + 1))
echo "  $n. Test alert: scripts/test-alerts.sh$cli_opts"
echo "  Delete it all: scripts/destroy.sh$cli_opts   (tables and analytics bucket are retained)"
