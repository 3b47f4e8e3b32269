use super::*;
use proptest::prelude::*;

use fuwa_api::testing::{filter_section as section, map, Values};

fn ctx() -> BuildContext {
    fuwa_api::testing::build_context("record.0", "UTC")
}

fn filter(src: &str) -> RecordFilter {
    RecordFilter::from_section(&section(src), &ctx()).unwrap()
}

fn errs(src: &str) -> Vec<ConfigError> {
    RecordFilter::from_section(&section(src), &ctx())
        .err()
        .expect("config should be refused")
}

fn err(src: &str) -> ConfigError {
    errs(src).remove(0)
}

const T: EventTime = EventTime {
    secs: 1_700_000_000,
    nanos: 5,
};

fn run(f: &RecordFilter, tag: &str, mut r: Value) -> Value {
    let mut t = T;
    assert!(matches!(
        fuwa_api::testing::filter_value(&f, tag, &mut t, &mut r),
        FilterResult::Keep
    ));
    assert_eq!(t, T, "the event time is never changed");
    r
}

fn sample() -> Value {
    map(vec![
        ("x", map(vec![("y", "why".into()), ("n", Value::from(7))])),
        ("code", Value::from(503)),
        ("ratio", Value::F64(0.5)),
        ("ok", Value::Boolean(true)),
        ("none", Value::Nil),
        ("list", Value::Array(vec![Value::from(1), Value::from("a")])),
    ])
}

#[test]
fn set_templates() {
    let f = filter(
        r#"
set = { "a.b" = "${tag}-${record.x.y}", host = "${hostname}", t = "${time}", tag1 = "${tag[1]}",
        last = "${tag[-1]}", far = "<${tag[9]}>", parts = "${tag_parts[0]}", spaced = "${ tag }",
        mixed = "c=${record.code} r=${record.ratio} ok=${record.ok} n=${record.none} m=${record.missing} l=${record.list} x=${record.x}",
        static = "plain text", empty = "", dollar = "cost: $5 {braces}" }
"#,
    );
    let r = run(&f, "app.web.prod", sample());
    let s = |k: &str| {
        record::get_str(&r, &record::path(k))
            .unwrap_or_else(|| panic!("{k} in {r:?}"))
            .to_string()
    };
    assert_eq!(s("a.b"), "app.web.prod-why");
    assert_eq!(s("host"), "web-1");
    assert_eq!(s("t"), "2023-11-14T22:13:20.000000005Z");
    assert_eq!(s("tag1"), "web");
    assert_eq!(s("last"), "prod");
    assert_eq!(s("far"), "<>");
    assert_eq!(s("parts"), "app");
    assert_eq!(s("spaced"), "app.web.prod");
    assert_eq!(
        s("mixed"),
        r#"c=503 r=0.5 ok=true n= m= l=[1,"a"] x={"y":"why","n":7}"#
    );
    assert_eq!(s("static"), "plain text");
    assert_eq!(s("empty"), "");
    assert_eq!(s("dollar"), "cost: $5 {braces}");
    // the fields that were there stay
    assert_eq!(
        record::get(&r, &record::path("code")),
        Some(&Value::from(503))
    );
}

#[test]
fn whole_record_templates_keep_the_type() {
    let f = filter(
        r#"set = { c = "${record.code}", r = "${record.ratio}", o = "${record.ok}", x = "${record.x}", l = "${ record.list }", gone = "${record.missing}", nil = "${record.none}", s = "${record.x.y}" }"#,
    );
    let r = run(&f, "t", sample());
    let g = |k: &str| record::get(&r, &record::path(k)).cloned();
    assert_eq!(g("c"), Some(Value::from(503)));
    assert_eq!(g("r"), Some(Value::F64(0.5)));
    assert_eq!(g("o"), Some(Value::Boolean(true)));
    assert_eq!(g("x"), record::get(&sample(), &record::path("x")).cloned());
    assert_eq!(
        g("l"),
        record::get(&sample(), &record::path("list")).cloned()
    );
    assert_eq!(g("gone"), Some(Value::Nil), "a missing field sets null");
    assert_eq!(g("nil"), Some(Value::Nil));
    assert_eq!(g("s"), Some(Value::from("why")));
}

