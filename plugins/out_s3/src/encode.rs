//! Turning a chunk into object bytes: JSON Lines or msgpack records, with
//! the tag/time injected, compressed with gzip or zstd, or one typed Parquet
//! file (`fuwa-parquet`, compressed inside), handed out in pieces so that
//! memory stays bounded whatever the chunk size. Runs on a blocking thread.

use std::io::Write;

use fuwa_api::msgpack::{read_head, skip, write_f64, write_int, write_map_len, write_str, Head};
use fuwa_api::{Chunk, EventTime};
use fuwa_render::time::{to_datetime, write_rfc3339};
use fuwa_render::{JsonLines, TimeFormat};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Msgpack,
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    /// Parquet only (its default)
    Snappy,
    None,
}

pub struct Encoder {
    pub format: Format,
    pub compression: Compression,
    pub level: Option<i32>,
    pub lines: JsonLines,
    /// set when format = "parquet"
    pub parquet: Option<fuwa_parquet::ParquetEncoder>,
}

/// Rendered records are compressed in slices of this size.
pub(crate) const RAW_SLICE: usize = 256 << 10;

impl Encoder {
    pub fn content_type(&self) -> &'static str {
        match self.format {
            Format::Json => "application/x-ndjson",
            Format::Msgpack => "application/x-msgpack",
            Format::Parquet => fuwa_parquet::CONTENT_TYPE,
        }
    }

    /// Parquet compresses inside the file: no Content-Encoding then.
    pub fn content_encoding(&self) -> Option<&'static str> {
        if self.format == Format::Parquet {
            return None;
        }
        match self.compression {
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
            Compression::Snappy | Compression::None => None,
        }
    }

    /// Encodes the chunk and calls `emit` with pieces of at least `piece`
    /// bytes (the last one may be smaller; an empty object yields one empty
    /// or header-only piece). Stops early when `emit` returns false.
    /// Returns how many entries could not be rendered (they are skipped).
    pub fn encode(
        &self,
        chunk: &Chunk,
        piece: usize,
        mut emit: impl FnMut(Vec<u8>) -> bool,
    ) -> std::io::Result<usize> {
        if let Some(p) = &self.parquet {
            return p.encode(chunk, piece, emit).map(|s| s.bad as usize);
        }
        let mut sink = Sink::new(self.compression, self.level, piece)?;
        let mut raw = Vec::with_capacity(RAW_SLICE + RAW_SLICE / 2);
        let mut bad = 0;
        for part in chunk.segments.iter().flat_map(|s| slices(s, RAW_SLICE / 2)) {
            bad += match self.format {
                Format::Json | Format::Parquet => {
                    self.lines.write_segment(&chunk.tag, part, &mut raw)
                }
                Format::Msgpack => write_msgpack_segment(&self.lines, &chunk.tag, part, &mut raw),
            };
            if raw.len() >= RAW_SLICE {
                sink.write_all(&raw)?;
                raw.clear();
                if sink.len() >= piece && !emit(sink.take()) {
                    return Ok(bad);
                }
            }
        }
        sink.write_all(&raw)?;
        let rest = sink.finish()?;
        emit(rest);
        Ok(bad)
    }
}

/// Splits a segment into runs of whole entries of about `size` bytes, so a
/// big segment is rendered and compressed bit by bit. A malformed tail
/// comes out as one last run (the renderer reports it).
fn slices(seg: &[u8], size: usize) -> impl Iterator<Item = &[u8]> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= seg.len() {
            return None;
        }
        let start = pos;
        while pos < seg.len() && pos - start < size {
            match skip(seg, pos) {
                Ok(next) => pos = next,
                Err(_) => pos = seg.len(),
            }
        }
        Some(&seg[start..pos])
    })
}

enum Sink {
    Plain(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Sink {
    fn new(c: Compression, level: Option<i32>, piece: usize) -> std::io::Result<Sink> {
        let cap = piece + (piece >> 3);
        Ok(match c {
            Compression::None | Compression::Snappy => Sink::Plain(Vec::with_capacity(cap)),
            Compression::Gzip => Sink::Gzip(flate2::write::GzEncoder::new(
                Vec::with_capacity(cap),
                level
                    .map(|l| flate2::Compression::new(l as u32))
                    .unwrap_or_default(),
            )),
            Compression::Zstd => Sink::Zstd(zstd::stream::write::Encoder::new(
                Vec::with_capacity(cap),
                level.unwrap_or(3),
            )?),
        })
    }

    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Plain(v) => {
                v.extend_from_slice(b);
                Ok(())
            }
            Sink::Gzip(g) => g.write_all(b),
            Sink::Zstd(z) => z.write_all(b),
        }
    }

