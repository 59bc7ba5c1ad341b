#!/usr/bin/env bash
# Shows a deployed stack's state: `iamtrail status` (docs/cli.md) for the stack and region given:
# runs, checkpoints and lag, alerts, export, failures, and the alarms in ALARM (docs/operations.md).
#
#   scripts/status.sh [--stack NAME] [--region R] [--profile P] [--format table|json]
#
#   --stack NAME      stack name (default $IAMTRAIL_STACK, else iamtrail)
#   --region R        region (default: the AWS configuration, as the CLI resolves it)
#   --profile P       AWS profile for the credentials (exported as AWS_PROFILE)
#   --format F        table (default) or json
#
# The iamtrail binary: $IAMTRAIL_BIN if set (e.g. an installed `iamtrail`); otherwise it is built
# from this checkout with `cargo build -p iamtrail` into the scripts' build cache
# ($CARGO_TARGET_DIR, default ~/.cache/iamtrail-target; the same debug build as run-query.sh,
# setup-athena.sh and the tests, so it costs seconds once built, and always matches the
# checkout); without cargo, an `iamtrail` on PATH is used.
set -euo pipefail

SCRIPT_NAME=status
OPS_ACCEPTS="stack region profile"
FORMAT=table

script_option() {
    case "$1" in
        --format | --format=*)
            ops_value --format "$@"
            FORMAT="$OPS_VALUE"
            ;;
    esac
}

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ops_parse "$@"
[[ ${#OPS_ARGS[@]} -eq 0 ]] || die "unexpected argument: ${OPS_ARGS[0]} (see --help)"
[[ "$FORMAT" == table || "$FORMAT" == json ]] || die "--format must be table or json, not '$FORMAT'"

if [[ -n "${IAMTRAIL_BIN:-}" ]]; then
    bin="$IAMTRAIL_BIN"
    [[ -x "$bin" ]] || die "IAMTRAIL_BIN=$bin is not an executable"
elif command -v cargo >/dev/null 2>&1; then
    # Build output goes to stderr so that --format json on stdout stays clean.
    echo "building iamtrail (the first build compiles the AWS SDK: 5 to 10 minutes)" >&2
    cargo build --quiet --manifest-path "$REPO_ROOT/Cargo.toml" -p iamtrail >&2 ||
        die "cargo build -p iamtrail failed (see above)"
    bin="$CARGO_TARGET_DIR/debug/iamtrail"
elif command -v iamtrail >/dev/null 2>&1; then
    bin="$(command -v iamtrail)"
else
    die "no iamtrail binary: install the Rust toolchain (https://rustup.rs) to build it from this checkout, or set IAMTRAIL_BIN"
fi

"$bin" status --help >/dev/null 2>&1 ||
    die "$bin has no 'status' command (an older build? rebuild it, or unset IAMTRAIL_BIN)"

args=(--stack "$STACK")
[[ -n "$REGION" ]] && args+=(--region "$REGION")
export IAMTRAIL_REPO="$REPO_ROOT"
exec "$bin" "${args[@]}" status --format "$FORMAT"
