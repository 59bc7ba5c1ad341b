//! `iamtrail query list|run`: the analytics queries of `queries/`, on Athena or on the local
//! engine (DataFusion over an exported Parquet tree).

use std::cell::RefCell;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use chrono::Utc;
use clap::{Args, Subcommand, ValueEnum};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, Color, ContentArrangement, Table};
use iamtrail_query::output::{human_bytes, DEFAULT_MAX_CELL_CHARS};
use iamtrail_query::{
    catalog, render_csv, render_json, render_table, AthenaEngine, Bindings, LocalEngine,
    OutputFormat, QueryFile, QueryResult,
};

/// Default Athena workgroup (the stack's).
pub const DEFAULT_WORKGROUP: &str = "iamtrail";
/// Default Glue database (the stack's).
pub const DEFAULT_DATABASE: &str = "iamtrail_analytics";

#[derive(Subcommand)]
pub enum QueryCommand {
    /// List the queries: name, parameters, description.
    List(ListArgs),
    /// Run one query on Athena or on the local engine.
    Run(RunArgs),
}

#[derive(Args)]
pub struct ListArgs {
    /// Directory of query files (default: the queries built into this binary, the repository's
    /// queries/ when it was built).
    #[arg(long, value_name = "DIR")]
    queries: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
}

