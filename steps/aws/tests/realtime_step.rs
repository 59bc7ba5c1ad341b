//! The Realtime step on the in-memory adapters (docs/realtime.md): an EventBridge event is
//! stored as Collect stores it, its alerts queued in the same outbox and delivered at once,
//! exactly once against a re-delivered event and against a concurrent EvaluateAlerts; a failed
//! publish is left for the scheduled run; a root session's later calls wait for its email; bad
//! input is refused with a clear error.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use iamtrail_aws::memory::{MemoryAlerts, MemoryControl, MemoryEvents, MemoryNotifier};
use iamtrail_aws::metrics::Metrics;
use iamtrail_aws::ports::{Notification, Notifier, StoreError};
use iamtrail_aws::steps::evaluate_alerts::{evaluate_alerts, EvaluateAlertsInput};
use iamtrail_aws::steps::realtime::{realtime, Disposition, RealtimeDeps, RealtimeOutput};
use iamtrail_core::lookup::{lookup_item, LookupFields, Outcome};
use iamtrail_core::outbox::status;
use iamtrail_core::realtime::envelope;
use iamtrail_core::sigma::SigmaRules;
use iamtrail_core::{Settings, Source};
use serde_json::{json, Value};

fn settings() -> Settings {
    Settings::from_lookup(|k| (k == "ALERTS_TOPIC_ARN").then(|| "arn:topic".to_string())).unwrap()
}

/// A CloudTrail record of `name` on `source` by `identity` (`Root` or `IAMUser`).
fn record(id: &str, time: DateTime<Utc>, source: &str, name: &str, identity: &str) -> Value {
    let (user, arn) = match identity {
        "Root" => (None, "arn:aws:iam::111122223333:root".to_string()),
        _ => (
            Some("mallory"),
            "arn:aws:iam::111122223333:user/mallory".to_string(),
        ),
    };
    json!({
        "eventVersion": "1.09", "eventID": id,
        "eventTime": time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "eventSource": source, "eventName": name, "eventType": "AwsApiCall",
        "awsRegion": if source == "iam.amazonaws.com" { "us-east-1" } else { "eu-west-1" },
        "sourceIPAddress": "198.51.100.23", "userAgent": "aws-cli/2.15", "readOnly": false,
        "userIdentity": {"type": identity, "principalId": "AIDAEXAMPLE", "arn": arn,
                         "accountId": "111122223333", "userName": user,
                         "accessKeyId": "AKIAEXAMPLEKEY"},
        "requestParameters": {"userName": "backdoor"},
        "responseElements": null,
        "recipientAccountId": "111122223333"
    })
}

fn event(record: &Value) -> Value {
    envelope(record).expect("EventBridge publishes this record")
}

struct Stores {
    settings: Settings,
    events: MemoryEvents,
    control: MemoryControl,
    alerts: MemoryAlerts,
    sigma: SigmaRules,
}

impl Stores {
    fn new() -> Self {
        Stores {
            settings: settings(),
            events: MemoryEvents::new(),
            control: MemoryControl::new(),
            alerts: MemoryAlerts::new(),
            sigma: SigmaRules::default(),
        }
    }

    async fn run<N: Notifier>(&self, payload: Value, notifier: &N) -> RealtimeOutput {
        self.try_run(payload, notifier).await.expect("Realtime")
    }

    async fn try_run<N: Notifier>(
        &self,
        payload: Value,
        notifier: &N,
    ) -> Result<RealtimeOutput, iamtrail_aws::StepError> {
        let deps = RealtimeDeps {
            settings: &self.settings,
            events: &self.events,
            control: &self.control,
            alerts: &self.alerts,
            notifier: Some(notifier),
            sigma: &self.sigma,
        };
        realtime(payload, &deps, Utc::now()).await
    }

    async fn evaluate_alerts<N: Notifier>(&self, notifier: &N) -> usize {
        evaluate_alerts(
            EvaluateAlertsInput::default(),
            &self.alerts,
            Some(notifier),
            &Metrics::discard(),
            &self.settings,
            Utc::now(),
            None,
        )
        .await
        .unwrap()
        .sent
    }
}

