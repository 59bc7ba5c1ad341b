//! The local stack's gateway: one HTTP endpoint on `127.0.0.1:<os-chosen port>` that moto's
//! Step Functions engine, the CLI and the tests all talk to.
//!
//! Routing, in order:
//! - `GET /_iamtrail/health` → `200 ok`;
//! - requests whose `X-Amz-Target` starts with
//!   `com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.` (botocore) or
//!   `CloudTrail_20131101.` (AWS SDK for Rust) → the [`CloudTrailEmulator`]
//!   (when one is configured; only `LookupEvents` is supported);
//! - `POST /2015-03-31/functions/{name}/invocations` (Lambda `Invoke`; `{name}` may be a plain
//!   name, `name:qualifier`, a partial ARN or a full ARN, URL-encoded) → the [`LambdaHandler`]
//!   (when one is configured), answered like Lambda;
//! - everything else → proxied verbatim to the upstream (moto): method, path and query, headers
//!   (minus hop-by-hop ones and `Host`), body; the status, headers and body come back.
//!
//! The upstream can be set after start ([`Gateway::set_upstream`]) so that moto can be started
//! with `MOTO_PORT` set to the gateway's port first (see the crate docs).
//!
//! # Fault injection and counters
//!
//! Every request is counted per (service, operation) ([`Gateway::request_counts`]): the
//! service is the SigV4 signing name of the `Authorization` header's credential scope
//! (`dynamodb`, `sns`, `s3`, `states`, `lambda`, ...), the operation comes from `X-Amz-Target`
//! (JSON protocols), `Action=` (query protocol: SNS, EC2), or the REST shape of the request (S3,
//! path-style only: `PutObject`, `UploadPart`, `CompleteMultipartUpload`, ...).
//!
//! A [`FaultPlan`] ([`Gateway::set_fault_plan`]) makes proxied requests fail the way the real
//! service fails, with its real status, error code and body shape. Everything is off by
//! default:
//! - DynamoDB `BatchWriteItem` answering with part of the request in `UnprocessedItems`
//!   ([`UnprocessedItemsFault`], which moto never does): only the other items reach moto;
//! - DynamoDB `BatchWriteItem`/`PutItem` rejected whole with `ValidationException` when an item
//!   has a given attribute value ([`InvalidItemFault`]);
//! - SNS `Publish` slowed down, or failing with HTTP 500 `InternalError` for messages whose
//!   subject or body matches;
//! - S3 `UploadPart` failing for a given part number ([`UploadPartFault`]),
//!   `CompleteMultipartUpload` or `PutObject` failing for matching keys (HTTP 500
//!   `InternalError`);
//! - the legacy substring rule: any request whose `X-Amz-Target` or body contains a string
//!   answers HTTP 500 `InternalError` ([`FaultPlan::fail_matching`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::cloudtrail::{cloudtrail_operation, CloudTrailEmulator, CONTENT_TYPE as AMZ_JSON_11};

/// The future a [`LambdaHandler`] returns.
pub type InvokeFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, FunctionError>> + Send + 'a>>;

/// A function error, answered like Lambda's unhandled errors (`X-Amz-Function-Error:
/// Unhandled`, body `{"errorType", "errorMessage"}`). Step Functions uses `error_type` as the
/// error name that `Retry`/`Catch` match.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {error_message}")]
pub struct FunctionError {
    /// The error name, which Step Functions `Retry`/`Catch` match (e.g. `CollectError`).
    pub error_type: String,
    /// A human-readable message.
    pub error_message: String,
}

impl FunctionError {
    /// A function error of `error_type` with `error_message`.
    pub fn new(error_type: impl Into<String>, error_message: impl Into<String>) -> Self {
        FunctionError {
            error_type: error_type.into(),
            error_message: error_message.into(),
        }
    }
}

/// The in-process implementation of the Lambda functions the gateway serves.
pub trait LambdaHandler: Send + Sync + 'static {
    /// Whether a function of this (plain) name exists; unknown names answer 404.
    fn has_function(&self, function_name: &str) -> bool;

    /// Runs the function `function_name` (the plain name, never an ARN) on `payload`.
    fn invoke<'a>(&'a self, function_name: &'a str, payload: Value) -> InvokeFuture<'a>;
}

type BoxedFn = Arc<
    dyn Fn(Value) -> Pin<Box<dyn Future<Output = Result<Value, FunctionError>> + Send>>
        + Send
        + Sync,
>;

/// A [`LambdaHandler`] made of named async closures.
#[derive(Clone, Default)]
pub struct LambdaRegistry {
    functions: HashMap<String, BoxedFn>,
}

impl LambdaRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the function `name`.
    pub fn with<F, Fut>(mut self, name: impl Into<String>, f: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, FunctionError>> + Send + 'static,
    {
        let f: BoxedFn = Arc::new(move |payload| Box::pin(f(payload)));
        self.functions.insert(name.into(), f);
        self
    }

    /// The registered function names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.functions.keys().cloned().collect();
        names.sort();
        names
    }
}

impl fmt::Debug for LambdaRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LambdaRegistry")
            .field("functions", &self.names())
            .finish()
    }
}

impl LambdaHandler for LambdaRegistry {
    fn has_function(&self, function_name: &str) -> bool {
        self.functions.contains_key(function_name)
    }

    fn invoke<'a>(&'a self, function_name: &'a str, payload: Value) -> InvokeFuture<'a> {
        match self.functions.get(function_name) {
            Some(f) => f(payload),
            None => Box::pin(async move {
                Err(FunctionError::new(
                    "ResourceNotFoundException",
                    format!("Function not found: {function_name}"),
                ))
            }),
        }
    }
}

