//! Settings of the forward input (`[[input]] type = "forward"`).

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use fuwa_api::{Address, ByteSize, NonZeroDuration};
use serde::Deserialize;

/// The input's timeouts: more than 0 and at most 365 days (deadlines are
/// instants: far beyond this they would overflow).
pub type Timeout = NonZeroDuration<{ 365 * 86_400 }>;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// TCP (and UDP heartbeat) address
    #[serde(default = "default_bind")]
    pub bind: Address,
    /// largest message accepted, also the cap on decompressed size
    #[serde(default = "default_limit")]
    pub message_length_limit: ByteSize,
    /// longest tag accepted; events with a longer one are refused (counted
    /// and logged, never delivered)
    #[serde(default = "default_tag_limit")]
    pub tag_length_limit: ByteSize,
    /// connections served at once; over it a new connection is accepted and
    /// closed at once. Default: a quarter of the soft RLIMIT_NOFILE read at
    /// start, between 16 and 4096.
    pub max_connections: Option<NonZeroUsize>,
    /// time from accept to the end of the handshake (TLS, HELO/PING/PONG)
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: Timeout,
    /// a connection with no bytes in flight and none arriving for this long
    /// is closed (Fluentd clients reconnect)
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Timeout,
    /// once a message has begun, its last byte must arrive within this
    #[serde(default = "default_message_timeout")]
    pub message_timeout: Timeout,
    /// bytes of messages begun but not complete, and of events decoded and
    /// waiting for the pipeline, across every connection of the input; the
    /// connection that would go over it is closed (its message was never
    /// acked). At least twice message_length_limit.
    #[serde(default = "default_pending")]
    pub pending_bytes_limit: ByteSize,
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

fn default_bind() -> Address {
    Address(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 24224)))
}
fn default_limit() -> ByteSize {
    ByteSize(32 << 20)
}
fn default_tag_limit() -> ByteSize {
    ByteSize(fuwa_api::tag::DEFAULT_TAG_LENGTH_LIMIT as u64)
}
fn default_handshake_timeout() -> Timeout {
    NonZeroDuration(Duration::from_secs(10))
}
fn default_idle_timeout() -> Timeout {
    NonZeroDuration(Duration::from_secs(60))
}
fn default_message_timeout() -> Timeout {
    NonZeroDuration(Duration::from_secs(30))
}
fn default_pending() -> ByteSize {
    ByteSize(128 << 20)
}
fn yes() -> bool {
    true
}
