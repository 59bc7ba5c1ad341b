//! `iamtrail rules list` and `iamtrail rules test`: the built-in alert rules
//! (`iamtrail_core::rules`) and the user's Sigma rules (`--sigma`, or `SIGMA_RULES`; see
//! docs/sigma.md and docs/cli.md). No AWS is needed unless the Sigma rules are on S3.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use comfy_table::{Cell, Color, ColumnConstraint};
use iamtrail_core::normalize::{normalize, NormalizeOptions, NormalizedEvent};
use iamtrail_core::record::read_log_dir;
use iamtrail_core::rules::{evaluate_with, rules, History, Severity};
use iamtrail_core::sigma::{RulesLocation, SigmaRules};
use serde::Serialize;

use crate::render::{fit_width, new_table, sanitize};

/// The `source` of a built-in rule.
pub const BUILT_IN: &str = "built-in";

/// One rule as the CLI lists it (a stable JSON shape).
#[derive(Debug, Serialize)]
pub struct RuleRow {
    /// The alert's rule id: a built-in id, or `sigma:<id>`.
    pub id: String,
    pub severity: Severity,
    pub title: String,
    /// `built-in`, or the Sigma rule's file.
    pub source: String,
    /// A Sigma rule's `level` as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    pub description: String,
    /// The MITRE ATT&CK techniques the rule detects (docs/alerts.md, "MITRE ATT&CK techniques";
    /// a Sigma rule's `attack.t*` tags).
    pub attack: Vec<String>,
}

/// Loads the Sigma rules `--sigma` (or `SIGMA_RULES`) names: a directory, or an S3 prefix read
/// with the AWS default credentials. `None` (or empty): no Sigma rules.
pub async fn load_sigma(value: Option<&str>) -> Result<Option<SigmaRules>> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let location = RulesLocation::parse(value)
        .map_err(|reason| anyhow::anyhow!("--sigma {value}: {reason}"))?;
    let s3 = match &location {
        RulesLocation::S3 { .. } => {
            let sdk = crate::deployed::sdk_config(None).await;
            let mut conf = aws_sdk_s3::config::Builder::from(&sdk);
            // An endpoint override is an emulator (the local stack's moto): buckets by path.
            if std::env::var_os("AWS_ENDPOINT_URL").is_some() {
                conf = conf.force_path_style(true);
            }
            Some(aws_sdk_s3::Client::from_conf(conf.build()))
        }
        RulesLocation::Dir(_) => None,
    };
    let rules = iamtrail_aws::sigma::load_with(&location, s3.as_ref())
        .await
        .map_err(|e| anyhow::anyhow!("Sigma rules in {e}"))?;
    Ok(Some(rules))
}

/// Every rule: the built-in ones in evaluation order, then the Sigma rules in file order.
pub fn rows(sigma: Option<&SigmaRules>) -> Vec<RuleRow> {
    let mut rows: Vec<RuleRow> = rules()
        .iter()
        .map(|r| RuleRow {
            id: r.id.to_string(),
            severity: r.severity,
            title: r.title.to_string(),
            source: BUILT_IN.to_string(),
            level: None,
            description: r.description.to_string(),
            attack: r.attack.iter().map(|t| t.to_string()).collect(),
        })
        .collect();
    for r in sigma.into_iter().flatten() {
        rows.push(RuleRow {
            id: r.rule_id(),
            severity: r.severity,
            title: r.title.clone(),
            source: r.file.clone(),
            level: r.level.clone(),
            description: r.description.clone().unwrap_or_default(),
            attack: r.attack.clone(),
        });
    }
    rows
}

fn severity_cell(severity: Severity) -> Cell {
    let color = match severity {
        Severity::Critical => Color::Red,
        Severity::High => Color::Yellow,
        Severity::Medium => Color::Blue,
    };
    Cell::new(severity).fg(color)
}

