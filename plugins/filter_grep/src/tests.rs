use super::*;
use proptest::prelude::*;

use fuwa_api::testing::{filter_section as section, map, Values};

fn ctx() -> BuildContext {
    fuwa_api::testing::build_context("grep.0", "UTC")
}

fn filter(src: &str) -> GrepFilter {
    GrepFilter::from_section(&section(src), &ctx()).unwrap()
}

fn errs(src: &str) -> Vec<ConfigError> {
    GrepFilter::from_section(&section(src), &ctx())
        .err()
        .expect("config should be refused")
}

fn err(src: &str) -> ConfigError {
    errs(src).remove(0)
}

/// Runs the filter through the trait; checks the record and time are unchanged.
fn keeps(f: &GrepFilter, rec: Value) -> bool {
    let mut r = rec.clone();
    let mut t = EventTime::new(3, 4);
    let kept = matches!(
        fuwa_api::testing::filter_value(&f, "tag", &mut t, &mut r),
        FilterResult::Keep
    );
    // (Debug text, so that NaN equals NaN)
    assert_eq!(
        format!("{r:?}"),
        format!("{rec:?}"),
        "grep never changes the record"
    );
    assert_eq!(t, EventTime::new(3, 4));
    assert_eq!(kept, f.keeps(&rec));
    kept
}

