//! A small, lenient parser for absolute URLs as they appear in Referer
//! headers: `scheme://[userinfo@]host[:port][/path][?query][#fragment]`.
//! Anything else is "not a URL". No allocation beyond the lowercase host.

use std::borrow::Cow;

use encoding_rs::{Encoding, UTF_8};

use crate::table::host_char;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url<'a> {
    /// lowercase
    pub scheme: String,
    /// lowercase, without port, userinfo or a trailing dot; IPv6 in brackets
    pub host: String,
    /// as written (still percent-encoded); `/` when empty
    pub path: &'a str,
    /// the text after `?`, without the fragment
    pub query: Option<&'a str>,
}

fn valid_scheme(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic())
        && cs.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn valid_port(p: &str) -> bool {
    p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// Parses an absolute URL with a host; `None` for anything else.
pub fn parse(s: &str) -> Option<Url<'_>> {
    let (scheme, rest) = s.split_once("://")?;
    if !valid_scheme(scheme) {
        return None;
    }
    let rest = rest.split('#').next().unwrap_or("");
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(auth_end);
    let (path, query) = match after.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (after, None),
    };
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        let (inside, tail) = v6.split_once(']')?;
        if inside.is_empty()
            || !inside
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        match tail.strip_prefix(':') {
            Some(port) if valid_port(port) => {}
            None if tail.is_empty() => {}
            _ => return None,
        }
        &hostport[..inside.len() + 2]
    } else {
        let host = match hostport.split_once(':') {
            Some((h, port)) if valid_port(port) => h,
            Some(_) => return None,
            None => hostport,
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty()
            || !host
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(host_char))
        {
            return None;
        }
        host
    };
    Some(Url {
        scheme: scheme.to_ascii_lowercase(),
        host: host.to_lowercase(),
        path: if path.is_empty() { "/" } else { path },
        query,
    })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `application/x-www-form-urlencoded` decoding to bytes: `+` is a space,
/// `%XX` a byte; a `%` not followed by two hex digits stays as it is.
pub fn decode_bytes(s: &str) -> Cow<'_, [u8]> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s.as_bytes());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = b.get(i + 1).copied().and_then(hex);
                let lo = b.get(i + 2).copied().and_then(hex);
                match (hi, lo) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(out)
}

/// Decoded bytes as text: with `declared` (a charset the URL names, other
/// than UTF-8) always; otherwise as UTF-8 when they are UTF-8, else with
/// `fallback` (the engine's known charset) when there is one, else lossily
/// (invalid sequences become U+FFFD).
pub fn to_text(
    bytes: Cow<'_, [u8]>,
    declared: Option<&'static Encoding>,
    fallback: Option<&'static Encoding>,
) -> String {
    if let Some(enc) = declared.filter(|e| *e != UTF_8) {
        return enc.decode_without_bom_handling(&bytes).0.into_owned();
    }
    match bytes {
        Cow::Borrowed(b) => match std::str::from_utf8(b) {
            Ok(s) => s.to_string(),
            Err(_) => match fallback {
                Some(enc) => enc.decode_without_bom_handling(b).0.into_owned(),
                None => String::from_utf8_lossy(b).into_owned(),
            },
        },
        Cow::Owned(v) => match String::from_utf8(v) {
            Ok(s) => s,
            Err(e) => match fallback {
                Some(enc) => enc.decode_without_bom_handling(e.as_bytes()).0.into_owned(),
                None => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            },
        },
    }
}

/// `application/x-www-form-urlencoded` decoding to UTF-8 text: bytes that
/// are not UTF-8 become U+FFFD.
pub fn decode(s: &str) -> String {
    to_text(decode_bytes(s), None, None)
}

