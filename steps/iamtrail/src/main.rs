//! `iamtrail`: the IAM Activity Tracker CLI.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use iamtrail::commands;
use iamtrail::demo::{bundled_dataset, dataset_emulator, run_demo, DemoOptions};
use iamtrail::deployed::{sdk_config, Deployed, Target};
use iamtrail::local::{find_repo_root, LocalOptions, LocalStack};

mod query_cmd;

#[derive(Parser)]
#[command(
    name = "iamtrail",
    version,
    about = "IAM Activity Tracker: identity activity from every region, on AWS or on a local stack"
)]
struct Cli {
    /// The stack: a deployed stack's CloudFormation name, or the local stack's name (its tables
    /// are NAME-events, NAME-control, NAME-alerts).
    #[arg(
        long,
        global = true,
        env = "IAMTRAIL_STACK",
        default_value = "iamtrail"
    )]
    stack: String,
    /// The deployed stack's region [default: the AWS default chain: AWS_REGION, the profile].
    /// `query run` takes its own --region.
    #[arg(long, global = true)]
    region: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A deployed stack's state: last runs, checkpoints and their lag, alerts, export, failures.
    Status(StatusArgs),
    /// Start a scheduled-style run (input {}) now and follow it to the end.
    Run(FollowArgs),
    /// Re-read a time range (validated here first), then follow the execution.
    Backfill(BackfillArgs),
    /// Export chosen dates to Parquet again, then follow the execution.
    Export(ExportArgs),
    /// The recent executions: kind, start, duration, status, summary.
    Executions(ExecutionsArgs),
    /// Redrive a failed, timed-out or aborted execution (within 14 days), then follow it.
    Redrive(RedriveArgs),
    /// Ingest CloudTrail log files from the trail bucket (S3) for a time range: every account
    /// of an organisation trail, any history the bucket holds (docs/ingest.md).
    Ingest(IngestCliArgs),
    /// The alert rules, built-in and Sigma: list them, or test them on CloudTrail log files.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Run the tracker on a local stack (moto server + gateway + CloudTrail emulator), no AWS account needed.
    #[command(subcommand)]
    Local(LocalCommand),
    /// Publish a clearly marked test alert to a deployed stack's alerts topic.
    TestAlert(TestAlertArgs),
    /// Analytics queries (queries/*.sql) on Athena or on an exported Parquet tree.
    #[command(subcommand)]
    Query(query_cmd::QueryCommand),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Args)]
struct StatusArgs {
    /// Output format (json: stable field names, for scripts).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// How many of the last runs to show.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=100))]
    runs: u16,
}

#[derive(Args)]
struct FollowArgs {
    /// Start the execution and return without following it.
    #[arg(long)]
    no_follow: bool,
}

#[derive(Args)]
struct BackfillArgs {
    /// Range start, RFC 3339 (e.g. 2026-11-01T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    start: String,
    /// Range end, RFC 3339, after the start.
    #[arg(long, value_name = "TIME")]
    end: String,
    /// Only these regions (comma-separated; must be enabled in the account).
    #[arg(long, value_delimiter = ',', value_name = "REGION,...")]
    regions: Vec<String>,
    /// Only these sources: iam, sts, signin, sso (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "SOURCE,...")]
    sources: Vec<String>,
    #[command(flatten)]
    follow: FollowArgs,
}

#[derive(Args)]
struct ExportArgs {
    /// The dates to export, YYYY-MM-DD (space- or comma-separated).
    #[arg(long, required = true, num_args = 1.., value_delimiter = ',', value_name = "DATE")]
    dates: Vec<String>,
    /// Replace a date's file even when the new one has fewer rows.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    follow: FollowArgs,
}

