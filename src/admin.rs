//! `[agent.api]`: a small HTTP/1 server for operators.
//!
//! - `GET /metrics`: Prometheus text format (inputs, outputs, buffers,
//!   write latency, the outputs' own counters such as Firehose's billed bytes);
//! - `GET /health`: 200 while every output delivers or retries within the
//!   limits, 503 with the reasons otherwise;
//! - `GET /api/status`: JSON: plugins, buffer state, last errors, reloads.
//!
//! The server reads the running pipeline through `Status`, which the
//! supervisor swaps on a reload, so the listener outlives reloads.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use fuwa_api::ratelimit::RateLimit;
use fuwa_api::{Output, Shutdown};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::buffer::config::BufferType;
use crate::buffer::OutputBuffer;
use crate::config::ApiConfig;
use crate::metrics::{Exposition, InputCounters};

pub struct LiveInput {
    pub id: String,
    pub kind: String,
    pub counters: Arc<InputCounters>,
}

pub struct LiveOutput {
    pub id: String,
    pub kind: String,
    pub pattern: String,
    pub buffer: Arc<OutputBuffer>,
    pub plugin: Arc<dyn Output>,
}

/// The running pipeline, as the endpoints see it.
pub struct Live {
    pub inputs: Vec<LiveInput>,
    /// (id, match) of every filter, in config order
    pub filters: Vec<(String, String)>,
    pub outputs: Vec<LiveOutput>,
    pub api: Option<ApiConfig>,
}

#[derive(Debug, Clone)]
pub struct ReloadOutcome {
    pub at: SystemTime,
    pub ok: bool,
    pub errors: Vec<String>,
}

/// What the supervisor shares with the endpoints.
pub struct Status {
    pub started: Instant,
    pub config: String,
    pub live: Mutex<Arc<Live>>,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    pub last_reload: Mutex<Option<ReloadOutcome>>,
}

impl Status {
    pub fn new(config: String, live: Live) -> Self {
        Status {
            started: Instant::now(),
            config,
            live: Mutex::new(Arc::new(live)),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            last_reload: Mutex::new(None),
        }
    }

    pub fn live(&self) -> Arc<Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_live(&self, live: Live) {
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
    }

    pub fn reloaded(&self, ok: bool, errors: Vec<String>) {
        if ok {
            self.reloads.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reload_failures.fetch_add(1, Ordering::Relaxed);
        }
        *self.last_reload.lock().unwrap_or_else(|p| p.into_inner()) = Some(ReloadOutcome {
            at: SystemTime::now(),
            ok,
            errors,
        });
    }
}

/// Why an output is unhealthy, if it is:
/// - more than `health_max_failed_writes` write attempts in a row failed
///   (the output is down, or retries pile up beyond what was allowed), or
/// - more than `health_max_dead_letters` chunks were dead-lettered (or
///   dropped trying) within `health_period`.
pub fn output_problem(o: &LiveOutput, cfg: &ApiConfig) -> Option<String> {
    let c = &o.buffer.counters;
    let last = c
        .last_error
        .lock()
        .ok()
        .and_then(|l| l.as_ref().map(|e| e.message.clone()))
        .unwrap_or_default();
    let streak = c.failing_streak.load(Ordering::Relaxed);
    if streak > cfg.health_max_failed_writes {
        return Some(format!(
            "output {}: {streak} write attempts failed in a row (health_max_failed_writes = {}); last error: {last}",
            o.id, cfg.health_max_failed_writes
        ));
    }
    let dead = c.dead_letters_within(cfg.health_period.0) as u64;
    if dead > cfg.health_max_dead_letters {
        return Some(format!(
            "output {}: {dead} chunk(s) dead-lettered in the last {:?} (health_max_dead_letters = {}); last error: {last}",
            o.id, cfg.health_period.0, cfg.health_max_dead_letters
        ));
    }
    None
}

fn default_health() -> ApiConfig {
    ApiConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        health_period: fuwa_api::HumanDuration(Duration::from_secs(60)),
        health_max_dead_letters: 0,
        health_max_failed_writes: 5,
    }
}

