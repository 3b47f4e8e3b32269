//! The referrer filter through its public API: the output's exact shape,
//! each medium on a table of referrers, malformed and hostile values, the
//! config's overrides and errors, and a property test (never a panic, the
//! record's other fields kept).
//!
//! Over 600 lines for a reason: most of it is tables of cases (referrer,
//! medium, source, term, host), one row a line.

use fuwa_api::record;
use fuwa_api::testing::{build_context, filter_section, map};
use fuwa_api::{ConfigError, EventTime, Filter, FilterResult};
use fuwa_filter_referrer::{OwnHosts, ReferrerFilter, Table};
use proptest::prelude::*;
use rmpv::Value;

const CONFIG: &str = r#"
key = "referrer"
target = "ref"
own_hosts = ["note.com", "*.note.com"]
"#;

fn try_build(src: &str) -> Result<Box<dyn Filter>, Vec<ConfigError>> {
    fuwa_filter_referrer::build(&filter_section(src), &build_context("referrer.0", "UTC"))
}

fn build(src: &str) -> Box<dyn Filter> {
    try_build(src).unwrap_or_else(|e| panic!("{e:?}"))
}

fn apply(f: &dyn Filter, mut rec: Value) -> Value {
    let mut t = EventTime::new(1, 2);
    assert!(matches!(
        fuwa_api::testing::filter_value(&f, "tag", &mut t, &mut rec),
        FilterResult::Keep
    ));
    rec
}

fn with_referrer(f: &dyn Filter, r: &str) -> Value {
    let rec = apply(f, map(&[("referrer", r.into()), ("other", 1.into())]));
    assert_eq!(
        record::get(&rec, &record::path("other")),
        Some(&Value::from(1))
    );
    record::get(&rec, &record::path("ref")).unwrap().clone()
}

fn s(v: &Value, p: &str) -> Option<String> {
    record::get_str(v, &record::path(p)).map(str::to_string)
}

/// referrer, medium, source, term, host
type Case = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    &'static str,
);

