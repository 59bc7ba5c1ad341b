//! The near-real-time path on the local stack (docs/realtime.md): the bundled dataset replayed
//! through the Realtime function as EventBridge would invoke it, then the scheduled execution;
//! Realtime racing EvaluateAlerts on pending alerts; Realtime unable to publish (SNS 500) and
//! the scheduled run delivering. Real DynamoDB conditional writes and SNS → SQS on moto.

use std::collections::{BTreeMap, BTreeSet};

use iamtrail::demo::dataset_emulator;
use iamtrail::local::LocalStack;
use iamtrail::replay::{median_max, replay_realtime, ReplayReport};
use iamtrail_aws::steps::realtime::Disposition;
use iamtrail_aws::{run_step, Step};
use iamtrail_e2e::*;
use serde_json::json;

/// The dataset's built-in alerts (`iamtrail rules test` on the bundled dataset).
const DATASET_ALERTS: usize = 12;
/// The events a scheduled run stores from the bundled dataset.
const DATASET_EVENTS: usize = 439;

async fn dataset_stack(name: &str) -> LocalStack {
    let mut options = options(name);
    options.dataset = Some(dataset_dir());
    options.emulator = dataset_emulator(Some(24), None);
    start(options).await
}

async fn replay(stack: &LocalStack) -> ReplayReport {
    let report = replay_realtime(stack, |_, _| {}).await.expect("replay");
    assert!(report.errors().is_empty(), "{:?}", report.errors());
    report
}

