//! Collection over the bundled real dataset: exact counts, idempotent re-runs and backfills,
//! all through real state machine executions on moto server.

use iamtrail::demo::dataset_emulator;
use iamtrail_e2e::*;
use serde_json::json;

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

    // The same execution again: the table is unchanged, item for item.
    let (_, again) = run_ok(&stack, "run-2", json!({})).await;
    assert_eq!(again.status, "succeeded");
    let after_rerun = scan_all(&db, &events_table).await;
    assert_eq!(after_rerun, items, "a re-run changes nothing");
    let checkpoint = attr(
        &control_item(&stack, "us-east-1-iam").await.unwrap(),
        "last_processed_timestamp",
    )
    .unwrap()
    .to_string();

    // A backfill over the dataset's whole range rewrites every event and changes nothing.
    let times: Vec<&str> = items.iter().filter_map(|i| attr(i, "event_time")).collect();
    let (oldest, newest) = (times.iter().min().unwrap(), times.iter().max().unwrap());
    let parse = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let start_at = (parse(oldest) - chrono::Duration::hours(1)).to_rfc3339();
    let end_at = (parse(newest) + chrono::Duration::hours(1)).to_rfc3339();
    let (_, backfill) = run_ok(
        &stack,
        "backfill-1",
        json!({"start": start_at, "end": end_at, "regions": ["us-east-1"]}),
    )
    .await;
    assert_eq!(backfill.mode, iamtrail_core::Mode::Backfill);
    assert_eq!(
        backfill.totals.stored, 439,
        "the backfill re-read the whole range"
    );
    let after_backfill = scan_all(&db, &events_table).await;
    assert_eq!(after_backfill, items, "a backfill changes nothing");
    let checkpoint_after = attr(
        &control_item(&stack, "us-east-1-iam").await.unwrap(),
        "last_processed_timestamp",
    )
    .unwrap()
    .to_string();
    assert_eq!(
        checkpoint_after, checkpoint,
        "a backfill never moves a checkpoint backwards"
    );
    stack.stop().await;
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
