#!/usr/bin/env bash
# Builds the eight Lambda functions (list-targets, collect, aggregate, evaluate-alerts, export,
# realtime, and the S3 ingestion's ingest-run and ingest-objects) for Lambda's provided.al2023
# runtime with cargo-lambda, and zips each one.
#
#   scripts/package.sh [--arch arm64|x86_64]
#
#   --arch A   the functions' CPU architecture: arm64 (the default, like the template's
#              Architecture parameter) or x86_64. arm64 needs the Rust target
#              aarch64-unknown-linux-gnu (rustup target add aarch64-unknown-linux-gnu).
#
# Writes, in the build cache ($CARGO_TARGET_DIR, ~/.cache/iamtrail-target by default):
#   $CARGO_TARGET_DIR/lambda/<function>/bootstrap         cargo-lambda's output (the last
#                                                         architecture built)
#   $CARGO_TARGET_DIR/lambda-dist/<arch>/<function>.zip   the deployable zip: one file,
#                                                         `bootstrap` (mode 755), at the root;
#                                                         byte-identical for the same binary
# and prints a table: function, bootstrap size, zip size.
#
# The compile is the one `sam build` does (scripts/build.sh): same command line, same target
# directory, same tools, so whichever runs second recompiles nothing (docs/artifacts.md).
# Needs the build tools in .venv: scripts/setup-venv.sh --build (cargo-lambda, zig, SAM CLI).
# A cold build compiles the AWS SDK crates in release mode and links each binary with thin LTO:
# 15 to 30 minutes on 2 cores (27 min 37 s measured on a busy machine; docs/artifacts.md).
#
# Other scripts source this file for its functions (scripts/build.sh); run, it builds.
set -euo pipefail
# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

VENV="$REPO_ROOT/.venv"
# The Lambda functions, named as their binaries (steps/<name>) and as the template's
# FunctionName suffixes (${AWS::StackName}-<name>).
# tests/template.rs holds this list equal to the template's functions.
LAMBDA_FUNCTIONS=(list-targets collect aggregate evaluate-alerts export realtime ingest-run ingest-objects)
LAMBDA_DIST_DIR="$CARGO_TARGET_DIR/lambda-dist"

lambda_die() {
    printf '%s: error: %s\n' "${LAMBDA_SCRIPT:-package}" "$*" >&2
    exit 1
}
lambda_say() {
    printf '%s: %s\n' "${LAMBDA_SCRIPT:-package}" "$*"
}

# lambda_triple ARCH: the Rust target of a Lambda architecture.
lambda_triple() {
    case "$1" in
        arm64) echo aarch64-unknown-linux-gnu ;;
        x86_64) echo x86_64-unknown-linux-gnu ;;
        *) lambda_die "--arch must be arm64 or x86_64, not '$1'" ;;
    esac
}

