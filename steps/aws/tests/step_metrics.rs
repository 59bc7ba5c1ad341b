//! The EMF metrics each step writes, with the in-memory adapters and the in-memory sink:
//! Collect's per-source counts are the invocation's own (not the loop's totals), EvaluateAlerts
//! counts failed publishes and measures what is left pending, Export counts what the invocation
//! wrote. The lines of a whole local run are checked against the EMF schema in
//! tests/metrics.rs.

mod collect_support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{Duration, TimeZone, Utc};
use collect_support::*;
use iamtrail_aws::memory::{
    MemoryAlerts, MemoryControl, MemoryEvents, MemoryNotifier, MemoryObjects,
};
use iamtrail_aws::metrics::{MemoryMetrics, Metrics};
use iamtrail_aws::ports::{AlertStore, ControlStore, EventStore};
use iamtrail_aws::steps::collect::collect;
use iamtrail_aws::steps::evaluate_alerts::{evaluate_alerts, EvaluateAlertsInput};
use iamtrail_aws::steps::export::{export, ExportInput};
use iamtrail_core::metrics::names;
use iamtrail_core::outbox::{status, AlertRecord};
use iamtrail_core::{NormalizedEvent, Settings};
use serde_json::Value;

fn sink() -> (Metrics, Arc<MemoryMetrics>) {
    let sink = Arc::new(MemoryMetrics::default());
    (Metrics::for_stack("test", sink.clone()).unwrap(), sink)
}

fn value(doc: &Value, name: &str) -> i64 {
    doc[name]
        .as_i64()
        .unwrap_or_else(|| panic!("{name} missing in {doc}"))
}

#[tokio::test(start_paused = true)]
async fn collect_writes_each_invocations_own_counts() {
    let start = Utc::now() - Duration::hours(2);
    let list = (0..2000)
        .map(|i| {
            event(
                &format!("e{i:05}"),
                start + Duration::milliseconds(300 * i),
                None,
            )
        })
        .collect();
    let world = World::new(
        settings(&[
            ("LOOKUP_RATE_PER_SECOND", "100"),
            ("MAX_COLLECT_INVOCATIONS", "1000"),
        ]),
        list,
    );
    // Slow answers and a short budget: the invocation stops part-way and the loop goes on.
    let slow = Slow {
        inner: &world.source,
        delay: StdDuration::from_millis(40),
    };
    let deps = world.deps_with(&slow);
    let (metrics, lines) = sink();
    let mut item = item("run-1");
    let mut invocations = 0;
    loop {
        let deadline = deadline(StdDuration::from_millis(500));
        item = collect(item, &deps, &metrics, deadline, Utc::now())
            .await
            .unwrap();
        invocations += 1;
        if !item.more {
            break;
        }
    }
    assert!(invocations > 1, "the test needs a Collect loop");
    let docs = lines.documents();
    assert_eq!(
        docs.len(),
        invocations,
        "one line per invocation and source"
    );
    for doc in &docs {
        assert_eq!(doc["Region"], REGION);
        assert_eq!(doc["Source"], "sts");
        // Labelled, but published under `[]` only unless DETAILED_METRICS is set.
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([[]])
        );
    }
    let sum = |name: &str| docs.iter().map(|d| value(d, name)).sum::<i64>();
    let totals = sts(&item).counts;
    assert_eq!(sum(names::EVENTS_FETCHED), totals.fetched as i64);
    assert_eq!(sum(names::EVENTS_STORED), totals.stored as i64);
    assert_eq!(sum(names::LOOKUP_REQUESTS), totals.requests as i64);
    assert_eq!(totals.stored, 2000);
    assert!(
        value(&docs[0], names::EVENTS_STORED) < 2000,
        "the first invocation reports only what it stored"
    );
}

fn alert(id: &str, severity: &str, created_at: &str) -> AlertRecord {
    AlertRecord {
        event_id: id.into(),
        alert_type: "user-creation".into(),
        rule_id: "user-creation".into(),
        alert_title: "IAM User Created".into(),
        severity: severity.into(),
        event_name: "CreateUser".into(),
        event_time: created_at.into(),
        user_name: "alice".into(),
        aws_region: "us-east-1".into(),
        subject: format!("[{severity}] IAM Alert: {id}"),
        body: format!("alert {id}"),
        status: status::PENDING.into(),
        created_at: created_at.into(),
        ttl: None,
        attempts: 0,
        last_error: None,
        group: None,
        group_line: None,
    }
}

fn alert_settings(pairs: &[(&str, &str)]) -> Settings {
    let topic = [(
        "ALERTS_TOPIC_ARN",
        "arn:aws:sns:us-east-1:111122223333:alerts",
    )];
    Settings::from_pairs(&[pairs, &topic[..]].concat()).unwrap()
}

