//! `iamtrail executions`: the state machine's recent executions with their kind (from the
//! input), times, status and a one-line summary (from the output). `status` reuses the
//! listing.

use anyhow::{Context, Result};
use aws_sdk_sfn::types::ExecutionStatus;
use comfy_table::{Cell, Color};
use iamtrail_core::contract::{ExecutionInput, Mode};
use iamtrail_core::record::format_time;
use serde::Serialize;
use serde_json::Value;

use crate::deployed::{to_chrono, Deployed};
use crate::follow::{outcome, Outcome};
use crate::local::sdk_error;
use crate::render::{new_table, sanitize};

/// One execution, as `executions` and `status` show it.
#[derive(Debug, Clone, Serialize)]
pub struct ExecutionInfo {
    pub name: String,
    pub arn: String,
    /// `scheduled`, `backfill`, `export`, or `unknown` (an input this version does not read).
    pub kind: String,
    pub status: String,
    pub start: Option<String>,
    pub stop: Option<String>,
    pub duration_seconds: Option<f64>,
    /// One line: the run's totals, the export, or why it was skipped.
    pub summary: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// The run summary's targets, for `status` (not printed by `executions`).
    #[serde(skip)]
    pub output: Option<Value>,
}

/// The kind of run an execution input asks for, with the rule ListTargets applies: `mode`, or
/// backfill when `start`/`end` are present, else the schedule's incremental run.
pub fn kind_of(input: Option<&str>) -> &'static str {
    let Some(parsed) = input.and_then(|i| serde_json::from_str::<ExecutionInput>(i).ok()) else {
        return "unknown";
    };
    let has_range = parsed.start.is_some() || parsed.end.is_some();
    match parsed.mode.unwrap_or(if has_range {
        Mode::Backfill
    } else {
        Mode::Incremental
    }) {
        Mode::Incremental => "scheduled",
        Mode::Backfill => "backfill",
        Mode::Export => "export",
    }
}

/// One line about an execution's output.
pub fn summary_of(output: Option<&Value>) -> Option<String> {
    let export = output.and_then(|o| o.get("export"));
    let exported = |e: &Value| {
        let n = |k: &str| e.get(k).and_then(Value::as_u64).unwrap_or(0);
        let dates = e.get("dates").and_then(Value::as_array).map_or(0, Vec::len);
        format!(
            "export {dates} day(s), {} file(s), {} rows",
            n("files"),
            n("rows")
        )
    };
    match outcome(output) {
        Outcome::Run(s) => {
            let t = &s.totals;
            let mut line = format!(
                "{}: {} region(s), {} fetched, {} stored, {} alerts queued, {} error(s)",
                s.status,
                s.regions,
                t.fetched,
                t.stored,
                t.alerts_queued,
                s.errors.len()
            );
            if let Some(e) = export {
                line.push_str(&format!("; {}", exported(e)));
            }
            Some(line)
        }
        Outcome::ExportOnly => Some(export.map(exported).unwrap_or_else(|| "export".into())),
        Outcome::Skipped(reason) => Some(format!("skipped: {reason}")),
        Outcome::Unknown => None,
    }
}

/// Describes one execution.
pub async fn describe(sfn: &aws_sdk_sfn::Client, arn: &str) -> Result<ExecutionInfo> {
    let d = sfn
        .describe_execution()
        .execution_arn(arn)
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("DescribeExecution {arn}"))?;
    let start = to_chrono(d.start_date());
    let stop = d.stop_date().and_then(to_chrono);
    let output: Option<Value> = d.output().and_then(|o| serde_json::from_str(o).ok());
    Ok(ExecutionInfo {
        name: d.name().unwrap_or_default().to_string(),
        arn: d.execution_arn().to_string(),
        kind: kind_of(d.input()).to_string(),
        status: d.status().as_str().to_string(),
        start: start.map(format_time),
        stop: stop.map(format_time),
        duration_seconds: start
            .zip(stop)
            .map(|(a, b)| (b - a).num_milliseconds() as f64 / 1000.0),
        summary: summary_of(output.as_ref()),
        error: d.error().map(String::from),
        cause: d.cause().map(String::from),
        output,
    })
}

