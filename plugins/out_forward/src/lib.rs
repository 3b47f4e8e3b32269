//! Forward output: ships chunks to Fluentd, Fluent Bit or another fuwa over
//! the forward protocol, as Fluentd's out_forward does.
//!
//! - `config.rs`: settings
//! - `node.rs`: the servers, their health and the weighted/standby choice
//! - `conn.rs`: one connection's life (TCP, TLS, handshake, send, ack)
//! - `protocol.rs`: the wire protocol (frame, ack, HELO/PING/PONG)
//!
//! A chunk's entries already are a PackedForward body, so a chunk goes out
//! as `[tag, bin(entries), {"size", "chunk", "compressed"?}]` straight from
//! the buffer's bytes (gzip: compressed once per write).

pub mod config;
pub mod conn;
pub mod node;
pub mod protocol;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use fuwa_api::memory::{grown, size, GZIP_STATE, KIB};
use fuwa_api::{
    BuildContext, Chunk, ConfigError, ConfigSection, MemoryBound, MemoryEnv, Output, OutputError,
};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

pub use config::ForwardOutConfig;
use config::{CompressConfig, HeartbeatType};
use conn::{SendError, Transport};
use node::Node;
use protocol::{Compression, Credentials};

pub struct ForwardOutput {
    id: String,
    nodes: Arc<Vec<Node>>,
    transport: Arc<Transport>,
    compression: Compression,
    require_ack: bool,
    keepalive: bool,
    keepalive_timeout: Option<Duration>,
    heartbeat: bool,
    udp_heartbeat: bool,
    heartbeat_interval: Duration,
    recover_wait: Duration,
    heartbeats: Mutex<Option<Vec<JoinHandle<()>>>>,
    /// `tls.verify = false` (warned about on the first write, once logging
    /// is up: the output is built before it)
    insecure_tls: bool,
    started: std::sync::Once,
}

