//! A typed writer of CloudWatch Embedded Metric Format (EMF) documents: one JSON object per
//! log line, which CloudWatch Logs turns into metrics without any API call. The rules it
//! enforces are those of the EMF specification (docs/metrics.md names it); a document that
//! breaks one is an [`EmfError`], never a line CloudWatch would silently drop.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

/// Most metrics one EMF document may define.
pub const MAX_METRICS: usize = 100;
/// Most dimension keys in one dimension set.
pub const MAX_DIMENSIONS: usize = 30;
/// Longest dimension key (the specification's schema: 250 characters).
pub const MAX_DIMENSION_KEY: usize = 250;
/// Longest dimension value.
pub const MAX_DIMENSION_VALUE: usize = 1024;
/// Longest metric name CloudWatch accepts (`PutMetricData`'s `MetricName`).
pub const MAX_METRIC_NAME: usize = 255;
/// Longest namespace.
pub const MAX_NAMESPACE: usize = 1024;
/// Largest log event CloudWatch Logs accepts, and so the largest EMF document.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// A CloudWatch metric unit (the units `PutMetricData` and EMF accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
    Milliseconds,
    Bytes,
    Percent,
    None,
}

impl Unit {
    /// The unit as EMF spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
            Unit::Milliseconds => "Milliseconds",
            Unit::Bytes => "Bytes",
            Unit::Percent => "Percent",
            Unit::None => "None",
        }
    }
}

/// Why a document cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmfError {
    #[error("an EMF namespace must have 1 to {MAX_NAMESPACE} characters and not be blank: {0:?}")]
    Namespace(String),
    #[error("an EMF document needs at least one metric")]
    NoMetric,
    #[error("an EMF document holds at most {MAX_METRICS} metrics, not {0}")]
    TooManyMetrics(usize),
    #[error("a dimension set holds at most {MAX_DIMENSIONS} keys, not {0}")]
    TooManyDimensions(usize),
    #[error("dimension key {0:?} must have 1 to {MAX_DIMENSION_KEY} characters")]
    DimensionKey(String),
    #[error("dimension {key:?} has the value {value:?}: it must have 1 to {MAX_DIMENSION_VALUE} characters and not be blank")]
    DimensionValue { key: String, value: String },
    #[error("metric name {0:?} must have 1 to {MAX_METRIC_NAME} characters")]
    MetricName(String),
    #[error("member {0:?} is defined twice (or is `_aws`): every dimension and metric needs its own member")]
    Duplicate(String),
    #[error("the document's timestamp {0} is before 1970")]
    Timestamp(DateTime<Utc>),
    #[error("the document is {0} bytes; a log event holds at most {MAX_DOCUMENT_BYTES}")]
    TooLarge(usize),
}

/// A CloudWatch namespace (`IamTrail/<stack>`), checked once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace(String);

