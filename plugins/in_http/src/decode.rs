//! Request bodies → event entries: JSON (an object, an array of objects,
//! NDJSON or several objects one after another), msgpack (a map, an array of
//! maps, or a stream of those), Fluentd's form fields (`json=`, `msgpack=`,
//! `time=`) and gzip. A body is converted whole before anything is emitted:
//! one bad record refuses the body and nothing of it is kept.
//!
//! JSON is transcoded to msgpack in one pass by `fuwa_parsers` (the same code
//! the tail input uses); this module only finds where each object starts and
//! ends.

use fuwa_api::event::write_entry;
use fuwa_api::msgpack::{self, Head};
use fuwa_api::EventTime;
use fuwa_parsers::{ParseError, Parser, ParserConfig, TimeParser};
use fuwa_render::time::Tz;
use thiserror::Error;

/// Why a body was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// 400: the body is not what its content type says
    #[error("{0}")]
    Malformed(String),
    /// 413: over body_size_limit (after decompression too)
    #[error("the body is larger than body_size_limit ({0} bytes)")]
    TooLarge(usize),
    /// 503: the bodies held across the input reached body_buffer_limit
    #[error("too many request bodies are held at once (body_buffer_limit)")]
    OverBudget,
}

/// Deepest nesting of arrays and maps accepted in a msgpack record, the
/// record itself counted ([`msgpack::MAX_DEPTH`]).
pub const MAX_DEPTH: usize = msgpack::MAX_DEPTH;

/// Deepest nesting of arrays and objects accepted in a JSON record, the
/// record itself counted: serde_json's recursion limit (128) leaves 127.
/// Checked by [`object_end`] before serde_json sees the text, so the limit
/// and its message are ours.
pub const JSON_MAX_DEPTH: usize = 127;

/// An event time the entry format carries: within
/// [`fuwa_api::event::MAX_TIME_SECS`] of 1970 either way (times before 1970
/// are times). A time outside could not be written by every output, so it
/// is refused before the ack.
pub fn check_time(t: EventTime) -> Result<EventTime, String> {
    let max = fuwa_api::event::MAX_TIME_SECS;
    if t.secs.unsigned_abs() <= max as u64 {
        Ok(t)
    } else {
        Err(format!(
            "time {}.{:09} is outside what an event carries (±{max} epoch seconds)",
            t.secs, t.nanos,
        ))
    }
}

fn bad(msg: impl Into<String>) -> BodyError {
    BodyError::Malformed(msg.into())
}

/// What the content type says the body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// application/json, text/plain (beacons), application/x-ndjson, none
    Json,
    /// application/msgpack, application/x-msgpack
    Msgpack,
    /// application/x-www-form-urlencoded (Fluentd in_http: json= / msgpack=)
    Form,
}

impl Format {
    /// From a Content-Type header value; `None` for a type not accepted.
    pub fn from_content_type(ct: Option<&[u8]>) -> Option<Format> {
        let Some(ct) = ct else {
            return Some(Format::Json);
        };
        let media = match ct.iter().position(|&b| b == b';') {
            Some(i) => &ct[..i],
            None => ct,
        };
        let media = media.trim_ascii();
        let is = |s: &str| media.eq_ignore_ascii_case(s.as_bytes());
        if media.is_empty()
            || is("application/json")
            || is("text/plain")
            || is("application/x-ndjson")
            || is("application/ndjson")
            || is("application/jsonlines")
            || is("application/x-jsonlines")
            || is("application/jsonl")
            || is("application/csp-report")
            || (media.len() > 5
                && media[media.len() - 5..].eq_ignore_ascii_case(b"+json")
                && media[..12.min(media.len())].eq_ignore_ascii_case(b"application/"))
        {
            Some(Format::Json)
        } else if is("application/msgpack")
            || is("application/x-msgpack")
            || is("application/vnd.msgpack")
        {
            Some(Format::Msgpack)
        } else if is("application/x-www-form-urlencoded") {
            Some(Format::Form)
        } else {
            None
        }
    }
}

