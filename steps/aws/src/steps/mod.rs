//! The steps' library functions: `input JSON -> output JSON`, called by the Lambda binaries,
//! the local stack's gateway and the tests alike.

pub mod aggregate;
pub mod collect;
pub mod evaluate_alerts;
pub mod export;
pub mod list_targets;
