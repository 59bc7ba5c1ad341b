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
//! (`scripts/setup-venv.sh`). No test passes by skipping.

pub mod cloudtrail;
pub mod gateway;
pub mod moto;
pub mod usage;

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
pub use usage::{Consumed, Usage, UsageReport};

/// How to install what the tests need from Python (moto server, cfn-lint, statelint).
pub const SETUP_VENV_HINT: &str =
    "run scripts/setup-venv.sh, which installs moto server and the local stack's other Python tools into .venv";

/// For tests: a dependency is missing. Fails the test with `why` and `fix` (how to get the
/// dependency, e.g. [`SETUP_VENV_HINT`]): a test never passes without running.
///
/// # Panics
/// Always.
#[track_caller]
pub fn missing_test_dependency(why: impl std::fmt::Display, fix: &str) -> ! {
    panic!("{why}\nTo fix: {fix}.");
}
