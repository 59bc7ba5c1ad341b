//! The text of an alert notification (docs/alerts.md, "The email"): the SNS subject and the
//! plain-text body, in the layout of the example email of the original Python script that
//! iamtrail replaces.
//!
//! Much of what an alert shows comes from the CloudTrail record, and so from whoever made the
//! call: user agents, user and role names, policy names, ARNs in requests. All of it is shown as
//! data: control characters (line breaks, terminal escapes such as `ESC [ 31m`), Unicode line
//! separators and bidirectional overrides are written as visible escapes (`\n`, `\u{1b}`), so a
//! value can neither add lines to the email nor drive a terminal, and each value is capped.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::normalize::NormalizedEvent;
use crate::record::parse_time;
use crate::rules::{source_label, AlertMatch, Severity};
use crate::sigma::SigmaMatch;

/// SNS subjects must be "less than 100 characters long", with no line breaks or control
/// characters.
pub const MAX_SUBJECT_CHARS: usize = 99;
/// The longest a single value (one `- Key: value` line) is shown.
pub const MAX_VALUE_CHARS: usize = 300;
/// The longest the one-sentence summary is shown.
pub const MAX_SUMMARY_CHARS: usize = 600;

/// Characters shown as escapes: controls (C0, DEL, C1), zero-width and bidirectional formatting
/// characters, Unicode line and paragraph separators, the BOM and interlinear annotations.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}')
}

fn escape_char(c: char, out: &mut String) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if needs_escape(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// A value rendered as data: special characters escaped, at most `max_chars` characters (a
/// longer value is cut, on an escape boundary, and ends with `…`).
pub fn escape_data(value: &str, max_chars: usize) -> String {
    let max_chars = max_chars.max(1);
    let mut out = String::new();
    let mut shown = 0;
    let mut piece = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        piece.clear();
        escape_char(c, &mut piece);
        let n = piece.chars().count();
        // Room for this piece, keeping one character for the ellipsis unless it is the last.
        let budget = if chars.peek().is_some() {
            max_chars - 1
        } else {
            max_chars
        };
        if shown + n > budget {
            // It may still all fit if the rest is short: check before cutting.
            let rest: usize = std::iter::once(c)
                .chain(chars.clone())
                .map(|c| {
                    let mut p = String::new();
                    escape_char(c, &mut p);
                    p.chars().count()
                })
                .sum();
            if shown + rest <= max_chars {
                out.push_str(&piece);
                for c in chars {
                    escape_char(c, &mut out);
                }
                return out;
            }
            out.push('…');
            return out;
        }
        out.push_str(&piece);
        shown += n;
    }
    out
}

/// A single subject line: every special character becomes a space, runs of spaces collapse,
/// and it is cut to [`MAX_SUBJECT_CHARS`] on a character boundary with `…`.
pub fn subject_line(text: &str) -> String {
    let mut line = String::new();
    for c in text.chars() {
        let c = if needs_escape(c) || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && (line.is_empty() || line.ends_with(' ')) {
            continue;
        }
        line.push(c);
    }
    let line = line.trim_end();
    if line.chars().count() <= MAX_SUBJECT_CHARS {
        return line.to_string();
    }
    let mut cut: String = line.chars().take(MAX_SUBJECT_CHARS - 1).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// What a notification shows of the rule that fired: a built-in rule's [`AlertMatch`] or a
/// Sigma rule's [`SigmaMatch`] (docs/sigma.md, "How a match becomes an alert").
#[derive(Debug, Clone, Copy)]
pub struct AlertContent<'a> {
    pub title: &'a str,
    pub severity: Severity,
    /// One sentence: what happened.
    pub summary: &'a str,
    /// The `- Key: value` lines after the event's own.
    pub context: &'a [(String, String)],
    /// What the rule looks for, shown as its own paragraph after the summary (a Sigma rule's
    /// `description`); built-in rules have none.
    pub description: Option<&'a str>,
}

impl<'a> From<&'a AlertMatch> for AlertContent<'a> {
    fn from(m: &'a AlertMatch) -> AlertContent<'a> {
        AlertContent {
            title: &m.title,
            severity: m.severity,
            summary: &m.summary,
            context: &m.context,
            description: None,
        }
    }
}

impl<'a> From<&'a SigmaMatch> for AlertContent<'a> {
    fn from(m: &'a SigmaMatch) -> AlertContent<'a> {
        AlertContent {
            title: &m.title,
            severity: m.severity,
            summary: &m.summary,
            context: &m.context,
            description: m.description.as_deref(),
        }
    }
}

/// `[SEVERITY] IAM Alert: <title>`, at most [`MAX_SUBJECT_CHARS`] characters, one line.
pub fn subject<'a>(m: impl Into<AlertContent<'a>>) -> String {
    let m = m.into();
    subject_line(&format!("[{}] IAM Alert: {}", m.severity.as_str(), m.title))
}

