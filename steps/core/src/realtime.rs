//! The near-real-time path's domain (docs/realtime.md): the EventBridge events CloudTrail
//! publishes, the narrow rule pattern that selects ours, and which collection source an event
//! belongs to. The Realtime step (`iamtrail-aws`) runs the same normalisation, filters, rules
//! and outbox as Collect on each event; this module has no I/O.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};

pub use crate::targets::source_of;

/// `detail-type` of a CloudTrail API call published to EventBridge.
pub const API_CALL: &str = "AWS API Call via CloudTrail";
/// `detail-type` of a console sign-in event published to EventBridge.
pub const CONSOLE_SIGNIN: &str = "AWS Console Signin via CloudTrail";

/// The STS calls any built-in rule reads (only `federation-token`; the root user's STS calls
/// match through the root branch). The rule pattern invokes Realtime for these STS calls
/// only, so that the many `AssumeRole` calls of services never invoke it. A test checks that
/// no rule fires on another STS call of a non-root caller.
pub const STS_EVENT_NAMES: &[&str] = &["GetFederationToken"];

/// The event sources whose every (non-read-only) call the pattern selects.
pub const PATTERN_SOURCES: &[&str] = &[
    "iam.amazonaws.com",
    "signin.amazonaws.com",
    "sso.amazonaws.com",
    "sso-directory.amazonaws.com",
    "identitystore.amazonaws.com",
];

/// What the rule pattern selects beyond [`PATTERN_SOURCES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternOptions {
    /// The STS calls to select (default [`STS_EVENT_NAMES`]; users add the names their Sigma
    /// rules read). Empty: no STS call.
    pub sts_event_names: Vec<String>,
    /// Every call of the root user, in any service (when the `root` source is collected).
    pub root: bool,
}

impl Default for PatternOptions {
    fn default() -> Self {
        PatternOptions {
            sts_event_names: STS_EVENT_NAMES.iter().map(|s| s.to_string()).collect(),
            root: true,
        }
    }
}

/// The EventBridge rule pattern of the Realtime function (the template writes the same one;
/// `tests/template.rs` compares them).
pub fn event_pattern(options: &PatternOptions) -> Value {
    let mut branches = vec![json!({"detail": {"eventSource": PATTERN_SOURCES}})];
    if !options.sts_event_names.is_empty() {
        branches.push(json!({"detail": {
            "eventSource": ["sts.amazonaws.com"],
            "eventName": options.sts_event_names,
        }}));
    }
    if options.root {
        branches.push(json!({"detail": {"userIdentity": {"type": ["Root"]}}}));
    }
    let mut pattern = json!({"detail-type": [API_CALL, CONSOLE_SIGNIN]});
    // EventBridge refuses an `$or` of one branch: that branch's fields go in directly.
    match branches.len() {
        1 => pattern["detail"] = branches.remove(0)["detail"].take(),
        _ => pattern["$or"] = Value::Array(branches),
    }
    pattern
}

/// Whether `event` matches an EventBridge `pattern`, for the subset of the pattern language
/// [`event_pattern`] uses: objects of fields, arrays of exact values (a field holding an array
/// matches when any element does), and `$or` over sub-patterns. Anything else never matches.
pub fn matches_pattern(pattern: &Value, event: &Value) -> bool {
    let Some(fields) = pattern.as_object() else {
        return false;
    };
    fields.iter().all(|(key, wanted)| {
        if key == "$or" {
            return wanted
                .as_array()
                .is_some_and(|subs| subs.iter().any(|p| matches_pattern(p, event)));
        }
        let Some(value) = event.get(key) else {
            return false;
        };
        match wanted {
            Value::Object(_) => matches_pattern(wanted, value),
            Value::Array(allowed) => match value {
                Value::Array(items) => items.iter().any(|v| allowed.contains(v)),
                v => allowed.contains(v),
            },
            _ => false,
        }
    })
}

/// The EventBridge event CloudTrail publishes for a record, as a rule in the `ENABLED` state
/// sees it; `None` for what such a rule never sees: read-only calls (`readOnly: true`; those
/// need the `ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS` state) and event types other than
/// API calls and console sign-ins. Used by the local stack's replay and the tests.
pub fn envelope(record: &Value) -> Option<Value> {
    let text = |k: &str| record.get(k).and_then(Value::as_str);
    let detail_type = match text("eventType") {
        Some("AwsConsoleSignIn") => CONSOLE_SIGNIN,
        Some("AwsApiCall") | None => API_CALL,
        Some(_) => return None,
    };
    let read_only = match record.get("readOnly") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    if read_only {
        return None;
    }
    let event_source = text("eventSource")?;
    let service = event_source
        .strip_suffix(".amazonaws.com")
        .unwrap_or(event_source);
    let mut event = Map::new();
    event.insert("version".into(), json!("0"));
    event.insert("id".into(), json!(envelope_id(text("eventID")?)));
    event.insert("detail-type".into(), json!(detail_type));
    event.insert("source".into(), json!(format!("aws.{service}")));
    event.insert("account".into(), json!(text("recipientAccountId")));
    event.insert("time".into(), json!(text("eventTime")?));
    event.insert("region".into(), json!(text("awsRegion")));
    event.insert("resources".into(), json!([]));
    event.insert("detail".into(), record.clone());
    Some(Value::Object(event))
}

