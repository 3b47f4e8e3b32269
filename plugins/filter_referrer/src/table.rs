//! The built-in table of search engines, social networks and webmail, and
//! host lookup in it.
//!
//! A key matches the host itself and every subdomain of it (`facebook.com`
//! matches `m.facebook.com` and `l.facebook.com`); the most specific key
//! wins (`mail.google.com` before `google.*`). A key ending in `.*` matches
//! any top-level domain, including two-part country domains such as `co.jp`,
//! `com.br` or `co.uk` (`google.*` matches `google.com`, `www.google.co.jp`).

use std::collections::HashMap;

/// Search engines: host key, source name, query parameters that carry the
/// search term (the first one present and non-empty wins).
pub const SEARCH: &[(&str, &str, &[&str])] = &[
    ("google.*", "Google", &["q"]),
    ("com.google.android.googlequicksearchbox", "Google", &["q"]),
    ("bing.com", "Bing", &["q"]),
    ("search.yahoo.com", "Yahoo!", &["p"]),
    ("search.yahoo.co.jp", "Yahoo! JAPAN", &["p"]),
    ("duckduckgo.com", "DuckDuckGo", &["q"]),
    ("baidu.com", "Baidu", &["wd", "word"]),
    ("yandex.*", "Yandex", &["text"]),
    ("ya.ru", "Yandex", &["text"]),
    ("search.naver.com", "Naver", &["query"]),
    ("ecosia.org", "Ecosia", &["q"]),
    ("search.brave.com", "Brave", &["q"]),
    ("startpage.com", "Startpage", &["query", "q"]),
    ("qwant.com", "Qwant", &["q"]),
    ("search.seznam.cz", "Seznam", &["q"]),
    ("search.daum.net", "Daum", &["q"]),
    ("sogou.com", "Sogou", &["query"]),
    ("so.com", "360 Search", &["q"]),
    ("ask.com", "Ask", &["q"]),
    ("search.aol.com", "AOL", &["q"]),
    ("search.goo.ne.jp", "goo", &["MT"]),
    ("websearch.rakuten.co.jp", "Rakuten", &["qt"]),
    ("search.nifty.com", "@nifty", &["q"]),
    ("search.biglobe.ne.jp", "BIGLOBE", &["q"]),
    ("search.smt.docomo.ne.jp", "docomo", &["MT"]),
    ("search.auone.jp", "au", &["q"]),
];

/// Social networks: host key, source name.
pub const SOCIAL: &[(&str, &str)] = &[
    ("twitter.com", "X"),
    ("x.com", "X"),
    ("t.co", "X"),
    ("com.twitter.android", "X"),
    ("facebook.com", "Facebook"),
    ("fb.com", "Facebook"),
    ("fb.me", "Facebook"),
    ("com.facebook.katana", "Facebook"),
    ("instagram.com", "Instagram"),
    ("com.instagram.android", "Instagram"),
    ("linkedin.com", "LinkedIn"),
    ("lnkd.in", "LinkedIn"),
    ("com.linkedin.android", "LinkedIn"),
    ("reddit.com", "Reddit"),
    ("redd.it", "Reddit"),
    ("com.reddit.frontpage", "Reddit"),
    ("youtube.com", "YouTube"),
    ("youtu.be", "YouTube"),
    ("pinterest.*", "Pinterest"),
    ("pin.it", "Pinterest"),
    ("line.me", "LINE"),
    ("lin.ee", "LINE"),
    ("jp.naver.line.android", "LINE"),
    // note's share host (note.mu) and note itself; a note deployment lists
    // note.com in own_hosts, which is checked first (medium `internal`)
    ("note.mu", "note"),
    ("note.com", "note"),
    ("threads.net", "Threads"),
    ("threads.com", "Threads"),
    ("tiktok.com", "TikTok"),
    ("bsky.app", "Bluesky"),
    ("b.hatena.ne.jp", "Hatena Bookmark"),
    ("news.ycombinator.com", "Hacker News"),
    ("weibo.com", "Weibo"),
    ("t.cn", "Weibo"),
    ("vk.com", "VK"),
    ("tumblr.com", "Tumblr"),
    ("mixi.jp", "mixi"),
];

