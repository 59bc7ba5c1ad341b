#!/usr/bin/env bash
# Static checks of the deployable artefacts, no AWS account needed:
#   - cfn-lint on template.yaml, and `sam validate --lint` (needs scripts/setup-venv.sh --build)
#   - the state machine rendered with sample DefinitionSubstitutions, then
#     statelint and moto's ASL parser (the interpreter the local stack runs) on it
#   - the ${...} names used in the ASL match the template's DefinitionSubstitutions
#   - queries/*.sql: header (name, description, params), one SELECT in the subset Athena (Trino)
#     and DataFusion share, `?` count = params; and each template AWS::Athena::NamedQuery is a
#     byte-identical copy of its query (scripts/sync-queries.sh rewrites them)
#   - the template's Glue table has the columns of docs/parquet-schema.md and both partition layouts
# Prints one line per check and "validate: OK" at the end; exits non-zero on any failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
PY="$VENV/bin/python"
CFN_LINT="$VENV/bin/cfn-lint"
STATELINT="$VENV/bin/statelint"

TEMPLATE="template.yaml"
ASL="statemachine/tracker.asl.json"

if [[ ! -x "$PY" || ! -x "$CFN_LINT" || ! -x "$STATELINT" ]]; then
    echo "validate: the project virtualenv ($VENV) with cfn-lint and statelint is missing;" >&2
    echo "validate: run scripts/setup-venv.sh first." >&2
    exit 1
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/iamtrail-validate.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
RENDERED="$WORK/tracker.rendered.asl.json"

failures=0

# check NAME CMD...: run CMD quietly; print "ok" or "FAIL" plus CMD's output.
check() {
    local name="$1"
    shift
    local out rc=0
    out="$("$@" 2>&1)" || rc=$?
    if [[ $rc -eq 0 ]]; then
        printf 'ok    %s\n' "$name"
    else
        printf 'FAIL  %s (exit %d)\n' "$name" "$rc"
        [[ -n "$out" ]] && printf '%s\n' "$out" | sed 's/^/      /'
        failures=$((failures + 1))
    fi
    return 0
}

# --- ASL rendering -----------------------------------------------------------
# Substitute every ${Name} the way SAM DefinitionSubstitutions does (plain text
# replacement; the numbers (Map concurrency, timeout, loop caps) go in unquoted), then require
# strict JSON with no ${...} left.
render_asl() {
    "$PY" - "$ASL" "$RENDERED" <<'PYEOF'
import json, re, sys

src, dst = sys.argv[1], sys.argv[2]
text = open(src, encoding="utf-8").read()

def sample(name):
    numbers = {"MapMaxConcurrency": "10", "ExecutionTimeoutSeconds": "3300",
               "MaxAlertInvocations": "5", "MaxExportInvocations": "10"}
    if name in numbers:
        return numbers[name]
    m = re.fullmatch(r"([A-Za-z0-9]+)FunctionArn", name)
    if m:  # ListTargetsFunctionArn -> ...:function:iamtrail-list-targets
        kebab = re.sub(r"(?<!^)(?=[A-Z])", "-", m.group(1)).lower()
        return f"arn:aws:lambda:us-east-1:123456789012:function:iamtrail-{kebab}"
    sys.exit(f"no sample value for ${{{name}}}: add one to scripts/validate.sh")

names = sorted(set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", text)))
for name in names:
    text = text.replace("${" + name + "}", sample(name))

left = sorted(set(re.findall(r"\$\{[^}]*\}?", text)))
if left:
    sys.exit(f"unsubstituted placeholders left in {src}: {', '.join(left)}")
try:
    json.loads(text)
except json.JSONDecodeError as e:
    sys.exit(f"{src} is not valid JSON after substitution: {e}")
open(dst, "w", encoding="utf-8").write(text)
print("substituted: " + ", ".join(names))
PYEOF
}

moto_parse() {
    "$PY" - "$RENDERED" <<'PYEOF'
import sys
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

AmazonStateLanguageParser.parse(open(sys.argv[1], encoding="utf-8").read())
PYEOF
}

# --- Template <-> ASL substitution names --------------------------------------
substitutions_match() {
    "$PY" - "$TEMPLATE" "$ASL" <<'PYEOF'
import os, re, sys

template_path, asl_path = sys.argv[1], sys.argv[2]

# The CloudFormation-tolerant YAML loader (!Sub, !Ref, ... kept as {"!Tag": value}) is shared
# with scripts/queries.py.
sys.path.insert(0, os.path.dirname(os.path.abspath(template_path)) + "/scripts")
from queries import load_template

template = load_template(template_path)
machines = [
    (logical_id, res.get("Properties") or {})
    for logical_id, res in (template.get("Resources") or {}).items()
    if res.get("Type") in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")
    and (res.get("Properties") or {}).get("DefinitionUri") == asl_path
]
if len(machines) != 1:
    sys.exit(f"expected one state machine with DefinitionUri {asl_path} in {template_path}, found {len(machines)}")
logical_id, props = machines[0]

in_template = set((props.get("DefinitionSubstitutions") or {}).keys())
in_asl = set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", open(asl_path, encoding="utf-8").read()))

problems = []
if in_asl - in_template:
    problems.append(f"used in {asl_path} but not in {logical_id}.DefinitionSubstitutions: {sorted(in_asl - in_template)}")
if in_template - in_asl:
    problems.append(f"in {logical_id}.DefinitionSubstitutions but not used in {asl_path}: {sorted(in_template - in_asl)}")
if problems:
    sys.exit("\n".join(problems))
PYEOF
}

# --- Run the checks -------------------------------------------------------------
check "cfn-lint $TEMPLATE" "$CFN_LINT" "$TEMPLATE"
# SAM's own view of the template (the transform, and cfn-lint as `sam validate --lint` runs it,
# with samconfig.toml). The SAM CLI comes with the build tools (scripts/setup-venv.sh --build).
sam_validate() {
    [[ -x "$VENV/bin/sam" ]] || {
        echo "the SAM CLI is not in $VENV: run scripts/setup-venv.sh --build"
        return 1
    }
    SAM_CLI_TELEMETRY=0 "$VENV/bin/sam" validate --lint --template "$TEMPLATE" --region us-east-1
}
check "sam validate --lint $TEMPLATE" sam_validate

render_ok=0
check "render $ASL with sample substitutions" render_asl
[[ -s "$RENDERED" ]] && render_ok=1

if [[ $render_ok -eq 1 ]]; then
    check "statelint $ASL (rendered)" "$STATELINT" "$RENDERED"
    check "moto ASL parser $ASL (rendered)" moto_parse
else
    printf 'skip  statelint and moto ASL parser (render failed)\n'
fi

check "$ASL substitutions match $TEMPLATE DefinitionSubstitutions" substitutions_match
check "queries/*.sql lint, identical to $TEMPLATE NamedQuery resources" "$PY" scripts/queries.py check
check "$TEMPLATE Glue table matches docs/parquet-schema.md" "$PY" scripts/queries.py schema

if [[ $failures -gt 0 ]]; then
    echo "validate: FAILED ($failures check(s))"
    exit 1
fi
echo "validate: OK"
