//! Property tests of the decoders this crate has: the database reader (YAML
//! and JSON) and query decoding with charsets. Generators lean to depth and
//! length: deep nesting, long lines, many entries, long values.

use fuwa_filter_referrer::database;
use fuwa_filter_referrer::url::{query_pairs_in, to_text};
use proptest::prelude::*;

/// Text made of the pieces that matter to the YAML reader.
fn yamlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\n".to_string()),
        Just("search:".to_string()),
        Just("social:".to_string()),
        Just("domains:".to_string()),
        Just("parameters:".to_string()),
        Just("encoding: gbk".to_string()),
        Just("- ".to_string()),
        Just("-".to_string()),
        Just(": ".to_string()),
        Just("'".to_string()),
        Just("''".to_string()),
        Just("\"".to_string()),
        Just("\\u00e9".to_string()),
        Just("\\".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{}".to_string()),
        Just(",".to_string()),
        Just(" # c".to_string()),
        Just("\t".to_string()),
        Just("---".to_string()),
        Just("&a".to_string()),
        Just("x.example".to_string()),
        Just("テスト".to_string()),
        (0usize..64).prop_map(|n| " ".repeat(n)),
        (0usize..5000).prop_map(|n| "a".repeat(n)),
        "[ -~]{0,40}",
    ];
    proptest::collection::vec(piece, 0..80).prop_map(|v| v.concat())
}

/// Mappings nested `depth` levels, each line indented one more.
fn deep_yaml() -> impl Strategy<Value = String> {
    (1usize..400, 1usize..4).prop_map(|(depth, step)| {
        let mut s = String::new();
        for i in 0..depth {
            s.push_str(&" ".repeat(i * step));
            s.push_str("k:\n");
        }
        s
    })
}

fn check_error(e: &str, name: &str, lines: usize) -> Result<(), TestCaseError> {
    let rest = e.strip_prefix(name).and_then(|r| r.strip_prefix(':'));
    prop_assert!(rest.is_some(), "{}", e);
    let line: usize = rest
        .unwrap()
        .split(':')
        .next()
        .unwrap_or("")
        .parse()
        .map_err(|_| TestCaseError::fail(format!("no line in {e}")))?;
    prop_assert!(
        line >= 1 && line <= lines + 1,
        "line {} of {}: {}",
        line,
        lines,
        e
    );
    Ok(())
}

#[derive(Debug, Clone)]
struct Src {
    medium: &'static str,
    name: String,
    params: Vec<String>,
    domains: Vec<String>,
}

fn sources() -> impl Strategy<Value = Vec<Src>> {
    let label = "[a-z0-9]{1,12}";
    let domain = proptest::collection::vec(label, 2..5).prop_map(|l| l.join("."));
    let src = (
        prop_oneof![
            Just("search"),
            Just("social"),
            Just("email"),
            Just("chatbot")
        ],
        "[A-Za-z0-9 !&'\"#:-]{1,30}",
        proptest::collection::vec("[a-z_]{1,8}", 0..4),
        proptest::collection::vec(domain, 1..6),
    )
        .prop_map(|(medium, name, params, domains)| Src {
            medium,
            name: name.trim().to_string(),
            params: if medium == "search" {
                params
            } else {
                Vec::new()
            },
            domains,
        });
    proptest::collection::vec(src, 0..40).prop_map(|mut v| {
        // source names are keys: unique per medium, not blank
        let mut seen = std::collections::HashSet::new();
        v.retain(|s| !s.name.is_empty() && seen.insert((s.medium, s.name.clone())));
        v
    })
}

fn yaml_quote(s: &str, style: u8) -> String {
    match style % 3 {
        0 if !s.contains(['\'', '"', '#', ':', '&', '!']) && !s.starts_with(['-', ' ']) => {
            s.to_string()
        }
        1 => format!("'{}'", s.replace('\'', "''")),
        _ => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
    }
}

fn to_yaml(srcs: &[Src], style: u8) -> String {
    let mut out = String::from("# generated\n");
    for medium in ["search", "social", "email", "chatbot"] {
        let of: Vec<&Src> = srcs.iter().filter(|s| s.medium == medium).collect();
        if of.is_empty() {
            continue;
        }
        out.push_str(&format!("{medium}:\n"));
        for s in of {
            out.push_str(&format!("  {}:\n", yaml_quote(&s.name, style)));
            let list = |out: &mut String, key: &str, items: &[String]| {
                if items.is_empty() {
                    return;
                }
                if style.is_multiple_of(2) {
                    out.push_str(&format!("    {key}:\n"));
                    for i in items {
                        // both indentations of a list under a key
                        let pad = if style.is_multiple_of(4) {
                            "    "
                        } else {
                            "      "
                        };
                        out.push_str(&format!("{pad}- {}  # c\n", yaml_quote(i, style)));
                    }
                } else {
                    let items: Vec<String> = items.iter().map(|i| yaml_quote(i, style)).collect();
                    out.push_str(&format!("    {key}: [{}]\n", items.join(", ")));
                }
            };
            list(&mut out, "parameters", &s.params);
            list(&mut out, "domains", &s.domains);
        }
    }
    out
}

