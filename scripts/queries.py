#!/usr/bin/env python3
"""The catalog of pre-built queries (queries/*.sql) and its copy in template.yaml.

    python3 scripts/queries.py check   # lint queries/*.sql; compare with the template's NamedQuery resources
    python3 scripts/queries.py sync    # rewrite the template's NamedQuery block from queries/*.sql
    python3 scripts/queries.py schema  # the template's Glue table against docs/parquet-schema.md

Each queries/NAME.sql is a header of exactly three comment lines, then one SELECT:

    -- name: NAME
    -- description: one line shown by `iamtrail query list`
    -- params: since:timestamp[, other:string ...]

`params` names the positional `?` parameters in order (types timestamp or string); `since` is
always first. The body must run unchanged on Athena engine v3 (Trino) and DataFusion, so the
check rejects constructs outside their common subset, comments in the body, `;`, and any `?`
inside a string literal (the local engine rewrites each `?` outside literals to `$1`, `$2`, ...).

`sync` needs only the standard library; `check` also reads the template with PyYAML.
"""
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ROOT / "queries"
TEMPLATE = ROOT / "template.yaml"

# The 15 queries of docs/export.md ("The 15 queries"), all of which must exist.
EXPECTED = [
    "user_lookup", "failed_auth", "root_usage", "off_hours", "active_users",
    "permission_changes", "role_assumptions", "daily_summary", "hourly_activity",
    "sso_permission_sets", "sso_account_assignments", "sso_admin_policies",
    "sso_applications", "sso_admin_users", "sso_activity_summary",
]
PARAM_TYPES = {"timestamp", "string"}

# Outside string literals: (pattern, why). Case-insensitive.
FORBIDDEN = [
    (r"`", "backtick identifiers (Trino has none)"),
    (r"::", "'::' casts (use CAST(x AS T))"),
    (r"\bilike\b", "ILIKE (Trino has none: use lower(x) LIKE ...)"),
    (r"\bapprox_", "approx_* functions (not in DataFusion)"),
    (r"\bdate_format\b|\bformat_datetime\b|\bto_char\b|\bstrftime\b", "date formatting functions differ between engines"),
    (r"\bjson_\w*|\bjson\w*\(", "JSON functions differ between engines (use LIKE on the JSON text)"),
    (r"\bhour\s*\(", "hour() (use extract(hour FROM x))"),
    (r"\bover\s*\(", "window functions"),
    (r"\$\d", "$N placeholders (write ? only)"),
    (r"\binterval\b", "INTERVAL literals differ between engines (bind a timestamp parameter)"),
    (r"\bnow\s*\(|\bcurrent_timestamp\b|\bcurrent_date\b", "the clock (bind `since` instead, so both engines agree)"),
]


def logical_id(name):
    return "".join(part.capitalize() for part in name.split("_")) + "NamedQuery"


def outside_literals(sql):
    """The SQL with the contents of '...' literals blanked ('' escapes included), and the literals."""
    out, literals, buf, quoted = [], [], [], False
    for ch in sql:
        if ch == "'":
            if quoted:
                literals.append("".join(buf))
                buf = []
            quoted = not quoted
            out.append(ch)
        elif quoted:
            buf.append(ch)
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out), literals, quoted