/// Per-request facts the records may need.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// the `time` query parameter, else the time the request arrived
    pub time: EventTime,
    /// `remote_addr_key` and the client address, when configured
    pub remote_addr: Option<(&'a str, &'a str)>,
}

/// Converts bodies; built once from the input's settings.
pub struct Decoder {
    json: Parser,
    time_key: Option<String>,
    time: Option<TimeParser>,
    keep_time_key: bool,
}

impl Decoder {
    /// Errors name the config key that is wrong.
    pub fn new(
        time_key: Option<String>,
        time_format: Option<String>,
        keep_time_key: bool,
        tz: Tz,
    ) -> Result<Decoder, (String, String)> {
        let json = Parser::new(
            &ParserConfig {
                format: Some(fuwa_parsers::Format::Json),
                time_key: time_key.clone(),
                time_format: time_format.clone(),
                keep_time_key,
                ..ParserConfig::default()
            },
            tz,
        )?;
        let time = match &time_key {
            Some(_) => Some(
                TimeParser::new(time_format.as_deref().unwrap_or("auto"), tz)
                    .map_err(|e| ("time_format".to_string(), e))?,
            ),
            None => None,
        };
        Ok(Decoder {
            json,
            time_key,
            time,
            keep_time_key,
        })
    }

    /// Converts a whole (already decompressed) body into `[time, record]`
    /// entries appended to `out`. Returns how many records it held. On error
    /// `out` is left as it was.
    pub fn decode(
        &self,
        format: Format,
        body: &[u8],
        info: &RequestInfo<'_>,
        out: &mut Vec<u8>,
    ) -> Result<u32, BodyError> {
        let start = out.len();
        let r = match format {
            Format::Json => self.json(body, info, out),
            Format::Msgpack => self.msgpack(body, info, out),
            Format::Form => self.form(body, info, out),
        };
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    fn form(
        &self,
        body: &[u8],
        info: &RequestInfo<'_>,
        out: &mut Vec<u8>,
    ) -> Result<u32, BodyError> {
        let mut json = None;
        let mut mp = None;
        let mut info = *info;
        for field in body.split(|&b| b == b'&').filter(|f| !f.is_empty()) {
            let (k, v) = match field.iter().position(|&b| b == b'=') {
                Some(i) => (&field[..i], &field[i + 1..]),
                None => (field, &b""[..]),
            };
            let k = percent_decode(k).map_err(|e| bad(format!("form field name: {e}")))?;
            match k.as_slice() {
                b"json" => {
                    json =
                        Some(percent_decode(v).map_err(|e| bad(format!("form field json: {e}")))?)
                }
                b"msgpack" => {
                    mp = Some(
                        percent_decode(v).map_err(|e| bad(format!("form field msgpack: {e}")))?,
                    )
                }
                b"time" => {
                    let v = percent_decode(v).map_err(|e| bad(format!("form field time: {e}")))?;
                    let s =
                        std::str::from_utf8(&v).map_err(|_| bad("form field time is not UTF-8"))?;
                    info.time =
                        parse_time_param(s).map_err(|e| bad(format!("form field time: {e}")))?;
                }
                _ => {}
            }
        }
        match (json, mp) {
            (Some(j), None) => self.json(&j, &info, out),
            (None, Some(m)) => self.msgpack(&m, &info, out),
            (Some(_), Some(_)) => Err(bad("the form has both json= and msgpack=: send one")),
            (None, None) => Err(bad(
                "a form body needs a json= or msgpack= field (Fluentd in_http)",
            )),
        }
    }

    fn json(
        &self,
        body: &[u8],
        info: &RequestInfo<'_>,
        out: &mut Vec<u8>,
    ) -> Result<u32, BodyError> {
        let text = std::str::from_utf8(body).map_err(|e| {
            bad(format!(
                "the body is not UTF-8 (byte {}): JSON must be",
                e.valid_up_to()
            ))
        })?;
        let mut n = 0u32;
        let mut scratch = Vec::new();
        json_objects(text, |at, obj| {
            let parsed = self.json.parse(obj).map_err(|e| {
                let why = match e {
                    ParseError::NoMatch(m) => m,
                    t @ ParseError::Time { .. } => t.to_string(),
                };
                bad(format!("record {} (byte {at}): {why}", n + 1))
            })?;
            let time = check_time(parsed.time.unwrap_or(info.time))
                .map_err(|e| bad(format!("record {} (byte {at}): {e}", n + 1)))?;
            match info.remote_addr {
                None => write_entry(out, time, &parsed.record),
                Some(add) => {
                    scratch.clear();
                    rewrite_map(&parsed.record, None, true, Some(add), &mut scratch)
                        .map_err(|e| bad(format!("record {}: {e}", n + 1)))?;
                    write_entry(out, time, &scratch);
                }
            }
            n = n
                .checked_add(1)
                .ok_or_else(|| bad("more than 2^32 records"))?;
            Ok(())
        })?;
        Ok(n)
    }

    fn msgpack(
        &self,
        body: &[u8],
        info: &RequestInfo<'_>,
        out: &mut Vec<u8>,
    ) -> Result<u32, BodyError> {
        if body.is_empty() {
            return Err(bad("empty body: send a msgpack map or an array of maps"));
        }
        let mut n = 0u32;
        let mut pos = 0;
        let mut scratch = Vec::new();
        let mp_err = |e: msgpack::DecodeError, n: u32| {
            let e = e.to_string();
            if e.contains("too deep") {
                bad(format!(
                    "record {}: {e} (nesting deeper than {MAX_DEPTH} levels)",
                    n + 1
                ))
            } else {
                bad(format!("record {}: {e}", n + 1))
            }
        };
        while pos < body.len() {
            let (head, after) = msgpack::read_head(body, pos).map_err(|e| mp_err(e, n))?;
            match head {
                Head::Map(_) => {
                    let end = msgpack::skip(body, pos).map_err(|e| mp_err(e, n))?;
                    self.msgpack_record(&body[pos..end], info, n, &mut scratch, out)?;
                    n += 1;
                    pos = end;
                }
                Head::Array(len) => {
                    let mut p = after;
                    for _ in 0..len {
                        match msgpack::read_head(body, p).map_err(|e| mp_err(e, n))? {
                            (Head::Map(_), _) => {}
                            _ => {
                                return Err(bad(format!(
                                    "record {} (byte {p}): array elements must be maps",
                                    n + 1
                                )))
                            }
                        }
                        let end = msgpack::skip(body, p).map_err(|e| mp_err(e, n))?;
                        self.msgpack_record(&body[p..end], info, n, &mut scratch, out)?;
                        n += 1;
                        p = end;
                    }
                    pos = p;
                }
                _ => {
                    return Err(bad(format!(
                        "record {} (byte {pos}): expected a msgpack map or an array of maps",
                        n + 1
                    )))
                }
            }
        }
        Ok(n)
    }

    fn msgpack_record(
        &self,
        rec: &[u8],
        info: &RequestInfo<'_>,
        n: u32,
        scratch: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), BodyError> {
        if self.time_key.is_none() && info.remote_addr.is_none() {
            let time = check_time(info.time).map_err(|e| bad(format!("record {}: {e}", n + 1)))?;
            write_entry(out, time, rec);
            return Ok(());
        }
        scratch.clear();
        let tk = self.time_key.as_deref().map(str::as_bytes);
        let found = rewrite_map(rec, tk, self.keep_time_key, info.remote_addr, scratch)
            .map_err(|e| bad(format!("record {}: {e}", n + 1)))?;
        let time = match (found, &self.time) {
            (Some(range), Some(tp)) => msgpack_time(&rec[range], tp).map_err(|e| {
                bad(format!(
                    "record {}: {}: {e}",
                    n + 1,
                    self.time_key.as_deref().unwrap_or("time")
                ))
            })?,
            _ => info.time,
        };
        let time = check_time(time).map_err(|e| bad(format!("record {}: {e}", n + 1)))?;
        write_entry(out, time, scratch);
        Ok(())
    }
}

/// Fluentd in_http's `time` parameter: epoch seconds, a fraction allowed.
pub fn parse_time_param(s: &str) -> Result<EventTime, String> {
    let s = s.trim();
    if let Ok(i) = s.parse::<i64>() {
        return check_time(EventTime::new(i, 0));
    }
    s.parse::<f64>()
        .ok()
        .and_then(EventTime::from_f64)
        .ok_or_else(|| format!("`{s}` is not epoch seconds (like 1700000000 or 1700000000.5)"))
        .and_then(check_time)
}

/// A time value inside a msgpack record: an EventTime ext, a number or a
/// string (read with time_format).
fn msgpack_time(v: &[u8], tp: &TimeParser) -> Result<EventTime, String> {
    match msgpack::read_head(v, 0).map_err(|e| e.to_string())? {
        (Head::Ext(..), _) => EventTime::read(v, 0)
            .map(|(t, _, _)| t)
            .map_err(|e| e.to_string()),
        (Head::Str(_) | Head::Bin(_), _) => {
            let (b, _) = msgpack::read_bytes_like(v, 0).map_err(|e| e.to_string())?;
            let s = std::str::from_utf8(b).map_err(|_| "the time is not UTF-8".to_string())?;
            tp.parse(s)
        }
        (Head::Uint(u), _) => tp.parse(&u.to_string()),
        (Head::Int(i), _) => tp.parse(&i.to_string()),
        (Head::F64(f), _) => tp.parse(&f.to_string()),
        (Head::F32(f), _) => tp.parse(&f.to_string()),
        _ => Err("not a time (a string, a number or an EventTime)".into()),
    }
}

/// Copies the msgpack map `rec` into `out` without `time_key` (unless
/// `keep`) and with `add` set (replacing a field of that name). Returns
/// where the time_key's value is in `rec`.
fn rewrite_map(
    rec: &[u8],
    time_key: Option<&[u8]>,
    keep: bool,
    add: Option<(&str, &str)>,
    out: &mut Vec<u8>,
) -> Result<Option<std::ops::Range<usize>>, msgpack::DecodeError> {
    let (head, mut p) = msgpack::read_head(rec, 0)?;
    let Head::Map(len) = head else {
        return Err(msgpack::DecodeError::invalid(0, "record is not a map"));
    };
    let mut body = Vec::with_capacity(rec.len() + 32);
    let mut n = 0u32;
    let mut found = None;
    for _ in 0..len {
        let k_end = msgpack::skip(rec, p)?;
        let v_end = msgpack::skip(rec, k_end)?;
        let key = msgpack::read_bytes_like(rec, p).ok().map(|(k, _)| k);
        if key.is_some() && key == time_key {
            found = Some(k_end..v_end);
            if !keep {
                p = v_end;
                continue;
            }
        }
        if key.is_some() && key == add.map(|(k, _)| k.as_bytes()) {
            p = v_end;
            continue;
        }
        body.extend_from_slice(&rec[p..v_end]);
        n += 1;
        p = v_end;
    }
    if let Some((k, v)) = add {
        msgpack::write_str(&mut body, k.as_bytes());
        msgpack::write_str(&mut body, v.as_bytes());
        n += 1;
    }
    msgpack::write_map_len(out, n);
    out.extend_from_slice(&body);
    Ok(found)
}

/// Calls `f` with each JSON object of `text` (and the byte it starts at):
/// the text is an object, an array of objects, or several of those one after
/// another (NDJSON). `f` gets exactly the object's text and parses it
/// strictly; this only finds the boundaries (strings and nesting aware) and
/// checks what lies between objects.
pub fn json_objects(
    text: &str,
    mut f: impl FnMut(usize, &str) -> Result<(), BodyError>,
) -> Result<(), BodyError> {
    let b = text.as_bytes();
    let mut pos = skip_ws(b, 0);
    if pos >= b.len() {
        return Err(bad(
            "empty body: send a JSON object, an array of objects or NDJSON",
        ));
    }
    while pos < b.len() {
        match b[pos] {
            b'{' => {
                let end = object_end(b, pos)?;
                f(pos, &text[pos..end])?;
                pos = end;
            }
            b'[' => {
                pos = skip_ws(b, pos + 1);
                if b.get(pos) == Some(&b']') {
                    pos += 1;
                } else {
                    loop {
                        match b.get(pos) {
                            Some(b'{') => {}
                            Some(_) => {
                                return Err(bad(format!(
                                    "byte {pos}: array elements must be JSON objects"
                                )))
                            }
                            None => return Err(bad("the array is not closed")),
                        }
                        let end = object_end(b, pos)?;
                        f(pos, &text[pos..end])?;
                        pos = skip_ws(b, end);
                        match b.get(pos) {
                            Some(b',') => pos = skip_ws(b, pos + 1),
                            Some(b']') => {
                                pos += 1;
                                break;
                            }
                            Some(_) => {
                                return Err(bad(format!(
                                    "byte {pos}: expected `,` or `]` after an array element"
                                )))
                            }
                            None => return Err(bad("the array is not closed")),
                        }
                    }
                }
            }
            _ => {
                return Err(bad(format!(
                    "byte {pos}: expected a JSON object or an array of objects"
                )))
            }
        }
        pos = skip_ws(b, pos);
    }
    Ok(())
}

fn skip_ws(b: &[u8], mut pos: usize) -> usize {
    while pos < b.len() && matches!(b[pos], b' ' | b'\t' | b'\n' | b'\r') {
        pos += 1;
    }
    pos
}

/// The offset just after the object or array that starts at `start`;
/// nesting deeper than [`JSON_MAX_DEPTH`] is refused here, before any parser
/// sees it.
fn object_end(b: &[u8], start: usize) -> Result<usize, BodyError> {
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                loop {
                    match b.get(i) {
                        Some(b'"') => break,
                        Some(b'\\') => i += 2,
                        Some(_) => i += 1,
                        None => {
                            return Err(bad(format!(
                                "byte {start}: the object is not closed (unterminated string)"
                            )))
                        }
                    }
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > JSON_MAX_DEPTH {
                    return Err(bad(format!(
                        "byte {i}: nesting deeper than {JSON_MAX_DEPTH} levels"
                    )));
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(bad(format!("byte {start}: the object is not closed")))
}

/// Decodes `application/x-www-form-urlencoded` text: `%XX` and `+`.
pub fn percent_decode(s: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (
                    s.get(i + 1).and_then(|&c| hex(c)),
                    s.get(i + 2).and_then(|&c| hex(c)),
                ) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => return Err(format!("bad percent escape at byte {i}")),
                }
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Ok(out)
}

/// Inflates a gzip body (several members allowed), refusing to produce more
/// than `limit` bytes: a small bomb cannot take memory.
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    gunzip_with(body, limit, &mut |_| true)
}

/// [`gunzip`], asking `take` for every piece of memory it grows by (the
/// input's body_buffer_limit); a `false` refuses with `OverBudget`.
pub fn gunzip_with(
    body: &[u8],
    limit: usize,
    take: &mut dyn FnMut(usize) -> bool,
) -> Result<Vec<u8>, BodyError> {
    fuwa_codec::gunzip_with(body, limit, take).map_err(|e| match e {
        fuwa_codec::InflateError::TooLarge(n) => BodyError::TooLarge(n),
        fuwa_codec::InflateError::OverBudget => BodyError::OverBudget,
        fuwa_codec::InflateError::Corrupt(m) => bad(format!("the gzip body does not inflate: {m}")),
    })
}

#[cfg(test)]
mod tests;
