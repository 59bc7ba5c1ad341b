//! The CloudTrail record model.
//!
//! Records reach us in two shapes: the S3 delivery format (`{"Records":[...]}` in `.json` or
//! `.json.gz` files) and the `CloudTrailEvent` string of a `LookupEvents` result. Both carry the
//! same record, so one lenient model serves both. Only `eventID`, `eventTime`, `eventSource` and
//! `eventName` are required; everything else is optional, and unknown identity types are kept
//! verbatim rather than rejected.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a record (or a whole log file) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("record has no {0}")]
    MissingField(&'static str),
    #[error("record field {field} is invalid: {value:?}")]
    InvalidField { field: &'static str, value: String },
    #[error("log file is not valid CloudTrail delivery JSON: {0}")]
    BadFile(String),
    #[error("cannot read log file: {0}")]
    Io(#[from] std::io::Error),
}

/// The `userIdentity` block. Every field is optional: service events carry only `invokedBy`,
/// cross-account events only `accountId`/`principalId`, and some records have no `type`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity {
    /// `Root`, `IAMUser`, `AssumedRole`, `FederatedUser`, `AWSService`, `AWSAccount`,
    /// `IdentityCenterUser`, `Directory`, `Unknown`, ... kept as a string so new types pass.
    #[serde(rename = "type")]
    pub identity_type: Option<String>,
    pub principal_id: Option<String>,
    pub arn: Option<String>,
    pub account_id: Option<String>,
    pub access_key_id: Option<String>,
    pub user_name: Option<String>,
    pub invoked_by: Option<String>,
    pub identity_provider: Option<String>,
    pub session_context: Option<SessionContext>,
    /// Identity Center identities (`onBehalfOf.userId`, ...).
    pub on_behalf_of: Option<Value>,
}

/// `userIdentity.sessionContext`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionContext {
    pub session_issuer: Option<SessionIssuer>,
    pub attributes: Option<SessionAttributes>,
    pub source_identity: Option<String>,
}

/// `userIdentity.sessionContext.sessionIssuer`: the role (or user) that issued the session.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionIssuer {
    #[serde(rename = "type")]
    pub issuer_type: Option<String>,
    pub principal_id: Option<String>,
    pub arn: Option<String>,
    pub account_id: Option<String>,
    pub user_name: Option<String>,
}

/// `userIdentity.sessionContext.attributes`. CloudTrail writes `mfaAuthenticated` as the
/// string `"true"`/`"false"`; some producers write a boolean, so both are accepted.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionAttributes {
    pub creation_date: Option<String>,
    pub mfa_authenticated: Option<Value>,
}

/// One CloudTrail record, leniently typed. `raw` keeps the record exactly as received so that
/// nothing is lost (oversized events, fields we do not model).
#[derive(Debug, Clone, PartialEq)]
pub struct CloudTrailRecord {
    pub event_id: String,
    pub event_time: DateTime<Utc>,
    pub event_source: String,
    pub event_name: String,
    pub aws_region: Option<String>,
    pub source_ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub user_identity: UserIdentity,
    pub request_parameters: Option<Value>,
    pub response_elements: Option<Value>,
    pub additional_event_data: Option<Value>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub read_only: Option<bool>,
    pub event_type: Option<String>,
    pub recipient_account_id: Option<String>,
    pub raw: Value,
}

/// The text fields of a record, borrowed from its value (a field of another type is an error);
/// the other fields are taken from the value's map directly. Converted into [`CloudTrailRecord`]
/// with validation.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRecord<'a> {
    #[serde(rename = "eventID", borrow)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event_time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event_source: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    aws_region: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    recipient_account_id: Option<Cow<'a, str>>,
}

impl CloudTrailRecord {
    /// Whether the tracker collects this record with every source on: one of the tracked event
    /// sources, or any call of the root user (docs/architecture.md, "Where each source is
    /// read").
    pub fn is_tracked(&self) -> bool {
        crate::source::Source::from_event_source(&self.event_source).is_some()
            || self.user_identity.identity_type.as_deref() == Some("Root")
    }

