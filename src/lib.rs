//! fuwa, the engine: config loading, routing, the buffer (storage,
//! delivery, dead letters), the supervisor (start, reload, graceful stop),
//! metrics and the operator API; `cli` holds the commands that are tools.
//! The binary (`src/main.rs`) only parses the command line and calls in
//! here, so tests and benchmarks can drive the engine without a process.
//!
//! `admin` is the operator HTTP API (`[agent.api]`: /metrics, /health,
//! /api/status); `plugins` is the one table of plugin types.

pub mod admin;
pub mod buffer;
pub mod cli;
pub mod config;
pub mod engine;
pub mod metrics;
pub mod plugins;
pub mod router;
