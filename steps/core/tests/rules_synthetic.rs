//! The alert rules over records written for the purpose, in the shapes AWS documents for
//! CloudTrail (delivery files under `tests/fixtures/`): a positive and a near-miss negative for
//! every rule.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use iamtrail_core::normalize::{normalize, NormalizeOptions, NormalizedEvent};
use iamtrail_core::record::parse_log_file;
use iamtrail_core::rules::{evaluate, rules, AlertMatch, Severity};

const OWN: &str = "111122223333";

fn fixtures() -> BTreeMap<String, NormalizedEvent> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut events = BTreeMap::new();
    for file in ["root_and_signin.json", "iam.json", "sso.json"] {
        let log = parse_log_file(&std::fs::read(dir.join(file)).unwrap()).unwrap();
        assert!(log.rejected.is_empty(), "{file}: {:?}", log.rejected);
        for r in &log.records {
            let e = normalize(r, NormalizeOptions::default());
            assert!(
                events.insert(e.event_id.clone(), e).is_none(),
                "duplicate id"
            );
        }
    }
    events
}

fn event(id: &str) -> NormalizedEvent {
    fixtures()
        .remove(id)
        .unwrap_or_else(|| panic!("no fixture {id}"))
}

fn ids(matches: &[AlertMatch]) -> Vec<&'static str> {
    matches.iter().map(|m| m.rule_id).collect()
}

fn ctx<'m>(m: &'m AlertMatch, key: &str) -> Option<&'m str> {
    m.context
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Every fixture and the rules it must fire, in rule order.
const CASES: &[(&str, &[&str])] = &[
    // root and sign-in
    ("root-console-login-success", &["root-activity"]),
    ("root-console-login-failure", &["root-activity"]),
    (
        "root-create-access-key",
        &["root-activity", "access-key-creation"],
    ),
    (
        "root-create-role-open-trust",
        &["root-activity", "role-trust-policy"],
    ),
    ("root-get-account-summary", &["root-activity"]),
    ("root-create-user-failed", &["root-activity"]),
    (
        "root-create-user-invoked-by-cfn",
        &["root-activity", "user-creation"],
    ),
    ("root-check-mfa", &["root-activity"]),
    ("user-console-login-success", &[]),
    ("role-console-login-failure", &[]),
    // IAM
    ("create-user", &["user-creation"]),
    ("create-user-denied", &[]),
    ("identitystore-create-user", &[]),
    ("attach-user-policy-admin", &["admin-policy-attachment"]),
    ("attach-group-policy-iam-full", &["admin-policy-attachment"]),
    (
        "attach-role-policy-poweruser-govcloud",
        &["admin-policy-attachment"],
    ),
    (
        "attach-role-policy-sso-master",
        &["admin-policy-attachment"],
    ),
    ("attach-user-policy-customer-copy", &[]),
    ("attach-user-policy-customer-same-name", &[]),
    ("attach-role-policy-readonly", &[]),
    ("attach-user-policy-admin-denied", &[]),
    ("put-user-policy-star", &["dangerous-inline-policy"]),
    ("put-role-policy-iam-in-list", &["dangerous-inline-policy"]),
    ("put-group-policy-sts-upper", &["dangerous-inline-policy"]),
    (
        "put-role-policy-iam-mixed-case",
        &["dangerous-inline-policy"],
    ),
    ("put-user-policy-not-action", &["dangerous-inline-policy"]),
    ("put-role-policy-url-encoded", &["dangerous-inline-policy"]),
    (
        "put-role-policy-statement-object",
        &["dangerous-inline-policy"],
    ),
    ("put-role-policy-scoped", &[]),
    ("put-user-policy-deny-star", &[]),
    ("put-role-policy-malformed", &[]),
    ("put-role-policy-no-document", &[]),
    ("put-role-policy-star-denied", &[]),
    ("create-access-key", &["access-key-creation"]),
    ("create-access-key-denied", &[]),
    ("update-access-key-inactive", &["access-key-update"]),
    ("update-access-key-denied", &[]),
    ("deactivate-mfa-device", &["mfa-deletion"]),
    ("delete-virtual-mfa-device", &["mfa-deletion"]),
    ("delete-virtual-mfa-device-conflict", &[]),
    ("create-role-wildcard-principal", &["role-trust-policy"]),
    ("create-role-federated-wildcard", &["role-trust-policy"]),
    ("create-role-cross-account-bare-id", &["role-trust-policy"]),
    ("create-role-same-account-arn", &[]),
    ("create-role-service-principal", &[]),
    ("create-role-malformed-trust", &[]),
    ("create-role-wildcard-denied", &[]),
    ("update-trust-cross-account-arn", &["role-trust-policy"]),
    (
        "update-trust-url-encoded-cross-account",
        &["role-trust-policy"],
    ),
    ("update-trust-same-account-bare-id", &[]),
    // IAM Identity Center
    (
        "sso-create-permission-set",
        &["sso-permission-set-creation"],
    ),
    ("sso-create-permission-set-denied", &[]),
    ("sso-update-permission-set", &["sso-permission-set-update"]),
    ("sso-update-permission-set-denied", &[]),
    ("sso-attach-admin-policy", &["sso-admin-policy-attachment"]),
    ("sso-attach-readonly-policy", &[]),
    ("sso-create-account-assignment", &["sso-account-assignment"]),
    ("sso-delete-account-assignment", &[]),
    ("sso-create-managed-app", &["sso-app-creation"]),
    ("sso-create-managed-app-denied", &[]),
    ("sso-delete-managed-app", &["sso-app-deletion"]),
    ("sso-delete-managed-app-denied", &[]),
];