    /// Builds a record from its JSON value (one element of `Records`, or a parsed
    /// `CloudTrailEvent`).
    pub fn from_value(raw: Value) -> Result<Self, RecordError> {
        let Some(fields) = raw.as_object() else {
            return Err(RecordError::BadFile("record is not a JSON object".into()));
        };
        // Read from the value in place: only the parts the record keeps are copied.
        let wire = WireRecord::deserialize(&raw)?;
        let event_id = non_empty(wire.event_id).ok_or(RecordError::MissingField("eventID"))?;
        let time_text = non_empty(wire.event_time).ok_or(RecordError::MissingField("eventTime"))?;
        let event_time = parse_time(&time_text).ok_or(RecordError::InvalidField {
            field: "eventTime",
            value: time_text,
        })?;
        let event_source =
            non_empty(wire.event_source).ok_or(RecordError::MissingField("eventSource"))?;
        let event_name =
            non_empty(wire.event_name).ok_or(RecordError::MissingField("eventName"))?;
        // A userIdentity that is not an object (or absent) becomes an empty identity: the
        // event is still worth keeping.
        let user_identity = match fields.get("userIdentity") {
            Some(v @ Value::Object(_)) => UserIdentity::deserialize(v).unwrap_or_default(),
            _ => UserIdentity::default(),
        };
        let value = |key: &str| fields.get(key).filter(|v| !v.is_null()).cloned();
        Ok(CloudTrailRecord {
            event_id,
            event_time,
            event_source,
            event_name,
            aws_region: non_empty(wire.aws_region),
            source_ip_address: scalar_text(fields.get("sourceIPAddress")),
            user_agent: scalar_text(fields.get("userAgent")),
            user_identity,
            request_parameters: value("requestParameters"),
            response_elements: value("responseElements"),
            additional_event_data: value("additionalEventData"),
            error_code: scalar_text(fields.get("errorCode")),
            error_message: scalar_text(fields.get("errorMessage")),
            read_only: match fields.get("readOnly") {
                Some(Value::Bool(b)) => Some(*b),
                Some(Value::String(s)) => s.parse().ok(),
                _ => None,
            },
            event_type: non_empty(wire.event_type),
            recipient_account_id: non_empty(wire.recipient_account_id),
            raw,
        })
    }

    /// Parses the `CloudTrailEvent` string of a `LookupEvents` result.
    pub fn from_lookup_event_json(text: &str) -> Result<Self, RecordError> {
        Self::from_value(serde_json::from_str(text)?)
    }

    /// The session issuer, when the identity is a role session.
    pub fn session_issuer(&self) -> Option<&SessionIssuer> {
        self.user_identity
            .session_context
            .as_ref()
            .and_then(|c| c.session_issuer.as_ref())
    }

    /// `requestParameters.<key>` as a string, if present.
    pub fn request_param_str(&self, key: &str) -> Option<&str> {
        self.request_parameters.as_ref()?.get(key)?.as_str()
    }

    /// Size of the record as compact JSON, in bytes.
    pub fn raw_size(&self) -> usize {
        serde_json::to_vec(&self.raw).map(|v| v.len()).unwrap_or(0)
    }
}

/// Parses a CloudTrail timestamp (RFC 3339; CloudTrail writes `YYYY-MM-DDTHH:MM:SSZ`).
///
/// Only times whose UTC year has four digits are accepted: an offset can move
/// `9999-12-31T23:30:00-01:00` into year 10000 (or `0000-01-01T00:30:00+01:00` into year -1),
/// which [`format_time`] writes as `+10000-…`/`-0001-…`, not a `YYYY-MM-DD` partition key and
/// not text that sorts or parses back.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| (0..=9999).contains(&t.year()))
}

/// Formats a time the way every table and checkpoint stores it: `YYYY-MM-DDTHH:MM:SSZ`
/// (whole seconds, UTC), so that strings sort in time order.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn non_empty(s: Option<Cow<str>>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty()).map(Cow::into_owned)
}

/// Accepts strings and other scalars (numbers, booleans) as text; objects and arrays are kept
/// as compact JSON so that odd producers lose nothing.
fn scalar_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The result of reading one log file: every record that parsed, and the position and reason of
/// every record that did not. One bad record never hides the others.
#[derive(Debug, Default)]
pub struct LogFile {
    pub records: Vec<CloudTrailRecord>,
    pub rejected: Vec<(usize, RecordError)>,
}

/// The content of a delivery file: gunzipped when it starts with the gzip magic bytes (not
/// judged by the file name), else as it is. Every member of a multi-member file is read; zlib
/// checks each member's header, CRC-32 and length. Inflated in one call into a buffer sized
/// from the gzip trailer, with no window kept (docs/ingest.md, "The record path").
pub fn decompressed(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, RecordError> {
    use flate2::{Decompress, FlushDecompress, Status};
    use std::io::{Error, ErrorKind};
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    // The trailer's length is the last member's (the whole content for the one member
    // CloudTrail writes), modulo 2^32; no more than deflate's ratio allows is reserved.
    let last_size = bytes[bytes.len() - 4.min(bytes.len())..]
        .try_into()
        .map_or(0, |size| u32::from_le_bytes(size) as usize);
    let mut out = Vec::with_capacity(last_size.min(bytes.len().saturating_mul(1032)) + 1);
    let mut rest = bytes;
    while !rest.is_empty() {
        let mut inflate = Decompress::new_gzip(15);
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64 * 1024));
            }
            let (read, written) = (inflate.total_in(), inflate.total_out());
            let status = inflate
                .decompress_vec(&rest[read as usize..], &mut out, FlushDecompress::Finish)
                .map_err(|e| Error::new(ErrorKind::InvalidData, e))?;
            if status == Status::StreamEnd {
                break;
            }
            let stuck = inflate.total_in() == read && inflate.total_out() == written;
            if stuck && out.len() < out.capacity() {
                return Err(Error::new(ErrorKind::UnexpectedEof, "gzip member ends early").into());
            }
        }
        rest = &rest[inflate.total_in() as usize..];
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// The records of a delivery file's content (`{"Records":[...]}`), each as its JSON text,
/// borrowed: nothing of a record is built until it is wanted. One pass over the content; a
/// content that is not a delivery file is read again only to say why.
pub fn delivery_records(body: &[u8]) -> Result<Vec<&serde_json::value::RawValue>, RecordError> {
    use serde_json::value::RawValue;
    #[derive(Deserialize)]
    struct Delivery<'a> {
        #[serde(rename = "Records", borrow)]
        records: Vec<&'a RawValue>,
    }
    if let Ok(delivery) = serde_json::from_slice::<Delivery>(body) {
        return Ok(delivery.records);
    }
    #[derive(Deserialize)]
    struct Shape<'a> {
        #[serde(rename = "Records", borrow, default)]
        records: Option<&'a RawValue>,
    }
    let doc: &RawValue =
        serde_json::from_slice(body).map_err(|e| RecordError::BadFile(format!("not JSON: {e}")))?;
    if !doc.get().starts_with('{') {
        return Err(RecordError::BadFile("top level is not an object".into()));
    }
    match serde_json::from_str::<Shape>(doc.get()) {
        Ok(Shape { records: None }) => Err(RecordError::BadFile("no \"Records\" array".into())),
        _ => Err(RecordError::BadFile("\"Records\" is not an array".into())),
    }
}

