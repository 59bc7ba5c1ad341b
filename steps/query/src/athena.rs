//! Running a catalog query on Athena.
//!
//! `StartQueryExecution` with the SQL text as written (positional `?`), the values in
//! `ExecutionParameters` (one SQL literal each, see [`ParamValue::to_athena_literal`]), the
//! database in `QueryExecutionContext` and the workgroup (whose own result location and
//! bytes-scanned limit apply). Then `GetQueryExecution` is polled with growing intervals
//! ([`PollSchedule`], 0.5 s growing ×1.5 up to 5 s) until a final state, and the rows are read
//! with `GetQueryResults`, following `NextToken`. For a `SELECT`, Athena's first row of the
//! first page repeats the column names: it is dropped when it equals the names in
//! `ResultSetMetadata`.
//!
//! Cost: see [`athena_cost_usd`].

use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_athena::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_athena::types::{QueryExecutionContext, QueryExecutionState, ResultConfiguration};

use crate::catalog::QueryFile;
use crate::params::{Bindings, ParamValue};
use crate::{ColumnType, Error, QueryResult, Result};

/// Athena's price per TB scanned, USD.
pub const USD_PER_TB: f64 = 5.0;
/// The "TB" of the price: 2^40 bytes. (AWS writes "per TB"; using the binary terabyte gives
/// the lower of the two readings, by 9 %.)
pub const TB: u64 = 1 << 40;
/// The "MB" of the rounding and of the minimum: 2^20 bytes.
pub const MB: u64 = 1 << 20;
/// The minimum billed per query: 10 MB.
pub const MIN_BILLED_BYTES: u64 = 10 * MB;

/// What Athena charges for a query that scanned `bytes`: bytes rounded up to a whole MB
/// (2^20), at least 10 MB, times USD 5 per TB (2^40 bytes). A query that scanned nothing still
/// costs the 10 MB minimum (USD 0.0000477).
pub fn athena_cost_usd(bytes: u64) -> f64 {
    let billed = bytes.div_ceil(MB).saturating_mul(MB).max(MIN_BILLED_BYTES);
    billed as f64 / TB as f64 * USD_PER_TB
}

/// How often `GetQueryExecution` is polled: `initial`, then each wait `factor` times the last,
/// capped at `max`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PollSchedule {
    /// The first wait.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
    /// Growth per poll.
    pub factor: f64,
}

impl Default for PollSchedule {
    /// 0.5 s, 0.75 s, 1.125 s, ... up to 5 s.
    fn default() -> Self {
        PollSchedule {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(5),
            factor: 1.5,
        }
    }
}

impl PollSchedule {
    /// The waits, forever.
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        let (max, factor) = (self.max, self.factor.max(1.0));
        std::iter::successors(Some(self.initial.min(max)), move |d| {
            Some(d.mul_f64(factor).min(max))
        })
    }
}

/// What the progress callback sees on each poll.
#[derive(Clone, Copy, Debug)]
pub struct AthenaProgress<'a> {
    /// The query execution id.
    pub execution_id: &'a str,
    /// QUEUED, RUNNING, SUCCEEDED, FAILED or CANCELLED.
    pub state: &'a str,
    /// Since submission.
    pub elapsed: Duration,
}

/// Statistics of a finished execution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecutionStats {
    /// `DataScannedInBytes`.
    pub bytes_scanned: Option<u64>,
    /// `EngineExecutionTimeInMillis`.
    pub engine_time: Option<Duration>,
}

/// One page of `GetQueryResults`, reduced to what [`collect_pages`] needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResultPage {
    /// `ResultSetMetadata.ColumnInfo`: (Name, Type).
    pub columns: Vec<(String, String)>,
    /// The rows' `VarCharValue`s (`None` for NULL).
    pub rows: Vec<Vec<Option<String>>>,
    /// `NextToken`.
    pub next_token: Option<String>,
}

/// The columns, their kinds and the rows of a whole result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CollectedRows {
    /// Column names (from the first page's metadata).
    pub columns: Vec<String>,
    /// Column kinds.
    pub column_types: Vec<ColumnType>,
    /// Data rows (header row removed).
    pub rows: Vec<Vec<Option<String>>>,
    /// How many pages were read.
    pub pages: usize,
}

