# shellcheck shell=bash
# The variables set here are read by the scripts that source this file.
# shellcheck disable=SC2034
# Shared argument parser and helpers of the operations scripts (deploy.sh, destroy.sh,
# status.sh, logs.sh). Source it, do not run it:
#
#   SCRIPT_NAME=deploy                 # prefix of the script's messages
#   OPS_ACCEPTS="stack region profile arch"   # the common options this script takes
#   script_option() { ... }            # optional: the script's own options (see ops_parse)
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   ops_parse "$@"
#
# Common options (each script takes the ones in its OPS_ACCEPTS, and -h/--help):
#   --stack NAME      stack name (default: $IAMTRAIL_STACK, else iamtrail), checked by
#                     check_stack_name (below)
#   --region R        AWS region (default: $AWS_REGION, $AWS_DEFAULT_REGION, then the region of
#                     the AWS config profile); exported as AWS_REGION and AWS_DEFAULT_REGION
#   --profile P       AWS config/credentials profile; exported as AWS_PROFILE
#   --yes             answer yes to every question (needed without a terminal)
#   --arch A          arm64 (default) or x86_64: the Lambda functions' architecture
#   --dry-run         print the sam commands instead of running them (no AWS calls)
#   -- ARGS...        everything after it goes to the script's underlying command (OPS_REST)
# Both "--opt value" and "--opt=value" are accepted.
#
# Tools: the SAM CLI is $IAMTRAIL_SAM if set, else .venv/bin/sam (installed by
# scripts/setup-venv.sh --build); AWS calls of the scripts themselves go through the venv's
# python and boto3 ($IAMTRAIL_PYTHON if set, else .venv/bin/python). The AWS CLI is not used.
# AWS_ENDPOINT_URL (honoured by boto3 and the SAM CLI) points everything at another endpoint,
# which the tests use to run the scripts against moto server.

# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

SCRIPT_NAME="${SCRIPT_NAME:-$(basename "${BASH_SOURCE[1]:-ops}" .sh)}"
OPS_ACCEPTS="${OPS_ACCEPTS:-stack region profile}"
VENV="$REPO_ROOT/.venv"
SAM="${IAMTRAIL_SAM:-$VENV/bin/sam}"
PY="${IAMTRAIL_PYTHON:-$VENV/bin/python}"
export SAM_CLI_TELEMETRY=0

# Longest stack name whose derived bucket names stay valid: the template names its buckets
# ${AWS::StackName}-analytics-${AWS::AccountId} and ${AWS::StackName}-athena-results-${AWS::AccountId},
# and "-athena-results-" plus a 12-digit account id is 28 characters of S3's 63.
MAX_STACK_NAME=35

STACK="${IAMTRAIL_STACK:-iamtrail}"
REGION=""
PROFILE=""
ASSUME_YES=0
ARCH=""
DRY_RUN=0
OPS_ARGS=()
OPS_REST=()

die() {
    printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2
    exit 1
}

say() {
    printf '%s: %s\n' "$SCRIPT_NAME" "$*"
}

warn() {
    printf '%s: warning: %s\n' "$SCRIPT_NAME" "$*" >&2
}

# The calling script's header comment, from line 2 to the first line that is not a comment.
usage() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
}

# confirm QUESTION: 0 when the answer is yes. --yes answers yes; without a terminal on stdin
# there is nobody to ask, so it refuses (exits) rather than guess.
confirm() {
    if [[ $ASSUME_YES -eq 1 ]]; then
        return 0
    fi
    if [[ ! -t 0 ]]; then
        die "refusing without confirmation: stdin is not a terminal to ask \"$1\" on. Nothing was changed; run it in a terminal, or pass --yes."
    fi
    local answer=""
    read -r -p "$1 [y/N] " answer || true
    [[ "$answer" == [yY] || "$answer" == [yY][eE][sS] ]]
}

