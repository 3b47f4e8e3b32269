//! One request's life: route, CORS, auth, limits, decode the whole body,
//! emit, and answer only once the events are in every matching buffer.
//!
//! Over 600 lines for a reason: one job, a request from its first byte to
//! its answer, read top to bottom; its parts with a job of their own are
//! beside it (`cors.rs`, `limits.rs`, `decode.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fuwa_api::ratelimit::RateLimit;
use fuwa_api::{Batch, EmitError, Emitter, EventTime};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tracing::{debug, warn};

use crate::cors::Cors;
use crate::decode::{gunzip_with, parse_time_param, BodyError, Decoder, Format, RequestInfo};
use crate::limits::{Budget, Held, Proxies};

pub type Resp = Response<Full<Bytes>>;

/// Bodies larger than this are decoded on the blocking pool, not on a
/// reactor thread.
const INLINE_DECODE: usize = 64 * 1024;
const ALLOW: &str = "GET, HEAD, POST, OPTIONS";

/// What every request of one input shares.
pub struct Shared {
    pub id: Arc<str>,
    pub emitter: Arc<dyn Emitter>,
    pub decoder: Decoder,
    pub cors: Cors,
    pub auth_token: Option<Vec<u8>>,
    pub limit: usize,
    pub backpressure_timeout: Duration,
    pub retry_after_secs: u64,
    pub read_timeout: Duration,
    pub ok_status: StatusCode,
    pub remote_addr_key: Option<String>,
    pub warn_every: RateLimit,
    /// tag_length_limit
    pub tag_limit: usize,
    /// body_buffer_limit
    pub budget: Arc<Budget>,
    /// trusted_proxies
    pub proxies: Proxies,
    /// warnings about body_buffer_limit
    pub budget_warn: RateLimit,
}

/// At most this much of a tag goes into a log line.
const TAG_IN_LOG: usize = 128;

/// A tag as logged: cut at TAG_IN_LOG bytes (on a character boundary).
pub fn loggable(tag: &str) -> std::borrow::Cow<'_, str> {
    if tag.len() <= TAG_IN_LOG {
        return tag.into();
    }
    let mut end = TAG_IN_LOG;
    while !tag.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &tag[..end], tag.len()).into()
}

fn respond(status: StatusCode, body: Bytes) -> Resp {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r
}

fn text(status: StatusCode, msg: impl Into<String>) -> Resp {
    let mut m = msg.into();
    m.push('\n');
    let mut r = respond(status, Bytes::from(m));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Handles one request. Never fails: every problem is an HTTP status.
/// The last tag a connection posted to: clients post to one tag, mostly,
/// and then no tag is allocated per request.
pub type TagCache = std::sync::Mutex<Option<Arc<str>>>;

pub async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    tags: Arc<TagCache>,
) -> Resp {
    let origin = if shared.cors.enabled() {
        req.headers().get(header::ORIGIN).cloned()
    } else {
        None
    };
    let mut resp = match *req.method() {
        Method::POST => post(req, &shared, peer, origin.as_ref(), &tags).await,
        Method::GET | Method::HEAD => {
            if req.uri().path() == "/health" {
                text(StatusCode::OK, "ok")
            } else {
                text(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no such path {}: POST /<tag> to send events, GET /health",
                        req.uri().path()
                    ),
                )
            }
        }
        Method::OPTIONS => return preflight(&req, &shared.cors),
        _ => {
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method {} not allowed", req.method()),
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
            // its body (if any) is not read
            last(r)
        }
    };
    if let Some(o) = origin {
        if shared.cors.allows(o.as_bytes()) {
            add_cors(&mut resp, &shared.cors, o);
        }
    }
    resp
}

