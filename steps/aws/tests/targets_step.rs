//! ListTargets with the in-memory adapters: the run lease that keeps scheduled executions from
//! piling up, redrives, backfills and on-demand exports beside it.

use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Duration, TimeZone, Utc};
use iamtrail_aws::memory::{MemoryControl, MemoryRegions};
use iamtrail_aws::ports::{RegionLister, StoreError};
use iamtrail_aws::steps::list_targets::{list_targets, RUN_LEASE};
use iamtrail_core::contract::{ListTargetsInput, ListTargetsOutput, Mode};
use iamtrail_core::targets::RegionInfo;
use iamtrail_core::Settings;
use serde_json::{json, Value};
fn settings(pairs: &[(&str, &str)]) -> Settings {
    Settings::from_pairs(pairs).unwrap()
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap()
}

/// DescribeRegions that counts its calls and can fail.
struct Regions {
    inner: MemoryRegions,
    calls: AtomicUsize,
    fail: bool,
}

impl Regions {
    fn new() -> Self {
        Regions {
            inner: MemoryRegions::enabled(&["us-east-1", "eu-west-1"]),
            calls: AtomicUsize::new(0),
            fail: false,
        }
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl RegionLister for Regions {
    async fn regions(&self) -> Result<Vec<RegionInfo>, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            return Err(StoreError {
                operation: "ec2:DescribeRegions",
                message: "RequestLimitExceeded (injected)".into(),
            });
        }
        self.inner.regions().await
    }
}

async fn run(
    execution: &str,
    input: Value,
    regions: &Regions,
    control: &MemoryControl,
    now: DateTime<Utc>,
) -> ListTargetsOutput {
    list_targets(
        ListTargetsInput {
            input,
            execution: Some(execution.to_string()),
        },
        regions,
        control,
        &settings(&[]),
        now,
    )
    .await
    .expect("list targets")
}

#[tokio::test]
async fn scheduled_run_is_skipped_while_another_holds_the_run_lease() {
    let (regions, control) = (Regions::new(), MemoryControl::new());
    let first = run("exec-1", json!({}), &regions, &control, t0()).await;
    assert_eq!(first.skipped, None);
    assert_eq!(first.items.len(), 2);
    let lease_until = t0() + settings(&[]).run_lease;
    assert_eq!(
        control.lease(RUN_LEASE),
        Some(("exec-1".to_string(), lease_until))
    );

    // The next schedule fires while exec-1 still runs: it collects nothing and says why,
    // without even listing the regions.
    let calls = regions.calls();
    let second = run(
        "exec-2",
        json!({}),
        &regions,
        &control,
        t0() + Duration::hours(1) - Duration::minutes(10),
    )
    .await;
    assert_eq!(second.mode, Mode::Incremental);
    assert!(second.items.is_empty());
    let reason = second.skipped.expect("skipped");
    assert!(
        reason.contains("execution exec-1 is still running")
            && reason.contains("run lease until 2026-03-10T12:55:00Z"),
        "{reason}"
    );
    assert_eq!(
        regions.calls(),
        calls,
        "no DescribeRegions for a skipped run"
    );
    assert_eq!(control.lease(RUN_LEASE).unwrap().0, "exec-1");
    // The skipped output still serialises the way the workflow reads it.
    let json = serde_json::to_value(
        run(
            "exec-3",
            json!({}),
            &regions,
            &control,
            t0() + Duration::minutes(1),
        )
        .await,
    )
    .unwrap();
    assert_eq!(json["items"], json!([]));
    assert!(json["skipped"].as_str().is_some());
}

#[tokio::test]
async fn redrive_reacquires_its_own_run_lease() {
    let (regions, control) = (Regions::new(), MemoryControl::new());
    run("exec-1", json!({}), &regions, &control, t0()).await;
    // A redrive of exec-1 (same execution name) 20 minutes later is not blocked by itself,
    // and renews the lease.
    let later = t0() + Duration::minutes(20);
    let redrive = run("exec-1", json!({}), &regions, &control, later).await;
    assert_eq!(redrive.skipped, None);
    assert_eq!(redrive.items.len(), 2);
    assert_eq!(
        control.lease(RUN_LEASE),
        Some(("exec-1".to_string(), later + settings(&[]).run_lease))
    );
}

#[tokio::test]
async fn an_expired_run_lease_is_taken_over() {
    let (regions, control) = (Regions::new(), MemoryControl::new());
    run("exec-1", json!({}), &regions, &control, t0()).await;
    // exec-1 died without releasing: once its lease has expired the schedule goes on.
    let after = t0() + settings(&[]).run_lease + Duration::seconds(1);
    let next = run("exec-2", json!({}), &regions, &control, after).await;
    assert_eq!(next.skipped, None);
    assert_eq!(control.lease(RUN_LEASE).unwrap().0, "exec-2");
}

#[tokio::test]
async fn backfill_and_export_runs_take_no_run_lease() {
    let (regions, control) = (Regions::new(), MemoryControl::new());
    run("exec-1", json!({}), &regions, &control, t0()).await;
    let backfill = run(
        "backfill-1",
        json!({"start": "2026-03-01T00:00:00Z", "end": "2026-03-02T00:00:00Z"}),
        &regions,
        &control,
        t0() + Duration::minutes(5),
    )
    .await;
    assert_eq!(backfill.mode, Mode::Backfill);
    assert_eq!(backfill.skipped, None);
    assert_eq!(backfill.items.len(), 2);
    let export = run(
        "export-1",
        json!({"mode": "export", "dates": ["2026-03-01"], "force": true}),
        &regions,
        &control,
        t0() + Duration::minutes(5),
    )
    .await;
    assert_eq!(export.mode, Mode::Export);
    assert_eq!(export.skipped, None);
    assert!(export.force, "force reaches Export");
    assert_eq!(export.export_dates.len(), 1);
    // Neither touched exec-1's lease.
    assert_eq!(
        control.lease(RUN_LEASE),
        Some(("exec-1".to_string(), t0() + settings(&[]).run_lease))
    );
}

#[tokio::test]
async fn a_failed_region_listing_gives_the_run_lease_back() {
    let control = MemoryControl::new();
    let mut regions = Regions::new();
    regions.fail = true;
    let err = list_targets(
        ListTargetsInput {
            input: json!({}),
            execution: Some("exec-1".into()),
        },
        &regions,
        &control,
        &settings(&[]),
        t0(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.error_type, "AwsError", "retried by the workflow");
    assert_eq!(control.lease(RUN_LEASE), None);
    // Invalid input takes no lease at all.
    let err = list_targets(
        ListTargetsInput {
            input: json!({"sources": ["nope"]}),
            execution: Some("exec-2".into()),
        },
        &Regions::new(),
        &control,
        &settings(&[]),
        t0(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.error_type, "InvalidInput");
    assert_eq!(control.lease(RUN_LEASE), None);
}
