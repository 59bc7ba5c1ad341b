//! The metrics the steps publish as CloudWatch Embedded Metric Format log lines: their names,
//! units and dimensions (the contract the alarms and the dashboard are written against), and
//! the documents each step writes, built from the steps' own results. Every metric, when it is
//! written and what watches it: docs/metrics.md.

mod emf;
mod run;

pub use emf::{EmfError, Metric, MetricDoc, Namespace, Unit};
pub use run::{run_documents, ExportState, StoredSource};

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::contract::{Counts, SourceProgress};
use crate::Source;

/// The namespace prefix: a stack's metrics are under `IamTrail/<stack name>`.
pub const NAMESPACE_PREFIX: &str = "IamTrail";

/// The namespace of a stack's metrics.
pub fn stack_namespace(stack: &str) -> Result<Namespace, EmfError> {
    Namespace::new(format!("{NAMESPACE_PREFIX}/{stack}"))
}

/// Metric and dimension names (CloudWatch is case-sensitive: these are the contract).
pub mod names {
    pub const REGION: &str = "Region";
    pub const SOURCE: &str = "Source";

    pub const EVENTS_FETCHED: &str = "EventsFetched";
    pub const EVENTS_STORED: &str = "EventsStored";
    pub const EVENTS_FILTERED: &str = "EventsFiltered";
    pub const EVENTS_MALFORMED: &str = "EventsMalformed";
    pub const LOOKUP_REQUESTS: &str = "LookupRequests";
    pub const LOOKUP_THROTTLES: &str = "LookupThrottles";
    pub const ALERTS_QUEUED: &str = "AlertsQueued";

    pub const PARTIAL_RUN: &str = "PartialRun";
    pub const SOURCES_FAILED: &str = "SourcesFailed";
    pub const RUN_EVENTS_STORED: &str = "RunEventsStored";
    pub const MAX_COLLECTION_LAG_SECONDS: &str = "MaxCollectionLagSeconds";
    pub const COLLECTION_LAG_SECONDS: &str = "CollectionLagSeconds";
    pub const EXPORT_LAG_DAYS: &str = "ExportLagDays";
    pub const DIRTY_DATES: &str = "DirtyDates";

    pub const ALERTS_SENT: &str = "AlertsSent";
    pub const ALERTS_FAILED: &str = "AlertsFailed";
    pub const ALERTS_FAILED_FOR_GOOD: &str = "AlertsFailedForGood";
    pub const ALERTS_PENDING: &str = "AlertsPending";
    pub const OLDEST_PENDING_ALERT_AGE_SECONDS: &str = "OldestPendingAlertAgeSeconds";

    pub const EXPORT_ROWS: &str = "ExportRows";
    pub const EXPORT_FILES: &str = "ExportFiles";
}

/// Collect: one document per source of the invocation's region, labelled with Region and
/// Source (dimensions too when `detailed`), with what this invocation did (`after` less the counts the item came in with, `before`:
/// a work item carries its counts over the Collect loop).
pub fn collect_documents(
    region: &str,
    before: &BTreeMap<Source, Counts>,
    after: &BTreeMap<Source, SourceProgress>,
    at: DateTime<Utc>,
    detailed: bool,
) -> Vec<MetricDoc> {
    after
        .iter()
        .map(|(source, progress)| {
            let was = before.get(source).copied().unwrap_or_default();
            let now = progress.counts;
            let d = |f: fn(&Counts) -> u64| f(&now).saturating_sub(f(&was));
            MetricDoc::new(at)
                .dimension(names::REGION, region)
                .dimension(names::SOURCE, source.key())
                .detailed(detailed)
                .count(names::EVENTS_FETCHED, d(|c| c.fetched))
                .count(names::EVENTS_STORED, d(|c| c.stored))
                .count(names::EVENTS_FILTERED, d(Counts::filtered))
                .count(names::EVENTS_MALFORMED, d(|c| c.malformed))
                .count(names::LOOKUP_REQUESTS, d(|c| c.requests))
                .count(names::LOOKUP_THROTTLES, d(|c| c.throttled))
                .count(names::ALERTS_QUEUED, d(|c| c.alerts_queued))
        })
        .collect()
}