pub fn metrics_text(status: &Status) -> String {
    let live = status.live();
    let mut e = Exposition::default();
    e.gauge(
        "fuwa_build_info",
        "fuwa's version (always 1)",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    e.gauge(
        "fuwa_uptime_seconds",
        "seconds since fuwa started",
        &[],
        status.started.elapsed().as_secs_f64(),
    );
    e.counter(
        "fuwa_reloads_total",
        "successful config reloads (SIGHUP)",
        &[],
        status.reloads.load(Ordering::Relaxed) as f64,
    );
    e.counter(
        "fuwa_reload_failures_total",
        "refused or failed config reloads",
        &[],
        status.reload_failures.load(Ordering::Relaxed) as f64,
    );
    e.counter(
        "fuwa_log_suppressed_total",
        "repeated warnings not logged by the rate limiter",
        &[],
        fuwa_api::ratelimit::suppressed_total() as f64,
    );
    for i in &live.inputs {
        let l: &[(&str, &str)] = &[("id", &i.id), ("type", &i.kind)];
        let c = &i.counters;
        e.counter(
            "fuwa_input_records_total",
            "records an input emitted into the pipeline (accepted, before filters)",
            l,
            c.records.load(Ordering::Relaxed) as f64,
        );
        e.counter(
            "fuwa_input_bytes_total",
            "msgpack bytes of the records an input emitted",
            l,
            c.bytes.load(Ordering::Relaxed) as f64,
        );
        e.counter(
            "fuwa_input_rejected_records_total",
            "records the pipeline refused (buffer full with overflow_action = reject, shutting down)",
            l,
            c.rejected.load(Ordering::Relaxed) as f64,
        );
        e.counter(
            "fuwa_input_invalid_records_total",
            "records an input refused as invalid before its ack (tag too long, malformed entry, bad time); the input's log says which and why",
            l,
            c.invalid.load(Ordering::Relaxed) as f64,
        );
    }
    let health = live.api.clone().unwrap_or_else(default_health);
    for o in &live.outputs {
        let l: &[(&str, &str)] = &[("id", &o.id), ("type", &o.kind)];
        let c = &o.buffer.counters;
        let v = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        e.counter(
            "fuwa_output_buffered_records_total",
            "records accepted into the output's buffer",
            l,
            v(&c.records_in),
        );
        e.counter(
            "fuwa_output_proc_records_total",
            "records the output wrote successfully",
            l,
            v(&c.records_out),
        );
        e.counter(
            "fuwa_output_proc_bytes_total",
            "bytes (msgpack entries) of the chunks the output wrote",
            l,
            v(&c.bytes_out),
        );
        e.counter(
            "fuwa_output_errors_total",
            "failed write attempts (retryable and fatal)",
            l,
            v(&c.errors),
        );
        e.counter(
            "fuwa_output_retries_total",
            "write attempts scheduled again after a retryable error",
            l,
            v(&c.retries),
        );
        e.counter(
            "fuwa_output_retries_failed_total",
            "chunks given up on (fatal error or retries exhausted) and dead-lettered",
            l,
            v(&c.chunks_dead),
        );
        e.counter(
            "fuwa_output_dead_letter_records_total",
            "records moved to the dead-letter directory",
            l,
            v(&c.records_dead),
        );
        e.counter(
            "fuwa_output_dropped_records_total",
            "records lost: dropped by overflow_action = drop_oldest_chunk, corrupt chunks, failed dead letters",
            l,
            v(&c.records_dropped),
        );
        e.counter(
            "fuwa_output_backpressure_waits_total",
            "times an input waited for room in the buffer (overflow_action = block)",
            l,
            v(&c.backpressure_waits),
        );
        e.counter(
            "fuwa_output_buffer_commits_total",
            "file buffer: group commits (a round of fsyncs, then the acknowledgements of every append it holds)",
            l,
            v(&c.buffer_commits),
        );
        e.histogram(
            "fuwa_output_write_duration_seconds",
            "how long each write attempt of a chunk took",
            l,
            &c.write_duration,
        );
        e.gauge(
            "fuwa_output_healthy",
            "1 when the output passes the /health check, 0 otherwise",
            l,
            if output_problem(o, &health).is_none() {
                1.0
            } else {
                0.0
            },
        );
        let s = o.buffer.snapshot();
        e.gauge(
            "fuwa_buffer_bytes",
            "bytes in the output's buffer (open, queued and in-flight chunks)",
            l,
            s.bytes as f64,
        );
        e.gauge(
            "fuwa_buffer_chunks",
            "chunks in the output's buffer (open, queued and in-flight)",
            l,
            s.chunks as f64,
        );
        e.gauge(
            "fuwa_buffer_total_limit_bytes",
            "the buffer's total_limit_size",
            l,
            s.total_limit as f64,
        );
        e.gauge(
            "fuwa_buffer_oldest_chunk_age_seconds",
            "age of the oldest queued or in-flight chunk (0 when none)",
            l,
            age(s.oldest),
        );
        for m in o.plugin.metrics() {
            e.metric(m.kind, m.name, m.help, l, m.value);
        }
    }
    e.render()
}

fn age(t: Option<SystemTime>) -> f64 {
    t.and_then(|t| SystemTime::now().duration_since(t).ok())
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// (healthy, JSON body)
pub fn health(status: &Status) -> (bool, Value) {
    let live = status.live();
    let cfg = live.api.clone().unwrap_or_else(default_health);
    let problems: Vec<String> = live
        .outputs
        .iter()
        .filter_map(|o| output_problem(o, &cfg))
        .collect();
    if problems.is_empty() {
        (true, json!({"status": "ok"}))
    } else {
        (false, json!({"status": "unhealthy", "reasons": problems}))
    }
}

pub fn status_json(status: &Status) -> Value {
    let live = status.live();
    let cfg = live.api.clone().unwrap_or_else(default_health);
    let inputs: Vec<Value> = live
        .inputs
        .iter()
        .map(|i| {
            json!({
                "id": i.id,
                "type": i.kind,
                "records": i.counters.records.load(Ordering::Relaxed),
                "bytes": i.counters.bytes.load(Ordering::Relaxed),
                "rejected_records": i.counters.rejected.load(Ordering::Relaxed),
                "invalid_records": i.counters.invalid.load(Ordering::Relaxed),
            })
        })
        .collect();
    let outputs: Vec<Value> = live
        .outputs
        .iter()
        .map(|o| {
            let c = &o.buffer.counters;
            let s = o.buffer.snapshot();
            let v = |a: &AtomicU64| a.load(Ordering::Relaxed);
            let last_error = c.last_error.lock().ok().and_then(|l| {
                l.as_ref()
                    .map(|e| json!({"message": e.message, "chunk": e.chunk, "at": unix(e.at)}))
            });
            let problem = output_problem(o, &cfg);
            let plugin: serde_json::Map<String, Value> = o
                .plugin
                .metrics()
                .into_iter()
                .map(|m| (m.name.to_string(), json!(m.value)))
                .collect();
            json!({
                "id": o.id,
                "type": o.kind,
                "match": o.pattern,
                "healthy": problem.is_none(),
                "problem": problem,
                "buffer": {
                    "type": match o.buffer.config().kind {
                        BufferType::File => "file",
                        BufferType::Memory => "memory",
                    },
                    "bytes": s.bytes,
                    "total_limit_bytes": s.total_limit,
                    "chunks": s.chunks,
                    "queued_chunks": s.queued_chunks,
                    "in_flight_chunks": s.in_flight_chunks,
                    "records": s.records,
                    "oldest_chunk_age_seconds": age(s.oldest),
                },
                "records_in": v(&c.records_in),
                "records_out": v(&c.records_out),
                "bytes_out": v(&c.bytes_out),
                "errors": v(&c.errors),
                "retries": v(&c.retries),
                "failing_streak": v(&c.failing_streak),
                "dead_letter_chunks": v(&c.chunks_dead),
                "dead_letter_records": v(&c.records_dead),
                "dropped_records": v(&c.records_dropped),
                "last_error": last_error,
                "plugin": plugin,
            })
        })
        .collect();
    let last_reload = status
        .last_reload
        .lock()
        .ok()
        .and_then(|r| r.clone())
        .map(|r| json!({"at": unix(r.at), "ok": r.ok, "errors": r.errors}));
    let (healthy, _) = health(status);
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "uptime_seconds": status.started.elapsed().as_secs_f64(),
        "config": status.config,
        "healthy": healthy,
        "reloads": status.reloads.load(Ordering::Relaxed),
        "reload_failures": status.reload_failures.load(Ordering::Relaxed),
        "last_reload": last_reload,
        "inputs": inputs,
        "filters": live
            .filters
            .iter()
            .map(|(id, m)| json!({"id": id, "match": m}))
            .collect::<Vec<_>>(),
        "outputs": outputs,
    })
}

