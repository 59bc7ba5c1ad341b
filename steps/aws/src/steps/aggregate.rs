//! The Aggregate step: run totals, per-item errors, the run record, the dates due for export,
//! and the end of a scheduled run's lease.
//!
//! Due dates come from the control table, not from this run's results: a region whose Collect
//! failed in this run still has a stored checkpoint, and that checkpoint holds its days back.
//! See docs/export.md.

use chrono::{DateTime, NaiveDate, Utc};
use iamtrail_core::contract::{AggregateInput, Mode, RunSummary};
use iamtrail_core::export::{due_dates, last_due_day};
use iamtrail_core::source::checkpoint_key;
use iamtrail_core::summary::{result_regions, summarize};
use iamtrail_core::targets::plan_targets;
use iamtrail_core::Settings;

use crate::ports::ControlStore;
use crate::steps::list_targets::RUN_LEASE;
use crate::StepError;

/// Sums the Map results, decides which dates are due for export, stores the run record in the
/// control table and (scheduled runs) gives the run lease back. A control-table failure is an
/// `AwsError`, which the workflow retries.
pub async fn aggregate<C: ControlStore>(
    input: AggregateInput,
    control: &C,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<RunSummary, StepError> {
    if input.mode == Mode::Incremental {
        // Collection is over: the next scheduled execution may start. A failure here is not
        // fatal, the lease expires by itself.
        if let Err(e) = control.release_lease(RUN_LEASE, &input.run_id).await {
            tracing::warn!(error = %e, run_id = %input.run_id, "could not release the run lease; it expires by itself");
        }
    }
    let mut summary = summarize(&input, now);
    let dates = export_dates(&input, control, settings, now).await?;
    summary.export_due = !dates.is_empty();
    summary.export_dates = dates;
    for error in &summary.errors {
        tracing::error!(region = %error.region, source = ?error.source, error = %error.error, "run error");
    }
    tracing::info!(
        run_id = %summary.run_id,
        status = %summary.status,
        fetched = summary.totals.fetched,
        stored = summary.totals.stored,
        filtered = summary.totals.filtered(),
        export_dates = summary.export_dates.len(),
        "run finished"
    );
    control.put_run(&summary).await.map_err(StepError::aws)?;
    Ok(summary)
}

/// The dates due for export: new complete dates and dirty ones, decided from the stored
/// checkpoint of every enabled region/source (paused ones left out).
async fn export_dates<C: ControlStore>(
    input: &AggregateInput,
    control: &C,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Vec<NaiveDate>, StepError> {
    let regions = if input.enabled_regions.is_empty() {
        let regions = result_regions(input);
        tracing::warn!(
            ?regions,
            "Aggregate's payload has no enabled_regions; export due dates are decided from the regions of this run's results"
        );
        regions
    } else {
        input.enabled_regions.clone()
    };
    let (plan, _) = plan_targets(&regions, settings, None);
    let mut checkpoints = Vec::new();
    let mut waiting = Vec::new();
    for (region, sources) in &plan {
        for source in sources {
            let key = checkpoint_key(region, *source);
            let state = control.source_state(&key).await.map_err(StepError::aws)?;
            if state.is_paused() {
                // An operator paused it: it stores nothing, so it holds no date back.
                tracing::info!(%key, "paused; not counted for the export's due dates");
                continue;
            }
            if state.checkpoint.is_none() {
                waiting.push(key.clone());
            }
            checkpoints.push(state.checkpoint);
        }
    }
    let last_due = last_due_day(&checkpoints, settings.overlap, settings.settle);
    if !waiting.is_empty() {
        tracing::warn!(sources = ?waiting, "no checkpoint stored yet: no date is due for export until every enabled region/source has one (pause a source to leave it out)");
    }
    if last_due.is_none() {
        return Ok(Vec::new());
    }
    let last = control.last_export().await.map_err(StepError::aws)?;
    let dirty: Vec<NaiveDate> = control
        .dirty_dates()
        .await
        .map_err(StepError::aws)?
        .into_keys()
        .collect();
    let earliest = (now - settings.initial_lookback).date_naive();
    let dates = due_dates(last_due, last, earliest, &dirty);
    tracing::info!(?last_due, last_exported = ?last, dirty = dirty.len(), due = dates.len(), "export due dates");
    Ok(dates)
}
