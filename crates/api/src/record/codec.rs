//! Value trees to and from msgpack: [`decode`] straight from a slice,
//! [`encode`] into a buffer.

use rmpv::Value;

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