/// Every item of a table by key (event_id, and the sort key when there is one).
async fn by_key(stack: &LocalStack, table: &str, sort: &str) -> BTreeMap<(String, String), Item> {
    scan_all(&stack.dynamodb(), table)
        .await
        .into_iter()
        .map(|i| {
            let key = (
                attr(&i, "event_id").unwrap_or_default().to_string(),
                attr(&i, sort).unwrap_or_default().to_string(),
            );
            (key, i)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn realtime_alerts_first_then_the_scheduled_run_stores_everything_and_sends_nothing() {
    let stack = dataset_stack("realtime-replay").await;
    let settings = stack.settings().clone();

    let report = replay(&stack).await;
    let received = stack.received_alerts().await.unwrap();
    let latencies = report.latencies_ms(&received);
    let (median, max) = median_max(&latencies).expect("latencies");
    println!(
        "replay: {} records, {} published to an ENABLED rule, {} invoked Realtime, {} stored, {} sent, {} received; gateway to mailbox median {median} ms, max {max} ms",
        report.records,
        report.published,
        report.events.len(),
        report.stored(),
        report.sent(),
        received.len()
    );
    assert_eq!(report.sent() as usize, DATASET_ALERTS);
    assert_eq!(received.len(), DATASET_ALERTS);
    assert_eq!(latencies.len(), DATASET_ALERTS, "every alert timed");
    let alert_events: BTreeSet<&str> = received.iter().filter_map(|a| a.event_id()).collect();
    assert_eq!(alert_events.len(), DATASET_ALERTS, "one message per alert");
    // Realtime saw only what the pattern selects: never a read-only call, never an STS call
    // other than GetFederationToken, never another service's call by someone other than root.
    assert!(report.events.len() < report.published);
    let events_after_replay = by_key(&stack, &settings.events_table, "event_date").await;
    assert_eq!(events_after_replay.len(), report.stored());
    assert!(report
        .events
        .iter()
        .all(|e| e.output.as_ref().unwrap().disposition == Disposition::Stored));
    let outbox_after_replay = by_key(&stack, &settings.alerts_table, "alert_type").await;
    assert_eq!(outbox_after_replay.len(), DATASET_ALERTS);

    // The scheduled run: everything stored, nothing queued or sent again.
    let (result, summary) = run_ok(&stack, "realtime-scheduled", json!({})).await;
    let delivery = result.output.as_ref().unwrap()["alerts"].clone();
    assert_eq!(
        summary.totals.stored as usize, DATASET_EVENTS,
        "{summary:?}"
    );
    assert_eq!(summary.totals.alerts_queued, 0);
    assert_eq!(delivery["sent"], 0, "{delivery}");
    assert!(stack.received_alerts().await.unwrap().is_empty());
    let events = by_key(&stack, &settings.events_table, "event_date").await;
    assert_eq!(events.len(), DATASET_EVENTS);
    for (key, item) in &events_after_replay {
        assert_eq!(
            events.get(key),
            Some(item),
            "the scheduled run stores the item Realtime stored"
        );
    }
    assert_eq!(
        by_key(&stack, &settings.alerts_table, "alert_type").await,
        outbox_after_replay,
        "outbox rows unchanged"
    );

    // EventBridge delivers at least once: the whole replay again changes nothing.
    let again = replay(&stack).await;
    assert_eq!((again.sent(), again.queued()), (0, 0));
    assert!(stack.received_alerts().await.unwrap().is_empty());
    assert_eq!(
        by_key(&stack, &settings.events_table, "event_date").await,
        events
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn realtime_racing_evaluate_alerts_on_pending_alerts_publishes_each_once() {
    let stack = dataset_stack("realtime-race").await;
    // The scheduled run queues the dataset's alerts, but SNS is down: they wait, pending.
    stack.fail_sns_publish(true);
    let (result, _) = run_ok(&stack, "race-scheduled", json!({})).await;
    assert_eq!(result.output.as_ref().unwrap()["alerts"]["sent"], 0);
    stack.fail_sns_publish(false);
    // Each publish takes a while, so that both deliveries are in flight together.
    stack.delay_sns_publish(Some(std::time::Duration::from_millis(150)));
    let evaluate = async {
        run_step(
            Step::EvaluateAlerts,
            &stack.context,
            json!({"run_id": "race"}),
            None,
        )
        .await
        .expect("EvaluateAlerts")
    };
    let (report, delivery) = tokio::join!(replay(&stack), evaluate);
    let received = stack.received_alerts().await.unwrap();
    println!(
        "race: Realtime sent {}, skipped {}; EvaluateAlerts {delivery}; {} received",
        report.sent(),
        report
            .events
            .iter()
            .map(|e| e.output.as_ref().unwrap().skipped)
            .sum::<u64>(),
        received.len()
    );
    let by_event: BTreeSet<&str> = received.iter().filter_map(|a| a.event_id()).collect();
    assert_eq!(received.len(), DATASET_ALERTS, "each alert published once");
    assert_eq!(by_event.len(), DATASET_ALERTS);
    let evaluate_sent = delivery["sent"].as_u64().unwrap();
    assert_eq!(report.sent() + evaluate_sent, DATASET_ALERTS as u64);
    assert!(
        report.sent() > 0 && evaluate_sent > 0,
        "both deliveries sent some: the race happened"
    );
    let outbox = scan_all(&stack.dynamodb(), &stack.settings().alerts_table).await;
    assert!(outbox.iter().all(|i| attr(i, "status") == Some("sent")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_realtime_cannot_publish_the_scheduled_run_delivers() {
    let stack = dataset_stack("realtime-sns-down").await;
    stack.fail_sns_publish(true);
    let report = replay(&stack).await;
    let failed: u64 = report
        .events
        .iter()
        .map(|e| e.output.as_ref().unwrap().failed)
        .sum();
    assert_eq!((report.sent(), failed), (0, DATASET_ALERTS as u64));
    assert!(stack.received_alerts().await.unwrap().is_empty());
    let outbox = scan_all(&stack.dynamodb(), &stack.settings().alerts_table).await;
    assert_eq!(outbox.len(), DATASET_ALERTS);
    assert!(outbox
        .iter()
        .all(|i| attr(i, "status") == Some("pending") && attr(i, "last_error").is_some()));

    stack.fail_sns_publish(false);
    let (result, summary) = run_ok(&stack, "after-sns-500", json!({})).await;
    assert_eq!(
        summary.totals.alerts_queued, 0,
        "queued by Realtime already"
    );
    assert_eq!(
        result.output.as_ref().unwrap()["alerts"]["sent"],
        DATASET_ALERTS
    );
    let received = stack.received_alerts().await.unwrap();
    assert_eq!(received.len(), DATASET_ALERTS);
}