impl Namespace {
    pub fn new(name: impl Into<String>) -> Result<Self, EmfError> {
        let name = name.into();
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_NAMESPACE || name.trim().is_empty() {
            return Err(EmfError::Namespace(name));
        }
        Ok(Namespace(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One metric value of a document.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub unit: Unit,
    pub value: i64,
}

/// One EMF document: a timestamp, its labels (e.g. Region and Source, written into the log
/// line) and the metrics it publishes. The metrics are always published under the empty
/// dimension set `[]` (one CloudWatch metric per name, whatever the labels); a `detailed`
/// document also publishes them per label values (the dimension set of the labels' keys), which
/// makes one billed custom metric per name and label combination (docs/metrics.md, "Cost").
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDoc {
    pub timestamp: DateTime<Utc>,
    pub dimensions: Vec<(&'static str, String)>,
    pub metrics: Vec<Metric>,
    /// Also publish under the labels' dimension set.
    pub detailed: bool,
}

impl MetricDoc {
    /// A document with no label (the dimension set `[]`) and no metric yet.
    pub fn new(timestamp: DateTime<Utc>) -> Self {
        MetricDoc {
            timestamp,
            dimensions: Vec::new(),
            metrics: Vec::new(),
            detailed: false,
        }
    }

    /// Publishes the metrics per label values too (the dimension set of the labels' keys,
    /// beside `[]`).
    pub fn detailed(mut self, detailed: bool) -> Self {
        self.detailed = detailed;
        self
    }

    /// The dimension sets the document publishes under: `[]`, and the labels' keys when
    /// detailed.
    pub fn dimension_sets(&self) -> Vec<Vec<&'static str>> {
        let keys: Vec<&'static str> = self.dimensions.iter().map(|(k, _)| *k).collect();
        if self.detailed && !keys.is_empty() {
            vec![Vec::new(), keys]
        } else {
            vec![Vec::new()]
        }
    }

    /// Adds a label: a member of the log line (Logs Insights can group by it), and a dimension
    /// when the document is detailed.
    pub fn dimension(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.dimensions.push((key, value.into()));
        self
    }

    /// Adds a metric.
    pub fn metric(mut self, name: &'static str, unit: Unit, value: i64) -> Self {
        self.metrics.push(Metric { name, unit, value });
        self
    }

    /// Adds a `Count` metric.
    pub fn count(self, name: &'static str, value: u64) -> Self {
        self.metric(name, Unit::Count, i64::try_from(value).unwrap_or(i64::MAX))
    }

    /// The value of a metric, if the document has it.
    pub fn value(&self, name: &str) -> Option<i64> {
        self.metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// The value of a dimension, if the document has it.
    pub fn dimension_value(&self, key: &str) -> Option<&str> {
        self.dimensions
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The document as one JSON line (no newline), after checking every rule.
    pub fn to_line(&self, namespace: &Namespace) -> Result<String, EmfError> {
        let line = serde_json::to_string(&self.to_json(namespace)?)
            .expect("a JSON value always serializes");
        if line.len() > MAX_DOCUMENT_BYTES {
            return Err(EmfError::TooLarge(line.len()));
        }
        Ok(line)
    }

    /// The document as a JSON object, after checking every rule but the size.
    pub fn to_json(&self, namespace: &Namespace) -> Result<Value, EmfError> {
        self.check()?;
        let timestamp = u64::try_from(self.timestamp.timestamp_millis())
            .map_err(|_| EmfError::Timestamp(self.timestamp))?;
        let sets = self.dimension_sets();
        let definitions: Vec<Value> = self
            .metrics
            .iter()
            .map(|m| json!({"Name": m.name, "Unit": m.unit.as_str()}))
            .collect();
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp,
                "CloudWatchMetrics": [{
                    "Namespace": namespace.as_str(),
                    "Dimensions": sets,
                    "Metrics": definitions,
                }],
            }),
        );
        for (key, value) in &self.dimensions {
            root.insert((*key).into(), Value::String(value.clone()));
        }
        for m in &self.metrics {
            root.insert(m.name.into(), Value::from(m.value));
        }
        Ok(Value::Object(root))
    }

    fn check(&self) -> Result<(), EmfError> {
        if self.metrics.is_empty() {
            return Err(EmfError::NoMetric);
        }
        if self.metrics.len() > MAX_METRICS {
            return Err(EmfError::TooManyMetrics(self.metrics.len()));
        }
        if self.dimensions.len() > MAX_DIMENSIONS {
            return Err(EmfError::TooManyDimensions(self.dimensions.len()));
        }
        let mut members = vec!["_aws"];
        for (key, value) in &self.dimensions {
            if key.is_empty() || key.chars().count() > MAX_DIMENSION_KEY {
                return Err(EmfError::DimensionKey((*key).into()));
            }
            if value.trim().is_empty() || value.chars().count() > MAX_DIMENSION_VALUE {
                return Err(EmfError::DimensionValue {
                    key: (*key).into(),
                    value: value.clone(),
                });
            }
            members.push(*key);
        }
        for m in &self.metrics {
            if m.name.is_empty() || m.name.chars().count() > MAX_METRIC_NAME {
                return Err(EmfError::MetricName(m.name.into()));
            }
            members.push(m.name);
        }
        members.sort_unstable();
        if let Some(w) = members.windows(2).find(|w| w[0] == w[1]) {
            return Err(EmfError::Duplicate(w[0].into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 7, 53, 37).unwrap()
    }

    fn ns() -> Namespace {
        Namespace::new("IamTrail/demo").unwrap()
    }

    #[test]
    fn writes_the_specification_layout() {
        let doc = MetricDoc::new(at())
            .dimension("Region", "us-east-1")
            .dimension("Source", "iam")
            .detailed(true)
            .count("EventsStored", 398)
            .metric("CollectionLagSeconds", Unit::Seconds, 303);
        let value: Value = serde_json::from_str(&doc.to_line(&ns()).unwrap()).unwrap();
        assert_eq!(
            value,
            json!({
                "_aws": {
                    "Timestamp": 1_795_593_217_000u64,
                    "CloudWatchMetrics": [{
                        "Namespace": "IamTrail/demo",
                        "Dimensions": [[], ["Region", "Source"]],
                        "Metrics": [
                            {"Name": "EventsStored", "Unit": "Count"},
                            {"Name": "CollectionLagSeconds", "Unit": "Seconds"}
                        ]
                    }]
                },
                "Region": "us-east-1",
                "Source": "iam",
                "EventsStored": 398,
                "CollectionLagSeconds": 303
            })
        );
    }

    #[test]
    fn labels_are_log_members_and_only_dimensions_when_detailed() {
        let doc = MetricDoc::new(at())
            .dimension("Region", "eu-west-1")
            .dimension("Source", "sts")
            .count("EventsStored", 2);
        let value = doc.to_json(&ns()).unwrap();
        assert_eq!(
            value["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([[]]),
            "one metric per name, whatever the region"
        );
        assert_eq!(value["Region"], json!("eu-west-1"));
        assert_eq!(value["Source"], json!("sts"));
    }

    #[test]
    fn no_dimension_is_the_empty_dimension_set() {
        let doc = MetricDoc::new(at()).count("PartialRun", 1);
        let value = doc.to_json(&ns()).unwrap();
        assert_eq!(
            value["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([[]])
        );
        assert_eq!(value["PartialRun"], json!(1));
    }

    #[test]
    fn breaking_a_rule_is_an_error() {
        let base = || MetricDoc::new(at());
        assert_eq!(base().to_line(&ns()), Err(EmfError::NoMetric));
        let mut many = base();
        for _ in 0..=MAX_METRICS {
            many = many.count("X", 1);
        }
        assert_eq!(many.to_line(&ns()), Err(EmfError::TooManyMetrics(101)));
        assert_eq!(
            base()
                .count("Region", 1)
                .dimension("Region", "x")
                .to_line(&ns()),
            Err(EmfError::Duplicate("Region".into()))
        );
        assert_eq!(
            base().count("_aws", 1).to_line(&ns()),
            Err(EmfError::Duplicate("_aws".into()))
        );
        assert!(matches!(
            base().count("A", 1).dimension("Region", " ").to_line(&ns()),
            Err(EmfError::DimensionValue { .. })
        ));
        assert!(matches!(
            base()
                .count("A", 1)
                .dimension("Region", "x".repeat(1025))
                .to_line(&ns()),
            Err(EmfError::DimensionValue { .. })
        ));
        assert!(matches!(
            base().count("", 1).to_line(&ns()),
            Err(EmfError::MetricName(_))
        ));
        let before_1970 = Utc.with_ymd_and_hms(1969, 12, 31, 0, 0, 0).unwrap();
        assert_eq!(
            MetricDoc::new(before_1970).count("A", 1).to_line(&ns()),
            Err(EmfError::Timestamp(before_1970))
        );
        assert!(Namespace::new("").is_err());
        assert!(Namespace::new("  ").is_err());
        assert!(Namespace::new("x".repeat(1025)).is_err());
        assert!(Namespace::new("IamTrail/prod").is_ok());
    }
}
