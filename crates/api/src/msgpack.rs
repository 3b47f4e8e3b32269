//! Just enough msgpack to validate and walk bytes without decoding them into
//! values: the hot path keeps the bytes a client sent and only checks their
//! structure.

use thiserror::Error;

/// Deepest nesting accepted in a record. Deeper input is refused rather than
/// risking unbounded work.
pub const MAX_DEPTH: usize = 128;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("incomplete msgpack value")]
    Incomplete,
    #[error("invalid msgpack at byte {offset}: {what}")]
    Invalid { offset: usize, what: &'static str },
}

impl DecodeError {
    pub fn invalid(offset: usize, what: &'static str) -> Self {
        DecodeError::Invalid { offset, what }
    }
}

/// What the header at a position announces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Head {
    Nil,
    Bool(bool),
    Uint(u64),
    Int(i64),
    F32(f32),
    F64(f64),
    /// string of `len` bytes starting at the returned body offset
    Str(usize),
    Bin(usize),
    Array(usize),
    Map(usize),
    /// extension: type and payload length
    Ext(i8, usize),
}

#[inline]
fn need(buf: &[u8], pos: usize, n: usize) -> Result<(), DecodeError> {
    if buf.len().saturating_sub(pos) < n {
        Err(DecodeError::Incomplete)
    } else {
        Ok(())
    }
}

#[inline]
fn be(buf: &[u8], pos: usize, n: usize) -> u64 {
    let mut v = 0u64;
    for b in &buf[pos..pos + n] {
        v = (v << 8) | *b as u64;
    }
    v
}

/// The whole length of a value, header included, for each first byte whose
/// value has a fixed length (scalars, fixstr, fixext); 0 for the others
/// (containers, variable-length str/bin/ext, the reserved 0xc1).
pub(crate) const FIXED_LEN: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        t[b] = match b as u8 {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => 1,
            0xa0..=0xbf => 1 + (b as u8 & 0x1f),
            0xcc | 0xd0 => 2,
            0xcd | 0xd1 => 3,
            0xca | 0xce | 0xd2 => 5,
            0xcb | 0xcf | 0xd3 => 9,
            0xd4 => 3,
            0xd5 => 4,
            0xd6 => 6,
            0xd7 => 10,
            0xd8 => 18,
            _ => 0,
        };
        b += 1;
    }
    t
};

/// Reads one header. Returns what it is and the offset right after the
/// header (for str/bin/ext the payload starts there).
#[inline]
pub fn read_head(buf: &[u8], pos: usize) -> Result<(Head, usize), DecodeError> {
    need(buf, pos, 1)?;
    let b = buf[pos];
    let p = pos + 1;
    Ok(match b {
        0x00..=0x7f => (Head::Uint(b as u64), p),
        0x80..=0x8f => (Head::Map((b & 0x0f) as usize), p),
        0x90..=0x9f => (Head::Array((b & 0x0f) as usize), p),
        0xa0..=0xbf => (Head::Str((b & 0x1f) as usize), p),
        0xc0 => (Head::Nil, p),
        0xc1 => return Err(DecodeError::invalid(pos, "reserved byte 0xc1")),
        0xc2 => (Head::Bool(false), p),
        0xc3 => (Head::Bool(true), p),
        0xc4..=0xc6 => {
            let n = 1 << (b - 0xc4);
            need(buf, p, n)?;
            (Head::Bin(be(buf, p, n) as usize), p + n)
        }
        0xc7..=0xc9 => {
            let n = 1 << (b - 0xc7);
            need(buf, p, n + 1)?;
            let len = be(buf, p, n) as usize;
            (Head::Ext(buf[p + n] as i8, len), p + n + 1)
        }
        0xca => {
            need(buf, p, 4)?;
            (Head::F32(f32::from_bits(be(buf, p, 4) as u32)), p + 4)
        }
        0xcb => {
            need(buf, p, 8)?;
            (Head::F64(f64::from_bits(be(buf, p, 8))), p + 8)
        }
        0xcc..=0xcf => {
            let n = 1 << (b - 0xcc);
            need(buf, p, n)?;
            (Head::Uint(be(buf, p, n)), p + n)
        }
        0xd0..=0xd3 => {
            let n = 1 << (b - 0xd0);
            need(buf, p, n)?;
            let raw = be(buf, p, n);
            let shift = 64 - 8 * n as u32;
            (Head::Int(((raw << shift) as i64) >> shift), p + n)
        }
        0xd4..=0xd8 => {
            let len = 1 << (b - 0xd4);
            need(buf, p, 1)?;
            (Head::Ext(buf[p] as i8, len), p + 1)
        }
        0xd9..=0xdb => {
            let n = 1 << (b - 0xd9);
            need(buf, p, n)?;
            (Head::Str(be(buf, p, n) as usize), p + n)
        }
        0xdc | 0xdd => {
            let n = 2 << (b - 0xdc);
            need(buf, p, n)?;
            (Head::Array(be(buf, p, n) as usize), p + n)
        }
        0xde | 0xdf => {
            let n = 2 << (b - 0xde);
            need(buf, p, n)?;
            (Head::Map(be(buf, p, n) as usize), p + n)
        }
        0xe0..=0xff => (Head::Int(b as i8 as i64), p),
    })
}