/// The newest `limit` executions (newest first), optionally of one status, described.
pub async fn recent(
    deployed: &Deployed,
    status: Option<ExecutionStatus>,
    limit: usize,
) -> Result<Vec<ExecutionInfo>> {
    let mut arns = Vec::new();
    let mut token: Option<String> = None;
    while arns.len() < limit {
        let page = deployed
            .sfn
            .list_executions()
            .state_machine_arn(&deployed.outputs.state_machine_arn)
            .set_status_filter(status.clone())
            .max_results(limit.min(1000) as i32)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(sdk_error)
            .context("ListExecutions")?;
        arns.extend(
            page.executions()
                .iter()
                .map(|e| e.execution_arn().to_string()),
        );
        token = page.next_token().map(String::from);
        if token.is_none() {
            break;
        }
    }
    arns.truncate(limit);
    let mut out = Vec::with_capacity(arns.len());
    for arn in arns {
        out.push(describe(&deployed.sfn, &arn).await?);
    }
    Ok(out)
}

fn status_cell(status: &str) -> Cell {
    let color = match status {
        "SUCCEEDED" => Color::Green,
        "RUNNING" | "PENDING_REDRIVE" => Color::Yellow,
        _ => Color::Red,
    };
    Cell::new(status).fg(color)
}

/// The executions as a table: failures show their error and cause.
pub fn table(executions: &[ExecutionInfo]) -> comfy_table::Table {
    let mut table = new_table(&["name", "kind", "start", "duration", "status", "summary"]);
    for e in executions {
        let summary = match (&e.summary, &e.error) {
            (Some(s), _) => sanitize(s, 160),
            (None, Some(err)) => format!(
                "{}: {}",
                sanitize(err, 60),
                sanitize(e.cause.as_deref().unwrap_or(""), 160)
            ),
            (None, None) => String::new(),
        };
        table.add_row(vec![
            Cell::new(sanitize(&e.name, 80)),
            Cell::new(&e.kind),
            Cell::new(e.start.as_deref().unwrap_or("")),
            Cell::new(
                e.duration_seconds
                    .map(|s| format!("{s:.1}s"))
                    .unwrap_or_else(|| "-".into()),
            ),
            status_cell(&e.status),
            Cell::new(summary),
        ]);
    }
    table
}

/// `iamtrail executions`.
pub async fn run(
    deployed: &Deployed,
    status: Option<ExecutionStatus>,
    limit: usize,
    json: bool,
) -> Result<()> {
    let executions = recent(deployed, status, limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&executions)?);
    } else if executions.is_empty() {
        println!("No executions of {}.", deployed.outputs.state_machine_arn);
    } else {
        println!("{}", table(&executions));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_follow_list_targets_rule() {
        assert_eq!(kind_of(Some("{}")), "scheduled");
        assert_eq!(
            kind_of(Some(
                r#"{"start":"2026-01-01T00:00:00Z","end":"2026-01-02T00:00:00Z"}"#
            )),
            "backfill"
        );
        assert_eq!(
            kind_of(Some(r#"{"mode":"export","dates":["2026-01-01"]}"#)),
            "export"
        );
        assert_eq!(kind_of(Some(r#"{"surprise":1}"#)), "unknown");
        assert_eq!(kind_of(None), "unknown");
    }

    #[test]
    fn summaries() {
        assert_eq!(
            summary_of(Some(
                &json!({"run_id": "r", "status": "skipped", "reason": "held"})
            )),
            Some("skipped: held".into())
        );
        assert_eq!(
            summary_of(Some(&json!({"run_id": "r", "mode": "export", "items": [],
                "export": {"dates": ["2026-01-01"], "files": 1, "rows": 5}}))),
            Some("export 1 day(s), 1 file(s), 5 rows".into())
        );
        assert_eq!(summary_of(None), None);
    }
}
