//! Alert delivery through the outbox: exactly once per (event, rule) across re-runs and
//! redrives, two alerts for two rules on one event, an SNS failure that leaves alerts pending
//! for the next run, and an always-failing alert that becomes `failed` after
//! `ALERT_MAX_ATTEMPTS` and is delivered once an operator sets it back to `pending`. All on moto
//! (DynamoDB, SNS, SQS) through real executions.

use std::collections::BTreeSet;

use chrono::{Duration as Span, Utc};
use iamtrail::demo::dataset_emulator;
use iamtrail_e2e::*;
use serde_json::json;

fn outbox_keys(items: &[Item]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|i| {
            (
                attr(i, "event_id").unwrap().to_string(),
                attr(i, "alert_type").unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dataset_alerts_are_delivered_exactly_once_across_reruns_and_redrives() {
    let mut options = options("alerts-dataset");
    options.dataset = Some(dataset_dir());
    options.emulator = dataset_emulator(Some(24), None);
    let stack = start(options).await;
    let alerts_table = stack.settings().alerts_table.clone();

    let (first, summary) = run_ok(&stack, "alerts-1", json!({})).await;
    let delivery = first.output.as_ref().unwrap()["alerts"].clone();
    let received = stack.received_alerts().await.unwrap();
    let outbox = scan_all(&stack.dynamodb(), &alerts_table).await;
    println!(
        "run 1: {} alerts queued, delivery {delivery}, {} received",
        summary.totals.alerts_queued,
        received.len()
    );
    for a in &received {
        println!(
            "  {} | {}",
            a.subject,
            a.attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    assert!(
        summary.totals.alerts_queued > 0,
        "the dataset has alert-worthy events"
    );
    assert_eq!(summary.totals.alerts_queued as usize, outbox.len());
    assert_eq!(
        received.len(),
        outbox.len(),
        "every queued alert delivered once"
    );
    assert!(outbox
        .iter()
        .all(|i| attr(i, "status") == Some("sent") && attr(i, "message_id").is_some()));
    let sent_ids: BTreeSet<&str> = outbox
        .iter()
        .filter_map(|i| attr(i, "message_id"))
        .collect();
    let received_ids: BTreeSet<&str> = received.iter().map(|a| a.message_id.as_str()).collect();
    assert_eq!(
        sent_ids, received_ids,
        "the outbox records the delivered SNS message ids"
    );
    for a in &received {
        assert!(
            a.subject.len() <= 100 && a.subject.contains("] IAM Alert: "),
            "{}",
            a.subject
        );
        let names: Vec<&str> = a.attributes.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["event_name", "rule_id", "severity"]);
        assert!(a.body.contains("Event Details:") && a.body.contains("Action Required:"));
    }

    // The same job again: nothing new to queue, nothing published.
    let (second, again) = run_ok(&stack, "alerts-2", json!({})).await;
    assert_eq!(again.totals.alerts_queued, 0);
    assert_eq!(second.output.as_ref().unwrap()["alerts"]["sent"], 0);
    // A backfill over the same events re-evaluates every rule: the conditional puts keep the
    // outbox as it is.
    let start_at = (Utc::now() - Span::days(3)).to_rfc3339();
    let (_, backfill) = run_ok(
        &stack,
        "alerts-backfill",
        json!({"start": start_at, "end": Utc::now().to_rfc3339(), "regions": ["us-east-1"]}),
    )
    .await;
    assert_eq!(backfill.totals.stored, 439);
    assert_eq!(backfill.totals.alerts_queued, 0);
    // A redrive re-runs the failed state with its recorded input: EvaluateAlerts again.
    let redriven =
        invoke_via_gateway(&stack, "evaluate-alerts", &json!({"run_id": "alerts-1"})).await;
    assert_eq!(redriven["sent"], 0, "{redriven}");
    assert!(
        stack.received_alerts().await.unwrap().is_empty(),
        "no duplicate published"
    );
    assert_eq!(
        outbox_keys(&scan_all(&stack.dynamodb(), &alerts_table).await),
        outbox_keys(&outbox)
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_rules_on_one_event_are_two_alerts() {
    let stack = start(options("alerts-two-rules")).await;
    let when = Utc::now() - Span::hours(1);
    stack.emulator.add_records(vec![root_record(
        "root-key",
        when,
        "iam.amazonaws.com",
        "CreateAccessKey",
    )]);
    let (_, summary) = run_ok(
        &stack,
        "two-rules",
        json!({"regions": ["us-east-1"], "sources": ["iam"]}),
    )
    .await;
    assert_eq!(summary.totals.alerts_queued, 2);
    let outbox = scan_all(&stack.dynamodb(), &stack.settings().alerts_table).await;
    let keys = outbox_keys(&outbox);
    assert_eq!(
        keys,
        BTreeSet::from([
            ("root-key".to_string(), "access-key-creation".to_string()),
            ("root-key".to_string(), "root-activity".to_string())
        ])
    );
    let received = stack.received_alerts().await.unwrap();
    assert_eq!(received.len(), 2);
    let rules: BTreeSet<String> = received
        .iter()
        .flat_map(|a| {
            a.attributes
                .iter()
                .filter(|(k, _)| k == "rule_id")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(
        rules,
        BTreeSet::from([
            "access-key-creation".to_string(),
            "root-activity".to_string()
        ])
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_publish_stays_pending_and_the_next_run_delivers_it() {
    let stack = start(options("alerts-sns-down")).await;
    let when = Utc::now() - Span::hours(1);
    stack.emulator.add_records(vec![
        record(
            "new-user",
            when,
            "iam.amazonaws.com",
            "CreateUser",
            "us-east-1",
        ),
        record("quiet", when, "iam.amazonaws.com", "GetUser", "us-east-1"),
    ]);
    let input = json!({"regions": ["us-east-1"], "sources": ["iam"]});
    let table = stack.settings().alerts_table.clone();

    stack.fail_sns_publish(true);
    let (first, summary) = run_ok(&stack, "sns-down", input.clone()).await;
    assert_eq!(summary.totals.stored, 2, "collection completes");
    assert_eq!(summary.totals.alerts_queued, 1);
    let delivery = &first.output.as_ref().unwrap()["alerts"];
    assert_eq!(
        (delivery["sent"].as_u64(), delivery["failed"].as_u64()),
        (Some(0), Some(1)),
        "{delivery}"
    );
    assert_eq!(
        (
            delivery["failed_for_good"].as_u64(),
            delivery["failed_total"].as_u64(),
            delivery["more"].as_bool()
        ),
        (Some(0), Some(0), Some(false)),
        "{delivery}"
    );
    let outbox = scan_all(&stack.dynamodb(), &table).await;
    assert_eq!(outbox.len(), 1);
    assert_eq!(attr(&outbox[0], "status"), Some("pending"));
    assert_eq!(
        outbox[0]
            .get("attempts")
            .and_then(|v| v.as_n().ok())
            .map(String::as_str),
        Some("1")
    );
    // The error code and message SNS answered, not the raw response (moto 5.2.5 rewrites
    // everything between a response's first `<RequestId>` and its last `</RequestId>`, so a
    // raw XML body stored here would hide alerts from a Query).
    assert!(
        attr(&outbox[0], "last_error")
            .is_some_and(|e| e.contains("InternalError") && !e.contains('<')),
        "{:?}",
        outbox[0]
    );
    assert!(stack.received_alerts().await.unwrap().is_empty());

    stack.fail_sns_publish(false);
    let (second, _) = run_ok(&stack, "sns-up", input).await;
    assert_eq!(second.output.as_ref().unwrap()["alerts"]["sent"], 1);
    let received = stack.received_alerts().await.unwrap();
    assert_eq!(received.len(), 1);
    assert!(
        received[0].subject.contains("User"),
        "{}",
        received[0].subject
    );
    let outbox = scan_all(&stack.dynamodb(), &table).await;
    assert_eq!(attr(&outbox[0], "status"), Some("sent"));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alerts_disabled_queues_but_does_not_deliver() {
    let mut options = options("alerts-off");
    options
        .settings
        .insert("ALERTS_ENABLED".into(), "false".into());
    let stack = start(options).await;
    stack.emulator.add_records(vec![record(
        "u1",
        Utc::now() - Span::hours(1),
        "iam.amazonaws.com",
        "CreateUser",
        "us-east-1",
    )]);
    let (result, summary) = run_ok(
        &stack,
        "off",
        json!({"regions": ["us-east-1"], "sources": ["iam"]}),
    )
    .await;
    assert_eq!(summary.totals.alerts_queued, 1);
    assert_eq!(result.output.as_ref().unwrap()["alerts"]["enabled"], false);
    assert!(stack.received_alerts().await.unwrap().is_empty());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_always_failing_alert_becomes_failed_and_an_operator_can_retry_it() {
    let mut options = options("alerts-failed");
    options
        .settings
        .insert("ALERT_MAX_ATTEMPTS".into(), "2".into());
    let stack = start(options).await;
    stack.emulator.add_records(vec![record(
        "doomed",
        Utc::now() - Span::hours(1),
        "iam.amazonaws.com",
        "CreateUser",
        "us-east-1",
    )]);
    let input = json!({"regions": ["us-east-1"], "sources": ["iam"]});
    let table = stack.settings().alerts_table.clone();
    let status_of = |items: &[Item]| attr(&items[0], "status").map(String::from);

    stack.fail_sns_publish(true);
    let (first, _) = run_ok(&stack, "failing-1", input.clone()).await;
    let delivery = &first.output.as_ref().unwrap()["alerts"];
    assert_eq!(
        (
            delivery["failed"].as_u64(),
            delivery["failed_for_good"].as_u64()
        ),
        (Some(1), Some(0))
    );
    assert_eq!(
        status_of(&scan_all(&stack.dynamodb(), &table).await).as_deref(),
        Some("pending")
    );
    // The second failed attempt is the last: the alert is kept as `failed` and counted.
    let (second, _) = run_ok(&stack, "failing-2", input.clone()).await;
    let delivery = &second.output.as_ref().unwrap()["alerts"];
    assert_eq!(
        (
            delivery["failed"].as_u64(),
            delivery["failed_for_good"].as_u64(),
            delivery["failed_total"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{delivery}"
    );
    let outbox = scan_all(&stack.dynamodb(), &table).await;
    assert_eq!(status_of(&outbox).as_deref(), Some("failed"));
    assert!(attr(&outbox[0], "last_error").is_some_and(|e| e.contains("InternalError")));
    assert!(!outbox[0].contains_key("claimed_at"));
    assert!(!outbox[0].contains_key("ttl"), "a failed alert is kept");

    // SNS works again, but a failed alert is not retried by itself.
    stack.fail_sns_publish(false);
    let (third, _) = run_ok(&stack, "failing-3", input.clone()).await;
    let delivery = &third.output.as_ref().unwrap()["alerts"];
    assert_eq!(
        (delivery["sent"].as_u64(), delivery["failed_total"].as_u64()),
        (Some(0), Some(1))
    );
    assert!(stack.received_alerts().await.unwrap().is_empty());

    // The operator sets it back to pending (docs/alerts.md): the next run delivers it.
    stack
        .dynamodb()
        .update_item()
        .table_name(&table)
        .key(
            "event_id",
            aws_sdk_dynamodb::types::AttributeValue::S("doomed".into()),
        )
        .key(
            "alert_type",
            aws_sdk_dynamodb::types::AttributeValue::S("user-creation".into()),
        )
        .update_expression("SET #s = :pending REMOVE attempts")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(
            ":pending",
            aws_sdk_dynamodb::types::AttributeValue::S("pending".into()),
        )
        .send()
        .await
        .unwrap();
    let (fourth, _) = run_ok(&stack, "failing-4", input).await;
    let delivery = &fourth.output.as_ref().unwrap()["alerts"];
    assert_eq!(
        (delivery["sent"].as_u64(), delivery["failed_total"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(stack.received_alerts().await.unwrap().len(), 1);
    assert_eq!(
        status_of(&scan_all(&stack.dynamodb(), &table).await).as_deref(),
        Some("sent")
    );
    stack.stop().await;
}
