//! Alert subjects and bodies: the original script's email layout (docs/alerts.md, "The email"),
//! SNS's subject limits, and attacker-controlled strings shown as data.

use iamtrail_core::alert_text::{body, subject, test_alert, MAX_SUBJECT_CHARS, MAX_VALUE_CHARS};
use iamtrail_core::normalize::{normalize, NormalizeOptions, NormalizedEvent};
use iamtrail_core::record::CloudTrailRecord;
use iamtrail_core::rules::{evaluate, AlertMatch, Severity};
use serde_json::json;

/// The seed's example: a root console login from 90.7.221.136.
fn seed_root_login() -> NormalizedEvent {
    let record = CloudTrailRecord::from_value(json!({
        "eventVersion": "1.09",
        "userIdentity": {"type": "Root", "principalId": "111122223333",
                         "arn": "arn:aws:iam::111122223333:root", "accountId": "111122223333",
                         "accessKeyId": ""},
        "eventTime": "2025-08-10T18:26:07Z",
        "eventSource": "signin.amazonaws.com",
        "eventName": "ConsoleLogin",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "90.7.221.136",
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "requestParameters": null,
        "responseElements": {"ConsoleLogin": "Success"},
        "additionalEventData": {"LoginTo": "https://console.aws.amazon.com/console/home",
                                "MobileVersion": "No", "MFAUsed": "No"},
        "eventID": "b5636e39-f66f-4ce1-b9f1-2368c72b7fc6",
        "readOnly": false,
        "eventType": "AwsConsoleSignIn",
        "managementEvent": true,
        "recipientAccountId": "111122223333",
        "eventCategory": "Management"
    }))
    .unwrap();
    normalize(&record, NormalizeOptions::default())
}

fn one(e: &NormalizedEvent) -> AlertMatch {
    let mut m = evaluate(e);
    assert_eq!(m.len(), 1);
    m.remove(0)
}

#[test]
fn root_login_email_follows_the_seed_exactly() {
    let e = seed_root_login();
    let m = one(&e);
    assert_eq!(subject(&m), "[CRITICAL] IAM Alert: Root Account Login");
    let expected = "\
IAM Activity Alert: Root Account Login

Severity: CRITICAL
Time: 2025-08-10T18:26:07+00:00
Region: us-east-1

Root account logged in from IP: 90.7.221.136

Event Details:
- Event Name: ConsoleLogin
- User: root
- Source IP: 90.7.221.136
- Event ID: b5636e39-f66f-4ce1-b9f1-2368c72b7fc6
- Login Result: Success
- MFA Used: No
- Account: 111122223333
- User ARN: arn:aws:iam::111122223333:root
- User Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0

Action Required: Review this activity immediately in CloudTrail.";
    assert_eq!(body(&m, &e), expected);
    assert_eq!(
        iamtrail_core::outbox::alert_record(&m, &e, chrono::Utc::now()).message_attributes(),
        vec![
            ("severity".to_string(), "CRITICAL".to_string()),
            ("rule_id".to_string(), "root-activity".to_string()),
            ("event_name".to_string(), "ConsoleLogin".to_string()),
        ]
    );
}

#[test]
fn body_has_every_section_in_order_and_error_lines() {
    let mut e = seed_root_login();
    e.error_code = Some("SomethingFailed".into());
    e.error_message = Some("Failed authentication".into());
    let m = one(&e);
    assert_eq!(m.title, "Root Console Login Failure");
    let text = body(&m, &e);
    let sections = [
        "IAM Activity Alert: Root Console Login Failure\n\n",
        "Severity: CRITICAL\n",
        "Time: 2025-08-10T18:26:07+00:00\n",
        "Region: us-east-1\n\n",
        "Root account console login failed from IP: 90.7.221.136\n\n",
        "Event Details:\n",
        "- Event Name: ConsoleLogin\n",
        "- User: root\n",
        "- Source IP: 90.7.221.136\n",
        "- Event ID: b5636e39-f66f-4ce1-b9f1-2368c72b7fc6\n",
        "- Login Result: Success\n",
        "- User ARN: ",
        "- User Agent: ",
        "- Error Code: SomethingFailed\n",
        "- Error Message: Failed authentication\n\n",
        "Action Required: Review this activity immediately in CloudTrail.",
    ];
    let mut at = 0;
    for s in sections {
        let found = text[at..]
            .find(s)
            .unwrap_or_else(|| panic!("{s:?} missing or out of order in:\n{text}"));
        at += found + s.len();
    }
    assert_eq!(at, text.len(), "nothing after Action Required");
}

