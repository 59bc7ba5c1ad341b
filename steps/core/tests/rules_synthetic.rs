//! The alert rules over records written for the purpose, in the shapes AWS documents for
//! CloudTrail (delivery files under `tests/fixtures/`): a positive and a near-miss negative for
//! every rule. Rules that read history see every fixture as stored, as Collect would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use iamtrail_core::normalize::{normalize, NormalizeOptions, NormalizedEvent};
use iamtrail_core::record::parse_log_file;
use iamtrail_core::rules::{evaluate, evaluate_with, rules, AlertMatch, History, Severity};

const OWN: &str = "111122223333";

fn fixtures() -> BTreeMap<String, NormalizedEvent> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut events = BTreeMap::new();
    for file in [
        "root_and_signin.json",
        "iam.json",
        "sso.json",
        "identity.json",
        "identity_center.json",
    ] {
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

/// The rules an event fires with every fixture stored (history rules read them).
fn evaluate_stored(events: &BTreeMap<String, NormalizedEvent>, id: &str) -> Vec<AlertMatch> {
    evaluate_with(&events[id], &History::of(events.values()))
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

/// Every fixture and the rules it must fire, in rule order, every fixture stored.
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
    // Console passwords
    ("create-login-profile", &["login-profile"]),
    ("create-login-profile-no-reset", &["login-profile"]),
    ("create-login-profile-denied", &[]),
    ("update-login-profile-own", &[]),
    ("update-login-profile-other-no-reset", &["login-profile"]),
    ("update-login-profile-other-by-user", &["login-profile"]),
    (
        "update-login-profile-session-named-like-user",
        &["login-profile"],
    ),
    ("update-login-profile-denied", &[]),
    // IAM-user console logins
    ("user-console-login-no-mfa", &["console-login-without-mfa"]),
    ("user-console-login-no-mfa-failure", &[]),
    ("role-console-login-no-mfa", &[]),
    // Federation tokens
    ("get-federation-token-star", &["federation-token"]),
    ("get-federation-token-admin-arn", &["federation-token"]),
    ("get-federation-token-scoped", &[]),
    ("get-federation-token-no-policy", &[]),
    ("get-federation-token-star-denied", &[]),
    // Managed policy versions
    ("create-policy-admin-v1", &[]),
    ("create-policy-version-scoped-default", &[]),
    (
        "set-default-policy-version-v1-admin",
        &["policy-version-escalation"],
    ),
    (
        "create-policy-version-admin-default",
        &["policy-version-escalation"],
    ),
    ("create-policy-version-admin-not-default", &[]),
    ("create-policy-version-admin-default-denied", &[]),
    (
        "set-default-policy-version-admin",
        &["policy-version-escalation"],
    ),
    ("set-default-policy-version-unknown", &[]),
    ("create-policy-version-scoped-not-default", &[]),
    ("set-default-policy-version-scoped", &[]),
    ("set-default-policy-version-v2-of-other-policy", &[]),
    ("set-default-policy-version-admin-denied", &[]),
    // Identity providers
    ("create-saml-provider", &["identity-provider-change"]),
    ("update-saml-provider", &["identity-provider-change"]),
    ("delete-saml-provider", &["identity-provider-change"]),
    ("create-oidc-provider", &["identity-provider-change"]),
    ("update-oidc-thumbprint", &["identity-provider-change"]),
    ("add-oidc-client-id", &["identity-provider-change"]),
    ("delete-oidc-provider", &["identity-provider-change"]),
    ("create-saml-provider-denied", &[]),
    ("create-oidc-provider-exists", &[]),
    // Root sign-in events other than ConsoleLogin
    ("root-password-updated-failure", &["root-activity"]),
    ("root-password-updated", &["root-activity"]),
    ("root-external-idp-login-error-only", &["root-activity"]),
    // IAM group membership (identity_center.json): the group's stored policies decide
    ("iam-attach-group-admin", &["admin-policy-attachment"]),
    ("iam-add-user-to-admin-group", &["admin-group-membership"]),
    ("iam-add-user-to-admin-group-denied", &[]),
    (
        "iam-attach-group-admin-detached-later",
        &["admin-policy-attachment"],
    ),
    ("iam-detach-group-admin", &[]),
    ("iam-add-user-to-group-admin-detached", &[]),
    ("iam-add-user-to-group-named-admins", &[]),
    (
        "iam-put-group-policy-admin-inline",
        &["dangerous-inline-policy"],
    ),
    (
        "iam-add-user-to-inline-admin-group",
        &["admin-group-membership"],
    ),
    ("iam-put-group-policy-scoped-replacement", &[]),
    ("iam-add-user-to-group-inline-replaced", &[]),
    ("iam-add-user-to-group-before-admin", &[]),
    (
        "iam-attach-group-admin-after-membership",
        &["admin-policy-attachment"],
    ),
    (
        "iam-attach-group-admin-other-account",
        &["admin-policy-attachment"],
    ),
    ("iam-add-user-to-group-same-name-other-account", &[]),
    // Identity Center group membership: the group's account assignments and their permission
    // sets decide
    (
        "ic-create-permission-set-admin",
        &["sso-permission-set-creation"],
    ),
    ("ic-attach-admin-policy", &["sso-admin-policy-attachment"]),
    (
        "ic-create-permission-set-view-only",
        &["sso-permission-set-creation"],
    ),
    ("ic-attach-view-only-policy", &[]),
    ("ic-identitystore-create-group-platform-admins", &[]),
    ("ic-sso-directory-create-group-readers", &[]),
    ("ic-identitystore-create-group-retired", &[]),
    ("ic-sso-directory-create-user-erin", &[]),
    ("ic-identitystore-create-user-hidden-name", &[]),
    (
        "ic-assign-admin-to-platform-admins",
        &["sso-account-assignment"],
    ),
    (
        "ic-assign-view-only-to-readers",
        &["sso-account-assignment"],
    ),
    ("ic-assign-admin-to-retired", &["sso-account-assignment"]),
    ("ic-delete-assignment-retired", &[]),
    (
        "ic-add-member-to-admin-group-sso-directory",
        &["admin-group-membership"],
    ),
    (
        "ic-create-group-membership-admin-group-identitystore",
        &["admin-group-membership"],
    ),
    ("ic-add-member-to-view-only-group", &[]),
    ("ic-create-group-membership-assignment-deleted", &[]),
    (
        "ic-assign-admin-to-user-in-management-account",
        &["sso-account-assignment"],
    ),
    ("ic-identitystore-create-group-name-withheld", &[]),
    (
        "ic-assign-admin-to-group-name-withheld",
        &["sso-account-assignment"],
    ),
    (
        "ic-create-group-membership-name-withheld",
        &["admin-group-membership"],
    ),
];

/// Matches whose severity is not their rule's: what the call did raised it.
const RAISED: &[(&str, &str, Severity)] = &[
    (
        "create-login-profile-no-reset",
        "login-profile",
        Severity::Critical,
    ),
    (
        "update-login-profile-other-no-reset",
        "login-profile",
        Severity::Critical,
    ),
    (
        "update-login-profile-other-by-user",
        "login-profile",
        Severity::Critical,
    ),
    (
        "update-login-profile-session-named-like-user",
        "login-profile",
        Severity::Critical,
    ),
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
    (
        "login-profile",
        &[
            "create-login-profile-denied",
            "update-login-profile-own",
            "update-login-profile-denied",
        ],
    ),
    (
        "console-login-without-mfa",
        &[
            "user-console-login-no-mfa-failure",
            "user-console-login-success",
            "role-console-login-no-mfa",
            "root-console-login-success",
        ],
    ),
    (
        "federation-token",
        &[
            "get-federation-token-scoped",
            "get-federation-token-no-policy",
            "get-federation-token-star-denied",
        ],
    ),
    (
        "policy-version-escalation",
        &[
            "create-policy-admin-v1",
            "create-policy-version-scoped-default",
            "create-policy-version-admin-not-default",
            "create-policy-version-admin-default-denied",
            "set-default-policy-version-unknown",
            "set-default-policy-version-scoped",
            "set-default-policy-version-v2-of-other-policy",
            "set-default-policy-version-admin-denied",
        ],
    ),
    (
        "identity-provider-change",
        &["create-saml-provider-denied", "create-oidc-provider-exists"],
    ),
    (
        "admin-group-membership",
        &[
            "iam-add-user-to-admin-group-denied",
            "iam-add-user-to-group-admin-detached",
            "iam-add-user-to-group-named-admins",
            "iam-add-user-to-group-inline-replaced",
            "iam-add-user-to-group-before-admin",
            "iam-add-user-to-group-same-name-other-account",
            "ic-add-member-to-view-only-group",
            "ic-create-group-membership-assignment-deleted",
        ],
    ),
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
        let got = evaluate_stored(&events, id);
        assert_eq!(ids(&got), *expected, "{id}");
        for m in &got {
            assert!(!m.summary.is_empty() && !m.title.is_empty(), "{id}");
            let info = rules().iter().find(|r| r.id == m.rule_id).unwrap();
            let severity = RAISED
                .iter()
                .find(|(e, r, _)| e == id && *r == m.rule_id)
                .map_or(info.severity, |(_, _, s)| *s);
            assert_eq!(m.severity, severity, "{id} {}", m.rule_id);
            // The event's own account, last (every fixture is in OWN but one, which is in
            // another account on purpose).
            let account = events[*id].recipient_account_id.as_deref().unwrap();
            assert!(account == OWN || *id == "iam-attach-group-admin-other-account");
            assert_eq!(
                m.context.last().map(|(k, v)| (k.as_str(), v.as_str())),
                Some(("Account", account)),
                "{id}: account last in context"
            );
        }
    }
    for (id, rule, _) in RAISED {
        let (_, fired) = CASES.iter().find(|(c, _)| c == id).unwrap();
        assert!(fired.contains(rule), "{id} is raised for {rule}");
    }
}

