//! Record helpers for filters: records as `rmpv::Value` maps, fields by dot
//! path (`a.b.c`).

use rmpv::Value;

/// Splits `a.b.c` into its parts.
pub fn path(p: &str) -> Vec<String> {
    p.split('.').map(str::to_string).collect()
}

fn key_is(k: &Value, name: &str) -> bool {
    match k {
        Value::String(s) => s.as_bytes() == name.as_bytes(),
        Value::Binary(b) => b == name.as_bytes(),
        _ => false,
    }
}

/// Checks and splits a field path from a config: dot-separated names,
/// none of them empty.
pub fn check_path(p: &str) -> Result<Vec<String>, String> {
    let parts = path(p);
    if p.is_empty() || parts.iter().any(String::is_empty) {
        return Err(format!(
            "`{p}` is not a field path (use `field` or `a.b.c`: dot-separated names, none empty)"
        ));
    }
    Ok(parts)
}

/// A field path in a config (`field` or `a.b.c`), checked as it is read
/// (see [`check_path`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(pub Vec<String>);

impl FieldPath {
    /// A path known to be good (a default).
    pub fn of(p: &str) -> Self {
        FieldPath(path(p))
    }
}

impl<'de> serde::Deserialize<'de> for FieldPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        check_path(&s)
            .map(FieldPath)
            .map_err(serde::de::Error::custom)
    }
}

/// The value at `path`, if the record has it.
pub fn get<'a>(record: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = record;
    for p in path {
        let Value::Map(m) = cur else { return None };
        cur = m.iter().find(|(k, _)| key_is(k, p)).map(|(_, v)| v)?;
    }
    Some(cur)
}

pub fn get_mut<'a>(record: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = record;
    for p in path {
        let Value::Map(m) = cur else { return None };
        cur = m.iter_mut().find(|(k, _)| key_is(k, p)).map(|(_, v)| v)?;
    }
    Some(cur)
}

