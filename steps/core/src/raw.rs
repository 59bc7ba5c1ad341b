//! Full original records kept in the analytics bucket, under [`RAW_PREFIX`], for the events
//! the events table cannot hold whole: an item cut to fit DynamoDB's 400 KB limit, an item
//! DynamoDB rejected (stored instead in the [`minimal_item`] form), and a result with nothing
//! to key an item by. Collect writes them; see docs/collection.md ("Poison records").
//!
//! Keys are built from attacker-influenced text (event ids, region names from the payload), so
//! every path segment is reduced to `[A-Za-z0-9._-]`, bounded, and made unique with a hash of
//! the original text whenever anything had to change.

use chrono::NaiveDate;

use crate::normalize::NormalizedEvent;
use crate::source::Source;

/// Where full records are kept in the analytics bucket. The Collect role may PutObject under
/// this prefix only.
pub const RAW_PREFIX: &str = "raw-events/";

/// `parse_error` of an item stored in its minimal form, before DynamoDB's reason.
pub const REJECTED_PREFIX: &str = "rejected by DynamoDB: ";

/// Longest event id kept readable in a key (CloudTrail ids are 36-character UUIDs).
const MAX_ID_CHARS: usize = 100;
/// Longest region segment (region names are about 15 characters).
const MAX_REGION_CHARS: usize = 32;
/// Longest free-text field of a minimal item.
const MINIMAL_TEXT_BYTES: usize = 256;
/// Longest DynamoDB reason kept in a minimal item.
const MAX_REASON_BYTES: usize = 1000;

/// The key of an event's full record:
/// `raw-events/<event date or 'undated'>/<region>/<source>/<event id or a hash of the record>.json`.
///
/// The same event always gets the same key (a re-read rewrites the object in place); two
/// different ids never share one, even when both had to be sanitised.
pub fn raw_key(
    date: Option<NaiveDate>,
    region: &str,
    source: Source,
    event_id: Option<&str>,
    record: &[u8],
) -> String {
    let date = date.map_or_else(
        || "undated".to_string(),
        |d| d.format("%Y-%m-%d").to_string(),
    );
    let region = safe_segment(region, MAX_REGION_CHARS);
    let id = match event_id.filter(|id| !id.is_empty()) {
        Some(id) => safe_segment(id, MAX_ID_CHARS),
        None => format!("record-{:016x}", fnv1a64(record)),
    };
    format!("{RAW_PREFIX}{date}/{region}/{}/{id}.json", source.key())
}

/// `text` as one safe key segment: only `[A-Za-z0-9._-]`, at most `max` characters before the
/// hash, never starting with a dot. When anything had to change, `-<hash of the original>` is
/// appended, so that distinct inputs keep distinct segments.
pub fn safe_segment(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with('.') {
        out.replace_range(0..1, "_");
    }
    if out != text {
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(&format!("{:016x}", fnv1a64(text.as_bytes())));
    }
    out
}

/// FNV-1a, 64 bits: a stable hash (the same on every machine and Rust version) to keep keys
/// apart. Not a cryptographic hash.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The smallest item that still records an event DynamoDB rejected: its keys and time, its
/// name, source, user and region cut to a few hundred bytes, the reason in `parse_error`
/// (`rejected by DynamoDB: ...`) and the key of the full record in `raw_s3_key`. Everything
/// else is in that S3 object.
pub fn minimal_item(event: &NormalizedEvent, reason: &str, raw_key: &str) -> NormalizedEvent {
    let known = |text: &str| {
        let text = bounded(text, MINIMAL_TEXT_BYTES);
        if text.trim().is_empty() {
            "unknown".to_string()
        } else {
            text
        }
    };
    NormalizedEvent {
        event_date: event.event_date.clone(),
        event_id: event.event_id.clone(),
        event_time: event.event_time.clone(),
        event_name: known(&event.event_name),
        event_source: known(&event.event_source),
        event_type: bounded(&event.event_type, MINIMAL_TEXT_BYTES),
        user_name: known(&event.user_name),
        aws_region: known(&event.aws_region),
        ttl: event.ttl,
        original_size: Some(event.dynamodb_size()),
        parse_error: Some(format!(
            "{REJECTED_PREFIX}{}",
            bounded(reason, MAX_REASON_BYTES)
        )),
        raw_s3_key: Some(raw_key.to_string()),
        ..Default::default()
    }
}

