use std::sync::Arc;

use fuwa_api::record;
use fuwa_api::testing::{build_context, filter_section, map};
use fuwa_api::{ConfigError, EventTime, Filter, FilterResult};
use fuwa_filter_user_agent::{UserAgentFilter, FIELDS, MAX_CACHED_LEN};
use proptest::prelude::*;
use rmpv::Value;

fn try_build(src: &str) -> Result<Box<dyn Filter>, Vec<ConfigError>> {
    fuwa_filter_user_agent::build(&filter_section(src), &build_context("user_agent.0", "UTC"))
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
    assert_eq!(t, EventTime::new(1, 2));
    rec
}

fn get<'a>(rec: &'a Value, p: &str) -> Option<&'a Value> {
    record::get(rec, &record::path(p))
}

fn s(rec: &Value, p: &str) -> Option<String> {
    record::get_str(rec, &record::path(p)).map(str::to_string)
}

const CHROME_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";

#[test]
fn writes_the_six_fields_under_target() {
    let f = build("");
    let rec = apply(
        f.as_ref(),
        map(&[("user_agent", CHROME_MAC.into()), ("x", 1.into())]),
    );
    let ua = get(&rec, "ua").unwrap().as_map().unwrap();
    let keys: Vec<_> = ua.iter().map(|(k, _)| k.as_str().unwrap()).collect();
    assert_eq!(keys, FIELDS);
    assert_eq!(s(&rec, "ua.name").as_deref(), Some("Chrome"));
    assert_eq!(s(&rec, "ua.category").as_deref(), Some("pc"));
    assert_eq!(s(&rec, "ua.os").as_deref(), Some("Mac OSX"));
    assert_eq!(s(&rec, "ua.os_version").as_deref(), Some("10.15.7"));
    assert_eq!(s(&rec, "ua.version").as_deref(), Some("124.0.0.0"));
    assert_eq!(s(&rec, "ua.vendor").as_deref(), Some("Google"));
    // the rest of the record is untouched
    assert_eq!(get(&rec, "x"), Some(&Value::from(1)));
    assert_eq!(s(&rec, "user_agent").as_deref(), Some(CHROME_MAC));
}

#[test]
fn dot_paths_for_key_and_target() {
    let f = build("key = \"http.headers.ua\"\ntarget = \"enriched.client\"\n");
    let rec = apply(
        f.as_ref(),
        map(&[("http", map(&[("headers", map(&[("ua", IPHONE.into())]))]))]),
    );
    assert_eq!(
        s(&rec, "enriched.client.category").as_deref(),
        Some("smartphone")
    );
    assert_eq!(s(&rec, "enriched.client.os").as_deref(), Some("iPhone"));
    assert_eq!(s(&rec, "enriched.client.name").as_deref(), Some("Safari"));
}

#[test]
fn flatten_writes_prefixed_siblings() {
    let f = build("flatten = true\n");
    let rec = apply(f.as_ref(), map(&[("user_agent", IPHONE.into())]));
    assert!(get(&rec, "ua").is_none());
    for k in FIELDS {
        assert!(s(&rec, &format!("ua_{k}")).is_some(), "ua_{k}");
    }
    assert_eq!(s(&rec, "ua_name").as_deref(), Some("Safari"));
    assert_eq!(s(&rec, "ua_category").as_deref(), Some("smartphone"));
    assert_eq!(s(&rec, "ua_os").as_deref(), Some("iPhone"));
    assert_eq!(s(&rec, "ua_os_version").as_deref(), Some("17.4"));
    assert_eq!(s(&rec, "ua_version").as_deref(), Some("17.4"));
    assert_eq!(s(&rec, "ua_vendor").as_deref(), Some("Apple"));

    // with a dotted target the last part takes the suffix
    let f = build("flatten = true\ntarget = \"client.ua\"\n");
    let rec = apply(f.as_ref(), map(&[("user_agent", IPHONE.into())]));
    assert_eq!(s(&rec, "client.ua_os").as_deref(), Some("iPhone"));
    assert_eq!(get(&rec, "client").unwrap().as_map().unwrap().len(), 6);
}

#[test]
fn empty_string_and_dash_are_all_unknown() {
    let f = build("");
    for ua in ["", "-"] {
        let rec = apply(f.as_ref(), map(&[("user_agent", ua.into())]));
        for k in FIELDS {
            assert_eq!(
                s(&rec, &format!("ua.{k}")).as_deref(),
                Some("UNKNOWN"),
                "{ua:?} {k}"
            );
        }
    }
}

