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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_paths() {
        let mut r = Value::Map(vec![(
            Value::from("a"),
            Value::Map(vec![(Value::from("b"), Value::from(1))]),
        )]);
        assert_eq!(get(&r, &path("a.b")), Some(&Value::from(1)));
        assert_eq!(get(&r, &path("a.c")), None);
        set(&mut r, &path("a.c.d"), Value::from("x"));
        assert_eq!(get_str(&r, &path("a.c.d")), Some("x"));
        set(&mut r, &path("a.b"), Value::from(2));
        assert_eq!(get(&r, &path("a.b")), Some(&Value::from(2)));
        // a scalar in the way becomes a map
        set(&mut r, &path("a.b.z"), Value::from(true));
        assert_eq!(get(&r, &path("a.b.z")), Some(&Value::from(true)));
        assert_eq!(
            remove(&mut r, &path("a.c")),
            Some(Value::Map(vec![(Value::from("d"), Value::from("x"))]))
        );
        assert_eq!(get(&r, &path("a.c")), None);
        assert_eq!(remove(&mut r, &path("nope.x")), None);
    }
}

/// Decodes a msgpack record into a value tree, straight from the slice
/// (faster than going through `io::Read`). Strings that are not UTF-8 keep
/// their bytes.
pub fn decode(buf: &[u8]) -> Result<Value, crate::msgpack::DecodeError> {
    decode_at(buf, 0, 0).map(|(v, _)| v)
}

fn decode_at(
    buf: &[u8],
    pos: usize,
    depth: usize,
) -> Result<(Value, usize), crate::msgpack::DecodeError> {
    use crate::msgpack::{read_head, DecodeError, Head, MAX_DEPTH};
    if depth > MAX_DEPTH {
        return Err(DecodeError::invalid(pos, "nesting too deep"));
    }
    let (head, p) = read_head(buf, pos)?;
    let bytes = |n: usize| {
        buf.get(p..p.saturating_add(n))
            .ok_or(DecodeError::Incomplete)
    };
    Ok(match head {
        Head::Nil => (Value::Nil, p),
        Head::Bool(b) => (Value::Boolean(b), p),
        Head::Uint(u) => (Value::from(u), p),
        Head::Int(i) => (Value::from(i), p),
        Head::F32(f) => (Value::F32(f), p),
        Head::F64(f) => (Value::F64(f), p),
        Head::Str(n) => {
            let b = bytes(n)?;
            let v = match std::str::from_utf8(b) {
                Ok(s) => Value::String(s.into()),
                // keep the bytes: rmpv only builds such strings when decoding
                Err(_) => rmpv::decode::read_value(&mut &buf[pos..p + n])
                    .map_err(|_| DecodeError::invalid(pos, "bad string"))?,
            };
            (v, p + n)
        }
        Head::Bin(n) => (Value::Binary(bytes(n)?.to_vec()), p + n),
        Head::Ext(t, n) => (Value::Ext(t, bytes(n)?.to_vec()), p + n),
        Head::Array(n) => {
            let mut v = Vec::with_capacity(n.min(buf.len().saturating_sub(p)));
            let mut q = p;
            for _ in 0..n {
                let (x, next) = decode_at(buf, q, depth + 1)?;
                v.push(x);
                q = next;
            }
            (Value::Array(v), q)
        }
        Head::Map(n) => {
            let mut v = Vec::with_capacity(n.min(buf.len().saturating_sub(p) / 2));
            let mut q = p;
            for _ in 0..n {
                let (k, next) = decode_at(buf, q, depth + 1)?;
                let (x, next) = decode_at(buf, next, depth + 1)?;
                v.push((k, x));
                q = next;
            }
            (Value::Map(v), q)
        }
    })
}

/// Encodes a value tree as msgpack.
pub fn encode(out: &mut Vec<u8>, v: &Value) {
    use crate::msgpack::*;
    match v {
        Value::Nil => out.push(0xc0),
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => write_uint(out, u),
            (None, Some(s)) => write_int(out, s),
            _ => out.push(0xc0),
        },
        Value::F32(f) => {
            out.push(0xca);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::F64(f) => write_f64(out, *f),
        Value::String(s) => write_str(out, s.as_bytes()),
        Value::Binary(b) => write_bin(out, b),
        Value::Array(a) => {
            write_array_len(out, a.len() as u32);
            for x in a {
                encode(out, x);
            }
        }
        Value::Map(m) => {
            write_map_len(out, m.len() as u32);
            for (k, x) in m {
                encode(out, k);
                encode(out, x);
            }
        }
        Value::Ext(t, d) => {
            let n = d.len();
            match n {
                1 => out.push(0xd4),
                2 => out.push(0xd5),
                4 => out.push(0xd6),
                8 => out.push(0xd7),
                16 => out.push(0xd8),
                n if n <= u8::MAX as usize => out.extend_from_slice(&[0xc7, n as u8]),
                n if n <= u16::MAX as usize => {
                    out.push(0xc8);
                    out.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    out.push(0xc9);
                    out.extend_from_slice(&(n as u32).to_be_bytes());
                }
            }
            out.push(*t as u8);
            out.extend_from_slice(d);
        }
    }
}

#[cfg(test)]
mod codec_tests {
    use super::*;
    use proptest::prelude::*;

