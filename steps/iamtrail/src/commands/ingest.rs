//! `iamtrail ingest`: start an S3 ingestion (docs/ingest.md) over a time range of the trail
//! bucket, or a retry of what a run left undone, follow it (the Distributed Map's batches as
//! they finish) and print the run's summary.

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use iamtrail_aws::steps::ingest::plan::IngestRequest;
use iamtrail_aws::steps::ingest::summary::IngestSummary;
use iamtrail_core::config::looks_like_region;
use iamtrail_core::record::parse_time;
use iamtrail_core::trail::{is_account_id, summary_key};
use serde_json::Value;

use crate::follow::{spinner, start_execution};
use crate::local::sdk_error;
use crate::render::sanitize;

/// What the user asked for, before it is checked.
#[derive(Debug, Clone, Default)]
pub struct IngestArgs {
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    pub force: bool,
    pub retry: Option<String>,
    pub batch_objects: Option<usize>,
}

/// The execution input for a request, checked here with clear errors so that a bad request
/// starts nothing: RFC 3339 times with the start first, 12-digit accounts, region names; a
/// retry takes no range.
pub fn ingest_request(args: &IngestArgs) -> Result<IngestRequest> {
    let time = |name: &str, text: &Option<String>| -> Result<Option<DateTime<Utc>>> {
        text.as_deref()
            .map(|t| {
                parse_time(t).with_context(|| {
                    format!("--{name} {t:?} is not an RFC 3339 time such as 2024-01-31T00:00:00Z")
                })
            })
            .transpose()
    };
    let (start, end) = (time("start", &args.start)?, time("end", &args.end)?);
    match (&args.retry, start, end) {
        (Some(_), None, None) => {}
        (Some(_), _, _) => {
            bail!("--retry takes the previous run's range: leave out --start and --end")
        }
        (None, Some(s), Some(e)) if s < e => {}
        (None, Some(_), Some(_)) => bail!("--start must be before --end"),
        (None, _, _) => bail!("give --start and --end (or --retry RUN)"),
    }
    if let Some(bad) = args.accounts.iter().find(|a| !is_account_id(a)) {
        bail!(
            "--accounts: {:?} is not a 12-digit account id",
            sanitize(bad, 40)
        );
    }
    if let Some(bad) = args.regions.iter().find(|r| !looks_like_region(r)) {
        bail!(
            "--regions: {:?} is not a region name such as eu-west-1",
            sanitize(bad, 40)
        );
    }
    if args.batch_objects == Some(0) {
        bail!("--batch-objects must be at least 1");
    }
    Ok(IngestRequest {
        bucket: args.bucket.clone(),
        prefix: args.prefix.clone(),
        start,
        end,
        accounts: args.accounts.clone(),
        regions: args.regions.clone(),
        force: args.force,
        retry_of: args.retry.clone(),
        batch_objects: args.batch_objects,
        ..Default::default()
    })
}

/// Where a run is: the state machine, the analytics bucket its summary is written to.
pub struct IngestTarget<'a> {
    pub sfn: &'a aws_sdk_sfn::Client,
    pub s3: &'a aws_sdk_s3::Client,
    pub state_machine_arn: &'a str,
    pub analytics_bucket: &'a str,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct IngestRun {
    pub name: String,
    pub status: String,
    /// The run's error and cause when it did not succeed.
    pub error: Option<String>,
    /// The summary the run wrote (none when it failed before summarising).
    pub summary: Option<IngestSummary>,
    pub seconds: f64,
}

