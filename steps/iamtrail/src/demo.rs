//! The local demo: the whole job on the local stack over a CloudTrail dataset, printed as a
//! person would want to read it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::{AttributeValue, Select};
use chrono::TimeDelta;
use iamtrail_aws::metrics::FileSink;
use iamtrail_core::contract::RunSummary;
use iamtrail_core::metrics::names;
use iamtrail_local::{EmulatorOptions, TimeShift};
use serde_json::Value;

use crate::follow::{export_line, report, spinner, Outcome};
use crate::local::{sdk_error, LocalOptions, LocalStack};
use crate::render::events_table;

/// What the demo runs.
pub struct DemoOptions {
    pub stack: LocalOptions,
    /// Executions to run (a second one shows idempotency).
    pub runs: u32,
    /// Execution input (e.g. a backfill); `{}` runs the scheduled incremental job.
    pub input: Value,
    /// Events to show after the run.
    pub show_events: usize,
    /// Alert emails to print per run.
    pub show_alerts: usize,
    /// Replay the dataset through Realtime before the scheduled execution(s).
    pub realtime: bool,
    /// Ingest the local trail bucket (S3 mode) before the scheduled execution(s).
    pub s3: bool,
}

/// Emulator options for a recorded dataset: shift it so its newest event lands `hours_ago`
/// hours before now (inside CloudTrail's 90-day window), at `throttle_rps` requests/s.
pub fn dataset_emulator(hours_ago: Option<i64>, throttle_rps: Option<f64>) -> EmulatorOptions {
    EmulatorOptions {
        throttle_rps,
        time_shift: match hours_ago {
            Some(h) => TimeShift::LatestAt(TimeDelta::hours(h)),
            None => TimeShift::None,
        },
        ..Default::default()
    }
}

/// Counts the items of a table (Scan with `Select: COUNT`; fine for a local demo).
pub async fn count_items(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<u64> {
    let mut total = 0u64;
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let out = client
            .scan()
            .table_name(table)
            .select(Select::Count)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(sdk_error)?;
        total += out.count() as u64;
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return Ok(total),
        }
    }
}

