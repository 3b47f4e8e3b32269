//! The filter's settings (`[[filter]] type = "referrer"`) and `build`:
//! the keys checked, the built-in table extended (or replaced) by the
//! database file and the `[search]`, `[social]`, ... sections.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use fuwa_api::record::FieldPath;
use fuwa_api::{BuildContext, ConfigError, ConfigSection, Filter};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::de::DeValue;

use crate::table::{self, check_key, Entry, Medium, Table};
use crate::{database, ReferrerFilter};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReferrerConfig {
    #[serde(default = "default_key")]
    key: FieldPath,
    #[serde(default = "default_target")]
    target: FieldPath,
    #[serde(default)]
    own_hosts: OwnHosts,
    #[serde(default)]
    search: BTreeMap<String, SearchConfig>,
    #[serde(default)]
    social: BTreeMap<String, String>,
    #[serde(default)]
    email: BTreeMap<String, String>,
    #[serde(default)]
    paid: BTreeMap<String, String>,
    #[serde(default)]
    chatbot: BTreeMap<String, String>,
    #[serde(default = "default_cache_size")]
    cache_size: usize,
    /// a record field with the page (landing) URL: its click ids and utm_*
    /// tags count with the referrer's own
    #[serde(default)]
    url_key: Option<FieldPath>,
    /// a Snowplow referer-parser format file (YAML or JSON)
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    database_mode: DatabaseMode,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DatabaseMode {
    /// the file's entries are added to the built-in table (and replace its
    /// entries with the same keys)
    #[default]
    Extend,
    /// the file's entries are the whole table
    Replace,
}
fn default_cache_size() -> usize {
    10_000
}
fn default_key() -> FieldPath {
    FieldPath::of("referrer")
}
fn default_target() -> FieldPath {
    FieldPath::of("ref")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchConfig {
    source: String,
    #[serde(default)]
    param: Params,
    /// the engine's charset for terms that are not UTF-8 (`shift_jis`, ...)
    #[serde(default)]
    encoding: Option<String>,
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

impl<'de> Deserialize<'de> for OwnHosts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let hosts = Vec::<String>::deserialize(d)?;
        OwnHosts::new(&hosts).map_err(de::Error::custom)
    }
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
    let cfg: ReferrerConfig = section.parse_all()?;
    let mut errors = Vec::new();

    let mut table = match (&cfg.database, cfg.database_mode) {
        (Some(_), DatabaseMode::Replace) => Table::empty(),
        (None, DatabaseMode::Replace) => {
            errors.push(section.error(
                "database_mode",
                "`replace` replaces the built-in table with `database`, which is not set",
            ));
            Table::empty()
        }
        _ => Table::builtin(),
    };
    if let Some(path) = &cfg.database {
        match database::load(std::path::Path::new(path)) {
            Ok(entries) => {
                for e in entries {
                    table.insert(&e.key, e.entry);
                }
            }
            Err(m) => errors.push(section.error("database", m)),
        }
    }
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
        let encoding = match &s.encoding {
            None => None,
            Some(label) => match encoding_rs::Encoding::for_label(label.trim().as_bytes()) {
                Some(e) => Some(e),
                None => {
                    errors.push(entry_error(
                        section,
                        "search",
                        &k,
                        ".encoding",
                        format!("`{label}` is not a known charset label (shift_jis, euc-jp, gbk, euc-kr, ...)"),
                    ));
                    continue;
                }
            },
        };
        let entry = Entry {
            medium: Medium::Search,
            source: s.source,
            params: s.param.0,
            encoding,
        };
        add("search", &k, entry, &mut errors);
    }
    for (list, name, medium) in [
        (cfg.social, "social", Medium::Social),
        (cfg.email, "email", Medium::Email),
        (cfg.paid, "paid", Medium::Paid),
        (cfg.chatbot, "chatbot", Medium::Chatbot),
    ] {
        for (k, source) in list {
            add(name, &k, Entry::new(medium, &source), &mut errors);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut f = ReferrerFilter::from_parts(
        cfg.key.0,
        cfg.target.0,
        cfg.own_hosts,
        table,
        cfg.cache_size,
    );
    f.url_key = cfg.url_key.map(|p| p.0);
    Ok(Box::new(f))
}
