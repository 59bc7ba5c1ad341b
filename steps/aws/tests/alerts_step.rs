//! EvaluateAlerts with the in-memory adapters: delivery order, the attempt limit and the
//! `failed` state, the time budget (on tokio's paused clock), the per-run limit, a failing
//! channel, and outbox errors.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use iamtrail_aws::memory::{MemoryAlerts, MemoryNotifier};
use iamtrail_aws::ports::{AlertStore, Notification, Notifier, Released, StoreError};
use iamtrail_aws::steps::evaluate_alerts::{
    evaluate_alerts, AlertDelivery, EvaluateAlertsInput, MAX_FAILURES_IN_A_ROW,
};
use iamtrail_core::outbox::{status, AlertRecord};
use iamtrail_core::Settings;

fn settings(pairs: &[(&str, &str)]) -> Settings {
    let topic = [(
        "ALERTS_TOPIC_ARN",
        "arn:aws:sns:us-east-1:111122223333:alerts",
    )];
    Settings::from_pairs(&[&topic[..], pairs].concat()).unwrap()
}

/// An outbox record; `event_time` orders alerts within a severity.
fn alert(id: &str, severity: &str, event_time: &str) -> AlertRecord {
    AlertRecord {
        event_id: id.to_string(),
        alert_type: "user-creation".into(),
        rule_id: "user-creation".into(),
        alert_title: "IAM User Created".into(),
        severity: severity.to_string(),
        event_name: "CreateUser".into(),
        event_time: event_time.to_string(),
        user_name: "alice".into(),
        aws_region: "us-east-1".into(),
        subject: format!("[{severity}] IAM Alert: {id}"),
        body: format!("alert {id}"),
        status: status::PENDING.into(),
        created_at: "2026-03-10T00:00:00Z".into(),
        ttl: None,
        attempts: 0,
        last_error: None,
        group: None,
        group_line: None,
    }
}

async fn queue(store: &MemoryAlerts, alerts: &[AlertRecord]) {
    for a in alerts {
        assert!(store.enqueue(a).await.unwrap());
    }
}

/// The event ids in publish order.
fn published(notifier: &MemoryNotifier) -> Vec<String> {
    notifier
        .published()
        .iter()
        .map(|(_, n)| n.body.trim_start_matches("alert ").to_string())
        .collect()
}

async fn deliver<N: Notifier>(
    input: EvaluateAlertsInput,
    store: &impl AlertStore,
    notifier: &N,
    settings: &Settings,
) -> AlertDelivery {
    evaluate_alerts(
        input,
        store,
        Some(notifier),
        &iamtrail_aws::metrics::Metrics::discard(),
        settings,
        Utc::now(),
        None,
    )
    .await
    .expect("evaluate alerts")
}

fn first() -> EvaluateAlertsInput {
    EvaluateAlertsInput {
        run_id: Some("run-1".into()),
        ..Default::default()
    }
}

/// The next invocation's input, as the workflow builds it: its whole state (the run summary)
/// with the previous result under `alerts`, through the fields its ResultSelector keeps.
fn again(previous: &AlertDelivery) -> EvaluateAlertsInput {
    let full = serde_json::to_value(previous).unwrap();
    let mut selected = serde_json::Map::new();
    for field in [
        "enabled",
        "pending",
        "sent",
        "failed",
        "failed_for_good",
        "failed_total",
        "skipped",
        "more",
        "invocations",
    ] {
        selected.insert(field.to_string(), full[field].clone());
    }
    let state = serde_json::json!({
        "run_id": "run-1", "mode": "incremental", "status": "succeeded",
        "errors": [{"region": "eu-west-1", "error": "AccessDenied"}],
        "totals": {"fetched": 3}, "export_due": false,
        "alerts": selected,
    });
    serde_json::from_value(state).expect("the workflow's state is a valid input")
}

#[tokio::test]
async fn alerts_go_highest_severity_newest_first() {
    let (store, notifier) = (MemoryAlerts::new(), MemoryNotifier::new());
    queue(
        &store,
        &[
            alert("high-old", "HIGH", "2026-03-01T00:00:00Z"),
            alert("crit-old", "CRITICAL", "2026-03-02T00:00:00Z"),
            alert("high-new", "HIGH", "2026-03-09T00:00:00Z"),
            alert("crit-new", "CRITICAL", "2026-03-09T10:00:00Z"),
            alert("test", "TEST", "2026-03-09T11:00:00Z"),
        ],
    )
    .await;
    // Two per invocation: the CRITICAL ones go first, then the workflow loops.
    let s = settings(&[("ALERTS_PER_RUN", "2")]);
    let one = deliver(first(), &store, &notifier, &s).await;
    assert_eq!(published(&notifier), ["crit-new", "crit-old"]);
    assert_eq!((one.sent, one.more, one.invocations), (2, true, 1));
    let two = deliver(again(&one), &store, &notifier, &s).await;
    let three = deliver(again(&two), &store, &notifier, &s).await;
    assert_eq!(
        published(&notifier),
        ["crit-new", "crit-old", "high-new", "high-old", "test"]
    );
    assert_eq!((three.sent, three.more, three.invocations), (5, false, 3));
    assert_eq!(store.with_status(status::SENT).len(), 5);
}

