//! `iamtrail local ingest-bench` (docs/ingest.md, "A million events"): a large synthetic trail
//! (the bundled dataset's records repeated as new events over many accounts and five-minute
//! objects, made and uploaded one object at a time) ingested by a real execution of the S3
//! ingestion on the local stack, with what it took: wall time, objects/s and events/s, the
//! process's peak memory while ingesting, the requests made, and the counts the cost on AWS is
//! projected from (written as JSON for `scripts/cost.py`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{Duration, DurationRound, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use iamtrail_aws::steps::ingest::plan::IngestRequest;
use iamtrail_core::record::{delivery_records, log_file_paths};
use iamtrail_core::synthetic_trail::{gzip, SyntheticTrail, OBJECT_MINUTES};
use serde_json::json;

use crate::local::{sdk_error, trail_bucket, LocalOptions, LocalStack};

/// What to generate and how to run it.
#[derive(Clone)]
pub struct IngestBenchOptions {
    pub stack: LocalOptions,
    pub events: usize,
    pub objects: usize,
    pub accounts: u32,
    pub batch_objects: usize,
    /// Where to write the measured counts (JSON), for `scripts/cost.py`.
    pub counts_json: Option<PathBuf>,
}

/// Runs the benchmark and prints what it measured.
pub async fn run_ingest_bench(options: IngestBenchOptions) -> Result<()> {
    let dataset = crate::demo::bundled_dataset(&options.stack.repo_root);
    let mut base = Vec::new();
    for path in log_file_paths(&dataset)? {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        base.extend(
            delivery_records(&bytes)?
                .iter()
                .map(|r| r.get().to_string()),
        );
    }
    let per_object = options.events.div_ceil(options.objects.max(1)).max(1);
    let mut stack_options = options.stack.clone();
    stack_options.dataset = None;
    stack_options.trail_copies = Vec::new();
    let mut stack = LocalStack::start(stack_options).await?;
    stack.deploy().await?;
    let bucket = trail_bucket(&stack.options.stack_name);
    let windows = options.objects.div_ceil(options.accounts.max(1) as usize) as i64;
    let start = (Utc::now() - Duration::days(2)).duration_trunc(Duration::hours(1))?;
    let end = start + Duration::minutes(windows * OBJECT_MINUTES);
    println!(
        "Generating {} objects of {per_object} records ({} events) over {} accounts, {} to {}, from the {} records of {}",
        options.objects,
        options.objects * per_object,
        options.accounts,
        start.to_rfc3339(),
        end.to_rfc3339(),
        base.len(),
        dataset.display()
    );
    let generated = Instant::now();
    let trail = SyntheticTrail::new(&base, options.accounts, options.objects, per_object, start);
    let s3 = &stack.context.s3;
    let uploaded: Vec<u64> = stream::iter(trail)
        .map(|object| {
            let bucket = bucket.clone();
            async move {
                let body = gzip(&object.body)?;
                let size = body.len() as u64;
                s3.put_object()
                    .bucket(&bucket)
                    .key(&object.key)
                    .body(body.into())
                    .send()
                    .await
                    .map_err(sdk_error)
                    .with_context(|| format!("uploading {}", object.key))?;
                anyhow::Ok(size)
            }
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    let compressed: u64 = uploaded.iter().sum();
    println!(
        "Uploaded {} objects ({:.1} MiB compressed) in {:.1}s",
        uploaded.len(),
        compressed as f64 / (1 << 20) as f64,
        generated.elapsed().as_secs_f64()
    );

    reset_peak_rss();
    stack.reset_request_counts();
    stack.gateway.usage().reset();
    let request = IngestRequest {
        start: Some(start),
        end: Some(end),
        batch_objects: Some(options.batch_objects),
        ..Default::default()
    };
    let began = Instant::now();
    let run = stack.run_ingestion("bench", &request, true).await?;
    let wall = began.elapsed().as_secs_f64();
    let peak = peak_rss_kib();
    print!("{}", crate::commands::ingest::report(&run));
    anyhow::ensure!(run.status == "SUCCEEDED", "the ingestion did not succeed");
    let summary = run.summary.context("the run wrote no summary")?;
    let usage = stack.gateway.usage().report();
    let count = |service: &str, op: &str| stack.requests(service, op);
    let c = &summary.counts;
    println!(
        "Wall time {wall:.1}s: {:.1} objects/s, {:.0} events/s read, {:.0} events/s stored; peak RSS of the local stack's process while ingesting {} (moto runs apart)",
        summary.objects as f64 / wall,
        c.records as f64 / wall,
        c.stored as f64 / wall,
        peak.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)).unwrap_or_else(|| "unknown".into())
    );
    println!(
        "IngestObjects: {} invocations, {:.1}s busy in all ({:.0} ms each on average); DynamoDB: {} BatchWriteItem, {} PutItem, {} UpdateItem, {} GetItem, {} Query; S3: {} GetObject, {} ListObjectsV2, {} PutObject",
        count("lambda", "Invoke").saturating_sub(2),
        c.busy_ms as f64 / 1000.0,
        c.busy_ms as f64 / summary.batches.max(1) as f64,
        count("dynamodb", "BatchWriteItem"),
        count("dynamodb", "PutItem"),
        count("dynamodb", "UpdateItem"),
        count("dynamodb", "GetItem"),
        count("dynamodb", "Query"),
        count("s3", "GetObject"),
        count("s3", "ListObjectsV2"),
        count("s3", "PutObject"),
    );
    let units = |table: &str| -> (f64, f64) {
        usage
            .iter()
            .filter(|((service, _, resource), _)| {
                service == "dynamodb" && resource.ends_with(table)
            })
            .fold((0.0, 0.0), |(w, r), (_, c)| {
                (w + c.write_units, r + c.read_units)
            })
    };
    let (stack_name, mut line) = (&stack.options.stack_name, Vec::new());
    for table in ["events", "control", "alerts"] {
        let (w, r) = units(&format!("{stack_name}-{table}"));
        line.push(format!("{table} {w:.0} WRU / {r:.0} RRU"));
    }
    println!("DynamoDB request units: {}", line.join(", "));
    if let Some(path) = &options.counts_json {
        let doc = json!({
            "what": "iamtrail local ingest-bench: one S3 ingestion run on the local stack",
            "events": c.records,
            "objects": summary.objects,
            "batches": summary.batches,
            "stored": c.stored,
            "write_units": c.write_units,
            "alerts_queued": c.alerts_queued,
            "busy_ms": c.busy_ms,
            "wall_seconds": wall,
            "peak_rss_kib": peak,
            "compressed_bytes": compressed,
            // What the gateway saw, by service, operation and resource (the stack's name
            // left out): requests, items, DynamoDB request units, bytes, Lambda durations.
            "usage": usage
                .iter()
                .map(|((service, op, resource), c)| {
                    let resource = resource.replace(&format!("{}-", stack.options.stack_name), "");
                    (
                        format!("{service} {op} {resource}"),
                        json!({
                            "requests": c.requests,
                            "items": c.items,
                            "write_units": c.write_units,
                            "read_units": c.read_units,
                            "bytes_in": c.bytes_in,
                            "bytes_out": c.bytes_out,
                            "duration_ms": c.duration_ms.round(),
                        }),
                    )
                })
                .collect::<serde_json::Map<_, _>>(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("Counts written to {}", path.display());
    }
    Ok(())
}

/// Resets this process's peak resident set (`VmHWM`) to its current size (Linux: writing 5 to
/// `/proc/self/clear_refs`); elsewhere the peak stays the process's whole life's.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// This process's peak resident set in KiB (`VmHWM`), where the system reports it.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
