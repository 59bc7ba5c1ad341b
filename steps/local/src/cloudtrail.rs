//! CloudTrail `LookupEvents` emulator over CloudTrail log files.
//!
//! Real CloudTrail `LookupEvents` is absent from moto, so the local stack answers it from a
//! directory of CloudTrail log files in the S3 delivery format (`{"Records":[...]}`, `.json` or
//! `.json.gz`). Records are kept as [`serde_json::Value`], independent of the project's own
//! record model.
//!
//! Semantics follow the AWS API reference for `LookupEvents`:
//! - a request sees only the records of its region (the SigV4 credential scope; default
//!   `us-east-1`);
//! - at most one lookup attribute (`EventId`, `EventName`, `ReadOnly`, `Username`,
//!   `ResourceType`, `ResourceName`, `EventSource`, `AccessKeyId`), matched exactly;
//! - `StartTime` and `EndTime` are both inclusive; the default range is the last 90 days, and
//!   nothing older than 90 days (relative to the emulator's [`Clock`]) is ever returned;
//! - results are newest first, ties broken by descending `eventID`, 1–50 per page (default 50);
//! - `NextToken` is opaque, keyset-based (stable across equal timestamps and under concurrent
//!   [`CloudTrailEmulator::add_records`]) and only valid with the same region, attribute, time
//!   range and event category (a different `MaxResults` is accepted);
//! - only management events are served (data and network-activity events never appear in event
//!   history); Insights records (`eventCategory: "Insight"`) only with `EventCategory: insight`.
//!
//! Fields of each returned `Event`:
//! - `Username`: `root` for the root user; `userName` for IAM users; the role *session* name
//!   (last part of the `assumed-role` ARN) for assumed roles, as CloudTrail's event history
//!   shows it; the federated user name for federated users; `invokedBy` for AWS services;
//!   otherwise `userName`, the session issuer's `userName`, or the last part of the ARN.
//! - `Resources`: from the record's `resources` array (`type` → `ResourceType`, `ARN` →
//!   `ResourceName`); real CloudTrail also derives resources from request parameters, which the
//!   emulator does not attempt. Always present, possibly empty, as in the real API.
//! - `ReadOnly`: `"true"`/`"false"` from the record's `readOnly`, omitted when absent.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde_json::{json, Map, Value};

/// The `X-Amz-Target` prefix of CloudTrail JSON 1.1 operations as botocore (and the service
/// model's `targetPrefix`) sends it.
pub const TARGET_PREFIX: &str = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.";
/// The shorter `X-Amz-Target` prefix the AWS SDK for Rust sends
/// (`CloudTrail_20131101.LookupEvents`).
pub const SHORT_TARGET_PREFIX: &str = "CloudTrail_20131101.";

/// The CloudTrail operation named by an `X-Amz-Target` header, in either of its two forms.
pub fn cloudtrail_operation(target: &str) -> Option<&str> {
    target
        .strip_prefix(TARGET_PREFIX)
        .or_else(|| target.strip_prefix(SHORT_TARGET_PREFIX))
}
/// The content type of CloudTrail (AWS JSON 1.1) requests and responses.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// Region used when a request carries no SigV4 credential scope.
pub const DEFAULT_REGION: &str = "us-east-1";
/// How far back event history reaches, in days.
pub const RETENTION_DAYS: i64 = 90;
/// Largest (and default) page size.
pub const MAX_RESULTS: usize = 50;

const ATTRIBUTE_KEYS: [&str; 8] = [
    "EventId",
    "EventName",
    "ReadOnly",
    "Username",
    "ResourceType",
    "ResourceName",
    "EventSource",
    "AccessKeyId",
];

/// A source of "now" for the emulator (the 90-day window, default `EndTime`, time shift).
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock(Arc::new(Utc::now))
    }

    /// A clock that always reads `t`.
    pub fn fixed(t: DateTime<Utc>) -> Self {
        Clock(Arc::new(move || t))
    }

    /// A clock backed by any function.
    pub fn from_fn(f: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Clock(Arc::new(f))
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.now().to_rfc3339())
    }
}

