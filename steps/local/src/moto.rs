//! The moto server process of the local stack.
//!
//! [`MotoServer::start`] picks a free loopback port, runs `moto_server -H 127.0.0.1 -p PORT`
//! with `MOTO_PORT` set to the gateway's port (moto's Step Functions engine calls
//! `http://localhost:$MOTO_PORT` for Lambda and other service integrations), waits until it
//! answers, and sends the local-stack configuration
//! `{"stepfunctions":{"execute_state_machine":true},"lambda":{"use_docker":false}}` to
//! `POST /moto-api/config` before anything else talks to it. The child is killed (and reaped)
//! by [`MotoServer::stop`] or on drop.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Environment variable that overrides where `moto_server` is found.
pub const MOTO_SERVER_ENV: &str = "IAMTRAIL_MOTO_SERVER";

/// How long [`MotoServer::start`] waits for moto to answer.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of [`MotoServer::start`].
#[derive(Clone, Debug)]
pub struct MotoOptions {
    /// The `moto_server` executable (see [`find_moto_server`]).
    pub moto_server_bin: PathBuf,
    /// Exported to moto as `MOTO_PORT`: the gateway's port, so that moto's Step Functions
    /// engine calls the gateway.
    pub moto_port_env: u16,
    /// Where moto's stdout and stderr go (appended); `None` discards them.
    pub log_file: Option<PathBuf>,
    /// S3's minimum size of a multipart upload's parts (all but the last), `None` for AWS's
    /// 5 MiB. moto reads it from `S3_UPLOAD_PART_MIN_SIZE` at start-up and answers
    /// `CompleteMultipartUpload` with `EntityTooSmall` when a part but the last is smaller
    /// (moto 5.2, `moto/settings.py`, `moto/s3/models.py`). A small value (e.g.
    /// [`SMALL_S3_PART_SIZE`]) lets tests upload multipart files of a few KB.
    pub s3_upload_part_min_size: Option<u64>,
}

/// A small S3 minimum part size for tests (moto's documentation uses 256 bytes).
pub const SMALL_S3_PART_SIZE: u64 = 256;

/// What moto keeps of an S3 object in memory before spilling it to a temporary file, when the
/// part size is lowered: moto's default (5 MiB - 1 KiB). moto derives it from
/// `S3_UPLOAD_PART_MIN_SIZE - 1024`, which a small part size would make negative (every object
/// on disk), so it is set explicitly.
const S3_KEY_BUFFER_SIZE: u64 = 5 * 1024 * 1024 - 1024;

/// A moto error.
#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    /// `moto_server` was not found.
    #[error("{0}")]
    NotFound(String),
    /// The process could not be spawned or its log file opened.
    #[error("cannot start {bin}: {source}")]
    Spawn {
        /// The executable.
        bin: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// moto exited before it answered.
    #[error("moto_server exited during start-up ({status}); log tail:\n{log_tail}")]
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// The end of its log (empty without a log file).
        log_tail: String,
    },
    /// moto did not answer in time.
    #[error("moto_server on port {port} did not answer within {waited:?}; log tail:\n{log_tail}")]
    NotReady {
        /// moto's port.
        port: u16,
        /// How long we waited.
        waited: Duration,
        /// The end of its log (empty without a log file).
        log_tail: String,
    },
    /// `POST /moto-api/config` failed or answered something unexpected.
    #[error("configuring moto failed: {0}")]
    Config(String),
    /// Stopping the process failed.
    #[error("cannot stop moto_server: {0}")]
    Stop(#[source] std::io::Error),
}

/// A running moto server, killed on [`MotoServer::stop`] or drop.
#[derive(Debug)]
pub struct MotoServer {
    child: Option<Child>,
    port: u16,
    log_file: Option<PathBuf>,
}

/// A port that was free on 127.0.0.1 a moment ago (bind `:0`, read the port, release it).
///
/// # Panics
/// If no loopback port can be bound at all.
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind any port on 127.0.0.1")
}

/// Finds `moto_server`: the `IAMTRAIL_MOTO_SERVER` environment variable if set, otherwise
/// `<repo_root>/.venv/bin/moto_server`.
pub fn find_moto_server(repo_root: &Path) -> Result<PathBuf, MotoError> {
    if let Some(p) = std::env::var_os(MOTO_SERVER_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(MotoError::NotFound(format!(
                "{MOTO_SERVER_ENV}={} does not exist; unset it or point it at moto_server \
                 (run scripts/setup-venv.sh to install moto into .venv)",
                p.display()
            )))
        };
    }
    let p = repo_root.join(".venv").join("bin").join("moto_server");
    if p.is_file() {
        Ok(p)
    } else {
        Err(MotoError::NotFound(format!(
            "moto_server not found at {}; run scripts/setup-venv.sh to install the local stack's \
             Python tools into .venv (or set {MOTO_SERVER_ENV})",
            p.display()
        )))
    }
}

