//! `iamtrail status`: how the deployed tracker is doing. The last runs (ListExecutions and
//! DescribeExecution: status and totals from the run summary in the output), the run lease,
//! per region/source the checkpoint and how far it lags behind now (the control table's items,
//! for the region/sources of the newest run record and the recent runs), pending and failed
//! alerts (the alerts table's status index), the last exported date and the dirty dates
//! waiting, recent failures with their messages, and the stack's CloudWatch alarms in ALARM
//! (DescribeAlarms; docs/operations.md).

use std::collections::{BTreeSet, HashMap};

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Select};
use aws_sdk_sfn::types::ExecutionStatus;
use chrono::{DateTime, Utc};
use comfy_table::{Cell, Color};
use iamtrail_aws::alerts::{alert_from_item, STATUS_INDEX};
use iamtrail_aws::dynamo::DynamoControlStore;
use iamtrail_aws::ports::ControlStore;
use iamtrail_core::contract::RunSummary;
use iamtrail_core::outbox::status as alert_status;
use iamtrail_core::record::{format_time, parse_time};
use iamtrail_core::source::checkpoint_key;
use iamtrail_core::Source;
use serde::Serialize;

use super::executions::{self, recent, ExecutionInfo};
use super::redrive::REDRIVE_WINDOW_DAYS;
use crate::deployed::Deployed;
use crate::local::sdk_error;
use crate::render::{fit_width, new_table, sanitize};
use crate::stack::keys;

/// Everything `status` reports (`--format json` prints this; field names are stable).
#[derive(Debug, Serialize)]
pub struct Status {
    pub stack: String,
    pub region: String,
    pub state_machine_arn: String,
    pub generated_at: String,
    pub runs: Vec<ExecutionInfo>,
    /// The control table's `run#latest`.
    pub latest_run_record: Option<RunRecord>,
    /// The control table's `lease#run`: the scheduled execution collecting now.
    pub run_lease: Option<Lease>,
    pub checkpoints: Vec<Checkpoint>,
    pub alerts: Alerts,
    pub export: Export,
    pub failures: Vec<Failure>,
    /// `None`: the stack has no `OperationsTopicArn` output (deployed before the alarms).
    pub alarms: Option<Alarms>,
    /// The S3 ingestion's checkpoints; `None`: the stack has no trail bucket.
    pub trail: Option<TrailStatus>,
}

/// How far the S3 ingestion has read the trail bucket (docs/ingest.md).
#[derive(Debug, Serialize)]
pub struct TrailStatus {
    pub bucket: String,
    /// Per account and region: the newest log object ingested, and how long ago it was written.
    pub checkpoints: Vec<TrailCheckpoint>,
}

#[derive(Debug, Serialize)]
pub struct TrailCheckpoint {
    pub account: String,
    pub region: String,
    pub newest_object: String,
    pub lag_seconds: i64,
}

/// The trail bucket's checkpoints (the control table's `trail#BUCKET`).
async fn trail(deployed: &Deployed, now: DateTime<Utc>) -> Result<Option<TrailStatus>> {
    use iamtrail_aws::ports::IngestLedger;
    let Ok(bucket) = deployed.outputs.output(keys::TRAIL_BUCKET) else {
        return Ok(None);
    };
    let ledger = iamtrail_aws::dynamo::DynamoControlStore::new(
        deployed.dynamodb.clone(),
        &deployed.outputs.control_table,
    );
    let checkpoints = ledger
        .trail_checkpoints(bucket)
        .await
        .map_err(|e| anyhow::anyhow!("reading the trail checkpoints: {e}"))?
        .into_iter()
        .map(|(account, region, at)| TrailCheckpoint {
            account,
            region,
            newest_object: format_time(at),
            lag_seconds: (now - at).num_seconds(),
        })
        .collect();
    Ok(Some(TrailStatus {
        bucket: bucket.to_string(),
        checkpoints,
    }))
}