/// For every rule, the fixtures that come closest to it without being a match.
const NEAR_MISSES: &[(&str, &[&str])] = &[
    (
        "root-activity",
        &["user-console-login-success", "role-console-login-failure"],
    ),
    (
        "user-creation",
        &[
            "create-user-denied",
            "identitystore-create-user",
            "root-create-user-failed",
        ],
    ),
    (
        "admin-policy-attachment",
        &[
            "attach-user-policy-customer-copy",
            "attach-user-policy-customer-same-name",
            "attach-role-policy-readonly",
            "attach-user-policy-admin-denied",
        ],
    ),
    (
        "dangerous-inline-policy",
        &[
            "put-role-policy-scoped",
            "put-user-policy-deny-star",
            "put-role-policy-malformed",
            "put-role-policy-no-document",
            "put-role-policy-star-denied",
        ],
    ),
    ("access-key-creation", &["create-access-key-denied"]),
    (
        "role-trust-policy",
        &[
            "create-role-same-account-arn",
            "create-role-service-principal",
            "create-role-malformed-trust",
            "create-role-wildcard-denied",
            "update-trust-same-account-bare-id",
        ],
    ),
    ("access-key-update", &["update-access-key-denied"]),
    ("mfa-deletion", &["delete-virtual-mfa-device-conflict"]),
    (
        "sso-permission-set-creation",
        &["sso-create-permission-set-denied"],
    ),
    (
        "sso-permission-set-update",
        &["sso-update-permission-set-denied"],
    ),
    (
        "sso-admin-policy-attachment",
        &["sso-attach-readonly-policy"],
    ),
    ("sso-account-assignment", &["sso-delete-account-assignment"]),
    ("sso-app-creation", &["sso-create-managed-app-denied"]),
    ("sso-app-deletion", &["sso-delete-managed-app-denied"]),
];

#[test]
fn every_fixture_fires_exactly_its_rules() {
    let events = fixtures();
    let listed: BTreeSet<&str> = CASES.iter().map(|(id, _)| *id).collect();
    let present: BTreeSet<&str> = events.keys().map(String::as_str).collect();
    assert_eq!(
        listed, present,
        "every fixture is in the table, and only those"
    );
    for (id, expected) in CASES {
        let got = evaluate(&events[*id]);
        assert_eq!(ids(&got), *expected, "{id}");
        for m in &got {
            assert!(!m.summary.is_empty() && !m.title.is_empty(), "{id}");
            let info = rules().iter().find(|r| r.id == m.rule_id).unwrap();
            assert_eq!(m.severity, info.severity);
            assert_eq!(ctx(m, "Account"), Some(OWN), "{id}: account in context");
        }
    }
}

#[test]
fn every_rule_has_a_positive_and_a_negative() {
    let events = fixtures();
    for info in rules() {
        let positives = CASES.iter().filter(|(_, r)| r.contains(&info.id)).count();
        assert!(positives > 0, "{} has no positive fixture", info.id);
        let (_, misses) = NEAR_MISSES
            .iter()
            .find(|(r, _)| *r == info.id)
            .unwrap_or_else(|| panic!("{} has no negative fixture", info.id));
        for id in *misses {
            assert!(
                !ids(&evaluate(&events[*id])).contains(&info.id),
                "{} fired on near miss {id}",
                info.id
            );
        }
    }
    assert_eq!(NEAR_MISSES.len(), rules().len());
}

