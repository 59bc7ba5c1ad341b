//! The Export step: day partitions of the events table to Parquet on S3 (DESIGN §7).
//!
//! For each date: Query the events table by `event_date` page by page (never a Scan), stream
//! the events into Parquet files in a temporary directory (one per region with
//! `PARTITION_BY_REGION=true`), then replace the date's objects: the old files are deleted
//! before the new ones are uploaded, so Athena never sees a row twice (for a moment it may see
//! none of that day). Progress goes to the control table (`export#YYYY-MM-DD`, `export#latest`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use iamtrail_core::export::object_key;
use iamtrail_core::Settings;
use serde::{Deserialize, Serialize};

use crate::ports::{ControlStore, EventReader, ObjectStore};
use crate::StepError;
use iamtrail_parquet::{compression, ParquetSink};

/// Export's payload: the workflow passes its whole state, which carries `export_dates` (from
/// Aggregate on the scheduled path, or from ListTargets with mode `export`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExportInput {
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub export_dates: Vec<NaiveDate>,
}

/// One exported date.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DateExport {
    pub date: String,
    pub rows: u64,
    pub keys: Vec<String>,
}

/// What Export did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExportOutput {
    pub dates: Vec<String>,
    pub rows: u64,
    pub files: u64,
    pub exports: Vec<DateExport>,
}

/// Exports every date of the input.
pub async fn export<R, O, C>(
    input: ExportInput,
    reader: &R,
    objects: &O,
    control: &C,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<ExportOutput, StepError>
where
    R: EventReader,
    O: ObjectStore,
    C: ControlStore,
{
    let codec = compression(&settings.export_compression).map_err(StepError::config)?;
    let dates = input.export_dates.clone();
    let mut out = ExportOutput::default();
    for date in dates {
        let done = export_date(date, reader, objects, settings, codec, now).await?;
        control
            .record_export(date, done.rows, &done.keys, now)
            .await
            .map_err(StepError::aws)?;
        tracing::info!(date = %done.date, rows = done.rows, files = done.keys.len(), "exported");
        out.dates.push(done.date.clone());
        out.rows += done.rows;
        out.files += done.keys.len() as u64;
        out.exports.push(done);
    }
    Ok(out)
}

/// Removes the temporary files of one date's export, whatever happens.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn export_date<R: EventReader, O: ObjectStore>(
    date: NaiveDate,
    reader: &R,
    objects: &O,
    settings: &Settings,
    codec: parquet::basic::Compression,
    now: DateTime<Utc>,
) -> Result<DateExport, StepError> {
    let dir = TempDir(std::env::temp_dir().join(format!(
        "iamtrail-export-{date}-{}",
        now.timestamp_nanos_opt().unwrap_or(0)
    )));
    std::fs::create_dir_all(&dir.0)
        .map_err(|e| StepError::aws(format!("creating {}: {e}", dir.0.display())))?;
    let mut sinks: BTreeMap<Option<String>, (PathBuf, ParquetSink)> = BTreeMap::new();
    let mut start = None;
    loop {
        let page = reader
            .day_page(date, start.take())
            .await
            .map_err(StepError::aws)?;
        for event in page.events {
            let region = settings
                .partition_by_region
                .then(|| event.aws_region.clone());
            if !sinks.contains_key(&region) {
                let path = dir
                    .0
                    .join(format!("{}.parquet", region.as_deref().unwrap_or("all")));
                let sink = ParquetSink::create(&path, codec).map_err(StepError::aws)?;
                sinks.insert(region.clone(), (path, sink));
            }
            let (_, sink) = sinks.get_mut(&region).expect("inserted above");
            sink.push([event]).map_err(StepError::aws)?;
        }
        match page.next {
            Some(next) => start = Some(next),
            None => break,
        }
    }
    let mut files = Vec::new();
    let mut rows = 0;
    for (region, (path, sink)) in sinks {
        rows += sink.finish().map_err(StepError::aws)?;
        files.push((object_key(date, region.as_deref(), now), path));
    }
    let new_keys: Vec<String> = files.iter().map(|(k, _)| k.clone()).collect();
    for (key, path) in &files {
        objects.put_file(key, path, &[]).await.map_err(StepError::aws)?;
    }
    Ok(DateExport {
        date: date.format("%Y-%m-%d").to_string(),
        rows,
        keys: new_keys,
    })
}