fn respond(code: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_response(code: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into());
    body.push('\n');
    respond(code, "application/json", body)
}

pub fn handle(status: &Status, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let known = matches!(path, "/metrics" | "/health" | "/api/status");
    if !known {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("no such endpoint {path}: try /metrics, /health or /api/status")}),
        );
    }
    if method != Method::GET && method != Method::HEAD {
        let mut r = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": format!("{method} {path}: only GET")}),
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/metrics" => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics_text(status),
        ),
        "/health" => {
            let (ok, body) = health(status);
            let code = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_response(code, &body)
        }
        _ => json_response(StatusCode::OK, &status_json(status)),
    }
}

/// A running API listener. `stop` closes it and waits until the accept
/// loop and every connection task are gone; dropping it only signals them.
pub struct ApiServer {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ApiServer {
    /// Closes the listener, ends the connections (an idle keep-alive one at
    /// once, one in a request within `CONN_GRACE`) and waits for all of it.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// How long a connection in the middle of a request may finish it once the
/// server stops.
const CONN_GRACE: Duration = Duration::from_secs(1);

/// Binds `addr` (errors name it) without serving yet.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("[agent.api] cannot listen on {addr}: {e}"),
        )
    })
}

pub fn serve(listener: TcpListener, status: Arc<Status>) -> ApiServer {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let (stop, shutdown) = Shutdown::new();
    let task = tokio::spawn(accept_loop(listener, status, shutdown));
    info!(bind = %addr, "API listening (/metrics, /health, /api/status)");
    ApiServer {
        stop,
        task: Some(task),
    }
}

