//! Settings of the forward input (`[[input]] type = "forward"`).

use std::path::PathBuf;

use fuwa_api::ByteSize;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// TCP (and UDP heartbeat) address
    #[serde(default = "default_bind")]
    pub bind: String,
    /// largest message accepted, also the cap on decompressed size
    #[serde(default = "default_limit")]
    pub message_length_limit: ByteSize,
    /// answer UDP heartbeats on the same port
    #[serde(default = "yes")]
    pub udp_heartbeat: bool,
    /// enables the handshake (HELO/PING/PONG)
    pub shared_key: Option<String>,
    /// the name this server gives in PONG
    pub self_hostname: Option<String>,
    /// user authentication inside the handshake
    #[serde(default)]
    pub users: Vec<User>,
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

fn default_bind() -> String {
    "0.0.0.0:24224".into()
}
fn default_limit() -> ByteSize {
    ByteSize(32 << 20)
}
fn yes() -> bool {
    true
}
