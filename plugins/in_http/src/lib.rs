//! HTTP input: the self-hosted tracking API. `POST /<tag>` with JSON, NDJSON,
//! msgpack, Fluentd in_http form fields or browser beacons (gzip allowed);
//! the answer is 2xx only once the events are in every matching buffer.
//!
//! - `config.rs`: settings
//! - `conn.rs`: one request's life (routing, CORS, auth, limits, emit)
//! - `cors.rs`: allowed origins
//! - `decode.rs`: the body formats
//! - `limits.rs`: the body memory budget, head and idle deadlines, the
//!   default connection limit, trusted proxies

pub mod config;
pub mod conn;
pub mod cors;
pub mod decode;
pub mod limits;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fuwa_api::memory::{size, KIB};
use fuwa_api::ratelimit::RateLimit;
use fuwa_api::{
    BuildContext, ConfigError, ConfigSection, Input, InputContext, MemoryBound, MemoryEnv,
    PluginError,
};
use hyper::service::service_fn;
use hyper::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

pub use config::HttpConfig;

/// hyper's read buffer per connection (a request head must fit in it).
const MAX_BUF: usize = 64 * 1024;

pub struct HttpInput {
    cfg: HttpConfig,
    addr: SocketAddr,
    decoder: Option<decode::Decoder>,
    cors: cors::Cors,
    proxies: limits::Proxies,
    listener: Option<TcpListener>,
}

/// The first pause after a failed accept; it doubles up to ACCEPT_BACKOFF_MAX
/// while accepts keep failing (EMFILE: wait for connections to close).
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Builds the input from its config section.
pub fn build(
    section: &ConfigSection<'_>,
    ctx: &BuildContext,
) -> Result<Box<dyn Input>, Vec<ConfigError>> {
    let cfg: HttpConfig = section.parse_all()?;
    let mut errors = Vec::new();
    let addr = cfg.bind.0;
    let tz = fuwa_render::parse_timezone(&ctx.timezone)
        .or_else(|_| fuwa_render::parse_timezone("UTC"))
        .unwrap_or_default();
    let decoder = match decode::Decoder::new(
        cfg.time_key.clone(),
        cfg.time_format.clone(),
        cfg.keep_time_key,
        tz,
    ) {
        Ok(d) => Some(d),
        Err((k, m)) => {
            errors.push(section.error(&k, m));
            None
        }
    };
    let cors = match cors::Cors::new(&cfg.cors_allow_origins, cfg.cors_allow_credentials) {
        Ok(c) => c,
        Err(e) => {
            errors.push(section.error("cors_allow_origins", e));
            cors::Cors::default()
        }
    };
    if cfg.cors_allow_credentials && !cors.enabled() {
        errors.push(section.error(
            "cors_allow_credentials",
            "needs cors_allow_origins (the origins allowed to send credentials)",
        ));
    }
    if cfg.cors_allow_credentials && cfg.cors_allow_origins.iter().any(|o| o.trim() == "*") {
        // browsers refuse `*` with credentials; reflecting every origin
        // instead would let any site post with the user's cookies
        errors.push(section.error(
            "cors_allow_credentials",
            "cannot be true with cors_allow_origins = [\"*\"]: list the origins allowed to send credentials",
        ));
    }
    let proxies = match limits::Proxies::new(&cfg.trusted_proxies) {
        Ok(p) => p,
        Err(e) => {
            errors.push(section.error("trusted_proxies", e));
            limits::Proxies::default()
        }
    };
    if !proxies.is_empty() && cfg.remote_addr_key.is_none() {
        errors.push(section.error(
            "trusted_proxies",
            "is only used with remote_addr_key (set it, or remove trusted_proxies)",
        ));
    }
    if let Some(b) = cfg.body_buffer_limit {
        if b.0 < cfg.body_size_limit.0 || b.0 > (1 << 40) {
            errors.push(section.error(
                "body_buffer_limit",
                "must be at least body_size_limit (one body must fit) and at most 1TiB",
            ));
        }
    }
    if cfg
        .auth_token
        .as_deref()
        .is_some_and(|t| t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()))
    {
        errors.push(section.error(
            "auth_token",
            "must be non-empty printable ASCII without spaces (it travels in a header)",
        ));
    }
    if cfg.remote_addr_key.as_deref().is_some_and(str::is_empty) {
        errors.push(section.error("remote_addr_key", "the key is empty"));
    }
    match decoder {
        Some(decoder) if errors.is_empty() => Ok(Box::new(HttpInput {
            cfg,
            addr,
            decoder: Some(decoder),
            cors,
            proxies,
            listener: None,
        })),
        _ => Err(errors),
    }
}

