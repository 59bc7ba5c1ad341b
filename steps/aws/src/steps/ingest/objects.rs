//! IngestObjects (docs/ingest.md, "One batch"): one batch of trail log objects, each
//!
//! 1. skipped when the control table marks it ingested (unless the batch is forced);
//! 2. read and turned into items by the record path (`iamtrail_core::ingest::object_events`:
//!    the tracked sources only, Collect's filters and normalisation, each item keeping its
//!    record's account), records outside the run's range left alone;
//! 3. stored with the same idempotent batch writes as Collect (an item cut to fit, or refused
//!    by DynamoDB, has its full record kept under `raw-events/` first), its dates marked dirty
//!    for the export, its rule matches queued in the outbox and failed console logins counted
//!    (`crate::steps::detect`);
//! 4. marked ingested, and its account and region's checkpoint moved to it.
//!
//! An object that cannot be read or is not a CloudTrail log object never stops the others: it
//! is reported by key with the reason, the batch's result (written to the analytics bucket
//! before the answer) lists it, and the invocation then fails with `ObjectsFailed`, so the
//! Distributed Map counts the batch as failed and a retry or redrive reads it again (the
//! objects done are skipped). A write that fails after its retries fails the invocation with
//! `AwsError`, which the state machine retries.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use iamtrail_core::contract::Counts;
use iamtrail_core::ingest::{object_events, record_text};
use iamtrail_core::raw::{minimal_item, raw_key};
use iamtrail_core::sigma::SigmaRules;
use iamtrail_core::trail::{result_key, IngestBatch, LogObjectKey};
use iamtrail_core::{NormalizedEvent, Settings, Source};
use serde::{Deserialize, Serialize};

use super::{aws, FailedObject};
use crate::backoff::retry_store;
use crate::ports::{AlertStore, ControlStore, EventStore, IngestLedger, ObjectStore, TrailBucket};
use crate::steps::detect::Detector;
use crate::steps::StepClock;
use crate::StepError;

/// Attempts at a read or write before it counts as failed.
const ATTEMPTS: u32 = 4;

/// What one batch did (IngestObjects' answer, and the batch's result object).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IngestObjectsOutput {
    pub run_id: String,
    pub batch: u32,
    /// Objects in the batch.
    pub objects: u64,
    #[serde(flatten)]
    pub counts: ObjectCounts,
    /// Objects not ingested: their keys and why.
    pub failed: Vec<FailedObject>,
}

/// What ingesting objects did, added up over objects, batches and runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectCounts {
    /// Objects read and stored now.
    pub ingested: u64,
    /// Objects an earlier run had ingested (left alone).
    pub already_ingested: u64,
    /// Records in the objects read.
    pub records: u64,
    /// Records no collected source reads.
    pub not_collected: u64,
    /// Records the noise filters drop.
    pub filtered: u64,
    /// Records outside the run's range.
    pub outside_range: u64,
    /// Records that could not be read (each object's others were kept).
    pub unreadable: u64,
    /// Items written to the events table (minimal forms included).
    pub stored: u64,
    /// Full records kept in S3 (`raw-events/`).
    pub raw_kept: u64,
    /// Items DynamoDB refused even in their minimal form (their records are in S3).
    pub rejected: u64,
    pub alerts_queued: u64,
    /// The events table's write request units of the items stored (1 per started KB).
    #[serde(default)]
    pub write_units: u64,
    /// Time the invocations spent, in milliseconds (what Lambda bills).
    #[serde(default)]
    pub busy_ms: u64,
}

impl std::ops::AddAssign for ObjectCounts {
    fn add_assign(&mut self, o: ObjectCounts) {
        self.ingested += o.ingested;
        self.already_ingested += o.already_ingested;
        self.records += o.records;
        self.not_collected += o.not_collected;
        self.filtered += o.filtered;
        self.outside_range += o.outside_range;
        self.unreadable += o.unreadable;
        self.stored += o.stored;
        self.raw_kept += o.raw_kept;
        self.rejected += o.rejected;
        self.alerts_queued += o.alerts_queued;
        self.write_units += o.write_units;
        self.busy_ms += o.busy_ms;
    }
}

/// The adapters IngestObjects works with.
pub struct IngestDeps<'a, T, E, C, A, O> {
    pub settings: &'a Settings,
    pub trail: &'a T,
    pub events: &'a E,
    /// The control table: dirty dates, counters, ingested marks and trail checkpoints.
    pub control: &'a C,
    pub alerts: &'a A,
    /// The analytics bucket: full records, the batch's result.
    pub objects: &'a O,
    pub sigma: &'a SigmaRules,
}