#[test]
fn root_console_login_success_and_failure() {
    let ok = evaluate(&event("root-console-login-success"));
    assert_eq!(ok[0].title, "Root Account Login");
    assert_eq!(ok[0].severity, Severity::Critical);
    assert_eq!(
        ok[0].summary,
        "Root account logged in from IP: 90.7.221.136"
    );
    assert_eq!(ctx(&ok[0], "Login Result"), Some("Success"));
    assert_eq!(ctx(&ok[0], "MFA Used"), Some("No"));

    let failed = evaluate(&event("root-console-login-failure"));
    assert_eq!(failed[0].title, "Root Console Login Failure");
    assert_eq!(
        failed[0].summary,
        "Root account console login failed from IP: 198.51.100.77"
    );
    assert_eq!(ctx(&failed[0], "Login Result"), Some("Failure"));
}

#[test]
fn root_api_calls_including_failed_and_service_invoked() {
    let both = evaluate(&event("root-create-access-key"));
    assert_eq!(both.len(), 2);
    assert_eq!(both[0].title, "Root Account Activity: CreateAccessKey");
    assert!(both[0]
        .summary
        .starts_with("Root account called CreateAccessKey"));
    assert_eq!(ctx(&both[1], "Access Key ID"), Some("AKIAEXAMPLEROOTKEY01"));

    let failed = evaluate(&event("root-create-user-failed"));
    assert!(failed[0]
        .summary
        .ends_with("(failed: EntityAlreadyExistsException)"));

    let cfn = evaluate(&event("root-create-user-invoked-by-cfn"));
    assert_eq!(
        ctx(&cfn[0], "Invoked By"),
        Some("cloudformation.amazonaws.com")
    );
    assert_eq!(ctx(&cfn[1], "New User"), Some("deployer"));
}

#[test]
fn iam_contexts_name_what_a_responder_needs() {
    let m = &evaluate(&event("create-user"))[0];
    assert_eq!(m.severity, Severity::High);
    assert_eq!(m.summary, "IAM user mallory was created by Admin");
    assert_eq!(
        ctx(m, "New User ARN"),
        Some("arn:aws:iam::111122223333:user/mallory")
    );

    let m = &evaluate(&event("attach-user-policy-admin"))[0];
    assert_eq!(m.title, "Admin Policy Attached to User");
    assert_eq!(ctx(m, "Target User"), Some("mallory"));
    assert_eq!(ctx(m, "Policy Name"), Some("AdministratorAccess"));
    assert_eq!(
        ctx(m, "Policy ARN"),
        Some("arn:aws:iam::aws:policy/AdministratorAccess")
    );
    let m = &evaluate(&event("attach-group-policy-iam-full"))[0];
    assert_eq!(m.title, "Admin Policy Attached to Group");
    assert_eq!(ctx(m, "Target Group"), Some("ops"));

    let m = &evaluate(&event("put-role-policy-iam-in-list"))[0];
    assert_eq!(m.title, "Dangerous Inline Policy on Role");
    assert_eq!(ctx(m, "Target Role"), Some("ci"));
    assert_eq!(ctx(m, "Dangerous Grants"), Some("Allow iam:*"));
    let m = &evaluate(&event("put-group-policy-sts-upper"))[0];
    assert_eq!(ctx(m, "Dangerous Grants"), Some("Allow STS:* (= sts:*)"));
    let m = &evaluate(&event("put-user-policy-not-action"))[0];
    assert!(ctx(m, "Dangerous Grants")
        .unwrap()
        .starts_with("Allow NotAction [iam:*, organizations:*]"));

    let m = &evaluate(&event("create-access-key"))[0];
    assert_eq!(ctx(m, "For User"), Some("mallory"));
    assert_eq!(ctx(m, "Access Key ID"), Some("AKIAEXAMPLEMALLORY01"));

    let m = &evaluate(&event("update-access-key-inactive"))[0];
    assert_eq!(m.title, "Access Key Deactivated");
    assert_eq!(m.severity, Severity::High);
    assert_eq!(ctx(m, "Access Key ID"), Some("AKIAEXAMPLEMALLORY01"));
    assert_eq!(ctx(m, "New Status"), Some("Inactive"));

    let m = &evaluate(&event("deactivate-mfa-device"))[0];
    assert_eq!(m.title, "MFA Device Deactivated");
    assert_eq!(
        ctx(m, "MFA Serial"),
        Some("arn:aws:iam::111122223333:mfa/alice-phone")
    );
    assert_eq!(ctx(m, "For User"), Some("alice"));
    let m = &evaluate(&event("delete-virtual-mfa-device"))[0];
    assert_eq!(m.title, "Virtual MFA Device Deleted");
}

