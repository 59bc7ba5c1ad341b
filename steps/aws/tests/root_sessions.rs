//! Root sessions delivered as one email (docs/alerts.md, "Root sessions"): the calls of one
//! root session go out in one message, sign-in events and root access-key creation at once,
//! and nothing is sent twice when EvaluateAlerts runs again.

use chrono::{DateTime, Duration, Utc};
use iamtrail_aws::memory::{MemoryAlerts, MemoryNotifier};
use iamtrail_aws::ports::AlertStore;
use iamtrail_aws::steps::evaluate_alerts::{evaluate_alerts, AlertDelivery, EvaluateAlertsInput};
use iamtrail_core::normalize::{normalize, NormalizeOptions};
use iamtrail_core::outbox::{alert_record, status};
use iamtrail_core::record::CloudTrailRecord;
use iamtrail_core::rules::evaluate;
use iamtrail_core::Settings;
use serde_json::json;

/// A root call: `source`/`name` in `region`, with the session's access key.
fn root_call(
    id: &str,
    time: DateTime<Utc>,
    source: &str,
    name: &str,
    region: &str,
    key: &str,
) -> iamtrail_core::NormalizedEvent {
    let text = json!({
        "eventVersion": "1.09", "eventID": id,
        "eventTime": time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "eventSource": source, "eventName": name, "awsRegion": region,
        "sourceIPAddress": "198.51.100.23", "userAgent": "aws-cli/2.15",
        "userIdentity": {"type": "Root", "principalId": "111122223333",
                         "arn": "arn:aws:iam::111122223333:root", "accountId": "111122223333",
                         "accessKeyId": key,
                         "sessionContext": {"attributes": {"mfaAuthenticated": "true"}}},
        "requestParameters": {}, "responseElements": if name == "ConsoleLogin" {
            json!({"ConsoleLogin": "Success"}) } else { json!(null) },
        "recipientAccountId": "111122223333"
    })
    .to_string();
    let record = CloudTrailRecord::from_lookup_event_json(&text).expect("a valid record");
    normalize(&record, NormalizeOptions::default())
}

async fn queue_matches(store: &MemoryAlerts, events: &[iamtrail_core::NormalizedEvent]) {
    for e in events {
        for m in evaluate(e) {
            store
                .enqueue(&alert_record(&m, e, Utc::now()))
                .await
                .unwrap();
        }
    }
}