/// Builds the output from its config section.
pub fn build(
    section: &ConfigSection<'_>,
    ctx: &BuildContext,
) -> Result<Arc<dyn Output>, Vec<ConfigError>> {
    let cfg: ForwardOutConfig = section.parse_all()?;
    let mut errors = Vec::new();
    if cfg.servers.is_empty() {
        errors.push(section.error("servers", "at least one server is needed"));
    }
    if cfg.username.is_some() != cfg.password.is_some() {
        errors.push(section.error("username", "username and password go together"));
    }
    if cfg.shared_key.is_none() && cfg.username.is_some() {
        errors.push(section.error(
            "username",
            "user authentication is part of the handshake: it needs shared_key",
        ));
    }
    let self_hostname = cfg
        .self_hostname
        .clone()
        .unwrap_or_else(|| ctx.hostname.clone());
    let mut nodes = Vec::new();
    for (i, s) in cfg.servers.iter().enumerate() {
        let key = format!("servers[{i}]");
        if s.host.trim().is_empty() {
            errors.push(section.error("servers", format!("{key}.host is empty")));
        }
        if s.port == 0 {
            errors.push(section.error("servers", format!("{key}.port must not be 0")));
        }
        if s.username.is_some() != s.password.is_some() {
            errors.push(section.error(
                "servers",
                format!("{key}: username and password go together"),
            ));
        }
        let shared_key = s.shared_key.clone().or_else(|| cfg.shared_key.clone());
        let user = match (&s.username, &s.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            _ => cfg.username.clone().zip(cfg.password.clone()),
        };
        if shared_key.is_none() && s.username.is_some() {
            errors.push(section.error(
                "servers",
                format!("{key}: user authentication is part of the handshake: it needs shared_key"),
            ));
        }
        let cred = shared_key.map(|k| Credentials {
            self_hostname: self_hostname.clone(),
            shared_key: k,
            user,
        });
        let name = s
            .name
            .clone()
            .unwrap_or_else(|| format!("{}:{}", s.host, s.port));
        nodes.push(Node::new(
            name,
            s.host.clone(),
            s.port,
            s.weight,
            s.standby,
            cred,
        ));
    }
    if cfg.heartbeat_interval.0.is_zero() && cfg.heartbeat_type != HeartbeatType::None {
        errors.push(section.error("heartbeat_interval", "must be more than 0"));
    }
    let tls = match &cfg.tls {
        None => None,
        Some(t) => match conn::tls_connector(t) {
            Ok(c) => Some((c, t.server_name.clone())),
            Err(e) => {
                errors.push(section.error("tls", e));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Arc::new(ForwardOutput {
        id: ctx.id.clone(),
        nodes: Arc::new(nodes),
        transport: Arc::new(Transport {
            connect_timeout: cfg.connect_timeout.0,
            send_timeout: cfg.send_timeout.0,
            ack_timeout: cfg.ack_response_timeout.0,
            tls,
        }),
        compression: match cfg.compress {
            CompressConfig::Text => Compression::Text,
            CompressConfig::Gzip => Compression::Gzip,
        },
        require_ack: cfg.require_ack_response,
        keepalive: cfg.keepalive,
        keepalive_timeout: cfg.keepalive_timeout.map(|d| d.0),
        heartbeat: cfg.heartbeat_type != HeartbeatType::None,
        udp_heartbeat: cfg.heartbeat_type == HeartbeatType::Udp,
        heartbeat_interval: cfg.heartbeat_interval.0,
        recover_wait: cfg.recover_wait.0,
        heartbeats: Mutex::new(None),
        insecure_tls: cfg.tls.as_ref().map(|t| !t.verify).unwrap_or(false),
        started: std::sync::Once::new(),
    }))
}

fn gzip(segments: &[Bytes]) -> std::io::Result<Vec<u8>> {
    let size: usize = segments.iter().map(|s| s.len()).sum();
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(size / 4 + 64),
        flate2::Compression::default(),
    );
    for s in segments {
        enc.write_all(s)?;
    }
    enc.finish()
}

impl ForwardOutput {
    /// Starts one heartbeat task per server (on the first write: building
    /// an output, e.g. for `fuwa check`, starts nothing).
    fn ensure_heartbeat(&self) {
        if !self.heartbeat {
            return;
        }
        let mut hb = self.heartbeats.lock().unwrap_or_else(|p| p.into_inner());
        if hb.is_some() {
            return;
        }
        let mut tasks = Vec::new();
        for i in 0..self.nodes.len() {
            let nodes = self.nodes.clone();
            let transport = self.transport.clone();
            let interval = self.heartbeat_interval;
            let udp = self.udp_heartbeat;
            let recover_wait = self.recover_wait;
            let id = self.id.clone();
            tasks.push(tokio::spawn(async move {
                let node = &nodes[i];
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let beat = if udp {
                        let wait = interval.min(transport.connect_timeout);
                        Transport::udp_heartbeat(&node.host, node.port, wait)
                            .await
                            .map_err(SendError::Unreachable)
                    } else {
                        // the whole handshake when there is one: a bare
                        // connect would leave the server logging an aborted
                        // handshake
                        match transport.connect(&node.host, node.port, node.cred.as_ref()).await {
                            Ok(c) => {
                                c.close().await;
                                Ok(())
                            }
                            Err(e) => Err(e),
                        }
                    };
                    match beat {
                        Ok(()) => {
                            if node.mark_up() {
                                info!(output = %id, server = %node.name, "forward server is back (heartbeat)");
                            }
                        }
                        Err(e) => {
                            let msg = format!("heartbeat: {e}");
                            if node.mark_down(&msg, recover_wait) {
                                if let SendError::Auth(reason) = &e {
                                    error!(output = %id, server = %node.name, reason = %reason, "forward server refused the handshake (check shared_key, username, password and self_hostname)");
                                } else {
                                    warn!(output = %id, server = %node.name, error = %msg, "forward server is down");
                                }
                            }
                        }
                    }
                }
            }));
        }
        *hb = Some(tasks);
    }

    /// One attempt on one server: an idle connection when there is a good
    /// one (a stale one is replaced once by a fresh connection), else a new
    /// connection.
    async fn send_to(
        &self,
        node: &Node,
        header: &[u8],
        body: &[Bytes],
        trailer: &[u8],
        ack: Option<&str>,
    ) -> Result<(), SendError> {
        if self.keepalive {
            while let Some(mut c) = node.take_idle() {
                let expired = self
                    .keepalive_timeout
                    .map(|t| c.last_used.elapsed() > t)
                    .unwrap_or(false);
                if expired || !c.still_open().await {
                    c.close().await;
                    continue;
                }
                match c.send(&self.transport, header, body, trailer, ack).await {
                    Ok(()) => {
                        self.keep_or_close(node, c).await;
                        return Ok(());
                    }
                    // the server closed a reused connection (its idle
                    // timeout): say so and try once on a fresh one
                    Err(SendError::Unreachable(m)) | Err(SendError::Closed(m)) => {
                        debug!(output = %self.id, server = %node.name, error = %m, "reused connection failed; reconnecting");
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let mut c = self
            .transport
            .connect(&node.host, node.port, node.cred.as_ref())
            .await?;
        c.send(&self.transport, header, body, trailer, ack).await?;
        self.keep_or_close(node, c).await;
        Ok(())
    }

    async fn keep_or_close(&self, node: &Node, c: conn::Conn) {
        if self.keepalive && c.server_keepalive {
            if let Some(extra) = node.put_idle(c) {
                extra.close().await;
            }
        } else {
            c.close().await;
        }
    }
}

#[async_trait]
impl Output for ForwardOutput {
    /// The chunk's segments are sent as they are (no copy); gzip makes one
    /// compressed copy (at most about the chunk, in a buffer that may have
    /// doubled). Per write: one connection's 64 KiB write buffer and its
    /// ack reader, and the idle connections kept per server.
    fn memory_bound(&self, env: &MemoryEnv) -> MemoryBound {
        let c = env.chunk_limit_size;
        let mut b = MemoryBound::new().with("write buffer 64 KiB + ack reply 64 KiB", 128 * KIB);
        if self.compression == Compression::Gzip {
            b.add(
                format!(
                    "the chunk gzipped (up to chunk_limit_size {}, grown ×2)",
                    size(c)
                ),
                grown(c),
            );
            b.add("gzip state 320 KiB", GZIP_STATE);
        }
        b
    }

    async fn write(&self, chunk: &Chunk) -> Result<(), OutputError> {
        self.started.call_once(|| {
            if self.insecure_tls {
                warn!(output = %self.id, "tls.verify = false: the forward servers' certificates are not checked");
            }
        });
        self.ensure_heartbeat();
        if chunk.records == 0 || chunk.segments.iter().all(|s| s.is_empty()) {
            return Ok(());
        }
        // which servers first: nothing is compressed when none is usable
        let now = Instant::now();
        let order = node::attempt_order(
            &self.nodes,
            |n| n.usable(now, self.heartbeat),
            &mut rand::thread_rng(),
        );
        if order.is_empty() {
            let why: Vec<String> = self
                .nodes
                .iter()
                .map(|n| format!("{}: {}", n.name, n.last_error()))
                .collect();
            return Err(OutputError::Retryable(format!(
                "no forward server is available ({})",
                why.join("; ")
            )));
        }
        let body: Vec<Bytes> = match self.compression {
            Compression::Text => chunk.segments.clone(),
            Compression::Gzip => {
                let segs = chunk.segments.clone();
                let gz = tokio::task::spawn_blocking(move || gzip(&segs))
                    .await
                    .map_err(|e| OutputError::Retryable(format!("gzip task failed: {e}")))?
                    .map_err(|e| OutputError::Retryable(format!("gzip failed: {e}")))?;
                vec![Bytes::from(gz)]
            }
        };
        let body_len: usize = body.iter().map(|b| b.len()).sum();
        let mut header = Vec::with_capacity(chunk.tag.len() + 16);
        protocol::frame_header(&chunk.tag, body_len, &mut header).map_err(OutputError::Fatal)?;
        // the chunk's own id, stable across retries, so that a server may
        // drop a chunk it has already received (as Fluentd does)
        let ack = self.require_ack.then(|| protocol::chunk_option(&chunk.id));
        let mut trailer = Vec::with_capacity(64);
        protocol::frame_trailer(
            chunk.records,
            ack.as_deref(),
            self.compression,
            &mut trailer,
        );

        let mut failures = Vec::new();
        for i in order {
            let node = &self.nodes[i];
            match self
                .send_to(node, &header, &body, &trailer, ack.as_deref())
                .await
            {
                Ok(()) => {
                    // with a heartbeat, the heartbeat alone says whether a
                    // server is up (a server whose UDP heartbeat goes
                    // unanswered stays down even if a write raced it)
                    if !self.heartbeat {
                        node.mark_up();
                    }
                    debug!(output = %self.id, server = %node.name, chunk = %chunk.id, records = chunk.records, bytes = body_len, "chunk forwarded");
                    return Ok(());
                }
                Err(SendError::NoAck(m)) | Err(SendError::Closed(m)) => {
                    // the server may have the chunk: no second server in
                    // this write (the engine's retry decides), and this one
                    // is left alone until it recovers
                    if node.mark_down(&m, self.recover_wait) {
                        warn!(output = %self.id, server = %node.name, error = %m, "forward server did not acknowledge; marked down");
                    }
                    return Err(OutputError::Retryable(format!(
                        "{}: chunk {} not acknowledged: {m}",
                        node.name, chunk.id
                    )));
                }
                Err(SendError::Auth(m)) => {
                    error!(output = %self.id, server = %node.name, reason = %m, "forward server refused the handshake (check shared_key, username, password and self_hostname)");
                    node.mark_down(&m, self.recover_wait);
                    failures.push(format!("{}: {m}", node.name));
                }
                Err(SendError::Unreachable(m)) => {
                    if node.mark_down(&m, self.recover_wait) {
                        warn!(output = %self.id, server = %node.name, error = %m, "forward server is down; trying the others");
                    }
                    failures.push(format!("{}: {m}", node.name));
                }
            }
        }
        Err(OutputError::Retryable(format!(
            "every forward server failed: {}",
            failures.join("; ")
        )))
    }

    async fn close(&self) {
        let tasks = self
            .heartbeats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        for t in tasks.into_iter().flatten() {
            t.abort();
        }
        for n in self.nodes.iter() {
            for c in n.drain_idle() {
                c.close().await;
            }
        }
    }
}

impl Drop for ForwardOutput {
    fn drop(&mut self) {
        if let Some(tasks) = self
            .heartbeats
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            for t in tasks {
                t.abort();
            }
        }
    }
}
