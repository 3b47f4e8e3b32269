//! The `record` filter (Fluentd's `record_transformer` and `rename_key` in
//! one): `keep` only some fields, `remove` fields, `rename` fields and `set`
//! fields from templates (`${tag}`, `${tag[N]}`, `${hostname}`, `${time}`,
//! `${record.a.b}`), all by dot path.
//!
//! Order, for every record: the `set` templates are rendered from the record
//! as it arrived; then `keep`, `remove`, `rename`; then the rendered `set`
//! values are written. The record is always kept.
//!
//! The templates share their `${...}` syntax with the outputs' path
//! templates (`fuwa_render::template::pieces`), not their meaning: a value
//! here is not sanitised for a path, keeps `%` as it is, may take
//! `${time}` and negative tag indexes, and `${record.a}` alone keeps the
//! value's type.

use std::collections::BTreeMap;
use std::ops::Range;

use fuwa_api::config::flatten_dotted;
use fuwa_api::record;
use fuwa_api::record::check_path;
use fuwa_api::{
    BuildContext, ConfigError, ConfigSection, EventTime, Filter, FilterResult, MemoryBound,
    MemoryEnv, Record,
};
use fuwa_render::template::{pieces, Piece};
use rmpv::Value;
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordConfig {
    /// path → template string, or a number/boolean written as it is
    #[serde(default)]
    set: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    remove: Vec<Spanned<String>>,
    /// when present, only these fields are kept (`[]`: start from `{}`)
    keep: Option<Vec<Spanned<String>>>,
    /// old path → new path
    #[serde(default)]
    rename: BTreeMap<String, Spanned<toml::Value>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Tag,
    /// 0-based; negative counts from the end (`-1` is the last part)
    TagIndex(i64),
    Hostname,
    Time,
    Record(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum SetValue {
    /// a number, a boolean, or a string without placeholders
    Literal(Value),
    /// exactly `${record.PATH}`: the value itself, with its type
    Whole(Vec<String>),
    Template(Vec<Part>),
}

#[derive(Debug)]
struct Set {
    path: Vec<String>,
    value: SetValue,
    /// the value already encoded, when it is the same for every record
    constant: Option<Vec<u8>>,
}

pub struct RecordFilter {
    hostname: String,
    keep: Option<Vec<Vec<String>>>,
    remove: Vec<Vec<String>>,
    /// (from, to), in `to` order
    rename: Vec<(Vec<String>, Vec<String>)>,
    set: Vec<Set>,
}

/// Builds the filter from its section (`[[filter]] type = "record"`).
pub fn build(
    section: &ConfigSection<'_>,
    ctx: &BuildContext,
) -> Result<Box<dyn Filter>, Vec<ConfigError>> {
    RecordFilter::from_section(section, ctx).map(|f| Box::new(f) as Box<dyn Filter>)
}

/// `a` is `b` or one of its ancestors.
fn covers(a: &[String], b: &[String]) -> bool {
    a.len() <= b.len() && a == &b[..a.len()]
}

/// Parses a template; `Literal` when it has no placeholder.
fn parse_template(src: &str) -> Result<SetValue, String> {
    let mut parts = Vec::new();
    for piece in pieces(src)? {
        let name = match piece {
            Piece::Literal(s) => {
                parts.push(Part::Lit(s.to_string()));
                continue;
            }
            Piece::Placeholder(name) => name,
        };
        let index = |inner: &str| {
            inner.parse::<i64>().map_err(|_| {
                format!(
                    "`${{{name}}}`: the index must be a number (0 is the first part, -1 the last)"
                )
            })
        };
        parts.push(match name {
            "tag" => Part::Tag,
            "hostname" => Part::Hostname,
            "time" => Part::Time,
            n if n.starts_with("tag[") && n.ends_with(']') => {
                Part::TagIndex(index(&n[4..n.len() - 1])?)
            }
            n if n.starts_with("tag_parts[") && n.ends_with(']') => {
                Part::TagIndex(index(&n[10..n.len() - 1])?)
            }
            n if n.starts_with("record.") => {
                Part::Record(check_path(&n[7..]).map_err(|e| format!("`${{{n}}}`: {e}"))?)
            }
            n => {
                return Err(format!(
                "unknown placeholder `${{{n}}}` (known: tag, tag[N], hostname, time, record.FIELD)"
            ))
            }
        });
    }
    Ok(match parts.as_slice() {
        [] => SetValue::Literal(Value::from("")),
        [Part::Lit(s)] => SetValue::Literal(Value::from(s.as_str())),
        [Part::Record(p)] => SetValue::Whole(p.clone()),
        _ => SetValue::Template(parts),
    })
}

impl RecordFilter {
    pub fn from_section(
        section: &ConfigSection<'_>,
        ctx: &BuildContext,
    ) -> Result<Self, Vec<ConfigError>> {
        let cfg: RecordConfig = section.parse_all()?;
        let mut errors = Vec::new();
        let at = |key: String, span: Range<usize>, msg: String| {
            let mut e = section.error(&key, msg);
            e.span = Some(span);
            e
        };

        // set
        let mut flat = Vec::new();
        for (k, v) in &cfg.set {
            flatten_dotted(k.clone(), v.get_ref(), &v.span(), &mut flat);
        }
        let mut set: Vec<Set> = Vec::new();
        for (name, v, span) in flat {
            let key = format!("set.{name}");
            let path = match check_path(&name) {
                Ok(p) => p,
                Err(m) => {
                    errors.push(at(key, span, m));
                    continue;
                }
            };
            if set.iter().any(|s| s.path == path) {
                errors.push(at(key, span, format!("`{name}` is set twice")));
                continue;
            }
            let value = match v {
                toml::Value::String(s) => parse_template(s),
                toml::Value::Integer(i) => Ok(SetValue::Literal(Value::from(*i))),
                toml::Value::Float(f) => Ok(SetValue::Literal(Value::F64(*f))),
                toml::Value::Boolean(b) => Ok(SetValue::Literal(Value::Boolean(*b))),
                other => Err(format!(
                    "must be a string (a template), an integer, a float or a boolean, not {}",
                    other.type_str()
                )),
            };
            match value {
                Ok(value) => set.push(Set {
                    path,
                    value,
                    constant: None,
                }),
                Err(m) => errors.push(at(key, span, m)),
            }
        }

        // parents are set before their children
        set.sort_by(|a, b| a.path.cmp(&b.path));

        // keep: a path under another kept path adds nothing
        let keep = cfg.keep.as_ref().map(|list| {
            let mut paths: Vec<Vec<String>> = Vec::new();
            for (i, p) in list.iter().enumerate() {
                match check_path(p.get_ref()) {
                    Ok(path) => paths.push(path),
                    Err(m) => errors.push(at(format!("keep[{i}]"), p.span(), m)),
                }
            }
            let all = paths.clone();
            paths.retain(|p| !all.iter().any(|q| q.len() < p.len() && covers(q, p)));
            let mut seen = Vec::new();
            paths.retain(|p| {
                let new = !seen.contains(p);
                seen.push(p.clone());
                new
            });
            paths
        });

        let mut remove = Vec::new();
        for (i, p) in cfg.remove.iter().enumerate() {
            match check_path(p.get_ref()) {
                Ok(path) => remove.push(path),
                Err(m) => errors.push(at(format!("remove[{i}]"), p.span(), m)),
            }
        }

        // rename: sources must not overlap, targets must differ
        let mut flat = Vec::new();
        for (k, v) in &cfg.rename {
            flatten_dotted(k.clone(), v.get_ref(), &v.span(), &mut flat);
        }
        let mut rename: Vec<(Vec<String>, Vec<String>)> = Vec::new();
        for (name, v, span) in flat {
            let key = format!("rename.{name}");
            let from = match check_path(&name) {
                Ok(p) => p,
                Err(m) => {
                    errors.push(at(key, span, m));
                    continue;
                }
            };
            let Some(to) = v.as_str() else {
                errors.push(at(
                    key,
                    span,
                    format!("must be the new name (a string), not {}", v.type_str()),
                ));
                continue;
            };
            let to = match check_path(to) {
                Ok(p) => p,
                Err(m) => {
                    errors.push(at(key, span, m));
                    continue;
                }
            };
            if let Some((f, _)) = rename
                .iter()
                .find(|(f, _)| covers(f, &from) || covers(&from, f))
            {
                errors.push(at(
                    key,
                    span,
                    format!(
                        "`{name}` overlaps `{}`, also renamed: rename the parent or the child, not both",
                        f.join(".")
                    ),
                ));
                continue;
            }
            if let Some((f, _)) = rename.iter().find(|(_, t)| *t == to) {
                errors.push(at(
                    key,
                    span,
                    format!(
                        "`{name}` and `{}` are both renamed to `{}`",
                        f.join("."),
                        to.join(".")
                    ),
                ));
                continue;
            }
            rename.push((from, to));
        }
        // parents are written before their children
        rename.sort_by(|a, b| a.1.cmp(&b.1));

        if !errors.is_empty() {
            return Err(errors);
        }
        if set.is_empty() && remove.is_empty() && keep.is_none() && rename.is_empty() {
            return Err(vec![section.error(
                "set",
                "nothing to do: give at least one of set, remove, keep or rename",
            )]);
        }
        let mut f = RecordFilter {
            hostname: ctx.hostname.clone(),
            keep,
            remove,
            rename,
            set,
        };
        let constants: Vec<Option<Vec<u8>>> = f.set.iter().map(|s| f.constant(&s.value)).collect();
        for (s, c) in f.set.iter_mut().zip(constants) {
            s.constant = c;
        }
        Ok(f)
    }

    fn render(&self, v: &SetValue, tag: &str, time: EventTime, rec: &Record) -> Value {
        match v {
            SetValue::Literal(v) => v.clone(),
            SetValue::Whole(p) => rec.get(p).unwrap_or(Value::Nil),
            SetValue::Template(parts) => {
                let mut out = String::new();
                for p in parts {
                    match p {
                        Part::Lit(s) => out.push_str(s),
                        Part::Tag => out.push_str(tag),
                        Part::TagIndex(i) => out.push_str(tag_part(tag, *i)),
                        Part::Hostname => out.push_str(&self.hostname),
                        Part::Time => out.push_str(&rfc3339(time)),
                        Part::Record(path) => {
                            if let Some(v) = rec.get(path) {
                                push_text(&mut out, &v)
                            }
                        }
                    }
                }
                Value::from(out)
            }
        }
    }

    /// The encoded value of a `set` that is the same for every record (a
    /// literal, or a template of literal text and `${hostname}`).
    fn constant(&self, v: &SetValue) -> Option<Vec<u8>> {
        let value = match v {
            SetValue::Literal(v) => v.clone(),
            SetValue::Whole(_) => return None,
            SetValue::Template(parts) => {
                let mut out = String::new();
                for p in parts {
                    match p {
                        Part::Lit(s) => out.push_str(s),
                        Part::Hostname => out.push_str(&self.hostname),
                        _ => return None,
                    }
                }
                Value::from(out)
            }
        };
        let mut b = Vec::new();
        record::encode(&mut b, &value);
        Some(b)
    }
}

fn tag_part(tag: &str, i: i64) -> &str {
    if i >= 0 {
        tag.split('.').nth(i as usize).unwrap_or("")
    } else {
        tag.rsplit('.').nth((-(i + 1)) as usize).unwrap_or("")
    }
}

fn rfc3339(t: EventTime) -> String {
    let mut out = Vec::with_capacity(30);
    fuwa_render::time::write_rfc3339(&mut out, t);
    String::from_utf8(out).unwrap_or_default()
}

/// A value inside a larger template: strings as they are, nil as nothing,
/// everything else as the JSON output writes it (an EventTime as RFC 3339).
fn push_text(out: &mut String, v: &Value) {
    match v {
        Value::Nil => {}
        Value::String(s) => out.push_str(&String::from_utf8_lossy(s.as_bytes())),
        Value::Binary(b) => out.push_str(&String::from_utf8_lossy(b)),
        other => {
            if let Some(j) = fuwa_render::value_json(other) {
                match j.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    Some(inner) if !other.is_map() && !other.is_array() => out.push_str(inner),
                    _ => out.push_str(&j),
                }
            }
        }
    }
}

impl Filter for RecordFilter {
    /// Nothing beyond the record being filtered (the input's): a record is edited in place; nothing is kept between records.
    fn memory_bound(&self, _env: &MemoryEnv) -> MemoryBound {
        MemoryBound::new()
    }

    fn filter(&self, tag: &str, time: &mut EventTime, rec: &mut Record) -> FilterResult {
        if !rec.is_map() {
            return FilterResult::Keep;
        }
        // 1. templates see the record as it arrived
        let values: Vec<Option<Value>> = if self.set.iter().all(|s| s.constant.is_some()) {
            Vec::new()
        } else {
            self.set
                .iter()
                .map(|s| match s.constant {
                    Some(_) => None,
                    None => Some(self.render(&s.value, tag, *time, rec)),
                })
                .collect()
        };
        // 2. keep
        if let Some(keep) = &self.keep {
            if let Some(rec) = rec.value_mut() {
                let mut old = std::mem::replace(rec, Value::Map(Vec::new()));
                for p in keep {
                    if let Some(v) = record::remove(&mut old, p) {
                        record::set(rec, p, v);
                    }
                }
            }
        }
        // 3. remove (every copy of a key that appears twice)
        for p in &self.remove {
            rec.delete_all(p);
        }
        // 4. rename: every source is taken out first, then written
        if !self.rename.is_empty() {
            let taken: Vec<Option<Value>> = self
                .rename
                .iter()
                .map(|(from, _)| rec.remove(from))
                .collect();
            for ((_, to), v) in self.rename.iter().zip(taken) {
                if let Some(v) = v {
                    rec.set(to, v);
                }
            }
        }
        // 5. set, parents before children
        let mut rendered = values.into_iter();
        for s in &self.set {
            let v = rendered.next().flatten();
            match (&s.constant, v) {
                (Some(b), _) => rec.set_encoded(&s.path, b),
                (None, Some(v)) => rec.set(&s.path, v),
                (None, None) => {}
            }
        }
        FilterResult::Keep
    }
}

#[cfg(test)]
mod tests;