/// Query parameters that name the charset of the others (`ie=Shift_JIS`,
/// `ei=EUC-JP`, `oe=`, `enc=`, ...), in order of preference: engines put
/// the input encoding in `ie`/`ei`, and the output (the page the form was
/// on) in `oe`.
pub const CHARSET_PARAMS: &[&str] = &[
    "ie",
    "ei",
    "enc",
    "encoding",
    "charset",
    "inputencoding",
    "_charset_",
    "oe",
];

/// The charset a query declares (see [`CHARSET_PARAMS`]); `None` when it
/// names none or one that is not a known label.
pub fn declared_charset(q: &str) -> Option<&'static Encoding> {
    if !q.contains('=') {
        return None;
    }
    let mut best: Option<(usize, &'static Encoding)> = None;
    for part in q.split('&') {
        let Some((k, v)) = part.split_once('=') else {
            continue;
        };
        if k.len() > 13 {
            continue;
        }
        let Some(rank) = CHARSET_PARAMS
            .iter()
            .position(|p| p.eq_ignore_ascii_case(k))
        else {
            continue;
        };
        if best.is_some_and(|(r, _)| r <= rank) {
            continue;
        }
        let label = decode_bytes(v);
        if let Some(enc) = Encoding::for_label(label.trim_ascii()) {
            best = Some((rank, enc));
        }
    }
    best.map(|(_, e)| e)
}

/// The query's parameters in order, decoded as UTF-8 (bytes that are not
/// become U+FFFD); see [`query_pairs_in`].
pub fn query_pairs(q: &str) -> Vec<(String, String)> {
    query_pairs_in(q, None)
}

