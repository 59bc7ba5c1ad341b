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

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
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

struct GatewayState {
    upstream: RwLock<Option<String>>,
    /// Failure injection: proxied requests whose `X-Amz-Target` or body contains one of these
    /// strings are answered HTTP 500 without reaching moto.
    faults: RwLock<Vec<String>>,
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
            faults: RwLock::new(Vec::new()),
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
    /// `InternalError`, as a failing AWS service would. An empty list turns it off.
    pub fn set_faults(&self, patterns: Vec<String>) {
        *self.state.faults.write().unwrap_or_else(|e| e.into_inner()) = patterns;
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
        let name = function_name(&percent_decode(raw));
        ("lambda", lambda(handler.clone(), name, req).await)
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

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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
    let path_and_query = req
        .uri()
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
    let faults = state
        .faults
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if !faults.is_empty() {
        let target = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let text = String::from_utf8_lossy(&body);
        if faults
            .iter()
            .any(|f| target.contains(f.as_str()) || text.contains(f.as_str()))
        {
            let mut response = (
                StatusCode::INTERNAL_SERVER_ERROR,
                "<ErrorResponse><Error><Type>Receiver</Type><Code>InternalError</Code>\
                 <Message>iamtrail gateway: injected failure</Message></Error>\
                 <RequestId>injected</RequestId></ErrorResponse>",
            )
                .into_response();
            response.headers_mut().insert(
                "x-amzn-errortype",
                header::HeaderValue::from_static("InternalError"),
            );
            return response;
        }
    }
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
    let bytes = match upstream_response.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("iamtrail gateway: reading the upstream body failed: {e}"),
            )
                .into_response()
        }
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    response
}

#[cfg(test)]
mod tests;
