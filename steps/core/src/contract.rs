//! The JSON contracts between the workflow's steps. Payloads carry counts and keys, never event
//! lists, so they stay far below the 256 KB Step Functions limit whatever the volume.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::source::Source;

/// How a run reads CloudTrail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// From each checkpoint to now (the schedule).
    #[default]
    Incremental,
    /// A given range, without moving checkpoints backwards.
    Backfill,
    /// Only the export, of the given dates.
    Export,
}

/// The execution input: `{}` for a scheduled run, or a backfill request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExecutionInput {
    /// `incremental` or `backfill`; implied by `start`/`end` when absent.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Backfill range start (RFC 3339).
    #[serde(default)]
    pub start: Option<String>,
    /// Backfill range end (RFC 3339).
    #[serde(default)]
    pub end: Option<String>,
    /// Only these regions (must be enabled).
    #[serde(default)]
    pub regions: Option<Vec<String>>,
    /// Only these sources (`iam`, `sts`, `signin`, `sso`).
    #[serde(default)]
    pub sources: Option<Vec<String>>,
    /// With mode `export`: the dates (`YYYY-MM-DD`) to export again.
    #[serde(default)]
    pub dates: Option<Vec<String>>,
}

/// ListTargets' payload, as the state machine sends it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListTargetsInput {
    #[serde(default)]
    pub input: serde_json::Value,
    /// The execution name: the run id (stable across redrives).
    #[serde(default)]
    pub execution: Option<String>,
}

/// ListTargets' result: one work item per region.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ListTargetsOutput {
    pub run_id: String,
    pub mode: Mode,
    pub items: Vec<WorkItem>,
    /// Enabled regions, as DescribeRegions reported them after the opt-in filter.
    pub enabled_regions: Vec<String>,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Mode `export`: the dates to export.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_dates: Vec<String>,
}

/// One Map item: a region and the sources to read there, in turn (they share the region's
/// LookupEvents quota). Collect returns the same shape with its progress filled in, so the
/// workflow can feed the output back while `more` is true.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct WorkItem {
    pub run_id: String,
    pub region: String,
    pub sources: Vec<Source>,
    pub mode: Mode,
    /// Backfill range (RFC 3339), absent for incremental runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Progress per source, cumulative over the invocations of this item.
    #[serde(default)]
    pub progress: BTreeMap<Source, SourceProgress>,
    /// True when Collect stopped on its time budget and must be invoked again with this item.
    #[serde(default)]
    pub more: bool,
    /// Collect invocations spent on this item so far.
    #[serde(default)]
    pub invocations: u32,
}

/// Counters of one region/source (or of a whole run, summed).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Counts {
    /// Records LookupEvents returned.
    pub fetched: u64,
    /// Items written to the events table.
    pub stored: u64,
    /// Dropped as AWS-service noise.
    pub filtered_aws_service: u64,
    /// Dropped by `FILTERED_ROLES`.
    pub filtered_roles: u64,
    /// Records that could not be parsed (reported, never silently lost).
    pub malformed: u64,
    /// Items shortened to fit DynamoDB's 400 KB limit.
    pub truncated: u64,
    /// LookupEvents requests made (throttled ones included).
    pub requests: u64,
    /// Requests answered with ThrottlingException (retried).
    pub throttled: u64,
    /// Slices completed.
    pub slices: u64,
    /// Alerts queued in the outbox (new (event, rule) pairs).
    #[serde(default)]
    pub alerts_queued: u64,
}

impl Counts {
    /// Adds another set of counters.
    pub fn add(&mut self, other: &Counts) {
        self.fetched += other.fetched;
        self.stored += other.stored;
        self.filtered_aws_service += other.filtered_aws_service;
        self.filtered_roles += other.filtered_roles;
        self.malformed += other.malformed;
        self.truncated += other.truncated;
        self.requests += other.requests;
        self.throttled += other.throttled;
        self.slices += other.slices;
        self.alerts_queued += other.alerts_queued;
    }

    /// Every filtered event.
    pub fn filtered(&self) -> u64 {
        self.filtered_aws_service + self.filtered_roles
    }
}

/// Progress of one source within a work item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct SourceProgress {
    /// The window fixed at the item's first invocation (RFC 3339).
    pub window_start: String,
    pub window_end: String,
    /// End of the last fully stored slice: where the next invocation resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    pub done: bool,
    pub counts: Counts,
    /// The checkpoint after this item (absent when none exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// Why the source failed, if it did (the others go on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the source was skipped (e.g. paused in the control table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Invocations of this item that ran out of time without finishing a slice. After one,
    /// no events are held back, and each halves the minimum slice, so that even a very dense
    /// window makes progress.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stalls: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Aggregate's payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AggregateInput {
    pub run_id: String,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub execution: Option<String>,
    /// Map results: work items, or `{region, sources, failed: true, error: {Error, Cause}}`
    /// for an item whose Collect failed after its retries.
    pub results: Vec<serde_json::Value>,
}

/// One failed region or source in a run summary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunError {
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    pub error: String,
}

/// One region/source line of a run summary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TargetSummary {
    pub region: String,
    pub source: Source,
    pub counts: Counts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// Aggregate's result, also stored as the run record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunSummary {
    pub run_id: String,
    pub mode: Mode,
    /// `succeeded`, or `partial` when some region or source failed.
    pub status: String,
    pub regions: usize,
    pub totals: Counts,
    pub per_source: BTreeMap<String, Counts>,
    /// Every region/source read, with its counts and checkpoint.
    pub targets: Vec<TargetSummary>,
    pub errors: Vec<RunError>,
    /// Collect invocations (more than one per item when the time budget was hit).
    pub collect_invocations: u64,
    pub finished_at: String,
    /// Whether dates are due for export (the workflow's Choice reads it).
    #[serde(default)]
    pub export_due: bool,
    /// The dates due for export (`YYYY-MM-DD`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_dates: Vec<String>,
}