    fn arb() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("nan", |f| !f.is_nan())
                .prop_map(Value::from),
            ".{0,20}".prop_map(Value::from),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::Binary),
            (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..40))
                .prop_map(|(t, d)| Value::Ext(t, d)),
        ];
        leaf.prop_recursive(3, 40, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((inner.clone(), inner), 0..6).prop_map(Value::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trips_like_rmpv(v in arb()) {
            let mut ours = Vec::new();
            encode(&mut ours, &v);
            let mut theirs = Vec::new();
            rmpv::encode::write_value(&mut theirs, &v).unwrap();
            prop_assert_eq!(decode(&ours).unwrap(), v.clone());
            prop_assert_eq!(decode(&theirs).unwrap(), v);
        }

        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&b);
        }
    }

    #[test]
    fn invalid_utf8_strings_keep_their_bytes() {
        let b = [0x81, 0xa1, b'k', 0xa2, 0xff, 0xfe];
        let v = decode(&b).unwrap();
        let mut out = Vec::new();
        encode(&mut out, &v);
        assert_eq!(out, b);
    }
}

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
mod record_tests {
    use super::*;

    fn both(v: &Value) -> [Record; 2] {
        let mut b = Vec::new();
        encode(&mut b, v);
        [Record::from_slice(&b), Record::from_value(v.clone())]
    }

    #[test]
    fn bytes_and_tree_answer_alike() {
        let v = Value::Map(vec![
            (Value::from("s"), Value::from("text")),
            (Value::from("b"), Value::Binary(b"bin".to_vec())),
            (Value::from("n"), Value::from(3)),
        ]);
        for mut r in both(&v) {
            assert_eq!(r.text(&path("s")), Some(Text::Str(b"text")));
            assert_eq!(r.text(&path("b")), Some(Text::Bin(b"bin")));
            assert_eq!(r.text(&path("n")), None);
            assert!(r.has(&path("n")) && !r.has(&path("x")));
            assert_eq!(r.get(&path("n")), Some(Value::from(3)));
            r.set(&path("x.y"), Value::from(true));
            r.set_str(&path("s"), "new");
            r.set_encoded(&path("e"), &[0xc0]);
            assert_eq!(r.remove(&path("b")), Some(Value::Binary(b"bin".to_vec())));
            assert!(r.is_map());
            let out = r.into_value().unwrap();
            assert_eq!(
                out,
                Value::Map(vec![
                    (Value::from("s"), Value::from("new")),
                    (Value::from("n"), Value::from(3)),
                    (
                        Value::from("x"),
                        Value::Map(vec![(Value::from("y"), Value::from(true))])
                    ),
                    (Value::from("e"), Value::Nil),
                ])
            );
        }
    }

    #[test]
    fn replace_text_converts_where_the_text_lies() {
        let v = Value::Map(vec![
            (Value::from("a"), Value::from("12")),
            (
                Value::from("x"),
                Value::Map(vec![(Value::from("y"), Value::Binary(b"yes".to_vec()))]),
            ),
            (Value::from("n"), Value::from(3)),
            (Value::from("z"), Value::from("last")),
        ]);
        for mut r in both(&v) {
            // top level: 12 as an integer, the fields after it still found
            let got = r.replace_text(&path("a"), |t, out| {
                assert_eq!(t, Text::Str(b"12"));
                crate::msgpack::write_uint(out, 12);
                "seen"
            });
            assert_eq!(got, Some("seen"));
            assert_eq!(r.text(&path("z")), Some(Text::Str(b"last")));
            // nested, and a bin
            r.replace_text(&path("x.y"), |t, out| {
                assert_eq!(t, Text::Bin(b"yes"));
                out.push(0xc3);
            });
            // nothing written: left as it was
            assert_eq!(r.replace_text(&path("z"), |_, _| 1), Some(1));
            // not text, or absent: f is not called
            assert_eq!(
                r.replace_text(&path("n"), |_, _| unreachable!()),
                None::<()>
            );
            assert_eq!(
                r.replace_text(&path("q"), |_, _| unreachable!()),
                None::<()>
            );
            r.set_str(&path("z"), "longer than before");
            assert_eq!(
                r.into_value().unwrap(),
                Value::Map(vec![
                    (Value::from("a"), Value::from(12)),
                    (
                        Value::from("x"),
                        Value::Map(vec![(Value::from("y"), Value::Boolean(true))])
                    ),
                    (Value::from("n"), Value::from(3)),
                    (Value::from("z"), Value::from("longer than before")),
                ])
            );
        }
    }

    #[test]
    fn tree_round_trips_through_bytes() {
        let v = Value::Map(vec![(Value::from("a"), Value::from(1))]);
        let mut r = Record::from_slice(&{
            let mut b = Vec::new();
            encode(&mut b, &v);
            b
        });
        if let Some(Value::Map(m)) = r.value_mut() {
            m.push((Value::from("b"), Value::from(2)));
        }
        assert!(r.is_tree());
        let b = r.bytes().to_vec();
        assert!(!r.is_tree());
        assert_eq!(decode(&b).unwrap().as_map().map(Vec::len), Some(2));
        r.set(&path("c"), Value::from(3));
        let mut out = Vec::new();
        r.write_to(&mut out);
        assert_eq!(decode(&out).unwrap().as_map().map(Vec::len), Some(3));
    }
}