/// One record of a delivery file: its JSON text, borrowed, and the [`RecordPeek`] of it (`None`
/// when its source fields are not in their usual shape; the full parse then says what is
/// wrong).
#[derive(Debug)]
pub struct DeliveryRecord<'a> {
    pub text: &'a str,
    pub peek: Option<RecordPeek<'a>>,
}

/// The records of a delivery file's content with their peeks: what [`delivery_records`] and
/// [`RecordPeek::of`] give, with the same errors, but each record is read once: one scan finds
/// where the record ends, checks that it is JSON and takes the peek on the way (docs/ingest.md,
/// "The record path"). A content in any other shape than CloudTrail's `{"Records":[...]}` (other
/// keys, a repeated key), or that is not JSON, is read the general way.
pub fn peeked_delivery_records(body: &[u8]) -> Result<Vec<DeliveryRecord<'_>>, RecordError> {
    if let Some(records) = std::str::from_utf8(body).ok().and_then(scan::delivery) {
        return Ok(records);
    }
    Ok(delivery_records(body)?
        .into_iter()
        .map(|raw| DeliveryRecord {
            text: raw.get(),
            peek: RecordPeek::of(raw.get()),
        })
        .collect())
}

/// The one scan of [`peeked_delivery_records`]: a JSON reader that checks what serde_json checks
/// when it skips a value (structure, strings, escapes, numbers, literals; UTF-8 is checked once
/// for the whole content by the caller) and builds nothing. Each function takes the content and
/// where to start, and gives where it stopped, or `None` where serde_json would fail: the caller
/// then reads the content the general way, which says why. A peek is given only when its fields
/// are plain (no escapes, no repeated keys, the types `RecordPeek` reads); any other record gets
/// none, and its full record decides.
mod scan {
    use std::borrow::Cow;

    use super::{DeliveryRecord, IdentityPeek, RecordPeek};

