//! `iamtrail ingest`, the real binary against the local stack found by name (its CloudFormation
//! outputs `IngestStateMachineArn`, `TrailBucketName`, `AnalyticsBucketName`), with only the
//! standard AWS environment: bad requests refused before anything starts, a range of the local
//! organisation trail ingested and summarised, `status` showing each account and region's
//! checkpoint, a second run finding everything ingested, and
//! `--retry` of a run that left nothing to do refused before anything starts.

mod common;

use chrono::{Duration, Utc};
use common::{dataset_stack, execution_count, iamtrail_async};
use iamtrail::local::LocalStack;
use iamtrail_core::record::format_time;

/// The local S3 ingestion state machine's executions.
async fn ingest_executions(stack: &LocalStack) -> usize {
    let arn = iamtrail::local::ingest_state_machine_arn(&stack.options.stack_name);
    execution_count(stack, &arn).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn iamtrail_ingest_reads_the_trail_bucket_of_the_stack_it_finds() {
    let stack = dataset_stack("cli-ingest").await;
    let gw = stack.gateway.endpoint();
    let start = format_time(Utc::now() - Duration::days(3));
    let end = format_time(Utc::now());

    // Refused before anything starts.
    for (args, reason) in [
        (
            vec!["ingest", "--start", "yesterday", "--end", &end],
            "is not an RFC 3339 time",
        ),
        (
            vec!["ingest", "--start", &end, "--end", &start],
            "--start must be before --end",
        ),
        (vec!["ingest"], "give --start and --end (or --retry RUN)"),
        (
            vec![
                "ingest",
                "--start",
                &start,
                "--end",
                &end,
                "--accounts",
                "42",
            ],
            "is not a 12-digit account id",
        ),
    ] {
        let mut all = vec!["--stack", "cli-ingest"];
        all.extend(args.iter().copied());
        let run = iamtrail_async(&gw, &all)
            .await
            .expect_failure("a bad request");
        assert!(run.stderr.contains(reason), "{}", run.transcript());
    }
    assert_eq!(ingest_executions(&stack).await, 0, "nothing started");

    let run = iamtrail_async(
        &gw,
        &[
            "--stack",
            "cli-ingest",
            "ingest",
            "--start",
            &start,
            "--end",
            &end,
        ],
    )
    .await
    .expect_ok("an ingestion of the local trail");
    assert!(run.stdout.contains("SUCCEEDED"), "{}", run.transcript());
    assert!(
        run.stdout.contains("events stored: 878 "),
        "{}",
        run.transcript()
    );
    assert!(run.stdout.contains(" 0 left to do"), "{}", run.transcript());

    // status shows how far each account and region of the trail has been read.
    let status = iamtrail_async(
        &gw,
        &["--stack", "cli-ingest", "status", "--format", "json"],
    )
    .await
    .expect_ok("status")
    .json();
    let checkpoints = status["trail"]["checkpoints"]
        .as_array()
        .expect("trail checkpoints");
    let accounts: Vec<&str> = checkpoints
        .iter()
        .map(|c| c["account"].as_str().unwrap())
        .collect();
    assert_eq!(accounts, ["111122223333", "123837392027"], "{status}");
    assert!(checkpoints.iter().all(|c| c["region"] == "us-east-1"));
    let table = iamtrail_async(&gw, &["--stack", "cli-ingest", "status"])
        .await
        .expect_ok("status");
    assert!(
        table
            .stdout
            .contains("S3 ingestion (s3://cli-ingest-trail-123456789012): 2 account/region(s)"),
        "{}",
        table.transcript()
    );

    let again = iamtrail_async(
        &gw,
        &[
            "--stack",
            "cli-ingest",
            "ingest",
            "--start",
            &start,
            "--end",
            &end,
        ],
    )
    .await
    .expect_ok("the same range again");
    assert!(
        again.stdout.contains("events stored: 0 "),
        "{}",
        again.transcript()
    );
    assert!(
        again.stdout.contains(": 0 ingested, "),
        "{}",
        again.transcript()
    );

    let retry = iamtrail_async(
        &gw,
        &["--stack", "cli-ingest", "ingest", "--retry", "no-such-run"],
    )
    .await
    .expect_failure("a retry of a run that left nothing");
    assert!(
        retry
            .stderr
            .contains("run no-such-run left nothing to retry"),
        "{}",
        retry.transcript()
    );
    assert_eq!(
        ingest_executions(&stack).await,
        2,
        "the retry started nothing"
    );
}
