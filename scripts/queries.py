#!/usr/bin/env python3
"""The catalog of pre-built queries (queries/*.sql) and its copy in template.yaml.

    python3 scripts/queries.py check   # lint queries/*.sql; compare with the template's NamedQuery resources
    python3 scripts/queries.py sync    # rewrite the template's NamedQuery block from queries/*.sql
    python3 scripts/queries.py schema  # the template's Glue table against docs/parquet-schema.md

Each queries/NAME.sql is a header of exactly three comment lines, then one SELECT:

    -- name: NAME
    -- description: one line shown by `iamtrail query list`
    -- params: since:timestamp, from_day:day, to_day:day[, other:string ...]

`params` names the positional `?` parameters in order (types timestamp, string or day). Every
query starts its WHERE with the window: `event_time >= ?` (since) and then
`year * 10000 + month * 100 + day BETWEEN ? AND ?` (from_day, to_day: the UTC dates of since and
of now, bound as YYYYMMDD), the predicate on the partition columns that keeps Athena and the
local engine to the days of the window (docs/export.md, "Partition pruning"). The body must run unchanged on Athena engine v3 (Trino) and DataFusion, so the
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
PARAM_TYPES = {"timestamp", "string", "day"}
# The first three parameters of every query, and the predicate that binds them (in this order).
WINDOW_PARAMS = [("since", "timestamp"), ("from_day", "day"), ("to_day", "day")]
WINDOW_SQL = r"event_time\s*>=\s*\?\s+AND\s+year\s*\*\s*10000\s*\+\s*month\s*\*\s*100\s*\+\s*day\s+BETWEEN\s+\?\s+AND\s+\?"

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
        if params[:3] != WINDOW_PARAMS:
            problems.append("params: the first parameters must be since:timestamp, from_day:day, to_day:day")
        if any(t == "day" for _, t in params[3:]):
            problems.append("params: from_day and to_day are the only day parameters")
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
    window = re.search(WINDOW_SQL, code)
    if not window:
        problems.append(
            "the WHERE must start with the window, `event_time >= ? AND year * 10000 + month * 100 + day "
            "BETWEEN ? AND ?`, so that both engines read only the days asked for"
        )
    elif code[:window.start()].count("?"):
        problems.append("the window's three '?' must be the first parameters of the SQL")
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
    problems += partition_problems(table)
    if problems:
        sys.exit("\n".join(problems))
    print(f"{len(expected)} columns and the partition projection match docs/parquet-schema.md (both PartitionByRegion layouts)")


def resolve(node, conditions):
    """The template fragment as CloudFormation would deploy it with these condition values:
    every !If [Condition, a, b] is replaced by a or b (other tags are left as they are)."""
    if isinstance(node, dict):
        if set(node) == {"!If"}:
            name, yes, no = node["!If"]
            if name not in conditions:
                raise KeyError(f"condition {name!r} has no value here")
            return resolve(yes if conditions[name] else no, conditions)
        return {k: resolve(v, conditions) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, conditions) for v in node]
    return node


def partition_problems(table):
    """The Glue table's partitions for both values of PartitionByRegion.

    Export writes iam-events/year=Y/month=M/day=D/events.parquet, or with PartitionByRegion=true
    .../day=D/region=R/events.parquet. The table must be projected (no crawler), keyed by
    year/month/day only (a region key projected as injected breaks every query without a region
    predicate; an enum one needs a redeploy for a new region), and its location template must end
    at the day with a slash: Athena reads every object under it, the region subfolders included,
    and the slash keeps day=1 from also matching day=10 ... day=19."""
    problems = []
    for by_region in (False, True):
        label = f"PartitionByRegion={'true' if by_region else 'false'}"
        try:
            t = resolve(table, {"PartitionByRegionEnabled": by_region})
        except KeyError as e:
            problems.append(f"Glue table ({label}): {e}")
            continue
        keys = [(k.get("Name"), k.get("Type")) for k in t.get("PartitionKeys") or []]
        want = [("year", "int"), ("month", "int"), ("day", "int")]
        if keys != want:
            problems.append(f"partition keys ({label}): {keys}, expected {want}")
        props = t.get("Parameters") or {}
        if props.get("projection.enabled") != "true":
            problems.append(f"projection.enabled must be \"true\" ({label})")
        for name, _ in want:
            if props.get(f"projection.{name}.type") != "integer":
                problems.append(f"projection.{name}.type must be integer ({label})")
        for key in props:
            if key.startswith("projection.") and key.split(".")[1] not in ("enabled", "year", "month", "day"):
                problems.append(f"{key}: no projection other than year/month/day ({label})")
        location = props.get("storage.location.template")
        if isinstance(location, dict) and "!Sub" in location:
            location = location["!Sub"]
        want_tail = "/iam-events/year=${!year}/month=${!month}/day=${!day}/"
        if not isinstance(location, str) or not location.endswith(want_tail):
            problems.append(f"storage.location.template ({label}) is {location!r}; it must end with {want_tail!r}")
    return problems


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