/// An EventBridge event id (a UUID of its own, not the record's `eventID`), derived from the
/// record's id so that a replay is reproducible.
fn envelope_id(event_id: &str) -> String {
    // FNV-1a, twice with different offsets, gives 128 bits to print as a UUID.
    let hash = |offset: u64| {
        event_id.bytes().fold(offset, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let (a, b) = (hash(0xcbf2_9ce4_8422_2325), hash(0x8422_2325_cbf2_9ce4));
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// One EventBridge event as Realtime receives it. `detail` is the CloudTrail record.
#[derive(Debug, Clone, Deserialize)]
pub struct RealtimeEvent {
    /// EventBridge's id of the event (not the record's `eventID`).
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    #[serde(default)]
    pub source: Option<String>,
    /// The region the event was published in (forwarded events keep their own).
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub time: Option<DateTime<Utc>>,
    pub detail: Value,
}

impl RealtimeEvent {
    /// Whether the event is a CloudTrail record Realtime reads (an API call or a console
    /// sign-in).
    pub fn is_cloudtrail(&self) -> bool {
        self.detail_type == API_CALL || self.detail_type == CONSOLE_SIGNIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::CloudTrailRecord;
    use crate::source::Source;
    use crate::Settings;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_pairs(pairs).unwrap()
    }

    fn record(source: &str, name: &str, identity: &str, region: &str) -> Value {
        json!({
            "eventVersion": "1.08",
            "eventID": "6a7ab2c1-0000-4000-8000-000000000001",
            "eventTime": "2026-11-30T10:00:00Z",
            "eventSource": source,
            "eventName": name,
            "eventType": if source == "signin.amazonaws.com" { "AwsConsoleSignIn" } else { "AwsApiCall" },
            "awsRegion": region,
            "readOnly": false,
            "recipientAccountId": "111122223333",
            "userIdentity": {"type": identity, "accountId": "111122223333"},
        })
    }

    fn selected(pattern: &Value, r: &Value) -> bool {
        envelope(r).is_some_and(|e| matches_pattern(pattern, &e))
    }

    #[test]
    fn the_pattern_selects_tracked_sources_sts_names_and_root() {
        let pattern = event_pattern(&PatternOptions::default());
        for (source, name) in [
            ("iam.amazonaws.com", "CreateUser"),
            ("signin.amazonaws.com", "ConsoleLogin"),
            ("sso.amazonaws.com", "CreatePermissionSet"),
            ("sso-directory.amazonaws.com", "AddMemberToGroup"),
            ("identitystore.amazonaws.com", "CreateGroupMembership"),
            ("sts.amazonaws.com", "GetFederationToken"),
        ] {
            assert!(
                selected(&pattern, &record(source, name, "IAMUser", "us-east-1")),
                "{source} {name}"
            );
        }
        assert!(!selected(
            &pattern,
            &record("sts.amazonaws.com", "AssumeRole", "AWSService", "eu-west-1")
        ));
        assert!(!selected(
            &pattern,
            &record("kms.amazonaws.com", "CreateKey", "IAMUser", "eu-west-1")
        ));
        assert!(selected(
            &pattern,
            &record("kms.amazonaws.com", "CreateKey", "Root", "eu-west-1")
        ));
        assert!(selected(
            &pattern,
            &record("sts.amazonaws.com", "AssumeRole", "Root", "eu-west-1")
        ));
        let narrow = event_pattern(&PatternOptions {
            sts_event_names: vec![],
            root: false,
        });
        assert!(!selected(
            &narrow,
            &record("kms.amazonaws.com", "CreateKey", "Root", "eu-west-1")
        ));
        assert!(!selected(
            &narrow,
            &record(
                "sts.amazonaws.com",
                "GetFederationToken",
                "IAMUser",
                "eu-west-1"
            )
        ));
        assert!(
            narrow.get("$or").is_none(),
            "EventBridge refuses a one-branch $or"
        );
        assert_eq!(narrow["detail"]["eventSource"][0], "iam.amazonaws.com");
        assert!(selected(
            &narrow,
            &record("iam.amazonaws.com", "CreateUser", "IAMUser", "us-east-1")
        ));
    }

    #[test]
    fn envelopes_follow_what_eventbridge_publishes() {
        let r = record(
            "signin.amazonaws.com",
            "ConsoleLogin",
            "IAMUser",
            "eu-west-1",
        );
        let e = envelope(&r).unwrap();
        assert_eq!(e["detail-type"], CONSOLE_SIGNIN);
        assert_eq!(e["source"], "aws.signin");
        assert_eq!(e["region"], "eu-west-1");
        assert_eq!(e["account"], "111122223333");
        assert_eq!(e["detail"], r);
        assert_ne!(e["id"], r["eventID"]);
        assert_eq!(e["id"].as_str().unwrap().len(), 36);
        assert_eq!(envelope(&r).unwrap()["id"], e["id"], "reproducible");
        let mut read_only = record("iam.amazonaws.com", "GetUser", "IAMUser", "us-east-1");
        read_only["readOnly"] = json!(true);
        assert_eq!(envelope(&read_only), None);
        let mut service = record("iam.amazonaws.com", "X", "AWSService", "us-east-1");
        service["eventType"] = json!("AwsServiceEvent");
        assert_eq!(envelope(&service), None);
        let parsed: RealtimeEvent = serde_json::from_value(e).unwrap();
        assert!(parsed.is_cloudtrail());
    }

    #[test]
    fn matcher_handles_arrays_missing_fields_and_unknown_operators() {
        let p = json!({"a": ["x"], "b": {"c": [1]}});
        assert!(matches_pattern(&p, &json!({"a": "x", "b": {"c": 1}})));
        assert!(matches_pattern(
            &p,
            &json!({"a": ["y", "x"], "b": {"c": 1}})
        ));
        assert!(!matches_pattern(&p, &json!({"a": "x"})));
        assert!(!matches_pattern(&p, &json!({"a": "x", "b": {"c": 2}})));
        assert!(!matches_pattern(
            &json!({"a": [{"prefix": "x"}]}),
            &json!({"a": "xy"})
        ));
        assert!(!matches_pattern(&json!({"a": "x"}), &json!({"a": "x"})));
    }

    #[test]
    fn events_belong_to_the_source_the_scheduled_run_reads_them_with() {
        let all = settings(&[]);
        let parse = |v: Value| CloudTrailRecord::from_value(v).unwrap();
        let of = |r: Value, s: &Settings| source_of(&parse(r), s);
        assert_eq!(
            of(
                record("iam.amazonaws.com", "CreateUser", "IAMUser", "us-east-1"),
                &all
            ),
            Some(Source::Iam)
        );
        assert_eq!(
            of(
                record("iam.amazonaws.com", "CreateUser", "Root", "us-east-1"),
                &all
            ),
            Some(Source::Iam)
        );
        assert_eq!(
            of(
                record("kms.amazonaws.com", "CreateKey", "Root", "eu-west-1"),
                &all
            ),
            Some(Source::Root)
        );
        assert_eq!(
            of(
                record("kms.amazonaws.com", "CreateKey", "IAMUser", "eu-west-1"),
                &all
            ),
            None
        );
        // Identity Center is read in SSO_REGIONS only (us-east-1 by default).
        assert_eq!(
            of(
                record(
                    "sso.amazonaws.com",
                    "CreatePermissionSet",
                    "IAMUser",
                    "eu-west-1"
                ),
                &all
            ),
            None
        );
        let no_sts = settings(&[("PROCESS_STS_EVENTS", "false")]);
        assert_eq!(
            of(
                record(
                    "sts.amazonaws.com",
                    "GetFederationToken",
                    "IAMUser",
                    "eu-west-1"
                ),
                &no_sts
            ),
            None
        );
        assert_eq!(
            of(
                record("sts.amazonaws.com", "GetSessionToken", "Root", "eu-west-1"),
                &no_sts
            ),
            Some(Source::Root)
        );
    }

    /// Every STS API (and a few names STS records beside them): a non-root caller's call of
    /// any name the pattern leaves out must fire no rule, even with an admin policy.
    #[test]
    fn no_rule_reads_an_sts_call_the_pattern_leaves_out() {
        const STS_CALLS: &[&str] = &[
            "AssumeRole",
            "AssumeRoleWithSAML",
            "AssumeRoleWithWebIdentity",
            "AssumeRoot",
            "DecodeAuthorizationMessage",
            "GetAccessKeyInfo",
            "GetCallerIdentity",
            "GetDelegatedAccessToken",
            "GetFederationToken",
            "GetSessionToken",
            "GetWebIdentityToken",
            "SetSourceIdentity",
            "TagSession",
        ];
        let admin = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        let mut fired = Vec::new();
        for identity in ["IAMUser", "AssumedRole", "FederatedUser", "AWSService"] {
            for name in STS_CALLS {
                let mut r = record("sts.amazonaws.com", name, identity, "eu-west-1");
                r["userIdentity"]["userName"] = json!("alice");
                r["userIdentity"]["arn"] = json!("arn:aws:iam::111122223333:user/alice");
                r["requestParameters"] = json!({
                    "policy": admin,
                    "name": "bob",
                    "roleArn": "arn:aws:iam::999988887777:role/admin",
                    "roleSessionName": "x",
                });
                let event = crate::normalize(
                    &CloudTrailRecord::from_value(r).unwrap(),
                    Default::default(),
                );
                if !crate::rules::evaluate(&event).is_empty() {
                    fired.push(*name);
                }
            }
        }
        fired.sort();
        fired.dedup();
        assert_eq!(fired, STS_EVENT_NAMES, "STS calls that fire a rule");
    }
}
