//! The `types` filter: converts record fields, found by dot path, to
//! `integer`, `float`, `bool`, `string`, `time[:FORMAT]` (an RFC 3339 string
//! in UTC) or `array[:DELIMITER]`.
//!
//! A value that does not convert is left as it was (`on_error = "keep"`) or
//! removed (`on_error = "remove"`); it is counted, and a warning naming the
//! field and the value is logged at most once per 10 seconds. The record
//! itself is always kept.

use std::sync::atomic::{AtomicU64, Ordering};

use fuwa_api::config::flatten_dotted;
use fuwa_api::msgpack;
use fuwa_api::ratelimit::RateLimit;
use fuwa_api::record::{self, check_path, Text};
use fuwa_api::{
    BuildContext, ConfigError, ConfigSection, EventTime, Filter, FilterResult, MemoryBound,
    MemoryEnv, Record,
};
use fuwa_parsers::TimeParser;
use rmpv::Value;
use serde::Deserialize;
use toml::Spanned;
use tracing::warn;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TypesConfig {
    /// dot path → type name; nested TOML tables are dot paths too
    #[serde(default)]
    fields: std::collections::BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    on_error: OnError,
}

/// What happens to a field whose value does not convert.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// leave the value as it was
    #[default]
    Keep,
    /// remove the field
    Remove,
}

/// A target type.
#[derive(Debug, Clone)]
enum Conv {
    Integer,
    Float,
    Bool,
    String,
    /// parse with the format, write RFC 3339 in UTC
    Time(TimeParser),
    /// split a string on the delimiter
    Array(String),
}

impl Conv {
    fn parse(s: &str, tz: fuwa_render::time::Tz) -> Result<Conv, String> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        Ok(match (name, arg) {
            ("integer" | "int", None) => Conv::Integer,
            ("float", None) => Conv::Float,
            ("bool" | "boolean", None) => Conv::Bool,
            ("string", None) => Conv::String,
            ("time", None) => Conv::Time(TimeParser::new("auto", tz)?),
            ("time", Some("")) => {
                return Err("`time:` needs a format after the colon, e.g. \"time:%Y-%m-%d %H:%M:%S\" or \"time:rfc3339\"".into())
            }
            ("time", Some(f)) => Conv::Time(TimeParser::new(f, tz)?),
            ("array", None) => Conv::Array(",".into()),
            ("array", Some("")) => {
                return Err("`array:` needs a delimiter after the colon, e.g. \"array:,\"".into())
            }
            ("array", Some(d)) => Conv::Array(d.to_string()),
            ("integer" | "int" | "float" | "bool" | "boolean" | "string", Some(_)) => {
                return Err(format!("`{s}`: only time and array take an argument after `:`"))
            }
            _ => {
                return Err(format!(
                    "unknown type `{s}` (integer, float, bool, string, time, time:FORMAT, array, array:DELIMITER)"
                ))
            }
        })
    }
}

#[derive(Debug)]
struct Field {
    /// the dot path as configured, for messages
    name: String,
    path: Vec<String>,
    conv: Conv,
}

pub struct TypesFilter {
    id: String,
    fields: Vec<Field>,
    on_error: OnError,
    failures: AtomicU64,
    warn_limit: RateLimit,
}

/// Builds the filter from its section (`[[filter]] type = "types"`).
pub fn build(
    section: &ConfigSection<'_>,
    ctx: &BuildContext,
) -> Result<Box<dyn Filter>, Vec<ConfigError>> {
    TypesFilter::from_section(section, ctx).map(|f| Box::new(f) as Box<dyn Filter>)
}

