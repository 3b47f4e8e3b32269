use super::*;
use fuwa_api::record;
use proptest::prelude::*;

use fuwa_api::testing::{filter_section as section, map, Values};

fn ctx(tz: &str) -> BuildContext {
    fuwa_api::testing::build_context("types.0", tz)
}

fn filter(src: &str) -> TypesFilter {
    TypesFilter::from_section(&section(src), &ctx("UTC")).unwrap()
}

fn err(src: &str) -> ConfigError {
    let mut es = TypesFilter::from_section(&section(src), &ctx("UTC"))
        .err()
        .expect("config should be refused");
    assert!(!es.is_empty());
    es.remove(0)
}

/// Converts `v` under field `x` with `ty`; returns the new value (None when
/// the field is gone) and the failure count.
fn conv(ty: &str, v: Value) -> (Option<Value>, u64) {
    let f = filter(&format!("fields = {{ x = {ty:?} }}"));
    let mut r = map(vec![("x", v), ("other", Value::from("o"))]);
    let mut t = EventTime::new(1, 2);
    assert!(matches!(
        fuwa_api::testing::filter_value(&f, "t", &mut t, &mut r),
        FilterResult::Keep
    ));
    assert_eq!(t, EventTime::new(1, 2));
    assert_eq!(record::get_str(&r, &record::path("other")), Some("o"));
    (record::get(&r, &record::path("x")).cloned(), f.failures())
}

fn ok(ty: &str, v: Value) -> Value {
    let (out, fails) = conv(ty, v.clone());
    assert_eq!(fails, 0, "{ty} {v:?} should convert, got {out:?}");
    out.unwrap()
}

fn fails(ty: &str, v: Value) {
    let (out, n) = conv(ty, v.clone());
    assert_eq!(n, 1, "{ty} {v:?} should fail, got {out:?}");
    // (Debug text, so that NaN equals NaN)
    assert_eq!(
        format!("{out:?}"),
        format!("{:?}", Some(v)),
        "on_error = keep leaves the value"
    );
}

#[test]
fn integers() {
    assert_eq!(ok("integer", "42".into()), Value::from(42));
    assert_eq!(ok("integer", "-7".into()), Value::from(-7));
    assert_eq!(ok("int", " +8 ".into()), Value::from(8));
    assert_eq!(ok("integer", "3.0".into()), Value::from(3));
    assert_eq!(ok("integer", "1e3".into()), Value::from(1000));
    assert_eq!(
        ok("integer", "18446744073709551615".into()),
        Value::from(u64::MAX)
    );
    assert_eq!(ok("integer", Value::F64(5.0)), Value::from(5));
    assert_eq!(ok("integer", Value::F32(-2.0)), Value::from(-2));
    assert_eq!(ok("integer", Value::from(9)), Value::from(9));
    assert_eq!(
        ok("integer", Value::Binary(b"12".to_vec())),
        Value::from(12)
    );
    assert_eq!(ok("integer", "".into()), Value::Nil);
    assert_eq!(ok("integer", "-".into()), Value::Nil);
    assert_eq!(ok("integer", Value::Nil), Value::Nil);
    fails("integer", "3.5".into());
    fails("integer", "abc".into());
    fails("integer", "0x1f".into());
    fails("integer", "1e30".into());
    fails("integer", Value::F64(2.5));
    fails("integer", Value::F64(f64::NAN));
    fails("integer", Value::Boolean(true));
    fails("integer", Value::Array(vec![]));
    fails("integer", Value::Binary(vec![0xff]));
}

#[test]
fn floats() {
    assert_eq!(ok("float", "1.5".into()), Value::F64(1.5));
    assert_eq!(ok("float", " -2 ".into()), Value::F64(-2.0));
    assert_eq!(ok("float", "1e3".into()), Value::F64(1000.0));
    assert_eq!(ok("float", Value::from(2)), Value::F64(2.0));
    assert_eq!(ok("float", Value::F32(0.5)), Value::F64(0.5));
    assert_eq!(ok("float", Value::F64(0.25)), Value::F64(0.25));
    assert_eq!(ok("float", "-".into()), Value::Nil);
    fails("float", "abc".into());
    fails("float", "NaN".into());
    fails("float", "inf".into());
    fails("float", Value::Boolean(false));
    fails("float", map(vec![]));
}