def parse(path):
    """(header dict, [(param, type)], body, [problems]) of one query file."""
    problems = []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    header = {}
    keys = ["name", "description", "params"]
    for i, key in enumerate(keys):
        line = lines[i] if i < len(lines) else ""
        m = re.fullmatch(r"-- ([a-z]+): (.*\S)", line)
        if not m or m.group(1) != key:
            problems.append(f"line {i + 1} must be '-- {key}: ...', found {line!r}")
            continue
        header[key] = m.group(2).strip()
    body_lines = lines[len(keys):]
    while body_lines and not body_lines[0].strip():
        body_lines.pop(0)
    body = "\n".join(body_lines).rstrip()

    params = []
    if "params" in header:
        for item in header["params"].split(","):
            m = re.fullmatch(r"\s*([a-z][a-z0-9_]*):([a-z]+)\s*", item)
            if not m:
                problems.append(f"params: {item.strip()!r} is not name:type")
                continue
            if m.group(2) not in PARAM_TYPES:
                problems.append(f"params: type of {m.group(1)!r} must be one of {sorted(PARAM_TYPES)}")
            params.append((m.group(1), m.group(2)))
        if not params or params[0] != ("since", "timestamp"):
            problems.append("params: the first parameter must be since:timestamp")
        names = [p for p, _ in params]
        if len(set(names)) != len(names):
            problems.append("params: a name appears twice")
    if header.get("name") and header["name"] != path.stem:
        problems.append(f"name {header['name']!r} differs from the file name {path.stem!r}")
    if "description" in header and len(header["description"]) > 200:
        problems.append("description: keep it to one short line (200 characters at most)")

    if not body:
        problems.append("no SQL after the header")
        return header, params, body, problems
    code, literals, open_quote = outside_literals(body)
    if open_quote:
        problems.append("unterminated string literal")
    if not re.match(r"(?is)\s*(select|with)\b", code):
        problems.append("the body must be one SELECT (or WITH ... SELECT)")
    if ";" in code:
        problems.append("';' in the body: one statement, no terminator")
    if "--" in code or "/*" in code:
        problems.append("comments in the body: keep them in the header or queries/README.md")
    if not re.search(r"(?i)\bfrom\s+iam_events\b", code):
        problems.append("the query must read FROM iam_events")
    if any("?" in lit for lit in literals):
        problems.append("'?' inside a string literal (it would be taken for a parameter)")
    marks = code.count("?")
    if marks != len(params):
        problems.append(f"{marks} '?' parameter(s) in the SQL but {len(params)} in the params line")
    for pattern, why in FORBIDDEN:
        m = re.search(pattern, code, re.IGNORECASE)
        if m:
            problems.append(f"{m.group(0)!r}: {why}")
    return header, params, body, problems


def catalog():
    """{name: (header, params, body)} and the problems of every file."""
    problems, queries = [], {}
    files = sorted(QUERIES.glob("*.sql"))
    for path in files:
        header, params, body, probs = parse(path)
        problems += [f"queries/{path.name}: {p}" for p in probs]
        queries[path.stem] = (header, params, body)
    missing = [n for n in EXPECTED if n not in queries]
    if missing:
        problems.append(f"queries/: missing {', '.join(missing)}")
    extra = [n for n in queries if n not in EXPECTED]
    if extra:
        problems.append(f"queries/: not in the catalog of docs/export.md (add to EXPECTED in scripts/queries.py): {', '.join(extra)}")
    return queries, problems


BEGIN = "  # BEGIN named queries"
END = "  # END named queries"


def render(queries):
    out = [BEGIN + " (generated by scripts/sync-queries.sh from queries/*.sql)"]
    for name in EXPECTED:
        if name not in queries:
            continue
        header, _params, body = queries[name]
        out += [
            f"  {logical_id(name)}:",
            "    Type: AWS::Athena::NamedQuery",
            "    Properties:",
            f"      Name: {name}",
            f"      Description: {json.dumps(header.get('description', ''))}",
            "      Database: !Ref AnalyticsDatabase",
            "      WorkGroup: !Ref AthenaWorkGroup",
            "      QueryString: |-",
        ]
        out += [("        " + line) if line.strip() else "" for line in body.split("\n")]
        out.append("")
    out.append(END)
    return "\n".join(out)


def sync():
    queries, problems = catalog()
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit("sync: fix the query files first")
    text = TEMPLATE.read_text(encoding="utf-8")
    start = text.find(BEGIN)
    stop = text.find(END)
    if start < 0 or stop < start:
        sys.exit(f"sync: markers {BEGIN.strip()!r} ... {END.strip()!r} not found in {TEMPLATE.name}")
    stop += len(END)
    new = text[:start] + render(queries) + text[stop:]
    if new != text:
        TEMPLATE.write_text(new, encoding="utf-8")
        print(f"sync: {TEMPLATE.name} updated ({len(queries)} named queries)")
    else:
        print(f"sync: {TEMPLATE.name} already up to date ({len(queries)} named queries)")


def load_template(path=TEMPLATE):
    import yaml

    class CfnLoader(yaml.SafeLoader):
        pass

    def any_tag(loader, suffix, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {"!" + suffix: value}

    CfnLoader.add_multi_constructor("!", any_tag)
    return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=CfnLoader)