impl TypesFilter {
    pub fn from_section(
        section: &ConfigSection<'_>,
        ctx: &BuildContext,
    ) -> Result<Self, Vec<ConfigError>> {
        let cfg: TypesConfig = section.parse_all()?;
        let tz = fuwa_render::parse_timezone(&ctx.timezone)
            .map_err(|e| vec![section.error("timezone", e)])?;
        let mut flat = Vec::new();
        for (k, v) in &cfg.fields {
            flatten_dotted(k.clone(), v.get_ref(), &v.span(), &mut flat);
        }
        if flat.is_empty() {
            return Err(vec![section.error(
                "fields",
                "needs at least one field, e.g. fields = { status = \"integer\" }",
            )]);
        }
        let mut errors = Vec::new();
        let mut fields = Vec::new();
        for (name, v, span) in flat {
            let key = format!("fields.{name}");
            let at = |msg: String| {
                let mut e = section.error(&key, msg);
                e.span = Some(span.clone());
                e
            };
            let path = match check_path(&name) {
                Ok(p) => p,
                Err(m) => {
                    errors.push(at(m));
                    continue;
                }
            };
            if fields.iter().any(|f: &Field| f.name == name) {
                errors.push(at(format!("`{name}` is configured twice")));
                continue;
            }
            let Some(tname) = v.as_str() else {
                errors.push(at(format!(
                    "must be a type name string (integer, float, bool, string, time:FORMAT, array:DELIMITER), not {}",
                    v.type_str()
                )));
                continue;
            };
            match Conv::parse(tname, tz) {
                Ok(conv) => fields.push(Field { name, path, conv }),
                Err(m) => errors.push(at(m)),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(TypesFilter {
            id: ctx.id.clone(),
            fields,
            on_error: cfg.on_error,
            failures: AtomicU64::new(0),
            warn_limit: RateLimit::new(10_000),
        })
    }

    /// How many values failed to convert since the filter was built.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn failed(&self, field: &Field, value: &Value) {
        let total = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if self.warn_limit.ready() {
            warn!(
                filter = %self.id,
                field = %field.name,
                value = %describe(value),
                failures_total = total,
                action = match self.on_error { OnError::Keep => "kept as it was", OnError::Remove => "removed" },
                "value does not convert to its configured type (further failures are not logged for 10s)"
            );
        }
    }
}

impl Filter for TypesFilter {
    /// Nothing beyond the record being filtered (the input's): a record is converted in place; nothing is kept between records.
    fn memory_bound(&self, _env: &MemoryEnv) -> MemoryBound {
        MemoryBound::new()
    }

    fn column_types(&self) -> Vec<(String, &'static str)> {
        self.fields
            .iter()
            .filter(|f| f.path.len() == 1)
            .map(|f| {
                let t = match f.conv {
                    Conv::Integer => "integer",
                    Conv::Float => "float",
                    Conv::Bool => "bool",
                    Conv::String => "string",
                    Conv::Time(_) => "time",
                    Conv::Array(_) => "array",
                };
                (f.name.clone(), t)
            })
            .collect()
    }

    fn filter(&self, _tag: &str, _time: &mut EventTime, rec: &mut Record) -> FilterResult {
        if !rec.is_map() {
            return FilterResult::Keep;
        }
        for f in &self.fields {
            // the usual case, a number or flag that arrived as a str:
            // converted where it lies, without decoding anything
            let fast = rec.replace_text(&f.path, |t, out| {
                let Text::Str(b) = t else { return None };
                if convert_plain(b, &f.conv, out) {
                    return Some(Ok(()));
                }
                let s = std::str::from_utf8(b).ok()?;
                match convert_str(s, &f.conv)? {
                    Ok(Some(new)) => {
                        match new {
                            Value::Integer(i) => match i.as_i64() {
                                Some(i) => msgpack::write_int(out, i),
                                None => record::encode(out, &Value::Integer(i)),
                            },
                            Value::F64(x) => msgpack::write_f64(out, x),
                            Value::Boolean(b) => out.push(if b { 0xc3 } else { 0xc2 }),
                            Value::Nil => out.push(0xc0),
                            other => record::encode(out, &other),
                        }
                        Some(Ok(()))
                    }
                    Ok(None) => Some(Ok(())),
                    Err(()) => Some(Err(Value::from(s))),
                }
            });
            match fast {
                Some(Some(Ok(()))) => continue,
                Some(Some(Err(text))) => {
                    self.failed(f, &text);
                    if self.on_error == OnError::Remove {
                        rec.delete(&f.path);
                    }
                    continue;
                }
                // not a str, not UTF-8, or a conversion that needs the value
                Some(None) | None => {}
            }
            let converted = rec.update(&f.path, |v| match convert(v, &f.conv) {
                Ok(new) => (new, true),
                Err(()) => {
                    self.failed(f, v);
                    (None, false)
                }
            });
            if converted == Some(false) && self.on_error == OnError::Remove {
                rec.delete(&f.path);
            }
        }
        FilterResult::Keep
    }
}

/// A short text of a value for warnings.
fn describe(v: &Value) -> String {
    let mut s = match v {
        Value::String(s) => format!("{:?}", String::from_utf8_lossy(s.as_bytes())),
        other => other.to_string(),
    };
    if s.len() > 100 {
        let mut cut = 100;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// The text of a string or UTF-8 binary value.
fn as_text(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => s.as_str(),
        Value::Binary(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

/// `""` and `"-"` stand for "no value" in logs: they become nil for the
/// non-string types instead of failing.
fn is_blank(s: &str) -> bool {
    let t = trim(s);
    t.is_empty() || t == "-"
}

/// [`str::trim`], without its Unicode walk when both ends are printable
/// ASCII (the usual case).
fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(z)) if a.is_ascii_graphic() && z.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

/// A sign and the rest.
fn sign(t: &[u8]) -> (bool, &[u8]) {
    match t {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, t),
    }
}

/// A plain decimal integer of up to 18 digits (with an optional sign),
/// read without the general parser; `None` for anything else.
fn small_int(t: &[u8]) -> Option<i64> {
    let (neg, d) = sign(t);
    if d.is_empty() || d.len() > 18 {
        return None;
    }
    let mut v: i64 = 0;
    for &c in d {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as i64;
    }
    Some(if neg { -v } else { v })
}

const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// A plain decimal (`12`, `-3.25`, `.5`) of at most 15 digits, read
/// without the general parser; `None` for anything else. Exact: the digits
/// as an integer are below 2^53 and so is 10^k, so the one division is
/// rounded correctly, as the general parser would round.
fn small_float(t: &[u8]) -> Option<f64> {
    let (neg, d) = sign(t);
    let mut m: u64 = 0;
    let mut digits = 0usize;
    let mut dot = None;
    for (i, &c) in d.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                digits += 1;
                if digits > 15 {
                    return None;
                }
                m = m * 10 + (c - b'0') as u64;
            }
            b'.' if dot.is_none() => dot = Some(i),
            _ => return None,
        }
    }
    if digits == 0 {
        return None;
    }
    let k = dot.map_or(0, |p| d.len() - p - 1);
    let f = m as f64 / POW10[k];
    Some(if neg { -f } else { f })
}

