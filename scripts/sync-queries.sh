#!/usr/bin/env bash
# Copies queries/*.sql into template.yaml's AWS::Athena::NamedQuery resources (CloudFormation
# cannot read files), after linting each query. Run it after editing a query;
# scripts/validate.sh fails while the two differ.
set -euo pipefail
# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

PY="$REPO_ROOT/.venv/bin/python"
[[ -x "$PY" ]] || PY="$(command -v python3 || true)"
[[ -n "$PY" ]] || { echo "sync-queries: python3 not found" >&2; exit 1; }
exec "$PY" "$REPO_ROOT/scripts/queries.py" sync
