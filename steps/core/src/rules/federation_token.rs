//! `federation-token`: temporary credentials for a federated user whose session policy passes
//! on the caller's admin-level permissions (docs/alerts.md, "The rules").

use serde_json::Value;

use super::fields::{get_ci, or_unknown};
use super::policy::{admin_policy_name, dangerous_grants, policy_document};
use super::view::{Hit, View};
use super::{Logic, Rule, RuleInfo, Severity, STS_SOURCE};

pub(super) const FEDERATION_TOKEN: Rule = Rule {
    info: RuleInfo {
        id: "federation-token",
        title: "Federation Token With Admin-Level Session Policy",
        severity: Severity::Critical,
        description: "sts:GetFederationToken succeeded with a session policy that passes on \
            admin-level permissions: an inline policy (requestParameters.policy, JSON or \
            URL-encoded) with an Allow statement whose Action covers `*`, `iam:*` or `sts:*`, or \
            an Allow with NotAction (read as dangerous-inline-policy reads documents), or a \
            policyArns entry ({arn: ...}) that is one of the six admin AWS-managed policies of \
            admin-policy-attachment. The federated user gets whatever of the caller's \
            permissions the session policy allows, for up to 36 hours, with credentials of its \
            own beside the caller's access key: additional credentials kept for later use \
            (T1098.001). A scoped session policy, no session policy (the session then has no \
            permissions) and failed calls do not alert.",
        attack: &["T1098.001"],
        seed_check: None,
    },
    logic: Logic::Check(federation_token),
};

/// The ARNs in `policyArns` (a list of `{"arn": ...}`; bare strings are read too).
fn policy_arns(v: &View) -> Vec<String> {
    match v.req_value("policyArns") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| match item {
                Value::String(s) => Some(s.clone()),
                obj => get_ci(obj, "arn").and_then(Value::as_str).map(String::from),
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn federation_token(v: &View) -> Option<Hit> {
    if !v.succeeded(STS_SOURCE, &["GetFederationToken"]) {
        return None;
    }
    let inline = policy_document(v.req_value("policy"));
    let mut grants = inline.as_ref().map(dangerous_grants).unwrap_or_default();
    let admin_arns: Vec<String> = policy_arns(v)
        .into_iter()
        .filter(|arn| admin_policy_name(arn).is_some())
        .collect();
    for arn in &admin_arns {
        if let Some(name) = admin_policy_name(arn) {
            grants.push(format!("managed policy {name}"));
        }
    }
    if grants.is_empty() {
        return None;
    }
    let name = v.req_str("name");
    // Without durationSeconds, the session lasts 12 hours.
    let duration = v
        .req_str("durationSeconds")
        .map(|d| format!("{d} s"))
        .unwrap_or_else(|| "43200 s (the default)".into());
    Some(
        Hit::new(format!(
            "{} got a federation token for federated user {} ({duration}) with an admin-level \
             session policy ({})",
            v.actor(),
            or_unknown(&name),
            grants.join("; ")
        ))
        .with("Federated User", name)
        .with("Federated User ARN", v.resp_path(&["federatedUser", "arn"]))
        .with(
            "Temporary Access Key ID",
            v.resp_path(&["credentials", "accessKeyId"]),
        )
        .with("Duration", Some(duration))
        .with("Expiration", v.resp_path(&["credentials", "expiration"]))
        .with("Dangerous Grants", Some(grants.join("; ")))
        .with("Admin Policy ARNs", Some(admin_arns.join(", ")))
        .with("Session Policy", inline.map(|d| d.to_string())),
    )
}