#[test]
fn regexp_keeps_only_matches() {
    let f = filter(r#"regexp = [{ key = "status", pattern = "^5" }]"#);
    assert!(keeps(&f, map(vec![("status", "503".into())])));
    assert!(!keeps(&f, map(vec![("status", "200".into())])));
    assert!(keeps(&f, map(vec![("status", Value::from(500))])));
    assert!(!keeps(&f, map(vec![("status", Value::from(200))])));
    // missing, null: never a match
    assert!(!keeps(&f, map(vec![("other", "503".into())])));
    assert!(!keeps(&f, map(vec![("status", Value::Nil)])));
    let any = filter(r#"regexp = [{ key = "status", pattern = "" }]"#);
    assert!(keeps(&any, map(vec![("status", "".into())])));
    assert!(!keeps(&any, map(vec![])));
    assert!(!keeps(&any, map(vec![("status", Value::Nil)])));
}

#[test]
fn several_regexps_and_or() {
    let and = filter(
        r#"regexp = [{ key = "status", pattern = "^5" }, { key = "method", pattern = "^(GET|HEAD)$" }]"#,
    );
    let or = filter(
        r#"regexp_condition = "or"
regexp = [{ key = "status", pattern = "^5" }, { key = "method", pattern = "^(GET|HEAD)$" }]"#,
    );
    let rec = |s: &str, m: &str| map(vec![("status", s.into()), ("method", m.into())]);
    assert!(keeps(&and, rec("502", "GET")));
    assert!(!keeps(&and, rec("502", "POST")));
    assert!(!keeps(&and, rec("200", "GET")));
    assert!(keeps(&or, rec("502", "POST")));
    assert!(keeps(&or, rec("200", "HEAD")));
    assert!(!keeps(&or, rec("200", "POST")));
    assert!(!keeps(&or, map(vec![])));
}

#[test]
fn exclude_drops_matches() {
    let f = filter(
        r#"exclude = [{ key = "path", pattern = "^/health" }, { key = "agent", pattern = "(?i)bot" }]"#,
    );
    assert!(!keeps(&f, map(vec![("path", "/healthz".into())])));
    assert!(!keeps(
        &f,
        map(vec![("path", "/x".into()), ("agent", "GoogleBOT".into())])
    ));
    assert!(keeps(
        &f,
        map(vec![("path", "/x".into()), ("agent", "Firefox".into())])
    ));
    // a missing key never matches, so never excludes
    assert!(keeps(&f, map(vec![])));

    let all = filter(
        r#"exclude_condition = "and"
exclude = [{ key = "path", pattern = "^/health" }, { key = "agent", pattern = "(?i)bot" }]"#,
    );
    assert!(keeps(&all, map(vec![("path", "/healthz".into())])));
    assert!(!keeps(
        &all,
        map(vec![("path", "/healthz".into()), ("agent", "bot".into())])
    ));
}

#[test]
fn regexp_and_exclude_together() {
    let f = filter(
        r#"
regexp = [{ key = "status", pattern = "^[45]" }]
exclude = [{ key = "status", pattern = "^404$" }]
"#,
    );
    assert!(keeps(&f, map(vec![("status", Value::from(500))])));
    assert!(keeps(&f, map(vec![("status", Value::from(403))])));
    assert!(!keeps(&f, map(vec![("status", Value::from(404))])));
    assert!(!keeps(&f, map(vec![("status", Value::from(200))])));
}

#[test]
fn array_of_tables_form() {
    let f = filter(
        r#"
[[regexp]]
key = "level"
pattern = "^(warn|error)$"

[[exclude]]
key = "msg"
pattern = "ignore me"
"#,
    );
    assert!(keeps(&f, map(vec![("level", "error".into())])));
    assert!(!keeps(
        &f,
        map(vec![
            ("level", "warn".into()),
            ("msg", "please ignore me".into())
        ])
    ));
    assert!(!keeps(&f, map(vec![("level", "info".into())])));
}

#[test]
fn values_are_matched_by_their_text() {
    let one = |pattern: &str, v: Value| {
        let f = filter(&format!(
            "regexp = [{{ key = \"v\", pattern = {pattern:?} }}]"
        ));
        keeps(&f, map(vec![("v", v)]))
    };
    assert!(one("^-12$", Value::from(-12)));
    assert!(one("^18446744073709551615$", Value::from(u64::MAX)));
    assert!(one(r"^1\.5$", Value::F64(1.5)));
    assert!(one(r"^3\.0$", Value::F64(3.0)));
    assert!(one("^true$", Value::Boolean(true)));
    assert!(one("^false$", Value::Boolean(false)));
    assert!(one(
        r#""level":"error""#,
        map(vec![("level", "error".into())])
    ));
    assert!(one(
        r#"^\[1,"a"\]$"#,
        Value::Array(vec![Value::from(1), "a".into()])
    ));
    assert!(one("^bin$", Value::Binary(b"bin".to_vec())));
    assert!(one("^a\u{fffd}b$", Value::Binary(vec![b'a', 0xff, b'b'])));
    let et = EventTime::new(1_700_000_000, 5).to_msgpack();
    assert!(one(
        "^2023-11-14T22:13:20.000000005Z$",
        Value::Ext(0, et[2..].to_vec())
    ));
    assert!(!one("", Value::Ext(3, vec![1])));
    assert!(!one("", Value::F64(f64::NAN)));
    assert!(!one("", Value::Nil));
    // Unicode works
    assert!(one("^日本", "日本語".into()));
}

#[test]
fn nested_keys() {
    for key in ["req.path", "$.req.path"] {
        let f = filter(&format!(
            "regexp = [{{ key = {key:?}, pattern = \"^/api/\" }}]"
        ));
        assert!(keeps(
            &f,
            map(vec![("req", map(vec![("path", "/api/v1".into())]))])
        ));
        assert!(!keeps(
            &f,
            map(vec![("req", map(vec![("path", "/web".into())]))])
        ));
        assert!(!keeps(&f, map(vec![("req", "/api/flat".into())])));
        assert!(!keeps(
            &f,
            map(vec![("req.path", "/api/literal-dot".into())])
        ));
    }
}

#[test]
fn records_that_are_not_maps() {
    let f = filter(r#"regexp = [{ key = "a", pattern = "" }]"#);
    assert!(!keeps(&f, Value::from("a")));
    let f = filter(r#"exclude = [{ key = "a", pattern = "" }]"#);
    assert!(keeps(&f, Value::from("a")));
}

#[test]
fn build_registers_as_a_filter() {
    let f = build(
        &section(r#"exclude = [{ key = "a", pattern = "x" }]"#),
        &ctx(),
    )
    .unwrap();
    let mut r = map(vec![("a", "x".into())]);
    assert!(matches!(
        fuwa_api::testing::filter_value(&f, "t", &mut EventTime::default(), &mut r),
        FilterResult::Drop
    ));
}

#[test]
fn config_errors_name_the_key() {
    let src = r#"regexp = [{ key = "a", pattern = "ok" }, { key = "b", pattern = "(unclosed" }]"#;
    let e = err(src);
    assert_eq!(e.key, "filter[0].regexp[1].pattern");
    assert_eq!(e.message, "bad regular expression: unclosed group");
    assert_eq!(&src[e.span.unwrap()], "\"(unclosed\"");

    let src = r#"exclude = [{ key = "a..b", pattern = "x" }]"#;
    let e = err(src);
    assert_eq!(e.key, "filter[0].exclude[0].key");
    assert_eq!(&src[e.span.unwrap()], "\"a..b\"");

    let e = err(r#"exclude = [{ key = "", pattern = "x" }]"#);
    assert_eq!(e.key, "filter[0].exclude[0].key");

    // a look-around is not supported by the regex engine: refused, not ignored
    let e = err(r#"regexp = [{ key = "a", pattern = "(?!x)" }]"#);
    assert_eq!(e.key, "filter[0].regexp[0].pattern");

    let e = err(r#"regexp = [{ key = "a" }]"#);
    assert!(e.key.starts_with("filter[0].regexp"), "{e:?}");
    assert!(e.message.contains("missing field `pattern`"), "{e:?}");

    let e = err(r#"regexp = [{ key = "a", pattern = "x", flags = "i" }]"#);
    assert!(e.key.starts_with("filter[0].regexp"), "{e:?}");
    assert!(e.message.contains("unknown field `flags`"), "{e:?}");

    let e = err(r#"regexp = [{ key = "a", pattern = "x" }]
regexp_condition = "xor""#);
    assert_eq!(e.key, "filter[0].regexp_condition");

    let e = err(r#"regexp = [{ key = "a", pattern = "x" }]
exclude_condition = "nand""#);
    assert_eq!(e.key, "filter[0].exclude_condition");

    let e = err(r#"regexp = { key = "a", pattern = "x" }"#);
    assert_eq!(e.key, "filter[0].regexp");

    let e = err(r#"regexp = [{ key = "a", pattern = 5 }]"#);
    assert!(e.key.starts_with("filter[0].regexp"), "{e:?}");

    let e = err("");
    assert_eq!(e.key, "filter[0].regexp");
    assert!(e.message.contains("nothing to do"), "{e:?}");

    let e = err("bogus = 1");
    assert_eq!(e.key, "filter[0].bogus");

    // every bad rule at once
    assert_eq!(
        errs(
            r#"regexp = [{ key = "a", pattern = "(" }]
exclude = [{ key = "", pattern = "[" }]"#
        )
        .len(),
        2
    );
}

/// The records the property tests draw: keys the filter reads, and
/// texts it reads specially.
const VALUES: Values = Values {
    keys: &["a", "b", "status", "path"],
    texts: &[],
};

/// A status/path field: missing, a string from a small set, or an integer.
fn arb_field(strings: &'static [&'static str]) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Nil)),
        proptest::sample::select(strings).prop_map(|s| Some(Value::from(s))),
        (0i64..600).prop_map(|i| Some(Value::from(i))),
    ]
}

proptest! {
    /// Any record: no panic, the record is never changed.
    #[test]
    fn never_panics_never_changes_the_record(rec in VALUES.record(), or in any::<bool>()) {
        let f = filter(&format!(r#"
regexp_condition = "{}"
regexp = [{{ key = "status", pattern = "^[0-9]" }}, {{ key = "a.b", pattern = "x" }}]
exclude = [{{ key = "path", pattern = "^/health" }}, {{ key = "a", pattern = "null" }}]
"#, if or { "or" } else { "and" }));
        let mut r = rec.clone();
        let mut t = EventTime::new(1, 1);
        let _ = fuwa_api::testing::filter_value(&f, "t", &mut t, &mut r);
        prop_assert_eq!(format!("{r:?}"), format!("{rec:?}"));
        prop_assert_eq!(t, EventTime::new(1, 1));
    }

    /// Records are dropped exactly when their fields say so: the filter
    /// agrees with a direct reading of the rules.
    #[test]
    fn drops_only_per_its_patterns(
        status in arb_field(&["503", "200", "5xx", "", "x5"]),
        path in arb_field(&["/healthz", "/health", "/api", "", "health"]),
        extra in VALUES.record(),
        regexp_or in any::<bool>(),
        exclude_and in any::<bool>(),
    ) {
        let f = filter(&format!(r#"
regexp_condition = "{}"
exclude_condition = "{}"
regexp = [{{ key = "status", pattern = "^5" }}, {{ key = "status", pattern = "3$" }}]
exclude = [{{ key = "path", pattern = "^/health" }}, {{ key = "path", pattern = "z$" }}]
"#, if regexp_or { "or" } else { "and" }, if exclude_and { "and" } else { "or" }));
        let Value::Map(mut m) = extra else { unreachable!() };
        m.retain(|(k, _)| !matches!(k, Value::String(s) if matches!(s.as_str(), Some("status" | "path")))
            && !matches!(k, Value::Binary(b) if b == b"status" || b == b"path"));
        if let Some(v) = status.clone() { m.push((Value::from("status"), v)); }
        if let Some(v) = path.clone() { m.push((Value::from("path"), v)); }
        let as_text = |v: &Option<Value>| match v {
            Some(Value::String(s)) => s.as_str().map(str::to_string),
            Some(Value::Integer(i)) => Some(i.to_string()),
            _ => None,
        };
        let st = as_text(&status);
        let pt = as_text(&path);
        let s5 = st.as_deref().is_some_and(|s| s.starts_with('5'));
        let s3 = st.as_deref().is_some_and(|s| s.ends_with('3'));
        let ph = pt.as_deref().is_some_and(|s| s.starts_with("/health"));
        let pz = pt.as_deref().is_some_and(|s| s.ends_with('z'));
        let wanted = if regexp_or { s5 || s3 } else { s5 && s3 };
        let excluded = if exclude_and { ph && pz } else { ph || pz };
        let mut r = Value::Map(m);
        let kept = matches!(fuwa_api::testing::filter_value(&f, "t", &mut EventTime::default(), &mut r), FilterResult::Keep);
        prop_assert_eq!(kept, wanted && !excluded);
    }
}
