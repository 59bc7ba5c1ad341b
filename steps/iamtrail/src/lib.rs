//! The `iamtrail` CLI's library: the local stack and terminal rendering, shared by the binary
//! and the end-to-end tests.

pub mod demo;
pub mod local;
pub mod render;