/// Reads every page: calls `fetch(None)`, then `fetch(Some(token))` while pages carry a
/// `NextToken`. The first row of the first page is dropped when it equals the column names
/// (Athena's header row of a `SELECT`). A token repeated back to back is an error rather than
/// a loop.
pub async fn collect_pages<F, Fut>(mut fetch: F) -> Result<CollectedRows>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<ResultPage>>,
{
    let mut out = CollectedRows::default();
    let mut token: Option<String> = None;
    loop {
        let page = fetch(token.clone()).await?;
        out.pages += 1;
        let mut rows = page.rows.into_iter().peekable();
        if out.pages == 1 {
            out.columns = page.columns.iter().map(|(n, _)| n.clone()).collect();
            out.column_types = page
                .columns
                .iter()
                .map(|(_, t)| ColumnType::from_athena(t))
                .collect();
            let is_header = rows.peek().is_some_and(|first| {
                first.len() == out.columns.len()
                    && first
                        .iter()
                        .zip(&out.columns)
                        .all(|(cell, name)| cell.as_deref() == Some(name.as_str()))
            });
            if is_header {
                rows.next();
            }
        }
        out.rows.extend(rows);
        match page.next_token.filter(|t| !t.is_empty()) {
            Some(next) if Some(&next) == token.as_ref() => {
                return Err(Error::Athena(format!(
                    "GetQueryResults returned the same NextToken twice ({next}); stopping"
                )))
            }
            Some(next) => token = Some(next),
            None => return Ok(out),
        }
    }
}

/// Runs queries on Athena in one workgroup and database.
#[derive(Clone, Debug)]
pub struct AthenaEngine {
    client: aws_sdk_athena::Client,
    workgroup: String,
    database: String,
    output_location: Option<String>,
    poll: PollSchedule,
    page_size: i32,
}

/// An SDK error as one line: `Code: message` for a service error (what Athena said), the
/// whole source chain otherwise (connection refused, no credentials, timeouts).
fn sdk_error<E, R>(what: &str, e: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = match e.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("error"),
            service.message().unwrap_or("(no message)")
        ),
        None => DisplayErrorContext(&e).to_string(),
    };
    Error::Athena(format!("{what}: {detail}"))
}

impl AthenaEngine {
    /// An engine for `workgroup` and the Glue `database` (the table is `iam_events`).
    pub fn new(
        client: aws_sdk_athena::Client,
        workgroup: impl Into<String>,
        database: impl Into<String>,
    ) -> AthenaEngine {
        AthenaEngine {
            client,
            workgroup: workgroup.into(),
            database: database.into(),
            output_location: None,
            poll: PollSchedule::default(),
            page_size: 1000,
        }
    }

    /// Sends `ResultConfiguration.OutputLocation` (normally the workgroup's own location
    /// applies and this is not needed).
    pub fn with_output_location(mut self, s3_url: impl Into<String>) -> AthenaEngine {
        self.output_location = Some(s3_url.into());
        self
    }

    /// Replaces the polling schedule.
    pub fn with_poll_schedule(mut self, poll: PollSchedule) -> AthenaEngine {
        self.poll = poll;
        self
    }

    /// Rows per `GetQueryResults` page (1..=1000, Athena's maximum is 1000).
    pub fn with_page_size(mut self, rows: i32) -> AthenaEngine {
        self.page_size = rows.clamp(1, 1000);
        self
    }

    /// The workgroup.
    pub fn workgroup(&self) -> &str {
        &self.workgroup
    }

