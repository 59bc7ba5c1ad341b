//! Root sessions as one email (docs/alerts.md, "Root sessions"): the `root-activity` alerts of
//! one root session are delivered together, one message listing the calls, instead of one
//! message per call. A sign-in event (a console login, successful or failed, a password
//! change) and the creation of a root access key still go out on their own, at once.
//!
//! A session is the root user's access key (the console session's temporary key, or a
//! long-term key) in one account, or, without a key, the source address; calls of one session
//! more than [`SESSION_GAP_MINUTES`] apart are separate sessions. Grouping happens at delivery
//! (EvaluateAlerts), over the alerts waiting then: each call is still its own outbox row keyed
//! (event, rule), so a re-run never queues a call twice, and a call queued after its session's
//! email went out is sent in a later email with the session's other late calls, never again
//! with the ones already sent.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::Duration;

use crate::alert_text::{escape_data, subject_line, MAX_VALUE_CHARS};
use crate::normalize::NormalizedEvent;
use crate::outbox::AlertRecord;
use crate::record::parse_time;
use crate::rules::{source_label, IAM_SOURCE, SIGNIN_SOURCE};

/// The rule whose alerts are grouped.
pub const GROUPED_RULE: &str = "root-activity";

/// Calls of one session further apart than this are separate sessions.
pub const SESSION_GAP_MINUTES: i64 = 60;

/// The session an alert is grouped under, or `None` for an alert that goes out on its own:
/// any other rule's, and the root user's sign-in events and access-key creations.
pub fn session_group(rule_id: &str, event: &NormalizedEvent) -> Option<String> {
    let immediate = event.event_source == SIGNIN_SOURCE
        || (event.event_source == IAM_SOURCE && event.event_name == "CreateAccessKey");
    if rule_id != GROUPED_RULE || immediate {
        return None;
    }
    let account = event.account().unwrap_or("unknown");
    let session = match event.access_key_id.as_deref().map(str::trim) {
        Some(key) if !key.is_empty() => format!("key {key}"),
        _ => format!(
            "source {}",
            event.source_ip.as_deref().unwrap_or("unknown").trim()
        ),
    };
    Some(format!("root session: account {account}, {session}"))
}

/// The line a grouped call shows in its session's email (rendered as data).
pub fn session_line(event: &NormalizedEvent) -> String {
    let source = event.source_ip.as_deref().unwrap_or("unknown");
    let outcome = match event.error_code.as_deref().map(str::trim) {
        Some(code) if !code.is_empty() => format!(" (failed: {code})"),
        _ => String::new(),
    };
    escape_data(
        &format!(
            "{} {} on {} in {}, {} {source}{outcome}",
            event.event_time,
            event.event_name,
            event.event_source,
            event.aws_region,
            source_label(source).to_ascii_lowercase(),
        ),
        MAX_VALUE_CHARS,
    )
}

/// The deliveries of the waiting alerts, in their order: an alert alone, or the alerts of
/// one session (by [`AlertRecord::group`], split where calls are more than
/// [`SESSION_GAP_MINUTES`] apart), placed where the session's first alert was.
pub fn deliveries(alerts: &[AlertRecord]) -> Vec<Vec<usize>> {
    let mut by_group: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, a) in alerts.iter().enumerate() {
        if let Some(g) = a.group.as_deref() {
            by_group.entry(g).or_default().push(i);
        }
    }
    // Each session split on gaps, in time order; the first alert (in delivery order) of a part
    // says where it goes out.
    let gap = Duration::minutes(SESSION_GAP_MINUTES);
    let mut part_of: HashMap<usize, usize> = HashMap::new();
    let mut parts: Vec<Vec<usize>> = Vec::new();
    for members in by_group.into_values() {
        let mut sorted = members;
        sorted.sort_by(|a, b| alerts[*a].event_time.cmp(&alerts[*b].event_time));
        let mut current: Vec<usize> = Vec::new();
        for i in sorted {
            let apart = current.last().is_some_and(|last| {
                match (
                    parse_time(&alerts[*last].event_time),
                    parse_time(&alerts[i].event_time),
                ) {
                    (Some(a), Some(b)) => b - a > gap,
                    _ => false,
                }
            });
            if apart {
                parts.push(std::mem::take(&mut current));
            }
            current.push(i);
        }
        parts.push(current);
    }
    for (p, members) in parts.iter().enumerate() {
        for i in members {
            part_of.insert(*i, p);
        }
    }
    let mut out = Vec::new();
    let mut placed = vec![false; parts.len()];
    for i in 0..alerts.len() {
        match part_of.get(&i) {
            None => out.push(vec![i]),
            Some(&p) if !placed[p] => {
                placed[p] = true;
                out.push(parts[p].clone());
            }
            Some(_) => {}
        }
    }
    out
}

/// The subject and body of a session's email (two or more calls; one call goes out with its
/// own alert's text).
pub fn session_message(members: &[&AlertRecord]) -> (String, String) {
    let mut calls: Vec<&AlertRecord> = members.to_vec();
    calls.sort_by(|a, b| (&a.event_time, &a.event_id).cmp(&(&b.event_time, &b.event_id)));
    let session = calls
        .first()
        .and_then(|a| a.group.as_deref())
        .unwrap_or("root session");
    let first = calls.first().map(|a| a.event_time.as_str()).unwrap_or("");
    let last = calls.last().map(|a| a.event_time.as_str()).unwrap_or("");
    let subject = subject_line(&format!(
        "[CRITICAL] IAM Alert: Root Session Activity: {} calls",
        calls.len()
    ));
    let mut body = String::new();
    let _ = writeln!(body, "IAM Activity Alert: Root Session Activity\n");
    let _ = writeln!(body, "Severity: CRITICAL");
    let _ = writeln!(
        body,
        "Time: {} to {}",
        escape_data(first, 40),
        escape_data(last, 40)
    );
    let _ = writeln!(body, "Session: {}\n", escape_data(session, MAX_VALUE_CHARS));
    let _ = writeln!(
        body,
        "The root user made {} calls in this session:",
        calls.len()
    );
    for a in &calls {
        let line = a
            .group_line
            .clone()
            .unwrap_or_else(|| escape_data(&format!("{} {}", a.event_time, a.event_name), 200));
        let _ = writeln!(body, "- {line} [event {}]", escape_data(&a.event_id, 100));
    }
    let _ = writeln!(
        body,
        "\nAction Required: Review this activity immediately in CloudTrail."
    );
    (subject, body)
}