#[tokio::test]
async fn always_failing_alert_becomes_failed_after_max_attempts() {
    let (store, notifier) = (MemoryAlerts::new(), MemoryNotifier::new());
    let s = settings(&[("ALERT_MAX_ATTEMPTS", "3")]);
    queue(
        &store,
        &[alert("poison", "CRITICAL", "2026-03-09T10:00:00Z")],
    )
    .await;
    notifier.fail_matching(vec!["alert poison".into()]);
    for run in 1..=3u32 {
        // Each run, a newer alert arrives: it is never stuck behind the failing one.
        let fresh = format!("fresh-{run}");
        queue(
            &store,
            &[alert(
                &fresh,
                "CRITICAL",
                &format!("2026-03-09T1{run}:00:00Z"),
            )],
        )
        .await;
        let out = deliver(first(), &store, &notifier, &s).await;
        assert_eq!(out.sent, 1, "run {run}: the fresh alert is delivered");
        assert_eq!(out.failed, 1);
        assert_eq!(published(&notifier).last(), Some(&fresh));
        let poison = store
            .all()
            .into_iter()
            .find(|a| a.event_id == "poison")
            .unwrap();
        assert_eq!(poison.attempts, run);
        assert!(poison
            .last_error
            .as_deref()
            .unwrap()
            .contains("InternalError"));
        if run < 3 {
            assert_eq!(poison.status, status::PENDING);
            assert_eq!((out.failed_for_good, out.failed_total), (0, Some(0)));
        } else {
            assert_eq!(poison.status, status::FAILED, "kept, not deleted");
            assert_eq!((out.failed_for_good, out.failed_total), (1, Some(1)));
        }
    }
    // A failed alert is not retried by itself, but stays counted.
    let out = deliver(first(), &store, &notifier, &s).await;
    assert_eq!((out.pending, out.sent, out.failed), (0, 0, 0));
    assert_eq!(out.failed_total, Some(1));
}

/// A notifier that takes `delay` per publish (on tokio's clock).
struct SlowNotifier {
    inner: MemoryNotifier,
    delay: StdDuration,
}

impl Notifier for SlowNotifier {
    async fn publish(&self, n: &Notification) -> Result<String, StoreError> {
        tokio::time::sleep(self.delay).await;
        self.inner.publish(n).await
    }
}

#[tokio::test(start_paused = true)]
async fn alert_delivery_stops_on_its_time_budget() {
    let store = MemoryAlerts::new();
    let notifier = SlowNotifier {
        inner: MemoryNotifier::new(),
        delay: StdDuration::from_secs(10),
    };
    let alerts: Vec<AlertRecord> = (0..5)
        .map(|i| alert(&format!("a{i}"), "HIGH", &format!("2026-03-09T0{i}:00:00Z")))
        .collect();
    queue(&store, &alerts).await;
    let s = settings(&[("ALERTS_TIME_BUDGET_SECONDS", "25")]);
    let started = tokio::time::Instant::now();
    let one = deliver(first(), &store, &notifier, &s).await;
    // Publishes start at 0, 10 and 20 s; at 30 s the budget is spent.
    assert_eq!((one.sent, one.more), (3, true));
    assert_eq!(started.elapsed(), StdDuration::from_secs(30));
    assert_eq!(published(&notifier.inner), ["a4", "a3", "a2"]);
    let two = deliver(again(&one), &store, &notifier, &s).await;
    assert_eq!((two.sent, two.more, two.invocations), (5, false, 2));

    // The Lambda deadline bounds the budget too (less its margin).
    queue(
        &store,
        &[
            alert("b1", "HIGH", "2026-03-09T01:00:00Z"),
            alert("b2", "HIGH", "2026-03-09T02:00:00Z"),
        ],
    )
    .await;
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(8);
    let out = evaluate_alerts(
        first(),
        &store,
        Some(&notifier),
        &iamtrail_aws::metrics::Metrics::discard(),
        &s,
        Utc::now(),
        Some(deadline),
    )
    .await
    .unwrap();
    assert_eq!((out.sent, out.more), (1, true));
}