async fn deliver(store: &MemoryAlerts, notifier: &MemoryNotifier) -> AlertDelivery {
    let settings =
        Settings::from_lookup(|k| (k == "ALERTS_TOPIC_ARN").then(|| "arn:topic".to_string()))
            .unwrap();
    evaluate_alerts(
        EvaluateAlertsInput::default(),
        store,
        Some(notifier),
        &iamtrail_aws::metrics::Metrics::discard(),
        &settings,
        Utc::now(),
        None,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_root_session_in_two_regions_is_one_email_and_logins_go_out_at_once() {
    let t0 = Utc::now() - Duration::hours(2);
    let at = |m: i64| t0 + Duration::minutes(m);
    let session = "ASIAROOTSESSION1";
    let events = vec![
        root_call(
            "login",
            at(0),
            "signin.amazonaws.com",
            "ConsoleLogin",
            "us-east-1",
            session,
        ),
        root_call(
            "kms-1",
            at(2),
            "kms.amazonaws.com",
            "CreateKey",
            "us-east-1",
            session,
        ),
        root_call(
            "s3-1",
            at(4),
            "s3.amazonaws.com",
            "PutBucketPolicy",
            "eu-west-1",
            session,
        ),
        root_call(
            "kms-2",
            at(6),
            "kms.amazonaws.com",
            "ScheduleKeyDeletion",
            "eu-west-1",
            session,
        ),
        root_call(
            "key",
            at(8),
            "iam.amazonaws.com",
            "CreateAccessKey",
            "us-east-1",
            session,
        ),
        // Another session: its own message (one call: the call's own alert text).
        root_call(
            "other",
            at(9),
            "s3.amazonaws.com",
            "DeleteBucket",
            "us-east-1",
            "ASIAOTHER",
        ),
    ];
    let (store, notifier) = (MemoryAlerts::new(), MemoryNotifier::new());
    queue_matches(&store, &events).await;
    assert_eq!(
        store.all().len(),
        7,
        "each call its own outbox row (the key two)"
    );

    let first = deliver(&store, &notifier).await;
    assert_eq!(first.sent, 7);
    let published = notifier.published();
    let subjects: Vec<&str> = published.iter().map(|(_, n)| n.subject.as_str()).collect();
    assert_eq!(published.len(), 5, "{subjects:#?}");
    let session_mail = published
        .iter()
        .find(|(_, n)| n.subject == "[CRITICAL] IAM Alert: Root Session Activity: 3 calls")
        .expect("one email for the session's three calls");
    for call in [
        "CreateKey on kms.amazonaws.com in us-east-1",
        "PutBucketPolicy on s3.amazonaws.com in eu-west-1",
        "ScheduleKeyDeletion on kms.amazonaws.com in eu-west-1",
    ] {
        assert!(
            session_mail.1.body.contains(call),
            "{call}: {}",
            session_mail.1.body
        );
    }
    assert!(session_mail.1.body.contains("key ASIAROOTSESSION1"));
    assert!(
        subjects.contains(&"[CRITICAL] IAM Alert: Root Account Login"),
        "at once"
    );
    assert!(subjects.contains(&"[CRITICAL] IAM Alert: Root Account Activity: CreateAccessKey"));
    assert!(subjects.contains(&"[CRITICAL] IAM Alert: Access Key Created"));
    assert!(subjects.contains(&"[CRITICAL] IAM Alert: Root Account Activity: DeleteBucket"));
    // The session's rows carry the one message id.
    let ids: Vec<String> = store
        .all()
        .into_iter()
        .filter(|a| ["kms-1", "s3-1", "kms-2"].contains(&a.event_id.as_str()))
        .map(|a| {
            assert_eq!(a.status, status::SENT);
            store.message_id(&a.event_id, &a.alert_type).expect("sent")
        })
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| *id == session_mail.0));

    // Again, and a re-queue of the same calls (a re-run of Collect): nothing new.
    queue_matches(&store, &events).await;
    let again = deliver(&store, &notifier).await;
    assert_eq!((again.sent, notifier.published().len()), (0, 5));

    // A late call of the same session: sent in a message of its own, without the others.
    let late = root_call(
        "late",
        at(20),
        "cloudtrail.amazonaws.com",
        "StopLogging",
        "us-east-1",
        session,
    );
    queue_matches(&store, &[late]).await;
    let later = deliver(&store, &notifier).await;
    assert_eq!(later.sent, 1);
    let last = &notifier.published()[5].1;
    assert_eq!(
        last.subject,
        "[CRITICAL] IAM Alert: Root Account Activity: StopLogging"
    );
}

#[tokio::test]
async fn calls_an_hour_apart_are_two_sessions() {
    let t0 = Utc::now() - Duration::hours(5);
    let key = "AKIAROOTLONGTERM";
    let events: Vec<_> = [0, 5, 130, 135]
        .iter()
        .map(|m| {
            root_call(
                &format!("c{m}"),
                t0 + Duration::minutes(*m),
                "ec2.amazonaws.com",
                "RunInstances",
                "us-east-1",
                key,
            )
        })
        .collect();
    let (store, notifier) = (MemoryAlerts::new(), MemoryNotifier::new());
    queue_matches(&store, &events).await;
    deliver(&store, &notifier).await;
    let subjects: Vec<String> = notifier
        .published()
        .into_iter()
        .map(|(_, n)| n.subject)
        .collect();
    assert_eq!(
        subjects,
        vec!["[CRITICAL] IAM Alert: Root Session Activity: 2 calls"; 2]
    );
}