# check_stack_name NAME: CloudFormation's rule ([A-Za-z][A-Za-z0-9-]*, at most 128 characters),
# and, because the template derives S3 bucket names from it, S3's rules for those names:
# lowercase, at most $MAX_STACK_NAME characters, none of S3's reserved prefixes.
check_stack_name() {
    local name="$1"
    [[ -n "$name" ]] || die "the stack name is empty (--stack NAME or IAMTRAIL_STACK)"
    if [[ ! "$name" =~ ^[A-Za-z][A-Za-z0-9-]*$ || ${#name} -gt 128 ]]; then
        die "invalid stack name '$name': CloudFormation stack names start with a letter and contain only letters, digits and hyphens (at most 128 characters)"
    fi
    if [[ "$name" =~ [A-Z] ]]; then
        die "invalid stack name '$name': it must be lowercase, because the template names S3 buckets after it ($name-analytics-ACCOUNT) and bucket names are lowercase; try '$(printf '%s' "$name" | tr '[:upper:]' '[:lower:]')'"
    fi
    if [[ ${#name} -gt $MAX_STACK_NAME ]]; then
        die "stack name '$name' is ${#name} characters long; at most $MAX_STACK_NAME are allowed, because the bucket name $name-athena-results-ACCOUNT (12-digit account id) must stay within S3's 63 characters"
    fi
    case "$name" in
        xn--* | sthree-* | amzn-s3-demo-*)
            die "invalid stack name '$name': S3 bucket names (which the template derives from the stack name) must not start with xn--, sthree- or amzn-s3-demo-"
            ;;
    esac
}

# ops_value OPTION ARGS...: the value of OPTION given as "--opt value" or "--opt=value" at the
# head of ARGS: sets OPS_VALUE and OPS_SHIFT (arguments consumed). For script_option.
ops_value() {
    local opt="$1"
    shift
    if [[ "$1" == "$opt="* ]]; then
        OPS_VALUE="${1#"$opt="}"
        OPS_SHIFT=1
    else
        [[ $# -ge 2 && "$2" != --* ]] || die "$opt needs a value (see --help)"
        OPS_VALUE="$2"
        OPS_SHIFT=2
    fi
    [[ -n "$OPS_VALUE" ]] || die "$opt needs a value (see --help)"
}

ops_accepts() {
    [[ " $OPS_ACCEPTS " == *" $1 "* ]]
}

# ops_parse ARGS...: parses the common options the script accepts. Any other argument goes to the
# script's script_option function (if defined), called with the remaining arguments; it sets
# OPS_SHIFT to the number it consumed (0: not its option). Positional arguments (not starting
# with -) that script_option does not take are collected in OPS_ARGS. An unknown option is an
# error naming it; -h/--help prints the usage and exits 0.
ops_parse() {
    local opt name
    while [[ $# -gt 0 ]]; do
        opt="$1"
        name="${opt%%=*}"
        name="${name#--}"
        case "$opt" in
            -h | --help)
                usage
                exit 0
                ;;
            --)
                ops_accepts rest || die "unexpected '--' (see --help)"
                shift
                OPS_REST=("$@")
                return 0
                ;;
            --stack | --stack=* | --region | --region=* | --profile | --profile=* | --arch | --arch=*)
                if ops_accepts "$name"; then
                    ops_value "--$name" "$@"
                    case "$name" in
                        stack) STACK="$OPS_VALUE" ;;
                        region) REGION="$OPS_VALUE" ;;
                        profile) PROFILE="$OPS_VALUE" ;;
                        arch) ARCH="$OPS_VALUE" ;;
                    esac
                    shift "$OPS_SHIFT"
                    continue
                fi
                ;;
            --yes | -y)
                if ops_accepts yes; then
                    ASSUME_YES=1
                    shift
                    continue
                fi
                ;;
            --dry-run)
                if ops_accepts dry-run; then
                    DRY_RUN=1
                    shift
                    continue
                fi
                ;;
        esac
        OPS_SHIFT=0
        if declare -F script_option >/dev/null; then
            script_option "$@"
        fi
        if [[ $OPS_SHIFT -gt 0 ]]; then
            shift "$OPS_SHIFT"
            continue
        fi
        if [[ "$opt" == -* ]]; then
            usage >&2
            die "unknown option: $opt (see --help)"
        fi
        OPS_ARGS+=("$opt")
        shift
    done
    check_stack_name "$STACK"
    if [[ -n "$ARCH" ]]; then
        [[ "$ARCH" == arm64 || "$ARCH" == x86_64 ]] ||
            die "--arch must be arm64 or x86_64, not '$ARCH'"
    fi
    if [[ -n "$REGION" && ! "$REGION" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ]]; then
        die "--region '$REGION' does not look like an AWS region (e.g. us-east-1)"
    fi
    if [[ -n "$PROFILE" ]]; then
        export AWS_PROFILE="$PROFILE"
    fi
}