const CASES: &[Case] = &[
    // search, in several languages
    (
        "https://www.google.com/search?q=%E3%83%86%E3%82%B9%E3%83%88",
        "search",
        Some("Google"),
        Some("テスト"),
        "www.google.com",
    ),
    (
        "https://www.google.co.jp/search?q=rust+%E5%85%A5%E9%96%80&hl=ja",
        "search",
        Some("Google"),
        Some("rust 入門"),
        "www.google.co.jp",
    ),
    (
        "https://google.com.br/search?q=caf%C3%A9",
        "search",
        Some("Google"),
        Some("café"),
        "google.com.br",
    ),
    (
        "https://www.google.de/url?sa=t&q=stra%C3%9Fe",
        "search",
        Some("Google"),
        Some("straße"),
        "www.google.de",
    ),
    (
        "https://www.google.co.uk/",
        "search",
        Some("Google"),
        None,
        "www.google.co.uk",
    ),
    (
        "https://www.google.com/",
        "search",
        Some("Google"),
        None,
        "www.google.com",
    ),
    (
        "https://www.bing.com/search?q=hello+world&form=QBLH",
        "search",
        Some("Bing"),
        Some("hello world"),
        "www.bing.com",
    ),
    (
        "https://cn.bing.com/search?q=%E4%BD%A0%E5%A5%BD",
        "search",
        Some("Bing"),
        Some("你好"),
        "cn.bing.com",
    ),
    (
        "https://search.yahoo.com/search?p=weather+today&fr=yfp",
        "search",
        Some("Yahoo!"),
        Some("weather today"),
        "search.yahoo.com",
    ),
    (
        "https://us.search.yahoo.com/search?p=x",
        "search",
        Some("Yahoo!"),
        Some("x"),
        "us.search.yahoo.com",
    ),
    (
        "https://search.yahoo.co.jp/search?p=%E5%A4%A9%E6%B0%97&ei=UTF-8",
        "search",
        Some("Yahoo! JAPAN"),
        Some("天気"),
        "search.yahoo.co.jp",
    ),
    (
        "https://duckduckgo.com/?q=privacy+browser&ia=web",
        "search",
        Some("DuckDuckGo"),
        Some("privacy browser"),
        "duckduckgo.com",
    ),
    (
        "https://www.baidu.com/s?wd=%E7%99%BE%E5%BA%A6&rsv_spt=1",
        "search",
        Some("Baidu"),
        Some("百度"),
        "www.baidu.com",
    ),
    (
        "https://m.baidu.com/s?word=%E6%89%8B%E6%9C%BA",
        "search",
        Some("Baidu"),
        Some("手机"),
        "m.baidu.com",
    ),
    (
        "https://yandex.ru/search/?text=%D0%BF%D1%80%D0%B8%D0%B2%D0%B5%D1%82&lr=213",
        "search",
        Some("Yandex"),
        Some("привет"),
        "yandex.ru",
    ),
    (
        "https://yandex.com.tr/search/?text=merhaba",
        "search",
        Some("Yandex"),
        Some("merhaba"),
        "yandex.com.tr",
    ),
    (
        "https://search.naver.com/search.naver?where=nexearch&query=%EC%95%88%EB%85%95",
        "search",
        Some("Naver"),
        Some("안녕"),
        "search.naver.com",
    ),
    (
        "https://m.search.naver.com/search.naver?query=abc",
        "search",
        Some("Naver"),
        Some("abc"),
        "m.search.naver.com",
    ),
    (
        "https://www.ecosia.org/search?method=index&q=trees",
        "search",
        Some("Ecosia"),
        Some("trees"),
        "www.ecosia.org",
    ),
    // an empty q falls back to nothing, not an empty term
    (
        "https://www.google.com/search?q=",
        "search",
        Some("Google"),
        None,
        "www.google.com",
    ),
    // social
    ("https://t.co/AbCdEf", "social", Some("X"), None, "t.co"),
    (
        "https://x.com/someone/status/1",
        "social",
        Some("X"),
        None,
        "x.com",
    ),
    (
        "https://twitter.com/",
        "social",
        Some("X"),
        None,
        "twitter.com",
    ),
    (
        "https://mobile.twitter.com/",
        "social",
        Some("X"),
        None,
        "mobile.twitter.com",
    ),
    (
        "https://www.facebook.com/",
        "social",
        Some("Facebook"),
        None,
        "www.facebook.com",
    ),
    (
        "https://m.facebook.com/",
        "social",
        Some("Facebook"),
        None,
        "m.facebook.com",
    ),
    (
        "https://l.facebook.com/l.php?u=https%3A%2F%2Fnote.com%2F",
        "social",
        Some("Facebook"),
        None,
        "l.facebook.com",
    ),
    (
        "https://lm.facebook.com/",
        "social",
        Some("Facebook"),
        None,
        "lm.facebook.com",
    ),
    (
        "https://l.instagram.com/?u=x",
        "social",
        Some("Instagram"),
        None,
        "l.instagram.com",
    ),
    (
        "https://www.linkedin.com/feed/",
        "social",
        Some("LinkedIn"),
        None,
        "www.linkedin.com",
    ),
    (
        "https://lnkd.in/abc",
        "social",
        Some("LinkedIn"),
        None,
        "lnkd.in",
    ),
    (
        "https://old.reddit.com/r/rust/",
        "social",
        Some("Reddit"),
        None,
        "old.reddit.com",
    ),
    (
        "https://www.youtube.com/watch?v=x",
        "social",
        Some("YouTube"),
        None,
        "www.youtube.com",
    ),
    (
        "https://youtu.be/x",
        "social",
        Some("YouTube"),
        None,
        "youtu.be",
    ),
    (
        "https://www.pinterest.jp/pin/1/",
        "social",
        Some("Pinterest"),
        None,
        "www.pinterest.jp",
    ),
    (
        "https://line.me/R/msg/text/",
        "social",
        Some("LINE"),
        None,
        "line.me",
    ),
    (
        "https://note.mu/someone/n/n123",
        "social",
        Some("note"),
        None,
        "note.mu",
    ),
    (
        "https://b.hatena.ne.jp/entry/s/note.com/",
        "social",
        Some("Hatena Bookmark"),
        None,
        "b.hatena.ne.jp",
    ),
    (
        "android-app://com.twitter.android/",
        "social",
        Some("X"),
        None,
        "com.twitter.android",
    ),
    // internal
    (
        "https://note.com/someone/n/n123",
        "internal",
        None,
        None,
        "note.com",
    ),
    ("https://NOTE.com:443/", "internal", None, None, "note.com"),
    (
        "https://www.note.com/",
        "internal",
        None,
        None,
        "www.note.com",
    ),
    (
        "https://a.b.note.com/x?q=1",
        "internal",
        None,
        None,
        "a.b.note.com",
    ),
    // not ours: a look-alike
    (
        "https://evilnote.com/",
        "unknown",
        None,
        None,
        "evilnote.com",
    ),
    (
        "https://note.com.evil.example/",
        "unknown",
        None,
        None,
        "note.com.evil.example",
    ),
    // email
    (
        "https://mail.google.com/mail/u/0/",
        "email",
        Some("Gmail"),
        None,
        "mail.google.com",
    ),
    (
        "https://outlook.live.com/mail/0/inbox",
        "email",
        Some("Outlook"),
        None,
        "outlook.live.com",
    ),
    (
        "https://outlook.office.com/",
        "email",
        Some("Outlook"),
        None,
        "outlook.office.com",
    ),
    (
        "https://mail.yahoo.com/d/folders/1",
        "email",
        Some("Yahoo! Mail"),
        None,
        "mail.yahoo.com",
    ),
    (
        "https://mail.yahoo.co.jp/",
        "email",
        Some("Yahoo! JAPAN Mail"),
        None,
        "mail.yahoo.co.jp",
    ),
    (
        "android-app://com.google.android.gm/",
        "email",
        Some("Gmail"),
        None,
        "com.google.android.gm",
    ),
    // unknown sites
    (
        "https://example.com/page?id=3",
        "unknown",
        None,
        None,
        "example.com",
    ),
    (
        "https://www.yahoo.co.jp/",
        "unknown",
        None,
        None,
        "www.yahoo.co.jp",
    ),
    (
        "http://192.168.0.1:8080/admin",
        "unknown",
        None,
        None,
        "192.168.0.1",
    ),
    (
        "http://[2001:db8::1]/",
        "unknown",
        None,
        None,
        "[2001:db8::1]",
    ),
];

