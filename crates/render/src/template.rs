//! Path and key templates: `${tag}`, `${tag[N]}`, `${hostname}`,
//! `${record.a.b}`, `${chunk_id}`, `${uuid}` and strftime (`%Y`, `%m`, ...)
//! of the event time in the agent's time zone.
//!
//! Every rendered path or key component (the text between two `/`) is at
//! most [`MAX_COMPONENT`] (255) bytes, the NAME_MAX of every common file
//! system: a longer one becomes its first 238 bytes (cut back to a UTF-8
//! character boundary) + `-` + the first 16 hex digits of the SHA-256 of the
//! whole component, so two long values stay apart. A component holding
//! `${chunk_id}`/`${uuid}` is shortened only by [`Template::finish`], once
//! they are filled, so shortening never cuts away the chunk's identity.
//! Substituted values cannot add `/`, NUL or any other control character,
//! and `.`/`..` alone become `_`, so a value never climbs out of or breaks
//! the directory structure the template gives.

use chrono::format::Item;
use chrono_tz::Tz;
use fuwa_api::msgpack::{read_head, skip, Head};
use fuwa_api::{EventTime, Partitioner};

use sha2::{Digest, Sha256};

use crate::time::{parse_strftime, to_datetime};

/// The longest rendered path or key component, in bytes.
pub const MAX_COMPONENT: usize = 255;
/// What a shortened component keeps of its start: 238 + `-` + 16 hex = 255.
const KEEP: usize = MAX_COMPONENT - 17;

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

/// One piece of a template's source: literal text, or the name inside a
/// `${...}` (trimmed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    Literal(&'a str),
    Placeholder(&'a str),
}

/// Cuts a template's source at its `${NAME}` placeholders, in order. The
/// path templates here and the `record` filter's value templates share this
/// syntax; each gives the names its own meaning (paths are sanitised and
/// take strftime in their literal text, record values are not and do not).
pub fn pieces(src: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find("${") {
        if i > 0 {
            out.push(Piece::Literal(&rest[..i]));
        }
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed `${{` in `{src}`"))?;
        out.push(Piece::Placeholder(after[..end].trim()));
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Literal(rest));
    }
    Ok(out)
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
        for piece in pieces(src)? {
            let name = match piece {
                Piece::Literal(s) => {
                    lit.push_str(s);
                    continue;
                }
                Piece::Placeholder(name) => name,
            };
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
        }
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
        shorten_components(&out, true)
    }

    /// Fills the chunk-level placeholders of a rendered key (and shortens
    /// the components that held them, like `render` does the others).
    pub fn finish(rendered: &str, chunk_id: &str, uuid: &str) -> String {
        let filled = rendered
            .replace("${chunk_id}", chunk_id)
            .replace("${uuid}", uuid);
        shorten_components(&filled, false)
    }
}

/// A template is the partitioner of the outputs that write by path or key
/// (file, s3): everything but `${chunk_id}`/`${uuid}` is rendered per
/// event, so one file or object never mixes two hours, two tags or two
/// record-field values.
impl Partitioner for Template {
    fn uses_time(&self) -> bool {
        Template::uses_time(self)
    }
    fn uses_record(&self) -> bool {
        Template::uses_record(self)
    }
    fn key(&self, tag: &str, time: EventTime, record: &[u8]) -> String {
        self.render(tag, time, record)
    }
}

/// A rendered path with every component over [`MAX_COMPONENT`] bytes
/// shortened (the same rule as `render`): for keys rendered by an older
/// version, kept in buffered chunks and dead letters.
pub fn shorten_path(s: &str) -> String {
    shorten_components(s, false)
}

/// Every component over [`MAX_COMPONENT`] bytes shortened (see the module
/// doc); with `keep_placeholders`, components still holding `${chunk_id}` or
/// `${uuid}` are left for `finish`.
fn shorten_components(s: &str, keep_placeholders: bool) -> String {
    if s.split('/').all(|c| c.len() <= MAX_COMPONENT) {
        return s.to_string();
    }
    let parts: Vec<String> = s
        .split('/')
        .map(|c| {
            let held = keep_placeholders && (c.contains("${chunk_id}") || c.contains("${uuid}"));
            if c.len() <= MAX_COMPONENT || held {
                c.to_string()
            } else {
                shorten(c)
            }
        })
        .collect();
    parts.join("/")
}

