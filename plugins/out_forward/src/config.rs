//! Settings of the forward output (`[[output]] type = "forward"`), named as
//! in Fluentd's out_forward.

use std::path::PathBuf;

use fuwa_api::{HumanDuration, NonZeroDuration};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardOutConfig {
    pub servers: Vec<ServerConfig>,
    #[serde(default)]
    pub compress: CompressConfig,
    /// wait for `{"ack": chunk}` before a chunk counts as delivered
    #[serde(default = "yes")]
    pub require_ack_response: bool,
    #[serde(default = "default_ack_timeout")]
    pub ack_response_timeout: NonZeroDuration,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: NonZeroDuration,
    /// limit on sending one chunk (and on each handshake step)
    #[serde(default = "default_send_timeout")]
    pub send_timeout: NonZeroDuration,
    /// reuse connections between chunks
    #[serde(default)]
    pub keepalive: bool,
    /// close a reused connection idle for longer than this; unset: never
    pub keepalive_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub heartbeat_type: HeartbeatType,
    #[serde(default = "default_heartbeat_interval")]
    pub heartbeat_interval: HumanDuration,
    /// how long a failed server is left alone before it is tried again
    /// (with `heartbeat_type = "none"`; otherwise the heartbeat decides)
    #[serde(default = "default_recover_wait")]
    pub recover_wait: HumanDuration,
    /// turns on the handshake; also settable per server
    pub shared_key: Option<String>,
    /// the name sent in PING; default: the agent's hostname
    pub self_hostname: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// a name for logs; default `host:port`
    pub name: Option<String>,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub standby: bool,
    pub shared_key: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CompressConfig {
    #[default]
    Text,
    Gzip,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HeartbeatType {
    /// a connection over the data transport (TCP, or TLS when configured)
    #[default]
    Transport,
    /// the same as `transport`
    Tcp,
    /// one datagram to the server's port, answered by the server (Fluentd's
    /// and fuwa's forward inputs answer them)
    Udp,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA certificates to trust; default: the system's roots
    pub ca_path: Option<PathBuf>,
    /// `false` accepts any certificate (a warning is logged): testing only
    #[serde(default = "yes")]
    pub verify: bool,
    /// the name to check the certificate against (and send as SNI);
    /// default: each server's host
    pub server_name: Option<String>,
}

fn yes() -> bool {
    true
}
fn default_port() -> u16 {
    24224
}
fn default_weight() -> u32 {
    60
}
fn default_ack_timeout() -> NonZeroDuration {
    NonZeroDuration(std::time::Duration::from_secs(190))
}
fn default_connect_timeout() -> NonZeroDuration {
    NonZeroDuration(std::time::Duration::from_secs(10))
}
fn default_send_timeout() -> NonZeroDuration {
    NonZeroDuration(std::time::Duration::from_secs(60))
}
fn default_heartbeat_interval() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(1))
}
fn default_recover_wait() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(10))
}