#[tokio::test]
async fn an_event_is_stored_as_collect_stores_it_and_alerted_once() {
    let stores = Stores::new();
    let notifier = MemoryNotifier::new();
    let now = Utc::now() - Duration::minutes(1);
    let r = record("rt-1", now, "iam.amazonaws.com", "CreateUser", "IAMUser");
    let out = stores.run(event(&r), &notifier).await;
    assert_eq!(out.disposition, Disposition::Stored);
    assert_eq!(out.source, Some(Source::Iam));
    assert_eq!((out.alerts_matched, out.alerts_queued, out.sent), (1, 1, 1));
    // The item is the one Collect writes for the same record read from LookupEvents.
    let text = r.to_string();
    let fields = LookupFields {
        event_id: Some("rt-1"),
        cloudtrail_event: Some(&text),
        ..Default::default()
    };
    let Outcome::Stored(collected) =
        lookup_item(&fields, "us-east-1", Source::Iam, &stores.settings)
    else {
        panic!("Collect would store it");
    };
    assert_eq!(stores.events.all(), vec![collected]);
    assert_eq!(
        stores
            .control
            .dirty_dates_now()
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![now.date_naive()]
    );
    let published = notifier.published();
    assert_eq!(published.len(), 1);
    assert!(published[0].1.subject.contains("IAM User Created"));
    assert_eq!(stores.alerts.with_status(status::SENT).len(), 1);

    // EventBridge delivers at least once: the same event again sends nothing.
    let again = stores.run(event(&r), &notifier).await;
    assert_eq!((again.alerts_queued, again.sent, again.skipped), (0, 0, 1));
    // Nor does the scheduled run's EvaluateAlerts.
    assert_eq!(stores.evaluate_alerts(&notifier).await, 0);
    assert_eq!(notifier.published().len(), 1);
    assert_eq!(stores.events.all().len(), 1);
}

/// A notifier whose publish takes a while, so that two deliveries overlap.
struct SlowNotifier(MemoryNotifier);

impl Notifier for SlowNotifier {
    async fn publish(&self, n: &Notification) -> Result<String, StoreError> {
        tokio::time::sleep(StdDuration::from_millis(50)).await;
        self.0.publish(n).await
    }
}

#[tokio::test]
async fn realtime_and_evaluate_alerts_racing_on_one_alert_publish_it_once() {
    for realtime_first in [true, false] {
        let stores = Stores::new();
        let notifier = SlowNotifier(MemoryNotifier::new());
        let r = record(
            "rt-race",
            Utc::now() - Duration::minutes(1),
            "iam.amazonaws.com",
            "CreateUser",
            "IAMUser",
        );
        // The scheduled run queued the alert; Realtime receives the event as EvaluateAlerts
        // starts delivering.
        let off = MemoryNotifier::new();
        off.fail_matching(vec![String::new()]);
        let queued = stores.run(event(&r), &off).await;
        assert_eq!((queued.alerts_queued, queued.failed), (1, 1));
        assert_eq!(stores.alerts.with_status(status::PENDING).len(), 1);
        let (rt, sent) = if realtime_first {
            tokio::join!(
                stores.run(event(&r), &notifier),
                stores.evaluate_alerts(&notifier)
            )
        } else {
            let (sent, rt) = tokio::join!(
                stores.evaluate_alerts(&notifier),
                stores.run(event(&r), &notifier)
            );
            (rt, sent)
        };
        assert_eq!(
            notifier.0.published().len(),
            1,
            "exactly one publish (realtime first: {realtime_first})"
        );
        assert_eq!(rt.sent as usize + sent, 1);
        assert_eq!(rt.skipped as usize, 1 - rt.sent as usize);
        assert_eq!(stores.alerts.with_status(status::SENT).len(), 1);
    }
}

#[tokio::test]
async fn a_failed_publish_is_left_pending_for_the_scheduled_run() {
    let stores = Stores::new();
    let failing = MemoryNotifier::new();
    failing.fail_matching(vec!["IAM User Created".into()]);
    let r = record(
        "rt-fail",
        Utc::now() - Duration::minutes(1),
        "iam.amazonaws.com",
        "CreateUser",
        "IAMUser",
    );
    let out = stores.run(event(&r), &failing).await;
    assert_eq!((out.sent, out.failed), (0, 1));
    assert!(out.errors[0].contains("rt-fail/user-creation"), "{out:?}");
    let pending = stores.alerts.with_status(status::PENDING);
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].attempts, 1);
    let working = MemoryNotifier::new();
    assert_eq!(stores.evaluate_alerts(&working).await, 1);
    assert_eq!(working.published().len(), 1);
}