/// A clock that tests set and advance by hand; [`ManualClock::clock`] gives the [`Clock`].
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    /// A manual clock reading `t`.
    pub fn new(t: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(Mutex::new(t)))
    }

    /// Sets the time.
    pub fn set(&self, t: DateTime<Utc>) {
        *lock(&self.0) = t;
    }

    /// Moves the time forward (or backward, for a negative `d`).
    pub fn advance(&self, d: TimeDelta) {
        let mut t = lock(&self.0);
        *t += d;
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        *lock(&self.0)
    }

    /// A [`Clock`] reading this manual clock.
    pub fn clock(&self) -> Clock {
        let inner = self.0.clone();
        Clock::from_fn(move || *lock(&inner))
    }
}

/// How record times are shifted before they are served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimeShift {
    /// Serve records at their recorded time.
    #[default]
    None,
    /// Add a fixed duration (rounded to whole seconds) to every record time.
    Fixed(TimeDelta),
    /// Shift every record so that the newest record of the first non-empty load lands at
    /// `now - offset` (whole seconds). The shift is then frozen: later
    /// [`CloudTrailEmulator::add_records`] batches get the same shift.
    LatestAt(TimeDelta),
}

/// Options of the emulator.
#[derive(Clone, Debug, Default)]
pub struct EmulatorOptions {
    /// Requests per second allowed per region (token bucket, burst `max(1, rps)`); `None` for
    /// no throttling. The real quota is 2 per second per account per region.
    pub throttle_rps: Option<f64>,
    /// Time shift applied to `EventTime` and to `eventTime` inside `CloudTrailEvent`.
    pub time_shift: TimeShift,
    /// Regions whose requests fail persistently with HTTP 500 `InternalFailure`.
    pub fail_regions: Vec<String>,
    /// The emulator's notion of now.
    pub clock: Clock,
}

/// What a load (or an [`CloudTrailEmulator::add_records`] call) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Log files read.
    pub files: usize,
    /// Records stored (new event IDs).
    pub records: usize,
    /// Records whose event ID was already stored (kept once).
    pub duplicates: usize,
    /// Records not stored: the file they came from (`<records>` for in-memory records) and why.
    pub skipped: Vec<(PathBuf, String)>,
}

impl LoadReport {
    fn merge(&mut self, other: &LoadReport) {
        self.files += other.files;
        self.records += other.records;
        self.duplicates += other.duplicates;
        self.skipped.extend(other.skipped.iter().cloned());
    }
}

/// Request counters of one region.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionStats {
    /// CloudTrail requests received for the region.
    pub requests: u64,
    /// Requests answered with `ThrottlingException`.
    pub throttled: u64,
    /// Requests answered with an injected `InternalFailure`.
    pub failed: u64,
}

/// Request counters of the emulator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmulatorStats {
    /// CloudTrail requests received.
    pub requests: u64,
    /// Requests answered with `ThrottlingException`.
    pub throttled: u64,
    /// Requests answered with an injected `InternalFailure`.
    pub failed: u64,
    /// The same counters per region.
    pub per_region: BTreeMap<String, RegionStats>,
}

/// An error loading CloudTrail log files.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not valid JSON (or not valid gzip).
    #[error("{path} is not a valid CloudTrail log file: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file is JSON but has no `Records` array.
    #[error("{path} has no \"Records\" array (not a CloudTrail log file)")]
    NoRecords {
        /// The file.
        path: PathBuf,
    },
}

/// A `LookupEvents` error, answered as an AWS JSON 1.1 error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// More than one lookup attribute, an unknown key or an empty value.
    #[error("{0}")]
    InvalidLookupAttributes(String),
    /// Start time after end time, or an unreadable time.
    #[error("{0}")]
    InvalidTimeRange(String),
    /// `MaxResults` outside 1..=50.
    #[error("{0}")]
    InvalidMaxResults(String),
    /// A token that is malformed or was issued for other parameters.
    #[error("{0}")]
    InvalidNextToken(String),
    /// An `EventCategory` other than `insight`.
    #[error("{0}")]
    InvalidEventCategory(String),
    /// A CloudTrail operation other than `LookupEvents`.
    #[error("{0}")]
    UnsupportedOperation(String),
    /// A body that is not a JSON object.
    #[error("{0}")]
    Serialization(String),
    /// Over the per-region request rate.
    #[error("Rate exceeded")]
    Throttling,
    /// Injected failure for a region listed in `fail_regions`.
    #[error("{0}")]
    InternalFailure(String),
}