    /// compressed bytes ready to be taken
    fn len(&mut self) -> usize {
        match self {
            Sink::Plain(v) => v.len(),
            Sink::Gzip(g) => g.get_ref().len(),
            Sink::Zstd(z) => z.get_ref().len(),
        }
    }

    /// Takes the compressed bytes so far; the stream goes on.
    fn take(&mut self) -> Vec<u8> {
        let v = match self {
            Sink::Plain(v) => v,
            Sink::Gzip(g) => g.get_mut(),
            Sink::Zstd(z) => z.get_mut(),
        };
        let cap = v.capacity();
        std::mem::replace(v, Vec::with_capacity(cap))
    }

    /// Ends the stream (gzip trailer, zstd epilogue) and returns the rest.
    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Sink::Plain(v) => Ok(v),
            Sink::Gzip(g) => g.finish(),
            Sink::Zstd(z) => z.finish(),
        }
    }
}

/// msgpack output: one map per record (no `[time, record]` wrapper), with
/// `tag_key`/`time_key` injected (replacing a field of the same name).
/// Returns 1 when the segment has a malformed entry (the rest is skipped).
fn write_msgpack_segment(lines: &JsonLines, tag: &str, seg: &[u8], out: &mut Vec<u8>) -> usize {
    for e in fuwa_api::event::entries(seg) {
        let Ok(e) = e else { return 1 };
        if write_msgpack_record(lines, tag, e.time, e.record, out).is_err() {
            return 1;
        }
    }
    0
}