def check():
    queries, problems = catalog()
    resources = (load_template().get("Resources") or {})
    named = {
        lid: (res.get("Properties") or {})
        for lid, res in resources.items()
        if res.get("Type") == "AWS::Athena::NamedQuery"
    }
    by_name = {}
    for lid, props in named.items():
        by_name.setdefault(props.get("Name"), []).append((lid, props))
    for name, (header, _params, body) in queries.items():
        found = by_name.pop(name, [])
        if len(found) != 1:
            problems.append(f"{TEMPLATE.name}: expected one AWS::Athena::NamedQuery named {name!r}, found {len(found)} (run scripts/sync-queries.sh)")
            continue
        lid, props = found[0]
        if props.get("QueryString") != body:
            problems.append(f"{TEMPLATE.name}: {lid}.QueryString differs from queries/{name}.sql (run scripts/sync-queries.sh)")
        if props.get("Description") != header.get("description"):
            problems.append(f"{TEMPLATE.name}: {lid}.Description differs from the description in queries/{name}.sql (run scripts/sync-queries.sh)")
        if props.get("Database") != {"!Ref": "AnalyticsDatabase"} or props.get("WorkGroup") != {"!Ref": "AthenaWorkGroup"}:
            problems.append(f"{TEMPLATE.name}: {lid} must use Database !Ref AnalyticsDatabase and WorkGroup !Ref AthenaWorkGroup")
    for name, found in by_name.items():
        problems.append(f"{TEMPLATE.name}: NamedQuery {name!r} ({', '.join(l for l, _ in found)}) has no queries/{name}.sql")
    if problems:
        sys.exit("\n".join(problems))
    print(f"{len(queries)} queries, headers and common-subset lint ok, template NamedQuery copies identical")


def schema_columns():
    """[(column, athena type)] from the table in docs/parquet-schema.md."""
    columns = []
    for line in (ROOT / "docs" / "parquet-schema.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"[a-z][a-z0-9_]*", cells[0]) and cells[0] != "column":
            columns.append((cells[0], cells[2]))
    return columns


def schema():
    """The Glue table's columns, partition keys and projection match the Parquet contract."""
    problems = []
    resources = load_template().get("Resources") or {}
    tables = [r for r in resources.values() if r.get("Type") == "AWS::Glue::Table"]
    if len(tables) != 1:
        sys.exit(f"{TEMPLATE.name}: expected one AWS::Glue::Table, found {len(tables)}")
    table = (tables[0].get("Properties") or {}).get("TableInput") or {}
    if table.get("Name") != "iam_events":
        problems.append(f"Glue table is named {table.get('Name')!r}, the queries read iam_events")
    expected = schema_columns()
    if not expected:
        problems.append("no columns found in docs/parquet-schema.md")
    actual = [(c.get("Name"), c.get("Type")) for c in (table.get("StorageDescriptor") or {}).get("Columns") or []]
    if actual != expected:
        missing = [c for c in expected if c not in actual]
        extra = [c for c in actual if c not in expected]
        problems.append(
            "Glue columns differ from docs/parquet-schema.md (names, types or order): "
            f"missing {missing}, unexpected {extra}"
        )
    base = [("year", "int"), ("month", "int"), ("day", "int")]
    keys = table.get("PartitionKeys")
    params = table.get("Parameters")
    if not (isinstance(keys, dict) and "!If" in keys and isinstance(params, dict) and "!If" in params):
        problems.append("PartitionKeys and Parameters must each be !If [PartitionByRegionEnabled, with region, without]")
    else:
        for label, key_list, props, want in (
            ("by region", keys["!If"][1], params["!If"][1], base + [("region", "string")]),
            ("default", keys["!If"][2], params["!If"][2], base),
        ):
            got = [(k.get("Name"), k.get("Type")) for k in key_list]
            if got != want:
                problems.append(f"partition keys ({label}): {got}, expected {want}")
            location = json.dumps(props.get("storage.location.template"))
            if props.get("projection.enabled") != "true":
                problems.append(f"projection.enabled must be \"true\" ({label})")
            for name, _ in want:
                if not props.get(f"projection.{name}.type"):
                    problems.append(f"projection.{name}.type missing ({label})")
                if f"{name}=${{!{name}}}" not in location:
                    problems.append(f"storage.location.template lacks {name}=${{{name}}} ({label})")
            if label == "default" and "region" in location:
                problems.append("storage.location.template of the default layout must not contain region")
    if problems:
        sys.exit("\n".join(problems))
    print(f"{len(expected)} columns and the partition layouts match docs/parquet-schema.md")


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "sync":
        sync()
    elif command == "check":
        check()
    elif command == "schema":
        schema()
    else:
        sys.exit(__doc__)
