//! One `LookupEvents` result → what Collect does with it: store it, filter it out, or give up
//! on it. SDK-free, so the decision is unit-tested and fuzzed here (see
//! `tests/fuzz_records.rs` and docs/testing.md) and the Collect step only maps the outcome to
//! its counters and a DynamoDB write.
//!
//! An item written to the events table must have usable keys, or DynamoDB rejects the whole
//! batch and the slice (and the checkpoint) never moves on. So no [`Outcome::Stored`] item ever
//! has an empty or over-long `event_id` (the table's sort key), an `event_date` that is not
//! `YYYY-MM-DD` (the partition key), or an empty `user_name`/`event_name` (index keys); its
//! size is kept under DynamoDB's 400 KB item limit by [`normalize`]'s guard.

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use crate::filter::FilterReason;
use crate::normalize::{normalize, normalize_unparsed, EventSummary, NormalizedEvent};
use crate::record::CloudTrailRecord;
use crate::source::Source;
use crate::Settings;

/// DynamoDB's size limit for a sort-key value (`event_id`), in bytes.
pub const MAX_SORT_KEY_BYTES: usize = 1024;
/// DynamoDB's size limit for a partition-key value (`user_name`, `event_name` in the indexes;
/// the normaliser cuts longer ones).
pub const MAX_PARTITION_KEY_BYTES: usize = crate::normalize::MAX_INDEX_KEY_BYTES;

/// The fields of one `LookupEvents` result, borrowed from whatever SDK type carries them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LookupFields<'a> {
    /// Summary `EventId`.
    pub event_id: Option<&'a str>,
    /// Summary `EventName`.
    pub event_name: Option<&'a str>,
    /// Summary `EventSource`.
    pub event_source: Option<&'a str>,
    /// Summary `EventTime`.
    pub event_time: Option<DateTime<Utc>>,
    /// Summary `Username`.
    pub username: Option<&'a str>,
    /// The full record, `CloudTrailEvent`.
    pub cloudtrail_event: Option<&'a str>,
}

/// What to do with one `LookupEvents` result.
// One outcome per event, whose item moves straight into the batch: boxing it buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Store this item: the normalised record, or, when the record cannot be read, an item
    /// kept from the summary fields with `parse_error` (and the raw text) set.
    Stored(NormalizedEvent),
    /// Noise, by the configured filters.
    Filtered(FilterReason),
    /// Nothing to key an item by: the record cannot be read and the summary has no usable
    /// event id or time. The reason, for the log.
    Unusable(String),
}

/// Whether `id` can be the events table's sort key: not blank, at most 1024 bytes.
pub fn is_valid_event_id(id: &str) -> bool {
    !id.trim().is_empty() && id.len() <= MAX_SORT_KEY_BYTES
}

/// Whether `date` is a real `YYYY-MM-DD` date (the events table's partition key).
pub fn is_valid_event_date(date: &str) -> bool {
    let b = date.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok()
}

/// Whether a time can key an item: its UTC year has four digits (0000–9999), so its
/// `event_date` is `YYYY-MM-DD` and its `event_time` sorts as text.
pub fn is_usable_time(t: DateTime<Utc>) -> bool {
    (0..=9999).contains(&t.year())
}

/// Why an item cannot be written, if it cannot: an empty or over-long key attribute.
pub fn key_problem(event: &NormalizedEvent) -> Option<String> {
    if !is_valid_event_id(&event.event_id) {
        return Some(format!(
            "event_id of {} bytes is not a usable sort key",
            event.event_id.len()
        ));
    }
    if !is_valid_event_date(&event.event_date) {
        return Some(format!(
            "event_date {:?} is not YYYY-MM-DD",
            event.event_date
        ));
    }
    for (name, value, max) in [
        ("event_time", &event.event_time, MAX_SORT_KEY_BYTES),
        ("user_name", &event.user_name, MAX_PARTITION_KEY_BYTES),
        ("event_name", &event.event_name, MAX_PARTITION_KEY_BYTES),
    ] {
        if value.is_empty() || value.len() > max {
            return Some(format!(
                "{name} of {} bytes is not a usable index key",
                value.len()
            ));
        }
    }
    None
}

