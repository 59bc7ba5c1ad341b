//! User detection rules written in Sigma (the YAML format of SigmaHQ's
//! `rules/cloud/aws/cloudtrail`), evaluated beside the built-in rules of [`crate::rules`].
//!
//! - [`SigmaRules::load_dir`] / [`SigmaRules::from_texts`] read and validate rule files: every
//!   file that is not a single-event AWS CloudTrail detection rule this crate can evaluate
//!   faithfully is rejected with its name and the reason, and all bad files are reported
//!   together ([`load`]).
//! - [`record_document`] rebuilds the CloudTrail record shape from a [`NormalizedEvent`], so
//!   that rule field paths such as `userIdentity.type` or `requestParameters.policyArn` resolve
//!   ([`document`]).
//! - [`SigmaRules::evaluate`] runs every rule over one event; each hit is a [`SigmaMatch`] whose
//!   alert rule id is `sigma:<rule id>`.
//!
//! The engine is `rsigma-eval`; docs/sigma.md says why, what is supported and rejected, and
//! which CloudTrail fields rules can see.

mod checks;
pub mod document;
pub mod load;
pub mod location;
#[cfg(test)]
mod tests;

use std::panic::{catch_unwind, AssertUnwindSafe};

use rsigma_eval::event::JsonEvent;
use rsigma_eval::CompiledRule;
use serde::Serialize;

use crate::rules::Severity;
use crate::NormalizedEvent;

pub use document::record_document;
pub use load::{RejectReason, SigmaLoadError, SigmaLoadErrors};
pub use location::RulesLocation;

/// Prefix of a Sigma rule's id in the alerts outbox, keeping it apart from the built-in ids.
pub const RULE_ID_PREFIX: &str = "sigma:";

/// One loaded Sigma rule.
#[derive(Debug, Clone)]
pub struct SigmaRule {
    /// The rule's `id` (a UUID in SigmaHQ rules); unique among the loaded rules.
    pub id: String,
    pub title: String,
    /// From `level`: see [`severity_for_level`].
    pub severity: Severity,
    /// The rule's `level` as written (`low`, `high`, ...), `None` when it has none.
    pub level: Option<String>,
    pub description: Option<String>,
    /// The file the rule came from: relative to the directory given to
    /// [`SigmaRules::load_dir`], or the name given to [`SigmaRules::from_texts`].
    pub file: String,
    /// The rule's `tags` as written (`attack.persistence`, `attack.t1098.001`, ...).
    pub tags: Vec<String>,
    /// The ATT&CK technique ids among the tags, upper-cased (`T1098.001`).
    pub attack: Vec<String>,
    pub falsepositives: Vec<String>,
    compiled: CompiledRule,
}

impl SigmaRule {
    /// The id of this rule's alerts: `sigma:<id>`.
    pub fn rule_id(&self) -> String {
        format!("{RULE_ID_PREFIX}{}", self.id)
    }
}

/// A Sigma `level` as an alert severity. The alert path has three severities, so `low` and
/// `informational` (and a rule without a level) alert as MEDIUM; `level` keeps the original.
pub fn severity_for_level(level: Option<&str>) -> Severity {
    match level {
        Some("critical") => Severity::Critical,
        Some("high") => Severity::High,
        _ => Severity::Medium,
    }
}

/// The ATT&CK technique ids in Sigma tags: `attack.t1098.001` → `T1098.001`. Tactic tags
/// (`attack.persistence`) and group/software tags (`attack.g0016`) are not techniques.
pub fn attack_techniques(tags: &[String]) -> Vec<String> {
    tags.iter()
        .filter_map(|t| t.strip_prefix("attack.t"))
        .filter(|id| {
            let (main, sub) = id.split_once('.').unwrap_or((id, ""));
            main.len() == 4
                && main.bytes().all(|b| b.is_ascii_digit())
                && (sub.is_empty() || (sub.len() == 3 && sub.bytes().all(|b| b.is_ascii_digit())))
        })
        .map(|id| format!("T{id}"))
        .collect()
}

