//! The forward protocol v1 on the wire: the four event modes (Message,
//! Forward, PackedForward, CompressedPackedForward), their options, acks and
//! the JSON variant, turned into batches of `[time, record]` entries.
//!
//! PackedForward entries that are already canonical are kept as the client
//! sent them (no copy, no re-encode): only their structure is checked.

use std::sync::Arc;

use bytes::Bytes;
use fuwa_api::event::{read_entry, write_entry};
use fuwa_api::msgpack::{self, DecodeError, Head};
use fuwa_api::{Batch, EventTime};
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum ProtocolError {
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Shape(String),
    #[error("decompressed message exceeds message_length_limit ({0} bytes)")]
    TooLarge(usize),
    #[error("cannot decompress: {0}")]
    Compression(String),
}

fn shape(s: impl Into<String>) -> ProtocolError {
    ProtocolError::Shape(s.into())
}

/// What one message amounted to.
#[derive(Debug, Default)]
pub struct Decoded {
    pub batches: Vec<Batch>,
    /// raw msgpack bytes of the `chunk` option, to echo in the ack
    pub ack: Option<Bytes>,
    /// entries that were skipped (bad time, record not a map, tag refused,
    /// ...), with why
    pub skipped: Vec<String>,
    /// events refused (never delivered), counted with `Emitter::invalid`
    /// before the ack; a run of broken bytes counts as one
    pub invalid: u64,
}

impl Decoded {
    pub fn refuse(&mut self, n: u64, why: String) {
        self.invalid += n;
        self.skipped.push(why);
    }

    /// Moves what `other` holds to the end of this.
    pub fn append(&mut self, other: &mut Decoded) {
        self.batches.append(&mut other.batches);
        self.skipped.append(&mut other.skipped);
        self.invalid += std::mem::take(&mut other.invalid);
        if other.ack.is_some() {
            self.ack = other.ack.take();
        }
    }
}

/// Collects consecutive Message-mode events of one tag into one batch, so
/// that a client sending thousands of single events does not cost one
/// pipeline round trip each.
#[derive(Default)]
pub struct MessageGrouper {
    tag: Option<Arc<str>>,
    buf: Vec<u8>,
    count: u32,
}

impl MessageGrouper {
    pub fn push(&mut self, tag: &str, time: EventTime, record: &[u8], out: &mut Vec<Batch>) {
        if self.tag.as_deref() != Some(tag) {
            self.flush(out);
            self.tag = Some(Arc::from(tag));
        }
        write_entry(&mut self.buf, time, record);
        self.count += 1;
    }

    pub fn flush(&mut self, out: &mut Vec<Batch>) {
        if self.count > 0 {
            if let Some(tag) = self.tag.clone() {
                out.push(Batch::new(
                    tag,
                    Bytes::from(std::mem::take(&mut self.buf)),
                    self.count,
                ));
            }
        }
        self.count = 0;
        self.buf.clear();
        self.tag = None;
    }
}

/// Decodes one complete msgpack message (as found by the framer).
/// Message-mode events go to `grouper`, everything else into `out.batches`
/// (after flushing the grouper, so order is kept). Events whose tag
/// `fuwa_api::tag::check` refuses are decoded (for their ack), counted in
/// `out.invalid` and dropped.
pub fn decode_message(
    msg: &Bytes,
    limit: usize,
    tag_limit: usize,
    grouper: &mut MessageGrouper,
    out: &mut Decoded,
) -> Result<(), ProtocolError> {
    let b: &[u8] = msg;
    if let Ok((Head::Array(2..=4), p)) = msgpack::read_head(b, 0) {
        if let Ok((tag, _)) = msgpack::read_bytes_like(b, p) {
            if let Err(e) = std::str::from_utf8(tag)
                .map_err(|_| shape("the tag is not valid UTF-8"))
                .and_then(|t| fuwa_api::tag::check(t, tag_limit).map_err(|e| shape(e.to_string())))
            {
                let mut g = MessageGrouper::default();
                let mut refused = Decoded::default();
                decode_message_inner(msg, limit, &mut g, &mut refused)?;
                g.flush(&mut refused.batches);
                let n: u64 = refused.batches.iter().map(|b| b.count as u64).sum();
                out.invalid += refused.invalid + n;
                out.skipped.append(&mut refused.skipped);
                if n > 0 {
                    out.skipped.push(format!("{n} events refused: {e}"));
                }
                out.ack = refused.ack;
                return Ok(());
            }
        }
    }
    decode_message_inner(msg, limit, grouper, out)
}

