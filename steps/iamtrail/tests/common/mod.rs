//! Running the real `iamtrail` binary with an AWS environment that points at a local endpoint
//! (the local stack's gateway, or a server of recorded responses), and nothing from the
//! caller's own AWS configuration.

#![allow(dead_code)]

use std::process::{Command, Output};

/// How a CLI run ended.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with the whole transcript unless the command succeeded.
    pub fn expect_ok(self, what: &str) -> Run {
        assert!(self.ok(), "{what} failed:\n{}", self.transcript());
        self
    }

    /// Panics with the whole transcript unless the command failed.
    pub fn expect_failure(self, what: &str) -> Run {
        assert!(
            !self.ok(),
            "{what} should have failed:\n{}",
            self.transcript()
        );
        self
    }

    pub fn transcript(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    /// stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.transcript()))
    }
}

/// Runs `iamtrail ARGS` against `endpoint` (blocking).
pub fn iamtrail(endpoint: &str, args: &[&str]) -> Run {
    let output: Output = Command::new(env!("CARGO_BIN_EXE_iamtrail"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", "/nonexistent/iamtrail-test-aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/iamtrail-test-aws-credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("IAMTRAIL_LOG", "error")
        .output()
        .expect("running the iamtrail binary");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `iamtrail ARGS` from async code without blocking the runtime that serves the endpoint.
pub async fn iamtrail_async(endpoint: &str, args: &[&str]) -> Run {
    let endpoint = endpoint.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        iamtrail(&endpoint, &args)
    })
    .await
    .expect("the CLI thread")
}

/// A local stack over the bundled dataset, as the demo runs it (newest record 24 hours ago),
/// without the 2 requests/s quota (the scenarios run several executions), deployed and
/// registered as the CloudFormation stack `name`.
pub async fn dataset_stack(name: &str) -> iamtrail::local::LocalStack {
    use iamtrail::demo::{bundled_dataset, dataset_emulator};
    use iamtrail::local::{find_repo_root, LocalOptions, LocalStack};
    let repo = find_repo_root().expect("repository root");
    let mut options = LocalOptions::new(&repo);
    options.stack_name = name.to_string();
    options.dataset = Some(bundled_dataset(&repo));
    options.emulator = dataset_emulator(Some(24), None);
    let mut stack = LocalStack::start(options)
        .await
        .unwrap_or_else(|e| panic!("local stack (needs moto: run scripts/setup-venv.sh): {e:#}"));
    stack.deploy().await.expect("deploy the local stack");
    stack
}

/// How many executions a state machine of the local stack has.
pub async fn execution_count(
    stack: &iamtrail::local::LocalStack,
    state_machine_arn: &str,
) -> usize {
    stack
        .sfn()
        .list_executions()
        .state_machine_arn(state_machine_arn)
        .send()
        .await
        .unwrap()
        .executions()
        .len()
}
