//! Collection over the bundled real dataset: exact counts, idempotent re-runs and backfills
//! (and where a backfill leaves the checkpoint: unchanged unless the range it read joins up
//! with it, then forward to its end, never backwards), all through real state machine
//! executions on moto server.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration as Span, Utc};
use iamtrail::demo::dataset_emulator;
use iamtrail::local::LocalStack;
use iamtrail_e2e::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dataset_is_stored_exactly_once_through_reruns_and_backfill() {
    let (expected, tracked, noise) = expected_ids(&dataset_dir());
    assert_eq!(
        (expected.len(), tracked, noise),
        (439, 465, 26),
        "independent count over the dataset"
    );

    let mut options = options("dataset");
    options.dataset = Some(dataset_dir());
    options.emulator = dataset_emulator(Some(24), None);
    let stack = start(options).await;
    let events_table = stack.settings().events_table.clone();
    let db = stack.dynamodb();

    // First run: every tracked, unfiltered event of the dataset, and nothing else.
    let (first, summary) = run_ok(&stack, "run-1", json!({})).await;
    let items = scan_all(&db, &events_table).await;
    println!(
        "run-1: {} transitions, {} Collect invocations, fetched {}, filtered {}, stored {}; table holds {}",
        first.state_transitions, first.collect_invocations, summary.totals.fetched, summary.totals.filtered(),
        summary.totals.stored, items.len()
    );
    assert_eq!(ids(&items), expected);
    assert_eq!(items.len(), 439);
    assert_eq!(summary.totals.fetched, 465);
    assert_eq!(summary.totals.filtered_aws_service, 26);
    assert_eq!(summary.totals.stored, 439);
    assert_eq!(summary.status, "succeeded");
    assert!(summary.errors.is_empty());
    for key in [
        "us-east-1-iam",
        "us-east-1-sts",
        "us-east-1-signin",
        "eu-west-1-sts",
    ] {
        let item = control_item(&stack, key)
            .await
            .unwrap_or_else(|| panic!("checkpoint {key}"));
        assert!(attr(&item, "last_processed_timestamp").is_some(), "{key}");
        assert_eq!(attr(&item, "processing_status"), Some("active"));
    }
    let run_record = control_item(&stack, "run#run-1").await.expect("run record");
    assert_eq!(attr(&run_record, "status"), Some("succeeded"));

    // The cost contract (docs/architecture.md, "What a run costs"): a run that collects every
    // region in one Map round enters 8 states besides its Collect tasks, and 2 more when it
    // exports. run-1 exports the dataset's days.
    let regions = summary.regions;
    assert_eq!(regions, 24, "the local stack's enabled regions");
    assert_eq!(first.collect_invocations, regions, "one round");
    assert!(first.output.as_ref().unwrap().get("export").is_some());
    assert_eq!(
        first.state_transitions,
        one_round_transitions(regions, true)
    );

    // The same execution again: the table is unchanged, item for item. This is the steady
    // state of the hourly schedule: 32 transitions (the workflow with a Choice and a Succeed state per region entered 82).
    let (second, again) = run_ok(&stack, "run-2", json!({})).await;
    let exported = second.output.as_ref().unwrap().get("export").is_some();
    println!(
        "run-2 (steady state): {} transitions, {} Collect invocations, export ran: {exported}",
        second.state_transitions, second.collect_invocations
    );
    assert_eq!(second.collect_invocations, regions);
    assert_eq!(
        second.state_transitions,
        one_round_transitions(regions, exported)
    );
    if !exported {
        // The usual case (an export here only when run-1 and run-2 straddle a day's due time).
        assert_eq!(second.state_transitions, 32);
    }
    assert_eq!(again.status, "succeeded");
    let after_rerun = scan_all(&db, &events_table).await;
    assert_eq!(after_rerun, items, "a re-run changes nothing");
    let checkpoint = iam_checkpoint(&stack).await;

    // (a) A backfill over the dataset's whole range: it ends a day before the checkpoint (the
    // time of run-2 minus the settle time), rewrites every event, changes nothing, and leaves
    // the checkpoint exactly where it was.
    let times: Vec<&str> = items.iter().filter_map(|i| attr(i, "event_time")).collect();
    let (oldest, newest) = (
        parse(times.iter().min().unwrap()),
        parse(times.iter().max().unwrap()),
    );
    let (_, backfill) = run_ok(
        &stack,
        "backfill-1",
        backfill_input(oldest - Span::hours(1), newest + Span::hours(1), &[]),
    )
    .await;
    assert_eq!(backfill.mode, iamtrail_core::Mode::Backfill);
    assert_eq!(
        backfill.totals.stored, 439,
        "the backfill re-read the whole range"
    );
    let after_backfill = scan_all(&db, &events_table).await;
    assert_eq!(after_backfill, items, "a backfill changes nothing");
    assert!(newest + Span::hours(1) < checkpoint);
    assert_eq!(
        iam_checkpoint(&stack).await,
        checkpoint,
        "a backfill that ends before the checkpoint leaves it unchanged (never moves it back)"
    );

    // A checkpoint that lags (as after a source was paused for a day): rewound, by hand, to the
    // middle of the dataset's IAM events. The backfills below read IAM in us-east-1 only.
    let mut iam_times: Vec<DateTime<Utc>> = items
        .iter()
        .filter(|i| attr(i, "event_source") == Some("iam.amazonaws.com"))
        .filter_map(|i| attr(i, "event_time").map(parse))
        .collect();
    iam_times.sort();
    assert!(iam_times.len() > 100, "{} IAM events", iam_times.len());
    let lagging = trunc(iam_times[iam_times.len() / 2]);
    set_iam_checkpoint(&stack, lagging).await;
    assert_eq!(iam_checkpoint(&stack).await, lagging);

    // A backfill that starts after the checkpoint would leave a gap behind it: unchanged.
    run_ok(
        &stack,
        "backfill-gap",
        backfill_input(
            lagging + Span::minutes(30),
            lagging + Span::hours(1),
            &["iam"],
        ),
    )
    .await;
    assert_eq!(
        iam_checkpoint(&stack).await,
        lagging,
        "a backfill not joined up with the checkpoint leaves it unchanged"
    );
    // A backfill that ends before the checkpoint: unchanged (it is not moved back to the end).
    run_ok(
        &stack,
        "backfill-before",
        backfill_input(lagging - Span::hours(3), lagging - Span::hours(1), &["iam"]),
    )
    .await;
    assert_eq!(
        iam_checkpoint(&stack).await,
        lagging,
        "a backfill that ends before the checkpoint never moves it backwards"
    );

    // (b) A backfill whose range covers the checkpoint and goes past it: the checkpoint moves
    // forward to exactly the backfill's end, and the table is unchanged.
    let joined_end = trunc(newest + Span::hours(1));
    let (_, joined) = run_ok(
        &stack,
        "backfill-join",
        backfill_input(iam_times[0] - Span::hours(1), joined_end, &["iam"]),
    )
    .await;
    assert_eq!(
        joined.totals.stored as usize,
        iam_times.len(),
        "every IAM event, on both sides of the checkpoint, re-read"
    );
    assert_eq!(
        iam_checkpoint(&stack).await,
        joined_end,
        "a backfill joined up with the checkpoint moves it forward to the backfill's end"
    );
    assert_eq!(scan_all(&db, &events_table).await, items);
    // The other checkpoints were not touched by these IAM-only backfills.
    let sts = control_item(&stack, "us-east-1-sts").await.unwrap();
    assert_eq!(
        attr(&sts, "last_processed_timestamp").map(parse),
        Some(checkpoint)
    );

    // A backfill ending in the future is bounded by now minus the settle time (5 minutes).
    let before = Utc::now();
    run_ok(
        &stack,
        "backfill-future",
        backfill_input(
            joined_end - Span::minutes(10),
            before + Span::days(1),
            &["iam"],
        ),
    )
    .await;
    let after = Utc::now();
    let settle = Span::minutes(5);
    let bounded = iam_checkpoint(&stack).await;
    assert!(
        bounded >= trunc(before) - settle && bounded <= after - settle,
        "{bounded} within [{before} - 5 min, {after} - 5 min]"
    );
    assert!(bounded >= checkpoint, "never behind where it was");
    stack.stop().await;
}

