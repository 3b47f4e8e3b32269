//! Editing a msgpack map in place, without decoding it into a value tree:
//! find, set and remove fields by dot path on the record's bytes.
//!
//! The rules are those of the value-tree helpers in [`crate::record`], so a
//! filter gives the same record whichever form it works on:
//! - a key matches when it is a str or bin with the same bytes; the first
//!   match wins;
//! - `set` replaces a value in place, or appends the pair at the end of its
//!   map; missing intermediate maps are created, and a non-map in the way is
//!   replaced by a map;
//! - `remove` takes the first matching pair out.
//!
//! msgpack maps count their entries rather than their bytes, so a nested map
//! can grow or shrink without touching the maps around it: only its own
//! header changes (and may change size, fixmap → map16 → map32).

use std::ops::Range;

use crate::msgpack::{read_head, write_map_len, write_str, DecodeError, Head, FIXED_LEN};

/// Where one pair of a map is: the key's start, the value's start and end.
#[derive(Debug, Clone, Copy)]
struct Pair {
    key: usize,
    value: usize,
    end: usize,
}

/// A map header: its position, entry count and where its entries start.
#[derive(Debug, Clone, Copy)]
struct MapHead {
    at: usize,
    len: usize,
    body: usize,
}

fn map_head(buf: &[u8], at: usize) -> Result<Option<MapHead>, DecodeError> {
    match read_head(buf, at)? {
        (Head::Map(len), body) => Ok(Some(MapHead { at, len, body })),
        _ => Ok(None),
    }
}

/// Where the value at `at` ends: scalars and short strings are measured
/// from their first bytes, anything else is walked by [`skip`].
#[inline]
fn value_end(buf: &[u8], at: usize) -> Result<usize, DecodeError> {
    let Some(&b) = buf.get(at) else {
        return Err(DecodeError::Incomplete);
    };
    let fixed = FIXED_LEN[b as usize] as usize;
    let end = match b {
        _ if fixed != 0 => at + fixed,
        0xd9 | 0xc4 => match buf.get(at + 1) {
            Some(&n) => at + 2 + n as usize,
            None => return Err(DecodeError::Incomplete),
        },
        _ => return walk(buf, at),
    };
    if end > buf.len() {
        return Err(DecodeError::Incomplete);
    }
    Ok(end)
}

/// Where the value at `at` ends, for any value: counts the values still to
/// read (a container adds its items), so no stack is needed however deep the
/// nesting. Every value takes at least one byte, which bounds the count.
fn walk(buf: &[u8], at: usize) -> Result<usize, DecodeError> {
    let mut pos = at;
    let mut left: usize = 1;
    while left > 0 {
        left -= 1;
        let (head, p) = read_head(buf, pos)?;
        pos = p;
        match head {
            Head::Str(n) | Head::Bin(n) | Head::Ext(_, n) => {
                pos = pos.checked_add(n).ok_or(DecodeError::Incomplete)?;
                if pos > buf.len() {
                    return Err(DecodeError::Incomplete);
                }
            }
            Head::Array(n) => left = left.saturating_add(n),
            Head::Map(n) => left = left.saturating_add(n.saturating_mul(2)),
            _ => {}
        }
        if left > buf.len() - pos {
            return Err(DecodeError::Incomplete);
        }
    }
    Ok(pos)
}

/// Replaces `range` of `buf` with `with`, moving the tail once.
pub(crate) fn replace(buf: &mut Vec<u8>, range: Range<usize>, with: &[u8]) {
    let (start, end) = (range.start, range.end);
    let old = end - start;
    if with.len() > old {
        let grow = with.len() - old;
        let len = buf.len();
        buf.resize(len + grow, 0);
        buf.copy_within(end..len, end + grow);
    } else if with.len() < old {
        let shrink = old - with.len();
        let len = buf.len();
        buf.copy_within(end..len, end - shrink);
        buf.truncate(len - shrink);
    }
    buf[start..start + with.len()].copy_from_slice(with);
}

/// Whether the key at `at` is a str or bin equal to `name`, and where it ends.
#[inline]
fn key_matches(buf: &[u8], at: usize, name: &[u8]) -> Result<(bool, usize), DecodeError> {
    let end = value_end(buf, at)?;
    let body = match buf[at] {
        0xa0..=0xbf => at + 1,
        0xd9 | 0xc4 => at + 2,
        0xda | 0xc5 => at + 3,
        0xdb | 0xc6 => at + 5,
        _ => return Ok((false, end)),
    };
    Ok((buf.get(body..end) == Some(name), end))
}