#[test]
fn table_of_referrers() {
    let f = build(CONFIG);
    for (r, medium, source, term, host) in CASES {
        let out = with_referrer(f.as_ref(), r);
        assert_eq!(s(&out, "medium").as_deref(), Some(*medium), "{r}: {out}");
        assert_eq!(s(&out, "source").as_deref(), *source, "{r}: {out}");
        assert_eq!(s(&out, "term").as_deref(), *term, "{r}: {out}");
        assert_eq!(s(&out, "host").as_deref(), Some(*host), "{r}: {out}");
        assert!(s(&out, "scheme").is_some(), "{r}");
        assert!(s(&out, "path").unwrap().starts_with('/'), "{r}");
        assert!(
            matches!(
                record::get(&out, &record::path("query")),
                Some(Value::Map(_))
            ),
            "{r}"
        );
        assert!(record::get(&out, &record::path("raw")).is_none(), "{r}");
    }
}

#[test]
fn exact_output_shape() {
    let f = build(CONFIG);
    let out = with_referrer(
        f.as_ref(),
        "HTTPS://www.Google.co.jp/search?q=%E3%83%86%E3%82%B9%E3%83%88&utm_source=news+letter&utm_medium=email&utm_campaign=spring%2F2024&empty=&flag#top",
    );
    let want = map(&[
        ("scheme", "https".into()),
        ("host", "www.google.co.jp".into()),
        ("path", "/search".into()),
        (
            "query",
            map(&[
                ("q", "テスト".into()),
                ("utm_source", "news letter".into()),
                ("utm_medium", "email".into()),
                ("utm_campaign", "spring/2024".into()),
                ("empty", "".into()),
                ("flag", "".into()),
            ]),
        ),
        ("medium", "search".into()),
        ("source", "Google".into()),
        ("term", "テスト".into()),
        // the utm_* tags again at the top level (the same names whatever the table)
        ("utm_source", "news letter".into()),
        ("utm_medium", "email".into()),
        ("utm_campaign", "spring/2024".into()),
    ]);
    assert_eq!(out, want);

    // a plain unknown site: no source, no term
    let out = with_referrer(f.as_ref(), "https://blog.example.org/post/1?utm_source=x");
    let want = map(&[
        ("scheme", "https".into()),
        ("host", "blog.example.org".into()),
        ("path", "/post/1".into()),
        ("query", map(&[("utm_source", "x".into())])),
        ("medium", "unknown".into()),
        ("utm_source", "x".into()),
    ]);
    assert_eq!(out, want);
}