    /// `{"Records":[...]}` (any whitespace between tokens) → its records.
    pub(super) fn delivery(text: &str) -> Option<Vec<DeliveryRecord<'_>>> {
        let b = text.as_bytes();
        let mut i = 0;
        for token in [&b"{"[..], b"\"Records\"", b":", b"["] {
            i = ws(b, i);
            i = expect(b, i, token)?;
        }
        i = ws(b, i);
        let mut records = Vec::new();
        let mut open = Vec::new();
        if b.get(i) == Some(&b']') {
            i += 1;
        } else {
            loop {
                let (end, peek) = record(text, i, &mut open)?;
                records.push(DeliveryRecord {
                    text: text.get(i..end)?,
                    peek,
                });
                i = ws(b, end);
                match *b.get(i)? {
                    b',' => i = ws(b, i + 1),
                    b']' => {
                        i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        i = ws(b, i);
        i = expect(b, i, b"}")?;
        (ws(b, i) == b.len()).then_some(records)
    }

    /// What a peeked field held.
    #[derive(Clone, Copy)]
    enum Field<'a> {
        Text(&'a str),
        Null,
        /// `userIdentity`, with its `type` when that is text.
        Identity(Option<&'a str>),
    }

    /// One record (`i` at its first byte) → where it ends, and its peek when it is an object
    /// whose peeked fields are plain.
    fn record<'a>(
        text: &'a str,
        mut i: usize,
        open: &mut Vec<bool>,
    ) -> Option<(usize, Option<RecordPeek<'a>>)> {
        let b = text.as_bytes();
        if b.get(i) != Some(&b'{') {
            return Some((value(b, i, open)?, None));
        }
        let (mut source, mut region, mut identity) = (None, None, None);
        let mut plain = true;
        i = ws(b, i + 1);
        if b.get(i) == Some(&b'}') {
            return Some((i + 1, None));
        }
        loop {
            let (name, escaped, after) = key(b, i)?;
            // An escaped key could spell a peeked field: no peek then.
            plain &= !escaped;
            i = match name {
                b"eventSource" => keep(&mut source, &mut plain, string_or_null(text, after, open)?),
                b"awsRegion" => keep(&mut region, &mut plain, string_or_null(text, after, open)?),
                b"userIdentity" => keep(&mut identity, &mut plain, identity_of(text, after, open)?),
                // Most values are strings: read without a call.
                _ if b.get(after) == Some(&b'"') => string(b, after + 1)?.0,
                _ => value(b, after, open)?,
            };
            i = ws(b, i);
            match *b.get(i)? {
                b',' => i = ws(b, i + 1),
                b'}' => break,
                _ => return None,
            }
        }
        let end = i + 1;
        let event_source = match source {
            Some(Field::Text(text)) if plain => text,
            _ => return Some((end, None)),
        };
        let peek = RecordPeek {
            event_source: Cow::Borrowed(event_source),
            aws_region: match region {
                Some(Field::Text(text)) => Some(Cow::Borrowed(text)),
                _ => None,
            },
            user_identity: match identity {
                Some(Field::Identity(identity_type)) => Some(IdentityPeek {
                    identity_type: identity_type.map(Cow::Borrowed),
                }),
                _ => None,
            },
        };
        Some((end, Some(peek)))
    }

    /// Keeps a peeked field's value and gives where it ends; a repeated field, or one of a type
    /// the peek does not read, leaves the record without a peek.
    fn keep<'a>(
        slot: &mut Option<Field<'a>>,
        plain: &mut bool,
        (end, field): (usize, Option<Field<'a>>),
    ) -> usize {
        *plain &= slot.is_none() && field.is_some();
        *slot = field;
        end
    }

    /// An object key (`i` at its opening quote) → its text, whether it has escapes, and where
    /// its value starts (after the colon and whitespace).
    #[inline(always)]
    fn key(b: &[u8], i: usize) -> Option<(&[u8], bool, usize)> {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let (end, escaped) = string(b, i + 1)?;
        let after = expect(b, ws(b, end), b":")?;
        Some((&b[i + 1..end - 1], escaped, ws(b, after)))
    }

    /// A peeked string field (`i` at its value) → where the value ends, and `Some(Text)`,
    /// `Some(Null)` for `null` or `None` for anything else.
    fn string_or_null<'a>(
        text: &'a str,
        i: usize,
        open: &mut Vec<bool>,
    ) -> Option<(usize, Option<Field<'a>>)> {
        let b = text.as_bytes();
        match *b.get(i)? {
            b'"' => {
                let (end, escaped) = string(b, i + 1)?;
                let field = (!escaped).then(|| text.get(i + 1..end - 1).map(Field::Text));
                Some((end, field.flatten()))
            }
            b'n' => Some((expect(b, i, b"null")?, Some(Field::Null))),
            _ => Some((value(b, i, open)?, None)),
        }
    }

    /// `userIdentity` (`i` at its value) → where it ends, and `Some(Identity)` for an object
    /// whose `type` is plain text, null or absent, `Some(Null)` for `null` or `None` for
    /// anything else.
    fn identity_of<'a>(
        text: &'a str,
        mut i: usize,
        open: &mut Vec<bool>,
    ) -> Option<(usize, Option<Field<'a>>)> {
        let b = text.as_bytes();
        match *b.get(i)? {
            b'{' => {}
            b'n' => return Some((expect(b, i, b"null")?, Some(Field::Null))),
            _ => return Some((value(b, i, open)?, None)),
        }
        let mut identity_type = None;
        let mut plain = true;
        i = ws(b, i + 1);
        if b.get(i) == Some(&b'}') {
            return Some((i + 1, Some(Field::Identity(None))));
        }
        loop {
            let (name, escaped, after) = key(b, i)?;
            plain &= !escaped;
            if name == b"type" {
                let (end, field) = string_or_null(text, after, open)?;
                plain &= identity_type.is_none() && field.is_some();
                identity_type = field;
                i = end;
            } else {
                i = value(b, after, open)?;
            }
            i = ws(b, i);
            match *b.get(i)? {
                b',' => i = ws(b, i + 1),
                b'}' => break,
                _ => return None,
            }
        }
        let field = plain.then_some(Field::Identity(match identity_type {
            Some(Field::Text(text)) => Some(text),
            _ => None,
        }));
        Some((i + 1, field))
    }

    /// Any JSON value (`i` at its first byte) → where it ends. Arrays and objects are read
    /// without recursion (`open`: the ones the value is inside, `true` for an object), as
    /// serde_json skips them, so any depth is read.
    fn value(b: &[u8], mut i: usize, open: &mut Vec<bool>) -> Option<usize> {
        open.clear();
        loop {
            match *b.get(i)? {
                b'"' => i = string(b, i + 1)?.0,
                b'{' => {
                    i = ws(b, i + 1);
                    if b.get(i) == Some(&b'}') {
                        i += 1;
                    } else {
                        open.push(true);
                        i = key(b, i)?.2;
                        continue;
                    }
                }
                b'[' => {
                    i = ws(b, i + 1);
                    if b.get(i) == Some(&b']') {
                        i += 1;
                    } else {
                        open.push(false);
                        continue;
                    }
                }
                b't' => i = expect(b, i, b"true")?,
                b'f' => i = expect(b, i, b"false")?,
                b'n' => i = expect(b, i, b"null")?,
                b'-' => i = number(b, i + 1)?,
                b'0'..=b'9' => i = number(b, i)?,
                _ => return None,
            }
            // A value is complete: close what it completes, up to the next value.
            loop {
                let Some(&in_object) = open.last() else {
                    return Some(i);
                };
                i = ws(b, i);
                match *b.get(i)? {
                    b',' => {
                        i = ws(b, i + 1);
                        if in_object {
                            i = key(b, i)?.2;
                        }
                        break;
                    }
                    b'}' if in_object => {
                        i += 1;
                        open.pop();
                    }
                    b']' if !in_object => {
                        i += 1;
                        open.pop();
                    }
                    _ => return None,
                }
            }
        }
    }

    /// The rest of a string (`i` after its opening quote) → where it ends (after the closing
    /// quote) and whether it has escapes. Eight bytes at a time to the next quote, backslash or
    /// control character, as serde_json's reader does.
    #[inline(always)]
    fn string(b: &[u8], mut i: usize) -> Option<(usize, bool)> {
        const ONES: u64 = u64::MAX / 255;
        let mut escaped = false;
        loop {
            while let Some(chunk) = b.get(i..).and_then(<[u8]>::first_chunk::<8>) {
                let word = u64::from_le_bytes(*chunk);
                let control = word.wrapping_sub(ONES * 0x20) & !word;
                let quote = word ^ (ONES * u64::from(b'"'));
                let quote = quote.wrapping_sub(ONES) & !quote;
                let backslash = word ^ (ONES * u64::from(b'\\'));
                let backslash = backslash.wrapping_sub(ONES) & !backslash;
                let found = (control | quote | backslash) & (ONES << 7);
                if found != 0 {
                    i += found.trailing_zeros() as usize / 8;
                    break;
                }
                i += 8;
            }
            match *b.get(i)? {
                b'"' => return Some((i + 1, escaped)),
                b'\\' => {
                    escaped = true;
                    i = escape(b, i + 1)?;
                }
                0..=0x1f => return None,
                _ => i += 1,
            }
        }
    }

    /// An escape (`i` after its backslash) → where it ends.
    #[cold]
    fn escape(b: &[u8], i: usize) -> Option<usize> {
        match *b.get(i)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(i + 1),
            b'u' => b
                .get(i + 1..i + 5)?
                .iter()
                .all(u8::is_ascii_hexdigit)
                .then_some(i + 5),
            _ => None,
        }
    }

