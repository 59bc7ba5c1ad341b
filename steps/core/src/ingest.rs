//! One CloudTrail log object of a trail bucket → the items the tracker stores (the record path
//! of the S3 ingestion): the object is decompressed, its records found without building them,
//! each record's source decided from three fields (`targets::source_for`: the source the
//! scheduled run would read it with; records no source collects, most of a trail, are counted
//! and never built), and only the collected ones parsed in full, filtered by the same noise
//! filters and normalised by the same code as Collect's (`lookup::record_outcome`: an item
//! whose keys DynamoDB would refuse is reported, not kept). The account of each item is its
//! record's own, so one call serves every account of an organisation trail. No I/O: the step
//! reads the object and writes the items.

use chrono::{DateTime, Utc};

use crate::lookup::{record_outcome, Outcome};
use crate::normalize::NormalizedEvent;
use crate::record::{
    decompressed, delivery_records, parse_time, peeked_delivery_records, CloudTrailRecord,
    RecordError,
};
use crate::targets::{source_for, source_of};
use crate::Settings;

/// What one log object holds for the tracker.
#[derive(Debug, Default)]
pub struct ObjectEvents {
    /// Records in the object.
    pub records: usize,
    /// Records no collected source reads (other services, switched-off sources).
    pub not_collected: usize,
    /// Records the noise filters drop.
    pub filtered: usize,
    /// The items to store, in the object's order.
    pub items: Vec<NormalizedEvent>,
    /// Records that could not be read: their position in `Records` and why.
    pub rejected: Vec<(usize, String)>,
}

/// Reads one CloudTrail delivery object (`{"Records": [...]}`, gzip-compressed or not). A
/// collected record that cannot be read is reported in `rejected` and never hides the others
/// (a record whose source fields say no source collects it is counted as not collected without
/// a full parse); an object that is not a CloudTrail delivery file at all is an error.
pub fn object_events(bytes: &[u8], settings: &Settings) -> Result<ObjectEvents, RecordError> {
    let body = decompressed(bytes)?;
    let records = peeked_delivery_records(&body)?;
    let mut out = ObjectEvents {
        records: records.len(),
        ..Default::default()
    };
    for (i, delivered) in records.into_iter().enumerate() {
        let text = delivered.text;
        // The peek only spares the full parse of records no source collects; a record it keeps
        // (or cannot read) is decided again from the full record, which has the last word (a
        // field of an odd type can make the two differ: docs/ingest.md, "The record path").
        let peeked = delivered.peek.map(|peek| {
            source_for(
                &peek.event_source,
                peek.region(),
                peek.identity_type(),
                settings,
            )
            .is_some()
        });
        if peeked == Some(false) {
            out.not_collected += 1;
            continue;
        }
        let record = match CloudTrailRecord::from_lookup_event_json(text) {
            Ok(record) => record,
            Err(e) => {
                out.rejected.push((i, e.to_string()));
                continue;
            }
        };
        if source_of(&record, settings).is_none() {
            out.not_collected += 1;
            continue;
        }
        match record_outcome(&record, settings) {
            Outcome::Stored(item) => out.items.push(item),
            Outcome::Filtered(_) => out.filtered += 1,
            Outcome::Unusable(reason) => out.rejected.push((i, reason)),
        }
    }
    Ok(out)
}

impl ObjectEvents {
    /// Keeps only the items whose `eventTime` is in `[start, end)` (an ingestion's range: the
    /// neighbouring range holds the others); returns how many were left out.
    pub fn keep_between(&mut self, start: DateTime<Utc>, end: DateTime<Utc>) -> usize {
        let before = self.items.len();
        self.items
            .retain(|item| parse_time(&item.event_time).is_some_and(|t| t >= start && t < end));
        before - self.items.len()
    }
}

/// The JSON text of the record with this `eventID` in a delivery object (gzip-compressed or
/// not): the full record of an item that had to be cut to fit, kept in S3 beside it. `None`
/// when no record has that id.
pub fn record_text(bytes: &[u8], event_id: &str) -> Option<String> {
    let body = decompressed(bytes).ok()?;
    let records = delivery_records(&body).ok()?;
    records.into_iter().map(|raw| raw.get()).find_map(|text| {
        let record = CloudTrailRecord::from_lookup_event_json(text).ok()?;
        (record.event_id == event_id).then(|| text.to_string())
    })
}
