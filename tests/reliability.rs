//! The reliability promises of docs/reliability.md, end to end on the local stack (moto server,
//! the gateway's fault plan, the CloudTrail emulator), through real state machine executions:
//!
//! - two scheduled executions at once: the run lease skips the second, so each region is read
//!   once (the emulator's request count equals one execution's); a backfill beside a scheduled
//!   run shares the region's 2 requests/s quota through the region lease (no throttling);
//! - a region failing over a UTC midnight holds the day back from the export until it has
//!   recovered, and the day's Parquet file then holds exactly that date's items;
//! - a multipart export that dies between two parts leaves the previous file in place;
//! - an item DynamoDB rejects does not block its source;
//! - slow SNS: partial delivery on the time budget, and a new CRITICAL alert goes out before old
//!   failing ones are retried.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration as Span, NaiveDate, Utc};
use iamtrail::local::{ExecutionResult, LocalOptions, LocalStack};
use iamtrail_core::contract::RunSummary;
use iamtrail_e2e::*;
use iamtrail_local::EmulatorOptions;
use serde_json::{json, Value};

// ---- Helpers ----------------------------------------------------------------------------------

/// `2026-12-01T10:00:00Z`, as CloudTrail writes `eventTime`.
fn cloudtrail_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn event_ids(records: &[Value]) -> BTreeSet<String> {
    records
        .iter()
        .map(|r| r["eventID"].as_str().unwrap().to_string())
        .collect()
}

/// `n` records made from the bundled dataset's real records of the tracked sources (IAM reads
/// and STS calls, no AWS-service noise, none an alert rule fires on), each with a new event id
/// and time: the newest at `newest`, one every `spacing` before it. Every tenth record is an STS
/// call in eu-west-1; all the others are in us-east-1, so that us-east-1 needs many pages.
fn generated_records(prefix: &str, n: usize, newest: DateTime<Utc>, spacing: Span) -> Vec<Value> {
    let (kept, _, _) = expected_ids(&dataset_dir());
    let mut iam = Vec::new();
    let mut sts = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dataset_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let doc: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        for r in doc["Records"].as_array().unwrap() {
            if !kept.contains(r["eventID"].as_str().unwrap()) || r["awsRegion"] != "us-east-1" {
                continue;
            }
            match r["eventSource"].as_str() {
                Some("iam.amazonaws.com") if r["readOnly"] == true => iam.push(r.clone()),
                Some("sts.amazonaws.com") => sts.push(r.clone()),
                _ => {}
            }
        }
    }
    assert!(
        iam.len() > 100 && sts.len() > 10,
        "{} {}",
        iam.len(),
        sts.len()
    );
    (0..n)
        .map(|i| {
            let mut r = if i % 10 == 9 {
                let mut r = sts[i % sts.len()].clone();
                r["awsRegion"] = json!("eu-west-1");
                r
            } else if i % 3 == 0 {
                sts[i % sts.len()].clone()
            } else {
                iam[i % iam.len()].clone()
            };
            r["eventID"] = json!(format!("{prefix}-{i:05}"));
            r["eventTime"] = json!(cloudtrail_time(newest - spacing * i as i32));
            r
        })
        .collect()
}

/// A stack whose CloudTrail emulator throttles at AWS's 2 requests/s per region, with Collect
/// pacing itself at the same 2 requests/s (the production default).
fn quota_options(name: &str) -> LocalOptions {
    let mut options = options(name);
    options.emulator = EmulatorOptions {
        throttle_rps: Some(2.0),
        ..Default::default()
    };
    options
        .settings
        .insert("LOOKUP_RATE_PER_SECOND".into(), "2".into());
    options
}