/// Ingests one batch of the Distributed Map (see the module docs): [`ingest_batch`], then the
/// batch's result written to the analytics bucket, and `ObjectsFailed` when an object was not
/// ingested.
pub async fn ingest_objects<T, E, C, A, O>(
    batch: IngestBatch,
    deps: &IngestDeps<'_, T, E, C, A, O>,
    now: DateTime<Utc>,
    deadline: Option<tokio::time::Instant>,
) -> Result<IngestObjectsOutput, StepError>
where
    T: TrailBucket,
    E: EventStore,
    C: ControlStore + IngestLedger,
    A: AlertStore,
    O: ObjectStore,
{
    let out = ingest_batch(&batch, deps, now, deadline).await?;
    let body = serde_json::to_vec(&out).map_err(|e| StepError::config(e.to_string()))?;
    let key = result_key(&batch.run_id, batch.batch);
    retried("writing the batch's result", || {
        deps.objects
            .put_bytes(&key, body.clone(), "application/json")
    })
    .await?;
    if !out.failed.is_empty() {
        let keys: Vec<String> = out
            .failed
            .iter()
            .map(|f| format!("{} ({})", f.key, f.error))
            .collect();
        return Err(StepError {
            error_type: "ObjectsFailed",
            message: format!(
                "{} of {} objects of batch {} were not ingested: {}",
                out.failed.len(),
                out.objects,
                out.batch,
                keys.join("; ")
            ),
        });
    }
    Ok(out)
}

/// Ingests the objects of a batch (see the module docs); objects not ingested are listed in
/// the answer's `failed`. `deadline` is when the invocation must answer: objects it cannot
/// start in time are reported as failed, for the retry.
pub async fn ingest_batch<T, E, C, A, O>(
    batch: &IngestBatch,
    deps: &IngestDeps<'_, T, E, C, A, O>,
    now: DateTime<Utc>,
    deadline: Option<tokio::time::Instant>,
) -> Result<IngestObjectsOutput, StepError>
where
    T: TrailBucket,
    E: EventStore,
    C: ControlStore + IngestLedger,
    A: AlertStore,
    O: ObjectStore,
{
    let clock = StepClock::start(now);
    let started = std::time::Instant::now();
    let mut out = IngestObjectsOutput {
        run_id: batch.run_id.clone(),
        batch: batch.batch,
        objects: batch.objects.len() as u64,
        ..Default::default()
    };
    for object in &batch.objects {
        if deadline.is_some_and(|d| tokio::time::Instant::now() + crate::steps::DEADLINE_MARGIN > d)
        {
            out.failed.push(FailedObject {
                key: object.key.clone(),
                error: "not reached before the Lambda deadline".into(),
            });
            continue;
        }
        let id = format!("{}/{}", batch.bucket, object.key);
        if !batch.force
            && retried("reading the ingested mark", || {
                deps.control.is_ingested(&id)
            })
            .await?
        {
            out.counts.already_ingested += 1;
            continue;
        }
        match one_object(batch, &object.key, deps, &clock, &mut out).await? {
            Ok(items) => {
                retried("marking the object ingested", || {
                    deps.control.mark_ingested(&id, items, clock.now())
                })
                .await?;
                if let Some(key) = LogObjectKey::parse(&object.key) {
                    retried("moving the trail checkpoint", || {
                        deps.control.advance_trail_checkpoint(
                            &batch.bucket,
                            &key.account,
                            &key.region,
                            key.written,
                        )
                    })
                    .await?;
                }
                out.counts.ingested += 1;
            }
            Err(error) => {
                tracing::error!(bucket = %batch.bucket, key = %object.key, %error,
                    "a log object was not ingested; the batch's other objects were");
                out.failed.push(FailedObject {
                    key: object.key.clone(),
                    error,
                });
            }
        }
    }
    out.counts.busy_ms = started.elapsed().as_millis() as u64;
    tracing::info!(run = %out.run_id, batch = out.batch, objects = out.objects, ingested = out.counts.ingested,
        already = out.counts.already_ingested, stored = out.counts.stored, alerts = out.counts.alerts_queued,
        failed = out.failed.len(), "batch done");
    Ok(out)
}

