#!/usr/bin/env bash
# Creates or updates the project virtualenv .venv (repo root) with the local stack's Python
# tools from requirements-local.txt: moto server, cfn-lint, statelint.
#
# - creates .venv with `python3 -m venv` if it is missing (or recreates it if its Python no
#   longer runs, e.g. after the base interpreter was removed);
# - runs `pip install -r requirements-local.txt` only when that file changed since the last
#   install (its sha256 is kept in .venv/.requirements-local.sha256);
# - checks that moto_server, cfn-lint and statelint are installed and that moto >= 5.2.5
#   (older moto runs only one Step Functions execution per region).
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

die() {
    printf 'setup-venv: error: %s\n' "$*" >&2
    exit 1
}
say() {
    printf 'setup-venv: %s\n' "$*"
}

[[ -f "$REQUIREMENTS" ]] || die "$REQUIREMENTS is missing"

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

requirements_hash() {
    "$VENV/bin/python" - "$REQUIREMENTS" <<'PYEOF'
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
    pip_install
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

installed_now=0
if [[ ! -d "$VENV" ]]; then
    create_venv
elif ! venv_python_works; then
    say "$VENV exists but its python does not run; recreating it"
    create_venv --clear
fi

if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$(requirements_hash)" ]]; then
    install_requirements
    installed_now=1
fi

problems="$(check_tools)"
if [[ -n "$problems" && $installed_now -eq 0 ]]; then
    # The stamp says up to date but the tools disagree (e.g. a package was removed or
    # downgraded by hand): reinstall the listed packages once before giving up.
    say "the virtualenv does not match requirements-local.txt:"
    printf '%s\n' "$problems" | sed 's/^/  /'
    say "reinstalling the packages of requirements-local.txt"
    pip_install --force-reinstall --no-deps
    install_requirements
    installed_now=1
    problems="$(check_tools)"
fi
if [[ -n "$problems" ]]; then
    printf '%s\n' "$problems" | sed 's/^/setup-venv: error: /' >&2
    die "fix requirements-local.txt or delete $VENV and run scripts/setup-venv.sh again"
fi

if [[ $installed_now -eq 1 ]]; then
    moto_version="$("$VENV/bin/python" -c 'from importlib import metadata; print(metadata.version("moto"))')"
    say "venv ready: moto $moto_version, cfn-lint, statelint in $VENV"
else
    echo "venv up to date"
fi
