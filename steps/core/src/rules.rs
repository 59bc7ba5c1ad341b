//! The alert rules (docs/alerts.md, "The rules"): the 14 `check_*` functions of the original
//! Python script's `security_alerts.py`, without their gaps.
//!
//! Every rule is a pure predicate over a [`NormalizedEvent`]: no I/O, no clock, no state. One
//! event may match several rules (a `CreateAccessKey` by the root user is both root activity and
//! an access-key creation) and [`evaluate`] returns every match, in rule order. Rule ids are
//! stable strings (they are the alerts table's sort key): never rename one.
//!
//! Conventions shared by all rules:
//! - **Event source.** A rule names the service it watches (`iam.amazonaws.com`,
//!   `sso.amazonaws.com`, `signin.amazonaws.com`), so a same-named call of another service
//!   (Identity Store's `CreateUser`, say) never matches.
//! - **Failed calls.** A call that carries an `errorCode` did not open the door, so it does not
//!   alert — except `root-activity`: any use of the root user, including a failed console
//!   login (which CloudTrail records with `errorMessage` and `ConsoleLogin: Failure`, not an
//!   `errorCode`), is worth a look.
//! - **Documents.** Policy and trust documents arrive as JSON text inside
//!   `requestParameters`, sometimes URL-encoded; both forms are read. A document that is
//!   absent or unreadable never panics and never matches.
//! - **Names are case-insensitive where IAM's are**: policy names in ARNs, actions, element
//!   names (`Effect`, `Action`, `Principal`, ...) and their values are compared ignoring ASCII
//!   case, which can only widen what matches.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::filter::glob_match;
use crate::normalize::NormalizedEvent;

/// `eventSource` of IAM.
pub const IAM_SOURCE: &str = "iam.amazonaws.com";
/// `eventSource` of IAM Identity Center (SSO admin).
pub const SSO_SOURCE: &str = "sso.amazonaws.com";
/// `eventSource` of console sign-in.
pub const SIGNIN_SOURCE: &str = "signin.amazonaws.com";

/// The AWS-managed policies that grant administrator (or IAM/Identity Center administrator)
/// power. Matched exactly, by ARN `arn:<partition>:iam::aws:policy/<name>`, never by substring:
/// a customer policy called `MyAdministratorAccessCopy` is not one of them.
pub const ADMIN_POLICY_NAMES: [&str; 6] = [
    "AdministratorAccess",
    "IAMFullAccess",
    "PowerUserAccess",
    "AWSSSOMasterAccountAdministrator",
    "AWSIdentityCenterFullAccess",
    "AWSSSOMemberAccountAdministrator",
];

/// How urgent an alert is. Orders most severe first (`Critical < High < Medium`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Critical,
    High,
    Medium,
}

impl Severity {
    /// `CRITICAL`, `HIGH` or `MEDIUM` (the SNS `severity` attribute and the subject prefix).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "CRITICAL",
            Severity::High => "HIGH",
            Severity::Medium => "MEDIUM",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rule is, for documentation, the CLI and the alerts table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RuleInfo {
    /// Stable id (the alerts table's sort key).
    pub id: &'static str,
    /// Default alert title (a match may specialise it).
    pub title: &'static str,
    pub severity: Severity,
    /// What fires the rule, and what does not.
    pub description: &'static str,
    /// The `security_alerts.py` function of the original Python script that this rule replaces
    /// (docs/alerts.md, "The rules").
    pub seed_check: &'static str,
}

/// One rule firing on one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertMatch {
    pub rule_id: &'static str,
    /// The rule's title, possibly specialised (e.g. "Root Console Login Failure").
    pub title: String,
    pub severity: Severity,
    /// One sentence: what happened.
    pub summary: String,
    /// What a responder needs, as ordered `(label, value)` pairs. Values may come from the
    /// request (attacker-controlled): render them as data (see `alert_text`).
    pub context: Vec<(String, String)>,
}

