//! The local engine: DataFusion over the exported Parquet tree.
//!
//! The export writes `iam-events/year=YYYY/month=M/day=D[/region=R]/events.parquet`
//! (`docs/export.md`). [`LocalEngine::new`] registers that tree as the table `iam_events`, a
//! hive-partitioned listing table with the partition columns `year`, `month` and `day` (Int32),
//! exactly the columns of the Glue table that Athena queries. A tree split by region has one
//! more directory level; like Athena, which reads every object under a day's location, the
//! engine reads the region files of each day and has no `region` column (queries use
//! `aws_region`). The file schema is read from the files.
//!
//! Each query's partition predicate (`year * 10000 + month * 100 + day BETWEEN ? AND ?`) is
//! applied to the listed files before any is opened, so a window of one day opens one day's
//! files; [`QueryResult::local_scan`] reports what the scan read (`docs/export.md`, "Partition
//! pruning").

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::metrics::MetricValue;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::catalog::QueryFile;
use crate::params::{to_dollar_placeholders, Bindings, ParamValue};
use crate::{ColumnType, Error, LocalScan, QueryResult, Result, TABLE_NAME};

/// The partition columns of `iam_events`, on both engines (the Glue table's partition keys).
pub const PARTITION_COLUMNS: [&str; 3] = ["year", "month", "day"];

/// The export's prefix under the bucket.
pub const EXPORT_PREFIX: &str = "iam-events";

/// How timestamps are printed (the same as Athena's result text).
const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";

/// A DataFusion session with `iam_events` registered.
pub struct LocalEngine {
    ctx: SessionContext,
    table_dir: PathBuf,
    partitioned_by_region: bool,
    files: usize,
    bytes: u64,
}

impl std::fmt::Debug for LocalEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEngine")
            .field("table_dir", &self.table_dir)
            .field("partitioned_by_region", &self.partitioned_by_region)
            .field("files", &self.files)
            .finish()
    }
}

/// What [`scan_layout`] found under the table directory.
#[derive(Debug, Default, PartialEq, Eq)]
struct Layout {
    /// Files at `year=/month=/day=/*.parquet`.
    without_region: usize,
    /// Files at `year=/month=/day=/region=/*.parquet`.
    with_region: usize,
    /// The size of all of them, in bytes.
    bytes: u64,
}

fn scan_layout(dir: &Path) -> Result<Layout> {
    fn walk(dir: &Path, depth: usize, layout: &mut Layout) -> Result<()> {
        let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
            context: format!("cannot read {}", dir.display()),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                let expected = ["year=", "month=", "day=", "region="];
                if depth < expected.len() && name.starts_with(expected[depth]) {
                    walk(&path, depth + 1, layout)?;
                }
            } else if name.ends_with(".parquet") {
                let counted = match depth {
                    3 => &mut layout.without_region,
                    4 => &mut layout.with_region,
                    _ => continue,
                };
                *counted += 1;
                layout.bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
        Ok(())
    }
    let mut layout = Layout::default();
    walk(dir, 0, &mut layout)?;
    Ok(layout)
}

impl LocalEngine {
    /// Registers the Parquet tree at `dir`: either the bucket root that contains `iam-events/`
    /// or the `iam-events/` directory itself.
    pub async fn new(dir: impl AsRef<Path>) -> Result<LocalEngine> {
        let dir = dir.as_ref();
        let no_data = || {
            Error::NoData(format!(
                "no exported Parquet under {}; run an export first (expected \
                 {EXPORT_PREFIX}/year=YYYY/month=M/day=D[/region=R]/*.parquet)",
                dir.display()
            ))
        };
        if !dir.is_dir() {
            return Err(no_data());
        }
        let table_dir = if dir.join(EXPORT_PREFIX).is_dir() {
            dir.join(EXPORT_PREFIX)
        } else {
            dir.to_path_buf()
        };
        let table_dir = table_dir.canonicalize().map_err(|source| Error::Io {
            context: format!("cannot resolve {}", table_dir.display()),
            source,
        })?;
        let layout = scan_layout(&table_dir)?;
        let partitioned_by_region = match (layout.without_region, layout.with_region) {
            (0, 0) => return Err(no_data()),
            (_, 0) => false,
            (0, _) => true,
            (a, b) => {
                return Err(Error::NoData(format!(
                    "{} mixes two layouts: {a} file(s) at year=/month=/day=/ and {b} under a \
                     region=/ level (PARTITION_BY_REGION changed?); re-export or point --data at \
                     a tree with one layout",
                    table_dir.display()
                )))
            }
        };
        // year/month/day only, for both layouts: DataFusion matches the first three directory
        // levels with them and reads the files below (a region= level included).
        let partition_cols = PARTITION_COLUMNS
            .iter()
            .map(|c| (c.to_string(), DataType::Int32))
            .collect();
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(partition_cols);
        // Filters are evaluated inside the Parquet reader (late materialisation): the cheap,
        // selective columns (`event_type`, `event_name`, `user_type`, ...) are decoded first and
        // the wide ones (`request_parameters`, `user_agent`, ARNs) only for the rows that pass,
        // as DuckDB does. Without it every projected column is decoded for every row of the
        // window before the filter runs (queries/README.md, "Local query speed").
        let mut config = SessionConfig::new().with_information_schema(false);
        let parquet = &mut config.options_mut().execution.parquet;
        parquet.pushdown_filters = true;
        parquet.reorder_filters = true;
        let ctx = SessionContext::new_with_config(config);
        let url = format!("{}/", table_dir.display());
        ctx.register_listing_table(TABLE_NAME, &url, options, None, None)
            .await
            .map_err(|e| {
                Error::Local(format!(
                    "cannot register {} as {TABLE_NAME}: {e}",
                    table_dir.display()
                ))
            })?;
        Ok(LocalEngine {
            ctx,
            table_dir,
            partitioned_by_region,
            files: layout.without_region + layout.with_region,
            bytes: layout.bytes,
        })
    }

