//! The `referrer` filter: parses a Referer URL and classifies where the
//! visit came from.
//!
//! ```toml
//! [[filter]]
//! type = "referrer"
//! key = "referrer"       # source field (dot path allowed)
//! target = "ref"         # {scheme, host, path, query{...}, medium, source, term}
//! own_hosts = ["note.com", "*.note.com"]
//! url_key = "url"        # optional: the page URL, for click ids and utm_* tags
//! database = "/etc/fuwa/referers.yml"   # optional: Snowplow referer-parser format
//! database_mode = "extend"              # or "replace" (the built-in table)
//! [filter.search]
//! "example-search.com" = { source = "Example", param = "q" }
//! [filter.social]
//! "example.social" = "Example Social"
//! [filter.email]
//! "mail.example.com" = "Example Mail"
//! ```
//!
//! `medium` is one of `direct` (no referrer), `internal` (a host in
//! `own_hosts`), `paid` (click ids, paid `utm_medium`, ad hosts), `chatbot`
//! (AI assistants, `utm_source=chatgpt.com`), `search`, `social`, `email`
//! (a host in the table) or `unknown`. See README.md in this crate for the
//! exact output.

mod builtin;
mod config;
pub mod database;
mod table;
pub mod url;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fuwa_api::lru::Lru;
use fuwa_api::memory::size;
use fuwa_api::record::{self, Text};
use fuwa_api::{EventTime, Filter, FilterResult, MemoryBound, MemoryEnv, Record};
use rmpv::Value;

pub use config::{build, OwnHosts};
pub use table::{check_key, check_key_with_path, Entry, Medium, Source, Table, BUILTIN};

pub struct ReferrerFilter {
    key: Vec<String>,
    target: Vec<String>,
    url_key: Option<Vec<String>>,
    own: OwnHosts,
    table: Table,
    /// chatbot sources by lowercase name and alias, for `utm_source=chatgpt`
    chatbot_names: HashMap<String, String>,
    /// outputs by referrer text (referrers repeat: search engines' and
    /// networks' landing URLs, internal pages)
    cache: Option<Mutex<Lru<Cached>>>,
    /// `{medium: "direct"}`
    direct: Cached,
}

/// A referrer's output, and (with `url_key`) the parts the page's signals
/// may change. Cloned out of the cache on every hit: two pointers, the
/// output's bytes in the `Arc`'s own allocation.
#[derive(Clone)]
struct Cached {
    parsed: Option<Arc<Parsed>>,
    encoded: Arc<[u8]>,
}

/// A classified referrer, before the page URL's signals.
#[derive(Debug, Clone)]
struct Parsed {
    shape: Shape,
    /// `search`, `social`, ... from the table, `internal`, `unknown`, `direct`
    medium: &'static str,
    source: Option<String>,
    term: Option<String>,
    /// utm_* and click ids in the referrer's own query
    signals: Signals,
}

#[derive(Debug, Clone)]
enum Shape {
    Direct,
    /// not a URL: the value as it was
    Raw(Value),
    /// scheme, host, path, query
    Url(Vec<(Value, Value)>),
}

/// Query parameters reported at the top level of the output, in this order,
/// when present and not empty.
pub const SIGNAL_PARAMS: &[&str] = &[
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "utm_id",
    "utm_source_platform",
    "utm_creative_format",
    "utm_marketing_tactic",
    "gclid",
    "gbraid",
    "wbraid",
    "msclkid",
    "fbclid",
    "yclid",
    "ttclid",
    "twclid",
    "li_fat_id",
];

/// Click ids that make a visit `paid` by themselves, and the ad network
/// they name (`fbclid` is on every outbound Facebook link: it counts only
/// with a paid `utm_medium`, as `Meta Ads`). `yclid` is Yandex Direct's and
/// Yahoo! JAPAN Ads' both: Yahoo! JAPAN's values start `YSS.` (search ads)
/// or `YJAD.` (display ads).
pub const CLICK_IDS: &[(&str, &str)] = &[
    ("gclid", "Google Ads"),
    ("gbraid", "Google Ads"),
    ("wbraid", "Google Ads"),
    ("msclkid", "Microsoft Advertising"),
    ("yclid", "Yandex Direct"),
    ("ttclid", "TikTok Ads"),
    ("twclid", "X Ads"),
    ("li_fat_id", "LinkedIn Ads"),
];

