//! The Sigma rules of rules/sigma/ over the bundled invictus-aws-2023 dataset (real CloudTrail
//! logs of a Stratus Red Team attack simulation; see datasets/invictus-aws-2023/LICENSE), the
//! loader's rejections, the rebuilt record, and odd event values (docs/sigma.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use iamtrail_core::normalize::{normalize, NormalizeOptions, NormalizedEvent};
use iamtrail_core::record::{read_log_dir, CloudTrailRecord};
use iamtrail_core::rules::Severity;
use iamtrail_core::sigma::{record_document, RejectReason, SigmaLoadErrors, SigmaRules};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The records the tracker collects: the tracked event sources, and anything the root user did.
fn tracked_records() -> Vec<CloudTrailRecord> {
    let dir = repo().join("datasets/invictus-aws-2023/CloudTrail");
    let mut records = Vec::new();
    for (path, log) in read_log_dir(&dir).expect("dataset directory") {
        assert!(log.rejected.is_empty(), "{path:?}: {:?}", log.rejected);
        records.extend(log.records.into_iter().filter(|r| r.is_tracked()));
    }
    assert_eq!(records.len(), 465);
    records
}

fn bundled_rules() -> SigmaRules {
    SigmaRules::load_dir(&repo().join("rules/sigma")).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn bundled_rules_fire_on_the_verified_dataset_events() {
    let rules = bundled_rules();
    let mut fired: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in tracked_records() {
        let event = normalize(&record, NormalizeOptions::default());
        let outcome = rules.evaluate_all(&event);
        assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
        for m in outcome.matches {
            fired
                .entry(m.file.clone())
                .or_default()
                .push(event.event_id.clone());
        }
    }
    for ids in fired.values_mut() {
        ids.sort();
    }
    // Each id was read in the dataset (docs/sigma.md, "The bundled rules").
    let expected: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
        (
            // ListUsers and GetAccountSummary / GetAccountAuthorizationDetails by benjamin
            // (Boto3); the ListUsers calls Terraform made are filtered out.
            "iam_account_wide_enumeration.yml",
            vec![
                "2bc34359-3da6-47f3-aa38-f53989696988",
                "4a81a319-3f88-4f76-a01d-4f206b7e1c0d",
                "6396f9c4-8607-417c-b1ca-76396779b9e7",
                "7ab75daa-659a-45e4-b43b-ea90a9cf2f6a",
            ],
        ),
        (
            // GetCallerIdentity with the EC2 role credentials stolen by Stratus (aws-sdk-go-v2);
            // the thirteen Terraform calls are filtered out.
            "sts_caller_identity_from_sdk.yml",
            vec!["bf68f8c0-590b-4740-ac89-aad0ed5dfe4f"],
        ),
        (
            // bert-jan (through Stratus) listing the access keys of malicious-iam-user and of
            // the backdoor user; the same reads by Terraform are filtered out.
            "iam_user_credential_inventory.yml",
            vec![
                "66cd7904-81c2-47c0-afcc-c0070ed31ee2",
                "b6349c43-9682-40c4-abf2-f57fb09ccaed",
            ],
        ),
        (
            // The same GetCallerIdentity: the session is named after instance i-0dbc91f429e48eeed.
            "sts_ec2_role_session_discovery.yml",
            vec!["bf68f8c0-590b-4740-ac89-aad0ed5dfe4f"],
        ),
        (
            // The thirteen AssumeRole calls denied to bert-jan.
            "sts_iam_access_denied.yml",
            vec![
                "073c57c4-c3bb-4d4c-908e-29fa31eefc0d",
                "30a952c1-cb48-458c-b023-bec3b45b68ec",
                "33199f42-3ffc-4217-9ebf-d92d16ef5557",
                "687233bb-a84e-4fe8-850d-9044b68c9603",
                "6deb168c-5255-4ffb-a480-cddcad47f63b",
                "7ce820b7-0055-47d8-999b-ccfdf1c4c81b",
                "8008b7c4-dc1f-433d-aa55-e2a3d46c7a35",
                "851f80ef-dfca-4286-998c-dd8c10885ef4",
                "9cca03e9-a7da-47cc-85a8-f5fde08125a5",
                "c1432796-7033-4913-ad4d-3052644bcfba",
                "cff65c60-62bd-45d6-a635-d0a51277d14b",
                "e4bad408-6272-4892-bf47-bd41b435ce40",
                "f738d576-f2a5-4197-889f-2e14c893f82f",
            ],
        ),
    ]);
    let got: BTreeMap<&str, Vec<&str>> = fired
        .iter()
        .map(|(f, ids)| (f.as_str(), ids.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn bundled_rules_are_well_formed() {
    let rules = bundled_rules();
    assert_eq!(rules.len(), 6);
    let mut files = Vec::new();
    for r in &rules {
        files.push(r.file.as_str());
        assert_eq!(r.id.len(), 36, "{}: a UUID id", r.file);
        assert!(!r.attack.is_empty(), "{}: no ATT&CK technique tag", r.file);
        assert!(
            r.description.is_some() && !r.falsepositives.is_empty(),
            "{}",
            r.file
        );
        assert!(r.level.is_some(), "{}", r.file);
    }
    let mut sorted = files.clone();
    sorted.sort();
    assert_eq!(files, sorted, "load_dir keeps path order");
    let severity = |file: &str| rules.iter().find(|r| r.file == file).unwrap().severity;
    // low → MEDIUM (the alert path has no LOW), medium → MEDIUM.
    assert_eq!(
        severity("sts_caller_identity_from_sdk.yml"),
        Severity::Medium
    );
    assert_eq!(severity("sts_iam_access_denied.yml"), Severity::Medium);
}

#[test]
fn match_identity_and_summary() {
    let rules = bundled_rules();
    let record = tracked_records()
        .into_iter()
        .find(|r| r.event_id == "b6349c43-9682-40c4-abf2-f57fb09ccaed")
        .unwrap();
    let matches = rules.evaluate(&normalize(&record, NormalizeOptions::default()));
    assert_eq!(matches.len(), 1);
    let m = &matches[0];
    assert_eq!(m.rule_id(), "sigma:de810874-a21d-4bab-8334-0eeef68d327d");
    assert_eq!(
        m.summary,
        "Sigma rule Credentials of Another IAM User Inventoried matched ListAccessKeys by bert-jan"
    );
    assert_eq!(
        (m.severity, m.level.as_deref(), m.file.as_str()),
        (
            Severity::Medium,
            Some("medium"),
            "iam_user_credential_inventory.yml"
        )
    );
    assert_eq!(m.attack, ["T1087.004", "T1098.001"]);
}

fn texts(files: &[(&str, &str)]) -> Vec<(String, String)> {
    files
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

const GOOD: &str = "title: Good\nid: 7d3f0c52-6a0e-4c4e-9a55-1f6f8f0f8a11\nlevel: medium\n\
    logsource:\n  product: aws\n  service: cloudtrail\n\
    detection:\n  selection:\n    eventName|startswith: Delete\n  condition: selection\n";

fn bad(id: &str, detection: &str) -> String {
    format!(
        "title: Bad\nid: {id}\nlogsource:\n  product: aws\n  service: cloudtrail\n\
         detection:\n{detection}"
    )
}

#[test]
fn unsupported_modifier_is_rejected_with_file_and_reason() {
    let rule = bad(
        "b1",
        "  selection:\n    userAgent|contains|foo: x\n  condition: selection\n",
    );
    let err = SigmaRules::from_texts(&texts(&[("custom/agent.yml", &rule)])).unwrap_err();
    assert_eq!(err.errors.len(), 1);
    assert_eq!(
        err.to_string(),
        "1 Sigma rule file rejected:\n  custom/agent.yml: field \"userAgent\": unknown \
         modifier \"foo\""
    );
    // `expand` is known to the engine, but needs placeholder values iamtrail cannot supply.
    let rule = bad(
        "b2",
        "  selection:\n    sourceIPAddress|expand: '%office_ips%'\n  condition: selection\n",
    );
    let err = SigmaRules::from_texts(&texts(&[("expand.yml", &rule)])).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(
            "expand.yml: field \"sourceIPAddress\": modifier \"expand\" is not supported"
        ),
        "{message}"
    );
    assert!(message.contains("processing pipeline"), "{message}");
}

#[test]
fn correlation_rule_is_rejected() {
    let rule = "title: Many denials\nid: c1\nlogsource:\n  product: aws\n  service: cloudtrail\n\
        correlation:\n  type: event_count\n  rules: [76e73733-30c4-4e0b-a5f0-4006ccddc06c]\n\
        \x20 group-by: [userIdentity.arn]\n  timespan: 10m\n  condition:\n    gte: 5\n";
    let err = SigmaRules::from_texts(&texts(&[("corr.yml", rule)])).unwrap_err();
    assert_eq!(err.errors[0].reason, RejectReason::Correlation);
    assert!(err
        .to_string()
        .contains("corr.yml: correlation rules are not supported"));
    // The Sigma v1 forms: an aggregation condition, a timeframe.
    let agg = bad(
        "c2",
        "  selection:\n    errorCode: AccessDenied\n  \
         condition: selection | count() by userIdentity.arn > 10\n",
    );
    let timeframe = bad(
        "c3",
        "  selection:\n    errorCode: AccessDenied\n  timeframe: 1h\n  condition: selection\n",
    );
    let err =
        SigmaRules::from_texts(&texts(&[("agg.yml", &agg), ("tf.yml", &timeframe)])).unwrap_err();
    assert_eq!(
        err.errors
            .iter()
            .map(|e| (e.file.as_str(), e.reason.clone()))
            .collect::<Vec<_>>(),
        [
            (
                "agg.yml",
                RejectReason::Aggregation("selection | count() by userIdentity.arn > 10".into())
            ),
            ("tf.yml", RejectReason::Timeframe),
        ]
    );
}

#[test]
fn other_log_sources_are_rejected() {
    let rule = GOOD.replace(
        "  product: aws\n  service: cloudtrail",
        "  product: windows\n  category: process_creation",
    );
    let err = SigmaRules::from_texts(&texts(&[("win.yml", &rule)])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "1 Sigma rule file rejected:\n  win.yml: logsource must be product: aws, service: \
         cloudtrail (found product: windows, service: (none), category: process_creation)"
    );
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("iamtrail-sigma-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn every_bad_file_is_reported() {
    let dir = TempDir::new("bad");
    dir.write("a_good.yml", GOOD);
    dir.write(
        "b_no_id.yaml",
        &GOOD.replace("id: 7d3f0c52-6a0e-4c4e-9a55-1f6f8f0f8a11\n", ""),
    );
    dir.write(
        "nested/c_dup.yml",
        &GOOD.replace("title: Good", "title: Copy"),
    );
    dir.write(
        "d_no_condition.yml",
        &bad("d1", "  selection:\n    eventName: X\n"),
    );
    dir.write("e_two_rules.yml", &format!("{GOOD}---\n{GOOD}"));
    dir.write("f_broken.yml", "title: [");
    dir.write(
        "g_field.yml",
        &bad(
            "g1",
            "  selection:\n    eventType: AwsApiCall\n  condition: selection\n",
        ),
    );
    dir.write("notes.txt", "not a rule");
    dir.write(".hidden/x.yml", "not a rule either");
    let err = SigmaRules::load_dir(&dir.0).unwrap_err();
    let got: Vec<(String, RejectReason)> = err
        .errors
        .iter()
        .map(|e| (e.file.clone(), e.reason.clone()))
        .collect();
    let reason = |file: &str| got.iter().find(|(f, _)| f == file).map(|(_, r)| r.clone());
    assert_eq!(
        err.files(),
        [
            "b_no_id.yaml",
            "d_no_condition.yml",
            "e_two_rules.yml",
            "f_broken.yml",
            "g_field.yml",
            "nested/c_dup.yml",
        ],
        "{err}"
    );
    assert_eq!(reason("b_no_id.yaml"), Some(RejectReason::MissingId));
    assert_eq!(
        reason("nested/c_dup.yml"),
        Some(RejectReason::DuplicateId {
            id: "7d3f0c52-6a0e-4c4e-9a55-1f6f8f0f8a11".into(),
            first_file: "a_good.yml".into(),
        })
    );
    assert_eq!(
        reason("d_no_condition.yml"),
        Some(RejectReason::MissingCondition)
    );
    assert_eq!(
        reason("e_two_rules.yml"),
        Some(RejectReason::SeveralDocuments(2))
    );
    assert!(matches!(
        reason("f_broken.yml"),
        Some(RejectReason::Yaml(_))
    ));
    assert_eq!(
        reason("g_field.yml"),
        Some(RejectReason::UnavailableField("eventType".into()))
    );
    let message = err.to_string();
    assert!(
        message.starts_with("6 Sigma rule files rejected:\n  b_no_id.yaml: the rule has no id\n"),
        "{message}"
    );

    // The good file alone loads; an empty directory is an empty rule set.
    let good = TempDir::new("good");
    good.write("sub/a.yml", GOOD);
    let rules = SigmaRules::load_dir(&good.0).unwrap();
    assert_eq!(
        rules.iter().map(|r| r.file.as_str()).collect::<Vec<_>>(),
        ["sub/a.yml"]
    );
    assert!(SigmaRules::load_dir(&TempDir::new("empty").0)
        .unwrap()
        .is_empty());
    let missing = SigmaRules::load_dir(Path::new("/nonexistent/sigma")).unwrap_err();
    assert!(
        matches!(missing.errors[0].reason, RejectReason::Unreadable(_)),
        "{missing}"
    );
}

fn loads(texts: &[(String, String)]) -> Result<SigmaRules, SigmaLoadErrors> {
    SigmaRules::from_texts(texts)
}

#[test]
fn record_document_round_trips_the_dataset() {
    let records = tracked_records();
    let mut compared = 0;
    for record in &records {
        let doc = record_document(&normalize(record, NormalizeOptions::default()));
        let raw = &record.raw;
        for path in [
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
            "userIdentity/type",
            "userIdentity/arn",
            "userIdentity/principalId",
            "userIdentity/accountId",
            "userIdentity/accessKeyId",
            "userIdentity/invokedBy",
            "userIdentity/sessionContext/sessionIssuer/userName",
            "userIdentity/sessionContext/sessionIssuer/arn",
            "userIdentity/sessionContext/attributes/mfaAuthenticated",
        ] {
            let pointer = format!("/{path}");
            let mut want = raw.pointer(&pointer).filter(|v| !v.is_null());
            if path == "userIdentity/accountId" && want.is_none() {
                // Normalisation fills a missing identity account with recipientAccountId.
                want = raw.get("recipientAccountId");
            }
            assert_eq!(doc.pointer(&pointer), want, "{} {path}", record.event_id);
            compared += usize::from(want.is_some());
        }
        // userName is the record's for IAM users (even on AssumeRole, whose normalised user
        // is the role), and absent otherwise.
        let user_name = doc.pointer("/userIdentity/userName");
        match record.user_identity.identity_type.as_deref() {
            Some("IAMUser") => assert_eq!(
                user_name,
                raw.pointer("/userIdentity/userName"),
                "{}",
                record.event_id
            ),
            _ => assert_eq!(user_name, None, "{}", record.event_id),
        }
    }
    assert!(compared > 465 * 8, "{compared}");
}

/// A small deterministic generator of awkward text.
struct Odd(u64);

impl Odd {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn text(&mut self) -> String {
        const PIECES: [&str; 24] = [
            "",
            "a",
            "*",
            "?",
            "\\",
            "%",
            "|",
            "\u{0}",
            "\n",
            "\u{202e}",
            "é",
            "💥",
            "İ",
            "ß",
            "AKIA",
            "aws-cli/",
            "10.0.0.1",
            "::1",
            "999999999999999999999999",
            "-1e400",
            "null",
            "true",
            "{\"a\":",
            "]]]]",
        ];
        let n = (self.next() % 12) as usize;
        (0..n)
            .map(|_| PIECES[(self.next() % PIECES.len() as u64) as usize])
            .collect()
    }

    fn json(&mut self) -> String {
        match self.next() % 6 {
            0 => self.text(),
            1 => format!("{}{}", "[".repeat(200), "]".repeat(200)),
            2 => format!("{}1{}", "{\"a\":".repeat(100), "}".repeat(100)),
            3 => {
                serde_json::json!({"userName": self.text(), "durationSeconds": self.next() % 100000,
                                   "items": [self.text(), 1, null, {"x": self.text()}]})
                .to_string()
            }
            4 => {
                serde_json::json!({"policyArn": self.text(), "n": -1.5e300, "b": true}).to_string()
            }
            _ => "x".repeat(50_000),
        }
    }

    fn maybe(&mut self) -> Option<String> {
        (!self.next().is_multiple_of(4)).then(|| self.text())
    }
}

/// Rules that use most of the engine's modifiers, over fields odd values can reach.
fn modifier_rules() -> SigmaRules {
    let detection = [
        "s:\n    userAgent|re: '^(a|b)*$'\n  condition: s",
        "s:\n    userAgent|re|i|s: 'AKIA.+'\n  condition: s",
        "s:\n    sourceIPAddress|cidr:\n      - 10.0.0.0/8\n      - '::/0'\n  condition: s",
        "s:\n    errorMessage|base64offset|contains: aws-cli\n  condition: s",
        "s:\n    userAgent|windash|contains: -x\n  condition: s",
        "s:\n    requestParameters.durationSeconds|gt: 3600\n  condition: s",
        "s:\n    requestParameters.userName|fieldref: userIdentity.userName\n  condition: s",
        "s:\n    errorCode|exists: false\n  condition: s",
        "s:\n    eventName|cased|startswith: Get\n  condition: s",
        "s:\n    userAgent|contains|all:\n      - a\n      - '*'\n  condition: s",
        "s:\n    eventName|endswith: '?'\n  condition: not s",
        "kw:\n    - '💥'\n    - 'AKIA*'\n  condition: kw",
        "s:\n    userAgent: '*\\*?'\n  condition: s",
        "s:\n    requestParameters.items: '1'\n  condition: s",
        "s:\n    eventTime|hour: 3\n  condition: s",
        "s:\n    errorMessage|utf16le|base64offset|contains: a\n  condition: s",
        "s1:\n    userIdentity.type: Root\n  s2:\n    readOnly: false\n  \
         condition: all of them or 1 of s*",
    ];
    let files: Vec<(String, String)> = detection
        .iter()
        .enumerate()
        .map(|(i, d)| {
            (
                format!("m{i:02}.yml"),
                format!(
                    "title: m{i}\nid: m-{i}\nlogsource: {{product: aws, service: cloudtrail}}\n\
                     detection:\n  {d}\n"
                ),
            )
        })
        .collect();
    loads(&files).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn odd_values_never_break_evaluation() {
    let rules = modifier_rules();
    assert_eq!(rules.len(), 17);
    let mut odd = Odd(0x9e37_79b9_7f4a_7c15);
    let mut matched = 0;
    for i in 0..1500 {
        let event = NormalizedEvent {
            event_id: odd.text(),
            event_time: if i % 2 == 0 {
                "2024-01-01T03:04:05Z".into()
            } else {
                odd.text()
            },
            event_name: odd.text(),
            event_source: odd.text(),
            user_name: odd.text(),
            user_identity_type: [
                None,
                Some("IAMUser".to_string()),
                Some("Root".into()),
                odd.maybe(),
            ][i % 4]
                .clone(),
            user_arn: odd.maybe(),
            principal_id: odd.maybe(),
            account_id: odd.maybe(),
            access_key_id: odd.maybe(),
            session_issuer: odd.maybe(),
            session_issuer_arn: odd.maybe(),
            invoked_by: odd.maybe(),
            mfa_authenticated: [None, Some(true), Some(false)][i % 3],
            mfa_used: [None, Some(true), Some(false)][(i / 3) % 3],
            aws_region: odd.text(),
            source_ip: odd.maybe(),
            user_agent: odd.maybe(),
            request_parameters: Some(odd.json()),
            response_elements: odd.maybe().map(|_| odd.json()),
            additional_event_data: odd.maybe().map(|_| odd.json()),
            error_code: odd.maybe(),
            error_message: odd.maybe(),
            read_only: [None, Some(true), Some(false)][i % 3],
            recipient_account_id: odd.maybe(),
            ..Default::default()
        };
        let doc = record_document(&event);
        assert!(doc.is_object());
        let outcome = rules.evaluate_all(&event);
        assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
        matched += outcome.matches.len();
    }
    // Not vacuous: the odd values do satisfy some rules.
    assert!(matched > 100, "{matched}");
}

#[test]
fn modifier_rules_match_what_they_say() {
    let rules = modifier_rules();
    let mut event = NormalizedEvent {
        event_id: "e".into(),
        event_time: "2024-01-01T03:04:05Z".into(),
        event_name: "GetUser".into(),
        event_source: "iam.amazonaws.com".into(),
        user_name: "alice".into(),
        user_identity_type: Some("IAMUser".into()),
        user_arn: Some("arn:aws:iam::1:user/alice".into()),
        source_ip: Some("10.1.2.3".into()),
        user_agent: Some("aws-cli/2 \u{2013}x".into()),
        request_parameters: Some(
            r#"{"userName":"alice","durationSeconds":7200,"items":["0","1"]}"#.into(),
        ),
        ..Default::default()
    };
    let fired = |event: &NormalizedEvent| -> Vec<String> {
        rules.evaluate(event).into_iter().map(|m| m.file).collect()
    };
    assert_eq!(
        fired(&event),
        [
            "m02.yml", // 10.1.2.3 is in 10.0.0.0/8
            "m04.yml", // windash: the en dash in the user agent counts as '-'
            "m05.yml", // durationSeconds 7200 > 3600
            "m06.yml", // requestParameters.userName equals userIdentity.userName
            "m07.yml", // no errorCode
            "m08.yml", // GetUser starts with Get, cased
            "m09.yml", // contains 'a', and '*' (a wildcard: anything)
            "m13.yml", // a member of the items array is '1'
            "m14.yml", // 03:04:05 is hour 3
        ]
    );
    event.event_name = "getUser".into();
    assert!(!fired(&event).contains(&"m08.yml".to_string()), "cased");
}

/// A Sigma match as an outbox record: rule id `sigma:<id>`, the built-in alerts' subject and
/// body layout, with the rule's file, level, ATT&CK techniques and description.
#[test]
fn sigma_match_becomes_an_outbox_record() {
    use iamtrail_core::outbox::sigma_alert_record;
    let rules = bundled_rules();
    let event = tracked_records()
        .into_iter()
        .find(|r| r.event_id == "b6349c43-9682-40c4-abf2-f57fb09ccaed")
        .map(|r| normalize(&r, NormalizeOptions::default()))
        .unwrap();
    let m = rules.evaluate(&event).remove(0);
    let record = sigma_alert_record(&m, &event, chrono::Utc::now());
    let rule_id = "sigma:de810874-a21d-4bab-8334-0eeef68d327d";
    assert_eq!(
        (record.alert_type.as_str(), record.rule_id.as_str()),
        (rule_id, rule_id)
    );
    assert_eq!(
        record.subject,
        "[MEDIUM] IAM Alert: Credentials of Another IAM User Inventoried"
    );
    assert_eq!(
        record.message_attributes(),
        vec![
            ("severity".to_string(), "MEDIUM".to_string()),
            ("rule_id".to_string(), rule_id.to_string()),
            ("event_name".to_string(), "ListAccessKeys".to_string()),
        ]
    );
    let body = &record.body;
    let description = m.description.as_deref().unwrap();
    let one_line = description.split_whitespace().collect::<Vec<_>>().join(" ");
    let sections = [
        "IAM Activity Alert: Credentials of Another IAM User Inventoried\n\n".to_string(),
        "Severity: MEDIUM\n".to_string(),
        "Sigma rule Credentials of Another IAM User Inventoried matched ListAccessKeys by bert-jan\n\n".to_string(),
        format!("Rule Description: {one_line}\n\n"),
        "Event Details:\n- Event Name: ListAccessKeys\n- User: bert-jan\n".to_string(),
        "- Event ID: b6349c43-9682-40c4-abf2-f57fb09ccaed\n".to_string(),
        format!("- Sigma Rule: {}\n", m.id),
        "- Rule File: iam_user_credential_inventory.yml\n".to_string(),
        "- Sigma Level: medium\n".to_string(),
        "- ATT&CK: T1087.004, T1098.001\n".to_string(),
        "- Account: 123837392027\n".to_string(),
        "\nAction Required: Review this activity in CloudTrail.".to_string(),
    ];
    let mut at = 0;
    for s in &sections {
        let found = body[at..]
            .find(s.as_str())
            .unwrap_or_else(|| panic!("{s:?} missing or out of order in:\n{body}"));
        at += found + s.len();
    }
    assert_eq!(at, body.len(), "{body}");
}

/// Values from the record (attacker-controlled) and from the rule file are shown as data in
/// a Sigma alert too: no line of theirs can add lines to the email or drive a terminal.
#[test]
fn sigma_alert_text_shows_values_as_data() {
    use iamtrail_core::outbox::sigma_alert_record;
    let rule = "title: \"Odd\\nTitle \\u001b[31m\"\nid: 9f0e4c1a-52f6-4d43-8d7e-0a3a0d6c0b11\n\
        description: \"first line\\nsecond  line \\u001b\"\nlevel: high\n\
        logsource:\n  product: aws\n  service: cloudtrail\n\
        detection:\n  selection:\n    eventName: CreateUser\n  condition: selection\n";
    let rules = loads(&texts(&[("odd.yml", rule)])).unwrap_or_else(|e| panic!("{e}"));
    let event = NormalizedEvent {
        event_id: "e-1".into(),
        event_time: "2024-01-01T00:00:00Z".into(),
        event_name: "CreateUser".into(),
        event_source: "iam.amazonaws.com".into(),
        user_name: "mallory\n- Severity: LOW\u{1b}[0m".into(),
        aws_region: "us-east-1".into(),
        invoked_by: Some("cloudformation.amazonaws.com".into()),
        ..Default::default()
    };
    let matches = rules.evaluate(&event);
    assert_eq!(matches.len(), 1);
    let record = sigma_alert_record(&matches[0], &event, chrono::Utc::now());
    assert!(
        !record.subject.contains(['\n', '\u{1b}']),
        "{}",
        record.subject
    );
    assert!(record.subject.starts_with("[HIGH] IAM Alert: Odd Title"));
    let body = &record.body;
    assert!(!body.contains('\u{1b}'), "{body}");
    assert!(
        body.contains("by mallory\\n- Severity: LOW\\u{1b}[0m\n"),
        "{body}"
    );
    assert!(
        body.contains("\nRule Description: first line second line \\u{1b}\n"),
        "{body}"
    );
    assert!(
        body.contains("\n- Invoked By: cloudformation.amazonaws.com\n"),
        "{body}"
    );
    assert_eq!(body.matches("\n- Severity").count(), 0, "{body}");
}
