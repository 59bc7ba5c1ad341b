#!/usr/bin/env bash
# Runs every check and test of the project; this is also what CI runs (.ci/run).
#
#   1. scripts/setup-venv.sh --build   the Python tools in .venv: the local stack's (moto,
#                               cfn-lint, statelint) and the Lambda build tools (SAM CLI,
#                               cargo-lambda, zig)
#   2. cargo fmt --check
#   3. cargo clippy             every crate and target, warnings are errors
#   4. scripts/validate.sh      cfn-lint and sam validate --lint on template.yaml, statelint + moto's parser on the ASL
#   5. scripts/package.sh --arch x86_64   the eight Lambda bootstraps and zips, release build in
#                               the build cache (15-30 min cold on 2 cores, seconds when
#                               unchanged); the artifacts test runs them
#   6. cargo test --workspace   unit tests, end-to-end tests running real state machine
#                               executions on the local stack, and the built bootstraps on a
#                               Lambda Runtime API (tests/artifacts.rs); extra arguments go here,
#                               e.g. scripts/test.sh -p iamtrail-core, scripts/test.sh -- --nocapture
#
# Prints a timestamped header and the elapsed time of each stage, and the total; stops at the
# first failure with a non-zero exit status.
set -euo pipefail
# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$REPO_ROOT"

die() {
    printf 'test: error: %s\n' "$*" >&2
    exit 1
}

command -v cargo >/dev/null 2>&1 ||
    die "cargo not found on PATH; install the Rust toolchain (https://rustup.rs) and open a new shell"
command -v python3 >/dev/null 2>&1 || [[ -n "${PYTHON:-}" ]] ||
    die "python3 not found on PATH; install Python 3.9 or newer (needed for moto, cfn-lint, statelint)"
cargo fmt --version >/dev/null 2>&1 ||
    die "cargo fmt is not installed; run: rustup component add rustfmt"
cargo clippy --version >/dev/null 2>&1 ||
    die "cargo clippy is not installed; run: rustup component add clippy"

started=$SECONDS
stage_no=0
stage_total=6

# stage NAME CMD...: runs one stage with a header and its elapsed time; exits on failure.
stage() {
    local name="$1"
    shift
    local t0=$SECONDS rc=0
    stage_no=$((stage_no + 1))
    printf '\n==> [%s] %d/%d %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$stage_no" "$stage_total" "$name"
    "$@" || rc=$?
    if [[ $rc -ne 0 ]]; then
        printf '<== %s FAILED (exit %d) after %ds; total %ds\n' \
            "$name" "$rc" "$((SECONDS - t0))" "$((SECONDS - started))" >&2
        exit "$rc"
    fi
    printf '<== %s ok in %ds\n' "$name" "$((SECONDS - t0))"
}

printf 'iamtrail checks: %s, %s, %s; CARGO_TARGET_DIR=%s\n' \
    "$(cargo --version)" "$(rustc --version 2>/dev/null || echo 'rustc ?')" \
    "$("${PYTHON:-python3}" --version 2>&1)" "$CARGO_TARGET_DIR"

stage "setup-venv --build (moto, cfn-lint, statelint, SAM CLI, cargo-lambda, zig)" bash scripts/setup-venv.sh --build
stage "cargo fmt --check" cargo fmt --all -- --check
stage "cargo clippy -D warnings" cargo clippy --locked --workspace --all-targets -- -D warnings
stage "validate (cfn-lint, sam validate --lint, statelint)" bash scripts/validate.sh
stage "package Lambda artifacts (x86_64)" bash scripts/package.sh --arch x86_64
stage "cargo test --workspace${*:+ $*}" cargo test --locked --workspace "$@"

printf '\nall checks passed in %ds\n' "$((SECONDS - started))"
