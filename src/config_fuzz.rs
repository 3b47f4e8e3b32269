//! Arbitrary TOML values under every key of every plugin type: loading the
//! config (what `fuwa check` does) answers with a config or with errors,
//! never a panic (`fuwa check` then exits 0 or 2, never 101).
//!
//! The keys are not listed by hand: each section's `deny_unknown_fields`
//! error names every key it accepts, so a key added to any plugin is fuzzed
//! without touching this file.

use std::panic::{catch_unwind, AssertUnwindSafe};

use proptest::prelude::*;
use toml::Value;

use super::load_str;
use crate::plugins;

use crate::plugins::minimal_section as base;

const INPUT: &str = "[[input]]\ntype = \"forward\"\nbind = \"127.0.0.1:0\"\n";
const OUTPUT: &str = "[[output]]\ntype = \"null\"\n";

/// Every (kind, type) pair the registry knows.
fn sections() -> Vec<(&'static str, &'static str)> {
    let mut v = Vec::new();
    v.extend(plugins::INPUTS.iter().map(|(n, _)| ("input", *n)));
    v.extend(plugins::FILTERS.iter().map(|(n, _)| ("filter", *n)));
    v.extend(plugins::OUTPUTS.iter().map(|(n, _)| ("output", *n)));
    v
}

fn config_with(kind: &str, ty: &str, extra: &str) -> String {
    let section = format!(
        "[[{kind}]]\ntype = \"{ty}\"\nmatch = \"**\"\n{}\n{extra}\n",
        base(kind, ty)
    );
    let section = if kind == "input" {
        section.replace("match = \"**\"\n", "")
    } else {
        section
    };
    match kind {
        "input" => format!("{section}{OUTPUT}"),
        "output" => format!("{INPUT}{section}"),
        _ => format!("{INPUT}{section}{OUTPUT}"),
    }
}

/// The keys a section accepts, read off its unknown-field error.
fn keys_of(config: &str) -> Vec<String> {
    let errs = match load_str(config, "f.toml", None) {
        Ok(_) => return Vec::new(),
        Err(e) => e.lines,
    };
    let mut keys = Vec::new();
    for line in errs {
        if let Some(i) = line.find("expected one of") {
            keys.extend(
                line[i..]
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(|k| k.to_string()),
            );
        } else if let Some(i) = line.find("expected `") {
            keys.extend(line[i..].split('`').nth(1).map(|k| k.to_string()));
        }
    }
    keys
}

/// (section kind, type, dotted key) for every key of every plugin, of
/// `[agent]` and `[agent.api]`, and of the nested tables (buffer, tls, …).
fn all_keys() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (kind, ty) in sections() {
        for k in keys_of(&config_with(kind, ty, "zz_unknown_key = 1")) {
            // a nested table: its own keys, through an unknown one inside it
            let nested = keys_of(&config_with(
                kind,
                ty,
                &format!("{k} = {{ zz_unknown_key = 1 }}"),
            ));
            for n in &nested {
                out.push((kind.to_string(), ty.to_string(), format!("{k}.{n}")));
            }
            out.push((kind.to_string(), ty.to_string(), k));
        }
        // the keys the engine reads itself (and the output's buffer)
        let mut common = vec!["id".to_string()];
        if kind != "input" {
            common.push("match".into());
        }
        if kind == "output" {
            for k in keys_of(&config_with(kind, ty, "buffer = { zz_unknown_key = 1 }")) {
                common.push(format!("buffer.{k}"));
            }
        }
        for k in common {
            out.push((kind.to_string(), ty.to_string(), k));
        }
    }
    for k in keys_of(&format!("[agent]\nzz_unknown_key = 1\n{INPUT}{OUTPUT}")) {
        out.push(("agent".into(), String::new(), k));
    }
    for k in keys_of(&format!("[agent.api]\nzz_unknown_key = 1\n{INPUT}{OUTPUT}")) {
        out.push(("agent".into(), String::new(), format!("api.{k}")));
    }
    out
}