fn decode_message_inner(
    msg: &Bytes,
    limit: usize,
    grouper: &mut MessageGrouper,
    out: &mut Decoded,
) -> Result<(), ProtocolError> {
    let b: &[u8] = msg;
    let (head, mut p) = msgpack::read_head(b, 0)?;
    let n = match head {
        Head::Nil => return Ok(()), // heartbeat over TCP
        Head::Array(n) if (2..=4).contains(&n) => n,
        Head::Array(n) => {
            return Err(shape(format!(
                "a message is an array of 2 to 4 elements, got {n}"
            )))
        }
        _ => return Err(shape("a message must be an array [tag, ...]")),
    };
    let (tag_bytes, next) =
        msgpack::read_bytes_like(b, p).map_err(|_| shape("the tag must be a string"))?;
    // checked by `decode_message` (a refused tag decodes here only to be
    // counted); lossy so that an invalid one is still walked
    let tag = String::from_utf8_lossy(tag_bytes);
    let tag: &str = &tag;
    p = next;
    let (second, sp) = msgpack::read_head(b, p)?;
    match second {
        Head::Str(len) | Head::Bin(len) => {
            // PackedForward / CompressedPackedForward
            if b.len().saturating_sub(sp) < len {
                return Err(DecodeError::Incomplete.into());
            }
            let body = msg.slice(sp..sp + len);
            let opt_pos = sp + len;
            let opts = if n >= 3 {
                read_options(b, opt_pos)?
            } else {
                Options::default()
            };
            if n > 3 {
                return Err(shape("PackedForward takes at most 3 elements"));
            }
            out.ack = opts.chunk.map(|(s, e)| msg.slice(s..e));
            let body = match opts.compressed.as_deref() {
                None | Some("text") | Some("") => body,
                Some("gzip") => Bytes::from(gunzip(&body, limit)?),
                Some("zstd") => Bytes::from(unzstd(&body, limit)?),
                Some(other) => return Err(shape(format!("unknown compression `{other}`"))),
            };
            grouper.flush(&mut out.batches);
            push_entries(tag, body, out);
        }
        Head::Array(m) => {
            // Forward mode, or Message with Fluent Bit's [EventTime, {meta}] time
            let first_inner = if m > 0 {
                Some(msgpack::read_head(b, sp)?.0)
            } else {
                None
            };
            if matches!(first_inner, Some(Head::Array(_)) | None) {
                let end = msgpack::skip(b, p)?;
                if n > 3 {
                    return Err(shape("Forward mode takes at most 3 elements"));
                }
                let opts = if n == 3 {
                    read_options(b, end)?
                } else {
                    Options::default()
                };
                out.ack = opts.chunk.map(|(s, e)| msg.slice(s..e));
                grouper.flush(&mut out.batches);
                push_entries(tag, msg.slice(sp..end), out);
            } else {
                decode_single(msg, tag, p, n, grouper, out)?;
            }
        }
        _ => decode_single(msg, tag, p, n, grouper, out)?,
    }
    Ok(())
}

/// Message mode: `[tag, time, record, option?]`.
fn decode_single(
    msg: &Bytes,
    tag: &str,
    p: usize,
    n: usize,
    grouper: &mut MessageGrouper,
    out: &mut Decoded,
) -> Result<(), ProtocolError> {
    let b: &[u8] = msg;
    if n < 3 {
        return Err(shape("Message mode is [tag, time, record, option?]"));
    }
    let time = EventTime::read(b, p);
    let rec_pos = match &time {
        Ok((_, rp, _)) => *rp,
        Err(_) => msgpack::skip(b, p)?,
    };
    let rec_end = msgpack::skip(b, rec_pos)?;
    if n == 4 {
        let opts = read_options(b, rec_end)?;
        out.ack = opts.chunk.map(|(s, e)| msg.slice(s..e));
    }
    let time = match time {
        Ok((t, _, _)) => t,
        Err(e) => {
            out.refuse(1, format!("event refused: {e}"));
            return Ok(());
        }
    };
    match msgpack::read_head(b, rec_pos)? {
        (Head::Map(_), _) => grouper.push(tag, time, &b[rec_pos..rec_end], &mut out.batches),
        _ => out.refuse(1, "event refused: record is not a map".into()),
    }
    Ok(())
}

