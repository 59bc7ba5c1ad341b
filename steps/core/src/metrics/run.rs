//! The run metrics Aggregate writes once per execution, when the run is final: run status,
//! failed sources, events stored, collection lag per region/source and export lag.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};

use super::{names, MetricDoc, Unit};
use crate::contract::RunSummary;
use crate::Source;

/// One enabled region/source as the control table holds it (the read Aggregate makes for the
/// export's due dates).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSource {
    pub region: String,
    pub source: Source,
    /// Everything up to it is stored; `None` before the first stored slice.
    pub checkpoint: Option<DateTime<Utc>>,
    /// Paused by an operator: it reads nothing, so it has no lag.
    pub paused: bool,
}

/// What the control table says of the export.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportState {
    /// The newest date the export reached (`export#latest`); `None` before the first export.
    pub last_exported: Option<NaiveDate>,
    /// Dates with events stored since their export, waiting to be exported again.
    pub dirty_dates: usize,
}

/// The run's documents: one with no dimension (run status, failed sources, events stored,
/// the largest collection lag, export lag, dirty dates) and one per enabled, unpaused
/// region/source with a checkpoint (its collection lag, labelled with Region and Source,
/// dimensions too when `detailed`).
///
/// A source without a checkpoint has no lag yet (it is counted in `SourcesFailed` while it
/// fails); `ExportLagDays` is left out before the first export.
pub fn run_documents(
    summary: &RunSummary,
    sources: &[StoredSource],
    export: &ExportState,
    now: DateTime<Utc>,
    detailed: bool,
) -> Vec<MetricDoc> {
    let lag = |s: &StoredSource| s.checkpoint.map(|c| (now - c).num_seconds().max(0));
    let lagging: Vec<(&StoredSource, i64)> = sources
        .iter()
        .filter(|s| !s.paused)
        .filter_map(|s| lag(s).map(|l| (s, l)))
        .collect();
    let partial = matches!(summary.status.as_str(), "partial" | "failed");
    let mut run = MetricDoc::new(now)
        .count(names::PARTIAL_RUN, u64::from(partial))
        .count(names::SOURCES_FAILED, sources_failed(summary, sources))
        .count(names::RUN_EVENTS_STORED, summary.totals.stored);
    if let Some(max) = lagging.iter().map(|(_, l)| *l).max() {
        run = run.metric(names::MAX_COLLECTION_LAG_SECONDS, Unit::Seconds, max);
    }
    if let Some(last) = export.last_exported {
        let days = (now.date_naive() - last).num_days().max(0);
        run = run.metric(names::EXPORT_LAG_DAYS, Unit::Count, days);
    }
    run = run.count(names::DIRTY_DATES, export.dirty_dates as u64);
    let mut docs = vec![run];
    docs.extend(lagging.iter().map(|(s, l)| {
        MetricDoc::new(now)
            .dimension(names::REGION, s.region.clone())
            .dimension(names::SOURCE, s.source.key())
            .detailed(detailed)
            .metric(names::COLLECTION_LAG_SECONDS, Unit::Seconds, *l)
    }));
    docs
}