/// At most `max` bytes of `text`, cut on a character boundary.
fn bounded(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date() -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(2024, 3, 1)
    }

    fn segments(key: &str) -> Vec<&str> {
        key.strip_prefix(RAW_PREFIX).unwrap().split('/').collect()
    }

    #[test]
    fn a_plain_event_keeps_its_id() {
        let id = "0b9e3c1a-4a8f-4f4e-9d6b-0123456789ab";
        assert_eq!(
            raw_key(date(), "us-east-1", Source::Sts, Some(id), b"{}"),
            format!("raw-events/2024-03-01/us-east-1/sts/{id}.json")
        );
        assert_eq!(
            raw_key(None, "eu-west-1", Source::Iam, Some("abc"), b"{}"),
            "raw-events/undated/eu-west-1/iam/abc.json"
        );
    }

    #[test]
    fn hostile_ids_are_sanitised_bounded_and_kept_apart() {
        for id in [
            "../../etc/passwd",
            "a/b",
            "a b",
            "..",
            ".",
            "é",
            "a\nb",
            "a%2Fb",
            "*",
        ] {
            let key = raw_key(date(), "us-east-1", Source::Sts, Some(id), b"{}");
            let parts = segments(&key);
            assert_eq!(parts.len(), 4, "{id:?}: {key}");
            let file = parts[3];
            assert!(
                file.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
                "{id:?}: {key}"
            );
            assert!(!file.starts_with('.'), "{id:?}: {key}");
            assert!(file.ends_with(".json"));
        }
        // Ids that sanitise alike still get different keys.
        let a = raw_key(date(), "r-1", Source::Sts, Some("a/b"), b"");
        let b = raw_key(date(), "r-1", Source::Sts, Some("a_b"), b"");
        let c = raw_key(date(), "r-1", Source::Sts, Some("a:b"), b"");
        assert!(a != b && b != c && a != c, "{a} {b} {c}");
        // Long ids are bounded, and distinct long ids stay distinct.
        let long = "x".repeat(5000);
        let longer = "x".repeat(5001);
        let k1 = raw_key(date(), "r-1", Source::Sts, Some(&long), b"");
        let k2 = raw_key(date(), "r-1", Source::Sts, Some(&longer), b"");
        assert!(k1.len() < 200 && k1 != k2, "{k1}");
        // A hostile region is one segment too.
        let key = raw_key(date(), "../us-east-1/x", Source::Sso, Some("id"), b"");
        assert_eq!(segments(&key).len(), 4, "{key}");
    }

    #[test]
    fn without_an_id_the_record_names_the_key() {
        let a = raw_key(None, "us-east-1", Source::Sts, None, b"{\"a\":1}");
        assert_eq!(
            a,
            raw_key(None, "us-east-1", Source::Sts, Some(""), b"{\"a\":1}")
        );
        assert_ne!(
            a,
            raw_key(None, "us-east-1", Source::Sts, None, b"{\"a\":2}")
        );
        assert!(
            a.starts_with("raw-events/undated/us-east-1/sts/record-"),
            "{a}"
        );
        // Stable across runs and machines.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn the_minimal_item_is_small_and_says_why() {
        let big = NormalizedEvent {
            event_date: "2024-03-01".into(),
            event_id: "id-1".into(),
            event_time: "2024-03-01T10:00:00Z".into(),
            event_name: "é".repeat(10_000),
            event_source: "sts.amazonaws.com".into(),
            event_type: "sts".into(),
            user_name: "".into(),
            aws_region: "us-east-1".into(),
            user_arn: Some("a".repeat(500_000)),
            ttl: Some(42),
            ..Default::default()
        };
        let m = minimal_item(
            &big,
            "Item size has exceeded the maximum allowed size",
            "k.json",
        );
        assert_eq!(
            (m.event_date.as_str(), m.event_id.as_str()),
            ("2024-03-01", "id-1")
        );
        assert!(m.event_name.len() <= MINIMAL_TEXT_BYTES && m.event_name.starts_with('é'));
        assert_eq!(m.user_name, "unknown", "index keys are never empty");
        assert_eq!(m.user_arn, None);
        assert_eq!(m.ttl, Some(42));
        assert_eq!(
            m.parse_error.as_deref(),
            Some("rejected by DynamoDB: Item size has exceeded the maximum allowed size")
        );
        assert_eq!(m.raw_s3_key.as_deref(), Some("k.json"));
        assert!(m.original_size.unwrap() > 500_000);
        assert!(m.dynamodb_size() < 2048, "{}", m.dynamodb_size());
    }
}