fn non_blank(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.trim().is_empty())
}

/// Decides what Collect does with one `LookupEvents` result read in `region` for `source`:
///
/// 1. the record (`CloudTrailEvent`) is parsed; a readable record is filtered
///    ([`Outcome::Filtered`]) or normalised ([`Outcome::Stored`]);
/// 2. a record that cannot be read (no `CloudTrailEvent`, not JSON, a required field missing
///    or empty, an `eventID` too long to be a key) is kept from the summary fields with
///    `parse_error` and the raw text ([`normalize_unparsed`]), keyed by the summary event id
///    and time;
/// 3. without a usable summary id (not blank, at most 1024 bytes) or time (a four-digit year)
///    there is nothing to key it by: [`Outcome::Unusable`].
pub fn lookup_item(
    fields: &LookupFields,
    region: &str,
    source: Source,
    settings: &Settings,
) -> Outcome {
    let parsed = match fields.cloudtrail_event {
        Some(text) => match CloudTrailRecord::from_lookup_event_json(text) {
            // The parser rejects a blank eventID; an over-long one cannot key an item either.
            Ok(record) if !is_valid_event_id(&record.event_id) => Err(format!(
                "record eventID of {} bytes is longer than DynamoDB's {MAX_SORT_KEY_BYTES}-byte sort-key limit",
                record.event_id.len()
            )),
            Ok(record) => Ok(record),
            Err(e) => Err(e.to_string()),
        },
        None => Err("LookupEvents returned no CloudTrailEvent".to_string()),
    };
    let error = match parsed {
        Ok(record) => return record_outcome(&record, settings),
        Err(error) => error,
    };
    let event_id = fields.event_id.filter(|id| is_valid_event_id(id));
    let event_time = fields.event_time.filter(|t| is_usable_time(*t));
    let (Some(event_id), Some(event_time)) = (event_id, event_time) else {
        return Outcome::Unusable(format!(
            "no usable event id or time in the LookupEvents summary (id {}, time {}); record: {error}",
            describe_id(fields.event_id),
            fields.event_time.map_or("missing".to_string(), |t| t.to_rfc3339()),
        ));
    };
    let summary = EventSummary {
        event_id: event_id.to_string(),
        event_time,
        event_name: non_blank(fields.event_name)
            .unwrap_or("unknown")
            .to_string(),
        event_source: fields
            .event_source
            .or(source.event_source())
            .unwrap_or("unknown")
            .to_string(),
        username: fields.username.map(String::from),
    };
    let event = normalize_unparsed(
        &summary,
        region,
        fields.cloudtrail_event,
        &error,
        settings.normalize,
    );
    // Unreachable by construction (the parser and the summary checks above keep keys usable);
    // kept so that no code path can hand DynamoDB an item it would reject.
    keyed(event)
}

/// What to do with a readable record, wherever it was read (LookupEvents, EventBridge, a trail
/// object): filter it, or normalise it into an item with usable keys.
pub fn record_outcome(record: &CloudTrailRecord, settings: &Settings) -> Outcome {
    if let Some(reason) = settings.filter.classify(record) {
        return Outcome::Filtered(reason);
    }
    keyed(normalize(record, settings.normalize))
}

/// `Stored` when the item can be written, else `Unusable` with why.
fn keyed(event: NormalizedEvent) -> Outcome {
    match key_problem(&event) {
        Some(problem) => Outcome::Unusable(problem),
        None => Outcome::Stored(event),
    }
}