fn write_msgpack_record(
    lines: &JsonLines,
    tag: &str,
    time: EventTime,
    rec: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), fuwa_api::msgpack::DecodeError> {
    let tag_key = lines.tag_key.as_deref();
    let time_key = lines.time_key.as_deref();
    if tag_key.is_none() && time_key.is_none() {
        out.extend_from_slice(rec);
        return Ok(());
    }
    let (head, mut p) = read_head(rec, 0)?;
    let Head::Map(n) = head else {
        return Err(fuwa_api::msgpack::DecodeError::invalid(
            0,
            "record is not a map",
        ));
    };
    // keep the pairs whose key is not injected
    let mut kept = Vec::with_capacity(rec.len());
    let mut count = 0u32;
    for _ in 0..n {
        let k_end = skip(rec, p)?;
        let v_end = skip(rec, k_end)?;
        let replaced = match read_head(rec, p)? {
            (Head::Str(l), kp) | (Head::Bin(l), kp) => {
                let k = rec.get(kp..kp + l);
                k.is_some() && (k == tag_key.map(str::as_bytes) || k == time_key.map(str::as_bytes))
            }
            _ => false,
        };
        if !replaced {
            kept.extend_from_slice(&rec[p..v_end]);
            count += 1;
        }
        p = v_end;
    }
    let extra = tag_key.is_some() as u32 + time_key.is_some() as u32;
    write_map_len(out, count + extra);
    out.extend_from_slice(&kept);
    if let Some(k) = tag_key {
        write_str(out, k.as_bytes());
        write_str(out, tag.as_bytes());
    }
    if let Some(k) = time_key {
        write_str(out, k.as_bytes());
        match &lines.time_format {
            TimeFormat::Rfc3339 => {
                let mut s = Vec::with_capacity(32);
                write_rfc3339(&mut s, time);
                write_str(out, &s);
            }
            TimeFormat::Unix => write_int(out, time.secs),
            TimeFormat::UnixMs => {
                write_int(out, time.secs * 1000 + (time.nanos / 1_000_000) as i64)
            }
            TimeFormat::UnixFloat => write_f64(out, time.secs as f64 + time.nanos as f64 / 1e9),
            TimeFormat::Strftime(items, tz) => {
                let s = to_datetime(time, tz)
                    .format_with_items(items.iter())
                    .to_string();
                write_str(out, s.as_bytes());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rmpv::Value;
    use std::io::Read;
    use std::sync::Arc;

    fn chunk(n: usize) -> Chunk {
        let mut seg = Vec::new();
        for i in 0..n {
            let rec = Value::Map(vec![
                (Value::from("id"), Value::from(i as u64)),
                (Value::from("time"), Value::from("old")),
                (
                    Value::from("pad"),
                    Value::from(format!("{:x}", (i as u64).wrapping_mul(0x9e3779b97f4a7c15))),
                ),
            ]);
            let mut r = Vec::new();
            rmpv::encode::write_value(&mut r, &rec).unwrap();
            fuwa_api::event::write_entry(&mut seg, EventTime::new(1_700_000_000 + i as i64, 5), &r);
        }
        Chunk {
            id: "c1".into(),
            tag: Arc::from("app"),
            key: Arc::from("k"),
            segments: vec![Bytes::from(seg)],
            records: n as u32,
            bytes: 0,
            created: std::time::SystemTime::now(),
        }
    }

    fn enc(format: Format, compression: Compression) -> Encoder {
        let tz = fuwa_render::parse_timezone("UTC").unwrap();
        Encoder {
            format,
            compression,
            level: None,
            lines: JsonLines {
                tag_key: Some("tag".into()),
                time_key: Some("time".into()),
                time_format: TimeFormat::parse("rfc3339", tz).unwrap(),
            },
            parquet: None,
        }
    }

    fn collect(e: &Encoder, c: &Chunk, piece: usize) -> (Vec<Vec<u8>>, usize) {
        let mut pieces = Vec::new();
        let bad = e
            .encode(c, piece, |p| {
                pieces.push(p);
                true
            })
            .unwrap();
        (pieces, bad)
    }

    #[test]
    fn gzip_pieces_concatenate_to_one_stream_of_json_lines() {
        let c = chunk(20_000);
        let (pieces, bad) = collect(&enc(Format::Json, Compression::Gzip), &c, 64 << 10);
        assert_eq!(bad, 0);
        assert!(pieces.len() > 2, "{}", pieces.len());
        for p in &pieces[..pieces.len() - 1] {
            assert!(p.len() >= 64 << 10);
        }
        let all: Vec<u8> = pieces.concat();
        let mut s = String::new();
        flate2::read::GzDecoder::new(&all[..])
            .read_to_string(&mut s)
            .unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 20_000);
        assert!(
            lines[1].contains("\"id\":1,")
                && lines[1].contains("\"time\":\"2023-11-14T22:13:21.000000005Z\""),
            "{}",
            lines[1]
        );
        assert!(lines[1].contains("\"tag\":\"app\""));
        assert!(!s.contains("old"));
    }

    #[test]
    fn zstd_and_plain_round_trip() {
        let c = chunk(1000);
        let (pieces, _) = collect(&enc(Format::Json, Compression::Zstd), &c, 1 << 20);
        let z = zstd::decode_all(&pieces.concat()[..]).unwrap();
        let (plain, _) = collect(&enc(Format::Json, Compression::None), &c, 1 << 20);
        assert_eq!(z, plain.concat());
        assert_eq!(String::from_utf8(z).unwrap().lines().count(), 1000);
    }

    #[test]
    fn msgpack_records_get_tag_and_time_injected() {
        let c = chunk(3);
        let (pieces, bad) = collect(&enc(Format::Msgpack, Compression::None), &c, 1 << 20);
        assert_eq!(bad, 0);
        let all = pieces.concat();
        let mut rd = &all[..];
        let mut n = 0;
        while !rd.is_empty() {
            let v = rmpv::decode::read_value(&mut rd).unwrap();
            let m = v.as_map().unwrap();
            let get = |k: &str| {
                m.iter()
                    .find(|(kk, _)| kk.as_str() == Some(k))
                    .map(|(_, v)| v.clone())
            };
            assert_eq!(m.len(), 4);
            assert_eq!(get("id"), Some(Value::from(n as u64)));
            assert_eq!(get("tag"), Some(Value::from("app")));
            assert_eq!(
                get("time").unwrap().as_str().unwrap(),
                format!("2023-11-14T22:13:2{n}.000000005Z")
            );
            n += 1;
        }
        assert_eq!(n, 3);
    }

    #[test]
    fn stops_when_the_receiver_is_gone() {
        let c = chunk(20_000);
        let mut calls = 0;
        enc(Format::Json, Compression::None)
            .encode(&c, 16 << 10, |_| {
                calls += 1;
                false
            })
            .unwrap();
        assert_eq!(calls, 1);
    }
}
