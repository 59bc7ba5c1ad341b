//! The steps' EMF metrics on a local stack (docs/metrics.md): every line of real executions
//! over the bundled dataset is validated against the EMF specification's JSON schema
//! (`fixtures/emf-schema.json`, copied from the CloudWatch User Guide) and against the
//! specification's rules the schema cannot express; every metric of the contract appears
//! with its unit and dimensions; and a run in which one region fails is `partial` in its run
//! record with `PartialRun` 1 — the metric the partial-run alarm watches, which CloudWatch
//! cannot evaluate locally — where the healthy run before it wrote 0.
//!
//! `cargo test -p iamtrail-e2e --test metrics -- --nocapture` prints the lines of one run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use iamtrail::demo::dataset_emulator;
use iamtrail_aws::metrics::FileSink;
use iamtrail_core::metrics::names;
use iamtrail_e2e::*;
use serde_json::{json, Value};

/// Every metric of the contract: name, unit, labels (members of its line; its dimensions too
/// with DETAILED_METRICS=true, which this test leaves off: every metric is published under
/// the empty dimension set only).
const CONTRACT: &[(&str, &str, &[&str])] = &[
    (names::EVENTS_FETCHED, "Count", &["Region", "Source"]),
    (names::EVENTS_STORED, "Count", &["Region", "Source"]),
    (names::EVENTS_FILTERED, "Count", &["Region", "Source"]),
    (names::EVENTS_MALFORMED, "Count", &["Region", "Source"]),
    (names::LOOKUP_REQUESTS, "Count", &["Region", "Source"]),
    (names::LOOKUP_THROTTLES, "Count", &["Region", "Source"]),
    (names::ALERTS_QUEUED, "Count", &["Region", "Source"]),
    (names::PARTIAL_RUN, "Count", &[]),
    (names::SOURCES_FAILED, "Count", &[]),
    (names::RUN_EVENTS_STORED, "Count", &[]),
    (names::MAX_COLLECTION_LAG_SECONDS, "Seconds", &[]),
    (
        names::COLLECTION_LAG_SECONDS,
        "Seconds",
        &["Region", "Source"],
    ),
    (names::EXPORT_LAG_DAYS, "Count", &[]),
    (names::DIRTY_DATES, "Count", &[]),
    (names::ALERTS_SENT, "Count", &[]),
    (names::ALERTS_FAILED, "Count", &[]),
    (names::ALERTS_FAILED_FOR_GOOD, "Count", &[]),
    (names::ALERTS_PENDING, "Count", &[]),
    (names::OLDEST_PENDING_ALERT_AGE_SECONDS, "Seconds", &[]),
    (names::EXPORT_ROWS, "Count", &[]),
    (names::EXPORT_FILES, "Count", &[]),
];

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures/emf-schema.json"))
        .expect("the EMF schema fixture");
    let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::draft7::new(&schema).expect("the EMF schema compiles")
}

/// The specification's rules that its schema leaves out: every referenced dimension is a root
/// member with a non-blank string of at most 1024 characters; every metric is a root member
/// holding a number (or at most 100 numbers); at most 100 metrics and 30 dimension keys per
/// directive; a document is one line of at most 256 KB.
fn spec_violations(line: &str, doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if line.len() > 256 * 1024 {
        out.push(format!("{} bytes", line.len()));
    }
    for directive in doc["_aws"]["CloudWatchMetrics"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for set in directive["Dimensions"].as_array().into_iter().flatten() {
            let set = set.as_array().unwrap();
            if set.len() > 30 {
                out.push("more than 30 dimension keys".into());
            }
            for key in set {
                match doc.get(key.as_str().unwrap()) {
                    Some(Value::String(v)) if !v.trim().is_empty() && v.chars().count() <= 1024 => {
                    }
                    other => out.push(format!("dimension {key}: {other:?}")),
                }
            }
        }
        let metrics = directive["Metrics"].as_array().unwrap();
        if metrics.len() > 100 {
            out.push(format!("{} metrics", metrics.len()));
        }
        for m in metrics {
            let name = m["Name"].as_str().unwrap();
            match doc.get(name) {
                Some(Value::Number(_)) => {}
                Some(Value::Array(a)) if a.len() <= 100 && a.iter().all(Value::is_number) => {}
                other => out.push(format!("metric {name}: {other:?}")),
            }
        }
    }
    out
}

