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
