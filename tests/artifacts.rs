//! The Lambda artifacts, proven: each of the tracker's six bootstraps `scripts/package.sh --arch
//! x86_64` built runs as its own process against a Lambda Runtime API served here
//! (`iamtrail_e2e::runtime_api`), with the environment `template.yaml` gives its function
//! (resolved for the local stack: `iamtrail_e2e::template_env`) plus the variables Lambda itself
//! sets, and the AWS endpoints of a local stack loaded with the bundled dataset, as the demo runs
//! it. The events are those the state machine would send: the test follows
//! `statemachine/tracker.asl.json`'s Parameters, ResultSelector, ResultPath and OutputPath for a
//! scheduled run (`{}`), ListTargets → Collect (every region, looping on `more`) → Aggregate →
//! EvaluateAlerts → Export.
//!
//! Two scheduled executions: the first (CloudTrail's 90-day history) and the next one, in which
//! nothing new happened (the fixed work of every hourly run). The Realtime bootstrap gets the
//! dataset's events as EventBridge would deliver them (docs/realtime.md), on a stack of its own.
//! The S3 ingestion's two bootstraps (ingest-run, ingest-objects; docs/ingest.md) are checked as
//! built artifacts (ELF, zip) with the others, and not invoked here.
//!
//! Per function it measures the init time (process start to the first `GET /next`), each
//! invocation's duration (event handed over to the response POST), the peak RSS (`VmHWM`
//! after the last response) and the bytes of log lines it wrote, and prints them with the
//! bootstrap and zip sizes (`cargo test -p iamtrail-e2e --test artifacts -- --nocapture`;
//! docs/artifacts.md). `IAMTRAIL_ARTIFACTS_EVENTS=N` runs the same over a generated window of
//! N events instead of the bundled dataset (the load bench); `IAMTRAIL_ARTIFACTS_FIGURES=<file>`
//! writes the figures as JSON for `scripts/cost.py` (docs/cost.md).
//!
//! Missing or stale artifacts fail the test with the command that builds them; an `/error` post,
//! an `/init/error`, a crash, a time-out or a wrong response fail it too (the second test shows
//! the harness catching the first three).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use iamtrail::local::{LocalStack, LOCAL_ACCOUNT, LOCAL_REGION};
use iamtrail_e2e::runtime_api::{Outcome, RuntimeApi};
use iamtrail_e2e::template_env::Template;
use iamtrail_e2e::*;
use iamtrail_local::missing_test_dependency;
use serde_json::{json, Value};

/// The Lambda functions, by binary name: every zip scripts/package.sh writes.
const FUNCTIONS: [&str; 8] = [
    "list-targets",
    "collect",
    "aggregate",
    "evaluate-alerts",
    "export",
    "realtime",
    "ingest-run",
    "ingest-objects",
];

const PACKAGE_HINT: &str =
    "build them with: scripts/setup-venv.sh --build && scripts/package.sh --arch x86_64 (docs/artifacts.md)";

/// The loop caps the template substitutes into the ASL (MaxAlertInvocations,
/// MaxExportInvocations).
const MAX_ALERT_INVOCATIONS: u64 = 5;
const MAX_EXPORT_INVOCATIONS: u64 = 10;

/// Variables Lambda sets itself: a template must not set them (Lambda refuses reserved keys).
const RESERVED: [&str; 18] = [
    "_HANDLER",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_LOG_FORMAT",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "TZ",
    "PATH",
];

// ---- The artifacts -------------------------------------------------------------------------

/// The build cache: `$CARGO_TARGET_DIR`, else the target directory this test was built in.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => dir.into(),
        Some(dir) => repo_root().join(dir),
        // The test runs as <target>/<profile>/deps/artifacts-<hash>.
        None => std::env::current_exe()
            .unwrap()
            .ancestors()
            .nth(3)
            .expect("the test binary is in <target>/<profile>/deps")
            .to_path_buf(),
    }
}

/// One function's built bootstrap and zip.
struct Artifact {
    name: &'static str,
    bootstrap: PathBuf,
    bootstrap_bytes: u64,
    zip_bytes: u64,
}

/// The artifacts of [`FUNCTIONS`], checked: an x86-64 ELF bootstrap each, and its zip holding
/// exactly that file as `bootstrap` (mode 755) at the root.
fn artifacts() -> Vec<Artifact> {
    let target = target_dir();
    FUNCTIONS
        .iter()
        .map(|&name| {
            let bootstrap = target.join("lambda").join(name).join("bootstrap");
            let bytes = std::fs::read(&bootstrap).unwrap_or_else(|e| {
                missing_test_dependency(
                    format!("the {name} bootstrap {} cannot be read: {e}", bootstrap.display()),
                    PACKAGE_HINT,
                )
            });
            // ELF, 64-bit, e_machine 62 (x86-64): scripts/package.sh --arch arm64 writes to the
            // same place.
            if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
                missing_test_dependency(
                    format!("{} is not an ELF executable", bootstrap.display()),
                    PACKAGE_HINT,
                );
            }
            let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
            if machine != 62 {
                missing_test_dependency(
                    format!(
                        "{} is built for another architecture (ELF machine {machine}; 183 is arm64), not x86_64",
                        bootstrap.display()
                    ),
                    PACKAGE_HINT,
                );
            }
            let zip_path = target
                .join("lambda-dist/x86_64")
                .join(format!("{name}.zip"));
            let zip = std::fs::read(&zip_path).unwrap_or_else(|e| {
                missing_test_dependency(
                    format!("the {name} zip {} cannot be read: {e}", zip_path.display()),
                    PACKAGE_HINT,
                )
            });
            let entries = zip_entries(&zip)
                .unwrap_or_else(|e| panic!("{}: not a valid zip: {e}", zip_path.display()));
            assert_eq!(
                entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
                ["bootstrap"],
                "{}: Lambda's provided.al2023 runtime runs the file `bootstrap` at the zip root",
                zip_path.display()
            );
            let entry = &entries[0];
            assert_eq!(
                entry.unix_mode & 0o777,
                0o755,
                "{}: bootstrap must be executable",
                zip_path.display()
            );
            if entry.size != bytes.len() as u64 || entry.crc32 != crc32(&bytes) {
                missing_test_dependency(
                    format!(
                        "{} does not hold the current {} (rebuilt since it was zipped)",
                        zip_path.display(),
                        bootstrap.display()
                    ),
                    PACKAGE_HINT,
                );
            }
            Artifact {
                name,
                bootstrap,
                bootstrap_bytes: bytes.len() as u64,
                zip_bytes: zip.len() as u64,
            }
        })
        .collect()
}