    /// A number without its sign (`i` at its first digit) → where it ends: `0` or
    /// `[1-9][0-9]*`, then an optional fraction and exponent.
    fn number(b: &[u8], mut i: usize) -> Option<usize> {
        match *b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => i = digits(b, i + 1),
            _ => return None,
        }
        if b.get(i) == Some(&b'.') {
            i = some_digits(b, i + 1)?;
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            i = some_digits(b, i)?;
        }
        Some(i)
    }

    fn digits(b: &[u8], mut i: usize) -> usize {
        while let Some(b'0'..=b'9') = b.get(i) {
            i += 1;
        }
        i
    }

    fn some_digits(b: &[u8], i: usize) -> Option<usize> {
        let end = digits(b, i);
        (end > i).then_some(end)
    }

    #[inline(always)]
    fn ws(b: &[u8], mut i: usize) -> usize {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = b.get(i) {
            i += 1;
        }
        i
    }

    #[inline(always)]
    fn expect(b: &[u8], i: usize, token: &[u8]) -> Option<usize> {
        b.get(i..)?.starts_with(token).then_some(i + token.len())
    }
}

/// The few fields that say whether the tracker collects a record, read from its JSON text
/// without building the record (most records of a trail are other services' calls).
#[derive(Debug, Deserialize)]
pub struct RecordPeek<'a> {
    #[serde(rename = "eventSource", borrow)]
    pub event_source: std::borrow::Cow<'a, str>,
    #[serde(rename = "awsRegion", borrow, default)]
    pub aws_region: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "userIdentity", borrow, default)]
    pub user_identity: Option<IdentityPeek<'a>>,
}

/// `userIdentity.type` of a [`RecordPeek`].
#[derive(Debug, Deserialize)]
pub struct IdentityPeek<'a> {
    #[serde(rename = "type", borrow, default)]
    pub identity_type: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> RecordPeek<'a> {
    /// The peek of a record's JSON text; `None` when the text does not have these fields in
    /// their usual shape (the full parse then says what is wrong).
    pub fn of(text: &'a str) -> Option<RecordPeek<'a>> {
        serde_json::from_str(text).ok()
    }

    /// `awsRegion` as the record has it: a blank one is none (see [`CloudTrailRecord::from_value`]).
    pub fn region(&self) -> Option<&str> {
        self.aws_region.as_deref().filter(|r| !r.trim().is_empty())
    }

    pub fn identity_type(&self) -> Option<&str> {
        self.user_identity.as_ref()?.identity_type.as_deref()
    }
}

