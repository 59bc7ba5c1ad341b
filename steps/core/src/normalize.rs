//! Normalisation of a CloudTrail record into the events-table item (docs/architecture.md §4, "The
//! events table"; every attribute is listed in the README's "Tables").

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::record::{format_time, CloudTrailRecord};
use crate::source::Source;

/// DynamoDB's hard item-size limit.
pub const DYNAMODB_MAX_ITEM_BYTES: usize = 400 * 1024;
/// The size we keep items under, leaving room for the flags the guard adds.
pub const ITEM_BUDGET_BYTES: usize = DYNAMODB_MAX_ITEM_BYTES - 2 * 1024;

/// One attribute value of an item, independent of any SDK.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    S(String),
    N(String),
    Bool(bool),
    /// A list of strings (stored as a DynamoDB list of S).
    List(Vec<String>),
}

impl AttrValue {
    /// Size of the value as DynamoDB counts it (UTF-8 bytes for strings; numbers roughly one
    /// byte per two digits plus one; booleans one byte; lists 3 bytes + 1 per element).
    pub fn dynamodb_size(&self) -> usize {
        match self {
            AttrValue::S(s) => s.len(),
            AttrValue::N(n) => n.len().div_ceil(2) + 1,
            AttrValue::Bool(_) => 1,
            AttrValue::List(items) => 3 + items.iter().map(|s| s.len() + 1).sum::<usize>(),
        }
    }
}

/// The normalised event: one item of the `{stack}-events` table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NormalizedEvent {
    /// Partition key: `YYYY-MM-DD` (UTC) of `event_time`.
    pub event_date: String,
    /// Sort key: CloudTrail `eventID`.
    pub event_id: String,
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub event_time: String,
    pub event_name: String,
    pub event_source: String,
    /// `iam`, `sts`, `signin`, `sso`, or `other`.
    pub event_type: String,
    /// Never empty (it is a GSI key): see [`user_name`].
    pub user_name: String,
    pub user_identity_type: Option<String>,
    pub user_arn: Option<String>,
    pub principal_id: Option<String>,
    pub account_id: Option<String>,
    pub access_key_id: Option<String>,
    pub session_issuer: Option<String>,
    pub session_issuer_arn: Option<String>,
    pub invoked_by: Option<String>,
    /// Session attribute `mfaAuthenticated`.
    pub mfa_authenticated: Option<bool>,
    /// ConsoleLogin `additionalEventData.MFAUsed`.
    pub mfa_used: Option<bool>,
    pub aws_region: String,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    /// Compact JSON.
    pub request_parameters: Option<String>,
    /// Compact JSON.
    pub response_elements: Option<String>,
    /// Compact JSON.
    pub additional_event_data: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub read_only: Option<bool>,
    pub recipient_account_id: Option<String>,
    /// Epoch seconds at which DynamoDB may expire the item (`event_time` + retention).
    pub ttl: Option<i64>,
    /// Fields shortened to fit DynamoDB's 400 KB limit (empty when the item is whole).
    pub truncated_fields: Vec<String>,
    /// The record's full JSON size when it was truncated.
    pub original_size: Option<usize>,
    /// Why the full record could not be read, for an event kept from LookupEvents' summary
    /// fields only (see [`normalize_unparsed`]).
    #[serde(default)]
    pub parse_error: Option<String>,
    /// The unreadable record text, kept as data so nothing is lost.
    #[serde(default)]
    pub raw_record: Option<String>,
    /// Where the full original record is kept in the analytics bucket (under
    /// [`crate::raw::RAW_PREFIX`]) when this item had to be cut or could only be stored in a
    /// minimal form.
    #[serde(default)]
    pub raw_s3_key: Option<String>,
}

/// Options of normalisation that come from configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct NormalizeOptions {
    /// Days to keep items in DynamoDB (`RETENTION_DAYS`); 0 or `None` keeps them forever.
    pub retention_days: Option<u32>,
}

/// The item's expiry (epoch seconds): the event's time plus `RETENTION_DAYS`, if set.
pub fn retention_ttl(event_time: DateTime<Utc>, options: NormalizeOptions) -> Option<i64> {
    options
        .retention_days
        .filter(|d| *d > 0)
        .map(|d| (event_time + Duration::days(i64::from(d))).timestamp())
}

