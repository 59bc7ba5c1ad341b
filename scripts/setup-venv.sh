#!/usr/bin/env bash
# Creates or updates the project virtualenv .venv (repo root) with the local stack's Python
# tools from requirements-local.txt: moto server, cfn-lint, statelint.
#
#   scripts/setup-venv.sh           the local stack's tools only
#   scripts/setup-venv.sh --build   also the Lambda build tools of requirements-build.txt, in the
#                                   same .venv: the SAM CLI (sam), cargo-lambda and Zig
#                                   (python -m ziglang), for scripts/package.sh and
#                                   scripts/build.sh (docs/artifacts.md)
#
# - creates .venv with `python3 -m venv` if it is missing (or recreates it if its Python no
#   longer runs, e.g. after the base interpreter was removed);
# - runs `pip install -r requirements-local.txt` only when that file changed since the last
#   install (its sha256 is kept in .venv/.requirements-local.sha256);
# - checks that moto_server, cfn-lint and statelint are installed and that moto >= 5.2.5
#   (older moto runs only one Step Functions execution per region).
#
# With --build, the same for requirements-build.txt (its own stamp,
# .venv/.requirements-build.sha256), then checks that `sam --version`, `cargo-lambda lambda
# --version` and `python -m ziglang version` run.
#
# Idempotent; a run with nothing to do prints one line, "venv up to date".
# Environment: PYTHON (default python3) picks the interpreter the venv is created from.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
REQUIREMENTS="$ROOT/requirements-local.txt"
STAMP="$VENV/.requirements-local.sha256"
MIN_MOTO="5.2.5"
BASE_PYTHON="${PYTHON:-python3}"
BUILD_REQUIREMENTS="$ROOT/requirements-build.txt"
BUILD_STAMP="$VENV/.requirements-build.sha256"

die() {
    printf 'setup-venv: error: %s\n' "$*" >&2
    exit 1
}
say() {
    printf 'setup-venv: %s\n' "$*"
}

with_build=0
for arg in "$@"; do
    case "$arg" in
        --build) with_build=1 ;;
        -h | --help)
            awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
            exit 0
            ;;
        *) die "unknown argument: $arg (the only option is --build)" ;;
    esac
done

RERUN="scripts/setup-venv.sh"
[[ $with_build -eq 1 ]] && RERUN+=" --build"

[[ -f "$REQUIREMENTS" ]] || die "$REQUIREMENTS is missing"
[[ $with_build -eq 0 || -f "$BUILD_REQUIREMENTS" ]] || die "$BUILD_REQUIREMENTS is missing"

# Two scripts may set up the venv at the same time (e.g. the demo and the tests): serialise.
if command -v flock >/dev/null 2>&1; then
    lock_id="$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
    exec 9>"${TMPDIR:-/tmp}/iamtrail-setup-venv-$lock_id.lock"
    flock 9
fi

venv_python_works() {
    [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1
}

create_venv() {
    command -v "$BASE_PYTHON" >/dev/null 2>&1 ||
        die "$BASE_PYTHON not found on PATH; install Python 3.9 or newer (or set PYTHON=/path/to/python3)"
    "$BASE_PYTHON" - <<'PYEOF' || die "$BASE_PYTHON is too old: moto needs Python 3.9 or newer"
import sys
sys.exit(0 if sys.version_info >= (3, 9) else 1)
PYEOF
    say "creating the project virtualenv $VENV ($("$BASE_PYTHON" --version 2>&1))"
    if ! "$BASE_PYTHON" -m venv "$@" "$VENV"; then
        rm -rf "$VENV"
        die "'$BASE_PYTHON -m venv' failed; on Debian/Ubuntu install the venv module (apt-get install python3-venv)"
    fi
    venv_python_works || die "the new virtualenv's python does not run ($VENV/bin/python)"
}

# requirements_hash [FILE]: the sha256 of FILE (default requirements-local.txt).
requirements_hash() {
    "$VENV/bin/python" - "${1:-$REQUIREMENTS}" <<'PYEOF'
import hashlib, sys
print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())
PYEOF
}

pip_install() {
    PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$VENV/bin/python" -m pip install --quiet "$@" --requirement "$REQUIREMENTS" ||
        die "pip install -r requirements-local.txt failed (see pip's output above; it needs network access to PyPI)"
}

install_requirements() {
    say "installing the local stack's Python tools from requirements-local.txt (moto, cfn-lint, statelint)"
    pip_install "$@"
    requirements_hash >"$STAMP"
}