/// Values biased to what breaks parsers: huge, negative, non-finite,
/// numeric-looking strings, empty and deep containers.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::Integer),
        prop::sample::select(vec![0i64, -1, -5, 1, i64::MAX, i64::MIN, 65536, 1 << 40])
            .prop_map(Value::Integer),
        any::<f64>().prop_map(Value::Float),
        prop::sample::select(vec![
            1e20,
            -1e20,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            1e-300,
            0.5,
        ])
        .prop_map(Value::Float),
        any::<bool>().prop_map(Value::Boolean),
        prop::sample::select(vec![
            "",
            "0",
            "-5",
            "1e20",
            "1e400",
            "inf",
            "NaN",
            "-1s",
            "1e20s",
            "99999999999999999999TiB",
            "18446744073709551616",
            "0.0.0.0:99999",
            "127.0.0.1:0",
            "${tag}",
            "${record.a}",
            "**",
            "{a,b",
            "[",
            "%Y/%m",
            "\u{0}",
            "ab\ncd",
            "gzip",
            "json",
            "file",
            "memory",
            "block",
            "1d1d1d",
            "9999999h",
            "-0",
            ".",
            "1..2",
            "utf-8",
        ])
        .prop_map(|s| Value::String(s.to_string())),
        "[ -~]{0,40}".prop_map(Value::String),
        "[0-9.eE+-]{1,25}[a-zA-Z]{0,3}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Table(m.into_iter().collect())),
        ]
    })
}

fn set_key(kind: &str, ty: &str, key: &str, v: &Value) -> String {
    // a dotted key: `a.b = v` is TOML for the nested table
    let line = format!("{} = {}", key, inline(v));
    if kind == "agent" {
        return format!("[agent]\n{line}\n{INPUT}{OUTPUT}");
    }
    config_with(kind, ty, &line)
}

fn inline(v: &Value) -> String {
    match v {
        // NaN and the infinities have TOML spellings of their own
        Value::Float(f) if f.is_nan() => "nan".into(),
        Value::Float(f) if f.is_infinite() => (if *f > 0.0 { "inf" } else { "-inf" }).into(),
        Value::Array(a) => format!("[{}]", a.iter().map(inline).collect::<Vec<_>>().join(", ")),
        Value::Table(t) => format!(
            "{{ {} }}",
            t.iter()
                .map(|(k, v)| format!("{k} = {}", inline(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

#[test]
fn every_plugin_names_its_keys() {
    let keys = all_keys();
    for (kind, ty) in sections() {
        assert!(
            keys.iter().any(|(k, t, _)| k == kind && t == ty),
            "no keys found for {kind} {ty}"
        );
    }
    // the nested tables are reached too
    assert!(keys.iter().any(|(_, _, k)| k == "buffer.flush_interval"));
    assert!(keys
        .iter()
        .any(|(k, _, key)| k == "agent" && key == "api.bind"));
}

#[test]
fn the_values_the_issue_named_are_errors_with_a_reason() {
    let flush = set_key(
        "output",
        "null",
        "buffer.flush_interval",
        &Value::String("1e20".into()),
    );
    let Err(e) = load_str(&flush, "f.toml", None) else {
        panic!("1e20 s is refused")
    };
    assert!(
        e.lines.iter().any(|l| l.contains("100 years")),
        "{:?}",
        e.lines
    );
    let limit = set_key(
        "input",
        "forward",
        "message_length_limit",
        &Value::Integer(-5),
    );
    let Err(e) = load_str(&limit, "f.toml", None) else {
        panic!("-5 is refused")
    };
    assert!(
        e.lines
            .iter()
            .any(|l| l.contains("-5 is negative") && l.contains("8MiB")),
        "{:?}",
        e.lines
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
    #[test]
    fn any_value_under_any_key_loads_or_is_refused(idx in any::<prop::sample::Index>(), v in value()) {
        static KEYS: std::sync::OnceLock<Vec<(String, String, String)>> = std::sync::OnceLock::new();
        let keys = KEYS.get_or_init(all_keys);
        let (kind, ty, key) = idx.get(keys);
        let src = set_key(kind, ty, key, &v);
        let r = catch_unwind(AssertUnwindSafe(|| load_str(&src, "f.toml", None).map(|_| ())));
        prop_assert!(r.is_ok(), "loading panicked on\n{src}");
    }
}