/// Rules decided over many events (Collect counts them in the control table): no single event
/// fires them, so this table cannot hold a positive. Their own tests:
/// `steps/core/src/rules/login_failures.rs` and `steps/aws/tests/collect_bursts.rs`.
const ACROSS_EVENTS: &[&str] = &["console-login-failures"];

#[test]
fn every_rule_has_a_positive_and_a_negative() {
    let events = fixtures();
    for info in rules() {
        if ACROSS_EVENTS.contains(&info.id) {
            for (id, _) in CASES {
                assert!(
                    !ids(&evaluate_stored(&events, id)).contains(&info.id),
                    "{} fired on the single event {id}",
                    info.id
                );
            }
            continue;
        }
        let positives = CASES.iter().filter(|(_, r)| r.contains(&info.id)).count();
        assert!(positives > 0, "{} has no positive fixture", info.id);
        let (_, misses) = NEAR_MISSES
            .iter()
            .find(|(r, _)| *r == info.id)
            .unwrap_or_else(|| panic!("{} has no negative fixture", info.id));
        for id in *misses {
            assert!(
                !ids(&evaluate_stored(&events, id)).contains(&info.id),
                "{} fired on near miss {id}",
                info.id
            );
        }
    }
    assert_eq!(NEAR_MISSES.len() + ACROSS_EVENTS.len(), rules().len());
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
    assert!(m.summary.starts_with("User 94482488-"), "{}", m.summary);

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
        "federation-token",
        "policy-version-escalation",
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
        Some(r#"{"policy": 1, "policyArns": "arn:aws:iam::aws:policy/AdministratorAccess"}"#),
        Some(r#"{"policyArns": [{"arn": 5}, null, {"x": "y"}], "setAsDefault": true}"#),
        Some(r#"{"setAsDefault": "true", "policyDocument": "{\"Statement\": 7}"}"#),
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

fn stored() -> (BTreeMap<String, NormalizedEvent>, History) {
    let events = fixtures();
    let history = History::of(events.values());
    (events, history)
}

fn one(matches: Vec<AlertMatch>, rule: &str) -> AlertMatch {
    let mut found: Vec<AlertMatch> = matches.into_iter().filter(|m| m.rule_id == rule).collect();
    assert_eq!(found.len(), 1, "{rule}");
    found.remove(0)
}

#[test]
fn login_profile_created_is_high_and_critical_when_no_reset_is_required() {
    let m = one(evaluate(&event("create-login-profile")), "login-profile");
    assert_eq!(m.title, "Console Password Created");
    assert_eq!(m.severity, Severity::High);
    assert_eq!(
        m.summary,
        "A console password was created for IAM user mallory by Admin; mallory must change it \
         at the next sign-in"
    );
    assert_eq!(ctx(&m, "For User"), Some("mallory"));
    assert_eq!(ctx(&m, "Password Reset Required"), Some("Yes"));

    let m = one(
        evaluate(&event("create-login-profile-no-reset")),
        "login-profile",
    );
    assert_eq!(m.title, "Console Password Created");
    assert_eq!(m.severity, Severity::Critical, "no forced reset raises it");
    assert!(
        m.summary
            .ends_with("; svc-deploy is not made to change it at the next sign-in"),
        "{}",
        m.summary
    );
    assert_eq!(
        ctx(&m, "Password Reset Required"),
        Some("No (the user is not made to change it)")
    );

    // passwordResetRequired recorded as text reads the same.
    let mut e = event("create-login-profile-no-reset");
    e.request_parameters =
        Some(r#"{"userName": "svc-deploy", "passwordResetRequired": "false"}"#.into());
    assert_eq!(
        one(evaluate(&e), "login-profile").severity,
        Severity::Critical
    );
    // Creating one's own password (no userName) still alerts, for the caller.
    e.request_parameters = Some(r#"{"passwordResetRequired": true}"#.into());
    e.response_elements = None;
    let m = one(evaluate(&e), "login-profile");
    assert_eq!(m.severity, Severity::High);
    assert_eq!(ctx(&m, "For User"), Some("bob"));
}

#[test]
fn update_login_profile_alerts_only_for_another_user() {
    let m = one(
        evaluate(&event("update-login-profile-other-no-reset")),
        "login-profile",
    );
    assert_eq!(m.title, "Console Password Set for Another User");
    assert_eq!(m.severity, Severity::Critical);
    assert_eq!(
        m.summary,
        "The console password of IAM user bob was set by Admin; bob is not made to change it at \
         the next sign-in"
    );
    let m = one(
        evaluate(&event("update-login-profile-other-by-user")),
        "login-profile",
    );
    assert_eq!(m.title, "Console Password Set for Another User");
    assert_eq!(m.severity, Severity::Critical);
    assert_eq!(ctx(&m, "Password Reset Required"), None);
    assert_eq!(ctx(&m, "Caller Type"), Some("IAMUser"));

    // The user on themselves: by name in any case, or with no userName at all.
    let own = event("update-login-profile-own");
    assert!(evaluate(&own).is_empty());
    let mut e = own.clone();
    e.request_parameters = Some(r#"{"userName": "BOB", "passwordResetRequired": false}"#.into());
    assert!(evaluate(&e).is_empty(), "IAM user names ignore case");
    e.request_parameters = Some(r#"{"passwordResetRequired": false}"#.into());
    assert!(evaluate(&e).is_empty(), "no userName: the caller's own");
    // The same request from another IAM user is the takeover.
    e.request_parameters = own.request_parameters.clone();
    e.user_name = "carol".into();
    assert_eq!(ids(&evaluate(&e)), ["login-profile"]);

    // A role session named like the user is not the user: the session name is the caller's
    // choice.
    let m = one(
        evaluate(&event("update-login-profile-session-named-like-user")),
        "login-profile",
    );
    assert_eq!(m.title, "Console Password Set for Another User");
    assert_eq!(ctx(&m, "Caller Type"), Some("AssumedRole"));
}

#[test]
fn console_login_without_mfa_only_for_iam_users_that_got_in() {
    let m = one(
        evaluate(&event("user-console-login-no-mfa")),
        "console-login-without-mfa",
    );
    assert_eq!(m.title, "Console Login Without MFA");
    assert_eq!(m.severity, Severity::High);
    assert_eq!(
        m.summary,
        "IAM user carol signed in to the console without MFA from IP: 198.51.100.23"
    );
    assert_eq!(ctx(&m, "IAM User"), Some("carol"));
    assert_eq!(ctx(&m, "Source IP"), Some("198.51.100.23"));
    assert!(ctx(&m, "User Agent").unwrap().starts_with("Mozilla/5.0"));
    assert!(ctx(&m, "Login To")
        .unwrap()
        .starts_with("https://console.aws.amazon.com/console/home"));

    // Near misses: MFA used, a failed login, a federated role session, root (root-activity's).
    for id in [
        "user-console-login-success",
        "user-console-login-no-mfa-failure",
        "role-console-login-no-mfa",
        "root-console-login-success",
    ] {
        assert!(
            !ids(&evaluate(&event(id))).contains(&"console-login-without-mfa"),
            "{id}"
        );
    }
    let base = event("user-console-login-no-mfa");
    // MFAUsed missing says nothing: no alert.
    let mut e = base.clone();
    e.mfa_used = None;
    assert!(evaluate(&e).is_empty());
    // An errorCode, or a result other than Success, is a failed login.
    let mut e = base.clone();
    e.error_code = Some("AccessDenied".into());
    assert!(evaluate(&e).is_empty());
    let mut e = base.clone();
    e.response_elements = Some(r#"{"ConsoleLogin": "Failure"}"#.into());
    assert!(evaluate(&e).is_empty());
    e.response_elements = None;
    assert!(evaluate(&e).is_empty(), "no result is not a success");
    // SAMLUser and FederatedUser sign-ins never match either.
    for kind in [
        "SAMLUser",
        "FederatedUser",
        "IdentityCenterUser",
        "AWSAccount",
    ] {
        let mut e = base.clone();
        e.user_identity_type = Some(kind.into());
        assert!(evaluate(&e).is_empty(), "{kind}");
    }
}

#[test]
fn federation_token_with_admin_session_policy() {
    let m = one(
        evaluate(&event("get-federation-token-star")),
        "federation-token",
    );
    assert_eq!(m.severity, Severity::Critical);
    assert_eq!(
        m.summary,
        "bob got a federation token for federated user ops-proxy (129600 s) with an admin-level \
         session policy (Allow *)"
    );
    assert_eq!(ctx(&m, "Federated User"), Some("ops-proxy"));
    assert_eq!(
        ctx(&m, "Federated User ARN"),
        Some("arn:aws:sts::111122223333:federated-user/ops-proxy")
    );
    assert_eq!(
        ctx(&m, "Temporary Access Key ID"),
        Some("ASIAEXAMPLEFEDSTAR01")
    );
    assert_eq!(ctx(&m, "Duration"), Some("129600 s"));
    assert_eq!(ctx(&m, "Dangerous Grants"), Some("Allow *"));

    let m = one(
        evaluate(&event("get-federation-token-admin-arn")),
        "federation-token",
    );
    assert_eq!(
        ctx(&m, "Dangerous Grants"),
        Some("managed policy AdministratorAccess")
    );
    assert_eq!(
        ctx(&m, "Admin Policy ARNs"),
        Some("arn:aws:iam::aws:policy/AdministratorAccess")
    );
    assert_eq!(ctx(&m, "Duration"), Some("43200 s (the default)"));

    let base = event("get-federation-token-scoped");
    assert!(evaluate(&base).is_empty(), "s3 reads and ReadOnlyAccess");
    // The same request with iam:* in a URL-encoded inline policy, or NotAction, or an admin
    // policy in another partition.
    for (req, grant) in [
        (
            r#"{"name": "x", "policy": "%7B%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22iam%3A%2A%22%2C%22Resource%22%3A%22%2A%22%7D%5D%7D"}"#,
            "Allow iam:*",
        ),
        (
            r#"{"name": "x", "policy": "{\"Statement\": {\"Effect\": \"Allow\", \"NotAction\": \"s3:*\", \"Resource\": \"*\"}}"}"#,
            "Allow NotAction [s3:*] (everything else)",
        ),
        (
            r#"{"name": "x", "policyArns": [{"arn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}, {"arn": "arn:aws-us-gov:iam::aws:policy/IAMFullAccess"}]}"#,
            "managed policy IAMFullAccess",
        ),
    ] {
        let mut e = base.clone();
        e.request_parameters = Some(req.into());
        let m = one(evaluate(&e), "federation-token");
        assert_eq!(ctx(&m, "Dangerous Grants"), Some(grant), "{req}");
    }
    // A customer policy named like an admin one is not.
    let mut e = base.clone();
    e.request_parameters = Some(
        r#"{"name": "x", "policyArns": [{"arn": "arn:aws:iam::111122223333:policy/AdministratorAccess"}]}"#
            .into(),
    );
    assert!(evaluate(&e).is_empty());
    // The same call recorded by another service does not match.
    let mut e = event("get-federation-token-star");
    e.event_source = "iam.amazonaws.com".into();
    assert!(evaluate(&e).is_empty());
}

#[test]
fn create_policy_version_as_default_decides_from_the_event() {
    let m = one(
        evaluate(&event("create-policy-version-admin-default")),
        "policy-version-escalation",
    );
    assert_eq!(m.title, "Admin-Level Policy Version Created as Default");
    assert_eq!(m.severity, Severity::Critical);
    assert_eq!(
        m.summary,
        "Version v2 of policy arn:aws:iam::111122223333:policy/ci-policy was created as the \
         default version by Admin (Allow iam:*)"
    );
    assert_eq!(ctx(&m, "Version"), Some("v2"));
    assert_eq!(ctx(&m, "Document From"), None);

    // setAsDefault as text counts; false or absent does not.
    let base = event("create-policy-version-admin-default");
    for (flag, fires) in [
        ("\"true\"", true),
        ("\"TRUE\"", true),
        ("false", false),
        ("\"false\"", false),
    ] {
        let mut e = base.clone();
        let mut req: serde_json::Value =
            serde_json::from_str(base.request_parameters.as_deref().unwrap()).unwrap();
        req["setAsDefault"] = serde_json::from_str(flag).unwrap();
        e.request_parameters = Some(req.to_string());
        assert_eq!(!evaluate(&e).is_empty(), fires, "setAsDefault {flag}");
    }
    let mut e = base.clone();
    let mut req: serde_json::Value =
        serde_json::from_str(base.request_parameters.as_deref().unwrap()).unwrap();
    req.as_object_mut().unwrap().remove("setAsDefault");
    e.request_parameters = Some(req.to_string());
    assert!(evaluate(&e).is_empty(), "no setAsDefault: not the default");
    // A scoped document made default does not.
    assert!(evaluate(&event("create-policy-version-scoped-default")).is_empty());
}

#[test]
fn set_default_policy_version_reads_the_stored_version() {
    let (events, history) = stored();
    // v3 of ci-policy was created (not default) with Action "*"; making it default alerts.
    let set = &events["set-default-policy-version-admin"];
    let m = one(evaluate_with(set, &history), "policy-version-escalation");
    assert_eq!(m.title, "Admin-Level Policy Version Set as Default");
    assert_eq!(
        m.summary,
        "Version v3 of policy arn:aws:iam::111122223333:policy/ci-policy was made the default \
         version by Admin (Allow *)"
    );
    assert_eq!(
        ctx(&m, "Document From"),
        Some("CreatePolicyVersion create-policy-version-admin-not-default at 2025-08-10T09:21:27Z")
    );
    // Nothing stored: the document is unknown, no alert.
    assert!(evaluate(set).is_empty());
    assert!(evaluate_with(set, &History::new()).is_empty());
    // Only the version's own event counts: the stored events hold v2 (admin) of ci-policy and
    // v3 (scoped) of reports, not v7 of ci-policy nor v2 of reports.
    for id in [
        "set-default-policy-version-unknown",
        "set-default-policy-version-scoped",
        "set-default-policy-version-v2-of-other-policy",
        "set-default-policy-version-admin-denied",
    ] {
        assert!(evaluate_with(&events[id], &history).is_empty(), "{id}");
    }
    // v1 is the CreatePolicy document: rolling deploy-tools back to its admin v1 alerts.
    let m = one(
        evaluate_with(&events["set-default-policy-version-v1-admin"], &history),
        "policy-version-escalation",
    );
    assert_eq!(
        ctx(&m, "Document From"),
        Some("CreatePolicy create-policy-admin-v1 at 2025-08-10T09:17:59Z")
    );
    // A version created after the event was not what the event set.
    let mut early = set.clone();
    early.event_time = "2025-08-10T09:00:00Z".into();
    assert!(evaluate_with(&early, &history).is_empty());
    // A failed CreatePolicyVersion holds no version.
    let mut failed_history = History::new();
    let mut failed = events["create-policy-version-admin-not-default"].clone();
    failed.error_code = Some("LimitExceededException".into());
    failed_history.extend([&failed]);
    assert!(evaluate_with(set, &failed_history).is_empty());
    // History rules name what they read.
    let needs = iamtrail_core::rules::history::needs([set]);
    assert_eq!(
        needs.into_iter().collect::<Vec<_>>(),
        ["CreatePolicy", "CreatePolicyVersion"]
    );
}

#[test]
fn identity_provider_changes_are_titled_per_call() {
    for (id, title, summary) in [
        (
            "create-saml-provider",
            "SAML Identity Provider Created",
            "Identity provider Okta was created in IAM by cfn-deployer",
        ),
        (
            "update-saml-provider",
            "SAML Identity Provider Updated",
            "Identity provider arn:aws:iam::111122223333:saml-provider/Okta was updated in IAM by \
             Admin",
        ),
        (
            "delete-saml-provider",
            "SAML Identity Provider Deleted",
            "Identity provider arn:aws:iam::111122223333:saml-provider/Okta was deleted in IAM by \
             Admin",
        ),
        (
            "create-oidc-provider",
            "OIDC Identity Provider Created",
            "Identity provider https://token.actions.githubusercontent.com was created in IAM by \
             Admin",
        ),
        (
            "update-oidc-thumbprint",
            "OIDC Identity Provider Thumbprints Replaced",
            "Identity provider \
             arn:aws:iam::111122223333:oidc-provider/token.actions.githubusercontent.com had its \
             thumbprints replaced in IAM by Admin",
        ),
        (
            "add-oidc-client-id",
            "OIDC Identity Provider Client ID Added",
            "Identity provider \
             arn:aws:iam::111122223333:oidc-provider/token.actions.githubusercontent.com was given \
             another client ID in IAM by Admin",
        ),
        (
            "delete-oidc-provider",
            "OIDC Identity Provider Deleted",
            "Identity provider \
             arn:aws:iam::111122223333:oidc-provider/token.actions.githubusercontent.com was \
             deleted in IAM by Admin",
        ),
    ] {
        let m = one(evaluate(&event(id)), "identity-provider-change");
        assert_eq!(m.title, title, "{id}");
        assert_eq!(m.summary, summary, "{id}");
        assert_eq!(m.severity, Severity::Critical, "{id}");
        assert!(ctx(&m, "Provider ARN").is_some(), "{id}");
    }
    let m = one(
        evaluate(&event("create-saml-provider")),
        "identity-provider-change",
    );
    assert_eq!(ctx(&m, "Provider Name"), Some("Okta"));
    assert_eq!(
        ctx(&m, "Provider ARN"),
        Some("arn:aws:iam::111122223333:saml-provider/Okta")
    );
    // Lists are shown joined.
    let m = one(
        evaluate(&event("create-oidc-provider")),
        "identity-provider-change",
    );
    assert_eq!(
        ctx(&m, "Client IDs"),
        Some("sts.amazonaws.com, https://github.com/example-org")
    );
    assert_eq!(
        ctx(&m, "Thumbprints"),
        Some("6938fd4d98bab03faadb97b34396831e3780aea1, 1c58a3a8518e8759bf075b76b750d4f2df264fcd")
    );
    assert_eq!(
        ctx(&m, "Provider URL"),
        Some("https://token.actions.githubusercontent.com")
    );
    let m = one(
        evaluate(&event("add-oidc-client-id")),
        "identity-provider-change",
    );
    assert_eq!(ctx(&m, "Client IDs"), Some("attacker-app"));
    // An empty list shows nothing rather than an empty line.
    let mut e = event("create-oidc-provider");
    e.request_parameters = Some(
        r#"{"url": "https://idp.example.com", "clientIDList": [], "thumbprintList": []}"#.into(),
    );
    let m = one(evaluate(&e), "identity-provider-change");
    assert_eq!(ctx(&m, "Client IDs"), None);
    assert_eq!(ctx(&m, "Thumbprints"), None);
}

#[test]
fn identity_provider_calls_fail_or_come_from_another_service_do_not_match() {
    assert!(evaluate(&event("create-saml-provider-denied")).is_empty());
    assert!(evaluate(&event("create-oidc-provider-exists")).is_empty());
    for id in [
        "create-saml-provider",
        "update-saml-provider",
        "delete-saml-provider",
        "create-oidc-provider",
        "update-oidc-thumbprint",
        "add-oidc-client-id",
        "delete-oidc-provider",
    ] {
        for source in [
            "sso.amazonaws.com",
            "cognito-idp.amazonaws.com",
            "sts.amazonaws.com",
        ] {
            let mut e = event(id);
            e.event_source = source.into();
            assert!(evaluate(&e).is_empty(), "{id} from {source}");
        }
    }
}

#[test]
fn root_sign_in_events_that_failed_are_worded_as_failed() {
    let m = one(
        evaluate(&event("root-password-updated-failure")),
        "root-activity",
    );
    assert_eq!(m.title, "Root Sign-in Event Failed: PasswordUpdated");
    assert_eq!(
        m.summary,
        "Root account PasswordUpdated failed from IP: 90.7.221.136"
    );
    assert_eq!(ctx(&m, "Result"), Some("Failure"));

    let m = one(
        evaluate(&event("root-external-idp-login-error-only")),
        "root-activity",
    );
    assert_eq!(
        m.title,
        "Root Sign-in Event Failed: ExternalIdPDirectoryLogin"
    );
    assert_eq!(
        m.summary,
        "Root account ExternalIdPDirectoryLogin failed from IP: 90.7.221.136"
    );
    assert_eq!(ctx(&m, "Result"), Some("Failure"));

    // A successful one keeps the activity wording.
    let m = one(evaluate(&event("root-password-updated")), "root-activity");
    assert_eq!(m.title, "Root Account Activity: PasswordUpdated");
    assert_eq!(
        m.summary,
        "Root account called PasswordUpdated on signin.amazonaws.com from IP: 90.7.221.136"
    );
    let m = one(evaluate(&event("root-check-mfa")), "root-activity");
    assert_eq!(m.title, "Root Account Activity: CheckMfa");

    // Any result other than Success is a failure; an errorCode too, and it is shown.
    let mut e = event("root-password-updated");
    e.response_elements = Some(r#"{"PasswordUpdated": "Pending"}"#.into());
    let m = one(evaluate(&e), "root-activity");
    assert_eq!(m.title, "Root Sign-in Event Failed: PasswordUpdated");
    assert_eq!(ctx(&m, "Result"), Some("Pending"));
    let mut e = event("root-password-updated");
    e.error_code = Some("InvalidPassword".into());
    let m = one(evaluate(&e), "root-activity");
    assert_eq!(
        m.summary,
        "Root account PasswordUpdated failed from IP: 90.7.221.136 (InvalidPassword)"
    );
}

#[test]
fn invoked_by_is_shown_on_every_rule_once() {
    // A rule that names no invoking service in its own context (identity-provider-change).
    let m = one(
        evaluate(&event("create-saml-provider")),
        "identity-provider-change",
    );
    assert_eq!(ctx(&m, "Invoked By"), Some("cloudformation.amazonaws.com"));
    let n = m.context.len();
    assert_eq!(m.context[n - 2].0, "Invoked By", "before the account");
    // Both rules on the CloudFormation-invoked root CreateUser, each once.
    for m in evaluate(&event("root-create-user-invoked-by-cfn")) {
        assert_eq!(
            m.context.iter().filter(|(k, _)| k == "Invoked By").count(),
            1,
            "{}",
            m.rule_id
        );
        assert_eq!(
            ctx(&m, "Invoked By"),
            Some("cloudformation.amazonaws.com"),
            "{}",
            m.rule_id
        );
    }
    // Every matching fixture with an invokedBy shows it; the others never do.
    let (events, _) = stored();
    for (id, _) in CASES {
        let e = &events[*id];
        for m in evaluate_stored(&events, id) {
            assert_eq!(
                ctx(&m, "Invoked By"),
                e.invoked_by.as_deref(),
                "{id} {}",
                m.rule_id
            );
        }
    }
}

#[test]
fn a_service_principal_in_source_ip_is_not_called_an_ip() {
    let cfn = evaluate(&event("root-create-user-invoked-by-cfn"));
    assert_eq!(
        cfn[0].summary,
        "Root account called CreateUser on iam.amazonaws.com via cloudformation.amazonaws.com"
    );
    let mut e = event("root-console-login-success");
    e.source_ip = Some("sso.amazonaws.com".into());
    assert_eq!(
        evaluate(&e)[0].summary,
        "Root account logged in via sso.amazonaws.com"
    );
    e.source_ip = Some("AWS Internal".into());
    assert_eq!(
        evaluate(&e)[0].summary,
        "Root account logged in via AWS Internal"
    );
    e.source_ip = Some("2001:db8::7".into());
    assert_eq!(
        evaluate(&e)[0].summary,
        "Root account logged in from IP: 2001:db8::7"
    );
    e.source_ip = None;
    assert_eq!(
        evaluate(&e)[0].summary,
        "Root account logged in from an unknown source"
    );
    let mut e = event("user-console-login-no-mfa");
    e.source_ip = Some("signin.amazonaws.com".into());
    let m = one(evaluate(&e), "console-login-without-mfa");
    assert!(m.summary.ends_with("without MFA via signin.amazonaws.com"));
    assert_eq!(ctx(&m, "Source"), Some("signin.amazonaws.com"));
    assert_eq!(ctx(&m, "Source IP"), None);
}

/// The fixtures of identity_center.json, and every fixture as history.
fn stored_one(id: &str) -> Vec<AlertMatch> {
    evaluate_stored(&fixtures(), id)
}

const ADMIN_PS: &str = "arn:aws:sso:::permissionSet/ssoins-72230d1b1bd5e2a1/ps-6a1f0e2d3c4b5a69";
const PLATFORM_ADMINS: &str = "94d8f4a8-2001-7011-aa10-0123456789a1";
const SSO_ACTOR: &str = "AWSReservedSSO_AdministratorAccess_0123456789abcdef";

#[test]
fn iam_user_added_to_a_group_with_administrator_access_attached_earlier() {
    let m = one(
        stored_one("iam-add-user-to-admin-group"),
        "admin-group-membership",
    );
    assert_eq!(m.title, "User Added to Admin Group");
    assert_eq!(m.severity, Severity::Critical);
    assert_eq!(
        m.summary,
        "IAM user mallory was added to group platform-ops by Admin; the group holds \
         AdministratorAccess"
    );
    assert_eq!(ctx(&m, "Group"), Some("platform-ops"));
    assert_eq!(ctx(&m, "User"), Some("mallory"));
    assert_eq!(
        ctx(&m, "Admin Policies"),
        Some("AdministratorAccess (attached 2025-08-11T10:00:00Z by Admin)")
    );
    // Knowing nothing, the rule says nothing: the membership call alone never alerts.
    assert!(evaluate(&event("iam-add-user-to-admin-group")).is_empty());
}

#[test]
fn iam_user_added_to_a_group_with_an_admin_inline_policy() {
    let m = one(
        stored_one("iam-add-user-to-inline-admin-group"),
        "admin-group-membership",
    );
    assert_eq!(
        m.summary,
        "IAM user trent was added to group breakglass by Admin; the group holds inline policy \
         full-admin (Allow *)"
    );
    assert_eq!(
        ctx(&m, "Admin Policies"),
        Some("inline policy full-admin (Allow *) (put 2025-08-11T10:25:00Z by Admin)")
    );
}

/// The IAM near misses, each against the one stored event that makes the difference, so that
/// what decides is plain (the CASES table checks them with every fixture stored).
#[test]
fn iam_near_misses_with_an_explicit_history() {
    let events = fixtures();
    let fires = |id: &str, history: &[&str]| {
        let h = History::of(history.iter().map(|h| &events[*h]));
        ids(&evaluate_with(&events[id], &h)).contains(&"admin-group-membership")
    };
    let add = "iam-add-user-to-admin-group";
    let attach = "iam-attach-group-admin";
    assert!(fires(add, &[attach]));
    // A group called "Admins" that nothing is known about: the name alone never decides.
    assert!(!fires("iam-add-user-to-group-named-admins", &[]));
    assert!(!fires(
        "iam-add-user-to-group-named-admins",
        &[attach, "iam-attach-group-admin-other-account"]
    ));
    // The admin policy detached before the membership.
    assert!(fires(
        "iam-add-user-to-group-admin-detached",
        &["iam-attach-group-admin-detached-later"]
    ));
    assert!(!fires(
        "iam-add-user-to-group-admin-detached",
        &[
            "iam-attach-group-admin-detached-later",
            "iam-detach-group-admin"
        ]
    ));
    // The inline policy replaced by a scoped one of the same name.
    assert!(fires(
        "iam-add-user-to-group-inline-replaced",
        &["iam-put-group-policy-admin-inline"]
    ));
    assert!(!fires(
        "iam-add-user-to-group-inline-replaced",
        &[
            "iam-put-group-policy-admin-inline",
            "iam-put-group-policy-scoped-replacement"
        ]
    ));
    // Admin power attached after the membership was not there when it happened...
    assert!(!fires(
        "iam-add-user-to-group-before-admin",
        &["iam-attach-group-admin-after-membership"]
    ));
    // ... and is, for a membership after it.
    let mut later = events["iam-add-user-to-group-before-admin"].clone();
    later.event_time = "2025-08-11T10:51:00Z".into();
    let h = History::of([&events["iam-attach-group-admin-after-membership"]]);
    let m = one(evaluate_with(&later, &h), "admin-group-membership");
    assert!(m.summary.ends_with("the group holds PowerUserAccess"));
    // Another account's group of the same name never counts.
    assert!(!fires(
        "iam-add-user-to-group-same-name-other-account",
        &["iam-attach-group-admin-other-account"]
    ));
    let mut same = events["iam-attach-group-admin-other-account"].clone();
    same.recipient_account_id = Some(OWN.into());
    let h = History::of([&same]);
    assert_eq!(
        ids(&evaluate_with(
            &events["iam-add-user-to-group-same-name-other-account"],
            &h
        )),
        ["admin-group-membership"]
    );
    // A failed membership call, a failed attach, or an attach to another group do not count.
    assert!(!fires("iam-add-user-to-admin-group-denied", &[attach]));
    let mut failed = events[attach].clone();
    failed.error_code = Some("AccessDenied".into());
    assert!(evaluate_with(&events[add], &History::of([&failed])).is_empty());
    let mut other_group = events[attach].clone();
    other_group.request_parameters =
        Some(r#"{"groupName": "platform-ops-2", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}"#.into());
    assert!(evaluate_with(&events[add], &History::of([&other_group])).is_empty());
    // IAM group names ignore case.
    let mut upper = events[add].clone();
    upper.request_parameters =
        Some(r#"{"groupName": "PLATFORM-OPS", "userName": "mallory"}"#.into());
    assert!(!evaluate_with(&upper, &History::of([&events[attach]])).is_empty());
    // The same call recorded by another service is not an IAM membership.
    let mut elsewhere = events[add].clone();
    elsewhere.event_source = "sso-directory.amazonaws.com".into();
    assert!(evaluate_with(&elsewhere, &History::of([&events[attach]])).is_empty());
}

#[test]
fn identity_center_member_added_to_a_group_holding_an_admin_permission_set() {
    // sso-directory AddMemberToGroup (the console), the member's name known from CreateUser.
    let m = one(
        stored_one("ic-add-member-to-admin-group-sso-directory"),
        "admin-group-membership",
    );
    assert_eq!(m.title, "User Added to Admin Identity Center Group");
    assert_eq!(m.severity, Severity::Critical);
    assert_eq!(
        m.summary,
        format!(
            "User erin was added to Identity Center group platform-admins by {SSO_ACTOR}; the \
             group holds permission set AdminAccess (AdministratorAccess) on account \
             444455556666"
        )
    );
    assert_eq!(ctx(&m, "Group"), Some("platform-admins"));
    assert_eq!(ctx(&m, "Group ID"), Some(PLATFORM_ADMINS));
    assert_eq!(ctx(&m, "Member"), Some("erin"));
    assert_eq!(
        ctx(&m, "Member ID"),
        Some("c4e8a4f8-3001-7022-bb20-0123456789e5")
    );
    assert_eq!(
        ctx(&m, "Admin Permission Sets"),
        Some(
            format!(
                "AdminAccess on 444455556666 (assigned 2025-06-12T09:10:00Z by {SSO_ACTOR}): \
                 AdministratorAccess (attached 2025-06-12T09:01:00Z by {SSO_ACTOR})"
            )
            .as_str()
        )
    );
    assert_eq!(ctx(&m, "Permission Set ARNs"), Some(ADMIN_PS));
    assert_eq!(ctx(&m, "Target Accounts"), Some("444455556666"));
    assert_eq!(ctx(&m, "Target Is Management Account"), None);

    // identitystore CreateGroupMembership (the API): the member's CreateUser withheld the name,
    // so the member is named by id.
    let m = one(
        stored_one("ic-create-group-membership-admin-group-identitystore"),
        "admin-group-membership",
    );
    assert!(
        m.summary.starts_with(
            "User c4e8a4f8-3001-7022-bb20-0123456789f6 was added to Identity Center group \
             platform-admins by"
        ),
        "{}",
        m.summary
    );
    assert!(m
        .summary
        .contains("AdminAccess (AdministratorAccess) on account 444455556666"));
    assert_eq!(ctx(&m, "Member"), None);
    assert_eq!(ctx(&m, "Identity Store ID"), Some("d-9067230a11"));

    // A group created after CloudTrail began withholding display names: named by its id.
    let m = one(
        stored_one("ic-create-group-membership-name-withheld"),
        "admin-group-membership",
    );
    assert!(m
        .summary
        .contains("group 94d8f4a8-2001-7011-aa10-0123456789d4 by"));
    assert_eq!(ctx(&m, "Group"), None);

    // Nothing stored: nothing known, no alert.
    for id in [
        "ic-add-member-to-admin-group-sso-directory",
        "ic-create-group-membership-admin-group-identitystore",
    ] {
        assert!(evaluate(&event(id)).is_empty(), "{id}");
    }
}

/// The Identity Center near misses and variants, each against the stored events that decide.
#[test]
fn identity_center_near_misses_with_an_explicit_history() {
    let events = fixtures();
    let setup = [
        "ic-create-permission-set-admin",
        "ic-attach-admin-policy",
        "ic-create-permission-set-view-only",
        "ic-attach-view-only-policy",
        "ic-identitystore-create-group-platform-admins",
        "ic-sso-directory-create-group-readers",
        "ic-identitystore-create-group-retired",
        "ic-assign-admin-to-platform-admins",
        "ic-assign-view-only-to-readers",
        "ic-assign-admin-to-retired",
        "ic-delete-assignment-retired",
    ];
    let history = History::of(setup.iter().map(|id| &events[*id]));
    let fires = |e: &NormalizedEvent, h: &History| {
        ids(&evaluate_with(e, h)).contains(&"admin-group-membership")
    };
    let add = &events["ic-add-member-to-admin-group-sso-directory"];
    assert!(fires(add, &history));
    // A group whose only permission set is not admin (ViewOnlyAccess).
    assert!(!fires(
        &events["ic-add-member-to-view-only-group"],
        &history
    ));
    // The group's admin assignment was deleted before the membership.
    let retired = &events["ic-create-group-membership-assignment-deleted"];
    assert!(!fires(retired, &history));
    let without_delete = History::of(
        setup
            .iter()
            .filter(|id| **id != "ic-delete-assignment-retired")
            .map(|id| &events[*id]),
    );
    assert!(fires(retired, &without_delete));
    // The admin policy detached from the permission set before the membership.
    let mut detach = events["ic-attach-admin-policy"].clone();
    detach.event_id = "detach".into();
    detach.event_name = "DetachManagedPolicyFromPermissionSet".into();
    detach.event_time = "2025-06-12T09:15:00Z".into();
    let mut h = history.clone();
    h.extend([&detach]);
    assert!(!fires(add, &h));
    // An inline policy with admin-level grants makes a permission set admin; a later scoped
    // one, or its deletion, undoes it.
    let mut inline = events["ic-attach-view-only-policy"].clone();
    inline.event_id = "inline".into();
    inline.event_name = "PutInlinePolicyToPermissionSet".into();
    inline.event_time = "2025-06-12T09:15:00Z".into();
    inline.request_parameters = Some(
        serde_json::json!({
            "instanceArn": "arn:aws:sso:::instance/ssoins-72230d1b1bd5e2a1",
            "permissionSetArn": "arn:aws:sso:::permissionSet/ssoins-72230d1b1bd5e2a1/ps-7b2e1f3d4c5b6a70",
            "inlinePolicy": "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"iam:*\",\"Resource\":\"*\"}]}"
        })
        .to_string(),
    );
    let mut h = history.clone();
    h.extend([&inline]);
    let readers = &events["ic-add-member-to-view-only-group"];
    let m = one(evaluate_with(readers, &h), "admin-group-membership");
    assert!(
        m.summary
            .contains("permission set ViewOnly (inline policy (Allow iam:*)) on account"),
        "{}",
        m.summary
    );
    let mut deleted = inline.clone();
    deleted.event_id = "inline-deleted".into();
    deleted.event_name = "DeleteInlinePolicyFromPermissionSet".into();
    deleted.event_time = "2025-06-12T09:16:00Z".into();
    h.extend([&deleted]);
    assert!(!fires(readers, &h));
    // A FAILED assignment gives nothing.
    let mut failed = events["ic-assign-admin-to-platform-admins"].clone();
    failed.response_elements = Some(
        failed
            .response_elements
            .unwrap()
            .replace("IN_PROGRESS", "FAILED"),
    );
    let h = History::of(
        setup
            .iter()
            .filter(|id| **id != "ic-assign-admin-to-platform-admins")
            .map(|id| &events[*id])
            .chain([&failed]),
    );
    assert!(!fires(add, &h));
    // Another account's Identity Center events never count.
    let mut moved = add.clone();
    moved.recipient_account_id = Some("999999999999".into());
    assert!(!fires(&moved, &history));
    // A failed membership call does not alert.
    let mut denied = add.clone();
    denied.error_code = Some("AccessDeniedException".into());
    assert!(!fires(&denied, &history));
    // The member id read in the other spellings CloudTrail may use.
    for member in [
        r#"{"memberId": {"userId": "u-1"}}"#,
        r#"{"member": {"memberId": "u-1"}}"#,
        r#"{"memberId": "u-1"}"#,
    ] {
        let mut e = add.clone();
        let mut req: serde_json::Value = serde_json::from_str(member).unwrap();
        req["groupId"] = PLATFORM_ADMINS.into();
        e.request_parameters = Some(req.to_string());
        let m = one(evaluate_with(&e, &history), "admin-group-membership");
        assert_eq!(ctx(&m, "Member ID"), Some("u-1"), "{member}");
    }
    // A group's admin assignment to the account where the call was made is flagged.
    let mut to_management = events["ic-assign-admin-to-platform-admins"].clone();
    to_management.event_id = "to-management".into();
    to_management.request_parameters = Some(
        to_management
            .request_parameters
            .unwrap()
            .replace("444455556666", OWN),
    );
    let mut h = history.clone();
    h.extend([&to_management]);
    let m = one(evaluate_with(add, &h), "admin-group-membership");
    // Newest assignment first ("to-management" sorts after the fixture's id at the same time).
    assert_eq!(
        ctx(&m, "Target Accounts"),
        Some(format!("{OWN}, 444455556666").as_str())
    );
    assert_eq!(ctx(&m, "Target Is Management Account"), Some("yes"));
    // What the rule reads, for Collect.
    let needs = iamtrail_core::rules::history::needs([add]);
    for name in [
        "AttachGroupPolicy",
        "CreateAccountAssignment",
        "DeleteAccountAssignment",
        "AttachManagedPolicyToPermissionSet",
        "PutInlinePolicyToPermissionSet",
        "CreatePermissionSet",
        "CreateGroup",
        "CreateUser",
    ] {
        assert!(needs.contains(name), "{name}");
    }
}

#[test]
fn sso_account_assignment_names_the_permission_set_and_principal_and_words_the_status() {
    // IN_PROGRESS: "is being given", names resolved from the stored events.
    let m = one(
        stored_one("ic-assign-admin-to-platform-admins"),
        "sso-account-assignment",
    );
    assert_eq!(m.title, "SSO Account Assignment Created");
    assert_eq!(
        m.summary,
        format!(
            "Group platform-admins is being given permission set AdminAccess on account \
             444455556666 by {SSO_ACTOR}; the permission set grants AdministratorAccess"
        )
    );
    assert!(!m.summary.contains("was given"));
    assert_eq!(ctx(&m, "Permission Set"), Some("AdminAccess"));
    assert_eq!(ctx(&m, "Permission Set ARN"), Some(ADMIN_PS));
    assert_eq!(ctx(&m, "Principal"), Some("platform-admins"));
    assert_eq!(ctx(&m, "Principal ID"), Some(PLATFORM_ADMINS));
    assert_eq!(ctx(&m, "Assignment Status"), Some("IN_PROGRESS"));
    assert_eq!(
        ctx(&m, "Admin Policies"),
        Some(
            format!("AdministratorAccess (attached 2025-06-12T09:01:00Z by {SSO_ACTOR})").as_str()
        )
    );
    assert_eq!(ctx(&m, "Target Is Management Account"), None);

    // Nothing stored: the ARN and the id, no admin policies.
    let bare = one(
        evaluate(&event("ic-assign-admin-to-platform-admins")),
        "sso-account-assignment",
    );
    assert_eq!(
        bare.summary,
        format!(
            "Group {PLATFORM_ADMINS} is being given permission set {ADMIN_PS} on account \
             444455556666 by {SSO_ACTOR}"
        )
    );
    assert_eq!(ctx(&bare, "Permission Set"), None);
    assert_eq!(ctx(&bare, "Principal"), None);
    assert_eq!(ctx(&bare, "Permission Set ARN"), Some(ADMIN_PS));
    assert_eq!(ctx(&bare, "Principal ID"), Some(PLATFORM_ADMINS));
    assert_eq!(ctx(&bare, "Admin Policies"), None);

    // The target is the account where the call was made: flagged, in those words.
    let m = one(
        stored_one("ic-assign-admin-to-user-in-management-account"),
        "sso-account-assignment",
    );
    assert_eq!(m.severity, Severity::Critical);
    assert_eq!(ctx(&m, "Target Is Management Account"), Some("yes"));
    assert_eq!(ctx(&m, "Principal"), Some("erin"));
    assert!(
        m.summary.starts_with(&format!(
            "User erin is being given permission set AdminAccess on account {OWN} by"
        )),
        "{}",
        m.summary
    );
    assert!(m.summary.ends_with(
        "; the target is the account where the call was made, which in an organisation is the \
         management account unless Identity Center administration is delegated"
    ));

    // The other statuses.
    let base = event("ic-assign-admin-to-platform-admins");
    let with_status = |status: Option<&str>| {
        let mut e = base.clone();
        e.response_elements = status.map(|s| {
            serde_json::json!({"accountAssignmentCreationStatus": {"status": s}}).to_string()
        });
        one(evaluate(&e), "sso-account-assignment")
    };
    let m = with_status(Some("SUCCEEDED"));
    assert!(m.summary.starts_with(&format!(
        "Group {PLATFORM_ADMINS} was given permission set {ADMIN_PS} on account 444455556666 by"
    )));
    let m = with_status(Some("FAILED"));
    assert_eq!(m.title, "SSO Account Assignment Failed");
    assert_eq!(
        m.summary,
        format!(
            "Group {PLATFORM_ADMINS} was not given permission set {ADMIN_PS} on account \
             444455556666: the assignment requested by {SSO_ACTOR} failed"
        )
    );
    let m = with_status(None);
    assert_eq!(
        m.summary,
        format!(
            "Permission set {ADMIN_PS} on account 444455556666 was requested for group \
             {PLATFORM_ADMINS} by {SSO_ACTOR}"
        )
    );
    assert_eq!(ctx(&m, "Assignment Status"), None);
    // The history it reads, for Collect.
    let needs = iamtrail_core::rules::history::needs([&base]);
    assert_eq!(
        needs.into_iter().collect::<Vec<_>>(),
        [
            "AttachManagedPolicyToPermissionSet",
            "CreateGroup",
            "CreatePermissionSet",
            "CreateUser",
            "DeleteInlinePolicyFromPermissionSet",
            "DetachManagedPolicyFromPermissionSet",
            "PutInlinePolicyToPermissionSet",
        ]
    );
}
