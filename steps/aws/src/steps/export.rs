//! The Export step: day partitions of the events table to Parquet on S3. See docs/export.md.
//!
//! For each date, oldest first, while the time budget allows starting another one:
//!
//! 1. read the date's dirty sequence number (before the table, so that an event stored while
//!    this export reads keeps the date dirty);
//! 2. Query the day's partition page by page (never a Scan, always ConsistentRead) and stream
//!    it into Parquet files in a temporary directory (one per region with
//!    `PARTITION_BY_REGION=true`);
//! 3. write each file to its one deterministic key with a single PUT or multipart upload: an
//!    atomic overwrite, never a delete. A file that would replace one with more rows (the
//!    table's items expired) is not written unless the input says `force`: the existing file is
//!    kept and reported in `kept`;
//! 4. record the export (`export#YYYY-MM-DD`, `export#latest`) and clear the dirty mark if its
//!    sequence number did not move.
//!
//! When the budget runs out, the step returns `more: true` with the dates left in
//! `export_dates`; the workflow invokes it again with that output (as `export`), and the counts
//! add up.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use iamtrail_core::export::{date_prefix, key_region, object_key};
use iamtrail_core::metrics::export_document;
use iamtrail_core::Settings;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::ports::{ControlStore, EventReader, ObjectStore, StoreError};
use crate::steps::stop_time;
use crate::StepError;
use iamtrail_parquet::{compression, ParquetSink};

/// A date still being read this close to the Lambda deadline is given up (its files could not
/// be uploaded in time); it stays due.
const DATE_ABORT_MARGIN: std::time::Duration = std::time::Duration::from_secs(30);

/// The user-metadata name of an export object's row count (`x-amz-meta-rows`).
pub const ROWS_METADATA: &str = "rows";

/// The user-metadata name of the run that wrote an export object (`x-amz-meta-exported-by`).
pub const EXPORTED_BY_METADATA: &str = "exported-by";

/// Export's payload. The workflow passes its whole state: `run_id`, `export_dates` (from
/// Aggregate on the scheduled path, or from ListTargets with mode `export`), `force` (mode
/// `export`), and, when it loops (`more: true`), the previous invocation's result under
/// `export` (where the state machine keeps it): its `export_dates` are the dates left and its
/// counts are carried into this one's. `done` is accepted in its place. Every field is optional
/// and every other field is ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExportInput {
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub export_dates: Vec<NaiveDate>,
    /// Replace files even with fewer rows.
    #[serde(default)]
    pub force: bool,
    /// Invocations of this run so far (also read from `export`).
    #[serde(default)]
    pub invocations: u32,
    /// The previous invocation's result, as the workflow stores it (`$.export`).
    #[serde(default)]
    pub export: Option<ExportOutput>,
    /// The same, under another name.
    #[serde(default)]
    pub done: Option<ExportOutput>,
}

/// One exported date.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DateExport {
    pub date: NaiveDate,
    /// The table's rows for the date (what this export read).
    pub rows: u64,
    /// Files written.
    pub files: u64,
    /// Existing files kept because the new one would have had fewer rows.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub kept: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// An existing file that was not replaced: the table now has fewer rows for it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeptFile {
    pub date: NaiveDate,
    pub key: String,
    /// Rows in the existing file (its `rows` metadata; absent when it has none).
    pub existing_rows: Option<u64>,
    /// Rows the table holds for it now.
    pub new_rows: u64,
    pub warning: String,
}

/// What Export did (totals over the run's invocations).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExportOutput {
    /// Dates exported.
    #[serde(default)]
    pub dates: Vec<NaiveDate>,
    /// Rows written to S3 (a kept file's rows are not counted).
    #[serde(default)]
    pub rows: u64,
    /// Files written.
    #[serde(default)]
    pub files: u64,
    #[serde(default)]
    pub exports: Vec<DateExport>,
    /// Existing files kept instead of being replaced with fewer rows.
    #[serde(default)]
    pub kept: Vec<KeptFile>,
    /// True when dates are left (in `export_dates`): invoke Export again with this output as
    /// `export`.
    #[serde(default)]
    pub more: bool,
    /// The dates left, when `more`.
    #[serde(default)]
    pub export_dates: Vec<NaiveDate>,
    /// Invocations of this run so far, this one included.
    #[serde(default)]
    pub invocations: u32,
    /// Things the operator should know (objects of another layout under a date, ...).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Dates that failed (they stay due).
    #[serde(default)]
    pub errors: Vec<String>,
}

/// How one date's export ended.
enum DateOutcome {
    Done(DateExport, Vec<KeptFile>, Vec<String>),
    /// The Lambda deadline came while the date was being read.
    OutOfTime,
}

