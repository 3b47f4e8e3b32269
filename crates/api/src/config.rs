//! Config sections handed to plugins, with the source spans needed to report
//! `FILE:LINE: key: what is wrong`, and the human size/duration types.

use std::fmt;
use std::ops::Range;

use serde::de::{DeserializeOwned, IntoDeserializer};
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
    /// wrong types come back with the span and dotted key of the problem (the
    /// first one; [`ConfigSection::parse_all`] finds them all).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        self.parse_value(self.value.clone()).map_err(|(e, _)| e)
    }

    /// Like [`ConfigSection::parse`], but with every key that is wrong: serde
    /// stops at the first, so the key it stopped at is taken out and the
    /// section read again, until it reads or nothing more can be taken out.
    /// A key taken out is not reported again as missing.
    pub fn parse_all<T: DeserializeOwned>(&self) -> Result<T, Vec<ConfigError>> {
        let mut value = self.value.clone();
        let mut errors = Vec::new();
        let mut removed: Vec<String> = Vec::new();
        loop {
            let (e, top) = match self.parse_value::<T>(value.clone()) {
                Ok(t) if errors.is_empty() => return Ok(t),
                Ok(_) => return Err(errors),
                Err(e) => e,
            };
            if removed
                .iter()
                .any(|k| e.message == format!("missing field `{k}`"))
            {
                // every key left reads; the one missing was taken out here
                return Err(errors);
            }
            errors.push(e);
            let taken = match (top, value.get_mut()) {
                (Some(k), DeValue::Table(t)) => t.remove(k.as_str()).map(|_| k),
                _ => None,
            };
            match taken {
                Some(k) => removed.push(k),
                None => return Err(errors),
            }
        }
    }

    /// The error, and the top-level key it is under when it is located.
    fn parse_value<T: DeserializeOwned>(
        &self,
        value: Spanned<DeValue<'a>>,
    ) -> Result<T, (ConfigError, Option<String>)> {
        T::deserialize(value.into_deserializer()).map_err(|e| {
            let span = e.span();
            let path = span
                .as_ref()
                .and_then(|s| self.table().and_then(|t| key_at(t, s, "")));
            let top = path.as_deref().and_then(|p| {
                self.table()?
                    .keys()
                    .map(|k| k.get_ref().to_string())
                    .find(|k| p == k || p.starts_with(&format!("{k}.")))
            });
            let key = path
                .map(|k| format!("{}.{}", self.name, k))
                .unwrap_or_else(|| self.name.clone());
            let error = ConfigError {
                span: span.or_else(|| Some(self.value.span())),
                key,
                message: tidy(e.message()),
            };
            (error, top)
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

mod values;
pub use values::{
    human_size, Address, ByteSize, HumanDuration, NonZeroDuration, SizeLimit, MAX_BYTE_SIZE,
    MAX_DURATION,
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::time::Duration;

    #[test]
    fn bounded_types_name_their_range() {
        #[derive(Debug, Deserialize)]
        struct T {
            t: Option<NonZeroDuration<{ 365 * 86_400 }>>,
            u: Option<NonZeroDuration>,
            s: Option<SizeLimit<{ 1 << 20 }>>,
            a: Option<Address>,
        }
        let parse = |src: &str| ConfigSection::from_toml("x", src).unwrap().parse::<T>();
        let msg = |src: &str| parse(src).unwrap_err().message;
        assert_eq!(
            parse("t = \"365d\"").unwrap().t.unwrap().0.as_secs(),
            365 * 86_400
        );
        assert!(msg("t = \"366d\"").starts_with("must be more than 0 and at most 365d"));
        assert!(msg("t = 0").starts_with("must be more than 0 and at most 365d"));
        assert!(msg("u = \"0s\"").starts_with("must be more than 0: "));
        assert_eq!(parse("u = \"1h\"").unwrap().u.unwrap().0.as_secs(), 3600);
        assert_eq!(parse("s = \"1MiB\"").unwrap().s.unwrap().0, 1 << 20);
        assert_eq!(msg("s = \"2MiB\""), "must be more than 0 and at most 1MiB");
        assert_eq!(msg("s = 0"), "must be more than 0 and at most 1MiB");
        assert_eq!(
            parse("a = \"[::1]:9880\"").unwrap().a.unwrap().0.port(),
            9880
        );
        assert!(msg("a = \"localhost:80\"").starts_with("`localhost:80` is not an address like"));
        assert_eq!(human_size(1 << 40), "1TiB");
        assert_eq!(human_size(1500), "1500B");
    }

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("8MiB").unwrap().0, 8 << 20);
        assert_eq!(ByteSize::parse("512KB").unwrap().0, 512_000);
        assert_eq!(ByteSize::parse("1000KiB").unwrap().0, 1_024_000);
        assert_eq!(ByteSize::parse("42").unwrap().0, 42);
        assert!(ByteSize::parse("8 parsecs").is_err());
        assert!(ByteSize::parse("MiB").is_err());
        assert!(ByteSize::parse(".").is_err());
        assert!(ByteSize::parse("1e20").is_err());
        assert!(ByteSize::parse("99999999999999999999TiB").is_err());
        assert!(ByteSize::parse("2PiB").is_err());
        assert_eq!(ByteSize::parse("1.5KiB").unwrap().0, 1536);
    }

    #[test]
    fn durations_and_sizes_out_of_range_are_errors_not_panics() {
        for bad in [
            "1e20",
            "1e400",
            "inf",
            "nan",
            "-1",
            "-5s",
            "999999999999h",
            "1e300s",
        ] {
            let e = HumanDuration::parse(bad).expect_err(bad);
            assert!(e.contains("duration"), "{bad}: {e}");
        }
        assert!(HumanDuration::parse("30000d").is_ok());
        assert!(HumanDuration::parse("30000d30000d").is_err());
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct T {
            d: Option<HumanDuration>,
            s: Option<ByteSize>,
        }
        let de = |src: &str| toml::from_str::<T>(src).map_err(|e| e.message().to_string());
        let e = de("s = -5").unwrap_err();
        assert!(e.contains("-5 is negative") && e.contains("8MiB"), "{e}");
        let e = de("s = 1.5").unwrap_err();
        assert!(e.contains("whole number"), "{e}");
        let e = de("s = true").unwrap_err();
        assert!(e.contains("a size like"), "{e}");
        let e = de("d = 1e20").unwrap_err();
        assert!(e.contains("100 years"), "{e}");
        let e = de("d = -3").unwrap_err();
        assert!(e.contains("not a duration"), "{e}");
        let e = de("d = [1]").unwrap_err();
        assert!(e.contains("a duration like"), "{e}");
        assert_eq!(
            de("d = 2").unwrap().d,
            Some(HumanDuration(Duration::from_secs(2)))
        );
        assert_eq!(de("s = 7").unwrap().s, Some(ByteSize(7)));
    }

    proptest::proptest! {
        #[test]
        fn any_string_parses_or_errs(s in "[0-9.eE+-]{0,30}[a-zA-Zµ]{0,4}([0-9.]{0,30}[a-z]{0,3}){0,3}") {
            let _ = ByteSize::parse(&s);
            if let Ok(d) = HumanDuration::parse(&s) {
                proptest::prop_assert!(d.0 <= MAX_DURATION);
            }
            if let Ok(b) = ByteSize::parse(&s) {
                proptest::prop_assert!(b.0 <= MAX_BYTE_SIZE);
            }
        }
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
