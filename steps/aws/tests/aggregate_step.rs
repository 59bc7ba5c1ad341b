//! Aggregate with the in-memory adapters: the export's due dates come from every enabled
//! region/source's stored checkpoint (failed ones included, paused ones left out), count the
//! overlap and the settle time, and include dirty dates; a scheduled run gives its lease back.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use iamtrail_aws::memory::MemoryControl;
use iamtrail_aws::ports::{ControlStore, LeaseOutcome};
use iamtrail_aws::steps::aggregate::{aggregate, finish_run};
use iamtrail_aws::steps::list_targets::RUN_LEASE;
use iamtrail_core::contract::{AggregateInput, AggregateOutput, Mode, RunSummary};
use iamtrail_core::Settings;
use serde_json::{json, Value};

/// Two regions, STS only: the keys are `us-east-1-sts` and `eu-west-1-sts`.
fn settings() -> Settings {
    Settings::from_pairs(&[
        ("PROCESS_IAM_EVENTS", "false"),
        ("PROCESS_SIGNIN_EVENTS", "false"),
        ("PROCESS_SSO_EVENTS", "false"),
        ("PROCESS_ROOT_EVENTS", "false"),
        ("OVERLAP_MINUTES", "15"),
        ("SETTLE_MINUTES", "5"),
    ])
    .unwrap()
}

fn d(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, day).unwrap()
}

fn at(day: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, h, m, 0).unwrap()
}

const REGIONS: [&str; 2] = ["eu-west-1", "us-east-1"];

/// A Map result: the region's STS source done, with its checkpoint.
fn item(region: &str, checkpoint: DateTime<Utc>) -> Value {
    json!({"run_id": "run-1", "region": region, "sources": ["sts"], "mode": "incremental",
           "progress": {"sts": {"done": true, "counts": {"fetched": 1, "stored": 1, "filtered_aws_service": 0,
               "filtered_roles": 0, "malformed": 0, "truncated": 0, "requests": 1, "throttled": 0, "slices": 1},
               "checkpoint": checkpoint}},
           "more": false, "invocations": 1})
}

fn failed(region: &str) -> Value {
    json!({"region": region, "sources": ["sts"], "failed": true,
           "error": {"Error": "States.Timeout", "Cause": "Collect timed out"}})
}

fn input(results: Vec<Value>, enabled: &[&str]) -> AggregateInput {
    AggregateInput {
        run_id: "run-1".into(),
        mode: Mode::Incremental,
        execution: Some("run-1".into()),
        results,
        collected: Vec::new(),
        enabled_regions: enabled.iter().map(|r| r.to_string()).collect(),
    }
}

async fn aggregate_at(
    input: AggregateInput,
    control: &MemoryControl,
    now: DateTime<Utc>,
) -> RunSummary {
    finish_run(
        input,
        control,
        &iamtrail_aws::metrics::Metrics::discard(),
        &settings(),
        now,
    )
    .await
    .expect("aggregate")
}

/// Stored checkpoints, and the 5th exported already.
async fn control(us: DateTime<Utc>, eu: DateTime<Utc>) -> MemoryControl {
    let control = MemoryControl::new();
    control.set_checkpoint("us-east-1-sts", us);
    control.set_checkpoint("eu-west-1-sts", eu);
    control
        .record_export(d(5), 10, &[], at(6, 1, 0))
        .await
        .unwrap();
    control
}

#[tokio::test]
async fn failed_regions_checkpoint_holds_its_day_back() {
    // us-east-1 collected up to today 11:55. eu-west-1's Collect failed in this run: it has no
    // result with a checkpoint, but its stored checkpoint is still on the 8th at 10:00.
    let now = at(10, 12, 0);
    let control = control(at(10, 11, 55), at(8, 10, 0)).await;
    let summary = aggregate_at(
        input(
            vec![item("us-east-1", at(10, 11, 55)), failed("eu-west-1")],
            &REGIONS,
        ),
        &control,
        now,
    )
    .await;
    assert_eq!(summary.status, "partial");
    // Only the 6th and 7th are complete everywhere; the old rule (this run's checkpoints only)
    // also exported the 8th and 9th without eu-west-1's events.
    assert_eq!(summary.export_dates, vec![d(6), d(7)]);
    assert!(summary.export_due);
    assert_eq!(control.runs().len(), 1, "run record stored");
}

#[tokio::test]
async fn overlap_and_settle_both_count() {
    // The 9th ends at 00:00 on the 10th; the next run re-reads 15 minutes before its
    // checkpoint and the settle time adds 5: the 9th is due from 00:20 on.
    let at_0015 = control(at(10, 0, 15), at(10, 0, 15)).await;
    let summary = aggregate_at(input(vec![], &REGIONS), &at_0015, at(10, 0, 20)).await;
    assert_eq!(
        summary.export_dates,
        vec![d(6), d(7), d(8)],
        "with the settle time alone, the 9th would already be due at 00:05"
    );
    let at_0020 = control(at(10, 0, 20), at(10, 0, 20)).await;
    let summary = aggregate_at(input(vec![], &REGIONS), &at_0020, at(10, 0, 25)).await;
    assert_eq!(summary.export_dates, vec![d(6), d(7), d(8), d(9)]);
}