impl LookupError {
    /// The AWS error code (`__type`).
    pub fn error_type(&self) -> &'static str {
        match self {
            LookupError::InvalidLookupAttributes(_) => "InvalidLookupAttributesException",
            LookupError::InvalidTimeRange(_) => "InvalidTimeRangeException",
            LookupError::InvalidMaxResults(_) => "InvalidMaxResultsException",
            LookupError::InvalidNextToken(_) => "InvalidNextTokenException",
            LookupError::InvalidEventCategory(_) => "InvalidEventCategoryException",
            LookupError::UnsupportedOperation(_) => "UnsupportedOperationException",
            LookupError::Serialization(_) => "SerializationException",
            LookupError::Throttling => "ThrottlingException",
            LookupError::InternalFailure(_) => "InternalFailure",
        }
    }

    /// The HTTP status (400, or 500 for `InternalFailure`).
    pub fn status(&self) -> u16 {
        match self {
            LookupError::InternalFailure(_) => 500,
            _ => 400,
        }
    }

    /// The JSON error body `{"__type": ..., "message": ...}`.
    pub fn body(&self) -> Value {
        json!({"__type": self.error_type(), "message": self.to_string()})
    }
}

/// An HTTP answer of the emulator, independent of any HTTP library.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmulatorResponse {
    /// HTTP status.
    pub status: u16,
    /// The error code for the `x-amzn-ErrorType` header, on errors.
    pub error_type: Option<&'static str>,
    /// The JSON body.
    pub body: Vec<u8>,
}

impl EmulatorResponse {
    fn ok(v: &Value) -> Self {
        EmulatorResponse {
            status: 200,
            error_type: None,
            body: serde_json::to_vec(v).unwrap_or_default(),
        }
    }

    fn error(e: &LookupError) -> Self {
        EmulatorResponse {
            status: e.status(),
            error_type: Some(e.error_type()),
            body: serde_json::to_vec(&e.body()).unwrap_or_default(),
        }
    }
}

/// One stored event, with everything a lookup filters on precomputed.
#[derive(Debug)]
struct StoredEvent {
    id: String,
    time: DateTime<Utc>,
    event_name: Option<String>,
    event_source: Option<String>,
    read_only: Option<&'static str>,
    username: Option<String>,
    access_key_id: Option<String>,
    resources: Vec<(Option<String>, Option<String>)>,
    insight: bool,
    cloudtrail_event: String,
}

impl StoredEvent {
    fn matches(&self, key: &str, value: &str) -> bool {
        let eq = |o: &Option<String>| o.as_deref() == Some(value);
        match key {
            "EventId" => self.id == value,
            "EventName" => eq(&self.event_name),
            "ReadOnly" => self.read_only == Some(value),
            "Username" => eq(&self.username),
            "ResourceType" => self.resources.iter().any(|(t, _)| eq(t)),
            "ResourceName" => self.resources.iter().any(|(_, n)| eq(n)),
            "EventSource" => eq(&self.event_source),
            "AccessKeyId" => eq(&self.access_key_id),
            _ => false,
        }
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("EventId".into(), Value::String(self.id.clone()));
        if let Some(v) = &self.event_name {
            m.insert("EventName".into(), Value::String(v.clone()));
        }
        if let Some(v) = self.read_only {
            m.insert("ReadOnly".into(), Value::String(v.into()));
        }
        if let Some(v) = &self.access_key_id {
            m.insert("AccessKeyId".into(), Value::String(v.clone()));
        }
        m.insert("EventTime".into(), epoch_seconds(self.time));
        if let Some(v) = &self.event_source {
            m.insert("EventSource".into(), Value::String(v.clone()));
        }
        if let Some(v) = &self.username {
            m.insert("Username".into(), Value::String(v.clone()));
        }
        let resources = self
            .resources
            .iter()
            .map(|(t, n)| {
                let mut r = Map::new();
                if let Some(t) = t {
                    r.insert("ResourceType".into(), Value::String(t.clone()));
                }
                if let Some(n) = n {
                    r.insert("ResourceName".into(), Value::String(n.clone()));
                }
                Value::Object(r)
            })
            .collect();
        m.insert("Resources".into(), Value::Array(resources));
        m.insert(
            "CloudTrailEvent".into(),
            Value::String(self.cloudtrail_event.clone()),
        );
        Value::Object(m)
    }
}

type RegionEvents = BTreeMap<(DateTime<Utc>, String), Arc<StoredEvent>>;

#[derive(Default)]
struct Store {
    regions: HashMap<String, RegionEvents>,
    ids: HashSet<String>,
    shift: Option<TimeDelta>,
    report: LoadReport,
}

