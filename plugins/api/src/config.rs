//! Config sections handed to plugins, with the source spans needed to report
//! `FILE:LINE: key: what is wrong`, and the human size/duration types.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::{Deserialize, Deserializer};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One problem in a config file. `span` is a byte range in the file; the
/// engine turns it into a line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub span: Option<Range<usize>>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// The body of one `[[input]]`, `[[filter]]` or `[[output]]` table, minus
/// the keys the engine owns (`type`, `id`, `match`).
#[derive(Debug, Clone)]
pub struct ConfigSection<'a> {
    /// the section's name in messages, e.g. `output[2]`
    pub name: String,
    pub value: Spanned<DeValue<'a>>,
}

impl<'a> ConfigSection<'a> {
    pub fn new(name: impl Into<String>, value: Spanned<DeValue<'a>>) -> Self {
        ConfigSection {
            name: name.into(),
            value,
        }
    }

    /// A section from TOML text (tests, benchmarks, tools).
    pub fn from_toml(name: impl Into<String>, src: &'a str) -> Result<Self, ConfigError> {
        let t = DeTable::parse(src).map_err(|e| ConfigError {
            span: e.span(),
            key: "syntax".into(),
            message: tidy(e.message()),
        })?;
        let span = t.span();
        Ok(ConfigSection::new(
            name,
            Spanned::new(span, DeValue::Table(t.into_inner())),
        ))
    }

    fn table(&self) -> Option<&DeTable<'a>> {
        match self.value.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        }
    }

    /// Deserializes the section into a plugin's typed config. Unknown keys and
    /// wrong types come back with the span and dotted key of the problem.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        T::deserialize(self.value.clone().into_deserializer()).map_err(|e| {
            let span = e.span();
            let key = span
                .as_ref()
                .and_then(|s| self.table().and_then(|t| key_at(t, s, "")))
                .map(|k| format!("{}.{}", self.name, k))
                .unwrap_or_else(|| self.name.clone());
            ConfigError {
                span: span.or_else(|| Some(self.value.span())),
                key,
                message: tidy(e.message()),
            }
        })
    }

    /// An error about `key` (dotted path inside the section), located at that
    /// key's value when it is present, else at the section.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            span: self.span_of(key).or_else(|| Some(self.value.span())),
            key: format!("{}.{}", self.name, key),
            message: message.into(),
        }
    }

    /// A socket address given under `key` (`value` as configured); the error
    /// shows an `example` of the expected form.
    pub fn socket_addr(
        &self,
        key: &str,
        value: &str,
        example: &str,
    ) -> Result<std::net::SocketAddr, ConfigError> {
        value.parse().map_err(|_| {
            self.error(
                key,
                format!("`{value}` is not an address like \"{example}\""),
            )
        })
    }

    pub fn span_of(&self, key: &str) -> Option<Range<usize>> {
        let mut t = self.table()?;
        let mut parts = key.split('.').peekable();
        while let Some(p) = parts.next() {
            let v = t.get(p)?;
            if parts.peek().is_none() {
                return Some(v.span());
            }
            match v.get_ref() {
                DeValue::Table(inner) => t = inner,
                _ => return Some(v.span()),
            }
        }
        None
    }
}

/// Finds the dotted key whose key or value span contains `span`.
pub fn key_at(t: &DeTable<'_>, span: &Range<usize>, prefix: &str) -> Option<String> {
    for (k, v) in t.iter() {
        let name = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        let ks = k.span();
        if ks.start <= span.start && span.end <= ks.end {
            return Some(name);
        }
        // header tables' spans need not cover their bodies: always look inside
        if let DeValue::Table(inner) = v.get_ref() {
            if let Some(deeper) = key_at(inner, span, &name) {
                return Some(deeper);
            }
        }
        let vs = v.span();
        if vs.start <= span.start && span.end <= vs.end {
            return Some(name);
        }
    }
    None
}

/// Turns `{ a = { b = "x" } }` and `{ "a.b" = "x" }` alike into
/// `("a.b", value, span)` entries (an empty table stays a value); `span` is
/// the span of the top-level entry, for error messages.
pub fn flatten_dotted<'a>(
    prefix: String,
    v: &'a toml::Value,
    span: &Range<usize>,
    out: &mut Vec<(String, &'a toml::Value, Range<usize>)>,
) {
    match v {
        toml::Value::Table(t) if !t.is_empty() => {
            for (k, inner) in t {
                flatten_dotted(format!("{prefix}.{k}"), inner, span, out);
            }
        }
        other => out.push((prefix, other, span.clone())),
    }
}

