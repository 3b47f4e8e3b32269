//! Forward protocol input: accepts what every Fluentd logger, Fluent Bit and
//! Docker's fluentd driver send.
//!
//! - `config.rs`: settings
//! - `conn.rs`: one connection's life
//! - `protocol.rs`: the wire protocol (modes, options, acks, JSON variant)
//! - `auth.rs`: the handshake
//! - `json.rs`: where a JSON-mode message ends, found incrementally
//!
//! Limits (all in `config.rs`): `max_connections` (over it a connection is
//! accepted and closed at once), `handshake_timeout` (TLS and
//! HELO/PING/PONG), `idle_timeout` (between messages, and for a client that
//! does not read its acks), `message_timeout` (a message begun must be
//! complete within it), `pending_bytes_limit` (bytes of messages not
//! complete or not yet accepted, across connections), `message_length_limit`
//! (also the decompressed size) and `tag_length_limit`. Accept errors back
//! off from 10 ms to 1 s. Memory of the input is at most about
//! 2 × pending_bytes_limit + max_connections × 512 KiB (read buffers) +
//! worker threads × 3 × message_length_limit (a message being decompressed
//! or rewritten: decoding never awaits, so one per worker thread; in JSON
//! mode serde's value tree takes up to ~10 × the message instead).

pub mod auth;
pub mod config;
pub mod conn;
pub mod json;
pub mod protocol;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use fuwa_api::memory::{size, KIB};
use fuwa_api::ratelimit::RateLimit;
use fuwa_api::{
    BuildContext, ConfigError, ConfigSection, Input, InputContext, MemoryBound, MemoryEnv,
    PluginError,
};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

pub use config::ForwardConfig;

const ACCEPT_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(1);

pub struct ForwardInput {
    cfg: ForwardConfig,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    listener: Option<TcpListener>,
    udp: Option<UdpSocket>,
}

/// Builds the input from its config section.
pub fn build(
    section: &ConfigSection<'_>,
    ctx: &BuildContext,
) -> Result<Box<dyn Input>, Vec<ConfigError>> {
    let cfg: ForwardConfig = section.parse_all()?;
    let mut errors = Vec::new();
    let addr = cfg.bind.0;
    // a message as large as message_length_limit, once decoded (times
    // rewritten, entries inflated up to the same limit), must fit alone
    if cfg.pending_bytes_limit.0 < cfg.message_length_limit.0.saturating_mul(2) {
        errors.push(section.error(
            "pending_bytes_limit",
            format!(
                "must be at least twice message_length_limit ({} bytes), or the largest message could never be accepted",
                cfg.message_length_limit.0
            ),
        ));
    }
    if cfg.shared_key.is_none() && (!cfg.users.is_empty() || cfg.self_hostname.is_some()) {
        errors.push(section.error(
            "shared_key",
            "users and self_hostname need shared_key (the handshake)",
        ));
    }
    let tls = match &cfg.tls {
        None => None,
        Some(t) => match load_tls(t) {
            Ok(a) => Some(a),
            Err(e) => {
                errors.push(section.error("tls", e));
                None
            }
        },
    };
    let _ = ctx;
    if errors.is_empty() {
        Ok(Box::new(ForwardInput {
            cfg,
            addr,
            tls,
            listener: None,
            udp: None,
        }))
    } else {
        Err(errors)
    }
}

