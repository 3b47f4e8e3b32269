//! The KPL aggregated-record format, as the Kinesis Producer Library
//! writes it and the standard de-aggregators (KCL, `aws-kinesis-agg`,
//! the Lambda de-aggregation modules) read it:
//!
//! ```text
//! f3 89 9a c2 | AggregatedRecord (protobuf) | MD5 of the protobuf (16 bytes)
//!
//! message AggregatedRecord {
//!   repeated string partition_key_table     = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records                 = 3;
//! }
//! message Record {
//!   required uint64 partition_key_index     = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes  data                    = 3;
//! }
//! ```
//!
//! fuwa groups by partition key, so each aggregated record has one
//! partition key (and at most one explicit hash key) in its tables; the
//! Kinesis record carries the same key, so every user record lands on the
//! shard its own key maps to.

use md5::{Digest, Md5};

pub const MAGIC: [u8; 4] = [0xf3, 0x89, 0x9a, 0xc2];
/// magic + MD5 trailer
pub const FRAME: usize = MAGIC.len() + 16;

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes of a length-delimited field of `len` bytes (tag + length + body).
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Bytes of one inner `Record` message holding `data` (index 0 for the
/// key, and for the hash key when there is one).
fn inner_len(data: usize, ehk: bool) -> usize {
    2 + if ehk { 2 } else { 0 } + field_len(data)
}

/// Builds one aggregated record: the key, an optional explicit hash key,
/// and the user records.
#[derive(Debug)]
pub struct Aggregator {
    key: String,
    ehk: Option<String>,
    records: Vec<std::ops::Range<usize>>,
    data: Vec<u8>,
    /// the protobuf body size so far
    body: usize,
}

impl Aggregator {
    pub fn new(key: &str, ehk: Option<&str>) -> Self {
        let mut body = field_len(key.len());
        if let Some(e) = ehk {
            body += field_len(e.len());
        }
        Aggregator {
            key: key.to_string(),
            ehk: ehk.map(str::to_string),
            records: Vec::new(),
            data: Vec::new(),
            body,
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The size of the aggregated record's data now (magic, body, MD5).
    pub fn size(&self) -> usize {
        FRAME + self.body
    }

    /// The size it would have with `data` added.
    pub fn size_with(&self, data: usize) -> usize {
        self.size() + field_len(inner_len(data, self.ehk.is_some()))
    }

    pub fn push(&mut self, data: &[u8]) {
        self.body += field_len(inner_len(data.len(), self.ehk.is_some()));
        let start = self.data.len();
        self.data.extend_from_slice(data);
        self.records.push(start..self.data.len());
    }

    /// The aggregated record's data.
    pub fn finish(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size());
        out.extend_from_slice(&MAGIC);
        out.push(0x0a);
        put_varint(&mut out, self.key.len() as u64);
        out.extend_from_slice(self.key.as_bytes());
        if let Some(e) = &self.ehk {
            out.push(0x12);
            put_varint(&mut out, e.len() as u64);
            out.extend_from_slice(e.as_bytes());
        }
        for r in &self.records {
            let d = &self.data[r.clone()];
            out.push(0x1a);
            put_varint(&mut out, inner_len(d.len(), self.ehk.is_some()) as u64);
            out.extend_from_slice(&[0x08, 0x00]);
            if self.ehk.is_some() {
                out.extend_from_slice(&[0x10, 0x00]);
            }
            out.push(0x1a);
            put_varint(&mut out, d.len() as u64);
            out.extend_from_slice(d);
        }
        let digest = Md5::digest(&out[MAGIC.len()..]);
        out.extend_from_slice(&digest);
        debug_assert_eq!(out.len(), self.size());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal protobuf reader for the test: (field, wire type, value).
    fn fields(mut b: &[u8]) -> Vec<(u64, Vec<u8>)> {
        fn varint(b: &mut &[u8]) -> u64 {
            let mut v = 0u64;
            let mut shift = 0;
            loop {
                let x = b[0];
                *b = &b[1..];
                v |= ((x & 0x7f) as u64) << shift;
                if x < 0x80 {
                    return v;
                }
                shift += 7;
            }
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let tag = varint(&mut b);
            match tag & 7 {
                0 => out.push((tag >> 3, varint(&mut b).to_le_bytes().to_vec())),
                2 => {
                    let n = varint(&mut b) as usize;
                    out.push((tag >> 3, b[..n].to_vec()));
                    b = &b[n..];
                }
                w => panic!("wire type {w}"),
            }
        }
        out
    }

    #[test]
    fn layout_matches_the_kpl_format() {
        let mut a = Aggregator::new("user-7", Some("12345"));
        let big = vec![b'x'; 300];
        for d in [&b"one\n"[..], &b"two\n"[..], &big[..]] {
            let before = a.size_with(d.len());
            a.push(d);
            assert_eq!(a.size(), before);
        }
        let out = a.finish();
        assert_eq!(out.len(), a.size());
        assert_eq!(&out[..4], &MAGIC);
        let body = &out[4..out.len() - 16];
        assert_eq!(&out[out.len() - 16..], &Md5::digest(body)[..]);
        let f = fields(body);
        assert_eq!(f[0], (1, b"user-7".to_vec()));
        assert_eq!(f[1], (2, b"12345".to_vec()));
        let datas: Vec<Vec<u8>> = f[2..]
            .iter()
            .map(|(n, m)| {
                assert_eq!(*n, 3);
                let inner = fields(m);
                assert_eq!(inner[0].0, 1);
                assert_eq!(inner[1].0, 2);
                assert_eq!(inner[2].0, 3);
                inner[2].1.clone()
            })
            .collect();
        assert_eq!(datas, vec![b"one\n".to_vec(), b"two\n".to_vec(), big]);
    }

    #[test]
    fn without_hash_key_there_is_no_hash_key_table() {
        let mut a = Aggregator::new("k", None);
        a.push(b"a");
        let out = a.finish();
        let f = fields(&out[4..out.len() - 16]);
        assert_eq!(f.len(), 2);
        assert_eq!(fields(&f[1].1).len(), 2);
    }
}
