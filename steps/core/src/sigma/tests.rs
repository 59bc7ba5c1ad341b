//! Unit tests of the Sigma module; tests/sigma.rs runs the bundled rules over the dataset.

use serde_json::json;

use super::document::is_available;
use super::*;
use crate::normalize::{normalize, NormalizeOptions};
use crate::record::CloudTrailRecord;

fn event(v: serde_json::Value) -> NormalizedEvent {
    normalize(
        &CloudTrailRecord::from_value(v).unwrap(),
        NormalizeOptions::default(),
    )
}

fn rule(body: &str) -> String {
    format!(
        "title: Test rule\nid: 0b0e8f3c-1c55-4a53-9d1b-6a0c1b1f2a01\nlevel: high\n\
         logsource:\n  product: aws\n  service: cloudtrail\n{body}"
    )
}

fn load(text: &str) -> Result<SigmaRules, SigmaLoadErrors> {
    SigmaRules::from_texts(&[("t.yml".to_string(), text.to_string())])
}

fn reasons(text: &str) -> Vec<RejectReason> {
    load(text)
        .unwrap_err()
        .errors
        .into_iter()
        .map(|e| e.reason)
        .collect()
}

#[test]
fn severity_from_level() {
    assert_eq!(severity_for_level(Some("critical")), Severity::Critical);
    assert_eq!(severity_for_level(Some("high")), Severity::High);
    for level in [Some("medium"), Some("low"), Some("informational"), None] {
        assert_eq!(severity_for_level(level), Severity::Medium, "{level:?}");
    }
    let rules = load(&rule("detection:\n  s:\n    eventName: X\n  condition: s")).unwrap();
    let r = rules.iter().next().unwrap();
    assert_eq!(
        (r.severity, r.level.as_deref()),
        (Severity::High, Some("high"))
    );
    assert_eq!(r.rule_id(), "sigma:0b0e8f3c-1c55-4a53-9d1b-6a0c1b1f2a01");
}