static RULES: [RuleInfo; 14] = [
    RuleInfo {
        id: "root-activity",
        title: "Root Account Activity",
        severity: Severity::Critical,
        description: "Any use of the root user (userIdentity.type Root), from any event source: a \
            console login, successful or failed (titled \"Root Console Login Failure\"), and \
            every other API call, including failed ones and calls an AWS service made on root's \
            behalf (invokedBy).",
        seed_check: "check_root_activity",
    },
    RuleInfo {
        id: "user-creation",
        title: "IAM User Created",
        severity: Severity::High,
        description: "iam:CreateUser succeeded. A failed call (any errorCode) does not alert.",
        seed_check: "check_user_creation",
    },
    RuleInfo {
        id: "admin-policy-attachment",
        title: "Admin Policy Attachment",
        severity: Severity::Critical,
        description: "iam:AttachUserPolicy, AttachRolePolicy or AttachGroupPolicy succeeded with \
            policyArn exactly arn:<partition>:iam::aws:policy/<name> for AdministratorAccess, \
            IAMFullAccess, PowerUserAccess, AWSSSOMasterAccountAdministrator, \
            AWSIdentityCenterFullAccess or AWSSSOMemberAccountAdministrator. Customer policies \
            (any other account than `aws`) never match, whatever their name. Failed calls do \
            not alert.",
        seed_check: "check_admin_policy_attachment",
    },
    RuleInfo {
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
        seed_check: "check_dangerous_inline_policy",
    },
    RuleInfo {
        id: "access-key-creation",
        title: "Access Key Created",
        severity: Severity::Critical,
        description: "iam:CreateAccessKey succeeded (for any user, including the caller \
            itself). Failed calls do not alert.",
        seed_check: "check_access_key_creation",
    },
    RuleInfo {
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
        seed_check: "check_role_trust_policy",
    },
    RuleInfo {
        id: "access-key-update",
        title: "Access Key Status Changed",
        severity: Severity::High,
        description: "iam:UpdateAccessKey succeeded (a key activated or deactivated). Failed \
            calls do not alert.",
        seed_check: "check_access_key_update",
    },
    RuleInfo {
        id: "mfa-deletion",
        title: "MFA Device Removed",
        severity: Severity::Critical,
        description: "iam:DeactivateMFADevice or iam:DeleteVirtualMFADevice succeeded. Failed \
            calls do not alert.",
        seed_check: "check_mfa_deletion",
    },
    RuleInfo {
        id: "sso-permission-set-creation",
        title: "SSO Permission Set Created",
        severity: Severity::Critical,
        description: "sso:CreatePermissionSet (eventSource sso.amazonaws.com) succeeded. Failed \
            calls do not alert.",
        seed_check: "check_sso_permission_set_creation",
    },
    RuleInfo {
        id: "sso-permission-set-update",
        title: "SSO Permission Set Updated",
        severity: Severity::Critical,
        description: "sso:UpdatePermissionSet (eventSource sso.amazonaws.com) succeeded. Failed \
            calls do not alert.",
        seed_check: "check_sso_permission_set_update",
    },
    RuleInfo {
        id: "sso-admin-policy-attachment",
        title: "Admin Policy Attached to SSO Permission Set",
        severity: Severity::Critical,
        description: "sso:AttachManagedPolicyToPermissionSet succeeded with managedPolicyArn \
            exactly one of the admin AWS-managed policies of admin-policy-attachment. Other \
            policies and failed calls do not alert.",
        seed_check: "check_sso_admin_policy_attachment",
    },
    RuleInfo {
        id: "sso-account-assignment",
        title: "SSO Account Assignment Created",
        severity: Severity::Critical,
        description: "sso:CreateAccountAssignment succeeded (a user or group given a permission \
            set on an account). Failed calls do not alert.",
        seed_check: "check_sso_account_assignment",
    },
    RuleInfo {
        id: "sso-app-creation",
        title: "SSO Application Created",
        severity: Severity::High,
        description: "sso:CreateManagedApplicationInstance succeeded. Failed calls do not \
            alert.",
        seed_check: "check_sso_app_creation",
    },
    RuleInfo {
        id: "sso-app-deletion",
        title: "SSO Application Deleted",
        severity: Severity::High,
        description: "sso:DeleteManagedApplicationInstance succeeded. Failed calls do not \
            alert.",
        seed_check: "check_sso_app_deletion",
    },
];

/// What a check found: the specialised title (if any), the summary and the context.
struct Hit {
    title: Option<String>,
    summary: String,
    context: Vec<(String, String)>,
}

impl Hit {
    fn new(summary: String) -> Hit {
        Hit {
            title: None,
            summary,
            context: Vec::new(),
        }
    }