/// `event_type` for an `eventSource`.
pub fn event_type(event_source: &str) -> &'static str {
    Source::from_event_source(event_source)
        .map(Source::key)
        .unwrap_or("other")
}

/// The last name in an ARN: `arn:aws:iam::1:role/path/Name` → `Name`,
/// `arn:aws:sts::1:assumed-role/Role/session` → `session`, `arn:aws:iam::1:root` → `root`.
pub fn arn_last_part(arn: &str) -> &str {
    let resource = arn.splitn(6, ':').nth(5).unwrap_or(arn);
    resource.rsplit('/').next().unwrap_or(resource)
}

/// The role name in a role ARN (`arn:aws:iam::1:role/path/Name` → `Name`).
pub fn role_name_from_arn(arn: &str) -> Option<&str> {
    let resource = arn.splitn(6, ':').nth(5)?;
    let rest = resource.strip_prefix("role/")?;
    rest.rsplit('/').next().filter(|s| !s.is_empty())
}

/// The `user_name` rules (docs/architecture.md §4, "The events table"):
/// - `AssumeRole*`: the role name from `requestParameters.roleArn`;
/// - `ConsoleLogin`: `root` for the Root identity, else the IAM user name;
/// - otherwise `userName`, the session issuer's name, or the ARN's last part;
///   then the principal id, the invoking service, the account, and finally `unknown`.
pub fn user_name(record: &CloudTrailRecord) -> String {
    let id = &record.user_identity;
    if record.event_name.starts_with("AssumeRole") {
        // A denied AssumeRole has no requestParameters; the role is named in the error.
        let denied_role = record
            .error_message
            .as_deref()
            .and_then(|m| m.split_once("on resource: "))
            .and_then(|(_, rest)| rest.split_whitespace().next());
        let role_arn = record.request_param_str("roleArn").or(denied_role);
        if let Some(name) = role_arn.and_then(role_name_from_arn) {
            return name.to_string();
        }
    }
    if record.event_name == "ConsoleLogin" && id.identity_type.as_deref() == Some("Root") {
        return "root".to_string();
    }
    let candidates = [
        id.user_name.as_deref(),
        record.session_issuer().and_then(|i| i.user_name.as_deref()),
        id.arn.as_deref().map(arn_last_part),
        id.principal_id.as_deref(),
        id.invoked_by.as_deref(),
        id.account_id.as_deref(),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

fn json_text(v: &Option<Value>) -> Option<String> {
    v.as_ref().map(|v| v.to_string())
}

fn bool_ish(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" => Some(true),
            "false" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Normalises a record into an events-table item and applies the 400 KB guard.
pub fn normalize(record: &CloudTrailRecord, options: NormalizeOptions) -> NormalizedEvent {
    let id = &record.user_identity;
    let issuer = record.session_issuer();
    let mfa_authenticated = id
        .session_context
        .as_ref()
        .and_then(|c| c.attributes.as_ref())
        .and_then(|a| a.mfa_authenticated.as_ref())
        .and_then(bool_ish);
    let mfa_used = record
        .additional_event_data
        .as_ref()
        .and_then(|d| d.get("MFAUsed"))
        .and_then(bool_ish);
    let ttl = retention_ttl(record.event_time, options);
    let mut event = NormalizedEvent {
        event_date: record.event_time.format("%Y-%m-%d").to_string(),
        event_id: record.event_id.clone(),
        event_time: format_time(record.event_time),
        event_name: record.event_name.clone(),
        event_source: record.event_source.clone(),
        event_type: event_type(&record.event_source).to_string(),
        user_name: user_name(record),
        user_identity_type: id.identity_type.clone(),
        user_arn: id.arn.clone(),
        principal_id: id.principal_id.clone(),
        account_id: id
            .account_id
            .clone()
            .or_else(|| record.recipient_account_id.clone()),
        access_key_id: id.access_key_id.clone(),
        session_issuer: issuer.and_then(|i| i.user_name.clone()),
        session_issuer_arn: issuer.and_then(|i| i.arn.clone()),
        invoked_by: id.invoked_by.clone(),
        mfa_authenticated,
        mfa_used,
        aws_region: record
            .aws_region
            .clone()
            .unwrap_or_else(|| "unknown".to_string()),
        source_ip: record.source_ip_address.clone(),
        user_agent: record.user_agent.clone(),
        request_parameters: json_text(&record.request_parameters),
        response_elements: json_text(&record.response_elements),
        additional_event_data: json_text(&record.additional_event_data),
        error_code: record.error_code.clone(),
        error_message: record.error_message.clone(),
        read_only: record.read_only,
        recipient_account_id: record.recipient_account_id.clone(),
        ttl,
        truncated_fields: Vec::new(),
        original_size: None,
        parse_error: None,
        raw_record: None,
        raw_s3_key: None,
    };
    fit_item(&mut event, ITEM_BUDGET_BYTES);
    event
}

/// The summary fields LookupEvents returns beside each record.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSummary {
    pub event_id: String,
    pub event_time: DateTime<Utc>,
    pub event_name: String,
    pub event_source: String,
    pub username: Option<String>,
}

/// Keeps an event whose full record cannot be read (not JSON, a required field missing) from
/// LookupEvents' summary fields, with the reason and the raw text, instead of dropping it.
pub fn normalize_unparsed(
    summary: &EventSummary,
    region: &str,
    raw: Option<&str>,
    error: &str,
    options: NormalizeOptions,
) -> NormalizedEvent {
    let mut event = NormalizedEvent {
        event_date: summary.event_time.format("%Y-%m-%d").to_string(),
        event_id: summary.event_id.clone(),
        event_time: format_time(summary.event_time),
        event_name: summary.event_name.clone(),
        event_source: summary.event_source.clone(),
        event_type: event_type(&summary.event_source).to_string(),
        user_name: summary
            .username
            .clone()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| "unknown".to_string()),
        aws_region: region.to_string(),
        ttl: retention_ttl(summary.event_time, options),
        parse_error: Some(error.chars().take(1000).collect()),
        raw_record: raw.map(String::from),
        // Everything else is unknown without the record.
        ..Default::default()
    };
    fit_item(&mut event, ITEM_BUDGET_BYTES);
    event
}

impl NormalizedEvent {
    /// The event's account: the recipient account, else the caller's (`None` when neither is
    /// known).
    pub fn account(&self) -> Option<&str> {
        [&self.recipient_account_id, &self.account_id]
            .into_iter()
            .flatten()
            .map(|s| s.trim())
            .find(|s| !s.is_empty())
    }

    /// The item's attributes, absent optional values omitted (DynamoDB stores no nulls).
    pub fn attributes(&self) -> Vec<(&'static str, AttrValue)> {
        let mut out = vec![
            ("event_date", AttrValue::S(self.event_date.clone())),
            ("event_id", AttrValue::S(self.event_id.clone())),
            ("event_time", AttrValue::S(self.event_time.clone())),
            ("event_name", AttrValue::S(self.event_name.clone())),
            ("event_source", AttrValue::S(self.event_source.clone())),
            ("event_type", AttrValue::S(self.event_type.clone())),
            ("user_name", AttrValue::S(self.user_name.clone())),
            ("aws_region", AttrValue::S(self.aws_region.clone())),
        ];
        let optional_strings = [
            ("user_identity_type", &self.user_identity_type),
            ("user_arn", &self.user_arn),
            ("principal_id", &self.principal_id),
            ("account_id", &self.account_id),
            ("access_key_id", &self.access_key_id),
            ("session_issuer", &self.session_issuer),
            ("session_issuer_arn", &self.session_issuer_arn),
            ("invoked_by", &self.invoked_by),
            ("source_ip", &self.source_ip),
            ("user_agent", &self.user_agent),
            ("request_parameters", &self.request_parameters),
            ("response_elements", &self.response_elements),
            ("additional_event_data", &self.additional_event_data),
            ("error_code", &self.error_code),
            ("error_message", &self.error_message),
            ("recipient_account_id", &self.recipient_account_id),
            ("parse_error", &self.parse_error),
            ("raw_record", &self.raw_record),
            ("raw_s3_key", &self.raw_s3_key),
        ];
        for (name, value) in optional_strings {
            if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
                out.push((name, AttrValue::S(v.clone())));
            }
        }
        for (name, value) in [
            ("mfa_authenticated", self.mfa_authenticated),
            ("mfa_used", self.mfa_used),
            ("read_only", self.read_only),
        ] {
            if let Some(b) = value {
                out.push((name, AttrValue::Bool(b)));
            }
        }
        if let Some(ttl) = self.ttl {
            out.push(("ttl", AttrValue::N(ttl.to_string())));
        }
        if !self.truncated_fields.is_empty() {
            out.push((
                "truncated_fields",
                AttrValue::List(self.truncated_fields.clone()),
            ));
        }
        if let Some(size) = self.original_size {
            out.push(("original_size", AttrValue::N(size.to_string())));
        }
        out
    }

    /// The item's size as DynamoDB counts it: attribute names plus values.
    pub fn dynamodb_size(&self) -> usize {
        self.attributes()
            .iter()
            .map(|(name, value)| name.len() + value.dynamodb_size())
            .sum()
    }

    /// Whether the 400 KB guard shortened this item.
    pub fn is_truncated(&self) -> bool {
        !self.truncated_fields.is_empty()
    }
}

