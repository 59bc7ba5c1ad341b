//! Following an execution to its end, with a progress line, and reporting how it ended: the
//! one follow/render unit behind `iamtrail local demo` and the deployed-stack commands (`run`,
//! `backfill`, `export`, `redrive`). It only needs a Step Functions client, so it works the
//! same on the local stack and on AWS.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEventType};
use iamtrail_core::contract::RunSummary;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::local::sdk_error;
use crate::render::{run_table, sanitize};

/// How an execution ended.
#[derive(Debug, Clone)]
pub struct ExecutionResult {
    pub name: String,
    pub arn: String,
    pub status: String,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// State transitions (history events of type `*StateEntered`), for the cost report: AWS
    /// bills a Standard workflow per state entered (docs/architecture.md).
    pub state_transitions: usize,
    /// Collect invocations seen in the history.
    pub collect_invocations: usize,
    pub duration: Duration,
}

/// How often the follower polls DescribeExecution and the history, by default (the local
/// stack); [`FollowOptions::poll`] sets another interval.
const POLL: Duration = Duration::from_millis(300);
/// How long a redriven execution may still describe itself as the failed attempt (Step
/// Functions' reads are eventually consistent) before the follower gives up waiting.
const REDRIVE_VISIBLE_WITHIN: Duration = Duration::from_secs(120);

/// What to wait for.
#[derive(Debug, Clone, Copy, Default)]
pub struct FollowOptions {
    /// After a RedriveExecution: the redrive count the new attempt has. Until DescribeExecution
    /// shows it, a terminal status is the previous attempt's, not this one's.
    pub redrive_count: Option<i32>,
    /// The polling interval (default 300 ms). On AWS each poll is a DescribeExecution and a
    /// full GetExecutionHistory read, so the deployed-stack commands poll less often.
    pub poll: Option<Duration>,
}

/// Starts a named execution; returns its ARN.
pub async fn start_execution(
    sfn: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    name: &str,
    input: &Value,
) -> Result<String> {
    Ok(sfn
        .start_execution()
        .state_machine_arn(state_machine_arn)
        .name(name)
        .input(input.to_string())
        .send()
        .await
        .map_err(sdk_error)
        .context("StartExecution")?
        .execution_arn()
        .to_string())
}

/// A spinner on stderr (hidden when stderr is not a terminal).
pub fn spinner() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed}] {msg}").expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Follows an execution to its end, calling `progress` with a one-line description whenever it
/// changes.
pub async fn follow_execution(
    sfn: &aws_sdk_sfn::Client,
    execution_arn: &str,
    options: FollowOptions,
    mut progress: impl FnMut(&str),
) -> Result<ExecutionResult> {
    let started = std::time::Instant::now();
    let mut last_line = String::new();
    loop {
        let described = sfn
            .describe_execution()
            .execution_arn(execution_arn)
            .send()
            .await
            .map_err(sdk_error)
            .context("DescribeExecution")?;
        let (transitions, collects, line) = history_summary(sfn, execution_arn).await?;
        if line != last_line {
            progress(&line);
            last_line = line;
        }
        let current_attempt = options
            .redrive_count
            .is_none_or(|n| described.redrive_count().unwrap_or(0) >= n);
        if !current_attempt && started.elapsed() > REDRIVE_VISIBLE_WITHIN {
            bail!(
                "execution {execution_arn} was redriven, but DescribeExecution still shows the previous attempt after {}s",
                REDRIVE_VISIBLE_WITHIN.as_secs()
            );
        }
        if current_attempt && !is_running(described.status()) {
            return Ok(result_of(
                &described,
                transitions,
                collects,
                started.elapsed(),
            ));
        }
        tokio::time::sleep(options.poll.unwrap_or(POLL)).await;
    }
}

/// Running, or about to run again (a redrive that has not started yet).
fn is_running(status: &ExecutionStatus) -> bool {
    matches!(
        status,
        ExecutionStatus::Running | ExecutionStatus::PendingRedrive
    )
}