#[tokio::test]
async fn dirty_dates_are_exported_again() {
    let control = control(at(10, 11, 55), at(10, 11, 55)).await;
    // Events stored for the 2nd (already exported: a backfill) and for today (not finished).
    control.mark_dirty(&[d(2), d(10)]).await.unwrap();
    let summary = aggregate_at(input(vec![], &REGIONS), &control, at(10, 12, 0)).await;
    assert_eq!(
        summary.export_dates,
        vec![d(2), d(6), d(7), d(8), d(9)],
        "the 2nd again; today waits until it is complete"
    );
}

#[tokio::test]
async fn paused_sources_do_not_hold_dates_back_but_missing_checkpoints_do() {
    let control = control(at(10, 11, 55), at(8, 10, 0)).await;
    control.set_status("eu-west-1-sts", "paused");
    let summary = aggregate_at(input(vec![], &REGIONS), &control, at(10, 12, 0)).await;
    assert_eq!(summary.export_dates, vec![d(6), d(7), d(8), d(9)]);

    // A region enabled since (no checkpoint yet): its first run may store events of any day.
    let summary = aggregate_at(
        input(vec![], &["eu-west-1", "us-east-1", "ap-south-1"]),
        &control,
        at(10, 12, 0),
    )
    .await;
    assert!(summary.export_dates.is_empty());
    assert!(!summary.export_due);
}

#[tokio::test]
async fn an_old_payload_without_enabled_regions_uses_the_results_regions() {
    // No enabled_regions (an execution started before the upgrade): the regions named by the
    // results, the failed one included, decide.
    let control = control(at(10, 11, 55), at(8, 10, 0)).await;
    let summary = aggregate_at(
        input(
            vec![item("us-east-1", at(10, 11, 55)), failed("eu-west-1")],
            &[],
        ),
        &control,
        at(10, 12, 0),
    )
    .await;
    assert_eq!(summary.export_dates, vec![d(6), d(7)]);
}

#[tokio::test]
async fn a_scheduled_run_gives_its_lease_back() {
    let control = control(at(10, 11, 55), at(10, 11, 55)).await;
    let now = at(10, 12, 0);
    control
        .acquire_lease(RUN_LEASE, "run-1", now, Duration::minutes(55))
        .await
        .unwrap();
    aggregate_at(input(vec![], &REGIONS), &control, now).await;
    assert_eq!(control.lease(RUN_LEASE), None);
    // Another execution's lease is left alone (a backfill releases nothing).
    control
        .acquire_lease(RUN_LEASE, "run-2", now, Duration::minutes(55))
        .await
        .unwrap();
    let mut backfill = input(vec![], &REGIONS);
    backfill.mode = Mode::Backfill;
    aggregate_at(backfill, &control, now).await;
    aggregate_at(input(vec![], &REGIONS), &control, now).await;
    assert!(matches!(
        control
            .acquire_lease(RUN_LEASE, "run-3", now, Duration::minutes(55))
            .await
            .unwrap(),
        LeaseOutcome::Held { holder, .. } if holder == "run-2"
    ));
}

#[tokio::test]
async fn a_round_with_more_to_collect_only_returns_the_items_and_touches_nothing() {
    // us-east-1 stopped on its time budget (more: true, 1 of 4 invocations): the round hands it
    // back with eu-west-1's result carried, and stores no run record and keeps the run lease.
    let control = control(at(10, 11, 55), at(10, 11, 55)).await;
    let now = at(10, 12, 0);
    control
        .acquire_lease(RUN_LEASE, "run-1", now, Duration::minutes(55))
        .await
        .unwrap();
    let mut busy = item("us-east-1", at(10, 11, 0));
    busy["more"] = json!(true);
    let done = item("eu-west-1", at(10, 11, 55));
    let out = aggregate(
        input(vec![busy, done.clone()], &REGIONS),
        &control,
        &iamtrail_aws::metrics::Metrics::discard(),
        &settings(),
        now,
    )
    .await
    .unwrap();
    let next = match out {
        AggregateOutput::Continue(next) => next,
        other => panic!("expected a continuation, got {other:?}"),
    };
    let again: Vec<(&str, bool, u32)> = next
        .items
        .iter()
        .map(|i| (i.region.as_str(), i.more, i.invocations))
        .collect();
    assert_eq!(again, vec![("us-east-1", true, 1)]);
    assert_eq!(next.collected, vec![done]);
    assert!(control.runs().is_empty(), "no run record");
    assert!(control.lease(RUN_LEASE).is_some(), "the run lease is kept");

    // The next round: us-east-1 done. Final: the run record, the lease given back.
    let mut round2 = input(vec![item("us-east-1", at(10, 11, 55))], &REGIONS);
    round2.collected = next.collected;
    let out = aggregate(
        round2,
        &control,
        &iamtrail_aws::metrics::Metrics::discard(),
        &settings(),
        now,
    )
    .await
    .unwrap();
    let summary = match out {
        AggregateOutput::Final(summary) => summary,
        other => panic!("expected the final round, got {other:?}"),
    };
    assert_eq!((summary.regions, summary.totals.stored), (2, 2));
    assert_eq!(control.runs().len(), 1);
    assert_eq!(control.lease(RUN_LEASE), None);
}
