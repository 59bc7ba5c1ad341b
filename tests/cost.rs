//! The counts behind docs/cost.md, measured on the local stack: real executions of
//! `statemachine/tracker.asl.json` on moto server, the steps invoked by it through the gateway,
//! every AWS request of the steps proxied by the gateway and counted there
//! (`iamtrail_local::usage`: requests, items, DynamoDB request units, S3 bytes, by table,
//! bucket and function).
//!
//! Two scheduled executions over the bundled dataset (its newest event 24 hours ago):
//! - **first**: the first run, reading CloudTrail's 90-day history, storing the dataset's
//!   events, sending its alerts and exporting every due day;
//! - **steady**: the next hourly run, in which nothing new happened: the fixed cost of every
//!   hourly run (ListTargets, one Collect per region, Aggregate, alerts and export checks).
//!
//! For each: the state transitions (history events `*StateEntered`, by state, counted the way
//! `steps/iamtrail/src/follow.rs` counts them), the Lambda invocations per function, and the
//! usage by service, operation and resource. The checks hold the counts together (each Task
//! entered is one invocation the gateway saw; every stored event is one item written; the
//! bytes uploaded are the Parquet objects' sizes), so a counter that drifts fails here.
//!
//! With `IAMTRAIL_COST_COUNTS=<file>` the test writes the counts as JSON: `scripts/cost.py`
//! turns `docs/cost-counts.json` into docs/cost.md (how to re-measure: docs/cost.md).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use iamtrail::local::LocalStack;
use iamtrail_e2e::*;
use iamtrail_local::UsageReport;
use serde_json::{json, Map, Value};

/// Transitions by state name, from the execution's history.
async fn transitions_by_state(stack: &LocalStack, execution_arn: &str) -> BTreeMap<String, u64> {
    let sfn = stack.sfn();
    let mut by_state = BTreeMap::new();
    let mut token = None;
    loop {
        let page = sfn
            .get_execution_history()
            .execution_arn(execution_arn)
            .set_next_token(token.take())
            .max_results(1000)
            .send()
            .await
            .expect("GetExecutionHistory");
        for event in page.events() {
            if event.r#type().as_str().ends_with("StateEntered") {
                let name = event
                    .state_entered_event_details()
                    .map(|d| d.name().to_string())
                    .unwrap_or_default();
                *by_state.entry(name).or_insert(0) += 1;
            }
        }
        match page.next_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    by_state
}

/// The usage report as JSON, resources named by their role (`events`, `control`, `alerts`
/// tables, `analytics` bucket, `alerts` topic, the function's step name) instead of the
/// stack's names.
fn usage_json(report: &UsageReport, stack: &str) -> Value {
    let prefix = format!("{stack}-");
    let mut out = Map::new();
    for ((service, operation, resource), c) in report {
        let role = resource
            .rsplit([':', '/'])
            .next()
            .unwrap_or("")
            .trim_start_matches(&prefix)
            .split("-analytics")
            .next()
            .unwrap_or("")
            .to_string();
        let role = if service == "s3" && resource.contains("-analytics-") {
            "analytics".to_string()
        } else {
            role
        };
        let entry = out
            .entry(service.clone())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .unwrap()
            .entry(operation.clone())
            .or_insert_with(|| json!({}));
        let mut fields = Map::new();
        fields.insert("requests".into(), json!(c.requests));
        for (k, v, keep) in [
            ("items", json!(c.items), c.items > 0),
            ("write_units", json!(c.write_units), c.write_units > 0.0),
            ("read_units", json!(c.read_units), c.read_units > 0.0),
            ("bytes_in", json!(c.bytes_in), c.bytes_in > 0),
            ("bytes_out", json!(c.bytes_out), c.bytes_out > 0),
            (
                "duration_ms",
                json!(c.duration_ms.round()),
                c.duration_ms > 0.0,
            ),
        ] {
            if keep {
                fields.insert(k.into(), v);
            }
        }
        entry[if role.is_empty() { "-" } else { &role }] = Value::Object(fields);
    }
    Value::Object(out)
}

fn get<'a>(usage: &'a Value, service: &str, operation: &str, resource: &str) -> &'a Value {
    &usage[service][operation][resource]
}

fn n(v: &Value, field: &str) -> f64 {
    v[field].as_f64().unwrap_or(0.0)
}

/// The EMF lines the steps wrote to the metrics file since `from` (bytes): their count, their
/// bytes (log ingestion) and the metrics they define, one per namespace, metric name and
/// dimension values (what CloudWatch bills as one custom metric).
fn emf_since(file: &std::path::Path, from: usize) -> (usize, usize, BTreeSet<String>) {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let new = &text[from.min(text.len())..];
    let mut metrics = BTreeSet::new();
    let mut lines = 0;
    for line in new.lines().filter(|l| !l.trim().is_empty()) {
        lines += 1;
        let doc: Value = serde_json::from_str(line).expect("an EMF line is JSON");
        assert!(
            doc["_aws"]["CloudWatchMetrics"].is_array(),
            "an EMF document: {line}"
        );
        metrics.extend(emf_series(&doc));
    }
    (lines, new.len(), metrics)
}