/// Region/sources that failed in this run: each source error once, and for a region whose
/// whole Collect failed, each of its enabled, unpaused sources (or the region once, when the
/// plan does not name it).
fn sources_failed(summary: &RunSummary, sources: &[StoredSource]) -> u64 {
    let mut failed: BTreeSet<(&str, Option<Source>)> = BTreeSet::new();
    for error in &summary.errors {
        match error.source {
            Some(source) => {
                failed.insert((error.region.as_str(), Some(source)));
            }
            None => {
                let planned: Vec<Source> = sources
                    .iter()
                    .filter(|s| s.region == error.region && !s.paused)
                    .map(|s| s.source)
                    .collect();
                if planned.is_empty() {
                    failed.insert((error.region.as_str(), None));
                }
                for source in planned {
                    failed.insert((error.region.as_str(), Some(source)));
                }
            }
        }
    }
    failed.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Counts, Mode, RunError};
    use chrono::{Duration, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 8, 0, 0).unwrap()
    }

    fn summary(status: &str, errors: Vec<RunError>) -> RunSummary {
        RunSummary {
            run_id: "r".into(),
            mode: Mode::Incremental,
            status: status.into(),
            regions: 2,
            totals: Counts {
                stored: 439,
                ..Counts::default()
            },
            per_source: Default::default(),
            targets: vec![],
            errors,
            collect_invocations: 2,
            capped_regions: vec![],
            finished_at: now(),
            export_due: false,
            export_dates: vec![],
        }
    }

    fn stored(region: &str, source: Source, minutes_ago: Option<i64>) -> StoredSource {
        StoredSource {
            region: region.into(),
            source,
            checkpoint: minutes_ago.map(|m| now() - Duration::minutes(m)),
            paused: false,
        }
    }

    #[test]
    fn a_failed_region_makes_a_partial_run_and_counts_its_sources() {
        let sources = vec![
            stored("us-east-1", Source::Iam, Some(5)),
            stored("us-east-1", Source::Sts, Some(5)),
            stored("eu-west-1", Source::Sts, Some(185)),
            stored("eu-west-1", Source::Signin, None),
            StoredSource {
                paused: true,
                ..stored("eu-west-1", Source::Sso, Some(10_000))
            },
        ];
        let errors = vec![
            RunError {
                region: "eu-west-1".into(),
                source: None,
                error: "InjectedFailure".into(),
            },
            RunError {
                region: "us-east-1".into(),
                source: Some(Source::Iam),
                error: "AccessDenied".into(),
            },
        ];
        let export = ExportState {
            last_exported: NaiveDate::from_ymd_opt(2026, 11, 23),
            dirty_dates: 1,
        };
        let docs = run_documents(&summary("partial", errors), &sources, &export, now(), false);
        let run = &docs[0];
        assert!(run.dimensions.is_empty());
        assert_eq!(run.value(names::PARTIAL_RUN), Some(1));
        // eu-west-1 sts and signin (sso is paused), us-east-1 iam.
        assert_eq!(run.value(names::SOURCES_FAILED), Some(3));
        assert_eq!(run.value(names::RUN_EVENTS_STORED), Some(439));
        // The failed region's stored checkpoint counts; the paused one does not.
        assert_eq!(run.value(names::MAX_COLLECTION_LAG_SECONDS), Some(185 * 60));
        assert_eq!(run.value(names::EXPORT_LAG_DAYS), Some(2));
        assert_eq!(run.value(names::DIRTY_DATES), Some(1));
        let lags: Vec<_> = docs[1..]
            .iter()
            .map(|d| {
                (
                    d.dimension_value(names::REGION).unwrap(),
                    d.dimension_value(names::SOURCE).unwrap(),
                    d.value(names::COLLECTION_LAG_SECONDS).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            lags,
            [
                ("us-east-1", "iam", 300),
                ("us-east-1", "sts", 300),
                ("eu-west-1", "sts", 185 * 60)
            ]
        );
    }

    #[test]
    fn a_healthy_run_is_not_partial() {
        let sources = vec![stored("us-east-1", Source::Iam, Some(5))];
        let docs = run_documents(
            &summary("succeeded", vec![]),
            &sources,
            &ExportState::default(),
            now(),
            true,
        );
        assert_eq!(docs[0].value(names::PARTIAL_RUN), Some(0));
        assert_eq!(docs[0].value(names::SOURCES_FAILED), Some(0));
        assert_eq!(docs[0].value(names::EXPORT_LAG_DAYS), None);
        // Detailed: the lag is published per region/source as well as under `[]`.
        assert_eq!(
            docs[1].dimension_sets(),
            vec![Vec::new(), vec![names::REGION, names::SOURCE]]
        );
        assert_eq!(docs[0].value(names::DIRTY_DATES), Some(0));
        assert_eq!(docs.len(), 2);
        let failed = run_documents(
            &summary("failed", vec![]),
            &[],
            &Default::default(),
            now(),
            false,
        );
        assert_eq!(failed[0].value(names::PARTIAL_RUN), Some(1));
        assert_eq!(failed[0].value(names::MAX_COLLECTION_LAG_SECONDS), None);
    }
}