/// Checks a stream of entries; keeps the bytes when every entry is canonical,
/// rewrites only when some need it (float or Fluent Bit metadata times,
/// skipped entries).
fn push_entries(tag: &str, body: Bytes, out: &mut Decoded) {
    let b: &[u8] = &body;
    let mut pos = 0;
    let mut count = 0u32;
    let mut skipped = 0u64;
    let mut rewritten: Option<Vec<u8>> = None;
    while pos < b.len() {
        match read_entry(b, pos) {
            Ok((e, next, canonical)) => {
                if !canonical && rewritten.is_none() {
                    rewritten = Some(b[..pos].to_vec());
                }
                if let Some(r) = rewritten.as_mut() {
                    if canonical {
                        r.extend_from_slice(e.raw);
                    } else {
                        write_entry(r, e.time, e.record);
                    }
                }
                count += 1;
                pos = next;
            }
            Err(err) => {
                // skip a well-formed value of the wrong shape; give up on the
                // rest when the bytes themselves are broken
                match msgpack::skip(b, pos) {
                    Ok(next) => {
                        let i = count as u64 + skipped;
                        skipped += 1;
                        out.refuse(1, format!("entry {i} refused: {err}"));
                        if rewritten.is_none() {
                            rewritten = Some(b[..pos].to_vec());
                        }
                        pos = next;
                    }
                    Err(_) => {
                        out.refuse(1, format!("entries from byte {pos} refused: {err}"));
                        if rewritten.is_none() {
                            rewritten = Some(b[..pos].to_vec());
                        }
                        break;
                    }
                }
            }
        }
    }
    if count == 0 {
        return;
    }
    let entries = match rewritten {
        Some(r) => Bytes::from(r),
        None => body,
    };
    out.batches.push(Batch::new(Arc::from(tag), entries, count));
}

/// The `chunk` option of a message that could not be decoded, where a
/// well-formed message has it (a map as the last of 3 or 4 elements), so
/// that the refusal can be acked: a message no retry can fix must not come
/// back forever.
pub fn chunk_of(msg: &Bytes) -> Option<Bytes> {
    let b: &[u8] = msg;
    let (head, mut p) = msgpack::read_head(b, 0).ok()?;
    let n = match head {
        Head::Array(n @ 3..=4) => n,
        _ => return None,
    };
    for _ in 0..n - 1 {
        p = msgpack::skip(b, p).ok()?;
    }
    let (s, e) = read_options(b, p).ok()?.chunk?;
    Some(msg.slice(s..e))
}

#[derive(Default)]
struct Options {
    chunk: Option<(usize, usize)>,
    compressed: Option<String>,
}

fn read_options(b: &[u8], pos: usize) -> Result<Options, ProtocolError> {
    let (head, mut p) = msgpack::read_head(b, pos)?;
    let n = match head {
        Head::Map(n) => n,
        Head::Nil => return Ok(Options::default()),
        _ => return Err(shape("the option element must be a map")),
    };
    let mut o = Options::default();
    for _ in 0..n {
        let key = msgpack::read_bytes_like(b, p).ok();
        let vpos = msgpack::skip(b, p)?;
        let vend = msgpack::skip(b, vpos)?;
        match key.map(|k| k.0) {
            Some(b"chunk") => o.chunk = Some((vpos, vend)),
            Some(b"compressed") => {
                let (v, _) = msgpack::read_bytes_like(b, vpos)
                    .map_err(|_| shape("`compressed` must be a string"))?;
                o.compressed = Some(String::from_utf8_lossy(v).into_owned());
            }
            // `size` is informational (node fluent-logger sends a byte length)
            _ => {}
        }
        p = vend;
    }
    Ok(o)
}

impl From<fuwa_codec::InflateError> for ProtocolError {
    fn from(e: fuwa_codec::InflateError) -> Self {
        match e {
            fuwa_codec::InflateError::TooLarge(n) => ProtocolError::TooLarge(n),
            other => ProtocolError::Compression(other.to_string()),
        }
    }
}

/// Decompresses one or more concatenated gzip members.
pub fn gunzip(b: &[u8], limit: usize) -> Result<Vec<u8>, ProtocolError> {
    Ok(fuwa_codec::gunzip(b, limit)?)
}