#[derive(Default)]
struct Throttle {
    buckets: HashMap<String, (f64, Instant)>,
}

/// The CloudTrail `LookupEvents` emulator. Thread-safe; share it as `Arc`.
pub struct CloudTrailEmulator {
    throttle_rps: Option<f64>,
    time_shift: TimeShift,
    clock: Clock,
    fail_regions: RwLock<BTreeSet<String>>,
    store: RwLock<Store>,
    throttle: Mutex<Throttle>,
    stats: Mutex<EmulatorStats>,
}

impl fmt::Debug for CloudTrailEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudTrailEmulator")
            .field("records", &self.len())
            .field("throttle_rps", &self.throttle_rps)
            .field("time_shift", &self.time_shift)
            .finish_non_exhaustive()
    }
}

/// A record that passed validation, before the time shift.
struct Parsed {
    id: String,
    time: DateTime<Utc>,
    region: String,
    record: Value,
}

impl CloudTrailEmulator {
    /// An emulator with no records.
    pub fn new(options: EmulatorOptions) -> Self {
        CloudTrailEmulator {
            throttle_rps: options.throttle_rps.filter(|r| *r > 0.0),
            time_shift: options.time_shift,
            clock: options.clock,
            fail_regions: RwLock::new(options.fail_regions.into_iter().collect()),
            store: RwLock::new(Store::default()),
            throttle: Mutex::new(Throttle::default()),
            stats: Mutex::new(EmulatorStats::default()),
        }
    }

    /// Loads every `*.json` / `*.json.gz` file under `dir` (recursively, in path order; gzip is
    /// detected by its magic bytes). Directories named `CloudTrail-Digest` are skipped. A file
    /// that is not JSON or has no `Records` array is an error naming the file; records without
    /// `eventID`, an RFC 3339 `eventTime` or `awsRegion` are skipped and reported in
    /// [`CloudTrailEmulator::load_report`].
    pub fn from_dir(dir: impl AsRef<Path>, options: EmulatorOptions) -> Result<Self, LoadError> {
        let mut files = Vec::new();
        collect_files(dir.as_ref(), &mut files)?;
        files.sort();
        let mut parsed = Vec::new();
        let mut report = LoadReport {
            files: files.len(),
            ..LoadReport::default()
        };
        for file in &files {
            let records = read_log_file(file)?;
            for r in records {
                match parse_record(r) {
                    Ok(p) => parsed.push(p),
                    Err(reason) => report.skipped.push((file.clone(), reason)),
                }
            }
        }
        let emulator = CloudTrailEmulator::new(options);
        emulator.insert(parsed, report);
        Ok(emulator)
    }

    /// An emulator over in-memory records (each one CloudTrail record object).
    pub fn from_records(records: Vec<Value>, options: EmulatorOptions) -> Self {
        let emulator = CloudTrailEmulator::new(options);
        emulator.add_records(records);
        emulator
    }

    /// Adds records at runtime (e.g. to simulate late delivery). The emulator's time shift
    /// applies to them too. Returns what this call stored and skipped.
    pub fn add_records(&self, records: Vec<Value>) -> LoadReport {
        let mut parsed = Vec::new();
        let mut report = LoadReport::default();
        for r in records {
            match parse_record(r) {
                Ok(p) => parsed.push(p),
                Err(reason) => report.skipped.push((PathBuf::from("<records>"), reason)),
            }
        }
        self.insert(parsed, report)
    }

    fn insert(&self, parsed: Vec<Parsed>, mut report: LoadReport) -> LoadReport {
        let mut store = write(&self.store);
        if store.shift.is_none() {
            store.shift = match self.time_shift {
                TimeShift::None => Some(TimeDelta::zero()),
                TimeShift::Fixed(d) => Some(TimeDelta::seconds(d.num_seconds())),
                TimeShift::LatestAt(offset) => parsed.iter().map(|p| p.time).max().map(|max| {
                    let target = self.clock.now() - offset;
                    TimeDelta::seconds((target - max).num_seconds())
                }),
            };
        }
        let shift = store.shift.unwrap_or_else(TimeDelta::zero);
        for p in parsed {
            if store.ids.contains(&p.id) {
                report.duplicates += 1;
                continue;
            }
            let event = build_event(p.id.clone(), p.time + shift, p.record, shift);
            store.ids.insert(p.id.clone());
            store
                .regions
                .entry(p.region)
                .or_default()
                .insert((event.time, p.id), Arc::new(event));
            report.records += 1;
        }
        store.report.merge(&report);
        report
    }