# Prints what is wrong with the installed tools, nothing when all is well.
check_tools() {
    local tool
    for tool in moto_server cfn-lint statelint; do
        [[ -x "$VENV/bin/$tool" ]] || printf '%s is not installed in %s\n' "$tool" "$VENV/bin"
    done
    "$VENV/bin/python" - "$MIN_MOTO" <<'PYEOF' || true
import re, sys
from importlib import metadata

minimum = sys.argv[1]
try:
    installed = metadata.version("moto")
except metadata.PackageNotFoundError:
    print("moto is not installed")
    sys.exit(0)

def numbers(version):
    return tuple(int(n) for n in re.findall(r"\d+", version.split("+")[0])[:3])

if numbers(installed) < numbers(minimum):
    print(f"moto {installed} is installed but {minimum} or newer is needed "
          "(older moto runs only one Step Functions execution per region)")
PYEOF
}

if [[ ! -d "$VENV" ]]; then
    create_venv
elif ! venv_python_works; then
    say "$VENV exists but its python does not run; recreating it"
    create_venv --clear
fi

# ensure FILE STAMP INSTALL CHECK: runs the function INSTALL when FILE's sha256 is not the one
# in STAMP, then the function CHECK, which prints what is wrong. When something is wrong although
# nothing was installed (a package removed or downgraded by hand), reinstalls FILE's packages
# once (INSTALL --force-reinstall --no-deps, then INSTALL) before giving up. Sets ENSURED=1 when
# it installed anything.
ensure() {
    local file="$1" stamp="$2" install="$3" check="$4" name problems
    name="$(basename "$file")"
    ENSURED=0
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$(requirements_hash "$file")" ]]; then
        "$install"
        ENSURED=1
    fi
    problems="$("$check")"
    if [[ -n "$problems" && $ENSURED -eq 0 ]]; then
        say "the virtualenv does not match $name:"
        printf '%s\n' "$problems" | sed 's/^/  /'
        say "reinstalling the packages of $name"
        "$install" --force-reinstall --no-deps
        "$install"
        ENSURED=1
        problems="$("$check")"
    fi
    if [[ -n "$problems" ]]; then
        printf '%s\n' "$problems" | sed 's/^/setup-venv: error: /' >&2
        die "fix $name or delete $VENV and run $RERUN again"
    fi
}

ensure "$REQUIREMENTS" "$STAMP" install_requirements check_tools
installed_now=$ENSURED

# --- The Lambda build tools (--build) ------------------------------------------------------

# Prints what is wrong with the build tools, nothing when all is well. Each must run, not
# only be installed: a wheel for another platform installs but does not start.
check_build_tools() {
    [[ -x "$VENV/bin/sam" ]] && "$VENV/bin/sam" --version >/dev/null 2>&1 ||
        printf 'sam (the SAM CLI) does not run from %s\n' "$VENV/bin"
    [[ -x "$VENV/bin/cargo-lambda" ]] && "$VENV/bin/cargo-lambda" lambda --version >/dev/null 2>&1 ||
        printf 'cargo-lambda does not run from %s\n' "$VENV/bin"
    "$VENV/bin/python" -m ziglang version >/dev/null 2>&1 ||
        printf "zig does not run ('%s -m ziglang version' failed)\n" "$VENV/bin/python"
}

install_build_requirements() {
    say "installing the Lambda build tools from requirements-build.txt (SAM CLI, cargo-lambda, zig)"
    # Both files in one resolve, so that the SAM CLI's pins and moto's cannot undo each other.
    PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$VENV/bin/python" -m pip install --quiet "$@" \
        --requirement "$REQUIREMENTS" --requirement "$BUILD_REQUIREMENTS" ||
        die "pip install -r requirements-build.txt failed (see pip's output above; it needs network access to PyPI)"
    requirements_hash "$BUILD_REQUIREMENTS" >"$BUILD_STAMP"
}

build_installed_now=0
if [[ $with_build -eq 1 ]]; then
    ensure "$BUILD_REQUIREMENTS" "$BUILD_STAMP" install_build_requirements check_build_tools
    build_installed_now=$ENSURED
fi

if [[ $installed_now -eq 1 ]]; then
    moto_version="$("$VENV/bin/python" -c 'from importlib import metadata; print(metadata.version("moto"))')"
    say "venv ready: moto $moto_version, cfn-lint, statelint in $VENV"
fi
if [[ $build_installed_now -eq 1 ]]; then
    say "build tools ready: $("$VENV/bin/sam" --version), $("$VENV/bin/cargo-lambda" lambda --version | cut -d' ' -f1-2), zig $("$VENV/bin/python" -m ziglang version)"
fi
if [[ $installed_now -eq 0 && $build_installed_now -eq 0 ]]; then
    echo "venv up to date"
fi
