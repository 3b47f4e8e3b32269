//! HTTP input: the self-hosted tracking API. `POST /<tag>` with JSON, NDJSON,
//! msgpack, Fluentd in_http form fields or browser beacons (gzip allowed);
//! the answer is 2xx only once the events are in every matching buffer.
//!
//! - `config.rs`: settings
//! - `conn.rs`: one request's life (routing, CORS, auth, limits, emit)
//! - `cors.rs`: allowed origins
//! - `decode.rs`: the body formats

pub mod config;
pub mod conn;
pub mod cors;
pub mod decode;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fuwa_api::ratelimit::RateLimit;
use fuwa_api::{BuildContext, ConfigError, ConfigSection, Input, InputContext, PluginError};
use hyper::service::service_fn;
use hyper::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

pub use config::HttpConfig;

pub struct HttpInput {
    cfg: HttpConfig,
    addr: SocketAddr,
    decoder: Option<decode::Decoder>,
    cors: cors::Cors,
    listener: Option<TcpListener>,
}

/// Builds the input from its config section.
pub fn build(
    section: &ConfigSection<'_>,
    ctx: &BuildContext,
) -> Result<Box<dyn Input>, Vec<ConfigError>> {
    let cfg: HttpConfig = section.parse().map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let addr: Option<SocketAddr> = section
        .socket_addr("bind", &cfg.bind, "0.0.0.0:9880")
        .map_err(|e| errors.push(e))
        .ok();
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
    if cfg.body_size_limit.0 == 0 || cfg.body_size_limit.0 > (1 << 30) {
        errors.push(section.error("body_size_limit", "must be more than 0 and at most 1GiB"));
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
    if cfg.backpressure_timeout.0.is_zero() {
        errors.push(section.error("backpressure_timeout", "must be more than 0"));
    }
    if cfg.read_timeout.0.is_zero() {
        errors.push(section.error("read_timeout", "must be more than 0"));
    }
    if cfg.remote_addr_key.as_deref().is_some_and(str::is_empty) {
        errors.push(section.error("remote_addr_key", "the key is empty"));
    }
    match (addr, decoder) {
        (Some(addr), Some(decoder)) if errors.is_empty() => Ok(Box::new(HttpInput {
            cfg,
            addr,
            decoder: Some(decoder),
            cors,
            listener: None,
        })),
        _ => Err(errors),
    }
}

#[async_trait]
impl Input for HttpInput {
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
        info!(input = %ctx.id, addr = %local, cors = self.cors.enabled(), auth = cfg.auth_token.is_some(), "http input listening");
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
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(cfg.read_timeout.0)
            .keep_alive(true)
            .max_buf_size(64 * 1024);
        let http = Arc::new(http);
        // requests in flight may still wait for room in a buffer: give them
        // that long (plus reading time) before dropping them at shutdown
        let grace = cfg.backpressure_timeout.0 + Duration::from_secs(1);

        let mut tasks = JoinSet::new();
        let mut shutdown = ctx.shutdown.clone();
        loop {
            tokio::select! {
                r = listener.accept() => {
                    let (sock, peer) = match r {
                        Ok(x) => x,
                        Err(e) => {
                            warn!(input = %ctx.id, error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let _ = sock.set_nodelay(true);
                    let shared = shared.clone();
                    let http = http.clone();
                    let mut sd = ctx.shutdown.clone();
                    tasks.spawn(async move {
                        let svc_shared = shared.clone();
                        let tags = Arc::new(conn::TagCache::default());
                        let svc = service_fn(move |req| {
                            let s = svc_shared.clone();
                            let t = tags.clone();
                            async move { Ok::<_, std::convert::Infallible>(conn::handle(req, s, peer, t).await) }
                        });
                        let conn = http.serve_connection(TokioIo::new(sock), svc);
                        tokio::pin!(conn);
                        let r = tokio::select! {
                            r = conn.as_mut() => r,
                            _ = sd.wait() => {
                                conn.as_mut().graceful_shutdown();
                                conn.await
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
