//! One connection's life: optional handshake, then read → frame → decode →
//! emit (which waits while buffers are full: the socket is not read then,
//! so the client is pushed back) → ack.
//!
//! Limits, each closing the connection with a warning (nothing unacked is
//! lost: the client sends it again): the handshake must end within
//! `handshake_timeout`; a connection idle between messages for
//! `idle_timeout` is closed (quietly: clients reconnect); a message begun
//! must be complete within `message_timeout`; the bytes of messages begun
//! and not complete, and of events decoded and waiting for the pipeline,
//! across every connection, stay under `pending_bytes_limit`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use fuwa_api::msgpack::Framer;
use fuwa_api::ratelimit::RateLimit;
use fuwa_api::{Batch, Emitter, Shutdown};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::auth::{Handshake, Security};
use crate::json::JsonFramer;
use crate::protocol::{
    ack_msgpack, chunk_of, decode_json, decode_message, Decoded, MessageGrouper, ProtocolError,
};

pub struct ConnShared {
    pub id: Arc<str>,
    pub emitter: Arc<dyn Emitter>,
    /// message_length_limit
    pub limit: usize,
    pub tag_limit: usize,
    pub security: Option<Security>,
    /// bad events are warned about at most once per interval per input
    pub skip_warn: RateLimit,
    pub idle_timeout: Duration,
    pub message_timeout: Duration,
    pub pending_limit: usize,
    /// bytes of partial messages held by every connection now
    pub pending: AtomicUsize,
}

impl ConnShared {
    pub fn new(
        id: Arc<str>,
        emitter: Arc<dyn Emitter>,
        cfg: &crate::ForwardConfig,
        security: Option<Security>,
    ) -> Self {
        ConnShared {
            id,
            emitter,
            limit: cfg.message_length_limit.0 as usize,
            tag_limit: cfg.tag_length_limit.0 as usize,
            security,
            skip_warn: RateLimit::new(10_000),
            idle_timeout: cfg.idle_timeout.0,
            message_timeout: cfg.message_timeout.0,
            pending_limit: cfg.pending_bytes_limit.0 as usize,
            pending: AtomicUsize::new(0),
        }
    }
}

/// The most one read takes from the socket.
pub const READ_CHUNK: usize = 256 * 1024;

/// This connection's share of `ConnShared::pending`, given back on drop.
struct Held<'a> {
    shared: &'a ConnShared,
    n: usize,
}

impl Held<'_> {
    /// Holds `n` bytes now; false (holding what it held) when that would
    /// take the input over `pending_bytes_limit`.
    fn set(&mut self, n: usize) -> bool {
        let pending = &self.shared.pending;
        if n > self.n {
            let add = n - self.n;
            // compare-and-swap, so that a connection refused never counts
            // for a moment and makes another one refused too
            let limit = self.shared.pending_limit;
            let grown = pending.fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                now.checked_add(add).filter(|total| *total <= limit)
            });
            if grown.is_err() {
                return false;
            }
        } else {
            pending.fetch_sub(self.n - n, Ordering::AcqRel);
        }
        self.n = n;
        true
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.shared.pending.fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// Serves one connection; the handshake (if any) must end by
/// `handshake_deadline`.
pub async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    shared: Arc<ConnShared>,
    shutdown: Shutdown,
    handshake_deadline: Instant,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let id = shared.id.clone();
    match serve_inner(stream, peer, &shared, shutdown, handshake_deadline).await {
        Ok(()) => debug!(input = %id, %peer, "connection closed"),
        Err(e) => warn!(input = %id, %peer, error = %e, "closing connection"),
    }
}