/// The query's parameters in order, decoded: with the charset the query
/// declares ([`declared_charset`]), else as UTF-8, else with `fallback` (the
/// engine's charset), else lossily. The first of repeated names wins; empty
/// names are skipped; a name without `=` has the value `""`.
pub fn query_pairs_in(q: &str, fallback: Option<&'static Encoding>) -> Vec<(String, String)> {
    let declared = declared_charset(q).filter(|e| *e != UTF_8);
    let text = |s: &str| {
        if declared.is_none() && !s.contains(['%', '+']) {
            // already text: nothing to decode
            return s.to_string();
        }
        to_text(decode_bytes(s), declared, fallback)
    };
    let mut out: Vec<(String, String)> = Vec::new();
    // a set only for long queries, where a linear scan would be quadratic
    let mut seen: Option<std::collections::HashSet<String>> = None;
    for part in q.split('&') {
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let k = text(k);
        if k.is_empty() {
            continue;
        }
        let dup = match &seen {
            Some(set) => set.contains(&k),
            None => out.iter().any(|(ok, _)| *ok == k),
        };
        if dup {
            continue;
        }
        if let Some(set) = &mut seen {
            set.insert(k.clone());
        }
        out.push((k, text(v)));
        if seen.is_none() && out.len() >= 32 {
            seen = Some(out.iter().map(|(ok, _)| ok.clone()).collect());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<(String, String, String, Option<String>)> {
        parse(s).map(|u| {
            (
                u.scheme,
                u.host,
                u.path.to_string(),
                u.query.map(str::to_string),
            )
        })
    }

    #[test]
    fn urls() {
        assert_eq!(
            p("HTTPS://User:pw@WWW.Example.COM.:8443/a/b%20c?x=1&y#frag"),
            Some((
                "https".into(),
                "www.example.com".into(),
                "/a/b%20c".into(),
                Some("x=1&y".into())
            ))
        );
        assert_eq!(
            p("https://example.com"),
            Some(("https".into(), "example.com".into(), "/".into(), None))
        );
        assert_eq!(
            p("https://example.com?q=1"),
            Some((
                "https".into(),
                "example.com".into(),
                "/".into(),
                Some("q=1".into())
            ))
        );
        assert_eq!(
            p("http://[::1]:8080/x"),
            Some(("http".into(), "[::1]".into(), "/x".into(), None))
        );
        assert_eq!(
            p("android-app://com.google.android.gm/"),
            Some((
                "android-app".into(),
                "com.google.android.gm".into(),
                "/".into(),
                None
            ))
        );
        assert_eq!(p("https://例え.テスト/").unwrap().1, "例え.テスト");
        assert_eq!(p("https://example.com:/").unwrap().1, "example.com");
        for bad in [
            "",
            "not a url",
            "http://",
            "http:///path",
            ":::",
            "://x.com",
            "1http://x.com",
            "http//x.com",
            "www.google.com/search?q=x",
            "javascript:alert(1)",
            "http://exa mple.com/",
            "http://a..b/",
            "http://.",
            "http://x.com:port/",
            "http://x.com:123456/",
            "http://[zz]/",
            "http://[::1/",
            "http://[::1]x/",
            "http://%41.com/",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn decoding() {
        assert_eq!(decode("%E3%83%86%E3%82%B9%E3%83%88"), "テスト");
        assert_eq!(decode("a+b%20c"), "a b c");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%"), "%");
        assert_eq!(decode("%4"), "%4");
        assert_eq!(decode("%zz%4g"), "%zz%4g");
        assert_eq!(decode("%41%42"), "AB");
        assert_eq!(decode("%ff%fe"), "\u{fffd}\u{fffd}");
        assert_eq!(decode("plain"), "plain");
        assert_eq!(decode("%E3%83"), "\u{fffd}");
    }

    #[test]
    fn pairs() {
        let q = query_pairs("a=1&b&&=x&a=2&c=%20&d=e=f");
        let want: Vec<(String, String)> = [("a", "1"), ("b", ""), ("c", " "), ("d", "e=f")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(q, want);
        // long queries dedupe the same way
        let long: String = (0..100).map(|i| format!("k{}={i}&", i % 40)).collect();
        let q = query_pairs(&long);
        assert_eq!(q.len(), 40);
        assert_eq!(q[5], ("k5".to_string(), "5".to_string()));
        assert_eq!(q[39], ("k39".to_string(), "39".to_string()));
    }

    #[test]
    fn charsets() {
        let sjis = "%83e%83X%83g"; // テスト in Shift_JIS
        let euc = "%A5%C6%A5%B9%A5%C8"; // テスト in EUC-JP
        let gbk = "%B0%D9%B6%C8"; // 百度 in GB2312
        let get = |q: &str, fb: Option<&'static Encoding>| query_pairs_in(q, fb)[0].1.clone();
        assert_eq!(get(&format!("p={sjis}&ei=Shift_JIS"), None), "テスト");
        assert_eq!(get(&format!("p={euc}&ei=EUC-JP"), None), "テスト");
        assert_eq!(get(&format!("wd={gbk}&ie=gb2312"), None), "百度");
        assert_eq!(get(&format!("wd={gbk}&IE=GB2312"), None), "百度");
        // no declaration: UTF-8 first, then the engine's charset
        assert_eq!(get(&format!("wd={gbk}"), Some(encoding_rs::GBK)), "百度");
        assert_eq!(get("wd=%E7%99%BE%E5%BA%A6", Some(encoding_rs::GBK)), "百度");
        assert!(get(&format!("wd={gbk}"), None).starts_with('\u{fffd}'));
        // `ie` wins over `oe`; an unknown label is no declaration
        assert_eq!(get(&format!("q={sjis}&oe=euc-jp&ie=sjis"), None), "テスト");
        assert_eq!(
            get(
                &format!("q={sjis}&ie=klingon"),
                Some(encoding_rs::SHIFT_JIS)
            ),
            "テスト"
        );
        // declared UTF-8 with bytes that are not: the engine's charset
        assert_eq!(
            get(&format!("q={euc}&ie=utf-8"), Some(encoding_rs::EUC_JP)),
            "テスト"
        );
        assert_eq!(declared_charset("a=1&ie=UTF-8"), Some(UTF_8));
        assert_eq!(declared_charset("ie"), None);
    }
}
