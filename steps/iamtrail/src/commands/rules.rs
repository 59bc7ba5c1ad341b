//! `iamtrail rules list`: the built-in alert rules (`iamtrail_core::rules`), no AWS needed.

use comfy_table::{Cell, Color};
use iamtrail_core::rules::{rules, Severity};
use serde::Serialize;

use crate::render::{fit_width, new_table};

/// One rule as the CLI lists it (a stable JSON shape).
#[derive(Debug, Serialize)]
pub struct RuleRow {
    pub id: &'static str,
    pub severity: Severity,
    pub title: &'static str,
    pub description: &'static str,
    /// The MITRE ATT&CK techniques the rule detects (docs/alerts.md, "MITRE ATT&CK techniques").
    pub attack: &'static [&'static str],
}

/// Every rule, in evaluation order.
pub fn rows() -> Vec<RuleRow> {
    rules()
        .iter()
        .map(|r| RuleRow {
            id: r.id,
            severity: r.severity,
            title: r.title,
            description: r.description,
            attack: r.attack,
        })
        .collect()
}

/// The rules as a table.
pub fn table() -> comfy_table::Table {
    let mut table = new_table(&["id", "severity", "title", "attack", "what it detects"]);
    for r in rows() {
        let color = match r.severity {
            Severity::Critical => Color::Red,
            Severity::High => Color::Yellow,
            Severity::Medium => Color::Blue,
        };
        table.add_row(vec![
            Cell::new(r.id),
            Cell::new(r.severity).fg(color),
            Cell::new(r.title),
            Cell::new(r.attack.join(", ")),
            Cell::new(r.description),
        ]);
    }
    fit_width(&mut table, 140);
    table
}

/// `iamtrail rules list`.
pub fn list(json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&rows())?);
    } else {
        println!("{}", table());
        println!("{} rules.", rows().len());
    }
    Ok(())
}
