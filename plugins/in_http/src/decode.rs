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
                format: "json".into(),
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc() -> Tz {
        fuwa_render::parse_timezone("UTC").unwrap()
    }

    fn plain() -> Decoder {
        Decoder::new(None, None, false, utc()).unwrap()
    }

    fn info() -> RequestInfo<'static> {
        RequestInfo {
            time: EventTime::new(1_700_000_000, 5),
            remote_addr: None,
        }
    }

    /// Decodes and returns (time, record as JSON) of every entry.
    fn run(
        d: &Decoder,
        f: Format,
        body: &[u8],
        info: &RequestInfo<'_>,
    ) -> Result<Vec<(EventTime, serde_json::Value)>, BodyError> {
        let mut out = Vec::new();
        let n = d.decode(f, body, info, &mut out)?;
        let got: Vec<_> = fuwa_api::event::entries(&out)
            .map(|e| {
                let e = e.expect("entries are valid");
                let v = rmpv::decode::read_value(&mut &e.record[..]).unwrap();
                (e.time, to_json(&v))
            })
            .collect();
        assert_eq!(got.len(), n as usize);
        Ok(got)
    }

    fn to_json(v: &rmpv::Value) -> serde_json::Value {
        use rmpv::Value as V;
        use serde_json::Value as J;
        match v {
            V::Nil => J::Null,
            V::Boolean(b) => J::Bool(*b),
            V::Integer(i) => match (i.as_u64(), i.as_i64()) {
                (Some(u), _) => J::from(u),
                (None, Some(i)) => J::from(i),
                _ => J::Null,
            },
            V::F64(f) => J::from(*f),
            V::F32(f) => J::from(*f as f64),
            V::String(s) => J::String(s.as_str().unwrap_or_default().to_string()),
            V::Array(a) => J::Array(a.iter().map(to_json).collect()),
            V::Map(m) => J::Object(
                m.iter()
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), to_json(v)))
                    .collect(),
            ),
            other => J::String(format!("{other:?}")),
        }
    }

    #[test]
    fn json_shapes() {
        let d = plain();
        let one = run(&d, Format::Json, br#"{"a":1}"#, &info()).unwrap();
        assert_eq!(one, vec![(info().time, serde_json::json!({"a":1}))]);
        let arr = run(&d, Format::Json, br#"[{"a":"]}"},{"b":"\"{"}]"#, &info()).unwrap();
        assert_eq!(arr[1].1, serde_json::json!({"b":"\"{"}));
        let nd = run(
            &d,
            Format::Json,
            b"{\"a\":1}\n\n{\"a\":2}\r\n[{\"a\":3}]",
            &info(),
        )
        .unwrap();
        assert_eq!(nd.len(), 3);
        assert!(run(&d, Format::Json, b"[]", &info()).unwrap().is_empty());
        for bad in [
            &b""[..],
            b"  ",
            b"[",
            b"[{}",
            b"[{},]",
            b"[1]",
            b"{}x",
            b"{\"a\":}",
            b"{\"a\":\"",
            b"[{}{}]",
            b"nul",
        ] {
            assert!(
                matches!(
                    d.decode(Format::Json, bad, &info(), &mut Vec::new()),
                    Err(BodyError::Malformed(_))
                ),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn time_key_json_and_msgpack() {
        let d = Decoder::new(Some("ts".into()), None, false, utc()).unwrap();
        let got = run(
            &d,
            Format::Json,
            br#"[{"ts":1700000001.25,"a":1},{"a":2}]"#,
            &info(),
        )
        .unwrap();
        assert_eq!(got[0].0, EventTime::new(1_700_000_001, 250_000_000));
        assert_eq!(got[0].1, serde_json::json!({"a":1}));
        assert_eq!(got[1].0, info().time, "no time_key: the request's time");
        let mut b = Vec::new();
        msgpack::write_map_len(&mut b, 2);
        msgpack::write_str(&mut b, b"ts");
        b.extend_from_slice(&EventTime::new(1_600_000_000, 7).to_msgpack());
        msgpack::write_str(&mut b, b"a");
        b.push(0x01);
        let got = run(&d, Format::Msgpack, &b, &info()).unwrap();
        assert_eq!(
            got,
            vec![(EventTime::new(1_600_000_000, 7), serde_json::json!({"a":1}))]
        );
        let mut b = Vec::new();
        msgpack::write_map_len(&mut b, 1);
        msgpack::write_str(&mut b, b"ts");
        msgpack::write_str(&mut b, b"2020-01-01T00:00:00Z");
        assert_eq!(
            run(&d, Format::Msgpack, &b, &info()).unwrap()[0].0.secs,
            1_577_836_800
        );
        let keep = Decoder::new(Some("ts".into()), Some("unix_ms".into()), true, utc()).unwrap();
        let got = run(&keep, Format::Json, br#"{"ts":1700000000123}"#, &info()).unwrap();
        assert_eq!(got[0].0, EventTime::new(1_700_000_000, 123_000_000));
        assert_eq!(got[0].1, serde_json::json!({"ts":1700000000123u64}));
        assert!(d
            .decode(Format::Json, br#"{"ts":"soon"}"#, &info(), &mut Vec::new())
            .is_err());
    }

    #[test]
    fn remote_addr_replaces_and_adds() {
        let d = plain();
        let i = RequestInfo {
            remote_addr: Some(("ip", "10.0.0.1")),
            ..info()
        };
        let got = run(&d, Format::Json, br#"[{"ip":"spoofed","a":1},{"b":2}]"#, &i).unwrap();
        assert_eq!(got[0].1, serde_json::json!({"a":1,"ip":"10.0.0.1"}));
        assert_eq!(got[1].1, serde_json::json!({"b":2,"ip":"10.0.0.1"}));
    }

    #[test]
    fn form_and_percent_decoding() {
        let d = plain();
        let got = run(
            &d,
            Format::Form,
            b"time=1500000000&json=%7B%22a%22%3A+%22x+y%22%7D",
            &info(),
        )
        .unwrap();
        assert_eq!(
            got,
            vec![(
                EventTime::new(1_500_000_000, 0),
                serde_json::json!({"a":"x y"})
            )]
        );
        assert!(percent_decode(b"%4").is_err());
        assert_eq!(percent_decode(b"a%2Bb+c").unwrap(), b"a+b c");
        assert!(d
            .decode(Format::Form, b"json=1&msgpack=2", &info(), &mut Vec::new())
            .is_err());
    }

    #[test]
    fn content_types() {
        use Format::*;
        for (ct, f) in [
            (Some(&b"application/json; charset=utf-8"[..]), Some(Json)),
            (Some(b"Text/Plain;charset=UTF-8"), Some(Json)),
            (Some(b"application/x-ndjson"), Some(Json)),
            (Some(b"application/vnd.api+json"), Some(Json)),
            (None, Some(Json)),
            (Some(b"application/msgpack"), Some(Msgpack)),
            (Some(b"application/x-www-form-urlencoded"), Some(Form)),
            (Some(b"text/xml"), None),
            (Some(b"multipart/form-data; boundary=x"), None),
        ] {
            assert_eq!(Format::from_content_type(ct), f, "{ct:?}");
        }
    }

    #[test]
    fn gzip_limit() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&[b' '; 10_000]).unwrap();
        let gz = e.finish().unwrap();
        assert_eq!(gunzip(&gz, 10_000).unwrap().len(), 10_000);
        assert_eq!(gunzip(&gz, 9_999), Err(BodyError::TooLarge(9_999)));
        assert!(matches!(gunzip(b"nope", 100), Err(BodyError::Malformed(_))));
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value as J;
        let leaf = prop_oneof![
            Just(J::Null),
            any::<bool>().prop_map(J::Bool),
            any::<i64>().prop_map(J::from),
            any::<u64>().prop_map(J::from),
            // few digits: serde_json (without float_roundtrip) reads these exactly
            (-1_000_000_000i64..1_000_000_000).prop_map(|i| J::from(i as f64 / 1000.0)),
            "\\PC{0,12}".prop_map(J::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(J::Array),
                prop::collection::btree_map("\\PC{0,8}", inner, 0..6)
                    .prop_map(|m| J::Object(m.into_iter().collect())),
            ]
        })
    }

    fn json_object() -> impl Strategy<Value = serde_json::Value> {
        prop::collection::btree_map("\\PC{0,8}", json_value(), 0..8)
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// arbitrary bytes never panic, and what is accepted is valid entries
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256), kind in 0..3u8) {
            let d = Decoder::new(Some("t".into()), None, false, utc()).unwrap();
            let f = [Format::Json, Format::Msgpack, Format::Form][kind as usize];
            let mut out = Vec::new();
            if let Ok(n) = d.decode(f, &body, &info(), &mut out) {
                let all: Vec<_> = fuwa_api::event::entries(&out).collect();
                prop_assert_eq!(all.len(), n as usize);
                prop_assert!(all.iter().all(|e| e.is_ok()));
            } else {
                prop_assert!(out.is_empty(), "nothing kept on error");
            }
            let _ = gunzip(&body, 1024);
        }

        /// JSON-ish bytes (braces, quotes, escapes) never panic either
        #[test]
        fn jsonish_bytes_never_panic(body in "[\\[\\]{}\",:\\\\ a1\\n]{0,64}") {
            let _ = plain().decode(Format::Json, body.as_bytes(), &info(), &mut Vec::new());
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// valid objects round-trip, alone, in an array and as NDJSON
        #[test]
        fn json_objects_round_trip(objs in prop::collection::vec(json_object(), 1..5)) {
            let d = plain();
            let single = run(&d, Format::Json, serde_json::to_string(&objs[0]).unwrap().as_bytes(), &info()).unwrap();
            prop_assert_eq!(&single[0].1, &objs[0]);
            let arr = serde_json::to_string_pretty(&objs).unwrap();
            let got: Vec<_> = run(&d, Format::Json, arr.as_bytes(), &info()).unwrap().into_iter().map(|(_, v)| v).collect();
            prop_assert_eq!(&got, &objs);
            let nd: String = objs.iter().map(|o| serde_json::to_string(o).unwrap() + "\n").collect();
            let got: Vec<_> = run(&d, Format::Json, nd.as_bytes(), &info()).unwrap().into_iter().map(|(_, v)| v).collect();
            prop_assert_eq!(&got, &objs);
            // the same records as msgpack keep their bytes
            let mut mp = Vec::new();
            for o in &objs {
                crate::decode::tests::json_to_mp(&mut mp, o);
            }
            let got: Vec<_> = run(&d, Format::Msgpack, &mp, &info()).unwrap().into_iter().map(|(_, v)| v).collect();
            prop_assert_eq!(&got, &objs);
        }
    }

    /// One level of JSON nesting: an array, or an object with one key.
    fn json_nest(depth: usize, kinds: &[bool], inner: &str) -> String {
        let mut open = String::new();
        let mut close = String::new();
        for i in 0..depth {
            if kinds[i % kinds.len()] {
                open.push('[');
                close.insert(0, ']');
            } else {
                open.push_str("{\"k\":");
                close.insert(0, '}');
            }
        }
        format!("{{\"a\":{open}{inner}{close}}}")
    }

    /// msgpack heads that declare far more than follows
    fn huge_head() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(vec![0xdd, 0xff, 0xff, 0xff, 0xff]),       // array32
            Just(vec![0xdf, 0xff, 0xff, 0xff, 0xff]),       // map32
            Just(vec![0xdb, 0xff, 0xff, 0xff, 0xff]),       // str32
            Just(vec![0xc6, 0xff, 0xff, 0xff, 0xff]),       // bin32
            Just(vec![0xc9, 0xff, 0xff, 0xff, 0xff, 0x00]), // ext32
            Just(vec![0xdc, 0xff, 0xff]),                   // array16
            Just(vec![0xde, 0xff, 0xff]),                   // map16
        ]
    }

    fn gz(b: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// JSON nested to any depth: up to the bound it is taken whole, past
        /// it a clear 400; in the body, in an array, as NDJSON, in a form and
        /// under time_key; cut anywhere it is refused, never a panic
        #[test]
        fn json_depth_is_bounded(
            depth in prop_oneof![0usize..140, 120usize..136, 1000usize..50_000],
            kinds in prop::collection::vec(any::<bool>(), 1..4),
            long in prop_oneof![Just(0usize), 1usize..100, 60_000usize..70_000],
            cut in any::<prop::sample::Index>(),
        ) {
            let d = Decoder::new(Some("t".into()), None, false, utc()).unwrap();
            let leaf = format!("\"{}\"", "x".repeat(long));
            let body = json_nest(depth, &kinds, &leaf);
            // the record itself counts one level
            let ok = depth < JSON_MAX_DEPTH;
            for b in [
                body.clone(),
                format!("[{body}]"),
                format!("{{}}\n{body}\n"),
            ] {
                let r = d.decode(Format::Json, b.as_bytes(), &info(), &mut Vec::new());
                if ok {
                    prop_assert!(r.is_ok(), "depth {}: {:?}", depth, r);
                } else {
                    let msg = format!("{r:?}");
                    prop_assert!(msg.contains("deeper than"), "depth {}: {}", depth, &msg[..msg.len().min(200)]);
                }
            }
            let form = format!("json={}", percent_encode(body.as_bytes()));
            prop_assert_eq!(
                d.decode(Format::Form, form.as_bytes(), &info(), &mut Vec::new()).is_ok(),
                ok
            );
            let under_time = json_nest(depth, &kinds, "1").replacen("\"a\"", "\"t\"", 1);
            let r = d.decode(Format::Json, under_time.as_bytes(), &info(), &mut Vec::new());
            prop_assert_eq!(r.is_ok(), depth == 0, "a nested time is no time");
            // any cut of the body is refused
            let at = cut.index(body.len());
            let r = d.decode(Format::Json, &body.as_bytes()[..at], &info(), &mut Vec::new());
            prop_assert!(matches!(r, Err(BodyError::Malformed(_))));
        }

        /// msgpack nested to any depth, with huge declared lengths and cuts:
        /// refused with a reason, never a panic, never a huge allocation
        #[test]
        fn msgpack_depth_and_lengths_are_bounded(
            depth in prop_oneof![0usize..140, 1000usize..100_000],
            map_levels in any::<bool>(),
            tail in prop_oneof![Just(vec![0xc0u8]), huge_head()],
            cut in any::<prop::sample::Index>(),
            as_array in any::<bool>(),
        ) {
            let d = Decoder::new(Some("t".into()), None, false, utc()).unwrap();
            let mut b = vec![0x81, 0xa1, b'a'];
            for _ in 0..depth {
                if map_levels {
                    b.extend_from_slice(&[0x81, 0xa1, b'k']);
                } else {
                    b.push(0x91);
                }
            }
            b.extend_from_slice(&tail);
            if as_array {
                b.insert(0, 0x91);
            }
            let complete = tail == [0xc0];
            let r = d.decode(Format::Msgpack, &b, &info(), &mut Vec::new());
            if complete && depth < MAX_DEPTH {
                prop_assert!(r.is_ok(), "depth {}: {:?}", depth, r);
            } else {
                prop_assert!(matches!(r, Err(BodyError::Malformed(_))), "{:?}", r);
            }
            if depth + 1 > MAX_DEPTH {
                let msg = format!("{r:?}");
                prop_assert!(msg.contains("deeper than 128"), "{}", msg);
            }
            let at = cut.index(b.len());
            if at < b.len() {
                let r = d.decode(Format::Msgpack, &b[..at], &info(), &mut Vec::new());
                prop_assert!(r.is_err());
            }
        }

        /// gzip: truncated, corrupted, bombs and stacked members never
        /// inflate past the limit or the budget, nor panic
        #[test]
        fn gzip_is_bounded(
            len in prop_oneof![0usize..1000, 100_000usize..300_000],
            members in 1usize..4,
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            limit in prop_oneof![1usize..1000, 50_000usize..400_000],
            budget in prop_oneof![Just(usize::MAX), 0usize..200_000],
        ) {
            let one = gz(&vec![b'{'; len]);
            let all: Vec<u8> = std::iter::repeat_n(one, members).flatten().collect();
            let total = len * members;
            let mut left = budget;
            let mut take = |n: usize| {
                if n <= left { left -= n; true } else { false }
            };
            match gunzip_with(&all, limit, &mut take) {
                Ok(v) => {
                    prop_assert_eq!(v.len(), total);
                    prop_assert!(v.len() <= limit);
                }
                Err(BodyError::TooLarge(l)) => prop_assert!(total > limit && l == limit),
                Err(BodyError::OverBudget) => prop_assert!(budget < total.min(limit) + 64 * 1024),
                Err(e) => prop_assert!(false, "{:?}", e),
            }
            let at = cut.index(all.len());
            if let Ok(v) = gunzip(&all[..at], limit) {
                prop_assert!(v.len() <= limit);
            }
            let mut bad = all.clone();
            if !bad.is_empty() {
                let i = flip.index(bad.len());
                bad[i] ^= 0x5a;
            }
            if let Ok(v) = gunzip(&bad, limit) {
                prop_assert!(v.len() <= limit);
            }
        }

        /// form fields: long values, bad escapes, deep json= and msgpack=
        #[test]
        fn form_is_bounded(
            fields in prop::collection::vec(
                prop_oneof![
                    "[a-z]{0,6}=[%+a-zA-Z0-9]{0,40}".prop_map(|s| s.into_bytes()),
                    (1000usize..20_000).prop_map(|n| format!("json={}", "%5B".repeat(n)).into_bytes()),
                    (1000usize..20_000).prop_map(|n| {
                        let mut v = b"msgpack=".to_vec();
                        v.extend(std::iter::repeat_n(&b"%91"[..], n).flatten());
                        v
                    }),
                    prop::collection::vec(any::<u8>(), 0..64),
                ],
                0..5,
            ),
        ) {
            let body = fields.join(&b'&');
            let mut out = Vec::new();
            match plain().decode(Format::Form, &body, &info(), &mut out) {
                Ok(n) => prop_assert_eq!(fuwa_api::event::entries(&out).count(), n as usize),
                Err(_) => prop_assert!(out.is_empty()),
            }
        }
    }

    fn percent_encode(b: &[u8]) -> String {
        b.iter()
            .map(|&c| {
                if c.is_ascii_alphanumeric() {
                    (c as char).to_string()
                } else {
                    format!("%{c:02X}")
                }
            })
            .collect()
    }

    #[test]
    fn the_time_must_fit_an_event() {
        assert_eq!(parse_time_param("-1").unwrap().secs, -1);
        let t = parse_time_param("-0.5").unwrap();
        assert_eq!((t.secs, t.nanos), (-1, 500_000_000));
        assert_eq!(parse_time_param("4294967296").unwrap().secs, 4_294_967_296);
        assert!(parse_time_param("8000000000001").is_err());
        assert!(parse_time_param("-8000000000001").is_err());
        assert_eq!(parse_time_param("0").unwrap().secs, 0);
        let d = Decoder::new(Some("t".into()), None, false, utc()).unwrap();
        for body in [&br#"{"t":-1}"#[..], br#"{"t":"1969-12-31T23:59:59Z"}"#] {
            let r = d.decode(Format::Json, body, &info(), &mut Vec::new());
            assert!(r.is_ok(), "{r:?}");
        }
        let r = d.decode(Format::Json, br#"{"t":9e15}"#, &info(), &mut Vec::new());
        assert!(matches!(&r, Err(BodyError::Malformed(_))), "{r:?}");
        let mut mp = Vec::new();
        msgpack::write_map_len(&mut mp, 1);
        msgpack::write_str(&mut mp, b"t");
        msgpack::write_int(&mut mp, -9_000_000_000_000);
        assert!(d
            .decode(Format::Msgpack, &mp, &info(), &mut Vec::new())
            .is_err());
    }

    fn json_to_mp(out: &mut Vec<u8>, v: &serde_json::Value) {
        fuwa_parsers::json_value_to_msgpack(out, v);
    }
}
