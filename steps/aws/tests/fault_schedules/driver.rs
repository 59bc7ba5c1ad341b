//! Runs executions the way the state machine does (statemachine/tracker.asl.json): ListTargets,
//! the Collect loop per region (concurrently, capped, a failed region caught), Aggregate,
//! the EvaluateAlerts and Export loops (each caught), with the same retries — over the
//! in-memory adapters wrapped in fault injection. A Lambda invocation that does not answer
//! within its timeout is dropped, as Lambda kills it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use iamtrail_aws::memory::*;
use iamtrail_aws::steps::aggregate::finish_run;
use iamtrail_aws::steps::collect::{collect, CollectDeps};
use iamtrail_aws::steps::evaluate_alerts::{evaluate_alerts, AlertDelivery, EvaluateAlertsInput};
use iamtrail_aws::steps::export::{export, ExportInput, ExportOutput};
use iamtrail_aws::steps::list_targets::list_targets;
use iamtrail_aws::StepError;
use iamtrail_core::contract::{AggregateInput, ListTargetsInput, Mode, RunSummary, WorkItem};
use iamtrail_core::Settings;
use serde_json::{json, Value};

use super::faults::{Faults, Faulty};

/// Lambda timeouts of the template.
const COLLECT_TIMEOUT: StdDuration = StdDuration::from_secs(900);
const SHORT_TIMEOUT: StdDuration = StdDuration::from_secs(60);
const ALERTS_TIMEOUT: StdDuration = StdDuration::from_secs(120);
/// Loop caps of the state machine.
const MAX_ALERT_INVOCATIONS: u32 = 5;
const MAX_EXPORT_INVOCATIONS: u32 = 10;
/// `Retry` on `AwsError` in the state machine: 3 more attempts.
const AWS_ERROR_ATTEMPTS: u32 = 4;

/// The adapters of one simulated account.
pub struct System {
    pub settings: Settings,
    pub source: Faulty<MemorySource>,
    pub events: Faulty<MemoryEvents>,
    pub control: Faulty<MemoryControl>,
    pub alerts: Faulty<MemoryAlerts>,
    pub objects: Faulty<MemoryObjects>,
    pub notifier: Faulty<MemoryNotifier>,
    pub regions: MemoryRegions,
}

impl System {
    pub fn new(settings: Settings, regions: &[String], faults: Arc<Faults>) -> System {
        let names: Vec<&str> = regions.iter().map(String::as_str).collect();
        let wrap = |f: &Arc<Faults>| f.clone();
        System {
            settings,
            source: Faulty::new(Arc::new(MemorySource::new()), wrap(&faults)),
            events: Faulty::new(Arc::new(MemoryEvents::new()), wrap(&faults)),
            control: Faulty::new(Arc::new(MemoryControl::new()), wrap(&faults)),
            alerts: Faulty::new(Arc::new(MemoryAlerts::new()), wrap(&faults)),
            objects: Faulty::new(Arc::new(MemoryObjects::new()), wrap(&faults)),
            notifier: Faulty::new(Arc::new(MemoryNotifier::new()), wrap(&faults)),
            regions: MemoryRegions::enabled(&names),
        }
    }
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded(Box<RunSummary>),
    /// ListTargets found another execution holding the run lease.
    Skipped,
    /// ListTargets or Aggregate failed after their retries (a redrive or the next run picks up).
    Failed(String),
    /// Collected and recorded, but EvaluateAlerts or Export failed (caught).
    StepsFailed(String),
}

/// One Lambda invocation: its result, or `Sandbox.Timedout` when it did not answer in time.
async fn invoke<T>(
    timeout: StdDuration,
    f: impl Future<Output = Result<T, StepError>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{}: {}", e.error_type, e.message)),
        Err(_) => Err("Sandbox.Timedout".into()),
    }
}

fn deadline(timeout: StdDuration) -> std::time::Instant {
    (tokio::time::Instant::now() + timeout).into_std()
}

/// An invocation with the state machine's `AwsError` retry.
async fn with_aws_retry<T, F, Fut>(timeout: StdDuration, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StepError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match invoke(timeout, f()).await {
            Err(e) if e.starts_with("AwsError") && attempt < AWS_ERROR_ATTEMPTS => {
                tokio::time::sleep(StdDuration::from_secs(5 << attempt)).await;
            }
            other => return other,
        }
    }
}

/// One region's Map iteration: Collect while `more`, a failure caught as a failed result.
async fn collect_region(sys: &System, mut item: WorkItem, now: DateTime<Utc>) -> Value {
    let deps = CollectDeps {
        settings: &sys.settings,
        source: &sys.source,
        events: &sys.events,
        control: &sys.control,
        alerts: &sys.alerts,
        objects: &sys.objects,
        sigma: &iamtrail_core::sigma::SigmaRules::default(),
    };
    // A safety net far above the cap: the test fails rather than loop forever.
    for _ in 0..1000 {
        let result = invoke(
            COLLECT_TIMEOUT,
            collect(
                item.clone(),
                &deps,
                &iamtrail_aws::metrics::Metrics::discard(),
                deadline(COLLECT_TIMEOUT),
                now,
            ),
        )
        .await;
        match result {
            Ok(next) if next.more => item = next,
            Ok(done) => return serde_json::to_value(done).unwrap(),
            Err(e) => {
                return json!({"region": item.region, "sources": item.sources, "failed": true,
                    "error": {"Error": "Lambda.Unknown", "Cause": e}})
            }
        }
    }
    panic!("the Collect loop of {} never ended", item.region);
}