#[test]
fn bools() {
    for s in ["true", "TRUE", "Yes", "1", "on", " On "] {
        assert_eq!(ok("bool", s.into()), Value::Boolean(true), "{s}");
    }
    for s in ["false", "False", "NO", "0", "off"] {
        assert_eq!(ok("boolean", s.into()), Value::Boolean(false), "{s}");
    }
    assert_eq!(ok("bool", Value::from(1)), Value::Boolean(true));
    assert_eq!(ok("bool", Value::from(0)), Value::Boolean(false));
    assert_eq!(ok("bool", Value::Boolean(true)), Value::Boolean(true));
    assert_eq!(ok("bool", "".into()), Value::Nil);
    fails("bool", "maybe".into());
    fails("bool", "2".into());
    fails("bool", Value::from(2));
    fails("bool", Value::from(-1));
    fails("bool", Value::F64(1.0));
}

#[test]
fn strings() {
    assert_eq!(ok("string", Value::from(42)), Value::from("42"));
    assert_eq!(ok("string", Value::from(-3)), Value::from("-3"));
    assert_eq!(ok("string", Value::F64(1.5)), Value::from("1.5"));
    assert_eq!(ok("string", Value::F64(3.0)), Value::from("3.0"));
    assert_eq!(ok("string", Value::Boolean(true)), Value::from("true"));
    assert_eq!(ok("string", "as is".into()), Value::from("as is"));
    assert_eq!(
        ok("string", Value::Binary(b"bin".to_vec())),
        Value::from("bin")
    );
    assert_eq!(
        ok(
            "string",
            map(vec![("a", Value::from(1)), ("b", Value::from("x\"y"))])
        ),
        Value::from(r#"{"a":1,"b":"x\"y"}"#)
    );
    assert_eq!(
        ok("string", Value::Array(vec![Value::from(1), Value::Nil])),
        Value::from("[1,null]")
    );
    let et = EventTime::new(1_700_000_000, 5).to_msgpack();
    assert_eq!(
        ok("string", Value::Ext(0, et[2..].to_vec())),
        Value::from("2023-11-14T22:13:20.000000005Z")
    );
    assert_eq!(ok("string", Value::Nil), Value::Nil);
    fails("string", Value::Binary(vec![0xff, 0xfe]));
    fails("string", Value::Ext(5, vec![1, 2]));
    fails("string", Value::F64(f64::INFINITY));
}

#[test]
fn times_are_rfc3339_utc_parsed_in_the_agent_zone() {
    let tokyo = |src: &str| TypesFilter::from_section(&section(src), &ctx("Asia/Tokyo")).unwrap();
    let f = tokyo(
        r#"fields = { at = "time:%Y-%m-%d %H:%M:%S", z = "time:%d/%b/%Y:%H:%M:%S %z", u = "time:unix", ms = "time:unix_ms", auto = "time", bad = "time:%Y-%m-%d" }"#,
    );
    let mut r = map(vec![
        ("at", "2024-01-02 03:04:05".into()),
        ("z", "10/Oct/2000:13:55:36 -0700".into()),
        ("u", Value::from(1_700_000_000)),
        ("ms", "1700000000123".into()),
        ("auto", "2024-05-01T12:00:00+02:00".into()),
        ("bad", "yesterday".into()),
    ]);
    fuwa_api::testing::filter_value(&f, "t", &mut EventTime::default(), &mut r);
    let s = |k: &str| record::get_str(&r, &record::path(k)).map(str::to_string);
    assert_eq!(s("at").unwrap(), "2024-01-01T18:04:05.000000000Z");
    assert_eq!(s("z").unwrap(), "2000-10-10T20:55:36.000000000Z");
    assert_eq!(s("u").unwrap(), "2023-11-14T22:13:20.000000000Z");
    assert_eq!(s("ms").unwrap(), "2023-11-14T22:13:20.123000000Z");
    assert_eq!(s("auto").unwrap(), "2024-05-01T10:00:00.000000000Z");
    assert_eq!(s("bad").unwrap(), "yesterday");
    assert_eq!(f.failures(), 1);

    let et = EventTime::new(1_700_000_000, 0).to_msgpack();
    assert_eq!(
        ok("time:%Y", Value::Ext(0, et[2..].to_vec())),
        Value::from("2023-11-14T22:13:20.000000000Z")
    );
    assert_eq!(ok("time:%Y-%m-%d %H:%M:%S", "".into()), Value::Nil);
    fails("time:%Y-%m-%d %H:%M:%S", Value::Boolean(true));
    fails("time:%Y-%m-%d %H:%M:%S", "2024-13-45 99:00:00".into());
}

#[test]
fn arrays() {
    let strs = |v: &[&str]| Value::Array(v.iter().map(|s| Value::from(*s)).collect());
    assert_eq!(ok("array", "a,b,c".into()), strs(&["a", "b", "c"]));
    assert_eq!(ok("array:,", "a, b,,".into()), strs(&["a", " b", "", ""]));
    assert_eq!(ok("array:|", "x|y".into()), strs(&["x", "y"]));
    assert_eq!(ok("array::", "x:y".into()), strs(&["x", "y"]));
    assert_eq!(ok("array: - ", "x - y".into()), strs(&["x", "y"]));
    assert_eq!(ok("array", "".into()), strs(&[]));
    assert_eq!(ok("array", "solo".into()), strs(&["solo"]));
    assert_eq!(ok("array", strs(&["kept"])), strs(&["kept"]));
    fails("array", Value::from(5));
    fails("array", map(vec![]));
}

#[test]
fn nested_paths_in_both_spellings() {
    for src in [
        r#"fields = { "req.size" = "integer", "req.ok" = "bool" }"#,
        r#"fields = { req.size = "integer", req.ok = "bool" }"#,
        "[fields]\n\"req.size\" = \"integer\"\n[fields.req]\nok = \"bool\"\n",
    ] {
        let f = filter(src);
        let mut r = map(vec![(
            "req",
            map(vec![("size", "12".into()), ("ok", "yes".into())]),
        )]);
        fuwa_api::testing::filter_value(&f, "t", &mut EventTime::default(), &mut r);
        assert_eq!(
            r,
            map(vec![(
                "req",
                map(vec![
                    ("size", Value::from(12)),
                    ("ok", Value::Boolean(true))
                ])
            )]),
            "{src}"
        );
    }
}

#[test]
fn missing_fields_and_scalars_in_the_way_are_left_alone() {
    let f = filter(r#"fields = { "a.b" = "integer", c = "integer" }"#);
    let orig = map(vec![("a", "not a map".into()), ("d", Value::from(1))]);
    let mut r = orig.clone();
    fuwa_api::testing::filter_value(&f, "t", &mut EventTime::default(), &mut r);
    assert_eq!(r, orig);
    assert_eq!(f.failures(), 0);
    // a record that is not a map is not touched
    let mut r = Value::from("x");
    assert!(matches!(
        fuwa_api::testing::filter_value(&f, "t", &mut EventTime::default(), &mut r),
        FilterResult::Keep
    ));
    assert_eq!(r, Value::from("x"));
}

#[test]
fn on_error_remove_and_the_counter() {
    let f = filter(
        r#"
on_error = "remove"
fields = { n = "integer", "a.b" = "bool", ok = "float" }
"#,
    );
    let mut r = map(vec![
        ("n", "many".into()),
        (
            "a",
            map(vec![("b", "perhaps".into()), ("c", Value::from(1))]),
        ),
        ("ok", "2.5".into()),
    ]);
    fuwa_api::testing::filter_value(&f, "t", &mut EventTime::default(), &mut r);
    assert_eq!(
        r,
        map(vec![
            ("a", map(vec![("c", Value::from(1))])),
            ("ok", Value::F64(2.5)),
        ])
    );
    assert_eq!(f.failures(), 2);
    let mut r = map(vec![("n", "x".into())]);
    fuwa_api::testing::filter_value(&f, "t", &mut EventTime::default(), &mut r);
    assert_eq!(f.failures(), 3);
    assert_eq!(r, map(vec![]));
}

#[test]
fn rate_limit() {
    let l = RateLimit::new(10_000);
    assert!(l.ready());
    assert!(!l.ready());
    let l = RateLimit::new(0);
    assert!(l.ready());
    assert!(l.ready());
}

#[test]
fn config_errors_name_the_key() {
    let e = err(r#"fields = { x = "integer" }
bogus = 1"#);
    assert_eq!(e.key, "filter[0].bogus");
    assert!(e.message.contains("unknown field"), "{e:?}");

    let src = r#"fields = { x = "integr" }"#;
    let e = err(src);
    assert_eq!(e.key, "filter[0].fields.x");
    assert!(e.message.contains("unknown type `integr`"), "{e:?}");
    assert_eq!(&src[e.span.unwrap()], "\"integr\"");

    let e = err(r#"fields = { "a.b" = "time:%Q" }"#);
    assert_eq!(e.key, "filter[0].fields.a.b");
    assert!(e.message.contains("strftime"), "{e:?}");

    let e = err(r#"fields = { a = { b = "time:" } }"#);
    assert_eq!(e.key, "filter[0].fields.a.b");
    assert!(e.message.contains("needs a format"), "{e:?}");

    let e = err(r#"fields = { a = "array:" }"#);
    assert_eq!(e.key, "filter[0].fields.a");
    assert!(e.message.contains("delimiter"), "{e:?}");

    let e = err(r#"fields = { a = "integer:x" }"#);
    assert_eq!(e.key, "filter[0].fields.a");

    let e = err(r#"fields = { a = 1 }"#);
    assert_eq!(e.key, "filter[0].fields.a");
    assert!(e.message.contains("type name string"), "{e:?}");

    let e = err(r#"fields = { "a..b" = "integer" }"#);
    assert_eq!(e.key, "filter[0].fields.a..b");
    assert!(e.message.contains("not a field path"), "{e:?}");

    let e = err("[fields]\n\"a.b\" = \"integer\"\n[fields.a]\nb = \"float\"\n");
    assert_eq!(e.key, "filter[0].fields.a.b");
    assert!(e.message.contains("twice"), "{e:?}");

    let e = err(r#"fields = {}"#);
    assert_eq!(e.key, "filter[0].fields");

    let e = err(r#"on_error = "keep""#);
    assert_eq!(e.key, "filter[0].fields");
    assert!(e.message.contains("needs at least one field"), "{e:?}");

    let e = err(r#"fields = { a = "integer" }
on_error = "drop""#);
    assert_eq!(e.key, "filter[0].on_error");

    let e = err(r#"fields = "integer""#);
    assert_eq!(e.key, "filter[0].fields");

    // all bad fields are reported at once
    let es = TypesFilter::from_section(
        &section(r#"fields = { a = "x", b = "y", c = "integer" }"#),
        &ctx("UTC"),
    )
    .err()
    .unwrap();
    assert_eq!(es.len(), 2);

    let es =
        TypesFilter::from_section(&section(r#"fields = { a = "integer" }"#), &ctx("Mars/Base"))
            .err()
            .unwrap();
    assert_eq!(es[0].key, "filter[0].timezone");
}

#[test]
fn build_registers_as_a_filter() {
    let f = build(&section(r#"fields = { a = "integer" }"#), &ctx("UTC")).unwrap();
    let mut r = map(vec![("a", "1".into())]);
    fuwa_api::testing::filter_value(&f, "t", &mut EventTime::default(), &mut r);
    assert_eq!(r, map(vec![("a", Value::from(1))]));
}

/// The records the property tests draw: keys the filter reads, and
/// texts it reads specially.
const VALUES: Values = Values {
    keys: &["a", "b", "c", "x", "n"],
    texts: &[
        "42",
        "-7",
        "3.0",
        "1e400",
        "yes",
        "OFF",
        "",
        "-",
        "a,b",
        "2024-01-02 03:04:05",
        "2024-01-02T03:04:05Z",
    ],
};

proptest! {
    /// Any record: the filter never panics, always keeps the record, leaves
    /// every field it is not configured for untouched, and each configured
    /// field ends up converted, unchanged, or (on_error = remove) gone.
    #[test]
    fn never_panics_never_loses_the_record(rec in VALUES.record(), remove in any::<bool>()) {
        let f = filter(&format!(
            r#"on_error = "{}"
fields = {{ a = "integer", b = "float", c = "bool", "x.a" = "string", "x.b" = "time:%Y-%m-%d %H:%M:%S", "x.c" = "array:,", n = "time" }}"#,
            if remove { "remove" } else { "keep" },
        ));
        let mut r = rec.clone();
        let mut t = EventTime::new(7, 8);
        prop_assert!(matches!(fuwa_api::testing::filter_value(&f, "tag", &mut t, &mut r), FilterResult::Keep));
        prop_assert_eq!(t, EventTime::new(7, 8));
        let Value::Map(before) = &rec else { unreachable!() };
        let Value::Map(after) = &r else { panic!("record is no longer a map: {r:?}") };
        // fields outside the configured keys are all still there, as they were
        let touched = |k: &Value| match k {
            Value::String(s) => matches!(s.as_bytes(), b"a" | b"b" | b"c" | b"x" | b"n"),
            Value::Binary(b) => matches!(b.as_slice(), b"a" | b"b" | b"c" | b"x" | b"n"),
            _ => false,
        };
        let untouched = |m: &Vec<(Value, Value)>| m.iter().filter(|(k, _)| !touched(k)).cloned().collect::<Vec<_>>();
        prop_assert_eq!(untouched(before), untouched(after));
        if !remove {
            prop_assert_eq!(before.len(), after.len());
        }
        let mut buf = Vec::new();
        prop_assert!(rmpv::encode::write_value(&mut buf, &r).is_ok());
        if f.failures() == 0 {
            // converting again changes nothing for integers, floats, bools and arrays
            let again = filter(r#"fields = { a = "integer", b = "float", c = "bool", "x.c" = "array:," }"#);
            let mut r2 = r.clone();
            fuwa_api::testing::filter_value(&again, "tag", &mut t, &mut r2);
            prop_assert_eq!(r2, r);
        }
    }
}

/// Decimal texts the fast readers take, and near misses they must hand on.
fn arb_number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        (any::<i32>(), 0u32..100_000).prop_map(|(i, f)| format!("{i}.{f}")),
        "[+-]?[0-9]{0,20}(\\.[0-9]{0,20})?",
        "[+-]?\\.?[0-9]{1,8}[eE.+-]?[0-9]{0,3}",
        any::<f64>().prop_map(|f| f.to_string()),
    ]
}

proptest! {
    /// The fast integer and float readers give exactly what Rust's own
    /// parsers give wherever they answer, bit for bit.
    #[test]
    fn fast_number_readers_agree_with_std(t in arb_number_text()) {
        if let Some(i) = small_int(t.as_bytes()) {
            prop_assert_eq!(Ok(i), t.parse::<i64>());
        }
        if let Some(f) = small_float(t.as_bytes()) {
            let want = t.parse::<f64>();
            prop_assert!(want.is_ok(), "{t:?} read as {f} but std refuses it");
            prop_assert_eq!(f.to_bits(), want.unwrap_or(f64::NAN).to_bits(), "{:?}", t);
        }
        // through the filter: the same value as the general parsers give
        let std_int = t.trim().parse::<i64>().ok();
        if let (Some(want), Ok(Some(Value::Integer(got)))) = (std_int, integer_text(&t)) {
            prop_assert_eq!(got.as_i64(), Some(want));
        }
        if let Ok(want) = t.trim().parse::<f64>() {
            if want.is_finite() && !t.trim().is_empty() {
                prop_assert_eq!(float_text_value(&t), Ok(Some(Value::F64(want))));
            }
        }
    }
}

#[test]
fn fast_number_readers_edges() {
    for t in ["", "-", "+", ".", "-.", "1.2.3", "١٢", "0x10", "1_000"] {
        assert_eq!(small_int(t.as_bytes()), None, "{t:?}");
        assert_eq!(small_float(t.as_bytes()), None, "{t:?}");
    }
    assert_eq!(small_int(b"+42"), Some(42));
    assert_eq!(small_int(b"-000123"), Some(-123));
    assert_eq!(
        small_int(b"999999999999999999"),
        Some(999_999_999_999_999_999)
    );
    assert_eq!(small_int(b"9999999999999999999"), None); // 19 digits: the general parser's
    assert_eq!(
        small_float(b"-0.0").map(f64::to_bits),
        Some((-0.0f64).to_bits())
    );
    assert_eq!(small_float(b".5"), Some(0.5));
    assert_eq!(small_float(b"5."), Some(5.0));
    assert_eq!(small_float(b"0.1"), Some(0.1));
    assert_eq!(small_float(b"1234567890.12345"), Some(1234567890.12345));
    assert_eq!(small_float(b"1234567890.123456"), None); // 16 digits
    assert_eq!(trim("  7 "), "7");
    assert_eq!(trim("\u{3000}7"), "7"); // ideographic space, as str::trim
}