/// An EventTime stored inside a record (ext type 0, 8 bytes).
fn event_time(v: &Value) -> Option<EventTime> {
    match v {
        Value::Ext(0, d) if d.len() == 8 => {
            let secs = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as i64;
            let nanos = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
            (nanos < 1_000_000_000).then_some(EventTime::new(secs, nanos))
        }
        _ => None,
    }
}

fn rfc3339(t: EventTime) -> String {
    let mut out = Vec::with_capacity(30);
    fuwa_render::time::write_rfc3339(&mut out, t);
    String::from_utf8(out).unwrap_or_default()
}

const TWO_63: f64 = 9_223_372_036_854_775_808.0;

/// A whole, finite float as an integer value (i64, or u64 above i64::MAX).
fn whole(f: f64) -> Option<Value> {
    if !f.is_finite() || f.fract() != 0.0 {
        return None;
    }
    if (-TWO_63..TWO_63).contains(&f) {
        Some(Value::from(f as i64))
    } else if (0.0..2.0 * TWO_63).contains(&f) {
        Some(Value::from(f as u64))
    } else {
        None
    }
}

/// Text to an integer: `""`/`"-"` to nil, whole numbers (also written as
/// floats, `"3.0"`) to an integer.
fn integer_text(s: &str) -> Result<Option<Value>, ()> {
    if is_blank(s) {
        return Ok(Some(Value::Nil));
    }
    let t = trim(s);
    if let Some(i) = small_int(t.as_bytes()) {
        Ok(Some(Value::from(i)))
    } else if let Ok(i) = t.parse::<i64>() {
        Ok(Some(Value::from(i)))
    } else if let Ok(u) = t.parse::<u64>() {
        Ok(Some(Value::from(u)))
    } else {
        t.parse::<f64>().ok().and_then(whole).map(Some).ok_or(())
    }
}

/// Text to a finite float.
fn float_text_value(s: &str) -> Result<Option<Value>, ()> {
    if is_blank(s) {
        return Ok(Some(Value::Nil));
    }
    let t = trim(s);
    match small_float(t.as_bytes()).map_or_else(|| t.parse::<f64>(), Ok) {
        Ok(f) if f.is_finite() => Ok(Some(Value::F64(f))),
        _ => Err(()),
    }
}

/// Text to a boolean (true/yes/1/on, false/no/0/off, any case).
fn bool_text(s: &str) -> Result<Option<Value>, ()> {
    if is_blank(s) {
        return Ok(Some(Value::Nil));
    }
    bool_word(trim(s).as_bytes())
        .map(|b| Some(Value::Boolean(b)))
        .ok_or(())
}

/// true/yes/1/on or false/no/0/off, in any case.
fn bool_word(t: &[u8]) -> Option<bool> {
    let mut low = [0u8; 5];
    let low = low.get_mut(..t.len())?;
    for (l, c) in low.iter_mut().zip(t) {
        *l = c.to_ascii_lowercase();
    }
    match &*low {
        b"true" | b"yes" | b"1" | b"on" => Some(true),
        b"false" | b"no" | b"0" | b"off" => Some(false),
        _ => None,
    }
}