/// Skips one complete value starting at `pos`, checking its structure, and
/// returns the offset just after it. Iterative, so hostile nesting cannot
/// overflow the stack; nesting deeper than [`MAX_DEPTH`] is refused.
pub fn skip(buf: &[u8], pos: usize) -> Result<usize, DecodeError> {
    // values still to read at each open level: the first levels inline (no
    // allocation, nothing to clear for typical records), deeper ones spill
    const INLINE: usize = 16;
    let mut inline = [0usize; INLINE];
    let mut spill: Vec<usize> = Vec::new();
    let mut pos = pos;
    let mut depth = 0usize;
    let mut left = 1usize;
    'level: loop {
        while left > 0 {
            left -= 1;
            let Some(&b) = buf.get(pos) else {
                return Err(DecodeError::Incomplete);
            };
            // scalars and short strings, measured by their first byte
            let n = FIXED_LEN[b as usize] as usize;
            if n != 0 {
                pos += n;
                if pos > buf.len() {
                    return Err(DecodeError::Incomplete);
                }
                continue;
            }
            let (head, p) = read_head(buf, pos)?;
            pos = p;
            match head {
                Head::Str(n) | Head::Bin(n) | Head::Ext(_, n) => {
                    need(buf, pos, n)?;
                    pos += n;
                }
                Head::Array(n) | Head::Map(n) => {
                    let items = if let Head::Map(_) = head {
                        n.checked_mul(2)
                            .ok_or(DecodeError::invalid(pos, "map too large"))?
                    } else {
                        n
                    };
                    if items > 0 {
                        // every item needs at least one byte
                        if items > buf.len().saturating_sub(pos) {
                            return Err(DecodeError::Incomplete);
                        }
                        if depth + 1 > MAX_DEPTH {
                            return Err(DecodeError::invalid(pos, "nesting too deep"));
                        }
                        // the parent's count waits while the child is read
                        if depth < INLINE {
                            inline[depth] = left;
                        } else {
                            spill.push(left);
                        }
                        depth += 1;
                        left = items;
                        continue 'level;
                    }
                }
                _ => {}
            }
        }
        if depth == 0 {
            return Ok(pos);
        }
        depth -= 1;
        left = if depth < INLINE {
            inline[depth]
        } else {
            spill.pop().unwrap_or(0)
        };
    }
}

/// A resumable framer: finds where one top-level value ends in a stream that
/// arrives in pieces, without re-walking what it already walked.
#[derive(Debug)]
pub struct Framer {
    pos: usize,
    stack: Vec<usize>,
    started: bool,
    limit: usize,
}

impl Default for Framer {
    fn default() -> Self {
        Framer {
            pos: 0,
            stack: Vec::new(),
            started: false,
            limit: usize::MAX,
        }
    }
}

