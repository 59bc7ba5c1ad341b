//! `root-activity`: any use of the root user.

use super::view::{Hit, View};
use super::{Logic, Rule, RuleInfo, Severity, SIGNIN_SOURCE};

pub(super) const ROOT_ACTIVITY: Rule = Rule {
    info: RuleInfo {
        id: "root-activity",
        title: "Root Account Activity",
        severity: Severity::Critical,
        description: "Any use of the root user (userIdentity.type Root), from any event source: a \
            console login, successful or failed (titled \"Root Console Login Failure\"), and \
            every other API call, including failed ones and calls an AWS service made on root's \
            behalf (invokedBy).",
        attack: &["T1078.004"],
        seed_check: Some("check_root_activity"),
    },
    logic: Logic::Check(root_activity),
};

fn root_activity(v: &View) -> Option<Hit> {
    if !v.is_root() {
        return None;
    }
    let ip = v.e.source_ip.as_deref().unwrap_or("unknown");
    if v.is(SIGNIN_SOURCE, &["ConsoleLogin"]) {
        let result = v.resp_path(&["ConsoleLogin"]);
        let failed = v.failed()
            || result
                .as_deref()
                .is_some_and(|r| !r.eq_ignore_ascii_case("Success"))
            || (result.is_none() && v.e.error_message.is_some());
        let mfa = v.e.mfa_used.map(|b| if b { "Yes" } else { "No" });
        let hit = if failed {
            Hit::new(format!("Root account console login failed from IP: {ip}"))
                .title("Root Console Login Failure")
                .with(
                    "Login Result",
                    Some(result.unwrap_or_else(|| "Failure".into())),
                )
        } else {
            Hit::new(format!("Root account logged in from IP: {ip}"))
                .title("Root Account Login")
                .with("Login Result", result)
        };
        return Some(hit.with("MFA Used", mfa));
    }
    let outcome = match (&v.e.error_code, v.failed()) {
        (Some(code), true) => format!(" (failed: {code})"),
        _ => String::new(),
    };
    Some(
        Hit::new(format!(
            "Root account called {} on {} from IP: {ip}{outcome}",
            v.e.event_name, v.e.event_source
        ))
        .title(format!("Root Account Activity: {}", v.e.event_name))
        .with("Event Source", Some(v.e.event_source.clone()))
        .with("Invoked By", v.e.invoked_by.clone())
        .with(
            "MFA Authenticated",
            v.e.mfa_authenticated.map(|b| if b { "Yes" } else { "No" }),
        ),
    )
}
