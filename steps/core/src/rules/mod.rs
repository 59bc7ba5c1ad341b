//! The alert rules (docs/alerts.md, "The rules"): the 14 `check_*` functions of the original
//! Python script's `security_alerts.py` without their gaps, and the rules added beyond them.
//!
//! Each rule is one unit: its [`RuleInfo`] beside its logic, in one file per family (`root`,
//! `iam_users`, `iam_policies`, `trust`, `sso`, `login_profile`, `console_login`,
//! `federation_token`, `policy_version`, `identity_provider`, `group_membership`). Rules that
//! only name event calls are data ([`EventRule`] in `event_rule`). [`RULES`] is the one list, in
//! evaluation order.
//!
//! Every rule is a predicate over a [`NormalizedEvent`]: no I/O, no clock. One event may match
//! several rules (a `CreateAccessKey` by the root user is both root activity and an access-key
//! creation) and [`evaluate`] returns every match, in rule order. Rule ids are stable strings
//! (they are the alerts table's sort key): never rename one.
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
//!   `requestParameters`, sometimes URL-encoded; both forms are read (`policy`). A document
//!   that is absent or unreadable never panics and never matches.
//! - **Names are case-insensitive where IAM's are**: policy names in ARNs, actions, element
//!   names (`Effect`, `Action`, `Principal`, ...) and their values are compared ignoring ASCII
//!   case, which can only widen what matches.

mod console_login;
mod event_rule;
mod federation_token;
mod fields;
mod group_membership;
pub mod history;
mod iam_policies;
mod iam_users;
mod identity_provider;
pub mod login_failures;
mod login_profile;
pub mod policy;
mod policy_version;
mod root;
mod sso;
mod trust;
mod view;

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

pub use event_rule::{EventCase, EventRule};
pub use history::{History, Reads};
pub use policy::{
    admin_policy_name, dangerous_grants, policy_document, trust_findings, TrustFindings,
    ADMIN_POLICY_NAMES,
};
pub use view::{is_ip_address, source_label, Field};

use crate::normalize::NormalizedEvent;
use view::{Hit, View};

/// `eventSource` of IAM.
pub const IAM_SOURCE: &str = "iam.amazonaws.com";
/// `eventSource` of IAM Identity Center (SSO admin).
pub const SSO_SOURCE: &str = "sso.amazonaws.com";
/// `eventSource` of console sign-in.
pub const SIGNIN_SOURCE: &str = "signin.amazonaws.com";
/// `eventSource` of STS.
pub const STS_SOURCE: &str = "sts.amazonaws.com";

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
    /// The MITRE ATT&CK techniques the rule detects (`T1098.003`, ...).
    pub attack: &'static [&'static str],
    /// The `security_alerts.py` function of the original Python script that this rule
    /// replaces (docs/alerts.md, "The rules"); `None` for the rules added beyond it.
    pub seed_check: Option<&'static str>,
}

/// One rule: what it is, and how it decides.
pub struct Rule {
    pub info: RuleInfo,
    logic: Logic,
}

impl Deref for Rule {
    type Target = RuleInfo;
    fn deref(&self) -> &RuleInfo {
        &self.info
    }
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.info.fmt(f)
    }
}

impl PartialEq for Rule {
    fn eq(&self, other: &Rule) -> bool {
        self.info == other.info
    }
}

