//! Runs every User-Agent from woothee's own generated test files through the
//! filter and checks the fields against woothee's expectations.
//!
//! The expectations are not copied into this repository: the woothee crate
//! package in the cargo registry ships them as `tests/*.rs`, and this test
//! finds them at run time under `$CARGO_HOME/registry/src/*/woothee-0.13.0/`
//! (`CARGO_HOME` defaults to `~/.cargo`). Building this crate downloads and
//! unpacks woothee there, so the files exist whenever this test is built.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fuwa_api::{BuildContext, ConfigSection, EventTime, Filter, FilterResult};
use regex::Regex;
use rmpv::Value;

const WOOTHEE_DIR: &str = "woothee-0.13.0";

fn cargo_home() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("CARGO_HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(h));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo"))
}

/// Every `registry/src/*/woothee-0.13.0/tests` directory.
fn woothee_test_dirs() -> Vec<PathBuf> {
    let Some(home) = cargo_home() else {
        return Vec::new();
    };
    let src = home.join("registry").join("src");
    let Ok(rd) = std::fs::read_dir(&src) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path().join(WOOTHEE_DIR).join("tests"))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[derive(Debug)]
struct Case {
    file: String,
    ua: String,
    /// field → expected value, only for the fields woothee asserts
    expect: BTreeMap<String, String>,
}

fn extract(file: &Path, text: &str) -> Vec<Case> {
    // `parser.parse(r#"..."#)`; rustfmt sometimes breaks the call over lines:
    // `parser\n.parse(r#"..."#)` or `parser.parse(\n r#"..."#,\n)`
    let parse = Regex::new(r##"\.parse\(\s*r#"(.*?)"#\s*,?\s*\)"##).unwrap();
    // live assertions only: a line starting with `//` does not match
    let assert = Regex::new(
        r#"(?m)^\s*assert_eq!\(result\.(category|name|os|os_version|version|vendor), "((?:[^"\\]|\\.)*)"(?:\.to_string\(\))?\);"#,
    )
    .unwrap();
    let starts: Vec<_> = parse.captures_iter(text).collect();
    let mut cases = Vec::new();
    for (i, c) in starts.iter().enumerate() {
        let whole = c.get(0).unwrap();
        let end = starts
            .get(i + 1)
            .map_or(text.len(), |n| n.get(0).unwrap().start());
        let body = &text[whole.end()..end];
        let expect = assert
            .captures_iter(body)
            .map(|a| (a[1].to_string(), a[2].replace("\\\"", "\"")))
            .collect();
        cases.push(Case {
            file: file.file_name().unwrap().to_string_lossy().into_owned(),
            ua: c[1].to_string(),
            expect,
        });
    }
    cases
}

fn build(src: &str) -> Box<dyn Filter> {
    let section = ConfigSection::from_toml("filter[0]", src).expect("section");
    let ctx = BuildContext {
        id: "user_agent.0".into(),
        hostname: "test".into(),
        timezone: "UTC".into(),
        data_dir: std::env::temp_dir(),
    };
    match fuwa_filter_user_agent::build(&section, &ctx) {
        Ok(f) => f,
        Err(e) => panic!("{e:?}"),
    }
}

fn run(f: &dyn Filter, ua: &str) -> Value {
    let mut rec = Value::Map(vec![(Value::from("user_agent"), Value::from(ua))]);
    let mut t = EventTime::new(0, 0);
    assert!(matches!(
        fuwa_api::testing::filter_value(&f, "t", &mut t, &mut rec),
        FilterResult::Keep
    ));
    rec
}

fn field<'a>(rec: &'a Value, path: &[&str]) -> Option<&'a str> {
    let p: Vec<String> = path.iter().map(|s| s.to_string()).collect();
    fuwa_api::record::get_str(rec, &p)
}

#[test]
fn every_woothee_case_matches() {
    let dirs = woothee_test_dirs();
    assert!(
        !dirs.is_empty(),
        "woothee's test files were not found: looked for registry/src/*/{WOOTHEE_DIR}/tests under \
         CARGO_HOME ({:?}); `cargo fetch` or building this crate unpacks them there",
        cargo_home()
    );
    // several registry directories hold the same package: use the first
    let dir = &dirs[0];
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let found = extract(f, &text);
        // every call to the parser in the file must have been understood
        assert_eq!(
            found.len(),
            text.matches(".parse(").count(),
            "{}: some parse calls were not extracted",
            f.display()
        );
        cases.extend(found);
    }
    assert!(
        cases.len() > 250,
        "only {} cases found in {} — has the layout of woothee's tests changed?",
        cases.len(),
        dir.display()
    );

    // the same cases through a cached filter (twice: miss, then hit) and an
    // uncached one
    let cached = build("cache_size = 10000\n");
    let uncached = build("cache_size = 0\n");
    let mut checked = 0usize;
    let mut failures = Vec::new();
    for case in &cases {
        assert!(
            case.expect.contains_key("category") && case.expect.contains_key("name"),
            "{}: no expectations parsed for {:?}",
            case.file,
            case.ua
        );
        for (which, f) in [("miss", &cached), ("hit", &cached), ("uncached", &uncached)] {
            let rec = run(f.as_ref(), &case.ua);
            for (k, want) in &case.expect {
                checked += 1;
                let got = field(&rec, &["ua", k]);
                if got != Some(want.as_str()) {
                    failures.push(format!(
                        "{} ({which}) {:?}: {k} = {got:?}, woothee expects {want:?}",
                        case.file, case.ua
                    ));
                }
            }
            // every field is always written
            for k in fuwa_filter_user_agent::FIELDS {
                assert!(
                    field(&rec, &["ua", k]).is_some(),
                    "{:?} lacks ua.{k}",
                    case.ua
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "woothee conformance: {} cases from {} files in {}, {checked} field checks",
        cases.len(),
        files.len(),
        dir.display()
    );
}