/// One Sigma rule firing on one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SigmaMatch {
    /// The Sigma rule's id (without the `sigma:` prefix; see [`SigmaMatch::rule_id`]).
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub level: Option<String>,
    pub description: Option<String>,
    pub file: String,
    pub attack: Vec<String>,
    /// One line: `Sigma rule <title> matched <eventName> by <user>`. The event name and user
    /// come from the record (attacker-controlled): render them as data (see `alert_text`).
    pub summary: String,
    /// What a responder needs beyond the event itself, as ordered `(label, value)` pairs: the
    /// rule's id, file, level and ATT&CK techniques, then `Invoked By` and `Account` when the
    /// event has them.
    pub context: Vec<(String, String)>,
}

impl SigmaMatch {
    /// The alert's rule id: `sigma:<id>`. The outbox keys alerts by (event id, rule id), so a
    /// Sigma match deduplicates like a built-in one.
    pub fn rule_id(&self) -> String {
        format!("{RULE_ID_PREFIX}{}", self.id)
    }

    fn new(rule: &SigmaRule, event: &NormalizedEvent) -> SigmaMatch {
        let mut context = vec![
            ("Sigma Rule".to_string(), rule.id.clone()),
            ("Rule File".to_string(), rule.file.clone()),
        ];
        if let Some(level) = &rule.level {
            context.push(("Sigma Level".to_string(), level.clone()));
        }
        if !rule.attack.is_empty() {
            context.push(("ATT&CK".to_string(), rule.attack.join(", ")));
        }
        // As on a built-in rule's alert: the service that called on the caller's behalf, and
        // the account.
        let present = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        if let Some(service) = present(&event.invoked_by) {
            context.push(("Invoked By".to_string(), service));
        }
        if let Some(account) =
            present(&event.recipient_account_id).or_else(|| present(&event.account_id))
        {
            context.push(("Account".to_string(), account));
        }
        SigmaMatch {
            id: rule.id.clone(),
            title: rule.title.clone(),
            severity: rule.severity,
            level: rule.level.clone(),
            description: rule.description.clone(),
            file: rule.file.clone(),
            attack: rule.attack.clone(),
            summary: format!(
                "Sigma rule {} matched {} by {}",
                rule.title, event.event_name, event.user_name
            ),
            context,
        }
    }
}

/// A rule whose evaluation failed (the engine panicked) on one event. Nothing in the engine
/// is known to panic; this keeps one bad (event, rule) pair from stopping the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigmaEvalFailure {
    pub id: String,
    pub file: String,
    pub message: String,
}

/// What every rule made of one event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SigmaOutcome {
    pub matches: Vec<SigmaMatch>,
    pub failures: Vec<SigmaEvalFailure>,
}

/// The loaded rule set, in file order.
#[derive(Debug, Clone, Default)]
pub struct SigmaRules {
    rules: Vec<SigmaRule>,
}

impl SigmaRules {
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, SigmaRule> {
        self.rules.iter()
    }

    /// The rules that fire on `event`, in file order. A rule whose evaluation fails is left
    /// out (see [`SigmaRules::evaluate_all`] to see failures).
    pub fn evaluate(&self, event: &NormalizedEvent) -> Vec<SigmaMatch> {
        self.evaluate_all(event).matches
    }

    /// The rules that fire on `event`, and any rule whose evaluation failed.
    pub fn evaluate_all(&self, event: &NormalizedEvent) -> SigmaOutcome {
        let mut outcome = SigmaOutcome::default();
        if self.rules.is_empty() {
            return outcome;
        }
        let document = record_document(event);
        let json = JsonEvent::borrow(&document);
        for rule in &self.rules {
            match guarded(|| rsigma_eval::evaluate_rule(&rule.compiled, &json).is_some()) {
                Ok(true) => outcome.matches.push(SigmaMatch::new(rule, event)),
                Ok(false) => {}
                Err(message) => outcome.failures.push(SigmaEvalFailure {
                    id: rule.id.clone(),
                    file: rule.file.clone(),
                    message,
                }),
            }
        }
        outcome
    }
}

impl<'a> IntoIterator for &'a SigmaRules {
    type Item = &'a SigmaRule;
    type IntoIter = std::slice::Iter<'a, SigmaRule>;
    fn into_iter(self) -> Self::IntoIter {
        self.rules.iter()
    }
}

/// Runs `f`, turning a panic into its message.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the Sigma engine panicked".to_string())
    })
}
