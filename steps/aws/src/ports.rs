//! The small traits the steps are written against, so that tests and the local stack can swap
//! any adapter. Each has one AWS implementation in this crate.

use std::future::Future;

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use iamtrail_core::contract::RunSummary;
use iamtrail_core::targets::RegionInfo;
use iamtrail_core::NormalizedEvent;

/// One LookupEvents request: one region, one source (its lookup attribute:
/// [`iamtrail_core::Source::lookup`]), a closed time range.
#[derive(Debug, Clone, PartialEq)]
pub struct LookupRequest {
    pub region: String,
    pub source: iamtrail_core::Source,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub next_token: Option<String>,
}

/// One event of a LookupEvents page: the summary fields and the full record as a string.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LookupEvent {
    pub event_id: Option<String>,
    pub event_name: Option<String>,
    pub event_source: Option<String>,
    pub event_time: Option<DateTime<Utc>>,
    pub username: Option<String>,
    pub cloudtrail_event: Option<String>,
}

/// One page of LookupEvents results (newest first).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LookupPage {
    pub events: Vec<LookupEvent>,
    pub next_token: Option<String>,
}

/// How a LookupEvents call failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum LookupError {
    /// `ThrottlingException`: slow down and retry.
    #[error("throttled: {0}")]
    Throttled(String),
    /// A network failure, time-out or 5xx: retry a few times.
    #[error("transient failure: {0}")]
    Transient(String),
    /// Anything else (access denied, invalid parameters, region disabled): report it.
    #[error("{0}")]
    Failed(String),
}

/// CloudTrail event history.
pub trait EventSource: Send + Sync {
    fn lookup(
        &self,
        request: &LookupRequest,
    ) -> impl Future<Output = Result<LookupPage, LookupError>> + Send;
}

/// A store failure, with the operation that failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{operation} failed: {message}")]
pub struct StoreError {
    pub operation: &'static str,
    pub message: String,
}

/// What a batch of event writes did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PutOutcome {
    /// Items written (idempotently: a rewrite of the same key counts again).
    pub written: u64,
    /// Items the table rejected as invalid (isolated from their batch, which was stored):
    /// the index in the input and the store's reason. The caller keeps them elsewhere.
    pub rejected: Vec<(usize, String)>,
}

/// The events table.
pub trait EventStore: Send + Sync {
    /// Writes the events (idempotently: same key, same content). An item the table rejects as
    /// invalid never fails the others: it is reported in [`PutOutcome::rejected`].
    fn put_events(
        &self,
        events: &[NormalizedEvent],
    ) -> impl Future<Output = Result<PutOutcome, StoreError>> + Send;
    /// The stored events of one `eventName` at or before `until`, newest first, at most
    /// `limit` (the history the rules read: docs/alerts.md, "Rules that read history").
    fn events_named(
        &self,
        name: &str,
        until: DateTime<Utc>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<NormalizedEvent>, StoreError>> + Send;
}

/// What the control table holds for one region/source.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SourceState {
    pub checkpoint: Option<DateTime<Utc>>,
    pub processing_status: Option<String>,
}

impl SourceState {
    /// Whether an operator paused the source (`processing_status = paused`).
    pub fn is_paused(&self) -> bool {
        self.processing_status.as_deref() == Some("paused")
    }
}

/// The answer to a lease request.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseOutcome {
    /// The caller holds the lease until `expires` (taken, renewed, or taken over after expiry).
    Acquired { expires: DateTime<Utc> },
    /// Someone else holds an unexpired lease.
    Held {
        holder: String,
        expires: DateTime<Utc>,
    },
}

/// The record of one exported date (`export#YYYY-MM-DD`).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRecord {
    pub rows: u64,
    pub keys: Vec<String>,
    pub exported_at: DateTime<Utc>,
}

