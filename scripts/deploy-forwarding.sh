#!/usr/bin/env bash
# Deploys templates/realtime-forwarding.yaml in every enabled region other than the iamtrail
# stack's (the home region), one CloudFormation stack per region, so that the events CloudTrail
# publishes there reach the fast path (docs/realtime.md#events-from-other-regions).
#
#   scripts/deploy-forwarding.sh [--home-region R] [--stack-name N] [--sts-event-names A,B]
#                                [--no-root] [--regions R1,R2] [--dry-run] [--delete]
#
#   --home-region R         the iamtrail stack's region (default: AWS_REGION, AWS_DEFAULT_REGION,
#                           then `aws configure get region`)
#   --stack-name N          the forwarding stacks' name in each region (default iamtrail-forwarding)
#   --sts-event-names A,B   STS calls to forward besides the root user's: the iamtrail stack's
#                           RealtimeStsEventNames (default GetFederationToken); "" forwards none
#                           (use that when the stack's ProcessStsEvents is false)
#   --no-root               do not forward the root user's calls (the stack's
#                           ProcessRootEvents=false)
#   --regions R1,R2         only these regions (default: every enabled region, from
#                           aws ec2 describe-regions, less the home region)
#   --dry-run               print what would be done, change nothing
#   --delete                delete the forwarding stacks instead
#   -h, --help              this text
#
# Needs the AWS CLI (`aws`) with credentials of the account (AWS_PROFILE to pick a profile).
# Runs, per region: aws cloudformation deploy --template-file templates/realtime-forwarding.yaml
#   --stack-name N --region R --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset
#   --parameter-overrides HomeRegion=H StsEventNames=A,B IncludeRoot=true|false
# and prints "[3/16] eu-west-1: deployed". A failing region does not stop the others; the
# script exits 1 at the end, naming the regions that failed. Run it again after enabling a
# region.
#
# Organisations: instead of this script, a StackSet deploys the same template to every region
# (and account) and follows newly added accounts (self-managed permissions shown; for an
# organisation add --permission-model SERVICE_MANAGED --auto-deployment Enabled=true,...):
#   aws cloudformation create-stack-set --stack-set-name iamtrail-forwarding \
#     --template-body file://templates/realtime-forwarding.yaml --capabilities CAPABILITY_IAM \
#     --parameters ParameterKey=HomeRegion,ParameterValue=us-east-1 \
#       ParameterKey=StsEventNames,ParameterValue=GetFederationToken \
#       ParameterKey=IncludeRoot,ParameterValue=true
#   aws cloudformation create-stack-instances --stack-set-name iamtrail-forwarding \
#     --accounts 111122223333 --regions eu-west-1 eu-central-1 ap-southeast-2 \
#     --operation-preferences FailureToleranceCount=3,MaxConcurrentCount=5
# The template creates nothing in the home region, so the StackSet may target it too.
set -euo pipefail

SCRIPT_NAME=deploy-forwarding
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEMPLATE="templates/realtime-forwarding.yaml"

HOME_REGION=""
STACK_NAME="iamtrail-forwarding"
STS_EVENT_NAMES="GetFederationToken"
INCLUDE_ROOT=true
REGIONS=""
DRY_RUN=0
DELETE=0

die() {
    printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2
    exit 1
}

say() {
    printf '%s: %s\n' "$SCRIPT_NAME" "$*"
}

usage() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
}

need_aws() {
    command -v aws >/dev/null 2>&1 ||
        die "the AWS CLI ('aws') is not installed or not on PATH: install it (https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html), or deploy $TEMPLATE as a StackSet (see --help)"
}

# value OPTION ARGS...: the value of "--opt value" or "--opt=value"; sets VALUE and SHIFT.
value() {
    local opt="$1"
    shift
    if [[ "$1" == "$opt="* ]]; then
        VALUE="${1#"$opt="}"
        SHIFT=1
    else
        [[ $# -ge 2 ]] || die "$opt needs a value (see --help)"
        VALUE="$2"
        SHIFT=2
    fi
}

STS_SET=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --home-region | --home-region=*)
            value --home-region "$@"
            HOME_REGION="$VALUE"
            ;;
        --stack-name | --stack-name=*)
            value --stack-name "$@"
            STACK_NAME="$VALUE"
            ;;
        --sts-event-names | --sts-event-names=*)
            value --sts-event-names "$@"
            STS_EVENT_NAMES="$VALUE"
            STS_SET=1
            ;;
        --regions | --regions=*)
            value --regions "$@"
            REGIONS="$VALUE"
            [[ -n "$REGIONS" ]] || die "--regions needs at least one region (see --help)"
            ;;
        --no-root)
            INCLUDE_ROOT=false
            SHIFT=1
            ;;
        --dry-run)
            DRY_RUN=1
            SHIFT=1
            ;;
        --delete)
            DELETE=1
            SHIFT=1
            ;;
        *)
            die "unknown argument '$1' (see --help)"
            ;;
    esac
    shift "$SHIFT"
done

