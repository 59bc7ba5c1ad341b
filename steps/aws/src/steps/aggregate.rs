//! The Aggregate step: run totals, per-item errors and the run record.

use chrono::{DateTime, Utc};
use iamtrail_core::contract::{AggregateInput, RunSummary};
use iamtrail_core::summary::summarize;

use crate::ports::ControlStore;
use crate::StepError;

/// Sums the Map results and stores the run record in the control table.
pub async fn aggregate<C: ControlStore>(
    input: AggregateInput,
    control: &C,
    now: DateTime<Utc>,
) -> Result<RunSummary, StepError> {
    let summary = summarize(&input, now);
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
