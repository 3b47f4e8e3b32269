//! Path and key templates: `${tag}`, `${tag[N]}`, `${hostname}`,
//! `${record.a.b}`, `${chunk_id}`, `${uuid}` and strftime (`%Y`, `%m`, ...)
//! of the event time in the agent's time zone.

use chrono::format::Item;
use chrono_tz::Tz;
use fuwa_api::msgpack::{read_head, skip, Head};
use fuwa_api::EventTime;

use crate::time::{parse_strftime, to_datetime};

#[derive(Debug, Clone)]
enum Part {
    /// literal text and strftime specifiers, rendered together
    Time(Vec<Item<'static>>),
    Literal(String),
    Tag,
    TagIndex(usize),
    Hostname,
    Record(Vec<String>),
    /// left in place by `render`, filled by `finish`
    ChunkId,
    Uuid,
}

#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
    tz: Tz,
    hostname: String,
}

impl Template {
    pub fn parse(src: &str, tz: Tz, hostname: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = src;
        while let Some(i) = rest.find("${") {
            lit.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in `{src}`"))?;
            let name = after[..end].trim();
            flush_lit(&mut parts, &mut lit)?;
            parts.push(match name {
                "tag" => Part::Tag,
                "hostname" => Part::Hostname,
                "chunk_id" => Part::ChunkId,
                "uuid" => Part::Uuid,
                n if n.starts_with("tag[") && n.ends_with(']') => {
                    let idx: usize = n[4..n.len() - 1]
                        .parse()
                        .map_err(|_| format!("`${{{n}}}`: the index must be a number"))?;
                    Part::TagIndex(idx)
                }
                n if n.starts_with("record.") && n.len() > 7 => {
                    Part::Record(n[7..].split('.').map(str::to_string).collect())
                }
                n => {
                    return Err(format!(
                        "unknown placeholder `${{{n}}}` (known: tag, tag[N], hostname, record.FIELD, chunk_id, uuid)"
                    ))
                }
            });
            rest = &after[end + 1..];
        }
        lit.push_str(rest);
        flush_lit(&mut parts, &mut lit)?;
        Ok(Template {
            source: src.to_string(),
            parts,
            tz,
            hostname: hostname.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn uses_time(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Time(_)))
    }

    pub fn uses_record(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Record(_)))
    }

    pub fn uses_tag(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Tag | Part::TagIndex(_)))
    }

    /// Renders everything that depends on the event; `${chunk_id}` and
    /// `${uuid}` stay as placeholders for [`Template::finish`]. Values from
    /// tags and records are sanitised so they cannot add path separators.
    pub fn render(&self, tag: &str, time: EventTime, record: &[u8]) -> String {
        let mut out = String::with_capacity(self.source.len() + 32);
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Time(items) => {
                    use std::fmt::Write;
                    let dt = to_datetime(time, &self.tz);
                    let _ = write!(out, "{}", dt.format_with_items(items.iter()));
                }
                Part::Tag => push_sanitised(&mut out, tag),
                Part::TagIndex(i) => push_sanitised(&mut out, tag.split('.').nth(*i).unwrap_or("")),
                Part::Hostname => push_sanitised(&mut out, &self.hostname),
                Part::Record(path) => {
                    let v = lookup_str(record, path).unwrap_or_else(|| "unknown".to_string());
                    push_sanitised(&mut out, &v)
                }
                Part::ChunkId => out.push_str("${chunk_id}"),
                Part::Uuid => out.push_str("${uuid}"),
            }
        }
        out
    }

    /// Fills the chunk-level placeholders of a rendered key.
    pub fn finish(rendered: &str, chunk_id: &str, uuid: &str) -> String {
        rendered
            .replace("${chunk_id}", chunk_id)
            .replace("${uuid}", uuid)
    }
}

fn flush_lit(parts: &mut Vec<Part>, lit: &mut String) -> Result<(), String> {
    if lit.is_empty() {
        return Ok(());
    }
    if lit.contains('%') {
        parts.push(Part::Time(parse_strftime(lit)?));
    } else {
        parts.push(Part::Literal(lit.clone()));
    }
    lit.clear();
    Ok(())
}