# require_python: the venv's python with boto3 (scripts/setup-venv.sh installs it: moto and
# the SAM CLI both depend on boto3).
require_python() {
    if [[ ! -x "$PY" ]] || ! "$PY" -c 'import boto3' >/dev/null 2>&1; then
        die "no python with boto3 at $PY; run scripts/setup-venv.sh (or set IAMTRAIL_PYTHON)"
    fi
}

setup_venv_has_build() {
    grep -q -- '--build)' "$REPO_ROOT/scripts/setup-venv.sh" 2>/dev/null
}

# require_venv_tools: python with boto3 and the SAM CLI. A missing SAM CLI is installed with
# scripts/setup-venv.sh --build (SAM CLI, cargo-lambda, zig into .venv).
require_venv_tools() {
    if [[ ! -x "$SAM" ]]; then
        if [[ -n "${IAMTRAIL_SAM:-}" ]]; then
            die "IAMTRAIL_SAM=$IAMTRAIL_SAM is not an executable; unset it to use .venv/bin/sam"
        fi
        if setup_venv_has_build; then
            say "the SAM CLI is not installed in $VENV: running scripts/setup-venv.sh --build"
            bash "$REPO_ROOT/scripts/setup-venv.sh" --build ||
                die "scripts/setup-venv.sh --build failed (see above)"
            [[ -x "$SAM" ]] || die "scripts/setup-venv.sh --build did not install $SAM"
        else
            die "the SAM CLI is not installed in $VENV and this checkout's scripts/setup-venv.sh has no --build option yet; install it with: $VENV/bin/python -m pip install aws-sam-cli (or set IAMTRAIL_SAM to a sam executable)"
        fi
    fi
    require_python
}

# aws_py COMMAND ARGS...: the scripts' own AWS calls, through boto3 with the region and profile
# of the options. Errors are printed as one line on stderr. Exit status: 0 ok, 3 the stack does
# not exist (printed by nobody: the callers say it), 4 no credentials, 1 any other error.
#   region                       the resolved region (may print nothing)
#   stack STACK                  "STATUS" then "KEY<TAB>VALUE" per output, then "param:KEY<TAB>VALUE" per parameter
#   empty-bucket BUCKET          deletes every object version and delete marker; prints the count
#   bucket-count BUCKET          prints "VERSIONS DELETE_MARKERS VERSIONED" (0 0 - when the bucket is gone)
#   account                      the account id of the credentials
aws_py() {
    "$PY" - "$@" <<'PYEOF'
import os, sys

import boto3
import botocore.exceptions as bex

command, args = sys.argv[1], sys.argv[2:]
session = boto3.session.Session(
    profile_name=os.environ.get("AWS_PROFILE") or None,
    region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
)


def fail(message, code=1):
    print(message, file=sys.stderr)
    sys.exit(code)


try:
    if command == "region":
        print(session.region_name or "")
    elif command == "account":
        print(session.client("sts").get_caller_identity()["Account"])
    elif command == "stack":
        cfn = session.client("cloudformation")
        try:
            stack = cfn.describe_stacks(StackName=args[0])["Stacks"][0]
        except bex.ClientError as e:
            if "does not exist" in str(e):
                sys.exit(3)  # the callers say it in their own words
            raise
        print(stack["StackStatus"])
        for o in stack.get("Outputs") or []:
            print(f"{o['OutputKey']}\t{o.get('OutputValue', '')}")
        for p in stack.get("Parameters") or []:
            print(f"param:{p['ParameterKey']}\t{p.get('ParameterValue', '')}")
    elif command in ("empty-bucket", "bucket-count"):
        s3 = session.client("s3")
        bucket = args[0]
        try:
            versioned = s3.get_bucket_versioning(Bucket=bucket).get("Status", "-")
        except bex.ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchBucket", "404"):
                print("0 0 -" if command == "bucket-count" else 0)
                sys.exit(0)
            raise
        versions = markers = deleted = 0
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            batch = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in page.get("Versions", [])]
            versions += len(page.get("Versions", []))
            batch += [{"Key": m["Key"], "VersionId": m["VersionId"]} for m in page.get("DeleteMarkers", [])]
            markers += len(page.get("DeleteMarkers", []))
            if command == "empty-bucket":
                for i in range(0, len(batch), 1000):
                    chunk = batch[i:i + 1000]
                    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
                    errors = result.get("Errors") or []
                    if errors:
                        e = errors[0]
                        fail(f"could not delete {len(errors)} object version(s) from {bucket}, "
                             f"e.g. {e.get('Key')} ({e.get('Code')}: {e.get('Message')})")
                    deleted += len(chunk)
        print(f"{versions} {markers} {versioned}" if command == "bucket-count" else deleted)
    else:
        fail(f"aws_py: unknown command {command}")