/// The emulator's LookupEvents requests in `region`, sampled every 50 ms until `done` is set.
async fn sample_requests(
    stack: &LocalStack,
    region: &str,
    done: &AtomicBool,
) -> Vec<(Instant, u64)> {
    let mut samples = Vec::new();
    loop {
        let finished = done.load(Ordering::SeqCst);
        let n = stack
            .cloudtrail_stats()
            .per_region
            .get(region)
            .map_or(0, |s| s.requests);
        samples.push((Instant::now(), n));
        if finished {
            return samples;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The most requests the samples saw inside any one second.
fn max_per_second(samples: &[(Instant, u64)]) -> u64 {
    let mut max = 0;
    for (i, (t0, n0)) in samples.iter().enumerate() {
        let last = samples[i..]
            .iter()
            .take_while(|(t, _)| t.duration_since(*t0) <= Duration::from_secs(1))
            .last()
            .map_or(*n0, |(_, n)| *n);
        max = max.max(last - n0);
    }
    max
}

/// Runs an execution to its end (whatever its status).
async fn run(stack: &LocalStack, name: &str, input: &Value) -> ExecutionResult {
    stack
        .run_execution(name, input, |_| {})
        .await
        .unwrap_or_else(|e| panic!("execution {name}: {e:#}"))
}

fn summary_of(result: &ExecutionResult) -> RunSummary {
    serde_json::from_value(result.output.clone().expect("output")).expect("run summary")
}

/// The `rows` and `exported-by` metadata of an object.
async fn object_metadata(stack: &LocalStack, key: &str) -> (Option<String>, Option<String>) {
    let metadata = head_metadata(stack, key).await;
    (
        metadata.get("rows").cloned(),
        metadata.get("exported-by").cloned(),
    )
}

/// The export key of a date (docs/export.md: no leading zeros).
fn export_key(date: NaiveDate) -> String {
    format!(
        "iam-events/year={}/month={}/day={}/events.parquet",
        date.format("%Y"),
        date.format("%-m"),
        date.format("%-d")
    )
}

/// Downloads a Parquet object and reads its `event_id` column with pyarrow (an independent
/// reader, from PyPI, in the project venv): the ids in file order.
async fn parquet_event_ids(stack: &LocalStack, key: &str) -> Vec<String> {
    let body = get_object(stack, key).await;
    let dir = std::env::temp_dir().join(format!("iamtrail-reliability-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!(
        "{}-{}.parquet",
        stack.options.stack_name,
        key.replace('/', "_")
    ));
    std::fs::write(&path, &body).unwrap();
    let ids = pyarrow_event_ids(&path);
    std::fs::remove_file(&path).ok();
    ids
}

fn pyarrow_event_ids(path: &Path) -> Vec<String> {
    let python = repo_root().join(".venv/bin/python");
    let script = "import json, sys, pyarrow.parquet as pq\n\
                  t = pq.read_table(sys.argv[1])\n\
                  print(json.dumps(t.column('event_id').to_pylist()))";
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()
        .expect("run pyarrow");
    assert!(
        out.status.success(),
        "pyarrow failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The events table's items of one date (a consistent Query, as Export reads them).
async fn items_of_date(stack: &LocalStack, date: NaiveDate) -> Vec<Item> {
    let mut items = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let out = stack
            .dynamodb()
            .query()
            .table_name(&stack.settings().events_table)
            .key_condition_expression("event_date = :d")
            .expression_attribute_values(":d", AttributeValue::S(date.to_string()))
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .expect("query");
        items.extend(out.items().iter().cloned());
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return items,
        }
    }
}

/// A source's stored checkpoint.
async fn checkpoint(stack: &LocalStack, key: &str) -> Option<DateTime<Utc>> {
    let item = control_item(stack, key).await?;
    let text = attr(&item, "last_processed_timestamp")?;
    Some(
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc),
    )
}

/// The dates marked dirty in the control table (`export#dirty`).
async fn dirty_dates(stack: &LocalStack) -> BTreeSet<String> {
    control_item(stack, "export#dirty")
        .await
        .map(|item| {
            item.keys()
                .filter(|k| k.len() == 10 && k.as_bytes()[4] == b'-')
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// The run summary Aggregate stored for a run (`run#<name>`), also there when the execution
/// failed after Aggregate.
async fn stored_summary(stack: &LocalStack, run: &str) -> RunSummary {
    let item = control_item(stack, &format!("run#{run}"))
        .await
        .unwrap_or_else(|| panic!("run record of {run}"));
    serde_json::from_str(attr(&item, "summary").unwrap()).unwrap()
}

// ---- 1. Overlapping executions ------------------------------------------------------------

/// What one stack measured.
#[derive(Debug, Default)]
struct Measured {
    requests: u64,
    us_east_1: u64,
    throttled: u64,
    max_per_second: u64,
    seconds: f64,
}

impl Measured {
    fn of(stack: &LocalStack, samples: &[(Instant, u64)], seconds: f64) -> Measured {
        let stats = stack.cloudtrail_stats();
        Measured {
            requests: stats.requests,
            us_east_1: stats.per_region["us-east-1"].requests,
            throttled: stats.throttled,
            max_per_second: max_per_second(samples),
            seconds,
        }
    }
}

/// One scheduled execution over `records` on a fresh stack: the reference figures.
async fn one_execution(name: &str, records: &[Value]) -> Measured {
    let stack = start(quota_options(name)).await;
    stack.emulator.add_records(records.to_vec());
    let done = AtomicBool::new(false);
    let (result, samples) = tokio::join!(
        async {
            let r = run(&stack, "one", &json!({})).await;
            done.store(true, Ordering::SeqCst);
            r
        },
        sample_requests(&stack, "us-east-1", &done)
    );
    assert_eq!(
        result.status, "SUCCEEDED",
        "{:?} {:?}",
        result.error, result.cause
    );
    let summary = summary_of(&result);
    assert_eq!(summary.status, "succeeded", "{:?}", summary.errors);
    let stored = ids(&scan_all(&stack.dynamodb(), &stack.settings().events_table).await);
    assert_eq!(
        stored,
        event_ids(records),
        "one execution stores every event once"
    );
    let measured = Measured::of(&stack, &samples, result.duration.as_secs_f64());
    stack.stop().await;
    measured
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_executions_read_each_region_once() {
    // 3,000 events over the last 34 hours, newest an hour ago: 2,700 in us-east-1 (IAM and
    // STS), 300 STS calls in eu-west-1. The emulator and Collect both at 2 requests/s.
    const EVENTS: usize = 3000;
    let records = generated_records(
        "overlap",
        EVENTS,
        Utc::now() - Span::hours(1),
        Span::seconds(40),
    );
    let expected = event_ids(&records);
    assert_eq!(expected.len(), EVENTS);

    // Two stacks at once, each with its own emulator and quota: the same data read by one
    // scheduled execution, and by two scheduled executions started together.
    let two_scheduled = async {
        let stack = start(quota_options("overlap-two")).await;
        stack.emulator.add_records(records.clone());
        let scheduled = json!({});
        let (a, b) = tokio::join!(
            run(&stack, "scheduled-a", &scheduled),
            run(&stack, "scheduled-b", &scheduled)
        );
        for r in [&a, &b] {
            assert_eq!(
                r.status, "SUCCEEDED",
                "{}: {:?} {:?}",
                r.name, r.error, r.cause
            );
        }
        let status = |r: &ExecutionResult| r.output.as_ref().unwrap()["status"].clone();
        let (skipped, ran) = match (status(&a).as_str(), status(&b).as_str()) {
            (Some("skipped"), Some("succeeded")) => (a, b),
            (Some("succeeded"), Some("skipped")) => (b, a),
            other => panic!(
                "one execution must be skipped and the other succeed, got {other:?}: {:?} / {:?}",
                a.output, b.output
            ),
        };
        let out = skipped.output.as_ref().unwrap();
        println!(
            "skipped execution {}: {out} ({} state transitions, {:.1}s)",
            skipped.name,
            skipped.state_transitions,
            skipped.duration.as_secs_f64()
        );
        assert_eq!(out["run_id"], skipped.name.as_str());
        let reason = out["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("execution {} is still running", ran.name)),
            "{reason}"
        );
        assert_eq!(
            out.as_object().unwrap().len(),
            3,
            "the Skipped state's output is {{run_id, status, reason}}: {out}"
        );
        assert_eq!(
            skipped.collect_invocations, 0,
            "the skipped execution collected nothing"
        );
        assert_eq!(skipped.state_transitions, 3, "ListTargets, Route, Skipped");
        let summary = summary_of(&ran);
        assert_eq!(summary.status, "succeeded", "{:?}", summary.errors);
        assert_eq!(summary.totals.stored, EVENTS as u64);
        let stored = ids(&scan_all(&stack.dynamodb(), &stack.settings().events_table).await);
        assert_eq!(stored, expected, "every event stored once");
        assert!(
            control_item(&stack, "lease#run").await.is_none(),
            "Aggregate gave the run lease back"
        );
        let measured = Measured::of(&stack, &[], ran.duration.as_secs_f64());
        stack.stop().await;
        measured
    };

    let (one, two) = tokio::join!(one_execution("overlap-one", &records), two_scheduled);
    println!(
        "requests: one execution {}, two executions together {}",
        one.requests, two.requests
    );
    println!(
        "  us-east-1: one execution {}, two together {}; throttled {} / {}; {:.1}s / {:.1}s",
        one.us_east_1, two.us_east_1, one.throttled, two.throttled, one.seconds, two.seconds
    );
    // Same data, same windows, same slicing: the skipped execution made no request at all. The
    // only slack: a ThrottlingException the emulator might answer when scheduling jitter brings
    // two of Collect's requests (paced 0.5 s apart) closer than its 2/s bucket allows, which
    // costs one retried request each, in either stack.
    assert!(
        two.requests.abs_diff(one.requests) <= 2,
        "two scheduled executions together read each region once: {} requests vs {} for one",
        two.requests,
        one.requests
    );
    assert!(
        two.throttled <= 2 && one.throttled <= 2,
        "throttled: {} / {}",
        one.throttled,
        two.throttled
    );
}

/// A backfill over the whole range started together with a (first) scheduled run: both read
/// the range, but the region lease makes them take turns on us-east-1, so the region's
/// 2 requests/s quota is never shared: nothing is throttled and no request is spent on retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backfill_beside_a_scheduled_run_shares_the_region_quota() {
    // Half the data of the test above, to keep the two reads (one after the other) short.
    const EVENTS: usize = 1500;
    let newest = Utc::now() - Span::hours(1);
    let spacing = Span::seconds(40);
    let records = generated_records("beside", EVENTS, newest, spacing);
    let expected = event_ids(&records);
    let oldest = newest - spacing * (EVENTS as i32 - 1);

    let beside = async {
        let stack = start(quota_options("beside")).await;
        stack.emulator.add_records(records.clone());
        let backfill = json!({
            "start": cloudtrail_time(oldest - Span::minutes(10)),
            "end": cloudtrail_time(newest + Span::minutes(10)),
        });
        let scheduled_input = json!({});
        let done = AtomicBool::new(false);
        let ((scheduled, backfilled), samples) = tokio::join!(
            async {
                let r = tokio::join!(
                    run(&stack, "beside-scheduled", &scheduled_input),
                    run(&stack, "beside-backfill", &backfill)
                );
                done.store(true, Ordering::SeqCst);
                r
            },
            sample_requests(&stack, "us-east-1", &done)
        );
        let mut collect_invocations = 0;
        for r in [&scheduled, &backfilled] {
            assert_eq!(
                r.status, "SUCCEEDED",
                "{}: {:?} {:?}",
                r.name, r.error, r.cause
            );
            let summary = summary_of(r);
            assert_eq!(
                summary.status, "succeeded",
                "{}: {:?}",
                r.name, summary.errors
            );
            assert_eq!(
                summary.totals.throttled, 0,
                "{}: no request was throttled",
                r.name
            );
            assert_eq!(
                summary.totals.stored, EVENTS as u64,
                "{} read the whole range",
                r.name
            );
            collect_invocations += r.collect_invocations;
        }
        let stored = ids(&scan_all(&stack.dynamodb(), &stack.settings().events_table).await);
        assert_eq!(stored, expected, "every event stored once");
        println!("Collect invocations of both executions: {collect_invocations}");
        let measured = Measured::of(
            &stack,
            &samples,
            scheduled
                .duration
                .as_secs_f64()
                .max(backfilled.duration.as_secs_f64()),
        );
        stack.stop().await;
        measured
    };

    let (one, beside) = tokio::join!(one_execution("beside-one", &records), beside);
    println!(
        "requests: one scheduled execution {} ({} in us-east-1, at most {} in any second sampled, {:.1}s)",
        one.requests, one.us_east_1, one.max_per_second, one.seconds
    );
    println!(
        "backfill beside a scheduled run: {} requests ({} in us-east-1, {:.2}x one execution's), \
         {} throttled, at most {} us-east-1 requests in any second sampled, {:.1}s",
        beside.requests,
        beside.us_east_1,
        beside.requests as f64 / one.requests as f64,
        beside.throttled,
        beside.max_per_second,
        beside.seconds
    );
    assert_eq!(
        beside.throttled, 0,
        "the backfill and the scheduled run never share the region's quota"
    );
    // Each reads the range once (the backfill by definition, the first scheduled run from its
    // 90-day start): never more than the two reads, nothing spent on throttled retries.
    assert!(
        beside.requests <= 2 * one.requests + 2,
        "{} requests: no more than the two reads ({} each)",
        beside.requests,
        one.requests
    );
    // Collect paces requests 0.5 s apart; a sampled second can catch a third start at its edge.
    // Two collectors side by side would show 4.
    assert!(
        beside.max_per_second <= 3,
        "at most 2 requests/s (+1 for where the sampled second falls): {}",
        beside.max_per_second
    );
}

// ---- 2. A failed region over a UTC midnight -------------------------------------------------

/// Stores a source's checkpoint by hand (test set-up: the state a run that ended at `t` left).
async fn set_checkpoint(stack: &LocalStack, key: &str, t: DateTime<Utc>) {
    stack
        .dynamodb()
        .put_item()
        .table_name(&stack.settings().control_table)
        .item("region", AttributeValue::S(key.to_string()))
        .item(
            "last_processed_timestamp",
            AttributeValue::S(cloudtrail_time(t)),
        )
        .item("processing_status", AttributeValue::S("active".into()))
        .send()
        .await
        .expect("put checkpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_region_on_a_day_boundary_then_recovery() {
    let mut options = options("boundary");
    // A three-day first window (and first export) instead of 90: the same rules, less to read.
    options
        .settings
        .insert("INITIAL_LOOKBACK_DAYS".into(), "3".into());
    // eu-west-1's CloudTrail fails (HTTP 500) during the first run.
    options.emulator.fail_regions = vec!["eu-west-1".into()];
    let stack = start(options).await;

    // The steps run on the real clock, so the midnight is one at least two hours past: after a
    // run, every healthy checkpoint (now - 5 min settle) is well past it + 15 min overlap +
    // 5 min settle.
    let now = Utc::now();
    let midnight = (now - Span::hours(2))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let day_before = midnight.date_naive().pred_opt().unwrap();
    let mut records = Vec::new();
    let mut expected_before = BTreeSet::new();
    for region in ["us-east-1", "eu-west-1"] {
        for i in 0..5 {
            let id = format!("{region}-before-{i}");
            records.push(record(
                &id,
                midnight - Span::minutes(25 - 5 * i),
                "sts.amazonaws.com",
                "AssumeRole",
                region,
            ));
            expected_before.insert(id);
            records.push(record(
                &format!("{region}-after-{i}"),
                midnight + Span::minutes(5 + 5 * i),
                "sts.amazonaws.com",
                "AssumeRole",
                region,
            ));
        }
    }
    stack.emulator.add_records(records);
    // eu-west-1's last good run ended an hour before the midnight: its three sources' stored
    // checkpoints say so (every other region/source has none yet: its first run reads 3 days).
    let behind = midnight - Span::hours(1);
    for key in ["eu-west-1-sts", "eu-west-1-signin", "eu-west-1-root"] {
        set_checkpoint(&stack, key, behind).await;
    }

    // Run 1: eu-west-1 fails; the others complete, us-east-1 stores both days.
    let first = run(&stack, "boundary-1", &json!({})).await;
    assert_eq!(
        first.status, "SUCCEEDED",
        "{:?} {:?}",
        first.error, first.cause
    );
    let summary = summary_of(&first);
    println!(
        "run 1 ({:.1}s): status {}, errors {:?}, export dates {:?}",
        first.duration.as_secs_f64(),
        summary.status,
        summary
            .errors
            .iter()
            .map(|e| format!("{} {:?}", e.region, e.source))
            .collect::<Vec<_>>(),
        summary.export_dates
    );
    assert_eq!(summary.status, "partial");
    assert!(
        !summary.errors.is_empty() && summary.errors.iter().all(|e| e.region == "eu-west-1"),
        "{:?}",
        summary.errors
    );
    let stored = ids(&scan_all(&stack.dynamodb(), &stack.settings().events_table).await);
    assert_eq!(
        stored.len(),
        10,
        "us-east-1's events of both days: {stored:?}"
    );
    assert!(stored.iter().all(|id| id.starts_with("us-east-1-")));
    for key in ["eu-west-1-sts", "eu-west-1-signin", "eu-west-1-root"] {
        assert_eq!(
            checkpoint(&stack, key).await,
            Some(behind),
            "{key}: a failed source's checkpoint stays"
        );
    }
    // eu-west-1's stored checkpoint (an hour before midnight) decides: the newest due day is
    // the one before the day before midnight. That day is neither due nor exported.
    let last_due = day_before.pred_opt().unwrap();
    assert_eq!(
        summary.export_dates.last(),
        Some(&last_due),
        "due up to the last day eu-west-1's stored checkpoint has passed"
    );
    assert!(!summary.export_dates.contains(&day_before));
    assert!(
        objects(&stack, "iam-events/").await.is_empty(),
        "nothing exported: the due days have no events, the day before midnight is held back"
    );
    assert!(
        control_item(&stack, &format!("export#{day_before}"))
            .await
            .is_none(),
        "no export record for {day_before}"
    );

    // Recovery: eu-west-1 answers again; the next run reads it from its checkpoint (less the
    // overlap), on both sides of the midnight, and the day before is now due.
    stack.emulator.set_fail_regions(Vec::new());
    let second = run(&stack, "boundary-2", &json!({})).await;
    assert_eq!(
        second.status, "SUCCEEDED",
        "{:?} {:?}",
        second.error, second.cause
    );
    let summary = summary_of(&second);
    let export = &second.output.as_ref().unwrap()["export"];
    println!(
        "run 2 ({:.1}s): status {}, export dates {:?}, export {export}",
        second.duration.as_secs_f64(),
        summary.status,
        summary.export_dates
    );
    assert_eq!(summary.status, "succeeded", "{:?}", summary.errors);
    assert!(checkpoint(&stack, "eu-west-1-sts").await.unwrap() > midnight + Span::minutes(30));
    assert!(
        summary.export_dates.contains(&day_before),
        "{:?}",
        summary.export_dates
    );
    assert!(export["dates"]
        .as_array()
        .unwrap()
        .contains(&json!(day_before.to_string())));
    let key = export_key(day_before);
    let table: BTreeSet<String> = ids(&items_of_date(&stack, day_before).await);
    assert_eq!(
        table, expected_before,
        "the table holds both regions' events of {day_before}"
    );
    let file = parquet_event_ids(&stack, &key).await;
    let file_set: BTreeSet<String> = file.iter().cloned().collect();
    assert_eq!(file.len(), file_set.len(), "no row twice");
    assert_eq!(
        file_set, table,
        "{key}: the Parquet rows are exactly the date's items"
    );
    assert_eq!(
        object_metadata(&stack, &key).await,
        (Some("10".to_string()), Some("boundary-2".to_string()))
    );
    println!("{key}: {} rows, both regions", file.len());
    stack.stop().await;
}

// ---- 3. A crash between two parts of a multipart export -------------------------------------

/// `len` characters of incompressible text (letters and digits from a xorshift generator), so
/// that a few hundred events make a Parquet file of several MiB.
fn noise(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_between_two_parts_of_an_export_keeps_the_previous_file() {
    const MIB: usize = 1024 * 1024;
    let mut options = options("export-crash");
    options
        .settings
        .insert("INITIAL_LOOKBACK_DAYS".into(), "3".into());
    // Every file above 1 KiB goes up as one multipart upload. The S3 adapter raises the part
    // length to S3's 5 MiB minimum whatever moto accepts, so a second part needs a file of more
    // than 5 MiB: the late events below carry 20,000 characters of incompressible text each.
    options
        .settings
        .insert("EXPORT_PART_SIZE_BYTES".into(), "1024".into());
    options.s3_part_min_size = Some(256);
    let stack = start(options).await;
    let day = (Utc::now() - Span::days(2)).date_naive();
    let ten = day.and_hms_opt(10, 0, 0).unwrap().and_utc();
    let sts = |id: String, t| record(&id, t, "sts.amazonaws.com", "AssumeRole", "us-east-1");
    let first_records: Vec<Value> = (0..10)
        .map(|i| sts(format!("first-{i:02}"), ten + Span::minutes(i)))
        .collect();
    let first_ids = event_ids(&first_records);
    stack.emulator.add_records(first_records);

    // File A: the scheduled run exports the day (one multipart upload of one part).
    let (result, summary) = run_ok(&stack, "export-a", json!({})).await;
    assert!(
        summary.export_dates.contains(&day),
        "{:?}",
        summary.export_dates
    );
    let key = export_key(day);
    assert_eq!(objects(&stack, "iam-events/").await, vec![key.clone()]);
    assert_eq!(
        object_metadata(&stack, &key).await,
        (Some("10".to_string()), Some("export-a".to_string()))
    );
    let size_a = get_object(&stack, &key).await.len();
    assert_eq!(stack.requests("s3", "UploadPart"), 1, "file A: one part");
    println!(
        "file A: {key}, 10 rows, {size_a} bytes ({:.1}s)",
        result.duration.as_secs_f64()
    );

    // 300 more events of that day arrive late; a backfill of the day stores them and marks the
    // day dirty. Part 2 of the re-export's upload fails on every attempt.
    let late: Vec<Value> = (0..300)
        .map(|i| {
            let mut r = sts(
                format!("late-{i:03}"),
                ten + Span::minutes(30) + Span::seconds(i),
            );
            r["requestParameters"] = json!({
                "roleArn": "arn:aws:iam::111122223333:role/Deployer",
                "roleSessionName": noise(i as u64, 20_000),
            });
            r
        })
        .collect();
    let all_ids: BTreeSet<String> = first_ids.union(&event_ids(&late)).cloned().collect();
    stack.emulator.add_records(late);
    stack.reset_request_counts();
    stack.fail_s3_upload_part(Some(UploadPartFault {
        part_number: 2,
        key: TextMatch::contains(key.clone()),
        times: None,
    }));
    let day_start = day.and_hms_opt(0, 0, 0).unwrap().and_utc();
    let backfill = json!({
        "start": cloudtrail_time(day_start),
        "end": cloudtrail_time(day_start + Span::days(1)),
        "regions": ["us-east-1"],
        "sources": ["sts"],
    });
    let crashed = run(&stack, "export-crash", &backfill).await;
    let (parts, failed_parts) = (
        stack.requests("s3", "UploadPart"),
        stack.injected("s3", "UploadPart"),
    );
    println!(
        "crashed run ({:.1}s): {} {:?}; UploadPart: {parts} requests, {failed_parts} failed by the gateway; \
         CreateMultipartUpload {}, AbortMultipartUpload {}, CompleteMultipartUpload {}",
        crashed.duration.as_secs_f64(),
        crashed.status,
        crashed.error,
        stack.requests("s3", "CreateMultipartUpload"),
        stack.requests("s3", "AbortMultipartUpload"),
        stack.requests("s3", "CompleteMultipartUpload"),
    );
    assert_eq!(crashed.status, "FAILED");
    assert_eq!(crashed.error.as_deref(), Some("RunStepsFailed"));
    assert!(failed_parts > 0, "part 2 was tried and failed");
    assert_eq!(
        stack.requests("s3", "CompleteMultipartUpload"),
        0,
        "no upload was completed"
    );
    let crashed_summary = stored_summary(&stack, "export-crash").await;
    assert_eq!(
        crashed_summary.totals.stored, 310,
        "the backfill read the day"
    );
    assert!(crashed_summary.export_dates.contains(&day));
    assert_eq!(
        ids(&items_of_date(&stack, day).await),
        all_ids,
        "the events are stored whatever the export did"
    );
    // The previous file is still there, whole: file A.
    assert_eq!(objects(&stack, "iam-events/").await, vec![key.clone()]);
    assert_eq!(
        object_metadata(&stack, &key).await,
        (Some("10".to_string()), Some("export-a".to_string())),
        "the object is still file A"
    );
    let file: BTreeSet<String> = parquet_event_ids(&stack, &key).await.into_iter().collect();
    assert_eq!(file, first_ids, "file A is readable, with A's rows");
    let uploads = stack
        .context
        .s3
        .list_multipart_uploads()
        .bucket(analytics_bucket(&stack))
        .send()
        .await
        .expect("list multipart uploads");
    assert!(
        uploads.uploads().is_empty(),
        "the failed uploads were aborted: {:?}",
        uploads.uploads()
    );
    assert!(
        dirty_dates(&stack).await.contains(&day.to_string()),
        "the day stays dirty"
    );

    // The fault is gone: the next scheduled run exports the day again, now with every row.
    stack.clear_faults();
    stack.reset_request_counts();
    let (again, summary) = run_ok(&stack, "export-b", json!({})).await;
    assert!(summary.export_dates.contains(&day));
    assert_eq!(objects(&stack, "iam-events/").await, vec![key.clone()]);
    assert_eq!(
        object_metadata(&stack, &key).await,
        (Some("310".to_string()), Some("export-b".to_string()))
    );
    let file = parquet_event_ids(&stack, &key).await;
    let file_set: BTreeSet<String> = file.iter().cloned().collect();
    assert_eq!(file.len(), 310);
    assert_eq!(file_set, all_ids, "file B has the new rows");
    let size_b = get_object(&stack, &key).await.len();
    println!(
        "file B: 310 rows, {:.2} MiB, {} parts ({:.1}s)",
        size_b as f64 / MIB as f64,
        stack.requests("s3", "UploadPart"),
        again.duration.as_secs_f64()
    );
    assert!(size_b > 5 * MIB, "file B needs two parts: {size_b} bytes");
    assert_eq!(stack.requests("s3", "UploadPart"), 2);
    assert!(!dirty_dates(&stack).await.contains(&day.to_string()));
    stack.stop().await;
}

// ---- 4. A poison record ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_record_does_not_block_its_source() {
    let stack = start(options("poison")).await;
    let events_table = stack.settings().events_table.clone();
    let t0 = Utc::now() - Span::hours(2);
    let sts = |id: &str, t| record(id, t, "sts.amazonaws.com", "AssumeRole", "us-east-1");
    let mut records: Vec<Value> = (0..20)
        .map(|i| sts(&format!("good-{i:02}"), t0 + Span::minutes(2 * i)))
        .collect();
    // Two poison events in the middle of the batch: DynamoDB rejects the first whatever form
    // it is written in (its event id), the second only in full (its source IP, which the
    // minimal item leaves out).
    let whole = sts("poison-whole", t0 + Span::minutes(11));
    let mut full = sts("poison-full", t0 + Span::minutes(13));
    full["sourceIPAddress"] = json!("198.51.100.66");
    records.push(whole.clone());
    records.push(full.clone());
    stack.emulator.add_records(records);
    stack.reject_dynamodb_item("event_id", "poison-whole");
    stack.update_faults(|p| {
        p.dynamodb_invalid_items
            .push(InvalidItemFault::new("source_ip", "198.51.100.66").table(&events_table))
    });
    let input = json!({"regions": ["us-east-1"], "sources": ["sts"]});

    let started = Utc::now();
    let (_, summary) = run_ok(&stack, "poison-1", input.clone()).await;
    let totals = &summary.totals;
    println!(
        "run 1: fetched {}, stored {}, rejected {}, raw_kept {}; BatchWriteItem {} requests, {} rejected by the gateway",
        totals.fetched,
        totals.stored,
        totals.rejected,
        totals.raw_kept,
        stack.requests("dynamodb", "BatchWriteItem"),
        stack.injected("dynamodb", "BatchWriteItem")
    );
    assert_eq!(summary.status, "succeeded");
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert_eq!(totals.fetched, 22);
    assert_eq!(totals.rejected, 1, "poison-whole is kept in S3 only");
    assert_eq!(totals.raw_kept, 2, "both full records are in S3");
    assert_eq!(
        totals.stored, 21,
        "the 20 good events and poison-full's minimal item"
    );
    assert!(stack.injected("dynamodb", "BatchWriteItem") > 0);

    // The batch's other events are stored; poison-full in its minimal form.
    let items = scan_all(&stack.dynamodb(), &events_table).await;
    let mut expected: BTreeSet<String> = (0..20).map(|i| format!("good-{i:02}")).collect();
    expected.insert("poison-full".into());
    assert_eq!(ids(&items), expected);
    let minimal = items
        .iter()
        .find(|i| attr(i, "event_id") == Some("poison-full"))
        .unwrap();
    assert!(
        attr(minimal, "parse_error").is_some_and(|e| e.starts_with("rejected by DynamoDB: ")),
        "{minimal:?}"
    );
    assert!(
        !minimal.contains_key("source_ip"),
        "the minimal item: {minimal:?}"
    );
    assert_eq!(attr(minimal, "event_name"), Some("AssumeRole"));

    // The full records, exactly as LookupEvents returned them, under raw-events/.
    let date = t0.date_naive();
    let keys = objects(&stack, "raw-events/").await;
    println!("raw records: {keys:?}");
    let expected_keys: Vec<String> = ["poison-full", "poison-whole"]
        .iter()
        .map(|id| format!("raw-events/{date}/us-east-1/sts/{id}.json"))
        .collect();
    assert_eq!(keys, expected_keys);
    assert_eq!(attr(minimal, "raw_s3_key"), Some(expected_keys[0].as_str()));
    for (key, original) in expected_keys.iter().zip([&full, &whole]) {
        let body: Value = serde_json::from_slice(&get_object(&stack, key).await).unwrap();
        assert_eq!(&body, original, "{key} holds the full record");
    }

    // The source moved on past both.
    let cp = checkpoint(&stack, "us-east-1-sts").await.unwrap();
    assert!(
        cp >= started - Span::minutes(5) - Span::seconds(1),
        "checkpoint {cp}: the run's end (now - 5 min), past the poison events"
    );
    let control = control_item(&stack, "us-east-1-sts").await.unwrap();
    assert_eq!(attr(&control, "processing_status"), Some("active"));
    assert!(!control.contains_key("last_error"));

    // A later run, the faults still on, is not blocked: events delivered late inside its
    // overlap are stored and the checkpoint moves on.
    let later: Vec<Value> = (0..3)
        .map(|i| {
            sts(
                &format!("later-{i}"),
                cp - Span::minutes(10) + Span::seconds(i),
            )
        })
        .collect();
    stack.emulator.add_records(later);
    let started = Utc::now();
    let (_, summary) = run_ok(&stack, "poison-2", input).await;
    assert_eq!(summary.status, "succeeded");
    assert_eq!(summary.totals.rejected, 0);
    let found = ids(&scan_all(&stack.dynamodb(), &events_table).await);
    assert!(
        (0..3).all(|i| found.contains(&format!("later-{i}"))),
        "{found:?}"
    );
    assert_eq!(found.len(), 24);
    let cp2 = checkpoint(&stack, "us-east-1-sts").await.unwrap();
    println!("checkpoints: run 1 {cp}, run 2 {cp2}");
    assert!(
        cp2 >= cp && cp2 >= started - Span::minutes(5) - Span::seconds(1),
        "checkpoint {cp2}: run 2's end"
    );
    stack.stop().await;
}

// ---- 5. Slow SNS --------------------------------------------------------------------------

/// The `Event ID:` line of an alert's body.
fn alert_event_id(body: &str) -> String {
    body.lines()
        .find_map(|l| l.trim().strip_prefix("- Event ID: "))
        .unwrap_or_else(|| panic!("no event id in {body}"))
        .to_string()
}

/// SNS Publish requests through the gateway: (received, failed by the fault plan).
fn publish_counts(stack: &LocalStack) -> (u64, u64) {
    stack
        .request_counts()
        .get(&("sns".to_string(), "Publish".to_string()))
        .map_or((0, 0), |c| (c.requests, c.injected))
}

/// Watches the gateway's Publish counters every 20 ms until `done`: the publishes in the order
/// they arrived, `true` for one the fault plan failed. Each publish is held 1 s by the delay
/// fault, so two never arrive between two looks.
async fn publish_order(stack: &LocalStack, done: &AtomicBool) -> Vec<bool> {
    let mut order = Vec::new();
    let (mut requests, mut injected) = publish_counts(stack);
    loop {
        let finished = done.load(Ordering::SeqCst);
        let (r, i) = publish_counts(stack);
        assert!(
            r - requests <= 1,
            "two publishes between two looks: {requests} -> {r}"
        );
        if r > requests {
            order.push(i > injected);
        }
        (requests, injected) = (r, i);
        if finished {
            return order;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An alert's status and attempts, read with GetItem. (A Scan of moto 5.2.5 was seen to leave
/// out outbox items whose publish had failed: `Count` 203, 201 `Items`, no `LastEvaluatedKey`;
/// so the failing alerts are read one by one.)
async fn alert_state(stack: &LocalStack, event_id: &str, rule: &str) -> (String, u64) {
    let item = stack
        .dynamodb()
        .get_item()
        .table_name(&stack.settings().alerts_table)
        .key("event_id", AttributeValue::S(event_id.into()))
        .key("alert_type", AttributeValue::S(rule.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("get alert")
        .item()
        .cloned()
        .unwrap_or_else(|| panic!("no alert {event_id}/{rule}"));
    let status = outbox_status(&[item]);
    status.into_values().next().unwrap()
}

fn outbox_status(items: &[Item]) -> std::collections::BTreeMap<String, (String, u64)> {
    items
        .iter()
        .map(|i| {
            (
                attr(i, "event_id").unwrap().to_string(),
                (
                    attr(i, "status").unwrap().to_string(),
                    i.get("attempts")
                        .and_then(|v| v.as_n().ok())
                        .map_or(0, |n| n.parse().unwrap()),
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_sns_partial_delivery_then_critical_first() {
    let mut options = options("slow-sns");
    options
        .settings
        .insert("ALERTS_TIME_BUDGET_SECONDS".into(), "3".into());
    // Every run re-reads the last hour, so that an event delivered late (with an older time)
    // is still collected.
    options
        .settings
        .insert("OVERLAP_MINUTES".into(), "60".into());
    let stack = start(options).await;
    let alerts_table = stack.settings().alerts_table.clone();
    let input = json!({"regions": ["us-east-1"], "sources": ["iam"]});
    let t0 = Utc::now();
    let iam = |id: &str, t, name: &str, params: Value| {
        let mut r = record(id, t, "iam.amazonaws.com", name, "us-east-1");
        r["requestParameters"] = params;
        r
    };

    // 200 new IAM users (HIGH alerts), the newest 30 minutes ago, one every 5 s before.
    let bulk: Vec<Value> = (0..200)
        .map(|i| {
            iam(
                &format!("bulk-{i:03}"),
                t0 - Span::minutes(30) - Span::seconds(5 * i),
                "CreateUser",
                json!({"userName": format!("bulk-user-{i:03}")}),
            )
        })
        .collect();
    stack.emulator.add_records(bulk);

    // Run 1: SNS takes 1 s per publish and the budget is 3 s per invocation: partial delivery,
    // newest first, over at most 5 invocations; the execution succeeds.
    stack.delay_sns_publish(Some(Duration::from_secs(1)));
    let (first, summary) = run_ok(&stack, "slow-1", input.clone()).await;
    let delivery = first.output.as_ref().unwrap()["alerts"].clone();
    let received = stack.received_alerts().await.unwrap();
    println!(
        "run 1 ({:.1}s): {} alerts queued, delivery {delivery}, {} received",
        first.duration.as_secs_f64(),
        summary.totals.alerts_queued,
        received.len()
    );
    assert_eq!(summary.totals.alerts_queued, 200);
    let sent = delivery["sent"].as_u64().unwrap() as usize;
    assert!(sent > 0 && sent < 200, "partial delivery: {delivery}");
    assert_eq!(delivery["invocations"], 5, "capped at 5 invocations");
    assert_eq!(delivery["more"], true, "alerts left when the cap came");
    assert_eq!(delivery["failed"], 0);
    assert!(
        sent <= 5 * 3 + 5,
        "the 3 s budget bounds each invocation: {sent} sent"
    );
    assert_eq!(received.len(), sent);
    let newest: BTreeSet<String> = (0..sent).map(|i| format!("bulk-{i:03}")).collect();
    let delivered: BTreeSet<String> = received.iter().map(|a| alert_event_id(&a.body)).collect();
    assert_eq!(delivered, newest, "the newest alerts first");
    let outbox = outbox_status(&scan_all(&stack.dynamodb(), &alerts_table).await);
    assert_eq!(outbox.len(), 200);
    assert_eq!(outbox.values().filter(|(s, _)| s == "sent").count(), sent);
    assert_eq!(
        outbox.values().filter(|(s, _)| s == "pending").count(),
        200 - sent,
        "the rest stay pending"
    );

    // Run 2: three newer HIGH alerts whose publish always fails (matched on their subject).
    // They are the first in line; three failures in a row stop delivery for this run.
    stack.delay_sns_publish(None);
    stack.fail_sns_publish_matching(Some("Access Key Deactivated"));
    let doomed: Vec<Value> = (0..3)
        .map(|i| {
            iam(
                &format!("doomed-{i}"),
                t0 - Span::minutes(12) + Span::seconds(i),
                "UpdateAccessKey",
                json!({"accessKeyId": format!("AKIADOOMED{i}"), "status": "Inactive", "userName": "bob"}),
            )
        })
        .collect();
    stack.emulator.add_records(doomed);
    let (second, summary) = run_ok(&stack, "slow-2", input.clone()).await;
    let delivery = second.output.as_ref().unwrap()["alerts"].clone();
    println!("run 2: delivery {delivery}");
    assert_eq!(summary.totals.alerts_queued, 3);
    // Each failed publish takes the SDK's three attempts, so the 3 s budget may stop the
    // run before the third.
    let failed = delivery["failed"].as_u64().unwrap();
    assert!((1..=3).contains(&failed), "{delivery}");
    assert_eq!(
        (delivery["sent"].as_u64(), delivery["more"].as_bool()),
        (Some(0), Some(false)),
        "after a failure the rest wait for the next run: {delivery}"
    );
    assert!(stack.received_alerts().await.unwrap().is_empty());
    let outbox = outbox_status(&scan_all(&stack.dynamodb(), &alerts_table).await);
    // Newest first: doomed-2, doomed-1, doomed-0.
    let tried: Vec<String> = (0..3)
        .rev()
        .take(failed as usize)
        .map(|i| format!("doomed-{i}"))
        .collect();
    for i in 0..3 {
        let id = format!("doomed-{i}");
        let attempts = u64::from(tried.contains(&id));
        assert_eq!(
            alert_state(&stack, &id, "access-key-update").await,
            ("pending".to_string(), attempts),
            "{id}: failed {attempts} time(s), waits"
        );
    }
    let pending_bulk = outbox
        .iter()
        .filter(|(id, (s, _))| id.starts_with("bulk-") && s == "pending")
        .count();
    assert_eq!(pending_bulk, 200 - sent, "no bulk alert was tried");

    // Run 3: a CRITICAL alert arrives, for an event older than every pending HIGH alert
    // (delivered late). SNS is slow again and the doomed ones still fail. It goes out first.
    stack.delay_sns_publish(Some(Duration::from_secs(1)));
    stack.emulator.add_records(vec![iam(
        "critical-key",
        t0 - Span::minutes(50),
        "CreateAccessKey",
        json!({"userName": "mallory"}),
    )]);
    let done = AtomicBool::new(false);
    let ((third, summary), order) = tokio::join!(
        async {
            let r = run_ok(&stack, "slow-3", input.clone()).await;
            done.store(true, Ordering::SeqCst);
            r
        },
        publish_order(&stack, &done)
    );
    let delivery = third.output.as_ref().unwrap()["alerts"].clone();
    let received = stack.received_alerts().await.unwrap();
    println!(
        "run 3: delivery {delivery}; publish order (true = failed): {order:?}; received {:?}",
        received.iter().map(|a| &a.subject).collect::<Vec<_>>()
    );
    assert_eq!(summary.totals.alerts_queued, 1);
    assert_eq!(received.len(), 1, "only the CRITICAL alert got through");
    assert_eq!(alert_event_id(&received[0].body), "critical-key");
    assert!(received[0].subject.starts_with("[CRITICAL] "));
    assert_eq!(
        order.first(),
        Some(&false),
        "the first publish of the run succeeded (the CRITICAL alert): {order:?}"
    );
    assert!(
        order.len() >= 2 && order[1..].iter().all(|failed| *failed),
        "then the old failing ones were retried: {order:?}"
    );
    assert_eq!(delivery["sent"], 1);
    assert_eq!(
        alert_state(&stack, "critical-key", "access-key-creation").await,
        ("sent".to_string(), 0)
    );
    // The failing alerts tried after it are old ones: their attempts went up by this run's
    // failures (which of them is tried is not checked).
    let mut attempts = 0;
    for i in 0..3 {
        let (status, n) = alert_state(&stack, &format!("doomed-{i}"), "access-key-update").await;
        assert_eq!(status, "pending", "doomed-{i}");
        attempts += n;
    }
    assert_eq!(
        attempts,
        failed + delivery["failed"].as_u64().unwrap(),
        "the old failing alerts were retried in run 3, after the CRITICAL one"
    );
    assert!(delivery["failed"].as_u64().unwrap() >= 1);
    stack.stop().await;
}
