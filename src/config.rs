//! Loading and checking the TOML config. Every problem is reported as
//! `FILE:LINE: key: what is wrong`, all of them at once.
//!
//! This file holds what a loaded config is (the `[agent]` settings, the
//! built plugin specs); `config/load.rs` turns TOML text into it.

mod load;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuwa_api::{Filter, HumanDuration, Input, Output, TagPattern};
use serde::Deserialize;

use crate::buffer::config::BufferConfig;

pub use load::load_str;

/// Used by `fuwa run` without `-c`: forward on 127.0.0.1:24224 → stdout.
pub const DEFAULT_CONFIG: &str = r#"# fuwa's embedded default: forward protocol in, JSON Lines on stdout
[[input]]
type = "forward"
bind = "127.0.0.1:24224"

[[output]]
match = "**"
type = "stdout"
[output.buffer]
type = "memory"
flush_interval = "1s"
"#;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    pub hostname: Option<String>,
    #[serde(default = "utc")]
    pub timezone: String,
    #[serde(default = "info")]
    pub log_level: String,
    #[serde(default)]
    pub log_format: LogFormat,
    #[serde(default = "default_shutdown")]
    pub shutdown_timeout: HumanDuration,
    /// `[agent.api]`: the metrics / health / status endpoint (off when absent)
    pub api: Option<ApiConfig>,
}

/// `[agent.api]`: `GET /metrics`, `GET /health`, `GET /api/status`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// e.g. `127.0.0.1:24220`
    pub bind: std::net::SocketAddr,
    /// how far back `/health` looks for dead-lettered chunks
    #[serde(default = "health_period")]
    pub health_period: HumanDuration,
    /// more chunks dead-lettered (or dropped) than this within
    /// health_period makes an output unhealthy
    #[serde(default)]
    pub health_max_dead_letters: u64,
    /// more consecutive failed writes than this (no success in between)
    /// makes an output unhealthy
    #[serde(default = "health_max_failed_writes")]
    pub health_max_failed_writes: u64,
}

fn health_period() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn health_max_failed_writes() -> u64 {
    5
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            data_dir: default_data_dir(),
            hostname: None,
            timezone: utc(),
            log_level: info(),
            log_format: LogFormat::Text,
            shutdown_timeout: default_shutdown(),
            api: None,
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/fuwa")
}
fn utc() -> String {
    "UTC".into()
}
fn info() -> String {
    "info".into()
}
fn default_shutdown() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

pub struct InputSpec {
    pub id: String,
    /// the plugin type (`forward`, `tail`, ...)
    pub kind: String,
    pub plugin: Box<dyn Input>,
}

pub struct FilterSpec {
    pub id: String,
    pub pattern: TagPattern,
    pub plugin: Box<dyn Filter>,
}

pub struct OutputSpec {
    pub id: String,
    /// the plugin type (`file`, `s3`, ...)
    pub kind: String,
    pub pattern: TagPattern,
    pub plugin: Arc<dyn Output>,
    pub buffer: BufferConfig,
}

/// A checked config with its plugins built and ready to start.
pub struct Config {
    pub agent: AgentConfig,
    pub hostname: String,
    /// data_dir was set by the config or --data-dir (not defaulted)
    pub data_dir_explicit: bool,
    pub inputs: Vec<InputSpec>,
    pub filters: Vec<FilterSpec>,
    pub outputs: Vec<OutputSpec>,
}

/// Every problem found, ready to print.
#[derive(Debug)]
pub struct ConfigErrors {
    pub file: String,
    pub lines: Vec<String>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            writeln!(f, "{l}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

pub fn load_file(path: &Path, data_dir_override: Option<&Path>) -> Result<Config, ConfigErrors> {
    let name = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        file: name.clone(),
        lines: vec![format!("{name}: cannot read the config file: {e}")],
    })?;
    load_str(&src, &name, data_dir_override)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
#[path = "config_fuzz.rs"]
mod fuzz;
