//! Summarising an S3 ingestion run (docs/ingest.md, "Failures and retries"): each batch of the
//! manifest either wrote a result with no failed object, or is left to do: the failed objects
//! of a batch that wrote a result, every object of a batch that wrote none (its child failed
//! before, or never ran because the Map stopped). The batches left to do are written as the
//! run's retry file, which `iamtrail ingest --retry RUN` (a new execution with `retry_of`)
//! reads; the run then fails with `IngestIncomplete`, naming the first keys. The totals are
//! written as the run's summary either way, for `iamtrail ingest` to print.

use futures::stream::{self, StreamExt, TryStreamExt};
use iamtrail_core::trail::{
    manifest_key, result_key, retry_key, summary_key, IngestBatch, PlannedObject,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::objects::{IngestObjectsOutput, ObjectCounts};
use super::plan::PlanOutput;
use super::{aws, FailedObject};
use crate::ports::{ObjectReader, ObjectStore};
use crate::StepError;

/// Results read at once.
const READ_CONCURRENCY: usize = 16;

/// Keys named in a failed run's error.
const KEYS_IN_ERROR: usize = 5;

/// IngestRun's summarising input: the run's state (`run`).
#[derive(Debug, Clone, Deserialize)]
pub struct SummaryInput {
    pub run: RunState,
}

/// The state machine's state when it summarises: the plan, and the Map's error if it failed.
#[derive(Debug, Clone, Deserialize)]
pub struct RunState {
    pub plan: PlanOutput,
    /// The Distributed Map's error, when it failed (its failed batches are found anyway).
    #[serde(default)]
    pub map_error: Option<Value>,
}

/// A run's totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IngestSummary {
    pub run_id: String,
    pub bucket: String,
    pub batches: u64,
    pub objects: u64,
    #[serde(flatten)]
    pub counts: ObjectCounts,
    /// Objects of batches that wrote a result and failed them.
    pub failed: Vec<FailedObject>,
    /// Batches that wrote no result (their child failed or never ran).
    pub batches_without_result: Vec<u32>,
    /// Objects left to do, and where they are listed for a retry.
    pub left_to_do: u64,
    pub retry_key: Option<String>,
}

/// Summarises a run (see the module docs).
pub async fn summarize<O>(input: SummaryInput, objects: &O) -> Result<IngestSummary, StepError>
where
    O: ObjectStore + ObjectReader,
{
    let plan = input.run.plan;
    let manifest = objects
        .get(&manifest_key(&plan.run_id))
        .await
        .map_err(|e| aws("reading the run's manifest", e))?
        .ok_or_else(|| StepError::invalid_input(format!("run {} has no manifest", plan.run_id)))?;
    let batches: Vec<IngestBatch> = serde_json::from_slice(&manifest)
        .map_err(|e| StepError::invalid_input(format!("the manifest of {}: {e}", plan.run_id)))?;
    let keys: Vec<String> = batches
        .iter()
        .map(|b| result_key(&b.run_id, b.batch))
        .collect();
    let results: Vec<Option<IngestObjectsOutput>> = stream::iter(keys)
        .map(|key| async move { read_result(objects, &key).await })
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    let mut summary = IngestSummary {
        run_id: plan.run_id.clone(),
        bucket: plan.bucket.clone(),
        batches: batches.len() as u64,
        objects: plan.objects,
        ..Default::default()
    };
    let mut retry: Vec<IngestBatch> = Vec::new();
    for (batch, result) in batches.iter().zip(results) {
        let Some(result) = result else {
            summary.batches_without_result.push(batch.batch);
            retry.push(batch.clone());
            continue;
        };
        summary.counts += result.counts;
        if !result.failed.is_empty() {
            let failed: Vec<&str> = result.failed.iter().map(|f| f.key.as_str()).collect();
            retry.push(IngestBatch {
                objects: batch
                    .objects
                    .iter()
                    .filter(|o| failed.contains(&o.key.as_str()))
                    .cloned()
                    .collect::<Vec<PlannedObject>>(),
                ..batch.clone()
            });
            summary.failed.extend(result.failed);
        }
    }
    summary.left_to_do = retry.iter().map(|b| b.objects.len() as u64).sum();
    if !retry.is_empty() {
        let key = retry_key(&plan.run_id);
        let body = serde_json::to_vec(&retry).map_err(|e| StepError::config(e.to_string()))?;
        objects
            .put_bytes(&key, body, "application/json")
            .await
            .map_err(|e| aws("writing the batches to retry", e))?;
        summary.retry_key = Some(key);
    }
    let body = serde_json::to_vec_pretty(&summary).map_err(|e| StepError::config(e.to_string()))?;
    objects
        .put_bytes(&summary_key(&plan.run_id), body, "application/json")
        .await
        .map_err(|e| aws("writing the run's summary", e))?;
    tracing::info!(run = %summary.run_id, objects = summary.objects, ingested = summary.counts.ingested,
        stored = summary.counts.stored, alerts = summary.counts.alerts_queued, left = summary.left_to_do, "ingestion summarised");
    if summary.left_to_do > 0 {
        return Err(incomplete(&summary, &retry));
    }
    Ok(summary)
}

/// The error of a run that left objects to do: how many, the first keys and reasons, and how
/// to retry.
fn incomplete(summary: &IngestSummary, retry: &[IngestBatch]) -> StepError {
    let mut named: Vec<String> = summary
        .failed
        .iter()
        .map(|f| format!("{} ({})", f.key, f.error))
        .collect();
    named.extend(
        retry
            .iter()
            .filter(|b| summary.batches_without_result.contains(&b.batch))
            .flat_map(|b| &b.objects)
            .map(|o| format!("{} (its batch did not finish)", o.key)),
    );
    let more = named.len().saturating_sub(KEYS_IN_ERROR);
    named.truncate(KEYS_IN_ERROR);
    StepError {
        error_type: "IngestIncomplete",
        message: format!(
            "{} of {} objects were not ingested: {}{}; the rest is stored. Retry them with `iamtrail ingest --retry {}` (they are listed in {})",
            summary.left_to_do,
            summary.objects,
            named.join("; "),
            if more > 0 { format!(" and {more} more") } else { String::new() },
            summary.run_id,
            summary.retry_key.as_deref().unwrap_or("the retry file"),
        ),
    }
}

async fn read_result<O: ObjectReader>(
    objects: &O,
    key: &str,
) -> Result<Option<IngestObjectsOutput>, StepError> {
    let Some(bytes) = objects
        .get(key)
        .await
        .map_err(|e| aws("reading a batch's result", e))?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StepError::invalid_input(format!("{key}: {e}")))
}
