//! The small traits the steps are written against, so that tests and the local stack can swap
//! any adapter. Each has one AWS implementation in this crate.

use std::future::Future;

use chrono::{DateTime, Utc};
use iamtrail_core::contract::RunSummary;
use iamtrail_core::targets::RegionInfo;
use iamtrail_core::NormalizedEvent;

/// One LookupEvents request: one region, one event source, a closed time range.
#[derive(Debug, Clone, PartialEq)]
pub struct LookupRequest {
    pub region: String,
    pub event_source: String,
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

/// The events table.
pub trait EventStore: Send + Sync {
    /// Writes the events (idempotently: same key, same content); returns how many were written.
    fn put_events(
        &self,
        events: &[NormalizedEvent],
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// What the control table holds for one region/source.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SourceState {
    pub checkpoint: Option<DateTime<Utc>>,
    pub processing_status: Option<String>,
}

/// The control table: checkpoints, per-source status and run records.
pub trait ControlStore: Send + Sync {
    fn source_state(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<SourceState, StoreError>> + Send;
    /// Records a stored slice: moves the checkpoint forward (never back, even under races)
    /// when `checkpoint` is given, and adds `stored` to the running count.
    fn record_slice(
        &self,
        key: &str,
        checkpoint: Option<DateTime<Utc>>,
        stored: u64,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Records a source's failure (`last_error`, status `error`).
    fn record_error(
        &self,
        key: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Stores a run record (`run#<id>`) and points `run#latest` at it.
    fn put_run(&self, summary: &RunSummary) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The newest date exported by the scheduled export (`export#latest`).
    fn last_export(
        &self,
    ) -> impl Future<Output = Result<Option<chrono::NaiveDate>, StoreError>> + Send;
    /// Records a date's export (`export#YYYY-MM-DD`) and moves `export#latest` forward.
    fn record_export(
        &self,
        date: chrono::NaiveDate,
        rows: u64,
        keys: &[String],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The events table, read one day partition at a time (Query on `event_date`, never a Scan).
pub trait EventReader: Send + Sync {
    /// One page of a day's events, and the key to continue from.
    fn day_page(
        &self,
        date: chrono::NaiveDate,
        start: Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
    ) -> impl Future<Output = Result<DayPage, StoreError>> + Send;
}

/// A page of one day's events.
pub struct DayPage {
    pub events: Vec<NormalizedEvent>,
    pub next: Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
}

/// The analytics bucket.
pub trait ObjectStore: Send + Sync {
    /// Every key under a prefix.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// Deletes keys.
    fn delete(&self, keys: &[String]) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Uploads a local file.
    fn put_file(
        &self,
        key: &str,
        path: &std::path::Path,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// EC2 DescribeRegions.
pub trait RegionLister: Send + Sync {
    fn regions(&self) -> impl Future<Output = Result<Vec<RegionInfo>, StoreError>> + Send;
}

/// The alerts table, used as an outbox.
pub trait AlertStore: Send + Sync {
    /// Queues an alert with a conditional put; `false` when that (event, rule) already exists.
    fn enqueue(
        &self,
        alert: &iamtrail_core::outbox::AlertRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Alerts waiting for delivery, oldest first: `pending` ones, and `sending` ones whose
    /// claim is older than `stale_before` (a delivery that died).
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
    /// Puts a claimed alert back to `pending` after a failed delivery, with the error.
    fn release(
        &self,
        alert: &iamtrail_core::outbox::AlertRecord,
        error: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
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