fn add_cors(resp: &mut Resp, cors: &Cors, origin: HeaderValue) {
    let h = resp.headers_mut();
    if cors.answers_star() {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    } else {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    if cors.credentials {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Retry-After"),
    );
}

/// CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`, answered for allowed origins only.
fn preflight(req: &Request<Incoming>, cors: &Cors) -> Resp {
    let h = req.headers();
    let (Some(origin), Some(method)) = (
        h.get(header::ORIGIN),
        h.get(header::ACCESS_CONTROL_REQUEST_METHOD),
    ) else {
        // not a preflight: say what is allowed
        let mut r = respond(StatusCode::NO_CONTENT, Bytes::new());
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
        return r;
    };
    let method_ok = matches!(method.as_bytes(), b"POST" | b"GET" | b"HEAD");
    if !cors.enabled() || !cors.allows(origin.as_bytes()) || !method_ok {
        return text(
            StatusCode::FORBIDDEN,
            if method_ok {
                "CORS: this origin is not allowed (cors_allow_origins)"
            } else {
                "CORS: only POST and GET are allowed"
            },
        );
    }
    let mut r = respond(StatusCode::NO_CONTENT, Bytes::new());
    add_cors(&mut r, cors, origin.clone());
    let out = r.headers_mut();
    out.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, GET, HEAD, OPTIONS"),
    );
    let allow_headers = h
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_static("Content-Type, Content-Encoding, Authorization")
        });
    out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
    out.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("7200"),
    );
    r
}

/// A tag from the path: at most `limit` bytes (tag_length_limit, checked
/// as every input does), dot-separated parts of letters, digits and `_-:@+~`.
pub fn valid_tag(t: &str, limit: usize) -> Result<(), String> {
    if t.is_empty() {
        return Err("the tag (the path after /) is empty: POST /<tag>".into());
    }
    if let Err(e) = fuwa_api::tag::check(t, limit) {
        return Err(e.to_string());
    }
    if t.split('.').any(str::is_empty) {
        return Err("the tag has an empty part (leading, trailing or double dot)".into());
    }
    if !t.bytes().all(|c| {
        c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b':' | b'@' | b'+' | b'~')
    }) {
        return Err("the tag may hold only letters, digits and . _ - : @ + ~".into());
    }
    Ok(())
}