/// One connection beyond its body: hyper's read buffer (`MAX_BUF`), its
/// write buffer and the connection's state.
const PER_CONNECTION: u64 = MAX_BUF as u64 + 16 * KIB;

#[async_trait]
impl Input for HttpInput {
    fn memory_bound(&self, env: &MemoryEnv) -> MemoryBound {
        let _ = env;
        let c = &self.cfg;
        let conns = c
            .max_connections
            .map_or_else(fuwa_api::fdlimit::default_max_connections, |n| n.get())
            as u64;
        let bodies = c
            .body_buffer_limit
            .map(|b| b.0)
            .unwrap_or(c.body_size_limit.0.saturating_mul(4));
        MemoryBound::new()
            .with(
                format!(
                    "2 × body_buffer_limit {} (bodies held, and their events decoded)",
                    size(bodies)
                ),
                bodies.saturating_mul(2),
            )
            .with(
                format!("{conns} connections × {}", size(PER_CONNECTION)),
                conns.saturating_mul(PER_CONNECTION),
            )
    }

    async fn start(&mut self) -> Result<(), PluginError> {
        let listener = TcpListener::bind(self.addr)
            .await
            .map_err(|e| PluginError::Other(format!("cannot listen on {}: {e}", self.addr)))?;
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
        let decoder = self
            .decoder
            .take()
            .ok_or_else(|| PluginError::Other("already running".into()))?;
        let local = listener.local_addr()?;
        let cfg = &self.cfg;
        // read now: the agent raised its soft limit at start
        let max_connections = cfg
            .max_connections
            .map_or_else(fuwa_api::fdlimit::default_max_connections, |n| n.get());
        let body_buffer_limit = cfg
            .body_buffer_limit
            .map(|b| b.0)
            .unwrap_or(cfg.body_size_limit.0.saturating_mul(4));
        let body_buffer_limit = usize::try_from(body_buffer_limit).unwrap_or(usize::MAX);
        info!(input = %ctx.id, addr = %local, cors = self.cors.enabled(), auth = cfg.auth_token.is_some(), max_connections, body_buffer_limit, "http input listening");
        let shared = Arc::new(conn::Shared {
            id: ctx.id.clone(),
            emitter: ctx.emitter.clone(),
            decoder,
            cors: self.cors.clone(),
            auth_token: cfg.auth_token.as_ref().map(|t| t.as_bytes().to_vec()),
            limit: cfg.body_size_limit.0 as usize,
            backpressure_timeout: cfg.backpressure_timeout.0,
            retry_after_secs: cfg.retry_after.0.as_secs_f64().ceil().max(1.0) as u64,
            read_timeout: cfg.read_timeout.0,
            ok_status: if cfg.use_204_response {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::OK
            },
            remote_addr_key: cfg.remote_addr_key.clone(),
            warn_every: RateLimit::new(10_000),
            tag_limit: usize::try_from(cfg.tag_length_limit.0).unwrap_or(usize::MAX),
            budget: limits::Budget::new(body_buffer_limit),
            proxies: self.proxies.clone(),
            budget_warn: RateLimit::new(10_000),
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        // head and idle deadlines are kept by each connection's Clock
        http.timer(TokioTimer::new())
            .header_read_timeout(None)
            .keep_alive(true)
            .max_buf_size(MAX_BUF);
        let header_timeout = cfg.header_timeout.0;
        let idle_timeout = cfg.idle_timeout.0;
        let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
        let full_warn = RateLimit::new(10_000);
        let accept_warn = RateLimit::new(10_000);
        let mut backoff = ACCEPT_BACKOFF_MIN;
        let http = Arc::new(http);
        // requests in flight may still wait for room in a buffer: give them
        // that long (plus reading time) before dropping them at shutdown
        let grace = cfg.backpressure_timeout.0 + Duration::from_secs(1);

        let mut tasks = JoinSet::new();
        let mut shutdown = ctx.shutdown.clone();
        loop {
            // a slot first: at max_connections new connections wait in the
            // listen backlog (not accepted, no fd taken) until one closes
            let slot = match slots.clone().try_acquire_owned() {
                Ok(s) => s,
                Err(_) => {
                    if full_warn.ready() {
                        warn!(input = %ctx.id, max_connections, "max_connections reached: new connections wait until one closes (repeats are logged at debug)");
                    } else {
                        debug!(input = %ctx.id, max_connections, "max_connections reached");
                    }
                    tokio::select! {
                        s = slots.clone().acquire_owned() => match s {
                            Ok(s) => s,
                            Err(_) => break,
                        },
                        _ = shutdown.wait() => break,
                    }
                }
            };
            tokio::select! {
                r = listener.accept() => {
                    let (sock, peer) = match r {
                        Ok(x) => {
                            backoff = ACCEPT_BACKOFF_MIN;
                            x
                        }
                        Err(e) => {
                            // EMFILE and the like: retrying at once would
                            // spin; wait, longer each time
                            if let Some(suppressed) = accept_warn.check() {
                                warn!(input = %ctx.id, error = %e, retry_in = ?backoff, suppressed, "accept failed (repeats are logged at debug)");
                            } else {
                                debug!(input = %ctx.id, error = %e, retry_in = ?backoff, "accept failed");
                            }
                            drop(slot);
                            tokio::select! {
                                _ = tokio::time::sleep(backoff) => {}
                                _ = shutdown.wait() => break,
                            }
                            backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                            continue;
                        }
                    };
                    let _ = sock.set_nodelay(true);
                    let shared = shared.clone();
                    let http = http.clone();
                    let mut sd = ctx.shutdown.clone();
                    tasks.spawn(async move {
                        let _slot = slot;
                        let svc_shared = shared.clone();
                        let tags = Arc::new(conn::TagCache::default());
                        let clock = limits::Clock::new(header_timeout, idle_timeout);
                        let svc_clock = clock.clone();
                        let svc = service_fn(move |req| {
                            let s = svc_shared.clone();
                            let t = tags.clone();
                            // the head is in: the clock waits for the answer
                            let busy = svc_clock.request();
                            async move {
                                let r = conn::handle(req, s, peer, t).await;
                                drop(busy);
                                Ok::<_, std::convert::Infallible>(r)
                            }
                        });
                        let io = limits::Watched::new(sock, clock.clone());
                        let conn = http.serve_connection(TokioIo::new(io), svc);
                        tokio::pin!(conn);
                        let r = loop {
                            let (at, why) = match clock.deadline() {
                                Some(d) => d,
                                None => (tokio::time::Instant::now() + clock.recheck(), limits::Expired::Idle),
                            };
                            tokio::select! {
                                r = conn.as_mut() => break r,
                                _ = sd.wait() => {
                                    conn.as_mut().graceful_shutdown();
                                    break conn.await
                                }
                                _ = tokio::time::sleep_until(at) => {
                                    // still due (not moved by a request meanwhile)?
                                    if clock.deadline().is_some_and(|(d, _)| d <= tokio::time::Instant::now()) {
                                        match why {
                                            limits::Expired::Head => debug!(input = %shared.id, %peer, timeout = ?header_timeout, "closing: no complete request head within header_timeout"),
                                            limits::Expired::Idle => debug!(input = %shared.id, %peer, timeout = ?idle_timeout, "closing an idle keep-alive connection (idle_timeout)"),
                                        }
                                        break Ok(());
                                    }
                                }
                            }
                        };
                        if let Err(e) = r {
                            debug!(input = %shared.id, %peer, error = %e, "connection ended with an error");
                        }
                    });
                    while tasks.try_join_next().is_some() {}
                }
                _ = shutdown.wait() => break,
            }
        }
        drop(listener);
        let open = tasks.len();
        if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            warn!(input = %ctx.id, connections = tasks.len(), "connections still open at shutdown were closed");
            tasks.abort_all();
        }
        info!(input = %ctx.id, connections = open, "http input stopped");
        Ok(())
    }
}
