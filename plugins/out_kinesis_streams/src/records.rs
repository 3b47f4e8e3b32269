//! Turning a chunk into Kinesis records (one per event, or KPL aggregates
//! grouped by partition key) and records into PutRecords calls, within the
//! service's hard limits.

use std::collections::HashMap;

use bytes::Bytes;
use fuwa_api::msgpack::{read_head, skip, write_f64, write_int, write_map_len, write_str, Head};
use fuwa_api::{Chunk, Entry, EventTime};
use fuwa_render::template::lookup;
use fuwa_render::time::{to_datetime, write_rfc3339};
use fuwa_render::{write_json_line, JsonLines, TimeFormat};

use crate::agg::Aggregator;
use crate::key::{random_key, KeySource, KeyTemplate};

/// Kinesis Data Streams limits: one record (data + partition key), one
/// PutRecords call (records, and bytes of data + keys).
pub const MAX_RECORD: usize = 1024 * 1024;
pub const MAX_CALL_RECORDS: usize = 500;
pub const MAX_CALL_BYTES: usize = 5 * 1024 * 1024;
/// Kinesis bills PUT payload units of 25 KB per record.
pub const PUT_UNIT: u64 = 25 * 1024;

pub fn put_units(len: usize) -> u64 {
    (len as u64).div_ceil(PUT_UNIT).max(1)
}

/// What one Kinesis record's data is made from.
#[derive(Debug, Clone)]
pub enum Format {
    Json(JsonLines),
    Msgpack {
        tag_key: Option<String>,
        time_key: Option<String>,
        time_format: TimeFormat,
    },
    /// the raw value of one key (strings as they are, others as JSON)
    LogKey(String),
}

#[derive(Debug, Clone)]
pub struct Renderer {
    pub format: Format,
    pub append_newline: bool,
    /// `None`: random per record (per aggregate with `aggregation`)
    pub key: Option<KeyTemplate>,
    pub explicit_hash_key: Option<String>,
    pub aggregation: bool,
}

/// One Kinesis record.
#[derive(Debug, Clone)]
pub struct Rec {
    pub data: Bytes,
    pub key: String,
    /// events it carries (more than one when aggregated)
    pub events: u32,
}

impl Rec {
    /// What counts against the record and call limits.
    pub fn size(&self) -> usize {
        self.data.len() + self.key.len()
    }
}

/// The records of one chunk. Record indexes mean the same events on every
/// retry of the chunk (random keys may differ: they carry no meaning).
#[derive(Debug, Default)]
pub struct Rendered {
    pub records: Vec<Rec>,
    /// events too big for one record: their size (data + key) and the
    /// `[time, record]` entry (the engine dead-letters them alone)
    pub oversize: Vec<(usize, Bytes)>,
    /// entries that could not be rendered (or lack `log_key`)
    pub bad: usize,
    /// keys that fell back to random (missing field, empty value)
    pub key_fallbacks: u64,
}

impl Renderer {
    /// The data of one event.
    fn data(&self, tag: &str, e: &Entry<'_>, out: &mut Vec<u8>) -> bool {
        out.clear();
        let ok = match &self.format {
            Format::Json(lines) => lines.write_segment(tag, e.raw, out) == 0 && !out.is_empty(),
            Format::Msgpack {
                tag_key,
                time_key,
                time_format,
            } => write_msgpack(
                out,
                e.record,
                tag_key.as_deref().map(|k| (k, tag)),
                time_key.as_deref().map(|k| (k, e.time, time_format)),
            ),
            Format::LogKey(k) => write_log_key(out, e.record, k),
        };
        if !ok {
            return false;
        }
        let has_nl = out.last() == Some(&b'\n');
        if self.append_newline && !has_nl {
            out.push(b'\n');
        } else if !self.append_newline && has_nl && matches!(self.format, Format::Json(_)) {
            out.pop();
        }
        true
    }

    pub fn render(&self, chunk: &Chunk) -> Rendered {
        let mut out = Rendered::default();
        let mut data = Vec::new();
        // aggregation: group index by key, in order of first appearance
        let mut groups: Vec<(Option<String>, Vec<Bytes>)> = Vec::new();
        let mut by_key: HashMap<String, usize> = HashMap::new();
        for e in chunk.entries() {
            let Ok(e) = e else {
                out.bad += 1;
                break;
            };
            if !self.data(&chunk.tag, &e, &mut data) {
                out.bad += 1;
                continue;
            }
            let key = match &self.key {
                Some(t) => {
                    let (k, src) = t.render(&chunk.tag, e.record, &data);
                    if src == KeySource::Fallback {
                        out.key_fallbacks += 1;
                        // aggregated, the fallbacks share the random group
                        // (a key of their own each would leave them alone)
                        if self.aggregation {
                            None
                        } else {
                            Some(k)
                        }
                    } else {
                        Some(k)
                    }
                }
                None => None,
            };
            // the longest a random key gets: "999999.9999999999" and a bit
            let key_len = key.as_ref().map_or(24, String::len);
            if data.len() + key_len > MAX_RECORD {
                out.oversize
                    .push((data.len() + key_len, Bytes::copy_from_slice(e.raw)));
                continue;
            }
            let bytes = Bytes::copy_from_slice(&data);
            if !self.aggregation {
                out.records.push(Rec {
                    data: bytes,
                    key: key.unwrap_or_else(random_key),
                    events: 1,
                });
                continue;
            }
            match key {
                None => match groups.first_mut() {
                    Some(g) => g.1.push(bytes),
                    None => groups.push((None, vec![bytes])),
                },
                Some(k) => match by_key.get(&k) {
                    Some(&i) => groups[i].1.push(bytes),
                    None => {
                        by_key.insert(k.clone(), groups.len());
                        groups.push((Some(k), vec![bytes]));
                    }
                },
            }
        }
        for (key, events) in groups {
            self.aggregate(key, events, &mut out.records);
        }
        out
    }