    fn title(mut self, title: impl Into<String>) -> Hit {
        self.title = Some(title.into());
        self
    }

    fn with(mut self, label: &str, value: Option<impl Into<String>>) -> Hit {
        if let Some(v) = value.map(Into::into).filter(|v| !v.trim().is_empty()) {
            self.context.push((label.to_string(), v));
        }
        self
    }
}

type Check = fn(&View) -> Option<Hit>;

/// The checks, in the order of [`RULES`].
static CHECKS: [Check; 14] = [
    root_activity,
    user_creation,
    admin_policy_attachment,
    dangerous_inline_policy,
    access_key_creation,
    role_trust_policy,
    access_key_update,
    mfa_deletion,
    sso_permission_set_creation,
    sso_permission_set_update,
    sso_admin_policy_attachment,
    sso_account_assignment,
    sso_app_creation,
    sso_app_deletion,
];

/// Every rule, in evaluation order.
pub fn rules() -> &'static [RuleInfo] {
    &RULES
}

/// The rule with this id.
pub fn rule(id: &str) -> Option<&'static RuleInfo> {
    RULES.iter().find(|r| r.id == id)
}

/// Every rule that matches the event, in rule order. Each match carries the event's account
/// (when known) as its last context entry.
pub fn evaluate(event: &NormalizedEvent) -> Vec<AlertMatch> {
    let view = View::new(event);
    RULES
        .iter()
        .zip(CHECKS.iter())
        .filter_map(|(info, check)| {
            let hit = check(&view)?;
            let mut context = hit.context;
            if let Some(account) = view.account() {
                if !context.iter().any(|(k, _)| k == "Account") {
                    context.push(("Account".to_string(), account.to_string()));
                }
            }
            Some(AlertMatch {
                rule_id: info.id,
                title: hit.title.unwrap_or_else(|| info.title.to_string()),
                severity: info.severity,
                summary: hit.summary,
                context,
            })
        })
        .collect()
}

/// An event with its JSON fields parsed once.
struct View<'a> {
    e: &'a NormalizedEvent,
    req: Value,
    resp: Value,
}

