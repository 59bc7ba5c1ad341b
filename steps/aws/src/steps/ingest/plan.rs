//! Planning an S3 ingestion run (docs/ingest.md, "Planning"): the trail bucket's account and
//! region folders are listed (an organisation trail's `o-...` folder included), filtered by
//! the requested accounts and regions, and each region's date folders covering the range
//! listed (whole years and months at once); the log objects written in the range are grouped
//! into batches and written as the run's manifest, a JSON array the Distributed Map reads one
//! batch per child execution. A retry takes the batches a previous run left undone instead.

use chrono::{DateTime, Duration, Utc};
use iamtrail_core::trail::{
    batches, date_folders, is_account_id, is_org_id, logs_root, manifest_key, region_folder,
    retry_key, written_in_range, BatchLimits, IngestBatch, LogObjectKey, PlannedObject,
};
use iamtrail_core::Settings;
use serde::{Deserialize, Serialize};

use super::aws;
use crate::ports::{IngestLedger, ObjectReader, ObjectStore, TrailBucket};
use crate::StepError;

/// How far back a sweep reads when a bucket has no checkpoint yet, and before its oldest one.
pub const SWEEP_LOOKBACK_HOURS: i64 = 24;

/// What to ingest (the execution's input).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestRequest {
    /// The trail bucket; `TRAIL_BUCKET` when absent.
    #[serde(default)]
    pub bucket: Option<String>,
    /// The trail's key prefix (the folder holding `AWSLogs/`); `TRAIL_PREFIX` when absent.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The range of event times; both are needed unless `sweep` or `retry_of` is given.
    #[serde(default)]
    pub start: Option<DateTime<Utc>>,
    #[serde(default)]
    pub end: Option<DateTime<Utc>>,
    /// Only these accounts (all when empty).
    #[serde(default)]
    pub accounts: Vec<String>,
    /// Only these regions (all when empty).
    #[serde(default)]
    pub regions: Vec<String>,
    /// Read objects already ingested again.
    #[serde(default)]
    pub force: bool,
    /// The scheduled sweep: from a day before the bucket's oldest checkpoint (or the last
    /// day) to now, for the objects the notifications missed.
    #[serde(default)]
    pub sweep: bool,
    /// Runs again the batches a previous run (its id) left undone.
    #[serde(default)]
    pub retry_of: Option<String>,
    /// Most objects in one batch (100 by default).
    #[serde(default)]
    pub batch_objects: Option<usize>,
}

/// IngestRun's planning input.
#[derive(Debug, Clone, Deserialize)]
pub struct PlanInput {
    /// The run's id: the execution's name.
    pub run_id: String,
    pub request: IngestRequest,
}

/// The planned run (the state machine reads the manifest from here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanOutput {
    pub run_id: String,
    pub bucket: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Where the manifest is (the analytics bucket).
    pub manifest_bucket: String,
    pub manifest_key: String,
    pub objects: u64,
    pub bytes: u64,
    pub batches: u64,
    /// Account and region folders read.
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
}

/// The adapters planning works with.
pub struct PlanDeps<'a, T, O, L> {
    pub settings: &'a Settings,
    pub trail: &'a T,
    /// The analytics bucket (manifests).
    pub objects: &'a O,
    pub ledger: &'a L,
}