fn load_tls(t: &config::TlsConfig) -> Result<TlsAcceptor, String> {
    let certs = fuwa_codec::load_certs(&t.cert_path, "cert_path")?;
    let key = fuwa_codec::load_key(&t.key_path, "key_path")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not work together: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What one connection's read buffer may hold beyond the message bytes
/// `pending_bytes_limit` counts: it grows by `conn::READ_CHUNK` and keeps
/// its capacity between messages.
const READ_BUFFER: u64 = 2 * conn::READ_CHUNK as u64;

/// A message decoded at once: msgpack at most ~3 × its size (inflated,
/// times rewritten into a new buffer); JSON mode's value tree up to ~10 ×.
/// Any client may send JSON, so the bound counts 10.
const DECODE_FACTOR: u64 = 10;

#[async_trait]
impl Input for ForwardInput {
    fn memory_bound(&self, env: &MemoryEnv) -> MemoryBound {
        let c = &self.cfg;
        // read now: `fuwa run` and `fuwa check` raise the soft limit first
        let conns = c
            .max_connections
            .map_or_else(fuwa_api::fdlimit::default_max_connections, |n| n.get())
            as u64;
        let msg = c.message_length_limit.0;
        let mut b = MemoryBound::new()
            .with(
                format!(
                    "2 × pending_bytes_limit {} (messages begun and events waiting, with their buffers' slack)",
                    size(c.pending_bytes_limit.0)
                ),
                c.pending_bytes_limit.0.saturating_mul(2),
            )
            .with(
                format!("{conns} connections × read buffer {}", size(READ_BUFFER)),
                conns.saturating_mul(READ_BUFFER),
            )
            .with(
                format!(
                    "{} worker threads × {DECODE_FACTOR} × message_length_limit {} (a message being decoded)",
                    env.worker_threads,
                    size(msg)
                ),
                env.worker_threads
                    .saturating_mul(DECODE_FACTOR)
                    .saturating_mul(msg),
            );
        if self.tls.is_some() {
            // rustls: a record buffer each way, and the handshake state
            b.add(
                format!("{conns} connections × TLS state 40 KiB"),
                conns.saturating_mul(40 * KIB),
            );
        }
        b
    }

    async fn start(&mut self) -> Result<(), PluginError> {
        let listener = TcpListener::bind(self.addr)
            .await
            .map_err(|e| PluginError::Other(format!("cannot listen on {}: {e}", self.addr)))?;
        let local = listener.local_addr()?;
        if self.cfg.udp_heartbeat {
            let udp = UdpSocket::bind(local).await.map_err(|e| {
                PluginError::Other(format!("cannot bind UDP heartbeat on {local}: {e}"))
            })?;
            self.udp = Some(udp);
        }
        self.listener = Some(listener);
        Ok(())
    }

    async fn run(mut self: Box<Self>, ctx: InputContext) -> Result<(), PluginError> {
        if self.listener.is_none() {
            self.start().await?;
        }
        let listener = self
            .listener
            .take()
            .ok_or_else(|| PluginError::Other("not started".into()))?;
        let local = listener.local_addr()?;
        let security = self.cfg.shared_key.clone().map(|k| auth::Security {
            shared_key: k,
            self_hostname: self
                .cfg
                .self_hostname
                .clone()
                .unwrap_or_else(|| "fuwa".to_string()),
            users: self.cfg.users.clone(),
        });
        let shared = Arc::new(conn::ConnShared::new(
            ctx.id.clone(),
            ctx.emitter.clone(),
            &self.cfg,
            security,
        ));
        let max_connections = self
            .cfg
            .max_connections
            .map_or_else(fuwa_api::fdlimit::default_max_connections, |n| n.get());
        info!(input = %ctx.id, addr = %local, tls = self.tls.is_some(), handshake = self.cfg.shared_key.is_some(), max_connections, "forward input listening");
        let slots = Arc::new(Semaphore::new(max_connections));
        let full_warn = RateLimit::new(10_000);
        let accept_warn = RateLimit::new(10_000);
        let mut backoff = ACCEPT_BACKOFF_MIN;
        let handshake_timeout = self.cfg.handshake_timeout.0;
        let mut tasks = JoinSet::new();
        if let Some(udp) = self.udp.take() {
            let mut sd = ctx.shutdown.clone();
            let id = ctx.id.clone();
            tasks.spawn(async move {
                let udp_warn = RateLimit::new(10_000);
                let mut b = [0u8; 1024];
                loop {
                    tokio::select! {
                        r = udp.recv_from(&mut b) => match r {
                            // Fluentd answers a heartbeat datagram with one NUL byte
                            Ok((_, from)) => { let _ = udp.send_to(b"\0", from).await; }
                            // rarely said, and never a spin
                            Err(e) => {
                                if let Some(suppressed) = udp_warn.check() {
                                    warn!(input = %id, error = %e, suppressed, "UDP heartbeat receive failed");
                                }
                                tokio::time::sleep(ACCEPT_BACKOFF_MIN).await;
                            }
                        },
                        _ = sd.wait() => break,
                    }
                }
            });
        }
        let mut shutdown = ctx.shutdown.clone();
        loop {
            tokio::select! {
                r = listener.accept() => {
                    let (sock, peer) = match r {
                        Ok(x) => {
                            backoff = ACCEPT_BACKOFF_MIN;
                            x
                        }
                        Err(e) => {
                            // EMFILE and friends: back off (10 ms doubling up
                            // to 1 s) rather than spin, and say so rarely
                            if let Some(suppressed) = accept_warn.check() {
                                warn!(input = %ctx.id, error = %e, suppressed, retry_in = ?backoff, "accept failed");
                            }
                            tokio::select! {
                                _ = tokio::time::sleep(backoff) => {}
                                _ = shutdown.wait() => break,
                            }
                            backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                            continue;
                        }
                    };
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        // over max_connections: closed at once (the client
                        // sees the connection end and tries again later)
                        if let Some(suppressed) = full_warn.check() {
                            warn!(input = %ctx.id, %peer, max_connections, suppressed, "connection refused: max_connections reached");
                        }
                        drop(sock);
                        continue;
                    };
                    let _ = sock.set_nodelay(true);
                    let shared = shared.clone();
                    let sd = ctx.shutdown.clone();
                    let tls = self.tls.clone();
                    let deadline = tokio::time::Instant::now() + handshake_timeout;
                    tasks.spawn(async move {
                        let _permit = permit;
                        match tls {
                            None => conn::serve(sock, peer, shared, sd, deadline).await,
                            Some(acceptor) => {
                                match tokio::time::timeout_at(deadline, acceptor.accept(sock)).await {
                                    Ok(Ok(s)) => conn::serve(s, peer, shared, sd, deadline).await,
                                    Ok(Err(e)) => warn!(input = %shared.id, %peer, error = %e, "TLS handshake failed"),
                                    Err(_) => warn!(input = %shared.id, %peer, "TLS handshake not complete within handshake_timeout; closing connection"),
                                }
                            }
                        }
                    });
                    // reap finished connections so the set does not grow
                    while tasks.try_join_next().is_some() {}
                }
                _ = shutdown.wait() => break,
            }
        }
        drop(listener);
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn try_build(src: &str) -> Result<(), Vec<String>> {
        let section = ConfigSection::from_toml("input[0]", src).expect("section");
        let ctx = BuildContext {
            id: "forward.0".into(),
            hostname: "h".into(),
            timezone: "UTC".into(),
            data_dir: std::env::temp_dir(),
        };
        build(&section, &ctx)
            .map(|_| ())
            .map_err(|e| e.into_iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn limits_are_checked_not_trusted() {
        assert!(try_build("").is_ok());
        assert!(try_build(
            "max_connections = 10\nidle_timeout = \"5m\"\ntag_length_limit = \"2KiB\""
        )
        .is_ok());
        for (bad, key) in [
            ("max_connections = 0", "max_connections"),
            ("idle_timeout = \"0s\"", "idle_timeout"),
            ("message_timeout = \"100000d\"", "message_timeout"),
            ("handshake_timeout = 0", "handshake_timeout"),
            (
                "message_length_limit = \"64MiB\"\npending_bytes_limit = \"100MiB\"",
                "pending_bytes_limit",
            ),
        ] {
            let errs = try_build(bad).unwrap_err();
            assert!(errs.iter().any(|e| e.contains(key)), "{bad}: {errs:?}");
        }
    }
}