async fn serve_inner<S>(
    mut stream: S,
    peer: SocketAddr,
    shared: &ConnShared,
    mut shutdown: Shutdown,
    handshake_deadline: Instant,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::new();
    if let Some(sec) = &shared.security {
        tokio::time::timeout_at(
            handshake_deadline,
            handshake(&mut stream, &mut buf, sec, &mut shutdown),
        )
        .await
        .map_err(|_| "handshake not complete within handshake_timeout".to_string())??;
    }
    let mut held = Held { shared, n: 0 };
    let mut framer = Framer::with_limit(shared.limit);
    let mut json_framer = JsonFramer::default();
    let mut json: Option<bool> = None;
    let mut grouper = MessageGrouper::default();
    let mut acks: Vec<u8> = Vec::new();
    let mut message_began: Option<Instant> = None;
    loop {
        // what is already buffered first: bytes that came with the PING, or
        // more than one message in one read
        let mut out = Decoded::default();
        let mut ack_list: Vec<Bytes> = Vec::new();
        // a fatal problem closes the connection, but only after what came
        // before it has been accepted and acked
        let mut fatal: Option<String> = None;
        let len_before = buf.len();
        if !buf.is_empty() {
            let is_json =
                *json.get_or_insert_with(|| matches!(buf.first(), Some(b'[') | Some(b'{')));
            let r = if is_json {
                decode_json_stream(
                    &mut buf,
                    &mut json_framer,
                    shared,
                    &mut grouper,
                    &mut out,
                    &mut acks,
                )
            } else {
                decode_msgpack_stream(
                    &mut buf,
                    &mut framer,
                    shared,
                    &mut grouper,
                    &mut out,
                    &mut ack_list,
                )
            };
            if let Err(e) = r {
                // the message that cannot be read is refused (one count: how
                // many events it held is unknown)
                out.invalid += 1;
                fatal = Some(e);
            }
        }
        grouper.flush(&mut out.batches);
        if out.invalid > 0 {
            shared.emitter.invalid(out.invalid);
        }
        if let Some(first) = out.skipped.first() {
            if let Some(suppressed) = shared.skip_warn.check() {
                warn!(input = %shared.id, %peer, refused = out.invalid, suppressed, "events refused: {first}");
            }
        }
        // decoded events wait in this connection until the pipeline takes
        // them (it may push back): they count against the same budget
        let decoded: usize = out.batches.iter().map(|b| b.entries.len()).sum();
        if decoded > 0 && !held.set(buf.len() + decoded) {
            return Err(over_budget(shared, buf.len() + decoded - held.n));
        }
        emit_all(shared, out.batches).await?;
        for a in &ack_list {
            ack_msgpack(&mut acks, a);
        }
        // a chunk id is a slice of its message: kept while the connection
        // waits for more, it would keep the whole message's allocation
        drop(ack_list);
        if !acks.is_empty() {
            tokio::time::timeout(shared.idle_timeout, stream.write_all(&acks))
                .await
                .map_err(|_| {
                    "cannot send ack: the client does not read (idle_timeout)".to_string()
                })?
                .map_err(|e| format!("cannot send ack: {e}"))?;
            acks.clear();
        }
        if let Some(e) = fatal {
            return Err(e);
        }
        // what is left is one message begun and not complete: a new one
        // when anything was taken off the front
        if buf.is_empty() {
            message_began = None;
            // the allocation that held a big message is not kept for the
            // connection's life (an empty BytesMut still shares it, and
            // would reclaim all of it at the next reserve): the memory
            // bound counts 2 × READ_CHUNK per connection
            if len_before > 2 * READ_CHUNK || buf.capacity() > 2 * READ_CHUNK {
                buf = BytesMut::new();
            }
        } else if message_began.is_none() || buf.len() < len_before {
            message_began = Some(Instant::now());
        }
        if !held.set(buf.len()) {
            return Err(over_budget(shared, buf.len() - held.n));
        }
        let deadline = match message_began {
            Some(t) => t + shared.message_timeout,
            None => Instant::now() + shared.idle_timeout,
        };
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let pending_len = buf.len();
        let mut room = (&mut buf).limit(READ_CHUNK);
        let n = tokio::select! {
            r = stream.read_buf(&mut room) => r.map_err(|e| format!("read failed: {e}"))?,
            _ = tokio::time::sleep_until(deadline) => {
                if message_began.is_some() {
                    return Err(format!(
                        "message not acked: not complete within message_timeout ({:?}), {} bytes received",
                        shared.message_timeout,
                        pending_len
                    ));
                }
                debug!(input = %shared.id, %peer, "closing connection idle for idle_timeout ({:?})", shared.idle_timeout);
                return Ok(());
            }
            _ = shutdown.wait() => return Ok(()),
        };
        if n == 0 {
            if !buf.is_empty() {
                return Err(format!(
                    "connection closed in the middle of a message ({} bytes pending)",
                    buf.len()
                ));
            }
            return Ok(());
        }
    }
}

fn over_budget(shared: &ConnShared, more: usize) -> String {
    format!(
        "message not acked: the input's connections hold {} bytes of messages not complete or not yet accepted, {more} more would pass pending_bytes_limit ({} bytes)",
        shared.pending.load(Ordering::Relaxed),
        shared.pending_limit
    )
}

