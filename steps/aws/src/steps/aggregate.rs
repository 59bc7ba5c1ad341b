//! The Aggregate step: run totals, per-item errors and the run record.

use chrono::{DateTime, Utc};
use iamtrail_core::contract::{AggregateInput, RunSummary};
use iamtrail_core::export::due_dates;
use iamtrail_core::summary::summarize;
use iamtrail_core::Settings;

use crate::ports::ControlStore;
use crate::StepError;

/// Sums the Map results, decides whether dates are due for export, and stores the run record
/// in the control table.
pub async fn aggregate<C: ControlStore>(
    input: AggregateInput,
    control: &C,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<RunSummary, StepError> {
    let mut summary = summarize(&input, now);
    // Every region/source read in this run must have a checkpoint past a day's end.
    let checkpoints: Option<Vec<DateTime<Utc>>> = summary
        .targets
        .iter()
        .filter(|t| t.skipped.is_none())
        .map(|t| t.checkpoint)
        .collect();
    if let Some(checkpoints) = checkpoints.filter(|c| !c.is_empty()) {
        let last = control.last_export().await.map_err(StepError::aws)?;
        let earliest = (now - settings.initial_lookback).date_naive();
        let dates = due_dates(&checkpoints, last, earliest, settings.settle);
        summary.export_due = !dates.is_empty();
        summary.export_dates = dates;
    }
    for error in &summary.errors {
        tracing::error!(region = %error.region, source = ?error.source, error = %error.error, "run error");
    }
    tracing::info!(
        run_id = %summary.run_id,
        status = %summary.status,
        fetched = summary.totals.fetched,
        stored = summary.totals.stored,
        filtered = summary.totals.filtered(),
        "run finished"
    );
    control.put_run(&summary).await.map_err(StepError::aws)?;
    Ok(summary)
}
