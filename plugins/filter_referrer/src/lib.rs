//! The `referrer` filter: parses a Referer URL and classifies where the
//! visit came from.
//!
//! ```toml
//! [[filter]]
//! type = "referrer"
//! key = "referrer"       # source field (dot path allowed)
//! target = "ref"         # {scheme, host, path, query{...}, medium, source, term}
//! own_hosts = ["note.com", "*.note.com"]
//! [filter.search]
//! "example-search.com" = { source = "Example", param = "q" }
//! [filter.social]
//! "example.social" = "Example Social"
//! [filter.email]
//! "mail.example.com" = "Example Mail"
//! ```
//!
//! `medium` is one of `direct` (no referrer), `internal` (a host in
//! `own_hosts`), `search`, `social`, `email` (a host in the table) or
//! `unknown`. See README.md in this crate for the exact output.

mod table;
pub mod url;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use fuwa_api::lru::Lru;
use fuwa_api::record::{self, Text};
use fuwa_api::{BuildContext, ConfigError, ConfigSection, EventTime, Filter, FilterResult, Record};
use rmpv::Value;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::de::DeValue;

pub use table::{check_key, Entry, Medium, Table, EMAIL, SEARCH, SOCIAL};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReferrerConfig {
    #[serde(default = "default_key")]
    key: String,
    #[serde(default = "default_target")]
    target: String,
    #[serde(default)]
    own_hosts: Vec<String>,
    #[serde(default)]
    search: BTreeMap<String, SearchConfig>,
    #[serde(default)]
    social: BTreeMap<String, String>,
    #[serde(default)]
    email: BTreeMap<String, String>,
    #[serde(default = "default_cache_size")]
    cache_size: usize,
}
fn default_cache_size() -> usize {
    10_000
}
fn default_key() -> String {
    "referrer".into()
}
fn default_target() -> String {
    "ref".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchConfig {
    source: String,
    #[serde(default)]
    param: Params,
}

/// `param = "q"` or `param = ["wd", "word"]`.
#[derive(Debug, Default)]
struct Params(Vec<String>);

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Params;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a query parameter name or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Params, E> {
                Ok(Params(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Params, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Params(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Hosts that count as `internal`: exact names, and `*.x` for subdomains of x.
#[derive(Debug, Clone, Default)]
pub struct OwnHosts {
    exact: HashSet<String>,
    subdomains_of: HashSet<String>,
}

impl OwnHosts {
    /// Parses `own_hosts` entries (`example.com`, `*.example.com`).
    pub fn new<S: AsRef<str>>(hosts: &[S]) -> Result<Self, String> {
        let mut own = OwnHosts::default();
        for h in hosts {
            let h = h.as_ref();
            let lower = h.trim().to_lowercase();
            let (set, name) = match lower.strip_prefix("*.") {
                Some(rest) => (&mut own.subdomains_of, rest),
                None => (&mut own.exact, lower.as_str()),
            };
            let name = name.strip_suffix('.').unwrap_or(name);
            if name.is_empty()
                || !name
                    .split('.')
                    .all(|l| !l.is_empty() && l.chars().all(table::host_char))
            {
                return Err(format!(
                    "`{h}` is not a host name (write `example.com`, or `*.example.com` for its subdomains)"
                ));
            }
            set.insert(name.to_string());
        }
        Ok(own)
    }

    pub fn contains(&self, host: &str) -> bool {
        if self.exact.contains(host) {
            return true;
        }
        if self.subdomains_of.is_empty() {
            return false;
        }
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if self.subdomains_of.contains(rest) {
                return true;
            }
        }
        false
    }
}

pub struct ReferrerFilter {
    key: Vec<String>,
    target: Vec<String>,
    own: OwnHosts,
    table: Table,
    /// encoded outputs by referrer text (referrers repeat: search engines'
    /// and networks' landing URLs, internal pages)
    cache: Option<Mutex<Lru<Arc<[u8]>>>>,
    /// the encoded `{medium: "direct"}`
    direct: Box<[u8]>,
}

/// Referrers longer than this many bytes are never cached.
pub const MAX_CACHED_LEN: usize = 2048;

fn check_path(
    section: &ConfigSection<'_>,
    name: &str,
    p: &str,
) -> Result<Vec<String>, ConfigError> {
    record::check_path(p).map_err(|e| section.error(name, e))
}

/// An error about one entry of `[search]`, `[social]` or `[email]`, located
/// at that entry. (`section.error` takes a dotted path, and host names have
/// dots of their own.)
fn entry_error(
    section: &ConfigSection<'_>,
    table: &str,
    host: &str,
    suffix: &str,
    message: impl Into<String>,
) -> ConfigError {
    let span = match section.value.get_ref() {
        DeValue::Table(t) => t.get(table).and_then(|v| match v.get_ref() {
            DeValue::Table(inner) => inner.get(host).map(|v| v.span()),
            _ => None,
        }),
        _ => None,
    };
    ConfigError {
        span: span.or_else(|| Some(section.value.span())),
        key: format!("{}.{table}.\"{host}\"{suffix}", section.name),
        message: message.into(),
    }
}

pub fn build(
    section: &ConfigSection<'_>,
    _ctx: &BuildContext,
) -> Result<Box<dyn Filter>, Vec<ConfigError>> {
    let cfg: ReferrerConfig = section.parse().map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let key = check_path(section, "key", &cfg.key).map_err(|e| errors.push(e));
    let target = check_path(section, "target", &cfg.target).map_err(|e| errors.push(e));
    let own = OwnHosts::new(&cfg.own_hosts).map_err(|m| errors.push(section.error("own_hosts", m)));

    let mut table = Table::builtin();
    // which config section set each key, to refuse a host listed twice
    let mut from_config: BTreeMap<String, &str> = BTreeMap::new();
    let mut add =
        |section_name: &'static str, raw: &str, entry: Entry, errors: &mut Vec<ConfigError>| {
            let err = |m: String| entry_error(section, section_name, raw, "", m);
            if entry.source.trim().is_empty() {
                errors.push(err("the source name is empty".into()));
                return;
            }
            match check_key(raw) {
                Err(m) => errors.push(err(m)),
                Ok(k) => {
                    if let Some(prev) = from_config.insert(k.clone(), section_name) {
                        errors.push(err(format!(
                            "`{k}` is listed in both [{prev}] and [{section_name}]"
                        )));
                        return;
                    }
                    table.insert(&k, entry);
                }
            }
        };
    for (k, s) in cfg.search {
        if s.param.0.iter().any(|p| p.is_empty()) {
            errors.push(entry_error(
                section,
                "search",
                &k,
                ".param",
                "empty parameter name",
            ));
            continue;
        }
        let entry = Entry {
            medium: Medium::Search,
            source: s.source,
            params: s.param.0,
        };
        add("search", &k, entry, &mut errors);
    }
    for (list, name, medium) in [
        (cfg.social, "social", Medium::Social),
        (cfg.email, "email", Medium::Email),
    ] {
        for (k, source) in list {
            let entry = Entry {
                medium,
                source,
                params: Vec::new(),
            };
            add(name, &k, entry, &mut errors);
        }
    }
    match (key, target, own) {
        (Ok(key), Ok(target), Ok(own)) if errors.is_empty() => Ok(Box::new(
            ReferrerFilter::from_parts(key, target, own, table, cfg.cache_size),
        )),
        _ => Err(errors),
    }
}

impl ReferrerFilter {
    /// A filter from parts (tests and embedding); `key` and `target` are
    /// dot paths, `table` usually [`Table::builtin`].
    pub fn new(key: &str, target: &str, own: OwnHosts, table: Table) -> Self {
        Self::from_parts(record::path(key), record::path(target), own, table, 0)
    }

    fn from_parts(
        key: Vec<String>,
        target: Vec<String>,
        own: OwnHosts,
        table: Table,
        cache_size: usize,
    ) -> Self {
        ReferrerFilter {
            key,
            target,
            own,
            table,
            cache: (cache_size > 0).then(|| Mutex::new(Lru::new(cache_size))),
            direct: encoded(&medium_only("direct")).into(),
        }
    }

    /// The encoded output for a referrer that is a msgpack str of valid
    /// UTF-8, from the cache when it is there (keyed by the bytes, so a hit
    /// checks nothing but them); `None` when the bytes are not UTF-8.
    fn lookup(&self, raw: &[u8]) -> Option<Arc<[u8]>> {
        let cache = self.cache.as_ref().filter(|_| raw.len() <= MAX_CACHED_LEN);
        if let Some(c) = cache {
            if let Some(hit) = c.lock().unwrap_or_else(|e| e.into_inner()).get(raw) {
                return Some(hit);
            }
        }
        let text = std::str::from_utf8(raw).ok()?;
        let out: Arc<[u8]> = encoded(&self.classify(text)).into();
        if let Some(c) = cache {
            c.lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(raw, out.clone());
        }
        Some(out)
    }

    /// The output for a referrer text.
    pub fn classify(&self, raw: &str) -> Value {
        self.classify_text(raw)
            .unwrap_or_else(|| unknown(Value::from(raw)))
    }

    /// The output for a referrer text; `None` when it is not a URL.
    fn classify_text(&self, raw: &str) -> Option<Value> {
        let text = raw.trim();
        if text.is_empty() || text == "-" {
            return Some(medium_only("direct"));
        }
        let u = url::parse(text)?;
        let pairs = u.query.map(url::query_pairs).unwrap_or_default();
        let (medium, source, term) = if self.own.contains(&u.host) {
            ("internal", None, None)
        } else if let Some(e) = self.table.lookup(&u.host) {
            let term = e.params.iter().find_map(|p| {
                pairs
                    .iter()
                    .find(|(k, v)| k == p && !v.is_empty())
                    .map(|(_, v)| v.clone())
            });
            (e.medium.as_str(), Some(e.source.clone()), term)
        } else {
            ("unknown", None, None)
        };
        let mut out = Vec::with_capacity(7);
        out.push((Value::from("scheme"), Value::from(u.scheme)));
        out.push((Value::from("host"), Value::from(u.host)));
        out.push((Value::from("path"), Value::from(u.path)));
        out.push((
            Value::from("query"),
            Value::Map(
                pairs
                    .into_iter()
                    .map(|(k, v)| (Value::from(k), Value::from(v)))
                    .collect(),
            ),
        ));
        out.push((Value::from("medium"), Value::from(medium)));
        if let Some(s) = source {
            out.push((Value::from("source"), Value::from(s)));
        }
        if let Some(t) = term {
            out.push((Value::from("term"), Value::from(t)));
        }
        Some(Value::Map(out))
    }
}

fn medium_only(m: &str) -> Value {
    Value::Map(vec![(Value::from("medium"), Value::from(m))])
}

fn unknown(raw: Value) -> Value {
    Value::Map(vec![
        (Value::from("medium"), Value::from("unknown")),
        (Value::from("raw"), raw),
    ])
}

fn encoded(v: &Value) -> Vec<u8> {
    let mut b = Vec::with_capacity(128);
    record::encode(&mut b, v);
    b
}

impl Filter for ReferrerFilter {
    fn filter(&self, _tag: &str, _time: &mut EventTime, rec: &mut Record) -> FilterResult {
        if !rec.is_map() {
            return FilterResult::Keep;
        }
        match rec.text(&self.key) {
            Some(Text::Str(b)) => match self.lookup(b) {
                Some(out) => rec.set_encoded(&self.target, &out),
                None => {
                    // read lossily; when it is not a URL the bytes are kept as they were
                    let text = String::from_utf8_lossy(b).into_owned();
                    let out = match self.classify_text(&text) {
                        Some(v) => v,
                        None => unknown(rec.get(&self.key).unwrap_or(Value::Nil)),
                    };
                    rec.set(&self.target, out);
                }
            },
            Some(Text::Bin(b)) => {
                let out = std::str::from_utf8(b)
                    .ok()
                    .and_then(|t| self.classify_text(t))
                    .unwrap_or_else(|| unknown(Value::Binary(b.to_vec())));
                rec.set(&self.target, out);
            }
            None => match rec.get(&self.key) {
                None | Some(Value::Nil) => rec.set_encoded(&self.target, &self.direct),
                // not text: the value is kept as it was
                Some(v) => rec.set(&self.target, unknown(v)),
            },
        }
        FilterResult::Keep
    }
}