/// Looks for `name` among the pairs of the map; returns the pair, or the
/// offset just past the map when it is not there.
fn find_in(buf: &[u8], m: MapHead, name: &[u8]) -> Result<Result<Pair, usize>, DecodeError> {
    let mut q = m.body;
    for _ in 0..m.len {
        let (hit, value) = key_matches(buf, q, name)?;
        let end = value_end(buf, value)?;
        if hit {
            return Ok(Ok(Pair { key: q, value, end }));
        }
        q = end;
    }
    Ok(Err(q))
}

/// The byte range of the value at `path` in the map at the start of `buf`.
pub fn find(buf: &[u8], path: &[String]) -> Result<Option<Range<usize>>, DecodeError> {
    let mut at = 0;
    let mut found = None;
    for part in path {
        let Some(m) = map_head(buf, at)? else {
            return Ok(None);
        };
        match find_in(buf, m, part.as_bytes())? {
            Ok(p) => {
                at = p.value;
                found = Some(p.value..p.end);
            }
            Err(_) => return Ok(None),
        }
    }
    Ok(found)
}

/// Rewrites a map header for a new entry count.
fn set_len(buf: &mut Vec<u8>, m: MapHead, len: usize) {
    let (head, n) = header(len);
    replace(buf, m.at..m.body, &head[..n]);
}

/// `{p1: {p2: ... value}}` for the rest of a path.
fn nested(rest: &[String], value: &[u8], out: &mut Vec<u8>) {
    for p in rest {
        write_map_len(out, 1);
        write_str(out, p.as_bytes());
    }
    out.extend_from_slice(value);
}