/// Accepts until shutdown, then waits for its connections (each ends
/// within CONN_GRACE; the set is aborted after that) before returning.
async fn accept_loop(listener: TcpListener, status: Arc<Status>, mut shutdown: Shutdown) {
    let accept_warn = RateLimit::new(10_000);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            // finished connections are reaped as they go
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let status = status.clone();
                    let mut conn_shutdown = shutdown.clone();
                    conns.spawn(async move {
                        let svc = service_fn(move |req: Request<Incoming>| {
                            let status = status.clone();
                            async move {
                                Ok::<_, Infallible>(handle(&status, req.method(), req.uri().path()))
                            }
                        });
                        let conn = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(Duration::from_secs(10))
                            .serve_connection(TokioIo::new(stream), svc);
                        tokio::pin!(conn);
                        tokio::select! {
                            r = conn.as_mut() => {
                                if let Err(e) = r {
                                    debug!(%peer, error = %e, "API connection ended with an error");
                                }
                            }
                            _ = conn_shutdown.wait() => {
                                conn.as_mut().graceful_shutdown();
                                let _ = tokio::time::timeout(CONN_GRACE, conn).await;
                            }
                        }
                    });
                }
                Err(e) => {
                    if let Some(suppressed) = accept_warn.check() {
                        warn!(error = %e, suppressed, "API accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.wait() => break,
        }
    }
    drop(listener);
    let all_done = tokio::time::timeout(CONN_GRACE * 2, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if all_done.is_err() {
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}
