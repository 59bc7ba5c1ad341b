#!/usr/bin/env bash
# Static checks of the deployable artefacts, no AWS account needed:
#   - cfn-lint on template.yaml, and `sam validate --lint` (needs scripts/setup-venv.sh --build,
#     or IAMTRAIL_SAM naming a sam executable)
#   - each state machine (statemachine/tracker.asl.json, statemachine/s3-ingest.asl.json)
#     rendered with sample DefinitionSubstitutions: as deployed, then statelint on it; as the
#     local stack registers it, then moto's ASL parser (the interpreter the local stack runs)
#   - the ${...} names used in each ASL match its template state machine's DefinitionSubstitutions
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
ASLS=(statemachine/tracker.asl.json statemachine/s3-ingest.asl.json)
SAM="${IAMTRAIL_SAM:-$VENV/bin/sam}"

if [[ ! -x "$PY" || ! -x "$CFN_LINT" || ! -x "$STATELINT" ]]; then
    echo "validate: the project virtualenv ($VENV) with cfn-lint and statelint is missing;" >&2
    echo "validate: run scripts/setup-venv.sh first." >&2
    exit 1
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/iamtrail-validate.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

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
# render_asl ASL OUT PROFILE: substitute every ${Name} the way SAM DefinitionSubstitutions does
# (plain text replacement; the numbers (Map concurrency, timeouts, loop caps) go in unquoted),
# then require strict JSON with no ${...} left. PROFILE "aws" takes the template's literal
# DefinitionSubstitutions (EXPRESS children, a tolerance of 0, ...) and samples for the rest;
# "local" the values steps/iamtrail/src/local.rs registers on moto, whose parser takes no
# EXPRESS child workflow and reads ToleratedFailurePercentage only as a float.
render_asl() {
    "$PY" - "$TEMPLATE" "$1" "$2" "$3" <<'PYEOF'
import json, os, re, sys

template_path, src, dst, profile = sys.argv[1:5]
text = open(src, encoding="utf-8").read()

sys.path.insert(0, os.path.dirname(os.path.abspath(template_path)) + "/scripts")
from queries import load_template

literal = {}
if profile == "aws":
    for res in (load_template(template_path).get("Resources") or {}).values():
        props = res.get("Properties") or {}
        if props.get("DefinitionUri") == src:
            for k, v in (props.get("DefinitionSubstitutions") or {}).items():
                if isinstance(v, (str, int, float)) and not isinstance(v, bool):
                    literal[k] = str(v)

def sample(name):
    if name in literal:
        return literal[name]
    numbers = {"MapMaxConcurrency": "10", "ExecutionTimeoutSeconds": "3300",
               "MaxAlertInvocations": "5", "MaxExportInvocations": "10",
               "IngestMaxConcurrency": "40", "IngestTimeoutSeconds": "86400"}
    by_profile = {
        "aws": {"IngestChildExecutionType": "EXPRESS", "IngestToleratedFailurePercentage": "0"},
        "local": {"IngestChildExecutionType": "STANDARD", "IngestToleratedFailurePercentage": "0.0"},
    }[profile]
    if name in numbers:
        return numbers[name]
    if name in by_profile:
        return by_profile[name]
    if name == "AnalyticsBucketName":
        return "iamtrail-analytics-123456789012"
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

# statelint FILE, tolerating only what statelint 3.1.0 (the newest release) does not know of
# the ASL AWS accepts: ReaderConfig.InputType, which an ItemReader reading a JSON file with
# arn:aws:states:::s3:getObject requires ("ItemReader (Map)", Step Functions Developer Guide).
STATELINT_KNOWN_GAPS='^Field "InputType" not allowed in State Machine\.States\.[^.]+\.ItemReader\.ReaderConfig$'
statelint_check() {
    local out rc=0 unexplained
    out="$("$STATELINT" "$1" 2>&1)" || rc=$?
    [[ $rc -eq 0 ]] && return 0
    if ! head -n 1 <<<"$out" | grep -Eq '^(One error|[0-9]+ errors):$'; then
        printf '%s\n' "$out"
        return 1
    fi
    unexplained="$(tail -n +2 <<<"$out" | sed 's/^ *//' | grep -Ev "$STATELINT_KNOWN_GAPS" || true)"
    if [[ -n "$unexplained" ]]; then
        printf '%s\n' "$out"
        return 1
    fi
    return 0
}

moto_parse() {
    "$PY" - "$1" <<'PYEOF'
import sys
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

AmazonStateLanguageParser.parse(open(sys.argv[1], encoding="utf-8").read())
PYEOF
}

# --- Template <-> ASL substitution names --------------------------------------
substitutions_match() {
    "$PY" - "$TEMPLATE" "$1" <<'PYEOF'
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
    [[ -x "$SAM" ]] || {
        echo "the SAM CLI is not in $VENV: run scripts/setup-venv.sh --build (or set IAMTRAIL_SAM)"
        return 1
    }
    SAM_CLI_TELEMETRY=0 "$SAM" validate --lint --template "$TEMPLATE" --region us-east-1
}
check "sam validate --lint $TEMPLATE" sam_validate

for asl in "${ASLS[@]}"; do
    name="$(basename "$asl" .asl.json)"
    deployed="$WORK/$name.aws.asl.json"
    local_stack="$WORK/$name.local.asl.json"
    check "render $asl with sample substitutions (as deployed)" render_asl "$asl" "$deployed" aws
    if [[ -s "$deployed" ]]; then
        check "statelint $asl (rendered as deployed)" statelint_check "$deployed"
    else
        printf 'skip  statelint %s (render failed)\n' "$asl"
    fi
    check "render $asl with sample substitutions (as on the local stack)" render_asl "$asl" "$local_stack" local
    if [[ -s "$local_stack" ]]; then
        check "moto ASL parser $asl (rendered as on the local stack)" moto_parse "$local_stack"
    else
        printf 'skip  moto ASL parser %s (render failed)\n' "$asl"
    fi
    check "$asl substitutions match $TEMPLATE DefinitionSubstitutions" substitutions_match "$asl"
done
check "queries/*.sql lint, identical to $TEMPLATE NamedQuery resources" "$PY" scripts/queries.py check
check "$TEMPLATE Glue table matches docs/parquet-schema.md" "$PY" scripts/queries.py schema

if [[ $failures -gt 0 ]]; then
    echo "validate: FAILED ($failures check(s))"
    exit 1
fi
echo "validate: OK"
