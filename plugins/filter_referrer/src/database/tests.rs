//! Unit tests of `database.rs`.

use super::*;

/// line, key, source, parameters
type Row = (usize, String, String, Vec<String>);

fn keys(text: &str) -> Result<Vec<Row>, String> {
    parse("db.yml", text, false).map(|v| {
        v.into_iter()
            .map(|e| (e.line, e.key, e.entry.source, e.entry.params))
            .collect()
    })
}

#[test]
fn yaml_forms() {
    let text = "\
# a comment
---
search:
  'Google':   # trailing comment
    parameters:
      - q
      - \"as_q\"
    domains:
    - google.com
    - 'www.google.co.jp'
  Baidu:
    parameters: [wd, 'word']
    domains: [baidu.com]
    encoding: gbk
social:
  \"Face # book\":
    domains:
      - facebook.com/l.php
email: {}
unknown:
";
    let got = keys(text).unwrap();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            (9, "google.com".into(), "Google".into(), s(&["q", "as_q"])),
            (
                10,
                "www.google.co.jp".into(),
                "Google".into(),
                s(&["q", "as_q"])
            ),
            (13, "baidu.com".into(), "Baidu".into(), s(&["wd", "word"])),
            (
                18,
                "facebook.com/l.php".into(),
                "Face # book".into(),
                vec![]
            ),
        ]
    );
    let db = parse("db.yml", text, false).unwrap();
    assert_eq!(db[2].entry.encoding, Some(encoding_rs::GBK));
}

#[test]
fn yaml_errors_name_file_line_and_entry() {
    let cases: &[(&str, &str)] = &[
        (
            "search:\n  G:\n    domains:\n      - 'a b.com'\n",
            "db.yml:4: entry `search.G`:",
        ),
        (
            "search:\n  G:\n    parameters: [q]\n",
            "db.yml:2: entry `search.G`: has no `domains`",
        ),
        (
            "search:\n  G:\n    domain: [x.com]\n",
            "db.yml:3: entry `search.G`: unknown field `domain`",
        ),
        (
            "searches:\n  G:\n    domains: [x.com]\n",
            "db.yml:1: `searches` is not a medium",
        ),
        (
            "search:\n  G:\n    domains: [x.com]\n    encoding: klingon\n",
            "db.yml:4: entry `search.G`: `klingon`",
        ),
        (
            "search:\n  G:\n   domains: [x.com]\n    parameters: [q]\n",
            "db.yml:4: unexpected indentation",
        ),
        ("search:\n  G: &a\n", "db.yml:2: `&a`"),
        ("search:\n\t G:\n", "db.yml:2: a tab"),
        (
            "search:\n  G:\n    domains: 'x.com\n",
            "db.yml:3: a '…' string",
        ),
        (
            "search:\n  G:\n    domains: [x.com]\n  G:\n    domains: [y.com]\n",
            "db.yml:4: `G` appears twice",
        ),
        (
            "search:\n  G:\n    domains: []\n",
            "db.yml:2: entry `search.G`: `domains` is empty",
        ),
        ("just text\n", "db.yml:1: expected `key: value`"),
        ("- a\n- b\n", "db.yml:1: the file must be a mapping"),
        ("a: 1\n---\nb: 2\n", "db.yml:2: a second document"),
    ];
    for (text, want) in cases {
        let e = keys(text).unwrap_err();
        assert!(e.starts_with(want), "{text:?}: {e}");
    }
}

#[test]
fn empty_files_have_no_entries() {
    assert_eq!(keys("").unwrap(), vec![]);
    assert_eq!(keys("# nothing yet\n\n").unwrap(), vec![]);
    assert_eq!(parse("db.json", "{}", true).unwrap(), vec![]);
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let mut text = String::new();
    for i in 0..200 {
        text.push_str(&" ".repeat(i));
        text.push_str("a:\n");
    }
    let e = keys(&text).unwrap_err();
    assert!(e.contains("nested more than"), "{e}");
}

#[test]
fn json_form() {
    let text = r#"{
  "search": {
    "Google": {
      "parameters": ["q"],
      "domains": ["google.com", "www.google.fr"]
    }
  },
  "email": {
    "Mail": {
      "domains": ["bad host.com"]
    }
  }
}"#;
    let e = parse("db.json", text, true).unwrap_err();
    assert!(e.starts_with("db.json:10: entry `email.Mail`:"), "{e}");
    let ok = text.replace("bad host.com", "mail.example");
    let got = parse("db.json", &ok, true).unwrap();
    assert_eq!(got.len(), 3);
    assert!(got
        .iter()
        .any(|e| e.key == "www.google.fr" && e.entry.params == ["q"]));
    let e = parse("db.json", "{\n\"search\": x\n}", true).unwrap_err();
    assert!(e.starts_with("db.json:2: not valid JSON"), "{e}");
}