    /// Everything loaded so far (initial load plus every `add_records`).
    pub fn load_report(&self) -> LoadReport {
        read(&self.store).report.clone()
    }

    /// Number of stored events.
    pub fn len(&self) -> usize {
        read(&self.store).ids.len()
    }

    /// Whether no event is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Regions that have at least one event, sorted.
    pub fn regions(&self) -> Vec<String> {
        let mut r: Vec<String> = read(&self.store).regions.keys().cloned().collect();
        r.sort();
        r
    }

    /// Every stored management record (insights left out) as `LookupEvents` serves it (the
    /// `CloudTrailEvent` text, time-shifted), oldest first: what CloudTrail would have
    /// published to EventBridge as the calls happened (the local stack's real-time replay).
    pub fn records(&self) -> Vec<String> {
        let store = read(&self.store);
        let mut all: Vec<&Arc<StoredEvent>> = store
            .regions
            .values()
            .flat_map(|events| events.values())
            .filter(|e| !e.insight)
            .collect();
        all.sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
        all.into_iter()
            .map(|e| e.cloudtrail_event.clone())
            .collect()
    }

    /// The time shift in effect (`None` until resolved: `LatestAt` with no record yet).
    pub fn shift(&self) -> Option<TimeDelta> {
        read(&self.store).shift
    }

    /// The emulator's current time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Replaces the set of regions that fail with HTTP 500.
    pub fn set_fail_regions(&self, regions: Vec<String>) {
        *write(&self.fail_regions) = regions.into_iter().collect();
    }

    /// Request counters.
    pub fn stats(&self) -> EmulatorStats {
        lock(&self.stats).clone()
    }

    /// Answers one CloudTrail HTTP request: `target` is the `X-Amz-Target` header (either
    /// form, see [`cloudtrail_operation`]),
    /// `authorization` the `Authorization` header (for the region), `body` the JSON body.
    pub fn handle_request(
        &self,
        target: &str,
        authorization: Option<&str>,
        body: &[u8],
    ) -> EmulatorResponse {
        let region = region_from_authorization(authorization);
        let operation = cloudtrail_operation(target).unwrap_or(target);
        let result = if operation == "LookupEvents" {
            let request = if body.iter().all(|b| b.is_ascii_whitespace()) {
                Ok(json!({}))
            } else {
                serde_json::from_slice::<Value>(body)
                    .map_err(|e| LookupError::Serialization(format!("invalid JSON body: {e}")))
            };
            match request {
                Ok(request) => self.lookup_events(&region, &request),
                Err(e) => {
                    self.count(&region, |s| s.requests += 1);
                    Err(e)
                }
            }
        } else {
            self.count(&region, |s| s.requests += 1);
            Err(LookupError::UnsupportedOperation(format!(
                "the local CloudTrail emulator supports only LookupEvents, not {operation}"
            )))
        };
        match result {
            Ok(v) => EmulatorResponse::ok(&v),
            Err(e) => {
                tracing::debug!(region, error = e.error_type(), "cloudtrail error: {e}");
                EmulatorResponse::error(&e)
            }
        }
    }

    /// `LookupEvents` in `region` for a request body (the JSON object of the API). Counts the
    /// request, applies failure injection and throttling, then the lookup.
    pub fn lookup_events(&self, region: &str, request: &Value) -> Result<Value, LookupError> {
        self.count(region, |s| s.requests += 1);
        if read(&self.fail_regions).contains(region) {
            self.count(region, |s| s.failed += 1);
            return Err(LookupError::InternalFailure(format!(
                "injected failure for region {region}"
            )));
        }
        if !self.take_token(region) {
            self.count(region, |s| s.throttled += 1);
            return Err(LookupError::Throttling);
        }
        self.lookup(region, request)
    }

    fn count(&self, region: &str, f: impl Fn(&mut RegionStats)) {
        let mut stats = lock(&self.stats);
        let mut total = RegionStats {
            requests: stats.requests,
            throttled: stats.throttled,
            failed: stats.failed,
        };
        f(&mut total);
        stats.requests = total.requests;
        stats.throttled = total.throttled;
        stats.failed = total.failed;
        f(stats.per_region.entry(region.to_string()).or_default());
    }