/// A component over [`MAX_COMPONENT`] bytes as its first 238 bytes (at a
/// char boundary) + `-` + 16 hex digits of SHA-256 of the whole component.
pub fn shorten(c: &str) -> String {
    let mut end = KEEP.min(c.len());
    while !c.is_char_boundary(end) {
        end -= 1;
    }
    let d = Sha256::digest(c.as_bytes());
    let mut out = String::with_capacity(MAX_COMPONENT);
    out.push_str(&c[..end]);
    out.push('-');
    for b in &d[..8] {
        use std::fmt::Write;
        let _ = write!(out, "{b:02x}");
    }
    out
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
    if v.is_empty() || v == "." || v == ".." {
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

/// What a template keeps of a substituted value (a tag, a tag part, a
/// record field): `fuwa athena-ddl` projects the values a key holds.
pub fn sanitise(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    push_sanitised(&mut out, v);
    out
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
    fn long_components_are_cut_with_a_hash_of_the_whole() {
        let tz = crate::parse_timezone("UTC").unwrap();
        let t = Template::parse("/var/log/${tag}/x-${tag}.log", tz, "h").unwrap();
        let tag = "a".repeat(5000);
        let k = t.render(&tag, EventTime::default(), &rec());
        let comps: Vec<&str> = k.split('/').collect();
        assert_eq!(comps.len(), 5, "{k}");
        assert_eq!(comps[3].len(), 255);
        assert_eq!(comps[4].len(), 255);
        assert!(comps[3].starts_with(&"a".repeat(238)));
        assert_eq!(&comps[3][238..239], "-");
        assert!(comps[3][239..].bytes().all(|b| b.is_ascii_hexdigit()));
        // idempotent, and what an older version rendered comes out the same
        assert_eq!(shorten_path(&k), k);
        assert_eq!(shorten_path(&format!("/var/log/{tag}/x-{tag}.log")), k);
        // another long tag sharing the first 238 bytes goes elsewhere
        let other = format!("{}b", "a".repeat(4999));
        let k2 = t.render(&other, EventTime::default(), &rec());
        assert_ne!(k, k2);
        // a short one is untouched; 255 bytes exactly is kept as it is
        assert_eq!(
            t.render("app", EventTime::default(), &rec()),
            "/var/log/app/x-app.log"
        );
        let t2 = Template::parse("${tag}", tz, "h").unwrap();
        let exact = "é".repeat(127) + "a";
        assert_eq!(t2.render(&exact, EventTime::default(), &rec()), exact);
        // multi-byte characters are never split
        let long = "é".repeat(300);
        let r = t2.render(&long, EventTime::default(), &rec());
        assert!(r.len() <= 255 && r.starts_with(&"é".repeat(119)), "{r}");
    }

    #[test]
    fn placeholders_survive_shortening_and_keep_keys_apart() {
        let tz = crate::parse_timezone("UTC").unwrap();
        let t = Template::parse("p/${tag}-${chunk_id}.gz", tz, "h").unwrap();
        let k = t.render(&"t".repeat(3000), EventTime::default(), &rec());
        assert!(k.contains("${chunk_id}"));
        let a = Template::finish(&k, "chunk-a", "u");
        let b = Template::finish(&k, "chunk-b", "u");
        assert_ne!(a, b);
        assert!(a.split('/').all(|c| c.len() <= 255), "{a}");
        assert_eq!(a, Template::finish(&k, "chunk-a", "u"), "stable per chunk");
    }

    #[test]
    fn control_characters_and_nul_never_reach_a_path() {
        let tz = crate::parse_timezone("UTC").unwrap();
        let t = Template::parse("/d/${tag}/${tag[1]}", tz, "h").unwrap();
        let k = t.render("a\0b\n/../c.\0", EventTime::default(), &rec());
        assert!(!k.contains('\0') && !k.contains('\n'), "{k:?}");
        assert_eq!(k.split('/').count(), 4, "{k:?}");
        assert!(k.split('/').all(|c| c != ".." && c != "."), "{k:?}");
    }

    proptest::proptest! {
        #[test]
        fn every_rendered_component_is_valid(
            tag in proptest::string::string_regex("([a-z./\\x00\n]{0,8}|[a-zé]{200,600}|\\.{1,3})(\\.[a-z./]{0,300}){0,3}").unwrap(),
            field in proptest::string::string_regex("(.{0,40}|x{250,2000}|\\.\\.)").unwrap(),
        ) {
            let tz = crate::parse_timezone("UTC").unwrap();
            let t = Template::parse("/root/${tag}/${tag[1]}/a${record.f}b/${hostname}-%Y.log", tz, "host").unwrap();
            let v = Value::Map(vec![(Value::from("f"), Value::from(field.as_str()))]);
            let mut r = Vec::new();
            rmpv::encode::write_value(&mut r, &v).unwrap();
            let k = t.render(&tag, EventTime::default(), &r);
            let comps: Vec<&str> = k.split('/').collect();
            proptest::prop_assert_eq!(comps.len(), 6, "{:?}", k);
            for c in &comps[1..] {
                proptest::prop_assert!(!c.is_empty() && c.len() <= 255, "{:?}", c);
                proptest::prop_assert!(*c != "." && *c != "..", "{:?}", c);
                proptest::prop_assert!(!c.contains('\0'));
            }
        }
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