fn result_of(
    described: &DescribeExecutionOutput,
    state_transitions: usize,
    collect_invocations: usize,
    elapsed: Duration,
) -> ExecutionResult {
    // The execution's own clock when it has one (a redrive runs from its redrive date).
    let started = described.redrive_date().unwrap_or(described.start_date());
    let duration = described
        .stop_date()
        .and_then(|stop| {
            let millis = stop.to_millis().ok()? - started.to_millis().ok()?;
            u64::try_from(millis).ok().map(Duration::from_millis)
        })
        .unwrap_or(elapsed);
    ExecutionResult {
        name: described.name().unwrap_or_default().to_string(),
        arn: described.execution_arn().to_string(),
        status: described.status().as_str().to_string(),
        output: described
            .output()
            .and_then(|o| serde_json::from_str(o).ok()),
        error: described.error().map(String::from),
        cause: described.cause().map(String::from),
        state_transitions,
        collect_invocations,
        duration,
    }
}

/// Counts state transitions and Collect invocations so far, and describes where the
/// execution is: the state, the Map round (a later round collects again only the regions that
/// stopped on Collect's time budget), the Map iterations done and failed.
async fn history_summary(
    sfn: &aws_sdk_sfn::Client,
    execution_arn: &str,
) -> Result<(usize, usize, String)> {
    let mut transitions = 0;
    let mut collects = 0;
    let mut rounds = 0;
    let mut iterations_done = 0;
    let mut iterations_failed = 0;
    let mut current = String::new();
    let mut token: Option<String> = None;
    loop {
        let page = sfn
            .get_execution_history()
            .execution_arn(execution_arn)
            .set_next_token(token.clone())
            .max_results(1000)
            .send()
            .await
            .map_err(sdk_error)
            .context("GetExecutionHistory")?;
        for event in page.events() {
            match event.r#type() {
                HistoryEventType::TaskStateEntered
                | HistoryEventType::ChoiceStateEntered
                | HistoryEventType::MapStateEntered
                | HistoryEventType::ParallelStateEntered
                | HistoryEventType::PassStateEntered
                | HistoryEventType::WaitStateEntered
                | HistoryEventType::SucceedStateEntered
                | HistoryEventType::FailStateEntered => {
                    transitions += 1;
                    if *event.r#type() == HistoryEventType::MapStateEntered {
                        rounds += 1;
                    }
                    if let Some(name) = event.state_entered_event_details().map(|d| d.name()) {
                        if name == "Collect" {
                            collects += 1;
                        }
                        current = name.to_string();
                    }
                }
                HistoryEventType::MapIterationSucceeded => iterations_done += 1,
                HistoryEventType::MapIterationFailed | HistoryEventType::MapIterationAborted => {
                    iterations_failed += 1
                }
                _ => {}
            }
        }
        token = page.next_token().map(String::from);
        if token.is_none() {
            break;
        }
    }
    let line = if current.is_empty() {
        "starting".to_string()
    } else {
        format!(
            "{}{}: {iterations_done} Map iteration(s) done{}, {collects} Collect invocation(s), {transitions} transitions",
            sanitize(&current, 80),
            if rounds > 1 { format!(" (round {rounds})") } else { String::new() },
            if iterations_failed > 0 { format!(", {iterations_failed} failed") } else { String::new() }
        )
    };
    Ok((transitions, collects, line))
}

/// Follows an execution with a spinner that shows where it is.
pub async fn follow_with_spinner(
    sfn: &aws_sdk_sfn::Client,
    execution_arn: &str,
    label: &str,
    options: FollowOptions,
) -> Result<ExecutionResult> {
    let bar = spinner();
    bar.set_message(format!("execution {label}: starting"));
    let result = follow_execution(sfn, execution_arn, options, |line| {
        bar.set_message(format!("execution {label}: {line}"))
    })
    .await;
    bar.finish_and_clear();
    result
}

/// The one-line account of how an execution ended.
pub fn execution_line(result: &ExecutionResult) -> String {
    format!(
        "Execution {} {} in {:.1}s ({} state transitions, {} Collect invocations)",
        sanitize(&result.name, 80),
        result.status,
        result.duration.as_secs_f64(),
        result.state_transitions,
        result.collect_invocations
    )
}

/// The error of an execution that did not succeed: its status, error and cause (sanitised: the
/// cause can quote event data).
pub fn failure_message(result: &ExecutionResult) -> String {
    format!(
        "execution {} ended {}: {} {}",
        sanitize(&result.name, 80),
        result.status,
        sanitize(result.error.as_deref().unwrap_or(""), 200),
        sanitize(result.cause.as_deref().unwrap_or(""), 2000)
    )
}

