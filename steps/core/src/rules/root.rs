//! `root-activity`: any use of the root user.

use super::view::{Hit, View};
use super::{Logic, Rule, RuleInfo, Severity, SIGNIN_SOURCE};

pub(super) const ROOT_ACTIVITY: Rule = Rule {
    info: RuleInfo {
        id: "root-activity",
        title: "Root Account Activity",
        severity: Severity::Critical,
        description: "Any use of the root user (userIdentity.type Root), from any event source: a \
            console login, successful or failed (titled \"Root Console Login Failure\"), any \
            other sign-in event (PasswordUpdated, ExternalIdPDirectoryLogin, ...; titled \"Root \
            Sign-in Event Failed: <name>\" when its result is not Success or it carries only an \
            errorMessage), and every other API call, including failed ones and calls an AWS \
            service made on root's behalf (invokedBy).",
        attack: &["T1078.004"],
        seed_check: Some("check_root_activity"),
    },
    logic: Logic::Check(root_activity),
};

/// A sign-in event's outcome: its `responseElements.<eventName>` result, and whether it failed
/// (an `errorCode`, a result other than `Success`, or no result but an `errorMessage`).
fn sign_in_outcome(v: &View) -> (Option<String>, bool) {
    let result = v.resp_path(&[v.e.event_name.as_str()]);
    let failed = v.failed()
        || result
            .as_deref()
            .is_some_and(|r| !r.trim().eq_ignore_ascii_case("Success"))
        || (result.is_none()
            && v.e
                .error_message
                .as_deref()
                .is_some_and(|m| !m.trim().is_empty()));
    (result, failed)
}

fn root_activity(v: &View) -> Option<Hit> {
    if !v.is_root() {
        return None;
    }
    let origin = v.origin();
    let mfa_used = v.e.mfa_used.map(|b| if b { "Yes" } else { "No" });
    let mfa_authenticated = v.e.mfa_authenticated.map(|b| if b { "Yes" } else { "No" });
    if v.e.event_source == SIGNIN_SOURCE {
        let (result, failed) = sign_in_outcome(v);
        if v.e.event_name == "ConsoleLogin" {
            let hit = if failed {
                Hit::new(format!("Root account console login failed {origin}"))
                    .title("Root Console Login Failure")
                    .with(
                        "Login Result",
                        Some(result.unwrap_or_else(|| "Failure".into())),
                    )
            } else {
                Hit::new(format!("Root account logged in {origin}"))
                    .title("Root Account Login")
                    .with("Login Result", result)
            };
            return Some(hit.with("MFA Used", mfa_used));
        }
        if failed {
            let code =
                v.e.error_code
                    .as_deref()
                    .filter(|_| v.failed())
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default();
            return Some(
                Hit::new(format!(
                    "Root account {} failed {origin}{code}",
                    v.e.event_name
                ))
                .title(format!("Root Sign-in Event Failed: {}", v.e.event_name))
                .with("Event Source", Some(v.e.event_source.clone()))
                .with("Result", Some(result.unwrap_or_else(|| "Failure".into())))
                .with("MFA Used", mfa_used),
            );
        }
    }
    let outcome = match (&v.e.error_code, v.failed()) {
        (Some(code), true) => format!(" (failed: {code})"),
        _ => String::new(),
    };
    Some(
        Hit::new(format!(
            "Root account called {} on {} {origin}{outcome}",
            v.e.event_name, v.e.event_source
        ))
        .title(format!("Root Account Activity: {}", v.e.event_name))
        .with("Event Source", Some(v.e.event_source.clone()))
        .with("MFA Authenticated", mfa_authenticated),
    )
}