fn authorized(h: Option<&HeaderValue>, token: &[u8]) -> bool {
    let Some(v) = h else {
        return false;
    };
    let v = v.as_bytes();
    if v.len() < 7 || !v[..7].eq_ignore_ascii_case(b"bearer ") {
        return false;
    }
    let t = v[7..].trim_ascii();
    // constant time for a given length
    t.len() == token.len() && t.iter().zip(token).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Marks a response as the last on its connection: it is sent before the
/// request's body was read (a refusal that does not look at it), so the
/// connection cannot carry another request.
fn last(mut r: Resp) -> Resp {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

impl Shared {
    fn refuse(&self, peer: SocketAddr, tag: &str, status: StatusCode, why: String) -> Resp {
        let tag = loggable(tag);
        debug!(input = %self.id, %peer, tag = %tag, status = status.as_u16(), reason = %why, "request refused");
        if matches!(
            status,
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE
        ) && self.warn_every.ready()
        {
            warn!(input = %self.id, %peer, tag = %tag, status = status.as_u16(), reason = %why, "request refused (nothing of it kept, its events counted as invalid; repeats are logged at debug)");
        }
        text(status, why)
    }

    /// Refuses a request whose events are invalid: they are counted
    /// (`fuwa_input_invalid_records_total`, at least one per request).
    fn invalid(
        &self,
        peer: SocketAddr,
        tag: &str,
        status: StatusCode,
        why: String,
        events: u32,
    ) -> Resp {
        self.emitter.invalid(u64::from(events.max(1)));
        self.refuse(peer, tag, status, why)
    }

    /// 503 and close: the bodies held across the input are at
    /// body_buffer_limit.
    fn over_budget(&self, peer: SocketAddr, tag: &str) -> Resp {
        let why = format!(
            "too many request bodies are being received at once (body_buffer_limit, {} bytes): retry later",
            self.budget.limit()
        );
        if self.budget_warn.ready() {
            warn!(input = %self.id, %peer, tag = %loggable(tag), held = self.budget.used(), limit = self.budget.limit(), "body_buffer_limit reached: answering 503 and closing (repeats are logged at debug)");
        } else {
            debug!(input = %self.id, %peer, "body_buffer_limit reached: 503");
        }
        let mut r = text(StatusCode::SERVICE_UNAVAILABLE, why);
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(self.retry_after_secs),
        );
        last(r)
    }

    fn unavailable(&self, peer: SocketAddr, tag: &str, why: String, close: bool) -> Resp {
        let tag = loggable(tag);
        if self.warn_every.ready() {
            warn!(input = %self.id, %peer, tag = %tag, reason = %why, "answering 503 (backpressure); repeats are logged at debug");
        } else {
            debug!(input = %self.id, %peer, tag = %tag, reason = %why, "answering 503");
        }
        let mut r = text(StatusCode::SERVICE_UNAVAILABLE, why);
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(self.retry_after_secs),
        );
        if close {
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}

async fn post(
    req: Request<Incoming>,
    shared: &Arc<Shared>,
    peer: SocketAddr,
    origin: Option<&HeaderValue>,
    tags: &TagCache,
) -> Resp {
    let path = req.uri().path();
    let tag = path.strip_prefix('/').unwrap_or(path);
    if let Some(o) = origin {
        if shared.cors.enabled() && !shared.cors.allows(o.as_bytes()) {
            return last(shared.refuse(
                peer,
                tag,
                StatusCode::FORBIDDEN,
                format!(
                    "CORS: origin {} is not allowed (cors_allow_origins)",
                    String::from_utf8_lossy(o.as_bytes())
                ),
            ));
        }
    }
    let h = req.headers();
    if let Some(token) = &shared.auth_token {
        if !authorized(h.get(header::AUTHORIZATION), token) {
            let mut r = shared.refuse(
                peer,
                tag,
                StatusCode::UNAUTHORIZED,
                "missing or wrong token: send Authorization: Bearer <auth_token>".into(),
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"fuwa\""),
            );
            return last(r);
        }
    }
    let Some(format) = Format::from_content_type(h.get(header::CONTENT_TYPE).map(|v| v.as_bytes()))
    else {
        return last(shared.refuse(
            peer,
            tag,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type {} is not accepted: use application/json, application/x-ndjson, text/plain (JSON), application/msgpack or application/x-www-form-urlencoded",
                String::from_utf8_lossy(h.get(header::CONTENT_TYPE).map(|v| v.as_bytes()).unwrap_or_default())
            ),
        ));
    };
    let gzip = match h
        .get(header::CONTENT_ENCODING)
        .map(|v| v.as_bytes().trim_ascii())
    {
        None => false,
        Some(e) if e.is_empty() || e.eq_ignore_ascii_case(b"identity") => false,
        Some(e) if e.eq_ignore_ascii_case(b"gzip") || e.eq_ignore_ascii_case(b"x-gzip") => true,
        Some(e) => {
            return last(shared.refuse(
                peer,
                tag,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "content encoding {} is not accepted (gzip or none)",
                    String::from_utf8_lossy(e)
                ),
            ))
        }
    };
    let declared = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > shared.limit as u64) {
        return last(shared.refuse(
            peer,
            tag,
            StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TooLarge(shared.limit).to_string(),
        ));
    }
    let mut time = Ok(None);
    if let Some(q) = req.uri().query() {
        for pair in q.split('&') {
            if let Some(v) = pair.strip_prefix("time=") {
                let v = crate::decode::percent_decode(v.as_bytes()).unwrap_or_default();
                time = parse_time_param(&String::from_utf8_lossy(&v))
                    .map(Some)
                    .map_err(|e| format!("query parameter time: {e}"));
            }
        }
    }
    // the peer, or what a trusted proxy says the client is
    let remote = shared.remote_addr_key.as_ref().map(|_| {
        shared
            .proxies
            .client(
                peer.ip(),
                h.get_all("x-forwarded-for").iter().map(|v| v.as_bytes()),
            )
            .to_string()
    });
    // refusals that do not depend on the body are answered after reading
    // it, so that the connection stays usable (keep-alive)
    let tag_ok = valid_tag(tag, shared.tag_limit);
    let tag: Arc<str> = {
        let mut last = tags.lock().unwrap_or_else(|e| e.into_inner());
        match &*last {
            Some(t) if **t == *tag => t.clone(),
            _ => {
                let t: Arc<str> = Arc::from(tag);
                *last = Some(t.clone());
                t
            }
        }
    };

    // the whole body, within the limit, the input's budget and the read
    // timeout; what it holds of the budget is given back with the answer
    let mut held = shared.budget.hold();
    let mut incoming = req.into_body();
    let body = read_body(&mut incoming, shared.limit, &mut held);
    let body = match tokio::time::timeout(shared.read_timeout, body).await {
        Err(_) => {
            // the rest of the body may still come: this connection is done
            return last(shared.refuse(
                peer,
                &tag,
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within read_timeout ({:?})",
                    shared.read_timeout
                ),
            ));
        }
        Ok(Err(ReadError::TooLarge)) => {
            // as below: read the rest (a while, thrown away) so that the
            // client sees the 413 rather than a reset
            drop(held);
            let drain = drain(&mut incoming, shared.limit);
            let _ = tokio::time::timeout(shared.read_timeout.min(DRAIN_TIME), drain).await;
            return last(shared.invalid(
                peer,
                &tag,
                StatusCode::PAYLOAD_TOO_LARGE,
                BodyError::TooLarge(shared.limit).to_string(),
                1,
            ));
        }
        Ok(Err(ReadError::OverBudget)) => {
            // give back what it holds, then read the rest without keeping
            // it (a close with unread bytes would reset the connection and
            // the client might never see the answer)
            drop(held);
            let drain = drain(&mut incoming, shared.limit);
            let _ = tokio::time::timeout(shared.read_timeout.min(DRAIN_TIME), drain).await;
            return shared.over_budget(peer, &tag);
        }
        Ok(Err(ReadError::Http(e))) => {
            return last(shared.refuse(
                peer,
                &tag,
                StatusCode::BAD_REQUEST,
                format!("could not read the body: {e}"),
            ))
        }
        Ok(Ok(b)) => b,
    };

    // a bad time parameter refuses the request too, once its events are
    // counted
    let (time, time_err) = match time {
        Ok(t) => (t.unwrap_or_else(EventTime::now), None),
        Err(why) => (EventTime::now(), Some(why)),
    };
    let decoded = if body.len() <= INLINE_DECODE && !gzip {
        decode_body(
            shared,
            format,
            false,
            &body,
            time,
            remote.as_deref(),
            &mut held,
        )
    } else {
        let s = shared.clone();
        match tokio::task::spawn_blocking(move || {
            let r = decode_body(&s, format, gzip, &body, time, remote.as_deref(), &mut held);
            (r, held)
        })
        .await
        {
            Ok((r, h)) => {
                held = h;
                r
            }
            Err(e) => {
                held = shared.budget.hold();
                Err(BodyError::Malformed(format!("decoding failed: {e}")))
            }
        }
    };
    let (entries, count) = match decoded {
        Ok(x) => x,
        Err(e @ BodyError::TooLarge(_)) => {
            return shared.invalid(peer, &tag, StatusCode::PAYLOAD_TOO_LARGE, e.to_string(), 1)
        }
        Err(BodyError::Malformed(m)) => {
            return shared.invalid(peer, &tag, StatusCode::BAD_REQUEST, m, 1)
        }
        Err(BodyError::OverBudget) => return shared.over_budget(peer, &tag),
    };
    // a tag that cannot be taken refuses every event of the request: they
    // are counted, and nothing is kept
    if let Some(why) = tag_ok.err().or(time_err) {
        return shared.invalid(
            peer,
            &tag,
            StatusCode::BAD_REQUEST,
            format!("{why}; none of the {count} events was kept"),
            count,
        );
    }
    // the body and its entries stay held until they are in the buffers
    let _held = held;
    if count > 0 {
        let batch = Batch::new(tag.clone(), Bytes::from(entries), count);
        // Dropping the emit on timeout cancels it while it waits for room:
        // then the batch was not stored, and the client's retry is no
        // duplicate (see the README on backpressure).
        match tokio::time::timeout(shared.backpressure_timeout, shared.emitter.emit(batch)).await
        {
            Ok(Ok(())) => {}
            Ok(Err(EmitError::Rejected(why))) => {
                return shared.unavailable(peer, &tag, format!("buffer full: {why}"), false)
            }
            Ok(Err(EmitError::ShuttingDown)) => {
                return shared.unavailable(peer, &tag, "the agent is shutting down".into(), true)
            }
            Err(_) => {
                return shared.unavailable(
                    peer,
                    &tag,
                    format!(
                        "buffer full: not accepted within backpressure_timeout ({:?}); nothing was kept",
                        shared.backpressure_timeout
                    ),
                    false,
                )
            }
        }
    }
    respond(shared.ok_status, Bytes::new())
}

