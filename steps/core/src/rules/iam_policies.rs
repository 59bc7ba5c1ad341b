//! Rules on IAM policies: `admin-policy-attachment` and `dangerous-inline-policy`.

use super::fields::or_unknown;
use super::policy::{admin_policy_name, dangerous_grants, policy_document};
use super::view::{Hit, View};
use super::{Logic, Rule, RuleInfo, Severity, IAM_SOURCE};

pub(super) const ADMIN_POLICY_ATTACHMENT: Rule = Rule {
    info: RuleInfo {
        id: "admin-policy-attachment",
        title: "Admin Policy Attachment",
        severity: Severity::Critical,
        description: "iam:AttachUserPolicy, AttachRolePolicy or AttachGroupPolicy succeeded with \
            policyArn exactly arn:<partition>:iam::aws:policy/<name> for AdministratorAccess, \
            IAMFullAccess, PowerUserAccess, AWSSSOMasterAccountAdministrator, \
            AWSIdentityCenterFullAccess or AWSSSOMemberAccountAdministrator. Customer policies \
            (any other account than `aws`) never match, whatever their name. Failed calls do \
            not alert.",
        attack: &["T1098.003"],
        seed_check: Some("check_admin_policy_attachment"),
    },
    logic: Logic::Check(admin_policy_attachment),
};

pub(super) const DANGEROUS_INLINE_POLICY: Rule = Rule {
    info: RuleInfo {
        id: "dangerous-inline-policy",
        title: "Dangerous Inline Policy",
        severity: Severity::Critical,
        description: "iam:PutUserPolicy, PutRolePolicy or PutGroupPolicy succeeded with a \
            policyDocument (JSON, or URL-encoded JSON) holding an Allow statement whose Action \
            (string or list, any case) covers every action, every iam: action or every sts: \
            action (`*`, `iam:*`, `sts:*`, `*:*`, `IAM:*`, ...), or an Allow statement with \
            NotAction (it grants everything but the listed actions). Resource and Condition are \
            not considered. Deny statements and scoped actions do not match; failed calls do \
            not alert.",
        attack: &["T1098.003"],
        seed_check: Some("check_dangerous_inline_policy"),
    },
    logic: Logic::Check(dangerous_inline_policy),
};

/// The principal kind and name targeted by an `Attach*Policy` / `Put*Policy` call.
pub(super) fn target(view: &View) -> (&'static str, Option<String>) {
    let name = view.e.event_name.as_str();
    if name.contains("User") {
        ("User", view.req_str("userName"))
    } else if name.contains("Role") {
        ("Role", view.req_str("roleName"))
    } else {
        ("Group", view.req_str("groupName"))
    }
}

fn admin_policy_attachment(v: &View) -> Option<Hit> {
    if !v.succeeded(
        IAM_SOURCE,
        &["AttachUserPolicy", "AttachRolePolicy", "AttachGroupPolicy"],
    ) {
        return None;
    }
    let policy_arn = v.req_str("policyArn")?;
    let policy = admin_policy_name(&policy_arn)?;
    let (kind, name) = target(v);
    Some(
        Hit::new(format!(
            "{policy} was attached to {} {} by {}",
            kind.to_ascii_lowercase(),
            or_unknown(&name),
            v.actor()
        ))
        .title(format!("Admin Policy Attached to {kind}"))
        .with(&format!("Target {kind}"), name)
        .with("Policy Name", Some(policy))
        .with("Policy ARN", Some(policy_arn)),
    )
}

fn dangerous_inline_policy(v: &View) -> Option<Hit> {
    if !v.succeeded(
        IAM_SOURCE,
        &["PutUserPolicy", "PutRolePolicy", "PutGroupPolicy"],
    ) {
        return None;
    }
    let doc = policy_document(v.req_value("policyDocument"))?;
    let grants = dangerous_grants(&doc);
    if grants.is_empty() {
        return None;
    }
    let (kind, name) = target(v);
    let policy_name = v.req_str("policyName");
    Some(
        Hit::new(format!(
            "Inline policy {} on {} {} allows {} (put by {})",
            or_unknown(&policy_name),
            kind.to_ascii_lowercase(),
            or_unknown(&name),
            grants.join("; "),
            v.actor()
        ))
        .title(format!("Dangerous Inline Policy on {kind}"))
        .with(&format!("Target {kind}"), name)
        .with("Policy Name", policy_name)
        .with("Dangerous Grants", Some(grants.join("; ")))
        .with("Policy Document", Some(doc.to_string())),
    )
}
