#!/usr/bin/env python3
"""Times the 15 queries on the local engine (`iamtrail query run NAME --engine local`) against
DuckDB over the same Parquet tree, and prints a Markdown table (queries/README.md, "Local query
speed"). A benchmark, not a test.

    # a release build of the CLI, and DuckDB from PyPI in a throwaway venv:
    cargo build --release -p iamtrail
    python3 -m venv /tmp/duckdb-venv && /tmp/duckdb-venv/bin/pip install duckdb
    # 1M synthetic events over 30 days, written by the export's own Parquet writer:
    cargo run --release -p iamtrail-query --example bench_tree -- /tmp/iamtrail-bench 1000000 30
    /tmp/duckdb-venv/bin/python scripts/bench-queries.py --tree /tmp/iamtrail-bench --runs 7

For each query, both engines get the same SQL text (queries/NAME.sql) and the same bound values:
since = now minus --window-days, from_day/to_day = the UTC dates of since and of now, and
user = user-7 for user_lookup.

- local: the wall time of the whole `iamtrail query run ... --format csv` process (start, register
  the tree, plan, read, print), the median of --runs runs after one warm-up run.
- duckdb: the query alone inside one Python process (one connection, the view over the tree
  created once, `execute(sql, params).fetchall()`), the median of --runs runs after a warm-up.
  This leaves DuckDB's own start-up out, so the ratio is the strict one.

Both engines must return the same number of rows, or the script says so.
"""
import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import queries as catalog  # noqa: E402  (scripts/queries.py: the query file parser)


def median_time(fn, runs):
    fn()  # warm-up: caches, page cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", required=True, help="the export tree (containing iam-events/)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--window-days", type=int, default=30, help="the window: since = now minus this")
    ap.add_argument("--iamtrail", default=None, help="the CLI (default: the release build under $CARGO_TARGET_DIR)")
    ap.add_argument("--only", default=None, help="comma-separated query names")
    args = ap.parse_args()

    try:
        import duckdb
    except ImportError:
        sys.exit(
            "bench-queries: this needs DuckDB from PyPI: python3 -m venv /tmp/duckdb-venv && "
            "/tmp/duckdb-venv/bin/pip install duckdb, then run this script with /tmp/duckdb-venv/bin/python"
        )
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "iamtrail-target"))
    cli = Path(args.iamtrail) if args.iamtrail else target / "release" / "iamtrail"
    if not cli.exists():
        sys.exit(f"bench-queries: no CLI at {cli}; run cargo build --release -p iamtrail or give --iamtrail")
    tree = Path(args.tree).resolve()
    table_dir = tree / "iam-events"
    if not table_dir.is_dir():
        sys.exit(f"bench-queries: no {table_dir}; write a tree with the bench_tree example first")
    files = sorted(table_dir.rglob("*.parquet"))
    size = sum(f.stat().st_size for f in files)

    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    since = now - dt.timedelta(days=args.window_days)
    since_text = since.strftime("%Y-%m-%dT%H:%M:%SZ")

    def day_number(d):
        return d.year * 10000 + d.month * 100 + d.day

    values = {
        "since": since.replace(tzinfo=None),
        "from_day": day_number(since.date()),
        "to_day": day_number(now.date()),
        "user": "user-7",
    }

    con = duckdb.connect()
    # A view cannot take a prepared parameter: the glob goes in as a quoted literal.
    glob = str(table_dir / "*" / "*" / "*" / "*.parquet").replace("'", "''")
    con.execute(
        f"CREATE VIEW iam_events AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true, "
        "hive_types = {'year': INTEGER, 'month': INTEGER, 'day': INTEGER})"
    )

    qs, problems = catalog.catalog()
    if problems:
        sys.exit("\n".join(problems))
    names = args.only.split(",") if args.only else catalog.EXPECTED
    print(
        f"tree: {tree} ({len(files)} files, {size / 1048576:.1f} MiB); window: since {since_text} "
        f"({args.window_days} days); {args.runs} runs each, medians; DuckDB {duckdb.__version__}"
    )
    print()
    print("| query | rows | local engine, whole process (s) | DuckDB, query only (s) | local / DuckDB |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in names:
        _header, params, body = qs[name]
        bound = [values[p] for p, _ in params]
        cmd = [str(cli), "query", "run", name, "--engine", "local", "--data", str(tree),
               "--format", "csv", "--param", f"since={since_text}"]
        if any(p == "user" for p, _ in params):
            cmd += ["--param", "user=user-7"]
        out = {}

        def local():
            r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
            if r.returncode != 0:
                sys.exit(f"{name}: iamtrail failed: {r.stderr.strip()}")
            out["rows"] = max(len(r.stdout.splitlines()) - 1, 0)

        def duck():
            out["duck_rows"] = len(con.execute(body, bound).fetchall())

        local_median, _, _ = median_time(local, args.runs)
        duck_median, _, _ = median_time(duck, args.runs)
        note = "" if out["rows"] == out["duck_rows"] else f" (DuckDB: {out['duck_rows']} rows)"
        print(
            f"| {name} | {out['rows']}{note} | {local_median:.3f} | {duck_median:.3f} | "
            f"{local_median / duck_median:.1f}x |"
        )


if __name__ == "__main__":
    main()
