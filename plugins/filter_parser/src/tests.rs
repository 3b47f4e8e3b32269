//! Unit tests of the parser filter: every option, every parser key through
//! the filter, the errors naming their key, and property tests over
//! hostile records. Over 600 lines for a reason: one feature, one option a
//! test.

use super::*;
use proptest::prelude::*;

use fuwa_api::testing::{filter_section as section, map, Values};

fn ctx(tz: &str) -> BuildContext {
    fuwa_api::testing::build_context("parser.0", tz)
}

fn filter(src: &str) -> ParserFilter {
    ParserFilter::from_section(&section(src), &ctx("UTC")).unwrap()
}

fn errs(src: &str) -> Vec<ConfigError> {
    ParserFilter::from_section(&section(src), &ctx("UTC"))
        .err()
        .expect("config should be refused")
}

fn err(src: &str) -> ConfigError {
    errs(src).remove(0)
}

const T0: EventTime = EventTime {
    secs: 1_000,
    nanos: 1,
};

/// Runs the filter; returns the record and the event time.
fn run(f: &ParserFilter, rec: Value) -> (Value, EventTime) {
    let mut r = rec;
    let mut t = T0;
    assert!(matches!(
        fuwa_api::testing::filter_value(&f, "tag", &mut t, &mut r),
        FilterResult::Keep
    ));
    (r, t)
}

fn docker(log: &str) -> Value {
    map(vec![
        ("log", log.into()),
        ("stream", "stdout".into()),
        ("container_id", "abc".into()),
    ])
}