fn describe_id(id: Option<&str>) -> String {
    match id {
        None => "missing".to_string(),
        Some(id) if id.trim().is_empty() => "blank".to_string(),
        Some(id) if id.len() > MAX_SORT_KEY_BYTES => format!("{} bytes", id.len()),
        Some(id) => format!("{id:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::DYNAMODB_MAX_ITEM_BYTES;
    use crate::record::parse_time;
    use serde_json::{json, Value};

    fn settings() -> Settings {
        Settings::from_lookup(|_| None).unwrap()
    }

    fn record() -> Value {
        json!({"eventID": "rec-1", "eventTime": "2024-01-15T14:30:52Z",
               "eventSource": "iam.amazonaws.com", "eventName": "CreateUser",
               "awsRegion": "us-east-1",
               "userIdentity": {"type": "IAMUser", "userName": "alice"},
               "requestParameters": {"userName": "bob"}})
    }

    fn summary_time() -> DateTime<Utc> {
        parse_time("2024-01-15T14:30:52Z").unwrap()
    }

    fn fields(text: Option<&str>) -> LookupFields<'_> {
        LookupFields {
            event_id: Some("sum-1"),
            event_name: Some("CreateUser"),
            event_source: Some("iam.amazonaws.com"),
            event_time: Some(summary_time()),
            username: Some("alice"),
            cloudtrail_event: text,
        }
    }

    fn stored(outcome: Outcome) -> NormalizedEvent {
        match outcome {
            Outcome::Stored(e) => e,
            other => panic!("expected Stored, got {other:?}"),
        }
    }

    #[test]
    fn readable_record_is_normalised() {
        let text = record().to_string();
        let e = stored(lookup_item(
            &fields(Some(&text)),
            "us-east-1",
            Source::Iam,
            &settings(),
        ));
        assert_eq!(e.event_id, "rec-1", "the record's id, not the summary's");
        assert_eq!(e.event_date, "2024-01-15");
        assert_eq!(e.user_name, "alice");
        assert_eq!(
            e.request_parameters.as_deref(),
            Some(r#"{"userName":"bob"}"#)
        );
        assert_eq!(e.parse_error, None);
        assert_eq!(e.raw_record, None);
    }

    #[test]
    fn aws_service_record_is_filtered() {
        let mut v = record();
        v["userIdentity"] = json!({"type": "AWSService", "invokedBy": "ec2.amazonaws.com"});
        let text = v.to_string();
        assert_eq!(
            lookup_item(&fields(Some(&text)), "us-east-1", Source::Iam, &settings()),
            Outcome::Filtered(FilterReason::AwsService)
        );
    }

    #[test]
    fn unreadable_record_is_kept_from_the_summary() {
        let e = stored(lookup_item(
            &fields(Some("{not json")),
            "eu-west-1",
            Source::Iam,
            &settings(),
        ));
        assert_eq!(e.event_id, "sum-1");
        assert_eq!(e.event_date, "2024-01-15");
        assert_eq!(e.aws_region, "eu-west-1");
        assert_eq!(e.raw_record.as_deref(), Some("{not json"));
        assert!(e.parse_error.as_deref().unwrap().contains("not valid JSON"));
        // No CloudTrailEvent at all: the same, without raw text.
        let e = stored(lookup_item(
            &fields(None),
            "eu-west-1",
            Source::Sts,
            &settings(),
        ));
        assert_eq!(e.raw_record, None);
        assert!(e.parse_error.unwrap().contains("no CloudTrailEvent"));
    }

    #[test]
    fn blank_record_event_id_falls_back_to_the_summary_id() {
        for id in [json!(""), json!("   "), json!(null)] {
            let mut v = record();
            v["eventID"] = id;
            let text = v.to_string();
            let e = stored(lookup_item(
                &fields(Some(&text)),
                "us-east-1",
                Source::Iam,
                &settings(),
            ));
            assert_eq!(e.event_id, "sum-1");
            assert!(e.parse_error.unwrap().contains("eventID"));
        }
    }

    #[test]
    fn over_long_record_event_id_falls_back_to_the_summary_id() {
        let mut v = record();
        v["eventID"] = json!("x".repeat(MAX_SORT_KEY_BYTES + 1));
        let text = v.to_string();
        let e = stored(lookup_item(
            &fields(Some(&text)),
            "us-east-1",
            Source::Iam,
            &settings(),
        ));
        assert_eq!(e.event_id, "sum-1");
        assert!(e.parse_error.unwrap().contains("sort-key limit"));
        // Exactly 1024 bytes is still a key.
        v["eventID"] = json!("y".repeat(MAX_SORT_KEY_BYTES));
        let text = v.to_string();
        let e = stored(lookup_item(
            &fields(Some(&text)),
            "us-east-1",
            Source::Iam,
            &settings(),
        ));
        assert_eq!(e.event_id.len(), MAX_SORT_KEY_BYTES);
        assert_eq!(e.parse_error, None);
    }

    #[test]
    fn no_usable_summary_id_or_time_is_unusable() {
        let broken = Some("{");
        let cases = [
            LookupFields {
                event_id: None,
                ..fields(broken)
            },
            LookupFields {
                event_id: Some(""),
                ..fields(broken)
            },
            LookupFields {
                event_id: Some(" \t"),
                ..fields(broken)
            },
            LookupFields {
                event_time: None,
                ..fields(broken)
            },
            LookupFields {
                event_time: Some(
                    DateTime::from_timestamp(253_402_300_800, 0).unwrap(), // 10000-01-01
                ),
                ..fields(broken)
            },
            LookupFields {
                event_time: Some(DateTime::from_timestamp(-62_167_219_201, 0).unwrap()), // year -1
                ..fields(broken)
            },
        ];
        for f in cases {
            match lookup_item(&f, "us-east-1", Source::Iam, &settings()) {
                Outcome::Unusable(reason) => assert!(reason.contains("summary"), "{reason}"),
                other => panic!("{f:?}: expected Unusable, got {other:?}"),
            }
        }
        // An over-long summary id cannot key the item either.
        let long = "z".repeat(MAX_SORT_KEY_BYTES + 1);
        let f = LookupFields {
            event_id: Some(&long),
            ..fields(broken)
        };
        assert!(matches!(
            lookup_item(&f, "us-east-1", Source::Iam, &settings()),
            Outcome::Unusable(_)
        ));
        // A readable record needs no summary.
        let text = record().to_string();
        let bare = LookupFields {
            cloudtrail_event: Some(&text),
            ..LookupFields::default()
        };
        assert_eq!(
            stored(lookup_item(&bare, "us-east-1", Source::Iam, &settings())).event_id,
            "rec-1"
        );
    }

    #[test]
    fn blank_or_missing_summary_fields_get_defaults() {
        // event_name and user_name are index keys: blank ones become "unknown".
        let f = LookupFields {
            event_name: Some(" "),
            event_source: None,
            username: Some(""),
            ..fields(None)
        };
        let e = stored(lookup_item(&f, "us-east-1", Source::Sts, &settings()));
        assert_eq!(e.event_name, "unknown");
        assert_eq!(e.event_source, "sts.amazonaws.com");
        assert_eq!(e.event_type, "sts");
        assert_eq!(e.user_name, "unknown");
        assert_eq!(key_problem(&e), None);
    }

    #[test]
    fn record_time_outside_four_digit_years_falls_back_to_the_summary() {
        // 9999-12-31T23:30Z-01:00 is 10000-01-01 in UTC: no YYYY-MM-DD for it.
        let mut v = record();
        v["eventTime"] = json!("9999-12-31T23:30:00-01:00");
        let text = v.to_string();
        let e = stored(lookup_item(
            &fields(Some(&text)),
            "us-east-1",
            Source::Iam,
            &settings(),
        ));
        assert_eq!(e.event_date, "2024-01-15");
        assert!(e.parse_error.unwrap().contains("eventTime"));
    }

    #[test]
    fn huge_unreadable_record_fits_the_item_limit() {
        let huge = format!("{{\"eventID\": \"{}", "x".repeat(900 * 1024));
        let e = stored(lookup_item(
            &fields(Some(&huge)),
            "us-east-1",
            Source::Iam,
            &settings(),
        ));
        assert!(e.dynamodb_size() <= DYNAMODB_MAX_ITEM_BYTES);
        assert_eq!(e.truncated_fields, vec!["raw_record".to_string()]);
    }

    #[test]
    fn key_and_date_checks() {
        assert!(is_valid_event_date("2024-02-29"));
        assert!(is_valid_event_date("0000-01-01"));
        for bad in [
            "",
            "2024-2-29",
            "2023-02-29",
            "+10000-01-01",
            "-0001-12-31",
            "2024-01-1x",
            "2024/01/15",
        ] {
            assert!(!is_valid_event_date(bad), "{bad}");
        }
        assert!(is_valid_event_id("a"));
        assert!(!is_valid_event_id(""));
        assert!(!is_valid_event_id("  "));
    }
}
