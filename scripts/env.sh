# shellcheck shell=bash
# Common environment of the project's scripts. Source it, do not run it:
#   source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
#
# Sets:
#   REPO_ROOT         the repository root (found from this file's location)
#   CARGO_TARGET_DIR  where cargo builds; defaults to ~/.cache/iamtrail-target, outside the
#                     clone, so the AWS SDK crates (about 10 min cold on 2 cores) are built once
#                     and survive fresh clones and `git clean`
#   CARGO_TERM_COLOR  auto unless already set

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
export REPO_ROOT

if [[ -n "${HOME:-}" ]]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/iamtrail-target}"
else
    # No home directory (some CI sandboxes): build inside the clone (ignored by git).
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
fi
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-auto}