/// The stack's CloudWatch alarms: named `<stack>-...` and notifying its operations topic.
#[derive(Debug, Serialize)]
pub struct Alarms {
    pub operations_topic: String,
    /// How many alarms the stack has.
    pub total: usize,
    /// The alarms in ALARM, by name.
    pub in_alarm: Vec<AlarmState>,
    /// The names of the alarms without enough data to decide yet (`INSUFFICIENT_DATA`).
    pub insufficient_data: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct AlarmState {
    pub name: String,
    /// `namespace metric [dimension values]`, e.g. `IamTrail/iamtrail PartialRun`.
    pub metric: String,
    /// `>= 1`, `> 10800`, ...
    pub threshold: String,
    /// CloudWatch's state reason (the value that breached).
    pub reason: String,
    /// When the alarm entered its state.
    pub since: Option<String>,
    /// What the alarm means and what to do.
    pub description: String,
}

#[derive(Debug, Serialize)]
pub struct RunRecord {
    pub run_id: String,
    pub status: String,
    pub finished_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Lease {
    pub holder: String,
    pub expires_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Checkpoint {
    pub region: String,
    pub source: Source,
    /// Everything up to this time is stored (`None`: never read).
    pub checkpoint: Option<String>,
    /// Seconds between the checkpoint and now.
    pub lag_seconds: Option<i64>,
    /// `active`, `error` or `paused`.
    pub status: Option<String>,
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Alerts {
    pub pending: u64,
    pub sending: u64,
    pub failed: u64,
    /// The newest failed alerts (at most 5), with the last publish error.
    pub recent_failed: Vec<FailedAlert>,
}

#[derive(Debug, Serialize)]
pub struct FailedAlert {
    pub event_id: String,
    pub rule_id: String,
    pub severity: String,
    pub created_at: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Export {
    pub last_exported_date: Option<String>,
    /// Dates with events stored since their export, waiting for the next export.
    pub dirty_dates: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Failure {
    /// `execution` (failed, timed out or aborted within the redrive window), `alert` (failed
    /// for good) or `source` (a region/source whose last read failed).
    pub kind: &'static str,
    pub name: String,
    pub time: Option<String>,
    pub error: String,
    pub message: String,
}

/// The failed alerts listed.
const RECENT_FAILED_ALERTS: i32 = 5;
/// Failed executions listed per status.
const RECENT_FAILED_EXECUTIONS: usize = 5;

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

/// One control item, read consistently.
async fn control_item(
    deployed: &Deployed,
    key: &str,
) -> Result<Option<HashMap<String, AttributeValue>>> {
    let out = deployed
        .dynamodb
        .get_item()
        .table_name(&deployed.outputs.control_table)
        .key("region", AttributeValue::S(key.to_string()))
        .consistent_read(true)
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("GetItem {key} from the control table"))?;
    Ok(out.item().cloned())
}

/// `run#latest` and its run summary.
async fn latest_run(deployed: &Deployed) -> Result<(Option<RunRecord>, Option<RunSummary>)> {
    let Some(item) = control_item(deployed, "run#latest").await? else {
        return Ok((None, None));
    };
    let summary = text(&item, "summary").and_then(|s| serde_json::from_str(&s).ok());
    let record = RunRecord {
        run_id: text(&item, "run_id").unwrap_or_default(),
        status: text(&item, "status").unwrap_or_default(),
        finished_at: text(&item, "finished_at"),
    };
    Ok((Some(record), summary))
}

async fn run_lease(deployed: &Deployed) -> Result<Option<Lease>> {
    Ok(control_item(deployed, "lease#run")
        .await?
        .map(|item| Lease {
            holder: text(&item, "holder").unwrap_or_default(),
            expires_at: text(&item, "expires_at"),
        }))
}

/// The region/sources to report: those of the newest run record and of the recent runs.
fn checkpoint_targets(
    latest: Option<&RunSummary>,
    runs: &[ExecutionInfo],
) -> BTreeSet<(String, Source)> {
    let from_runs = runs
        .iter()
        .filter_map(|r| r.output.as_ref())
        .filter_map(|o| serde_json::from_value::<RunSummary>(o.clone()).ok());
    latest
        .cloned()
        .into_iter()
        .chain(from_runs)
        .flat_map(|s| s.targets)
        .map(|t| (t.region, t.source))
        .collect()
}

/// The checkpoint items of the targets (BatchGetItem, 100 keys a request, consistent reads).
async fn checkpoints(
    deployed: &Deployed,
    targets: &BTreeSet<(String, Source)>,
    now: DateTime<Utc>,
) -> Result<Vec<Checkpoint>> {
    let table = &deployed.outputs.control_table;
    let keys: Vec<String> = targets.iter().map(|(r, s)| checkpoint_key(r, *s)).collect();
    let mut items: HashMap<String, HashMap<String, AttributeValue>> = HashMap::new();
    for chunk in keys.chunks(100) {
        let mut request = KeysAndAttributes::builder().consistent_read(true);
        for key in chunk {
            request = request.keys(HashMap::from([(
                "region".to_string(),
                AttributeValue::S(key.clone()),
            )]));
        }
        let mut pending = Some(HashMap::from([(table.clone(), request.build()?)]));
        for attempt in 0.. {
            let Some(request) = pending.take().filter(|p| !p.is_empty()) else {
                break;
            };
            anyhow::ensure!(attempt < 8, "BatchGetItem kept returning unprocessed keys");
            let out = deployed
                .dynamodb
                .batch_get_item()
                .set_request_items(Some(request))
                .send()
                .await
                .map_err(sdk_error)
                .context("BatchGetItem on the control table")?;
            for item in out
                .responses()
                .and_then(|r| r.get(table))
                .into_iter()
                .flatten()
            {
                if let Some(key) = text(item, "region") {
                    items.insert(key, item.clone());
                }
            }
            pending = out.unprocessed_keys().cloned();
            if pending.as_ref().is_some_and(|p| !p.is_empty()) {
                tokio::time::sleep(std::time::Duration::from_millis(100 << attempt.min(5))).await;
            }
        }
    }
    Ok(targets
        .iter()
        .map(|(region, source)| {
            let item = items.get(&checkpoint_key(region, *source));
            let field = |n: &str| item.and_then(|i| text(i, n));
            let at = field("last_processed_timestamp")
                .as_deref()
                .and_then(parse_time);
            Checkpoint {
                region: region.clone(),
                source: *source,
                checkpoint: at.map(format_time),
                lag_seconds: at.map(|t| (now - t).num_seconds()),
                status: field("processing_status"),
                last_error: field("last_error"),
            }
        })
        .collect())
}

/// Alerts of one status on the status index: the count, or the newest `limit` items.
fn status_query(
    deployed: &Deployed,
    state: &str,
) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
    deployed
        .dynamodb
        .query()
        .table_name(&deployed.outputs.alerts_table)
        .index_name(STATUS_INDEX)
        .key_condition_expression("#s = :s")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":s", AttributeValue::S(state.to_string()))
}

async fn count_alerts(deployed: &Deployed, state: &str) -> Result<u64> {
    let mut count = 0u64;
    let mut start = None;
    loop {
        let page = status_query(deployed, state)
            .select(Select::Count)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| format!("counting {state} alerts"))?;
        count += page.count().max(0) as u64;
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return Ok(count),
        }
    }
}

async fn alerts(deployed: &Deployed) -> Result<Alerts> {
    let newest_failed = status_query(deployed, alert_status::FAILED)
        .scan_index_forward(false)
        .limit(RECENT_FAILED_ALERTS)
        .send()
        .await
        .map_err(sdk_error)
        .context("reading failed alerts")?;
    let recent_failed = newest_failed
        .items()
        .iter()
        .filter_map(alert_from_item)
        .map(|a| FailedAlert {
            event_id: a.event_id,
            rule_id: a.rule_id,
            severity: a.severity,
            created_at: a.created_at,
            attempts: a.attempts,
            last_error: a.last_error,
        })
        .collect();
    Ok(Alerts {
        pending: count_alerts(deployed, alert_status::PENDING).await?,
        sending: count_alerts(deployed, alert_status::SENDING).await?,
        failed: count_alerts(deployed, alert_status::FAILED).await?,
        recent_failed,
    })
}

async fn export(deployed: &Deployed) -> Result<Export> {
    let control =
        DynamoControlStore::new(deployed.dynamodb.clone(), &deployed.outputs.control_table);
    let last = control.last_export().await?;
    let dirty = control.dirty_dates().await?;
    Ok(Export {
        last_exported_date: last.map(|d| d.to_string()),
        dirty_dates: dirty.keys().map(|d| d.to_string()).collect(),
    })
}

/// Failed, timed-out and aborted executions still inside the redrive window, newest first.
async fn failed_executions(deployed: &Deployed, now: DateTime<Utc>) -> Result<Vec<ExecutionInfo>> {
    let mut failed = Vec::new();
    for status in [
        ExecutionStatus::Failed,
        ExecutionStatus::TimedOut,
        ExecutionStatus::Aborted,
    ] {
        failed.extend(recent(deployed, Some(status), RECENT_FAILED_EXECUTIONS).await?);
    }
    let window_start = format_time(now - chrono::Duration::days(REDRIVE_WINDOW_DAYS));
    failed.retain(|e| {
        e.stop
            .as_deref()
            .is_some_and(|s| s >= window_start.as_str())
    });
    failed.sort_by(|a, b| b.stop.cmp(&a.stop));
    failed.truncate(RECENT_FAILED_EXECUTIONS);
    Ok(failed)
}

fn failures(
    executions: &[ExecutionInfo],
    alerts: &Alerts,
    checkpoints: &[Checkpoint],
) -> Vec<Failure> {
    let from_executions = executions.iter().map(|e| Failure {
        kind: "execution",
        name: e.name.clone(),
        time: e.stop.clone(),
        error: format!("{} {}", e.status, e.error.clone().unwrap_or_default())
            .trim()
            .to_string(),
        message: e.cause.clone().unwrap_or_default(),
    });
    let from_alerts = alerts.recent_failed.iter().map(|a| Failure {
        kind: "alert",
        name: format!("{} {}", a.rule_id, a.event_id),
        time: Some(a.created_at.clone()),
        error: format!("failed after {} attempt(s)", a.attempts),
        message: a.last_error.clone().unwrap_or_default(),
    });
    let from_sources = checkpoints
        .iter()
        .filter(|c| c.status.as_deref() == Some("error") || c.last_error.is_some())
        .map(|c| Failure {
            kind: "source",
            name: checkpoint_key(&c.region, c.source),
            time: None,
            error: c.status.clone().unwrap_or_default(),
            message: c.last_error.clone().unwrap_or_default(),
        });
    from_executions
        .chain(from_alerts)
        .chain(from_sources)
        .collect()
}

/// `GreaterThanOrEqualToThreshold` 1.0 → `>= 1`.
fn threshold_text(
    comparison: Option<&aws_sdk_cloudwatch::types::ComparisonOperator>,
    threshold: Option<f64>,
) -> String {
    use aws_sdk_cloudwatch::types::ComparisonOperator as Op;
    let op = match comparison {
        Some(Op::GreaterThanOrEqualToThreshold) => ">=",
        Some(Op::GreaterThanThreshold) => ">",
        Some(Op::LessThanThreshold) => "<",
        Some(Op::LessThanOrEqualToThreshold) => "<=",
        Some(other) => other.as_str(),
        None => "?",
    };
    match threshold {
        Some(t) => format!("{op} {t}"),
        None => op.to_string(),
    }
}

/// One metric alarm as `status` reports it.
fn alarm_state(alarm: &aws_sdk_cloudwatch::types::MetricAlarm) -> AlarmState {
    let dimensions: Vec<&str> = alarm
        .dimensions()
        .iter()
        .filter_map(|d| d.value())
        .collect();
    let metric = format!(
        "{} {}{}",
        alarm.namespace().unwrap_or("?"),
        alarm.metric_name().unwrap_or("(metric math)"),
        if dimensions.is_empty() {
            String::new()
        } else {
            format!(" [{}]", dimensions.join(", "))
        }
    );
    AlarmState {
        name: alarm.alarm_name().unwrap_or_default().to_string(),
        metric,
        threshold: threshold_text(alarm.comparison_operator(), alarm.threshold()),
        reason: alarm.state_reason().unwrap_or_default().to_string(),
        since: alarm
            .state_updated_timestamp()
            .and_then(crate::deployed::to_chrono)
            .map(format_time),
        description: alarm.alarm_description().unwrap_or_default().to_string(),
    }
}

/// The stack's alarms (DescribeAlarms by the name prefix `<stack>-`, kept when they notify the
/// stack's operations topic, so another stack whose name starts the same is left out).
async fn alarms(deployed: &Deployed) -> Result<Option<Alarms>> {
    use aws_sdk_cloudwatch::types::StateValue;
    let Some(topic) = deployed.outputs.all.get(keys::OPERATIONS_TOPIC).cloned() else {
        return Ok(None);
    };
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&deployed.sdk);
    let prefix = format!("{}-", deployed.outputs.stack);
    let mut found = Vec::new();
    let mut token = None;
    loop {
        let page = cloudwatch
            .describe_alarms()
            .alarm_name_prefix(&prefix)
            .set_next_token(token)
            .send()
            .await
            .map_err(sdk_error)
            .context("CloudWatch DescribeAlarms (needs cloudwatch:DescribeAlarms)")?;
        found.extend(
            page.metric_alarms()
                .iter()
                .filter(|a| a.alarm_actions().contains(&topic))
                .cloned(),
        );
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    found.sort_by(|a, b| a.alarm_name().cmp(&b.alarm_name()));
    let in_state = |state: StateValue| {
        found
            .iter()
            .filter(move |a| a.state_value() == Some(&state))
            .collect::<Vec<_>>()
    };
    Ok(Some(Alarms {
        total: found.len(),
        in_alarm: in_state(StateValue::Alarm)
            .into_iter()
            .map(alarm_state)
            .collect(),
        insufficient_data: in_state(StateValue::InsufficientData)
            .into_iter()
            .filter_map(|a| a.alarm_name().map(String::from))
            .collect(),
        operations_topic: topic,
    }))
}

/// Reads everything `status` reports.
pub async fn gather(deployed: &Deployed, runs: usize) -> Result<Status> {
    let now = Utc::now();
    let recent_runs = recent(deployed, None, runs).await?;
    let (latest_run_record, latest_summary) = latest_run(deployed).await?;
    let targets = checkpoint_targets(latest_summary.as_ref(), &recent_runs);
    let checkpoints = checkpoints(deployed, &targets, now).await?;
    let alerts = alerts(deployed).await?;
    let failed = failed_executions(deployed, now).await?;
    Ok(Status {
        stack: deployed.outputs.stack.clone(),
        region: deployed.region(),
        state_machine_arn: deployed.outputs.state_machine_arn.clone(),
        generated_at: format_time(now),
        runs: recent_runs,
        latest_run_record,
        run_lease: run_lease(deployed).await?,
        failures: failures(&failed, &alerts, &checkpoints),
        checkpoints,
        alerts,
        export: export(deployed).await?,
        alarms: alarms(deployed).await?,
        trail: trail(deployed, now).await?,
    })
}

/// `3d 4h`, `2h 5m`, `4m 10s`.
pub fn human_lag(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

fn checkpoint_row(label: String, checkpoint: String, lag: String, c: &Checkpoint) -> Vec<Cell> {
    let state = c.status.clone().unwrap_or_else(|| "-".into());
    let color = match state.as_str() {
        "active" => Color::Green,
        "paused" => Color::Yellow,
        _ => Color::Red,
    };
    vec![
        Cell::new(label),
        Cell::new(checkpoint),
        Cell::new(lag),
        Cell::new(&state).fg(color),
        Cell::new(sanitize(c.last_error.as_deref().unwrap_or(""), 120)),
    ]
}

/// The checkpoints table. Healthy region/sources (active, read, no error) share one line with
/// the range of their checkpoints and the one lagging most; every other one has its own line.
fn checkpoints_table(checkpoints: &[Checkpoint]) -> comfy_table::Table {
    let healthy = |c: &&Checkpoint| {
        c.status.as_deref() == Some("active") && c.last_error.is_none() && c.checkpoint.is_some()
    };
    let mut table = new_table(&[
        "region/source",
        "checkpoint",
        "behind now",
        "status",
        "last error",
    ]);
    let lag = |c: &Checkpoint| c.lag_seconds.map(human_lag).unwrap_or_else(|| "-".into());
    let fine: Vec<&Checkpoint> = checkpoints.iter().filter(healthy).collect();
    let oldest = fine.iter().max_by_key(|c| c.lag_seconds);
    let newest = fine.iter().min_by_key(|c| c.lag_seconds);
    if let (Some(oldest), Some(newest), true) = (oldest, newest, fine.len() > 1) {
        let range = match (&oldest.checkpoint, &newest.checkpoint) {
            (Some(a), Some(b)) if a != b => format!("{a} … {b}"),
            (Some(a), _) => a.clone(),
            _ => String::new(),
        };
        let label = format!(
            "{} region/sources (oldest: {} {})",
            fine.len(),
            oldest.region,
            oldest.source
        );
        table.add_row(checkpoint_row(
            label,
            range,
            format!("at most {}", lag(oldest)),
            oldest,
        ));
    } else if let Some(only) = oldest {
        let label = format!("{} {}", only.region, only.source);
        let at = only.checkpoint.clone().unwrap_or_default();
        table.add_row(checkpoint_row(label, at, lag(only), only));
    }
    for c in checkpoints.iter().filter(|c| !healthy(c)) {
        let at = c.checkpoint.clone().unwrap_or_else(|| "never read".into());
        table.add_row(checkpoint_row(
            format!("{} {}", c.region, c.source),
            at,
            lag(c),
            c,
        ));
    }
    table
}

fn alarms_table(alarms: &[AlarmState]) -> comfy_table::Table {
    let mut table = new_table(&["alarm", "metric", "threshold", "since", "reason"]);
    for a in alarms {
        table.add_row(vec![
            Cell::new(sanitize(&a.name, 100)).fg(Color::Red),
            Cell::new(sanitize(&a.metric, 100)),
            Cell::new(&a.threshold),
            Cell::new(a.since.as_deref().unwrap_or("")),
            Cell::new(sanitize(&a.reason, 300)),
        ]);
    }
    fit_width(&mut table, 160);
    table
}

/// The alarms section: the count, then the alarms in ALARM with what to do.
fn print_alarms(alarms: Option<&Alarms>) {
    let Some(a) = alarms else {
        println!(
            "\nAlarms: the stack has no {} output (deployed before the alarms: redeploy to get them)",
            keys::OPERATIONS_TOPIC
        );
        return;
    };
    let waiting = if a.insufficient_data.is_empty() {
        String::new()
    } else {
        format!(" ({} without data yet)", a.insufficient_data.len())
    };
    if a.in_alarm.is_empty() {
        println!("\nAlarms: none of {} in ALARM{waiting}", a.total);
        return;
    }
    println!(
        "\nAlarms: {} of {} in ALARM{waiting} (docs/operations.md):\n{}",
        a.in_alarm.len(),
        a.total,
        alarms_table(&a.in_alarm)
    );
    for alarm in &a.in_alarm {
        println!("  {}: {}", alarm.name, sanitize(&alarm.description, 600));
    }
}

fn failures_table(failures: &[Failure]) -> comfy_table::Table {
    let mut table = new_table(&["kind", "what", "when", "error", "message"]);
    for f in failures {
        table.add_row(vec![
            Cell::new(f.kind),
            Cell::new(sanitize(&f.name, 100)),
            Cell::new(f.time.as_deref().unwrap_or("")),
            Cell::new(sanitize(&f.error, 80)).fg(Color::Red),
            Cell::new(sanitize(&f.message, 300)),
        ]);
    }
    fit_width(&mut table, 160);
    table
}

/// Prints the status as tables.
pub fn print_table(status: &Status) {
    println!(
        "Stack {} ({}) · {} · {}",
        sanitize(&status.stack, 80),
        status.region,
        status.state_machine_arn,
        status.generated_at
    );
    println!("\nLast runs:");
    if status.runs.is_empty() {
        println!("  none yet");
    } else {
        println!("{}", executions::table(&status.runs));
    }
    match &status.run_lease {
        Some(l) => println!(
            "Run lease: held by {} until {}",
            sanitize(&l.holder, 80),
            l.expires_at.as_deref().unwrap_or("?")
        ),
        None => println!("Run lease: free (no scheduled run is collecting)"),
    }
    println!(
        "\nCheckpoints ({} region/sources):",
        status.checkpoints.len()
    );
    if status.checkpoints.is_empty() {
        println!("  none yet (no run record)");
    } else {
        println!("{}", checkpoints_table(&status.checkpoints));
    }
    if let Some(t) = &status.trail {
        match t.checkpoints.iter().max_by_key(|c| c.lag_seconds) {
            None => println!(
                "\nS3 ingestion (s3://{}): nothing ingested yet",
                sanitize(&t.bucket, 80)
            ),
            Some(oldest) => println!(
                "\nS3 ingestion (s3://{}): {} account/region(s); the furthest behind is {} {} (newest object {}, {} ago)",
                sanitize(&t.bucket, 80),
                t.checkpoints.len(),
                sanitize(&oldest.account, 20),
                sanitize(&oldest.region, 30),
                oldest.newest_object,
                human_lag(oldest.lag_seconds)
            ),
        }
    }
    let a = &status.alerts;
    println!(
        "\nAlerts: {} pending, {} sending, {} failed",
        a.pending, a.sending, a.failed
    );
    let e = &status.export;
    println!(
        "Export: last exported date {}; dirty dates waiting: {}",
        e.last_exported_date.as_deref().unwrap_or("none"),
        if e.dirty_dates.is_empty() {
            "none".to_string()
        } else {
            e.dirty_dates.join(", ")
        }
    );
    if status.failures.is_empty() {
        println!("\nRecent failures: none");
    } else {
        println!("\nRecent failures:\n{}", failures_table(&status.failures));
    }
    print_alarms(status.alarms.as_ref());
}

/// `iamtrail status`.
pub async fn run(deployed: &Deployed, runs: usize, json: bool) -> Result<()> {
    let status = gather(deployed, runs).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_table(&status);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lags_read_like_durations() {
        assert_eq!(human_lag(250), "4m 10s");
        assert_eq!(human_lag(7500), "2h 5m");
        assert_eq!(human_lag(3 * 86400 + 4 * 3600 + 5), "3d 4h");
        assert_eq!(human_lag(-3), "0m 0s");
    }

    #[test]
    fn alarm_thresholds_read_like_comparisons() {
        use aws_sdk_cloudwatch::types::{ComparisonOperator as Op, Dimension, MetricAlarm};
        assert_eq!(
            threshold_text(Some(&Op::GreaterThanOrEqualToThreshold), Some(1.0)),
            ">= 1"
        );
        assert_eq!(
            threshold_text(Some(&Op::GreaterThanThreshold), Some(10800.0)),
            "> 10800"
        );
        let alarm = MetricAlarm::builder()
            .alarm_name("s-collect-errors")
            .namespace("AWS/Lambda")
            .metric_name("Errors")
            .dimensions(
                Dimension::builder()
                    .name("FunctionName")
                    .value("s-collect")
                    .build(),
            )
            .comparison_operator(Op::GreaterThanOrEqualToThreshold)
            .threshold(1.0)
            .state_reason("Threshold Crossed: 1 datapoint [2.0] was >= 1.0")
            .build();
        let state = alarm_state(&alarm);
        assert_eq!(state.metric, "AWS/Lambda Errors [s-collect]");
        assert_eq!(state.threshold, ">= 1");
        assert!(state.reason.contains("[2.0]"));
    }

    #[test]
    fn failures_name_what_failed() {
        let checkpoints = vec![Checkpoint {
            region: "eu-west-1".into(),
            source: Source::Sts,
            checkpoint: None,
            lag_seconds: None,
            status: Some("error".into()),
            last_error: Some("AccessDenied".into()),
        }];
        let alerts = Alerts {
            pending: 0,
            sending: 0,
            failed: 0,
            recent_failed: vec![],
        };
        let found = failures(&[], &alerts, &checkpoints);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "eu-west-1-sts");
        assert_eq!(found[0].message, "AccessDenied");
    }
}