/// Reads the sink's file: every line must pass the schema and the rules.
fn read_lines(path: &std::path::Path, validator: &jsonschema::Validator) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("metrics file");
    let mut docs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let doc: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line {}: not one JSON object ({e}): {line}", i + 1));
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "line {}: {errors:?}\n{line}", i + 1);
        let broken = spec_violations(line, &doc);
        assert!(broken.is_empty(), "line {}: {broken:?}\n{line}", i + 1);
        docs.push(doc);
    }
    docs
}

/// The documents that hold a metric.
fn with<'a>(docs: &'a [Value], metric: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d.get(metric).is_some()).collect()
}

fn run_doc(docs: &[Value]) -> &Value {
    let runs = with(docs, names::PARTIAL_RUN);
    assert_eq!(runs.len(), 1, "one run document per execution");
    runs[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn emf_lines_of_local_runs_follow_the_schema_and_a_failing_region_sets_partial_run() {
    let validator = schema();
    // The schema is not vacuous: a document without a namespace or with a bad unit fails it.
    assert!(
        !validator.is_valid(&json!({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [
        {"Dimensions": [[]], "Metrics": [{"Name": "A"}]}]}, "A": 1}))
    );
    assert!(!validator.is_valid(&json!({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [
        {"Namespace": "N", "Dimensions": [[]], "Metrics": [{"Name": "A", "Unit": "Days"}]}]}, "A": 1})));
    assert!(!spec_violations(
        "",
        &json!({"_aws": {"CloudWatchMetrics": [
        {"Namespace": "N", "Dimensions": [["Region"]], "Metrics": [{"Name": "A"}]}]}, "A": "1"})
    )
    .is_empty());

    let dir = std::env::temp_dir().join("iamtrail-e2e");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("metrics-{}.jsonl", std::process::id()));
    let mut options = options("metrics");
    options.dataset = Some(dataset_dir());
    options.emulator = dataset_emulator(Some(24), None);
    options.metrics = Some(Arc::new(FileSink::create(&path).unwrap()));
    let stack = start(options).await;

    // A healthy run: the demo's.
    let (result, summary) = run_ok(&stack, "healthy", json!({})).await;
    assert_eq!(summary.status, "succeeded");
    let docs = read_lines(&path, &validator);
    println!(
        "healthy run: {} EMF lines ({} transitions, {} Collect invocations):",
        docs.len(),
        result.state_transitions,
        result.collect_invocations
    );
    for doc in &docs {
        println!("{doc}");
    }
    // Collect: one line per region/source, summing to the run's totals.
    let collect = with(&docs, names::EVENTS_STORED);
    let pairs: BTreeSet<(String, String)> = collect
        .iter()
        .map(|d| {
            (
                d["Region"].as_str().unwrap().into(),
                d["Source"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(pairs.len(), summary.targets.len(), "every region/source");
    let sum = |name: &str| {
        collect
            .iter()
            .map(|d| d[name].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(sum(names::EVENTS_STORED), summary.totals.stored);
    assert_eq!(sum(names::EVENTS_FETCHED), summary.totals.fetched);
    assert_eq!(sum(names::EVENTS_FILTERED), summary.totals.filtered());
    assert_eq!(sum(names::LOOKUP_REQUESTS), summary.totals.requests);
    assert_eq!(sum(names::ALERTS_QUEUED), summary.totals.alerts_queued);
    let run = run_doc(&docs);
    assert_eq!(run[names::PARTIAL_RUN], 0);
    assert_eq!(run[names::SOURCES_FAILED], 0);
    assert_eq!(run[names::RUN_EVENTS_STORED], summary.totals.stored);
    assert_eq!(
        with(&docs, names::COLLECTION_LAG_SECONDS).len(),
        summary.targets.len(),
        "a lag per region/source"
    );
    let alerts = with(&docs, names::ALERTS_SENT);
    assert_eq!(
        alerts
            .iter()
            .map(|d| d[names::ALERTS_SENT].as_u64().unwrap())
            .sum::<u64>(),
        12
    );
    assert_eq!(alerts.last().unwrap()[names::ALERTS_PENDING], 0);
    let export = result.output.as_ref().unwrap()["export"].clone();
    let rows: u64 = with(&docs, names::EXPORT_ROWS)
        .iter()
        .map(|d| d[names::EXPORT_ROWS].as_u64().unwrap())
        .sum();
    assert_eq!(rows, export["rows"].as_u64().unwrap());
    let healthy_lines = docs.len();

    // CloudTrail fails in eu-west-1: its sources fail, the run is partial.
    stack.emulator.set_fail_regions(vec!["eu-west-1".into()]);
    let (_, summary) = run_ok(&stack, "failing", json!({})).await;
    assert_eq!(summary.status, "partial");
    let record = control_item(&stack, "run#failing")
        .await
        .expect("run record");
    assert_eq!(attr(&record, "status"), Some("partial"));
    let docs = read_lines(&path, &validator);
    let docs = &docs[healthy_lines..];
    println!("failing run: {} EMF lines; the run's:", docs.len());
    let run = run_doc(docs);
    println!("{run}");
    // The metric the partial-run alarm watches.
    assert_eq!(run[names::PARTIAL_RUN], 1);
    assert_eq!(
        run[names::SOURCES_FAILED],
        3,
        "eu-west-1 sts, signin and root"
    );
    // The failed region's checkpoints did not move: they are the oldest, and they count.
    let lag = |source: &str| {
        with(docs, names::COLLECTION_LAG_SECONDS)
            .into_iter()
            .find(|d| d["Region"] == "eu-west-1" && d["Source"] == source)
            .map(|d| d[names::COLLECTION_LAG_SECONDS].as_i64().unwrap())
            .expect("the failed region's lag")
    };
    let max = run[names::MAX_COLLECTION_LAG_SECONDS].as_i64().unwrap();
    assert_eq!(max, lag("sts").max(lag("signin")));
    let healthy_max = with(docs, names::COLLECTION_LAG_SECONDS)
        .into_iter()
        .filter(|d| d["Region"] != "eu-west-1")
        .map(|d| d[names::COLLECTION_LAG_SECONDS].as_i64().unwrap())
        .max()
        .unwrap();
    assert!(
        max > healthy_max,
        "the failed region lags most: {max} s, the others at most {healthy_max} s"
    );
    // Both runs together wrote every metric of the contract (`ExportLagDays` from the second:
    // the first export runs after the first Aggregate), with its unit and dimensions, under
    // the stack's namespace.
    let all = read_lines(&path, &validator);
    let namespace = format!("IamTrail/{}", stack.options.stack_name);
    let mut seen: BTreeMap<&str, (String, Vec<String>)> = BTreeMap::new();
    for doc in &all {
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], namespace.as_str());
        assert_eq!(
            directive["Dimensions"],
            json!([[]]),
            "one custom metric per name by default"
        );
        let set: Vec<String> = ["Region", "Source"]
            .iter()
            .filter(|k| doc.get(**k).is_some())
            .map(|k| k.to_string())
            .collect();
        for m in directive["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            let (_, unit, _) = CONTRACT
                .iter()
                .find(|(n, _, _)| *n == name)
                .unwrap_or_else(|| panic!("{name} is not in the contract"));
            assert!(!unit.is_empty());
            seen.insert(name, (m["Unit"].as_str().unwrap().into(), set.clone()));
        }
    }
    for (name, unit, dims) in CONTRACT {
        let (u, d) = seen
            .get(name)
            .unwrap_or_else(|| panic!("{name} was not written by the two runs"));
        assert_eq!(
            (u.as_str(), d),
            (*unit, &dims.iter().map(|s| s.to_string()).collect()),
            "{name}"
        );
    }
    std::fs::remove_file(&path).ok();
    stack.stop().await;
}
