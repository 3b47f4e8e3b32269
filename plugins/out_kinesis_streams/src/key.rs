//! The `partition_key` template: literals, `${tag}`, `${tag[N]}`,
//! `${hostname}`, `${record.a.b}` and `${md5}` (the hex MD5 of the record's
//! data, kinesis-agent's DETERMINISTIC). Unset: a random key per record,
//! shaped like kinesis-agent's RANDOM (a decimal number below 1,000,000).
//!
//! Kinesis wants 1 to 256 Unicode characters: a longer rendered key is cut
//! to its first 256 characters (still deterministic, so one value keeps one
//! shard); an empty one, or one whose record field is missing, becomes a
//! random key and is counted.

use fuwa_render::template::lookup_str;
use md5::{Digest, Md5};
use rand::Rng;

/// Kinesis's limit on a partition key, in Unicode characters.
pub const MAX_KEY_CHARS: usize = 256;

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Tag,
    TagIndex(usize),
    Hostname,
    Record(Vec<String>),
    Md5,
}

#[derive(Debug, Clone)]
pub struct KeyTemplate {
    parts: Vec<Part>,
    hostname: String,
}

/// How a key was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Template,
    /// no template: random by design
    Random,
    /// the template's field was missing (or the key came out empty)
    Fallback,
}

impl KeyTemplate {
    pub fn parse(src: &str, hostname: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = src;
        while let Some(i) = rest.find("${") {
            if i > 0 {
                parts.push(Part::Literal(rest[..i].to_string()));
            }
            let after = &rest[i + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in `{src}`"))?;
            let name = after[..end].trim();
            parts.push(match name {
                "tag" => Part::Tag,
                "hostname" => Part::Hostname,
                "md5" => Part::Md5,
                n if n.starts_with("tag[") && n.ends_with(']') => Part::TagIndex(
                    n[4..n.len() - 1]
                        .parse()
                        .map_err(|_| format!("`${{{n}}}`: the index must be a number"))?,
                ),
                n if n.starts_with("record.") && n.len() > 7 => {
                    let path: Vec<String> = n[7..].split('.').map(str::to_string).collect();
                    if path.iter().any(String::is_empty) {
                        return Err(format!("`${{{n}}}`: an empty field name"));
                    }
                    Part::Record(path)
                }
                n => {
                    return Err(format!(
                        "unknown placeholder `${{{n}}}` (known: tag, tag[N], hostname, record.FIELD, md5)"
                    ))
                }
            });
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        if parts.is_empty() {
            return Err("empty: unset it for a random key per record".into());
        }
        if let [Part::Literal(l)] = parts.as_slice() {
            if l.chars().count() > MAX_KEY_CHARS {
                return Err(format!(
                    "a literal key of more than {MAX_KEY_CHARS} characters"
                ));
            }
        }
        Ok(KeyTemplate {
            parts,
            hostname: hostname.to_string(),
        })
    }

    pub fn uses_md5(&self) -> bool {
        self.parts.contains(&Part::Md5)
    }

    /// The key of one record; `data` is what is sent (for `${md5}`).
    pub fn render(&self, tag: &str, record: &[u8], data: &[u8]) -> (String, KeySource) {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Tag => out.push_str(tag),
                Part::TagIndex(i) => out.push_str(tag.split('.').nth(*i).unwrap_or("")),
                Part::Hostname => out.push_str(&self.hostname),
                Part::Record(path) => match lookup_str(record, path) {
                    Some(v) => out.push_str(&v),
                    None => return (random_key(), KeySource::Fallback),
                },
                Part::Md5 => out.push_str(&md5_hex(data)),
            }
        }
        if out.is_empty() {
            return (random_key(), KeySource::Fallback);
        }
        if let Some((cut, _)) = out.char_indices().nth(MAX_KEY_CHARS) {
            out.truncate(cut);
        }
        (out, KeySource::Template)
    }
}