/// What the gateway serves.
#[derive(Clone, Default)]
pub struct GatewayConfig {
    /// Base URL of moto (e.g. `http://127.0.0.1:5123`); may be set later with
    /// [`Gateway::set_upstream`].
    pub upstream: Option<String>,
    /// The Lambda functions; `None` proxies Lambda calls to the upstream.
    pub lambda: Option<Arc<dyn LambdaHandler>>,
    /// The CloudTrail emulator; `None` proxies CloudTrail calls to the upstream.
    pub cloudtrail: Option<Arc<CloudTrailEmulator>>,
}

impl fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("upstream", &self.upstream)
            .field("lambda", &self.lambda.is_some())
            .field("cloudtrail", &self.cloudtrail)
            .finish()
    }
}

/// A gateway error.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The listener could not be bound.
    #[error("cannot bind the gateway on 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    /// The proxy's HTTP client could not be built.
    #[error("cannot build the gateway's HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Which text (an SNS subject or message, an S3 key) a fault applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TextMatch {
    /// Every text.
    Any,
    /// Texts containing this string (case-sensitive).
    Contains(String),
}

impl TextMatch {
    /// Texts containing `pattern`.
    pub fn contains(pattern: impl Into<String>) -> Self {
        TextMatch::Contains(pattern.into())
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        match self {
            TextMatch::Any => true,
            TextMatch::Contains(p) => text.contains(p.as_str()),
        }
    }
}

/// DynamoDB `BatchWriteItem` answered with part of its items in `UnprocessedItems`, as DynamoDB
/// does when a partition is throttled. A request that is cut short forwards only the other
/// write requests to moto and returns the kept-back ones, unchanged, in the response's
/// `UnprocessedItems` (`{"UnprocessedItems":{"<table>":[{"PutRequest":{"Item":...}}]}}`),
/// merged with whatever moto itself left unprocessed. When every item is kept back, moto is not
/// called at all.
///
/// Deterministic: the decision for the k-th matching request since the plan was set, and the
/// items kept back, come from a generator seeded with `seed` and k. With concurrent writers
/// the order of the requests (and so which request is cut) depends on scheduling; the
/// counters ([`Gateway::injected`]) say what happened.
#[derive(Clone, Debug, PartialEq)]
pub struct UnprocessedItemsFault {
    /// Seed of the generator.
    pub seed: u64,
    /// Probability (0.0 to 1.0) that a matching request is cut short.
    pub probability: f64,
    /// Fraction of a cut request's write requests kept back, rounded up: at least one, at most
    /// all of them (1.0 keeps everything back).
    pub fraction: f64,
    /// At most this many requests are cut short (`None`: no limit).
    pub max_batches: Option<u64>,
    /// Only requests writing to this table (`None`: any table). With a table set, only that
    /// table's write requests are kept back.
    pub table: Option<String>,
}

impl UnprocessedItemsFault {
    /// Every other request (probability 0.5) cut short by half its items, no limit, any table.
    pub fn new(seed: u64) -> Self {
        UnprocessedItemsFault {
            seed,
            probability: 0.5,
            fraction: 0.5,
            max_batches: None,
            table: None,
        }
    }

    /// Sets [`Self::probability`].
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = p;
        self
    }

    /// Sets [`Self::fraction`].
    pub fn fraction(mut self, f: f64) -> Self {
        self.fraction = f;
        self
    }

    /// Sets [`Self::max_batches`].
    pub fn max_batches(mut self, n: u64) -> Self {
        self.max_batches = Some(n);
        self
    }

    /// Sets [`Self::table`].
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = Some(table.into());
        self
    }
}

/// The message of an injected `ValidationException` unless one is given.
pub const DEFAULT_VALIDATION_MESSAGE: &str =
    "One or more parameter values were invalid: An AttributeValue may not contain an empty string";

/// DynamoDB rejecting a poison item: a `BatchWriteItem` with a `PutRequest` (or a `PutItem`)
/// whose item has the attribute `attribute` with the string or number value `equals` is
/// answered, whole, `400 {"__type":"com.amazon.coral.validate#ValidationException",
/// "message":"One or more parameter values were invalid: ..."}`, as DynamoDB answers a batch
/// holding an invalid item. Nothing of that request reaches moto.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidItemFault {
    /// The attribute name, e.g. `event_id`.
    pub attribute: String,
    /// The value (of an `S` or `N` attribute) that makes the item invalid.
    pub equals: String,
    /// Only items written to this table (`None`: any table).
    pub table: Option<String>,
    /// The exception's message (defaults to [`DEFAULT_VALIDATION_MESSAGE`]).
    pub message: String,
}

impl InvalidItemFault {
    /// Items whose `attribute` equals `value`, in any table.
    pub fn new(attribute: impl Into<String>, value: impl Into<String>) -> Self {
        InvalidItemFault {
            attribute: attribute.into(),
            equals: value.into(),
            table: None,
            message: DEFAULT_VALIDATION_MESSAGE.to_string(),
        }
    }

    /// Sets [`Self::table`].
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = Some(table.into());
        self
    }
}