#[test]
fn attack_ids_from_tags() {
    let tags: Vec<String> = [
        "attack.persistence",
        "attack.t1098.001",
        "attack.t1078",
        "attack.g0016",
        "attack.t12",
        "attack.t1098.01",
        "cve.2021-1234",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(attack_techniques(&tags), ["T1098.001", "T1078"]);
}

#[test]
fn available_fields() {
    for path in [
        "eventName",
        "userIdentity",
        "userIdentity.type",
        "userIdentity.sessionContext.sessionIssuer.arn",
        "userIdentity.sessionContext.attributes.mfaAuthenticated",
        "requestParameters",
        "requestParameters.policyArn",
        "responseElements.credentials.accessKeyId",
        "additionalEventData.MFAUsed",
        "requestParameters.items[0].name",
    ] {
        assert!(is_available(path), "{path}");
    }
    for path in [
        "eventType",
        "tlsDetails.tlsVersion",
        "resources",
        "EventName",
        "userIdentity.sessionContext.sessionIssuer.type",
        "userIdentity.sessionContext.attributes.creationDate",
        "userIdentity.onBehalfOf.userId",
        "eventName.x",
        "",
    ] {
        assert!(!is_available(path), "{path}");
    }
}

#[test]
fn document_user_name_only_for_iam_users() {
    let base = json!({"eventID": "e", "eventTime": "2024-01-01T00:00:00Z",
        "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole",
        "userIdentity": {"type": "IAMUser", "userName": "alice",
                         "arn": "arn:aws:iam::1:user/team/alice"},
        "requestParameters": {"roleArn": "arn:aws:iam::1:role/Admin"}});
    // The normalised user of an AssumeRole is the target role; the record's user is alice.
    let e = event(base.clone());
    assert_eq!(e.user_name, "Admin");
    assert_eq!(record_document(&e)["userIdentity"]["userName"], "alice");
    let mut no_arn = base.clone();
    no_arn["userIdentity"] = json!({"type": "IAMUser", "userName": "alice"});
    let doc = record_document(&event(no_arn));
    assert!(doc["userIdentity"].get("userName").is_none());
    let mut role = base;
    role["eventName"] = json!("ListUsers");
    role["userIdentity"] = json!({"type": "AssumedRole",
        "arn": "arn:aws:sts::1:assumed-role/Ops/s",
        "sessionContext": {"sessionIssuer": {"userName": "Ops", "arn": "arn:aws:iam::1:role/Ops"},
                           "attributes": {"mfaAuthenticated": "false"}}});
    let doc = record_document(&event(role));
    assert!(doc["userIdentity"].get("userName").is_none());
    assert_eq!(
        doc["userIdentity"]["sessionContext"],
        json!({"sessionIssuer": {"userName": "Ops", "arn": "arn:aws:iam::1:role/Ops"},
               "attributes": {"mfaAuthenticated": "false"}})
    );
}

#[test]
fn document_keeps_text_that_is_not_json() {
    let mut e = event(json!({"eventID": "e", "eventTime": "2024-01-01T00:00:00Z",
        "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin",
        "additionalEventData": {"MFAUsed": "No"}}));
    e.request_parameters = Some("{\"policyArn\":\"arn:aws:iam::aws:pol…[truncated]".into());
    e.additional_event_data = None;
    let doc = record_document(&e);
    assert_eq!(
        doc["requestParameters"],
        "{\"policyArn\":\"arn:aws:iam::aws:pol…[truncated]"
    );
    // MFAUsed is kept apart from additionalEventData by normalisation, and put back.
    assert_eq!(doc["additionalEventData"], json!({"MFAUsed": "No"}));
    assert!(doc.get("errorCode").is_none() && doc.get("readOnly").is_none());
}

#[test]
fn every_rejection_has_its_reason() {
    let cases: Vec<(String, RejectReason)> = vec![
        ("".into(), RejectReason::Empty),
        ("title: [unclosed".into(), RejectReason::Yaml(String::new())),
        ("- a\n- b".into(), RejectReason::NotARule(String::new())),
        (
            rule("detection:\n  s:\n    eventName: X\n  condition: s\n---\ntitle: b"),
            RejectReason::SeveralDocuments(2),
        ),
        (
            rule("correlation:\n  type: event_count"),
            RejectReason::Correlation,
        ),
        (rule("filter:\n  rules: [x]"), RejectReason::Filter),
        (
            rule("action: global"),
            RejectReason::Collection("global".into()),
        ),
        (
            "title: t\nlogsource: {product: aws, service: cloudtrail}\n\
             detection:\n  s:\n    eventName: X\n  condition: s"
                .into(),
            RejectReason::MissingId,
        ),
        (
            rule("detection:\n  s:\n    eventName: X\n  condition: s").replace(
                "id: 0b0e8f3c-1c55-4a53-9d1b-6a0c1b1f2a01",
                "id: 'has space'",
            ),
            RejectReason::InvalidId("has space".into()),
        ),
        (
            rule("status: unsupported\ndetection:\n  s:\n    eventName: X\n  condition: s"),
            RejectReason::StatusUnsupported,
        ),
        (rule("tags: [attack.t1078]"), RejectReason::MissingDetection),
        (
            rule("detection:\n  s:\n    eventName: X"),
            RejectReason::MissingCondition,
        ),
        (
            rule("detection:\n  s:\n    eventName: X\n  condition: s | count() > 3"),
            RejectReason::Aggregation("s | count() > 3".into()),
        ),
        (
            rule("detection:\n  s:\n    eventName: X\n  timeframe: 5m\n  condition: s"),
            RejectReason::Timeframe,
        ),
        (
            rule("detection:\n  s:\n    eventName|foo: X\n  condition: s"),
            RejectReason::UnknownModifier {
                field: "eventName".into(),
                modifier: "foo".into(),
            },
        ),
        (
            rule("detection:\n  s:\n    userAgent|expand: '%agents%'\n  condition: s"),
            RejectReason::UnsupportedModifier {
                field: "userAgent".into(),
                modifier: "expand".into(),
                why: "",
            },
        ),
        (
            rule("detection:\n  s:\n    tlsDetails.tlsVersion: TLSv1\n  condition: s"),
            RejectReason::UnavailableField("tlsDetails.tlsVersion".into()),
        ),
        (
            rule("detection:\n  s:\n    eventName: X\n  condition: s and missing"),
            RejectReason::Engine(String::new()),
        ),
        (
            rule("detection:\n  s:\n    eventName|re: '(unclosed'\n  condition: s"),
            RejectReason::Engine(String::new()),
        ),
    ];
    for (text, expected) in cases {
        let got = reasons(&text);
        assert_eq!(got.len(), 1, "{text}\n{got:?}");
        assert_eq!(
            std::mem::discriminant(&got[0]),
            std::mem::discriminant(&expected),
            "{text}\n{got:?}"
        );
        if !matches!(
            expected,
            RejectReason::Yaml(_)
                | RejectReason::NotARule(_)
                | RejectReason::Engine(_)
                | RejectReason::UnsupportedModifier { .. }
        ) {
            assert_eq!(got[0], expected, "{text}");
        }
    }
}

#[test]
fn logsource_must_be_cloudtrail() {
    let text = |logsource: &str| {
        format!(
            "title: t\nid: a1\nlogsource: {logsource}\n\
             detection:\n  s:\n    eventName: X\n  condition: s"
        )
    };
    for (logsource, found) in [
        (
            "{product: windows, category: process_creation}",
            "product: windows, service: (none), category: process_creation",
        ),
        ("{product: aws, service: s3}", "product: aws, service: s3"),
        (
            "{product: aws, service: cloudtrail, category: x}",
            "product: aws, service: cloudtrail, category: x",
        ),
        ("null", "no logsource mapping"),
    ] {
        assert_eq!(
            reasons(&text(logsource)),
            [RejectReason::Logsource(found.into())],
            "{logsource}"
        );
    }
    let ok = text("{product: aws, service: cloudtrail, definition: 'any text'}");
    assert_eq!(load(&ok).unwrap().len(), 1);
}

#[test]
fn one_file_reports_all_its_problems() {
    let text = "title: t\nlogsource: {product: gcp}\n\
                detection:\n  s:\n    eventName|bar: X\n    eventType: Y\n  \
                condition: s | count() > 1";
    let got = reasons(text);
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(got[0], RejectReason::MissingId);
    assert!(matches!(got[1], RejectReason::Logsource(_)));
    assert!(matches!(got[2], RejectReason::Aggregation(_)));
    assert!(got.contains(&RejectReason::UnavailableField("eventType".into())));
}

#[test]
fn duplicate_ids_are_found_beside_other_problems() {
    let good = rule("detection:\n  s:\n    eventName: X\n  condition: s");
    let bad = rule("detection:\n  s:\n    eventName|foo: X\n  condition: s");
    let files = [("a.yml", &bad), ("b.yml", &good)].map(|(f, t)| (f.to_string(), t.clone()));
    let err = SigmaRules::from_texts(&files).unwrap_err();
    let got: Vec<(&str, &RejectReason)> = err
        .errors
        .iter()
        .map(|e| (e.file.as_str(), &e.reason))
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(matches!(
        got[0],
        ("a.yml", RejectReason::UnknownModifier { .. })
    ));
    assert_eq!(
        got[1],
        (
            "b.yml",
            &RejectReason::DuplicateId {
                id: "0b0e8f3c-1c55-4a53-9d1b-6a0c1b1f2a01".into(),
                first_file: "a.yml".into()
            }
        )
    );
}

#[test]
fn fieldref_targets_are_checked() {
    let text = rule(
        "detection:\n  s:\n    userAgent|fieldref: tlsDetails.clientProvidedHostHeader\n  \
         condition: s",
    );
    assert_eq!(
        reasons(&text),
        [RejectReason::UnavailableField(
            "tlsDetails.clientProvidedHostHeader".into()
        )]
    );
}

#[test]
fn engine_messages_are_cut() {
    let condition = format!("{}s{}", "(".repeat(80), ")".repeat(80));
    let text = rule(&format!(
        "detection:\n  s:\n    eventName: X\n  condition: '{condition}'"
    ));
    match &reasons(&text)[..] {
        [RejectReason::Engine(message)] => assert!(message.chars().count() <= 401, "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_panic_becomes_a_message() {
    assert_eq!(guarded(|| 7), Ok(7));
    assert_eq!(
        guarded(|| -> u8 { panic!("boom") }),
        Err("boom".to_string())
    );
    let n = 3;
    assert_eq!(
        guarded(|| -> u8 { panic!("boom {n}") }),
        Err("boom 3".to_string())
    );
}

#[test]
fn match_carries_the_alert_fields() {
    let rules = load(&rule(
        "description: d\ntags: [attack.t1098.001]\n\
         detection:\n  s:\n    userIdentity.type: IAMUser\n  condition: s",
    ))
    .unwrap();
    let e = event(json!({"eventID": "e", "eventTime": "2024-01-01T00:00:00Z",
        "eventSource": "iam.amazonaws.com", "eventName": "CreateUser",
        "userIdentity": {"type": "IAMUser", "userName": "bob"}}));
    let m = rules.evaluate(&e);
    assert_eq!(m.len(), 1);
    let m = &m[0];
    assert_eq!(m.rule_id(), "sigma:0b0e8f3c-1c55-4a53-9d1b-6a0c1b1f2a01");
    assert_eq!(m.summary, "Sigma rule Test rule matched CreateUser by bob");
    assert_eq!(
        (m.severity, m.file.as_str(), m.description.as_deref()),
        (Severity::High, "t.yml", Some("d"))
    );
    assert_eq!(m.attack, ["T1098.001"]);
    assert_eq!(m.context[0], ("Sigma Rule".into(), m.id.clone()));
    assert!(SigmaRules::default().evaluate(&e).is_empty());
}