impl<'a> View<'a> {
    fn new(e: &'a NormalizedEvent) -> View<'a> {
        let parse = |text: &Option<String>| {
            text.as_deref()
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or(Value::Null)
        };
        View {
            e,
            req: parse(&e.request_parameters),
            resp: parse(&e.response_elements),
        }
    }

    /// The event is `name` (one of `names`) from `source`.
    fn is(&self, source: &str, names: &[&str]) -> bool {
        self.e.event_source == source && names.contains(&self.e.event_name.as_str())
    }

    /// The event is one of `names` from `source` and succeeded.
    fn succeeded(&self, source: &str, names: &[&str]) -> bool {
        self.is(source, names) && !self.failed()
    }

    fn failed(&self) -> bool {
        self.e
            .error_code
            .as_deref()
            .is_some_and(|c| !c.trim().is_empty())
    }

    /// The event's account: the recipient account, else the caller's.
    fn account(&self) -> Option<&str> {
        [&self.e.recipient_account_id, &self.e.account_id]
            .into_iter()
            .flatten()
            .map(|s| s.trim())
            .find(|s| !s.is_empty())
    }

    /// Who made the call, for summaries.
    fn actor(&self) -> &str {
        &self.e.user_name
    }

    fn req_str(&self, key: &str) -> Option<String> {
        get_ci(&self.req, key).and_then(scalar)
    }

    fn resp_path(&self, path: &[&str]) -> Option<String> {
        let mut v = &self.resp;
        for key in path {
            v = get_ci(v, key)?;
        }
        scalar(v)
    }
}

/// `obj[key]`, matching the key exactly first, then ignoring ASCII case.
fn get_ci<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    let map = v.as_object()?;
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// A scalar as text (strings as-is, numbers and booleans printed); `None` for null and
/// containers.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A string or a list of strings (IAM's "one or many" form); other values are ignored.
fn string_list(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn or_unknown(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("unknown")
}

// ---------------------------------------------------------------------------------------------
// Policy documents

/// Decodes `%XX` escapes (and, when `plus_is_space`, `+` as a space). Invalid escapes are kept.
fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = |d: u8| (d as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(bytes[i + 1]) * 16 + hex(bytes[i + 2]));
            i += 3;
            continue;
        }
        out.push(if plus_is_space && b == b'+' { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A policy document from its request value: a JSON object, JSON text, or URL-encoded JSON
/// text (as CloudTrail records some IAM calls). `None` when it cannot be read.
pub fn policy_document(value: Option<&Value>) -> Option<Value> {
    fn from_text(text: &str, depth: u8) -> Option<Value> {
        let text = text.trim();
        let mut candidates = vec![Cow::Borrowed(text)];
        if text.contains('%') {
            candidates.push(Cow::Owned(percent_decode(text, false)));
            candidates.push(Cow::Owned(percent_decode(text, true)));
        }
        candidates.into_iter().find_map(|c| {
            match serde_json::from_str::<Value>(c.trim()).ok()? {
                v @ Value::Object(_) => Some(v),
                // JSON text inside a JSON string: one more level at most.
                Value::String(inner) if depth == 0 => from_text(&inner, 1),
                _ => None,
            }
        })
    }
    match value? {
        v @ Value::Object(_) => Some(v.clone()),
        Value::String(s) => from_text(s, 0),
        _ => None,
    }
}

/// The statements of a policy document (`Statement` as an object or a list).
fn statements(doc: &Value) -> Vec<&Value> {
    match get_ci(doc, "Statement") {
        Some(Value::Array(items)) => items.iter().filter(|s| s.is_object()).collect(),
        Some(s @ Value::Object(_)) => vec![s],
        _ => Vec::new(),
    }
}

fn is_allow(statement: &Value) -> bool {
    get_ci(statement, "Effect")
        .and_then(Value::as_str)
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("allow"))
}

/// What an action pattern grants that we alert on: `*` (everything), `iam:*` or `sts:*`
/// (every action of the service), or an equivalent glob (`*:*`, `IAM:*`, `i*`, `iam:?*`).
fn broad_action(pattern: &str) -> Option<&'static str> {
    let p = pattern.trim().to_ascii_lowercase();
    // A pattern covers a whole service when it matches any action name, which we probe with
    // two names no literal pattern can spell (and of different lengths, against `?`).
    let covers = |service: &str| {
        glob_match(&p, &format!("{service}:\u{1}"))
            && glob_match(
                &p,
                &format!("{service}:\u{1}\u{2}\u{3}\u{4}\u{5}\u{6}\u{7}\u{8}"),
            )
    };
    if covers("\u{1}") && covers("\u{2}\u{3}\u{4}\u{5}\u{6}\u{7}\u{8}") {
        Some("*")
    } else if covers("iam") {
        Some("iam:*")
    } else if covers("sts") {
        Some("sts:*")
    } else {
        None
    }
}

/// The dangerous grants of an identity policy document, described for a responder.
pub fn dangerous_grants(doc: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for statement in statements(doc).into_iter().filter(|s| is_allow(s)) {
        if let Some(actions) = get_ci(statement, "Action") {
            for action in string_list(actions) {
                if let Some(kind) = broad_action(action) {
                    let what = if action.trim() == kind {
                        format!("Allow {kind}")
                    } else {
                        format!("Allow {} (= {kind})", action.trim())
                    };
                    if !found.contains(&what) {
                        found.push(what);
                    }
                }
            }
        }
        if let Some(not_actions) = get_ci(statement, "NotAction") {
            let listed = string_list(not_actions).join(", ");
            found.push(format!("Allow NotAction [{listed}] (everything else)"));
        }
    }
    found
}

/// The account of an AWS principal: a bare 12-digit id or the account field of an ARN.
/// `Some("*")` for wildcards, `None` when it names no account (unique ids, garbage).
fn principal_account(principal: &str) -> Option<String> {
    let p = principal.trim();
    if p == "*" {
        return Some("*".into());
    }
    if p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit()) {
        return Some(p.into());
    }
    let parts: Vec<&str> = p.splitn(6, ':').collect();
    if parts.len() == 6 && parts[0].eq_ignore_ascii_case("arn") {
        let account = parts[4].trim();
        if account.contains('*') {
            return Some("*".into());
        }
        if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) {
            return Some(account.into());
        }
    }
    None
}