/// S3 `UploadPart` failing with HTTP 500 `InternalError` for one part number, as a crash
/// between two parts of a multipart upload would leave it. The AWS SDKs retry a 500, so with
/// `times: None` (every attempt fails) the upload really fails; `times: Some(1)` fails only the
/// first attempt, which the SDK's retry absorbs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadPartFault {
    /// The part number (1-based, the `partNumber` query parameter) that fails.
    pub part_number: u32,
    /// Only objects whose key matches.
    pub key: TextMatch,
    /// At most this many failures (`None`: every attempt fails).
    pub times: Option<u64>,
}

impl UploadPartFault {
    /// Every attempt at part `part_number` of any object fails.
    pub fn new(part_number: u32) -> Self {
        UploadPartFault {
            part_number,
            key: TextMatch::Any,
            times: None,
        }
    }
}

/// The faults the gateway injects into proxied requests (see the module docs). The default
/// injects nothing. Set with [`Gateway::set_fault_plan`], which restarts the plan's counters
/// (the k of [`UnprocessedItemsFault`], its `max_batches`, [`UploadPartFault::times`]), or
/// change with [`Gateway::update_fault_plan`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultPlan {
    /// Requests whose `X-Amz-Target` header or body contains one of these strings answer HTTP
    /// 500 `InternalError` (query-protocol XML) without reaching moto. Broad: prefer the typed
    /// faults.
    pub fail_matching: Vec<String>,
    /// DynamoDB `BatchWriteItem` leaving items unprocessed.
    pub dynamodb_unprocessed: Option<UnprocessedItemsFault>,
    /// DynamoDB rejecting batches (and `PutItem`s) that hold one of these items.
    pub dynamodb_invalid_items: Vec<InvalidItemFault>,
    /// Every SNS `Publish` waits this long before it is forwarded (or failed).
    pub sns_publish_delay: Option<Duration>,
    /// SNS `Publish` requests whose `Subject` or `Message` matches answer HTTP 500
    /// `InternalError`.
    pub sns_publish_fail: Option<TextMatch>,
    /// S3 `UploadPart` failing for one part number.
    pub s3_upload_part_fail: Option<UploadPartFault>,
    /// S3 `CompleteMultipartUpload` for matching keys answers HTTP 500 `InternalError` (the
    /// parts stay uploaded, the object does not appear).
    pub s3_complete_multipart_fail: Option<TextMatch>,
    /// S3 `PutObject` for matching keys answers HTTP 500 `InternalError`.
    pub s3_put_object_fail: Option<TextMatch>,
}

impl FaultPlan {
    /// Whether the plan injects anything.
    pub fn is_empty(&self) -> bool {
        *self == FaultPlan::default()
    }
}

/// Requests seen by the gateway for one (service, operation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OperationCount {
    /// Requests received (injected failures and cut-short batches included).
    pub requests: u64,
    /// Requests a fault was injected into (failed, or `BatchWriteItem`s cut short).
    pub injected: u64,
}

/// Request counters by (service, operation), e.g. `("dynamodb", "BatchWriteItem")`,
/// `("sns", "Publish")`, `("s3", "UploadPart")`, `("cloudtrail", "LookupEvents")`,
/// `("lambda", "Invoke")`.
pub type RequestCounts = BTreeMap<(String, String), OperationCount>;

#[derive(Default)]
struct FaultState {
    plan: FaultPlan,
    /// `BatchWriteItem` requests the unprocessed-items fault considered.
    batch_seq: u64,
    /// Requests it cut short.
    batches_cut: u64,
    /// `UploadPart` failures injected.
    parts_failed: u64,
}

/// SplitMix64: a tiny, good-enough generator for deterministic fault decisions.
struct SplitMix(u64);

impl SplitMix {
    fn new(seed: u64, k: u64) -> Self {
        let mut g = SplitMix(seed ^ k.wrapping_mul(0xA076_1D64_78BD_642F));
        g.next_u64();
        g
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

struct GatewayState {
    upstream: RwLock<Option<String>>,
    /// Failure injection for proxied requests, with its own counters.
    faults: Mutex<FaultState>,
    /// Requests by (service, operation).
    counts: Mutex<RequestCounts>,
    /// Billable usage (crate::usage, for docs/cost.md).
    usage: crate::usage::Usage,
    lambda: Option<Arc<dyn LambdaHandler>>,
    cloudtrail: Option<Arc<CloudTrailEmulator>>,
    client: reqwest::Client,
}

/// A running gateway. Shut it down with [`Gateway::shutdown`]; dropping it also stops it.
pub struct Gateway {
    addr: SocketAddr,
    state: Arc<GatewayState>,
    shutdown_tx: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream())
            .finish()
    }
}