/// Sets the value at `path` to `value` (one encoded msgpack value). The
/// record at the start of `buf` must be a map.
pub fn set(buf: &mut Vec<u8>, path: &[String], value: &[u8]) -> Result<(), DecodeError> {
    let mut at = 0;
    for (i, part) in path.iter().enumerate() {
        let rest = &path[i + 1..];
        let m = match map_head(buf, at)? {
            Some(m) => m,
            None if i == 0 => return Err(DecodeError::invalid(0, "the record is not a map")),
            None => {
                // a non-map in the way becomes a map holding the rest
                let end = value_end(buf, at)?;
                let mut v = Vec::new();
                nested(&path[i..], value, &mut v);
                replace(buf, at..end, &v);
                return Ok(());
            }
        };
        match find_in(buf, m, part.as_bytes())? {
            Ok(p) if rest.is_empty() => {
                replace(buf, p.value..p.end, value);
                return Ok(());
            }
            Ok(p) => at = p.value,
            Err(map_end) => {
                if rest.is_empty() && map_end == buf.len() {
                    // the usual case: a new field at the end of the record
                    write_str(buf, part.as_bytes());
                    buf.extend_from_slice(value);
                } else {
                    let mut pair = Vec::with_capacity(part.len() + value.len() + 8);
                    write_str(&mut pair, part.as_bytes());
                    nested(rest, value, &mut pair);
                    replace(buf, map_end..map_end, &pair);
                }
                set_len(buf, m, m.len + 1);
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The map holding the last part of `path` and the pair there.
fn locate(buf: &[u8], path: &[String]) -> Result<Option<(MapHead, Pair)>, DecodeError> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(None);
    };
    let mut at = 0;
    for part in parents {
        let Some(m) = map_head(buf, at)? else {
            return Ok(None);
        };
        match find_in(buf, m, part.as_bytes())? {
            Ok(p) => at = p.value,
            Err(_) => return Ok(None),
        }
    }
    let Some(m) = map_head(buf, at)? else {
        return Ok(None);
    };
    Ok(find_in(buf, m, last.as_bytes())?.ok().map(|p| (m, p)))
}

/// Removes the pair at `path`; returns the removed value's bytes.
pub fn remove(buf: &mut Vec<u8>, path: &[String]) -> Result<Option<Vec<u8>>, DecodeError> {
    let Some((m, p)) = locate(buf, path)? else {
        return Ok(None);
    };
    let value = buf[p.value..p.end].to_vec();
    buf.drain(p.key..p.end);
    set_len(buf, m, m.len - 1);
    Ok(Some(value))
}

/// Removes every pair at `path` (a key may appear more than once); how
/// many there were.
pub fn delete_all(buf: &mut Vec<u8>, path: &[String]) -> Result<usize, DecodeError> {
    let Some((m, first)) = locate(buf, path)? else {
        return Ok(0);
    };
    let Some(name) = path.last() else {
        return Ok(0);
    };
    // pairs before the first match stay; walk the rest once
    let mut seen = 0;
    let mut q = m.body;
    while q < first.key {
        q = value_end(buf, key_matches(buf, q, b"")?.1)?;
        seen += 1;
    }
    let mut removed = 0;
    for _ in seen..m.len {
        let (hit, value) = key_matches(buf, q, name.as_bytes())?;
        let end = value_end(buf, value)?;
        if hit {
            buf.drain(q..end);
            removed += 1;
        } else {
            q = end;
        }
    }
    set_len(buf, m, m.len - removed);
    Ok(removed)
}

/// Removes the pair at `path`; whether there was one.
pub fn delete(buf: &mut Vec<u8>, path: &[String]) -> Result<bool, DecodeError> {
    let Some((m, p)) = locate(buf, path)? else {
        return Ok(false);
    };
    buf.drain(p.key..p.end);
    set_len(buf, m, m.len - 1);
    Ok(true)
}

/// Where every top-level pair of a record is, kept up to date across edits,
/// so that filters reading and writing top-level fields compare keys
/// instead of walking the record again for each field.
#[derive(Debug, Default, Clone)]
pub(crate) struct Index {
    /// whether `slots` describes the bytes (false: not a map, or malformed)
    ok: bool,
    /// where the map's entries start (the header's length)
    body: usize,
    slots: Vec<Slot>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    key: usize,
    /// where the key's bytes start (the key's own start when it is not a
    /// str or bin)
    name: usize,
    value: usize,
    end: usize,
    /// the key's length and first 8 bytes, to tell keys apart without
    /// comparing their bytes (`u32::MAX`: not a str or bin key)
    name_len: u32,
    name_head: u64,
}

/// The first 8 bytes of a name, zero-padded.
#[inline]
fn head8(name: &[u8]) -> u64 {
    if let Some(b) = name.first_chunk::<8>() {
        return u64::from_le_bytes(*b);
    }
    // shorter: in at most three reads of 4, 2 and 1 bytes
    let (mut v, mut i) = (0u64, 0usize);
    if let Some(w) = name.first_chunk::<4>().filter(|_| name.len() & 4 != 0) {
        v = u32::from_le_bytes(*w) as u64;
        i = 4;
    }
    if let Some(w) = name[i..].first_chunk::<2>().filter(|_| name.len() & 2 != 0) {
        v |= (u16::from_le_bytes(*w) as u64) << (8 * i);
        i += 2;
    }
    if let Some(&b) = name.get(i).filter(|_| name.len() & 1 != 0) {
        v |= (b as u64) << (8 * i);
    }
    v
}

/// [`head8`] of the `len` bytes at `start` of `buf`, read as one word when
/// the buffer goes on for 8 bytes.
#[inline]
fn head8_at(buf: &[u8], start: usize, len: usize) -> u64 {
    match buf.get(start..).and_then(|b| b.first_chunk::<8>()) {
        Some(w) if len >= 8 => u64::from_le_bytes(*w),
        Some(w) => u64::from_le_bytes(*w) & ((1u64 << (8 * len)) - 1),
        None => head8(&buf[start..start + len]),
    }
}

impl Slot {
    fn new(buf: &[u8], key: usize, value: usize, end: usize) -> Slot {
        let body = key_body(buf, key);
        let (name, name_len, name_head) = match buf.get(body..value) {
            Some(n) if body != usize::MAX && n.len() < u32::MAX as usize => {
                (body, n.len() as u32, head8(n))
            }
            _ => (key, u32::MAX, 0),
        };
        Slot {
            key,
            name,
            value,
            end,
            name_len,
            name_head,
        }
    }

    #[inline]
    fn is(&self, buf: &[u8], name: &[u8], head: u64) -> bool {
        self.name_len as usize == name.len()
            && self.name_head == head
            && (name.len() <= 8 || buf.get(self.name..self.value) == Some(name))
    }
}

impl Slot {
    fn shift(&mut self, by: isize) {
        let f = |x: usize| x.wrapping_add_signed(by);
        self.key = f(self.key);
        self.name = f(self.name);
        self.value = f(self.value);
        self.end = f(self.end);
    }
}

fn key_body(buf: &[u8], at: usize) -> usize {
    match buf.get(at) {
        Some(0xa0..=0xbf) => at + 1,
        Some(0xd9 | 0xc4) => at + 2,
        Some(0xda | 0xc5) => at + 3,
        Some(0xdb | 0xc6) => at + 5,
        _ => usize::MAX,
    }
}

fn header(len: usize) -> ([u8; 5], usize) {
    let mut head = [0u8; 5];
    let n = match len {
        0..=15 => {
            head[0] = 0x80 | len as u8;
            1
        }
        16..=0xffff => {
            head[0] = 0xde;
            head[1..3].copy_from_slice(&(len as u16).to_be_bytes());
            3
        }
        _ => {
            head[0] = 0xdf;
            head[1..5].copy_from_slice(&(len as u32).to_be_bytes());
            5
        }
    };
    (head, n)
}

impl Index {
    /// Indexes the map at the start of `buf` (one walk).
    pub(crate) fn build(&mut self, buf: &[u8]) {
        self.slots.clear();
        self.ok = self.try_build(buf).is_ok();
    }

    fn try_build(&mut self, buf: &[u8]) -> Result<(), DecodeError> {
        let Some(m) = map_head(buf, 0)? else {
            return Err(DecodeError::invalid(0, "not a map"));
        };
        self.body = m.body;
        let mut q = m.body;
        for _ in 0..m.len {
            let slot = match buf.get(q) {
                // the usual key, a short string: measured once
                Some(&b @ 0xa0..=0xbf) => {
                    let name = q + 1;
                    let value = name + (b & 0x1f) as usize;
                    if value > buf.len() {
                        return Err(DecodeError::Incomplete);
                    }
                    Slot {
                        key: q,
                        name,
                        value,
                        end: value_end(buf, value)?,
                        name_len: (b & 0x1f) as u32,
                        name_head: head8_at(buf, name, (b & 0x1f) as usize),
                    }
                }
                _ => {
                    let value = value_end(buf, q)?;
                    Slot::new(buf, q, value, value_end(buf, value)?)
                }
            };
            q = slot.end;
            self.slots.push(slot);
        }
        Ok(())
    }

    pub(crate) fn ok(&self) -> bool {
        self.ok
    }

    pub(crate) fn invalidate(&mut self) {
        self.ok = false;
    }

    fn find(&self, buf: &[u8], name: &[u8]) -> Option<usize> {
        let head = head8(name);
        self.slots.iter().position(|s| s.is(buf, name, head))
    }

    /// The slot and value range of a top-level key.
    pub(crate) fn slot(&self, buf: &[u8], name: &[u8]) -> Option<(usize, Range<usize>)> {
        self.find(buf, name)
            .map(|i| (i, self.slots[i].value..self.slots[i].end))
    }

    fn shift_from(&mut self, i: usize, by: isize) {
        for s in &mut self.slots[i..] {
            s.shift(by);
        }
    }

    /// Rewrites the header for the current slot count.
    fn write_header(&mut self, buf: &mut Vec<u8>) {
        let (head, n) = header(self.slots.len());
        if n == self.body {
            buf[..n].copy_from_slice(&head[..n]);
        } else {
            let by = n as isize - self.body as isize;
            replace(buf, 0..self.body, &head[..n]);
            self.body = n;
            self.shift_from(0, by);
        }
    }

    /// Replaces the value of slot `i` (as [`Index::slot`] gave it).
    pub(crate) fn replace_at(&mut self, buf: &mut Vec<u8>, i: usize, value: &[u8]) {
        let s = self.slots[i];
        if value.len() == s.end - s.value {
            buf[s.value..s.end].copy_from_slice(value);
            return;
        }
        let by = value.len() as isize - (s.end - s.value) as isize;
        replace(buf, s.value..s.end, value);
        self.slots[i].end = s.value + value.len();
        self.shift_from(i + 1, by);
    }

    /// Sets a top-level key: replaced where it is, or appended.
    pub(crate) fn set(&mut self, buf: &mut Vec<u8>, name: &[u8], value: &[u8]) {
        if let Some(i) = self.find(buf, name) {
            self.replace_at(buf, i, value);
            return;
        }
        let at = self.slots.last().map_or(self.body, |s| s.end);
        let appended = at == buf.len();
        let mut pair = Vec::new();
        let target: &mut Vec<u8> = if appended { buf } else { &mut pair };
        let start = target.len();
        write_str(target, name);
        let value_at = target.len() - start;
        target.extend_from_slice(value);
        let len = target.len() - start;
        if !appended {
            replace(buf, at..at, &pair);
        }
        self.slots.push(Slot::new(buf, at, at + value_at, at + len));
        self.write_header(buf);
    }

    /// Removes every pair with this top-level key; how many there were.
    pub(crate) fn delete_all(&mut self, buf: &mut Vec<u8>, name: &[u8]) -> usize {
        let mut removed = 0;
        let head = head8(name);
        let mut i = self.slots.len();
        while i > 0 {
            i -= 1;
            let s = self.slots[i];
            if s.is(buf, name, head) {
                buf.drain(s.key..s.end);
                self.slots.remove(i);
                self.shift_from(i, -((s.end - s.key) as isize));
                removed += 1;
            }
        }
        if removed > 0 {
            self.write_header(buf);
        }
        removed
    }

    /// Removes the first pair with this key; returns its value's bytes.
    pub(crate) fn remove(&mut self, buf: &mut Vec<u8>, name: &[u8]) -> Option<Vec<u8>> {
        let i = self.find(buf, name)?;
        let s = self.slots[i];
        let value = buf[s.value..s.end].to_vec();
        buf.drain(s.key..s.end);
        self.slots.remove(i);
        self.shift_from(i, -((s.end - s.key) as isize));
        self.write_header(buf);
        Some(value)
    }
}

#[cfg(test)]
mod tests;