    fn take_token(&self, region: &str) -> bool {
        let Some(rps) = self.throttle_rps else {
            return true;
        };
        let capacity = rps.max(1.0);
        let now = Instant::now();
        let mut t = lock(&self.throttle);
        let (tokens, last) = t
            .buckets
            .entry(region.to_string())
            .or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rps).min(capacity);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn lookup(&self, region: &str, request: &Value) -> Result<Value, LookupError> {
        let req = request.as_object().ok_or_else(|| {
            LookupError::Serialization("request body must be a JSON object".into())
        })?;
        let attribute = parse_attribute(req.get("LookupAttributes"))?;
        let start_raw = parse_time(req.get("StartTime"), "StartTime")?;
        let end_raw = parse_time(req.get("EndTime"), "EndTime")?;
        let max_results = parse_max_results(req.get("MaxResults"))?;
        let insight = match req.get("EventCategory") {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) if s == "insight" => true,
            Some(other) => {
                return Err(LookupError::InvalidEventCategory(format!(
                    "invalid EventCategory {other}; the only valid value is \"insight\""
                )))
            }
        };

        let now = self.clock.now();
        let floor = now - TimeDelta::days(RETENTION_DAYS);
        let start = start_raw.unwrap_or(floor);
        let end = end_raw.unwrap_or(now);
        if start > end {
            return Err(LookupError::InvalidTimeRange(
                "Start time must be before or equal to end time".into(),
            ));
        }
        let start = start.max(floor);

        let fingerprint = fingerprint(region, attribute.as_ref(), start_raw, end_raw, insight);
        let cursor = match req.get("NextToken") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) => Some(decode_token(t, fingerprint)?),
            Some(_) => {
                return Err(LookupError::InvalidNextToken(
                    "NextToken must be a string".into(),
                ))
            }
        };

        let store = read(&self.store);
        let empty = RegionEvents::new();
        let events = store.regions.get(region).unwrap_or(&empty);
        let upper = match &cursor {
            Some(c) => Bound::Excluded(c.clone()),
            None => Bound::Excluded((end + TimeDelta::nanoseconds(1), String::new())),
        };
        let mut page: Vec<&Arc<StoredEvent>> = Vec::with_capacity(max_results + 1);
        for ((time, _), ev) in events.range((Bound::Unbounded, upper)).rev() {
            if *time > end {
                continue;
            }
            if *time < start {
                break;
            }
            if ev.insight != insight {
                continue;
            }
            if let Some((k, v)) = &attribute {
                if !ev.matches(k, v) {
                    continue;
                }
            }
            page.push(ev);
            if page.len() > max_results {
                break;
            }
        }
        let next = if page.len() > max_results {
            page.truncate(max_results);
            page.last()
                .map(|ev| encode_token(fingerprint, ev.time, &ev.id))
        } else {
            None
        };
        let mut out = Map::new();
        out.insert(
            "Events".into(),
            Value::Array(page.iter().map(|e| e.to_json()).collect()),
        );
        if let Some(t) = next {
            out.insert("NextToken".into(), Value::String(t));
        }
        Ok(Value::Object(out))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let io = |source| LoadError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if file_type.is_dir() || (file_type.is_symlink() && path.is_dir()) {
            if name != "CloudTrail-Digest" {
                collect_files(&path, out)?;
            }
        } else if name.ends_with(".json") || name.ends_with(".json.gz") {
            out.push(path);
        }
    }
    Ok(())
}

fn read_log_file(path: &Path) -> Result<Vec<Value>, LoadError> {
    let raw = std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| LoadError::Parse {
                path: path.to_path_buf(),
                message: format!("invalid gzip: {e}"),
            })?;
        out
    } else {
        raw
    };
    let doc: Value = serde_json::from_slice(&bytes).map_err(|e| LoadError::Parse {
        path: path.to_path_buf(),
        message: format!("invalid JSON: {e}"),
    })?;
    match doc {
        Value::Object(mut m) => match m.remove("Records") {
            Some(Value::Array(records)) => Ok(records),
            _ => Err(LoadError::NoRecords {
                path: path.to_path_buf(),
            }),
        },
        _ => Err(LoadError::NoRecords {
            path: path.to_path_buf(),
        }),
    }
}