impl Gateway {
    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime.
    pub async fn start(config: GatewayConfig) -> Result<Gateway, GatewayError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(GatewayError::Bind)?;
        let addr = listener.local_addr().map_err(GatewayError::Bind)?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(GatewayError::Client)?;
        let state = Arc::new(GatewayState {
            upstream: RwLock::new(config.upstream.map(normalise_upstream)),
            faults: Mutex::new(FaultState::default()),
            counts: Mutex::new(RequestCounts::new()),
            usage: crate::usage::Usage::default(),
            lambda: config.lambda,
            cloudtrail: config.cloudtrail,
            client,
        });
        let app = Router::new().fallback(dispatch).with_state(state.clone());
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = shutdown_rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!("gateway server stopped: {e}");
            }
        });
        tracing::debug!(%addr, "gateway listening");
        Ok(Gateway {
            addr,
            state,
            shutdown_tx: Some(shutdown_tx),
            task: Some(task),
        })
    }

    /// The bound address (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port (what moto gets as `MOTO_PORT`).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:port`, the endpoint URL for AWS clients.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets (or changes) the upstream base URL everything unrouted is proxied to.
    pub fn set_upstream(&self, upstream: impl Into<String>) {
        *self
            .state
            .upstream
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(normalise_upstream(upstream.into()));
    }

    /// Failure injection for tests: every proxied request whose `X-Amz-Target` header or body
    /// contains one of `patterns` (e.g. `Action=Publish`) is answered with HTTP 500
    /// `InternalError`, as a failing AWS service would. An empty list turns it off. Only
    /// [`FaultPlan::fail_matching`] changes; the rest of the plan is kept.
    pub fn set_faults(&self, patterns: Vec<String>) {
        self.update_fault_plan(|plan| plan.fail_matching = patterns);
    }

    /// Replaces the fault plan (and restarts its counters); [`FaultPlan::default`] turns every
    /// fault off.
    pub fn set_fault_plan(&self, plan: FaultPlan) {
        *lock(&self.state.faults) = FaultState {
            plan,
            ..FaultState::default()
        };
    }

    /// Changes the fault plan in place. Only the faults that change restart their counters
    /// (the decision sequence and `max_batches` of [`UnprocessedItemsFault`], the `times` of
    /// [`UploadPartFault`]).
    pub fn update_fault_plan(&self, change: impl FnOnce(&mut FaultPlan)) {
        let mut faults = lock(&self.state.faults);
        let mut plan = faults.plan.clone();
        change(&mut plan);
        if plan.dynamodb_unprocessed != faults.plan.dynamodb_unprocessed {
            faults.batch_seq = 0;
            faults.batches_cut = 0;
        }
        if plan.s3_upload_part_fail != faults.plan.s3_upload_part_fail {
            faults.parts_failed = 0;
        }
        faults.plan = plan;
    }

    /// The current fault plan.
    pub fn fault_plan(&self) -> FaultPlan {
        lock(&self.state.faults).plan.clone()
    }

    /// Every request received so far, by (service, operation).
    pub fn request_counts(&self) -> RequestCounts {
        lock(&self.state.counts).clone()
    }

    /// Requests received for `service` (the SigV4 signing name, e.g. `dynamodb`, `sns`, `s3`)
    /// and `operation` (e.g. `BatchWriteItem`, `Publish`, `UploadPart`).
    pub fn requests(&self, service: &str, operation: &str) -> u64 {
        self.count(service, operation).requests
    }

    /// Requests of `service`/`operation` a fault was injected into.
    pub fn injected(&self, service: &str, operation: &str) -> u64 {
        self.count(service, operation).injected
    }

    fn count(&self, service: &str, operation: &str) -> OperationCount {
        lock(&self.state.counts)
            .get(&(service.to_string(), operation.to_string()))
            .copied()
            .unwrap_or_default()
    }

    /// Billable usage by (service, operation, resource) (crate::usage).
    pub fn usage(&self) -> &crate::usage::Usage {
        &self.state.usage
    }

    /// Sets every request counter back to zero.
    pub fn reset_counts(&self) {
        lock(&self.state.counts).clear();
    }

    /// The current upstream base URL.
    pub fn upstream(&self) -> Option<String> {
        self.state
            .upstream
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops accepting connections, lets in-flight requests finish (at most 10 s) and waits.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(10), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn normalise_upstream(s: String) -> String {
    s.trim_end_matches('/').to_string()
}

const LAMBDA_PREFIX: &str = "/2015-03-31/functions/";
const LAMBDA_SUFFIX: &str = "/invocations";

async fn dispatch(State(state): State<Arc<GatewayState>>, req: Request) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    let (route, response) = if path == "/_iamtrail/health" && method == Method::GET {
        ("health", (StatusCode::OK, "ok").into_response())
    } else if let (Some(t), Some(emulator)) = (
        target
            .as_deref()
            .filter(|t| cloudtrail_operation(t).is_some()),
        state.cloudtrail.as_ref(),
    ) {
        state.record("cloudtrail", cloudtrail_operation(t).unwrap_or(t), false);
        (
            "cloudtrail",
            cloudtrail(emulator.clone(), t.to_string(), req).await,
        )
    } else if let (Some(raw), Some(handler), true) = (
        path.strip_prefix(LAMBDA_PREFIX)
            .and_then(|p| p.strip_suffix(LAMBDA_SUFFIX)),
        state.lambda.as_ref(),
        method == Method::POST,
    ) {
        let name = function_name(&percent_decode_str(raw).decode_utf8_lossy());
        state.record("lambda", "Invoke", false);
        let invoked = Instant::now();
        let response = lambda(handler.clone(), name.clone(), req).await;
        state.usage.lambda_invoked(&name, invoked.elapsed());
        ("lambda", response)
    } else {
        ("proxy", proxy(&state, req).await)
    };
    tracing::debug!(
        %method,
        path,
        target = target.as_deref().unwrap_or(""),
        route,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "gateway request"
    );
    response
}

async fn read_body(req: Request) -> Result<Bytes, Response> {
    axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("cannot read request body: {e}"),
            )
                .into_response()
        })
}

