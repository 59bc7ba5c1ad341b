//! The S3 ingestion (docs/ingest.md): CloudTrail log objects of a trail bucket, every account
//! of an organisation trail and any time range the bucket holds, through the same
//! normalisation, tables, outbox and export as Collect.
//!
//! - [`plan`] (IngestRun, `action: plan`): lists the objects of a range (or takes the batches
//!   a previous run left undone) and writes the run's manifest of batches to the analytics
//!   bucket, which the state machine's Distributed Map reads.
//! - [`objects`] (IngestObjects): one batch of objects, stored exactly once in effect.
//! - [`notifications`] (IngestObjects on an SQS event): the continuous mode, the objects the
//!   trail bucket's "Object Created" events name.
//! - [`summary`] (IngestRun, `action: summarize`): totals the batches' results, and writes
//!   the batches left to do for a retry.

pub mod notifications;
pub mod objects;
pub mod plan;
pub mod summary;

use serde::{Deserialize, Serialize};

use crate::ports::StoreError;
use crate::StepError;

/// IngestRun's input: the state machine calls it to plan a run and to summarise it.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum IngestRunInput {
    Plan(plan::PlanInput),
    Summarize(summary::SummaryInput),
}

/// One log object that was not ingested, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedObject {
    pub key: String,
    pub error: String,
}

fn aws(what: &str, e: StoreError) -> StepError {
    StepError::aws(format!("{what}: {e}"))
}