/// Exports the input's dates, oldest first, until they are done or the time budget
/// (`EXPORT_TIME_BUDGET_SECONDS`, within the Lambda `deadline`) runs out. Writes the rows and
/// files of this invocation as metrics (docs/metrics.md).
// Three ports, the metrics sink, the settings and the invocation's clock and deadline: each is
// a separate dependency the tests swap, as with the other steps.
#[allow(clippy::too_many_arguments)]
pub async fn export<R, O, C>(
    input: ExportInput,
    reader: &R,
    objects: &O,
    control: &C,
    metrics: &Metrics,
    settings: &Settings,
    now: DateTime<Utc>,
    deadline: Option<Instant>,
) -> Result<ExportOutput, StepError>
where
    R: EventReader,
    O: ObjectStore,
    C: ControlStore,
{
    let codec = compression(&settings.export_compression).map_err(StepError::config)?;
    // A date is given up at `abort_at`, so none is started after it.
    let abort_at = deadline.map(|d| d.checked_sub(DATE_ABORT_MARGIN).unwrap_or(d));
    let stop_at = stop_time(settings.export_time_budget, deadline);
    let stop_at = abort_at.map_or(stop_at, |a| stop_at.min(a));
    let run_id = input.run_id.clone().unwrap_or_else(|| "unknown".into());
    let previous = input.export.clone().or_else(|| input.done.clone());
    // A loop continues with the dates its previous invocation left.
    let mut dates: Vec<NaiveDate> = match &previous {
        Some(p) => p.export_dates.clone(),
        None => input.export_dates.clone(),
    };
    let mut out = previous.unwrap_or_default();
    out.invocations = input.invocations.max(out.invocations) + 1;
    out.more = false;
    out.export_dates.clear();
    // The output carries totals over the loop: the metrics are this invocation's share.
    let (rows_before, files_before) = (out.rows, out.files);
    dates.sort();
    dates.dedup();
    let mut remaining = std::collections::VecDeque::from(dates);
    let (mut started_here, mut done_here) = (0usize, 0usize);
    while let Some(&date) = remaining.front() {
        if Instant::now() >= stop_at {
            tracing::info!(left = remaining.len(), "export stopped on its time budget");
            break;
        }
        started_here += 1;
        let job = DateJob {
            date,
            run_id: &run_id,
            force: input.force,
            settings,
            codec,
            now,
            abort_at,
        };
        match job.run(reader, objects, control).await {
            Ok(DateOutcome::Done(done, kept, warnings)) => {
                remaining.pop_front();
                done_here += 1;
                tracing::info!(%date, rows = done.rows, files = done.files, kept = done.kept, "exported");
                out.dates.push(date);
                out.rows += kept_rows_excluded(&done, &kept);
                out.files += done.files;
                out.exports.push(done);
                out.kept.extend(kept);
                out.warnings.extend(warnings);
            }
            Ok(DateOutcome::OutOfTime) if started_here == 1 => {
                // It had a whole invocation and did not fit: give it up for this run so that
                // it does not block the later dates. It stays dirty, so a later run tries it
                // again.
                remaining.pop_front();
                let message = format!(
                    "{date}: not exported, the day could not be read and written within one invocation; it stays due"
                );
                tracing::error!("{message}");
                if let Err(e) = control.mark_dirty(&[date]).await {
                    tracing::error!(%date, error = %e, "could not keep the date dirty");
                }
                out.errors.push(message);
            }
            Ok(DateOutcome::OutOfTime) => {
                tracing::info!(%date, "the Lambda deadline came while reading; the date is exported on the next invocation");
                break;
            }
            Err(e) if done_here > 0 => {
                // Keep what this invocation did; the next one starts with this date again.
                tracing::error!(%date, error = %e, "export of a date failed; stopping here");
                out.errors.push(format!("{date}: {e}"));
                break;
            }
            Err(e) => return Err(StepError::aws(e)),
        }
    }
    out.export_dates = remaining.into_iter().collect();
    out.more = !out.export_dates.is_empty();
    metrics.emit(&[export_document(
        out.rows - rows_before,
        out.files - files_before,
        now,
    )]);
    Ok(out)
}

/// The rows a date's export wrote (the kept files' new rows are not in S3).
fn kept_rows_excluded(done: &DateExport, kept: &[KeptFile]) -> u64 {
    done.rows - kept.iter().map(|k| k.new_rows).sum::<u64>()
}

/// Numbers the temporary directories of this process (two exports of one date may run at once,
/// e.g. in the local stack).
static NEXT_DIR: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Removes the temporary files of one date's export, whatever happens.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One date's export.
struct DateJob<'a> {
    date: NaiveDate,
    run_id: &'a str,
    force: bool,
    settings: &'a Settings,
    codec: parquet::basic::Compression,
    now: DateTime<Utc>,
    abort_at: Option<Instant>,
}

fn io_error(operation: &'static str) -> impl Fn(String) -> StoreError {
    move |message| StoreError { operation, message }
}