#[derive(Args)]
struct ExecutionsArgs {
    /// Only executions with this status.
    #[arg(long, value_parser = ["FAILED", "RUNNING", "SUCCEEDED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE"], ignore_case = true)]
    status: Option<String>,
    /// How many executions, newest first.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
    limit: u16,
    /// Output format (json: stable field names, for scripts).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Args)]
struct IngestCliArgs {
    /// The trail bucket; default: the stack's TrailBucketName output.
    #[arg(long, value_name = "BUCKET")]
    bucket: Option<String>,
    /// The trail's key prefix (the folder holding AWSLogs/), if it has one.
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,
    /// Range start, RFC 3339 (e.g. 2025-01-01T00:00:00Z): events from then on.
    #[arg(long, value_name = "TIME")]
    start: Option<String>,
    /// Range end, RFC 3339: events before it.
    #[arg(long, value_name = "TIME")]
    end: Option<String>,
    /// Only these accounts (comma-separated 12-digit ids).
    #[arg(long, value_delimiter = ',', value_name = "ACCOUNT,...")]
    accounts: Vec<String>,
    /// Only these regions (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "REGION,...")]
    regions: Vec<String>,
    /// Read log files again even when an earlier run ingested them.
    #[arg(long)]
    force: bool,
    /// Run again what a previous ingestion (its name) left undone, instead of a range.
    #[arg(long, value_name = "RUN", conflicts_with_all = ["start", "end", "accounts", "regions", "bucket", "prefix"])]
    retry: Option<String>,
    /// Most log files per batch (one child execution); default 100.
    #[arg(long, value_name = "N")]
    batch_objects: Option<usize>,
    #[command(flatten)]
    follow: FollowArgs,
}

#[derive(Args)]
struct RedriveArgs {
    /// The execution's name or ARN.
    execution: String,
    #[command(flatten)]
    follow: FollowArgs,
}

#[derive(Subcommand)]
enum RulesCommand {
    /// List the rules: id, severity, title, source (built-in or the Sigma file), ATT&CK, what
    /// each detects; with --sigma, your Sigma rules too (a rule that cannot be used is an error
    /// naming its file and the reason).
    List {
        #[command(flatten)]
        sigma: SigmaArgs,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Run every rule, built-in and Sigma, over a directory of CloudTrail log files (.json or
    /// .json.gz, searched recursively) and print what matched, in event time order.
    Test {
        /// The CloudTrail log files (S3 delivery format, {"Records": [...]}).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[command(flatten)]
        sigma: SigmaArgs,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Args)]
struct SigmaArgs {
    /// Your Sigma rules (docs/sigma.md): a directory of *.yml / *.yaml files, or
    /// s3://bucket/prefix/ (read with your AWS credentials).
    #[arg(long, env = "SIGMA_RULES", value_name = "DIR")]
    sigma: Option<String>,
}

#[derive(Subcommand)]
enum LocalCommand {
    /// Run the whole job over a CloudTrail dataset and print what it found.
    Demo(DemoArgs),
    /// Start the local stack and keep it running until Ctrl-C.
    Serve(StackArgs),
    /// Publish a test alert to the local topic and print it as the mailbox received it.
    TestAlert(StackArgs),
    /// Ingest a large synthetic trail from the local trail bucket (S3 mode) and report the
    /// wall time, throughput, peak memory and requests (docs/ingest.md, "A million events").
    IngestBench(IngestBenchArgs),
}

#[derive(Args)]
struct IngestBenchArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Events in the synthetic trail.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Log objects they are spread over (five minutes of one account each).
    #[arg(long, default_value_t = 2_400)]
    objects: usize,
    /// Accounts of the organisation trail.
    #[arg(long, default_value_t = 20)]
    accounts: u32,
    /// Log objects per batch (one child execution).
    #[arg(long, default_value_t = 100)]
    batch_objects: usize,
    /// Write the measured counts as JSON (scripts/cost.py reads them).
    #[arg(long, value_name = "FILE")]
    counts_json: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct StackArgs {
    /// Directory of CloudTrail log files (S3 delivery format, .json or .json.gz, searched recursively).
    /// Defaults to the bundled invictus-aws-2023 dataset.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Serve records at their recorded times instead of shifting them into the last 90 days.
    #[arg(long)]
    no_shift: bool,
    /// With the shift, how many hours before now the newest record lands.
    #[arg(long, default_value_t = 24, value_name = "HOURS")]
    latest_hours_ago: i64,
    /// LookupEvents requests per second per region before ThrottlingException (0 = never throttle; AWS allows 2).
    #[arg(long, default_value_t = 2.0)]
    throttle_rps: f64,
    /// Map MaxConcurrency.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=40))]
    max_concurrency: u32,
    /// Setting for the steps, as NAME=VALUE (e.g. FILTERED_ROLES=scanner*); repeatable.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    settings: Vec<String>,
    /// Append moto's log to this file.
    #[arg(long, value_name = "FILE")]
    moto_log: Option<PathBuf>,
}

#[derive(Args)]
struct DemoArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// How many executions to run (the second shows that a re-run changes nothing).
    #[arg(long, default_value_t = 1)]
    runs: u32,
    /// Execution input as JSON, e.g. '{"start":"2024-01-01T00:00:00Z","end":"2024-01-02T00:00:00Z"}' for a backfill.
    #[arg(long, default_value = "{}")]
    input: String,
    /// How many stored events to print.
    #[arg(long, default_value_t = 12)]
    show_events: usize,
    /// How many alert emails to print per run.
    #[arg(long, default_value_t = 3)]
    show_alerts: usize,
    /// First replay the dataset through the near-real-time path (the Realtime function, as
    /// EventBridge would invoke it), then run the scheduled execution(s) (docs/realtime.md).
    #[arg(long)]
    realtime: bool,
    /// First ingest the local trail bucket (the dataset in an organisation trail's layout, and a
    /// second account made from it) with the S3 mode, then run the scheduled execution(s)
    /// (docs/ingest.md).
    #[arg(long)]
    s3: bool,
}

#[derive(Args)]
struct TestAlertArgs {
    /// The alerts topic; default: the stack's AlertsTopicArn output (--stack, --region).
    /// (--region: the topic's region, default the one its ARN names.)
    #[arg(long, env = "ALERTS_TOPIC_ARN")]
    topic_arn: Option<String>,
}

fn stack_options(args: &StackArgs, stack: &str) -> Result<LocalOptions> {
    let repo = find_repo_root()?;
    let mut options = LocalOptions::new(&repo);
    let data = args.data.clone().unwrap_or_else(|| bundled_dataset(&repo));
    if !data.is_dir() {
        anyhow::bail!(
            "{} is not a directory of CloudTrail log files",
            data.display()
        );
    }
    options.dataset = Some(data);
    options.emulator = dataset_emulator(
        (!args.no_shift).then_some(args.latest_hours_ago),
        (args.throttle_rps > 0.0).then_some(args.throttle_rps),
    );
    options.stack_name = stack.to_string();
    options.map_max_concurrency = args.max_concurrency;
    options.moto_log = args.moto_log.clone();
    let mut settings = HashMap::new();
    for pair in &args.settings {
        let (k, v) = pair
            .split_once('=')
            .with_context(|| format!("--set {pair:?}: expected NAME=VALUE"))?;
        settings.insert(k.trim().to_string(), v.to_string());
    }
    options.settings = settings;
    Ok(options)
}

/// Publishes the test alert with the same attributes real alerts carry.
async fn publish_test_alert(sns: &aws_sdk_sns::Client, topic_arn: &str) -> Result<String> {
    use iamtrail_aws::ports::{Notification, Notifier};
    let (subject, body) = iamtrail_core::alert_text::test_alert();
    let notification = Notification {
        subject,
        body,
        attributes: vec![
            ("severity".into(), "TEST".into()),
            ("rule_id".into(), "test-alert".into()),
            ("event_name".into(), "TestAlert".into()),
        ],
    };
    iamtrail_aws::sns::SnsNotifier::new(sns.clone(), topic_arn)
        .publish(&notification)
        .await
        .map_err(|e| anyhow::anyhow!("publishing the test alert: {e}"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The message and its causes on one line; never a backtrace (RUST_BACKTRACE is for
            // panics, not for a refused request).
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IAMTRAIL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let target = Target {
        stack: cli.stack.clone(),
        region: cli.region.clone(),
    };
    match cli.command {
        Command::Status(args) => {
            let deployed = Deployed::connect(&target).await?;
            commands::status::run(&deployed, args.runs.into(), args.format == Format::Json).await
        }
        Command::Run(args) => {
            let deployed = Deployed::connect(&target).await?;
            let input = commands::start::scheduled_input();
            commands::start::start_and_follow(&deployed, "run", &input, !args.no_follow).await
        }
        Command::Backfill(args) => {
            // Validate before touching AWS: a bad range starts nothing.
            let (input, warnings) = commands::start::backfill_input(
                &args.start,
                &args.end,
                &args.regions,
                &args.sources,
                chrono::Utc::now(),
            )?;
            let deployed = Deployed::connect(&target).await?;
            commands::start::check_regions_enabled(&deployed, &args.regions).await?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            commands::start::start_and_follow(&deployed, "backfill", &input, !args.follow.no_follow)
                .await
        }
        Command::Export(args) => {
            let today = chrono::Utc::now().date_naive();
            let input = commands::start::export_input(&args.dates, args.force, today)?;
            let deployed = Deployed::connect(&target).await?;
            commands::start::start_and_follow(&deployed, "export", &input, !args.follow.no_follow)
                .await
        }
        Command::Executions(args) => {
            let deployed = Deployed::connect(&target).await?;
            let status = args.status.map(|s| {
                aws_sdk_sfn::types::ExecutionStatus::from(s.to_ascii_uppercase().as_str())
            });
            commands::executions::run(
                &deployed,
                status,
                args.limit.into(),
                args.format == Format::Json,
            )
            .await
        }
        Command::Ingest(args) => {
            let args_ingest = commands::ingest::IngestArgs {
                bucket: args.bucket,
                prefix: args.prefix,
                start: args.start,
                end: args.end,
                accounts: args.accounts,
                regions: args.regions,
                force: args.force,
                retry: args.retry,
                batch_objects: args.batch_objects,
            };
            // Checked before touching AWS: a bad request starts nothing.
            let request = commands::ingest::ingest_request(&args_ingest)?;
            let deployed = Deployed::connect(&target).await?;
            commands::ingest::run(&deployed, request, !args.follow.no_follow).await
        }
        Command::Redrive(args) => {
            let deployed = Deployed::connect(&target).await?;
            commands::redrive::run(&deployed, &args.execution, !args.follow.no_follow).await
        }
        Command::Rules(RulesCommand::List { sigma, format }) => {
            let sigma = commands::rules::load_sigma(sigma.sigma.as_deref()).await?;
            commands::rules::list(sigma.as_ref(), format == Format::Json)
        }
        Command::Rules(RulesCommand::Test { dir, sigma, format }) => {
            let sigma = commands::rules::load_sigma(sigma.sigma.as_deref()).await?;
            commands::rules::test(&dir, sigma.as_ref(), format == Format::Json)
        }
        Command::Query(command) => query_cmd::run(command).await,
        Command::Local(LocalCommand::Demo(args)) => {
            let input: serde_json::Value =
                serde_json::from_str(&args.input).context("--input is not valid JSON")?;
            run_demo(DemoOptions {
                stack: stack_options(&args.stack, &cli.stack)?,
                runs: args.runs,
                input,
                show_events: args.show_events,
                show_alerts: args.show_alerts,
                realtime: args.realtime,
                s3: args.s3,
            })
            .await
        }
        Command::Local(LocalCommand::TestAlert(args)) => {
            let mut stack = LocalStack::start(stack_options(&args, &cli.stack)?).await?;
            stack.deploy().await?;
            let message_id = publish_test_alert(
                &stack.context.sns,
                &stack
                    .settings()
                    .alerts_topic_arn
                    .clone()
                    .unwrap_or_default(),
            )
            .await?;
            println!(
                "Published test alert {message_id} to {}",
                stack.settings().alerts_topic_arn.as_deref().unwrap_or("")
            );
            let received = stack.received_alerts().await?;
            anyhow::ensure!(
                !received.is_empty(),
                "the mailbox subscription received nothing"
            );
            for (i, alert) in received.iter().enumerate() {
                println!("{}", iamtrail::render::email(alert, i + 1, received.len()));
            }
            stack.stop().await;
            Ok(())
        }
        Command::TestAlert(args) => {
            let (sns, topic_arn) = match args.topic_arn {
                Some(topic_arn) => {
                    // A topic lives in one region: the one its ARN names, unless --region says
                    // otherwise.
                    let arn_region = topic_arn.split(':').nth(3).filter(|r| !r.is_empty());
                    let sdk = sdk_config(cli.region.as_deref().or(arn_region)).await;
                    (aws_sdk_sns::Client::new(&sdk), topic_arn)
                }
                None => {
                    let deployed = Deployed::connect(&target).await?;
                    let topic_arn = deployed.outputs.output("AlertsTopicArn")?.to_string();
                    (aws_sdk_sns::Client::new(&deployed.sdk), topic_arn)
                }
            };
            let message_id = publish_test_alert(&sns, &topic_arn).await?;
            println!(
                "Published test alert {message_id} to {topic_arn}; check the subscribed mailbox."
            );
            Ok(())
        }
        Command::Local(LocalCommand::IngestBench(args)) => {
            anyhow::ensure!(
                args.events > 0 && args.objects > 0 && args.accounts > 0 && args.batch_objects > 0,
                "--events, --objects, --accounts and --batch-objects must be at least 1"
            );
            iamtrail::ingest_bench::run_ingest_bench(iamtrail::ingest_bench::IngestBenchOptions {
                stack: stack_options(&args.stack, &cli.stack)?,
                events: args.events,
                objects: args.objects,
                accounts: args.accounts,
                batch_objects: args.batch_objects,
                counts_json: args.counts_json,
            })
            .await
        }
        Command::Local(LocalCommand::Serve(args)) => {
            let mut stack = LocalStack::start(stack_options(&args, &cli.stack)?).await?;
            let machine = stack.deploy().await?;
            println!("moto server:    {}", stack.moto.endpoint());
            println!("gateway:        {} (Lambda Invoke, CloudTrail LookupEvents, everything else proxied to moto)", stack.gateway.endpoint());
            println!("state machine:  {machine}");
            println!("\nTry: AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing aws --region us-east-1 --endpoint-url {} stepfunctions start-execution --state-machine-arn {machine} --name run-1 --input '{{}}'", stack.gateway.endpoint());
            println!("Or drive it as a deployed stack with this CLI: AWS_ENDPOINT_URL={} AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing iamtrail --stack {} status", stack.gateway.endpoint(), cli.stack);
            println!("Press Ctrl-C to stop.");
            shutdown_signal().await?;
            stack.stop().await;
            Ok(())
        }
    }
}

/// Waits for Ctrl-C, or for SIGTERM (what `kill`, `timeout` and service managers send), so that
/// `local serve` stops its moto server and gateway either way instead of leaving them behind.
async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
