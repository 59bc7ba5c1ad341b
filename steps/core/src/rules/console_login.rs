//! `console-login-without-mfa`: an IAM user signed in to the console with a password alone.

use super::view::{Hit, View};
use super::{Logic, Rule, RuleInfo, Severity, SIGNIN_SOURCE};

pub(super) const CONSOLE_LOGIN_WITHOUT_MFA: Rule = Rule {
    info: RuleInfo {
        id: "console-login-without-mfa",
        title: "Console Login Without MFA",
        severity: Severity::High,
        description: "signin.amazonaws.com ConsoleLogin by an IAM user (userIdentity.type \
            IAMUser) that succeeded (responseElements.ConsoleLogin Success and no errorCode) \
            with additionalEventData.MFAUsed No. Failed logins, logins with MFA and logins that \
            do not say (no MFAUsed) do not match. Root logins are root-activity's; role \
            sessions, SAML, Identity Center and other federated sign-ins (AssumedRole, \
            SAMLUser, FederatedUser, ...) never match: CloudTrail records MFAUsed No for them \
            whatever their identity provider checked.",
        attack: &["T1078.004"],
        seed_check: None,
    },
    logic: Logic::Check(console_login_without_mfa),
};

fn console_login_without_mfa(v: &View) -> Option<Hit> {
    if !v.succeeded(SIGNIN_SOURCE, &["ConsoleLogin"]) {
        return None;
    }
    let iam_user =
        v.e.user_identity_type
            .as_deref()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("IAMUser"));
    let success = v
        .resp_path(&["ConsoleLogin"])
        .is_some_and(|r| r.trim().eq_ignore_ascii_case("Success"));
    if !iam_user || !success || v.e.mfa_used != Some(false) {
        return None;
    }
    let mut hit = Hit::new(format!(
        "IAM user {} signed in to the console without MFA {}",
        v.actor(),
        v.origin()
    ))
    .with("IAM User", Some(v.actor()));
    if let Some((label, source)) = v.source_entry() {
        hit = hit.with(label, Some(source));
    }
    Some(
        hit.with("User Agent", v.e.user_agent.clone())
            .with("Login To", v.extra_str("LoginTo"))
            .with("MFA Used", Some("No")),
    )
}