#[test]
fn trust_policy_findings() {
    let m = &evaluate(&event("create-role-wildcard-principal"))[0];
    assert_eq!(m.title, "Role Trust Policy Allows Any Principal");
    assert_eq!(ctx(m, "Flagged Principals"), Some("*"));

    let m = &evaluate(&event("create-role-federated-wildcard"))[0];
    assert_eq!(m.title, "Role Trust Policy Allows Any Federated User");

    let m = &evaluate(&event("create-role-cross-account-bare-id"))[0];
    assert_eq!(m.title, "Role Trust Policy Allows Another Account");
    assert_eq!(
        ctx(m, "Flagged Principals"),
        Some("444455556666 (account 444455556666)")
    );

    let m = &evaluate(&event("update-trust-cross-account-arn"))[0];
    // Only the other account's principal is flagged; the same-account one is listed as trusted.
    assert_eq!(
        ctx(m, "Flagged Principals"),
        Some("arn:aws:iam::444455556666:role/Attacker (account 444455556666)")
    );
    let trusted = ctx(m, "Trusted Principals").unwrap();
    assert!(trusted.contains("Service: ec2.amazonaws.com"), "{trusted}");
    assert!(trusted.contains("arn:aws:iam::111122223333:role/deployer"));
    assert_eq!(
        ctx(m, "Conditions"),
        Some(r#"{"StringEquals":{"sts:ExternalId":"x1"}}"#)
    );
    assert_eq!(ctx(m, "Role Name"), Some("ci"));

    let m = &evaluate(&event("root-create-role-open-trust"))[1];
    assert_eq!(
        ctx(m, "Role ARN"),
        Some("arn:aws:iam::111122223333:role/backdoor")
    );
}

#[test]
fn sso_contexts() {
    let m = &evaluate(&event("sso-create-permission-set"))[0];
    assert_eq!(ctx(m, "Permission Set"), Some("BreakGlass"));
    assert!(ctx(m, "Permission Set ARN")
        .unwrap()
        .ends_with("ps-5d7cbd83b1a4b01f"));
    assert_eq!(ctx(m, "Session Duration"), Some("PT12H"));
    assert_eq!(
        ctx(m, "Instance ARN"),
        Some("arn:aws:sso:::instance/ssoins-72230d1b1bd5e2a1")
    );
    assert_eq!(
        m.summary,
        "Permission set BreakGlass was created in IAM Identity Center by \
         AWSReservedSSO_AdministratorAccess_0123456789abcdef"
    );

    let m = &evaluate(&event("sso-update-permission-set"))[0];
    assert!(ctx(m, "Permission Set ARN").is_some());

    let m = &evaluate(&event("sso-attach-admin-policy"))[0];
    assert_eq!(ctx(m, "Policy Name"), Some("AdministratorAccess"));
    assert!(ctx(m, "Permission Set ARN").is_some());

    let m = &evaluate(&event("sso-create-account-assignment"))[0];
    assert_eq!(ctx(m, "Target Account"), Some("444455556666"));
    assert_eq!(ctx(m, "Principal Type"), Some("USER"));
    assert!(m.summary.starts_with("USER 94482488-"));

    let m = &evaluate(&event("sso-create-managed-app"))[0];
    assert_eq!(m.severity, Severity::High);
    assert_eq!(ctx(m, "Application Name"), Some("Amazon Grafana"));
    assert_eq!(
        ctx(m, "Application Instance ID"),
        Some("ins-1a2b3c4d5e6f7a8b")
    );
    assert_eq!(ctx(m, "Invoked By"), Some("grafana.amazonaws.com"));
    let m = &evaluate(&event("sso-delete-managed-app"))[0];
    assert_eq!(
        m.summary,
        "Managed application instance ins-1a2b3c4d5e6f7a8b was deleted in IAM Identity Center \
         by AWSReservedSSO_AdministratorAccess_0123456789abcdef"
    );
}

/// The same call from another service never matches: only root activity is source-agnostic.
#[test]
fn event_source_must_match() {
    for (id, expected) in CASES {
        let mut e = event(id);
        e.event_source = "ec2.amazonaws.com".into();
        let got = ids(&evaluate(&e));
        let want: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|r| *r == "root-activity")
            .collect();
        assert_eq!(got, want, "{id} from ec2");
    }
}