fn parse_record(record: Value) -> Result<Parsed, String> {
    let Some(obj) = record.as_object() else {
        return Err("record is not a JSON object".into());
    };
    let id = match obj.get("eventID") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err("missing eventID".into()),
    };
    let time = match obj.get("eventTime") {
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map_err(|e| format!("event {id}: eventTime {s:?} is not RFC 3339: {e}"))?
            .with_timezone(&Utc),
        _ => return Err(format!("event {id}: missing eventTime")),
    };
    let region = match obj.get("awsRegion") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(format!("event {id}: missing awsRegion")),
    };
    let category = obj.get("eventCategory").and_then(Value::as_str);
    if obj.get("managementEvent") == Some(&Value::Bool(false))
        || matches!(category, Some("Data") | Some("NetworkActivity"))
    {
        return Err(format!(
            "event {id}: not a management event (absent from event history)"
        ));
    }
    Ok(Parsed {
        id,
        time,
        region,
        record,
    })
}

fn build_event(
    id: String,
    time: DateTime<Utc>,
    mut record: Value,
    shift: TimeDelta,
) -> StoredEvent {
    if !shift.is_zero() {
        if let Some(obj) = record.as_object_mut() {
            obj.insert(
                "eventTime".into(),
                Value::String(time.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            );
        }
    }
    let s = |k: &str| record.get(k).and_then(Value::as_str).map(str::to_string);
    let identity = record.get("userIdentity");
    let access_key_id = identity
        .and_then(|i| i.get("accessKeyId"))
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .map(str::to_string);
    let read_only = match record.get("readOnly") {
        Some(Value::Bool(true)) => Some("true"),
        Some(Value::Bool(false)) => Some("false"),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Some("true"),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Some("false"),
        _ => None,
    };
    let resources = record
        .get("resources")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    let f = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
                    (f("type"), f("ARN").or_else(|| f("arn")))
                })
                .collect()
        })
        .unwrap_or_default();
    StoredEvent {
        event_name: s("eventName"),
        event_source: s("eventSource"),
        insight: record.get("eventCategory").and_then(Value::as_str) == Some("Insight"),
        read_only,
        username: identity.and_then(username),
        access_key_id,
        resources,
        cloudtrail_event: record.to_string(),
        id,
        time,
    }
}

/// The `Username` LookupEvents shows for a `userIdentity` (see the module docs).
fn username(identity: &Value) -> Option<String> {
    let s = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|x| !x.is_empty())
            .map(str::to_string)
    };
    let user_name = s(identity.get("userName"));
    let arn = s(identity.get("arn"));
    let arn_tail = arn
        .as_deref()
        .and_then(|a| a.rsplit('/').next())
        .filter(|t| !t.is_empty() && !t.starts_with("arn:"))
        .map(str::to_string);
    let issuer = s(identity.pointer("/sessionContext/sessionIssuer/userName"));
    match identity.get("type").and_then(Value::as_str) {
        Some("Root") => Some("root".into()),
        Some("IAMUser") => user_name.or(arn_tail),
        Some("AssumedRole") => arn_tail
            .or_else(|| {
                s(identity.get("principalId"))
                    .and_then(|p| p.split_once(':').map(|(_, session)| session.to_string()))
            })
            .or(issuer)
            .or(user_name),
        Some("FederatedUser") => arn_tail.or(issuer).or(user_name),
        Some("AWSService") => s(identity.get("invokedBy")).or(user_name),
        _ => user_name
            .or(issuer)
            .or(arn_tail)
            .or_else(|| s(identity.get("invokedBy"))),
    }
}

fn epoch_seconds(t: DateTime<Utc>) -> Value {
    let ms = t.timestamp_millis();
    if ms % 1000 == 0 {
        Value::from(ms / 1000)
    } else {
        Value::from(ms as f64 / 1000.0)
    }
}

fn region_from_authorization(authorization: Option<&str>) -> String {
    authorization
        .and_then(|a| {
            let rest = &a[a.find("Credential=")? + "Credential=".len()..];
            let scope = rest.split([',', ' ']).next()?;
            let region = scope.split('/').nth(2)?;
            (!region.is_empty()).then(|| region.to_string())
        })
        .unwrap_or_else(|| DEFAULT_REGION.to_string())
}

