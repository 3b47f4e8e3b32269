//! JSON lines → msgpack records, transcoded in one pass (no intermediate
//! value tree), taking the time field out on the way.

use std::fmt;

use fuwa_api::msgpack;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserializer as _;

use crate::{write_typed, FieldType, ParseError, Parsed, Parser};

pub(crate) fn parse(line: &str, p: &Parser) -> Result<Parsed, ParseError> {
    let mut out = Vec::with_capacity(line.len() + 16);
    let mut time_raw: Option<String> = None;
    let mut de = serde_json::Deserializer::from_str(line);
    de.deserialize_map(Top {
        out: &mut out,
        parser: p,
        time_raw: &mut time_raw,
    })
    .map_err(|e| ParseError::NoMatch(format!("invalid JSON: {e}")))?;
    de.end()
        .map_err(|e| ParseError::NoMatch(format!("invalid JSON: {e}")))?;
    let time = match (time_raw, p.time_parser()) {
        (Some(v), Some(tp)) => Some(tp.parse(&v).map_err(|why| ParseError::Time {
            value: v.clone(),
            why,
        })?),
        _ => None,
    };
    Ok(Parsed { time, record: out })
}

/// Writes a 5-byte container header now and fixes it once the count is known.
fn begin(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; 5]);
    at
}

fn end(out: &mut Vec<u8>, at: usize, n: u32, map: bool) {
    let mut h = Vec::with_capacity(5);
    if map {
        msgpack::write_map_len(&mut h, n);
    } else {
        msgpack::write_array_len(&mut h, n);
    }
    if h.len() < 5 {
        out.copy_within(at + 5.., at + h.len());
        out.truncate(out.len() - (5 - h.len()));
    }
    out[at..at + h.len()].copy_from_slice(&h);
}

struct Top<'a> {
    out: &'a mut Vec<u8>,
    parser: &'a Parser,
    time_raw: &'a mut Option<String>,
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        let at = begin(self.out);
        let mut n = 0u32;
        let time_key = self.parser.time_key();
        while let Some((kstart, kr)) = m.next_key_seed(Key { out: self.out })? {
            // compare bytes: no UTF-8 check per key unless a type is asked for
            if time_key.is_some_and(|t| t.as_bytes() == &self.out[kr.clone()]) {
                let v: serde_json::Value = m.next_value()?;
                *self.time_raw = Some(match &v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                if self.parser.keep_time_key() {
                    crate::json_value_to_msgpack(self.out, &v);
                    n += 1;
                } else {
                    // drop the key just written
                    self.out.truncate(kstart);
                }
                continue;
            }
            let ft = if self.parser.has_types() {
                self.parser
                    .field_type(std::str::from_utf8(&self.out[kr]).unwrap_or(""))
            } else {
                None
            };
            match ft {
                Some(t) => {
                    let v: serde_json::Value = m.next_value()?;
                    match (&v, t) {
                        (serde_json::Value::String(s), _) => write_typed(self.out, s, t),
                        (_, FieldType::String) if !v.is_null() => {
                            msgpack::write_str(self.out, v.to_string().as_bytes())
                        }
                        _ => crate::json_value_to_msgpack(self.out, &v),
                    }
                }
                None => m.next_value_seed(Value { out: self.out })?,
            }
            n += 1;
        }
        end(self.out, at, n, true);
        Ok(())
    }
}

struct Key<'a> {
    out: &'a mut Vec<u8>,
}

/// Writes a key and returns where it starts and where its text is.
impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = (usize, std::ops::Range<usize>);
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = (usize, std::ops::Range<usize>);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
        let start = self.out.len();
        msgpack::write_str(self.out, s.as_bytes());
        Ok((start, self.out.len() - s.len()..self.out.len()))
    }
}

struct Value<'a> {
    out: &'a mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for Value<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Value<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.out.push(if v { 0xc3 } else { 0xc2 });
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        msgpack::write_int(self.out, v);
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        msgpack::write_uint(self.out, v);
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        msgpack::write_f64(self.out, v);
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        msgpack::write_str(self.out, v.as_bytes());
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.out.push(0xc0);
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        self.out.push(0xc0);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
        let at = begin(self.out);
        let mut n = 0;
        while s.next_element_seed(Value { out: self.out })?.is_some() {
            n += 1;
        }
        end(self.out, at, n, false);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        let at = begin(self.out);
        let mut n = 0;
        while m.next_key_seed(Key { out: self.out })?.is_some() {
            m.next_value_seed(Value { out: self.out })?;
            n += 1;
        }
        end(self.out, at, n, true);
        Ok(())
    }
}