impl DateJob<'_> {
    async fn run<R: EventReader, O: ObjectStore, C: ControlStore>(
        &self,
        reader: &R,
        objects: &O,
        control: &C,
    ) -> Result<DateOutcome, StoreError> {
        let date = self.date;
        // (1) The dirty mark's sequence number, before the table is read.
        let seq = control
            .dirty_dates()
            .await?
            .get(&date)
            .copied()
            .unwrap_or(0);
        // (2) The day's events into Parquet files, one per region when partitioned.
        let dir = TempDir(std::env::temp_dir().join(format!(
            "iamtrail-export-{date}-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )));
        std::fs::create_dir_all(&dir.0).map_err(|e| StoreError {
            operation: "create export directory",
            message: format!("{}: {e}", dir.0.display()),
        })?;
        let mut sinks: BTreeMap<Option<String>, (PathBuf, ParquetSink)> = BTreeMap::new();
        let mut after = None;
        loop {
            if self.abort_at.is_some_and(|a| Instant::now() >= a) {
                return Ok(DateOutcome::OutOfTime);
            }
            let page = reader.day_page(date, after.take()).await?;
            for event in page.events {
                let region = self
                    .settings
                    .partition_by_region
                    .then(|| event.aws_region.clone());
                if !sinks.contains_key(&region) {
                    let path = dir
                        .0
                        .join(format!("{}.parquet", region.as_deref().unwrap_or("all")));
                    let sink = ParquetSink::create(&path, self.codec)
                        .map_err(io_error("write Parquet"))?;
                    sinks.insert(region.clone(), (path, sink));
                }
                let (_, sink) = sinks.get_mut(&region).expect("inserted above");
                sink.push([event]).map_err(io_error("write Parquet"))?;
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let mut files: BTreeMap<String, (PathBuf, u64)> = BTreeMap::new();
        let mut rows = 0;
        for (region, (path, sink)) in sinks {
            let n = sink.finish().map_err(io_error("write Parquet"))?;
            rows += n;
            files.insert(object_key(date, region.as_deref()), (path, n));
        }
        // (3) Every key of this layout under the date: the new files, and existing ones (a
        // region with no rows left must not silently keep or lose its file).
        let mut warnings = Vec::new();
        let mut keys: BTreeSet<String> = files.keys().cloned().collect();
        for key in objects.list(&date_prefix(date, None)).await? {
            match key_region(date, &key) {
                Some(region) if region.is_some() == self.settings.partition_by_region => {
                    keys.insert(key);
                }
                _ => {
                    let warning = format!(
                        "{date}: {key} is not this export's file (another layout, or PARTITION_BY_REGION changed); Athena reads it too, so delete it if it duplicates {}",
                        object_key(date, None)
                    );
                    tracing::warn!("{warning}");
                    warnings.push(warning);
                }
            }
        }
        let mut kept = Vec::new();
        let mut in_bucket = Vec::new();
        let (mut bucket_rows, mut written) = (0u64, 0u64);
        for key in keys {
            let (path, new_rows) = match files.remove(&key) {
                Some((path, n)) => (Some(path), n),
                None => (None, 0),
            };
            let existing = objects.head(&key).await?;
            if let Some(info) = &existing {
                let existing_rows = info
                    .metadata
                    .get(ROWS_METADATA)
                    .and_then(|v| v.parse::<u64>().ok());
                if path.is_none() && existing_rows == Some(0) {
                    // An empty file (a forced export) and still no rows: nothing to change.
                    in_bucket.push(key);
                    continue;
                }
                let fewer = existing_rows.is_none_or(|old| new_rows < old);
                if fewer && !self.force {
                    let warning = match existing_rows {
                        Some(old) => format!(
                            "{date}: kept the existing file {key} with {old} rows; the table now has {new_rows} (expired items?); use force to replace"
                        ),
                        None => format!(
                            "{date}: kept the existing file {key}: it has no rows metadata, so it may hold more than the {new_rows} rows the table has now; use force to replace"
                        ),
                    };
                    tracing::warn!("{warning}");
                    kept.push(KeptFile {
                        date,
                        key: key.clone(),
                        existing_rows,
                        new_rows,
                        warning,
                    });
                    bucket_rows += existing_rows.unwrap_or(0);
                    in_bucket.push(key);
                    continue;
                }
                if fewer {
                    tracing::warn!(%date, %key, ?existing_rows, new_rows, "force: replacing a file with fewer rows");
                }
            } else if path.is_none() {
                // Listed but gone by now: nothing to replace.
                continue;
            }
            // A forced replacement of a file whose rows are all gone is an empty file.
            let path = match path {
                Some(p) => p,
                None => {
                    let p = dir.0.join(format!("empty-{}.parquet", in_bucket.len()));
                    ParquetSink::create(&p, self.codec)
                        .and_then(|s| s.finish())
                        .map_err(io_error("write Parquet"))?;
                    p
                }
            };
            let metadata = [
                (ROWS_METADATA.to_string(), new_rows.to_string()),
                (EXPORTED_BY_METADATA.to_string(), self.run_id.to_string()),
            ];
            objects.put_file(&key, &path, &metadata).await?;
            written += 1;
            bucket_rows += new_rows;
            in_bucket.push(key);
        }
        // (4) The export's record, then the dirty mark (only if no event came meanwhile).
        control
            .record_export(date, bucket_rows, &in_bucket, self.now)
            .await?;
        if !control.clear_dirty(date, seq).await? {
            tracing::info!(%date, "events were stored for the date while it was exported: it stays dirty and is exported again");
        }
        let done = DateExport {
            date,
            rows,
            files: written,
            kept: kept.len() as u64,
        };
        Ok(DateOutcome::Done(done, kept, warnings))
    }
}