struct ZipEntry {
    name: String,
    crc32: u32,
    size: u64,
    unix_mode: u32,
}

/// The entries of a zip's central directory.
fn zip_entries(zip: &[u8]) -> Result<Vec<ZipEntry>, String> {
    let u16_at = |at: usize| u16::from_le_bytes([zip[at], zip[at + 1]]) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(zip[at..at + 4].try_into().unwrap());
    let eocd = (0..zip.len().saturating_sub(21))
        .rev()
        .find(|&i| zip[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .ok_or("no end of central directory record")?;
    let count = u16_at(eocd + 10);
    let mut at = u32_at(eocd + 16) as usize;
    let mut entries = Vec::new();
    for _ in 0..count {
        if zip.get(at..at + 4) != Some(&[0x50, 0x4b, 0x01, 0x02]) {
            return Err(format!("no central directory header at {at}"));
        }
        let (name_len, extra_len, comment_len) =
            (u16_at(at + 28), u16_at(at + 30), u16_at(at + 32));
        entries.push(ZipEntry {
            name: String::from_utf8_lossy(&zip[at + 46..at + 46 + name_len]).into_owned(),
            crc32: u32_at(at + 16),
            size: u32_at(at + 24) as u64,
            unix_mode: u32_at(at + 38) >> 16,
        });
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(entries)
}

/// CRC-32 (IEEE), as zip stores it.
fn crc32(data: &[u8]) -> u32 {
    let table: Vec<u32> = (0..256u32)
        .map(|n| {
            (0..8).fold(n, |c, _| {
                if c & 1 == 1 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                }
            })
        })
        .collect();
    !data.iter().fold(!0u32, |c, &b| {
        table[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8)
    })
}

// ---- One execution environment: a bootstrap process and its Runtime API --------------------

/// What Lambda's environment holds for a function of `template.yaml`, on the local stack.
fn lambda_environment(
    template: &Template,
    name: &str,
    stack: &LocalStack,
    api: &RuntimeApi,
    bootstrap: &Path,
) -> (BTreeMap<String, String>, Duration) {
    let id = template.function_by_binary(name);
    let mut env = template.function_environment(&id);
    for key in RESERVED {
        assert!(
            !env.contains_key(key),
            "template.yaml sets {key} for {id}: Lambda reserves it"
        );
    }
    let property = |p: &str| {
        template
            .function_property(&id, p)
            .unwrap_or_else(|| panic!("{id} has no {p}"))
    };
    let logging = &template.resource(&id)["Properties"]["LoggingConfig"];
    let function_name = property("FunctionName");
    let timeout = Duration::from_secs(property("Timeout").parse().expect("Timeout"));
    let task_root = bootstrap.parent().unwrap().display().to_string();
    let gateway = stack.gateway.endpoint();
    for (k, v) in [
        // Lambda's own variables (docs: "Defined runtime environment variables").
        ("_HANDLER", property("Handler")),
        ("AWS_REGION", LOCAL_REGION.to_string()),
        ("AWS_DEFAULT_REGION", LOCAL_REGION.to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_SESSION_TOKEN", "testing".into()),
        ("AWS_LAMBDA_FUNCTION_NAME", function_name.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", property("MemorySize")),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            template.eval(&logging["LogGroup"]),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            format!(
                "{}/[$LATEST]{:032x}",
                chrono::Utc::now().format("%Y/%m/%d"),
                std::process::id()
            ),
        ),
        (
            "AWS_LAMBDA_LOG_FORMAT",
            template.eval(&logging["LogFormat"]),
        ),
        ("AWS_LAMBDA_RUNTIME_API", api.address()),
        ("LAMBDA_TASK_ROOT", task_root),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime".into()),
        ("TZ", ":UTC".into()),
        ("LANG", "en_US.UTF-8".into()),
        ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin".into()),
        // The local stack: moto for DynamoDB, EC2 and S3; the gateway for CloudTrail (the
        // dataset's emulator) and SNS, as the local stack routes them.
        ("AWS_ENDPOINT_URL", stack.moto.endpoint()),
        ("AWS_ENDPOINT_URL_CLOUDTRAIL", gateway.clone()),
        ("AWS_ENDPOINT_URL_SNS", gateway),
    ] {
        env.insert(k.to_string(), v);
    }
    (env, timeout)
}

/// A bootstrap running against its own Runtime API.
struct Environment {
    name: &'static str,
    api: RuntimeApi,
    child: Child,
    log: PathBuf,
    timeout: Duration,
    /// Process start to the first `GET /next`.
    init: Duration,
    /// Each invocation's duration.
    durations: Vec<Duration>,
}

impl Environment {
    /// Starts the bootstrap with exactly `env` (nothing of the test's own environment) in its
    /// directory, as Lambda does (`/var/task`), and waits for its first `GET /next`.
    async fn start(
        artifact: &Artifact,
        api: RuntimeApi,
        env: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<Environment, String> {
        let log = std::env::temp_dir().join("iamtrail-e2e").join(format!(
            "bootstrap-{}-{}.log",
            artifact.name,
            std::process::id()
        ));
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        let out = std::fs::File::create(&log).unwrap();
        let spawned = Instant::now();
        let child = Command::new(&artifact.bootstrap)
            .env_clear()
            .envs(env)
            .current_dir(artifact.bootstrap.parent().unwrap())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .map_err(|e| format!("{}: cannot start: {e}", artifact.bootstrap.display()))?;
        let mut environment = Environment {
            name: artifact.name,
            api,
            child,
            log,
            timeout,
            init: Duration::ZERO,
            durations: Vec::new(),
        };
        let ready = {
            let (api, child) = (&environment.api, &mut environment.child);
            api.wait_ready(Duration::from_secs(30), || exited(child))
                .await
        };
        match ready {
            Ok(at) => {
                environment.init = at - spawned;
                Ok(environment)
            }
            Err(e) => Err(environment.failure(&e)),
        }
    }

    /// Sends one event and waits for the runtime's answer, at most the function's timeout.
    async fn invoke(&mut self, payload: Value) -> Result<Value, String> {
        let (request_id, mut answer) = self.api.invoke(payload, self.timeout);
        let end = Instant::now() + self.timeout + Duration::from_secs(5);
        let answer = loop {
            tokio::select! {
                a = &mut answer => break a.map_err(|_| self.failure("the Runtime API dropped the invocation"))?,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    if let Err(e) = exited(&mut self.child) {
                        return Err(self.failure(&format!("{e} during invocation {request_id}")));
                    }
                    if Instant::now() > end {
                        return Err(self.failure(&format!("no answer to {request_id} within the function's timeout ({:?})", self.timeout)));
                    }
                }
            }
        };
        self.durations.push(answer.duration);
        let unexpected = self.api.unexpected_requests();
        if !unexpected.is_empty() {
            return Err(self.failure(&format!("requests outside the Runtime API: {unexpected:?}")));
        }
        match answer.outcome {
            Outcome::Response(v) => Ok(v),
            other => Err(self.failure(&format!("invocation {request_id}: {other:?}"))),
        }
    }

    /// The peak resident set size so far (`VmHWM`), in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/<pid>/status of the running bootstrap");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }

    /// A failure message with the end of the bootstrap's log.
    fn failure(&self, what: &str) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "{}: {what}\n--- the bootstrap's log ({}), last lines:\n{}",
            self.name,
            self.log.display(),
            tail.join("\n")
        )
    }

    /// Stops the process (as Lambda freezes and later shuts down an environment).
    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn exited(child: &mut Child) -> Result<(), String> {
    match child.try_wait() {
        Ok(Some(status)) => Err(format!("the bootstrap exited ({status})")),
        Ok(None) => Ok(()),
        Err(e) => Err(format!("cannot check the bootstrap process: {e}")),
    }
}

// ---- The state machine's data flow ------------------------------------------------------------

/// `statemachine/tracker.asl.json` with its `${...}` substitutions replaced by placeholders.
/// `IAMTRAIL_ASL=<file>` follows another definition instead: the one of the commit the
/// bootstraps were built from, when the working tree's has moved on (docs/artifacts.md).
fn asl() -> Value {
    let file = std::env::var_os("IAMTRAIL_ASL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("statemachine/tracker.asl.json"));
    let text =
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        out.push('0');
        rest = &rest[start + rest[start..].find('}').unwrap() + 1..];
    }
    out.push_str(rest);
    serde_json::from_str(&out).expect("the ASL is JSON")
}

/// A state of the ASL by name, in the top level or in a Map's ItemProcessor.
fn state<'a>(asl: &'a Value, name: &str) -> &'a Value {
    fn find<'a>(states: &'a Value, name: &str) -> Option<&'a Value> {
        let states = states.as_object()?;
        states.get(name).or_else(|| {
            states
                .values()
                .find_map(|s| find(&s["ItemProcessor"]["States"], name))
        })
    }
    find(&asl["States"], name).unwrap_or_else(|| panic!("the ASL has no state {name}"))
}