    /// The database.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Runs a catalog query with its bindings; `progress` is called on each poll.
    pub async fn run(
        &self,
        query: &QueryFile,
        bindings: &Bindings,
        progress: impl FnMut(AthenaProgress<'_>),
    ) -> Result<QueryResult> {
        self.run_sql(&query.sql, bindings.positional(), progress)
            .await
            .map_err(|e| match e {
                Error::Athena(m) => Error::Athena(format!("query {}: {m}", query.name)),
                other => other,
            })
    }

    /// Runs SQL with positional `?` placeholders bound to `values`.
    pub async fn run_sql(
        &self,
        sql: &str,
        values: &[ParamValue],
        mut progress: impl FnMut(AthenaProgress<'_>),
    ) -> Result<QueryResult> {
        let started = Instant::now();
        let parameters = values.iter().map(ParamValue::to_athena_literal).collect();
        let id = self.start(sql, parameters).await?;
        let stats = self.wait(&id, started, &mut progress).await?;
        let collected = self.fetch_results(&id).await?;
        Ok(QueryResult {
            columns: collected.columns,
            column_types: collected.column_types,
            rows: collected.rows,
            bytes_scanned: stats.bytes_scanned,
            cost_usd: Some(athena_cost_usd(stats.bytes_scanned.unwrap_or(0))),
            engine_time: stats.engine_time,
            execution_id: Some(id),
            local_scan: None,
            elapsed: started.elapsed(),
        })
    }

    /// `StartQueryExecution`; returns the execution id. `parameters` are SQL literals, one per
    /// `?` (none sent when empty: Athena rejects an empty list).
    pub async fn start(&self, sql: &str, parameters: Vec<String>) -> Result<String> {
        let mut request = self
            .client
            .start_query_execution()
            .query_string(sql)
            .query_execution_context(
                QueryExecutionContext::builder()
                    .database(&self.database)
                    .build(),
            )
            .work_group(&self.workgroup);
        if !parameters.is_empty() {
            request = request.set_execution_parameters(Some(parameters));
        }
        if let Some(location) = &self.output_location {
            request = request.result_configuration(
                ResultConfiguration::builder()
                    .output_location(location)
                    .build(),
            );
        }
        let output = request.send().await.map_err(|e| {
            sdk_error(
                &format!(
                    "StartQueryExecution (workgroup {}, database {})",
                    self.workgroup, self.database
                ),
                e,
            )
        })?;
        output
            .query_execution_id()
            .map(String::from)
            .ok_or_else(|| Error::Athena("StartQueryExecution returned no QueryExecutionId".into()))
    }

    /// Polls `GetQueryExecution` until SUCCEEDED (returns the statistics) or FAILED/CANCELLED
    /// (an error carrying `StateChangeReason`). `progress` sees every polled state.
    pub async fn wait(
        &self,
        id: &str,
        started: Instant,
        progress: &mut dyn FnMut(AthenaProgress<'_>),
    ) -> Result<ExecutionStats> {
        let mut delays = self.poll.delays();
        loop {
            let output = self
                .client
                .get_query_execution()
                .query_execution_id(id)
                .send()
                .await
                .map_err(|e| sdk_error(&format!("GetQueryExecution {id}"), e))?;
            let execution = output.query_execution();
            let status = execution.and_then(|x| x.status());
            let state = status.and_then(|s| s.state()).cloned();
            let state_text = state.as_ref().map(|s| s.as_str()).unwrap_or("UNKNOWN");
            progress(AthenaProgress {
                execution_id: id,
                state: state_text,
                elapsed: started.elapsed(),
            });
            match state {
                Some(QueryExecutionState::Succeeded) => {
                    let stats = execution.and_then(|x| x.statistics());
                    return Ok(ExecutionStats {
                        bytes_scanned: stats
                            .and_then(|s| s.data_scanned_in_bytes())
                            .map(|b| b.max(0) as u64),
                        engine_time: stats
                            .and_then(|s| s.engine_execution_time_in_millis())
                            .map(|ms| Duration::from_millis(ms.max(0) as u64)),
                    });
                }
                Some(QueryExecutionState::Failed) | Some(QueryExecutionState::Cancelled) => {
                    let reason = status
                        .and_then(|s| s.state_change_reason())
                        .filter(|r| !r.is_empty())
                        .or_else(|| {
                            status
                                .and_then(|s| s.athena_error())
                                .and_then(|e| e.error_message())
                        })
                        .unwrap_or("no reason given");
                    return Err(Error::Athena(format!(
                        "Athena query {id} {state_text}: {reason}"
                    )));
                }
                _ => {}
            }
            let delay = delays.next().unwrap_or(self.poll.max);
            tokio::time::sleep(delay).await;
        }
    }

    /// Every row of a finished execution (all `GetQueryResults` pages).
    pub async fn fetch_results(&self, id: &str) -> Result<CollectedRows> {
        collect_pages(|token| async move {
            let output = self
                .client
                .get_query_results()
                .query_execution_id(id)
                .max_results(self.page_size)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| sdk_error(&format!("GetQueryResults {id}"), e))?;
            let set = output.result_set();
            Ok(ResultPage {
                columns: set
                    .and_then(|s| s.result_set_metadata())
                    .map(|m| {
                        m.column_info()
                            .iter()
                            .map(|c| (c.name().to_string(), c.r#type().to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
                rows: set
                    .map(|s| {
                        s.rows()
                            .iter()
                            .map(|r| {
                                r.data()
                                    .iter()
                                    .map(|d| d.var_char_value().map(String::from))
                                    .collect()
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                next_token: output.next_token().map(String::from),
            })
        })
        .await
    }

    /// `StopQueryExecution` (for Ctrl-C).
    pub async fn stop(&self, id: &str) -> Result<()> {
        self.client
            .stop_query_execution()
            .query_execution_id(id)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("StopQueryExecution {id}"), e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_delays_grow_to_five_seconds() {
        let d: Vec<u64> = PollSchedule::default()
            .delays()
            .take(9)
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(d, vec![500, 750, 1125, 1687, 2531, 3796, 5000, 5000, 5000]);
    }
}
