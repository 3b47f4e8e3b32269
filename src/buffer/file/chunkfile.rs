//! The on-disk chunk format of the file buffer.
//!
//! ```text
//! header: "FUWACHK1" | u32 LE json length | u32 LE crc32(json) | json {id, tag, key, created_ms}
//! block:  u32 LE payload length | u32 LE records | u32 LE crc32(length, records, payload) | payload
//! ```
//! A payload is a msgpack stream of `[time, record]` entries, the same bytes
//! an input emitted (and a PackedForward body), so a chunk read back needs no
//! re-encoding. Every append is one block with its own checksum: a crash in
//! the middle of a write leaves a torn last block, which recovery cuts off.

use std::ops::Range;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub const MAGIC: &[u8; 8] = b"FUWACHK1";
pub const BLOCK_HEADER: usize = 12;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChunkMeta {
    pub id: String,
    pub tag: String,
    pub key: String,
    pub created_ms: u64,
}

pub fn encode_header(meta: &ChunkMeta) -> Vec<u8> {
    let json = serde_json::to_vec(meta).unwrap_or_default();
    let mut out = Vec::with_capacity(16 + json.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

pub fn block_header(payload: &[u8], records: u32) -> [u8; BLOCK_HEADER] {
    let len = (payload.len() as u32).to_le_bytes();
    let rec = records.to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(&rec);
    h.update(payload);
    let crc = h.finalize().to_le_bytes();
    let mut out = [0u8; BLOCK_HEADER];
    out[0..4].copy_from_slice(&len);
    out[4..8].copy_from_slice(&rec);
    out[8..12].copy_from_slice(&crc);
    out
}

/// A whole chunk in one buffer (used for dead letters of memory chunks).
pub fn encode_chunk(meta: &ChunkMeta, segments: &[(Bytes, u32)]) -> Vec<u8> {
    let mut out = encode_header(meta);
    for (seg, n) in segments {
        out.extend_from_slice(&block_header(seg, *n));
        out.extend_from_slice(seg);
    }
    out
}

#[derive(Debug, PartialEq)]
pub struct Scanned {
    pub meta: ChunkMeta,
    /// payload ranges and their record counts
    pub blocks: Vec<(Range<usize>, u32)>,
    pub records: u32,
    /// bytes up to the end of the last whole block
    pub valid_len: usize,
    /// bytes after it (a torn write), if any
    pub torn_bytes: usize,
    /// records the torn block claimed, when its header was readable
    pub torn_records: Option<u32>,
}

impl Scanned {
    pub fn payload_bytes(&self) -> usize {
        self.blocks.iter().map(|(r, _)| r.len()).sum()
    }

    pub fn segments(&self, data: &Bytes) -> Vec<Bytes> {
        self.blocks
            .iter()
            .map(|(r, _)| data.slice(r.clone()))
            .collect()
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads a chunk file's bytes. `Err` means the chunk is corrupt (bad header,
/// or a block that fails its checksum with more data after it); a bad
/// *last* block is a torn write and is reported in `torn_bytes`.
pub fn scan(b: &[u8]) -> Result<Scanned, String> {
    if b.len() < 16 || &b[..8] != MAGIC {
        return Err("not a fuwa chunk (bad magic)".into());
    }
    let jlen = u32_at(b, 8) as usize;
    let jcrc = u32_at(b, 12);
    if b.len() < 16 + jlen {
        return Err("header is cut short".into());
    }
    let json = &b[16..16 + jlen];
    if crc32fast::hash(json) != jcrc {
        return Err("header fails its checksum".into());
    }
    let meta: ChunkMeta =
        serde_json::from_slice(json).map_err(|e| format!("header is not valid: {e}"))?;
    let mut pos = 16 + jlen;
    let mut blocks = Vec::new();
    let mut records = 0u32;
    let mut torn_records = None;
    while pos < b.len() {
        let rest = b.len() - pos;
        if rest < BLOCK_HEADER {
            break; // torn block header
        }
        let len = u32_at(b, pos) as usize;
        let n = u32_at(b, pos + 4);
        let crc = u32_at(b, pos + 8);
        let end = pos + BLOCK_HEADER + len;
        if end > b.len() {
            torn_records = Some(n);
            break; // torn payload
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&b[pos..pos + 8]);
        h.update(&b[pos + BLOCK_HEADER..end]);
        if h.finalize() != crc {
            if end == b.len() {
                torn_records = Some(n);
                break; // the last block was torn in place
            }
            return Err(format!("block at byte {pos} fails its checksum"));
        }
        blocks.push((pos + BLOCK_HEADER..end, n));
        records = records.saturating_add(n);
        pos = end;
    }
    Ok(Scanned {
        meta,
        blocks,
        records,
        valid_len: pos,
        torn_bytes: b.len() - pos,
        torn_records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta() -> ChunkMeta {
        ChunkMeta {
            id: "abc".into(),
            tag: "app".into(),
            key: "k".into(),
            created_ms: 1,
        }
    }

    fn chunk(blocks: &[&[u8]]) -> Vec<u8> {
        let segs: Vec<(Bytes, u32)> = blocks
            .iter()
            .map(|b| (Bytes::copy_from_slice(b), b.len() as u32))
            .collect();
        encode_chunk(&meta(), &segs)
    }

    #[test]
    fn round_trip() {
        let c = chunk(&[b"one", b"three"]);
        let s = scan(&c).unwrap();
        assert_eq!(s.meta, meta());
        assert_eq!(s.records, 8);
        assert_eq!(s.torn_bytes, 0);
        let data = Bytes::from(c);
        assert_eq!(
            s.segments(&data),
            vec![Bytes::from_static(b"one"), Bytes::from_static(b"three")]
        );
    }

    #[test]
    fn every_truncation_is_a_torn_tail_keeping_whole_blocks() {
        let c = chunk(&[b"first block", b"second"]);
        let header_len = encode_header(&meta()).len();
        let first_end = header_len + BLOCK_HEADER + 11;
        for cut in header_len..c.len() {
            let s = scan(&c[..cut]).unwrap();
            let expect = if cut >= first_end { 1 } else { 0 };
            assert_eq!(s.blocks.len(), expect, "cut {cut}");
            assert_eq!(s.valid_len + s.torn_bytes, cut);
        }
        for cut in 0..header_len {
            assert!(scan(&c[..cut]).is_err());
        }
    }

    #[test]
    fn a_flipped_bit_in_a_middle_block_is_corruption() {
        let mut c = chunk(&[b"first block", b"second"]);
        let header_len = encode_header(&meta()).len();
        c[header_len + BLOCK_HEADER + 2] ^= 0x10;
        assert!(scan(&c).unwrap_err().contains("fails its checksum"));
        // in the header
        let mut c = chunk(&[b"x"]);
        c[20] ^= 1;
        assert!(scan(&c).is_err());
    }

    proptest! {
        #[test]
        fn scan_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300), flips in proptest::collection::vec((0usize..300, any::<u8>()), 0..4)) {
            let _ = scan(&b);
            let mut c = chunk(&[b"some payload", b"more"]);
            for (i, x) in flips { let l = c.len(); c[i % l] ^= x; }
            if let Ok(s) = scan(&c) {
                for (r, _) in &s.blocks { prop_assert!(r.end <= c.len()); }
            }
        }
    }
}
