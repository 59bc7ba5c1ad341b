//! Where the steps' metrics go: CloudWatch Embedded Metric Format lines written through a
//! [`MetricsSink`]. A Lambda function writes them to stdout, where CloudWatch Logs extracts
//! the metrics (no API call); the local stack writes them to a file; tests keep them in memory
//! ([`MemoryMetrics`], feature `memory`). The documents themselves are built in
//! `iamtrail_core::metrics`. See docs/metrics.md.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use iamtrail_core::metrics::{stack_namespace, MetricDoc, Namespace, NAMESPACE_PREFIX};

use crate::StepError;

/// The environment variable that names the namespace (`IamTrail/<stack name>`, set by the
/// template for every function).
pub const NAMESPACE_ENV: &str = "METRICS_NAMESPACE";

/// A sink that could not take a line.
#[derive(Debug, thiserror::Error)]
#[error("could not write a metrics line to {target}: {source}")]
pub struct SinkError {
    pub target: String,
    #[source]
    pub source: std::io::Error,
}

/// Where EMF lines go, one JSON document per line.
pub trait MetricsSink: Send + Sync {
    fn write_line(&self, line: &str) -> Result<(), SinkError>;
}

/// Standard output: in Lambda, CloudWatch Logs reads it and extracts the metrics.
pub struct StdoutSink;

impl MetricsSink for StdoutSink {
    fn write_line(&self, line: &str) -> Result<(), SinkError> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|_| out.flush())
            .map_err(|source| SinkError {
                target: "stdout".into(),
                source,
            })
    }
}

/// Nowhere (a context built without a sink: the CLI, most tests).
pub struct DiscardSink;

impl MetricsSink for DiscardSink {
    fn write_line(&self, _line: &str) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A file the lines are appended to (the local stack: `iamtrail local demo` shows them).
pub struct FileSink {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl FileSink {
    /// Creates (or truncates) the file.
    pub fn create(path: impl Into<PathBuf>) -> std::io::Result<Self> {
        let path = path.into();
        let file = std::fs::File::create(&path)?;
        Ok(FileSink {
            path,
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl MetricsSink for FileSink {
    fn write_line(&self, line: &str) -> Result<(), SinkError> {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        // One write per line, so that concurrent steps never interleave within a line.
        file.write_all(format!("{line}\n").as_bytes())
            .map_err(|source| SinkError {
                target: self.path.display().to_string(),
                source,
            })
    }
}

/// The lines, kept in memory for tests.
#[cfg(feature = "memory")]
#[derive(Default)]
pub struct MemoryMetrics {
    lines: Mutex<Vec<String>>,
}

#[cfg(feature = "memory")]
impl MemoryMetrics {
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every line parsed as JSON.
    pub fn documents(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .map(|l| serde_json::from_str(l).expect("a metrics line is JSON"))
            .collect()
    }
}

#[cfg(feature = "memory")]
impl MetricsSink for MemoryMetrics {
    fn write_line(&self, line: &str) -> Result<(), SinkError> {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.to_string());
        Ok(())
    }
}

/// The steps' metrics writer: a namespace and a sink.
#[derive(Clone)]
pub struct Metrics {
    namespace: Namespace,
    sink: Arc<dyn MetricsSink>,
}

impl Metrics {
    pub fn new(namespace: Namespace, sink: Arc<dyn MetricsSink>) -> Self {
        Metrics { namespace, sink }
    }

    /// A stack's metrics (`IamTrail/<stack>`) into `sink`.
    pub fn for_stack(stack: &str, sink: Arc<dyn MetricsSink>) -> Result<Self, StepError> {
        let namespace = stack_namespace(stack).map_err(StepError::config)?;
        Ok(Metrics::new(namespace, sink))
    }

    /// Metrics that go nowhere.
    pub fn discard() -> Self {
        Metrics::new(
            Namespace::new(NAMESPACE_PREFIX).expect("the prefix is a namespace"),
            Arc::new(DiscardSink),
        )
    }

    /// A Lambda function's metrics: stdout, under `METRICS_NAMESPACE`. Without it (a function
    /// deployed by hand) the namespace is `IamTrail`, with a warning; a blank or over-long one
    /// is a `ConfigError`.
    pub fn stdout_from_env() -> Result<Self, StepError> {
        let name = match std::env::var(NAMESPACE_ENV) {
            Ok(name) => name,
            Err(_) => {
                tracing::warn!(
                    "{NAMESPACE_ENV} is not set: metrics go to the namespace {NAMESPACE_PREFIX}"
                );
                NAMESPACE_PREFIX.to_string()
            }
        };
        let namespace =
            Namespace::new(name).map_err(|e| StepError::config(format!("{NAMESPACE_ENV}: {e}")))?;
        Ok(Metrics::new(namespace, Arc::new(StdoutSink)))
    }

    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Writes the documents. Metrics never fail a step: a document that breaks an EMF rule
    /// (a bug) or a sink that fails is logged as an error and the step goes on.
    pub fn emit(&self, documents: &[MetricDoc]) {
        for doc in documents {
            let written = doc
                .to_line(&self.namespace)
                .map_err(|e| e.to_string())
                .and_then(|line| self.sink.write_line(&line).map_err(|e| e.to_string()));
            if let Err(error) = written {
                tracing::error!(%error, metrics = ?doc.metrics.iter().map(|m| m.name).collect::<Vec<_>>(), "metrics not written");
            }
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use super::*;
    use chrono::Utc;
    use iamtrail_core::metrics::names;

    #[test]
    fn lines_go_to_the_sink_and_bad_documents_are_dropped_with_an_error() {
        let sink = Arc::new(MemoryMetrics::default());
        let metrics = Metrics::for_stack("demo", sink.clone()).unwrap();
        metrics.emit(&[
            MetricDoc::new(Utc::now()).count(names::PARTIAL_RUN, 0),
            MetricDoc::new(Utc::now()),
        ]);
        let docs = sink.documents();
        assert_eq!(docs.len(), 1);
        assert_eq!(
            docs[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "IamTrail/demo"
        );
    }

    #[test]
    fn a_file_sink_appends_one_line_per_document() {
        let path =
            std::env::temp_dir().join(format!("iamtrail-metrics-{}.jsonl", std::process::id()));
        let sink = Arc::new(FileSink::create(&path).unwrap());
        let metrics = Metrics::for_stack("demo", sink).unwrap();
        metrics.emit(&[
            MetricDoc::new(Utc::now()).count(names::EXPORT_ROWS, 1),
            MetricDoc::new(Utc::now()).count(names::EXPORT_ROWS, 2),
        ]);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).ok();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().all(|l| l.contains("\"ExportRows\"")));
    }
}