/// What a trust policy opens up.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TrustFindings {
    /// `*`, `AWS: *` or `NotPrincipal`: anyone.
    pub anyone: Vec<String>,
    /// AWS principals of other accounts.
    pub other_accounts: Vec<String>,
    /// Federated principals with a wildcard.
    pub federated_wildcards: Vec<String>,
    /// Every principal of the Allow statements, as `Type: value`.
    pub all_principals: Vec<String>,
    /// Conditions of the flagged statements (compact JSON).
    pub conditions: Vec<String>,
}

impl TrustFindings {
    pub fn is_match(&self) -> bool {
        !(self.anyone.is_empty()
            && self.other_accounts.is_empty()
            && self.federated_wildcards.is_empty())
    }
}

/// Reads a role trust policy against the role's account (`None`: unknown, so any named
/// account counts as another).
pub fn trust_findings(doc: &Value, own_account: Option<&str>) -> TrustFindings {
    let mut f = TrustFindings::default();
    for statement in statements(doc).into_iter().filter(|s| is_allow(s)) {
        let before = (
            f.anyone.len(),
            f.other_accounts.len(),
            f.federated_wildcards.len(),
        );
        if let Some(not_principal) = get_ci(statement, "NotPrincipal") {
            f.anyone
                .push(format!("NotPrincipal {not_principal} (everyone else)"));
        }
        match get_ci(statement, "Principal") {
            Some(Value::String(s)) => {
                f.all_principals.push(s.clone());
                if s.trim() == "*" {
                    f.anyone.push("*".into());
                }
            }
            Some(Value::Object(map)) => {
                for (kind, values) in map {
                    for value in string_list(values) {
                        f.all_principals.push(format!("{kind}: {value}"));
                        if kind.eq_ignore_ascii_case("AWS") {
                            match principal_account(value).as_deref() {
                                Some("*") => f.anyone.push(format!("AWS: {value}")),
                                Some(acct) if Some(acct) != own_account => {
                                    f.other_accounts.push(format!("{value} (account {acct})"))
                                }
                                _ => {}
                            }
                        } else if kind.eq_ignore_ascii_case("Federated") && value.contains('*') {
                            f.federated_wildcards.push(format!("Federated: {value}"));
                        }
                    }
                }
            }
            _ => {}
        }
        let after = (
            f.anyone.len(),
            f.other_accounts.len(),
            f.federated_wildcards.len(),
        );
        if before != after {
            if let Some(c) = get_ci(statement, "Condition")
                .filter(|c| c.as_object().is_some_and(|m| !m.is_empty()))
            {
                f.conditions.push(c.to_string());
            }
        }
    }
    f
}

/// The admin policy an ARN names exactly (`arn:<partition>:iam::aws:policy/<name>`), if any.
pub fn admin_policy_name(arn: &str) -> Option<&'static str> {
    let arn = arn.trim();
    let (prefix, name) = arn.split_once(":iam::aws:policy/")?;
    let partition = prefix.strip_prefix("arn:")?;
    let valid_partition = partition == "aws"
        || partition.strip_prefix("aws-").is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        });
    if !valid_partition {
        return None;
    }
    ADMIN_POLICY_NAMES
        .iter()
        .find(|n| n.eq_ignore_ascii_case(name))
        .copied()
}

/// The principal kind and name targeted by an `Attach*Policy` / `Put*Policy` call.
fn target(view: &View) -> (&'static str, Option<String>) {
    let name = view.e.event_name.as_str();
    if name.contains("User") {
        ("User", view.req_str("userName"))
    } else if name.contains("Role") {
        ("Role", view.req_str("roleName"))
    } else {
        ("Group", view.req_str("groupName"))
    }
}

// ---------------------------------------------------------------------------------------------
// The checks

