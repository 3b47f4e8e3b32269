//! Settings of the HTTP input (`[[input]] type = "http"`).

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;

use fuwa_api::{Address, ByteSize, HumanDuration, NonZeroDuration, SizeLimit};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// TCP address to listen on
    #[serde(default = "default_bind")]
    pub bind: Address,
    /// largest body accepted, before and after gzip decompression
    #[serde(default = "default_limit")]
    pub body_size_limit: SizeLimit<{ 1 << 30 }>,
    /// browser origins allowed by CORS (`"*"`: any; `"https://*.example.com"`:
    /// any subdomain). When set, a request from another origin gets 403.
    #[serde(default)]
    pub cors_allow_origins: Vec<String>,
    /// answer `Access-Control-Allow-Credentials: true` (cookies on beacons)
    #[serde(default)]
    pub cors_allow_credentials: bool,
    /// when set, every POST needs `Authorization: Bearer <auth_token>`
    pub auth_token: Option<String>,
    /// record field holding the event time (taken out unless keep_time_key)
    pub time_key: Option<String>,
    /// how time_key is written: strftime, rfc3339, unix, unix_ms (default:
    /// RFC 3339 or epoch seconds)
    pub time_format: Option<String>,
    #[serde(default)]
    pub keep_time_key: bool,
    /// how long a request may wait for a full buffer before it gets 503
    #[serde(default = "default_backpressure_timeout")]
    pub backpressure_timeout: NonZeroDuration,
    /// the `Retry-After` given with 503 (whole seconds, at least 1)
    #[serde(default = "default_retry_after")]
    pub retry_after: HumanDuration,
    /// how long a client may take to send a request's body once its head
    /// arrived (a body that stops midway is answered 408 and closed)
    #[serde(default = "default_read_timeout")]
    pub read_timeout: NonZeroDuration,
    /// how long a client may take to send a request head: from the accept
    /// for the first request, from its first byte for later ones
    #[serde(default = "default_header_timeout")]
    pub header_timeout: NonZeroDuration,
    /// how long a keep-alive connection may wait for its next request
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: NonZeroDuration,
    /// open connections at most; more wait in the listen backlog (default:
    /// a quarter of the soft RLIMIT_NOFILE at start, 16 to 4096)
    pub max_connections: Option<NonZeroUsize>,
    /// bytes of request bodies (read, inflated and decoded) held at once
    /// across the input; a request that would go over gets 503 and is closed
    /// (default: 4 × body_size_limit)
    pub body_buffer_limit: Option<ByteSize>,
    /// longest tag (the path after `/`) accepted, in bytes
    #[serde(default = "default_tag_length_limit")]
    pub tag_length_limit: SizeLimit<{ 1 << 20 }>,
    /// peers (IPs or CIDRs) whose `X-Forwarded-For` is believed for
    /// remote_addr_key; empty: the header is never believed
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// answer 204 No Content instead of 200 OK (Fluentd's use_204_response)
    #[serde(default)]
    pub use_204_response: bool,
    /// add the client's IP address to every record under this key
    pub remote_addr_key: Option<String>,
}

fn default_bind() -> Address {
    Address(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 9880)))
}
fn default_limit() -> SizeLimit<{ 1 << 30 }> {
    SizeLimit(32 << 20)
}
fn default_backpressure_timeout() -> NonZeroDuration {
    NonZeroDuration(std::time::Duration::from_secs(5))
}
fn default_retry_after() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(1))
}
fn default_read_timeout() -> NonZeroDuration {
    NonZeroDuration(std::time::Duration::from_secs(30))
}
fn default_header_timeout() -> NonZeroDuration {
    NonZeroDuration(std::time::Duration::from_secs(10))
}
fn default_idle_timeout() -> NonZeroDuration {
    NonZeroDuration(std::time::Duration::from_secs(30))
}
fn default_tag_length_limit() -> SizeLimit<{ 1 << 20 }> {
    SizeLimit(fuwa_api::tag::DEFAULT_TAG_LENGTH_LIMIT as u64)
}