/// What an execution's output says, for the report.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A collecting run: the run summary (plus `alerts` and `export` in the output).
    Run(Box<RunSummary>),
    /// An export-only run (ListTargets' output plus `export`).
    ExportOnly,
    /// A scheduled run that found another one holding the run lease.
    Skipped(String),
    /// No output, or one this version does not know.
    Unknown,
}

/// Reads the outcome from an execution's output.
pub fn outcome(output: Option<&Value>) -> Outcome {
    let Some(output) = output else {
        return Outcome::Unknown;
    };
    if output.get("status").and_then(Value::as_str) == Some("skipped") {
        let reason = output.get("reason").and_then(Value::as_str).unwrap_or("");
        return Outcome::Skipped(reason.to_string());
    }
    if let Ok(summary) = serde_json::from_value::<RunSummary>(output.clone()) {
        return Outcome::Run(Box::new(summary));
    }
    if output.get("mode").and_then(Value::as_str) == Some("export") {
        return Outcome::ExportOnly;
    }
    Outcome::Unknown
}

/// The export line of a run's output (`export` as the state machine keeps it).
pub fn export_line(export: &Value, bucket: Option<&str>) -> String {
    let count = |k: &str| export.get(k).and_then(Value::as_u64).unwrap_or(0);
    let list = |k: &str| export.get(k).and_then(Value::as_array).map_or(0, Vec::len);
    let mut line = format!(
        "Export: {} day(s) checked, {} file(s), {} rows written",
        list("dates"),
        count("files"),
        count("rows")
    );
    if let Some(bucket) = bucket {
        line.push_str(&format!(" to s3://{}/iam-events/", sanitize(bucket, 80)));
    }
    if list("kept") > 0 {
        line.push_str(&format!(
            "; {} file(s) kept (the new one had fewer rows; --force replaces them)",
            list("kept")
        ));
    }
    if list("export_dates") > 0 {
        line.push_str(&format!(
            "; {} date(s) left for the next run",
            list("export_dates")
        ));
    }
    line
}

/// Prints how an execution ended: the execution line, then the run table for a collecting
/// run, or why it was skipped. Fails (after printing the line)
/// when the execution did not succeed, with its error and cause.
pub fn report(result: &ExecutionResult) -> Result<Outcome> {
    println!("{}", execution_line(result));
    if result.status != "SUCCEEDED" {
        bail!(failure_message(result));
    }
    let found = outcome(result.output.as_ref());
    match &found {
        Outcome::Run(summary) => println!("{}", run_table(summary)),
        Outcome::Skipped(reason) => println!(
            "Skipped: {} (a scheduled run collects only when no other one holds the run lease)",
            sanitize(reason, 300)
        ),
        Outcome::ExportOnly | Outcome::Unknown => {}
    }
    Ok(found)
}

/// The alert-delivery line of a collecting run's output (`alerts`, EvaluateAlerts' result).
pub fn alerts_line(alerts: &Value) -> String {
    let count = |k: &str| alerts.get(k).and_then(Value::as_u64).unwrap_or(0);
    let mut line = format!(
        "Alerts: {} found waiting, {} sent, {} failed publish(es)",
        count("pending"),
        count("sent"),
        count("failed")
    );
    if let Some(total) = alerts.get("failed_total").and_then(Value::as_u64) {
        line.push_str(&format!("; {total} in the outbox as failed"));
    }
    if alerts.get("enabled").and_then(Value::as_bool) == Some(false) {
        line.push_str(" (publishing is switched off: AlertsEnabled=false)");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outcomes_are_read_from_the_output() {
        assert_eq!(outcome(None), Outcome::Unknown);
        assert_eq!(
            outcome(Some(
                &json!({"run_id": "r", "status": "skipped", "reason": "held"})
            )),
            Outcome::Skipped("held".into())
        );
        assert_eq!(
            outcome(Some(
                &json!({"run_id": "r", "mode": "export", "items": [], "export": {}})
            )),
            Outcome::ExportOnly
        );
    }

    #[test]
    fn export_line_counts() {
        let export = json!({"dates": ["2026-11-23", "2026-11-24"], "rows": 439, "files": 2,
                            "kept": [], "export_dates": []});
        assert_eq!(
            export_line(&export, Some("b")),
            "Export: 2 day(s) checked, 2 file(s), 439 rows written to s3://b/iam-events/"
        );
    }
}