region_pattern='^[a-z]{2}(-[a-z]+)+-[0-9]$'
if [[ ! "$STACK_NAME" =~ ^[A-Za-z][A-Za-z0-9-]*$ || ${#STACK_NAME} -gt 128 ]]; then
    die "invalid stack name '$STACK_NAME': letters, digits and hyphens, starting with a letter (at most 128)"
fi
if [[ -n "$STS_EVENT_NAMES" && ! "$STS_EVENT_NAMES" =~ ^[A-Za-z]+(,[A-Za-z]+)*$ ]]; then
    die "invalid --sts-event-names '$STS_EVENT_NAMES': API names separated by commas, e.g. GetFederationToken,GetSessionToken"
fi
if [[ $DELETE -eq 1 && ( $STS_SET -eq 1 || "$INCLUDE_ROOT" == false ) ]]; then
    die "--delete takes no --sts-event-names or --no-root"
fi

if [[ -z "$HOME_REGION" ]]; then
    HOME_REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
fi
if [[ -z "$HOME_REGION" ]] && command -v aws >/dev/null 2>&1; then
    HOME_REGION="$(aws configure get region 2>/dev/null || true)"
fi
[[ -n "$HOME_REGION" ]] ||
    die "no home region: pass --home-region R (the iamtrail stack's region), or set AWS_REGION or a region in the AWS config"
[[ "$HOME_REGION" =~ $region_pattern ]] || die "invalid home region '$HOME_REGION' (a region name such as eu-west-1)"

if [[ -n "$REGIONS" ]]; then
    IFS=',' read -r -a targets <<<"$REGIONS"
    for r in "${targets[@]}"; do
        [[ "$r" =~ $region_pattern ]] || die "invalid region '$r' in --regions (a region name such as eu-west-1)"
    done
else
    need_aws
    listed="$(aws ec2 describe-regions --region "$HOME_REGION" --query 'Regions[].RegionName' --output text)" ||
        die "could not list the enabled regions (aws ec2 describe-regions in $HOME_REGION); pass --regions R1,R2"
    mapfile -t targets < <(printf '%s\n' "$listed" | tr -s '[:space:]' '\n' | sed '/^$/d' | sort)
    remaining=()
    for r in "${targets[@]}"; do
        [[ "$r" == "$HOME_REGION" ]] || remaining+=("$r")
    done
    targets=("${remaining[@]}")
fi
[[ ${#targets[@]} -gt 0 ]] || die "no region to deploy to (the home region $HOME_REGION needs no forwarding)"
if [[ $DRY_RUN -eq 0 ]]; then
    need_aws
fi

cd "$REPO_ROOT"
[[ -f "$TEMPLATE" ]] || die "$TEMPLATE is missing (run the script from a clone of the repository)"

# A word as a shell would need it typed (quoted only when it has to be).
shell_word() {
    if [[ "$1" =~ ^[A-Za-z0-9_./:=,@+-]+$ ]]; then
        printf '%s' "$1"
    else
        printf '%q' "$1"
    fi
}

# The command for one region, as words.
command_for() {
    local region="$1"
    if [[ $DELETE -eq 1 ]]; then
        CMD=(aws cloudformation delete-stack --stack-name "$STACK_NAME" --region "$region")
    else
        CMD=(aws cloudformation deploy --template-file "$TEMPLATE" --stack-name "$STACK_NAME"
            --region "$region" --capabilities CAPABILITY_IAM
            --parameter-overrides "HomeRegion=$HOME_REGION" "StsEventNames=$STS_EVENT_NAMES"
            "IncludeRoot=$INCLUDE_ROOT" --no-fail-on-empty-changeset)
    fi
}

action=deploy
[[ $DELETE -eq 1 ]] && action=delete
others=0
for region in "${targets[@]}"; do
    [[ "$region" == "$HOME_REGION" ]] || others=$((others + 1))
done
what="stack $STACK_NAME in $others region(s)"
[[ $DELETE -eq 1 ]] || what="$what, forwarding to $HOME_REGION"
if [[ $DRY_RUN -eq 1 ]]; then
    say "dry run: would $action $what (nothing is changed)"
else
    say "${action/%e/}ing $what"
fi

total=${#targets[@]}
failed=()
log="$(mktemp "${TMPDIR:-/tmp}/deploy-forwarding.XXXXXX")"
trap 'rm -f "$log"' EXIT
i=0
for region in "${targets[@]}"; do
    i=$((i + 1))
    step="[$i/$total] $region"
    if [[ "$region" == "$HOME_REGION" ]]; then
        printf '%s: skipped (the home region: its events reach the iamtrail stack'"'"'s rule directly)\n' "$step"
        continue
    fi
    command_for "$region"
    if [[ $DRY_RUN -eq 1 ]]; then
        words=()
        for w in "${CMD[@]}"; do
            words+=("$(shell_word "$w")")
        done
        printf '%s: would run: %s\n' "$step" "${words[*]}"
        if [[ $DELETE -eq 1 ]]; then
            printf '%s: would run: aws cloudformation wait stack-delete-complete --stack-name %s --region %s\n' \
                "$step" "$STACK_NAME" "$region"
        fi
        continue
    fi
    if [[ $DELETE -eq 1 ]]; then
        if "${CMD[@]}" >"$log" 2>&1 &&
            aws cloudformation wait stack-delete-complete --stack-name "$STACK_NAME" --region "$region" >>"$log" 2>&1; then
            printf '%s: deleted\n' "$step"
            continue
        fi
    elif "${CMD[@]}" >"$log" 2>&1; then
        if grep -q "No changes to deploy" "$log"; then
            printf '%s: deployed (no changes)\n' "$step"
        else
            printf '%s: deployed\n' "$step"
        fi
        continue
    fi
    printf '%s: FAILED\n' "$step" >&2
    tail -n 5 "$log" | sed 's/^/    /' >&2
    failed+=("$region")
done

if [[ ${#failed[@]} -gt 0 ]]; then
    die "$action failed in ${#failed[@]} of $total region(s): ${failed[*]} (fix the cause and run again; aws cloudformation describe-stack-events --stack-name $STACK_NAME --region R shows why)"
fi
if [[ $DRY_RUN -eq 0 ]]; then
    say "done: $others region(s)"
fi