/// Keeps characters that are safe in file paths and S3 keys; everything else
/// (slashes, control characters, spaces) becomes `_`, and `.`/`..` alone
/// become `_` so a value can never climb out of a directory.
fn push_sanitised(out: &mut String, v: &str) {
    if v.is_empty() {
        out.push('_');
        return;
    }
    if v == "." || v == ".." {
        out.push('_');
        return;
    }
    for c in v.chars() {
        if c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '=' | '+' | '@' | ',') {
            out.push(c);
        } else {
            out.push('_');
        }
    }
}

/// Looks up a nested field of a msgpack record and returns it as text
/// (strings as they are, numbers and booleans formatted).
pub fn lookup_str(record: &[u8], path: &[String]) -> Option<String> {
    let pos = lookup(record, path)?;
    let (head, p) = read_head(record, pos).ok()?;
    Some(match head {
        Head::Str(n) | Head::Bin(n) => String::from_utf8_lossy(record.get(p..p + n)?).into_owned(),
        Head::Uint(v) => v.to_string(),
        Head::Int(v) => v.to_string(),
        Head::F64(v) => v.to_string(),
        Head::F32(v) => v.to_string(),
        Head::Bool(b) => b.to_string(),
        _ => return None,
    })
}

/// Offset of the value at `path` inside a msgpack map.
pub fn lookup(record: &[u8], path: &[String]) -> Option<usize> {
    let mut pos = 0;
    for key in path {
        let (head, mut p) = read_head(record, pos).ok()?;
        let n = match head {
            Head::Map(n) => n,
            _ => return None,
        };
        let mut found = None;
        for _ in 0..n {
            let (kh, kp) = read_head(record, p).ok()?;
            let is_key = match kh {
                Head::Str(l) | Head::Bin(l) => record.get(kp..kp + l)? == key.as_bytes(),
                _ => false,
            };
            let vpos = skip(record, p).ok()?;
            if is_key {
                found = Some(vpos);
                break;
            }
            p = skip(record, vpos).ok()?;
        }
        pos = found?;
    }
    Some(pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value;

    fn rec() -> Vec<u8> {
        let v = Value::Map(vec![
            (Value::from("content_type"), Value::from("action_logs")),
            (
                Value::from("a"),
                Value::Map(vec![(Value::from("b"), Value::from(42))]),
            ),
            (Value::from("evil"), Value::from("../../etc/passwd")),
        ]);
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &v).unwrap();
        out
    }

    #[test]
    fn renders_all_placeholders() {
        let tz = crate::parse_timezone("Asia/Tokyo").unwrap();
        let t = Template::parse(
            "ct=${record.content_type}/year=%Y/month=%m/day=%d/hour=%H/${tag[1]}-${record.a.b}-${hostname}-${chunk_id}.log",
            tz,
            "web-7",
        )
        .unwrap();
        assert!(t.uses_time() && t.uses_record());
        // 2023-11-14T22:13:20Z is 2023-11-15 07:13:20 in Tokyo
        let k = t.render("app.web", EventTime::new(1_700_000_000, 0), &rec());
        assert_eq!(
            k,
            "ct=action_logs/year=2023/month=11/day=15/hour=07/web-42-web-7-${chunk_id}.log"
        );
        assert_eq!(
            Template::finish(&k, "abc", "u"),
            "ct=action_logs/year=2023/month=11/day=15/hour=07/web-42-web-7-abc.log"
        );
    }

    #[test]
    fn values_cannot_escape_directories() {
        let tz = crate::parse_timezone("UTC").unwrap();
        let t = Template::parse("/var/log/${tag}/${record.evil}/x", tz, "h").unwrap();
        let k = t.render("..", EventTime::default(), &rec());
        assert_eq!(k, "/var/log/_/.._.._etc_passwd/x");
    }

    #[test]
    fn bad_templates() {
        let tz = crate::parse_timezone("UTC").unwrap();
        assert!(Template::parse("${nope}", tz, "h").is_err());
        assert!(Template::parse("${tag", tz, "h").is_err());
        assert!(Template::parse("%Q", tz, "h").is_err());
        assert!(Template::parse("${tag[x]}", tz, "h").is_err());
    }
}
