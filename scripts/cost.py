#!/usr/bin/env python3
"""The monthly AWS bill of one iamtrail stack, computed from counts measured on the local stack.

Inputs (all in the repository; how to re-measure them: docs/cost.md):
  docs/cost-counts.json       tests/cost.rs: state transitions by state, Lambda invocations and
                              every AWS request of the steps with its DynamoDB request units and
                              S3 bytes, for a first and a steady hourly run (real executions of
                              statemachine/tracker.asl.json on moto server)
  docs/cost-lambda.json       tests/artifacts.rs: the release bootstraps' durations, log bytes
                              and EMF metrics for the same two runs at the demo's load
  docs/cost-lambda-100k.json  tests/artifacts.rs with IAMTRAIL_ARTIFACTS_EVENTS=100000: the same
                              at 100k events in one window (optional)
  docs/ingest-counts.json     iamtrail local ingest-bench: one S3 ingestion of a large synthetic
                              trail on the local stack, with the gateway's usage counters
                              (optional; docs/ingest.md, "A million events")
  template.yaml               MemorySize per function, Architecture, the indexes of the events
                              table, the alarms, dashboards and KMS keys
  statemachine/tracker.asl.json  which states run once per region (the Map's item processor)

Usage:
  .venv/bin/python scripts/cost.py            # print the page
  .venv/bin/python scripts/cost.py --write    # rewrite docs/cost.md

Only the standard library; the YAML of the template is read with a few regular expressions
(the short-form tags need no YAML library for what is read here).
"""

import argparse
import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READ = "2026-12-01"

# us-east-1 list prices, on-demand, as published on the AWS pricing pages below (read on READ).
PRICES = {
    "sfn_transition": (0.025 / 1000, "per state transition (Standard)", "https://aws.amazon.com/step-functions/pricing/"),
    "lambda_gb_s_arm64": (0.0000133334, "per GB-second (arm64)", "https://aws.amazon.com/lambda/pricing/"),
    "lambda_gb_s_x86_64": (0.0000166667, "per GB-second (x86_64)", "https://aws.amazon.com/lambda/pricing/"),
    "lambda_request": (0.20 / 1e6, "per request", "https://aws.amazon.com/lambda/pricing/"),
    "ddb_wru": (0.625 / 1e6, "per write request unit (on-demand)", "https://aws.amazon.com/dynamodb/pricing/on-demand/"),
    "ddb_rru": (0.125 / 1e6, "per read request unit (on-demand)", "https://aws.amazon.com/dynamodb/pricing/on-demand/"),
    "ddb_storage": (0.25, "per GB-month (Standard table class)", "https://aws.amazon.com/dynamodb/pricing/on-demand/"),
    "s3_put": (0.005 / 1000, "per PUT, COPY, POST, LIST request (S3 Standard)", "https://aws.amazon.com/s3/pricing/"),
    "s3_get": (0.0004 / 1000, "per GET, HEAD and other request (S3 Standard)", "https://aws.amazon.com/s3/pricing/"),
    "s3_standard": (0.023, "per GB-month, S3 Standard (first 50 TB)", "https://aws.amazon.com/s3/pricing/"),
    "s3_glacier_ir": (0.004, "per GB-month, S3 Glacier Instant Retrieval", "https://aws.amazon.com/s3/pricing/"),
    "sns_publish": (0.50 / 1e6, "per SNS request (64 KB chunk)", "https://aws.amazon.com/sns/pricing/"),
    "sns_email": (2.00 / 100000, "per email notification", "https://aws.amazon.com/sns/pricing/"),
    "cw_metric": (0.30, "per custom metric-month (first 10,000)", "https://aws.amazon.com/cloudwatch/pricing/"),
    "cw_alarm": (0.10, "per standard-resolution alarm metric-month", "https://aws.amazon.com/cloudwatch/pricing/"),
    "cw_dashboard": (3.00, "per dashboard-month", "https://aws.amazon.com/cloudwatch/pricing/"),
    "logs_ingest": (0.50, "per GB ingested (Standard log class)", "https://aws.amazon.com/cloudwatch/pricing/"),
    "logs_storage": (0.03, "per GB-month archived (compressed)", "https://aws.amazon.com/cloudwatch/pricing/"),
    "athena_tb": (5.00, "per TB scanned, 10 MB minimum per query", "https://aws.amazon.com/athena/pricing/"),
    "kms_key": (1.00, "per customer managed key-month", "https://aws.amazon.com/kms/pricing/"),
    "kms_request": (0.03 / 10000, "per request", "https://aws.amazon.com/kms/pricing/"),
    "scheduler": (1.00 / 1e6, "per schedule invocation", "https://aws.amazon.com/eventbridge/pricing/"),
    "sfn_express_request": (1.00 / 1e6, "per Express workflow request", "https://aws.amazon.com/step-functions/pricing/"),
    "sfn_express_gb_s": (0.00001667, "per Express workflow GB-second (first 1,000 hours a month)", "https://aws.amazon.com/step-functions/pricing/"),
}