#[test]
fn json_replaces_the_record_by_default() {
    let f = filter(
        r#"key_name = "log"
format = "json""#,
    );
    let (r, t) = run(&f, docker(r#"{"a":1,"b":"x","n":{"c":true}}"#));
    assert_eq!(
        r,
        map(vec![
            ("a", Value::from(1)),
            ("b", "x".into()),
            ("n", map(vec![("c", Value::Boolean(true))])),
        ])
    );
    assert_eq!(t, T0, "no time_key: the event time stays");
    assert_eq!(f.failures(), 0);
}

#[test]
fn reserve_data_merges_and_parsed_fields_win() {
    let f = filter(
        r#"key_name = "log"
format = "json"
reserve_data = true"#,
    );
    let (r, _) = run(&f, docker(r#"{"stream":"parsed","a":1}"#));
    assert_eq!(
        r,
        map(vec![
            ("log", r#"{"stream":"parsed","a":1}"#.into()),
            ("stream", "parsed".into()),
            ("container_id", "abc".into()),
            ("a", Value::from(1)),
        ])
    );

    let f = filter(
        r#"key_name = "log"
format = "json"
reserve_data = true
remove_key_name_field = true"#,
    );
    let (r, _) = run(&f, docker(r#"{"a":1}"#));
    assert_eq!(
        r,
        map(vec![
            ("stream", "stdout".into()),
            ("container_id", "abc".into()),
            ("a", Value::from(1)),
        ])
    );
    // the field is removed before the parsed fields go in: a parsed field of
    // the same name stays
    let f = filter(
        r#"key_name = "message"
format = "none"
reserve_data = true
remove_key_name_field = true"#,
    );
    let (r, _) = run(&f, map(vec![("message", "hello".into()), ("x", 1.into())]));
    assert_eq!(r, map(vec![("x", 1.into()), ("message", "hello".into())]));
    // a failed parse never removes the field
    let (r, _) = run(&f, map(vec![("message", Value::from(5))]));
    assert_eq!(
        record::get(&r, &record::path("message")),
        Some(&Value::from(5))
    );
}

#[test]
fn remove_key_name_field_without_reserve_data_changes_nothing() {
    let f = filter(
        r#"key_name = "log"
format = "json"
remove_key_name_field = true"#,
    );
    let (r, _) = run(&f, docker(r#"{"a":1}"#));
    assert_eq!(r, map(vec![("a", Value::from(1))]));
}

#[test]
fn inject_key_prefix_literal_nested_and_both() {
    let f = filter(
        r#"key_name = "log"
format = "json"
reserve_data = true
inject_key_prefix = "p_""#,
    );
    let (r, _) = run(&f, docker(r#"{"a":1,"x.y":2}"#));
    assert_eq!(record::get(&r, &record::path("p_a")), Some(&Value::from(1)));
    // a parsed key with a dot stays one key
    assert!(
        matches!(&r, Value::Map(m) if m.iter().any(|(k, v)| k.as_str() == Some("p_x.y") && *v == Value::from(2)))
    );

    // "log." puts the parsed fields under `log`: parsing in place
    let f = filter(
        r#"key_name = "log"
format = "json"
reserve_data = true
inject_key_prefix = "log.""#,
    );
    let (r, _) = run(&f, docker(r#"{"a":1,"b":"x"}"#));
    assert_eq!(
        r,
        map(vec![
            ("log", map(vec![("a", Value::from(1)), ("b", "x".into())])),
            ("stream", "stdout".into()),
            ("container_id", "abc".into()),
        ])
    );

    // nested and prefixed, without reserve_data
    let f = filter(
        r#"key_name = "log"
format = "json"
inject_key_prefix = "parsed.app.k_""#,
    );
    let (r, _) = run(&f, docker(r#"{"a":1}"#));
    assert_eq!(
        r,
        map(vec![(
            "parsed",
            map(vec![("app", map(vec![("k_a", Value::from(1))]))])
        )])
    );

    // "" means no prefix
    let f = filter(
        r#"key_name = "log"
format = "json"
inject_key_prefix = """#,
    );
    assert_eq!(run(&f, docker(r#"{"a":1}"#)).0, map(vec![("a", 1.into())]));
}

#[test]
fn time_from_the_parsed_field() {
    let f = filter(
        r#"key_name = "log"
format = "json"
time_key = "ts"
time_format = "%Y-%m-%d %H:%M:%S%.f""#,
    );
    let (r, t) = run(&f, docker(r#"{"ts":"2023-11-14 22:13:20.5","a":1}"#));
    assert_eq!(t, EventTime::new(1_700_000_000, 500_000_000));
    assert_eq!(r, map(vec![("a", 1.into())]), "time_key is taken out");

    let f = filter(
        r#"key_name = "log"
format = "json"
time_key = "ts"
time_format = "unix"
keep_time_key = true
reserve_time = true"#,
    );
    let (r, t) = run(&f, docker(r#"{"ts":1700000000,"a":1}"#));
    assert_eq!(t, T0, "reserve_time keeps the event time");
    assert_eq!(
        r,
        map(vec![("ts", Value::from(1_700_000_000)), ("a", 1.into())])
    );

    // a time that does not parse fails the whole parse
    let f = filter(
        r#"key_name = "log"
format = "json"
time_key = "ts"
time_format = "%Y-%m-%d""#,
    );
    let orig = docker(r#"{"ts":"yesterday"}"#);
    let (r, t) = run(&f, orig.clone());
    assert_eq!(t, T0);
    let why = record::get_str(&r, &record::path("_parse_error")).unwrap();
    assert!(why.contains("yesterday"), "{why}");
    assert_eq!(f.failures(), 1);
}

#[test]
fn time_format_uses_the_agent_time_zone() {
    let f = ParserFilter::from_section(
        &section(
            r#"key_name = "log"
format = "regex"
expression = '^(?P<time>\S+ \S+) (?P<msg>.*)$'
time_key = "time"
time_format = "%Y-%m-%d %H:%M:%S""#,
        ),
        &ctx("Asia/Tokyo"),
    )
    .unwrap();
    let (r, t) = run(&f, docker("2023-11-15 07:13:20 hello"));
    assert_eq!(t, EventTime::new(1_700_000_000, 0));
    assert_eq!(r, map(vec![("msg", "hello".into())]));
}

#[test]
fn every_parser_key() {
    // regex + types
    let f = filter(
        r#"key_name = "log"
format = "regex"
expression = '^(?P<code>\d+) (?P<ok>\w+) (?P<ms>[\d.]+)$'
types = { code = "integer", ok = "bool", ms = "float" }"#,
    );
    let (r, _) = run(&f, docker("200 yes 1.5"));
    assert_eq!(
        r,
        map(vec![
            ("code", 200.into()),
            ("ok", Value::Boolean(true)),
            ("ms", Value::F64(1.5))
        ])
    );
    // apache2
    let f = filter(
        r#"key_name = "log"
format = "apache2""#,
    );
    let (r, t) = run(
        &f,
        docker(
            r#"192.168.0.1 - - [28/Feb/2013:12:00:00 +0900] "GET / HTTP/1.1" 200 777 "-" "Opera/12.0""#,
        ),
    );
    assert_eq!(t, EventTime::new(1_362_020_400, 0));
    assert_eq!(record::get(&r, &record::path("code")), Some(&200.into()));
    assert_eq!(
        record::get_str(&r, &record::path("agent")),
        Some("Opera/12.0")
    );
    // ltsv with its delimiters
    let f = filter(
        r#"key_name = "log"
format = "ltsv"
delimiter = "|"
label_delimiter = "=""#,
    );
    let (r, _) = run(&f, docker("a=1|b=x"));
    assert_eq!(r, map(vec![("a", "1".into()), ("b", "x".into())]));
    // csv and tsv with keys
    let f = filter(
        r#"key_name = "log"
format = "csv"
keys = ["a", "b"]"#,
    );
    let (r, _) = run(&f, docker(r#"1,"x,y""#));
    assert_eq!(r, map(vec![("a", "1".into()), ("b", "x,y".into())]));
    let f = filter(
        r#"key_name = "log"
format = "tsv"
keys = ["a", "b"]"#,
    );
    let (r, _) = run(&f, docker("1\t2"));
    assert_eq!(r, map(vec![("a", "1".into()), ("b", "2".into())]));
    // syslog, one message format
    let f = filter(
        r#"key_name = "log"
format = "syslog"
message_format = "rfc5424""#,
    );
    let (r, t) = run(
        &f,
        docker("<165>1 2003-10-11T22:14:15.003Z host app 1 ID47 - hello"),
    );
    assert_eq!(t, EventTime::new(1_065_910_455, 3_000_000));
    assert_eq!(record::get_str(&r, &record::path("message")), Some("hello"));
    // none
    let f = filter(
        r#"key_name = "log"
format = "none""#,
    );
    let (r, _) = run(&f, docker("raw line"));
    assert_eq!(r, map(vec![("message", "raw line".into())]));
}

#[test]
fn nested_key_name() {
    for key in ["req.body", "$.req.body"] {
        let f = filter(&format!(
            "key_name = {key:?}\nformat = \"json\"\nreserve_data = true\nremove_key_name_field = true"
        ));
        let (r, _) = run(
            &f,
            map(vec![(
                "req",
                map(vec![("body", r#"{"q":1}"#.into()), ("m", "GET".into())]),
            )]),
        );
        assert_eq!(
            r,
            map(vec![
                ("req", map(vec![("m", "GET".into())])),
                ("q", 1.into())
            ])
        );
    }
}

#[test]
fn failures_keep_the_record() {
    let f = filter(
        r#"key_name = "log"
format = "json""#,
    );
    // not JSON: unchanged, plus _parse_error
    let orig = docker("not json");
    let (r, t) = run(&f, orig.clone());
    assert_eq!(t, T0);
    let Value::Map(mut m) = r else { panic!() };
    let (k, why) = m.pop().unwrap();
    assert_eq!(k, Value::from("_parse_error"));
    assert!(why.as_str().is_some_and(|s| !s.is_empty()), "{why:?}");
    assert_eq!(Value::Map(m), orig);
    // not a string
    let (r, _) = run(&f, map(vec![("log", 5.into())]));
    assert_eq!(
        record::get_str(&r, &record::path("_parse_error")),
        Some("`log` is an integer, not a string")
    );
    let (r, _) = run(&f, map(vec![("log", map(vec![]))]));
    assert_eq!(
        record::get_str(&r, &record::path("_parse_error")),
        Some("`log` is a map, not a string")
    );
    assert_eq!(f.failures(), 3);
    // missing or null: passes untouched, not a failure
    for rec in [
        map(vec![("other", 1.into())]),
        map(vec![("log", Value::Nil)]),
    ] {
        assert_eq!(run(&f, rec.clone()).0, rec);
    }
    assert_eq!(f.failures(), 3);
    // a record that is not a map
    assert_eq!(run(&f, Value::from("x")).0, Value::from("x"));

    // on_error = keep: nothing added
    let f = filter(
        r#"key_name = "log"
format = "json"
on_error = "keep""#,
    );
    let (r, _) = run(&f, docker("{broken"));
    assert_eq!(r, docker("{broken"));
    assert_eq!(f.failures(), 1);

    // binary and invalid UTF-8 are read as text
    let f = filter(
        r#"key_name = "log"
format = "none""#,
    );
    let (r, _) = run(&f, map(vec![("log", Value::Binary(vec![b'a', 0xff]))]));
    assert_eq!(r, map(vec![("message", "a\u{fffd}".into())]));
}

#[test]
fn rate_limit() {
    let l = RateLimit::new(10_000);
    assert!(l.ready());
    assert!(!l.ready());
}

#[test]
fn build_registers_as_a_filter() {
    let f = build(
        &section("key_name = \"log\"\nformat = \"json\""),
        &ctx("UTC"),
    )
    .unwrap();
    let mut r = docker(r#"{"a":1}"#);
    fuwa_api::testing::filter_value(&f, "t", &mut EventTime::default(), &mut r);
    assert_eq!(r, map(vec![("a", 1.into())]));
}

#[test]
fn config_errors_name_the_key() {
    let e = err(r#"format = "json""#);
    assert_eq!(e.key, "filter[0].key_name");
    assert!(e.message.contains("required"), "{e:?}");

    let e = err(r#"key_name = "log""#);
    assert_eq!(e.key, "filter[0].format");
    assert!(e.message.contains("required"), "{e:?}");

    assert_eq!(errs("").len(), 2, "both required keys reported");

    let e = err("key_name = \"log\"\nformat = \"xml\"");
    assert_eq!(e.key, "filter[0].format");
    assert!(e.message.contains("unknown format"), "{e:?}");

    let e = err("key_name = \"log\"\nformat = \"regex\"");
    assert_eq!(e.key, "filter[0].expression");

    let e = err("key_name = \"log\"\nformat = \"regex\"\nexpression = \"(unclosed\"");
    assert_eq!(e.key, "filter[0].expression");

    let e = err("key_name = \"log\"\nformat = \"csv\"");
    assert_eq!(e.key, "filter[0].keys");

    let e = err("key_name = \"log\"\nformat = \"json\"\ntypes = { a = \"money\" }");
    assert_eq!(e.key, "filter[0].types.a");

    let e = err("key_name = \"log\"\nformat = \"json\"\ntime_format = \"%Y\"");
    assert_eq!(e.key, "filter[0].time_format");

    let e = err("key_name = \"log\"\nformat = \"json\"\ntime_key = \"t\"\ntime_format = \"%Q\"");
    assert_eq!(e.key, "filter[0].time_format");

    let e = err("key_name = \"log\"\nformat = \"syslog\"\nmessage_format = \"rfc9999\"");
    assert_eq!(e.key, "filter[0].message_format");

    let e = err("key_name = \"log\"\nformat = \"json\"\non_error = \"drop\"");
    assert_eq!(e.key, "filter[0].on_error");

    for p in [".x", "a..b.", "."] {
        let e = err(&format!(
            "key_name = \"log\"\nformat = \"json\"\ninject_key_prefix = {p:?}"
        ));
        assert_eq!(e.key, "filter[0].inject_key_prefix", "{p}");
    }

    for k in ["", "a.", "$."] {
        let e = err(&format!("key_name = {k:?}\nformat = \"json\""));
        assert_eq!(e.key, "filter[0].key_name", "{k}");
    }

    let e = err("key_name = \"log\"\nformat = \"json\"\nreserve_data = \"yes\"");
    assert_eq!(e.key, "filter[0].reserve_data");

    let e = err("key_name = \"log\"\nformat = \"json\"\nhash_value_field = \"x\"");
    assert_eq!(e.key, "filter[0].hash_value_field");
    assert!(e.message.contains("unknown field"), "{e:?}");

    let es = ParserFilter::from_section(
        &section("key_name = \"log\"\nformat = \"json\""),
        &ctx("Nowhere/Special"),
    )
    .err()
    .unwrap();
    assert_eq!(es[0].key, "filter[0].timezone");
}

/// The records the property tests draw: keys the filter reads, and
/// texts it reads specially.
const VALUES: Values = Values {
    keys: &["a", "b", "log", "p", "_parse_error"],
    texts: &[],
};

/// JSON-ish text: objects that parse, near misses, and noise.
fn arb_log() -> impl Strategy<Value = String> {
    let json_scalar = prop_oneof![
        any::<i32>().prop_map(|i| i.to_string()),
        "[a-z ]{0,6}".prop_map(|s| format!("{s:?}")),
        Just("true".to_string()),
        Just("null".to_string()),
        Just("1700000000".to_string()),
        Just("\"2023-11-14T22:13:20Z\"".to_string()),
    ];
    let key = prop_oneof![Just("a"), Just("b"), Just("time"), Just("log"), Just("x.y")];
    prop_oneof![
        proptest::collection::vec((key, json_scalar), 0..5).prop_map(|kv| {
            let body: Vec<String> = kv.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
            format!("{{{}}}", body.join(","))
        }),
        ".{0,30}",
        Just("{".to_string()),
        Just("[1,2]".to_string()),
        Just("\"str\"".to_string()),
    ]
}

fn arb_record() -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec((VALUES.key(), VALUES.value()), 0..6),
        prop_oneof![
            3 => arb_log().prop_map(Value::from),
            1 => VALUES.value(),
            1 => Just(Value::Nil),
        ],
        any::<bool>(),
    )
        .prop_map(|(mut m, log, with_log)| {
            if with_log {
                m.insert(0, (Value::from("log"), log));
            }
            Value::Map(m)
        })
}

proptest! {
    /// Any record: no panic, the record is kept, and with reserve_data and a
    /// nesting prefix every field other than `p` and `_parse_error` is still
    /// there, unchanged; a record that did not parse only gains
    /// `_parse_error`; the time changes only when the parse succeeded.
    #[test]
    fn never_panics_never_loses_the_record(rec in arb_record()) {
        let f = filter(r#"
key_name = "log"
format = "json"
reserve_data = true
inject_key_prefix = "p."
time_key = "time"
time_format = "auto"
"#);
        let mut r = rec.clone();
        let mut t = T0;
        prop_assert!(matches!(fuwa_api::testing::filter_value(&f, "t", &mut t, &mut r), FilterResult::Keep));
        let Value::Map(before) = &rec else { unreachable!() };
        let Value::Map(after) = &r else { panic!("not a map: {r:?}") };
        let key = |k: &Value| match k {
            Value::String(s) => Some(s.as_bytes().to_vec()),
            Value::Binary(b) => Some(b.clone()),
            _ => None,
        };
        let is_err_key = |k: &Value| key(k).as_deref() == Some(b"_parse_error".as_slice());
        let special = |k: &Value| is_err_key(k) || key(k).as_deref() == Some(b"p".as_slice());
        for (k, v) in before.iter().filter(|(k, _)| !special(k)) {
            prop_assert!(
                after.iter().any(|(k2, v2)| k2 == k && format!("{v2:?}") == format!("{v:?}")),
                "{:?} lost or changed", k
            );
        }
        if f.failures() > 0 {
            prop_assert_eq!(t, T0);
            let mut without = after.clone();
            without.retain(|(k, _)| !is_err_key(k));
            let mut orig = before.clone();
            let had = orig.iter().any(|(k, _)| is_err_key(k));
            orig.retain(|(k, _)| !is_err_key(k));
            if !had {
                prop_assert_eq!(format!("{without:?}"), format!("{orig:?}"));
            }
            prop_assert!(record::get_str(&r, &record::path("_parse_error")).is_some());
        }
        let mut buf = Vec::new();
        prop_assert!(rmpv::encode::write_value(&mut buf, &r).is_ok());
    }

    /// Every format, any text, any options: no panic, the record stays a map.
    #[test]
    fn any_format_any_text(
        text in ".{0,60}",
        format in proptest::sample::select(vec![
            "format = \"json\"",
            "format = \"ltsv\"",
            "format = \"csv\"\nkeys = [\"a\", \"b\"]",
            "format = \"tsv\"\nkeys = [\"a\"]",
            "format = \"regex\"\nexpression = '^(?P<a>\\w*)(?P<b>.*)$'\ntypes = { a = \"integer\" }",
            "format = \"apache2\"",
            "format = \"apache_error\"",
            "format = \"nginx\"",
            "format = \"syslog\"",
            "format = \"none\"",
        ]),
        reserve_data in any::<bool>(),
        reserve_time in any::<bool>(),
        remove in any::<bool>(),
        prefix in proptest::sample::select(vec!["", "p_", "log.", "a.b.c_"]),
    ) {
        let f = filter(&format!(
            "key_name = \"log\"\n{format}\nreserve_data = {reserve_data}\nreserve_time = {reserve_time}\nremove_key_name_field = {remove}\ninject_key_prefix = {prefix:?}\n"
        ));
        let mut r = map(vec![("log", text.as_str().into()), ("other", 1.into())]);
        let mut t = T0;
        prop_assert!(matches!(fuwa_api::testing::filter_value(&f, "t", &mut t, &mut r), FilterResult::Keep));
        prop_assert!(r.is_map());
        if reserve_time || f.failures() > 0 {
            prop_assert_eq!(t, T0);
        }
        if reserve_data || f.failures() > 0 {
            prop_assert!(record::get(&r, &record::path("other")).is_some());
        }
    }
}
