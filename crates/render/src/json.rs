//! msgpack record → one line of JSON, written straight from the bytes.
//!
//! Mapping: str → string (invalid UTF-8 replaced by U+FFFD); bin → string
//! when it is UTF-8, else base64; ext → base64 of its payload; floats that
//! are NaN or infinite → null; non-string map keys → their JSON text.

use base64::Engine;
use fuwa_api::msgpack::{read_head, DecodeError, Head};
use fuwa_api::EventTime;

use crate::time::{to_datetime, write_rfc3339, TimeFormat};

/// A value injected into each record (tag, time, ...).
pub enum InjectValue<'a> {
    Str(&'a str),
    Time(EventTime, &'a TimeFormat),
}

pub struct Inject<'a> {
    pub key: &'a str,
    pub value: InjectValue<'a>,
}

/// Appends `record` (a msgpack map) as one JSON object and a newline. Keys
/// being injected replace a record field of the same name.
pub fn write_json_line(
    out: &mut Vec<u8>,
    record: &[u8],
    injects: &[Inject<'_>],
) -> Result<(), DecodeError> {
    write_json_line_at(out, record, 0, injects).map(|_| ())
}

/// Like [`write_json_line`] for the record starting at `at` inside `buf`;
/// returns the offset just after the record, so a caller walks its entries
/// once.
pub fn write_json_line_at(
    out: &mut Vec<u8>,
    buf: &[u8],
    at: usize,
    injects: &[Inject<'_>],
) -> Result<usize, DecodeError> {
    let start = out.len();
    match write_object(out, buf, at, injects) {
        Ok(end) => {
            out.push(b'\n');
            Ok(end)
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

fn write_object(
    out: &mut Vec<u8>,
    record: &[u8],
    at: usize,
    injects: &[Inject<'_>],
) -> Result<usize, DecodeError> {
    let (head, mut pos) = read_head(record, at)?;
    let n = match head {
        Head::Map(n) => n,
        _ => return Err(DecodeError::invalid(at, "record is not a map")),
    };
    out.push(b'{');
    let mut first = true;
    for _ in 0..n {
        let key_start = out.len();
        if !first {
            out.push(b',');
        }
        let kpos = pos;
        pos = write_key(out, record, pos)?;
        if !injects.is_empty() {
            if let Ok((Head::Str(l), p)) = read_head(record, kpos) {
                let k = record.get(p..p + l).unwrap_or_default();
                if injects.iter().any(|i| i.key.as_bytes() == k) {
                    out.truncate(key_start);
                    pos = fuwa_api::msgpack::skip(record, pos)?;
                    continue;
                }
            }
        }
        out.push(b':');
        pos = write_value(out, record, pos, 0)?;
        first = false;
    }
    for i in injects {
        if !first {
            out.push(b',');
        }
        first = false;
        write_json_str(out, i.key.as_bytes());
        out.push(b':');
        match &i.value {
            InjectValue::Str(s) => write_json_str(out, s.as_bytes()),
            InjectValue::Time(t, f) => write_time(out, *t, f),
        }
    }
    out.push(b'}');
    Ok(pos)
}

pub fn write_time(out: &mut Vec<u8>, t: EventTime, f: &TimeFormat) {
    match f {
        TimeFormat::Rfc3339 => {
            out.push(b'"');
            write_rfc3339(out, t);
            out.push(b'"');
        }
        TimeFormat::Unix => out.extend_from_slice(itoa::Buffer::new().format(t.secs).as_bytes()),
        TimeFormat::UnixMs => out.extend_from_slice(
            itoa::Buffer::new()
                .format(t.secs * 1000 + (t.nanos / 1_000_000) as i64)
                .as_bytes(),
        ),
        TimeFormat::UnixFloat => {
            use std::io::Write;
            // secs is the floor and nanos count up from it: -0.5 s is
            // (-1, 500000000), written -0.500000000
            let _ = if t.secs < 0 && t.nanos > 0 {
                write!(out, "-{}.{:09}", -(t.secs + 1), 1_000_000_000 - t.nanos)
            } else {
                write!(out, "{}.{:09}", t.secs, t.nanos)
            };
        }
        TimeFormat::Strftime(items, tz) => {
            let s = to_datetime(t, tz)
                .format_with_items(items.iter())
                .to_string();
            write_json_str(out, s.as_bytes());
        }
    }
}

fn write_key(out: &mut Vec<u8>, buf: &[u8], pos: usize) -> Result<usize, DecodeError> {
    match read_head(buf, pos)? {
        (Head::Str(n), p) | (Head::Bin(n), p) => {
            let s = buf.get(p..p + n).ok_or(DecodeError::Incomplete)?;
            write_json_str(out, s);
            Ok(p + n)
        }
        _ => {
            let mut tmp = Vec::new();
            let end = write_value(&mut tmp, buf, pos, 0)?;
            write_json_str(out, &tmp);
            Ok(end)
        }
    }
}

/// Appends the msgpack value at `pos` of `buf` as JSON text (the mapping of
/// the module doc); returns the offset just after it.
pub fn write_json_value(out: &mut Vec<u8>, buf: &[u8], pos: usize) -> Result<usize, DecodeError> {
    write_value(out, buf, pos, 0)
}

fn write_value(
    out: &mut Vec<u8>,
    buf: &[u8],
    pos: usize,
    depth: usize,
) -> Result<usize, DecodeError> {
    if depth > fuwa_api::msgpack::MAX_DEPTH {
        return Err(DecodeError::invalid(pos, "nesting too deep"));
    }
    let (head, p) = read_head(buf, pos)?;
    Ok(match head {
        Head::Nil => {
            out.extend_from_slice(b"null");
            p
        }
        Head::Bool(b) => {
            out.extend_from_slice(if b { b"true" } else { b"false" });
            p
        }
        Head::Uint(v) => {
            out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
            p
        }
        Head::Int(v) => {
            out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
            p
        }
        Head::F32(f) => {
            write_float(out, f as f64);
            p
        }
        Head::F64(f) => {
            write_float(out, f);
            p
        }
        Head::Str(n) => {
            let s = buf.get(p..p + n).ok_or(DecodeError::Incomplete)?;
            write_json_str(out, s);
            p + n
        }
        Head::Bin(n) => {
            let s = buf.get(p..p + n).ok_or(DecodeError::Incomplete)?;
            if std::str::from_utf8(s).is_ok() {
                write_json_str(out, s);
            } else {
                out.push(b'"');
                out.extend_from_slice(
                    base64::engine::general_purpose::STANDARD
                        .encode(s)
                        .as_bytes(),
                );
                out.push(b'"');
            }
            p + n
        }
        Head::Ext(t, n) => {
            let s = buf.get(p..p + n).ok_or(DecodeError::Incomplete)?;
            if t == 0 && n == 8 {
                // an EventTime inside a record: write it as RFC 3339
                let secs = u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as i64;
                let nanos = u32::from_be_bytes([s[4], s[5], s[6], s[7]]).min(999_999_999);
                out.push(b'"');
                write_rfc3339(out, EventTime::new(secs, nanos));
                out.push(b'"');
            } else {
                out.push(b'"');
                out.extend_from_slice(
                    base64::engine::general_purpose::STANDARD
                        .encode(s)
                        .as_bytes(),
                );
                out.push(b'"');
            }
            p + n
        }
        Head::Array(n) => {
            out.push(b'[');
            let mut q = p;
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                q = write_value(out, buf, q, depth + 1)?;
            }
            out.push(b']');
            q
        }
        Head::Map(n) => {
            out.push(b'{');
            let mut q = p;
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                q = write_key(out, buf, q)?;
                out.push(b':');
                q = write_value(out, buf, q, depth + 1)?;
            }
            out.push(b'}');
            q
        }
    })
}

fn write_float(out: &mut Vec<u8>, f: f64) {
    if f.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes a JSON string literal; invalid UTF-8 becomes U+FFFD.
pub fn write_json_str(out: &mut Vec<u8>, s: &[u8]) {
    // fast path: plain ASCII with nothing to escape (the usual log field)
    if s.iter()
        .all(|&b| (0x20..0x80).contains(&b) && b != b'"' && b != b'\\')
    {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
        return;
    }
    match std::str::from_utf8(s) {
        Ok(v) => escape(out, v.as_bytes()),
        Err(_) => escape(out, String::from_utf8_lossy(s).as_bytes()),
    }
}

fn escape(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&s[start..i]);
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 0xf) as usize],
                ]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

/// JSON text of a value tree, as the outputs would write it (strings
/// quoted, EventTimes as RFC 3339): how the filters read a map, an array or
/// a number as text. None only when the value cannot be encoded.
pub fn value_json(v: &rmpv::Value) -> Option<String> {
    // a one-entry map {"": v}, rendered by the outputs' encoder, minus `{"":` and `}\n`
    let mut mp = vec![0x81, 0xa0];
    rmpv::encode::write_value(&mut mp, v).ok()?;
    let mut out = Vec::new();
    write_json_line(&mut out, &mp, &[]).ok()?;
    let body = out.get(4..out.len().checked_sub(2)?)?;
    String::from_utf8(body.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rmpv::Value;

    #[test]
    fn value_json_is_what_the_outputs_write() {
        let m = Value::Map(vec![(
            Value::from("a"),
            Value::from(vec![Value::from(1), Value::Nil]),
        )]);
        assert_eq!(value_json(&m).as_deref(), Some(r#"{"a":[1,null]}"#));
        assert_eq!(
            value_json(&Value::from("x\"y")).as_deref(),
            Some(r#""x\"y""#)
        );
        assert_eq!(value_json(&Value::F64(1.5)).as_deref(), Some("1.5"));
    }

    #[test]
    fn a_segment_rendered_in_pieces_is_the_segment_rendered_whole() {
        let lines = JsonLines {
            tag_key: Some("tag".into()),
            time_key: Some("time".into()),
            time_format: TimeFormat::Unix,
        };
        let entries: Vec<Vec<u8>> = (0..500u64)
            .map(|i| {
                let rec = Value::Map(vec![
                    (Value::from("i"), Value::from(i)),
                    (Value::from("pad"), Value::from("z".repeat(i as usize % 97))),
                ]);
                enc(&Value::Array(vec![Value::from(1_700_000_000u32), rec]))
            })
            .collect();
        let seg = entries.concat();
        let mut whole = Vec::new();
        assert_eq!(lines.write_segment("t", &seg, &mut whole), 0);
        // pieces of ~1 KiB: each call stops once the buffer holds the limit
        let (mut out, mut piece, mut pos, mut calls) = (Vec::new(), Vec::new(), 0, 0);
        while pos < seg.len() {
            pos = lines
                .write_segment_from("t", &seg, pos, &mut piece, 1024)
                .expect("good entries");
            assert!(piece.len() < 1024 + 200, "{}", piece.len());
            out.append(&mut piece);
            calls += 1;
        }
        assert_eq!(out, whole);
        assert!(calls > 10, "{calls}");
        // a bad entry in the middle: what came before it is rendered, then None
        let mut bad = entries[..250].concat();
        bad.push(0xc1);
        bad.extend(entries[250..].concat());
        let mut o = Vec::new();
        assert!(lines
            .write_segment_from("t", &bad, 0, &mut o, usize::MAX)
            .is_none());
        let mut first = Vec::new();
        lines.write_segment("t", &entries[..250].concat(), &mut first);
        assert_eq!(o, first);
    }

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    }

    #[test]
    fn renders_a_record_with_injected_keys() {
        let rec = Value::Map(vec![
            (Value::from("msg"), Value::from("hi \"there\"\n")),
            (Value::from("n"), Value::from(-3)),
            (Value::from("f"), Value::from(1.5)),
            (Value::from("tag"), Value::from("overwritten")),
            (
                Value::from("nested"),
                Value::Map(vec![(
                    Value::from(1),
                    Value::Array(vec![Value::Nil, Value::from(true)]),
                )]),
            ),
            (Value::from("bin"), Value::Binary(vec![0xff, 0x00])),
        ]);
        let fmt = TimeFormat::Rfc3339;
        let mut out = Vec::new();
        write_json_line(
            &mut out,
            &enc(&rec),
            &[
                Inject {
                    key: "tag",
                    value: InjectValue::Str("app.web"),
                },
                Inject {
                    key: "time",
                    value: InjectValue::Time(EventTime::new(0, 1), &fmt),
                },
            ],
        )
        .unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["msg"], "hi \"there\"\n");
        assert_eq!(v["n"], -3);
        assert_eq!(v["f"], 1.5);
        assert_eq!(v["tag"], "app.web");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000000001Z");
        assert_eq!(v["nested"]["1"][1], true);
        assert_eq!(v["bin"], "/wA=");
        assert_eq!(s.matches("\"tag\"").count(), 1);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        // {"k": <str with bytes ff fe>}
        let rec = [0x81, 0xa1, b'k', 0xa2, 0xff, 0xfe];
        let mut out = Vec::new();
        write_json_line(&mut out, &rec, &[]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["k"], "\u{fffd}\u{fffd}");
    }

    fn arb() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::from),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Binary),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((inner.clone(), inner), 0..6).prop_map(Value::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn always_valid_json(pairs in proptest::collection::vec((any::<String>(), arb()), 0..8)) {
            let rec = Value::Map(pairs.into_iter().map(|(k, v)| (Value::from(k), v)).collect());
            let mut out = Vec::new();
            write_json_line(&mut out, &enc(&rec), &[]).unwrap();
            let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&out);
            prop_assert!(parsed.is_ok(), "{}", String::from_utf8_lossy(&out));
        }
    }
}

/// JSON Lines with optional injected tag and time keys: the one format the
/// file and stdout outputs (and later S3 and Firehose) share.
#[derive(Debug, Clone)]
pub struct JsonLines {
    pub tag_key: Option<String>,
    pub time_key: Option<String>,
    pub time_format: TimeFormat,
}

impl JsonLines {
    /// Renders every entry of a chunk; returns how many entries could not be
    /// rendered (they are counted, not written).
    pub fn write_chunk(&self, chunk: &fuwa_api::Chunk, out: &mut Vec<u8>) -> usize {
        let mut bad = 0;
        for seg in &chunk.segments {
            bad += self.write_segment(&chunk.tag, seg, out);
        }
        bad
    }

    /// Renders one segment of `[time, record]` entries, walking it once.
    /// Returns 1 when the segment has a malformed entry (the rest of that
    /// segment is skipped), else 0.
    pub fn write_segment(&self, tag: &str, seg: &[u8], out: &mut Vec<u8>) -> usize {
        match self.write_segment_from(tag, seg, 0, out, usize::MAX) {
            Some(_) => 0,
            None => 1,
        }
    }

    /// Renders the entries of `seg` from offset `pos` until `out` holds at
    /// least `limit` bytes or the segment ends, and returns where it
    /// stopped (`seg.len()` at the end), so a big segment can be written in
    /// pieces without a buffer for all of it. `None` when an entry cannot be
    /// read: the rest of the segment is lost (one bad count).
    pub fn write_segment_from(
        &self,
        tag: &str,
        seg: &[u8],
        mut pos: usize,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Option<usize> {
        while pos < seg.len() && out.len() < limit {
            let rp_time = match read_head(seg, pos) {
                Ok((Head::Array(2), p)) => EventTime::read(seg, p),
                _ => return None,
            };
            let Ok((t, rp, _)) = rp_time else {
                return None;
            };
            let mut injects: [Inject<'_>; 2] = [
                Inject {
                    key: "",
                    value: InjectValue::Str(""),
                },
                Inject {
                    key: "",
                    value: InjectValue::Str(""),
                },
            ];
            let mut n = 0;
            if let Some(k) = &self.tag_key {
                injects[n] = Inject {
                    key: k,
                    value: InjectValue::Str(tag),
                };
                n += 1;
            }
            if let Some(k) = &self.time_key {
                injects[n] = Inject {
                    key: k,
                    value: InjectValue::Time(t, &self.time_format),
                };
                n += 1;
            }
            match write_json_line_at(out, seg, rp, &injects[..n]) {
                Ok(end) => pos = end,
                Err(_) => return None,
            }
        }
        Some(pos)
    }
}
