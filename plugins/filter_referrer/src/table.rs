//! The referrer table (built-in, from a database file, from the config) and
//! host lookup in it.
//!
//! A key matches the host itself and every subdomain of it (`facebook.com`
//! matches `m.facebook.com` and `l.facebook.com`); the most specific key
//! wins (`mail.google.com` before `google.*`). A key ending in `.*` matches
//! any top-level domain, including two-part country domains such as `co.jp`,
//! `com.br` or `co.uk` (`google.*` matches `google.com`, `www.google.co.jp`).
//! A key may carry a path (`bing.com/chat`, from the built-in table or a
//! database file): it matches that path and everything under it
//! (`/chat`, `/chat/x`, not `/chatter`) and wins over the host's own entry.
//!
//! Lookup walks the host's suffixes from the longest (`a.b.example.com`,
//! `b.example.com`, `example.com`, `com`), with one hash lookup for exact
//! keys and at most two for `name.*` keys at each: its cost depends on the
//! number of labels in the host, not on the size of the table.

use std::collections::HashMap;
use std::sync::Arc;

use encoding_rs::Encoding;

pub use crate::builtin::{Source, BUILTIN};

/// Second-level labels that make a two-part country domain (`co.jp`,
/// `com.br`) for `name.*` keys.
const SECOND_LEVEL: &[&str] = &[
    "co", "com", "net", "org", "ne", "or", "ac", "ad", "ed", "go", "gr", "lg", "edu", "gov", "gob",
    "mil", "nom",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Medium {
    Search,
    Social,
    Email,
    Paid,
    Chatbot,
    /// a known site that is none of the above (`docs.google.com`); the
    /// output has medium `unknown` and the entry's source
    Unknown,
}

impl Medium {
    pub fn as_str(self) -> &'static str {
        match self {
            Medium::Search => "search",
            Medium::Social => "social",
            Medium::Email => "email",
            Medium::Paid => "paid",
            Medium::Chatbot => "chatbot",
            Medium::Unknown => "unknown",
        }
    }

    /// The medium a database file or the config names (`search`, ...).
    pub fn parse(s: &str) -> Option<Medium> {
        Some(match s {
            "search" => Medium::Search,
            "social" => Medium::Social,
            "email" => Medium::Email,
            "paid" => Medium::Paid,
            "chatbot" => Medium::Chatbot,
            "unknown" => Medium::Unknown,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub medium: Medium,
    pub source: String,
    /// search only: parameters holding the term, in order of preference
    pub params: Vec<String>,
    /// the charset of the engine's query when the URL declares none and
    /// the bytes are not UTF-8 (Baidu: GBK, goo: EUC-JP, ...)
    pub encoding: Option<&'static Encoding>,
}

impl Entry {
    pub fn new(medium: Medium, source: &str) -> Self {
        Entry {
            medium,
            source: source.to_string(),
            params: Vec::new(),
            encoding: None,
        }
    }
}

/// Hosts longer than this are not valid DNS names and are not looked up.
pub const MAX_HOST: usize = 253;

#[derive(Debug, Clone, Default)]
struct Slot {
    entry: Option<Arc<Entry>>,
    /// path prefixes, longest first
    paths: Vec<(String, Arc<Entry>)>,
}

impl Slot {
    fn get(&self, path: &str) -> Option<&Entry> {
        for (prefix, e) in &self.paths {
            if let Some(rest) = path.strip_prefix(prefix.as_str()) {
                if rest.is_empty() || prefix.ends_with('/') || rest.starts_with(['/', '?', ';']) {
                    return Some(e);
                }
            }
        }
        self.entry.as_deref()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Table {
    /// `facebook.com`
    exact: HashMap<String, Slot>,
    /// `google` for the key `google.*`
    any_tld: HashMap<String, Slot>,
}

impl Table {
    pub fn empty() -> Self {
        Table::default()
    }

    /// The built-in table ([`BUILTIN`]).
    pub fn builtin() -> Self {
        let mut t = Table::empty();
        for s in BUILTIN {
            let entry = s.entry();
            for k in s.hosts {
                t.insert(k, entry.clone());
            }
        }
        t
    }

    /// Adds or replaces the entry for a key (`example.com`, `example.*`,
    /// either with a `/path`), which must already be valid (see
    /// [`check_key`]) and lowercase.
    pub fn insert(&mut self, key: &str, entry: Entry) {
        let (host, path) = match key.find('/') {
            Some(i) => (&key[..i], Some(&key[i..])),
            None => (key, None),
        };
        let (map, name) = match host.strip_suffix(".*") {
            Some(base) => (&mut self.any_tld, base),
            None => (&mut self.exact, host),
        };
        let slot = map.entry(name.to_string()).or_default();
        let entry = Arc::new(entry);
        match path {
            None | Some("/") => slot.entry = Some(entry),
            Some(p) => {
                slot.paths.retain(|(q, _)| q != p);
                slot.paths.push((p.to_string(), entry));
                slot.paths.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
            }
        }
    }

    /// Number of keys (host and host/path).
    pub fn len(&self) -> usize {
        self.slots()
            .map(|s| s.paths.len() + usize::from(s.entry.is_some()))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.exact.values().chain(self.any_tld.values())
    }

    /// Every entry (once per key).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.slots()
            .flat_map(|s| s.entry.iter().chain(s.paths.iter().map(|(_, e)| e)))
            .map(|e| e.as_ref())
    }

    /// The most specific entry matching a lowercase host (any path).
    pub fn lookup(&self, host: &str) -> Option<&Entry> {
        self.lookup_path(host, "/")
    }

    /// The most specific entry matching a lowercase host and a path.
    pub fn lookup_path(&self, host: &str, path: &str) -> Option<&Entry> {
        if host.len() > MAX_HOST || host.is_empty() {
            return None;
        }
        let mut start = 0;
        loop {
            let suffix = &host[start..];
            if let Some(e) = self.exact.get(suffix).and_then(|s| s.get(path)) {
                return Some(e);
            }
            if !self.any_tld.is_empty() {
                if let Some(e) = self.lookup_any_tld(suffix, path) {
                    return Some(e);
                }
            }
            match suffix.find('.') {
                Some(dot) => start += dot + 1,
                None => return None,
            }
        }
    }

    /// `suffix` as `base.tld` or `base.sld.tld`, with `base` a `name.*` key.
    fn lookup_any_tld(&self, suffix: &str, path: &str) -> Option<&Entry> {
        let last = suffix.rfind('.')?;
        let base = &suffix[..last];
        if let Some(e) = self.any_tld.get(base).and_then(|s| s.get(path)) {
            return Some(e);
        }
        let second = base.rfind('.')?;
        if SECOND_LEVEL.contains(&&base[second + 1..]) {
            return self.any_tld.get(&base[..second]).and_then(|s| s.get(path));
        }
        None
    }
}

/// Whether `c` may appear in a host name label (IDNs as Unicode included).
pub fn host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || !c.is_ascii()
}

/// Checks a table key from the config and returns it lowercase:
/// `example.com` or `example.*`.
pub fn check_key(key: &str) -> Result<String, String> {
    let k = key.trim().to_lowercase();
    if let Some(rest) = k.strip_prefix("*.") {
        return Err(format!(
            "`{key}`: table keys already match every subdomain; write `{rest}`"
        ));
    }
    let base = k.strip_suffix(".*").unwrap_or(&k);
    if base.is_empty()
        || base.len() > MAX_HOST
        || !base
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(host_char))
    {
        return Err(format!(
            "`{key}` is not a host name (write `example.com`, or `example.*` for any top-level domain)"
        ));
    }
    Ok(k)
}

/// Checks a key that may carry a path (`www.google.com/imgres`, as database
/// files write them) and returns it with the host part lowercase.
pub fn check_key_with_path(key: &str) -> Result<String, String> {
    let key = key.trim();
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    match key.find('/') {
        None => check_key(key),
        Some(i) => {
            let host = check_key(&key[..i])?;
            let path = &key[i..];
            if path
                .chars()
                .any(|c| c.is_whitespace() || c == '?' || c == '#')
            {
                return Err(format!("`{key}`: the path may not hold spaces, `?` or `#`"));
            }
            Ok(format!("{host}{path}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(t: &Table, host: &str) -> Option<String> {
        t.lookup(host)
            .map(|e| format!("{}:{}", e.medium.as_str(), e.source))
    }

    #[test]
    fn builtin_keys_are_valid_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for s in BUILTIN {
            assert!(!s.name.trim().is_empty());
            if let Some(label) = s.encoding {
                assert!(Encoding::for_label(label.as_bytes()).is_some(), "{label}");
            }
            assert!(
                s.params.is_empty() || s.medium == Medium::Search,
                "{}",
                s.name
            );
            for k in s.hosts {
                assert_eq!(check_key_with_path(k).as_deref(), Ok(*k), "{k}");
                assert!(seen.insert(*k), "{k} twice");
            }
        }
        assert!(Table::builtin().len() > 500, "{}", Table::builtin().len());
    }

    #[test]
    fn most_specific_wins_and_subdomains_match() {
        let t = Table::builtin();
        assert_eq!(src(&t, "google.com").as_deref(), Some("search:Google"));
        assert_eq!(
            src(&t, "www.google.co.jp").as_deref(),
            Some("search:Google")
        );
        assert_eq!(
            src(&t, "www.google.com.br").as_deref(),
            Some("search:Google")
        );
        assert_eq!(src(&t, "google.de").as_deref(), Some("search:Google"));
        assert_eq!(src(&t, "mail.google.com").as_deref(), Some("email:Gmail"));
        assert_eq!(
            src(&t, "lm.facebook.com").as_deref(),
            Some("social:Facebook")
        );
        assert_eq!(
            src(&t, "mail.yandex.ru").as_deref(),
            Some("email:Yandex Mail")
        );
        assert_eq!(
            src(&t, "mail.yandex.com.tr").as_deref(),
            Some("email:Yandex Mail")
        );
        assert_eq!(src(&t, "yandex.com.tr").as_deref(), Some("search:Yandex"));
        // not a TLD-ish tail: no match
        assert_eq!(src(&t, "google.example.com"), None);
        assert_eq!(src(&t, "notgoogle.com"), None);
        assert_eq!(src(&t, "xt.co"), None);
        assert_eq!(src(&t, "com"), None);
        assert_eq!(src(&t, ""), None);
        assert_eq!(src(&t, &"a.".repeat(200)), None);
    }

    #[test]
    fn path_keys_win_on_their_path_only() {
        let mut t = Table::empty();
        t.insert("example.com", Entry::new(Medium::Social, "Ex"));
        t.insert("example.com/chat", Entry::new(Medium::Chatbot, "Ex Chat"));
        t.insert("example.*/a/b", Entry::new(Medium::Search, "Deep"));
        let at = |h: &str, p: &str| t.lookup_path(h, p).map(|e| e.source.as_str());
        assert_eq!(at("www.example.com", "/chat"), Some("Ex Chat"));
        assert_eq!(at("www.example.com", "/chat/1"), Some("Ex Chat"));
        assert_eq!(at("www.example.com", "/chatter"), Some("Ex"));
        assert_eq!(at("www.example.com", "/"), Some("Ex"));
        assert_eq!(at("example.co.jp", "/a/b/c"), Some("Deep"));
        assert_eq!(at("example.co.jp", "/a"), None);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn keys_are_checked() {
        assert_eq!(check_key("Example.COM").as_deref(), Ok("example.com"));
        assert_eq!(check_key("example.*").as_deref(), Ok("example.*"));
        assert!(check_key("*.example.com").is_err());
        assert!(check_key("https://example.com").is_err());
        assert!(check_key("example.com/path").is_err());
        assert!(check_key("").is_err());
        assert!(check_key(".*").is_err());
        assert!(check_key("a..b").is_err());
        assert_eq!(
            check_key_with_path("WWW.Google.com/imgres").as_deref(),
            Ok("www.google.com/imgres")
        );
        assert!(check_key_with_path("x.com/a b").is_err());
        assert!(check_key_with_path("/a").is_err());
    }
}