fn tidy(msg: &str) -> String {
    msg.trim().replace('\n', " ")
}

/// A size in bytes, written as a human string (`"8MiB"`, `"512KB"`, `"1GiB"`)
/// or a plain integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a size (try \"8MiB\" or \"512KB\")"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            other => {
                return Err(format!(
                    "unknown size unit `{other}` in `{s}` (use B, KB, KiB, MB, MiB, GB, GiB)"
                ))
            }
        };
        Ok(ByteSize((n * mult as f64) as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// A duration written as a human string: `"500ms"`, `"30s"`, `"5m"`,
/// `"72h"`, `"1d"`, combinations like `"1m30s"`, or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err("empty duration".into());
        }
        if let Ok(secs) = t.parse::<f64>() {
            if secs.is_finite() && secs >= 0.0 {
                return Ok(HumanDuration(Duration::from_secs_f64(secs)));
            }
        }
        let mut total = Duration::ZERO;
        let mut rest = t;
        while !rest.is_empty() {
            let split = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| format!("`{s}` lacks a unit (ms, s, m, h, d)"))?;
            let (num, tail) = rest.split_at(split);
            let n: f64 = num
                .parse()
                .map_err(|_| format!("`{s}` is not a duration (try \"30s\" or \"5m\")"))?;
            let unit_len = tail
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(tail.len());
            let (unit, after) = tail.split_at(unit_len);
            let secs = match unit.trim() {
                "ns" => n / 1e9,
                "us" | "µs" => n / 1e6,
                "ms" => n / 1e3,
                "s" | "sec" => n,
                "m" | "min" => n * 60.0,
                "h" => n * 3600.0,
                "d" => n * 86400.0,
                other => {
                    return Err(format!(
                        "unknown duration unit `{other}` in `{s}` (use ms, s, m, h, d)"
                    ))
                }
            };
            total += Duration::from_secs_f64(secs);
            rest = after;
        }
        Ok(HumanDuration(total))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(f64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) if n >= 0.0 && n.is_finite() => Ok(HumanDuration(Duration::from_secs_f64(n))),
            Raw::N(n) => Err(serde::de::Error::custom(format!("`{n}` is not a duration"))),
            Raw::S(s) => HumanDuration::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("8MiB").unwrap().0, 8 << 20);
        assert_eq!(ByteSize::parse("512KB").unwrap().0, 512_000);
        assert_eq!(ByteSize::parse("1000KiB").unwrap().0, 1_024_000);
        assert_eq!(ByteSize::parse("42").unwrap().0, 42);
        assert!(ByteSize::parse("8 parsecs").is_err());
        assert!(ByteSize::parse("MiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(
            HumanDuration::parse("30s").unwrap().0,
            Duration::from_secs(30)
        );
        assert_eq!(
            HumanDuration::parse("500ms").unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!(
            HumanDuration::parse("1m30s").unwrap().0,
            Duration::from_secs(90)
        );
        assert_eq!(
            HumanDuration::parse("72h").unwrap().0,
            Duration::from_secs(72 * 3600)
        );
        assert_eq!(
            HumanDuration::parse("1.5").unwrap().0,
            Duration::from_millis(1500)
        );
        assert!(HumanDuration::parse("soon").is_err());
        assert!(HumanDuration::parse("5 fortnights").is_err());
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Demo {
        port: u16,
        #[serde(default)]
        inner: Option<Inner>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        size: ByteSize,
    }

    fn section(src: &str) -> ConfigSection<'_> {
        ConfigSection::from_toml("input[0]", src).expect("section")
    }

    #[test]
    fn errors_name_the_key_and_point_at_it() {
        let src = "port = 1\nbogus = 2\n";
        let e = section(src).parse::<Demo>().unwrap_err();
        assert_eq!(e.key, "input[0].bogus");
        assert!(e.message.contains("unknown field"), "{e:?}");
        assert_eq!(&src[e.span.unwrap()], "bogus");

        let src = "port = \"x\"\n";
        let e = section(src).parse::<Demo>().unwrap_err();
        assert_eq!(e.key, "input[0].port");

        let src = "port = 1\n[inner]\nsize = \"8 bananas\"\n";
        let e = section(src).parse::<Demo>().unwrap_err();
        assert_eq!(
            e.key,
            "input[0].inner.size",
            "{e:?} {:?}",
            &src[e.span.clone().unwrap()]
        );
        assert!(e.message.contains("unknown size unit"), "{e:?}");
    }
}