/// `2025-08-10T18:26:07+00:00`, as the original script's email showed times.
fn display_time(event_time: &str) -> String {
    match parse_time(event_time) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string(),
        None => escape_data(event_time, MAX_VALUE_CHARS),
    }
}

fn action_required(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "Review this activity immediately in CloudTrail.",
        Severity::High | Severity::Medium => "Review this activity in CloudTrail.",
    }
}

/// The `- Key: value` lines of the details, each written once: a rule's context entry that
/// repeats a line already shown (same key, same value) is not written again.
#[derive(Default)]
struct Details {
    out: String,
    shown: Vec<(String, String)>,
}

impl Details {
    fn line(&mut self, key: &str, value: &str) {
        if self.shown.iter().any(|(k, v)| k == key && v == value) {
            return;
        }
        self.shown.push((key.to_string(), value.to_string()));
        let _ = writeln!(
            self.out,
            "- {}: {}",
            escape_data(key, 60),
            escape_data(value, MAX_VALUE_CHARS)
        );
    }
}

/// The `sourceIPAddress` line: `Source IP` for an address, `Source` for an AWS service that
/// called on the caller's behalf (`cloudformation.amazonaws.com`, `AWS Internal`), which is no
/// IP.
fn source_line(source_ip: Option<&str>) -> (&'static str, &str) {
    match source_ip.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => (source_label(s), s),
        None => ("Source IP", "unknown"),
    }
}

/// The plain-text body, in the original script's layout (docs/alerts.md, "The email"):
///
/// ```text
/// IAM Activity Alert: Root Account Login
///
/// Severity: CRITICAL
/// Time: 2025-08-10T18:26:07+00:00
/// Region: us-east-1
///
/// Root account logged in from IP: 90.7.221.136
///
/// Event Details:
/// - Event Name: ConsoleLogin
/// - User: root
/// - Source IP: 90.7.221.136
/// - Event ID: b5636e39-f66f-4ce1-b9f1-2368c72b7fc6
/// - <one line per context entry, then User ARN, User Agent, Error Code, Error Message>
///
/// Action Required: Review this activity immediately in CloudTrail.
/// ```
///
/// `Source IP` reads `Source` when `sourceIPAddress` names an AWS service rather than an
/// address, and a detail already shown (same key and value) is not repeated. A Sigma rule's
/// alert has one more paragraph after the summary, `Rule Description: <description>` (its
/// line breaks read as spaces), and its rule id, file, level and ATT&CK techniques among the
/// details.
pub fn body<'a>(m: impl Into<AlertContent<'a>>, e: &NormalizedEvent) -> String {
    let m = m.into();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "IAM Activity Alert: {}",
        escape_data(m.title, MAX_VALUE_CHARS)
    );
    out.push('\n');
    let _ = writeln!(out, "Severity: {}", m.severity.as_str());
    let _ = writeln!(out, "Time: {}", display_time(&e.event_time));
    let _ = writeln!(out, "Region: {}", escape_data(&e.aws_region, 60));
    out.push('\n');
    let _ = writeln!(out, "{}", escape_data(m.summary, MAX_SUMMARY_CHARS));
    out.push('\n');
    if let Some(description) = m.description.map(one_line).filter(|d| !d.is_empty()) {
        let _ = writeln!(
            out,
            "Rule Description: {}",
            escape_data(&description, MAX_SUMMARY_CHARS)
        );
        out.push('\n');
    }
    out.push_str("Event Details:\n");
    let mut details = Details::default();
    details.line("Event Name", &e.event_name);
    details.line("User", &e.user_name);
    let (source_key, source) = source_line(e.source_ip.as_deref());
    details.line(source_key, source);
    details.line("Event ID", &e.event_id);
    for (key, value) in m.context {
        details.line(key, value);
    }
    let optional = [
        ("User ARN", &e.user_arn),
        ("User Agent", &e.user_agent),
        ("Error Code", &e.error_code),
        ("Error Message", &e.error_message),
    ];
    for (key, value) in optional {
        if let Some(v) = value.as_deref().filter(|v| !v.trim().is_empty()) {
            details.line(key, v);
        }
    }
    out.push_str(&details.out);
    out.push('\n');
    let _ = write!(out, "Action Required: {}", action_required(m.severity));
    out
}

/// A rule author's paragraph on one line: YAML block scalars keep their line breaks, which
/// would otherwise show as `\n` escapes.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Subject of the test notification.
pub const TEST_SUBJECT: &str = "[TEST] IAM Alert: test notification from iamtrail";

