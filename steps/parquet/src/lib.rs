//! Events to Parquet (the analytics export's writer): Arrow record batches built from normalised events, streamed into a
//! Parquet file in bounded row groups, so memory stays flat however large a day grows. The
//! schema is docs/parquet-schema.md.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use iamtrail_core::record::parse_time;
use iamtrail_core::NormalizedEvent;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// Rows per record batch.
pub const BATCH_ROWS: usize = 4096;
/// Rows per Parquet row group: bounds the writer's buffered memory.
pub const ROW_GROUP_ROWS: usize = 32 * 1024;

/// Column kinds of the export.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Time,
    Flag,
}

/// Every column, in the order of docs/parquet-schema.md, and whether it may be null.
const COLUMNS: [(&str, Kind, bool); 28] = [
    ("event_id", Kind::Text, false),
    ("event_time", Kind::Time, false),
    ("event_date", Kind::Text, false),
    ("event_name", Kind::Text, false),
    ("event_source", Kind::Text, false),
    ("event_type", Kind::Text, false),
    ("user_name", Kind::Text, false),
    ("user_identity_type", Kind::Text, true),
    ("user_arn", Kind::Text, true),
    ("principal_id", Kind::Text, true),
    ("account_id", Kind::Text, true),
    ("access_key_id", Kind::Text, true),
    ("session_issuer", Kind::Text, true),
    ("session_issuer_arn", Kind::Text, true),
    ("invoked_by", Kind::Text, true),
    ("mfa_authenticated", Kind::Flag, true),
    ("mfa_used", Kind::Flag, true),
    ("aws_region", Kind::Text, false),
    ("source_ip", Kind::Text, true),
    ("user_agent", Kind::Text, true),
    ("request_parameters", Kind::Text, true),
    ("response_elements", Kind::Text, true),
    ("additional_event_data", Kind::Text, true),
    ("error_code", Kind::Text, true),
    ("error_message", Kind::Text, true),
    ("read_only", Kind::Flag, true),
    ("recipient_account_id", Kind::Text, true),
    ("truncated", Kind::Flag, false),
];

/// The export's Arrow schema (docs/parquet-schema.md).
pub fn schema() -> SchemaRef {
    let fields: Vec<Field> = COLUMNS
        .iter()
        .map(|(name, kind, nullable)| {
            let dt = match kind {
                Kind::Text => DataType::Utf8,
                Kind::Time => DataType::Timestamp(TimeUnit::Millisecond, None),
                Kind::Flag => DataType::Boolean,
            };
            Field::new(*name, dt, *nullable)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// `snappy` (default) or `zstd`.
pub fn compression(name: &str) -> Result<Compression, String> {
    match name.trim().to_ascii_lowercase().as_str() {
        "" | "snappy" => Ok(Compression::SNAPPY),
        "zstd" => Ok(Compression::ZSTD(
            ZstdLevel::try_new(3).map_err(|e| e.to_string())?,
        )),
        other => Err(format!(
            "EXPORT_COMPRESSION={other:?}: expected snappy or zstd"
        )),
    }
}

fn text_of<'a>(e: &'a NormalizedEvent, name: &str) -> Option<&'a str> {
    let v: &Option<String> = match name {
        "event_id" => return Some(&e.event_id),
        "event_date" => return Some(&e.event_date),
        "event_name" => return Some(&e.event_name),
        "event_source" => return Some(&e.event_source),
        "event_type" => return Some(&e.event_type),
        "user_name" => return Some(&e.user_name),
        "aws_region" => return Some(&e.aws_region),
        "user_identity_type" => &e.user_identity_type,
        "user_arn" => &e.user_arn,
        "principal_id" => &e.principal_id,
        "account_id" => &e.account_id,
        "access_key_id" => &e.access_key_id,
        "session_issuer" => &e.session_issuer,
        "session_issuer_arn" => &e.session_issuer_arn,
        "invoked_by" => &e.invoked_by,
        "source_ip" => &e.source_ip,
        "user_agent" => &e.user_agent,
        "request_parameters" => &e.request_parameters,
        "response_elements" => &e.response_elements,
        "additional_event_data" => &e.additional_event_data,
        "error_code" => &e.error_code,
        "error_message" => &e.error_message,
        "recipient_account_id" => &e.recipient_account_id,
        _ => return None,
    };
    v.as_deref()
}

fn flag_of(e: &NormalizedEvent, name: &str) -> Option<bool> {
    match name {
        "mfa_authenticated" => e.mfa_authenticated,
        "mfa_used" => e.mfa_used,
        "read_only" => e.read_only,
        "truncated" => Some(e.is_truncated()),
        _ => None,
    }
}

/// One record batch from events.
pub fn to_batch(events: &[NormalizedEvent]) -> Result<RecordBatch, String> {
    let schema = schema();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let name = field.name().as_str();
        let array: ArrayRef = match field.data_type() {
            DataType::Utf8 => {
                let mut b = StringBuilder::with_capacity(events.len(), events.len() * 16);
                for e in events {
                    b.append_option(text_of(e, name));
                }
                Arc::new(b.finish())
            }
            DataType::Boolean => {
                let mut b = BooleanBuilder::with_capacity(events.len());
                for e in events {
                    b.append_option(flag_of(e, name));
                }
                Arc::new(b.finish())
            }
            DataType::Timestamp(TimeUnit::Millisecond, None) => {
                let mut b = TimestampMillisecondBuilder::with_capacity(events.len());
                for e in events {
                    b.append_option(parse_time(&e.event_time).map(|t| t.timestamp_millis()));
                }
                Arc::new(b.finish())
            }
            other => return Err(format!("unexpected column type {other}")),
        };
        columns.push(array);
    }
    RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())
}

/// A Parquet file being written: events go in as they come, in batches.
pub struct ParquetSink {
    writer: ArrowWriter<File>,
    pending: Vec<NormalizedEvent>,
    rows: u64,
}

impl ParquetSink {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path, compression: Compression) -> Result<ParquetSink, String> {
        let file = File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        let props = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by("iamtrail".to_string())
            .build();
        let writer =
            ArrowWriter::try_new(file, schema(), Some(props)).map_err(|e| e.to_string())?;
        Ok(ParquetSink {
            writer,
            pending: Vec::with_capacity(BATCH_ROWS),
            rows: 0,
        })
    }

    /// Adds events; writes a batch whenever [`BATCH_ROWS`] are waiting.
    pub fn push(
        &mut self,
        events: impl IntoIterator<Item = NormalizedEvent>,
    ) -> Result<(), String> {
        for e in events {
            self.pending.push(e);
            if self.pending.len() >= BATCH_ROWS {
                self.flush_batch()?;
            }
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = to_batch(&self.pending)?;
        self.writer.write(&batch).map_err(|e| e.to_string())?;
        self.rows += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Rows written so far (and waiting).
    pub fn rows(&self) -> u64 {
        self.rows + self.pending.len() as u64
    }

    /// Finishes the file; returns the row count.
    pub fn finish(mut self) -> Result<u64, String> {
        self.flush_batch()?;
        self.writer.close().map_err(|e| e.to_string())?;
        Ok(self.rows)
    }
}