/// Marker appended to a truncated field.
const TRUNCATION_MARK: &str = "…[truncated]";

/// DynamoDB's size limit for a partition-key value; `user_name` and `event_name` are the
/// partition keys of the table's two indexes, and DynamoDB rejects an item whose index key
/// value is longer.
pub const MAX_INDEX_KEY_BYTES: usize = 2048;

/// Cuts `text` to at most `max` bytes (on a character boundary), the mark included.
fn cut_to(text: &mut String, max: usize) {
    let mut cut = max.saturating_sub(TRUNCATION_MARK.len());
    while cut > 0 && !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(TRUNCATION_MARK);
}

fn present<'a>(
    (name, field): (&'static str, &'a mut Option<String>),
) -> Option<(&'static str, &'a mut String)> {
    field.as_mut().map(|f| (name, f))
}

/// The longest of `fields` that can still be cut.
fn largest<'a>(
    fields: impl IntoIterator<Item = (&'static str, &'a mut String)>,
) -> Option<(&'static str, &'a mut String)> {
    fields
        .into_iter()
        .filter(|(_, f)| f.len() > TRUNCATION_MARK.len())
        .max_by_key(|(_, f)| f.len())
}

/// Shrinks the largest free-text fields until the item fits `budget` bytes, recording which
/// fields were cut and the original size. Keys are never touched, so a truncated event is
/// still found by every index and query; identity fields are cut only when the free text is
/// gone and one of them alone overflows the item. The index keys `user_name` and `event_name`
/// are cut to [`MAX_INDEX_KEY_BYTES`] (real ones are far shorter).
pub fn fit_item(event: &mut NormalizedEvent, budget: usize) {
    let original = event.dynamodb_size();
    for (name, key) in [
        ("user_name", &mut event.user_name),
        ("event_name", &mut event.event_name),
    ] {
        if key.len() > MAX_INDEX_KEY_BYTES {
            cut_to(key, MAX_INDEX_KEY_BYTES);
            event.truncated_fields.push(name.to_string());
        }
    }
    if event.truncated_fields.is_empty() && original <= budget {
        return;
    }
    event.original_size = Some(original);
    loop {
        let size = event.dynamodb_size();
        if size <= budget {
            return;
        }
        let free_text: [(&'static str, &mut Option<String>); 6] = [
            ("raw_record", &mut event.raw_record),
            ("request_parameters", &mut event.request_parameters),
            ("response_elements", &mut event.response_elements),
            ("additional_event_data", &mut event.additional_event_data),
            ("user_agent", &mut event.user_agent),
            ("error_message", &mut event.error_message),
        ];
        let last_resort: [(&'static str, &mut Option<String>); 12] = [
            ("user_arn", &mut event.user_arn),
            ("principal_id", &mut event.principal_id),
            ("account_id", &mut event.account_id),
            ("access_key_id", &mut event.access_key_id),
            ("session_issuer", &mut event.session_issuer),
            ("session_issuer_arn", &mut event.session_issuer_arn),
            ("invoked_by", &mut event.invoked_by),
            ("user_identity_type", &mut event.user_identity_type),
            ("source_ip", &mut event.source_ip),
            ("error_code", &mut event.error_code),
            ("recipient_account_id", &mut event.recipient_account_id),
            ("parse_error", &mut event.parse_error),
        ];
        let chosen = match largest(free_text.into_iter().filter_map(present)) {
            Some(field) => Some(field),
            None => largest(last_resort.into_iter().filter_map(present).chain([
                ("event_source", &mut event.event_source),
                ("aws_region", &mut event.aws_region),
            ])),
        };
        let Some((name, text)) = chosen else {
            return; // nothing left to cut: the caller sees the size and reports it
        };
        let excess = size - budget + TRUNCATION_MARK.len() + 16;
        cut_to(
            text,
            text.len().saturating_sub(excess) + TRUNCATION_MARK.len(),
        );
        if !event.truncated_fields.iter().any(|f| f == name) {
            event.truncated_fields.push(name.to_string());
        }
    }
}

/// The events-table key of a normalised event.
pub fn event_key(event: &NormalizedEvent) -> (String, String) {
    (event.event_date.clone(), event.event_id.clone())
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` back into a time.
pub fn parse_item_time(text: &str) -> Option<DateTime<Utc>> {
    crate::record::parse_time(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(v: Value) -> CloudTrailRecord {
        CloudTrailRecord::from_value(v).unwrap()
    }

    fn base(event_name: &str, identity: Value) -> Value {
        json!({"eventID": "id-1", "eventTime": "2024-01-15T23:59:59Z",
               "eventSource": "sts.amazonaws.com", "eventName": event_name,
               "awsRegion": "eu-west-1", "userIdentity": identity})
    }

    #[test]
    fn assume_role_uses_target_role_name() {
        let mut v = base(
            "AssumeRole",
            json!({"type": "IAMUser", "userName": "alice"}),
        );
        v["requestParameters"] = json!({"roleArn": "arn:aws:iam::111122223333:role/team/Deployer", "roleSessionName": "s"});
        assert_eq!(user_name(&record(v)), "Deployer");
        let mut saml = base("AssumeRoleWithSAML", json!({"type": "SAMLUser"}));
        saml["requestParameters"] = json!({"roleArn": "arn:aws:iam::1:role/Admins"});
        assert_eq!(user_name(&record(saml)), "Admins");
        let mut denied = base("AssumeRole", json!({"type": "IAMUser", "userName": "bert"}));
        denied["errorCode"] = json!("AccessDenied");
        denied["errorMessage"] = json!("User: arn:aws:iam::1:user/bert is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::1:role/Secret");
        assert_eq!(user_name(&record(denied)), "Secret");
    }

    #[test]
    fn console_login_root_and_user() {
        let root = base(
            "ConsoleLogin",
            json!({"type": "Root", "arn": "arn:aws:iam::1:root", "principalId": "1"}),
        );
        assert_eq!(user_name(&record(root)), "root");
        let user = base(
            "ConsoleLogin",
            json!({"type": "IAMUser", "userName": "bob", "arn": "arn:aws:iam::1:user/bob"}),
        );
        assert_eq!(user_name(&record(user)), "bob");
    }

    #[test]
    fn fallbacks_in_order() {
        let assumed = base(
            "GetCallerIdentity",
            json!({"type": "AssumedRole", "arn": "arn:aws:sts::1:assumed-role/Ops/sess",
                   "sessionContext": {"sessionIssuer": {"userName": "Ops", "arn": "arn:aws:iam::1:role/Ops"}}}),
        );
        assert_eq!(user_name(&record(assumed)), "Ops");
        let root_api = base(
            "ListUsers",
            json!({"type": "Root", "arn": "arn:aws:iam::1:root"}),
        );
        assert_eq!(user_name(&record(root_api)), "root");
        let service = base(
            "AssumeRole",
            json!({"type": "AWSService", "invokedBy": "lambda.amazonaws.com"}),
        );
        assert_eq!(user_name(&record(service)), "lambda.amazonaws.com");
        let nothing = base("Foo", json!({}));
        assert_eq!(user_name(&record(nothing)), "unknown");
        let account = base(
            "Foo",
            json!({"type": "AWSAccount", "accountId": "999988887777"}),
        );
        assert_eq!(user_name(&record(account)), "999988887777");
    }

    #[test]
    fn normalise_fills_every_attribute() {
        let mut v = base(
            "AssumeRole",
            json!({"type": "AssumedRole", "principalId": "AROA:s", "accountId": "111122223333",
                   "accessKeyId": "ASIAX", "arn": "arn:aws:sts::111122223333:assumed-role/Ops/s",
                   "sessionContext": {"sessionIssuer": {"userName": "Ops", "arn": "arn:aws:iam::111122223333:role/Ops"},
                                      "attributes": {"mfaAuthenticated": "true"}}}),
        );
        v["requestParameters"] = json!({"roleArn": "arn:aws:iam::111122223333:role/Target"});
        v["responseElements"] = json!({"assumedRoleUser": {"arn": "x"}});
        v["errorCode"] = json!("AccessDenied");
        v["errorMessage"] = json!("no");
        v["sourceIPAddress"] = json!("2001:db8::1");
        v["userAgent"] = json!("aws-cli/2");
        v["readOnly"] = json!(false);
        let e = normalize(
            &record(v),
            NormalizeOptions {
                retention_days: Some(30),
            },
        );
        assert_eq!(e.event_date, "2024-01-15");
        assert_eq!(e.event_time, "2024-01-15T23:59:59Z");
        assert_eq!(e.event_type, "sts");
        assert_eq!(e.user_name, "Target");
        assert_eq!(e.session_issuer.as_deref(), Some("Ops"));
        assert_eq!(e.mfa_authenticated, Some(true));
        assert_eq!(e.source_ip.as_deref(), Some("2001:db8::1"));
        assert_eq!(
            e.request_parameters.as_deref(),
            Some(r#"{"roleArn":"arn:aws:iam::111122223333:role/Target"}"#)
        );
        assert_eq!(e.ttl, Some(1705363199 + 30 * 86400));
        let names: Vec<_> = e.attributes().into_iter().map(|(n, _)| n).collect();
        for n in [
            "event_date",
            "event_id",
            "error_code",
            "error_message",
            "user_agent",
            "ttl",
            "access_key_id",
            "response_elements",
            "account_id",
            "read_only",
        ] {
            assert!(names.contains(&n), "missing {n}");
        }
    }

    #[test]
    fn console_login_mfa_used() {
        let mut v = base(
            "ConsoleLogin",
            json!({"type": "IAMUser", "userName": "bob"}),
        );
        v["additionalEventData"] = json!({"MFAUsed": "No"});
        assert_eq!(
            normalize(&record(v), NormalizeOptions::default()).mfa_used,
            Some(false)
        );
    }

    #[test]
    fn oversized_event_is_truncated_not_dropped() {
        let mut v = base(
            "PutRolePolicy",
            json!({"type": "IAMUser", "userName": "bob"}),
        );
        v["requestParameters"] = json!({"policyDocument": "x".repeat(600 * 1024)});
        v["responseElements"] = json!({"note": "é".repeat(10 * 1024)});
        let r = record(v);
        let e = normalize(&r, NormalizeOptions::default());
        assert!(e.dynamodb_size() <= DYNAMODB_MAX_ITEM_BYTES);
        assert_eq!(e.truncated_fields, vec!["request_parameters".to_string()]);
        assert!(e.original_size.unwrap() > 600 * 1024);
        assert!(e
            .request_parameters
            .as_ref()
            .unwrap()
            .ends_with(TRUNCATION_MARK));
        assert_eq!(e.user_name, "bob");
        // A small event is untouched.
        let small = normalize(
            &record(base("GetUser", json!({}))),
            NormalizeOptions::default(),
        );
        assert!(!small.is_truncated());
        assert_eq!(small.original_size, None);
    }

    #[test]
    fn truncation_respects_char_boundaries_and_several_fields() {
        let mut v = base("PutUserPolicy", json!({"userName": "x"}));
        v["requestParameters"] = json!({"p": "ü".repeat(150 * 1024)});
        v["responseElements"] = json!({"p": "ß".repeat(150 * 1024)});
        v["userAgent"] = json!("a".repeat(150 * 1024));
        let e = normalize(&record(v), NormalizeOptions::default());
        assert!(e.dynamodb_size() <= ITEM_BUDGET_BYTES);
        assert!(e.truncated_fields.len() >= 2, "{:?}", e.truncated_fields);
    }

    #[test]
    fn oversized_identity_fields_and_index_keys_are_cut() {
        // Found by tests/fuzz_records.rs: only the free-text fields were cut, so a huge
        // userIdentity.arn (or sourceIPAddress, errorCode, ...) left the item over 400 KB,
        // and a userName or eventName over 2048 bytes made an index key DynamoDB rejects.
        let mut v = base(
            "GetUser",
            json!({"type": "IAMUser", "userName": "n".repeat(5000),
                   "arn": format!("arn:aws:iam::1:user/{}", "a".repeat(700 * 1024))}),
        );
        v["eventName"] = json!("E".repeat(3000));
        v["sourceIPAddress"] = json!("1".repeat(200 * 1024));
        v["requestParameters"] = json!({"p": "r".repeat(1000)});
        let e = normalize(&record(v), NormalizeOptions::default());
        // Free text goes first, whole; then the largest identity field, only as far as needed.
        assert_eq!(e.request_parameters.as_deref(), Some(TRUNCATION_MARK));
        assert_eq!(e.source_ip.as_ref().map(String::len), Some(200 * 1024));
        assert!(
            e.dynamodb_size() <= ITEM_BUDGET_BYTES,
            "{}",
            e.dynamodb_size()
        );
        assert!(e.user_name.len() <= MAX_INDEX_KEY_BYTES && e.user_name.starts_with("nnn"));
        assert!(e.event_name.len() <= MAX_INDEX_KEY_BYTES);
        assert!(e.user_name.ends_with(TRUNCATION_MARK));
        for f in ["user_name", "event_name", "request_parameters", "user_arn"] {
            assert!(
                e.truncated_fields.iter().any(|t| t == f),
                "{f}: {:?}",
                e.truncated_fields
            );
        }
        assert!(e
            .user_arn
            .as_ref()
            .unwrap()
            .starts_with("arn:aws:iam::1:user/aaa"));
        assert!(e.original_size.unwrap() > 900 * 1024);
        // Index keys alone: cut even though the item is small.
        let mut v = base(
            "GetUser",
            json!({"userName": "u".repeat(MAX_INDEX_KEY_BYTES + 1)}),
        );
        v["requestParameters"] = json!({"p": "kept"});
        let e = normalize(&record(v), NormalizeOptions::default());
        assert_eq!(e.truncated_fields, vec!["user_name".to_string()]);
        assert_eq!(e.request_parameters.as_deref(), Some(r#"{"p":"kept"}"#));
        assert!(e.original_size.is_some());
        // Exactly at the limit is untouched.
        let v = base(
            "GetUser",
            json!({"userName": "u".repeat(MAX_INDEX_KEY_BYTES)}),
        );
        assert!(!normalize(&record(v), NormalizeOptions::default()).is_truncated());
    }

    #[test]
    fn unparsed_event_is_kept_with_reason() {
        let summary = EventSummary {
            event_id: "abc".into(),
            event_time: crate::record::parse_time("2024-05-01T10:00:00Z").unwrap(),
            event_name: "CreateUser".into(),
            event_source: "iam.amazonaws.com".into(),
            username: Some("mallory".into()),
        };
        let e = normalize_unparsed(
            &summary,
            "us-east-1",
            Some("{not json"),
            "bad JSON",
            NormalizeOptions::default(),
        );
        assert_eq!(
            (
                e.event_date.as_str(),
                e.event_type.as_str(),
                e.user_name.as_str()
            ),
            ("2024-05-01", "iam", "mallory")
        );
        assert_eq!(e.raw_record.as_deref(), Some("{not json"));
        assert!(e.attributes().iter().any(|(n, _)| *n == "parse_error"));
        let huge = "x".repeat(500 * 1024);
        let e = normalize_unparsed(
            &summary,
            "us-east-1",
            Some(&huge),
            "bad",
            NormalizeOptions::default(),
        );
        assert!(e.dynamodb_size() <= DYNAMODB_MAX_ITEM_BYTES);
        assert_eq!(e.truncated_fields, vec!["raw_record".to_string()]);
    }

    #[test]
    fn arn_helpers() {
        assert_eq!(arn_last_part("arn:aws:iam::1:root"), "root");
        assert_eq!(arn_last_part("arn:aws:iam::1:user/a/b/carol"), "carol");
        assert_eq!(arn_last_part("not-an-arn"), "not-an-arn");
        assert_eq!(role_name_from_arn("arn:aws:iam::1:role/a/R"), Some("R"));
        assert_eq!(role_name_from_arn("arn:aws:iam::1:user/R"), None);
    }
}