# require_rust_target ARCH: the Rust standard library for ARCH's target is installed. Checked
# here because cargo-lambda would otherwise try to install it itself, with a less clear error.
require_rust_target() {
    local arch="$1" triple sysroot
    triple="$(lambda_triple "$arch")"
    command -v cargo >/dev/null 2>&1 ||
        lambda_die "cargo not found on PATH; install the Rust toolchain (https://rustup.rs)"
    sysroot="$(rustc --print sysroot 2>/dev/null)" || lambda_die "rustc does not run"
    if [[ ! -d "$sysroot/lib/rustlib/$triple/lib" ]]; then
        local other=x86_64
        [[ "$arch" == x86_64 ]] && other=arm64
        lambda_die "the Rust target $triple (for --arch $arch) is not installed in $sysroot.
Install it with:  rustup target add $triple
or build for the other architecture:  --arch $other (and deploy with the template's Architecture=$other)"
    fi
}

# require_build_tools: cargo-lambda and zig in .venv (scripts/setup-venv.sh --build).
require_build_tools() {
    [[ -x "$VENV/bin/cargo-lambda" ]] ||
        lambda_die "cargo-lambda is not installed in $VENV; run: scripts/setup-venv.sh --build"
    "$VENV/bin/python" -m ziglang version >/dev/null 2>&1 ||
        lambda_die "zig is not installed in $VENV ('python -m ziglang' fails); run: scripts/setup-venv.sh --build"
}

# lambda_tool_env: the environment cargo-lambda needs, exported for this script and the
# commands it starts (sam build runs cargo-lambda too). cargo-lambda cross-compiles through
# cargo-zigbuild, which finds Zig as `$CARGO_ZIGBUILD_PYTHON_PATH -m ziglang` (the pip package)
# before a `zig` on PATH; without either it offers to install Zig, which fails without a
# terminal. The venv's bin goes first on PATH for `cargo-lambda` itself (sam looks it up there).
lambda_tool_env() {
    export PATH="$VENV/bin:$PATH"
    export CARGO_ZIGBUILD_PYTHON_PATH="$VENV/bin/python"
}

# human_size BYTES: "12.3 MiB".
human_size() {
    awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'
}

# zip_bootstrap BOOTSTRAP ZIP: a zip holding BOOTSTRAP as `bootstrap` (mode 755) at the root,
# with a fixed timestamp, so that the same binary always gives the same zip (and CloudFormation
# sees no code change).
zip_bootstrap() {
    "$VENV/bin/python" - "$1" "$2" <<'PYEOF'
import os, sys, zipfile

source, target = sys.argv[1], sys.argv[2]
info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
info.external_attr = (0o100755 << 16)  # a regular file, rwxr-xr-x
info.create_system = 3  # Unix, so that the mode is honoured
info.compress_type = zipfile.ZIP_DEFLATED
tmp = target + ".tmp"
with open(source, "rb") as f, zipfile.ZipFile(tmp, "w") as z:
    z.writestr(info, f.read(), compresslevel=9)
os.replace(tmp, target)
PYEOF
}

# lambda_parse_args ARGS...: --arch A (or --arch=A; default arm64) into LAMBDA_ARCH, -h/--help
# prints the calling script's header, every other argument goes to LAMBDA_REST.
lambda_parse_args() {
    LAMBDA_ARCH=arm64
    LAMBDA_REST=()
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --arch)
                [[ $# -ge 2 ]] || lambda_die "--arch needs a value: arm64 or x86_64"
                LAMBDA_ARCH="$2"
                shift 2
                ;;
            --arch=*)
                LAMBDA_ARCH="${1#--arch=}"
                shift
                ;;
            -h | --help)
                awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
                exit 0
                ;;
            *)
                LAMBDA_REST+=("$1")
                shift
                ;;
        esac
    done
    lambda_triple "$LAMBDA_ARCH" >/dev/null
}

package_main() {
    lambda_parse_args "$@"
    [[ ${#LAMBDA_REST[@]} -eq 0 ]] || lambda_die "unknown argument: ${LAMBDA_REST[0]} (see --help)"
    local arch="$LAMBDA_ARCH"
    local triple
    triple="$(lambda_triple "$arch")"
    require_build_tools
    require_rust_target "$arch"
    lambda_tool_env
    cd "$REPO_ROOT"

    local bins=() f
    for f in "${LAMBDA_FUNCTIONS[@]}"; do
        bins+=(--bin "$f")
    done
    lambda_say "building ${#LAMBDA_FUNCTIONS[@]} bootstraps for $arch ($triple) with $(cargo-lambda lambda --version | cut -d' ' -f1-2) into $CARGO_TARGET_DIR/lambda (cold: 15 to 30 minutes on 2 cores; unchanged: seconds)"
    local t0=$SECONDS
    # The same command line as sam build's (aws-lambda-builders: `cargo lambda build --release
    # [--arm64] --bin NAME` in the repository root), with the target always explicit.
    cargo lambda build --release --locked --target "$triple" "${bins[@]}" ||
        lambda_die "cargo lambda build failed (see above)"
    lambda_say "compiled in $((SECONDS - t0))s; zipping into $LAMBDA_DIST_DIR/$arch"

    local out="$LAMBDA_DIST_DIR/$arch" bootstrap zip rows=()
    mkdir -p "$out"
    for f in "${LAMBDA_FUNCTIONS[@]}"; do
        bootstrap="$CARGO_TARGET_DIR/lambda/$f/bootstrap"
        [[ -f "$bootstrap" ]] || lambda_die "cargo-lambda did not write $bootstrap"
        zip="$out/$f.zip"
        zip_bootstrap "$bootstrap" "$zip" || lambda_die "could not write $zip"
        rows+=("$f $(stat -c %s "$bootstrap") $(stat -c %s "$zip")")
    done

    printf '\n%-16s %22s %22s\n' function bootstrap zip
    local name bsize zsize
    for f in "${rows[@]}"; do
        read -r name bsize zsize <<<"$f"
        printf '%-16s %10s (%9d B) %10s (%9d B)\n' "$name" "$(human_size "$bsize")" "$bsize" \
            "$(human_size "$zsize")" "$zsize"
    done
    printf '\n'
    lambda_say "$arch zips in $out (bootstrap at the zip root, for provided.al2023); total $((SECONDS - t0))s"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    package_main "$@"
fi
