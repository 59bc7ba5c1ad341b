//! Terminal output: run summaries and event tables. Every string that comes from CloudTrail is
//! attacker-controlled (user agents, user names, request fields), so cells are sanitised:
//! control characters (ANSI escapes included) are shown escaped, never sent to the terminal.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, Color, ContentArrangement, Table};
use iamtrail_core::contract::RunSummary;

use crate::local::ReceivedAlert;

/// Makes an untrusted string safe to print: control characters (ANSI escapes included) and
/// line breaks come out escaped, and long values are cut to `max` characters with an ellipsis.
/// The same escaping as the alert emails ([`iamtrail_core::alert_text::escape_data`]).
pub fn sanitize(text: &str, max: usize) -> String {
    iamtrail_core::alert_text::escape_data(text, max)
}

/// A table in the CLI's style, with cyan headers.
pub fn new_table(headers: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    table.set_header(headers.iter().map(|h| Cell::new(h).fg(Color::Cyan)));
    table
}

/// Wraps long cells at `width` columns when the output is not a terminal (a terminal's own
/// width is used when there is one).
pub fn fit_width(table: &mut Table, width: u16) {
    if table.width().is_none() {
        table.set_width(width);
    }
}

fn num(n: u64) -> Cell {
    Cell::new(n).set_alignment(CellAlignment::Right)
}

/// The per-region/source table of a run. Targets where nothing happened are folded into one
/// line so that 30 quiet regions do not bury the busy ones.
pub fn run_table(summary: &RunSummary) -> Table {
    let mut table = new_table(&[
        "region",
        "source",
        "fetched",
        "filtered",
        "stored",
        "malformed",
        "requests",
        "throttled",
        "checkpoint",
        "status",
    ]);
    let mut quiet = 0usize;
    for t in &summary.targets {
        let c = &t.counts;
        if c.fetched == 0 && t.error.is_none() && t.skipped.is_none() {
            quiet += 1;
            continue;
        }
        let status = match (&t.error, &t.skipped) {
            (Some(e), _) => Cell::new(sanitize(e, 60)).fg(Color::Red),
            (None, Some(s)) => Cell::new(s).fg(Color::Yellow),
            _ => Cell::new("ok").fg(Color::Green),
        };
        table.add_row(vec![
            Cell::new(&t.region),
            Cell::new(t.source),
            num(c.fetched),
            num(c.filtered()),
            num(c.stored),
            num(c.malformed),
            num(c.requests),
            num(c.throttled),
            Cell::new(
                t.checkpoint
                    .map(iamtrail_core::record::format_time)
                    .unwrap_or_else(|| "-".into()),
            ),
            status,
        ]);
    }
    if quiet > 0 {
        let requests: u64 = summary
            .targets
            .iter()
            .filter(|t| t.counts.fetched == 0 && t.error.is_none() && t.skipped.is_none())
            .map(|t| t.counts.requests)
            .sum();
        table.add_row(vec![
            Cell::new(format!("{quiet} more")).fg(Color::DarkGrey),
            Cell::new("…").fg(Color::DarkGrey),
            num(0),
            num(0),
            num(0),
            num(0),
            num(requests),
            num(0),
            Cell::new("(window checked, no events)").fg(Color::DarkGrey),
            Cell::new("ok").fg(Color::Green),
        ]);
    }
    let t = &summary.totals;
    table.add_row(vec![
        Cell::new("total").fg(Color::White),
        Cell::new(""),
        num(t.fetched),
        num(t.filtered()),
        num(t.stored),
        num(t.malformed),
        num(t.requests),
        num(t.throttled),
        Cell::new(""),
        Cell::new(&summary.status).fg(if summary.errors.is_empty() {
            Color::Green
        } else {
            Color::Red
        }),
    ]);
    table
}

fn text<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> &'a str {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .unwrap_or("")
}

/// A table of stored events (DynamoDB items).
pub fn events_table(items: &[HashMap<String, AttributeValue>]) -> Table {
    let mut table = new_table(&[
        "event_time",
        "event_name",
        "type",
        "user_name",
        "region",
        "source_ip",
        "error_code",
    ]);
    for item in items {
        let error = text(item, "error_code");
        table.add_row(vec![
            Cell::new(text(item, "event_time")),
            Cell::new(sanitize(text(item, "event_name"), 40)),
            Cell::new(text(item, "event_type")),
            Cell::new(sanitize(text(item, "user_name"), 40)),
            Cell::new(text(item, "aws_region")),
            Cell::new(sanitize(text(item, "source_ip"), 40)),
            if error.is_empty() {
                Cell::new("")
            } else {
                Cell::new(sanitize(error, 30)).fg(Color::Red)
            },
        ]);
    }
    table
}

/// An alert as its email would read: subject, the attributes subscribers can filter on, and
/// the plain-text body. Every line is sanitised again here (defence in depth).
pub fn email(alert: &ReceivedAlert, index: usize, total: usize) -> String {
    let mut out = format!(
        "──── alert {index}/{total} · SNS message {} ────\n",
        sanitize(&alert.message_id, 80)
    );
    out.push_str(&format!("Subject: {}\n", sanitize(&alert.subject, 120)));
    let attributes: Vec<String> = alert
        .attributes
        .iter()
        .map(|(k, v)| format!("{}={}", sanitize(k, 40), sanitize(v, 80)))
        .collect();
    out.push_str(&format!("Attributes: {}\n\n", attributes.join(", ")));
    for line in alert.body.lines() {
        out.push_str(&sanitize(line, 400));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_escapes_controls_and_cuts() {
        assert_eq!(sanitize("plain", 10), "plain");
        assert_eq!(sanitize("a\u{1b}[31mred", 20), "a\\u{1b}[31mred");
        assert_eq!(sanitize("line\nbreak", 20), "line\\nbreak");
        assert_eq!(sanitize("abc\u{202e}def", 20), "abc\\u{202e}def");
        assert_eq!(sanitize("abcdef", 3), "ab…");
    }
}
