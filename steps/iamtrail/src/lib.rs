//! The `iamtrail` CLI's library: the local stack, terminal rendering, following executions,
//! the deployed stack's resolution and the commands, shared by the binary and the tests.

pub mod commands;
pub mod demo;
pub mod deployed;
pub mod follow;
pub mod ingest_bench;
pub mod local;
pub mod render;
pub mod replay;
pub mod stack;
