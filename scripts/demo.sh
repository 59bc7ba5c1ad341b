#!/usr/bin/env bash
# Runs the whole tracker job on the local stack (moto server + gateway + CloudTrail emulator,
# no AWS account) over the bundled real CloudTrail dataset, and prints what it found.
#
#   scripts/demo.sh                                  # bundled dataset, one execution
#   scripts/demo.sh --runs 2                         # the second run shows a re-run adds nothing
#   scripts/demo.sh --realtime                       # the fast path first (EventBridge replay), then the run
#   scripts/demo.sh --s3                             # the S3 mode first (an organisation trail of two accounts), then the run
#   scripts/demo.sh --data ~/AWSLogs/123456789012/CloudTrail
#   scripts/demo.sh --set FILTERED_ROLES='scanner*'
#   scripts/demo.sh --input '{"start":"...","end":"..."}'   # a backfill
#
# Every argument goes to `iamtrail local demo`; see `scripts/demo.sh --help`.
set -euo pipefail
# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

command -v cargo >/dev/null 2>&1 ||
    { echo "demo: cargo not found on PATH; install the Rust toolchain (https://rustup.rs)" >&2; exit 1; }

bash "$REPO_ROOT/scripts/setup-venv.sh"

echo "building iamtrail (the first build compiles the AWS SDK and DataFusion: about 10 minutes)"
cargo build --manifest-path "$REPO_ROOT/Cargo.toml" -p iamtrail

# The binary finds statemachine/ and .venv through IAMTRAIL_REPO, so the demo can be run from
# any directory (and relative --data paths stay relative to where you are).
export IAMTRAIL_REPO="$REPO_ROOT"
exec "$CARGO_TARGET_DIR/debug/iamtrail" local demo "$@"
