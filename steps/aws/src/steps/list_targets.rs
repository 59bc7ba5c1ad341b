//! The ListTargets step: the run's work items, one per enabled region.
//!
//! A scheduled (incremental) execution first takes the run lease (`lease#run`, holder = the
//! execution name): when the previous execution still holds it, this one collects nothing and
//! ends at once as `skipped` instead of piling up behind it. Backfill and export executions
//! take no run lease. See docs/reliability.md.

use chrono::{DateTime, Utc};
use iamtrail_core::contract::{
    ExecutionInput, ListTargetsInput, ListTargetsOutput, Mode, WorkItem,
};
use iamtrail_core::record::{format_time, parse_time};
use iamtrail_core::targets::{is_enabled, plan_targets};
use iamtrail_core::window::backfill_window;
use iamtrail_core::{Settings, Source};

use crate::ports::{ControlStore, LeaseOutcome, RegionLister};
use crate::StepError;

/// The run lease's name in the control table (`lease#run`).
pub const RUN_LEASE: &str = "run";

/// Validates the execution input, takes the run lease for a scheduled run, lists the enabled
/// regions and plans one item per region.
pub async fn list_targets<R: RegionLister, C: ControlStore>(
    input: ListTargetsInput,
    regions: &R,
    control: &C,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<ListTargetsOutput, StepError> {
    let request: ExecutionInput = if input.input.is_null() {
        ExecutionInput::default()
    } else {
        serde_json::from_value(input.input.clone())
            .map_err(|e| StepError::invalid_input(format!("execution input: {e}")))?
    };
    let has_range = request.start.is_some() || request.end.is_some();
    let mode = request.mode.unwrap_or(if has_range {
        Mode::Backfill
    } else {
        Mode::Incremental
    });
    // The execution name: stable across redrives of the same execution.
    let run_id = input
        .execution
        .clone()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| format!("manual-{}", now.format("%Y%m%dT%H%M%SZ")));
    let mut warnings = Vec::new();
    if request.dates.is_some() && mode != Mode::Export {
        return Err(StepError::invalid_input(
            "dates are only allowed with mode \"export\"",
        ));
    }
    let (start, end) = match mode {
        Mode::Export => {
            if has_range || request.regions.is_some() || request.sources.is_some() {
                return Err(StepError::invalid_input(
                    "mode \"export\" takes only \"dates\"",
                ));
            }
            let dates = request.dates.clone().unwrap_or_default();
            if dates.is_empty() {
                return Err(StepError::invalid_input(
                    "mode \"export\" needs \"dates\": [\"YYYY-MM-DD\", ...]",
                ));
            }
            let mut parsed = Vec::new();
            for d in &dates {
                let date = iamtrail_core::export::parse_date(d).ok_or_else(|| {
                    StepError::invalid_input(format!("date {d:?} is not YYYY-MM-DD"))
                })?;
                if date > now.date_naive() {
                    return Err(StepError::invalid_input(format!(
                        "date {d} is in the future"
                    )));
                }
                parsed.push(date);
            }
            parsed.sort();
            parsed.dedup();
            let force = request.force.unwrap_or(false);
            return Ok(ListTargetsOutput {
                export_dates: parsed,
                force,
                ..nothing_to_collect(run_id, mode, warnings)
            });
        }
        Mode::Incremental if has_range => {
            return Err(StepError::invalid_input(
                "start/end are only allowed with mode \"backfill\"",
            ));
        }
        Mode::Incremental => (None, None),
        Mode::Backfill => {
            let parse = |name: &str, v: &Option<String>| -> Result<DateTime<Utc>, StepError> {
                let text = v.as_deref().ok_or_else(|| {
                    StepError::invalid_input(format!("a backfill needs \"{name}\""))
                })?;
                parse_time(text).ok_or_else(|| {
                    StepError::invalid_input(format!(
                        "{name} {text:?} is not an RFC 3339 time such as 2024-01-31T00:00:00Z"
                    ))
                })
            };
            let start = parse("start", &request.start)?;
            let end = parse("end", &request.end)?;
            let (_, warning) =
                backfill_window(start, end, now, settings).map_err(StepError::invalid_input)?;
            warnings.extend(warning);
            (Some(start), Some(end))
        }
    };
    let only_sources = request
        .sources
        .as_ref()
        .map(|list| {
            list.iter()
                .map(|s| s.parse::<Source>())
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(|e| StepError::invalid_input(e.to_string()))?;

    if mode == Mode::Incremental {
        // One scheduled execution at a time. A redrive has the same name: it takes its own
        // lease again.
        match control
            .acquire_lease(RUN_LEASE, &run_id, now, settings.run_lease)
            .await
            .map_err(StepError::aws)?
        {
            LeaseOutcome::Acquired { .. } => {}
            LeaseOutcome::Held { holder, expires } => {
                let reason = format!(
                    "execution {holder} is still running (run lease until {})",
                    format_time(expires)
                );
                tracing::warn!(%run_id, %holder, %expires, "scheduled run skipped: {reason}");
                return Ok(ListTargetsOutput {
                    skipped: Some(reason),
                    ..nothing_to_collect(run_id, mode, warnings)
                });
            }
        }
    }
    let planned = plan(&request, regions, settings, only_sources.as_deref()).await;
    let (enabled, plan, plan_warnings) = match planned {
        Ok(p) => p,
        Err(e) => {
            if mode == Mode::Incremental {
                // Let the retry (same execution) or the next schedule start without waiting for
                // the lease to expire.
                if let Err(release) = control.release_lease(RUN_LEASE, &run_id).await {
                    tracing::warn!(error = %release, "could not release the run lease");
                }
            }
            return Err(e);
        }
    };
    warnings.extend(plan_warnings);
    let mut items: Vec<WorkItem> = plan
        .into_iter()
        .filter(|(region, _)| request.regions.as_ref().is_none_or(|w| w.contains(region)))
        .map(|(region, sources)| WorkItem {
            run_id: run_id.clone(),
            region,
            sources,
            mode,
            start,
            end,
            ..Default::default()
        })
        .collect();
    // The busiest region (IAM's) first, so it starts before the Map fills up.
    items.sort_by_key(|i| (i.region != settings.iam_region, i.region.clone()));
    for w in &warnings {
        tracing::warn!(warning = %w, "list targets");
    }
    Ok(ListTargetsOutput {
        run_id,
        mode,
        items,
        enabled_regions: enabled,
        warnings,
        export_dates: Vec::new(),
        force: false,
        skipped: None,
    })
}

/// The enabled regions (DescribeRegions after the opt-in filter) and the sources to read in
/// each.
async fn plan<R: RegionLister>(
    request: &ExecutionInput,
    regions: &R,
    settings: &Settings,
    only_sources: Option<&[Source]>,
) -> Result<
    (
        Vec<String>,
        std::collections::BTreeMap<String, Vec<Source>>,
        Vec<String>,
    ),
    StepError,
> {
    let mut enabled: Vec<String> = regions
        .regions()
        .await
        .map_err(StepError::aws)?
        .into_iter()
        .filter(is_enabled)
        .map(|r| r.name)
        .collect();
    enabled.sort();
    enabled.dedup();
    if let Some(wanted) = &request.regions {
        let unknown: Vec<&String> = wanted.iter().filter(|r| !enabled.contains(r)).collect();
        if !unknown.is_empty() {
            return Err(StepError::invalid_input(format!(
                "regions not enabled in this account: {unknown:?}"
            )));
        }
    }
    let (plan, warnings) = plan_targets(&enabled, settings, only_sources);
    Ok((enabled, plan, warnings))
}

/// An output with no work items (an export-only run, or a skipped one).
fn nothing_to_collect(run_id: String, mode: Mode, warnings: Vec<String>) -> ListTargetsOutput {
    ListTargetsOutput {
        run_id,
        mode,
        items: Vec::new(),
        enabled_regions: Vec::new(),
        warnings,
        export_dates: Vec::new(),
        force: false,
        skipped: None,
    }
}
