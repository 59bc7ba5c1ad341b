//! A Lambda Runtime API (version 2018-06-01) served on a loopback port, for running a built
//! `bootstrap` as its own process the way Lambda runs it: the process reads
//! `AWS_LAMBDA_RUNTIME_API`, long-polls `GET /2018-06-01/runtime/invocation/next` for an event,
//! and answers with `POST .../invocation/{id}/response` or `.../invocation/{id}/error`; a runtime
//! that cannot start reports `POST /2018-06-01/runtime/init/error`.
//!
//! As the API reference (docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html) specifies:
//! `/next` answers 200 with the event as its body and the headers `Lambda-Runtime-Aws-Request-Id`,
//! `Lambda-Runtime-Deadline-Ms` (Unix ms), `Lambda-Runtime-Invoked-Function-Arn` and
//! `Lambda-Runtime-Trace-Id`, and holds the request open until there is an event; the three POSTs
//! answer 202 `{"status":"OK"}`; a response for an unknown request id answers 400, one over
//! 6 MB answers 413 (`RequestEntityTooLarge`). Anything else is recorded as unexpected and answers
//! 404, so a test can fail on it.
//!
//! Plain HTTP/1.1 over tokio (keep-alive, `Content-Length` and chunked bodies): the runtime
//! client is the only peer, and this keeps the tests free of another HTTP server crate.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify};

/// The largest synchronous response Lambda accepts (6 MB).
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

const PREFIX: &str = "/2018-06-01/runtime";

/// How an invocation ended, as the runtime reported it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `POST /invocation/{id}/response`: the function's result.
    Response(Value),
    /// `POST /invocation/{id}/error`: the `Lambda-Runtime-Function-Error-Type` header and the
    /// error document (`errorType`, `errorMessage`).
    Error { error_type: String, body: String },
    /// `POST /init/error`: the runtime could not start.
    InitError { error_type: String, body: String },
    /// A response over [`MAX_RESPONSE_BYTES`] (answered 413).
    TooLarge { bytes: usize },
}

/// One invocation's outcome and its timing.
#[derive(Debug, Clone)]
pub struct Answer {
    pub outcome: Outcome,
    /// From the moment `/next` handed the event to the runtime to the moment its answer arrived.
    pub duration: Duration,
}

struct Event {
    request_id: String,
    payload: Value,
    deadline_ms: u128,
    answer: oneshot::Sender<Answer>,
}