impl MotoServer {
    /// Starts moto on a free loopback port and configures it for the local stack. A start that
    /// fails because the port was taken meanwhile is retried on another port (3 attempts).
    pub async fn start(options: MotoOptions) -> Result<MotoServer, MotoError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| MotoError::Config(format!("cannot build an HTTP client: {e}")))?;
        let mut attempt = 0;
        let server = loop {
            attempt += 1;
            let port = free_port();
            let mut server = MotoServer::spawn(&options, port)?;
            match server.wait_ready(&client).await {
                Ok(()) => break server,
                Err(MotoError::Exited { .. }) if attempt < 3 => {
                    tracing::debug!(port, attempt, "moto exited during start-up, retrying");
                    continue;
                }
                Err(e) => return Err(e),
            }
        };
        server.configure(&client).await?;
        tracing::debug!(endpoint = server.endpoint(), "moto server ready");
        Ok(server)
    }

    fn spawn(options: &MotoOptions, port: u16) -> Result<MotoServer, MotoError> {
        let spawn_err = |source| MotoError::Spawn {
            bin: options.moto_server_bin.clone(),
            source,
        };
        let (stdout, stderr) = match &options.log_file {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(spawn_err)?;
                }
                let f = File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(spawn_err)?;
                let f2 = f.try_clone().map_err(spawn_err)?;
                (Stdio::from(f), Stdio::from(f2))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let mut command = Command::new(&options.moto_server_bin);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_PORT", options.moto_port_env.to_string())
            .env("PYTHONUNBUFFERED", "1");
        if let Some(size) = options.s3_upload_part_min_size {
            command
                .env("S3_UPLOAD_PART_MIN_SIZE", size.to_string())
                .env(
                    "MOTO_S3_DEFAULT_KEY_BUFFER_SIZE",
                    S3_KEY_BUFFER_SIZE.to_string(),
                );
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(spawn_err)?;
        tracing::debug!(port, pid = child.id(), "moto server spawned");
        Ok(MotoServer {
            child: Some(child),
            port,
            log_file: options.log_file.clone(),
        })
    }

    async fn wait_ready(&mut self, client: &reqwest::Client) -> Result<(), MotoError> {
        let started = Instant::now();
        let url = format!("{}/moto-api/config", self.endpoint());
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(MotoError::Exited {
                        status,
                        log_tail: self.log_tail(),
                    });
                }
            }
            if let Ok(r) = client.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if started.elapsed() > READY_TIMEOUT {
                let log_tail = self.log_tail();
                self.kill();
                return Err(MotoError::NotReady {
                    port: self.port,
                    waited: started.elapsed(),
                    log_tail,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn configure(&self, client: &reqwest::Client) -> Result<(), MotoError> {
        let config = json!({
            "stepfunctions": {"execute_state_machine": true},
            "lambda": {"use_docker": false}
        });
        let response = client
            .post(format!("{}/moto-api/config", self.endpoint()))
            .header("content-type", "application/json")
            .body(config.to_string())
            .send()
            .await
            .map_err(|e| MotoError::Config(e.to_string()))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| MotoError::Config(e.to_string()))?;
        if !status.is_success() {
            return Err(MotoError::Config(format!("HTTP {status}: {text}")));
        }
        // moto echoes only the batch and lambda sections (not stepfunctions), so that is what
        // can be checked.
        let echoed: Value = serde_json::from_str(&text)
            .map_err(|e| MotoError::Config(format!("unexpected answer {text:?}: {e}")))?;
        if echoed.pointer("/lambda/use_docker") != Some(&Value::Bool(false)) {
            return Err(MotoError::Config(format!(
                "moto did not take the configuration: {text}"
            )));
        }
        Ok(())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// moto's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last lines of moto's log file (empty without one).
    pub fn log_tail(&self) -> String {
        self.log_file
            .as_deref()
            .map(|p| tail(p, 4096))
            .unwrap_or_default()
    }

    /// Kills the process and waits for it.
    pub fn stop(mut self) -> Result<(), MotoError> {
        match self.child.take() {
            Some(mut child) => {
                let killed = child.kill();
                let waited = child.wait();
                // An already-exited child is not an error.
                if let Err(e) = waited {
                    return Err(MotoError::Stop(e));
                }
                if let Err(e) = killed {
                    if e.kind() != std::io::ErrorKind::InvalidInput {
                        return Err(MotoError::Stop(e));
                    }
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable() {
        let p = free_port();
        assert!(p > 0);
        TcpListener::bind(("127.0.0.1", p)).expect("port should be free");
    }

    #[test]
    fn find_moto_server_explains_setup() {
        let dir = std::env::temp_dir().join(format!("iamtrail-no-venv-{}", std::process::id()));
        if std::env::var_os(MOTO_SERVER_ENV).is_none() {
            let e = find_moto_server(&dir).unwrap_err().to_string();
            assert!(e.contains("scripts/setup-venv.sh"), "{e}");
        }
    }
}