/// Reads, stores and detects on one object. The outer error is a write that failed after its
/// retries (the invocation fails); the inner one is this object's problem (reported, the
/// batch goes on). Returns the object's item count.
async fn one_object<T, E, C, A, O>(
    batch: &IngestBatch,
    key: &str,
    deps: &IngestDeps<'_, T, E, C, A, O>,
    clock: &StepClock,
    out: &mut IngestObjectsOutput,
) -> Result<Result<u64, String>, StepError>
where
    T: TrailBucket,
    E: EventStore,
    C: ControlStore + IngestLedger,
    A: AlertStore,
    O: ObjectStore,
{
    let bytes =
        match retry_store(&format!("reading {key}"), ATTEMPTS, || deps.trail.read(key)).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(Err("the object no longer exists".into())),
            Err(e) => return Ok(Err(format!("cannot read it: {e}"))),
        };
    let mut found = match object_events(&bytes, deps.settings) {
        Ok(found) => found,
        Err(e) => return Ok(Err(format!("not a CloudTrail log object: {e}"))),
    };
    out.counts.outside_range += found.keep_between(batch.start, batch.end) as u64;
    out.counts.records += found.records as u64;
    out.counts.not_collected += found.not_collected as u64;
    out.counts.filtered += found.filtered as u64;
    out.counts.unreadable += found.rejected.len() as u64;
    for (position, reason) in &found.rejected {
        tracing::warn!(%key, position, %reason, "an unreadable record was left out; the object's others were kept");
    }
    let items = found.items;
    if items.is_empty() {
        return Ok(Ok(0));
    }
    let count = items.len() as u64;
    let stored = store(items, &bytes, key, deps, out).await?;
    out.counts.write_units += stored
        .iter()
        .map(|i| i.dynamodb_size().div_ceil(1024) as u64)
        .sum::<u64>();
    let dates: BTreeSet<NaiveDate> = stored
        .iter()
        .filter_map(|i| NaiveDate::parse_from_str(&i.event_date, "%Y-%m-%d").ok())
        .collect();
    let dates: Vec<NaiveDate> = dates.into_iter().collect();
    if !dates.is_empty() {
        retried("marking dates dirty", || deps.control.mark_dirty(&dates)).await?;
    }
    let region = LogObjectKey::parse(key)
        .map(|k| k.region)
        .unwrap_or_default();
    let detector = Detector {
        settings: deps.settings,
        events: deps.events,
        control: deps.control,
        alerts: deps.alerts,
        sigma: deps.sigma,
        clock: *clock,
        region: &region,
    };
    let mut counts = Counts::default();
    let refs: Vec<&NormalizedEvent> = stored.iter().collect();
    let failed = |e: crate::steps::detect::DetectError| StepError::aws(e.0);
    detector
        .queue_alerts(&refs, &mut counts)
        .await
        .map_err(failed)?;
    detector
        .count_login_failures(&refs, &mut counts)
        .await
        .map_err(failed)?;
    out.counts.alerts_queued += counts.alerts_queued;
    Ok(Ok(count))
}

/// Writes an object's items: the full record of an item cut to fit goes to S3 first; an item
/// DynamoDB refuses is kept in S3 and written again in its minimal form. Returns the items
/// stored (whole or minimal).
async fn store<T, E, C, A, O>(
    mut items: Vec<NormalizedEvent>,
    bytes: &[u8],
    key: &str,
    deps: &IngestDeps<'_, T, E, C, A, O>,
    out: &mut IngestObjectsOutput,
) -> Result<Vec<NormalizedEvent>, StepError>
where
    E: EventStore,
    O: ObjectStore,
{
    for item in items.iter_mut().filter(|i| i.is_truncated()) {
        item.raw_s3_key = Some(keep_raw(item, bytes, key, deps, out).await?);
    }
    let outcome = retried("storing events", || deps.events.put_events(&items)).await?;
    out.counts.stored += outcome.written;
    if outcome.rejected.is_empty() {
        return Ok(items);
    }
    let refused: BTreeSet<usize> = outcome.rejected.iter().map(|(i, _)| *i).collect();
    let mut minimal = Vec::new();
    for (index, reason) in &outcome.rejected {
        let item = &items[*index];
        tracing::warn!(event_id = %item.event_id, %reason, "DynamoDB rejected an event; keeping its full record in S3 and a minimal item");
        let raw = match &item.raw_s3_key {
            Some(raw) => raw.clone(),
            None => keep_raw(item, bytes, key, deps, out).await?,
        };
        minimal.push(minimal_item(item, reason, &raw));
    }
    let second = retried("storing minimal events", || {
        deps.events.put_events(&minimal)
    })
    .await?;
    out.counts.stored += second.written;
    out.counts.rejected += second.rejected.len() as u64;
    let gone: BTreeSet<usize> = second.rejected.iter().map(|(i, _)| *i).collect();
    let mut stored: Vec<NormalizedEvent> = items
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !refused.contains(i))
        .map(|(_, item)| item)
        .collect();
    stored.extend(
        minimal
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !gone.contains(i))
            .map(|(_, item)| item),
    );
    Ok(stored)
}

/// Keeps an item's full record under `raw-events/` and returns its key.
async fn keep_raw<T, E, C, A, O: ObjectStore>(
    item: &NormalizedEvent,
    bytes: &[u8],
    key: &str,
    deps: &IngestDeps<'_, T, E, C, A, O>,
    out: &mut IngestObjectsOutput,
) -> Result<String, StepError> {
    let text = record_text(bytes, &item.event_id).ok_or_else(|| {
        StepError::invalid_input(format!(
            "{key}: the record of {} was not found again",
            item.event_id
        ))
    })?;
    let date = NaiveDate::parse_from_str(&item.event_date, "%Y-%m-%d").ok();
    let source = Source::reading(&item.event_source).unwrap_or(Source::Root);
    let raw = raw_key(
        date,
        &item.aws_region,
        source,
        Some(&item.event_id),
        text.as_bytes(),
    );
    retried("keeping a full record in S3", || {
        deps.objects
            .put_bytes(&raw, text.clone().into_bytes(), "application/json")
    })
    .await?;
    out.counts.raw_kept += 1;
    Ok(raw)
}

/// A store call retried a few times; still failing, it fails the invocation (`AwsError`).
async fn retried<T, F, Fut>(what: &str, call: F) -> Result<T, StepError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::ports::StoreError>>,
{
    retry_store(what, ATTEMPTS, call)
        .await
        .map_err(|e| aws(what, e))
}