struct Pending {
    delivered: Instant,
    answer: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct State {
    /// When the first `GET /next` arrived: the runtime finished its initialisation.
    first_next: Option<Instant>,
    /// Invocations handed to the runtime, not answered yet.
    pending: HashMap<String, Pending>,
    init_error: Option<Outcome>,
    unexpected: Vec<String>,
}

/// A Runtime API server for one execution environment (one bootstrap process).
pub struct RuntimeApi {
    addr: SocketAddr,
    function_arn: String,
    events: mpsc::UnboundedSender<Event>,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    next_id: std::sync::atomic::AtomicU64,
    server: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    /// Serves the API on `127.0.0.1` on a free port, for a function with this ARN (sent as
    /// `Lambda-Runtime-Invoked-Function-Arn`).
    pub async fn start(function_arn: &str) -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the Runtime API");
        let addr = listener.local_addr().unwrap();
        let (events, queue) = mpsc::unbounded_channel::<Event>();
        let queue = Arc::new(tokio::sync::Mutex::new(queue));
        let state = Arc::new(Mutex::new(State::default()));
        let changed = Arc::new(Notify::new());
        let server = {
            let (state, changed) = (state.clone(), changed.clone());
            let function_arn: Arc<str> = Arc::from(function_arn);
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let conn = Connection {
                        function_arn: function_arn.clone(),
                        queue: queue.clone(),
                        state: state.clone(),
                        changed: changed.clone(),
                    };
                    tokio::spawn(async move { conn.serve(stream).await });
                }
            })
        };
        RuntimeApi {
            addr,
            function_arn: function_arn.to_string(),
            events,
            state,
            changed,
            next_id: std::sync::atomic::AtomicU64::new(1),
            server,
        }
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// When the runtime first asked for an event (it finished initialising).
    pub fn first_next(&self) -> Option<Instant> {
        self.state.lock().unwrap().first_next
    }

    /// The `/init/error` the runtime reported, if any.
    pub fn init_error(&self) -> Option<Outcome> {
        self.state.lock().unwrap().init_error.clone()
    }

    /// Requests outside the API (method and path), which a faithful runtime never makes.
    pub fn unexpected_requests(&self) -> Vec<String> {
        self.state.lock().unwrap().unexpected.clone()
    }

    /// Waits until the runtime asks for its first event, reports an init error, or `check`
    /// returns an error (e.g. the process exited), at most `timeout`.
    pub async fn wait_ready(
        &self,
        timeout: Duration,
        mut check: impl FnMut() -> Result<(), String>,
    ) -> Result<Instant, String> {
        let end = Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if let Some(at) = self.first_next() {
                return Ok(at);
            }
            if let Some(e) = self.init_error() {
                return Err(format!("the runtime reported an init error: {e:?}"));
            }
            check()?;
            if Instant::now() >= end {
                return Err(format!("no GET /next within {timeout:?}"));
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }

    /// Queues an event with the function's `timeout` as its deadline and returns the request
    /// id and the receiver of its answer.
    pub fn invoke(&self, payload: Value, timeout: Duration) -> (String, oneshot::Receiver<Answer>) {
        let n = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let request_id = format!("8476a536-e9f4-11e8-9739-{n:012x}");
        let deadline = SystemTime::now() + timeout;
        let (answer, receiver) = oneshot::channel();
        self.events
            .send(Event {
                request_id: request_id.clone(),
                payload,
                deadline_ms: deadline.duration_since(UNIX_EPOCH).unwrap().as_millis(),
                answer,
            })
            .expect("the Runtime API server runs");
        (request_id, receiver)
    }

    /// The ARN sent with each event.
    pub fn function_arn(&self) -> &str {
        &self.function_arn
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct Connection {
    function_arn: Arc<str>,
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Event>>>,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Connection {
    async fn serve(self, stream: TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        // Requests on one connection are answered in order (HTTP/1.1 keep-alive).
        while let Some(request) = read_request(&mut reader).await {
            let close = request
                .headers
                .get("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
            let response = self.handle(request).await;
            if write.write_all(&response).await.is_err() || close {
                return;
            }
        }
    }

    async fn handle(&self, request: Request) -> Vec<u8> {
        let path = request.path.split('?').next().unwrap_or("").to_string();
        let error_type = || {
            request
                .headers
                .get("lambda-runtime-function-error-type")
                .cloned()
                .unwrap_or_default()
        };
        let body_text = || String::from_utf8_lossy(&request.body).into_owned();
        match (request.method.as_str(), path.strip_prefix(PREFIX)) {
            ("GET", Some("/invocation/next")) => self.next().await,
            ("POST", Some("/init/error")) => {
                self.state.lock().unwrap().init_error = Some(Outcome::InitError {
                    error_type: error_type(),
                    body: body_text(),
                });
                self.changed.notify_waiters();
                accepted()
            }
            ("POST", Some(rest)) if rest.starts_with("/invocation/") => {
                let rest = &rest["/invocation/".len()..];
                let (id, kind) = rest.rsplit_once('/').unwrap_or((rest, ""));
                let outcome = match kind {
                    "response" if request.body.len() > MAX_RESPONSE_BYTES => Outcome::TooLarge {
                        bytes: request.body.len(),
                    },
                    "response" => match serde_json::from_slice(&request.body) {
                        Ok(v) => Outcome::Response(v),
                        Err(e) => Outcome::Error {
                            error_type: "Runtime.InvalidResponse (not JSON)".into(),
                            body: format!("{e}: {}", body_text()),
                        },
                    },
                    "error" => Outcome::Error {
                        error_type: error_type(),
                        body: body_text(),
                    },
                    _ => return self.unexpected(&request.method, &request.path),
                };
                let pending = self.state.lock().unwrap().pending.remove(id);
                let Some(pending) = pending else {
                    return reply(
                        400,
                        &json!({"errorMessage": format!("unknown request id {id}"), "errorType": "InvalidRequestID"}),
                        &[],
                    );
                };
                let too_large = matches!(outcome, Outcome::TooLarge { .. });
                let _ = pending.answer.send(Answer {
                    outcome,
                    duration: pending.delivered.elapsed(),
                });
                self.changed.notify_waiters();
                if too_large {
                    reply(
                        413,
                        &json!({"errorMessage": "response payload over 6 MB", "errorType": "RequestEntityTooLarge"}),
                        &[],
                    )
                } else {
                    accepted()
                }
            }
            _ => self.unexpected(&request.method, &request.path),
        }
    }

    /// `GET /next`: blocks until an event is queued (the runtime must not time this request).
    async fn next(&self) -> Vec<u8> {
        {
            let mut state = self.state.lock().unwrap();
            state.first_next.get_or_insert_with(Instant::now);
        }
        self.changed.notify_waiters();
        let event = self.queue.lock().await.recv().await;
        let Some(event) = event else {
            return reply(
                500,
                &json!({"errorMessage": "the test ended", "errorType": "Shutdown"}),
                &[],
            );
        };
        let trace = format!(
            "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=0",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            event.deadline_ms,
            event.deadline_ms
        );
        let deadline = event.deadline_ms.to_string();
        let response = reply(
            200,
            &event.payload,
            &[
                ("Lambda-Runtime-Aws-Request-Id", &event.request_id),
                ("Lambda-Runtime-Deadline-Ms", &deadline),
                ("Lambda-Runtime-Invoked-Function-Arn", &self.function_arn),
                ("Lambda-Runtime-Trace-Id", &trace),
            ],
        );
        self.state.lock().unwrap().pending.insert(
            event.request_id,
            Pending {
                delivered: Instant::now(),
                answer: event.answer,
            },
        );
        response
    }

    fn unexpected(&self, method: &str, path: &str) -> Vec<u8> {
        self.state
            .lock()
            .unwrap()
            .unexpected
            .push(format!("{method} {path}"));
        self.changed.notify_waiters();
        reply(
            404,
            &json!({"errorMessage": format!("no such resource: {method} {path}"), "errorType": "NotFound"}),
            &[],
        )
    }
}

fn accepted() -> Vec<u8> {
    reply(202, &json!({"status": "OK"}), &[])
}

fn reply(status: u16, body: &Value, headers: &[(&str, &str)]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        413 => "Payload Too Large",
        _ => "Internal Server Error",
    };
    let body = body.to_string();
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

/// Reads one HTTP/1.1 request; `None` at the end of the connection or on a malformed request.
async fn read_request<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = HashMap::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            line.clear();
            reader.read_line(&mut line).await.ok()?;
            let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    line.clear();
                    if reader.read_line(&mut line).await.ok()? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..]).await.ok()?;
            line.clear();
            reader.read_line(&mut line).await.ok()?;
        }
    } else if let Some(len) = headers.get("content-length") {
        body.resize(len.parse().ok()?, 0);
        reader.read_exact(&mut body).await.ok()?;
    }
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}
