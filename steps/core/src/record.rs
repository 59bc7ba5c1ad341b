//! The CloudTrail record model.
//!
//! Records reach us in two shapes: the S3 delivery format (`{"Records":[...]}` in `.json` or
//! `.json.gz` files) and the `CloudTrailEvent` string of a `LookupEvents` result. Both carry the
//! same record, so one lenient model serves both. Only `eventID`, `eventTime`, `eventSource` and
//! `eventName` are required; everything else is optional, and unknown identity types are kept
//! verbatim rather than rejected.

use std::io::Read;
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

/// The serde view of a record; converted into [`CloudTrailRecord`] with validation.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRecord {
    #[serde(rename = "eventID")]
    event_id: Option<String>,
    event_time: Option<String>,
    event_source: Option<String>,
    event_name: Option<String>,
    aws_region: Option<String>,
    #[serde(rename = "sourceIPAddress")]
    source_ip_address: Option<Value>,
    user_agent: Option<Value>,
    user_identity: Option<Value>,
    request_parameters: Option<Value>,
    response_elements: Option<Value>,
    additional_event_data: Option<Value>,
    error_code: Option<Value>,
    error_message: Option<Value>,
    read_only: Option<Value>,
    event_type: Option<String>,
    recipient_account_id: Option<String>,
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
        if !raw.is_object() {
            return Err(RecordError::BadFile("record is not a JSON object".into()));
        }
        // Read from the value in place: no copy of the whole record.
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
        let user_identity = match wire.user_identity {
            Some(v @ Value::Object(_)) => serde_json::from_value(v).unwrap_or_default(),
            _ => UserIdentity::default(),
        };
        Ok(CloudTrailRecord {
            event_id,
            event_time,
            event_source,
            event_name,
            aws_region: non_empty(wire.aws_region),
            source_ip_address: scalar_text(wire.source_ip_address),
            user_agent: scalar_text(wire.user_agent),
            user_identity,
            request_parameters: wire.request_parameters.filter(|v| !v.is_null()),
            response_elements: wire.response_elements.filter(|v| !v.is_null()),
            additional_event_data: wire.additional_event_data.filter(|v| !v.is_null()),
            error_code: scalar_text(wire.error_code),
            error_message: scalar_text(wire.error_message),
            read_only: wire.read_only.and_then(|v| match v {
                Value::Bool(b) => Some(b),
                Value::String(s) => s.parse().ok(),
                _ => None,
            }),
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

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

/// Accepts strings and other scalars (numbers, booleans) as text; objects and arrays are kept
/// as compact JSON so that odd producers lose nothing.
fn scalar_text(v: Option<Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s),
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
/// judged by the file name), else as it is.
pub fn decompressed(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, RecordError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(bytes.len() * 8);
        flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out)?;
        Ok(std::borrow::Cow::Owned(out))
    } else {
        Ok(std::borrow::Cow::Borrowed(bytes))
    }
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
}