/// The states a run that collects every region in one Map round enters: ListTargets, Route,
/// CollectRegions, one Collect per region, Aggregate, CollectAgain?, EvaluateAlerts,
/// AfterAlerts?, then Export and AfterExport? when dates were due, and Done.
fn one_round_transitions(regions: usize, exported: bool) -> usize {
    8 + regions + if exported { 2 } else { 0 }
}

fn parse(t: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(t)
        .unwrap_or_else(|e| panic!("{t}: {e}"))
        .with_timezone(&Utc)
}

/// Whole seconds, as checkpoints are stored.
fn trunc(t: DateTime<Utc>) -> DateTime<Utc> {
    t - Span::nanoseconds(t.timestamp_subsec_nanos() as i64)
}

/// A backfill input over `[start, end]` in us-east-1 (whole seconds), for `sources` (all when
/// empty).
fn backfill_input(start: DateTime<Utc>, end: DateTime<Utc>, sources: &[&str]) -> Value {
    let mut input = json!({
        "start": trunc(start).to_rfc3339(),
        "end": trunc(end).to_rfc3339(),
        "regions": ["us-east-1"],
    });
    if !sources.is_empty() {
        input["sources"] = json!(sources);
    }
    input
}

/// The us-east-1 IAM checkpoint, read from the control table.
async fn iam_checkpoint(stack: &LocalStack) -> DateTime<Utc> {
    let item = control_item(stack, "us-east-1-iam")
        .await
        .expect("checkpoint us-east-1-iam");
    parse(attr(&item, "last_processed_timestamp").expect("last_processed_timestamp"))
}

/// Sets the us-east-1 IAM checkpoint by hand (test set-up only), keeping the item's other
/// attributes.
async fn set_iam_checkpoint(stack: &LocalStack, t: DateTime<Utc>) {
    stack
        .dynamodb()
        .update_item()
        .table_name(&stack.settings().control_table)
        .key("region", AttributeValue::S("us-east-1-iam".into()))
        .update_expression("SET last_processed_timestamp = :t")
        .expression_attribute_values(
            ":t",
            AttributeValue::S(trunc(t).format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        )
        .send()
        .await
        .expect("rewind the checkpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_execution_input_fails_with_a_clear_error() {
    let stack = start(options("badinput")).await;
    for (name, input, needle) in [
        (
            "typo",
            json!({"strat": "2024-01-01T00:00:00Z"}),
            "unknown field `strat`",
        ),
        (
            "badtime",
            json!({"start": "yesterday", "end": "2024-01-01T00:00:00Z"}),
            "not an RFC 3339 time",
        ),
        ("badsource", json!({"sources": ["s3"]}), "unknown source"),
        (
            "badregion",
            json!({"regions": ["mars-north-1"]}),
            "not enabled",
        ),
    ] {
        let result = stack.run_execution(name, &input, |_| {}).await.unwrap();
        assert_eq!(result.status, "FAILED", "{name}");
        assert_eq!(result.error.as_deref(), Some("InvalidInput"), "{name}");
        let cause = result.cause.unwrap_or_default();
        assert!(cause.contains(needle), "{name}: {cause}");
    }
    stack.stop().await;
}