/// The subject and body of a test notification sent at `now`.
pub fn test_alert_at(now: DateTime<Utc>) -> (String, String) {
    let body = format!(
        "IAM Activity Alert: Test Notification (TEST)\n\
         \n\
         Severity: TEST\n\
         Time: {}\n\
         Region: n/a\n\
         \n\
         This is a TEST alert sent by iamtrail to check that alert delivery works.\n\
         \n\
         Event Details:\n\
         - Event Name: TestNotification\n\
         - User: iamtrail\n\
         - Source IP: n/a\n\
         - Event ID: test\n\
         \n\
         Action Required: None. This is a test; no activity needs review.",
        now.format("%Y-%m-%dT%H:%M:%S+00:00")
    );
    (TEST_SUBJECT.to_string(), body)
}

/// The subject and body of a test notification, marked TEST.
pub fn test_alert() -> (String, String) {
    test_alert_at(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_and_cap() {
        assert_eq!(escape_data("plain", 10), "plain");
        assert_eq!(escape_data("a\nb\u{1b}[31m", 50), "a\\nb\\u{1b}[31m");
        assert_eq!(escape_data("\u{202e}x\u{2028}", 50), "\\u{202e}x\\u{2028}");
        assert_eq!(escape_data("abcdef", 6), "abcdef");
        assert_eq!(escape_data("abcdefg", 6), "abcde…");
        assert_eq!(escape_data("ééééééé", 4), "ééé…");
        // An escape is never cut in half.
        assert_eq!(escape_data("ab\u{1b}cd", 6), "ab…");
        assert_eq!(escape_data("", 5), "");
    }

    #[test]
    fn subject_line_rules() {
        assert_eq!(subject_line("a\r\nb\t c\u{1b}d"), "a b c d");
        let long = "x".repeat(300);
        let s = subject_line(&long);
        assert_eq!(s.chars().count(), MAX_SUBJECT_CHARS);
        assert!(s.ends_with('…'));
        let wide = "é".repeat(150);
        assert_eq!(subject_line(&wide).chars().count(), MAX_SUBJECT_CHARS);
    }

    fn alert(context: &[(&str, &str)]) -> AlertMatch {
        AlertMatch {
            rule_id: "root-activity",
            title: "Root Account Activity: CreateUser".into(),
            severity: Severity::Critical,
            summary: "Root account called CreateUser".into(),
            context: context
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn event(source_ip: Option<&str>) -> NormalizedEvent {
        NormalizedEvent {
            event_id: "e-1".into(),
            event_time: "2025-08-10T08:07:49Z".into(),
            event_name: "CreateUser".into(),
            user_name: "root".into(),
            aws_region: "us-east-1".into(),
            source_ip: source_ip.map(String::from),
            user_agent: Some("cloudformation.amazonaws.com".into()),
            ..NormalizedEvent::default()
        }
    }

    #[test]
    fn a_service_in_source_ip_is_not_called_an_ip() {
        let m = alert(&[]);
        for service in [
            "cloudformation.amazonaws.com",
            "sso.amazonaws.com",
            "AWS Internal",
        ] {
            let b = body(&m, &event(Some(service)));
            assert!(b.contains(&format!("\n- Source: {service}\n")), "{b}");
            assert!(!b.contains("Source IP"), "{b}");
        }
        for ip in ["192.0.2.1", "2001:db8::1", "::ffff:198.51.100.7"] {
            let b = body(&m, &event(Some(ip)));
            assert!(b.contains(&format!("\n- Source IP: {ip}\n")), "{b}");
        }
        let b = body(&m, &event(None));
        assert!(b.contains("\n- Source IP: unknown\n"), "{b}");
    }

    #[test]
    fn a_detail_already_shown_is_not_repeated() {
        let m = alert(&[
            ("Source IP", "192.0.2.1"),
            ("User Agent", "cloudformation.amazonaws.com"),
            ("Invoked By", "cloudformation.amazonaws.com"),
            ("User", "someone-else"),
        ]);
        let b = body(&m, &event(Some("192.0.2.1")));
        assert_eq!(b.matches("- Source IP: 192.0.2.1\n").count(), 1, "{b}");
        assert_eq!(b.matches("- User Agent: ").count(), 1, "{b}");
        // Same key, another value: both shown.
        assert!(b.contains("- User: root\n") && b.contains("- User: someone-else\n"));
        assert!(b.contains("- Invoked By: cloudformation.amazonaws.com\n"));
    }

    #[test]
    fn test_alert_is_marked() {
        let (s, b) = test_alert();
        assert!(s.starts_with("[TEST]"));
        assert!(s.chars().count() <= MAX_SUBJECT_CHARS);
        assert!(b.contains("TEST"));
        assert!(b.contains("Action Required:"));
    }
}