/// Takes every complete msgpack message off the front of `buf`.
fn decode_msgpack_stream(
    buf: &mut BytesMut,
    framer: &mut Framer,
    shared: &ConnShared,
    grouper: &mut MessageGrouper,
    out: &mut Decoded,
    ack_list: &mut Vec<Bytes>,
) -> Result<(), String> {
    loop {
        if buf.is_empty() {
            return Ok(());
        }
        match framer.advance(buf) {
            Ok(Some(len)) if len > shared.limit => {
                return Err(format!(
                    "message of {len} bytes exceeds message_length_limit ({} bytes)",
                    shared.limit
                ));
            }
            Ok(Some(len)) => {
                let msg = buf.split_to(len).freeze();
                let mut one = Decoded::default();
                match decode_message(&msg, shared.limit, shared.tag_limit, grouper, &mut one) {
                    Ok(()) => {
                        if let Some(a) = one.ack.take() {
                            ack_list.push(a);
                        }
                        out.append(&mut one);
                    }
                    // over the limit once inflated: not acked, as a message
                    // over the limit on the wire (raising the limit fixes it)
                    Err(e @ ProtocolError::TooLarge(_)) => return Err(format!("bad message: {e}")),
                    // the message's end is known, so the stream goes on: it
                    // is refused (counted, logged) and acked, as no retry
                    // can make it good
                    Err(e) => {
                        out.refuse(1, format!("message refused: {e}"));
                        if let Some(a) = chunk_of(&msg) {
                            ack_list.push(a);
                        }
                    }
                }
            }
            Ok(None) => {
                if framer.progress() > shared.limit {
                    return Err(format!(
                        "message exceeds message_length_limit ({} bytes)",
                        shared.limit
                    ));
                }
                return Ok(());
            }
            Err(e) => return Err(format!("malformed msgpack: {e}")),
        }
    }
}

async fn emit_all(shared: &ConnShared, batches: Vec<Batch>) -> Result<(), String> {
    for b in batches {
        shared
            .emitter
            .emit(b)
            .await
            .map_err(|e| format!("events not accepted, no ack sent: {e}"))?;
    }
    Ok(())
}

/// Takes every complete JSON message off the front of `buf`: the framer
/// finds where each ends (walking each byte once, however many reads it
/// takes), then the message is parsed once.
fn decode_json_stream(
    buf: &mut BytesMut,
    framer: &mut JsonFramer,
    shared: &ConnShared,
    grouper: &mut MessageGrouper,
    out: &mut Decoded,
    acks: &mut Vec<u8>,
) -> Result<(), String> {
    loop {
        if framer.progress() == 0 {
            let ws = JsonFramer::leading_ws(buf);
            let _ = buf.split_to(ws);
        }
        if buf.is_empty() {
            return Ok(());
        }
        match framer.advance(buf) {
            Ok(Some(len)) if len > shared.limit => {
                return Err(format!(
                    "message of {len} bytes exceeds message_length_limit ({} bytes)",
                    shared.limit
                ));
            }
            Ok(Some(len)) => {
                let msg = buf.split_to(len);
                let v: serde_json::Value =
                    serde_json::from_slice(&msg).map_err(|e| format!("malformed JSON: {e}"))?;
                let mut ack = None;
                // where the option is in a well-formed message, to ack a
                // refused one
                let chunk = match v.as_array() {
                    Some(a) if (3..=4).contains(&a.len()) => {
                        a.last().and_then(|o| o.get("chunk")).cloned()
                    }
                    _ => None,
                };
                if let Err(e) = decode_json(v, shared.tag_limit, grouper, out, &mut ack) {
                    out.refuse(1, format!("JSON message refused: {e}"));
                    ack = chunk;
                }
                if let Some(a) = ack {
                    // acks wait until the batches are accepted; collect them
                    let body = serde_json::json!({ "ack": a });
                    acks.extend_from_slice(body.to_string().as_bytes());
                }
            }
            Ok(None) => {
                if framer.progress() > shared.limit {
                    return Err(format!(
                        "message exceeds message_length_limit ({} bytes)",
                        shared.limit
                    ));
                }
                return Ok(());
            }
            Err(e) => return Err(format!("malformed JSON: {e}")),
        }
    }
}

async fn handshake<S>(
    stream: &mut S,
    buf: &mut BytesMut,
    sec: &Security,
    shutdown: &mut Shutdown,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hs = Handshake::new(sec);
    stream
        .write_all(&hs.helo())
        .await
        .map_err(|e| format!("cannot send HELO: {e}"))?;
    let mut framer = Framer::with_limit(64 * 1024);
    let ping = loop {
        if let Some(len) = framer
            .advance(buf)
            .map_err(|e| format!("handshake: malformed PING: {e}"))?
        {
            break buf.split_to(len);
        }
        if buf.len() > 64 * 1024 {
            return Err("handshake: PING too large".into());
        }
        buf.reserve(4096);
        let mut room = (&mut *buf).limit(64 * 1024);
        let n = tokio::select! {
            r = stream.read_buf(&mut room) => r.map_err(|e| format!("handshake: read failed: {e}"))?,
            _ = shutdown.wait() => return Err("shutting down during handshake".into()),
        };
        if n == 0 {
            return Err("handshake: client closed before PING".into());
        }
    };
    let (pong, verdict) = hs.check_ping(sec, &ping);
    stream
        .write_all(&pong)
        .await
        .map_err(|e| format!("cannot send PONG: {e}"))?;
    match verdict {
        Ok(()) => Ok(()),
        Err(reason) => {
            let _ = stream.shutdown().await;
            Err(format!("authentication failed: {reason}"))
        }
    }
}