#[tokio::test]
async fn evaluate_alerts_counts_failures_and_the_oldest_pending_alert() {
    let now = Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap();
    let store = MemoryAlerts::new();
    for a in [
        alert("a", "CRITICAL", "2026-03-10T11:00:00Z"),
        alert("b", "HIGH", "2026-03-10T10:00:00Z"),
        alert("c", "MEDIUM", "2026-03-10T09:00:00Z"),
        alert("d", "LOW", "2026-03-10T08:00:00Z"),
    ] {
        assert!(store.enqueue(&a).await.unwrap());
    }
    let notifier = MemoryNotifier::new();
    notifier.fail_matching(vec!["alert b".into()]);
    let (metrics, lines) = sink();
    // Three per run: `d` (the oldest) is beyond the limit and waits.
    let settings = alert_settings(&[("ALERTS_PER_RUN", "3"), ("ALERT_MAX_ATTEMPTS", "5")]);
    let out = evaluate_alerts(
        EvaluateAlertsInput::default(),
        &store,
        Some(&notifier),
        &metrics,
        &settings,
        now,
        None,
    )
    .await
    .unwrap();
    assert_eq!((out.sent, out.failed), (2, 1));
    let docs = lines.documents();
    assert_eq!(docs.len(), 1);
    let doc = &docs[0];
    assert_eq!(
        doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([[]])
    );
    assert_eq!(value(doc, names::ALERTS_SENT), 2);
    assert_eq!(value(doc, names::ALERTS_FAILED), 1);
    assert_eq!(value(doc, names::ALERTS_FAILED_FOR_GOOD), 0);
    // `b` went back to pending; `d` was never read for delivery.
    assert_eq!(value(doc, names::ALERTS_PENDING), 2);
    assert_eq!(
        value(doc, names::OLDEST_PENDING_ALERT_AGE_SECONDS),
        4 * 3600
    );

    // The next invocation of the loop: its counts are its own, not the run's totals.
    notifier.fail_matching(vec![]);
    let next = EvaluateAlertsInput {
        alerts: Some(out),
        ..Default::default()
    };
    evaluate_alerts(
        next,
        &store,
        Some(&notifier),
        &metrics,
        &settings,
        now,
        None,
    )
    .await
    .unwrap();
    let doc = &lines.documents()[1];
    assert_eq!(value(doc, names::ALERTS_SENT), 2);
    assert_eq!(value(doc, names::ALERTS_FAILED), 0);
    assert_eq!(value(doc, names::ALERTS_PENDING), 0);
    assert_eq!(value(doc, names::OLDEST_PENDING_ALERT_AGE_SECONDS), 0);
}

#[tokio::test]
async fn alerts_waiting_while_delivery_is_off_are_measured() {
    let now = Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap();
    let store = MemoryAlerts::new();
    assert!(store
        .enqueue(&alert("a", "HIGH", "2026-03-10T11:30:00Z"))
        .await
        .unwrap());
    let (metrics, lines) = sink();
    let settings = alert_settings(&[("ALERTS_ENABLED", "false")]);
    evaluate_alerts(
        EvaluateAlertsInput::default(),
        &store,
        Some(&MemoryNotifier::new()),
        &metrics,
        &settings,
        now,
        None,
    )
    .await
    .unwrap();
    let doc = &lines.documents()[0];
    assert_eq!(value(doc, names::ALERTS_SENT), 0);
    assert_eq!(value(doc, names::ALERTS_PENDING), 1);
    assert_eq!(value(doc, names::OLDEST_PENDING_ALERT_AGE_SECONDS), 1800);
}

#[tokio::test]
async fn export_counts_the_rows_and_files_of_each_invocation() {
    let now = Utc.with_ymd_and_hms(2026, 3, 20, 12, 0, 0).unwrap();
    let (events, objects, control) = (
        MemoryEvents::new(),
        MemoryObjects::new(),
        MemoryControl::new(),
    );
    let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
    let mut list = Vec::new();
    for (d, n) in [(1, 3), (2, 5)] {
        for i in 0..n {
            let date = day(d).format("%Y-%m-%d").to_string();
            list.push(NormalizedEvent {
                event_date: date.clone(),
                event_id: format!("{d}-{i}"),
                event_time: format!("{date}T10:00:00Z"),
                event_name: "AssumeRole".into(),
                event_source: "sts.amazonaws.com".into(),
                event_type: "sts".into(),
                user_name: "alice".into(),
                aws_region: "us-east-1".into(),
                ..Default::default()
            });
        }
    }
    events.put_events(&list).await.unwrap();
    let (metrics, lines) = sink();
    let settings = Settings::from_lookup(|_| None).unwrap();
    let first = export(
        ExportInput {
            run_id: Some("run-1".into()),
            export_dates: vec![day(1), day(2)],
            ..Default::default()
        },
        &events,
        &objects,
        &control,
        &metrics,
        &settings,
        now,
        None,
    )
    .await
    .unwrap();
    assert_eq!((first.rows, first.files), (8, 2));
    // A later invocation of the same run (the loop) with nothing left writes nothing.
    export(
        ExportInput {
            run_id: Some("run-1".into()),
            export: Some(first),
            ..Default::default()
        },
        &events,
        &objects,
        &control,
        &metrics,
        &settings,
        now,
        None,
    )
    .await
    .unwrap();
    let docs = lines.documents();
    assert_eq!(docs.len(), 2);
    assert_eq!(value(&docs[0], names::EXPORT_ROWS), 8);
    assert_eq!(value(&docs[0], names::EXPORT_FILES), 2);
    assert_eq!(value(&docs[1], names::EXPORT_ROWS), 0);
    assert_eq!(value(&docs[1], names::EXPORT_FILES), 0);
}