/// Lowercase hex MD5, as kinesis-agent's DETERMINISTIC option (Guava's
/// `HashCode.toString()`) writes it.
pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// kinesis-agent's RANDOM: `"" + nextDouble(1000000)`.
pub fn random_key() -> String {
    let v: f64 = rand::thread_rng().gen_range(0.0..1_000_000.0);
    let s = v.to_string();
    if s.is_empty() {
        "0".into()
    } else {
        s
    }
}

/// `explicit_hash_key`: a decimal number from 0 to 2^128 - 1.
pub fn check_hash_key(s: &str) -> Result<(), String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{s}` is not a decimal number (0 to 340282366920938463463374607431768211455)"
        ));
    }
    if s.parse::<u128>().is_err() {
        return Err(format!("`{s}` is above 2^128 - 1"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value as V;

    fn rec(pairs: &[(&str, V)]) -> Vec<u8> {
        let m = V::Map(
            pairs
                .iter()
                .map(|(k, v)| (V::from(*k), v.clone()))
                .collect(),
        );
        let mut b = Vec::new();
        rmpv::encode::write_value(&mut b, &m).unwrap();
        b
    }

    #[test]
    fn renders_fields_tags_hostnames_and_literals() {
        let t = KeyTemplate::parse("${tag[1]}-${record.user.id}@${hostname}", "web-1").unwrap();
        let r = rec(&[("user", V::Map(vec![(V::from("id"), V::from(42))]))]);
        assert_eq!(
            t.render("app.api", &r, b""),
            ("api-42@web-1".to_string(), KeySource::Template)
        );
        let t = KeyTemplate::parse("fixed", "h").unwrap();
        assert_eq!(t.render("x", &r, b"").0, "fixed");
        let t = KeyTemplate::parse("${tag}", "h").unwrap();
        assert_eq!(t.render("a.b", &r, b"").0, "a.b");
    }

    #[test]
    fn a_missing_field_falls_back_to_random() {
        let t = KeyTemplate::parse("${record.user_id}", "h").unwrap();
        let (k, src) = t.render("t", &rec(&[("other", V::from(1))]), b"");
        assert_eq!(src, KeySource::Fallback);
        let v: f64 = k.parse().unwrap();
        assert!((0.0..1_000_000.0).contains(&v), "{k}");
        let (_, src) = t.render("t", &rec(&[("user_id", V::from(""))]), b"");
        assert_eq!(src, KeySource::Fallback, "an empty key is not allowed");
    }

    #[test]
    fn md5_is_kinesis_agent_deterministic() {
        let t = KeyTemplate::parse("${md5}", "h").unwrap();
        assert!(t.uses_md5());
        // md5("hello\n")
        assert_eq!(
            t.render("t", &rec(&[]), b"hello\n").0,
            "b1946ac92492d2347c6235b4d2611184"
        );
    }

    #[test]
    fn long_keys_are_cut_to_256_characters() {
        let t = KeyTemplate::parse("${record.k}", "h").unwrap();
        let long = "あ".repeat(300);
        let (k, _) = t.render("t", &rec(&[("k", V::from(long.as_str()))]), b"");
        assert_eq!(k.chars().count(), 256);
        assert!(KeyTemplate::parse(&"x".repeat(257), "h").is_err());
        assert!(KeyTemplate::parse("", "h").is_err());
        assert!(KeyTemplate::parse("${nope}", "h").is_err());
        assert!(KeyTemplate::parse("${record.}", "h").is_err());
        assert!(KeyTemplate::parse("${tag", "h").is_err());
    }

    #[test]
    fn hash_keys_are_128_bit_decimals() {
        assert!(check_hash_key("0").is_ok());
        assert!(check_hash_key("340282366920938463463374607431768211455").is_ok());
        assert!(check_hash_key("340282366920938463463374607431768211456").is_err());
        assert!(check_hash_key("-1").is_err());
        assert!(check_hash_key("").is_err());
    }
}
