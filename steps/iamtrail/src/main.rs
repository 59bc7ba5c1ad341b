//! `iamtrail`: the IAM Activity Tracker CLI.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use iamtrail::demo::{bundled_dataset, dataset_emulator, run_demo, DemoOptions};
use iamtrail::local::{find_repo_root, LocalOptions, LocalStack};

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
}

#[derive(Subcommand)]
enum LocalCommand {
    /// Run the whole job over a CloudTrail dataset and print what it found.
    Demo(DemoArgs),
    /// Start the local stack and keep it running until Ctrl-C.
    Serve(StackArgs),
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
        Command::Local(LocalCommand::Demo(args)) => {
            let input: serde_json::Value =
                serde_json::from_str(&args.input).context("--input is not valid JSON")?;
            run_demo(DemoOptions {
                stack: stack_options(&args.stack)?,
                runs: args.runs,
                input,
                show_events: args.show_events,
            })
            .await
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