#[tokio::test]
async fn a_root_sessions_first_call_goes_at_once_and_the_rest_in_its_email() {
    let stores = Stores::new();
    let notifier = MemoryNotifier::new();
    let start = Utc::now() - Duration::minutes(20);
    let calls = [
        ("root-1", "kms.amazonaws.com", "CreateKey"),
        ("root-2", "s3.amazonaws.com", "PutBucketPolicy"),
        ("root-3", "cloudtrail.amazonaws.com", "StopLogging"),
    ];
    let mut held = 0;
    for (i, (id, source, name)) in calls.iter().enumerate() {
        let r = record(
            id,
            start + Duration::minutes(i as i64),
            source,
            name,
            "Root",
        );
        let out = stores.run(event(&r), &notifier).await;
        assert_eq!(out.source, Some(Source::Root), "{name}");
        held += out.held_for_session;
    }
    assert_eq!(held, 2);
    assert_eq!(notifier.published().len(), 1, "the session's first call");
    assert!(notifier.published()[0].1.body.contains("CreateKey"));
    // The same first call again (a retry) claims its own session again: nothing new.
    let first = record("root-1", start, "kms.amazonaws.com", "CreateKey", "Root");
    assert_eq!(stores.run(event(&first), &notifier).await.skipped, 1);
    // The scheduled run sends the rest as one email.
    assert_eq!(stores.evaluate_alerts(&notifier).await, 2);
    let published = notifier.published();
    assert_eq!(published.len(), 2);
    assert!(published[1].1.body.contains("PutBucketPolicy"));
    assert!(published[1].1.body.contains("StopLogging"));
    // A call more than an hour later opens a new session: at once again.
    let late = record(
        "root-4",
        start + Duration::minutes(90),
        "kms.amazonaws.com",
        "ScheduleKeyDeletion",
        "Root",
    );
    assert_eq!(stores.run(event(&late), &notifier).await.sent, 1);
}

#[tokio::test]
async fn events_no_source_collects_and_noise_are_left_alone() {
    let stores = Stores::new();
    let notifier = MemoryNotifier::new();
    let now = Utc::now() - Duration::minutes(1);
    let kms = record("x-1", now, "kms.amazonaws.com", "CreateKey", "IAMUser");
    let out = stores.run(event(&kms), &notifier).await;
    assert_eq!(out.disposition, Disposition::NotCollected);
    assert_eq!(out.source, None);
    let mut service = record("x-2", now, "iam.amazonaws.com", "CreateUser", "AWSService");
    service["userIdentity"] = json!({"type": "AWSService", "invokedBy": "sso.amazonaws.com"});
    assert_eq!(
        stores.run(event(&service), &notifier).await.disposition,
        Disposition::Filtered
    );
    assert!(stores.events.all().is_empty());
    assert!(stores.alerts.all().is_empty());
    assert!(notifier.published().is_empty());
}

#[tokio::test]
async fn bad_input_is_refused_with_a_clear_error() {
    let stores = Stores::new();
    let notifier = MemoryNotifier::new();
    let cases = [
        (json!({"hello": "world"}), "EventBridge event"),
        (
            json!({"detail-type": "EC2 Instance State-change Notification", "detail": {}}),
            "check the EventBridge rule's pattern",
        ),
        (
            json!({"detail-type": "AWS API Call via CloudTrail", "detail": {"eventName": "CreateUser"}}),
            "not a usable CloudTrail record",
        ),
    ];
    for (payload, expected) in cases {
        let e = stores.try_run(payload, &notifier).await.unwrap_err();
        assert_eq!(e.error_type, "InvalidInput");
        assert!(e.message.contains(expected), "{e}");
    }
    assert!(stores.events.all().is_empty());
}

#[tokio::test]
async fn with_delivery_off_the_alert_waits_in_the_outbox() {
    let mut stores = Stores::new();
    stores.settings.alerts_enabled = false;
    let notifier = MemoryNotifier::new();
    let r = record(
        "rt-off",
        Utc::now() - Duration::minutes(1),
        "iam.amazonaws.com",
        "CreateUser",
        "IAMUser",
    );
    let out = stores.run(event(&r), &notifier).await;
    assert_eq!((out.alerts_queued, out.sent), (1, 0));
    assert!(notifier.published().is_empty());
    assert_eq!(stores.alerts.with_status(status::PENDING).len(), 1);
}