pub fn unzstd(b: &[u8], limit: usize) -> Result<Vec<u8>, ProtocolError> {
    Ok(fuwa_codec::unzstd(b, limit)?)
}

/// `{"ack": <chunk>}` with the chunk's bytes exactly as received.
pub fn ack_msgpack(out: &mut Vec<u8>, chunk: &[u8]) {
    out.extend_from_slice(&[0x81, 0xa3, b'a', b'c', b'k']);
    out.extend_from_slice(chunk);
}

/// The JSON variant (fluent-logger-golang's MarshalAsJSON): concatenated
/// arrays `[tag, time, record, option?]` or `[tag, [[time, record], ...], option?]`.
/// Events whose tag `fuwa_api::tag::check` refuses are counted in
/// `out.invalid` and dropped (the message is still acked).
pub fn decode_json(
    v: serde_json::Value,
    tag_limit: usize,
    grouper: &mut MessageGrouper,
    out: &mut Decoded,
    ack: &mut Option<serde_json::Value>,
) -> Result<(), ProtocolError> {
    let arr = match v {
        serde_json::Value::Array(a) if (2..=4).contains(&a.len()) => a,
        _ => {
            return Err(shape(
                "a JSON message must be an array [tag, time, record, option?]",
            ))
        }
    };
    let mut it = arr.into_iter();
    let tag = match it.next() {
        Some(serde_json::Value::String(s)) => s,
        _ => return Err(shape("the tag must be a string")),
    };
    let tag_ok = fuwa_api::tag::check(&tag, tag_limit);
    let second = it.next().unwrap_or(serde_json::Value::Null);
    let rest: Vec<serde_json::Value> = it.collect();
    let option_of = |o: Option<&serde_json::Value>| -> Option<serde_json::Value> {
        o.and_then(|o| o.get("chunk")).cloned()
    };
    match second {
        serde_json::Value::Array(entries) => {
            *ack = option_of(rest.first());
            if let Err(e) = &tag_ok {
                if !entries.is_empty() {
                    out.refuse(
                        entries.len() as u64,
                        format!("{} events refused: {e}", entries.len()),
                    );
                }
                return Ok(());
            }
            grouper.flush(&mut out.batches);
            let mut buf = Vec::new();
            let mut count = 0;
            for (i, e) in entries.into_iter().enumerate() {
                match e {
                    serde_json::Value::Array(pair) if pair.len() == 2 => {
                        match (json_time(&pair[0]), &pair[1]) {
                            (Some(t), rec @ serde_json::Value::Object(_)) => {
                                let mut r = Vec::new();
                                fuwa_parsers::json_value_to_msgpack(&mut r, rec);
                                write_entry(&mut buf, t, &r);
                                count += 1;
                            }
                            _ => out.refuse(
                                1,
                                format!("entry {i} refused: expected [time, {{record}}]"),
                            ),
                        }
                    }
                    _ => out.refuse(1, format!("entry {i} refused: expected [time, {{record}}]")),
                }
            }
            if count > 0 {
                out.batches
                    .push(Batch::new(Arc::from(tag.as_str()), Bytes::from(buf), count));
            }
        }
        t => {
            let rec = rest
                .first()
                .ok_or_else(|| shape("Message mode is [tag, time, record, option?]"))?;
            *ack = option_of(rest.get(1));
            if let Err(e) = &tag_ok {
                out.refuse(1, format!("event refused: {e}"));
                return Ok(());
            }
            match (json_time(&t), rec) {
                (Some(t), rec @ serde_json::Value::Object(_)) => {
                    let mut r = Vec::new();
                    fuwa_parsers::json_value_to_msgpack(&mut r, rec);
                    grouper.push(&tag, t, &r, &mut out.batches);
                }
                (None, _) => out.refuse(1, "event refused: time must be a number".into()),
                _ => out.refuse(1, "event refused: record is not an object".into()),
            }
        }
    }
    Ok(())
}

/// A JSON time: integer or float seconds (negative ones are before 1970),
/// within `fuwa_api::event::MAX_TIME_SECS`.
fn json_time(v: &serde_json::Value) -> Option<EventTime> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        return EventTime::from_secs(i);
    }
    if n.is_u64() {
        return None; // beyond MAX_TIME_SECS
    }
    EventTime::from_f64(n.as_f64()?)
}

#[cfg(test)]
mod tests;