/// The value at `path` as text, when it is a string (or binary that is UTF-8).
pub fn get_str<'a>(record: &'a Value, path: &[String]) -> Option<&'a str> {
    match get(record, path)? {
        Value::String(s) => s.as_str(),
        Value::Binary(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

/// Sets the value at `path`, creating intermediate maps; a non-map in the
/// way is replaced by a map.
pub fn set(record: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = record;
    for p in parents {
        if !matches!(cur, Value::Map(_)) {
            *cur = Value::Map(Vec::new());
        }
        let Value::Map(m) = cur else { return };
        let idx = match m.iter().position(|(k, _)| key_is(k, p)) {
            Some(i) => i,
            None => {
                m.push((Value::from(p.as_str()), Value::Map(Vec::new())));
                m.len() - 1
            }
        };
        cur = &mut m[idx].1;
    }
    if !matches!(cur, Value::Map(_)) {
        *cur = Value::Map(Vec::new());
    }
    if let Value::Map(m) = cur {
        match m.iter_mut().find(|(k, _)| key_is(k, last)) {
            Some((_, v)) => *v = value,
            None => m.push((Value::from(last.as_str()), value)),
        }
    }
}

/// Removes and returns the value at `path`.
pub fn remove(record: &mut Value, path: &[String]) -> Option<Value> {
    let (last, parents) = path.split_last()?;
    let parent = if parents.is_empty() {
        Some(record)
    } else {
        get_mut(record, parents)
    }?;
    let Value::Map(m) = parent else { return None };
    let i = m.iter().position(|(k, _)| key_is(k, last))?;
    Some(m.remove(i).1)
}

mod codec;

pub use codec::{decode, encode};

/// A string-like field, borrowed from the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text<'a> {
    /// a msgpack str (its bytes may not be valid UTF-8)
    Str(&'a [u8]),
    /// a msgpack bin
    Bin(&'a [u8]),
}

/// One record as a filter sees it: the msgpack map's bytes, edited in place
/// by the fields it touches, or a decoded value tree when a filter needs the
/// whole record (a filter asks for it with [`Record::value_mut`]; the tree is
/// encoded again when the bytes are next needed).
///
/// Both forms follow the same rules (see [`crate::rawmap`]), so a filter
/// gives the same record whichever form it is handed.
#[derive(Debug, Default, Clone)]
pub struct Record {
    bytes: Vec<u8>,
    tree: Option<Value>,
    /// where the top-level pairs of `bytes` are
    index: crate::rawmap::Index,
    scratch: Vec<u8>,
}

impl Record {
    pub fn new() -> Self {
        Record::default()
    }

    /// A record from its msgpack bytes.
    pub fn from_slice(b: &[u8]) -> Self {
        let mut r = Record::new();
        r.reset(b);
        r
    }

    /// A record from a value tree.
    pub fn from_value(v: Value) -> Self {
        Record {
            tree: Some(v),
            ..Record::default()
        }
    }

    /// Reuses this record for other bytes (keeps its allocations).
    pub fn reset(&mut self, b: &[u8]) {
        self.bytes.clear();
        self.bytes.extend_from_slice(b);
        self.tree = None;
        self.index.build(&self.bytes);
    }

    /// Replaces the whole record with other msgpack bytes.
    pub fn set_bytes(&mut self, b: &[u8]) {
        self.reset(b)
    }

    /// Whether the record is held as a decoded tree right now.
    pub fn is_tree(&self) -> bool {
        self.tree.is_some()
    }

    /// Whether the record is a map (anything else passes filters untouched).
    pub fn is_map(&self) -> bool {
        match &self.tree {
            Some(t) => t.is_map(),
            None => {
                self.index.ok()
                    || matches!(
                        crate::msgpack::read_head(&self.bytes, 0),
                        Ok((crate::msgpack::Head::Map(_), _))
                    )
            }
        }
    }

    /// The whole record as a value tree, decoded on first use; `None` when
    /// the bytes are not one valid msgpack value.
    pub fn value_mut(&mut self) -> Option<&mut Value> {
        if self.tree.is_none() {
            self.tree = Some(decode(&self.bytes).ok()?);
            self.index.invalidate();
        }
        self.tree.as_mut()
    }

    /// The record as msgpack bytes (encoding the tree if it was decoded).
    pub fn bytes(&mut self) -> &[u8] {
        if let Some(t) = self.tree.take() {
            self.bytes.clear();
            encode(&mut self.bytes, &t);
            self.index.build(&self.bytes);
        }
        &self.bytes
    }

    /// Appends the record's msgpack bytes to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match &self.tree {
            Some(t) => encode(out, t),
            None => out.extend_from_slice(&self.bytes),
        }
    }

    /// The record as a value tree (for tests and tools).
    pub fn into_value(self) -> Option<Value> {
        match self.tree {
            Some(t) => Some(t),
            None => decode(&self.bytes).ok(),
        }
    }

    /// The key to look up in the index: a one-part path on indexed bytes.
    fn top<'p>(&self, path: &'p [String]) -> Option<&'p [u8]> {
        match path {
            [name] if self.index.ok() => Some(name.as_bytes()),
            _ => None,
        }
    }

    /// The byte range of the value at `path` (bytes form).
    fn range(&self, path: &[String]) -> Option<std::ops::Range<usize>> {
        self.place(path).map(|(_, r)| r)
    }

    /// Where the value at `path` is in the bytes: its index slot (for a
    /// top-level key) and its range.
    fn place(&self, path: &[String]) -> Option<(Option<usize>, std::ops::Range<usize>)> {
        match self.top(path) {
            Some(name) => {
                let (i, r) = self.index.slot(&self.bytes, name)?;
                Some((Some(i), r))
            }
            None => Some((None, crate::rawmap::find(&self.bytes, path).ok()??)),
        }
    }

    /// Puts an encoded value where [`Record::place`] found the old one.
    fn put(&mut self, slot: Option<usize>, range: std::ops::Range<usize>, enc: &[u8]) {
        match slot {
            Some(i) => self.index.replace_at(&mut self.bytes, i, enc),
            None => {
                crate::rawmap::replace(&mut self.bytes, range, enc);
                self.index.build(&self.bytes);
            }
        }
    }

    /// The string or binary at `path`, borrowed.
    pub fn text(&self, path: &[String]) -> Option<Text<'_>> {
        match &self.tree {
            Some(t) => match get(t, path)? {
                Value::String(s) => Some(Text::Str(s.as_bytes())),
                Value::Binary(b) => Some(Text::Bin(b)),
                _ => None,
            },
            None => {
                let r = self.range(path)?;
                let (head, p) = crate::msgpack::read_head(&self.bytes, r.start).ok()?;
                let body = self.bytes.get(p..r.end)?;
                match head {
                    crate::msgpack::Head::Str(_) => Some(Text::Str(body)),
                    crate::msgpack::Head::Bin(_) => Some(Text::Bin(body)),
                    _ => None,
                }
            }
        }
    }

    /// Whether the record has a field at `path`.
    pub fn has(&self, path: &[String]) -> bool {
        match &self.tree {
            Some(t) => get(t, path).is_some(),
            None => self.range(path).is_some(),
        }
    }

    /// A copy of the value at `path`.
    pub fn get(&self, path: &[String]) -> Option<Value> {
        match &self.tree {
            Some(t) => get(t, path).cloned(),
            None => decode(&self.bytes[self.range(path)?]).ok(),
        }
    }

    /// Sets the value at `path` (see [`set`] for the rules).
    pub fn set(&mut self, path: &[String], v: Value) {
        if let Some(t) = &mut self.tree {
            return set(t, path, v);
        }
        let mut enc = std::mem::take(&mut self.scratch);
        enc.clear();
        encode(&mut enc, &v);
        if !self.set_bytes_at(path, &enc) {
            self.set_in_tree(path, v);
        }
        self.scratch = enc;
    }

    /// Sets the value at `path` to one already encoded msgpack value.
    pub fn set_encoded(&mut self, path: &[String], v: &[u8]) {
        if let Some(t) = &mut self.tree {
            if let Ok(v) = decode(v) {
                set(t, path, v)
            }
            return;
        }
        if !self.set_bytes_at(path, v) {
            if let Ok(v) = decode(v) {
                self.set_in_tree(path, v);
            }
        }
    }

    /// Sets a string at `path`.
    pub fn set_str(&mut self, path: &[String], s: &str) {
        if let Some(t) = &mut self.tree {
            return set(t, path, Value::from(s));
        }
        let mut enc = std::mem::take(&mut self.scratch);
        enc.clear();
        crate::msgpack::write_str(&mut enc, s.as_bytes());
        if !self.set_bytes_at(path, &enc) {
            self.set_in_tree(path, Value::from(s));
        }
        self.scratch = enc;
    }

    /// Sets an encoded value in the bytes form; false when the bytes did
    /// not take it (not a map, or malformed).
    fn set_bytes_at(&mut self, path: &[String], enc: &[u8]) -> bool {
        match self.top(path) {
            Some(name) => {
                self.index.set(&mut self.bytes, name, enc);
                true
            }
            None => {
                let ok = crate::rawmap::set(&mut self.bytes, path, enc).is_ok();
                self.index.build(&self.bytes);
                ok
            }
        }
    }

    /// The bytes did not take an in-place edit (not a map, or malformed):
    /// fall back to the tree, which follows the same rules where it decodes.
    fn set_in_tree(&mut self, path: &[String], v: Value) {
        if let Some(t) = self.value_mut() {
            set(t, path, v);
        }
    }

    /// Removes every value at `path` (a key may appear more than once);
    /// how many there were.
    pub fn delete_all(&mut self, path: &[String]) -> usize {
        if let Some(t) = &mut self.tree {
            let mut n = 0;
            while remove(t, path).is_some() {
                n += 1;
            }
            return n;
        }
        match self.top(path) {
            Some(name) => self.index.delete_all(&mut self.bytes, name),
            None => {
                let n = crate::rawmap::delete_all(&mut self.bytes, path).unwrap_or(0);
                self.index.build(&self.bytes);
                n
            }
        }
    }

    /// Calls `f` with the value at `path`; a value it returns replaces the
    /// old one (found once, replaced where it lies). Returns what `f` said
    /// beside, or `None` when there is no such field.
    pub fn update<R>(
        &mut self,
        path: &[String],
        f: impl FnOnce(&Value) -> (Option<Value>, R),
    ) -> Option<R> {
        if let Some(t) = &mut self.tree {
            let v = get_mut(t, path)?;
            let (new, r) = f(v);
            if let Some(new) = new {
                *v = new;
            }
            return Some(r);
        }
        let (slot, range) = self.place(path)?;
        let old = decode(&self.bytes[range.clone()]).ok()?;
        let (new, r) = f(&old);
        if let Some(new) = new {
            let mut enc = std::mem::take(&mut self.scratch);
            enc.clear();
            encode(&mut enc, &new);
            self.put(slot, range, &enc);
            self.scratch = enc;
        }
        Some(r)
    }

    /// Calls `f` with the str or bin at `path` and a cleared buffer; one
    /// encoded msgpack value that `f` writes into the buffer replaces the
    /// text where it lies (found once; an empty buffer leaves it as it was).
    /// Returns what `f` returned, or `None` when there is no str or bin at
    /// `path`. The cheap way to convert a text field: nothing is decoded.
    pub fn replace_text<R>(
        &mut self,
        path: &[String],
        f: impl FnOnce(Text<'_>, &mut Vec<u8>) -> R,
    ) -> Option<R> {
        let mut enc = std::mem::take(&mut self.scratch);
        enc.clear();
        let r = self.replace_text_with(path, f, &mut enc);
        self.scratch = enc;
        r
    }

    fn replace_text_with<R>(
        &mut self,
        path: &[String],
        f: impl FnOnce(Text<'_>, &mut Vec<u8>) -> R,
        enc: &mut Vec<u8>,
    ) -> Option<R> {
        if let Some(t) = &mut self.tree {
            let v = get_mut(t, path)?;
            let r = match v {
                Value::String(s) => f(Text::Str(s.as_bytes()), enc),
                Value::Binary(b) => f(Text::Bin(b), enc),
                _ => return None,
            };
            if !enc.is_empty() {
                if let Ok(new) = decode(enc) {
                    *v = new;
                }
            }
            return Some(r);
        }
        let (slot, range) = self.place(path)?;
        let (head, body) = crate::msgpack::read_head(&self.bytes, range.start).ok()?;
        let text = self.bytes.get(body..range.end)?;
        let r = match head {
            crate::msgpack::Head::Str(_) => f(Text::Str(text), enc),
            crate::msgpack::Head::Bin(_) => f(Text::Bin(text), enc),
            _ => return None,
        };
        if !enc.is_empty() {
            self.put(slot, range, enc);
        }
        Some(r)
    }

    /// Removes the value at `path`; whether there was one.
    pub fn delete(&mut self, path: &[String]) -> bool {
        match &mut self.tree {
            Some(t) => remove(t, path).is_some(),
            None => self.take_bytes(path).is_some(),
        }
    }

    /// Removes the value at `path` and returns it.
    pub fn remove(&mut self, path: &[String]) -> Option<Value> {
        if let Some(t) = &mut self.tree {
            return remove(t, path);
        }
        decode(&self.take_bytes(path)?).ok()
    }

    fn take_bytes(&mut self, path: &[String]) -> Option<Vec<u8>> {
        if let Some(t) = &mut self.tree {
            let v = remove(t, path)?;
            let mut b = Vec::new();
            encode(&mut b, &v);
            return Some(b);
        }
        match self.top(path) {
            Some(name) => self.index.remove(&mut self.bytes, name),
            None => {
                let b = crate::rawmap::remove(&mut self.bytes, path).ok()?;
                self.index.build(&self.bytes);
                b
            }
        }
    }
}

#[cfg(test)]
mod tests;