/// The rules as a table. Text from a Sigma file is shown as data (escaped, cut).
pub fn table(rows: &[RuleRow]) -> comfy_table::Table {
    let mut table = new_table(&[
        "id",
        "severity",
        "title",
        "source",
        "attack",
        "what it detects",
    ]);
    for r in rows {
        table.add_row(vec![
            Cell::new(sanitize(&r.id, 120)),
            severity_cell(r.severity),
            Cell::new(sanitize(&r.title, 200)),
            Cell::new(sanitize(&r.source, 200)),
            Cell::new(r.attack.join(", ")),
            Cell::new(sanitize(
                &r.description
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
                600,
            )),
        ]);
    }
    keep_whole(&mut table, &[0, 1, 3]);
    fit_width(&mut table, 200);
    table
}

/// Columns never wrapped (ids are copied from the output), whatever the width.
fn keep_whole(table: &mut comfy_table::Table, columns: &[usize]) {
    for &i in columns {
        if let Some(column) = table.column_mut(i) {
            column.set_constraint(ColumnConstraint::ContentWidth);
        }
    }
}

/// `iamtrail rules list [--sigma DIR]`.
pub fn list(sigma: Option<&SigmaRules>, json: bool) -> Result<()> {
    let rows = rows(sigma);
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("{}", table(&rows));
        let sigma = sigma.map_or(0, SigmaRules::len);
        println!(
            "{} rules ({} built-in, {sigma} Sigma).",
            rows.len(),
            rows.len() - sigma
        );
    }
    Ok(())
}

/// One rule firing on one event of a `rules test` run.
#[derive(Debug, Clone, Serialize)]
pub struct TestMatch {
    pub event_time: String,
    pub event_id: String,
    pub event_name: String,
    pub user: String,
    pub rule_id: String,
    pub severity: Severity,
    pub title: String,
    /// `built-in`, or the Sigma rule's file.
    pub source: String,
}

/// What a `rules test` run read and found (the `--format json` shape).
#[derive(Debug, Default, Serialize)]
pub struct TestReport {
    /// Log files read.
    pub files: usize,
    /// Records read from them.
    pub records: usize,
    /// Records that could not be read as CloudTrail records (skipped, like Collect's
    /// malformed ones are kept apart).
    pub unreadable: usize,
    /// Records the tracker collects (its event sources, and the root user's calls), each
    /// event once.
    pub kept: usize,
    /// Records seen twice (the same `eventID`): kept once, as the events table keys them.
    pub duplicates: usize,
    pub built_in_rules: usize,
    pub sigma_rules: usize,
    /// Every match, in event time order, built-in rules before Sigma rules on an event.
    pub matches: Vec<TestMatch>,
    /// Matches per rule id.
    pub matches_per_rule: BTreeMap<String, usize>,
}