/// A Map result for Aggregate: the region's STS source done, with its checkpoint.
fn map_item(region: &str, checkpoint: chrono::DateTime<Utc>, more: bool) -> Value {
    serde_json::json!({"run_id": "run-1", "region": region, "sources": ["sts"], "mode": "incremental",
           "progress": {"sts": {"done": !more, "counts": {"fetched": 2, "stored": 2, "filtered_aws_service": 0,
               "filtered_roles": 0, "malformed": 0, "truncated": 0, "requests": 1, "throttled": 0, "slices": 1},
               "checkpoint": checkpoint}},
           "more": more, "invocations": 1})
}

#[tokio::test]
async fn aggregate_writes_the_run_metrics_once_in_the_final_round() {
    use iamtrail_aws::steps::aggregate::aggregate;
    use iamtrail_core::contract::{AggregateInput, AggregateOutput, Mode};

    let now = Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap();
    let settings: Settings = {
        let map: HashMap<&str, &str> = HashMap::from([
            ("PROCESS_IAM_EVENTS", "false"),
            ("PROCESS_SIGNIN_EVENTS", "false"),
            ("PROCESS_SSO_EVENTS", "false"),
            ("PROCESS_ROOT_EVENTS", "false"),
        ]);
        Settings::from_lookup(|k| map.get(k).map(|v| v.to_string())).unwrap()
    };
    let control = MemoryControl::new();
    // eu-west-1 was last stored two hours ago; this run's Collect fails there.
    control.set_checkpoint("eu-west-1-sts", now - Duration::hours(2));
    control.set_checkpoint("us-east-1-sts", now - Duration::minutes(10));
    control
        .record_export(
            chrono::NaiveDate::from_ymd_opt(2026, 3, 8).unwrap(),
            4,
            &[],
            now,
        )
        .await
        .unwrap();
    let (metrics, lines) = sink();
    let round = |results: Vec<Value>, collected: Vec<Value>| AggregateInput {
        run_id: "run-1".into(),
        mode: Mode::Incremental,
        execution: Some("run-1".into()),
        results,
        collected,
        enabled_regions: vec!["eu-west-1".into(), "us-east-1".into()],
    };
    let failed = serde_json::json!({"region": "eu-west-1", "sources": ["sts"], "failed": true,
        "error": {"Error": "InjectedFailure", "Cause": "injected"}});
    // Round 1: us-east-1 has more to read: no metrics.
    let out = aggregate(
        round(
            vec![map_item("us-east-1", now, true), failed.clone()],
            vec![],
        ),
        &control,
        &metrics,
        &settings,
        now,
    )
    .await
    .unwrap();
    let AggregateOutput::Continue(next) = out else {
        panic!("expected a continuation, got {out:?}");
    };
    assert!(
        lines.lines().is_empty(),
        "an intermediate round writes no metrics"
    );
    // Round 2, final.
    control.set_checkpoint("us-east-1-sts", now - Duration::minutes(5));
    let out = aggregate(
        round(vec![map_item("us-east-1", now, false)], next.collected),
        &control,
        &metrics,
        &settings,
        now,
    )
    .await
    .unwrap();
    let AggregateOutput::Final(summary) = out else {
        panic!("expected the final round, got {out:?}");
    };
    assert_eq!(summary.status, "partial");
    let docs = lines.documents();
    let run: Vec<&Value> = docs
        .iter()
        .filter(|d| d.get(names::PARTIAL_RUN).is_some())
        .collect();
    assert_eq!(run.len(), 1, "once per execution");
    let run = run[0];
    assert_eq!(value(run, names::PARTIAL_RUN), 1);
    assert_eq!(value(run, names::SOURCES_FAILED), 1);
    assert_eq!(value(run, names::RUN_EVENTS_STORED), 2);
    assert_eq!(
        value(run, names::MAX_COLLECTION_LAG_SECONDS),
        7200,
        "the failed region's"
    );
    assert_eq!(value(run, names::EXPORT_LAG_DAYS), 2);
    let mut lags: Vec<(String, i64)> = docs
        .iter()
        .filter(|d| d.get(names::COLLECTION_LAG_SECONDS).is_some())
        .map(|d| {
            (
                d["Region"].as_str().unwrap().to_string(),
                value(d, names::COLLECTION_LAG_SECONDS),
            )
        })
        .collect();
    lags.sort();
    assert_eq!(
        lags,
        [
            ("eu-west-1".to_string(), 7200),
            ("us-east-1".to_string(), 300)
        ]
    );
}