/// The control table: checkpoints, per-source status, leases, export progress, dirty dates
/// and run records.
pub trait ControlStore: Send + Sync {
    fn source_state(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<SourceState, StoreError>> + Send;
    /// Records a stored slice: moves the checkpoint forward (never back, even under races)
    /// when `checkpoint` is given, adds `stored` to the running count, and clears an `error`
    /// status (a `paused` status is left alone). Returns the state after the update, so the
    /// caller sees a pause set while it was reading.
    fn record_slice(
        &self,
        key: &str,
        checkpoint: Option<DateTime<Utc>>,
        stored: u64,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<SourceState, StoreError>> + Send;
    /// Records a source's failure (`last_error`, status `error`; a pause is kept).
    fn record_error(
        &self,
        key: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Takes, renews or (once expired) takes over the lease `lease#<name>` for `holder`
    /// until `now + duration`. A conditional write: two callers never both hold it.
    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        duration: chrono::Duration,
    ) -> impl Future<Output = Result<LeaseOutcome, StoreError>> + Send;
    /// Gives a lease back (only if `holder` still holds it).
    fn release_lease(
        &self,
        name: &str,
        holder: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Stores a run record (`run#<id>`) and points `run#latest` at it.
    fn put_run(&self, summary: &RunSummary) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The newest date exported by the scheduled export (`export#latest`).
    fn last_export(&self) -> impl Future<Output = Result<Option<NaiveDate>, StoreError>> + Send;
    /// A date's export record, if it was exported.
    fn export_record(
        &self,
        date: NaiveDate,
    ) -> impl Future<Output = Result<Option<ExportRecord>, StoreError>> + Send;
    /// Records a date's export (`export#YYYY-MM-DD`) and moves `export#latest` forward
    /// (never back).
    fn record_export(
        &self,
        date: NaiveDate,
        rows: u64,
        keys: &[String],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Marks dates dirty: events were stored for them. Each mark bumps the date's sequence
    /// number (one atomic update of one item), so an export that read the date before the
    /// mark cannot clear it.
    fn mark_dirty(
        &self,
        dates: &[NaiveDate],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The dirty dates with their current sequence numbers (a consistent read).
    fn dirty_dates(
        &self,
    ) -> impl Future<Output = Result<BTreeMap<NaiveDate, u64>, StoreError>> + Send;
    /// Adds `entry` to the counter `key` (a set: adding an entry it holds changes nothing)
    /// and keeps the counter until `expires`; returns every entry it holds after the add (one
    /// atomic update, so of two callers adding at once the later sees both). Entries the caller
    /// finds too old are removed with [`ControlStore::drop_counter_entries`].
    fn add_to_counter(
        &self,
        key: &str,
        entry: &str,
        expires: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// Claims the alert of a burst on a counter: succeeds when no burst alerted before covers
    /// `chain_start` (its `alerted_until` is earlier) or when the claim is this burst's own
    /// (`trigger`, so a retry or redrive claims again), and then records `until` and
    /// `trigger`. A conditional update: of two callers finding overlapping bursts at once,
    /// one wins.
    fn claim_burst(
        &self,
        key: &str,
        chain_start: DateTime<Utc>,
        until: DateTime<Utc>,
        trigger: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Removes entries from a counter (those the caller found too old to matter).
    fn drop_counter_entries(
        &self,
        key: &str,
        entries: &[String],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Clears a date's dirty mark if its sequence number is still `seq`; `false` when it was
    /// marked again since (the date stays dirty and is exported again).
    fn clear_dirty(
        &self,
        date: NaiveDate,
        seq: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// The events table, read one day partition at a time (Query on `event_date`, never a Scan,
/// always with ConsistentRead).
pub trait EventReader: Send + Sync {
    /// One page of a day's events in `event_id` order, starting after `after`, and the
    /// `event_id` to continue after (`None` at the end).
    fn day_page(
        &self,
        date: NaiveDate,
        after: Option<String>,
    ) -> impl Future<Output = Result<DayPage, StoreError>> + Send;
}

/// A page of one day's events.
#[derive(Debug, Clone, Default)]
pub struct DayPage {
    pub events: Vec<NormalizedEvent>,
    pub next: Option<String>,
}

/// What a bucket knows of one object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectInfo {
    pub size: u64,
    /// User metadata (`x-amz-meta-*`), names in lower case.
    pub metadata: BTreeMap<String, String>,
}

/// A bucket (the analytics bucket: exports, and full raw records under the raw prefix).
pub trait ObjectStore: Send + Sync {
    /// Every key under a prefix.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// An object's size and metadata; `None` when it does not exist.
    fn head(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<ObjectInfo>, StoreError>> + Send;
    /// Uploads a local file with user metadata, atomically: one PUT, or one multipart upload
    /// for large files (the object appears whole or not at all; a failed upload is aborted
    /// and leaves the previous version in place).
    fn put_file(
        &self,
        key: &str,
        path: &std::path::Path,
        metadata: &[(String, String)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Uploads bytes (one PUT).
    fn put_bytes(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Reading whole objects (the Sigma rules under `SIGMA_RULES`, docs/sigma.md), beside
/// [`ObjectStore`]'s listing.
pub trait ObjectReader: Send + Sync {
    /// An object's bytes; `None` when it does not exist.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
}

/// A CloudTrail trail bucket, read only (docs/ingest.md): the S3 ingestion lists its folders
/// and objects and reads its log objects.
pub trait TrailBucket: Send + Sync {
    /// The folders directly under a prefix (ListObjectsV2 with the delimiter `/`), in order.
    fn folders(&self, prefix: &str)
        -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// Every object under a prefix with its size, in key order.
    fn objects(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<iamtrail_core::trail::PlannedObject>, StoreError>> + Send;
    /// An object's bytes; `None` when it does not exist.
    fn read(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
}

/// The trail objects the S3 ingestion has stored, and each account and region's newest, kept
/// in the control table (docs/ingest.md, "Exactly once in effect").
pub trait IngestLedger: Send + Sync {
    /// Whether the object (`bucket/key`) was ingested.
    fn is_ingested(&self, object: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Records the object as ingested, with what it held.
    fn mark_ingested(
        &self,
        object: &str,
        items: u64,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Moves an account and region's checkpoint to an object written at `written`, unless it
    /// is already at a newer one (one item per bucket, `trail#<bucket>`, one attribute per
    /// account and region: a conditional update).
    fn advance_trail_checkpoint(
        &self,
        bucket: &str,
        account: &str,
        region: &str,
        written: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A bucket's checkpoints: account, region and the newest object's time, in order.
    fn trail_checkpoints(
        &self,
        bucket: &str,
    ) -> impl Future<Output = Result<Vec<(String, String, DateTime<Utc>)>, StoreError>> + Send;
}

/// EC2 DescribeRegions.
pub trait RegionLister: Send + Sync {
    fn regions(&self) -> impl Future<Output = Result<Vec<RegionInfo>, StoreError>> + Send;
}

/// What happened to an alert whose publish failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// Back to `pending`, for a later attempt.
    Pending,
    /// Its attempts are used up: now `failed` (kept, counted, visible to the operator).
    Failed,
}

/// The alerts table, used as an outbox.
pub trait AlertStore: Send + Sync {
    /// Queues an alert with a conditional put; `false` when that (event, rule) already exists.
    fn enqueue(
        &self,
        alert: &iamtrail_core::outbox::AlertRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Alerts waiting for delivery, highest severity first and newest first within a
    /// severity: `pending` ones, and `sending` ones whose claim is older than `stale_before`
    /// (a delivery that died). At most `limit`.
    fn deliverable(
        &self,
        limit: usize,
        stale_before: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<iamtrail_core::outbox::AlertRecord>, StoreError>> + Send;
    /// Claims an alert for delivery (conditional on it still being deliverable); `false` when
    /// another delivery got it first.
    fn claim(
        &self,
        alert: &iamtrail_core::outbox::AlertRecord,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Marks a claimed alert sent, with the notification's message id.
    fn mark_sent(
        &self,
        alert: &iamtrail_core::outbox::AlertRecord,
        message_id: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// After a failed publish: counts the attempt and records the error; the alert goes back
    /// to `pending`, or to `failed` once `max_attempts` attempts have failed.
    fn release(
        &self,
        alert: &iamtrail_core::outbox::AlertRecord,
        error: &str,
        max_attempts: u32,
    ) -> impl Future<Output = Result<Released, StoreError>> + Send;
    /// How many alerts are `failed` (for the run summary and the operator).
    fn failed_count(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// A notification: SNS subject, plain-text body and message attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub subject: String,
    pub body: String,
    pub attributes: Vec<(String, String)>,
}

/// The alert channel (SNS).
pub trait Notifier: Send + Sync {
    /// Publishes; returns the message id.
    fn publish(
        &self,
        notification: &Notification,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;
}
