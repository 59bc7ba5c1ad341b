//! `console-login-failures`: a burst of failed console logins for one user or from one source
//! address (docs/alerts.md, "Console login failures"). The one rule that counts across events.
//!
//! Every failed IAM-user console login is added, as one entry, to a counter per subject (the
//! user of an account, and the source address) in the control table; the store answers with
//! every entry the counter holds, so two collectors adding at once both see both. From those
//! entries [`bursts`] finds the bursts, deterministically: failures at most `window` apart form
//! a chain, and a chain whose failures reach `threshold` within one `window` is one burst, whose
//! alert is keyed by the failure that reached the threshold. The same entries give the same
//! bursts, so a re-run, a redrive or a second region adding the same failures finds the alert
//! already queued.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::view::View;
use super::{AlertMatch, Logic, Rule, RuleInfo, Severity, SIGNIN_SOURCE};
use crate::alert_text::escape_data;
use crate::normalize::NormalizedEvent;
use crate::record::{format_time, parse_time};

/// The rule's id (the alerts table's sort key of a burst's alert).
pub const RULE_ID: &str = "console-login-failures";

/// How long a counter keeps its entries (and its item lives) after the last failure.
pub const COUNTER_RETENTION_HOURS: i64 = 24;

/// CloudTrail's user name for a failed login of a user name that does not exist.
const HIDDEN_USER: &str = "HIDDEN_DUE_TO_SECURITY_REASONS";

pub(super) const CONSOLE_LOGIN_FAILURES: Rule = Rule {
    info: RuleInfo {
        id: RULE_ID,
        title: "Console Login Failures",
        severity: Severity::High,
        description: "At least LOGIN_FAILURE_THRESHOLD (5) failed signin:ConsoleLogin events \
            (ConsoleLogin Failure, or an error) of IAM users within LOGIN_FAILURE_WINDOW_MINUTES \
            (10) for one user of one account, or from one source address. Counted in the \
            control table across runs and regions; one alert per burst (failures at most the \
            window apart), keyed by the failure that reached the threshold. Root login failures \
            alert one by one (root-activity) and are not counted here; a user name CloudTrail \
            hides (a user that does not exist) is counted by address only.",
        attack: &["T1110"],
        seed_check: None,
    },
    logic: Logic::Stateful,
};

/// The burst thresholds (`LOGIN_FAILURE_THRESHOLD`, `LOGIN_FAILURE_WINDOW_MINUTES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BurstSettings {
    pub threshold: usize,
    pub window: Duration,
}

impl Default for BurstSettings {
    fn default() -> BurstSettings {
        BurstSettings {
            threshold: 5,
            window: Duration::minutes(10),
        }
    }
}

/// Who the failures are counted for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// An IAM user of an account.
    User { account: String, name: String },
    /// A source address (or whatever CloudTrail records in `sourceIPAddress`).
    Address(String),
}

impl Subject {
    /// The control-table key of the subject's counter.
    pub fn counter_key(&self) -> String {
        match self {
            Subject::User { account, name } => format!("loginfail#user#{account}#{name}"),
            Subject::Address(ip) => format!("loginfail#ip#{ip}"),
        }
    }

    fn describe(&self) -> String {
        match self {
            Subject::User { account, name } => format!("user {name} (account {account})"),
            Subject::Address(ip) => format!("source {ip}"),
        }
    }
}

/// Whether the event is a failed console login this rule counts (an IAM user's: the root
/// user's alert on their own).
pub fn is_counted_failure(e: &NormalizedEvent) -> bool {
    let v = View::new(e);
    if !v.is(SIGNIN_SOURCE, &["ConsoleLogin"]) || v.is_root() {
        return false;
    }
    let result = v.resp_path(&["ConsoleLogin"]);
    v.failed()
        || result
            .as_deref()
            .is_some_and(|r| !r.eq_ignore_ascii_case("Success"))
        || (result.is_none() && e.error_message.is_some())
}

/// The subjects a counted failure adds to: its user (unless CloudTrail hid the name) and its
/// source address.
pub fn subjects(e: &NormalizedEvent) -> Vec<Subject> {
    let mut found = Vec::new();
    let account = e.account().unwrap_or("unknown").to_string();
    let name = e.user_name.trim();
    if !name.is_empty() && name != HIDDEN_USER && name != "unknown" {
        found.push(Subject::User {
            account,
            name: name.to_string(),
        });
    }
    if let Some(ip) = e
        .source_ip
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        found.push(Subject::Address(ip.to_string()));
    }
    found
}

/// One counted failure, as its counter entry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub time: DateTime<Utc>,
    pub event_id: String,
    pub region: String,
    pub user: String,
    pub source: String,
}

impl Failure {
    /// The failure of an event (`None` without a usable time).
    pub fn of(e: &NormalizedEvent) -> Option<Failure> {
        Some(Failure {
            time: parse_time(&e.event_time)?,
            event_id: e.event_id.clone(),
            region: e.aws_region.clone(),
            user: e.user_name.clone(),
            source: e.source_ip.clone().unwrap_or_default(),
        })
    }

    /// The counter entry: a JSON array, so that no field's text can split another.
    pub fn entry(&self) -> String {
        Value::from(vec![
            format_time(self.time),
            self.event_id.clone(),
            self.region.clone(),
            self.user.clone(),
            self.source.clone(),
        ])
        .to_string()
    }