enum ReadError {
    /// over body_size_limit
    TooLarge,
    /// over body_buffer_limit (with the other requests' bodies)
    OverBudget,
    Http(hyper::Error),
}

/// Reads the whole body, refusing more than `limit` bytes, taking what it
/// reads from the input's budget. A body that arrives in one piece is kept
/// as it is, without a copy.
/// How long a refused body is read on (and thrown away) so that the client
/// sees the answer.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Reads and drops the rest of a body, `limit` bytes at most.
async fn drain(body: &mut Incoming, limit: usize) {
    let mut total = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(d) = frame.into_data() {
            total = total.saturating_add(d.len());
            if total > limit {
                return;
            }
        }
    }
}

async fn read_body(body: &mut Incoming, limit: usize, held: &mut Held) -> Result<Bytes, ReadError> {
    let mut first: Option<Bytes> = None;
    let mut more: Vec<u8> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(ReadError::Http)?.into_data() else {
            continue; // trailers
        };
        total = total.saturating_add(data.len());
        if total > limit {
            return Err(ReadError::TooLarge);
        }
        if data.is_empty() {
            continue;
        }
        // the first piece is held as it is (and counted); from the second
        // on, pieces are copied into one buffer whose whole capacity is
        // counted before it is allocated. It doubles (so a stalled sender
        // holds at most twice what it sent, not what it announced), up to
        // what the header announced and the limit.
        let len = more.len() + first.as_ref().map_or(0, Bytes::len) + data.len();
        if first.is_none() && more.is_empty() {
            if !held.take(data.len()) {
                return Err(ReadError::OverBudget);
            }
            first = Some(data);
            continue;
        }
        if len > more.capacity() {
            let announced =
                usize::try_from(hyper::body::Body::size_hint(&*body).lower()).unwrap_or(usize::MAX);
            let cap = more
                .capacity()
                .saturating_mul(2)
                .min(len.saturating_add(announced))
                .min(limit)
                .max(len);
            if !held.take(cap - more.capacity()) {
                return Err(ReadError::OverBudget);
            }
            more.reserve_exact(cap - more.len());
        }
        if let Some(f) = first.take() {
            more.extend_from_slice(&f);
        }
        more.extend_from_slice(&data);
    }
    Ok(first.unwrap_or_else(|| Bytes::from(more)))
}