    /// Packs the events of one key into aggregated records of at most
    /// [`MAX_RECORD`] (data + key); an aggregate of one event is sent as a
    /// plain record (de-aggregators pass plain records through).
    fn aggregate(&self, key: Option<String>, events: Vec<Bytes>, out: &mut Vec<Rec>) {
        let ehk = self.explicit_hash_key.as_deref();
        let new_key = || key.clone().unwrap_or_else(random_key);
        let mut cur: Option<(Aggregator, Vec<Bytes>)> = None;
        let flush = |cur: &mut Option<(Aggregator, Vec<Bytes>)>, out: &mut Vec<Rec>| {
            let Some((a, evs)) = cur.take() else { return };
            let key = a.key().to_string();
            if evs.len() == 1 {
                out.extend(evs.into_iter().map(|d| Rec {
                    data: d,
                    key: key.clone(),
                    events: 1,
                }));
            } else if !evs.is_empty() {
                out.push(Rec {
                    data: Bytes::from(a.finish()),
                    key,
                    events: evs.len() as u32,
                });
            }
        };
        for d in events {
            if let Some((a, _)) = &cur {
                if a.size_with(d.len()) + a.key().len() > MAX_RECORD {
                    flush(&mut cur, out);
                }
            }
            let (a, evs) =
                cur.get_or_insert_with(|| (Aggregator::new(&new_key(), ehk), Vec::new()));
            if a.is_empty() && a.size_with(d.len()) + a.key().len() > MAX_RECORD {
                // fits as a plain record only
                let key = a.key().to_string();
                cur = None;
                out.push(Rec {
                    data: d,
                    key,
                    events: 1,
                });
                continue;
            }
            a.push(&d);
            evs.push(d);
        }
        flush(&mut cur, out);
    }
}

/// The record map with the injected keys first (a record field of the same
/// name is dropped, as in JSON).
fn write_msgpack(
    out: &mut Vec<u8>,
    record: &[u8],
    tag: Option<(&str, &str)>,
    time: Option<(&str, EventTime, &TimeFormat)>,
) -> bool {
    if tag.is_none() && time.is_none() {
        out.extend_from_slice(record);
        return true;
    }
    let Ok((Head::Map(n), mut p)) = read_head(record, 0) else {
        return false;
    };
    let injected: Vec<&str> = tag
        .iter()
        .map(|t| t.0)
        .chain(time.iter().map(|t| t.0))
        .collect();
    let mut kept: Vec<(usize, usize)> = Vec::with_capacity(n);
    for _ in 0..n {
        let Ok(v) = skip(record, p) else { return false };
        let Ok(end) = skip(record, v) else {
            return false;
        };
        let dup = match read_head(record, p) {
            Ok((Head::Str(l), kp)) | Ok((Head::Bin(l), kp)) => record
                .get(kp..kp + l)
                .is_some_and(|k| injected.iter().any(|i| i.as_bytes() == k)),
            _ => false,
        };
        if !dup {
            kept.push((p, end));
        }
        p = end;
    }
    write_map_len(out, (kept.len() + injected.len()) as u32);
    if let Some((k, v)) = tag {
        write_str(out, k.as_bytes());
        write_str(out, v.as_bytes());
    }
    if let Some((k, t, f)) = time {
        write_str(out, k.as_bytes());
        match f {
            TimeFormat::Rfc3339 => {
                let mut s = Vec::new();
                write_rfc3339(&mut s, t);
                write_str(out, &s);
            }
            TimeFormat::Unix => write_int(out, t.secs),
            TimeFormat::UnixMs => write_int(out, t.secs * 1000 + (t.nanos / 1_000_000) as i64),
            TimeFormat::UnixFloat => write_f64(out, t.secs as f64 + t.nanos as f64 / 1e9),
            TimeFormat::Strftime(items, tz) => {
                let s = to_datetime(t, tz)
                    .format_with_items(items.iter())
                    .to_string();
                write_str(out, s.as_bytes());
            }
        }
    }
    for (s, e) in kept {
        out.extend_from_slice(&record[s..e]);
    }
    true
}

/// The value of `key`: a string as it is, anything else as JSON.
fn write_log_key(out: &mut Vec<u8>, record: &[u8], key: &str) -> bool {
    let path = [key.to_string()];
    let Some(pos) = lookup(record, &path) else {
        return false;
    };
    match read_head(record, pos) {
        Ok((Head::Str(n), p)) | Ok((Head::Bin(n), p)) => match record.get(p..p + n) {
            Some(v) => {
                out.extend_from_slice(v);
                true
            }
            None => false,
        },
        Ok(_) => {
            let Ok(end) = skip(record, pos) else {
                return false;
            };
            // {"v": value} rendered as JSON, then the value cut out of it
            let mut wrap = vec![0x81, 0xa1, b'v'];
            wrap.extend_from_slice(&record[pos..end]);
            let mut line = Vec::new();
            if write_json_line(&mut line, &wrap, &[]).is_err() || line.len() < 7 {
                return false;
            }
            out.extend_from_slice(&line[5..line.len() - 2]);
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests;
