//! One connection's life: optional handshake, then read → frame → decode →
//! emit (which waits while buffers are full: the socket is not read then,
//! so the client is pushed back) → ack.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fuwa_api::msgpack::Framer;
use fuwa_api::ratelimit::RateLimit;
use fuwa_api::{Batch, Emitter, Shutdown};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, warn};

use crate::auth::{Handshake, Security};
use crate::protocol::{ack_msgpack, decode_json, decode_message, Decoded, MessageGrouper};

pub struct ConnShared {
    pub id: Arc<str>,
    pub emitter: Arc<dyn Emitter>,
    pub limit: usize,
    pub security: Option<Security>,
    /// bad events are warned about at most once per interval per input
    pub skip_warn: RateLimit,
}

const READ_CHUNK: usize = 256 * 1024;

pub async fn serve<S>(stream: S, peer: SocketAddr, shared: Arc<ConnShared>, shutdown: Shutdown)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let id = shared.id.clone();
    match serve_inner(stream, peer, &shared, shutdown).await {
        Ok(()) => debug!(input = %id, %peer, "connection closed"),
        Err(e) => warn!(input = %id, %peer, error = %e, "closing connection"),
    }
}

async fn serve_inner<S>(
    mut stream: S,
    peer: SocketAddr,
    shared: &ConnShared,
    mut shutdown: Shutdown,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::new();
    if let Some(sec) = &shared.security {
        handshake(&mut stream, &mut buf, sec, &mut shutdown).await?;
    }
    let mut framer = Framer::with_limit(shared.limit);
    let mut json: Option<bool> = None;
    let mut grouper = MessageGrouper::default();
    let mut acks: Vec<u8> = Vec::new();
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let n = tokio::select! {
            r = stream.read_buf(&mut buf) => r.map_err(|e| format!("read failed: {e}"))?,
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
        let is_json = *json.get_or_insert_with(|| matches!(buf.first(), Some(b'[') | Some(b'{')));
        let mut out = Decoded::default();
        let mut ack_list: Vec<Bytes> = Vec::new();
        // a fatal problem closes the connection, but only after what came
        // before it in this read has been accepted and acked
        let mut fatal: Option<String> = None;
        if is_json {
            if let Err(e) =
                decode_json_stream(&mut buf, shared.limit, &mut grouper, &mut out, &mut acks)
            {
                fatal = Some(e);
            }
        } else {
            loop {
                match framer.advance(&buf) {
                    Ok(Some(len)) if len > shared.limit => {
                        fatal = Some(format!(
                            "message of {len} bytes exceeds message_length_limit ({} bytes)",
                            shared.limit
                        ));
                        break;
                    }
                    Ok(Some(len)) => {
                        let msg = buf.split_to(len).freeze();
                        let mut one = Decoded::default();
                        if let Err(e) = decode_message(&msg, shared.limit, &mut grouper, &mut one) {
                            fatal = Some(format!("bad message: {e}"));
                            break;
                        }
                        out.batches.append(&mut one.batches);
                        out.skipped.append(&mut one.skipped);
                        if let Some(a) = one.ack {
                            ack_list.push(a);
                        }
                    }
                    Ok(None) => {
                        if framer.progress() > shared.limit
                            || buf.len() > shared.limit.saturating_add(READ_CHUNK)
                        {
                            fatal = Some(format!(
                                "message exceeds message_length_limit ({} bytes)",
                                shared.limit
                            ));
                        }
                        break;
                    }
                    Err(e) => {
                        fatal = Some(format!("malformed msgpack: {e}"));
                        break;
                    }
                }
            }
        }
        grouper.flush(&mut out.batches);
        if let Some(first) = out.skipped.first() {
            if let Some(suppressed) = shared.skip_warn.check() {
                warn!(input = %shared.id, %peer, skipped = out.skipped.len(), suppressed, "{first}");
            }
        }
        emit_all(shared, out.batches).await?;
        for a in &ack_list {
            ack_msgpack(&mut acks, a);
        }
        if !acks.is_empty() {
            stream
                .write_all(&acks)
                .await
                .map_err(|e| format!("cannot send ack: {e}"))?;
            acks.clear();
        }
        if let Some(e) = fatal {
            return Err(e);
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

fn decode_json_stream(
    buf: &mut BytesMut,
    limit: usize,
    grouper: &mut MessageGrouper,
    out: &mut Decoded,
    acks: &mut Vec<u8>,
) -> Result<(), String> {
    let mut consumed = 0;
    {
        let mut it =
            serde_json::Deserializer::from_slice(&buf[..]).into_iter::<serde_json::Value>();
        loop {
            match it.next() {
                Some(Ok(v)) => {
                    let mut ack = None;
                    decode_json(v, grouper, out, &mut ack)
                        .map_err(|e| format!("bad JSON message: {e}"))?;
                    consumed = it.byte_offset();
                    if let Some(a) = ack {
                        // acks wait until the batches are accepted; collect them
                        let body = serde_json::json!({ "ack": a });
                        acks.extend_from_slice(body.to_string().as_bytes());
                    }
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => return Err(format!("malformed JSON: {e}")),
                None => {
                    consumed = buf.len();
                    break;
                }
            }
        }
    }
    let _ = buf.split_to(consumed);
    if buf.len() > limit {
        return Err(format!(
            "message exceeds message_length_limit ({limit} bytes)"
        ));
    }
    Ok(())
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
        let n = tokio::select! {
            r = stream.read_buf(buf) => r.map_err(|e| format!("handshake: read failed: {e}"))?,
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