/// Webmail: host key, source name.
pub const EMAIL: &[(&str, &str)] = &[
    ("mail.google.com", "Gmail"),
    ("com.google.android.gm", "Gmail"),
    ("outlook.live.com", "Outlook"),
    ("outlook.office.com", "Outlook"),
    ("outlook.office365.com", "Outlook"),
    ("mail.live.com", "Outlook"),
    ("mail.yahoo.com", "Yahoo! Mail"),
    ("mail.yahoo.co.jp", "Yahoo! JAPAN Mail"),
    ("mail.aol.com", "AOL Mail"),
    ("mail.proton.me", "Proton Mail"),
    ("mail.zoho.com", "Zoho Mail"),
    ("mail.yandex.ru", "Yandex Mail"),
    ("mail.yandex.com", "Yandex Mail"),
    ("mail.naver.com", "Naver Mail"),
    ("mail.qq.com", "QQ Mail"),
    ("mail.163.com", "NetEase Mail"),
    ("e.mail.ru", "Mail.ru"),
];

/// Second-level labels that make a two-part country domain (`co.jp`,
/// `com.br`) for `name.*` keys.
const SECOND_LEVEL: &[&str] = &[
    "co", "com", "net", "org", "ne", "or", "ac", "ad", "ed", "go", "gr", "lg", "edu", "gov", "gob",
    "mil", "nom",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    Search,
    Social,
    Email,
}

impl Medium {
    pub fn as_str(self) -> &'static str {
        match self {
            Medium::Search => "search",
            Medium::Social => "social",
            Medium::Email => "email",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub medium: Medium,
    pub source: String,
    /// search only: parameters holding the term, in order of preference
    pub params: Vec<String>,
}

/// Hosts longer than this are not valid DNS names and are not looked up.
const MAX_HOST: usize = 253;

#[derive(Debug, Clone, Default)]
pub struct Table {
    /// `facebook.com`
    exact: HashMap<String, Entry>,
    /// `google` for the key `google.*`
    any_tld: HashMap<String, Entry>,
}

impl Table {
    pub fn empty() -> Self {
        Table::default()
    }

    /// The built-in table.
    pub fn builtin() -> Self {
        let mut t = Table::empty();
        for (k, source, params) in SEARCH {
            t.insert(
                k,
                Entry {
                    medium: Medium::Search,
                    source: source.to_string(),
                    params: params.iter().map(|p| p.to_string()).collect(),
                },
            );
        }
        for (list, medium) in [(SOCIAL, Medium::Social), (EMAIL, Medium::Email)] {
            for (k, source) in list {
                t.insert(
                    k,
                    Entry {
                        medium,
                        source: source.to_string(),
                        params: Vec::new(),
                    },
                );
            }
        }
        t
    }

    /// Adds or replaces the entry for a key (`example.com` or `example.*`),
    /// which must already be valid (see [`check_key`]) and lowercase.
    pub fn insert(&mut self, key: &str, entry: Entry) {
        match key.strip_suffix(".*") {
            Some(base) => self.any_tld.insert(base.to_string(), entry),
            None => self.exact.insert(key.to_string(), entry),
        };
    }

    /// The most specific entry matching a lowercase host.
    pub fn lookup(&self, host: &str) -> Option<&Entry> {
        if host.len() > MAX_HOST || host.is_empty() {
            return None;
        }
        let mut start = 0;
        loop {
            let suffix = &host[start..];
            if let Some(e) = self.exact.get(suffix) {
                return Some(e);
            }
            if !self.any_tld.is_empty() {
                if let Some(e) = self.lookup_any_tld(suffix) {
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
    fn lookup_any_tld(&self, suffix: &str) -> Option<&Entry> {
        let last = suffix.rfind('.')?;
        let base = &suffix[..last];
        if let Some(e) = self.any_tld.get(base) {
            return Some(e);
        }
        let second = base.rfind('.')?;
        if SECOND_LEVEL.contains(&&base[second + 1..]) {
            return self.any_tld.get(&base[..second]);
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
        let keys = SEARCH
            .iter()
            .map(|e| e.0)
            .chain(SOCIAL.iter().map(|e| e.0))
            .chain(EMAIL.iter().map(|e| e.0));
        for k in keys {
            assert_eq!(check_key(k).as_deref(), Ok(k), "{k}");
            assert!(seen.insert(k), "{k} twice");
        }
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
    fn keys_are_checked() {
        assert_eq!(check_key("Example.COM").as_deref(), Ok("example.com"));
        assert_eq!(check_key("example.*").as_deref(), Ok("example.*"));
        assert!(check_key("*.example.com").is_err());
        assert!(check_key("https://example.com").is_err());
        assert!(check_key("example.com/path").is_err());
        assert!(check_key("").is_err());
        assert!(check_key(".*").is_err());
        assert!(check_key("a..b").is_err());
    }
}