#[test]
fn set_literals_and_nesting() {
    for src in [
        r#"set = { n = 42, f = 1.5, b = false, "deep.er.x" = "v", "deep.y" = 1 }"#,
        r#"set = { n = 42, f = 1.5, b = false, deep = { er = { x = "v" }, y = 1 } }"#,
        "[set]\nn = 42\nf = 1.5\nb = false\n[set.deep]\ner.x = \"v\"\ny = 1\n",
    ] {
        let f = filter(src);
        let r = run(&f, "t", map(vec![("deep", "was a string".into())]));
        assert_eq!(
            r,
            map(vec![
                (
                    "deep",
                    map(vec![
                        ("er", map(vec![("x", "v".into())])),
                        ("y", Value::from(1))
                    ])
                ),
                ("b", Value::Boolean(false)),
                ("f", Value::F64(1.5)),
                ("n", Value::from(42)),
            ]),
            "{src}"
        );
    }
    // a parent and its child: the parent first, then the child inside it
    let f = filter(r#"set = { "a.b" = "child", a = "parent" }"#);
    let r = run(&f, "t", map(vec![]));
    assert_eq!(r, map(vec![("a", map(vec![("b", "child".into())]))]));
}

#[test]
fn keep_only_these() {
    let f = filter(r#"keep = ["x.y", "code", "nope", "x.nope.deeper"]"#);
    let r = run(&f, "t", sample());
    assert_eq!(
        r,
        map(vec![
            ("x", map(vec![("y", "why".into())])),
            ("code", Value::from(503)),
        ])
    );
    // a parent makes its children redundant, in either order
    for src in [r#"keep = ["x", "x.y"]"#, r#"keep = ["x.y", "x", "x"]"#] {
        let r = run(&filter(src), "t", sample());
        assert_eq!(
            r,
            map(vec![(
                "x",
                record::get(&sample(), &record::path("x")).cloned().unwrap()
            )]),
            "{src}"
        );
    }
    // keep = [] starts from an empty record (Fluentd's renew_record)
    let f = filter(
        r#"keep = []
set = { from = "${record.x.y}" }"#,
    );
    assert_eq!(run(&f, "t", sample()), map(vec![("from", "why".into())]));
    let f = filter("keep = []");
    assert_eq!(run(&f, "t", sample()), map(vec![]));
}

#[test]
fn remove_fields() {
    let f = filter(r#"remove = ["x.y", "code", "nope", "x.n.deeper", "dup"]"#);
    let mut rec = sample();
    if let Value::Map(m) = &mut rec {
        m.push((Value::from("dup"), Value::from(1)));
        m.push((Value::from("dup"), Value::from(2)));
    }
    let r = run(&f, "t", rec);
    assert_eq!(
        r,
        map(vec![
            ("x", map(vec![("n", Value::from(7))])),
            ("ratio", Value::F64(0.5)),
            ("ok", Value::Boolean(true)),
            ("none", Value::Nil),
            ("list", Value::Array(vec![Value::from(1), Value::from("a")])),
        ])
    );
}

#[test]
fn rename_fields() {
    let f =
        filter(r#"rename = { code = "status", "x.y" = "why", ok = "flags.ok", nope = "never" }"#);
    let r = run(&f, "t", sample());
    assert_eq!(
        r,
        map(vec![
            ("x", map(vec![("n", Value::from(7))])),
            ("ratio", Value::F64(0.5)),
            ("none", Value::Nil),
            ("list", Value::Array(vec![Value::from(1), Value::from("a")])),
            ("flags", map(vec![("ok", Value::Boolean(true))])),
            ("status", Value::from(503)),
            ("why", "why".into()),
        ])
    );
    // renames happen together: a swap works, and a chain moves each field once
    let f = filter(r#"rename = { a = "b", b = "a" }"#);
    let r = run(
        &f,
        "t",
        map(vec![("a", Value::from(1)), ("b", Value::from(2))]),
    );
    assert_eq!(r, map(vec![("a", Value::from(2)), ("b", Value::from(1))]));
    let f = filter(r#"rename = { a = "b", b = "c" }"#);
    let r = run(
        &f,
        "t",
        map(vec![("a", Value::from(1)), ("b", Value::from(2))]),
    );
    assert_eq!(r, map(vec![("b", Value::from(1)), ("c", Value::from(2))]));
    // into itself and out of itself
    let f = filter(r#"rename = { a = "a.inner" }"#);
    let r = run(&f, "t", map(vec![("a", Value::from(1))]));
    assert_eq!(r, map(vec![("a", map(vec![("inner", Value::from(1))]))]));
    let f = filter(r#"rename = { "a.inner" = "a" }"#);
    let r = run(&f, "t", r);
    assert_eq!(r, map(vec![("a", Value::from(1))]));
    // nested spelling
    let f = filter(r#"rename = { x = { y = "top" } }"#);
    let r = run(&f, "t", sample());
    assert_eq!(record::get_str(&r, &record::path("top")), Some("why"));
}

#[test]
fn order_is_keep_remove_rename_set_and_templates_see_the_incoming_record() {
    let f = filter(
        r#"
keep = ["a", "b", "c"]
remove = ["b"]
rename = { a = "renamed" }
set = { from_b = "${record.b}", from_a = "${record.a}", renamed = "${record.renamed}-set-wins", dropped = "${record.d}" }
"#,
    );
    let r = run(
        &f,
        "t",
        map(vec![
            ("a", "A".into()),
            ("b", "B".into()),
            ("c", "C".into()),
            ("d", "D".into()),
        ]),
    );
    assert_eq!(
        r,
        map(vec![
            ("c", "C".into()),
            ("renamed", "-set-wins".into()),
            ("dropped", "D".into()),
            ("from_a", "A".into()),
            ("from_b", "B".into()),
        ])
    );
}

#[test]
fn a_set_field_is_what_output_key_templates_see() {
    // the README example: a filter adds content_type, an output partitions by it
    let f = filter(r#"set = { content_type = "${tag[1]}" }"#);
    let r = run(&f, "app.action_logs", map(vec![("msg", "hi".into())]));
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &r).unwrap();
    let tz = fuwa_render::parse_timezone("UTC").unwrap();
    let key = fuwa_render::Template::parse("logs/${record.content_type}/dt=%Y-%m-%d/", tz, "h")
        .unwrap()
        .render("app.action_logs", T, &bytes);
    assert_eq!(key, "logs/action_logs/dt=2023-11-14/");
}

#[test]
fn records_that_are_not_maps_are_left_alone() {
    let f = filter(
        r#"set = { a = "x" }
keep = []"#,
    );
    for v in [Value::Nil, Value::from(1), Value::Array(vec![])] {
        assert_eq!(run(&f, "t", v.clone()), v);
    }
}

#[test]
fn build_registers_as_a_filter() {
    let f = build(&section(r#"set = { a = "${tag}" }"#), &ctx()).unwrap();
    let mut r = map(vec![]);
    fuwa_api::testing::filter_value(&f, "t.x", &mut EventTime::default(), &mut r);
    assert_eq!(r, map(vec![("a", "t.x".into())]));
}

#[test]
fn config_errors_name_the_key() {
    let e = err("bogus = 1\nremove = [\"a\"]");
    assert_eq!(e.key, "filter[0].bogus");
    assert!(e.message.contains("unknown field"), "{e:?}");

    let src = r#"set = { a = "${tag" }"#;
    let e = err(src);
    assert_eq!(e.key, "filter[0].set.a");
    assert!(e.message.contains("unclosed"), "{e:?}");
    assert_eq!(&src[e.span.unwrap()], r#""${tag""#);

    let e = err(r#"set = { "a.b" = "${nope}" }"#);
    assert_eq!(e.key, "filter[0].set.a.b");
    assert!(e.message.contains("unknown placeholder `${nope}`"), "{e:?}");

    let e = err(r#"set = { a = { b = "${tag[x]}" } }"#);
    assert_eq!(e.key, "filter[0].set.a.b");
    assert!(e.message.contains("index must be a number"), "{e:?}");

    let e = err(r#"set = { a = "${record.}" }"#);
    assert_eq!(e.key, "filter[0].set.a");
    let e = err(r#"set = { a = "${record.x..y}" }"#);
    assert_eq!(e.key, "filter[0].set.a");
    let e = err(r#"set = { a = "${record}" }"#);
    assert_eq!(e.key, "filter[0].set.a");

    let e = err(r#"set = { a = [1, 2] }"#);
    assert_eq!(e.key, "filter[0].set.a");
    assert!(e.message.contains("not array"), "{e:?}");
    let e = err(r#"set = { a = {} }"#);
    assert_eq!(e.key, "filter[0].set.a");

    let e = err("[set]\n\"a.b\" = \"1\"\n[set.a]\nb = \"2\"\n");
    assert_eq!(e.key, "filter[0].set.a.b");
    assert!(e.message.contains("twice"), "{e:?}");

    let e = err(r#"set = { ".a" = "x" }"#);
    assert_eq!(e.key, "filter[0].set..a");
    assert!(e.message.contains("not a field path"), "{e:?}");

    let src = r#"keep = ["ok", "a..b"]"#;
    let e = err(src);
    assert_eq!(e.key, "filter[0].keep[1]");
    assert_eq!(&src[e.span.unwrap()], r#""a..b""#);

    let e = err(r#"remove = ["ok", ""]"#);
    assert_eq!(e.key, "filter[0].remove[1]");

    let e = err(r#"remove = "a""#);
    assert_eq!(e.key, "filter[0].remove");

    let e = err(r#"rename = { a = 1 }"#);
    assert_eq!(e.key, "filter[0].rename.a");
    assert!(e.message.contains("new name"), "{e:?}");

    let e = err(r#"rename = { a = "b.", c = "d" }"#);
    assert_eq!(e.key, "filter[0].rename.a");

    let e = err(r#"rename = { a = "x", "a.b" = "y" }"#);
    assert_eq!(e.key, "filter[0].rename.a.b");
    assert!(e.message.contains("overlaps `a`"), "{e:?}");

    let e = err(r#"rename = { a = "x", b = "x" }"#);
    assert_eq!(e.key, "filter[0].rename.b");
    assert!(e.message.contains("both renamed to `x`"), "{e:?}");

    let e = err("");
    assert_eq!(e.key, "filter[0].set");
    assert!(e.message.contains("nothing to do"), "{e:?}");

    // every problem at once
    assert_eq!(
        errs(
            r#"set = { a = "${x}", b = "${y}" }
remove = ["", "ok"]"#
        )
        .len(),
        3
    );
}

/// The records the property tests draw: keys the filter reads, and
/// texts it reads specially.
const VALUES: Values = Values {
    keys: &["a", "b", "c", "x", "y"],
    texts: &[],
};

proptest! {
    /// Any record, any tag: never a panic, the record is kept, every `set`
    /// field is there afterwards with its value, and the fields the filter
    /// does not name are all still there.
    #[test]
    fn never_panics_never_loses_the_record(rec in VALUES.record(), tag in "[a-z.]{0,12}") {
        let f = filter(r#"
remove = ["b.x"]
rename = { "a.x" = "c.y", y = "moved" }
set = { "x.s" = "${tag}/${tag[1]}/${record.a}/${record.b.x}/${hostname}", "x.w" = "${record.a}", "x.n" = 1 }
"#);
        let mut r = rec.clone();
        let mut t = T;
        prop_assert!(matches!(fuwa_api::testing::filter_value(&f, &tag, &mut t, &mut r), FilterResult::Keep));
        prop_assert_eq!(t, T);
        prop_assert!(r.is_map());
        prop_assert_eq!(record::get(&r, &record::path("x.n")), Some(&Value::from(1)));
        let s = record::get_str(&r, &record::path("x.s"));
        let prefix = format!("{tag}/");
        prop_assert!(s.is_some_and(|s| s.starts_with(&prefix) && s.ends_with("/web-1")), "{:?}", s);
        let whole_a = record::get(&rec, &record::path("a")).cloned().unwrap_or(Value::Nil);
        // (Debug text, so that NaN equals NaN)
        prop_assert_eq!(
            format!("{:?}", record::get(&r, &record::path("x.w"))),
            format!("{:?}", Some(&whole_a))
        );
        let Value::Map(before) = &rec else { unreachable!() };
        let Value::Map(after) = &r else { unreachable!() };
        for (k, v) in before {
            let named = match k {
                Value::String(s) => matches!(s.as_bytes(), b"a" | b"b" | b"c" | b"x" | b"y" | b"moved"),
                Value::Binary(b) => matches!(b.as_slice(), b"a" | b"b" | b"c" | b"x" | b"y" | b"moved"),
                _ => false,
            };
            if !named {
                prop_assert!(
                    after.iter().any(|(k2, v2)| k2 == k && format!("{v2:?}") == format!("{v:?}")),
                    "{:?} lost", k
                );
            }
        }
        let mut buf = Vec::new();
        prop_assert!(rmpv::encode::write_value(&mut buf, &r).is_ok());
    }
}