/// `utm_medium` values (lowercase) that mean a paid click, besides any
/// starting with `paid` (`paid`, `paidsearch`, `paid_social`, ...).
pub const PAID_MEDIUMS: &[&str] = &["cpc", "ppc", "cpm", "cpv", "cpa", "retargeting"];

/// utm_* and click ids, in [`SIGNAL_PARAMS`] order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Signals(Vec<(&'static str, String)>);

impl Signals {
    fn from_pairs(pairs: &[(String, String)]) -> Self {
        let mut out: Vec<(usize, &'static str, String)> = Vec::new();
        for (k, v) in pairs {
            // most names are none of these: a cheap test first
            let maybe = k.starts_with("utm_")
                || k.ends_with("clid")
                || k.ends_with("clkid")
                || k.ends_with("braid")
                || k == "li_fat_id";
            if !maybe || v.is_empty() {
                continue;
            }
            if let Some(i) = SIGNAL_PARAMS.iter().position(|p| p == k) {
                out.push((i, SIGNAL_PARAMS[i], v.clone()));
            }
        }
        // pairs hold each name once (the first): order by SIGNAL_PARAMS
        out.sort_unstable_by_key(|(i, _, _)| *i);
        Signals(out.into_iter().map(|(_, k, v)| (k, v)).collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `self` with `over`'s values winning.
    fn merged(&self, over: &Signals) -> Signals {
        let mut out = Vec::new();
        for name in SIGNAL_PARAMS {
            if let Some(v) = over.get(name).or_else(|| self.get(name)) {
                out.push((*name, v.to_string()));
            }
        }
        Signals(out)
    }

    /// `Some(network)` for a paid click: the click id's network, or `None`
    /// inside when only `utm_medium` says so.
    fn paid(&self) -> Option<Option<&'static str>> {
        for (id, network) in CLICK_IDS {
            if let Some(v) = self.get(id) {
                if *id == "yclid" && (v.starts_with("YSS.") || v.starts_with("YJAD.")) {
                    return Some(Some("Yahoo! JAPAN Ads"));
                }
                return Some(Some(network));
            }
        }
        let medium = self.get("utm_medium")?.trim().to_ascii_lowercase();
        if !(PAID_MEDIUMS.contains(&medium.as_str()) || medium.starts_with("paid")) {
            return None;
        }
        if self.get("fbclid").is_some() {
            return Some(Some("Meta Ads"));
        }
        Some(None)
    }
}

/// Referrers longer than this many bytes are never cached.
pub const MAX_CACHED_LEN: usize = 2048;

/// Other names AI assistants' links tag in `utm_source`.
const CHATBOT_ALIASES: &[(&str, &str)] = &[
    ("openai", "ChatGPT"),
    ("chat.openai.com", "ChatGPT"),
    ("copilot", "Microsoft Copilot"),
    ("bard", "Gemini"),
    ("perplexity.ai", "Perplexity"),
];

impl ReferrerFilter {
    /// A filter from parts (tests and embedding); `key` and `target` are
    /// dot paths, `table` usually [`Table::builtin`].
    pub fn new(key: &str, target: &str, own: OwnHosts, table: Table) -> Self {
        Self::from_parts(record::path(key), record::path(target), own, table, 0)
    }

    /// Reads the page URL's click ids and utm_* tags from the field at
    /// `url_key` (a dot path).
    pub fn with_url_key(mut self, url_key: &str) -> Self {
        self.url_key = Some(record::path(url_key));
        self
    }

    fn from_parts(
        key: Vec<String>,
        target: Vec<String>,
        own: OwnHosts,
        table: Table,
        cache_size: usize,
    ) -> Self {
        let mut chatbot_names = HashMap::new();
        for e in table.entries().filter(|e| e.medium == Medium::Chatbot) {
            chatbot_names.insert(e.source.to_lowercase(), e.source.clone());
        }
        for (alias, name) in CHATBOT_ALIASES {
            if let Some(source) = chatbot_names.get(&name.to_lowercase()).cloned() {
                chatbot_names.entry(alias.to_string()).or_insert(source);
            }
        }
        let mut f = ReferrerFilter {
            key,
            target,
            url_key: None,
            own,
            table,
            chatbot_names,
            cache: (cache_size > 0).then(|| Mutex::new(Lru::new(cache_size))),
            direct: Cached {
                parsed: None,
                encoded: Arc::new([]),
            },
        };
        f.direct = Cached {
            parsed: Some(Arc::new(Parsed::direct())),
            encoded: encoded(&f.render(&Parsed::direct(), None)).into(),
        };
        f
    }

    /// The cached form: the parts are kept only when a page URL may change
    /// the output (`url_key`); otherwise they move into the output.
    fn cached(&self, parsed: Parsed) -> Cached {
        if self.url_key.is_some() {
            let encoded = encoded(&self.render(&parsed, None)).into();
            return Cached {
                parsed: Some(Arc::new(parsed)),
                encoded,
            };
        }
        Cached {
            encoded: encoded(&self.render_owned(parsed, None)).into(),
            parsed: None,
        }
    }

    /// The output for a referrer that is a msgpack str of valid UTF-8, from
    /// the cache when it is there (keyed by the bytes, so a hit checks
    /// nothing but them); `None` when the bytes are not UTF-8.
    fn lookup(&self, raw: &[u8]) -> Option<Cached> {
        let cache = self.cache.as_ref().filter(|_| raw.len() <= MAX_CACHED_LEN);
        if let Some(c) = cache {
            if let Some(hit) = c.lock().unwrap_or_else(|e| e.into_inner()).get(raw) {
                return Some(hit);
            }
        }
        let text = std::str::from_utf8(raw).ok()?;
        let parsed = self
            .parse(text)
            .unwrap_or_else(|| Parsed::raw(Value::from(text)));
        let out = self.cached(parsed);
        if let Some(c) = cache {
            c.lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(raw, out.clone());
        }
        Some(out)
    }

    /// The output for a referrer text.
    pub fn classify(&self, raw: &str) -> Value {
        self.classify_with_page(raw, None)
    }

    /// The output for a referrer text and the page URL (or just its path
    /// and query) the visit landed on.
    pub fn classify_with_page(&self, raw: &str, page: Option<&str>) -> Value {
        let parsed = self
            .parse(raw)
            .unwrap_or_else(|| Parsed::raw(Value::from(raw)));
        let page = page.and_then(page_signals);
        self.render(&parsed, page.as_ref())
    }

    /// A referrer text classified by its own URL; `None` when it is not a URL.
    fn parse(&self, raw: &str) -> Option<Parsed> {
        let text = raw.trim();
        if text.is_empty() || text == "-" {
            return Some(Parsed::direct());
        }
        let u = url::parse(text)?;
        let internal = self.own.contains(&u.host);
        let entry = if internal {
            None
        } else {
            self.table.lookup_path(&u.host, u.path)
        };
        let pairs = u
            .query
            .map(|q| url::query_pairs_in(q, entry.and_then(|e| e.encoding)))
            .unwrap_or_default();
        let (medium, source, term) = match entry {
            _ if internal => ("internal", None, None),
            Some(e) => {
                // the term, for every entry that names its parameters
                // (search engines; database files give some others)
                let term = {
                    e.params.iter().find_map(|p| {
                        pairs
                            .iter()
                            .find(|(k, v)| k == p && !v.trim().is_empty())
                            .map(|(_, v)| v.clone())
                    })
                };
                (e.medium.as_str(), Some(e.source.clone()), term)
            }
            None => ("unknown", None, None),
        };
        let signals = Signals::from_pairs(&pairs);
        // room for medium, source, term and a few signals without growing
        let mut fields = Vec::with_capacity(10);
        fields.extend([
            (Value::from("scheme"), Value::from(u.scheme)),
            (Value::from("host"), Value::from(u.host)),
            (Value::from("path"), Value::from(u.path)),
            (
                Value::from("query"),
                Value::Map(
                    pairs
                        .into_iter()
                        .map(|(k, v)| (Value::from(k), Value::from(v)))
                        .collect(),
                ),
            ),
        ]);
        Some(Parsed {
            shape: Shape::Url(fields),
            medium,
            source,
            term,
            signals,
        })
    }

    /// The chatbot a `utm_source` value names (`chatgpt.com`, `ChatGPT`).
    fn chatbot_tag(&self, utm_source: &str) -> Option<String> {
        let v = utm_source.trim().to_lowercase();
        if let Some(e) = self
            .table
            .lookup(&v)
            .filter(|e| e.medium == Medium::Chatbot)
        {
            return Some(e.source.clone());
        }
        self.chatbot_names.get(&v).cloned()
    }

    /// [`Self::render`], moving the URL's parts into the output.
    fn render_owned(&self, mut p: Parsed, page: Option<&Signals>) -> Value {
        let head = match &mut p.shape {
            Shape::Url(fields) => std::mem::take(fields),
            _ => Vec::new(),
        };
        let (source, term) = (p.source.take(), p.term.take());
        self.render_with(&p, page, head, source, term)
    }

    /// The output: the parsed referrer with its own signals and the page's
    /// (which win), and the medium they decide.
    fn render(&self, p: &Parsed, page: Option<&Signals>) -> Value {
        let head = match &p.shape {
            Shape::Url(fields) => {
                let mut v = Vec::with_capacity(fields.len() + 4);
                v.extend(fields.iter().cloned());
                v
            }
            _ => Vec::new(),
        };
        self.render_with(p, page, head, p.source.clone(), p.term.clone())
    }

    /// `head`: the URL's scheme, host, path and query (empty for the other
    /// shapes); `source` and `term`: `p`'s (taken or copied).
    fn render_with(
        &self,
        p: &Parsed,
        page: Option<&Signals>,
        mut out: Vec<(Value, Value)>,
        base_source: Option<String>,
        term: Option<String>,
    ) -> Value {
        let merged;
        let signals = match page {
            Some(over) => {
                merged = p.signals.merged(over);
                &merged
            }
            None => &p.signals,
        };
        let (medium, source): (&str, Option<String>) = if p.medium == "internal" {
            ("internal", None)
        } else if let Some(network) = signals.paid() {
            let source = network
                .map(str::to_string)
                .or_else(|| signals.get("utm_source").map(str::to_string))
                .or(base_source);
            ("paid", source)
        } else if p.medium == "chatbot" {
            ("chatbot", base_source)
        } else if let Some(bot) = signals.get("utm_source").and_then(|s| self.chatbot_tag(s)) {
            ("chatbot", Some(bot))
        } else {
            (p.medium, base_source)
        };
        out.reserve(4 + signals.0.len());
        out.push((Value::from("medium"), Value::from(medium)));
        if let Shape::Raw(raw) = &p.shape {
            out.push((Value::from("raw"), raw.clone()));
        }
        if let Some(s) = source {
            out.push((Value::from("source"), Value::from(s)));
        }
        if let Some(t) = term {
            out.push((Value::from("term"), Value::from(t)));
        }
        for (k, v) in &signals.0 {
            out.push((Value::from(*k), Value::from(v.as_str())));
        }
        Value::Map(out)
    }

    /// The page URL's signals, when `url_key` is set and its query has any.
    fn page_of(&self, rec: &Record) -> Option<Signals> {
        let path = self.url_key.as_ref()?;
        let text = match rec.text(path)? {
            Text::Str(b) | Text::Bin(b) => String::from_utf8_lossy(b),
        };
        page_signals(&text)
    }
}

impl Parsed {
    fn direct() -> Self {
        Parsed {
            shape: Shape::Direct,
            medium: "direct",
            source: None,
            term: None,
            signals: Signals::default(),
        }
    }

    fn raw(v: Value) -> Self {
        Parsed {
            shape: Shape::Raw(v),
            medium: "unknown",
            source: None,
            term: None,
            signals: Signals::default(),
        }
    }
}

/// Page URLs longer than this are not read for signals.
pub const MAX_PAGE_URL_LEN: usize = 16 * 1024;

/// The signals in a page URL (`https://site/x?gclid=..`, or `/x?gclid=..`
/// as access logs write the request): `None` when it has none.
fn page_signals(page: &str) -> Option<Signals> {
    if page.len() > MAX_PAGE_URL_LEN {
        return None;
    }
    let (_, q) = page.split_once('?')?;
    let q = q.split('#').next().unwrap_or("");
    if !(q.contains("utm_")
        || q.contains("clid")
        || q.contains("clkid")
        || q.contains("braid")
        || q.contains("li_fat_id"))
    {
        return None;
    }
    let s = Signals::from_pairs(&url::query_pairs(q));
    (!s.0.is_empty()).then_some(s)
}

fn encoded(v: &Value) -> Vec<u8> {
    let mut b = Vec::with_capacity(128);
    record::encode(&mut b, v);
    b
}

/// One cache entry beyond its key: the classification (a source and a
/// search term, each at most as long as the key) and its encoded output
/// (the same again), the map's and the recency list's slots.
const ENTRY_OVERHEAD: u64 = 512;
/// One entry of the referrer table (host, source, medium, parameters) with
/// its index slots.
const TABLE_ENTRY: u64 = 256;

impl Filter for ReferrerFilter {
    fn memory_bound(&self, _env: &MemoryEnv) -> MemoryBound {
        let n = self.cache.as_ref().map_or(0, |c| {
            c.lock().unwrap_or_else(|e| e.into_inner()).capacity() as u64
        });
        let key = MAX_CACHED_LEN as u64;
        let t = self.table.len() as u64;
        MemoryBound::new()
            .with(
                format!(
                    "cache_size {n} × (a referrer of at most {} + its result, 3 × that + 512 B)",
                    size(key)
                ),
                n.saturating_mul(3 * key + ENTRY_OVERHEAD),
            )
            .with(
                format!("referrer table: {t} entries × 256 B"),
                t.saturating_mul(TABLE_ENTRY),
            )
    }

    fn filter(&self, _tag: &str, _time: &mut EventTime, rec: &mut Record) -> FilterResult {
        if !rec.is_map() {
            return FilterResult::Keep;
        }
        let page = self.page_of(rec);
        let parsed: Cached = match rec.text(&self.key) {
            Some(Text::Str(b)) => match self.lookup(b) {
                Some(c) => c,
                None => {
                    // read lossily; when it is not a URL the bytes are kept as they were
                    let text = String::from_utf8_lossy(b).into_owned();
                    let p = match self.parse(&text) {
                        Some(p) => p,
                        None => Parsed::raw(rec.get(&self.key).unwrap_or(Value::Nil)),
                    };
                    let v = self.render(&p, page.as_ref());
                    rec.set(&self.target, v);
                    return FilterResult::Keep;
                }
            },
            Some(Text::Bin(b)) => {
                let p = std::str::from_utf8(b)
                    .ok()
                    .and_then(|t| self.parse(t))
                    .unwrap_or_else(|| Parsed::raw(Value::Binary(b.to_vec())));
                let v = self.render(&p, page.as_ref());
                rec.set(&self.target, v);
                return FilterResult::Keep;
            }
            None => match rec.get(&self.key) {
                None | Some(Value::Nil) => self.direct.clone(),
                // not text: the value is kept as it was
                Some(v) => {
                    let v = self.render(&Parsed::raw(v), page.as_ref());
                    rec.set(&self.target, v);
                    return FilterResult::Keep;
                }
            },
        };
        match (page, &parsed.parsed) {
            (Some(page), Some(p)) => {
                let v = self.render(p, Some(&page));
                rec.set(&self.target, v);
            }
            _ => rec.set_encoded(&self.target, &parsed.encoded),
        }
        FilterResult::Keep
    }
}