#[test]
fn utm_params_land_under_query_whatever_the_medium() {
    let f = build(CONFIG);
    for r in [
        "https://t.co/x?utm_source=twitter&utm_medium=social&utm_campaign=launch",
        "https://note.com/x?utm_source=twitter&utm_medium=social&utm_campaign=launch",
        "https://example.com/?utm_source=twitter&utm_medium=social&utm_campaign=launch",
    ] {
        let out = with_referrer(f.as_ref(), r);
        assert_eq!(
            s(&out, "query.utm_source").as_deref(),
            Some("twitter"),
            "{r}"
        );
        assert_eq!(
            s(&out, "query.utm_medium").as_deref(),
            Some("social"),
            "{r}"
        );
        assert_eq!(
            s(&out, "query.utm_campaign").as_deref(),
            Some("launch"),
            "{r}"
        );
    }
    // repeated parameters: the first wins
    let out = with_referrer(f.as_ref(), "https://example.com/?utm_source=a&utm_source=b");
    assert_eq!(s(&out, "query.utm_source").as_deref(), Some("a"));
}

#[test]
fn direct_when_empty_or_missing() {
    let f = build(CONFIG);
    let direct = map(&[("medium", "direct".into())]);
    for r in ["", "  ", "-"] {
        assert_eq!(with_referrer(f.as_ref(), r), direct, "{r:?}");
    }
    for rec in [map(&[("x", 1.into())]), map(&[("referrer", Value::Nil)])] {
        let out = apply(f.as_ref(), rec);
        assert_eq!(record::get(&out, &record::path("ref")), Some(&direct));
    }
}

#[test]
fn malformed_values_are_unknown_with_the_raw_value() {
    let f = build(CONFIG);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let garbage: String = (0..10 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b' ' + (x % 95) as u8)
        })
        .collect();
    for r in [
        "not a url",
        "http://",
        ":::",
        "//example.com/",
        "www.google.com/search?q=x",
        "http://exa mple.com/",
        "javascript:alert(1)",
        "http://x.com:notaport/",
        garbage.as_str(),
    ] {
        let out = with_referrer(f.as_ref(), r);
        let want = map(&[("medium", "unknown".into()), ("raw", r.into())]);
        assert_eq!(out, want, "{r:?}");
    }
    // the raw value is the original, untrimmed
    let out = with_referrer(f.as_ref(), " not a url ");
    assert_eq!(s(&out, "raw").as_deref(), Some(" not a url "));
    // non-text values are kept as they are
    for v in [
        Value::from(42),
        Value::from(true),
        Value::Array(vec!["https://t.co/".into()]),
        map(&[("url", "https://t.co/".into())]),
        Value::Binary(vec![0xff, 0x00]),
    ] {
        let out = apply(f.as_ref(), map(&[("referrer", v.clone())]));
        let want = map(&[("medium", "unknown".into()), ("raw", v.clone())]);
        assert_eq!(record::get(&out, &record::path("ref")), Some(&want), "{v}");
        assert_eq!(record::get(&out, &record::path("referrer")), Some(&v));
    }
    // UTF-8 binary is text
    let out = apply(
        f.as_ref(),
        map(&[("referrer", Value::Binary(b"https://t.co/x".to_vec()))]),
    );
    assert_eq!(s(&out, "ref.source").as_deref(), Some("X"));
}