#[tokio::test]
async fn a_failing_channel_stops_delivery_without_spending_every_attempt() {
    let (store, notifier) = (MemoryAlerts::new(), MemoryNotifier::new());
    let alerts: Vec<AlertRecord> = (0..8)
        .map(|i| alert(&format!("a{i}"), "HIGH", &format!("2026-03-09T0{i}:00:00Z")))
        .collect();
    queue(&store, &alerts).await;
    notifier.fail_matching(vec!["alert".into()]);
    let out = deliver(
        first(),
        &store,
        &notifier,
        &settings(&[("ALERTS_PER_RUN", "4")]),
    )
    .await;
    assert_eq!(out.failed, MAX_FAILURES_IN_A_ROW);
    assert!(
        !out.more,
        "no loop while SNS fails: the rest wait for the next run"
    );
    let tried = store.all().iter().filter(|a| a.attempts > 0).count();
    assert_eq!(tried, MAX_FAILURES_IN_A_ROW);
    assert_eq!(out.errors.len(), MAX_FAILURES_IN_A_ROW);
}

/// An outbox whose claims fail `failures` times before they work.
struct FlakyAlerts {
    inner: MemoryAlerts,
    failures: AtomicU32,
}

impl AlertStore for FlakyAlerts {
    async fn enqueue(&self, alert: &AlertRecord) -> Result<bool, StoreError> {
        self.inner.enqueue(alert).await
    }
    async fn deliverable(
        &self,
        limit: usize,
        stale_before: DateTime<Utc>,
    ) -> Result<Vec<AlertRecord>, StoreError> {
        self.inner.deliverable(limit, stale_before).await
    }
    async fn claim(
        &self,
        alert: &AlertRecord,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError {
                operation: "dynamodb:UpdateItem (claim alert)",
                message: "ProvisionedThroughputExceededException (injected)".into(),
            });
        }
        self.inner.claim(alert, now, stale_before).await
    }
    async fn mark_sent(
        &self,
        alert: &AlertRecord,
        message_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner.mark_sent(alert, message_id, now).await
    }
    async fn release(
        &self,
        alert: &AlertRecord,
        error: &str,
        max_attempts: u32,
    ) -> Result<Released, StoreError> {
        self.inner.release(alert, error, max_attempts).await
    }
    async fn failed_count(&self) -> Result<u64, StoreError> {
        self.inner.failed_count().await
    }
}

#[tokio::test(start_paused = true)]
async fn an_outbox_error_is_retried_then_fails_the_step_with_aws_error() {
    let notifier = MemoryNotifier::new();
    let store = FlakyAlerts {
        inner: MemoryAlerts::new(),
        failures: AtomicU32::new(2),
    };
    queue(&store.inner, &[alert("a", "HIGH", "2026-03-09T01:00:00Z")]).await;
    // Two failures: the third attempt works.
    let out = deliver(first(), &store, &notifier, &settings(&[])).await;
    assert_eq!(out.sent, 1);
    // Three failures: the step gives up with AwsError (the workflow catches it).
    queue(&store.inner, &[alert("b", "HIGH", "2026-03-09T02:00:00Z")]).await;
    store.failures.store(3, Ordering::SeqCst);
    let err = evaluate_alerts(
        first(),
        &store,
        Some(&notifier),
        &iamtrail_aws::metrics::Metrics::discard(),
        &settings(&[]),
        Utc::now(),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.error_type, "AwsError");
    assert!(err.message.contains("claim alert"), "{err}");
    assert_eq!(store.inner.with_status(status::PENDING).len(), 1);
}

#[tokio::test]
async fn switched_off_delivery_publishes_nothing_and_still_counts_failed_alerts() {
    let (store, notifier) = (MemoryAlerts::new(), MemoryNotifier::new());
    queue(&store, &[alert("a", "HIGH", "2026-03-09T01:00:00Z")]).await;
    let out = deliver(
        first(),
        &store,
        &notifier,
        &settings(&[("ALERTS_ENABLED", "false")]),
    )
    .await;
    assert!(!out.enabled && !out.more);
    assert_eq!((out.sent, out.failed_total), (0, Some(0)));
    assert!(notifier.published().is_empty());
    // The output serialises with every field the workflow reads.
    let json = serde_json::to_value(&out).unwrap();
    for field in [
        "enabled",
        "pending",
        "sent",
        "failed",
        "failed_for_good",
        "failed_total",
        "skipped",
        "more",
        "invocations",
        "errors",
    ] {
        assert!(json.get(field).is_some(), "{field} missing: {json}");
    }
}
