//! The JSON contracts between the workflow's steps. Payloads carry counts and keys, never event
//! lists, so they stay far below the 256 KB Step Functions limit whatever the volume.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::source::Source;
use crate::window::Window;

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
    /// With mode `export`: replace a date's file even when the new one has fewer rows (for
    /// example after its events expired from DynamoDB).
    #[serde(default)]
    pub force: Option<bool>,
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
    pub export_dates: Vec<NaiveDate>,
    /// Mode `export`: replace files even with fewer rows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// Why this execution collects nothing: a scheduled run that found the previous one still
    /// holding the run lease. The workflow ends at once with status `skipped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
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
    /// Backfill range, absent for incremental runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    /// Progress per source, cumulative over the invocations of this item.
    #[serde(default)]
    pub progress: BTreeMap<Source, SourceProgress>,
    /// True when Collect stopped on its time budget and must be invoked again with this item.
    #[serde(default)]
    pub more: bool,
    /// Collect invocations spent on this item so far.
    #[serde(default)]
    pub invocations: u32,
    /// True when the item reached the run's cap on Collect invocations
    /// (`MAX_COLLECT_INVOCATIONS`) with work left: the next run resumes from the checkpoints.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub capped: bool,
    /// Invocations that ended waiting for the region's lease (another collector was reading
    /// the region).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lease_waits: u32,
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
    /// Records DynamoDB rejected even in their minimal form: kept only in S3 (raw prefix).
    #[serde(default)]
    pub rejected: u64,
    /// Full original records written to S3 because the stored item had to be cut or could not
    /// be stored.
    #[serde(default)]
    pub raw_kept: u64,
    /// Records the `root` source skipped because another source of the same region reads
    /// them (a root IAM call is stored by `iam`): counted, not lost.
    #[serde(default)]
    pub read_elsewhere: u64,
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
        self.rejected += other.rejected;
        self.raw_kept += other.raw_kept;
        self.read_elsewhere += other.read_elsewhere;
    }

    /// Every filtered event.
    pub fn filtered(&self) -> u64 {
        self.filtered_aws_service + self.filtered_roles
    }
}

/// Progress of one source within a work item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct SourceProgress {
    /// The window fixed at the item's first invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// End of the last fully stored slice: where the next invocation resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<DateTime<Utc>>,
    pub done: bool,
    pub counts: Counts,
    /// The checkpoint after this item (absent when none exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<DateTime<Utc>>,
    /// Things the operator should know (e.g. a checkpoint older than CloudTrail's history).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
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

/// Aggregate's payload: the whole workflow state after a round of the Map (the fields it does
/// not name, such as `items`, are ignored).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AggregateInput {
    pub run_id: String,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub execution: Option<String>,
    /// This round's Map results: work items, or `{region, sources, failed: true, error:
    /// {Error, Cause}}` for an item whose Collect failed after its retries.
    pub results: Vec<serde_json::Value>,
    /// The results of the items that finished in earlier rounds, carried by the
    /// [`Continuation`] (empty on the first round).
    #[serde(default)]
    pub collected: Vec<serde_json::Value>,
    /// Every enabled region (from ListTargets): export due dates are decided from the stored
    /// checkpoints of every enabled region/source, not only those of this run.
    #[serde(default)]
    pub enabled_regions: Vec<String>,
}

/// Aggregate's answer when some items stopped on Collect's time budget (`more: true`, under the
/// invocation cap): the workflow sends `items` back to the same Map, and the next Aggregate
/// round gets `collected` back with the new results. Building it has no side effects (no run
/// record, no lease release, no metrics). See docs/architecture.md.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Continuation {
    pub run_id: String,
    pub mode: Mode,
    pub enabled_regions: Vec<String>,
    /// The items to collect again, as Collect returned them (cursor and invocations kept).
    pub items: Vec<WorkItem>,
    /// Every other result so far: finished items and failed ones, each region once.
    pub collected: Vec<serde_json::Value>,
}

/// Aggregate's result: collect again, or the final run summary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum AggregateOutput {
    /// Some items have more to read: the workflow's `CollectAgain?` sends them to the Map.
    Continue(Continuation),
    /// Collection is over: the run summary, also stored as the run record.
    Final(Box<RunSummary>),
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
    pub checkpoint: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
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
    /// Regions whose item reached the Collect invocation cap with work left.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capped_regions: Vec<String>,
    pub finished_at: DateTime<Utc>,
    /// Whether dates are due for export (the workflow's Choice reads it).
    #[serde(default)]
    pub export_due: bool,
    /// The dates due for export: new complete dates and dirty ones (already exported, with
    /// events stored since).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_dates: Vec<NaiveDate>,
}