impl Framer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A framer that refuses, as soon as a header announces it, any value
    /// that would end past `limit` bytes (a client declaring a 4 GiB string
    /// is cut off at once, not after sending the limit's worth).
    pub fn with_limit(limit: usize) -> Self {
        Framer {
            limit,
            ..Self::default()
        }
    }

    /// Bytes of the current value walked so far.
    pub fn progress(&self) -> usize {
        self.pos
    }

    /// Advances over `buf` (which always starts at the value's first byte
    /// and only grows between calls). Returns `Some(len)` once the value is
    /// complete (and resets for the next one), `None` when more bytes are
    /// needed.
    pub fn advance(&mut self, buf: &[u8]) -> Result<Option<usize>, DecodeError> {
        if !self.started {
            self.started = true;
            self.pos = 0;
            self.stack.clear();
            self.stack.push(1);
        }
        loop {
            while let Some(&0) = self.stack.last() {
                self.stack.pop();
            }
            if self.stack.is_empty() {
                let len = self.pos;
                self.started = false;
                self.pos = 0;
                return Ok(Some(len));
            }
            let (head, p) = match read_head(buf, self.pos) {
                Ok(h) => h,
                Err(DecodeError::Incomplete) => return Ok(None),
                Err(e) => return Err(e),
            };
            let mut next = p;
            match head {
                Head::Str(n) | Head::Bin(n) | Head::Ext(_, n) => {
                    if p.saturating_add(n) > self.limit {
                        return Err(DecodeError::invalid(
                            p,
                            "value larger than the message limit",
                        ));
                    }
                    if buf.len().saturating_sub(p) < n {
                        return Ok(None);
                    }
                    next = p + n;
                }
                Head::Array(_) | Head::Map(_) => {}
                _ => {}
            }
            // commit this value
            if let Some(top) = self.stack.last_mut() {
                *top -= 1;
            }
            self.pos = next;
            match head {
                Head::Array(n) if n > 0 => self.push(n, p)?,
                Head::Map(n) if n > 0 => {
                    let items = n
                        .checked_mul(2)
                        .ok_or(DecodeError::invalid(p, "map too large"))?;
                    self.push(items, p)?
                }
                _ => {}
            }
        }
    }

    fn push(&mut self, items: usize, at: usize) -> Result<(), DecodeError> {
        if self.stack.len() > MAX_DEPTH {
            return Err(DecodeError::invalid(at, "nesting too deep"));
        }
        self.stack.push(items);
        Ok(())
    }
}

/// Reads a string (str or bin) at `pos`; returns its bytes and the next offset.
pub fn read_bytes_like(buf: &[u8], pos: usize) -> Result<(&[u8], usize), DecodeError> {
    match read_head(buf, pos)? {
        (Head::Str(n), p) | (Head::Bin(n), p) => {
            need(buf, p, n)?;
            Ok((&buf[p..p + n], p + n))
        }
        _ => Err(DecodeError::invalid(pos, "expected a string")),
    }
}

pub fn write_array_len(out: &mut Vec<u8>, n: u32) {
    if n < 16 {
        out.push(0x90 | n as u8);
    } else if n <= u16::MAX as u32 {
        out.push(0xdc);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

pub fn write_map_len(out: &mut Vec<u8>, n: u32) {
    if n < 16 {
        out.push(0x80 | n as u8);
    } else if n <= u16::MAX as u32 {
        out.push(0xde);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdf);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

pub fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= u8::MAX as usize {
        out.push(0xd9);
        out.push(n as u8);
    } else if n <= u16::MAX as usize {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

pub fn write_bin(out: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    if n <= u8::MAX as usize {
        out.push(0xc4);
        out.push(n as u8);
    } else if n <= u16::MAX as usize {
        out.push(0xc5);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xc6);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

pub fn write_uint(out: &mut Vec<u8>, v: u64) {
    if v < 128 {
        out.push(v as u8);
    } else if v <= u8::MAX as u64 {
        out.extend_from_slice(&[0xcc, v as u8]);
    } else if v <= u16::MAX as u64 {
        out.push(0xcd);
        out.extend_from_slice(&(v as u16).to_be_bytes());
    } else if v <= u32::MAX as u64 {
        out.push(0xce);
        out.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

pub fn write_int(out: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        write_uint(out, v as u64);
    } else if v >= -32 {
        out.push(v as i8 as u8);
    } else if v >= i8::MIN as i64 {
        out.extend_from_slice(&[0xd0, v as i8 as u8]);
    } else if v >= i16::MIN as i64 {
        out.push(0xd1);
        out.extend_from_slice(&(v as i16).to_be_bytes());
    } else if v >= i32::MIN as i64 {
        out.push(0xd2);
        out.extend_from_slice(&(v as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    out.push(0xcb);
    out.extend_from_slice(&v.to_bits().to_be_bytes());
}

#[cfg(test)]
mod tests;
