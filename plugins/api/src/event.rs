//! The event model. An event is `(tag, time, record)`; the record stays the
//! msgpack map its producer sent. Events travel in batches whose entries are
//! a msgpack stream of `[time, record]` arrays: the same bytes as a forward
//! PackedForward body, so nothing is re-encoded on the way through.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::msgpack::{self, DecodeError, Head};

/// Event time with nanoseconds (the forward protocol's EventTime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventTime {
    pub secs: i64,
    pub nanos: u32,
}

impl EventTime {
    pub fn new(secs: i64, nanos: u32) -> Self {
        EventTime { secs, nanos }
    }

    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        EventTime {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        }
    }

    /// From fractional seconds (Fluentd float times). Rounds to the nearest
    /// nanosecond; `None` for NaN, infinities and out-of-range values.
    pub fn from_f64(t: f64) -> Option<Self> {
        if !t.is_finite() || t.abs() > 1.0e15 {
            return None;
        }
        let secs = t.floor();
        let mut nanos = ((t - secs) * 1e9).round() as i64;
        let mut secs = secs as i64;
        if nanos >= 1_000_000_000 {
            secs += 1;
            nanos -= 1_000_000_000;
        }
        Some(EventTime {
            secs,
            nanos: nanos as u32,
        })
    }

    /// The 10-byte msgpack encoding: fixext8, type 0, seconds and nanoseconds
    /// as big-endian u32.
    pub fn to_msgpack(self) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[0] = 0xd7;
        b[1] = 0x00;
        b[2..6].copy_from_slice(&(self.secs as u32).to_be_bytes());
        b[6..10].copy_from_slice(&self.nanos.to_be_bytes());
        b
    }

    /// Reads a time value: EventTime (ext 0 with 8 bytes), an integer of any
    /// width, a float, or Fluent Bit 2.1+'s `[EventTime, {metadata}]`.
    /// Returns the time, the offset after it and whether it was already in
    /// canonical form (EventTime ext or a non-negative integer).
    pub fn read(buf: &[u8], pos: usize) -> Result<(EventTime, usize, bool), DecodeError> {
        let (head, p) = msgpack::read_head(buf, pos)?;
        match head {
            Head::Ext(0, 8) => {
                if buf.len() < p + 8 {
                    return Err(DecodeError::Incomplete);
                }
                let secs = u32::from_be_bytes([buf[p], buf[p + 1], buf[p + 2], buf[p + 3]]);
                let nanos = u32::from_be_bytes([buf[p + 4], buf[p + 5], buf[p + 6], buf[p + 7]]);
                if nanos >= 1_000_000_000 {
                    return Err(DecodeError::invalid(
                        pos,
                        "EventTime nanoseconds out of range",
                    ));
                }
                Ok((EventTime::new(secs as i64, nanos), p + 8, true))
            }
            Head::Uint(v) if v <= u32::MAX as u64 => Ok((EventTime::new(v as i64, 0), p, true)),
            Head::Int(v) if v >= 0 && v <= u32::MAX as i64 => Ok((EventTime::new(v, 0), p, true)),
            Head::F64(f) => EventTime::from_f64(f)
                .map(|t| (t, p, false))
                .ok_or(DecodeError::invalid(pos, "time is not a finite number")),
            Head::F32(f) => EventTime::from_f64(f as f64)
                .map(|t| (t, p, false))
                .ok_or(DecodeError::invalid(pos, "time is not a finite number")),
            Head::Array(2) => {
                // Fluent Bit 2.1+: [EventTime, {metadata}]
                let (t, after, _) = EventTime::read(buf, p)?;
                match msgpack::read_head(buf, after)? {
                    (Head::Map(_), _) => {}
                    _ => return Err(DecodeError::invalid(after, "time metadata is not a map")),
                }
                let end = msgpack::skip(buf, after)?;
                Ok((t, end, false))
            }
            Head::Ext(_, _) => Err(DecodeError::invalid(
                pos,
                "time is an ext type other than EventTime",
            )),
            _ => Err(DecodeError::invalid(
                pos,
                "time must be an EventTime, an integer or a float",
            )),
        }
    }
}

/// One event inside a batch's entries, borrowed from its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub time: EventTime,
    /// the record: one msgpack map
    pub record: &'a [u8],
    /// the whole `[time, record]` entry
    pub raw: &'a [u8],
}

/// Iterates over `[time, record]` entries. Stops at the first error.
pub struct Entries<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