fn to_json(srcs: &[Src]) -> String {
    let mut root = serde_json::Map::new();
    for s in srcs {
        let m = root
            .entry(s.medium)
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        let mut body = serde_json::Map::new();
        if !s.params.is_empty() {
            body.insert("parameters".into(), s.params.clone().into());
        }
        body.insert("domains".into(), s.domains.clone().into());
        m.as_object_mut()
            .unwrap()
            .insert(s.name.clone(), serde_json::Value::Object(body));
    }
    serde_json::to_string_pretty(&serde_json::Value::Object(root)).unwrap()
}

type Row = (String, String, String, Vec<String>);

fn rows(db: Vec<database::DbEntry>) -> Vec<Row> {
    let mut v: Vec<Row> = db
        .into_iter()
        .map(|e| {
            (
                e.entry.medium.as_str().to_string(),
                e.entry.source,
                e.key,
                e.entry.params,
            )
        })
        .collect();
    v.sort();
    v
}

fn want_rows(srcs: &[Src]) -> Vec<Row> {
    let mut v: Vec<Row> = srcs
        .iter()
        .flat_map(|s| {
            s.domains.iter().map(|d| {
                (
                    s.medium.to_string(),
                    s.name.clone(),
                    d.clone(),
                    s.params.clone(),
                )
            })
        })
        .collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_text_is_read_or_refused_with_its_line(text in yamlish()) {
        let lines = text.lines().count();
        if let Err(e) = database::parse("db.yml", &text, false) {
            check_error(&e, "db.yml", lines)?;
        }
        if let Err(e) = database::parse("db.json", &text, true) {
            check_error(&e, "db.json", lines)?;
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_recursing_deeply(text in deep_yaml()) {
        let depth = text.lines().count();
        match database::parse("db.yml", &text, false) {
            Ok(_) => prop_assert!(false, "a {}-level file is not a database", depth),
            Err(e) => check_error(&e, "db.yml", depth)?,
        }
    }

    #[test]
    fn deep_json_is_refused(depth in 1usize..5000) {
        let text = format!("{}{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        if let Err(e) = database::parse("db.json", &text, true) {
            check_error(&e, "db.json", 1)?;
        }
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        prop_assert!(database::parse("db.json", &text, true).is_err());
    }

    #[test]
    fn generated_databases_read_back(srcs in sources(), style in any::<u8>()) {
        let want = want_rows(&srcs);
        let yaml = to_yaml(&srcs, style);
        let got = database::parse("db.yml", &yaml, false)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{yaml}")))?;
        prop_assert_eq!(rows(got), want.clone(), "{}", yaml);
        let json = to_json(&srcs);
        let got = database::parse("db.json", &json, true)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{json}")))?;
        prop_assert_eq!(rows(got), want);
    }

    #[test]
    fn terms_in_legacy_charsets_decode_back(
        s in "[a-zあ-んア-ン東京大阪百度搜狗안녕하세요 ]{0,200}",
        which in 0usize..4,
        declare in any::<bool>(),
    ) {
        let (enc, label) = [
            (encoding_rs::SHIFT_JIS, "Shift_JIS"),
            (encoding_rs::EUC_JP, "EUC-JP"),
            (encoding_rs::GBK, "gb2312"),
            (encoding_rs::EUC_KR, "euc-kr"),
        ][which];
        let (bytes, _, unmappable) = enc.encode(&s);
        prop_assume!(!unmappable);
        let q: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
        let query = if declare { format!("q={q}&ie={label}") } else { format!("q={q}") };
        let fallback = (!declare).then_some(enc);
        let pairs = query_pairs_in(&query, fallback);
        let got = pairs.iter().find(|(k, _)| k == "q").map(|(_, v)| v.clone());
        // undeclared text that also happens to be UTF-8 is read as UTF-8
        if declare || std::str::from_utf8(&bytes).is_err() {
            prop_assert_eq!(got, Some(s));
        }
    }

    #[test]
    fn any_query_decodes_without_panicking(
        raw in proptest::collection::vec(any::<u8>(), 0..4000),
        label in prop_oneof![
            Just("utf-8".to_string()),
            Just("shift_jis".to_string()),
            Just("euc-jp".to_string()),
            Just("gbk".to_string()),
            Just("x".to_string()),
            "[ -~]{0,20}",
        ],
        long in 0usize..20_000,
    ) {
        let mut q: String = raw
            .iter()
            .map(|b| match b % 5 {
                0 => "&".to_string(),
                1 => "=".to_string(),
                2 => format!("%{b:02x}"),
                3 => "%".to_string(),
                _ => char::from(b'a' + b % 26).to_string(),
            })
            .collect();
        q.push_str(&format!("&ie={label}&v={}", "%E3%81%82".repeat(long / 9)));
        let pairs = query_pairs_in(&q, Some(encoding_rs::SHIFT_JIS));
        prop_assert!(pairs.iter().any(|(k, _)| k == "v"));
        let _ = to_text(std::borrow::Cow::Owned(raw), None, Some(encoding_rs::GBK));
    }
}