fn aws_error(status: StatusCode, error_type: &str, message: &str, content_type: &str) -> Response {
    let body = json!({"__type": error_type, "message": message}).to_string();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header("x-amzn-ErrorType", error_type)
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn cloudtrail(emulator: Arc<CloudTrailEmulator>, target: String, req: Request) -> Response {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let answer = emulator.handle_request(&target, authorization.as_deref(), &body);
    let mut builder = Response::builder()
        .status(answer.status)
        .header(header::CONTENT_TYPE, AMZ_JSON_11);
    if let Some(t) = answer.error_type {
        builder = builder.header("x-amzn-ErrorType", t);
    }
    builder
        .body(Body::from(answer.body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The plain function name of `NAME`, `NAME:QUALIFIER`, `ACCOUNT:function:NAME[:QUALIFIER]` or
/// `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`.
fn function_name(raw: &str) -> String {
    let rest = match raw.find(":function:") {
        Some(i) => &raw[i + ":function:".len()..],
        None => raw,
    };
    rest.split(':').next().unwrap_or(rest).to_string()
}

fn lambda_json(status: StatusCode, body: Vec<u8>, function_error: bool) -> Response {
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header("X-Amz-Executed-Version", "$LATEST");
    if function_error {
        builder = builder.header("X-Amz-Function-Error", "Unhandled");
    }
    builder
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn run_function(
    handler: Arc<dyn LambdaHandler>,
    name: String,
    payload: Value,
) -> Result<Value, FunctionError> {
    let task = tokio::spawn(async move { handler.invoke(&name, payload).await });
    match task.await {
        Ok(result) => result,
        Err(e) if e.is_panic() => {
            let panic = e.into_panic();
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(FunctionError::new(
                "Runtime.ExitError",
                format!("function panicked: {message}"),
            ))
        }
        Err(e) => Err(FunctionError::new(
            "Runtime.ExitError",
            format!("function task failed: {e}"),
        )),
    }
}

async fn lambda(handler: Arc<dyn LambdaHandler>, name: String, req: Request) -> Response {
    const JSON: &str = "application/json";
    if !handler.has_function(&name) {
        return aws_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {name}"),
            JSON,
        );
    }
    let invocation_type = req
        .headers()
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse")
        .to_string();
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let payload = if body.iter().all(|b| b.is_ascii_whitespace()) {
        json!({})
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => v,
            Err(e) => {
                return aws_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContentException",
                    &format!("Could not parse request body into json: {e}"),
                    JSON,
                )
            }
        }
    };
    match invocation_type.as_str() {
        "DryRun" => return StatusCode::NO_CONTENT.into_response(),
        "Event" => {
            tokio::spawn(async move {
                if let Err(e) = run_function(handler, name.clone(), payload).await {
                    tracing::warn!(function = name, "asynchronous invocation failed: {e}");
                }
            });
            return StatusCode::ACCEPTED.into_response();
        }
        _ => {}
    }
    match run_function(handler, name, payload).await {
        Ok(v) => lambda_json(StatusCode::OK, v.to_string().into_bytes(), false),
        Err(e) => {
            let body = json!({"errorType": e.error_type, "errorMessage": e.error_message});
            lambda_json(StatusCode::OK, body.to_string().into_bytes(), true)
        }
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

async fn proxy(state: &GatewayState, req: Request) -> Response {
    let Some(upstream) = state
        .upstream
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
    else {
        return (
            StatusCode::BAD_GATEWAY,
            "iamtrail gateway: no upstream (moto) configured yet",
        )
            .into_response();
    };
    let method = req.method().clone();
    let uri = req.uri().clone();
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut headers = HeaderMap::new();
    for (name, value) in req.headers() {
        if is_hop_by_hop(name)
            || name == header::HOST
            || name == header::CONTENT_LENGTH
            || name == header::EXPECT
        {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let request = AwsRequest::new(&method, &uri, &headers, &body);
    let decision = decide(state, &request);
    state.record(&request.service, &request.operation, decision.injected);
    let counted = (
        request.service.clone(),
        request.operation.clone(),
        body.clone(),
    );
    if let Some(delay) = decision.delay {
        tokio::time::sleep(delay).await;
    }
    let (body, kept_back) = match decision.action {
        Action::Forward => (body, None),
        Action::Respond(response) => {
            tracing::debug!(
                service = request.service,
                operation = request.operation,
                status = response.status().as_u16(),
                "gateway: injected failure"
            );
            return response;
        }
        Action::Cut { body: None, kept } => {
            // Every item kept back: DynamoDB processed nothing and moto is not called.
            return dynamodb_json(StatusCode::OK, &json!({ "UnprocessedItems": kept }));
        }
        Action::Cut {
            body: Some(body),
            kept,
        } => (body, Some(kept)),
    };
    let url = format!("{upstream}{path_and_query}");
    let sent = state
        .client
        .request(method.clone(), &url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let upstream_response = match sent {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%method, url, "gateway proxy error: {e}");
            return (
                StatusCode::BAD_GATEWAY,
                format!("iamtrail gateway: upstream {upstream} failed: {e}"),
            )
                .into_response();
        }
    };
    let status = upstream_response.status();
    let mut response_headers = HeaderMap::new();
    let keep_length = method == Method::HEAD || status == StatusCode::NOT_MODIFIED;
    for (name, value) in upstream_response.headers() {
        if is_hop_by_hop(name) || (name == header::CONTENT_LENGTH && !keep_length) {
            continue;
        }
        response_headers.append(name.clone(), value.clone());
    }
    let mut bytes = match upstream_response.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("iamtrail gateway: reading the upstream body failed: {e}"),
            )
                .into_response()
        }
    };
    if let (Some(kept), true) = (kept_back, status == StatusCode::OK) {
        match merge_unprocessed(&bytes, kept) {
            Some(merged) => {
                if response_headers.contains_key("x-amz-crc32") {
                    response_headers.insert("x-amz-crc32", crc32_header(&merged));
                }
                bytes = merged;
            }
            None => tracing::warn!("gateway: moto's BatchWriteItem answer is not a JSON object"),
        }
    }
    let (service, operation, sent) = &counted;
    state
        .usage
        .proxied(
            &state.client,
            &upstream,
            service,
            operation,
            uri.path(),
            sent,
            status.as_u16(),
            &bytes,
        )
        .await;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    response
}

/// What the gateway knows of a proxied AWS request.
struct AwsRequest<'a> {
    /// SigV4 signing name (`dynamodb`, `sns`, `s3`, ...), `unknown` for unsigned requests.
    service: String,
    /// The API operation (`BatchWriteItem`, `Publish`, `UploadPart`, ...), the HTTP method
    /// when unknown.
    operation: String,
    target: &'a str,
    query: Vec<(String, String)>,
    /// S3 (path-style): the object key, empty for bucket-level requests.
    s3_key: String,
    body: &'a Bytes,
}

impl<'a> AwsRequest<'a> {
    fn new(method: &Method, uri: &Uri, headers: &'a HeaderMap, body: &'a Bytes) -> Self {
        let target = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let query = form_pairs(uri.query().unwrap_or(""));
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let service = signing_service(authorization, &query)
            .or_else(|| service_of_target(target))
            .unwrap_or_else(|| "unknown".into());
        let path = uri.path().trim_start_matches('/');
        let s3_key = path
            .split_once('/')
            .map(|(_, key)| percent_decode_str(key).decode_utf8_lossy().into_owned())
            .unwrap_or_default();
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.contains("x-www-form-urlencoded"))
            || body.starts_with(b"Action=");
        let operation = if let Some((_, op)) = target.rsplit_once('.') {
            op.to_string()
        } else if let Some(action) = pair(&query, "Action") {
            action.to_string()
        } else if let Some(action) = is_form.then(|| form_value(body, "Action")).flatten() {
            action
        } else if service == "s3" {
            s3_operation(method, path, &query, headers, !s3_key.is_empty())
        } else {
            method.as_str().to_string()
        };
        AwsRequest {
            service,
            operation,
            target,
            query,
            s3_key,
            body,
        }
    }

    fn is(&self, service: &str, operation: &str) -> bool {
        self.service == service && self.operation == operation
    }
}