/// One measured execution.
async fn measure(
    stack: &LocalStack,
    name: &str,
    metrics_file: &std::path::Path,
) -> (Value, iamtrail_core::contract::RunSummary) {
    let metrics_from = std::fs::metadata(metrics_file).map_or(0, |m| m.len() as usize);
    stack.gateway.usage().reset();
    let (result, summary) = run_ok(stack, name, json!({})).await;
    let by_state = transitions_by_state(stack, &result.arn).await;
    let total: u64 = by_state.values().sum();
    assert_eq!(
        total as usize, result.state_transitions,
        "the history's *StateEntered events, by state, add up to the follower's count"
    );
    let usage = usage_json(&stack.gateway.usage().report(), &stack.options.stack_name);

    // Every Task state entered is one Lambda invocation the gateway answered.
    for (state, function) in [
        ("ListTargets", "list-targets"),
        ("Collect", "collect"),
        ("Aggregate", "aggregate"),
        ("EvaluateAlerts", "evaluate-alerts"),
        ("Export", "export"),
    ] {
        let entered = by_state.get(state).copied().unwrap_or(0) as f64;
        let invoked = n(get(&usage, "lambda", "Invoke", function), "requests");
        assert_eq!(
            entered, invoked,
            "{name}: {state} entered vs {function} invoked"
        );
    }
    let (emf_lines, emf_bytes, emf_metrics) = emf_since(metrics_file, metrics_from);
    assert!(emf_lines > 0, "{name}: the steps wrote EMF lines");
    let run = json!({
        "execution": name,
        "emf": {"lines": emf_lines, "bytes": emf_bytes, "metrics": emf_metrics},
        "status": result.status,
        "transitions": result.state_transitions,
        "transitions_by_state": by_state,
        "collect_invocations": result.collect_invocations,
        "regions": summary.regions,
        "events_stored": summary.totals.stored,
        "lookup_requests": summary.totals.requests,
        "alerts_queued": summary.totals.alerts_queued,
        "usage": usage,
    });
    (run, summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cost_counts_of_a_first_and_a_steady_hourly_run() {
    let mut opts = options("cost");
    opts.dataset = Some(dataset_dir());
    // The dataset's newest event 24 hours ago, as the demo; no throttling (it changes the
    // time, not the counts).
    opts.emulator = iamtrail::demo::dataset_emulator(Some(24), None);
    // The steps' EMF lines, as CloudWatch Logs would receive them.
    let metrics_file = std::env::temp_dir().join("iamtrail-e2e/cost-metrics.jsonl");
    let sink = iamtrail_aws::metrics::FileSink::create(&metrics_file).expect("metrics file");
    opts.metrics = Some(Arc::new(sink));
    let stack = start(opts).await;
    let stack_name = stack.options.stack_name.clone();
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");

    let (first, first_summary) =
        measure(&stack, &format!("cost-first-{stamp}"), &metrics_file).await;
    let usage = &first["usage"];
    // Every stored event is one item written to the events table.
    let events_written = get(usage, "dynamodb", "BatchWriteItem", "events");
    assert_eq!(
        n(events_written, "items") as u64,
        first_summary.totals.stored,
        "{events_written}"
    );
    assert!(n(events_written, "write_units") >= n(events_written, "items"));
    assert!(first_summary.totals.alerts_queued > 0);
    // The export: every object written is a Parquet file whose size the gateway counted.
    let keys = objects(&stack, "iam-events/").await;
    assert!(!keys.is_empty(), "the first run exports");
    let mut parquet_bytes = 0u64;
    let mut parquet_rows = 0u64;
    for key in &keys {
        parquet_bytes += get_object(&stack, key).await.len() as u64;
        parquet_rows += head_metadata(&stack, key).await["rows"]
            .parse::<u64>()
            .unwrap();
    }
    let put = get(usage, "s3", "PutObject", "analytics");
    let uploaded = n(put, "bytes_in") as u64
        + n(get(usage, "s3", "UploadPart", "analytics"), "bytes_in") as u64;
    assert_eq!(
        uploaded, parquet_bytes,
        "bytes uploaded = the Parquet objects' sizes"
    );
    assert_eq!(parquet_rows, first_summary.totals.stored);
    let sent = n(get(usage, "sns", "Publish", "alerts"), "requests") as u64;
    assert_eq!(
        sent, first_summary.totals.alerts_queued,
        "one Publish per alert"
    );

    let (steady, steady_summary) =
        measure(&stack, &format!("cost-steady-{stamp}"), &metrics_file).await;
    assert_eq!(
        steady_summary.totals.stored, 0,
        "nothing new in the steady run"
    );
    let su = &steady["usage"];
    assert!(
        get(su, "dynamodb", "BatchWriteItem", "events").is_null(),
        "the steady run writes no event: {su}"
    );
    assert!(get(su, "sns", "Publish", "alerts").is_null());

    let counts = json!({
        "about": "Counts measured on the local stack by tests/cost.rs (docs/cost.md); the input of scripts/cost.py.",
        "measured_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "stack": stack_name,
        "dataset": "datasets/invictus-aws-2023 (newest event 24 hours before the run)",
        "export": {"files": keys.len(), "rows": parquet_rows, "parquet_bytes": parquet_bytes},
        "runs": {"first": first, "steady": steady},
    });
    println!(
        "cost counts: first run {} transitions ({} Collect), steady run {} transitions ({} Collect); {} events, {} Parquet bytes in {} files",
        first["transitions"],
        first["collect_invocations"],
        steady["transitions"],
        steady["collect_invocations"],
        first_summary.totals.stored,
        parquet_bytes,
        keys.len()
    );
    println!(
        "steady transitions by state: {}",
        steady["transitions_by_state"]
    );
    if let Some(path) = std::env::var_os("IAMTRAIL_COST_COUNTS") {
        let text = serde_json::to_string_pretty(&counts).unwrap() + "\n";
        std::fs::write(&path, text).expect("write the counts");
        println!("wrote {}", std::path::Path::new(&path).display());
    }
    stack.stop().await;
}
