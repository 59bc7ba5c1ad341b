//! The alert rules over every record of the bundled invictus-aws-2023 dataset (real CloudTrail
//! logs of a Stratus Red Team attack simulation; see datasets/invictus-aws-2023/LICENSE).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use iamtrail_core::normalize::{normalize, NormalizeOptions, NormalizedEvent};
use iamtrail_core::record::read_log_dir;
use iamtrail_core::rules::{evaluate, evaluate_with, AlertMatch, History, Severity};

fn dataset() -> BTreeMap<String, NormalizedEvent> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets/invictus-aws-2023/CloudTrail");
    let mut events = BTreeMap::new();
    for (path, log) in read_log_dir(&dir).expect("dataset directory") {
        assert!(log.rejected.is_empty(), "{path:?}: {:?}", log.rejected);
        for r in &log.records {
            let e = normalize(r, NormalizeOptions::default());
            events.insert(e.event_id.clone(), e);
        }
    }
    assert_eq!(events.len(), 2900);
    events
}

fn ctx<'m>(m: &'m AlertMatch, key: &str) -> Option<&'m str> {
    m.context
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn only(events: &BTreeMap<String, NormalizedEvent>, id: &str, rule: &str) -> AlertMatch {
    let e = &events[id];
    let got = evaluate(e);
    assert_eq!(
        got.iter().map(|m| m.rule_id).collect::<Vec<_>>(),
        [rule],
        "{id} ({})",
        e.event_name
    );
    got.into_iter().next().unwrap()
}

#[test]
fn known_dangerous_records_alert() {
    let events = dataset();

    // AttachUserPolicy AdministratorAccess to the freshly created malicious-iam-user.
    let m = only(
        &events,
        "f4923a37-92d5-4dfd-9786-6caef2b5f33c",
        "admin-policy-attachment",
    );
    assert_eq!(m.title, "Admin Policy Attached to User");
    assert_eq!(ctx(&m, "Target User"), Some("malicious-iam-user"));
    assert_eq!(
        ctx(&m, "Policy ARN"),
        Some("arn:aws:iam::aws:policy/AdministratorAccess")
    );
    assert_eq!(ctx(&m, "Account"), Some("123837392027"));

    // AttachRolePolicy AdministratorAccess to the backdoor role.
    let m = only(
        &events,
        "493e08b7-63e4-49a4-832a-1a7598ce78e5",
        "admin-policy-attachment",
    );
    assert_eq!(m.title, "Admin Policy Attached to Role");
    assert_eq!(
        ctx(&m, "Target Role"),
        Some("stratus-red-team-backdoor-r-role")
    );

    // CreateAccessKey for the backdoor user and for malicious-iam-user.
    let m = only(
        &events,
        "64b7de64-bf53-47ae-b7e3-d30cb1b5136e",
        "access-key-creation",
    );
    assert_eq!(
        ctx(&m, "For User"),
        Some("stratus-red-team-backdoor-u-user")
    );
    assert_eq!(ctx(&m, "Access Key ID"), Some("AKIATFQR7NSC3ZO6PKAZ"));
    let m = only(
        &events,
        "8c282c0b-00d1-4369-95b7-cb50b6eee620",
        "access-key-creation",
    );
    assert_eq!(ctx(&m, "For User"), Some("malicious-iam-user"));

    // CreateUser malicious-iam-user.
    let m = only(
        &events,
        "85c89720-8103-4281-9e0e-8977b52bcdbe",
        "user-creation",
    );
    assert_eq!(ctx(&m, "New User"), Some("malicious-iam-user"));
    assert_eq!(
        m.summary,
        "IAM user malicious-iam-user was created by bert-jan"
    );

    // UpdateAssumeRolePolicy adding account 193672423079's root to the backdoor role's trust.
    let m = only(
        &events,
        "d96d75c7-e715-44ff-9735-9dc51afbd774",
        "role-trust-policy",
    );
    assert_eq!(m.title, "Role Trust Policy Allows Another Account");
    assert_eq!(
        ctx(&m, "Flagged Principals"),
        Some("arn:aws:iam::193672423079:root (account 193672423079)")
    );
    assert_eq!(
        ctx(&m, "Trusted Principals"),
        Some("Service: ec2.amazonaws.com, AWS: arn:aws:iam::193672423079:root")
    );

    // The later UpdateAssumeRolePolicy that restores the ec2-only trust is not an alert.
    assert!(evaluate(&events["059cf0ed-af91-40a6-9c89-a8a4fb81dc65"]).is_empty());
}