/// Plans a run (see the module docs).
pub async fn plan<T, O, L>(
    input: PlanInput,
    deps: &PlanDeps<'_, T, O, L>,
    now: DateTime<Utc>,
) -> Result<PlanOutput, StepError>
where
    T: TrailBucket,
    O: ObjectStore + ObjectReader,
    L: IngestLedger,
{
    let manifest_bucket = deps.settings.analytics_bucket.clone().ok_or_else(|| {
        StepError::config("ANALYTICS_BUCKET is not set: the ingestion writes its manifests there")
    })?;
    let request = &input.request;
    let named = request
        .bucket
        .clone()
        .or_else(|| deps.settings.trail_bucket.clone())
        .filter(|b| !b.is_empty());
    let (bucket, batches, start, end, accounts, regions) = match &request.retry_of {
        Some(previous) => {
            let (batches, start, end, accounts, regions) = retry_batches(previous, deps).await?;
            let bucket = batches
                .first()
                .map(|b| b.bucket.clone())
                .or(named)
                .unwrap_or_default();
            (bucket, batches, start, end, accounts, regions)
        }
        None => {
            let bucket = named.ok_or_else(|| {
                StepError::invalid_input("no trail bucket: give \"bucket\" or set TRAIL_BUCKET")
            })?;
            let (start, end) = range(request, &bucket, deps, now).await?;
            let found = list_range(request, &bucket, start, end, deps).await?;
            let limits = BatchLimits {
                max_objects: request
                    .batch_objects
                    .unwrap_or(BatchLimits::default().max_objects),
                ..BatchLimits::default()
            };
            let batches = batches(found.objects, limits)
                .into_iter()
                .map(|objects| IngestBatch {
                    run_id: String::new(),
                    batch: 0,
                    bucket: bucket.clone(),
                    start,
                    end,
                    objects,
                    force: request.force,
                })
                .collect();
            (bucket, batches, start, end, found.accounts, found.regions)
        }
    };
    let batches: Vec<IngestBatch> = batches
        .into_iter()
        .enumerate()
        .map(|(i, b)| IngestBatch {
            run_id: input.run_id.clone(),
            batch: i as u32,
            ..b
        })
        .collect();
    let key = manifest_key(&input.run_id);
    let body = serde_json::to_vec(&batches).map_err(|e| StepError::config(e.to_string()))?;
    deps.objects
        .put_bytes(&key, body, "application/json")
        .await
        .map_err(|e| aws("writing the run's manifest", e))?;
    let objects: Vec<&PlannedObject> = batches.iter().flat_map(|b| &b.objects).collect();
    let out = PlanOutput {
        run_id: input.run_id,
        bucket,
        start,
        end,
        manifest_bucket,
        manifest_key: key,
        objects: objects.len() as u64,
        bytes: objects.iter().map(|o| o.size).sum(),
        batches: batches.len() as u64,
        accounts,
        regions,
    };
    tracing::info!(run = %out.run_id, bucket = %out.bucket, objects = out.objects, bytes = out.bytes,
        batches = out.batches, "ingestion planned");
    Ok(out)
}

/// The range of a request: given, or a sweep's.
async fn range<T, O, L: IngestLedger>(
    request: &IngestRequest,
    bucket: &str,
    deps: &PlanDeps<'_, T, O, L>,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), StepError> {
    if request.sweep {
        let oldest = deps
            .ledger
            .trail_checkpoints(bucket)
            .await
            .map_err(|e| aws("reading the trail checkpoints", e))?
            .into_iter()
            .map(|(_, _, t)| t)
            .min()
            .unwrap_or(now);
        let start = oldest.min(now) - Duration::hours(SWEEP_LOOKBACK_HOURS);
        return Ok((start, now));
    }
    match (request.start, request.end) {
        (Some(start), Some(end)) if start < end => Ok((start, end)),
        (Some(start), Some(end)) => Err(StepError::invalid_input(format!(
            "start ({start}) must be before end ({end})"
        ))),
        _ => Err(StepError::invalid_input(
            "give start and end (RFC 3339 times), or sweep, or retry_of",
        )),
    }
}

/// What a listing found.
struct Found {
    objects: Vec<PlannedObject>,
    accounts: Vec<String>,
    regions: Vec<String>,
}