# Express child workflows are billed for their memory in 64 MB steps; a one-Task child stays in
# the first step.
EXPRESS_MEMORY_GB = 0.0625

# The free tier that does not expire (the 12-month S3 tier is left out on purpose).
FREE = {
    "sfn_transition": 4000,
    "lambda_gb_s": 400000,
    "lambda_request": 1e6,
    "ddb_storage": 25,
    "sns_publish": 1e6,
    "sns_email": 1000,
    "cw_metric": 10,
    "cw_alarm": 10,
    "cw_dashboard": 3,
    "logs_gb": 5,
    "kms_request": 20000,
    "scheduler": 14e6,
}

REGIONS = 17  # the regions enabled by default in an account
RUNS_PER_MONTH = 730  # hourly: 24 x 365 / 12
DAYS_PER_MONTH = 365 / 12
OVERLAP = (60 + 15) / 60  # each run reads the last hour plus OVERLAP_MINUTES (15): events read 1.25 times
EVENTS_PER_PAGE = 50  # LookupEvents
LOOKUP_RPS = 2  # the LookupEvents quota per region
QUERIES = 15
QUERY_DAYS = 7  # the queries' default window (steps/query/src/params.rs DEFAULT_DAYS)
ATHENA_MIN_BYTES = 10 * 1e6
PLATFORM_LOG_BYTES = 600  # Lambda's platform.start + platform.report lines per invocation, JSON format (derived)
SCENARIOS = {"1k events/day": (1000, 10), "100k events/day": (100000, 100)}  # events, alerts per day


def load(name):
    path = ROOT / "docs" / name
    return json.loads(path.read_text()) if path.exists() else None


def template_facts():
    text = (ROOT / "template.yaml").read_text()
    facts = {
        # The S3 mode's alarms exist only with a trail bucket (off by default).
        "alarms": sum(
            1 for m in re.finditer(r"^  \w+:\n((?:    .*\n|\s*\n)*?)(?=^  \S)", text, re.M)
            if re.search(r"^    Type: AWS::CloudWatch::Alarm\s*$", m.group(1), re.M)
            and not re.search(r"^    Condition: Ingest", m.group(1), re.M)
        ),
        "dashboards": len(re.findall(r"^\s+Type: AWS::CloudWatch::Dashboard\s*$", text, re.M)),
        "kms_keys": len(re.findall(r"^\s+Type: AWS::KMS::Key\s*$", text, re.M)),
    }
    arch = re.search(r"^  Architecture:\n(?:    .*\n)*?    Default: (\S+)", text, re.M)
    facts["architecture"] = arch.group(1) if arch else "arm64"
    memory = {}
    for m in re.finditer(r"^  (\w+)Function:\n    Type: AWS::Serverless::Function\n((?:    .*\n|\s*\n)*?)(?=^  \S)", text, re.M):
        body = m.group(2)
        binary = re.search(r"Binary: (\S+)", body)
        size = re.search(r"MemorySize: (\d+)", body)
        if binary and size:
            memory[binary.group(1)] = int(size.group(1))
    facts["memory"] = memory
    events = re.search(r"^  EventsTable:\n((?:    .*\n|\s*\n)*?)(?=^  \S)", text, re.M)
    facts["events_gsis"] = len(re.findall(r"- IndexName:", events.group(1))) if events else 0
    return facts


def per_region_states():
    asl = json.loads(re.sub(r"\$\{\w+\}", "0", (ROOT / "statemachine/tracker.asl.json").read_text()))
    for state in asl["States"].values():
        if state.get("Type") == "Map":
            return set(state["ItemProcessor"]["States"])
    return set()


def usage_sum(usage, service, field, resource=None, operations=None):
    total = 0.0
    for op, by_resource in usage.get(service, {}).items():
        if operations is not None and op not in operations:
            continue
        for res, c in by_resource.items():
            if resource is None or res == resource:
                total += c.get(field, 0)
    return total


def money(x):
    return f"${x:,.2f}" if x >= 0.005 or x == 0 else f"${x:,.4f}"