/// A reference path: `$`, `$.a.b` on `input`, or `$$.Execution.Name`.
fn path<'a>(input: &'a Value, path: &str, execution: &'a Value) -> &'a Value {
    if path == "$$.Execution.Name" {
        return execution;
    }
    let rest = path
        .strip_prefix('$')
        .unwrap_or_else(|| panic!("path {path}"));
    rest.split('.')
        .filter(|p| !p.is_empty())
        .fold(input, |v, key| &v[key])
}

/// Parameters or ResultSelector applied to `input` (keys ending in `.$` are paths).
fn apply(template: &Value, input: &Value, execution: &Value) -> Value {
    match template {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| match k.strip_suffix(".$") {
                    Some(key) => (
                        key.to_string(),
                        path(input, v.as_str().unwrap(), execution).clone(),
                    ),
                    None => (k.clone(), apply(v, input, execution)),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// One Task state of the workflow on a bootstrap: the Lambda payload from Parameters, the
/// invocation, then ResultSelector, ResultPath and OutputPath on `{"Payload": response}`.
async fn task(
    asl: &Value,
    name: &str,
    env: &mut Environment,
    input: &Value,
    execution: &str,
) -> Value {
    let s = state(asl, name);
    let execution = json!(execution);
    let payload = apply(&s["Parameters"], input, &execution)["Payload"].clone();
    let response = env
        .invoke(payload)
        .await
        .unwrap_or_else(|e| panic!("state {name}: {e}"));
    let mut result = json!({ "Payload": response });
    if !s["ResultSelector"].is_null() {
        result = apply(&s["ResultSelector"], &result, &execution);
    }
    let mut output = match s["ResultPath"].as_str() {
        Some(p) => {
            let key = p.strip_prefix("$.").expect("ResultPath $.key");
            let mut state = input.clone();
            state[key] = result;
            state
        }
        None => result,
    };
    if let Some(p) = s["OutputPath"].as_str() {
        output = path(&output, p, &execution).clone();
    }
    output
}

/// A Task state and the Choice after it (AfterAlerts?, AfterExport?; MoreAlerts?,
/// MoreToExport? in the older definition): invoked again while its result, at `$.<key>`,
/// says `more` and has fewer than `cap` invocations.
async fn task_loop(
    asl: &Value,
    name: &str,
    env: &mut Environment,
    mut state: Value,
    execution: &str,
    key: &str,
    cap: u64,
) -> Value {
    loop {
        state = task(asl, name, env, &state, execution).await;
        let result = &state[key];
        if result["more"] != json!(true) || result["invocations"].as_u64().unwrap() >= cap {
            return state;
        }
    }
}

// ---- The tests -------------------------------------------------------------------------------

struct Figures {
    artifact_bytes: (u64, u64),
    memory_mb: String,
    init: Duration,
    durations: Vec<Duration>,
    peak_rss_kib: u64,
    /// Bytes the process wrote to stdout and stderr: what CloudWatch Logs ingests from it
    /// (Lambda's own START/END/REPORT lines aside).
    log_bytes: u64,
    /// Of those, the bytes of EMF lines.
    emf_bytes: u64,
    /// The EMF metrics its log lines define: (namespace, metric name, dimension values).
    emf_metrics: std::collections::BTreeSet<String>,
}

async fn start_env(
    template: &Template,
    artifact: &Artifact,
    stack: &LocalStack,
) -> Result<Environment, String> {
    let function = template.function_by_binary(artifact.name);
    let arn = template.get_att(&function, "Arn");
    let api = RuntimeApi::start(&arn).await;
    let (env, timeout) =
        lambda_environment(template, artifact.name, stack, &api, &artifact.bootstrap);
    Environment::start(artifact, api, &env, timeout).await
}

/// The EMF metrics defined by a log's JSON lines: one entry per namespace, metric and
/// dimension values (what CloudWatch bills as one custom metric); and the bytes of those lines.
fn emf_metrics(log: &str) -> (std::collections::BTreeSet<String>, u64) {
    let mut out = std::collections::BTreeSet::new();
    let mut bytes = 0;
    for line in log.lines() {
        let Ok(doc) = serde_json::from_str::<Value>(line.trim()) else {
            continue;
        };
        if doc["_aws"]["CloudWatchMetrics"].is_array() {
            bytes += line.len() as u64 + 1;
        }
        out.extend(emf_series(&doc));
    }
    (out, bytes)
}

fn figures(env: Environment, artifact: &Artifact, template: &Template) -> Figures {
    let log = std::fs::read_to_string(&env.log).unwrap_or_default();
    let (emf_metrics, emf_bytes) = emf_metrics(&log);
    let f = Figures {
        artifact_bytes: (artifact.bootstrap_bytes, artifact.zip_bytes),
        memory_mb: template
            .function_property(&template.function_by_binary(artifact.name), "MemorySize")
            .unwrap(),
        init: env.init,
        durations: env.durations.clone(),
        peak_rss_kib: env.peak_rss_kib(),
        log_bytes: log.len() as u64,
        emf_bytes,
        emf_metrics,
    };
    env.stop();
    f
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1_048_576.0)
}

/// What a scheduled execution expects of the data.
struct Expect {
    /// The event ids the events table holds after the run.
    ids: std::collections::BTreeSet<String>,
    /// Whether the run stores new events (the first) or none (the next, steady run).
    stores: bool,
    /// Whether to read the whole events table back (the bench skips it: moto's Scan takes
    /// about 16 s a page at 100k items, and the run's stored count is checked instead).
    scan: bool,
}

/// Prints one function's figures as soon as they are measured (a long bench keeps what it got).
fn measured(name: &str, f: &Figures) {
    let max = f.durations.iter().max().copied().unwrap_or_default();
    eprintln!(
        "measured {name}: {} invocations, first/max {}/{} ms, total {} ms, peak RSS {:.1} MiB, log {} bytes",
        f.durations.len(),
        ms(f.durations.first().copied().unwrap_or_default()),
        ms(max),
        ms(f.durations.iter().sum()),
        f.peak_rss_kib as f64 / 1024.0,
        f.log_bytes
    );
}

/// One scheduled execution (`{}`) through the bootstraps, following the ASL: ListTargets, the
/// Map's Collect iterations (one after the other in one warm environment, the first being the
/// cold invocation), Aggregate, EvaluateAlerts and Export when due, each looping like its
/// Choice state. With the Collect loop inside the Map (a `MoreToCollect` Choice) an item is
/// collected again while `more`; with Aggregate rounds (a `CollectAgain?` Choice) Aggregate's
/// continuation sends its `items` round the Map again. Returns the figures per function and the
/// work done.
async fn scheduled_run(
    stack: &LocalStack,
    template: &Template,
    artifacts: &[Artifact],
    execution: &str,
    expect: &Expect,
) -> (BTreeMap<&'static str, Figures>, Value, Value) {
    let asl = asl();
    let settings = stack.settings();
    let mut figures_by_name = BTreeMap::new();
    let by_name = |n: &str| artifacts.iter().find(|a| a.name == n).unwrap();
    let loop_in_map = asl["States"]["CollectRegions"]["ItemProcessor"]["States"]
        .get("MoreToCollect")
        .is_some();
    let rounds_in_aggregate = asl["States"].get("CollectAgain?").is_some();

    // ListTargets: the scheduled input.
    let a = by_name("list-targets");
    let mut env = start_env(template, a, stack).await.unwrap();
    let targets = task(&asl, "ListTargets", &mut env, &json!({}), execution).await;
    figures_by_name.insert(a.name, figures(env, a, template));
    measured(a.name, &figures_by_name[a.name]);
    assert_eq!(targets["run_id"], json!(execution), "{targets}");
    assert_eq!(targets["mode"], "incremental");
    assert!(targets.get("skipped").is_none(), "{targets}");
    let items = targets["items"].as_array().expect("items").clone();
    let regions = targets["enabled_regions"].as_array().unwrap().len();
    assert_eq!(items.len(), regions, "one item per enabled region");
    assert_eq!(items[0]["region"], "us-east-1", "the IAM region first");
    assert_eq!(
        items[0]["sources"],
        json!([
            "iam",
            "sts",
            "signin",
            "sso",
            "sso-directory",
            "identitystore",
            "root"
        ])
    );

    // Collect (the Map's iterations, round after round) and Aggregate.
    let collect = by_name("collect");
    let mut collect_env = start_env(template, collect, stack).await.unwrap();
    let aggregate = by_name("aggregate");
    let mut aggregate_env = start_env(template, aggregate, stack).await.unwrap();
    let mut state = targets.clone();
    let mut round_items = items.clone();
    let summary = loop {
        let mut results = Vec::new();
        for item in &round_items {
            let mut output = task(&asl, "Collect", &mut collect_env, item, execution).await;
            while loop_in_map && output["more"] == json!(true) {
                output = task(&asl, "Collect", &mut collect_env, &output, execution).await;
            }
            assert_eq!(output["region"], item["region"]);
            for (source, progress) in output["progress"].as_object().expect("progress") {
                assert!(
                    progress.get("error").is_none(),
                    "{} {source}: {progress}",
                    item["region"]
                );
            }
            results.push(output);
        }
        state["results"] = Value::Array(results);
        let output = task(&asl, "Aggregate", &mut aggregate_env, &state, execution).await;
        if rounds_in_aggregate && output.get("items").is_some() {
            round_items = output["items"].as_array().expect("items").clone();
            assert!(
                !round_items.is_empty(),
                "a continuation has items: {output}"
            );
            state = output;
            continue;
        }
        break output;
    };
    figures_by_name.insert(collect.name, figures(collect_env, collect, template));
    measured(collect.name, &figures_by_name[collect.name]);
    figures_by_name.insert(aggregate.name, figures(aggregate_env, aggregate, template));
    measured(aggregate.name, &figures_by_name[aggregate.name]);
    let stored_now = summary["totals"]["stored"].as_u64().unwrap();
    if expect.scan {
        let stored = scan_all(&stack.dynamodb(), &settings.events_table).await;
        assert_eq!(
            ids(&stored),
            expect.ids,
            "the events table holds the dataset's tracked events"
        );
    }
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert_eq!(summary["regions"], json!(regions));
    if expect.stores {
        assert_eq!(stored_now, expect.ids.len() as u64, "{summary}");
    } else {
        assert_eq!(stored_now, 0, "{summary}");
    }
    let queued = summary["totals"]["alerts_queued"].as_u64().unwrap();
    assert_eq!(
        queued > 0,
        expect.stores,
        "the dataset raises alerts: {summary}"
    );
    let run = control_item(stack, &format!("run#{execution}")).await;
    assert!(run.is_some(), "Aggregate stored the run record");

    // EvaluateAlerts, looping while `more` (AfterAlerts?).
    let a = by_name("evaluate-alerts");
    let mut env = start_env(template, a, stack).await.unwrap();
    let mut state = task_loop(
        &asl,
        "EvaluateAlerts",
        &mut env,
        summary.clone(),
        execution,
        "alerts",
        MAX_ALERT_INVOCATIONS,
    )
    .await;
    figures_by_name.insert(a.name, figures(env, a, template));
    measured(a.name, &figures_by_name[a.name]);
    let alerts = state["alerts"].clone();
    assert_eq!(alerts["enabled"], true, "{alerts}");
    // Every queued alert is sent, or some are left pending for the next run when the loop
    // reached its cap (MaxAlertInvocations: the bench's 2,043 alerts take three runs). `pending`
    // is what the last invocation saw waiting, capped at its read limit, so only its sign is
    // checked.
    let sent = alerts["sent"].as_u64().unwrap();
    assert_eq!(alerts["failed"], 0, "{alerts}");
    if alerts["more"] == json!(true) {
        assert_eq!(
            alerts["invocations"],
            json!(MAX_ALERT_INVOCATIONS),
            "{alerts}"
        );
        assert!(sent < queued, "{alerts}");
        assert!(alerts["pending"].as_u64().unwrap() > 0, "{alerts}");
    } else {
        assert_eq!(sent, queued, "{alerts}");
    }
    if expect.stores {
        let received = stack.received_alerts().await.expect("mailbox");
        assert_eq!(
            received.len() as u64,
            sent,
            "the mailbox got every alert sent"
        );
    }

    // Export when due (AfterAlerts?), looping while `more` (AfterExport?).
    let mut export = json!({"dates": [], "rows": 0, "files": 0});
    if summary["export_due"] == json!(true) {
        let a = by_name("export");
        let mut env = start_env(template, a, stack).await.unwrap();
        state = task_loop(
            &asl,
            "Export",
            &mut env,
            state,
            execution,
            "export",
            MAX_EXPORT_INVOCATIONS,
        )
        .await;
        figures_by_name.insert(a.name, figures(env, a, template));
        measured(a.name, &figures_by_name[a.name]);
        export = state["export"].clone();
        assert_eq!(export["more"], false, "{export}");
        assert_eq!(
            export["dates"], summary["export_dates"],
            "every due date exported: {export}"
        );
    }
    let mut parquet_bytes = 0;
    if expect.stores {
        assert_eq!(summary["export_due"], true, "{summary}");
        let keys = objects(stack, "iam-events/").await;
        assert_eq!(json!(keys.len()), export["files"], "{keys:?} {export}");
        let mut rows = 0;
        for key in &keys {
            let body = get_object(stack, key).await;
            parquet_bytes += body.len() as u64;
            assert!(
                body.starts_with(b"PAR1") && body.ends_with(b"PAR1"),
                "{key} is a Parquet file"
            );
            rows += head_metadata(stack, key).await["rows"]
                .parse::<u64>()
                .unwrap();
        }
        assert_eq!(rows, expect.ids.len() as u64);
        assert_eq!(json!(rows), export["rows"], "{export}");
    }
    let work = format!(
        "ListTargets {} items; Collect {} events stored ({} LookupEvents requests, {} invocations); EvaluateAlerts {} alerts sent; Export {} dates, {} rows, {} files, {} Parquet bytes",
        items.len(),
        stored_now,
        summary["totals"]["requests"],
        figures_by_name["collect"].durations.len(),
        alerts["sent"],
        export["dates"].as_array().map_or(0, Vec::len),
        export["rows"],
        export["files"],
        parquet_bytes
    );
    let work = json!({
        "text": work,
        "events_stored": stored_now,
        "lookup_requests": summary["totals"]["requests"],
        "alerts_sent": alerts["sent"],
        "export_rows": export["rows"],
        "export_files": export["files"],
        "parquet_bytes": parquet_bytes,
    });
    (figures_by_name, work, summary)
}

/// The load: the bundled dataset as the demo serves it (the default), or with
/// `IAMTRAIL_ARTIFACTS_EVENTS=N` the bench load: N events generated from it
/// (`iamtrail_e2e::bench_dataset`) over the 24 hours ending an hour ago, served unthrottled,
/// and the stack's `LookupRatePerSecond` raised to 50 so that the run measures the functions'
/// work rather than the 2 requests/s quota's waits (docs/artifacts.md).
fn load() -> Option<usize> {
    std::env::var("IAMTRAIL_ARTIFACTS_EVENTS").ok().map(|v| {
        v.replace(['_', ','], "")
            .parse()
            .unwrap_or_else(|_| panic!("IAMTRAIL_ARTIFACTS_EVENTS={v}: a number of events"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bootstraps_run_a_scheduled_execution_through_the_runtime_api() {
    let artifacts = artifacts();
    let mut opts = options("artifacts");
    let load = load();
    let dataset = match load {
        None => {
            // As the demo: the dataset's newest event 24 hours ago, LookupEvents throttled at
            // AWS's 2 requests/s per region.
            opts.emulator = iamtrail::demo::dataset_emulator(Some(24), Some(2.0));
            dataset_dir()
        }
        Some(n) => {
            let end = chrono::Utc::now() - chrono::TimeDelta::hours(1);
            let dir = std::env::temp_dir()
                .join("iamtrail-e2e")
                .join(format!("bench-{n}"));
            let generated = Instant::now();
            iamtrail_e2e::bench_dataset::generate(
                &dir,
                n,
                end,
                chrono::TimeDelta::hours(24),
                20261201,
            );
            println!(
                "bench dataset: {n} events over the 24 hours before {end} in {} ({:.1} s)",
                dir.display(),
                generated.elapsed().as_secs_f64()
            );
            opts.emulator = iamtrail::demo::dataset_emulator(None, None);
            dir
        }
    };
    opts.dataset = Some(dataset.clone());
    let stack = start(opts).await;
    let mut template = Template::load(
        &repo_root().join("template.yaml"),
        &stack.options.stack_name,
        LOCAL_REGION,
        LOCAL_ACCOUNT,
    );
    if load.is_some() {
        template
            .parameters
            .insert("LookupRatePerSecond".into(), "50".into());
    }

    // The names the bootstraps get are the local stack's (the in-process steps' settings).
    let settings = stack.settings();
    let globals = template.function_environment(&template.function_by_binary("collect"));
    assert_eq!(globals["EVENTS_TABLE"], settings.events_table);
    assert_eq!(globals["CONTROL_TABLE"], settings.control_table);
    assert_eq!(globals["ALERTS_TABLE"], settings.alerts_table);
    assert_eq!(
        Some(&globals["ALERTS_TOPIC_ARN"]),
        settings.alerts_topic_arn.as_ref()
    );
    assert_eq!(
        Some(&globals["ANALYTICS_BUCKET"]),
        settings.analytics_bucket.as_ref()
    );

    let (expected, _, _) = expected_ids(&dataset);
    if let Some(n) = load {
        assert_eq!(expected.len(), n, "every generated event is tracked");
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
    let mut report = Vec::new();
    // The bench measures the first run only: the steady run is the demo's.
    let passes: &[(&str, bool)] = if load.is_some() {
        &[("first", true)]
    } else {
        &[("first", true), ("steady", false)]
    };
    for &(pass, stores) in passes {
        let execution = format!("artifacts-{pass}-{stamp}");
        let expect = Expect {
            ids: expected.clone(),
            stores,
            scan: load.is_none(),
        };
        let (figures, work, _) =
            scheduled_run(&stack, &template, &artifacts, &execution, &expect).await;
        let what = match pass {
            "first" => "the first scheduled run (CloudTrail's 90-day history)",
            _ => "the next scheduled run (nothing new: the fixed work of every hourly run)",
        };
        println!("\n{what}:");
        print_figures(&figures);
        println!("work done: {}\n", work["text"].as_str().unwrap());
        report.push((pass, figures, work));
    }
    if let Some(path) = std::env::var_os("IAMTRAIL_ARTIFACTS_FIGURES") {
        write_figures(std::path::Path::new(&path), load, &report);
    }
    stack.stop().await;
}

/// The Realtime bootstrap over the dataset's events as EventBridge would deliver them (the
/// records oldest first, those the rule pattern selects), on a fresh stack: each is stored,
/// the dataset's 12 alerts reach the mailbox, and a second delivery of every event changes
/// nothing. Prints the function's figures (the duration behind docs/realtime.md's estimate).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_realtime_bootstrap_alerts_on_eventbridge_events() {
    use iamtrail_aws::steps::realtime::{Disposition, RealtimeOutput};
    use iamtrail_core::realtime::{envelope, event_pattern, matches_pattern};
    let artifacts = artifacts();
    let mut opts = options("artifacts-realtime");
    opts.emulator = iamtrail::demo::dataset_emulator(Some(24), None);
    opts.dataset = Some(dataset_dir());
    let stack = start(opts).await;
    let template = Template::load(
        &repo_root().join("template.yaml"),
        &stack.options.stack_name,
        LOCAL_REGION,
        LOCAL_ACCOUNT,
    );
    let pattern = event_pattern(&iamtrail::replay::pattern_options(stack.settings()));
    let events: Vec<Value> = stack
        .emulator
        .records()
        .iter()
        .filter_map(|text| envelope(&serde_json::from_str(text).unwrap()))
        .filter(|e| matches_pattern(&pattern, e))
        .collect();
    let a = artifacts.iter().find(|a| a.name == "realtime").unwrap();
    let mut env = start_env(&template, a, &stack).await.unwrap();
    for round in 0..2 {
        let (mut stored, mut sent, mut queued) = (0, 0, 0);
        for event in &events {
            let out: RealtimeOutput =
                serde_json::from_value(env.invoke(event.clone()).await.unwrap()).unwrap();
            stored += usize::from(out.disposition == Disposition::Stored);
            sent += out.sent;
            queued += out.alerts_queued;
        }
        let received = stack.received_alerts().await.unwrap();
        println!(
            "realtime round {round}: {} events, {stored} stored, {queued} queued, {sent} sent, {} received",
            events.len(),
            received.len()
        );
        assert_eq!(stored, events.len(), "every event stored (again)");
        let expected = if round == 0 { 12 } else { 0 };
        assert_eq!((queued, sent), (expected, expected));
        assert_eq!(received.len() as u64, expected);
    }
    let figures = figures(env, a, &template);
    measured(a.name, &figures);
    let mut durations = figures.durations.clone();
    durations.sort();
    println!(
        "realtime: median {} ms, max {} ms over {} invocations (MemorySize {} MB)",
        ms(durations[durations.len() / 2]),
        ms(*durations.last().unwrap()),
        durations.len(),
        figures.memory_mb
    );
    stack.stop().await;
}

/// The figures as JSON (`IAMTRAIL_ARTIFACTS_FIGURES=<file>`): the measured Lambda side of
/// docs/cost.md (`docs/cost-lambda.json`, read by `scripts/cost.py`).
fn write_figures(
    path: &std::path::Path,
    load: Option<usize>,
    report: &[(&str, BTreeMap<&'static str, Figures>, Value)],
) {
    let mut runs = serde_json::Map::new();
    for (pass, figures, work) in report {
        let mut functions = serde_json::Map::new();
        for (name, f) in figures {
            functions.insert(
                name.to_string(),
                json!({
                    "memory_mb": f.memory_mb.parse::<u64>().unwrap_or(0),
                    "init_ms": f.init.as_millis() as u64,
                    "durations_ms": f.durations.iter().map(|d| d.as_millis() as u64).collect::<Vec<_>>(),
                    "peak_rss_kib": f.peak_rss_kib,
                    "log_bytes": f.log_bytes,
                    "emf_bytes": f.emf_bytes,
                    "emf_metrics": f.emf_metrics,
                }),
            );
        }
        runs.insert(
            pass.to_string(),
            json!({"work": work, "functions": functions}),
        );
    }
    let doc = json!({
        "about": "Figures of the Lambda bootstraps measured by tests/artifacts.rs (docs/artifacts.md); an input of scripts/cost.py (docs/cost.md).",
        "measured_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "load": match load { None => json!("bundled dataset, LookupEvents at 2 requests/s"), Some(n) => json!(format!("{n} generated events over 24 hours, unthrottled")) },
        "runs": runs,
    });
    std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap() + "\n")
        .expect("write the figures");
    println!("wrote {}", path.display());
}

fn print_figures(figures: &BTreeMap<&str, Figures>) {
    println!(
        "{:<16} {:>14} {:>9} {:>8} {:>12} {:>16} {:>13} {:>10} {:>10}",
        "function",
        "bootstrap MiB",
        "zip MiB",
        "init ms",
        "invocations",
        "first/max ms",
        "peak RSS MiB",
        "memory MB",
        "log bytes"
    );
    for name in FUNCTIONS {
        let Some(f) = figures.get(name) else {
            println!("{name:<16} (not invoked)");
            continue;
        };
        let max = f.durations.iter().max().copied().unwrap_or_default();
        println!(
            "{:<16} {:>14} {:>9} {:>8} {:>12} {:>16} {:>13.1} {:>10} {:>10}",
            name,
            mib(f.artifact_bytes.0),
            mib(f.artifact_bytes.1),
            ms(f.init),
            f.durations.len(),
            format!("{}/{}", ms(f.durations[0]), ms(max)),
            f.peak_rss_kib as f64 / 1024.0,
            f.memory_mb,
            f.log_bytes
        );
    }
}

/// The harness fails on what a broken artifact does: an invocation error posted to `/error`,
/// and a process that exits before asking for an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_fails_on_an_error_post_and_on_a_crash() {
    let artifacts = artifacts();
    let stack = start(options("artifacts-errors")).await;
    let template = Template::load(
        &repo_root().join("template.yaml"),
        &stack.options.stack_name,
        LOCAL_REGION,
        LOCAL_ACCOUNT,
    );
    let list_targets = &artifacts[0];

    // An execution input ListTargets rejects: the runtime posts /error with InvalidInput.
    let mut env = start_env(&template, list_targets, &stack).await.unwrap();
    let err = env
        .invoke(json!({"input": {"bogus": true}, "execution": "bad-input"}))
        .await
        .expect_err("an invalid input is an invocation error");
    assert!(
        err.contains("Error {") && err.contains("InvalidInput"),
        "{err}"
    );
    // The environment survives an invocation error and answers the next event.
    let ok = env
        .invoke(json!({"input": {}, "execution": "after-error"}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok["run_id"], "after-error", "{ok}");
    env.stop();

    // With a setting the steps refuse, the bootstrap cannot start: the process ends before its
    // first GET /next, and the harness says so.
    let api = RuntimeApi::start("arn:aws:lambda:us-east-1:123456789012:function:x").await;
    let (mut env_vars, timeout) = lambda_environment(
        &template,
        list_targets.name,
        &stack,
        &api,
        &list_targets.bootstrap,
    );
    env_vars.insert("LOOKUP_RATE_PER_SECOND".into(), "fast".into());
    let err = Environment::start(list_targets, api, &env_vars, timeout)
        .await
        .err()
        .expect("a bootstrap without its settings does not start");
    assert!(
        err.contains("exited") || err.contains("init error"),
        "{err}"
    );
    stack.stop().await;
}

/// The IngestObjects bootstrap on the largest batch the planner makes: 100 log objects of a
/// synthetic organisation trail (`SyntheticTrail`: the dataset's records as new events, 500 per
/// object, 50,000 in all), then the same batch again (every object already ingested). Prints
/// the function's figures: the duration and peak memory behind docs/ingest.md ("A million
/// events").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_ingest_objects_bootstrap_ingests_a_full_batch() {
    use iamtrail_aws::steps::ingest::objects::IngestObjectsOutput;
    use iamtrail_core::synthetic_trail::{gzip, SyntheticTrail, OBJECT_MINUTES};
    use iamtrail_core::trail::{IngestBatch, PlannedObject};
    let artifacts = artifacts();
    let stack = start(options("artifacts-ingest")).await;
    let template = Template::load(
        &repo_root().join("template.yaml"),
        &stack.options.stack_name,
        LOCAL_REGION,
        LOCAL_ACCOUNT,
    );
    let mut base = Vec::new();
    for path in iamtrail_core::record::log_file_paths(&dataset_dir()).unwrap() {
        let bytes = std::fs::read(&path).unwrap();
        base.extend(
            iamtrail_core::record::delivery_records(&bytes)
                .unwrap()
                .iter()
                .map(|r| r.get().to_string()),
        );
    }
    let bucket = iamtrail::local::trail_bucket(&stack.options.stack_name);
    let start_time = chrono::Utc::now() - chrono::Duration::days(2);
    let mut objects = Vec::new();
    for object in SyntheticTrail::new(&base, 4, 100, 500, start_time) {
        let body = gzip(&object.body).unwrap();
        objects.push(PlannedObject {
            key: object.key.clone(),
            size: body.len() as u64,
        });
        stack
            .context
            .s3
            .put_object()
            .bucket(&bucket)
            .key(&object.key)
            .body(body.into())
            .send()
            .await
            .unwrap();
    }
    let batch = IngestBatch {
        run_id: "artifacts".into(),
        batch: 0,
        bucket,
        start: start_time - chrono::Duration::minutes(OBJECT_MINUTES),
        end: chrono::Utc::now(),
        objects,
        force: false,
    };
    let a = artifacts
        .iter()
        .find(|a| a.name == "ingest-objects")
        .unwrap();
    let mut env = start_env(&template, a, &stack).await.unwrap();
    for round in 0..2 {
        let out: IngestObjectsOutput = serde_json::from_value(
            env.invoke(serde_json::to_value(&batch).unwrap())
                .await
                .unwrap(),
        )
        .unwrap();
        let c = &out.counts;
        println!(
            "ingest-objects round {round}: {} objects, {} ingested, {} already, {} records, {} stored, {} alerts queued, {} failed",
            out.objects, c.ingested, c.already_ingested, c.records, c.stored, c.alerts_queued, out.failed.len()
        );
        assert!(out.failed.is_empty(), "{:?}", out.failed);
        if round == 0 {
            assert_eq!((c.ingested, c.records), (100, 50_000));
            assert!(
                c.stored > 5_000,
                "the dataset's share of identity events: {}",
                c.stored
            );
        } else {
            assert_eq!((c.ingested, c.already_ingested, c.stored), (0, 100, 0));
        }
    }
    let figures = figures(env, a, &template);
    measured(a.name, &figures);
    println!(
        "ingest-objects: {} ms for 100 objects (50,000 records), {} ms again, peak RSS {} MiB (MemorySize {} MB)",
        ms(figures.durations[0]),
        ms(figures.durations[1]),
        mib(figures.peak_rss_kib * 1024),
        figures.memory_mb
    );
    stack.stop().await;
}
