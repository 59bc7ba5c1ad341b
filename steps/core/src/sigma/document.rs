//! The CloudTrail record a Sigma rule sees, rebuilt from a normalised event.
//!
//! Rules are written against CloudTrail's field names (`eventName`, `userIdentity.type`,
//! `requestParameters.policyArn`), while the tracker keeps [`NormalizedEvent`]s. This module
//! puts the normalised fields back where CloudTrail has them. Fields the normalised event does
//! not keep cannot be rebuilt; [`is_available`] tells which paths exist, and the loader
//! rejects a rule that names any other (docs/sigma.md, "Fields a rule can use").

use serde_json::{Map, Value};

use crate::normalize::{arn_last_part, NormalizedEvent};

/// Top-level CloudTrail fields a rule can name.
pub const TOP_LEVEL_FIELDS: [&str; 14] = [
    "eventID",
    "eventTime",
    "eventName",
    "eventSource",
    "awsRegion",
    "sourceIPAddress",
    "userAgent",
    "errorCode",
    "errorMessage",
    "readOnly",
    "recipientAccountId",
    "requestParameters",
    "responseElements",
    "additionalEventData",
];

/// `userIdentity` fields a rule can name (besides `userIdentity` itself).
pub const USER_IDENTITY_FIELDS: [&str; 13] = [
    "type",
    "arn",
    "principalId",
    "accountId",
    "accessKeyId",
    "userName",
    "invokedBy",
    "sessionContext",
    "sessionContext.sessionIssuer",
    "sessionContext.sessionIssuer.userName",
    "sessionContext.sessionIssuer.arn",
    "sessionContext.attributes",
    "sessionContext.attributes.mfaAuthenticated",
];

/// Fields kept whole, so that any path below them exists.
const FREE_FORM: [&str; 3] = [
    "requestParameters",
    "responseElements",
    "additionalEventData",
];

/// Whether a Sigma field path names something [`record_document`] can hold. Array selectors
/// (`items[0]`) below the free-form fields are part of the path and allowed.
pub fn is_available(path: &str) -> bool {
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    match (head, rest) {
        ("userIdentity", None) => true,
        ("userIdentity", Some(rest)) => USER_IDENTITY_FIELDS.contains(&rest),
        (head, None) => TOP_LEVEL_FIELDS.contains(&head),
        (head, Some(_)) => FREE_FORM.contains(&head),
    }
}

/// The CloudTrail record shape of `event`: every field the normalised event keeps, under its
/// CloudTrail name. Absent values are left out (never `null`), as CloudTrail does for most.
///
/// - `requestParameters`, `responseElements` and `additionalEventData` are parsed back from
///   their compact JSON; text that is not JSON (a field cut by the 400 KB guard ends in
///   `…[truncated]`) stays a string, so paths below it do not match.
/// - `userIdentity.userName` is set for `IAMUser` identities only (from the user ARN, or the
///   event's user name outside `AssumeRole*`, whose user name is the target role).
/// - `userIdentity.accountId` is the normalised `account_id`, which falls back to
///   `recipientAccountId` when the identity has none.
/// - `sessionContext.attributes.mfaAuthenticated` is `"true"`/`"false"` text and
///   `additionalEventData.MFAUsed` is `"Yes"`/`"No"`, as CloudTrail writes them.
pub fn record_document(event: &NormalizedEvent) -> Value {
    let mut doc = Map::new();
    doc.insert("eventID".into(), text(&event.event_id));
    doc.insert("eventTime".into(), text(&event.event_time));
    doc.insert("eventName".into(), text(&event.event_name));
    doc.insert("eventSource".into(), text(&event.event_source));
    doc.insert("awsRegion".into(), text(&event.aws_region));
    put(&mut doc, "sourceIPAddress", &event.source_ip);
    put(&mut doc, "userAgent", &event.user_agent);
    put(&mut doc, "errorCode", &event.error_code);
    put(&mut doc, "errorMessage", &event.error_message);
    if let Some(read_only) = event.read_only {
        doc.insert("readOnly".into(), Value::Bool(read_only));
    }
    put(&mut doc, "recipientAccountId", &event.recipient_account_id);
    doc.insert("userIdentity".into(), Value::Object(user_identity(event)));
    for (name, field) in [
        ("requestParameters", &event.request_parameters),
        ("responseElements", &event.response_elements),
        ("additionalEventData", &event.additional_event_data),
    ] {
        if let Some(json) = field {
            doc.insert(name.into(), parse_json(json));
        }
    }
    if let Some(used) = event.mfa_used {
        let data = doc
            .entry("additionalEventData")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(data) = data {
            data.entry("MFAUsed")
                .or_insert_with(|| text(if used { "Yes" } else { "No" }));
        }
    }
    Value::Object(doc)
}

fn user_identity(event: &NormalizedEvent) -> Map<String, Value> {
    let mut id = Map::new();
    put(&mut id, "type", &event.user_identity_type);
    put(&mut id, "principalId", &event.principal_id);
    put(&mut id, "arn", &event.user_arn);
    put(&mut id, "accountId", &event.account_id);
    put(&mut id, "accessKeyId", &event.access_key_id);
    if event.user_identity_type.as_deref() == Some("IAMUser") {
        let from_arn = event
            .user_arn
            .as_deref()
            .filter(|arn| arn.contains(":user/"))
            .map(arn_last_part);
        let from_event =
            Some(event.user_name.as_str()).filter(|_| !event.event_name.starts_with("AssumeRole"));
        if let Some(name) = from_arn.or(from_event) {
            id.insert("userName".into(), text(name));
        }
    }
    put(&mut id, "invokedBy", &event.invoked_by);
    let mut issuer = Map::new();
    put(&mut issuer, "userName", &event.session_issuer);
    put(&mut issuer, "arn", &event.session_issuer_arn);
    let mut context = Map::new();
    if !issuer.is_empty() {
        context.insert("sessionIssuer".into(), Value::Object(issuer));
    }
    if let Some(mfa) = event.mfa_authenticated {
        let mut attributes = Map::new();
        attributes.insert("mfaAuthenticated".into(), text(&mfa.to_string()));
        context.insert("attributes".into(), Value::Object(attributes));
    }
    if !context.is_empty() {
        id.insert("sessionContext".into(), Value::Object(context));
    }
    id
}

fn text(s: &str) -> Value {
    Value::String(s.to_string())
}

fn put(map: &mut Map<String, Value>, name: &str, value: &Option<String>) {
    if let Some(v) = value {
        map.insert(name.to_string(), text(v));
    }
}

/// The JSON value of `json`, or the text itself when it is not JSON.
fn parse_json(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or_else(|_| text(json))
}