def build():
    counts = load("cost-counts.json")
    if counts is None:
        sys.exit("docs/cost-counts.json is missing: measure it first (docs/cost.md)")
    lam = load("cost-lambda.json")
    bench = load("cost-lambda-100k.json")
    t = template_facts()
    first, steady = counts["runs"]["first"], counts["runs"]["steady"]
    local_regions = steady["regions"]
    scale = REGIONS / local_regions
    per_region = per_region_states()

    # ---- Step Functions: transitions per run, scaled from the local stack's regions to 17.
    by_state = steady["transitions_by_state"]
    fixed = sum(n for s, n in by_state.items() if s not in per_region)
    regional = sum(n for s, n in by_state.items() if s in per_region)
    steady_transitions = fixed + regional * scale
    # The daily run that exports enters the states the first run entered beyond the steady
    # run's (Export and its Choice), once per Export invocation.
    first_states = first["transitions_by_state"]
    export_invocations = max(first_states.get("Export", 1), 1)
    export_transitions = sum(n - by_state.get(s, 0) for s, n in first_states.items() if s not in per_region) / export_invocations
    month_transitions = RUNS_PER_MONTH * steady_transitions + DAYS_PER_MONTH * export_transitions

    # ---- Lambda: invocations and durations of the release bootstraps.
    arch = t["architecture"]
    gb_s_price = PRICES[f"lambda_gb_s_{arch}"][0]
    memory = {f: m / 1024 for f, m in t["memory"].items()}
    lam_steady = lam["runs"]["steady"]["functions"] if lam else {}
    lam_first = lam["runs"]["first"]["functions"] if lam else {}

    def secs(run, f):
        return sum(run.get(f, {}).get("durations_ms", [])) / 1000

    collect = lam_steady.get("collect", {}).get("durations_ms", [])
    collect_run_s = (collect[0] + (sum(collect[1:]) / max(len(collect) - 1, 1)) * (REGIONS - 1)) / 1000 if collect else 0
    fixed_run_s = {f: secs(lam_steady, f) for f in ("list-targets", "aggregate", "evaluate-alerts")}
    events_stored = first["events_stored"]
    # Collect's own time per event: the first run's Collect time beyond the steady run's, less
    # the quota's wait for the extra LookupEvents requests (0.5 s each at 2 requests/s), which
    # the formula below adds back for every scenario.
    extra_requests = max(first["lookup_requests"] - steady["lookup_requests"], 0)
    collect_event_s = max(secs(lam_first, "collect") - secs(lam_steady, "collect") - extra_requests / LOOKUP_RPS, 0) / max(events_stored, 1)
    if bench:
        bf = bench["runs"]["first"]
        collect_event_s = secs(bf["functions"], "collect") / max(bf["work"]["events_stored"], 1)
    export_s_small = secs(lam_first, "export")
    export_s_large = secs(bench["runs"]["first"]["functions"], "export") if bench else None

    # ---- DynamoDB units (base table) from the gateway's counters.
    su, fu = steady["usage"], first["usage"]
    steady_wru = usage_sum(su, "dynamodb", "write_units")
    steady_rru = usage_sum(su, "dynamodb", "read_units")
    control_wru = usage_sum(su, "dynamodb", "write_units", "control")
    control_rru = usage_sum(su, "dynamodb", "read_units", "control")
    run_wru = (steady_wru - control_wru) + control_wru * scale
    run_rru = (steady_rru - control_rru) + control_rru * scale
    event_items = usage_sum(fu, "dynamodb", "items", "events", {"BatchWriteItem"})
    event_wru = usage_sum(fu, "dynamodb", "write_units", "events", {"BatchWriteItem"}) / max(event_items, 1)
    event_bytes = usage_sum(fu, "dynamodb", "bytes_in", "events", {"BatchWriteItem"}) / max(event_items, 1)
    gsis = t["events_gsis"]
    rows = counts["export"]["rows"]
    export_rru_row = usage_sum(fu, "dynamodb", "read_units", "events", {"Query"}) / max(rows, 1)
    alerts = max(first["alerts_queued"], 1)
    alert_wru = (usage_sum(fu, "dynamodb", "write_units", "alerts") - usage_sum(su, "dynamodb", "write_units", "alerts")) / alerts
    alert_rru = max(usage_sum(fu, "dynamodb", "read_units", "alerts") - usage_sum(su, "dynamodb", "read_units", "alerts"), 0) / alerts

    # ---- S3 and Parquet.
    s3_put_ops = {"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "ListObjectsV2", "ListObjects", "CopyObject"}
    first_dates = max(first["transitions_by_state"].get("Export", 1), 1)
    s3_put_first = usage_sum(fu, "s3", "requests", None, s3_put_ops)
    s3_get_first = usage_sum(fu, "s3", "requests") - s3_put_first
    export_dates_checked = 90
    parquet_row = counts["export"]["parquet_bytes"] / max(rows, 1)
    parquet_row_large = parquet_row
    if bench and bench["runs"]["first"]["work"].get("parquet_bytes"):
        bw = bench["runs"]["first"]["work"]
        parquet_row_large = bw["parquet_bytes"] / max(bw["export_rows"], 1)

    # ---- Logs and metrics.
    # Log lines other than EMF from the bootstraps; the EMF lines and metrics from the steps of
    # the local stack (tests/cost.rs), which run the current code.
    log_run = sum(f.get("log_bytes", 0) - f.get("emf_bytes", 0) for f in lam_steady.values())
    emf_run = steady.get("emf", {}).get("bytes", 0)
    emf = set(first.get("emf", {}).get("metrics", [])) | set(steady.get("emf", {}).get("metrics", []))
    # Metrics with Region and Source dimensions: one per region/source pair. With the default
    # sources a stack reads iam and sso in one region and sts and signin in every region.
    emf_regional = [m for m in emf if "Region=" in m]
    local_pairs = {m.split("[", 1)[1] for m in emf_regional} or {""}
    pairs = 2 * REGIONS + 2
    regional_names = sorted({m.split(" ")[1] for m in emf_regional})
    emf_metrics = (len(emf) - len(emf_regional)) + len(emf_regional) * pairs / len(local_pairs)

    rows_out = {}
    details = {}
    for name, (per_day, alerts_day) in SCENARIOS.items():
        rows_per_event = parquet_row if per_day <= 10000 else parquet_row_large
        c = {}
        # Step Functions
        c["Step Functions"] = (max(month_transitions - FREE["sfn_transition"], 0) * PRICES["sfn_transition"][0],
                               f"{month_transitions:,.0f} transitions ({steady_transitions:.0f} per hourly run, +{export_transitions:.0f} on the daily export run); 4,000 free")
        # Lambda
        invocations = RUNS_PER_MONTH * (3 + REGIONS) + DAYS_PER_MONTH
        lookup_wait = per_day * OVERLAP / EVENTS_PER_PAGE / LOOKUP_RPS
        collect_s = RUNS_PER_MONTH * collect_run_s + DAYS_PER_MONTH * (lookup_wait + per_day * OVERLAP * collect_event_s)
        export_s = DAYS_PER_MONTH * (export_s_small if per_day <= 10000 or export_s_large is None else export_s_large)
        gb_s = (collect_s * memory.get("collect", 0.25)
                + sum(RUNS_PER_MONTH * s * memory.get(f, 0.125) for f, s in fixed_run_s.items())
                + export_s * memory.get("export", 0.5))
        lam_cost = max(gb_s - FREE["lambda_gb_s"], 0) * gb_s_price + max(invocations - FREE["lambda_request"], 0) * PRICES["lambda_request"][0]
        c["Lambda"] = (lam_cost, f"{invocations:,.0f} invocations, {gb_s:,.0f} GB-s ({arch}); 1M requests and 400,000 GB-s free")
        # DynamoDB
        event_writes = per_day * DAYS_PER_MONTH * OVERLAP * event_wru * (1 + gsis)
        wru = RUNS_PER_MONTH * run_wru + event_writes + alerts_day * DAYS_PER_MONTH * alert_wru
        rru = RUNS_PER_MONTH * run_rru + per_day * DAYS_PER_MONTH * export_rru_row + alerts_day * DAYS_PER_MONTH * alert_rru
        storage_gb = per_day * 365 * event_bytes * (1 + gsis) / 1e9
        ddb = wru * PRICES["ddb_wru"][0] + rru * PRICES["ddb_rru"][0]
        ddb_storage = max(storage_gb - FREE["ddb_storage"], 0) * PRICES["ddb_storage"][0]
        c["DynamoDB requests"] = (ddb, f"{wru:,.0f} WRU, {rru:,.0f} RRU")
        c["DynamoDB storage (month 12)"] = (ddb_storage, f"{storage_gb:,.1f} GB after a year (events and {gsis} indexes, RetentionDays 0 keeps all); 25 GB free")
        # S3
        parquet_day = per_day * rows_per_event
        puts = DAYS_PER_MONTH * s3_put_first / first_dates
        gets = DAYS_PER_MONTH * s3_get_first / export_dates_checked + DAYS_PER_MONTH * QUERIES * QUERY_DAYS * 2
        std_gb = parquet_day * 90 / 1e9
        ir_gb = parquet_day * (365 - 90) / 1e9
        s3 = puts * PRICES["s3_put"][0] + gets * PRICES["s3_get"][0] + std_gb * PRICES["s3_standard"][0] + ir_gb * PRICES["s3_glacier_ir"][0]
        c["S3 (month 12)"] = (s3, f"{puts:,.0f} PUT/LIST, {gets:,.0f} GET; {std_gb*1000:,.1f} MB Standard + {ir_gb*1000:,.1f} MB Glacier IR ({rows_per_event:,.0f} B/event)")
        # Athena
        scanned = max(QUERY_DAYS * parquet_day, ATHENA_MIN_BYTES)
        athena = DAYS_PER_MONTH * QUERIES * scanned / 1e12 * PRICES["athena_tb"][0]
        c["Athena"] = (athena, f"{QUERIES} queries a day over {QUERY_DAYS} days: {scanned/1e6:,.1f} MB each (10 MB minimum)")
        # SNS
        publishes = alerts_day * DAYS_PER_MONTH
        sns = max(publishes - FREE["sns_publish"], 0) * PRICES["sns_publish"][0] + max(publishes - FREE["sns_email"], 0) * PRICES["sns_email"][0]
        c["SNS"] = (sns, f"{publishes:,.0f} alerts (assumed {alerts_day}/day), one email each; 1M publishes and 1,000 emails free")
        # CloudWatch
        metric_cost = max(emf_metrics - FREE["cw_metric"], 0) * PRICES["cw_metric"][0]
        c["CloudWatch metrics (EMF)"] = (metric_cost, f"{emf_metrics:,.0f} custom metrics; 10 free")
        alarm_cost = max(t["alarms"] - FREE["cw_alarm"], 0) * PRICES["cw_alarm"][0]
        c["CloudWatch alarms"] = (alarm_cost, f"{t['alarms']} alarms in template.yaml; 10 free")
        dash = max(t["dashboards"] - FREE["cw_dashboard"], 0) * PRICES["cw_dashboard"][0]
        c["CloudWatch dashboard"] = (dash, f"{t['dashboards']} dashboard(s); 3 free")
        log_gb = RUNS_PER_MONTH * ((log_run + emf_run) * scale + (3 + REGIONS) * PLATFORM_LOG_BYTES) / 1e9
        # Storage: the log groups keep 30 days (RetentionInDays), about a month's ingestion,
        # stored compressed (taken as 0.15 of the raw bytes, derived).
        logs = max(log_gb - FREE["logs_gb"], 0) * PRICES["logs_ingest"][0] + log_gb * 0.15 * PRICES["logs_storage"][0]
        c["CloudWatch Logs"] = (logs, f"{log_gb*1000:,.1f} MB ingested a month ({(log_run + emf_run) * scale / 1000:,.0f} KB of log and EMF lines per run); 5 GB free")
        # KMS
        kms_requests = publishes * 2
        kms = t["kms_keys"] * PRICES["kms_key"][0] + max(kms_requests - FREE["kms_request"], 0) * PRICES["kms_request"][0]
        c["KMS"] = (kms, f"{t['kms_keys']} customer managed key(s); ~{kms_requests:,.0f} requests (20,000 free)")
        c["EventBridge Scheduler"] = (max(RUNS_PER_MONTH - FREE["scheduler"], 0) * PRICES["scheduler"][0], f"{RUNS_PER_MONTH} invocations; 14M free")
        rows_out[name] = c
    details = dict(
        local_regions=local_regions, fixed=fixed, regional=regional, steady_transitions=steady_transitions,
        export_transitions=export_transitions, first_transitions=first["transitions"], steady_measured=steady["transitions"],
        by_state=by_state, event_wru=event_wru, event_bytes=event_bytes, gsis=gsis, export_rru_row=export_rru_row,
        run_wru=run_wru, run_rru=run_rru, steady_wru=steady_wru, steady_rru=steady_rru, alert_wru=alert_wru,
        alert_rru=alert_rru, parquet_row=parquet_row, parquet_row_large=parquet_row_large, collect_run_s=collect_run_s,
        fixed_run_s=fixed_run_s, collect_event_s=collect_event_s, export_s_small=export_s_small, export_s_large=export_s_large,
        emf=len(emf), emf_regional=len(emf_regional), emf_metrics=emf_metrics, log_run=log_run, emf_run=emf_run, local_pairs=len(local_pairs), pairs=pairs,
        regional_names=regional_names, memory=t["memory"],
        arch=arch, alarms=t["alarms"], events_stored=events_stored, rows=rows, counts_at=counts["measured_at"],
        alerts_queued=first["alerts_queued"],
        lambda_at=lam["measured_at"] if lam else None, bench_at=bench["measured_at"] if bench else None,
    )
    return rows_out, details


def page(rows_out, d):
    out = []
    w = out.append
    w("# What iamtrail costs")
    w("")
    w("<!-- Generated by scripts/cost.py from docs/cost-counts.json, docs/cost-lambda*.json and template.yaml: edit the script, not this page. -->")
    w("")
    w(f"The monthly AWS bill of one stack in one account: {REGIONS} regions (those enabled by default), hourly runs, "
      "us-east-1 list prices, at 1,000 and at 100,000 identity events a day. Computed by `scripts/cost.py` from counts "
      "measured on the local stack, not estimated by hand:")
    w("")
    w("```sh")
    w("source scripts/env.sh")
    w("IAMTRAIL_COST_COUNTS=$PWD/docs/cost-counts.json cargo test -p iamtrail-e2e --test cost -- --nocapture")
    w("scripts/setup-venv.sh --build && scripts/package.sh --arch x86_64   # the release bootstraps (docs/artifacts.md)")
    w("IAMTRAIL_ARTIFACTS_FIGURES=$PWD/docs/cost-lambda.json cargo test -p iamtrail-e2e --test artifacts -- --nocapture bootstraps_run")
    w("IAMTRAIL_ARTIFACTS_EVENTS=100000 IAMTRAIL_ARTIFACTS_FIGURES=$PWD/docs/cost-lambda-100k.json \\")
    w("    cargo test -p iamtrail-e2e --test artifacts -- --nocapture bootstraps_run   # the 100k bench (optional input)")
    w(".venv/bin/python scripts/cost.py --write                              # this page")
    w("```")
    w("")
    w(f"Counts measured {d['counts_at']} (tests/cost.rs); bootstrap figures {d['lambda_at'] or 'not measured'}"
      f"{'; 100k bench ' + d['bench_at'] if d['bench_at'] else ''}.")
    w("")
    for name, c in rows_out.items():
        total = sum(v for v, _ in c.values())
        w(f"## {name}: {money(total)} a month")
        w("")
        w("| service | per month | what |")
        w("| --- | ---: | --- |")
        for service, (cost, what) in c.items():
            w(f"| {service} | {money(cost)} | {what} |")
        w(f"| **total** | **{money(total)}** | |")
        w("")
    first_scenario = next(iter(rows_out.values()))
    top = max(first_scenario.items(), key=lambda kv: kv[1][0])
    total = sum(v for v, _ in first_scenario.values())
    w("## What the bill is made of")
    w("")
    w(f"At 1k events a day the largest item is **{top[0]}**, {money(top[1][0])} of {money(total)}. ")
    if top[0].startswith("CloudWatch metrics") and d["regional_names"]:
        per_pair = len(d["regional_names"]) * d["pairs"]
        w(f"The steps publish {len(d['regional_names'])} metrics per region and source ({', '.join(d['regional_names'])}), "
          f"and CloudWatch bills every combination of dimension values as its own custom metric: "
          f"{len(d['regional_names'])} × {d['pairs']} region/source pairs = {per_pair} metrics, "
          f"{money(per_pair * PRICES['cw_metric'][0])} a month, whatever the events. Everything else the stack does costs "
          f"{money(total - top[1][0])} a month at 1k events a day. Publishing those counts without the Region and Source "
          "dimensions (one metric each, the per-region detail staying in the log lines, which Logs Insights can query) and "
          "keeping one per-region metric for the collection-lag alarm would bring the metrics to a few dollars.")
    w("")
    if not d["regional_names"]:
        w("The EMF metrics carry no Region or Source dimension by default (one custom metric per name, whatever the "
          "regions); `DetailedMetrics=true` adds one per region and source, 8 names × 36 pairs = 288 more, about "
          f"{money(288 * PRICES['cw_metric'][0])} a month.")
        w("")
    w("The fast path (Realtime, `RealtimeAlerts`, on by default) is not in these tables: it runs once per identity "
      "event EventBridge delivers, not per run. Its own estimate, about 5 cents a month of usage for an account "
      "with 10,000 STS calls a day, is in [realtime.md](realtime.md#the-rule-pattern-and-what-it-costs); its "
      "four alarms are counted above.")
    w("")
    w("## Measured, derived, assumed")
    w("")
    w("Measured on the local stack (tests/cost.rs: two real executions of the state machine on moto server over the bundled "
      "dataset, every AWS request of the steps counted by the gateway, `steps/local/src/usage.rs`):")
    w("")
    w(f"- **State transitions** (history events `*StateEntered`): {d['first_transitions']} in the first run, "
      f"{d['steady_measured']} in the steady hourly run with {d['local_regions']} regions: {d['fixed']} in states entered once a run, "
      f"{d['regional']} in the Map's per-region states ({json.dumps(d['by_state'])}).")
    w(f"- **DynamoDB request units**, from the items each request wrote or read and DynamoDB's rules (1 KB per write unit, "
      f"4 KB per read unit, half for eventually consistent reads): the steady run uses {d['steady_wru']:.0f} write and "
      f"{d['steady_rru']:.1f} read units; a stored event {d['event_wru']:.2f} write units ({d['event_bytes']:,.0f} bytes an item, "
      f"{d['events_stored']} events); the export reads {d['export_rru_row']:.3f} units a row; an alert {d['alert_wru']:.1f} write "
      f"and {d['alert_rru']:.1f} read units.")
    large = f"; {d['parquet_row_large']:,.0f} bytes at 100k events (the bench's export)" if d["bench_at"] else ""
    w(f"- **Parquet bytes per event**: {d['parquet_row']:,.0f} bytes (the first run's export, {d['rows']} rows){large}.")
    w(f"- **Lambda durations** of the release bootstraps (tests/artifacts.rs, LookupEvents at 2 requests/s): Collect "
      f"{d['collect_run_s']:.1f} s of invocations per steady run at {REGIONS} regions; ListTargets, Aggregate, EvaluateAlerts "
      f"{', '.join(f'{v:.2f} s' for v in d['fixed_run_s'].values())}; Export {d['export_s_small']:.1f} s (demo) and "
      f"{'%.1f s (100k)' % d['export_s_large'] if d['export_s_large'] is not None else 'not measured at 100k (the demo figure is used)'}; "
      f"{d['collect_event_s']*1000:.2f} ms of Collect per stored event. MemorySize from "
      f"template.yaml: {json.dumps(d['memory'])}, {d['arch']}.")
    w(f"- **Logs**: {d['log_run']:,} bytes of log lines (other than EMF) per steady run from the bootstraps' output, "
      f"and {d['emf_run']:,} bytes of EMF lines from the steps.")
    w(f"- **EMF metrics**: {d['emf']} distinct metric name × dimension values in the steps' EMF lines over both runs "
      f"({d['local_regions']} regions), {d['emf_regional']} of them with Region and Source dimensions ({len(d['regional_names'])} "
      f"metric names × {d['local_pairs']} region/source pairs): {d['emf_metrics']:.0f} at {REGIONS} regions ({d['pairs']} pairs).")
    w(f"- **Alarms and dashboards, KMS keys**: counted in template.yaml ({d['alarms']} alarms).")
    w("")
    w("Derived (the formulas in `scripts/cost.py`):")
    w("")
    w(f"- {REGIONS} regions instead of the local stack's {d['local_regions']}: the per-region transitions, Collect durations, "
      f"control-table units, regional metrics and log bytes scale by {REGIONS}/{d['local_regions']}.")
    w(f"- Transitions a month = {RUNS_PER_MONTH} × (fixed + per-region × {REGIONS}/{d['local_regions']}) + "
      f"{DAYS_PER_MONTH:.1f} × the export states of the daily run that exports = {RUNS_PER_MONTH} × {d['steady_transitions']:.1f} + "
      f"{DAYS_PER_MONTH:.1f} × {d['export_transitions']:.0f}.")
    w(f"- Events are read {OVERLAP:.2f} times (each hourly run reads the last hour plus the 15-minute overlap), and each "
      f"write goes to the table and its {d['gsis']} indexes (projection ALL); LookupEvents serves {EVENTS_PER_PAGE} events a page "
      f"at {LOOKUP_RPS} requests/s, so Collect waits 0.5 s per page.")
    w(f"- Storage after 12 months: DynamoDB keeps every event (RetentionDays 0); S3 keeps 90 days in Standard and the rest "
      f"in Glacier Instant Retrieval (the lifecycle default). The {QUERIES} queries run once a day over their default "
      f"{QUERY_DAYS}-day window, scanning at most those days' Parquet bytes (partition pruning; columns not read are not "
      f"scanned, so this is an upper bound), at least 10 MB each.")
    w(f"- Lambda's own platform lines: {PLATFORM_LOG_BYTES} bytes per invocation (not produced locally).")
    w("")
    w(f"Assumed (not measurable locally): the alerts a day (10 and 100 in the tables; the bundled attack dataset raised "
      f"{d['alerts_queued']} in {d['events_stored']} events in the measured run) and one email subscriber; KMS requests two "
      f"per alert (SNS's data key and the subscriber's decrypt).")
    w("")
    ingest_section(w)
    w("## Free tier")
    w("")
    w("The tables apply the free tier that does not expire: 4,000 state transitions, 1M Lambda requests and 400,000 GB-s, "
      "25 GB of DynamoDB storage, 1M SNS publishes and 1,000 emails, 10 custom metrics, 10 alarms, 3 dashboards, 5 GB of logs, "
      "20,000 KMS requests, 14M scheduler invocations a month. They are shared with everything else in the account: if the "
      "account already uses them up, add the line items' full prices (the unit prices below). S3's 12-month free tier is "
      "left out.")
    w("")
    w(f"## Prices (us-east-1, read {READ})")
    w("")
    w("| item | price | source |")
    w("| --- | ---: | --- |")
    for key, (price, what, url) in PRICES.items():
        w(f"| {what} | ${price:.10g} | {url} |")
    w("")
    return "\n".join(out)


def ingest_section(w):
    """The S3 mode per million events read, from docs/ingest-counts.json (docs/ingest.md)."""
    bench = load("ingest-counts.json")
    if bench is None:
        return
    t = template_facts()
    events = bench["events"]
    per_m = 1e6 / events
    usage = bench["usage"]

    def total(field, pred):
        return sum(v[field] for k, v in usage.items() if pred(k.split(" ")))

    memory_mb = t["memory"].get("ingest-objects", 512)
    arch = t["architecture"]
    busy_s = total("duration_ms", lambda k: k[0] == "lambda" and k[2] == "ingest-objects") / 1000
    run_busy_s = total("duration_ms", lambda k: k[0] == "lambda" and k[2] == "ingest-run") / 1000
    invocations = total("requests", lambda k: k[0] == "lambda")
    gb_s = (busy_s + run_busy_s) * memory_mb / 1024
    batches = bench["batches"]
    events_wru = total("write_units", lambda k: k[0] == "dynamodb" and k[2] == "events")
    other_wru = total("write_units", lambda k: k[0] == "dynamodb" and k[2] != "events")
    rru = total("read_units", lambda k: k[0] == "dynamodb")
    wru = events_wru * (1 + t["events_gsis"]) + other_wru
    gets = total("requests", lambda k: k[0] == "s3" and k[1] in ("GetObject", "HeadObject"))
    puts = total("requests", lambda k: k[0] == "s3" and k[1] in ("PutObject", "ListObjectsV2", "CopyObject"))
    lines = [
        ("Lambda", gb_s * PRICES[f"lambda_gb_s_{arch}"][0] + invocations * PRICES["lambda_request"][0],
         f"{invocations} invocations, {busy_s + run_busy_s:.1f} s at {memory_mb} MB = {gb_s:.1f} GB-s"),
        ("Step Functions", 4 * PRICES["sfn_transition"][0] + batches * PRICES["sfn_express_request"][0]
         + busy_s * EXPRESS_MEMORY_GB * PRICES["sfn_express_gb_s"][0],
         f"4 Standard transitions; {batches} Express children of {busy_s / max(batches, 1):.1f} s each"),
        ("DynamoDB writes", wru * PRICES["ddb_wru"][0],
         f"{events_wru:.0f} WRU to the events table × {1 + t['events_gsis']} (table and {t['events_gsis']} indexes), "
         f"{other_wru:.0f} WRU to the control and alerts tables"),
        ("DynamoDB reads", rru * PRICES["ddb_rru"][0], f"{rru:.0f} RRU (ingested marks, history)"),
        ("S3 requests", gets * PRICES["s3_get"][0] + puts * PRICES["s3_put"][0],
         f"{gets} GET, {puts} PUT and LIST"),
    ]
    measured_total = sum(c for _, c, _ in lines)
    w("## The S3 mode, per million events")
    w("")
    w(f"One S3 ingestion of a synthetic organisation trail on the local stack (`iamtrail local ingest-bench`, "
      f"docs/ingest.md): {events:,} events in {bench['objects']:,} log objects, {bench['stored']:,} of them identity "
      f"events stored (the rest other services' calls, read and left), {bench['alerts_queued']:,} alerts queued; "
      f"{batches} batches. Counted by the gateway and priced at the list prices below, without the free tier, "
      f"scaled to one million events read:")
    w("")
    w("| item | per million events | measured |")
    w("| --- | ---: | --- |")
    for name, cost, what in lines:
        w(f"| {name} | {money(cost * per_m)} | {what} |")
    w(f"| **total** | **{money(measured_total * per_m)}** | |")
    w("")
    w("The Lambda and Express durations are the in-process step times on the local stack against moto (DynamoDB and S3 "
      "through a local Python server), an upper bound for the same work against AWS's endpoints. Storage of the stored "
      "events and their export are the scheduled mode's lines above, per stored event.")
    w("")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite docs/cost.md")
    args = parser.parse_args()
    rows_out, details = build()
    text = page(rows_out, details)
    if args.write:
        (ROOT / "docs/cost.md").write_text(text)
        print("wrote docs/cost.md")
    else:
        print(text)


if __name__ == "__main__":
    main()
