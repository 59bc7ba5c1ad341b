//! `role-trust-policy`: a role trust policy that lets in anyone, another account, or any
//! federated user.

use super::fields::or_unknown;
use super::policy::{policy_document, trust_findings};
use super::view::{Hit, View};
use super::{Logic, Rule, RuleInfo, Severity, IAM_SOURCE};

pub(super) const ROLE_TRUST_POLICY: Rule = Rule {
    info: RuleInfo {
        id: "role-trust-policy",
        title: "Role Trust Policy Allows External Principal",
        severity: Severity::Critical,
        description: "iam:CreateRole (assumeRolePolicyDocument) or UpdateAssumeRolePolicy \
            (policyDocument) succeeded with a trust document (JSON or URL-encoded) holding an \
            Allow statement whose Principal is `*`, an AWS principal `*`, an AWS principal of \
            another account (ARN or bare 12-digit id different from the event's account: \
            recipientAccountId, else userIdentity.accountId), or a Federated principal \
            containing a wildcard; or an Allow statement with NotPrincipal. The same account \
            (by id or ARN) and Service principals are not matches. Conditions do not suppress \
            a match (they are shown). Failed calls do not alert.",
        attack: &["T1098"],
        seed_check: Some("check_role_trust_policy"),
    },
    logic: Logic::Check(role_trust_policy),
};

fn role_trust_policy(v: &View) -> Option<Hit> {
    let (field, verb) = if v.succeeded(IAM_SOURCE, &["CreateRole"]) {
        ("assumeRolePolicyDocument", "created")
    } else if v.succeeded(IAM_SOURCE, &["UpdateAssumeRolePolicy"]) {
        ("policyDocument", "updated")
    } else {
        return None;
    };
    let doc = policy_document(v.req_value(field))?;
    let f = trust_findings(&doc, v.account());
    if !f.is_match() {
        return None;
    }
    let title = if !f.anyone.is_empty() {
        "Role Trust Policy Allows Any Principal"
    } else if !f.other_accounts.is_empty() {
        "Role Trust Policy Allows Another Account"
    } else {
        "Role Trust Policy Allows Any Federated User"
    };
    let flagged: Vec<String> = f
        .anyone
        .iter()
        .chain(&f.other_accounts)
        .chain(&f.federated_wildcards)
        .cloned()
        .collect();
    let role = v.req_str("roleName");
    Some(
        Hit::new(format!(
            "Trust policy of role {} ({verb} by {}) allows {}",
            or_unknown(&role),
            v.actor(),
            flagged.join(", ")
        ))
        .title(title)
        .with("Role Name", role)
        .with("Role ARN", v.resp_path(&["role", "arn"]))
        .with("Flagged Principals", Some(flagged.join(", ")))
        .with("Trusted Principals", Some(f.all_principals.join(", ")))
        .with("Conditions", Some(f.conditions.join("; "))),
    )
}