/// Every admin policy, on every attach call, in every partition; and on permission sets.
#[test]
fn every_admin_policy_in_every_partition() {
    let names = [
        "AdministratorAccess",
        "IAMFullAccess",
        "PowerUserAccess",
        "AWSSSOMasterAccountAdministrator",
        "AWSIdentityCenterFullAccess",
        "AWSSSOMemberAccountAdministrator",
    ];
    let template = event("attach-user-policy-admin");
    let sso_template = event("sso-attach-admin-policy");
    for partition in ["aws", "aws-us-gov", "aws-cn"] {
        for name in names {
            let arn = format!("arn:{partition}:iam::aws:policy/{name}");
            for (call, key) in [
                ("AttachUserPolicy", "userName"),
                ("AttachRolePolicy", "roleName"),
                ("AttachGroupPolicy", "groupName"),
            ] {
                let mut e = template.clone();
                e.event_name = call.into();
                e.request_parameters =
                    Some(serde_json::json!({ key: "t", "policyArn": arn }).to_string());
                assert_eq!(
                    ids(&evaluate(&e)),
                    ["admin-policy-attachment"],
                    "{call} {arn}"
                );
                // Lookalikes: a customer copy, a suffix, a path.
                for fake in [
                    format!("arn:{partition}:iam::{OWN}:policy/{name}"),
                    format!("arn:{partition}:iam::aws:policy/{name}Copy"),
                    format!("arn:{partition}:iam::aws:policy/service-role/{name}"),
                ] {
                    e.request_parameters =
                        Some(serde_json::json!({ key: "t", "policyArn": fake }).to_string());
                    assert!(evaluate(&e).is_empty(), "{call} {fake}");
                }
            }
            let mut e = sso_template.clone();
            e.request_parameters = Some(
                serde_json::json!({"instanceArn": "i", "permissionSetArn": "p", "managedPolicyArn": arn})
                    .to_string(),
            );
            assert_eq!(ids(&evaluate(&e)), ["sso-admin-policy-attachment"]);
        }
    }
}

/// Absent, empty and malformed JSON in every field never panics, and never makes a
/// document rule fire.
#[test]
fn malformed_json_never_panics_or_matches_document_rules() {
    let document_rules = [
        "admin-policy-attachment",
        "dangerous-inline-policy",
        "role-trust-policy",
        "sso-admin-policy-attachment",
    ];
    let junk = [
        None,
        Some(""),
        Some("{"),
        Some("null"),
        Some("[]"),
        Some("42"),
        Some("\"text\""),
        Some(r#"{"policyDocument": 5, "assumeRolePolicyDocument": [1], "policyArn": {}}"#),
        Some(r#"{"policyDocument": "{\"Statement\": 7}"}"#),
        Some(r#"{"policyDocument": "{\"Statement\": [1, \"x\", null]}"}"#),
        Some(r#"{"policyDocument": "{\"Statement\": {\"Effect\": \"Allow\", \"Action\": 3}}"}"#),
        Some(
            r#"{"assumeRolePolicyDocument": "{\"Statement\": {\"Effect\": \"Allow\", \"Principal\": 9}}"}"#,
        ),
        Some(r#"{"policyDocument": "%ZZ%7B"}"#),
        Some(r#"{"managedPolicyArn": null}"#),
    ];
    for (id, _) in CASES {
        let base = event(id);
        for text in junk {
            let mut e = base.clone();
            e.request_parameters = text.map(String::from);
            e.response_elements = text.map(String::from);
            e.additional_event_data = text.map(String::from);
            let got = ids(&evaluate(&e));
            for r in document_rules {
                assert!(!got.contains(&r), "{id} with {text:?} fired {r}");
            }
        }
    }
}

/// A trust policy naming the role's own account, with the account known only from the caller.
#[test]
fn own_account_falls_back_to_the_caller_account() {
    let mut e = event("update-trust-same-account-bare-id");
    e.recipient_account_id = None;
    assert!(evaluate(&e).is_empty());
    e.account_id = Some("999999999999".into());
    assert_eq!(ids(&evaluate(&e)), ["role-trust-policy"]);
}
