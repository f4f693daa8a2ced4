//! tether: a sticky-session reverse proxy for realtime clusters (WebSocket, long-polling, socket.io).
//!
//! The binary in `main.rs` is a thin shell over [`cli::run`]; everything else lives here so tests,
//! benches and other programs can drive the same code.

// A panic on network input would cut every client of the process; library code returns errors.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod affinity;
pub mod cli;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod engine;
pub mod health;
pub mod load;
pub mod metrics;
pub mod nginx;
pub mod proxy;
pub mod upstream;
