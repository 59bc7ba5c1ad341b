//! Continuous ingestion (docs/ingest.md, "Continuous mode"): the trail bucket's "Object
//! Created" events (EventBridge, or S3 event notifications) reach IngestObjects through an SQS
//! queue, a few messages per invocation. Each message's log objects are ingested as a batch of
//! the Distributed Map would be (marked, checkpointed, stored once in effect); a message whose
//! object was not ingested is answered as a batch item failure, so SQS delivers it again and,
//! after its attempts, moves it to the dead-letter queue; the scheduled sweep reads anything a
//! notification never brought.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use iamtrail_core::trail::{IngestBatch, LogObjectKey, PlannedObject};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::objects::{ingest_batch, IngestDeps, IngestObjectsOutput};
use crate::ports::{AlertStore, ControlStore, EventStore, IngestLedger, ObjectStore, TrailBucket};
use crate::StepError;

/// The run id the continuous mode's batches carry in their logs.
pub const CONTINUOUS_RUN: &str = "continuous";

/// The SQS event Lambda receives.
#[derive(Debug, Clone, Deserialize)]
pub struct SqsEvent {
    #[serde(rename = "Records")]
    pub records: Vec<SqsMessage>,
}

/// One SQS message.
#[derive(Debug, Clone, Deserialize)]
pub struct SqsMessage {
    #[serde(rename = "messageId")]
    pub message_id: String,
    pub body: String,
}

/// The answer Lambda's SQS event source mapping reads (with `ReportBatchItemFailures`): the
/// messages to deliver again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SqsBatchResponse {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<BatchItemFailure>,
    /// What the invocation did (not read by Lambda; logged and kept for the tests).
    #[serde(default)]
    pub ingested: IngestObjectsOutput,
    /// Objects named by the messages that are not CloudTrail log objects (digests, other
    /// files), left alone.
    #[serde(default)]
    pub ignored: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

/// Whether a payload is an SQS event (rather than a batch of the Distributed Map).
pub fn is_sqs_event(payload: &Value) -> bool {
    payload
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(|r| r.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs")
}

/// The objects (bucket, key, size) one message names: an EventBridge "Object Created" event
/// (its key as S3 wrote it) or an S3 event notification (its keys URL-encoded, `+` for a
/// space). A body that is neither is an error naming the message.
pub fn objects_of(body: &str) -> Result<Vec<(String, PlannedObject)>, String> {
    let doc: Value =
        serde_json::from_str(body).map_err(|e| format!("the message is not JSON: {e}"))?;
    let text = |v: &Value, path: &[&str]| -> Option<String> {
        path.iter()
            .try_fold(v, |v, k| v.get(*k))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let size = |v: &Value, path: &[&str]| -> u64 {
        path.iter()
            .try_fold(v, |v, k| v.get(*k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    if let Some(detail) = doc.get("detail") {
        let bucket = text(detail, &["bucket", "name"]);
        let key = text(detail, &["object", "key"]);
        return match (bucket, key) {
            (Some(bucket), Some(key)) => Ok(vec![(
                bucket,
                PlannedObject {
                    key,
                    size: size(detail, &["object", "size"]),
                },
            )]),
            _ => {
                Err("an EventBridge event without detail.bucket.name and detail.object.key".into())
            }
        };
    }
    if let Some(records) = doc.get("Records").and_then(Value::as_array) {
        let mut out = Vec::new();
        for record in records {
            let (Some(bucket), Some(key)) = (
                text(record, &["s3", "bucket", "name"]),
                text(record, &["s3", "object", "key"]),
            ) else {
                return Err(
                    "an S3 event notification without s3.bucket.name and s3.object.key".into(),
                );
            };
            let key = percent_encoding::percent_decode_str(&key.replace('+', " "))
                .decode_utf8()
                .map_err(|e| format!("an S3 key that is not UTF-8 once decoded: {e}"))?
                .into_owned();
            out.push((
                bucket,
                PlannedObject {
                    key,
                    size: size(record, &["s3", "object", "size"]),
                },
            ));
        }
        return Ok(out);
    }
    if doc.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    Err("neither an EventBridge event nor an S3 event notification".into())
}

/// Ingests the objects an SQS event names (see the module docs): the objects of `deps`'s
/// trail bucket (`bucket`); objects of another bucket are left alone and logged (the queue is
/// fed by the trail bucket's events only).
pub async fn ingest_notifications<T, E, C, A, O>(
    event: SqsEvent,
    bucket: &str,
    deps: &IngestDeps<'_, T, E, C, A, O>,
    now: DateTime<Utc>,
    deadline: Option<tokio::time::Instant>,
) -> Result<SqsBatchResponse, StepError>
where
    T: TrailBucket,
    E: EventStore,
    C: ControlStore + IngestLedger,
    A: AlertStore,
    O: ObjectStore,
{
    let mut response = SqsBatchResponse::default();
    let mut objects: Vec<PlannedObject> = Vec::new();
    // Each object's messages (one object may be named twice).
    let mut messages_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for message in &event.records {
        let named = match objects_of(&message.body) {
            Ok(named) => named,
            Err(reason) => {
                // Delivering it again cannot help: it is dropped here, and logged.
                tracing::error!(message_id = %message.message_id, %reason, "a message that names no log object was dropped");
                response.ignored += 1;
                continue;
            }
        };
        for (from, object) in named {
            if from != bucket || LogObjectKey::parse(&object.key).is_none() {
                tracing::debug!(bucket = %from, key = %object.key, "not a log object of the trail bucket; left alone");
                response.ignored += 1;
                continue;
            }
            let ids = messages_of.entry(object.key.clone()).or_default();
            if ids.is_empty() {
                objects.push(object);
            }
            ids.push(message.message_id.clone());
        }
    }
    let batch = IngestBatch {
        run_id: CONTINUOUS_RUN.into(),
        batch: 0,
        bucket: bucket.to_string(),
        start: DateTime::<Utc>::MIN_UTC,
        end: DateTime::<Utc>::MAX_UTC,
        objects,
        force: false,
    };
    let out = ingest_batch(&batch, deps, now, deadline).await?;
    let mut failed: Vec<String> = out
        .failed
        .iter()
        .flat_map(|o| messages_of.get(&o.key).into_iter().flatten().cloned())
        .collect();
    response.ingested = out;
    failed.sort();
    failed.dedup();
    response.batch_item_failures = failed
        .into_iter()
        .map(|item_identifier| BatchItemFailure { item_identifier })
        .collect();
    Ok(response)
}