/// `(name, value)` pairs of a query string or form body, decoded.
fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let decode = |s: &str| {
                percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}

fn pair<'p>(pairs: &'p [(String, String)], name: &str) -> Option<&'p str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A field of an `application/x-www-form-urlencoded` body (query protocol: SNS, EC2).
fn form_value(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    form_pairs(text)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// The signing name of a SigV4 `Authorization` header's (or presigned URL's) credential scope:
/// `Credential=AKID/20240101/us-east-1/dynamodb/aws4_request`.
fn signing_service(authorization: Option<&str>, query: &[(String, String)]) -> Option<String> {
    let scope = match authorization {
        Some(a) => {
            let start = a.find("Credential=")? + "Credential=".len();
            a[start..].split([',', ' ']).next()?.to_string()
        }
        None => pair(query, "X-Amz-Credential")?.to_string(),
    };
    let parts: Vec<&str> = scope.split('/').collect();
    (parts.len() >= 5 && !parts[3].is_empty()).then(|| parts[3].to_string())
}

/// The service of an `X-Amz-Target` prefix, for unsigned requests.
fn service_of_target(target: &str) -> Option<String> {
    let (prefix, _) = target.rsplit_once('.')?;
    let service = match prefix {
        p if p.starts_with("DynamoDB_") => "dynamodb",
        p if p.starts_with("AWSStepFunctions") => "states",
        p if p.contains("CloudTrail_") => "cloudtrail",
        p if p.starts_with("AmazonSQS") => "sqs",
        p if p.starts_with("AmazonAthena") => "athena",
        p if p.starts_with("AWSGlue") => "glue",
        p => return Some(p.to_ascii_lowercase()),
    };
    Some(service.to_string())
}

/// The S3 operation of a path-style REST request.
fn s3_operation(
    method: &Method,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    has_key: bool,
) -> String {
    if let Some(id) = pair(query, "x-id") {
        return id.to_string();
    }
    let has = |name: &str| query.iter().any(|(k, _)| k == name);
    let copy = headers.contains_key("x-amz-copy-source");
    let op = match *method {
        Method::PUT if has("uploadId") && has("partNumber") => {
            if copy {
                "UploadPartCopy"
            } else {
                "UploadPart"
            }
        }
        Method::PUT if has_key && has("tagging") => "PutObjectTagging",
        Method::PUT if has_key => {
            if copy {
                "CopyObject"
            } else {
                "PutObject"
            }
        }
        Method::PUT if query.is_empty() => "CreateBucket",
        Method::PUT => "PutBucketConfiguration",
        Method::POST if has("uploads") => "CreateMultipartUpload",
        Method::POST if has("uploadId") => "CompleteMultipartUpload",
        Method::POST if has("delete") => "DeleteObjects",
        Method::DELETE if has("uploadId") => "AbortMultipartUpload",
        Method::DELETE if has_key => "DeleteObject",
        Method::DELETE => "DeleteBucket",
        Method::GET if has("uploadId") => "ListParts",
        Method::GET if has_key => "GetObject",
        Method::GET if path.is_empty() => "ListBuckets",
        Method::GET if has("uploads") => "ListMultipartUploads",
        Method::GET if pair(query, "list-type") == Some("2") => "ListObjectsV2",
        Method::GET if has("location") => "GetBucketLocation",
        Method::GET if query.is_empty() || has("prefix") || has("marker") => "ListObjects",
        Method::GET => "GetBucketConfiguration",
        Method::HEAD if has_key => "HeadObject",
        Method::HEAD => "HeadBucket",
        _ => return method.as_str().to_string(),
    };
    op.to_string()
}

/// What to do with a proxied request.
enum Action {
    /// Forward it unchanged.
    Forward,
    /// Answer this (an injected failure) without reaching moto.
    Respond(Response),
    /// A `BatchWriteItem` cut short: forward `body` (`None`: nothing left to forward) and add
    /// `kept` (table → write requests) to the answer's `UnprocessedItems`.
    Cut {
        body: Option<Bytes>,
        kept: serde_json::Map<String, Value>,
    },
}

struct Decision {
    delay: Option<Duration>,
    action: Action,
    injected: bool,
}

impl GatewayState {
    fn record(&self, service: &str, operation: &str, injected: bool) {
        let mut counts = lock(&self.counts);
        let count = counts
            .entry((service.to_string(), operation.to_string()))
            .or_default();
        count.requests += 1;
        if injected {
            count.injected += 1;
        }
    }
}

/// Applies the fault plan to a request.
fn decide(state: &GatewayState, request: &AwsRequest<'_>) -> Decision {
    let mut faults = lock(&state.faults);
    let mut decision = Decision {
        delay: None,
        action: Action::Forward,
        injected: false,
    };
    if faults.plan.is_empty() {
        return decision;
    }
    let fail = |decision: &mut Decision, response: Response| {
        decision.action = Action::Respond(response);
        decision.injected = true;
    };
    if !faults.plan.fail_matching.is_empty() {
        let text = String::from_utf8_lossy(request.body);
        if faults
            .plan
            .fail_matching
            .iter()
            .any(|f| request.target.contains(f.as_str()) || text.contains(f.as_str()))
        {
            fail(&mut decision, query_internal_error());
            return decision;
        }
    }
    if request.is("dynamodb", "BatchWriteItem") || request.is("dynamodb", "PutItem") {
        let batch = request.operation == "BatchWriteItem";
        let needs_json = !faults.plan.dynamodb_invalid_items.is_empty()
            || (batch && faults.plan.dynamodb_unprocessed.is_some());
        let Some(mut doc) = needs_json
            .then(|| serde_json::from_slice::<Value>(request.body).ok())
            .flatten()
        else {
            return decision;
        };
        if let Some(rule) = faults
            .plan
            .dynamodb_invalid_items
            .iter()
            .find(|rule| holds_invalid_item(&doc, rule))
        {
            fail(&mut decision, validation_exception(&rule.message));
            return decision;
        }
        if batch {
            if let Some((body, kept)) = cut_batch(&mut faults, &mut doc) {
                decision.action = Action::Cut { body, kept };
                decision.injected = true;
            }
        }
    } else if request.is("sns", "Publish") {
        decision.delay = faults.plan.sns_publish_delay;
        if let Some(matcher) = &faults.plan.sns_publish_fail {
            let hit = matches!(matcher, TextMatch::Any)
                || ["Subject", "Message"].iter().any(|field| {
                    form_value(request.body, field).is_some_and(|text| matcher.matches(&text))
                });
            if hit {
                fail(&mut decision, query_internal_error());
            }
        }
    } else if request.is("s3", "UploadPart") {
        let part = pair(&request.query, "partNumber").and_then(|p| p.parse::<u32>().ok());
        let hit = faults.plan.s3_upload_part_fail.as_ref().is_some_and(|f| {
            Some(f.part_number) == part
                && f.key.matches(&request.s3_key)
                && f.times.is_none_or(|times| faults.parts_failed < times)
        });
        if hit {
            faults.parts_failed += 1;
            fail(&mut decision, s3_internal_error());
        }
    } else if request.is("s3", "CompleteMultipartUpload") {
        if faults
            .plan
            .s3_complete_multipart_fail
            .as_ref()
            .is_some_and(|m| m.matches(&request.s3_key))
        {
            fail(&mut decision, s3_internal_error());
        }
    } else if request.is("s3", "PutObject")
        && faults
            .plan
            .s3_put_object_fail
            .as_ref()
            .is_some_and(|m| m.matches(&request.s3_key))
    {
        fail(&mut decision, s3_internal_error());
    }
    decision
}

/// The items a DynamoDB write request puts: `(table, item)`.
fn put_items(doc: &Value) -> Vec<(&str, &Value)> {
    let mut items = Vec::new();
    if let Some(request_items) = doc.get("RequestItems").and_then(Value::as_object) {
        for (table, requests) in request_items {
            for r in requests.as_array().into_iter().flatten() {
                if let Some(item) = r.pointer("/PutRequest/Item") {
                    items.push((table.as_str(), item));
                }
            }
        }
    } else if let (Some(table), Some(item)) = (
        doc.get("TableName").and_then(Value::as_str),
        doc.get("Item"),
    ) {
        items.push((table, item));
    }
    items
}

fn holds_invalid_item(doc: &Value, rule: &InvalidItemFault) -> bool {
    put_items(doc).into_iter().any(|(table, item)| {
        rule.table.as_deref().is_none_or(|t| t == table)
            && item
                .get(&rule.attribute)
                .and_then(|v| v.get("S").or_else(|| v.get("N")))
                .and_then(Value::as_str)
                == Some(rule.equals.as_str())
    })
}

/// Applies the unprocessed-items fault to a `BatchWriteItem` document: `None` when the request
/// goes through whole, else the body to forward (`None` when nothing is left) and the write
/// requests kept back, by table.
#[allow(clippy::type_complexity)]
fn cut_batch(
    faults: &mut FaultState,
    doc: &mut Value,
) -> Option<(Option<Bytes>, serde_json::Map<String, Value>)> {
    let fault = faults.plan.dynamodb_unprocessed.clone()?;
    let request_items = doc.get_mut("RequestItems")?.as_object_mut()?;
    let candidates: Vec<(String, usize)> = request_items
        .iter()
        .filter(|(table, _)| fault.table.as_deref().is_none_or(|t| t == table.as_str()))
        .flat_map(|(table, requests)| {
            let n = requests.as_array().map_or(0, Vec::len);
            (0..n).map(move |i| (table.clone(), i))
        })
        .collect();
    if candidates.is_empty() || fault.max_batches.is_some_and(|m| faults.batches_cut >= m) {
        return None;
    }
    let k = faults.batch_seq;
    faults.batch_seq += 1;
    let mut rng = SplitMix::new(fault.seed, k);
    if rng.next_f64() >= fault.probability {
        return None;
    }
    faults.batches_cut += 1;
    let n = candidates.len();
    let keep = ((n as f64 * fault.fraction.clamp(0.0, 1.0)).ceil() as usize).clamp(1, n);
    // A partial Fisher-Yates shuffle picks which write requests are kept back.
    let mut order: Vec<usize> = (0..n).collect();
    for i in 0..keep {
        let j = i + rng.below(n - i);
        order.swap(i, j);
    }
    let mut chosen: Vec<&(String, usize)> = order[..keep].iter().map(|&i| &candidates[i]).collect();
    chosen.sort();
    let mut kept = serde_json::Map::new();
    for (table, index) in chosen.iter().rev() {
        if let Some(requests) = request_items
            .get_mut(table.as_str())
            .and_then(Value::as_array_mut)
        {
            let request = requests.remove(*index);
            let list = kept
                .entry(table.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = list {
                list.insert(0, request);
            }
        }
    }
    // DynamoDB rejects an empty request list: tables with nothing left go.
    request_items.retain(|_, requests| requests.as_array().is_some_and(|r| !r.is_empty()));
    let body = (!request_items.is_empty()).then(|| Bytes::from(doc.to_string()));
    Some((body, kept))
}

/// moto's `BatchWriteItem` answer with `kept` added to its `UnprocessedItems`.
fn merge_unprocessed(bytes: &[u8], kept: serde_json::Map<String, Value>) -> Option<Bytes> {
    let mut answer: Value = serde_json::from_slice(bytes).ok()?;
    let object = answer.as_object_mut()?;
    let unprocessed = object
        .entry("UnprocessedItems")
        .or_insert_with(|| json!({}))
        .as_object_mut()?;
    for (table, requests) in kept {
        let list = unprocessed
            .entry(table)
            .or_insert_with(|| Value::Array(Vec::new()));
        if let (Value::Array(list), Value::Array(requests)) = (list, requests) {
            list.extend(requests);
        }
    }
    Some(Bytes::from(answer.to_string()))
}

fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "IAMTRAILINJECTED{:016X}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn crc32_header(bytes: &[u8]) -> header::HeaderValue {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    header::HeaderValue::from(crc.sum())
}

/// A DynamoDB (JSON 1.0) answer, with the headers DynamoDB sends.
fn dynamodb_json(status: StatusCode, body: &Value) -> Response {
    let bytes = body.to_string().into_bytes();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/x-amz-json-1.0")
        .header("x-amzn-RequestId", request_id())
        .header("x-amz-crc32", crc32_header(&bytes))
        .body(Body::from(bytes))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// DynamoDB's answer to a request holding an invalid item.
fn validation_exception(message: &str) -> Response {
    dynamodb_json(
        StatusCode::BAD_REQUEST,
        &json!({"__type": "com.amazon.coral.validate#ValidationException", "message": message}),
    )
}

/// HTTP 500 `InternalError` of a query-protocol service (SNS, EC2).
fn query_internal_error() -> Response {
    let id = request_id();
    Response::builder()
        .status(StatusCode::INTERNAL_SERVER_ERROR)
        .header(header::CONTENT_TYPE, "text/xml")
        .header("x-amzn-RequestId", id.as_str())
        .header("x-amzn-errortype", "InternalError")
        .body(Body::from(format!(
            "<ErrorResponse><Error><Type>Receiver</Type><Code>InternalError</Code>\
             <Message>iamtrail gateway: injected failure</Message></Error>\
             <RequestId>{id}</RequestId></ErrorResponse>"
        )))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// HTTP 500 `InternalError` as S3 answers it.
fn s3_internal_error() -> Response {
    let id = request_id();
    Response::builder()
        .status(StatusCode::INTERNAL_SERVER_ERROR)
        .header(header::CONTENT_TYPE, "application/xml")
        .header("x-amz-request-id", id.as_str())
        .body(Body::from(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code>\
             <Message>We encountered an internal error. Please try again.</Message>\
             <RequestId>{id}</RequestId><HostId>iamtrail-gateway</HostId></Error>"
        )))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests;