/// Runs one execution named `name` with `input` at simulated time `now`.
pub async fn execute(sys: &System, name: &str, input: Value, now: DateTime<Utc>) -> Outcome {
    let listed = with_aws_retry(SHORT_TIMEOUT, || {
        list_targets(
            ListTargetsInput {
                input: input.clone(),
                execution: Some(name.to_string()),
            },
            &sys.regions,
            &sys.control,
            &sys.settings,
            now,
        )
    })
    .await;
    let listed = match listed {
        Ok(l) => l,
        Err(e) => return Outcome::Failed(format!("ListTargets: {e}")),
    };
    if listed.skipped.is_some() {
        return Outcome::Skipped;
    }
    let mut errors = Vec::new();
    let summary = if listed.mode == Mode::Export {
        None
    } else {
        let results = futures::future::join_all(
            listed
                .items
                .iter()
                .map(|item| collect_region(sys, item.clone(), now)),
        )
        .await;
        let metrics = iamtrail_aws::metrics::Metrics::discard();
        let summary = with_aws_retry(SHORT_TIMEOUT, || {
            finish_run(
                AggregateInput {
                    run_id: listed.run_id.clone(),
                    mode: listed.mode,
                    execution: Some(name.to_string()),
                    results: results.clone(),
                    collected: Vec::new(),
                    enabled_regions: listed.enabled_regions.clone(),
                },
                &sys.control,
                &metrics,
                &sys.settings,
                now,
            )
        })
        .await;
        match summary {
            Ok(s) => Some(s),
            Err(e) => return Outcome::Failed(format!("Aggregate: {e}")),
        }
    };
    // EvaluateAlerts, looping on its time budget; a failure is caught.
    if summary.is_some() {
        let mut previous: Option<AlertDelivery> = None;
        loop {
            let input = EvaluateAlertsInput {
                run_id: Some(listed.run_id.clone()),
                invocations: previous.as_ref().map_or(0, |p| p.invocations),
                alerts: previous.clone(),
                done: None,
            };
            let result = invoke(
                ALERTS_TIMEOUT,
                evaluate_alerts(
                    input,
                    &sys.alerts,
                    Some(&sys.notifier),
                    &iamtrail_aws::metrics::Metrics::discard(),
                    &sys.settings,
                    now,
                    Some(tokio::time::Instant::now() + ALERTS_TIMEOUT),
                ),
            )
            .await;
            match result {
                Ok(d) if d.more && d.invocations < MAX_ALERT_INVOCATIONS => previous = Some(d),
                Ok(_) => break,
                Err(e) => {
                    errors.push(format!("EvaluateAlerts: {e}"));
                    break;
                }
            }
        }
    }
    // Export when due (or in mode export), looping on its time budget; a failure is caught.
    let (dates, force) = match &summary {
        Some(s) if s.export_due => (s.export_dates.clone(), false),
        Some(_) => (Vec::new(), false),
        None => (listed.export_dates.clone(), listed.force),
    };
    if !dates.is_empty() {
        let mut previous: Option<ExportOutput> = None;
        loop {
            let input = ExportInput {
                run_id: Some(listed.run_id.clone()),
                export_dates: dates.clone(),
                force,
                invocations: previous.as_ref().map_or(0, |p| p.invocations),
                export: previous.clone(),
                done: None,
            };
            let result = invoke(
                COLLECT_TIMEOUT,
                export(
                    input,
                    &sys.events,
                    &sys.objects,
                    &sys.control,
                    &iamtrail_aws::metrics::Metrics::discard(),
                    &sys.settings,
                    now,
                    Some(tokio::time::Instant::now() + COLLECT_TIMEOUT),
                ),
            )
            .await;
            match result {
                Ok(o) if o.more && o.invocations < MAX_EXPORT_INVOCATIONS => previous = Some(o),
                Ok(_) => break,
                Err(e) => {
                    errors.push(format!("Export: {e}"));
                    break;
                }
            }
        }
    }
    match (errors.is_empty(), summary) {
        (true, Some(s)) => Outcome::Succeeded(Box::new(s)),
        (true, None) => Outcome::Succeeded(Box::new(empty_summary(&listed.run_id, now))),
        (false, _) => Outcome::StepsFailed(errors.join("; ")),
    }
}

fn empty_summary(run_id: &str, now: DateTime<Utc>) -> RunSummary {
    RunSummary {
        run_id: run_id.to_string(),
        mode: Mode::Export,
        status: "succeeded".into(),
        regions: 0,
        totals: Default::default(),
        per_source: Default::default(),
        targets: Vec::new(),
        errors: Vec::new(),
        collect_invocations: 0,
        capped_regions: Vec::new(),
        finished_at: now,
        export_due: false,
        export_dates: Vec::new(),
    }
}