pub fn entries(buf: &[u8]) -> Entries<'_> {
    Entries {
        buf,
        pos: 0,
        failed: false,
    }
}

/// Checks one entry at `pos`: `[time, map]`. Returns the entry, the offset
/// after it, and whether it is already canonical (needs no rewrite).
pub fn read_entry(buf: &[u8], pos: usize) -> Result<(Entry<'_>, usize, bool), DecodeError> {
    let (head, p) = msgpack::read_head(buf, pos)?;
    match head {
        Head::Array(2) => {}
        Head::Array(_) => {
            return Err(DecodeError::invalid(
                pos,
                "entry is not a [time, record] pair",
            ))
        }
        _ => return Err(DecodeError::invalid(pos, "entry is not an array")),
    }
    let (time, rp, canonical) = EventTime::read(buf, p)?;
    match msgpack::read_head(buf, rp)? {
        (Head::Map(_), _) => {}
        _ => return Err(DecodeError::invalid(rp, "record is not a map")),
    }
    let end = msgpack::skip(buf, rp)?;
    Ok((
        Entry {
            time,
            record: &buf[rp..end],
            raw: &buf[pos..end],
        },
        end,
        canonical,
    ))
}

/// Appends a canonical entry: `[EventTime, record]`.
pub fn write_entry(out: &mut Vec<u8>, time: EventTime, record: &[u8]) {
    out.push(0x92);
    out.extend_from_slice(&time.to_msgpack());
    out.extend_from_slice(record);
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, DecodeError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        match read_entry(self.buf, self.pos) {
            Ok((e, next, _)) => {
                self.pos = next;
                Some(Ok(e))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Events with one tag, on their way from an input into the pipeline.
#[derive(Debug, Clone)]
pub struct Batch {
    pub tag: Arc<str>,
    /// msgpack stream of `[time, record]` entries, each already validated
    pub entries: Bytes,
    pub count: u32,
}

impl Batch {
    pub fn new(tag: Arc<str>, entries: Bytes, count: u32) -> Self {
        Batch {
            tag,
            entries,
            count,
        }
    }
    pub fn iter(&self) -> Entries<'_> {
        entries(&self.entries)
    }
}

/// A sealed unit of work for an output: events of one tag and one partition
/// key, as a list of segments each holding whole entries.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// unique per chunk and stable across retries
    pub id: String,
    pub tag: Arc<str>,
    /// the partition key the output asked for (e.g. a rendered path)
    pub key: Arc<str>,
    pub segments: Vec<Bytes>,
    pub records: u32,
    pub bytes: usize,
    pub created: SystemTime,
}

impl Chunk {
    /// Every entry of the chunk, in order.
    pub fn entries(&self) -> impl Iterator<Item = Result<Entry<'_>, DecodeError>> {
        self.segments.iter().flat_map(|s| entries(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_times_keep_nanoseconds() {
        let t = EventTime::from_f64(1_700_000_000.123_456_7).unwrap();
        assert_eq!(t.secs, 1_700_000_000);
        assert!((t.nanos as i64 - 123_456_700).abs() < 1000);
        assert!(EventTime::from_f64(f64::NAN).is_none());
    }

    #[test]
    fn reads_every_time_encoding() {
        let t = EventTime::new(1_700_000_000, 999_999_999);
        let b = t.to_msgpack();
        assert_eq!(EventTime::read(&b, 0).unwrap(), (t, 10, true));
        // ext8 form of EventTime
        let mut b2 = vec![0xc7, 8, 0];
        b2.extend_from_slice(&b[2..]);
        assert_eq!(EventTime::read(&b2, 0).unwrap().0, t);
        // int32 (fluent-logger-golang)
        let b3 = [0xd2, 0x65, 0x53, 0xf1, 0x00];
        assert_eq!(EventTime::read(&b3, 0).unwrap().0.secs, 0x6553f100);
        // [EventTime, {}] (Fluent Bit 2.1+)
        let mut b4 = vec![0x92];
        b4.extend_from_slice(&b);
        b4.push(0x80);
        let (t4, end, canonical) = EventTime::read(&b4, 0).unwrap();
        assert_eq!((t4, end, canonical), (t, b4.len(), false));
        // bad ones
        assert!(EventTime::read(&[0xa1, b'x'], 0).is_err());
        assert!(EventTime::read(&[0xd7, 5, 0, 0, 0, 0, 0, 0, 0, 0], 0).is_err());
        assert!(EventTime::read(&[0xff], 0).is_err());
    }
}