/// Runs every rule, built-in and Sigma, over the CloudTrail log files under `dir`: the records
/// the tracker collects, normalised as Collect stores them, in time order, the built-in rules
/// reading the directory's events as their history.
pub fn run_test(dir: &Path, sigma: Option<&SigmaRules>) -> Result<TestReport> {
    if !dir.is_dir() {
        bail!(
            "{} is not a directory of CloudTrail log files",
            dir.display()
        );
    }
    let files = read_log_dir(dir)
        .with_context(|| format!("reading CloudTrail log files under {}", dir.display()))?;
    let mut report = TestReport {
        files: files.len(),
        built_in_rules: rules().len(),
        sigma_rules: sigma.map_or(0, SigmaRules::len),
        ..TestReport::default()
    };
    if files.is_empty() {
        bail!(
            "{} holds no CloudTrail log files (*.json or *.json.gz with a Records array)",
            dir.display()
        );
    }
    let mut seen = HashSet::new();
    let mut events: Vec<NormalizedEvent> = Vec::new();
    for (path, log) in &files {
        report.records += log.records.len() + log.rejected.len();
        report.unreadable += log.rejected.len();
        for (index, error) in &log.rejected {
            eprintln!(
                "warning: {} record {index}: {}",
                path.display(),
                sanitize(&error.to_string(), 300)
            );
        }
        for record in log.records.iter().filter(|r| r.is_tracked()) {
            if !seen.insert(record.event_id.clone()) {
                report.duplicates += 1;
                continue;
            }
            events.push(normalize(record, NormalizeOptions::default()));
        }
    }
    events.sort_by(|a, b| (&a.event_time, &a.event_id).cmp(&(&b.event_time, &b.event_id)));
    report.kept = events.len();
    let history = History::of(&events);
    let matched =
        |e: &NormalizedEvent, rule_id: String, severity, title: &str, source: &str| TestMatch {
            event_time: e.event_time.clone(),
            event_id: e.event_id.clone(),
            event_name: e.event_name.clone(),
            user: e.user_name.clone(),
            rule_id,
            severity,
            title: title.to_string(),
            source: source.to_string(),
        };
    for e in &events {
        for m in evaluate_with(e, &history) {
            report.matches.push(matched(
                e,
                m.rule_id.to_string(),
                m.severity,
                &m.title,
                BUILT_IN,
            ));
        }
        if let Some(sigma) = sigma {
            let outcome = sigma.evaluate_all(e);
            for m in &outcome.matches {
                report
                    .matches
                    .push(matched(e, m.rule_id(), m.severity, &m.title, &m.file));
            }
            for f in &outcome.failures {
                eprintln!(
                    "warning: Sigma rule {} ({}) failed on event {}: {}",
                    f.id,
                    f.file,
                    e.event_id,
                    sanitize(&f.message, 300)
                );
            }
        }
    }
    for m in &report.matches {
        *report
            .matches_per_rule
            .entry(m.rule_id.clone())
            .or_default() += 1;
    }
    Ok(report)
}

/// The matches as a table.
pub fn test_table(report: &TestReport) -> comfy_table::Table {
    let mut table = new_table(&[
        "time",
        "event id",
        "event name",
        "user",
        "rule id",
        "severity",
        "title",
    ]);
    for m in &report.matches {
        table.add_row(vec![
            Cell::new(sanitize(&m.event_time, 40)),
            Cell::new(sanitize(&m.event_id, 80)),
            Cell::new(sanitize(&m.event_name, 80)),
            Cell::new(sanitize(&m.user, 80)),
            Cell::new(sanitize(&m.rule_id, 120)),
            severity_cell(m.severity),
            Cell::new(sanitize(&m.title, 200)),
        ]);
    }
    keep_whole(&mut table, &[0, 1, 4, 5]);
    fit_width(&mut table, 200);
    table
}

/// The summary line: what was read, kept, and how often each rule matched.
pub fn summary_line(report: &TestReport) -> String {
    let mut line = format!(
        "{} records read from {} files",
        report.records, report.files
    );
    if report.unreadable > 0 {
        line.push_str(&format!(" ({} unreadable)", report.unreadable));
    }
    line.push_str(&format!(
        "; {} kept (tracked sources and root)",
        report.kept
    ));
    if report.duplicates > 0 {
        line.push_str(&format!(", {} duplicates dropped", report.duplicates));
    }
    line.push_str(&format!(
        "; {} rules ({} built-in, {} Sigma); {} matches",
        report.built_in_rules + report.sigma_rules,
        report.built_in_rules,
        report.sigma_rules,
        report.matches.len()
    ));
    if !report.matches_per_rule.is_empty() {
        let per_rule: Vec<String> = report
            .matches_per_rule
            .iter()
            .map(|(rule, n)| format!("{} {n}", sanitize(rule, 120)))
            .collect();
        line.push_str(&format!(": {}", per_rule.join(", ")));
    }
    line.push('.');
    line
}

/// `iamtrail rules test DIR [--sigma DIR]`.
pub fn test(dir: &Path, sigma: Option<&SigmaRules>, json: bool) -> Result<()> {
    let report = run_test(dir, sigma)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        if !report.matches.is_empty() {
            println!("{}", test_table(&report));
        }
        println!("{}", summary_line(&report));
    }
    Ok(())
}
