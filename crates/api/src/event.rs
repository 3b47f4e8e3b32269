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

/// The furthest a time may be from 1970, in seconds either way (about
/// 253,000 years): any time a client sends within it is kept, every output
/// can write it (chrono's dates end at ±262,143 years; beyond them a path
/// or key would silently read 1970), and `secs * 1000` cannot overflow.
pub const MAX_TIME_SECS: i64 = 8_000_000_000_000;

impl EventTime {
    /// Whole seconds, `None` beyond [`MAX_TIME_SECS`].
    pub fn from_secs(secs: i64) -> Option<Self> {
        (secs.unsigned_abs() <= MAX_TIME_SECS as u64).then_some(EventTime { secs, nanos: 0 })
    }

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
        if !t.is_finite() || t.abs() > MAX_TIME_SECS as f64 {
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

    /// The canonical msgpack encoding of the time: the EventTime ext
    /// (fixext8, type 0, seconds and nanoseconds as big-endian u32) when the
    /// seconds fit its u32; otherwise (before 1970, after 2106) what Fluentd
    /// also reads: an integer when there are no nanoseconds, else a float64.
    pub fn to_msgpack(self) -> TimeBytes {
        let mut b = [0u8; 10];
        if let Ok(secs) = u32::try_from(self.secs) {
            b[0] = 0xd7;
            b[1] = 0x00;
            b[2..6].copy_from_slice(&secs.to_be_bytes());
            b[6..10].copy_from_slice(&self.nanos.to_be_bytes());
            return TimeBytes { b, len: 10 };
        }
        // float64 only where it still tells nanoseconds apart from whole
        // seconds (and where `from_f64` reads it back)
        if self.nanos == 0 || self.secs.unsigned_abs() >= MAX_TIME_SECS as u64 {
            b[0] = 0xd3;
            b[1..9].copy_from_slice(&self.secs.to_be_bytes());
        } else {
            let f = self.secs as f64 + self.nanos as f64 / 1e9;
            b[0] = 0xcb;
            b[1..9].copy_from_slice(&f.to_bits().to_be_bytes());
        }
        TimeBytes { b, len: 9 }
    }

    /// Reads a time value: EventTime (ext 0 with 8 bytes), an integer of any
    /// width within [`MAX_TIME_SECS`] (negative ones are times before 1970), a
    /// float, or Fluent Bit 2.1+'s `[EventTime, {metadata}]` (exactly one
    /// level: the inner time is never itself an array, so hostile nesting
    /// cannot recurse). Returns the time, the offset after it and whether it
    /// was already in canonical form (EventTime ext or an integer).
    pub fn read(buf: &[u8], pos: usize) -> Result<(EventTime, usize, bool), DecodeError> {
        let (head, p) = msgpack::read_head(buf, pos)?;
        match head {
            Head::Array(2) => {
                // Fluent Bit 2.1+: [EventTime, {metadata}]
                let (t, after, _) = match msgpack::read_head(buf, p)? {
                    (Head::Array(_), _) => {
                        return Err(DecodeError::invalid(
                            p,
                            "time inside [time, {metadata}] must not be an array",
                        ))
                    }
                    (inner, q) => Self::read_scalar(buf, p, inner, q)?,
                };
                match msgpack::read_head(buf, after)? {
                    (Head::Map(_), _) => {}
                    _ => return Err(DecodeError::invalid(after, "time metadata is not a map")),
                }
                let end = msgpack::skip(buf, after)?;
                Ok((t, end, false))
            }
            _ => Self::read_scalar(buf, pos, head, p),
        }
    }

    /// A time that is one value (no array): `head` was read at `pos` and
    /// its body starts at `p`.
    fn read_scalar(
        buf: &[u8],
        pos: usize,
        head: Head,
        p: usize,
    ) -> Result<(EventTime, usize, bool), DecodeError> {
        match head {
            Head::Ext(0, 8) => {
                if buf.len().saturating_sub(p) < 8 {
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
            Head::Uint(v) => i64::try_from(v)
                .ok()
                .and_then(EventTime::from_secs)
                .map(|t| (t, p, true))
                .ok_or(DecodeError::invalid(
                    pos,
                    "time is more than 8 * 10^12 seconds (253,000 years) after 1970",
                )),
            Head::Int(v) => {
                EventTime::from_secs(v)
                    .map(|t| (t, p, true))
                    .ok_or(DecodeError::invalid(
                        pos,
                        "time is more than 8 * 10^12 seconds (253,000 years) before 1970",
                    ))
            }
            Head::F64(f) => EventTime::from_f64(f)
                .map(|t| (t, p, false))
                .ok_or(DecodeError::invalid(pos, "time is not a finite number")),
            Head::F32(f) => EventTime::from_f64(f as f64)
                .map(|t| (t, p, false))
                .ok_or(DecodeError::invalid(pos, "time is not a finite number")),
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

/// The msgpack bytes of one time (see [`EventTime::to_msgpack`]): 10 bytes
/// for the EventTime ext, 9 for an int64 or float64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBytes {
    b: [u8; 10],
    len: u8,
}

impl std::ops::Deref for TimeBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.b[..self.len as usize]
    }
}

impl AsRef<[u8]> for TimeBytes {
    fn as_ref(&self) -> &[u8] {
        self
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
        assert!(EventTime::read(&[0xc1], 0).is_err());
        // uint64 beyond i64 seconds
        assert!(EventTime::read(&[0xcf, 0xff, 0, 0, 0, 0, 0, 0, 0], 0).is_err());
    }

    #[test]
    fn negative_and_far_times_are_times() {
        // -1 as a negative fixint, as int8, as int64
        for b in [
            &[0xffu8][..],
            &[0xd0, 0xff],
            &[0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert_eq!(
                EventTime::read(b, 0).unwrap(),
                (EventTime::new(-1, 0), b.len(), true)
            );
        }
        // beyond what any output can write in milliseconds
        let mut b = vec![0xd3];
        b.extend_from_slice(&i64::MIN.to_be_bytes());
        assert!(EventTime::read(&b, 0).is_err());
        // beyond the u32 of the EventTime ext
        let far = 1u64 << 33;
        let mut b = vec![0xcf];
        b.extend_from_slice(&far.to_be_bytes());
        assert_eq!(
            EventTime::read(&b, 0).unwrap().0,
            EventTime::new(far as i64, 0)
        );
        assert_eq!(
            EventTime::from_f64(-1.5),
            Some(EventTime::new(-2, 500_000_000))
        );
    }

    #[test]
    fn every_time_survives_its_own_encoding() {
        for t in [
            EventTime::new(0, 0),
            EventTime::new(u32::MAX as i64, 999_999_999),
            EventTime::new(-1, 0),
            EventTime::new(-2, 500_000_000),
            EventTime::new(u32::MAX as i64 + 1, 0),
            EventTime::new(u32::MAX as i64 + 1, 250_000_000),
            EventTime::new(-MAX_TIME_SECS, 0),
            EventTime::new(MAX_TIME_SECS, 123),
            EventTime::new(MAX_TIME_SECS - 1, 999_999_999),
        ] {
            let b = t.to_msgpack();
            let (back, end, _) = EventTime::read(&b, 0).unwrap();
            assert_eq!(end, b.len(), "{t:?}");
            // float64 far from 1970 rounds to its precision (2 ms at 8 * 10^12)
            let f = |t: EventTime| t.secs as f64 + t.nanos as f64 / 1e9;
            assert!(
                (f(back) - f(t)).abs() <= f(t).abs() * 1e-15 + 1e-6,
                "{t:?} -> {back:?}"
            );
            // rmpv (and so Fluentd's msgpack) reads every form as one value
            let v = rmpv::decode::read_value(&mut &b[..]).unwrap();
            assert!(matches!(
                v,
                rmpv::Value::Ext(0, _) | rmpv::Value::Integer(_) | rmpv::Value::F64(_)
            ));
        }
    }

    #[test]
    fn nested_metadata_times_are_refused_not_recursed() {
        // [[[[...[EventTime, {}]...], {}], {}], {}] a million levels deep:
        // refused at the second level, no recursion
        let depth = 1_000_000;
        let mut b = vec![0x92u8; depth];
        b.extend_from_slice(&EventTime::new(1, 0).to_msgpack());
        b.extend(std::iter::repeat_n(0x80u8, depth));
        assert!(matches!(
            EventTime::read(&b, 0),
            Err(DecodeError::Invalid { .. })
        ));
        let mut e = vec![0x92u8];
        e.extend_from_slice(&b);
        e.push(0x80);
        assert!(read_entry(&e, 0).is_err());
        // exactly one level is Fluent Bit's, still accepted
        let mut one = vec![0x92u8];
        one.extend_from_slice(&EventTime::new(7, 8).to_msgpack());
        one.push(0x81);
        one.extend_from_slice(&[0xa1, b'k', 0x01]);
        assert_eq!(
            EventTime::read(&one, 0).unwrap(),
            (EventTime::new(7, 8), one.len(), false)
        );
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        /// Times as clients send them, biased to nesting and odd widths.
        fn time_bytes() -> impl Strategy<Value = Vec<u8>> {
            let scalar = prop_oneof![
                any::<i64>().prop_map(|v| {
                    let mut b = Vec::new();
                    msgpack::write_int(&mut b, v);
                    b
                }),
                any::<u64>().prop_map(|v| {
                    let mut b = Vec::new();
                    msgpack::write_uint(&mut b, v);
                    b
                }),
                any::<f64>().prop_map(|v| {
                    let mut b = Vec::new();
                    msgpack::write_f64(&mut b, v);
                    b
                }),
                (any::<u32>(), any::<u32>()).prop_map(|(s, n)| {
                    let mut b = vec![0xd7, 0];
                    b.extend_from_slice(&s.to_be_bytes());
                    b.extend_from_slice(&n.to_be_bytes());
                    b
                }),
                proptest::collection::vec(any::<u8>(), 0..12),
            ];
            (scalar, 0usize..5000, 0usize..5000, any::<bool>()).prop_map(
                |(inner, open, close, meta)| {
                    let mut b = vec![0x92u8; open];
                    b.extend(inner);
                    for _ in 0..close {
                        if meta {
                            b.push(0x80)
                        } else {
                            b.push(0x91)
                        }
                    }
                    b
                },
            )
        }

        proptest! {
            #[test]
            fn read_never_panics_nor_recurses(b in time_bytes()) {
                if let Ok((t, end, _)) = EventTime::read(&b, 0) {
                    prop_assert!(end <= b.len());
                    prop_assert!(t.nanos < 1_000_000_000);
                }
                let mut e = vec![0x92u8];
                e.extend_from_slice(&b);
                e.push(0x80);
                let _ = read_entry(&e, 0);
            }

            #[test]
            fn every_time_reads_back(secs in prop_oneof![-MAX_TIME_SECS..=MAX_TIME_SECS, -10_000i64..10_000, 4_000_000_000i64..5_000_000_000], nanos in 0u32..1_000_000_000) {
                let t = EventTime::new(secs, nanos);
                let b = t.to_msgpack();
                let (back, end, _) = EventTime::read(&b, 0).unwrap();
                prop_assert_eq!(end, b.len());
                if u32::try_from(secs).is_ok() {
                    prop_assert_eq!(back, t);
                } else {
                    // float64: nanoseconds are as exact as the float is
                    let got = back.secs as f64 + back.nanos as f64 / 1e9;
                    let want = t.secs as f64 + t.nanos as f64 / 1e9;
                    prop_assert!((got - want).abs() <= want.abs() * 1e-15 + 1e-6, "{t:?} -> {back:?}");
                }
                let mut entry = Vec::new();
                write_entry(&mut entry, t, &[0x80]);
                let (e, end, _) = read_entry(&entry, 0).unwrap();
                prop_assert_eq!(end, entry.len());
                prop_assert_eq!(e.record, &[0x80u8][..]);
            }
        }
    }
}