/// Inflates and converts a body; the inflated and converted bytes are
/// taken from the budget too.
fn decode_body(
    shared: &Shared,
    format: Format,
    gzip: bool,
    body: &[u8],
    time: EventTime,
    remote: Option<&str>,
    held: &mut Held,
) -> Result<(Vec<u8>, u32), BodyError> {
    let inflated;
    let body = if gzip {
        inflated = gunzip_with(body, shared.limit, &mut |n| held.take(n))?;
        &inflated[..]
    } else {
        body
    };
    if !held.take(body.len() + 32) {
        return Err(BodyError::OverBudget);
    }
    let info = RequestInfo {
        time,
        remote_addr: match (&shared.remote_addr_key, remote) {
            (Some(k), Some(a)) => Some((k.as_str(), a)),
            _ => None,
        },
    };
    let mut out = Vec::with_capacity(body.len() + 32);
    let n = shared.decoder.decode(format, body, &info, &mut out)?;
    // entries are about the size of the body; what their buffer holds
    // beyond it
    let grown = out.capacity().saturating_sub(body.len() + 32);
    if grown > 0 && !held.take(grown) {
        return Err(BodyError::OverBudget);
    }
    Ok((out, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert!(valid_tag("app.access", 1024).is_ok());
        assert!(valid_tag("a-b_c:d@e+f~g.1", 1024).is_ok());
        for bad in [
            "", ".a", "a.", "a..b", "a b", "a/b", "a*", "a{b}", "é", "a\nb",
        ] {
            assert!(valid_tag(bad, 1024).is_err(), "{bad}");
        }
        let long = "a".repeat(300);
        assert!(valid_tag(&long, 300).is_ok());
        let why = valid_tag(&long, 299).unwrap_err();
        assert!(why.contains("tag_length_limit"), "{why}");
        assert_eq!(
            loggable(&long).len(),
            TAG_IN_LOG + " (300 bytes)".len() + "…".len()
        );
    }

    #[test]
    fn bearer() {
        let t = b"s3cret";
        assert!(authorized(
            Some(&HeaderValue::from_static("Bearer s3cret")),
            t
        ));
        assert!(authorized(
            Some(&HeaderValue::from_static("bearer  s3cret ")),
            t
        ));
        assert!(!authorized(
            Some(&HeaderValue::from_static("Bearer s3cre")),
            t
        ));
        assert!(!authorized(
            Some(&HeaderValue::from_static("Basic s3cret")),
            t
        ));
        assert!(!authorized(None, t));
    }
}