    /// Reads an entry back (`None` for anything else).
    pub fn parse(entry: &str) -> Option<Failure> {
        let fields: Vec<String> = serde_json::from_str(entry).ok()?;
        let [time, event_id, region, user, source]: [String; 5] = fields.try_into().ok()?;
        Some(Failure {
            time: parse_time(&time)?,
            event_id,
            region,
            user,
            source,
        })
    }
}

/// A burst: the failures of one chain up to the one that reached the threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Burst {
    /// The failure that reached the threshold: the alert's event.
    pub trigger: Failure,
    /// The chain's failures up to and including the trigger, oldest first.
    pub failures: Vec<Failure>,
}

/// The bursts in a subject's failures (any order, duplicates ignored), oldest first.
pub fn bursts(failures: &[Failure], settings: BurstSettings) -> Vec<Burst> {
    let mut sorted: Vec<&Failure> = failures.iter().collect();
    sorted.sort_by(|a, b| (a.time, &a.event_id).cmp(&(b.time, &b.event_id)));
    sorted.dedup_by(|a, b| a.event_id == b.event_id);
    let threshold = settings.threshold.max(1);
    let mut found = Vec::new();
    let mut chain_start = 0;
    let mut fired = false;
    for i in 0..sorted.len() {
        if i > 0 && sorted[i].time - sorted[i - 1].time > settings.window {
            chain_start = i;
            fired = false;
        }
        if fired {
            continue;
        }
        let within = sorted[chain_start..=i]
            .iter()
            .filter(|f| sorted[i].time - f.time < settings.window)
            .count();
        if within >= threshold {
            fired = true;
            found.push(Burst {
                trigger: sorted[i].clone(),
                failures: sorted[chain_start..=i]
                    .iter()
                    .map(|f| (*f).clone())
                    .collect(),
            });
        }
    }
    found
}

/// The alert of a burst.
pub fn burst_alert(subject: &Subject, burst: &Burst, settings: BurstSettings) -> AlertMatch {
    let first = burst.failures.first().unwrap_or(&burst.trigger);
    let minutes = settings.window.num_minutes();
    let mut context = vec![
        ("Failures".to_string(), burst.failures.len().to_string()),
        ("First Failure".to_string(), format_time(first.time)),
        (
            "Threshold Reached".to_string(),
            format_time(burst.trigger.time),
        ),
    ];
    match subject {
        Subject::User { account, name } => {
            context.push(("User".to_string(), name.clone()));
            context.push(("Account".to_string(), account.clone()));
        }
        Subject::Address(ip) => context.push(("Source".to_string(), ip.clone())),
    }
    let mut users: Vec<&str> = burst.failures.iter().map(|f| f.user.as_str()).collect();
    users.sort();
    users.dedup();
    let mut sources: Vec<&str> = burst.failures.iter().map(|f| f.source.as_str()).collect();
    sources.sort();
    sources.dedup();
    context.push(("Users Tried".to_string(), users.join(", ")));
    context.push(("Sources".to_string(), sources.join(", ")));
    AlertMatch {
        rule_id: RULE_ID,
        title: "Console Login Failures".to_string(),
        severity: Severity::High,
        summary: format!(
            "{} failed console logins for {} within {minutes} minutes (from {} to {})",
            burst.failures.len(),
            escape_data(&subject.describe(), 200),
            format_time(first.time),
            format_time(burst.trigger.time)
        ),
        context,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(id: &str, minute: i64) -> Failure {
        Failure {
            time: DateTime::from_timestamp(1_700_000_000 + minute * 60, 0).unwrap(),
            event_id: id.into(),
            region: "us-east-1".into(),
            user: "alice".into(),
            source: "203.0.113.9".into(),
        }
    }

    #[test]
    fn entries_round_trip_whatever_the_text() {
        let mut f = failure("e|1\"]", 0);
        f.user = "a|b\",\"c".into();
        assert_eq!(Failure::parse(&f.entry()), Some(f));
        assert_eq!(Failure::parse("not json"), None);
        assert_eq!(Failure::parse("[\"x\"]"), None);
    }

    #[test]
    fn six_failures_in_ten_minutes_are_one_burst_keyed_by_the_fifth() {
        let fs: Vec<Failure> = (0..6).map(|i| failure(&format!("f{i}"), i)).collect();
        let found = bursts(&fs, BurstSettings::default());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].trigger.event_id, "f4");
        assert_eq!(found[0].failures.len(), 5);
        // Any order, duplicates: the same burst.
        let mut shuffled = fs.clone();
        shuffled.reverse();
        shuffled.push(fs[2].clone());
        assert_eq!(bursts(&shuffled, BurstSettings::default()), found);
    }

    #[test]
    fn four_failures_or_spread_out_failures_are_no_burst() {
        let four: Vec<Failure> = (0..4).map(|i| failure(&format!("f{i}"), i)).collect();
        assert!(bursts(&four, BurstSettings::default()).is_empty());
        // Five failures, 9 minutes apart: one chain, but never 5 within 10 minutes.
        let slow: Vec<Failure> = (0..5).map(|i| failure(&format!("s{i}"), i * 9)).collect();
        assert!(bursts(&slow, BurstSettings::default()).is_empty());
    }

    #[test]
    fn a_long_brute_force_is_one_burst_and_a_pause_starts_another() {
        let mut fs: Vec<Failure> = (0..60).map(|i| failure(&format!("a{i:02}"), i)).collect();
        fs.extend((0..5).map(|i| failure(&format!("b{i}"), 200 + i)));
        let found = bursts(&fs, BurstSettings::default());
        let triggers: Vec<&str> = found.iter().map(|b| b.trigger.event_id.as_str()).collect();
        assert_eq!(triggers, ["a04", "b4"]);
    }
}