#[test]
fn unrecognised_text_is_all_unknown() {
    let f = build("");
    let rec = apply(f.as_ref(), map(&[("user_agent", "hello there".into())]));
    for k in FIELDS {
        assert_eq!(
            s(&rec, &format!("ua.{k}")).as_deref(),
            Some("UNKNOWN"),
            "{k}"
        );
    }
}

#[test]
fn ten_kilobytes_of_garbage_parse_and_are_not_cached() {
    let f = UserAgentFilter::new(record::path("user_agent"), record::path("ua"), false, 100);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let garbage: String = (0..10 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b' ' + (x % 95) as u8)
        })
        .collect();
    let rec = apply(&f, map(&[("user_agent", garbage.as_str().into())]));
    for k in FIELDS {
        assert!(s(&rec, &format!("ua.{k}")).is_some(), "{k}");
    }
    assert_eq!(f.cached(), 0, "a 10 KiB User-Agent must not be cached");
    // a real UA padded past the limit still parses
    let long = format!("{CHROME_MAC} {}", "x".repeat(MAX_CACHED_LEN));
    let rec = apply(&f, map(&[("user_agent", long.as_str().into())]));
    assert_eq!(s(&rec, "ua.name").as_deref(), Some("Chrome"));
    assert_eq!(f.cached(), 0);
    // exactly at the limit it is cached
    let at = format!(
        "{CHROME_MAC}{}",
        " ".repeat(MAX_CACHED_LEN - CHROME_MAC.len())
    );
    apply(&f, map(&[("user_agent", at.as_str().into())]));
    assert_eq!(f.cached(), 1);
    // a msgpack string that is not UTF-8 is read lossily
    let mut raw: &[u8] = &[0xa6, b'c', b'u', b'r', b'l', 0xff, 0xfe];
    let bad = rmpv::decode::read_value(&mut raw).unwrap();
    assert!(bad.as_str().is_none());
    let rec = apply(&f, map(&[("user_agent", bad)]));
    assert!(get(&rec, "ua").is_some());
}

#[test]
fn missing_or_non_string_field_leaves_the_record_unchanged() {
    let f = build("");
    let cases = vec![
        map(&[("other", "x".into())]),
        map(&[]),
        map(&[("user_agent", Value::Nil)]),
        map(&[("user_agent", 42.into())]),
        map(&[("user_agent", true.into())]),
        map(&[("user_agent", 1.5.into())]),
        map(&[("user_agent", Value::Array(vec![CHROME_MAC.into()]))]),
        map(&[("user_agent", map(&[("a", CHROME_MAC.into())]))]),
        map(&[("user_agent", Value::Binary(vec![0xff, 0xfe, 0x00]))]),
        map(&[("user_agent", Value::Ext(5, b"Mozilla".to_vec()))]),
        // not a record at all
        Value::from("Mozilla/5.0"),
        Value::Array(vec![]),
        Value::Nil,
    ];
    for rec in cases {
        let out = apply(f.as_ref(), rec.clone());
        assert_eq!(out, rec);
    }
    // UTF-8 binary counts as text
    let out = apply(
        f.as_ref(),
        map(&[("user_agent", Value::Binary(CHROME_MAC.as_bytes().to_vec()))]),
    );
    assert_eq!(s(&out, "ua.name").as_deref(), Some("Chrome"));
}

#[test]
fn an_existing_target_is_replaced() {
    let f = build("");
    let rec = apply(
        f.as_ref(),
        map(&[("user_agent", CHROME_MAC.into()), ("ua", "old".into())]),
    );
    assert_eq!(s(&rec, "ua.name").as_deref(), Some("Chrome"));
    assert_eq!(rec.as_map().unwrap().len(), 2);
}

#[test]
fn a_cache_hit_returns_the_same_as_a_miss() {
    let cached = UserAgentFilter::new(record::path("user_agent"), record::path("ua"), false, 2);
    let uncached = UserAgentFilter::new(record::path("user_agent"), record::path("ua"), false, 0);
    let uas = [
        CHROME_MAC,
        IPHONE,
        "",
        "curl/8.5.0",
        CHROME_MAC,
        IPHONE,
        CHROME_MAC,
    ];
    for ua in uas {
        let a = apply(&cached, map(&[("user_agent", ua.into())]));
        let b = apply(&cached, map(&[("user_agent", ua.into())])); // a hit for sure
        let c = apply(&uncached, map(&[("user_agent", ua.into())]));
        assert_eq!(a, b, "{ua}");
        assert_eq!(a, c, "{ua}");
    }
    assert!(cached.cached() <= 2);
    assert_eq!(uncached.cached(), 0);
    // the cached value is shared, not re-parsed
    let x = cached.lookup(IPHONE);
    let y = cached.lookup(IPHONE);
    assert!(Arc::ptr_eq(&x, &y));
}