fn root_activity(v: &View) -> Option<Hit> {
    let is_root =
        v.e.user_identity_type
            .as_deref()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("Root"));
    if !is_root {
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

fn user_creation(v: &View) -> Option<Hit> {
    if !v.succeeded(IAM_SOURCE, &["CreateUser"]) {
        return None;
    }
    let new_user = v
        .req_str("userName")
        .or_else(|| v.resp_path(&["user", "userName"]));
    Some(
        Hit::new(format!(
            "IAM user {} was created by {}",
            or_unknown(&new_user),
            v.actor()
        ))
        .with("New User", new_user)
        .with("New User ARN", v.resp_path(&["user", "arn"]))
        .with("Path", v.req_str("path")),
    )
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
    let doc = policy_document(get_ci(&v.req, "policyDocument"))?;
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

fn access_key_creation(v: &View) -> Option<Hit> {
    if !v.succeeded(IAM_SOURCE, &["CreateAccessKey"]) {
        return None;
    }
    let key_id = v.resp_path(&["accessKey", "accessKeyId"]);
    let for_user = v
        .req_str("userName")
        .or_else(|| v.resp_path(&["accessKey", "userName"]))
        .unwrap_or_else(|| v.actor().to_string());
    let key_text = key_id
        .as_deref()
        .map(|k| format!("Access key {k}"))
        .unwrap_or_else(|| "An access key".into());
    Some(
        Hit::new(format!(
            "{key_text} was created for user {for_user} by {}",
            v.actor()
        ))
        .with("For User", Some(for_user))
        .with("Access Key ID", key_id)
        .with("Key Status", v.resp_path(&["accessKey", "status"])),
    )
}

fn role_trust_policy(v: &View) -> Option<Hit> {
    let (field, verb) = if v.succeeded(IAM_SOURCE, &["CreateRole"]) {
        ("assumeRolePolicyDocument", "created")
    } else if v.succeeded(IAM_SOURCE, &["UpdateAssumeRolePolicy"]) {
        ("policyDocument", "updated")
    } else {
        return None;
    };
    let doc = policy_document(get_ci(&v.req, field))?;
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

fn access_key_update(v: &View) -> Option<Hit> {
    if !v.succeeded(IAM_SOURCE, &["UpdateAccessKey"]) {
        return None;
    }
    let key_id = v.req_str("accessKeyId");
    let status = v.req_str("status");
    let for_user = v
        .req_str("userName")
        .unwrap_or_else(|| v.actor().to_string());
    let title = match status.as_deref() {
        Some(s) if s.eq_ignore_ascii_case("Active") => Some("Access Key Activated"),
        Some(s) if s.eq_ignore_ascii_case("Inactive") => Some("Access Key Deactivated"),
        _ => None,
    };
    let mut hit = Hit::new(format!(
        "Access key {} of user {for_user} was set to {} by {}",
        or_unknown(&key_id),
        or_unknown(&status),
        v.actor()
    ))
    .with("Access Key ID", key_id)
    .with("New Status", status)
    .with("For User", Some(for_user));
    if let Some(t) = title {
        hit = hit.title(t);
    }
    Some(hit)
}

fn mfa_deletion(v: &View) -> Option<Hit> {
    let serial = v.req_str("serialNumber");
    if v.succeeded(IAM_SOURCE, &["DeactivateMFADevice"]) {
        let user = v.req_str("userName");
        return Some(
            Hit::new(format!(
                "MFA device {} of user {} was deactivated by {}",
                or_unknown(&serial),
                or_unknown(&user),
                v.actor()
            ))
            .title("MFA Device Deactivated")
            .with("For User", user)
            .with("MFA Serial", serial),
        );
    }
    if v.succeeded(IAM_SOURCE, &["DeleteVirtualMFADevice"]) {
        return Some(
            Hit::new(format!(
                "Virtual MFA device {} was deleted by {}",
                or_unknown(&serial),
                v.actor()
            ))
            .title("Virtual MFA Device Deleted")
            .with("MFA Serial", serial),
        );
    }
    None
}

fn sso_permission_set_creation(v: &View) -> Option<Hit> {
    if !v.succeeded(SSO_SOURCE, &["CreatePermissionSet"]) {
        return None;
    }
    let name = v
        .req_str("name")
        .or_else(|| v.resp_path(&["permissionSet", "name"]));
    Some(
        Hit::new(format!(
            "Permission set {} was created in IAM Identity Center by {}",
            or_unknown(&name),
            v.actor()
        ))
        .with("Permission Set", name)
        .with(
            "Permission Set ARN",
            v.resp_path(&["permissionSet", "permissionSetArn"]),
        )
        .with("Instance ARN", v.req_str("instanceArn"))
        .with("Session Duration", v.req_str("sessionDuration"))
        .with("Relay State", v.req_str("relayState")),
    )
}

fn sso_permission_set_update(v: &View) -> Option<Hit> {
    if !v.succeeded(SSO_SOURCE, &["UpdatePermissionSet"]) {
        return None;
    }
    let ps = v.req_str("permissionSetArn");
    Some(
        Hit::new(format!(
            "Permission set {} was updated in IAM Identity Center by {}",
            or_unknown(&ps),
            v.actor()
        ))
        .with("Permission Set ARN", ps)
        .with("Instance ARN", v.req_str("instanceArn"))
        .with("Session Duration", v.req_str("sessionDuration"))
        .with("Relay State", v.req_str("relayState"))
        .with("Description", v.req_str("description")),
    )
}

fn sso_admin_policy_attachment(v: &View) -> Option<Hit> {
    if !v.succeeded(SSO_SOURCE, &["AttachManagedPolicyToPermissionSet"]) {
        return None;
    }
    let policy_arn = v.req_str("managedPolicyArn")?;
    let policy = admin_policy_name(&policy_arn)?;
    let ps = v.req_str("permissionSetArn");
    Some(
        Hit::new(format!(
            "{policy} was attached to permission set {} by {}",
            or_unknown(&ps),
            v.actor()
        ))
        .with("Permission Set ARN", ps)
        .with("Policy Name", Some(policy))
        .with("Policy ARN", Some(policy_arn))
        .with("Instance ARN", v.req_str("instanceArn")),
    )
}

fn sso_account_assignment(v: &View) -> Option<Hit> {
    if !v.succeeded(SSO_SOURCE, &["CreateAccountAssignment"]) {
        return None;
    }
    let target = v.req_str("targetId");
    let ps = v.req_str("permissionSetArn");
    let principal_type = v.req_str("principalType");
    let principal = v.req_str("principalId");
    Some(
        Hit::new(format!(
            "{} {} was given permission set {} on account {} by {}",
            principal_type.as_deref().unwrap_or("Principal"),
            or_unknown(&principal),
            or_unknown(&ps),
            or_unknown(&target),
            v.actor()
        ))
        .with("Target Account", target)
        .with("Target Type", v.req_str("targetType"))
        .with("Permission Set ARN", ps)
        .with("Principal Type", principal_type)
        .with("Principal ID", principal)
        .with("Instance ARN", v.req_str("instanceArn")),
    )
}

/// Context of the (console-only, sparsely documented) managed-application calls: whichever
/// identifying fields the request and response carry.
fn sso_app_hit(v: &View, verb: &str) -> Hit {
    const KEYS: [(&str, &str); 8] = [
        ("applicationName", "Application Name"),
        ("name", "Application Name"),
        ("displayName", "Display Name"),
        ("managedApplicationInstanceId", "Application Instance ID"),
        ("instanceId", "Application Instance ID"),
        ("applicationArn", "Application ARN"),
        ("applicationProviderArn", "Application Provider ARN"),
        ("templateId", "Template ID"),
    ];
    let mut hit = Hit::new(String::new());
    for (key, label) in KEYS {
        if hit.context.iter().any(|(l, _)| l == label) {
            continue;
        }
        let value = v.req_str(key).or_else(|| {
            v.resp
                .as_object()
                .and_then(|m| m.values().find_map(|inner| get_ci(inner, key)))
                .and_then(scalar)
        });
        hit = hit.with(label, value);
    }
    hit = hit.with("Instance ARN", v.req_str("instanceArn"));
    if hit.context.is_empty() {
        hit = hit.with("Request Parameters", v.e.request_parameters.clone());
    }
    hit = hit.with("Invoked By", v.e.invoked_by.clone());
    let named = hit
        .context
        .iter()
        .find(|(l, _)| l == "Application Name" || l == "Application Instance ID")
        .map(|(_, val)| format!(" {val}"))
        .unwrap_or_default();
    hit.summary = format!(
        "Managed application instance{named} was {verb} in IAM Identity Center by {}",
        v.actor()
    );
    hit
}

fn sso_app_creation(v: &View) -> Option<Hit> {
    v.succeeded(SSO_SOURCE, &["CreateManagedApplicationInstance"])
        .then(|| sso_app_hit(v, "created"))
}

fn sso_app_deletion(v: &View) -> Option<Hit> {
    v.succeeded(SSO_SOURCE, &["DeleteManagedApplicationInstance"])
        .then(|| sso_app_hit(v, "deleted"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rule_table_is_consistent() {
        assert_eq!(rules().len(), 14);
        let mut ids: Vec<_> = rules().iter().map(|r| r.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 14, "ids are unique");
        for r in rules() {
            assert!(r.seed_check.starts_with("check_"));
            assert_eq!(rule(r.id), Some(r));
            assert!(!r.description.is_empty() && !r.title.is_empty());
        }
        assert_eq!(Severity::Critical.as_str(), "CRITICAL");
        assert_eq!(serde_json::to_string(&Severity::High).unwrap(), "\"HIGH\"");
        assert!(Severity::Critical < Severity::High);
    }

    #[test]
    fn admin_policy_names_are_exact() {
        assert_eq!(
            admin_policy_name("arn:aws:iam::aws:policy/AdministratorAccess"),
            Some("AdministratorAccess")
        );
        assert_eq!(
            admin_policy_name("arn:aws-us-gov:iam::aws:policy/IAMFullAccess"),
            Some("IAMFullAccess")
        );
        assert_eq!(
            admin_policy_name("arn:aws-cn:iam::aws:policy/PowerUserAccess"),
            Some("PowerUserAccess")
        );
        for not_admin in [
            "arn:aws:iam::123456789012:policy/AdministratorAccess",
            "arn:aws:iam::aws:policy/MyAdministratorAccessCopy",
            "arn:aws:iam::aws:policy/AdministratorAccess-Amplify",
            "arn:aws:iam::aws:policy/job-function/AdministratorAccess",
            "arn:aws:iam::aws:policy/ReadOnlyAccess",
            "xarn:aws:iam::aws:policy/AdministratorAccess",
            "arn:evil:iam::aws:policy/AdministratorAccess",
            "AdministratorAccess",
            "",
        ] {
            assert_eq!(admin_policy_name(not_admin), None, "{not_admin}");
        }
    }

    #[test]
    fn broad_actions() {
        for (p, kind) in [
            ("*", "*"),
            ("*:*", "*"),
            ("iam:*", "iam:*"),
            ("IAM:*", "iam:*"),
            (" Iam:* ", "iam:*"),
            ("iam:?*", "iam:*"),
            ("sts:*", "sts:*"),
            ("STS:*", "sts:*"),
        ] {
            assert_eq!(broad_action(p), Some(kind), "{p}");
        }
        for p in [
            "iam:Get*",
            "iam:PassRole",
            "sts:AssumeRole",
            "s3:*",
            "ec2:Describe*",
            "iam:?",
            "",
        ] {
            assert_eq!(broad_action(p), None, "{p}");
        }
    }

    #[test]
    fn policy_documents_in_every_form() {
        let doc = json!({"Statement": {"Effect": "Allow", "Action": "*"}});
        let text = doc.to_string();
        let encoded: String = text
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        for v in [
            doc.clone(),
            Value::String(text.clone()),
            Value::String(encoded),
            Value::String(Value::String(text).to_string()),
        ] {
            assert_eq!(policy_document(Some(&v)), Some(doc.clone()), "{v}");
        }
        for bad in [
            json!(null),
            json!(42),
            json!("not json"),
            json!("%7B%22broken"),
            json!("%"),
            json!("%%%4"),
            json!("[1,2]"),
        ] {
            assert_eq!(policy_document(Some(&bad)), None, "{bad}");
        }
        assert_eq!(policy_document(None), None);
        assert_eq!(percent_decode("a%2", false), "a%2");
        assert_eq!(percent_decode("%+1%zz%41", false), "%+1%zzA");
        assert_eq!(percent_decode("a%2B+b", true), "a+ b");
    }

    #[test]
    fn trust_principals() {
        let doc = json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ["111122223333", "arn:aws:iam::111122223333:role/x"]}},
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}},
            {"Effect": "Deny", "Principal": "*"}
        ]});
        assert!(!trust_findings(&doc, Some("111122223333")).is_match());
        let f = trust_findings(&doc, Some("444455556666"));
        assert_eq!(f.other_accounts.len(), 2);
        let unknown = trust_findings(&doc, None);
        assert!(unknown.is_match(), "an unknown own account cannot vouch");
        assert_eq!(principal_account("AROAEXAMPLEID"), None);
        assert_eq!(
            principal_account("arn:aws:iam::*:root").as_deref(),
            Some("*")
        );
    }
}
