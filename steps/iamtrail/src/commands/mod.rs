//! The commands that work on a deployed stack (found by name through its CloudFormation
//! outputs, [`crate::stack`]), and `rules`, which needs no AWS. One module per command or
//! small group; `main.rs` only parses the arguments and dispatches. docs/cli.md describes them.

pub mod executions;
pub mod ingest;
pub mod redrive;
pub mod rules;
pub mod start;
pub mod status;