impl From<Format> for OutputFormat {
    fn from(f: Format) -> OutputFormat {
        match f {
            Format::Table => OutputFormat::Table,
            Format::Json => OutputFormat::Json,
            Format::Csv => OutputFormat::Csv,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Engine {
    Athena,
    Local,
}

#[derive(Args)]
pub struct RunArgs {
    /// The query's name (see `iamtrail query list`).
    name: String,
    /// A parameter, as NAME=VALUE (repeatable). Timestamps: 2024-05-01, "2024-05-01 12:00:00" (UTC) or RFC 3339.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// The window: `since` = now minus this many days [default: 7].
    #[arg(long, value_name = "N")]
    days: Option<u32>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Where to run [default: local when --data is given, else athena].
    #[arg(long, value_enum)]
    engine: Option<Engine>,
    /// The exported Parquet tree for the local engine: the bucket root (containing iam-events/) or iam-events/ itself.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Directory of query files (default: the queries built into this binary, the repository's
    /// queries/ when it was built).
    #[arg(long, value_name = "DIR")]
    queries: Option<PathBuf>,
    /// Athena workgroup.
    #[arg(long, env = "IAMTRAIL_ATHENA_WORKGROUP", default_value = DEFAULT_WORKGROUP)]
    workgroup: String,
    /// Glue database holding the iam_events table.
    #[arg(long, env = "IAMTRAIL_GLUE_DATABASE", default_value = DEFAULT_DATABASE)]
    database: String,
    /// AWS region of the workgroup (default: from the AWS configuration).
    #[arg(long)]
    region: Option<String>,
}

/// The queries of `--queries DIR`, or those built into the binary.
fn load(flag: Option<PathBuf>) -> Result<Vec<QueryFile>> {
    match flag {
        Some(dir) => Ok(catalog::load_dir(&dir)?),
        None => Ok(catalog::embedded()?),
    }
}

fn styled_table(headers: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        table.force_no_tty();
    }
    table.set_header(headers.iter().map(|h| Cell::new(h).fg(Color::Cyan)));
    table
}

/// Runs `iamtrail query ...`.
pub async fn run(command: QueryCommand) -> Result<()> {
    match command {
        QueryCommand::List(args) => {
            let queries = load(args.queries)?;
            let mut table = styled_table(&["name", "params", "description"]);
            for q in &queries {
                table.add_row(vec![
                    Cell::new(&q.name).fg(Color::Green),
                    Cell::new(q.params_summary()),
                    Cell::new(&q.description),
                ]);
            }
            println!("{table}");
            println!(
                "{} queries. Run one with: iamtrail query run NAME [--param k=v] [--days N] [--format table|json|csv]",
                queries.len()
            );
            Ok(())
        }
        QueryCommand::Run(args) => run_query(args).await,
    }
}

async fn run_query(args: RunArgs) -> Result<()> {
    let queries = load(args.queries.clone())?;
    let query = catalog::find(&queries, &args.name)?;
    let bindings = Bindings::from_args(query, args.days, &args.params, Utc::now())?;
    let engine = args.engine.unwrap_or(if args.data.is_some() {
        Engine::Local
    } else {
        Engine::Athena
    });
    let format = OutputFormat::from(args.format);
    let result = match engine {
        Engine::Local => {
            let Some(data) = &args.data else {
                bail!("--engine local needs --data DIR: the exported Parquet tree (the bucket root containing iam-events/, or iam-events/ itself)");
            };
            LocalEngine::new(data).await?.run(query, &bindings).await?
        }
        Engine::Athena => {
            if args.data.is_some() {
                bail!("--data is for the local engine; drop it or use --engine local");
            }
            run_on_athena(&args, query, &bindings).await?
        }
    };
    match format {
        OutputFormat::Table => {
            println!("{}", title(query, &bindings));
            let mut table = render_table(&result, DEFAULT_MAX_CELL_CHARS);
            if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
                table.force_no_tty();
            }
            println!("{table}");
            println!("{}", summary(&result, engine));
        }
        OutputFormat::Json => {
            println!("{}", render_json(&result));
            if std::io::stderr().is_terminal() {
                eprintln!("{}", summary(&result, engine));
            }
        }
        OutputFormat::Csv => {
            print!("{}", render_csv(&result));
            if std::io::stderr().is_terminal() {
                eprintln!("{}", summary(&result, engine));
            }
        }
    }
    Ok(())
}

fn title(query: &QueryFile, bindings: &Bindings) -> String {
    let values: Vec<String> = bindings
        .named()
        .iter()
        .map(|(name, value)| {
            format!(
                "{name}={}",
                iamtrail::render::sanitize(&value.display(), 60)
            )
        })
        .collect();
    if values.is_empty() {
        format!("{}: {}", query.name, query.description)
    } else {
        format!(
            "{}: {} ({})",
            query.name,
            query.description,
            values.join(", ")
        )
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn summary(result: &QueryResult, engine: Engine) -> String {
    let rows = match result.rows.len() {
        1 => "1 row".to_string(),
        n => format!("{n} rows"),
    };
    let mut parts = vec![format!("{rows} in {}", seconds(result.elapsed))];
    match engine {
        Engine::Local => {
            parts.push("local engine".into());
            if let Some(scan) = &result.local_scan {
                parts.push(format!(
                    "read {} of {} files ({} of {})",
                    scan.files_opened,
                    scan.files_in_tree,
                    human_bytes(scan.bytes_scanned),
                    human_bytes(scan.tree_bytes)
                ));
            }
        }
        Engine::Athena => {
            if let Some(t) = result.engine_time {
                parts.push(format!("engine {}", seconds(t)));
            }
            if let Some(b) = result.bytes_scanned {
                parts.push(format!("{} scanned", human_bytes(b)));
            }
            if let Some(c) = result.cost_usd {
                parts.push(format!("cost USD {c:.6} (USD 5/TB, 10 MB minimum)"));
            }
            if let Some(id) = &result.execution_id {
                parts.push(format!("execution {id}"));
            }
        }
    }
    parts.join(" · ")
}

async fn run_on_athena(
    args: &RunArgs,
    query: &QueryFile,
    bindings: &Bindings,
) -> Result<QueryResult> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = &args.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let sdk = loader.load().await;
    let engine = AthenaEngine::new(
        aws_sdk_athena::Client::new(&sdk),
        &args.workgroup,
        &args.database,
    );
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_style(
        indicatif::ProgressStyle::with_template("{spinner:.cyan} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    spinner.enable_steady_tick(Duration::from_millis(100));
    spinner.set_message(format!("Athena: submitting {}", query.name));
    let execution_id: RefCell<Option<String>> = RefCell::new(None);
    let outcome = {
        let progress = |p: iamtrail_query::AthenaProgress<'_>| {
            execution_id
                .borrow_mut()
                .get_or_insert_with(|| p.execution_id.to_string());
            spinner.set_message(format!(
                "Athena: {} {} ({:.1} s, workgroup {})",
                query.name,
                p.state,
                p.elapsed.as_secs_f64(),
                args.workgroup
            ));
        };
        tokio::select! {
            r = engine.run(query, bindings, progress) => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    };
    spinner.finish_and_clear();
    match outcome {
        Some(result) => Ok(result?),
        None => {
            let id = execution_id.borrow().clone();
            if let Some(id) = id {
                engine.stop(&id).await?;
                bail!("interrupted: stopped Athena query {id}");
            }
            bail!("interrupted before Athena accepted the query");
        }
    }
}