/// Starts a run named `name` and follows it to its end, showing the batches' progress.
pub async fn start_and_follow(
    target: &IngestTarget<'_>,
    name: &str,
    request: &IngestRequest,
    show_progress: bool,
) -> Result<IngestRun> {
    let input: Value = serde_json::to_value(request)?;
    let input = without_nulls(input);
    let arn = start_execution(target.sfn, target.state_machine_arn, name, &input).await?;
    if show_progress {
        println!("Started ingestion {name}\n  input {input}\n  {arn}");
    }
    let bar = show_progress.then(spinner);
    let started = std::time::Instant::now();
    let described = loop {
        let described = target
            .sfn
            .describe_execution()
            .execution_arn(&arn)
            .send()
            .await
            .map_err(sdk_error)
            .context("DescribeExecution")?;
        if let Some(bar) = &bar {
            bar.set_message(progress_line(target.sfn, &arn).await);
        }
        if *described.status() != aws_sdk_sfn::types::ExecutionStatus::Running {
            break described;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let error =
        (*described.status() != aws_sdk_sfn::types::ExecutionStatus::Succeeded).then(|| {
            format!(
                "{}: {}",
                described.error().unwrap_or("(no error)"),
                cause_message(described.cause().unwrap_or("(no cause)"))
            )
        });
    Ok(IngestRun {
        name: name.to_string(),
        status: described.status().as_str().to_string(),
        error,
        summary: read_summary(target, name).await?,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The Distributed Map's progress: its batches by status.
async fn progress_line(sfn: &aws_sdk_sfn::Client, execution_arn: &str) -> String {
    let Ok(runs) = sfn
        .list_map_runs()
        .execution_arn(execution_arn)
        .send()
        .await
    else {
        return "planning".into();
    };
    let Some(run) = runs.map_runs().first() else {
        return "planning".into();
    };
    match sfn
        .describe_map_run()
        .map_run_arn(run.map_run_arn())
        .send()
        .await
    {
        Ok(described) => match described.item_counts() {
            Some(c) => format!(
                "batches: {} succeeded, {} failed, {} running, {} of {}",
                c.succeeded(),
                c.failed(),
                c.running(),
                c.succeeded() + c.failed(),
                c.total()
            ),
            None => "ingesting".into(),
        },
        Err(_) => "ingesting".into(),
    }
}

async fn read_summary(target: &IngestTarget<'_>, run: &str) -> Result<Option<IngestSummary>> {
    let key = summary_key(run);
    match target
        .s3
        .get_object()
        .bucket(target.analytics_bucket)
        .key(&key)
        .send()
        .await
    {
        Ok(out) => {
            let bytes = out
                .body
                .collect()
                .await
                .context("reading the run's summary")?;
            Ok(Some(
                serde_json::from_slice(&bytes.into_bytes()).with_context(|| {
                    format!(
                        "s3://{}/{key} is not a run summary",
                        target.analytics_bucket
                    )
                })?,
            ))
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
        Err(e) => Err(sdk_error(e))
            .with_context(|| format!("reading s3://{}/{key}", target.analytics_bucket)),
    }
}

/// The run as the user reads it: status, time, the summary's figures, and what to do when
/// something was left undone.
pub fn report(run: &IngestRun) -> String {
    let mut out = format!(
        "Ingestion {} {} in {:.1}s\n",
        run.name, run.status, run.seconds
    );
    if let Some(s) = &run.summary {
        out.push_str(&format!(
            "  objects: {} in {} batches: {} ingested, {} already ingested, {} left to do\n",
            s.objects, s.batches, s.counts.ingested, s.counts.already_ingested, s.left_to_do
        ));
        out.push_str(&format!(
            "  records: {} read, {} not collected, {} filtered, {} outside the range, {} unreadable\n",
            s.counts.records, s.counts.not_collected, s.counts.filtered, s.counts.outside_range, s.counts.unreadable
        ));
        out.push_str(&format!(
            "  events stored: {} ({} full records kept in S3, {} rejected); alerts queued: {}\n",
            s.counts.stored, s.counts.raw_kept, s.counts.rejected, s.counts.alerts_queued
        ));
        for failed in s.failed.iter().take(10) {
            out.push_str(&format!(
                "  not ingested: {} ({})\n",
                sanitize(&failed.key, 300),
                sanitize(&failed.error, 300)
            ));
        }
        if s.left_to_do > 0 {
            out.push_str(&format!(
                "  retry what was left with: iamtrail ingest --retry {}\n",
                run.name
            ));
        }
    }
    if let Some(error) = &run.error {
        out.push_str(&format!("  {}\n", sanitize(error, 2000)));
    }
    out
}

/// A failed task's cause as the user reads it: the Lambda error's message (the cause is the
/// function's error document, `{"errorType": ..., "errorMessage": ...}`), else the cause.
fn cause_message(cause: &str) -> String {
    serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|v| v.get("errorMessage")?.as_str().map(String::from))
        .unwrap_or_else(|| cause.to_string())
}

fn without_nulls(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.retain(|_, v| !v.is_null() && v != &Value::Bool(false) && v != &Value::Array(vec![]));
    }
    value
}

/// `iamtrail ingest` on a deployed stack: the stack's S3 ingestion state machine and buckets
/// from its outputs, the request (checked by [`ingest_request`]) started and followed, its
/// summary printed.
/// Fails when the run did not finish everything.
pub async fn run(
    deployed: &crate::deployed::Deployed,
    mut request: IngestRequest,
    follow: bool,
) -> Result<()> {
    use crate::stack::keys;
    let state_machine = deployed.outputs.output(keys::INGEST_STATE_MACHINE).map_err(|_| {
        anyhow::anyhow!(
            "stack {:?} has no S3 ingestion: deploy it with the TrailBucket parameter set (docs/ingest.md)",
            deployed.outputs.stack
        )
    })?;
    if request.bucket.is_none() && request.retry_of.is_none() {
        request.bucket = deployed
            .outputs
            .output(keys::TRAIL_BUCKET)
            .ok()
            .map(String::from);
    }
    let analytics = deployed.outputs.output(keys::ANALYTICS_BUCKET)?;
    let s3 = aws_sdk_s3::Client::new(&deployed.sdk);
    let target = IngestTarget {
        sfn: &deployed.sfn,
        s3: &s3,
        state_machine_arn: state_machine,
        analytics_bucket: analytics,
    };
    if let Some(previous) = &request.retry_of {
        // A retry of a run that left nothing starts nothing.
        let key = iamtrail_core::trail::retry_key(previous);
        let found = s3.head_object().bucket(analytics).key(&key).send().await;
        match found {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => bail!(
                "run {previous} left nothing to retry (no s3://{analytics}/{key}): it finished everything, or it is not a run of this stack"
            ),
            Err(e) => {
                return Err(sdk_error(e)).with_context(|| format!("reading s3://{analytics}/{key}"))
            }
        }
    }
    let name = crate::deployed::execution_name("ingest", Utc::now());
    if !follow {
        let input = without_nulls(serde_json::to_value(&request)?);
        let arn = start_execution(&deployed.sfn, state_machine, &name, &input).await?;
        println!("Started ingestion {name}\n  input {input}\n  {arn}");
        return Ok(());
    }
    let run = start_and_follow(&target, &name, &request, true).await?;
    print!("{}", report(&run));
    anyhow::ensure!(
        run.status == "SUCCEEDED",
        "ingestion {} ended {}",
        run.name,
        run.status
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(start: &str, end: &str) -> IngestArgs {
        IngestArgs {
            start: Some(start.into()),
            end: Some(end.into()),
            ..Default::default()
        }
    }

    #[test]
    fn requests_are_checked_before_anything_starts() {
        let ok = ingest_request(&args("2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z")).unwrap();
        assert_eq!(ok.start.unwrap().to_rfc3339(), "2024-01-01T00:00:00+00:00");
        let err = |a: IngestArgs| ingest_request(&a).unwrap_err().to_string();
        assert!(err(args("yesterday", "2024-02-01T00:00:00Z"))
            .contains("--start \"yesterday\" is not an RFC 3339 time"));
        assert!(err(args("2024-02-01T00:00:00Z", "2024-01-01T00:00:00Z"))
            .contains("--start must be before --end"));
        assert!(err(IngestArgs::default()).contains("give --start and --end"));
        assert!(err(IngestArgs {
            accounts: vec!["12345".into()],
            ..args("2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z")
        })
        .contains("not a 12-digit account id"));
        assert!(err(IngestArgs {
            regions: vec!["mars-1".into()],
            ..args("2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z")
        })
        .contains("not a region name"));
        assert!(err(IngestArgs {
            retry: Some("run".into()),
            ..args("2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z")
        })
        .contains("--retry takes the previous run's range"));
        let retry = ingest_request(&IngestArgs {
            retry: Some("run".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(retry.retry_of.as_deref(), Some("run"));
        let input = without_nulls(serde_json::to_value(&retry).unwrap());
        assert_eq!(input, serde_json::json!({"retry_of": "run"}));
    }
}