#[test]
fn the_cache_is_shared_across_threads() {
    let f = Arc::new(UserAgentFilter::new(
        record::path("user_agent"),
        record::path("ua"),
        false,
        64,
    ));
    let uas: Vec<String> = (0..100).map(|i| format!("{CHROME_MAC} app/{i}")).collect();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let f = f.clone();
            let uas = uas.clone();
            std::thread::spawn(move || {
                for i in 0..2000 {
                    let ua = &uas[(i * (t + 1)) % uas.len()];
                    let rec = apply(f.as_ref(), map(&[("user_agent", ua.as_str().into())]));
                    assert_eq!(s(&rec, "ua.name").as_deref(), Some("Chrome"));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(f.cached() <= 64);
}

#[test]
fn config_errors() {
    let e = try_build("bogus = 1\n").err().unwrap();
    assert_eq!(e[0].key, "filter[0].bogus");
    let e = try_build("cache_size = -1\n").err().unwrap();
    assert_eq!(e[0].key, "filter[0].cache_size");
    let e = try_build("flatten = \"yes\"\n").err().unwrap();
    assert_eq!(e[0].key, "filter[0].flatten");
    let e = try_build("key = \"\"\ntarget = \"a..b\"\n").err().unwrap();
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].key, "filter[0].key");
    assert_eq!(e[1].key, "filter[0].target");
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
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

/// A key for the record: often the one the filter reads or writes.
fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("user_agent".to_string()),
        Just("ua".to_string()),
        Just("a".to_string()),
        any::<String>(),
    ]
}

fn arb_ua() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,300}",
        Just(CHROME_MAC.to_string()),
        // real-looking pieces glued together
        proptest::collection::vec(
            prop_oneof![
                Just("Mozilla/5.0 ("),
                Just("Windows NT 10.0; "),
                Just("iPhone; CPU iPhone OS 17_4 like Mac OS X"),
                Just("Android 14; "),
                Just(") "),
                Just("Chrome/"),
                Just("Version/"),
                Just("MSIE "),
                Just("Trident/"),
                Just("Firefox/"),
                Just("DoCoMo/2.0 "),
                Just("KDDI-"),
                Just("bot"),
                Just("1.2.3"),
                Just("; "),
                Just("\u{3042}"),
            ],
            0..20
        )
        .prop_map(|v| v.concat()),
    ]
}

fn check_kept(f: &dyn Filter, rec: Value, target: &str) -> Result<(), TestCaseError> {
    let before = rec.clone();
    let mut after = rec;
    let mut t = EventTime::new(0, 0);
    prop_assert!(matches!(
        fuwa_api::testing::filter_value(&f, "t", &mut t, &mut after),
        FilterResult::Keep
    ));
    match (&before, &after) {
        (Value::Map(b), Value::Map(a)) => {
            // every field the filter does not own is still there, unchanged
            for (k, v) in b {
                if k.as_str().is_some_and(|k| k.starts_with(target)) {
                    continue;
                }
                prop_assert!(a.iter().any(|(ak, av)| ak == k && av == v), "lost {:?}", k);
            }
        }
        _ => prop_assert_eq!(&before, &after),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_records_are_kept(
        pairs in proptest::collection::vec((arb_key(), arb_value()), 0..8),
        flatten in any::<bool>(),
        cache in 0usize..3,
    ) {
        let f = UserAgentFilter::new(record::path("user_agent"), record::path("ua"), flatten, cache);
        let rec = Value::Map(pairs.into_iter().map(|(k, v)| (Value::from(k), v)).collect());
        check_kept(&f, rec, "ua")?;
    }

    #[test]
    fn arbitrary_user_agents_are_parsed(ua in arb_ua(), other in arb_value()) {
        let f = UserAgentFilter::new(record::path("user_agent"), record::path("ua"), false, 8);
        let rec = map(&[("user_agent", ua.as_str().into()), ("other", other)]);
        check_kept(&f, rec.clone(), "ua")?;
        let out = apply(&f, rec);
        for k in FIELDS {
            let p = format!("ua.{k}");
            prop_assert!(s(&out, &p).is_some(), "{} missing", p);
        }
    }

    #[test]
    fn arbitrary_non_records_are_untouched(v in arb_value()) {
        let f = UserAgentFilter::new(record::path("user_agent"), record::path("ua"), false, 8);
        if !matches!(v, Value::Map(_)) {
            check_kept(&f, v, "ua")?;
        }
    }
}
