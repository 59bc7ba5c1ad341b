//! The Aggregate step, run after each round of the workflow's Map: either the items to collect
//! again (a round that left items with `more: true`), or, in the final round, the run totals,
//! per-item errors, the run record, the dates due for export, and the end of a scheduled run's
//! lease.
//!
//! Due dates come from the control table, not from this run's results: a region whose Collect
//! failed in this run still has a stored checkpoint, and that checkpoint holds its days back.
//! See docs/architecture.md (the rounds) and docs/export.md (due dates).

use chrono::{DateTime, NaiveDate, Utc};
use iamtrail_core::contract::{AggregateInput, AggregateOutput, Mode, RunSummary};
use iamtrail_core::export::{due_dates, last_due_day};
use iamtrail_core::metrics::{run_documents, ExportState, StoredSource};
use iamtrail_core::source::checkpoint_key;
use iamtrail_core::summary::{next_round, result_regions, summarize};
use iamtrail_core::targets::plan_targets;
use iamtrail_core::Settings;

use crate::metrics::Metrics;
use crate::ports::ControlStore;
use crate::steps::list_targets::RUN_LEASE;
use crate::StepError;

/// One Aggregate round. When items stopped on Collect's time budget, returns them to be
/// collected again with every other result carried along, and does nothing else (no run
/// record, no lease release, no metrics). Otherwise the run is over: [`finish_run`].
pub async fn aggregate<C: ControlStore>(
    input: AggregateInput,
    control: &C,
    metrics: &Metrics,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<AggregateOutput, StepError> {
    if let Some(next) = next_round(&input, settings.max_collect_invocations) {
        let regions: Vec<&str> = next.items.iter().map(|i| i.region.as_str()).collect();
        tracing::info!(run_id = %input.run_id, ?regions, carried = next.collected.len(), "collecting again: items with more to read");
        return Ok(AggregateOutput::Continue(next));
    }
    let summary = finish_run(input, control, metrics, settings, now).await?;
    Ok(AggregateOutput::Final(Box::new(summary)))
}

/// The final round, once per execution: sums the results of every round, decides which dates
/// are due for export, stores the run record in the control table, writes the run's metrics
/// (docs/metrics.md) and (scheduled runs) gives the run lease back. A control-table failure is
/// an `AwsError`, which the workflow retries.
pub async fn finish_run<C: ControlStore>(
    input: AggregateInput,
    control: &C,
    metrics: &Metrics,
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
    let stored = read_stored(&input, control, settings).await?;
    let dates = export_dates(&stored, settings, now);
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
    // After the run record: an Aggregate retried after a failed write does not write twice.
    metrics.emit(&run_documents(
        &summary,
        &stored.sources,
        &stored.export,
        now,
        settings.detailed_metrics,
    ));
    Ok(summary)
}

/// What the control table holds for the export's due dates and the run's metrics: the stored
/// checkpoint of every enabled region/source, the newest exported date and the dirty dates.
struct Stored {
    sources: Vec<StoredSource>,
    export: ExportState,
    dirty: Vec<NaiveDate>,
}

/// Reads the checkpoint of every enabled region/source (one read each), `export#latest` and
/// the dirty dates.
async fn read_stored<C: ControlStore>(
    input: &AggregateInput,
    control: &C,
    settings: &Settings,
) -> Result<Stored, StepError> {
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
    let mut sources = Vec::new();
    for (region, planned) in &plan {
        for source in planned {
            let key = checkpoint_key(region, *source);
            let state = control.source_state(&key).await.map_err(StepError::aws)?;
            sources.push(StoredSource {
                region: region.clone(),
                source: *source,
                checkpoint: state.checkpoint,
                paused: state.is_paused(),
            });
        }
    }
    let last_exported = control.last_export().await.map_err(StepError::aws)?;
    let dirty: Vec<NaiveDate> = control
        .dirty_dates()
        .await
        .map_err(StepError::aws)?
        .into_keys()
        .collect();
    Ok(Stored {
        sources,
        export: ExportState {
            last_exported,
            dirty_dates: dirty.len(),
        },
        dirty,
    })
}

/// The dates due for export: new complete dates and dirty ones, decided from the stored
/// checkpoint of every enabled region/source (paused ones left out).
fn export_dates(stored: &Stored, settings: &Settings, now: DateTime<Utc>) -> Vec<NaiveDate> {
    let mut checkpoints = Vec::new();
    let mut waiting = Vec::new();
    for s in &stored.sources {
        let key = checkpoint_key(&s.region, s.source);
        if s.paused {
            // An operator paused it: it stores nothing, so it holds no date back.
            tracing::info!(%key, "paused; not counted for the export's due dates");
            continue;
        }
        if s.checkpoint.is_none() {
            waiting.push(key);
        }
        checkpoints.push(s.checkpoint);
    }
    let last_due = last_due_day(&checkpoints, settings.overlap, settings.settle);
    if !waiting.is_empty() {
        tracing::warn!(sources = ?waiting, "no checkpoint stored yet: no date is due for export until every enabled region/source has one (pause a source to leave it out)");
    }
    if last_due.is_none() {
        return Vec::new();
    }
    let last = stored.export.last_exported;
    let earliest = (now - settings.initial_lookback).date_naive();
    let dates = due_dates(last_due, last, earliest, &stored.dirty);
    tracing::info!(?last_due, last_exported = ?last, dirty = stored.dirty.len(), due = dates.len(), "export due dates");
    dates
}