/// The newest events of one day partition (Query on `event_date`, newest first).
pub async fn events_of_day(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    date: &str,
) -> Result<Vec<HashMap<String, AttributeValue>>> {
    let mut items = Vec::new();
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let out = client
            .query()
            .table_name(table)
            .key_condition_expression("event_date = :d")
            .expression_attribute_values(":d", AttributeValue::S(date.to_string()))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(sdk_error)?;
        items.extend(out.items().iter().cloned());
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    items.sort_by(|a, b| {
        let t = |i: &HashMap<String, AttributeValue>| {
            i.get("event_time")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        t(b).cmp(&t(a))
    });
    Ok(items)
}

/// Runs the demo and prints it.
pub async fn run_demo(mut options: DemoOptions) -> Result<()> {
    let dataset = options.stack.dataset.clone();
    // The EMF lines a deployed stack would write to CloudWatch Logs (docs/metrics.md).
    let metrics_path = std::env::temp_dir().join(format!(
        "iamtrail-demo-metrics-{}.jsonl",
        std::process::id()
    ));
    let sink = FileSink::create(&metrics_path)
        .with_context(|| format!("creating {}", metrics_path.display()))?;
    options.stack.metrics = Some(Arc::new(sink));
    let bar = spinner();
    bar.set_message("starting moto server and the gateway");
    let mut stack = LocalStack::start(options.stack).await?;
    let loaded = stack.emulator.load_report();
    bar.set_message("creating tables and registering the state machine");
    let machine = stack.deploy().await?;
    bar.finish_and_clear();
    println!(
        "Local stack: moto {} · gateway {}",
        stack.moto.endpoint(),
        stack.gateway.endpoint()
    );
    if let Some(dir) = &dataset {
        println!(
            "CloudTrail emulator: {} records from {} files in {}{}",
            loaded.records,
            loaded.files,
            dir.display(),
            match stack.emulator.shift() {
                Some(shift) => format!(
                    " (shifted by {} days into the last 90 days)",
                    shift.num_days()
                ),
                None => String::new(),
            }
        );
        for (file, reason) in loaded.skipped.iter().take(5) {
            println!("  skipped a record in {}: {reason}", file.display());
        }
    }
    if let Some(location) = &stack.settings().sigma_rules {
        // The load Collect uses (once per context), so a rule that cannot be used shows here
        // first; Collect then fails the same way, as it would on AWS (docs/sigma.md).
        match stack.context.sigma_rules().await {
            Ok(rules) => println!(
                "Sigma rules: {} from {location}, evaluated beside the {} built-in rules",
                rules.len(),
                iamtrail_core::rules::rules().len()
            ),
            Err(e) => println!(
                "Sigma rules: not loaded, so every Collect invocation fails until they are fixed:\n{}",
                e.message
            ),
        }
    }
    println!("State machine: {machine}\n");
    if options.realtime {
        realtime_replay(&stack, options.show_alerts).await?;
    }
    if options.s3 {
        s3_ingestion(&stack).await?;
    }

    let mut last: Option<RunSummary> = None;
    let mut last_export: Option<Value> = None;
    for run in 1..=options.runs.max(1) {
        let name = format!("demo-{}-{run}", chrono::Utc::now().format("%Y%m%dT%H%M%S"));
        let bar = spinner();
        bar.set_message(format!("execution {name}: starting"));
        let result = stack
            .run_execution(&name, &options.input, |line| {
                bar.set_message(format!("execution {name}: {line}"))
            })
            .await?;
        bar.finish_and_clear();
        if let Some(export) = result.output.as_ref().and_then(|o| o.get("export")) {
            last_export = Some(export.clone());
        }
        let summary = match report(&result)? {
            Outcome::Run(summary) => *summary,
            // An export-only or skipped run has no alerts to show.
            _ => continue,
        };
        let delivery = result
            .output
            .as_ref()
            .and_then(|o| o.get("alerts"))
            .cloned()
            .unwrap_or(Value::Null);
        let received = stack.received_alerts().await?;
        let from_sigma = received
            .iter()
            .filter(|a| {
                a.attributes
                    .iter()
                    .any(|(k, v)| k == "rule_id" && v.starts_with("sigma:"))
            })
            .count();
        println!(
            "Alerts: {} queued by Collect, {} sent by EvaluateAlerts, {} failed; {} received by the mailbox subscription{}.",
            summary.totals.alerts_queued,
            delivery.get("sent").and_then(Value::as_u64).unwrap_or(0),
            delivery.get("failed").and_then(Value::as_u64).unwrap_or(0),
            received.len(),
            if from_sigma > 0 {
                format!(" ({from_sigma} from Sigma rules)")
            } else {
                String::new()
            }
        );
        for (i, alert) in received.iter().enumerate().take(options.show_alerts) {
            println!("\n{}", crate::render::email(alert, i + 1, received.len()));
        }
        if received.len() > options.show_alerts {
            println!(
                "… and {} more alert(s).",
                received.len() - options.show_alerts
            );
        }
        for e in &summary.errors {
            println!(
                "  error: {} {:?}: {}",
                e.region,
                e.source,
                crate::render::sanitize(&e.error, 200)
            );
        }
        last = Some(summary);
    }

    let dynamodb = stack.dynamodb();
    let settings = stack.settings().clone();
    let stored = count_items(&dynamodb, &settings.events_table).await?;
    println!(
        "\nEvents table {} holds {stored} events.",
        settings.events_table
    );
    if options.show_events > 0 {
        let newest = last
            .iter()
            .flat_map(|s| s.targets.iter())
            .filter(|t| t.counts.stored > 0)
            .filter_map(|t| t.checkpoint)
            .max();
        let mut items = Vec::new();
        // The stored events' days: walk back from the newest checkpoint's day.
        if let Some(newest) = newest {
            for back in 0..7 {
                let day = (newest - chrono::Duration::days(back))
                    .format("%Y-%m-%d")
                    .to_string();
                items.extend(events_of_day(&dynamodb, &settings.events_table, &day).await?);
                if items.len() >= options.show_events {
                    break;
                }
            }
        }
        items.truncate(options.show_events);
        if !items.is_empty() {
            println!(
                "The {} newest stored events:\n{}",
                items.len(),
                events_table(&items)
            );
        }
    }
    if let Some(export) = last_export {
        println!(
            "\n{}",
            export_line(&export, settings.analytics_bucket.as_deref())
        );
        let dir = std::env::temp_dir().join(format!("iamtrail-demo-export-{}", std::process::id()));
        let files = download_export(&stack, &dir).await?;
        if files > 0 {
            println!(
                "Downloaded {files} Parquet file(s) to {}; querying them with the local engine:",
                dir.display()
            );
            print_queries(&dir, &["daily_summary", "role_assumptions", "active_users"]).await?;
            println!(
                "\nMore: iamtrail query list; iamtrail query run NAME --engine local --data {}",
                dir.display()
            );
        }
    }
    println!("\n{}", metrics_line(&metrics_path)?);
    stack.stop().await;
    Ok(())
}

/// Ingests the local trail bucket (docs/ingest.md): the records LookupEvents serves, in an
/// organisation trail's layout, and the second account's copy; prints the run and the events
/// stored per account.
async fn s3_ingestion(stack: &LocalStack) -> Result<()> {
    let times: Vec<chrono::DateTime<chrono::Utc>> = stack
        .emulator
        .records()
        .iter()
        .filter_map(|r| {
            let v: Value = serde_json::from_str(r).ok()?;
            iamtrail_core::record::parse_time(v.get("eventTime")?.as_str()?)
        })
        .collect();
    let (Some(first), Some(last)) = (times.iter().min(), times.iter().max()) else {
        println!("S3 mode: the local trail bucket is empty.");
        return Ok(());
    };
    let request = iamtrail_aws::steps::ingest::plan::IngestRequest {
        start: Some(*first),
        end: Some(*last + chrono::Duration::seconds(1)),
        ..Default::default()
    };
    let name = format!("demo-s3-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S"));
    let run = stack.run_ingestion(&name, &request, true).await?;
    print!("{}", crate::commands::ingest::report(&run));
    let dynamodb = stack.dynamodb();
    let table = &stack.settings().events_table;
    let mut per_account: std::collections::BTreeMap<String, u64> = Default::default();
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let out = dynamodb
            .scan()
            .table_name(table)
            .projection_expression("recipient_account_id")
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(sdk_error)?;
        for item in out.items() {
            let account = item
                .get("recipient_account_id")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_else(|| "?".into());
            *per_account.entry(account).or_default() += 1;
        }
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    let split: Vec<String> = per_account
        .iter()
        .map(|(a, n)| format!("{a}: {n}"))
        .collect();
    println!(
        "Events table {table} now holds, per account: {}\n\nNow the scheduled execution (LookupEvents, the dataset's own account): it stores the same events again, changes nothing and queues no alert twice; EvaluateAlerts sends what the S3 mode queued.\n",
        split.join(", ")
    );
    Ok(())
}

