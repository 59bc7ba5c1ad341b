//! Local-stack plumbing for iamtrail: everything needed to run the whole system with no AWS
//! account.
//!
//! - [`cloudtrail`]: a faithful CloudTrail `LookupEvents` emulator over a directory of CloudTrail
//!   log files (S3 delivery format), with optional throttling, time shift and failure injection.
//! - [`gateway`]: an HTTP server on `127.0.0.1:<os port>` that answers Lambda `Invoke` with an
//!   in-process handler, CloudTrail with the emulator, and proxies everything else to moto.
//! - [`moto`]: starts and stops a `moto_server` process configured for the local stack.
//!
//! # Start-up order
//!
//! moto's Step Functions engine calls `http://localhost:$MOTO_PORT` for Lambda, so moto must be
//! started with `MOTO_PORT` set to the *gateway's* port, while the gateway must know moto's
//! address to proxy to it. The supported order is:
//!
//! 1. [`gateway::Gateway::start`] with `upstream: None` (the listener is bound, its port known);
//! 2. [`moto::MotoServer::start`] with `moto_port_env = gateway.port()`;
//! 3. [`gateway::Gateway::set_upstream`] with [`moto::MotoServer::endpoint`].
//!
//! Until step 3, proxied requests answer HTTP 502 with a clear message.
//!
//! This crate deliberately does not depend on the other iamtrail crates.
//!
//! # Tests that need moto
//!
//! A test that cannot find a dependency (moto server, the queries) calls
//! [`missing_test_dependency`], which fails the test with how to install it
//! (`scripts/setup-venv.sh`). Only with `IAMTRAIL_ALLOW_SKIP=1`, and never when `CI` is set,
//! does it print `SKIPPED` and let the test pass.

pub mod cloudtrail;
pub mod gateway;
pub mod moto;

pub use cloudtrail::{
    Clock, CloudTrailEmulator, EmulatorOptions, EmulatorResponse, EmulatorStats, LoadError,
    LoadReport, LookupError, ManualClock, RegionStats, TimeShift,
};
pub use gateway::{
    FaultPlan, FunctionError, Gateway, GatewayConfig, GatewayError, InvalidItemFault, InvokeFuture,
    LambdaHandler, LambdaRegistry, OperationCount, RequestCounts, TextMatch, UnprocessedItemsFault,
    UploadPartFault,
};
pub use moto::{
    find_moto_server, free_port, MotoError, MotoOptions, MotoServer, SMALL_S3_PART_SIZE,
};

/// The environment variable that lets tests skip when a dependency (moto, the queries) is
/// missing: `IAMTRAIL_ALLOW_SKIP=1`. It is ignored when `CI` is set.
pub const ALLOW_SKIP_ENV: &str = "IAMTRAIL_ALLOW_SKIP";

/// Whether a test may skip for a missing dependency: only with `IAMTRAIL_ALLOW_SKIP=1`, and
/// never in CI (`CI` set to any non-empty value).
pub fn skip_allowed() -> bool {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    !ci && std::env::var(ALLOW_SKIP_ENV).is_ok_and(|v| v.trim() == "1")
}

/// How to install what the tests need from Python (moto server, cfn-lint, statelint).
pub const SETUP_VENV_HINT: &str =
    "run scripts/setup-venv.sh, which installs moto server and the local stack's other Python tools into .venv";

/// For tests: a dependency is missing. Panics with `why` and `fix` (how to get the dependency,
/// e.g. [`SETUP_VENV_HINT`]), unless [`skip_allowed`], in which case it prints `SKIPPED: ...`
/// and returns, and the caller returns (passes) without running.
///
/// # Panics
/// Unless skipping is allowed.
#[track_caller]
pub fn missing_test_dependency(why: impl std::fmt::Display, fix: &str) {
    if skip_allowed() {
        eprintln!("SKIPPED ({ALLOW_SKIP_ENV}=1): {why}");
        return;
    }
    panic!(
        "{why}\nTo fix: {fix}.\n(To skip such tests on a machine without it, set \
         {ALLOW_SKIP_ENV}=1; that is ignored when CI is set.)"
    );
}