    /// The `iam-events/` directory registered as `iam_events`.
    pub fn table_dir(&self) -> &Path {
        &self.table_dir
    }

    /// Whether the tree has a `region=` level (the table has the same columns either way).
    pub fn partitioned_by_region(&self) -> bool {
        self.partitioned_by_region
    }

    /// How many Parquet files the table covers.
    pub fn file_count(&self) -> usize {
        self.files
    }

    /// The DataFusion session (for ad-hoc use).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs a catalog query with its bindings.
    pub async fn run(&self, query: &QueryFile, bindings: &Bindings) -> Result<QueryResult> {
        self.run_sql(&query.sql, bindings.positional())
            .await
            .map_err(|e| match e {
                Error::Local(m) => Error::Local(format!(
                    "query {} ({}) on the local engine: {m}",
                    query.name,
                    query.path.display()
                )),
                other => other,
            })
    }

    /// Runs SQL with positional `?` placeholders: they become `$1..$n` and `values` are bound
    /// to them (never spliced into the text).
    pub async fn run_sql(&self, sql: &str, values: &[ParamValue]) -> Result<QueryResult> {
        let started = Instant::now();
        let sql = to_dollar_placeholders(sql);
        let scalars: Vec<_> = values.iter().map(ParamValue::to_scalar).collect();
        let df = self
            .ctx
            .sql(&sql)
            .await
            .map_err(|e| Error::Local(e.to_string()))?
            .with_param_values(scalars)
            .map_err(|e| Error::Local(format!("binding parameters: {e}")))?;
        let fields: Vec<(String, ColumnType)> = df
            .schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), ColumnType::from_arrow(f.data_type())))
            .collect();
        let task = df.task_ctx();
        let plan = df
            .create_physical_plan()
            .await
            .map_err(|e| Error::Local(e.to_string()))?;
        let batches = datafusion::physical_plan::collect(plan.clone(), Arc::new(task))
            .await
            .map_err(|e| Error::Local(e.to_string()))?;
        let mut scan = LocalScan {
            files_in_tree: self.files,
            tree_bytes: self.bytes,
            ..LocalScan::default()
        };
        let mut opened = std::collections::BTreeMap::new();
        add_scan_metrics(plan.as_ref(), &mut scan, &mut opened);
        scan.files_opened = opened.len();
        scan.opened_bytes = opened.values().sum();
        let options = FormatOptions::new()
            .with_timestamp_format(Some(TIMESTAMP_FORMAT))
            .with_datetime_format(Some(TIMESTAMP_FORMAT));
        let mut rows = Vec::new();
        for batch in &batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::Local(format!("formatting results: {e}")))?;
            for row in 0..batch.num_rows() {
                rows.push(
                    batch
                        .columns()
                        .iter()
                        .zip(&formatters)
                        .map(|(col, f)| (!col.is_null(row)).then(|| f.value(row).to_string()))
                        .collect(),
                );
            }
        }
        let (columns, column_types) = fields.into_iter().unzip();
        Ok(QueryResult {
            columns,
            column_types,
            rows,
            bytes_scanned: None,
            cost_usd: None,
            engine_time: None,
            execution_id: None,
            local_scan: Some(scan),
            elapsed: started.elapsed(),
        })
    }
}

/// Adds what every Parquet scan of `plan` read to `scan` (its `bytes_scanned`,
/// `row_groups_pruned_statistics` and `output_rows` metrics) and to `opened` the files it was
/// given, those left after partition pruning, with their sizes (by path: DataFusion may split a
/// large file into byte ranges read in parallel).
fn add_scan_metrics(
    plan: &dyn ExecutionPlan,
    scan: &mut LocalScan,
    opened: &mut std::collections::BTreeMap<String, u64>,
) {
    if let Some(source) = plan.downcast_ref::<DataSourceExec>() {
        if let Some(config) = source.data_source().downcast_ref::<FileScanConfig>() {
            for file in config.file_groups.iter().flat_map(|g| g.iter()) {
                opened.insert(file.object_meta.location.to_string(), file.object_meta.size);
            }
        }
        if let Some(metrics) = plan.metrics() {
            let count = |name: &str| metrics.sum_by_name(name).map(|v| v.as_usize()).unwrap_or(0);
            scan.bytes_scanned += count("bytes_scanned") as u64;
            scan.rows_scanned += metrics.output_rows().unwrap_or(0) as u64;
            if let Some(MetricValue::PruningMetrics {
                pruning_metrics, ..
            }) = metrics.sum_by_name("row_groups_pruned_statistics")
            {
                scan.row_groups_pruned += pruning_metrics.pruned();
            }
        }
    }
    for child in plan.children() {
        add_scan_metrics(child.as_ref(), scan, opened);
    }
}