/// Replays the dataset through the Realtime function (docs/realtime.md) and prints what
/// arrived in the mailbox, and how fast.
async fn realtime_replay(stack: &LocalStack, show_alerts: usize) -> Result<()> {
    let bar = spinner();
    bar.set_message("replaying the dataset through Realtime");
    let report = crate::replay::replay_realtime(stack, |n, total| {
        bar.set_message(format!("Realtime: event {n} of {total}"))
    })
    .await?;
    bar.finish_and_clear();
    let received = stack.received_alerts().await?;
    println!(
        "Realtime (EventBridge replay): {} of the {} records reach an ENABLED rule (read-only calls do not); {} match the rule pattern and invoked Realtime: {} stored, {} alerts queued, {} sent; {} received by the mailbox subscription.",
        report.published,
        report.records,
        report.events.len(),
        report.stored(),
        report.queued(),
        report.sent(),
        received.len()
    );
    if let Some((median, max)) = crate::replay::median_max(&report.latencies_ms(&received)) {
        println!(
            "  from the event's arrival at the gateway to the message in the mailbox: median {median} ms, max {max} ms"
        );
    }
    for (event_id, error) in report.errors().iter().take(5) {
        println!(
            "  error: {event_id}: {}",
            crate::render::sanitize(error, 200)
        );
    }
    for (i, alert) in received.iter().enumerate().take(show_alerts) {
        println!("\n{}", crate::render::email(alert, i + 1, received.len()));
    }
    if received.len() > show_alerts {
        println!("… and {} more alert(s).", received.len() - show_alerts);
    }
    println!("\nNow the scheduled execution: it stores everything and sends only what Realtime did not.\n");
    Ok(())
}