/// Reads a CloudTrail delivery file (`{"Records":[...]}`), gzip-compressed or not (detected by
/// the gzip magic bytes, not the file name).
pub fn parse_log_file(bytes: &[u8]) -> Result<LogFile, RecordError> {
    let body = decompressed(bytes)?;
    let mut file = LogFile::default();
    for (i, raw) in delivery_records(&body)?.into_iter().enumerate() {
        match CloudTrailRecord::from_lookup_event_json(raw.get()) {
            Ok(r) => file.records.push(r),
            Err(e) => file.rejected.push((i, e)),
        }
    }
    Ok(file)
}

/// Every CloudTrail log file (`.json`, `.json.gz`) under `dir`, recursively, in path order.
pub fn log_file_paths(dir: &Path) -> Result<Vec<PathBuf>, RecordError> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                pending.push(path);
            } else if name.ends_with(".json") || name.ends_with(".json.gz") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Reads every CloudTrail log file (`.json`, `.json.gz`) under `dir`, recursively, in path
/// order. A file that is not a CloudTrail delivery file is an error naming it.
pub fn read_log_dir(dir: &Path) -> Result<Vec<(PathBuf, LogFile)>, RecordError> {
    log_file_paths(dir)?
        .into_iter()
        .map(|path| {
            let log = parse_log_file(&std::fs::read(&path)?)
                .map_err(|e| RecordError::BadFile(format!("{}: {e}", path.display())))?;
            Ok((path, log))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> Value {
        json!({"eventID": "e1", "eventTime": "2024-01-15T14:30:52Z",
               "eventSource": "iam.amazonaws.com", "eventName": "CreateUser"})
    }

    #[test]
    fn minimal_record_parses_with_empty_identity() {
        let r = CloudTrailRecord::from_value(minimal()).unwrap();
        assert_eq!(r.event_id, "e1");
        assert_eq!(r.user_identity, UserIdentity::default());
        assert_eq!(format_time(r.event_time), "2024-01-15T14:30:52Z");
    }

    #[test]
    fn missing_required_fields_are_named() {
        for field in ["eventID", "eventTime", "eventSource", "eventName"] {
            let mut v = minimal();
            v.as_object_mut().unwrap().remove(field);
            let err = CloudTrailRecord::from_value(v).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn bad_time_is_rejected_with_value() {
        let mut v = minimal();
        v["eventTime"] = json!("yesterday");
        let err = CloudTrailRecord::from_value(v).unwrap_err();
        assert!(err.to_string().contains("yesterday"));
    }

    #[test]
    fn times_outside_four_digit_utc_years_are_rejected() {
        // Found by tests/fuzz_records.rs: these became event_date "+10000-01-01" and
        // "-0001-12-31", keys DynamoDB would store but no date query would ever find.
        for text in ["9999-12-31T23:30:00-01:00", "0000-01-01T00:30:00+01:00"] {
            assert_eq!(parse_time(text), None, "{text}");
            let mut v = minimal();
            v["eventTime"] = json!(text);
            let err = CloudTrailRecord::from_value(v).unwrap_err();
            assert!(err.to_string().contains("eventTime"), "{err}");
        }
        for text in [
            "9999-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
            "0001-01-01T00:30:00+01:00",
        ] {
            let t = parse_time(text).unwrap();
            assert_eq!(parse_time(&format_time(t)), Some(t), "{text} round-trips");
        }
    }

    #[test]
    fn unknown_identity_type_and_odd_fields_are_kept() {
        let mut v = minimal();
        v["userIdentity"] = json!({"type": "SomethingNew", "principalId": "x"});
        v["sourceIPAddress"] = json!("AWS Internal");
        v["awsRegion"] = json!("mars-north-1");
        v["readOnly"] = json!("true");
        v["errorCode"] = json!(403);
        let r = CloudTrailRecord::from_value(v).unwrap();
        assert_eq!(
            r.user_identity.identity_type.as_deref(),
            Some("SomethingNew")
        );
        assert_eq!(r.source_ip_address.as_deref(), Some("AWS Internal"));
        assert_eq!(r.aws_region.as_deref(), Some("mars-north-1"));
        assert_eq!(r.read_only, Some(true));
        assert_eq!(r.error_code.as_deref(), Some("403"));
    }

    #[test]
    fn non_object_identity_becomes_empty() {
        let mut v = minimal();
        v["userIdentity"] = json!("weird");
        let r = CloudTrailRecord::from_value(v).unwrap();
        assert_eq!(r.user_identity.identity_type, None);
    }

    #[test]
    fn log_file_plain_and_gzip_with_one_bad_record() {
        let doc = json!({"Records": [minimal(), {"eventID": "x"}]});
        let bytes = serde_json::to_vec(&doc).unwrap();
        let plain = parse_log_file(&bytes).unwrap();
        assert_eq!(plain.records.len(), 1);
        assert_eq!(plain.rejected.len(), 1);
        assert_eq!(plain.rejected[0].0, 1);

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &bytes).unwrap();
        let zipped = parse_log_file(&gz.finish().unwrap()).unwrap();
        assert_eq!(zipped.records, plain.records);
    }

    #[test]
    fn log_file_errors_are_clear() {
        assert!(parse_log_file(b"nope")
            .unwrap_err()
            .to_string()
            .contains("not JSON"));
        assert!(parse_log_file(b"{}")
            .unwrap_err()
            .to_string()
            .contains("Records"));
        assert!(parse_log_file(b"[]")
            .unwrap_err()
            .to_string()
            .contains("object"));
    }

    #[test]
    fn lookup_event_string_parses() {
        let r = CloudTrailRecord::from_lookup_event_json(&minimal().to_string()).unwrap();
        assert_eq!(r.event_name, "CreateUser");
        assert!(CloudTrailRecord::from_lookup_event_json("{").is_err());
    }

    /// A delivery file read the general way (`delivery_records`, then `RecordPeek::of` on each
    /// record): each record's text and peek, or the error.
    type Reading = Result<Vec<(String, Option<Peeked>)>, String>;
    type Peeked = (String, Option<String>, Option<String>);

    fn peeked(peek: &RecordPeek) -> Peeked {
        let identity_type = peek.identity_type().map(str::to_string);
        let region = peek.aws_region.as_deref().map(str::to_string);
        (peek.event_source.to_string(), region, identity_type)
    }

    fn general(body: &str) -> Reading {
        let records = delivery_records(body.as_bytes()).map_err(|e| e.to_string())?;
        Ok(records
            .into_iter()
            .map(|raw| {
                (
                    raw.get().to_string(),
                    RecordPeek::of(raw.get()).map(|p| peeked(&p)),
                )
            })
            .collect())
    }

    /// The one scan agrees with the general reading: it reads what that reads (a record without
    /// a peek where the general peek has one is allowed, never a different peek) and fails
    /// where that fails. Returns whether the scan read the file and gave every peek the general
    /// reading gives (`None`: the scan left the file to the general reading).
    fn check_scan(body: &str) -> Option<bool> {
        let expected = general(body);
        let records = scan::delivery(body)?;
        let got: Vec<_> = records
            .iter()
            .map(|r| (r.text.to_string(), r.peek.as_ref().map(peeked)))
            .collect();
        let Ok(expected) = expected else {
            panic!("the scan read a file the general reading refuses: {body:?}");
        };
        assert_eq!(got.len(), expected.len(), "{body:?}");
        let mut every_peek = true;
        for ((text, peek), (expected_text, expected_peek)) in got.iter().zip(&expected) {
            assert_eq!(text, expected_text, "{body:?}");
            match (peek, expected_peek) {
                (Some(peek), expected_peek) => {
                    assert_eq!(Some(peek), expected_peek.as_ref(), "{body:?}")
                }
                (None, Some(_)) => every_peek = false,
                (None, None) => {}
            }
        }
        Some(every_peek)
    }

    #[test]
    fn the_scan_reads_what_the_general_reading_reads() {
        // Read by the scan, every peek given.
        for body in [
            r#"{"Records":[]}"#,
            " \n{ \"Records\" :\t[ ] } \r\n",
            r#"{"Records":[{"eventSource":"iam.amazonaws.com","awsRegion":"us-east-1","userIdentity":{"type":"Root","arn":"a"}}]}"#,
            r#"{"Records": [ {"eventVersion":"1.08", "userIdentity" : { "type" : "IAMUser" , "x":[1,-2.5e+3,0.5E-1,true,false,null,{}] } , "eventSource" : "sts.amazonaws.com", "awsRegion": null, "requestParameters": {"a":[[],[{}],{"b":{"c":[0]}}], "d":"caf\u00e9 \"quoted\" \\ / é ✓"}} , {"eventSource":"ec2.amazonaws.com"} ] }"#,
            r#"{"Records":[{"eventSource":"","userIdentity":null},{"eventSource":"s3.amazonaws.com","userIdentity":{}}]}"#,
            r#"{"Records":[{"eventSource":"iam.amazonaws.com","userIdentity":{"type":null}}]}"#,
            r#"{"Records":[{"x":"\ud800"},{"eventSource":"x","awsRegion":" "}]}"#,
        ] {
            assert_eq!(check_scan(body), Some(true), "{body:?}");
        }
        // Any depth, as serde_json skips a value.
        let deep = format!(
            r#"{{"Records":[{{"eventSource":"x","deep":{}0{}}}]}}"#,
            "[{\"a\":".repeat(300),
            "}]".repeat(300)
        );
        assert_eq!(check_scan(&deep), Some(true));
        // Read by the scan, the odd records without a peek (their full record decides).
        for body in [
            r#"{"Records":[42,"text",[1],null,true,{}]}"#,
            r#"{"Records":[{"eventSource":"a","eventSource":"b"}]}"#,
            r#"{"Records":[{"event\u0053ource":"iam.amazonaws.com"}]}"#,
            r#"{"Records":[{"eventSource":"iam.amazon\u0061ws.com"}]}"#,
            r#"{"Records":[{"eventSource":5},{"eventSource":null},{"awsRegion":"x"}]}"#,
            r#"{"Records":[{"eventSource":"x","awsRegion":1},{"eventSource":"x","userIdentity":"text"}]}"#,
            r#"{"Records":[{"eventSource":"x","userIdentity":[{"type":"Root"}]}]}"#,
            r#"{"Records":[{"eventSource":"x","userIdentity":{"type":"Root","type":"IAMUser"}}]}"#,
            r#"{"Records":[{"eventSource":"x","userIdentity":{"t\u0079pe":"Root"}}]}"#,
            r#"{"Records":[{"eventSource":"x","userIdentity":{"type":7}}]}"#,
        ] {
            let records = scan::delivery(body).unwrap_or_else(|| panic!("{body:?}"));
            assert!(records.iter().all(|r| r.peek.is_none()), "{body:?}");
            assert!(check_scan(body).is_some(), "{body:?}");
        }
        // Not JSON, or not in CloudTrail's shape: left to the general reading.
        for body in [
            r#"{"Records":[{"a":01}]}"#,
            r#"{"Records":[{"a":1.}]}"#,
            r#"{"Records":[{"a":1e}]}"#,
            r#"{"Records":[{"a":-}]}"#,
            r#"{"Records":[{"a":+1}]}"#,
            r#"{"Records":[{"a":tru}]}"#,
            r#"{"Records":[{"a":nul}]}"#,
            r#"{"Records":[{"a":"\q"}]}"#,
            r#"{"Records":[{"a":"\u12g4"}]}"#,
            "{\"Records\":[{\"a\":\"tab\there\"}]}",
            r#"{"Records":[{"a":"open}]}"#,
            r#"{"Records":[{"a":1,}]}"#,
            r#"{"Records":[{"a":1},]}"#,
            r#"{"Records":[{"a" 1}]}"#,
            r#"{"Records":[{a:1}]}"#,
            r#"{"Records":[{"a":[1,2}]}"#,
            r#"{"Records":[{"a":{"b":1]}]}"#,
            r#"{"Records":[{"a":1} {"b":2}]}"#,
            r#"{"Records":[1 2]}"#,
            r#"{"Records":[1]} x"#,
            r#"{"Records":[1]"#,
            r#"{"Records":[}"#,
            r#"{"Records":[{"a":1}],"Other":2}"#,
            r#"{"Other":2,"Records":[]}"#,
            r#"{"Records":[],"Records":[]}"#,
            r#"{"records":[]}"#,
            r#"{"Records":{}}"#,
            r#"[1]"#,
            "",
        ] {
            assert!(scan::delivery(body).is_none(), "{body:?}");
        }
    }

    /// A small deterministic generator for the mutation test.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) % n as u64) as usize
        }
    }

    #[test]
    fn the_scan_agrees_with_the_general_reading_on_mutated_files() {
        // Real records (their fields in CloudTrail's order), and every kind of JSON token.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../datasets/invictus-aws-2023/CloudTrail");
        let file = log_file_paths(&dir).unwrap().remove(0);
        let bytes = std::fs::read(file).unwrap();
        let mut records: Vec<Value> = serde_json::from_slice::<Value>(&bytes).unwrap()["Records"]
            .as_array()
            .unwrap()
            .iter()
            .take(3)
            .cloned()
            .collect();
        records.push(
            json!({"eventSource": "iam.amazonaws.com", "awsRegion": "eu-west-1",
            "userIdentity": {"type": "Root", "n": [0, -1.5, 2e10, true, false, null]},
            "requestParameters": {"name": "caf\u{e9} \"q\" \\ \u{1}", "list": [[], {}, [{}]]}}),
        );
        let seed = serde_json::to_string(&json!({ "Records": records })).unwrap();
        assert_eq!(check_scan(&seed), Some(true));
        const ALPHABET: &[u8] = b"{}[]\",:\\ \n0123456789-+.eEtrufalsnu\x01aA\xc3\xa9";
        let mut rng = Lcg(20_240_115);
        let (mut read, mut scanned, mut refused) = (0, 0, 0);
        for _ in 0..4_000 {
            let mut body = seed.clone().into_bytes();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(body.len());
                let byte = ALPHABET[rng.below(ALPHABET.len())];
                match rng.below(3) {
                    0 => body[at] = byte,
                    1 => body.insert(at, byte),
                    _ => {
                        body.remove(at);
                    }
                }
            }
            let Ok(body) = String::from_utf8(body) else {
                continue;
            };
            scanned += usize::from(check_scan(&body).is_some());
            if general(&body).is_ok() {
                read += 1;
            } else {
                refused += 1;
            }
        }
        // Both kinds of file were tried, and the scan read most of those that can be read (the
        // others are no longer in CloudTrail's shape).
        assert!(refused > 500, "{refused} refused");
        assert!(
            scanned > 500 && scanned * 10 > read * 9,
            "{scanned} of {read} scanned"
        );
    }
}
