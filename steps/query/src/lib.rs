//! iamtrail's analytics queries.
//!
//! - [`catalog`]: the `queries/*.sql` files, each a header (`-- name:`, `-- description:`,
//!   `-- params:`) and one `SELECT` over `iam_events` with positional `?` parameters.
//! - [`params`]: binding `--days N` and `--param k=v` to a query's parameters, the `?` scanner,
//!   and the two ways values reach an engine (DataFusion `ScalarValue`s, Athena
//!   `ExecutionParameters` literals). User input is always bound, never spliced into SQL.
//! - [`local`]: the local engine, DataFusion over the exported Parquet tree (hive partitions
//!   `year`/`month`/`day`[/`region`]).
//! - [`athena`]: running a query on Athena (start, poll with growing intervals, paged results,
//!   bytes scanned and cost).
//! - [`output`]: a [`QueryResult`] as a terminal table, JSON or CSV.
//!
//! The schema both engines query is `docs/parquet-schema.md`.

use std::path::PathBuf;
use std::time::Duration;

pub mod athena;
pub mod catalog;
pub mod local;
pub mod output;
pub mod params;

pub use athena::{athena_cost_usd, AthenaEngine, AthenaProgress, PollSchedule};
pub use catalog::{find, load_dir, QueryFile};
pub use local::{LocalEngine, PARTITION_COLUMNS};
pub use output::{render_csv, render_json, render_table, OutputFormat};
pub use params::{Bindings, Param, ParamKind, ParamValue};

/// The table every query reads.
pub const TABLE_NAME: &str = "iam_events";

/// An error of this crate. Messages are meant to be shown to the person running the CLI as-is.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A query file is missing its header or has an ill-formed one.
    #[error("{}: {message}", file.display())]
    Catalog {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// No query by that name (the message carries a suggestion when there is a close one).
    #[error("{0}")]
    NotFound(String),
    /// Parameters that do not fit the query (unknown, missing, unparsable).
    #[error("{0}")]
    Params(String),
    /// No exported Parquet where the local engine was pointed.
    #[error("{0}")]
    NoData(String),
    /// The local engine (DataFusion) could not plan or run a query.
    #[error("{0}")]
    Local(String),
    /// Athena refused, failed or cancelled a query.
    #[error("{0}")]
    Athena(String),
    /// A file system error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The kind of a result column, from the Arrow type (local) or the Athena column type. Output
/// uses it for alignment (table) and for JSON value types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// Text (varchar, char, string, Utf8).
    Text,
    /// Whole numbers (tinyint .. bigint, Int*/UInt*).
    Integer,
    /// Other numbers (double, real, float, decimal).
    Float,
    /// Booleans.
    Boolean,
    /// Timestamps and dates.
    Timestamp,
    /// Anything else (arrays, maps, rows, ...): shown as text.
    Other,
}

impl ColumnType {
    /// The kind of an Athena (Trino) column type such as `varchar`, `bigint`, `decimal(10,2)`,
    /// `timestamp(3)`.
    pub fn from_athena(type_name: &str) -> ColumnType {
        let base = type_name
            .split(['(', ' '])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match base.as_str() {
            "varchar" | "char" | "string" | "json" | "uuid" | "ipaddress" => ColumnType::Text,
            "tinyint" | "smallint" | "integer" | "int" | "bigint" => ColumnType::Integer,
            "double" | "real" | "float" | "decimal" => ColumnType::Float,
            "boolean" => ColumnType::Boolean,
            "timestamp" | "date" => ColumnType::Timestamp,
            _ => ColumnType::Other,
        }
    }

    /// The kind of an Arrow type.
    pub fn from_arrow(data_type: &datafusion::arrow::datatypes::DataType) -> ColumnType {
        use datafusion::arrow::datatypes::DataType as D;
        match data_type {
            D::Utf8 | D::LargeUtf8 | D::Utf8View => ColumnType::Text,
            D::Int8 | D::Int16 | D::Int32 | D::Int64 => ColumnType::Integer,
            D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => ColumnType::Integer,
            D::Float16 | D::Float32 | D::Float64 => ColumnType::Float,
            D::Decimal32(..) | D::Decimal64(..) | D::Decimal128(..) | D::Decimal256(..) => {
                ColumnType::Float
            }
            D::Boolean => ColumnType::Boolean,
            D::Timestamp(..) | D::Date32 | D::Date64 => ColumnType::Timestamp,
            D::Dictionary(_, value) => ColumnType::from_arrow(value),
            _ => ColumnType::Other,
        }
    }

    /// Whether values are numbers (right-aligned in tables, numbers in JSON).
    pub fn is_numeric(self) -> bool {
        matches!(self, ColumnType::Integer | ColumnType::Float)
    }
}

/// What the local engine read for one query: the Parquet files its scan opened (those left after
/// partition pruning) out of the tree's, and DataFusion's `DataSourceExec` metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalScan {
    /// Parquet files in the registered tree.
    pub files_in_tree: usize,
    /// Their total size in bytes.
    pub tree_bytes: u64,
    /// Files the scan opened: those whose partition (year, month, day) passed the query's
    /// partition predicate.
    pub files_opened: usize,
    /// Their total size in bytes.
    pub opened_bytes: u64,
    /// Bytes read from those files (footers, then the column chunks the query needs):
    /// DataFusion's `bytes_scanned`.
    pub bytes_scanned: u64,
    /// Row groups skipped by their min/max statistics (`row_groups_pruned_statistics`).
    pub row_groups_pruned: usize,
    /// Rows the scan produced (its `output_rows`).
    pub rows_scanned: u64,
}

/// The rows of a query, every cell as text (`None` for SQL NULL), plus what the engine reported.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Column kinds, one per column.
    pub column_types: Vec<ColumnType>,
    /// Rows; each has one cell per column. Timestamps are `YYYY-MM-DD HH:MM:SS.mmm` on both
    /// engines.
    pub rows: Vec<Vec<Option<String>>>,
    /// Bytes the engine scanned (Athena's `DataScannedInBytes`; `None` locally).
    pub bytes_scanned: Option<u64>,
    /// What the scan cost (see [`athena_cost_usd`]; `None` locally).
    pub cost_usd: Option<f64>,
    /// Athena's `EngineExecutionTimeInMillis` (`None` locally).
    pub engine_time: Option<Duration>,
    /// Athena's query execution id (`None` locally).
    pub execution_id: Option<String>,
    /// What the local engine read, from DataFusion's plan metrics (`None` on Athena).
    pub local_scan: Option<LocalScan>,
    /// Wall time from submission to the last row.
    pub elapsed: Duration,
}

impl QueryResult {
    /// An empty result with these columns (all text).
    pub fn empty(columns: Vec<String>) -> QueryResult {
        let column_types = vec![ColumnType::Text; columns.len()];
        QueryResult {
            columns,
            column_types,
            rows: Vec::new(),
            bytes_scanned: None,
            cost_usd: None,
            engine_time: None,
            execution_id: None,
            local_scan: None,
            elapsed: Duration::ZERO,
        }
    }

    /// The cells of column `name` (panics on an unknown column: for tests and callers that
    /// know their query).
    pub fn column(&self, name: &str) -> Vec<Option<&str>> {
        let i = self
            .columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name:?} in {:?}", self.columns));
        self.rows.iter().map(|r| r[i].as_deref()).collect()
    }
}