/// One line on the metrics the run wrote: how many EMF lines, where, and the last run's
/// values (the document with `PartialRun`).
pub fn metrics_line(path: &std::path::Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let docs: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} holds a line that is not JSON", path.display()))?;
    let namespace = docs
        .first()
        .and_then(|d| d["_aws"]["CloudWatchMetrics"][0]["Namespace"].as_str())
        .unwrap_or("-")
        .to_string();
    let run = docs
        .iter()
        .rev()
        .find(|d| d.get(names::PARTIAL_RUN).is_some());
    let values = run
        .map(|d| {
            [
                names::PARTIAL_RUN,
                names::SOURCES_FAILED,
                names::RUN_EVENTS_STORED,
                names::MAX_COLLECTION_LAG_SECONDS,
                names::EXPORT_LAG_DAYS,
                names::DIRTY_DATES,
            ]
            .iter()
            .filter_map(|n| d.get(*n).map(|v| format!("{n} {v}")))
            .collect::<Vec<_>>()
            .join(", ")
        })
        .unwrap_or_else(|| "no run metrics".into());
    Ok(format!(
        "Metrics: {} EMF lines (namespace {namespace}) in {}; the run's: {values}.",
        docs.len(),
        path.display()
    ))
}

/// Downloads every exported object of the local analytics bucket into `dir` (keeping the
/// `iam-events/year=/month=/day=` layout), for the local query engine. Returns the file count.
pub async fn download_export(stack: &LocalStack, dir: &std::path::Path) -> Result<usize> {
    let bucket = stack
        .settings()
        .analytics_bucket
        .clone()
        .context("no analytics bucket")?;
    let s3 = &stack.context.s3;
    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("iam-events/")
        .send()
        .await
        .map_err(sdk_error)?;
    let mut count = 0;
    for object in listed.contents() {
        let Some(key) = object.key() else { continue };
        // Keys are ours, but never let one climb out of the target directory.
        anyhow::ensure!(
            !key.split('/').any(|p| p == ".." || p.is_empty()),
            "unexpected object key {key:?}"
        );
        let body = s3
            .get_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .map_err(sdk_error)?;
        let bytes = body
            .body
            .collect()
            .await
            .context("reading an exported object")?
            .into_bytes();
        let path = dir.join(key);
        std::fs::create_dir_all(path.parent().expect("a key has a parent"))?;
        std::fs::write(&path, &bytes)?;
        count += 1;
    }
    Ok(count)
}

/// Runs a few of the pre-built queries on the local engine over the exported Parquet and prints
/// them, as `iamtrail query run NAME --engine local --data DIR` would.
pub async fn print_queries(dir: &std::path::Path, names: &[&str]) -> Result<()> {
    let repo = crate::local::find_repo_root()?;
    let queries = iamtrail_query::catalog::load_dir(repo.join("queries"))?;
    let engine = iamtrail_query::local::LocalEngine::new(dir).await?;
    for name in names {
        let query = iamtrail_query::catalog::find(&queries, name)?;
        let bindings =
            iamtrail_query::params::Bindings::from_args(query, Some(7), &[], chrono::Utc::now())?;
        let result = engine.run(query, &bindings).await?;
        println!(
            "\nQuery {name}: {} ({} rows)",
            query.description,
            result.rows.len()
        );
        println!("{}", iamtrail_query::output::render_table(&result, 60));
    }
    Ok(())
}

/// The bundled dataset's CloudTrail directory.
pub fn bundled_dataset(repo_root: &std::path::Path) -> PathBuf {
    repo_root.join("datasets/invictus-aws-2023/CloudTrail")
}
