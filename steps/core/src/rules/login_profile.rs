//! `login-profile`: a console password given to an IAM user (docs/alerts.md, "The rules").

use super::view::{Hit, View};
use super::{Logic, Rule, RuleInfo, Severity, IAM_SOURCE};

pub(super) const LOGIN_PROFILE: Rule = Rule {
    info: RuleInfo {
        id: "login-profile",
        title: "Console Password Created",
        severity: Severity::High,
        description: "iam:CreateLoginProfile succeeded: a console password for a user, titled \
            \"Console Password Created\" (HIGH). iam:UpdateLoginProfile succeeded on a user other \
            than the caller: \"Console Password Set for Another User\" (CRITICAL: whoever set it \
            can sign in as that user). The caller is the user when it is an IAM user \
            (userIdentity.type IAMUser) whose userName equals requestParameters.userName \
            (ignoring case, as IAM user names do), or when userName is absent (the call acts on \
            the caller); a role session, federated user or root is never the user, whatever its \
            session name. requestParameters.passwordResetRequired false (boolean or text) raises \
            a HIGH match to CRITICAL and the alert says the user is not made to change the \
            password. An UpdateLoginProfile on the caller itself and failed calls do not alert.",
        attack: &["T1098.001", "T1078.004"],
        seed_check: None,
    },
    logic: Logic::Check(login_profile),
};

/// `requestParameters.passwordResetRequired` as a boolean (`true`/`false`, as JSON or text).
fn reset_required(v: &View) -> Option<bool> {
    let text = v.req_str("passwordResetRequired")?;
    match text.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// The caller's own IAM user name, if the caller is an IAM user.
fn caller_user<'a>(v: &View<'a>) -> Option<&'a str> {
    let is_user =
        v.e.user_identity_type
            .as_deref()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("IAMUser"));
    is_user.then(|| v.e.user_name.trim())
}

fn login_profile(v: &View) -> Option<Hit> {
    let create = v.succeeded(IAM_SOURCE, &["CreateLoginProfile"]);
    if !create && !v.succeeded(IAM_SOURCE, &["UpdateLoginProfile"]) {
        return None;
    }
    let named = v
        .req_str("userName")
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty());
    let own = match &named {
        None => true,
        Some(target) => caller_user(v).is_some_and(|me| me.eq_ignore_ascii_case(target)),
    };
    if !create && own {
        return None;
    }
    let target = named
        .or_else(|| v.resp_path(&["loginProfile", "userName"]))
        .unwrap_or_else(|| v.actor().to_string());
    let reset = reset_required(v);
    let reset_text = match reset {
        Some(false) => format!("; {target} is not made to change it at the next sign-in"),
        Some(true) => format!("; {target} must change it at the next sign-in"),
        None => String::new(),
    };
    let mut hit = if create {
        Hit::new(format!(
            "A console password was created for IAM user {target} by {}{reset_text}",
            v.actor()
        ))
    } else {
        Hit::new(format!(
            "The console password of IAM user {target} was set by {}{reset_text}",
            v.actor()
        ))
        .title("Console Password Set for Another User")
        .severity(Severity::Critical)
    };
    if reset == Some(false) {
        hit = hit.severity(Severity::Critical);
    }
    Some(
        hit.with("For User", Some(target))
            .with(
                "Password Reset Required",
                reset.map(|r| {
                    if r {
                        "Yes"
                    } else {
                        "No (the user is not made to change it)"
                    }
                }),
            )
            .with("Caller Type", v.e.user_identity_type.clone()),
    )
}