#[test]
fn garbage_that_looks_like_a_url_still_parses() {
    let f = build(CONFIG);
    let long_path = format!("https://example.com/{}", "a/".repeat(5000));
    let out = with_referrer(f.as_ref(), &long_path);
    assert_eq!(s(&out, "medium").as_deref(), Some("unknown"));
    assert_eq!(s(&out, "host").as_deref(), Some("example.com"));
    let many: String = (0..3000).map(|i| format!("k{i}=v&")).collect();
    let out = with_referrer(
        f.as_ref(),
        &format!("https://www.google.com/search?{many}q=x"),
    );
    assert_eq!(s(&out, "term").as_deref(), Some("x"));
    assert_eq!(
        record::get(&out, &record::path("query"))
            .unwrap()
            .as_map()
            .unwrap()
            .len(),
        3001
    );
    // a very long host is kept but not looked up
    let host = format!("{}google.com", "a.".repeat(2000));
    let out = with_referrer(f.as_ref(), &format!("https://{host}/"));
    assert_eq!(s(&out, "medium").as_deref(), Some("unknown"));
}

#[test]
fn invalid_percent_escapes_are_kept_literally() {
    let f = build(CONFIG);
    let out = with_referrer(
        f.as_ref(),
        "https://www.google.com/search?q=100%25+%zz%4&x=%E3%83",
    );
    assert_eq!(s(&out, "term").as_deref(), Some("100% %zz%4"));
    assert_eq!(s(&out, "query.x").as_deref(), Some("\u{fffd}"));
    // a declared legacy charset (Shift_JIS) is decoded, not replaced with U+FFFD
    let out = with_referrer(
        f.as_ref(),
        "https://search.yahoo.co.jp/search?p=%83e%83X%83g&ei=Shift_JIS",
    );
    assert_eq!(s(&out, "medium").as_deref(), Some("search"));
    assert_eq!(s(&out, "term").as_deref(), Some("テスト"));
    // bytes that are not UTF-8 on a site with no known charset become U+FFFD
    let out = with_referrer(f.as_ref(), "https://example.com/?q=%83e%83X%83g");
    assert!(s(&out, "query.q").unwrap().contains('\u{fffd}'));
}

#[test]
fn config_overrides_and_additions() {
    let f = build(
        r#"
key = "req.referer"
target = "enriched.referrer"
own_hosts = ["Example.COM"]
[search]
"example-search.com" = { source = "Example", param = "q" }
"multi.example" = { source = "Multi", param = ["kw", "q"] }
"bing.com" = { source = "Bing (custom)", param = "query" }
"findit.*" = { source = "FindIt", param = "s" }
[social]
"example.social" = "Example Social"
"t.co" = "Twitter"
[email]
"mail.example.com" = "Example Mail"
"#,
    );
    let run = |r: &str| {
        let rec = apply(f.as_ref(), map(&[("req", map(&[("referer", r.into())]))]));
        record::get(&rec, &record::path("enriched.referrer"))
            .unwrap()
            .clone()
    };
    let cases: &[(&str, &str, Option<&str>, Option<&str>)] = &[
        (
            "https://example-search.com/?q=abc",
            "search",
            Some("Example"),
            Some("abc"),
        ),
        (
            "https://www.example-search.com/?q=abc",
            "search",
            Some("Example"),
            Some("abc"),
        ),
        (
            "https://multi.example/?q=second&kw=first",
            "search",
            Some("Multi"),
            Some("first"),
        ),
        (
            "https://multi.example/?q=second",
            "search",
            Some("Multi"),
            Some("second"),
        ),
        (
            "https://www.bing.com/?query=mine&q=theirs",
            "search",
            Some("Bing (custom)"),
            Some("mine"),
        ),
        (
            "https://findit.co.jp/?s=x",
            "search",
            Some("FindIt"),
            Some("x"),
        ),
        (
            "https://example.social/u/1",
            "social",
            Some("Example Social"),
            None,
        ),
        ("https://t.co/x", "social", Some("Twitter"), None),
        (
            "https://mail.example.com/inbox",
            "email",
            Some("Example Mail"),
            None,
        ),
        // own_hosts wins over the table; exact host only without `*.`
        ("https://example.com/", "internal", None, None),
        ("https://www.example.com/", "unknown", None, None),
        // built-ins that were not overridden are still there
        (
            "https://www.google.com/search?q=x",
            "search",
            Some("Google"),
            Some("x"),
        ),
    ];
    for (r, medium, source, term) in cases {
        let out = run(r);
        assert_eq!(s(&out, "medium").as_deref(), Some(*medium), "{r}: {out}");
        assert_eq!(s(&out, "source").as_deref(), *source, "{r}: {out}");
        assert_eq!(s(&out, "term").as_deref(), *term, "{r}: {out}");
    }
}

