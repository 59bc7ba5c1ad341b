#!/usr/bin/env bash
# Builds the stack with `sam build` (template.yaml's eight rust-cargolambda functions) into
# .aws-sam/build, ready for `sam deploy`.
#
#   scripts/build.sh [--arch arm64|x86_64] [sam build arguments...]
#
#   --arch A   the functions' CPU architecture, passed to the template as
#              --parameter-overrides Architecture=A: arm64 (the default, like the template) or
#              x86_64. arm64 needs the Rust target aarch64-unknown-linux-gnu
#              (rustup target add aarch64-unknown-linux-gnu).
#   anything else goes to `sam build` as it is (e.g. --debug).
#
# The compile is shared with scripts/package.sh: SAM's Rust builder (aws-lambda-builders) runs
# `cargo lambda build --release [--arm64] --bin NAME` in the repository root and copies
# NAME/bootstrap from the `lambda` directory of the target directory `cargo metadata` reports,
# which honours CARGO_TARGET_DIR. So with the build cache of scripts/env.sh
# (~/.cache/iamtrail-target) both build into, and reuse, the same
# $CARGO_TARGET_DIR/<triple>/release, and whichever runs second recompiles nothing
# (docs/artifacts.md has the measurements).
#
# Needs the build tools in .venv: scripts/setup-venv.sh --build (SAM CLI, cargo-lambda, zig).
# SAM CLI telemetry is off (SAM_CLI_TELEMETRY=0).
set -euo pipefail
LAMBDA_SCRIPT=build
# shellcheck source=scripts/package.sh
source "$(dirname "${BASH_SOURCE[0]}")/package.sh"
export SAM_CLI_TELEMETRY=0

lambda_parse_args "$@"
arch="$LAMBDA_ARCH"
require_build_tools
[[ -x "$VENV/bin/sam" ]] ||
    lambda_die "the SAM CLI is not installed in $VENV; run: scripts/setup-venv.sh --build"
require_rust_target "$arch"
lambda_tool_env
cd "$REPO_ROOT"

# aws-lambda-builders 1.67 (SAM CLI 1.170) asks `cargo metadata` for the target directory;
# older ones copied from ./target/lambda whatever CARGO_TARGET_DIR said.
"$VENV/bin/python" - <<'PYEOF' ||
import re, sys
from importlib import metadata
v = metadata.version("aws_lambda_builders")
sys.exit(0 if tuple(int(n) for n in re.findall(r"\d+", v)[:3]) >= (1, 67, 0) else 1)
PYEOF
    lambda_die "the SAM CLI's aws-lambda-builders is older than 1.67 and would look for the bootstraps in ./target/lambda; run: scripts/setup-venv.sh --build"
# The target directory cargo reports must be the build cache (not a .cargo/config.toml one).
metadata_target="$(cargo metadata --no-deps --format-version 1 |
    "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')" ||
    lambda_die "cargo metadata failed"
[[ "$metadata_target" == "$CARGO_TARGET_DIR" ]] ||
    lambda_die "cargo metadata reports the target directory $metadata_target, not CARGO_TARGET_DIR=$CARGO_TARGET_DIR (a .cargo/config.toml build.target-dir?)"

lambda_say "sam build for $arch (functions compiled by cargo-lambda into $CARGO_TARGET_DIR; cold: 15 to 30 minutes on 2 cores; unchanged: seconds)"
t0=$SECONDS
"$VENV/bin/sam" build --beta-features --parameter-overrides "Architecture=$arch" \
    ${LAMBDA_REST[@]+"${LAMBDA_REST[@]}"} ||
    lambda_die "sam build failed (see above)"
lambda_say "built in $((SECONDS - t0))s: .aws-sam/build/template.yaml and one bootstrap per function"