fn parse_attribute(v: Option<&Value>) -> Result<Option<(String, String)>, LookupError> {
    let list = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(list)) => list,
        Some(_) => {
            return Err(LookupError::InvalidLookupAttributes(
                "LookupAttributes must be a list".into(),
            ))
        }
    };
    if list.len() > 1 {
        return Err(LookupError::InvalidLookupAttributes(
            "You cannot specify more than one lookup attribute.".into(),
        ));
    }
    let Some(item) = list.first() else {
        return Ok(None);
    };
    let key = item.get("AttributeKey").and_then(Value::as_str);
    let value = item.get("AttributeValue").and_then(Value::as_str);
    match (key, value) {
        (Some(k), Some(v)) if ATTRIBUTE_KEYS.contains(&k) && !v.is_empty() => {
            Ok(Some((k.to_string(), v.to_string())))
        }
        (Some(k), Some(_)) if ATTRIBUTE_KEYS.contains(&k) => Err(
            LookupError::InvalidLookupAttributes("AttributeValue must not be empty.".into()),
        ),
        (Some(k), _) if !ATTRIBUTE_KEYS.contains(&k) => {
            Err(LookupError::InvalidLookupAttributes(format!(
                "Invalid AttributeKey {k:?}; valid keys are {}.",
                ATTRIBUTE_KEYS.join(", ")
            )))
        }
        _ => Err(LookupError::InvalidLookupAttributes(
            "A lookup attribute needs an AttributeKey and an AttributeValue.".into(),
        )),
    }
}

fn parse_time(v: Option<&Value>, name: &str) -> Result<Option<DateTime<Utc>>, LookupError> {
    let invalid = || LookupError::InvalidTimeRange(format!("{name} is not a valid timestamp"));
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let secs = n.as_f64().ok_or_else(invalid)?;
            if !secs.is_finite() {
                return Err(invalid());
            }
            let ms = (secs * 1000.0).round();
            if ms.abs() > 8.0e15 {
                return Err(invalid());
            }
            Utc.timestamp_millis_opt(ms as i64)
                .single()
                .map(Some)
                .ok_or_else(invalid)
        }
        Some(Value::String(s)) => {
            if let Ok(secs) = s.parse::<f64>() {
                return parse_time(Some(&Value::from(secs)), name);
            }
            DateTime::parse_from_rfc3339(s)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|_| invalid())
        }
        Some(_) => Err(invalid()),
    }
}

fn parse_max_results(v: Option<&Value>) -> Result<usize, LookupError> {
    match v {
        None | Some(Value::Null) => Ok(MAX_RESULTS),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(m) if (1..=MAX_RESULTS as u64).contains(&m) => Ok(m as usize),
            _ => Err(LookupError::InvalidMaxResults(format!(
                "MaxResults must be between 1 and {MAX_RESULTS}, got {n}"
            ))),
        },
        Some(other) => Err(LookupError::InvalidMaxResults(format!(
            "MaxResults must be a number, got {other}"
        ))),
    }
}

fn fingerprint(
    region: &str,
    attribute: Option<&(String, String)>,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    insight: bool,
) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    region.hash(&mut h);
    attribute.hash(&mut h);
    start.map(|t| t.timestamp_millis()).hash(&mut h);
    end.map(|t| t.timestamp_millis()).hash(&mut h);
    insight.hash(&mut h);
    h.finish()
}

fn encode_token(fingerprint: u64, time: DateTime<Utc>, id: &str) -> String {
    let plain = format!(
        "v1|{fingerprint:016x}|{}|{}|{id}",
        time.timestamp(),
        time.timestamp_subsec_nanos()
    );
    plain.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(token: &str, fingerprint: u64) -> Result<(DateTime<Utc>, String), LookupError> {
    let invalid = || LookupError::InvalidNextToken("Invalid NextToken".into());
    if !token.len().is_multiple_of(2) || !token.is_ascii() {
        return Err(invalid());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| invalid())?;
    let plain = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = plain.splitn(5, '|');
    let (Some("v1"), Some(fp), Some(secs), Some(nanos), Some(id)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(invalid());
    };
    if u64::from_str_radix(fp, 16).map_err(|_| invalid())? != fingerprint {
        return Err(LookupError::InvalidNextToken(
            "NextToken was issued for a request with different parameters".into(),
        ));
    }
    let secs: i64 = secs.parse().map_err(|_| invalid())?;
    let nanos: u32 = nanos.parse().map_err(|_| invalid())?;
    let time = Utc
        .timestamp_opt(secs, nanos)
        .single()
        .ok_or_else(invalid)?;
    Ok((time, id.to_string()))
}

#[cfg(test)]
mod tests;
