//! `policy-version-escalation`: a customer-managed policy version that grants admin-level
//! actions put in force. `SetDefaultPolicyVersion` names a version, not its document, so the
//! rule reads the document from the stored event that created that version (docs/alerts.md,
//! "Rules that read history").

use super::fields::or_unknown;
use super::history::{History, Reads};
use super::policy::{dangerous_grants, policy_document};
use super::view::{Hit, View};
use super::{Logic, Rule, RuleInfo, Severity, IAM_SOURCE};
use crate::normalize::NormalizedEvent;

/// The stored calls that hold a version's document.
const DOCUMENT_CALLS: [&str; 2] = ["CreatePolicyVersion", "CreatePolicy"];

pub(super) const POLICY_VERSION_ESCALATION: Rule = Rule {
    info: RuleInfo {
        id: "policy-version-escalation",
        title: "Admin-Level Policy Version Made Default",
        severity: Severity::Critical,
        description: "A customer-managed policy version that grants admin-level actions put in \
            force: its document has an Allow statement whose Action covers `*`, `iam:*` or \
            `sts:*`, or an Allow with NotAction (read as dangerous-inline-policy reads \
            documents). iam:CreatePolicyVersion succeeded with setAsDefault true (boolean or \
            \"true\") and such a policyDocument; or iam:SetDefaultPolicyVersion succeeded for a \
            version whose document is such. That document is not in the SetDefaultPolicyVersion \
            event: it is read from the stored events, the newest no later than the event of: \
            the successful CreatePolicyVersion of the same policyArn whose \
            responseElements.policyVersion.versionId is the requested versionId, or, for v1, the \
            successful CreatePolicy whose responseElements.policy.arn is the policyArn. When no \
            stored event holds the document (the version was created before the tracker saw \
            it, or its event has expired), SetDefaultPolicyVersion does not alert. A version \
            created with setAsDefault false (until it is made default), a scoped document and \
            failed calls do not alert. Every principal the policy is attached to gains the \
            permissions at once (T1098.003); the change is to a policy that governs other \
            principals, not to one principal (T1484).",
        attack: &["T1098.003", "T1484"],
        seed_check: None,
    },
    logic: Logic::Known(
        &Reads {
            triggers: &["CreatePolicyVersion", "SetDefaultPolicyVersion"],
            reads: &DOCUMENT_CALLS,
        },
        policy_version_escalation,
    ),
};

fn same_arn(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// `setAsDefault` is true (JSON `true` or the text `"true"`).
fn set_as_default(v: &View) -> bool {
    v.req_str("setAsDefault")
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("true"))
}

/// The stored event that created `version` of `policy_arn`, and its document, as of `event`.
fn stored_version<'h>(
    history: &'h History,
    event: &'h NormalizedEvent,
    policy_arn: &str,
    version: &str,
) -> Option<(&'h NormalizedEvent, serde_json::Value)> {
    history.before(&DOCUMENT_CALLS, event).find_map(|stored| {
        let s = View::new(stored);
        if s.e.event_source != IAM_SOURCE || s.failed() {
            return None;
        }
        let holds = match s.e.event_name.as_str() {
            "CreatePolicyVersion" => {
                s.req_str("policyArn")
                    .is_some_and(|a| same_arn(&a, policy_arn))
                    && s.resp_path(&["policyVersion", "versionId"])
                        .is_some_and(|id| id.trim().eq_ignore_ascii_case(version))
            }
            "CreatePolicy" => {
                version.eq_ignore_ascii_case("v1")
                    && s.resp_path(&["policy", "arn"])
                        .is_some_and(|a| same_arn(&a, policy_arn))
            }
            _ => false,
        };
        if !holds {
            return None;
        }
        // The newest event that created this version decides, readable or not.
        Some(policy_document(s.req_value("policyDocument")).map(|doc| (stored, doc)))
    })?
}

fn policy_version_escalation(v: &View, history: &History) -> Option<Hit> {
    let policy_arn = v.req_str("policyArn");
    let (version, doc, source) = if v.succeeded(IAM_SOURCE, &["CreatePolicyVersion"]) {
        if !set_as_default(v) {
            return None;
        }
        let doc = policy_document(v.req_value("policyDocument"))?;
        (v.resp_path(&["policyVersion", "versionId"]), doc, None)
    } else if v.succeeded(IAM_SOURCE, &["SetDefaultPolicyVersion"]) {
        let version = v.req_str("versionId")?;
        let (stored, doc) = stored_version(history, v.e, policy_arn.as_deref()?, &version)?;
        (Some(version), doc, Some(stored))
    } else {
        return None;
    };
    let grants = dangerous_grants(&doc);
    if grants.is_empty() {
        return None;
    }
    let (verb, title) = match source {
        None => (
            "was created as the default version",
            "Admin-Level Policy Version Created as Default",
        ),
        Some(_) => (
            "was made the default version",
            "Admin-Level Policy Version Set as Default",
        ),
    };
    Some(
        Hit::new(format!(
            "Version {} of policy {} {verb} by {} ({})",
            or_unknown(&version),
            or_unknown(&policy_arn),
            v.actor(),
            grants.join("; ")
        ))
        .title(title)
        .with("Policy ARN", policy_arn)
        .with("Version", version)
        .with("Dangerous Grants", Some(grants.join("; ")))
        .with("Policy Document", Some(doc.to_string()))
        .with(
            "Document From",
            source.map(|e| format!("{} {} at {}", e.event_name, e.event_id, e.event_time)),
        ),
    )
}