/// Lists the log objects of a range (see the module docs).
async fn list_range<T: TrailBucket, O, L>(
    request: &IngestRequest,
    bucket: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    deps: &PlanDeps<'_, T, O, L>,
) -> Result<Found, StepError> {
    let prefix = request
        .prefix
        .clone()
        .or_else(|| deps.settings.trail_prefix.clone())
        .unwrap_or_default();
    let root = logs_root(&prefix);
    let mut account_folders = Vec::new();
    for folder in deps
        .trail
        .folders(&root)
        .await
        .map_err(|e| listing("accounts", bucket, e))?
    {
        let name = last_segment(&folder);
        if is_org_id(name) {
            let inner = deps
                .trail
                .folders(&folder)
                .await
                .map_err(|e| listing("accounts", bucket, e))?;
            account_folders.extend(inner.into_iter().filter(|f| is_account_id(last_segment(f))));
        } else if is_account_id(name) {
            account_folders.push(folder);
        }
    }
    if account_folders.is_empty() {
        return Err(StepError::invalid_input(format!(
            "no account folders under s3://{bucket}/{root}: is this a CloudTrail trail bucket, and is the prefix right?"
        )));
    }
    account_folders.retain(|f| wanted(&request.accounts, last_segment(f)));
    let (mut objects, mut accounts, mut regions) = (Vec::new(), Vec::new(), Vec::new());
    let folders = date_folders(start, end);
    for account_folder in &account_folders {
        let account = last_segment(account_folder).to_string();
        let region_folders = deps
            .trail
            .folders(&format!("{account_folder}CloudTrail/"))
            .await
            .map_err(|e| listing("regions", bucket, e))?;
        for region_path in region_folders {
            let region = last_segment(&region_path).to_string();
            if !wanted(&request.regions, &region) {
                continue;
            }
            let base = region_folder(account_folder, &region);
            for date in &folders {
                let listed = deps
                    .trail
                    .objects(&format!("{base}{date}"))
                    .await
                    .map_err(|e| listing("log objects", bucket, e))?;
                objects.extend(listed.into_iter().filter(|o| {
                    LogObjectKey::parse(&o.key).is_some_and(|k| {
                        k.account == account
                            && k.region == region
                            && written_in_range(k.written, start, end)
                    })
                }));
            }
            if !regions.contains(&region) {
                regions.push(region);
            }
        }
        accounts.push(account);
    }
    regions.sort();
    Ok(Found {
        objects,
        accounts,
        regions,
    })
}

/// The batches a previous run left undone (its retry file), with its range.
#[allow(clippy::type_complexity)]
async fn retry_batches<T, O: ObjectReader, L>(
    previous: &str,
    deps: &PlanDeps<'_, T, O, L>,
) -> Result<
    (
        Vec<IngestBatch>,
        DateTime<Utc>,
        DateTime<Utc>,
        Vec<String>,
        Vec<String>,
    ),
    StepError,
> {
    let key = retry_key(previous);
    let bytes = deps
        .objects
        .get(&key)
        .await
        .map_err(|e| aws("reading the batches to retry", e))?
        .ok_or_else(|| {
            StepError::invalid_input(format!(
                "run {previous} left nothing to retry (no {key} in the analytics bucket)"
            ))
        })?;
    let batches: Vec<IngestBatch> = serde_json::from_slice(&bytes)
        .map_err(|e| StepError::invalid_input(format!("{key}: {e}")))?;
    let start = batches.iter().map(|b| b.start).min().unwrap_or_default();
    let end = batches.iter().map(|b| b.end).max().unwrap_or_default();
    let mut accounts = Vec::new();
    let mut regions = Vec::new();
    for key in batches
        .iter()
        .flat_map(|b| &b.objects)
        .filter_map(|o| LogObjectKey::parse(&o.key))
    {
        if !accounts.contains(&key.account) {
            accounts.push(key.account);
        }
        if !regions.contains(&key.region) {
            regions.push(key.region);
        }
    }
    accounts.sort();
    regions.sort();
    Ok((batches, start, end, accounts, regions))
}

fn listing(what: &str, bucket: &str, e: crate::ports::StoreError) -> StepError {
    aws(&format!("listing {what} in {bucket}"), e)
}

/// The last folder name of a prefix ending in `/`.
fn last_segment(folder: &str) -> &str {
    folder
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("")
}

fn wanted(filter: &[String], value: &str) -> bool {
    filter.is_empty() || filter.iter().any(|f| f == value)
}