#[test]
fn config_errors() {
    let key = |src: &str| -> Vec<String> {
        try_build(src)
            .err()
            .unwrap_or_else(|| panic!("{src} should fail"))
            .into_iter()
            .map(|e| e.key)
            .collect()
    };
    assert_eq!(key("bogus = 1"), ["filter[0].bogus"]);
    assert_eq!(key("own_hosts = \"note.com\""), ["filter[0].own_hosts"]);
    assert_eq!(
        key("own_hosts = [\"https://note.com\"]"),
        ["filter[0].own_hosts"]
    );
    assert_eq!(key("own_hosts = [\"*note.com\"]"), ["filter[0].own_hosts"]);
    assert_eq!(key("target = \"\""), ["filter[0].target"]);
    assert_eq!(key("key = \"a..b\""), ["filter[0].key"]);
    assert_eq!(
        key("[search]\n\"x.com\" = { source = \"X\", param = \"q\", extra = 1 }"),
        ["filter[0].search.x.com.extra"]
    );
    assert_eq!(
        key("[search]\n\"https://x.com\" = { source = \"X\" }"),
        ["filter[0].search.\"https://x.com\""]
    );
    assert_eq!(
        key("[social]\n\"*.x.com\" = \"X\""),
        ["filter[0].social.\"*.x.com\""]
    );
    assert_eq!(
        key("[social]\n\"x.com\" = \"\""),
        ["filter[0].social.\"x.com\""]
    );
    assert_eq!(key("[email]\n\"x.com\" = 3"), ["filter[0].email.x.com"]);
    assert_eq!(
        key("[social]\n\"x.com\" = \"X\"\n[email]\n\"X.com\" = \"Y\""),
        ["filter[0].email.\"X.com\""]
    );
    let errs = try_build("[search]\n\"x.com\" = { source = \"X\", param = 3 }")
        .err()
        .unwrap();
    assert!(errs[0].key.starts_with("filter[0].search"), "{errs:?}");
    // errors about a host entry point at that entry, dots in the host or not
    let src = "own_hosts = []\n[social]\n\"ok.com\" = \"OK\"\n\"bad.com\" = \"\"\n";
    let e = try_build(src).err().unwrap();
    assert_eq!(&src[e[0].span.clone().unwrap()], "\"\"");
    // several problems are reported together
    assert_eq!(key("target = \"\"\nown_hosts = [\"a b\"]").len(), 2);
    // a minimal config builds
    build("");
}

#[test]
fn records_that_are_not_maps_are_untouched() {
    let f = build(CONFIG);
    for v in [
        Value::Nil,
        Value::from("https://t.co/"),
        Value::Array(vec![]),
    ] {
        assert_eq!(apply(f.as_ref(), v.clone()), v);
    }
}

