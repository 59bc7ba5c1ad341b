#!/usr/bin/env bash
# Runs one of the 15 pre-built queries (queries/*.sql) with the iamtrail CLI.
#
#   scripts/run-query.sh list                                  # the queries and what they answer
#   scripts/run-query.sh daily_summary --days 7                # Athena (the default without --data)
#   scripts/run-query.sh user_lookup --param user=alice --days 30 --data DIR   # local engine over an exported Parquet tree
#   scripts/run-query.sh failed_auth --engine athena --days 1 --format csv
#
# Every argument goes to `iamtrail query run` (or `iamtrail query list` for "list"); see
# `scripts/run-query.sh --help`. `--days N` binds the queries' `since` parameter to now - N days,
# `--param k=v` their other parameters (values are bound, never spliced into the SQL).
# The engine is local (DataFusion) when --data is given, else Athena. On Athena the default AWS
# credentials and region are used, with the workgroup and Glue database from --workgroup and
# --database or IAMTRAIL_ATHENA_WORKGROUP and IAMTRAIL_GLUE_DATABASE (defaults iamtrail and
# iamtrail_analytics); scripts/setup-athena.sh shows a deployed stack's workgroup, database and
# table and runs a smoke query.
set -euo pipefail
# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

die() {
    printf 'run-query: error: %s\n' "$*" >&2
    exit 1
}

command -v cargo >/dev/null 2>&1 ||
    die "cargo not found on PATH; install the Rust toolchain (https://rustup.rs)"

# Build output goes to stderr so that --format json/csv output on stdout stays clean.
echo "building iamtrail (the first build compiles the AWS SDK: 5 to 10 minutes)" >&2
cargo build --quiet --manifest-path "$REPO_ROOT/Cargo.toml" -p iamtrail >&2

# The binary finds queries/ (and statemachine/, .venv) through IAMTRAIL_REPO, so this works
# from any directory.
export IAMTRAIL_REPO="$REPO_ROOT"
if [[ "${1:-}" == "list" ]]; then
    shift
    exec "$CARGO_TARGET_DIR/debug/iamtrail" query list "$@"
fi
exec "$CARGO_TARGET_DIR/debug/iamtrail" query run "$@"