/// How a rule decides.
enum Logic {
    /// A check over the event alone.
    Check(fn(&View) -> Option<Hit>),
    /// Event calls named as data.
    Events(&'static EventRule),
    /// A check that also reads stored events (`history`): the calls that trigger it, the
    /// calls it reads.
    Known(&'static Reads, fn(&View, &History) -> Option<Hit>),
    /// Decided over many events by Collect with a counter in the control table (see
    /// `login_failures`): never fires on one event here.
    Stateful,
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

/// Every rule, in evaluation order.
static RULES: &[Rule] = &[
    root::ROOT_ACTIVITY,
    iam_users::USER_CREATION,
    iam_policies::ADMIN_POLICY_ATTACHMENT,
    iam_policies::DANGEROUS_INLINE_POLICY,
    iam_users::ACCESS_KEY_CREATION,
    trust::ROLE_TRUST_POLICY,
    iam_users::ACCESS_KEY_UPDATE,
    iam_users::MFA_DELETION,
    sso::PERMISSION_SET_CREATION,
    sso::PERMISSION_SET_UPDATE,
    sso::ADMIN_POLICY_ATTACHMENT,
    sso::ACCOUNT_ASSIGNMENT,
    sso::APP_CREATION,
    sso::APP_DELETION,
    login_profile::LOGIN_PROFILE,
    console_login::CONSOLE_LOGIN_WITHOUT_MFA,
    federation_token::FEDERATION_TOKEN,
    policy_version::POLICY_VERSION_ESCALATION,
    identity_provider::IDENTITY_PROVIDER_CHANGE,
    group_membership::ADMIN_GROUP_MEMBERSHIP,
    login_failures::CONSOLE_LOGIN_FAILURES,
];

/// Every rule, in evaluation order.
pub fn rules() -> &'static [Rule] {
    RULES
}

/// The rule with this id.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// What the history rules read, for [`history::needs`].
fn history_reads() -> impl Iterator<Item = &'static Reads> {
    RULES.iter().filter_map(|r| match &r.logic {
        Logic::Known(reads, _) => Some(*reads),
        _ => None,
    })
}

/// Every rule that matches the event, in rule order, knowing no stored events (history rules
/// decide from the event alone). Each match carries the invoking service (when there is one)
/// and the event's account (when known) as its last context entries.
pub fn evaluate(event: &NormalizedEvent) -> Vec<AlertMatch> {
    evaluate_with(event, &History::new())
}

/// Every rule that matches the event, in rule order, history rules reading `history` (load
/// what [`history::needs`] names, see docs/alerts.md "Rules that read history").
pub fn evaluate_with(event: &NormalizedEvent, history: &History) -> Vec<AlertMatch> {
    let view = View::new(event);
    RULES
        .iter()
        .filter_map(|rule| {
            let hit = match &rule.logic {
                Logic::Check(check) => check(&view),
                Logic::Events(events) => events.check(&view),
                Logic::Known(reads, check) => {
                    if reads.triggers.contains(&event.event_name.as_str()) {
                        check(&view, history)
                    } else {
                        None
                    }
                }
                Logic::Stateful => None,
            }?;
            Some(alert_match(&rule.info, hit, &view))
        })
        .collect()
}

/// A rule's hit as an alert: the rule's title unless the hit specialised it, then the service
/// that made the call on the caller's behalf (`Invoked By`, when the event has one and the hit
/// does not show it already), and the event's account last.
fn alert_match(info: &RuleInfo, hit: Hit, view: &View) -> AlertMatch {
    let mut context = hit.context;
    if let Some(service) = view
        .e
        .invoked_by
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if !context.iter().any(|(k, _)| k == "Invoked By") {
            context.push(("Invoked By".to_string(), service.to_string()));
        }
    }
    if let Some(account) = view.account() {
        if !context.iter().any(|(k, _)| k == "Account") {
            context.push(("Account".to_string(), account.to_string()));
        }
    }
    AlertMatch {
        rule_id: info.id,
        title: hit.title.unwrap_or_else(|| info.title.to_string()),
        severity: hit.severity.unwrap_or(info.severity),
        summary: hit.summary,
        context,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_table_is_consistent() {
        let mut ids: Vec<_> = rules().iter().map(|r| r.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), rules().len(), "ids are unique");
        for r in rules() {
            assert!(r.seed_check.is_none_or(|c| c.starts_with("check_")));
            assert_eq!(rule(r.id), Some(r));
            assert!(!r.description.is_empty() && !r.title.is_empty());
            assert!(!r.attack.is_empty(), "{}: no ATT&CK technique", r.id);
            for t in r.attack {
                assert!(
                    t.starts_with('T') && t[1..].split('.').all(|p| p.len() >= 3),
                    "{}: {t}",
                    r.id
                );
            }
        }
        assert_eq!(
            rules().iter().filter(|r| r.seed_check.is_some()).count(),
            14,
            "the original script's 14 checks are all replaced"
        );
        assert_eq!(Severity::Critical.as_str(), "CRITICAL");
        assert_eq!(serde_json::to_string(&Severity::High).unwrap(), "\"HIGH\"");
        assert!(Severity::Critical < Severity::High);
    }
}
