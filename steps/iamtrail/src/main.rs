//! `iamtrail`: the IAM Activity Tracker CLI.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use iamtrail::demo::{bundled_dataset, dataset_emulator, run_demo, DemoOptions};
use iamtrail::local::{find_repo_root, LocalOptions, LocalStack};

mod query_cmd;

#[derive(Parser)]
#[command(
    name = "iamtrail",
    version,
    about = "IAM Activity Tracker: identity activity from every region, on AWS or on a local stack"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the tracker on a local stack (moto server + gateway + CloudTrail emulator), no AWS account needed.
    #[command(subcommand)]
    Local(LocalCommand),
    /// Publish a clearly marked test alert to a deployed stack's alerts topic.
    TestAlert(TestAlertArgs),
    /// Analytics queries (queries/*.sql) on Athena or on an exported Parquet tree.
    #[command(subcommand)]
    Query(query_cmd::QueryCommand),
}

#[derive(Subcommand)]
enum LocalCommand {
    /// Run the whole job over a CloudTrail dataset and print what it found.
    Demo(DemoArgs),
    /// Start the local stack and keep it running until Ctrl-C.
    Serve(StackArgs),
    /// Publish a test alert to the local topic and print it as the mailbox received it.
    TestAlert(StackArgs),
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
    /// Stack name (tables are NAME-events, NAME-control, NAME-alerts).
    #[arg(long, default_value = "iamtrail")]
    stack: String,
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
}

#[derive(Args)]
struct TestAlertArgs {
    /// The alerts topic (the stack's AlertsTopicArn output).
    #[arg(long, env = "ALERTS_TOPIC_ARN")]
    topic_arn: String,
    /// The topic's region (default: from the AWS configuration).
    #[arg(long)]
    region: Option<String>,
}

fn stack_options(args: &StackArgs) -> Result<LocalOptions> {
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
    options.stack_name = args.stack.clone();
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
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IAMTRAIL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Query(command) => query_cmd::run(command).await,
        Command::Local(LocalCommand::Demo(args)) => {
            let input: serde_json::Value =
                serde_json::from_str(&args.input).context("--input is not valid JSON")?;
            run_demo(DemoOptions {
                stack: stack_options(&args.stack)?,
                runs: args.runs,
                input,
                show_events: args.show_events,
                show_alerts: args.show_alerts,
            })
            .await
        }
        Command::Local(LocalCommand::TestAlert(args)) => {
            let mut stack = LocalStack::start(stack_options(&args)?).await?;
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
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
            // A topic lives in one region: the one its ARN names, unless --region says otherwise.
            let arn_region = args
                .topic_arn
                .split(':')
                .nth(3)
                .filter(|r| !r.is_empty())
                .map(String::from);
            if let Some(region) = args.region.or(arn_region) {
                loader = loader.region(aws_config::Region::new(region));
            }
            let sdk = loader.load().await;
            let message_id =
                publish_test_alert(&aws_sdk_sns::Client::new(&sdk), &args.topic_arn).await?;
            println!(
                "Published test alert {message_id} to {}; check the subscribed mailbox.",
                args.topic_arn
            );
            Ok(())
        }
        Command::Local(LocalCommand::Serve(args)) => {
            let mut stack = LocalStack::start(stack_options(&args)?).await?;
            let machine = stack.deploy().await?;
            println!("moto server:    {}", stack.moto.endpoint());
            println!("gateway:        {} (Lambda Invoke, CloudTrail LookupEvents, everything else proxied to moto)", stack.gateway.endpoint());
            println!("state machine:  {machine}");
            println!("\nTry: AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing aws --region us-east-1 --endpoint-url {} stepfunctions start-execution --state-machine-arn {machine} --name run-1 --input '{{}}'", stack.gateway.endpoint());
            println!("Press Ctrl-C to stop.");
            tokio::signal::ctrl_c().await?;
            stack.stop().await;
            Ok(())
        }
    }
}