/// The usual conversions of a str, a plain number or flag with nothing
/// around it, encoded straight into `out`; false when the general path
/// decides (blanks, spaces, other spellings, other types).
fn convert_plain(b: &[u8], conv: &Conv, out: &mut Vec<u8>) -> bool {
    match conv {
        Conv::Integer => match small_int(b) {
            Some(i) => msgpack::write_int(out, i),
            None => return false,
        },
        Conv::Float => match small_float(b) {
            Some(f) => msgpack::write_f64(out, f),
            None => return false,
        },
        Conv::Bool => match bool_word(b) {
            Some(v) => out.push(if v { 0xc3 } else { 0xc2 }),
            None => return false,
        },
        _ => return false,
    }
    true
}

/// The conversions of a msgpack str without decoding it into a value (the
/// usual case: numbers and flags that arrived as strings); `None` for the
/// conversions that go through [`convert`].
fn convert_str(s: &str, conv: &Conv) -> Option<Result<Option<Value>, ()>> {
    Some(match conv {
        Conv::Integer => integer_text(s),
        Conv::Float => float_text_value(s),
        Conv::Bool => bool_text(s),
        Conv::String => Ok(None),
        Conv::Time(_) | Conv::Array(_) => return None,
    })
}

/// Converts one value. `Ok(None)`: already of the type (or nil), left as
/// is; `Err(())`: does not convert.
fn convert(v: &Value, conv: &Conv) -> Result<Option<Value>, ()> {
    if v.is_nil() {
        return Ok(None);
    }
    match conv {
        Conv::Integer => match v {
            Value::Integer(_) => Ok(None),
            Value::F32(f) => whole(*f as f64).map(Some).ok_or(()),
            Value::F64(f) => whole(*f).map(Some).ok_or(()),
            _ => integer_text(as_text(v).ok_or(())?),
        },
        Conv::Float => match v {
            Value::F64(_) => Ok(None),
            Value::F32(f) => Ok(Some(Value::F64(*f as f64))),
            Value::Integer(i) => Ok(Some(Value::F64(i.as_f64().ok_or(())?))),
            _ => float_text_value(as_text(v).ok_or(())?),
        },
        Conv::Bool => match v {
            Value::Boolean(_) => Ok(None),
            Value::Integer(i) => match i.as_u64() {
                Some(0) => Ok(Some(Value::Boolean(false))),
                Some(1) => Ok(Some(Value::Boolean(true))),
                _ => Err(()),
            },
            _ => bool_text(as_text(v).ok_or(())?),
        },
        Conv::String => match v {
            Value::String(_) => Ok(None),
            Value::Binary(b) => std::str::from_utf8(b)
                .map(|s| Some(Value::from(s)))
                .map_err(|_| ()),
            Value::Integer(i) => Ok(Some(Value::from(i.to_string()))),
            Value::F32(f) => float_text(*f as f64),
            Value::F64(f) => float_text(*f),
            Value::Boolean(b) => Ok(Some(Value::from(b.to_string()))),
            Value::Map(_) | Value::Array(_) => fuwa_render::value_json(v)
                .map(|s| Some(Value::from(s)))
                .ok_or(()),
            Value::Ext(..) => event_time(v)
                .map(|t| Some(Value::from(rfc3339(t))))
                .ok_or(()),
            Value::Nil => Ok(None),
        },
        Conv::Time(parser) => {
            if let Some(t) = event_time(v) {
                return Ok(Some(Value::from(rfc3339(t))));
            }
            let text = match v {
                Value::Integer(i) => i.to_string(),
                Value::F32(f) => ryu_text(*f as f64).ok_or(())?,
                Value::F64(f) => ryu_text(*f).ok_or(())?,
                _ => {
                    let s = as_text(v).ok_or(())?;
                    if is_blank(s) {
                        return Ok(Some(Value::Nil));
                    }
                    s.to_string()
                }
            };
            parser
                .parse(&text)
                .map(|t| Some(Value::from(rfc3339(t))))
                .map_err(|_| ())
        }
        Conv::Array(delim) => match v {
            Value::Array(_) => Ok(None),
            _ => {
                let s = as_text(v).ok_or(())?;
                if s.is_empty() {
                    return Ok(Some(Value::Array(Vec::new())));
                }
                Ok(Some(Value::Array(
                    s.split(delim.as_str()).map(Value::from).collect(),
                )))
            }
        },
    }
}

/// Floats as the JSON output writes them (`1.5`, `3.0`, `1e100`); NaN and
/// infinities have no text.
fn ryu_text(f: f64) -> Option<String> {
    f.is_finite()
        .then(|| fuwa_render::value_json(&Value::F64(f)))
        .flatten()
}

fn float_text(f: f64) -> Result<Option<Value>, ()> {
    ryu_text(f).map(|s| Some(Value::from(s))).ok_or(())
}

#[cfg(test)]
mod tests;