except bex.NoCredentialsError:
    fail("no AWS credentials found: configure them (environment variables, ~/.aws/credentials, "
         "SSO login, or --profile) and try again", 4)
except bex.ProfileNotFound as e:
    fail(f"{e} (see --profile and ~/.aws/config)", 4)
except (bex.TokenRetrievalError, bex.SSOTokenLoadError, bex.UnauthorizedSSOTokenError) as e:
    fail(f"{e} (run 'aws sso login' or refresh the credentials)", 4)
except bex.NoRegionError:
    fail("no AWS region: pass --region, or set AWS_REGION", 1)
except bex.ClientError as e:
    err = e.response.get("Error", {})
    fail(f"{e.operation_name}: {err.get('Code')}: {err.get('Message')}")
except bex.BotoCoreError as e:
    fail(str(e))
PYEOF
}

# resolve_region: REGION from --region, else AWS_REGION, AWS_DEFAULT_REGION, the AWS config
# (the profile's region); exported as AWS_REGION and AWS_DEFAULT_REGION so that sam, boto3 and
# the iamtrail CLI all use the same one.
resolve_region() {
    if [[ -z "$REGION" ]]; then
        REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
    fi
    if [[ -z "$REGION" ]]; then
        require_python
        REGION="$(aws_py region)" || die "could not read the region from the AWS configuration"
    fi
    [[ -n "$REGION" ]] ||
        die "no AWS region: pass --region R, set AWS_REGION, or set region in ~/.aws/config${PROFILE:+ for profile $PROFILE}"
    export AWS_REGION="$REGION" AWS_DEFAULT_REGION="$REGION"
}

# load_stack: reads the stack's status, outputs and parameters into STACK_STATUS and
# STACK_INFO. Returns 3 when the stack does not exist; dies on any other error.
STACK_STATUS=""
STACK_INFO=""
load_stack() {
    local out rc=0
    out="$(aws_py stack "$STACK")" || rc=$?
    if [[ $rc -eq 3 ]]; then
        STACK_STATUS=""
        STACK_INFO=""
        return 3
    fi
    [[ $rc -eq 0 ]] || die "could not describe stack $STACK in $REGION (see above)"
    STACK_STATUS="$(head -n 1 <<<"$out")"
    STACK_INFO="$(tail -n +2 <<<"$out")"
}

# stack_output KEY: one output of the stack loaded by load_stack (empty when it has none).
stack_output() {
    awk -v key="$1" -F '\t' '$1 == key { print $2; exit }' <<<"$STACK_INFO"
}

# stack_parameter KEY: one parameter value of the stack loaded by load_stack.
stack_parameter() {
    awk -v key="param:$1" -F '\t' '$1 == key { print $2; exit }' <<<"$STACK_INFO"
}

# print_outputs: the loaded stack's outputs, one per line.
print_outputs() {
    awk -F '\t' '$1 !~ /^param:/ { printf "  %-26s %s\n", $1, $2 }' <<<"$STACK_INFO"
}

# show_cmd CMD...: the command, shell-quoted, as one line.
show_cmd() {
    local quoted
    printf -v quoted '%q ' "$@"
    printf '%s\n' "${quoted% }"
}

# run_sam ARGS...: runs the SAM CLI from the repository root (where samconfig.toml is); with
# --dry-run it only prints the command.
run_sam() {
    if [[ $DRY_RUN -eq 1 ]]; then
        printf 'would run: '
        show_cmd sam "$@"
        return 0
    fi
    (cd "$REPO_ROOT" && "$SAM" "$@")
}