#[test]
fn high_alerts_ask_for_a_review_without_immediately() {
    let m = AlertMatch {
        rule_id: "user-creation",
        title: "IAM User Created".into(),
        severity: Severity::High,
        summary: "IAM user x was created by y".into(),
        context: vec![],
    };
    let text = body(&m, &seed_root_login());
    assert!(text.ends_with("\n\nAction Required: Review this activity in CloudTrail."));
    assert_eq!(subject(&m), "[HIGH] IAM Alert: IAM User Created");
}

#[test]
fn subject_is_one_short_line() {
    let mut m = one(&seed_root_login());
    m.title = format!("Very Long Title {}", "é".repeat(200));
    let s = subject(&m);
    assert!(s.chars().count() <= MAX_SUBJECT_CHARS && MAX_SUBJECT_CHARS <= 100);
    assert!(s.starts_with("[CRITICAL] IAM Alert: Very Long Title é"));
    assert!(s.ends_with('…'));

    m.title = "Line\r\nbreak\u{1b}[31m\ttab\u{2028}sep\u{0}".into();
    let s = subject(&m);
    assert_eq!(s, "[CRITICAL] IAM Alert: Line break [31m tab sep");
    assert!(!s.chars().any(|c| c.is_control()));
}

#[test]
fn attacker_strings_are_shown_as_data() {
    let mut e = seed_root_login();
    e.user_agent = Some("curl/8\u{1b}[2J\u{1b}]0;pwned\u{7}\nAction Required: none".into());
    e.user_name = "root\r\nSeverity: LOW".into();
    e.user_arn = Some("arn:aws:iam::1:user/\u{202e}gnp.exe".into());
    let m = one(&e);
    let text = body(&m, &e);
    assert!(!text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\r'));
    assert!(!text.contains('\u{202e}'));
    assert_eq!(
        text.lines().filter(|l| l.starts_with("Severity:")).count(),
        1
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("Action Required:"))
            .count(),
        1
    );
    assert!(text
        .contains("- User Agent: curl/8\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\nAction Required: none\n"));
    assert!(text.contains("- User: root\\r\\nSeverity: LOW\n"));
    assert!(text.contains("- User ARN: arn:aws:iam::1:user/\\u{202e}gnp.exe\n"));
}

#[test]
fn request_values_in_context_are_data_too() {
    // A role name smuggling a line into the trust-policy alert.
    let record = CloudTrailRecord::from_value(json!({
        "eventID": "e-1", "eventTime": "2025-08-10T10:00:00Z",
        "eventSource": "iam.amazonaws.com", "eventName": "UpdateAssumeRolePolicy",
        "awsRegion": "us-east-1", "recipientAccountId": "111122223333",
        "userIdentity": {"type": "IAMUser", "userName": "bob", "accountId": "111122223333"},
        "requestParameters": {
            "roleName": "ci\nAction Required: nothing to see",
            "policyDocument": "{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"444455556666\"},\"Action\":\"sts:AssumeRole\"}]}"
        }
    }))
    .unwrap();
    let e = normalize(&record, NormalizeOptions::default());
    let m = one(&e);
    let text = body(&m, &e);
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("Action Required:"))
            .count(),
        1
    );
    assert!(text.contains("- Role Name: ci\\nAction Required: nothing to see\n"));
    assert!(text.contains("Trust policy of role ci\\nAction Required: nothing to see"));
}

#[test]
fn long_values_are_capped() {
    let mut e = seed_root_login();
    e.user_agent = Some("A".repeat(5000));
    let m = one(&e);
    let text = body(&m, &e);
    let line = text
        .lines()
        .find(|l| l.starts_with("- User Agent: "))
        .unwrap();
    let value = line.trim_start_matches("- User Agent: ");
    assert_eq!(value.chars().count(), MAX_VALUE_CHARS);
    assert!(value.ends_with('…'));
}

#[test]
fn test_alert_is_clearly_marked() {
    let (s, b) = test_alert();
    assert_eq!(s, "[TEST] IAM Alert: test notification from iamtrail");
    assert!(s.chars().count() <= MAX_SUBJECT_CHARS);
    assert!(b.starts_with("IAM Activity Alert: Test Notification (TEST)\n\nSeverity: TEST\n"));
    assert!(b.contains("\nEvent Details:\n"));
    assert!(b.contains("This is a TEST alert"));
    assert!(b.ends_with("Action Required: None. This is a test; no activity needs review."));
}
