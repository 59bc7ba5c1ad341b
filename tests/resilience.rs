//! Throttling, late delivery, the time-budget loop, failing regions and DynamoDB leaving items
//! unprocessed: nothing is lost.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{Duration as Span, Utc};
use iamtrail_aws::{run_step, Step};
use iamtrail_core::contract::WorkItem;
use iamtrail_core::Source;
use iamtrail_e2e::*;
use iamtrail_local::EmulatorOptions;
use serde_json::{json, Value};

fn sts_records(
    prefix: &str,
    n: usize,
    newest: chrono::DateTime<Utc>,
    spacing: Span,
    region: &str,
) -> Vec<Value> {
    (0..n)
        .map(|i| {
            record(
                &format!("{prefix}-{i:05}"),
                newest - spacing * i as i32,
                "sts.amazonaws.com",
                "AssumeRole",
                region,
            )
        })
        .collect()
}

fn only_sts_in(regions: &[&str]) -> Value {
    json!({"regions": regions, "sources": ["sts"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttled_at_2_per_second_with_1200_events_in_one_window_loses_nothing() {
    let mut options = options("throttle");
    options.emulator = EmulatorOptions {
        throttle_rps: Some(2.0),
        ..Default::default()
    };
    // Ask faster than the quota so the emulator really throttles and the backoff is exercised.
    options
        .settings
        .insert("LOOKUP_RATE_PER_SECOND".into(), "5".into());
    let stack = start(options).await;
    // 1200 events within ten minutes, three hours ago: one window, 24 pages at least.
    let records = sts_records(
        "burst",
        1200,
        Utc::now() - Span::hours(3),
        Span::milliseconds(500),
        "us-east-1",
    );
    let expected: BTreeSet<String> = records
        .iter()
        .map(|r| r["eventID"].as_str().unwrap().to_string())
        .collect();
    stack.emulator.add_records(records);

    let (result, summary) = run_ok(&stack, "throttled", only_sts_in(&["us-east-1"])).await;
    let items = scan_all(&stack.dynamodb(), &stack.settings().events_table).await;
    let stats = stack.emulator.stats();
    println!(
        "throttled run: {} stored, {} requests, {} throttled by the emulator, {:.1}s",
        items.len(),
        summary.totals.requests,
        stats.throttled,
        result.duration.as_secs_f64()
    );
    assert_eq!(ids(&items), expected, "every event stored once");
    assert!(stats.throttled > 0, "the emulator throttled");
    assert_eq!(
        summary.totals.throttled, stats.throttled,
        "every throttle seen and retried"
    );
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_delivered_events_inside_the_overlap_are_found_on_the_next_run() {
    let stack = start(options("late")).await;
    let t0 = Utc::now();
    stack.emulator.add_records(sts_records(
        "early",
        5,
        t0 - Span::hours(2),
        Span::minutes(1),
        "us-east-1",
    ));
    run_ok(&stack, "late-1", only_sts_in(&["us-east-1"])).await;
    let table = stack.settings().events_table.clone();
    assert_eq!(scan_all(&stack.dynamodb(), &table).await.len(), 5);

    // Delivered after run 1 although they happened before its window end: one 10 minutes
    // before run 1 (inside the 15-minute overlap), one 40 minutes before (outside it).
    stack.emulator.add_records(vec![
        record(
            "late-inside",
            t0 - Span::minutes(10),
            "sts.amazonaws.com",
            "AssumeRole",
            "us-east-1",
        ),
        record(
            "late-outside",
            t0 - Span::minutes(40),
            "sts.amazonaws.com",
            "AssumeRole",
            "us-east-1",
        ),
    ]);
    let (_, summary) = run_ok(&stack, "late-2", only_sts_in(&["us-east-1"])).await;
    let found = ids(&scan_all(&stack.dynamodb(), &table).await);
    assert!(
        found.contains("late-inside"),
        "the overlap catches late delivery"
    );
    assert!(
        !found.contains("late-outside"),
        "later than the overlap is beyond this run (a backfill recovers it)"
    );
    assert_eq!(summary.totals.stored, 1);

    // A backfill recovers what arrived later than the overlap.
    let input = json!({"start": (t0 - Span::hours(1)).to_rfc3339(), "end": t0.to_rfc3339(), "regions": ["us-east-1"], "sources": ["sts"]});
    run_ok(&stack, "late-backfill", input).await;
    assert!(ids(&scan_all(&stack.dynamodb(), &table).await).contains("late-outside"));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn out_of_budget_returns_more_and_the_loop_finishes_the_window() {
    let mut options = options("budget");
    options.fail_collect_regions = vec!["eu-north-1".into()];
    options
        .settings
        .insert("COLLECT_TIME_BUDGET_SECONDS".into(), "2".into());
    options
        .settings
        .insert("LOOKUP_RATE_PER_SECOND".into(), "10".into());
    options
        .settings
        .insert("MIN_SLICE_SECONDS".into(), "3600".into());
    // Far above what the window needs: this test is about the budget loop, not its cap
    // (steps/aws/tests/collect_lease.rs covers the cap).
    options
        .settings
        .insert("MAX_COLLECT_INVOCATIONS".into(), "100".into());
    let stack = start(options).await;
    // 2000 events, one every 18 s over ten hours: 40 pages, far more than one 2-second
    // invocation can read at 10 requests/s.
    let records = sts_records(
        "spread",
        2000,
        Utc::now() - Span::hours(1),
        Span::seconds(18),
        "us-east-1",
    );
    let expected: BTreeSet<String> = records
        .iter()
        .map(|r| r["eventID"].as_str().unwrap().to_string())
        .collect();
    stack.emulator.add_records(records);

    // The library function itself: one invocation runs out of its 2 s budget mid-window.
    let item = WorkItem {
        run_id: "direct".into(),
        region: "us-east-1".into(),
        sources: vec![Source::Sts],
        ..Default::default()
    };
    let started = Instant::now();
    let out = run_step(
        Step::Collect,
        &stack.context,
        serde_json::to_value(&item).unwrap(),
        None,
    )
    .await
    .unwrap();
    let out: WorkItem = serde_json::from_value(out).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the budget is respected"
    );
    assert!(out.more, "stopped between slices with more: true");
    let progress = &out.progress[&Source::Sts];
    assert!(
        !progress.done && progress.counts.stored < 2000,
        "{progress:?}"
    );

    // The workflow collects us-east-1 again, round after round of the Map, until its window is
    // done; nothing is lost. eu-west-1 (no events) finishes in the first round and eu-north-1's
    // Collect fails there: Aggregate carries both results through the later rounds.
    let (result, summary) = run_ok(
        &stack,
        "budget",
        only_sts_in(&["us-east-1", "eu-west-1", "eu-north-1"]),
    )
    .await;
    let items = scan_all(&stack.dynamodb(), &stack.settings().events_table).await;
    let east = summary
        .targets
        .iter()
        .find(|t| t.region == "us-east-1")
        .expect("us-east-1 reported");
    let rounds = (summary.collect_invocations - 1) as usize;
    println!(
        "budget run: {rounds} Map rounds, {} Collect invocations, {} transitions, {} slices, {} stored",
        result.collect_invocations,
        result.state_transitions,
        summary.totals.slices,
        items.len()
    );
    assert!(rounds > 1, "Aggregate sent us-east-1 round again");
    assert_eq!(ids(&items), expected);
    assert!(
        east.counts.stored + progress.counts.stored >= 2000,
        "us-east-1's counts add up over every round: {} stored by the workflow, {} by the direct call",
        east.counts.stored,
        progress.counts.stored
    );
    assert_eq!(summary.regions, 3, "each region once, whatever the rounds");
    let west = summary.targets.iter().find(|t| t.region == "eu-west-1");
    assert!(west.is_some_and(|t| t.error.is_none()), "{west:?}");
    assert_eq!(summary.status, "partial");
    assert_eq!(summary.errors.len(), 1, "{:?}", summary.errors);
    assert_eq!(summary.errors[0].region, "eu-north-1");
    // The history's Collect states: one per round for us-east-1, and eu-west-1's and
    // eu-north-1's (whose failed invocation no work item counts).
    assert_eq!(result.collect_invocations, rounds + 2);
    assert_eq!(
        summary.collect_invocations as usize,
        result.collect_invocations - 1
    );
    assert!(
        summary.capped_regions.is_empty(),
        "{:?}",
        summary.capped_regions
    );
    // What the rounds cost: ListTargets and Route; the first round's Map, 3 Collect,
    // CollectFailed, Aggregate and CollectAgain?; 4 states for each later round (Map, Collect,
    // Aggregate, CollectAgain?); EvaluateAlerts, AfterAlerts? and Done (no date is due: the
    // other enabled regions have no checkpoint).
    assert!(result.output.as_ref().unwrap().get("export").is_none());
    assert_eq!(result.state_transitions, 2 + 7 + 4 * (rounds - 1) + 3);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_region_is_reported_while_the_others_complete() {
    let mut options = options("failing");
    options.emulator = EmulatorOptions {
        fail_regions: vec!["eu-west-1".into()],
        ..Default::default()
    };
    options.fail_collect_regions = vec!["eu-north-1".into()];
    let stack = start(options).await;
    let now = Utc::now() - Span::hours(1);
    for region in ["us-east-1", "eu-west-1", "eu-north-1"] {
        stack.emulator.add_records(sts_records(
            &format!("ev-{region}"),
            3,
            now,
            Span::minutes(1),
            region,
        ));
    }
    let (_, summary) = run_ok(
        &stack,
        "partial",
        only_sts_in(&["us-east-1", "eu-west-1", "eu-north-1"]),
    )
    .await;
    assert_eq!(summary.status, "partial");
    let items = scan_all(&stack.dynamodb(), &stack.settings().events_table).await;
    assert_eq!(items.len(), 3);
    assert!(items
        .iter()
        .all(|i| attr(i, "aws_region") == Some("us-east-1")));
    // CloudTrail failing in eu-west-1: the source's error, recorded in the control table.
    let west = summary
        .errors
        .iter()
        .find(|e| e.region == "eu-west-1")
        .expect("eu-west-1 reported");
    assert_eq!(west.source, Some(Source::Sts));
    assert!(west.error.contains("InternalFailure"), "{}", west.error);
    let control = control_item(&stack, "eu-west-1-sts").await.unwrap();
    assert_eq!(attr(&control, "processing_status"), Some("error"));
    assert!(attr(&control, "last_error").is_some_and(|e| e.contains("InternalFailure")));
    // The Collect function failing in eu-north-1: caught by the workflow and reported.
    let north = summary
        .errors
        .iter()
        .find(|e| e.region == "eu-north-1")
        .expect("eu-north-1 reported");
    assert!(north.error.contains("InjectedFailure"), "{}", north.error);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unprocessed_items_from_batch_write_item_are_written_again_and_nothing_is_lost() {
    let stack = start(options("unprocessed")).await;
    // 300 events: 12 batches of 25.
    let records = sts_records(
        "unprocessed",
        300,
        Utc::now() - Span::hours(2),
        Span::seconds(5),
        "us-east-1",
    );
    let expected: BTreeSet<String> = records
        .iter()
        .map(|r| r["eventID"].as_str().unwrap().to_string())
        .collect();
    stack.emulator.add_records(records);
    // Half the events table's batches come back with half their items unprocessed (at most 6,
    // so that no batch can run out of attempts whatever the seed decides).
    let events_table = stack.settings().events_table.clone();
    stack.dynamodb_unprocessed_items(Some(
        UnprocessedItemsFault::new(2024)
            .probability(0.5)
            .fraction(0.5)
            .max_batches(6)
            .table(&events_table),
    ));

    let (_, summary) = run_ok(&stack, "unprocessed", only_sts_in(&["us-east-1"])).await;
    let items = scan_all(&stack.dynamodb(), &events_table).await;
    let (requests, cut) = (
        stack.requests("dynamodb", "BatchWriteItem"),
        stack.injected("dynamodb", "BatchWriteItem"),
    );
    println!("BatchWriteItem: {requests} requests, {cut} cut short by the gateway");
    assert_eq!(ids(&items), expected, "every event stored once");
    assert!(cut > 0, "the gateway left items unprocessed");
    assert!(
        requests >= 12 + cut,
        "every cut batch was followed by a retry of its unprocessed items ({requests} requests)"
    );
    assert_eq!(summary.status, "succeeded");
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    // The gateway counts what reached the CloudTrail emulator, too.
    assert_eq!(
        stack.requests("cloudtrail", "LookupEvents"),
        stack.cloudtrail_stats().requests
    );
    assert_eq!(
        stack.cloudtrail_stats().per_region["us-east-1"].requests,
        summary.totals.requests
    );
    stack.stop().await;
}
