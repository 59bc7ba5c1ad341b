//! The `root` source end to end on the local stack: root calls in services iamtrail does not
//! otherwise read (KMS, S3), in two regions, are read by LookupEvents with the `Username`
//! attribute `root`, stored, and alerted as one email for the root session
//! (docs/alerts.md, "Root sessions"); a root IAM call is left to the `iam` source; a second
//! run stores and sends nothing new.

use chrono::{Duration as Span, Utc};
use iamtrail_e2e::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn root_calls_in_kms_and_s3_in_two_regions_are_stored_and_alert_as_one_session() {
    let stack = start(options("root-source")).await;
    let t0 = Utc::now() - Span::hours(2);
    let at = |m: i64| t0 + Span::minutes(m);
    let in_region = |mut r: serde_json::Value, region: &str| {
        r["awsRegion"] = json!(region);
        r["requestParameters"] = json!({});
        r
    };
    stack.emulator.add_records(vec![
        in_region(
            root_record("root-kms-1", at(0), "kms.amazonaws.com", "CreateKey"),
            "us-east-1",
        ),
        in_region(
            root_record("root-s3-1", at(3), "s3.amazonaws.com", "PutBucketPolicy"),
            "eu-west-1",
        ),
        in_region(
            root_record(
                "root-kms-2",
                at(6),
                "kms.amazonaws.com",
                "ScheduleKeyDeletion",
            ),
            "eu-west-1",
        ),
        // A root IAM call: read by the iam source, left to it by the root source.
        root_record("root-iam-1", at(9), "iam.amazonaws.com", "CreateUser"),
    ]);
    let input = json!({"regions": ["us-east-1", "eu-west-1"], "sources": ["iam", "root"]});

    let (_, first) = run_ok(&stack, "root-1", input.clone()).await;
    let events = scan_all(&stack.dynamodb(), &stack.settings().events_table).await;
    assert_eq!(
        ids(&events),
        ["root-iam-1", "root-kms-1", "root-kms-2", "root-s3-1"]
            .map(String::from)
            .into(),
    );
    let regions: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (attr(e, "event_id").unwrap(), attr(e, "aws_region").unwrap()))
        .collect();
    assert!(regions.contains(&("root-s3-1", "eu-west-1")), "{regions:?}");
    assert_eq!(first.totals.stored, 4, "the IAM call stored once, by iam");
    assert_eq!(first.totals.read_elsewhere, 1, "and left to it by root");
    // root-activity on each of the four calls, user-creation on CreateUser.
    assert_eq!(first.totals.alerts_queued, 5);
    let received = stack.received_alerts().await.unwrap();
    let subjects: Vec<&str> = received.iter().map(|a| a.subject.as_str()).collect();
    println!("received: {subjects:#?}");
    assert_eq!(
        received.len(),
        2,
        "one email for the session, one for the new user"
    );
    let session = received
        .iter()
        .find(|a| a.subject == "[CRITICAL] IAM Alert: Root Session Activity: 4 calls")
        .expect("the session's email");
    for call in [
        "CreateKey on kms.amazonaws.com in us-east-1",
        "PutBucketPolicy on s3.amazonaws.com in eu-west-1",
        "ScheduleKeyDeletion on kms.amazonaws.com in eu-west-1",
        "CreateUser on iam.amazonaws.com in us-east-1",
    ] {
        assert!(session.body.contains(call), "{call}:\n{}", session.body);
    }
    assert!(subjects.contains(&"[HIGH] IAM Alert: IAM User Created"));

    let (_, second) = run_ok(&stack, "root-2", input).await;
    assert_eq!(second.totals.alerts_queued, 0);
    assert!(stack.received_alerts().await.unwrap().is_empty());
    assert_eq!(
        ids(&scan_all(&stack.dynamodb(), &stack.settings().events_table).await),
        ids(&events)
    );
    stack.stop().await;
}
