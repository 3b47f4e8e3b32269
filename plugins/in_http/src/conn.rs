//! One request's life: route, CORS, auth, limits, decode the whole body,
//! emit, and answer only once the events are in every matching buffer.

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
use crate::decode::{gunzip, parse_time_param, BodyError, Decoder, Format, RequestInfo};

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

/// A tag from the path: dot-separated parts of letters, digits and `_-:@+~`.
pub fn valid_tag(t: &str) -> Result<(), &'static str> {
    if t.is_empty() {
        return Err("the tag (the path after /) is empty: POST /<tag>");
    }
    if t.len() > 1024 {
        return Err("the tag is longer than 1024 bytes");
    }
    if t.split('.').any(str::is_empty) {
        return Err("the tag has an empty part (leading, trailing or double dot)");
    }
    if !t.bytes().all(|c| {
        c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b':' | b'@' | b'+' | b'~')
    }) {
        return Err("the tag may hold only letters, digits and . _ - : @ + ~");
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
        debug!(input = %self.id, %peer, tag, status = status.as_u16(), reason = %why, "request refused");
        if status == StatusCode::BAD_REQUEST && self.warn_every.ready() {
            warn!(input = %self.id, %peer, tag, reason = %why, "malformed request refused with 400 (nothing of it kept; repeats are logged at debug)");
        }
        text(status, why)
    }

    fn unavailable(&self, peer: SocketAddr, tag: &str, why: String, close: bool) -> Resp {
        if self.warn_every.ready() {
            warn!(input = %self.id, %peer, tag, reason = %why, "answering 503 (backpressure); repeats are logged at debug");
        } else {
            debug!(input = %self.id, %peer, tag, reason = %why, "answering 503");
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
    let remote = shared.remote_addr_key.as_ref().map(|_| {
        h.get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| peer.ip().to_string())
    });
    // refusals that do not depend on the body are answered after reading
    // it, so that the connection stays usable (keep-alive)
    let tag_ok = valid_tag(tag);
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

    // the whole body, within the limit and the read timeout
    let body = read_body(req.into_body(), shared.limit);
    let body = match tokio::time::timeout(shared.read_timeout, body).await {
        Err(_) => {
            return shared.refuse(
                peer,
                &tag,
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within read_timeout ({:?})",
                    shared.read_timeout
                ),
            )
        }
        Ok(Err(None)) => {
            let mut r = shared.refuse(
                peer,
                &tag,
                StatusCode::PAYLOAD_TOO_LARGE,
                BodyError::TooLarge(shared.limit).to_string(),
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
        Ok(Err(Some(e))) => {
            return shared.refuse(
                peer,
                &tag,
                StatusCode::BAD_REQUEST,
                format!("could not read the body: {e}"),
            )
        }
        Ok(Ok(b)) => b,
    };

    if let Err(why) = tag_ok {
        return shared.refuse(peer, &tag, StatusCode::BAD_REQUEST, why.to_string());
    }
    let time = match time {
        Ok(t) => t.unwrap_or_else(EventTime::now),
        Err(why) => return shared.refuse(peer, &tag, StatusCode::BAD_REQUEST, why),
    };
    let decoded = if body.len() <= INLINE_DECODE && !gzip {
        decode_body(shared, format, false, &body, time, remote.as_deref())
    } else {
        let s = shared.clone();
        match tokio::task::spawn_blocking(move || {
            decode_body(&s, format, gzip, &body, time, remote.as_deref())
        })
        .await
        {
            Ok(r) => r,
            Err(e) => Err(BodyError::Malformed(format!("decoding failed: {e}"))),
        }
    };
    let (entries, count) = match decoded {
        Ok(x) => x,
        Err(e @ BodyError::TooLarge(_)) => {
            return shared.refuse(peer, &tag, StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
        Err(BodyError::Malformed(m)) => {
            return shared.refuse(peer, &tag, StatusCode::BAD_REQUEST, m)
        }
    };
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

/// Reads the whole body, refusing more than `limit` bytes (`Err(None)`). A
/// body that arrives in one piece is kept as it is, without a copy.
async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, Option<hyper::Error>> {
    let mut first: Option<Bytes> = None;
    let mut more: Vec<u8> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(Some)?.into_data() else {
            continue; // trailers
        };
        total += data.len();
        if total > limit {
            return Err(None);
        }
        if data.is_empty() {
            continue;
        }
        match first.take() {
            None if more.is_empty() => first = Some(data),
            Some(f) => {
                more.reserve(total);
                more.extend_from_slice(&f);
                more.extend_from_slice(&data);
            }
            None => more.extend_from_slice(&data),
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(more)))
}

fn decode_body(
    shared: &Shared,
    format: Format,
    gzip: bool,
    body: &[u8],
    time: EventTime,
    remote: Option<&str>,
) -> Result<(Vec<u8>, u32), BodyError> {
    let inflated;
    let body = if gzip {
        inflated = gunzip(body, shared.limit)?;
        &inflated[..]
    } else {
        body
    };
    let info = RequestInfo {
        time,
        remote_addr: match (&shared.remote_addr_key, remote) {
            (Some(k), Some(a)) => Some((k.as_str(), a)),
            _ => None,
        },
    };
    let mut out = Vec::with_capacity(body.len() + 32);
    let n = shared.decoder.decode(format, body, &info, &mut out)?;
    Ok((out, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert!(valid_tag("app.access").is_ok());
        assert!(valid_tag("a-b_c:d@e+f~g.1").is_ok());
        for bad in ["", ".a", "a.", "a..b", "a b", "a/b", "a*", "a{b}", "é"] {
            assert!(valid_tag(bad).is_err(), "{bad}");
        }
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