#[test]
fn builtin_table_can_be_used_directly() {
    let f = ReferrerFilter::new(
        "referrer",
        "ref",
        OwnHosts::new(&["*.note.com"]).unwrap(),
        Table::builtin(),
    );
    let out = f.classify("https://note.com/");
    // `*.x` matches subdomains only
    assert_eq!(s(&out, "source").as_deref(), Some("note"));
    assert_eq!(s(&out, "medium").as_deref(), Some("social"));
    assert_eq!(
        s(&f.classify("https://www.note.com/"), "medium").as_deref(),
        Some("internal")
    );
    // with a page URL: its click ids count
    let out = f.classify_with_page("https://www.google.com/", Some("/p?gclid=1"));
    assert_eq!(s(&out, "medium").as_deref(), Some("paid"));
    assert_eq!(s(&out, "source").as_deref(), Some("Google Ads"));
    let f = f.with_url_key("page.url");
    let rec = apply(
        &f,
        map(&[
            ("referrer", "-".into()),
            ("page", map(&[("url", "/p?utm_source=chatgpt.com".into())])),
        ]),
    );
    assert_eq!(s(&rec, "ref.medium").as_deref(), Some("chatbot"));
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        arb_referrer().prop_map(Value::from),
        proptest::collection::vec(any::<u8>(), 0..32).prop_map(Value::Binary),
        (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(t, d)| Value::Ext(t, d)),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((inner.clone(), inner), 0..6).prop_map(Value::Map),
        ]
    })
}

/// Strings that are often URL-like, built from pieces that matter to the
/// parser.
fn arb_referrer() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,200}",
        proptest::collection::vec(
            prop_oneof![
                Just("https://"),
                Just("http://"),
                Just("android-app://"),
                Just("www."),
                Just("google"),
                Just("note"),
                Just(".com"),
                Just(".co.jp"),
                Just("."),
                Just(":"),
                Just("8080"),
                Just("@"),
                Just("["),
                Just("]"),
                Just("::1"),
                Just("/"),
                Just("?"),
                Just("#"),
                Just("&"),
                Just("="),
                Just("q"),
                Just("%"),
                Just("%E3%83%86"),
                Just("%zz"),
                Just("+"),
                Just(" "),
                Just("テスト"),
            ],
            0..24
        )
        .prop_map(|v| v.concat()),
    ]
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("referrer".to_string()),
        Just("ref".to_string()),
        Just("x".to_string()),
        any::<String>(),
    ]
}

fn check_kept(f: &dyn Filter, rec: Value) -> Result<(), TestCaseError> {
    let before = rec.clone();
    let mut after = rec;
    let mut t = EventTime::new(0, 0);
    prop_assert!(matches!(
        fuwa_api::testing::filter_value(&f, "t", &mut t, &mut after),
        FilterResult::Keep
    ));
    match (&before, &after) {
        (Value::Map(b), Value::Map(a)) => {
            for (k, v) in b {
                if k.as_str() == Some("ref") {
                    continue;
                }
                prop_assert!(a.iter().any(|(ak, av)| ak == k && av == v), "lost {:?}", k);
            }
            let out = record::get(&after, &record::path("ref"));
            let medium = out.and_then(|o| record::get_str(o, &record::path("medium")));
            prop_assert!(
                matches!(
                    medium,
                    Some("direct" | "internal" | "search" | "social" | "email" | "unknown")
                ),
                "bad output {:?}",
                out
            );
        }
        _ => prop_assert_eq!(&before, &after),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_records_are_kept(pairs in proptest::collection::vec((arb_key(), arb_value()), 0..8)) {
        let f = build(CONFIG);
        let rec = Value::Map(pairs.into_iter().map(|(k, v)| (Value::from(k), v)).collect());
        check_kept(f.as_ref(), rec)?;
    }

    #[test]
    fn arbitrary_referrers_are_classified(r in arb_referrer(), other in arb_value()) {
        let f = build(CONFIG);
        let rec = map(&[("referrer", r.as_str().into()), ("other", other)]);
        check_kept(f.as_ref(), rec.clone())?;
        let out = apply(f.as_ref(), rec);
        let out = record::get(&out, &record::path("ref")).unwrap();
        // either parsed (with a host) or kept raw, or direct
        let medium = s(out, "medium").unwrap();
        let has_host = s(out, "host").is_some();
        let has_raw = s(out, "raw").as_deref() == Some(r.as_str());
        prop_assert!(has_host || has_raw || medium == "direct", "{}: {}", r, out);
    }

    #[test]
    fn arbitrary_non_records_are_untouched(v in arb_value()) {
        let f = build(CONFIG);
        if !matches!(v, Value::Map(_)) {
            check_kept(f.as_ref(), v)?;
        }
    }
}