#[test]
fn same_account_and_service_trusts_do_not_alert() {
    let events = dataset();
    // CreateRole trusting {"AWS": "123837392027"}: the event's own account, by bare id.
    for id in [
        "ff709962-49b6-494d-8198-cdf0f7e8e666",
        "217f6e5b-254b-4b72-9ee7-42d376dc2404",
        "b0c1a980-ad28-4be5-baf2-6cfee896dfbf",
        "5ae76ecb-47d9-4c92-8065-ebe0f8292243",
        "77cff676-f5ae-428e-8681-4f271276ed51",
    ] {
        let e = &events[id];
        assert_eq!(e.event_name, "CreateRole");
        assert!(e
            .request_parameters
            .as_deref()
            .unwrap()
            .contains(r#"\"AWS\":\"123837392027\""#));
        assert!(evaluate(e).is_empty(), "{id}");
    }
    // CreateRole trusting a Service principal (ec2, lambda, vpc-flow-logs, rolesanywhere).
    let service_trusts = events
        .values()
        .filter(|e| e.event_name == "CreateRole")
        .filter(|e| e.request_parameters.as_deref().unwrap().contains("Service"))
        .inspect(|e| assert!(evaluate(e).is_empty(), "{}", e.event_id))
        .count();
    assert_eq!(service_trusts, 8);
}

#[test]
fn looks_dangerous_but_is_no_rule() {
    let events = dataset();
    for (id, what) in [
        ("6c1eed73-00ee-4810-8009-c9ce5990c100", "PutRolePolicy"), // ec2:Describe*
        ("671c39f7-9e56-4acf-a92a-ea4a77f2f76a", "PutRolePolicy"), // logs:*
        ("19373fa4-d15d-4c49-9e19-f19faa16e2ca", "CreatePolicy"),  // ec2:DescribeInstances
        ("edc26fa8-655a-4346-9e18-f79b0d9e25de", "AttachRolePolicy"), // AmazonSSMManagedInstanceCore
        ("1c2e56c5-73a3-47fc-b8c1-cb4656fb94d5", "AttachRolePolicy"), // customer policy
        ("8feee4c2-5e27-4857-8475-bfa7e7b6d791", "ConsoleLogin"),     // IAM user, with MFA
        ("74b4a7d6-764d-4ec8-bbd4-91e7a84e6780", "CheckMfa"),         // IAM user's MFA check
        (
            "7ab75daa-659a-45e4-b43b-ea90a9cf2f6a",
            "GetAccountAuthorizationDetails",
        ),
    ] {
        let e = &events[id];
        assert_eq!(e.event_name, what, "{id}");
        assert!(evaluate(e).is_empty(), "{id}");
    }
}

/// Every alert the dataset raises, pinned: any change in rule behaviour shows up here.
/// `cargo test -p iamtrail-core --test rules_dataset -- --nocapture` prints them.
#[test]
fn alert_snapshot() {
    let events = dataset();
    let mut ordered: Vec<&NormalizedEvent> = events.values().collect();
    ordered.sort_by(|a, b| (&a.event_time, &a.event_id).cmp(&(&b.event_time, &b.event_id)));
    let mut fired = Vec::new();
    for e in ordered {
        for m in evaluate(e) {
            println!(
                "{:<24} {} {:<12} {} | {}",
                m.rule_id, e.event_id, e.user_name, e.event_name, m.summary
            );
            fired.push((m.rule_id, e.event_id.as_str(), e.user_name.as_str()));
        }
    }
    let expected = [
        (
            "user-creation",
            "66d008e1-12cf-4a45-99e7-0be67fc70d71",
            "bert-jan",
        ),
        (
            "login-profile",
            "1170c908-ce8d-4c6f-bc65-cf43aae5235b",
            "bert-jan",
        ),
        (
            "console-login-without-mfa",
            "70e5932e-9022-4b38-837e-ca10dad94eb7",
            "stratus-red-team-nmfalu-gfjyeaypjt",
        ),
        (
            "admin-policy-attachment",
            "493e08b7-63e4-49a4-832a-1a7598ce78e5",
            "bert-jan",
        ),
        (
            "role-trust-policy",
            "d96d75c7-e715-44ff-9735-9dc51afbd774",
            "bert-jan",
        ),
        (
            "user-creation",
            "648d0a9c-6d07-4c99-bd4e-9a27b3ad45d2",
            "bert-jan",
        ),
        (
            "access-key-creation",
            "64b7de64-bf53-47ae-b7e3-d30cb1b5136e",
            "bert-jan",
        ),
        (
            "user-creation",
            "85c89720-8103-4281-9e0e-8977b52bcdbe",
            "bert-jan",
        ),
        (
            "admin-policy-attachment",
            "f4923a37-92d5-4dfd-9786-6caef2b5f33c",
            "bert-jan",
        ),
        (
            "access-key-creation",
            "8c282c0b-00d1-4369-95b7-cb50b6eee620",
            "bert-jan",
        ),
        (
            "user-creation",
            "564ee71e-5934-49b7-8a5f-d6f4d9248018",
            "bert-jan",
        ),
        (
            "login-profile",
            "f0d7bb15-75c8-4770-a500-92d1f71b948c",
            "bert-jan",
        ),
    ];
    assert_eq!(fired, expected);
}

/// The rules added beyond the original script's checks, over the whole dataset, with every
/// dataset event stored as history (what Collect would have read): each fires on exactly these
/// events and nowhere else.
#[test]
fn added_rules_fire_on_exactly_these_events() {
    let events = dataset();
    let history = History::of(events.values());
    let expected: [(&str, &[&str]); 6] = [
        (
            "login-profile",
            &[
                "1170c908-ce8d-4c6f-bc65-cf43aae5235b",
                "f0d7bb15-75c8-4770-a500-92d1f71b948c",
            ],
        ),
        (
            "console-login-without-mfa",
            &["70e5932e-9022-4b38-837e-ca10dad94eb7"],
        ),
        ("federation-token", &[]),
        ("policy-version-escalation", &[]),
        ("identity-provider-change", &[]),
        ("admin-group-membership", &[]),
    ];
    for (rule, ids) in expected {
        let fired: BTreeSet<&str> = events
            .values()
            .filter(|e| evaluate_with(e, &history).iter().any(|m| m.rule_id == rule))
            .map(|e| e.event_id.as_str())
            .collect();
        assert_eq!(fired, ids.iter().copied().collect(), "{rule}");
    }
    // The dataset holds none of the calls the last four watch, so their silence is no
    // accident of the rules (no group membership of IAM or Identity Center either).
    for e in events.values() {
        assert!(
            ![
                "GetFederationToken",
                "CreatePolicyVersion",
                "SetDefaultPolicyVersion",
                "UpdateLoginProfile",
                "AddUserToGroup",
                "AddMemberToGroup",
                "CreateGroupMembership",
                "CreateAccountAssignment",
            ]
            .contains(&e.event_name.as_str())
                && !e.event_name.contains("SAMLProvider")
                && !e.event_name.contains("OpenIDConnectProvider"),
            "{} {}",
            e.event_id,
            e.event_name
        );
    }
    // History changes nothing here: no SetDefaultPolicyVersion, membership or account
    // assignment to read it for.
    for e in events.values() {
        assert_eq!(evaluate_with(e, &history), evaluate(e), "{}", e.event_id);
    }
}

#[test]
fn login_profiles_and_the_console_login_without_mfa() {
    let events = dataset();
    // CreateLoginProfile by bert-jan for the fresh user stratus-red-team-nmfalu-gfjyeaypjt,
    // passwordResetRequired false: CRITICAL.
    let m = only(
        &events,
        "1170c908-ce8d-4c6f-bc65-cf43aae5235b",
        "login-profile",
    );
    assert_eq!(m.title, "Console Password Created");
    assert_eq!(m.severity, Severity::Critical);
    assert_eq!(
        ctx(&m, "For User"),
        Some("stratus-red-team-nmfalu-gfjyeaypjt")
    );
    assert_eq!(
        ctx(&m, "Password Reset Required"),
        Some("No (the user is not made to change it)")
    );
    // The same for stratus-red-team-login-profile-user.
    let m = only(
        &events,
        "f0d7bb15-75c8-4770-a500-92d1f71b948c",
        "login-profile",
    );
    assert_eq!(m.severity, Severity::Critical);
    assert_eq!(
        ctx(&m, "For User"),
        Some("stratus-red-team-login-profile-user")
    );
    // Nine seconds after its password was created, that user signs in without MFA.
    let m = only(
        &events,
        "70e5932e-9022-4b38-837e-ca10dad94eb7",
        "console-login-without-mfa",
    );
    assert_eq!(m.severity, Severity::High);
    assert_eq!(
        m.summary,
        "IAM user stratus-red-team-nmfalu-gfjyeaypjt signed in to the console without MFA from \
         IP: 192.168.10.20"
    );
    assert_eq!(
        ctx(&m, "Login To"),
        Some("https://console.aws.amazon.com/console/home")
    );
    // bert-jan's own console login used MFA: no alert.
    let e = &events["8feee4c2-5e27-4857-8475-bfa7e7b6d791"];
    assert_eq!(e.mfa_used, Some(true));
    assert!(evaluate(e).is_empty());
}