/// What one EvaluateAlerts invocation did, and what it left waiting.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertsInvocation {
    pub sent: u64,
    /// Publishes that failed in this invocation (each one an attempt).
    pub failed: u64,
    /// Alerts whose last attempt failed in this invocation: now `failed`.
    pub failed_for_good: u64,
    /// Alerts left pending after this invocation.
    pub pending: u64,
    /// When the oldest alert left pending was queued.
    pub oldest_pending: Option<DateTime<Utc>>,
}

/// EvaluateAlerts: one document, no dimension.
pub fn alerts_document(run: &AlertsInvocation, at: DateTime<Utc>) -> MetricDoc {
    let age = run
        .oldest_pending
        .map_or(0, |t| (at - t).num_seconds().max(0));
    MetricDoc::new(at)
        .count(names::ALERTS_SENT, run.sent)
        .count(names::ALERTS_FAILED, run.failed)
        .count(names::ALERTS_FAILED_FOR_GOOD, run.failed_for_good)
        .count(names::ALERTS_PENDING, run.pending)
        .metric(names::OLDEST_PENDING_ALERT_AGE_SECONDS, Unit::Seconds, age)
}

/// Export: one document, no dimension, with the rows and files this invocation wrote.
pub fn export_document(rows: u64, files: u64, at: DateTime<Utc>) -> MetricDoc {
    MetricDoc::new(at)
        .count(names::EXPORT_ROWS, rows)
        .count(names::EXPORT_FILES, files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 8, 0, 0).unwrap()
    }

    #[test]
    fn collect_counts_are_this_invocations() {
        let earlier = Counts {
            fetched: 100,
            stored: 90,
            filtered_aws_service: 6,
            filtered_roles: 4,
            requests: 3,
            throttled: 1,
            alerts_queued: 2,
            ..Counts::default()
        };
        let mut total = earlier;
        total.add(&Counts {
            fetched: 50,
            stored: 45,
            filtered_roles: 5,
            malformed: 1,
            requests: 2,
            alerts_queued: 1,
            ..Counts::default()
        });
        let after = BTreeMap::from([
            (
                Source::Sts,
                SourceProgress {
                    counts: total,
                    ..Default::default()
                },
            ),
            (Source::Signin, SourceProgress::default()),
        ]);
        let before = BTreeMap::from([(Source::Sts, earlier)]);
        let docs = collect_documents("eu-west-1", &before, &after, at(), false);
        assert_eq!(docs.len(), 2);
        let sts = &docs[0];
        assert_eq!(sts.dimension_value(names::REGION), Some("eu-west-1"));
        assert_eq!(sts.dimension_value(names::SOURCE), Some("sts"));
        let values: Vec<_> = sts.metrics.iter().map(|m| (m.name, m.value)).collect();
        assert_eq!(
            values,
            [
                ("EventsFetched", 50),
                ("EventsStored", 45),
                ("EventsFiltered", 5),
                ("EventsMalformed", 1),
                ("LookupRequests", 2),
                ("LookupThrottles", 0),
                ("AlertsQueued", 1)
            ]
        );
        assert!(docs[1].metrics.iter().all(|m| m.value == 0));
        assert_eq!(docs[1].dimension_value(names::SOURCE), Some("signin"));
    }

    #[test]
    fn oldest_pending_age_is_zero_when_none_is_pending() {
        let none = alerts_document(&AlertsInvocation::default(), at());
        assert_eq!(none.value(names::OLDEST_PENDING_ALERT_AGE_SECONDS), Some(0));
        let waiting = AlertsInvocation {
            sent: 3,
            failed: 2,
            failed_for_good: 1,
            pending: 1,
            oldest_pending: Some(at() - chrono::Duration::minutes(90)),
        };
        let doc = alerts_document(&waiting, at());
        assert_eq!(
            doc.value(names::OLDEST_PENDING_ALERT_AGE_SECONDS),
            Some(5400)
        );
        assert_eq!(doc.value(names::ALERTS_FAILED), Some(2));
        assert_eq!(doc.value(names::ALERTS_FAILED_FOR_GOOD), Some(1));
        assert!(doc.dimensions.is_empty());
        let export = export_document(439, 2, at());
        assert_eq!(export.value(names::EXPORT_ROWS), Some(439));
        assert_eq!(export.value(names::EXPORT_FILES), Some(2));
    }
}
