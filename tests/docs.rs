//! The configuration reference (docs/configuration/) does not drift from the
//! code: every key a config section accepts is documented on its page, and
//! every key a page documents is accepted by the section it documents.
//!
//! The keys the code accepts are not listed here: they are read off the real
//! binary. `fuwa check` on a section holding `zz_unknown_key = 1` answers
//! "unknown field `zz_unknown_key`, expected one of `a`, `b`, ..." (or
//! "expected `a` or `b`", or "there are no fields"), as src/config_fuzz.rs
//! does in-process. A nested table (`tls`, `buffer`, `users = [...]`) is
//! probed the same way with `key = { zz_unknown_key = 1 }` and
//! `key = [{ zz_unknown_key = 1 }]`.
//!
//! The documented keys are the backticked names in the first column of the
//! pages' key tables (tables whose header starts with `| key |`). A nested
//! key `k.sub` is documented by a row `k.sub` or by the row of `k` naming
//! `sub` (e.g. `users` "(`username`, `password`)").

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use common::{bin, repo_root};

use fuwa::plugins::minimal_section as base;

const INPUT: &str = "[[input]]\ntype = \"forward\"\nbind = \"127.0.0.1:0\"\n";
const OUTPUT: &str = "[[output]]\ntype = \"null\"\n";

/// Every plugin type, and the reference page that documents it.
const PLUGINS: &[(&str, &str, &str)] = &[
    ("input", "forward", "in_forward.md"),
    ("input", "tail", "in_tail.md"),
    ("input", "http", "in_http.md"),
    ("filter", "types", "filter_types.md"),
    ("filter", "record", "filter_record.md"),
    ("filter", "grep", "filter_grep.md"),
    ("filter", "parser", "filter_parser.md"),
    ("filter", "user_agent", "filter_user_agent.md"),
    ("filter", "referrer", "filter_referrer.md"),
    ("output", "file", "out_file.md"),
    ("output", "stdout", "out_stdout.md"),
    ("output", "null", "out_null.md"),
    ("output", "s3", "out_s3.md"),
    ("output", "firehose", "out_firehose.md"),
    ("output", "kinesis_streams", "out_kinesis_streams.md"),
    ("output", "forward", "out_forward.md"),
];

/// Types whose pages take the parser keys from parsers.md.
const USES_PARSERS: &[(&str, &str)] = &[("input", "tail"), ("filter", "parser")];

fn config_with(kind: &str, ty: &str, extra: &str) -> String {
    let matcher = if kind == "input" {
        ""
    } else {
        "match = \"**\"\n"
    };
    let section = format!(
        "[[{kind}]]\ntype = \"{ty}\"\n{matcher}{}\n{extra}\n",
        base(kind, ty)
    );
    match kind {
        "input" => format!("{section}{OUTPUT}"),
        "output" => format!("{INPUT}{section}"),
        _ => format!("{INPUT}{section}{OUTPUT}"),
    }
}

/// `fuwa check` on `config`: its output lines.
fn check(dir: &Path, config: &str) -> Vec<String> {
    let path = dir.join("probe.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(bin())
        .arg("check")
        .arg("-c")
        .arg(&path)
        .output()
        .expect("run fuwa check");
    let code = out.status.code();
    assert!(
        code == Some(0) || code == Some(2),
        "fuwa check exited {code:?} on\n{config}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text.lines().map(str::to_string).collect()
}

/// The keys listed by the unknown-field error at `at` (a config path such
/// as `input[0]` or `agent.api`); None when there is no such error.
fn keys_at(lines: &[String], at: &str) -> Option<BTreeSet<String>> {
    // a table: `at.zz_unknown_key: ...`; an element of an array of tables
    // is reported at the array: `at: unknown field ...`
    let needles = [
        format!(" {at}.zz_unknown_key: unknown field `zz_unknown_key`"),
        format!(" {at}: unknown field `zz_unknown_key`"),
    ];
    let (line, needle) = lines.iter().find_map(|l| {
        needles
            .iter()
            .find(|n| l.contains(n.as_str()))
            .map(|n| (l, n))
    })?;
    let rest = &line[line.find(needle.as_str()).unwrap() + needle.len()..];
    let mut keys = BTreeSet::new();
    if let Some(i) = rest.find("expected one of") {
        keys.extend(rest[i..].split('`').skip(1).step_by(2).map(str::to_string));
    } else if let Some(i) = rest.find("expected `") {
        keys.extend(rest[i..].split('`').skip(1).step_by(2).map(str::to_string));
    } else {
        assert!(
            rest.contains("there are no fields"),
            "unexpected unknown-field error: {line}"
        );
    }
    Some(keys)
}

/// The section's keys, with nested tables' keys as `k.sub`.
fn plugin_keys(dir: &Path, kind: &str, ty: &str) -> BTreeSet<String> {
    let at = format!("{kind}[0]");
    let lines = check(dir, &config_with(kind, ty, "zz_unknown_key = 1"));
    let top = keys_at(&lines, &at)
        .unwrap_or_else(|| panic!("{kind} {ty}: no unknown-field error in {lines:#?}"));
    let mut keys = BTreeSet::new();
    for k in top {
        for probe in [
            format!("{k} = {{ zz_unknown_key = 1 }}"),
            format!("{k} = [{{ zz_unknown_key = 1 }}]"),
        ] {
            let lines = check(dir, &config_with(kind, ty, &probe));
            if let Some(nested) = keys_at(&lines, &format!("{at}.{k}")) {
                keys.extend(nested.into_iter().map(|n| format!("{k}.{n}")));
                break;
            }
        }
        keys.insert(k);
    }
    keys
}

/// One row of a key table: the backticked names of its first column and the
/// whole row's text.
struct Row {
    keys: Vec<String>,
    text: String,
}

/// The key tables of `markdown`, by the heading they are under.
fn key_tables(markdown: &str) -> BTreeMap<String, Vec<Row>> {
    let mut out: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut heading = String::new();
    let mut in_key_table = false;
    let mut fence = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            fence = !fence;
        }
        if fence {
            continue;
        }
        if line.starts_with('#') {
            heading = line.trim_start_matches('#').trim().to_string();
        }
        if !line.starts_with('|') {
            in_key_table = false;
            continue;
        }
        let first = line.split('|').nth(1).unwrap_or("").trim();
        if !in_key_table {
            in_key_table = first == "key";
            continue;
        }
        if first.starts_with("---") {
            continue;
        }
        let keys: Vec<String> = first
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        if !keys.is_empty() {
            out.entry(heading.clone()).or_default().push(Row {
                keys,
                text: line.to_string(),
            });
        }
    }
    out
}

fn read(page: &str) -> String {
    let path = repo_root().join("docs/configuration").join(page);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn is_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// What `code` accepts that `rows` do not document, and what `rows`
/// document that `code` does not accept.
fn compare(what: &str, code: &BTreeSet<String>, rows: &[&Row], problems: &mut Vec<String>) {
    let documented: BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| r.keys.iter().map(String::as_str))
        .collect();
    for key in code {
        if documented.contains(key.as_str()) {
            continue;
        }
        // a nested table `k`: documented by its rows `k.sub`
        let prefix = format!("{key}.");
        if documented.iter().any(|d| d.starts_with(&prefix)) {
            continue;
        }
        // `k.sub`: documented by the row of `k` naming `sub`
        let named_in_parent = key.split_once('.').is_some_and(|(parent, sub)| {
            rows.iter()
                .any(|r| r.keys.iter().any(|k| k == parent) && is_word(&r.text, sub))
        });
        if !named_in_parent {
            problems.push(format!("{what}: `{key}` is accepted but not documented"));
        }
    }
    for key in documented {
        if !code.contains(key) {
            problems.push(format!(
                "{what}: `{key}` is documented but no struct accepts it"
            ));
        }
    }
}

/// Every plugin type the binary knows has a page here, and every page in
/// docs/configuration/ is one of them (or README.md, parsers.md).
#[test]
fn every_plugin_type_has_a_reference_page() {
    let dir = tempfile::tempdir().unwrap();
    let lines = check(
        dir.path(),
        "[[input]]\ntype = \"zz\"\n[[filter]]\ntype = \"zz\"\n[[output]]\ntype = \"zz\"\n",
    );
    for kind in ["input", "filter", "output"] {
        let needle = format!("unknown {kind} type `zz` (known: ");
        let line = lines
            .iter()
            .find(|l| l.contains(&needle))
            .unwrap_or_else(|| panic!("no unknown {kind} type error in {lines:#?}"));
        let rest = &line[line.find(&needle).unwrap() + needle.len()..];
        let known: BTreeSet<&str> = rest.trim_end_matches(')').split(", ").collect();
        let listed: BTreeSet<&str> = PLUGINS
            .iter()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, t, _)| *t)
            .collect();
        assert_eq!(
            known, listed,
            "{kind} types: the binary's vs this test's PLUGINS"
        );
    }
    let pages: BTreeSet<String> = std::fs::read_dir(repo_root().join("docs/configuration"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut expected: BTreeSet<String> = PLUGINS.iter().map(|(_, _, p)| p.to_string()).collect();
    expected.insert("README.md".into());
    expected.insert("parsers.md".into());
    assert_eq!(pages, expected, "docs/configuration/ pages");
}

#[test]
fn configuration_reference_documents_exactly_the_keys_the_code_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut problems = Vec::new();

    let parsers = read("parsers.md");
    let parsers = key_tables(&parsers);
    let parser_rows: Vec<&Row> = parsers.values().flatten().collect();
    assert!(!parser_rows.is_empty(), "parsers.md has no key table");

    let mut parser_keys_everywhere: Option<BTreeSet<String>> = None;
    for (kind, ty, page) in PLUGINS {
        let code = plugin_keys(dir, kind, ty);
        let text = read(page);
        let tables = key_tables(&text);
        let mut rows: Vec<&Row> = tables.values().flatten().collect();
        if USES_PARSERS.contains(&(*kind, *ty)) {
            // the page documents its own keys; parsers.md the parser keys
            // this section accepts (each must be accepted by both)
            let shared = parser_keys_everywhere.get_or_insert_with(|| code.clone());
            shared.retain(|k| code.contains(k));
            let own: Vec<&str> = rows
                .iter()
                .flat_map(|r| r.keys.iter().map(String::as_str))
                .collect();
            rows.extend(
                parser_rows
                    .iter()
                    .filter(|r| r.keys.iter().all(|k| !own.contains(&k.as_str()))),
            );
        }
        if rows.is_empty() && !code.is_empty() {
            problems.push(format!("{page}: no key table (a table headed `| key |`)"));
        }
        compare(
            &format!("{page} ({kind} {ty})"),
            &code,
            &rows,
            &mut problems,
        );
    }
    // a key in parsers.md is one that every parsing section accepts
    let shared = parser_keys_everywhere.unwrap_or_default();
    for row in &parser_rows {
        for k in &row.keys {
            if !shared.contains(k) {
                problems.push(format!(
                    "parsers.md: `{k}` is not accepted by every one of {USES_PARSERS:?}"
                ));
            }
        }
    }

    // configuration/README.md: [agent], [agent.api], the output buffer
    let readme = read("README.md");
    let tables = key_tables(&readme);
    let section = |title: &str| -> Vec<&Row> {
        let rows: Vec<&Row> = tables
            .iter()
            .filter(|(h, _)| h.starts_with(title))
            .flat_map(|(_, r)| r.iter())
            .collect();
        assert!(!rows.is_empty(), "README.md: no key table under {title}");
        rows
    };
    let agent = keys_at(
        &check(
            dir,
            &format!("[agent]\nzz_unknown_key = 1\n{INPUT}{OUTPUT}"),
        ),
        "agent",
    )
    .expect("[agent] has an unknown-field error");
    // `api` is the `[agent.api]` table, documented under its own heading
    let agent: BTreeSet<String> = agent.into_iter().filter(|k| k != "api").collect();
    compare(
        "README.md [agent]",
        &agent,
        &section("`[agent]`"),
        &mut problems,
    );
    let api = keys_at(
        &check(
            dir,
            &format!("[agent.api]\nzz_unknown_key = 1\n{INPUT}{OUTPUT}"),
        ),
        "agent.api",
    )
    .expect("[agent.api] has an unknown-field error");
    compare(
        "README.md [agent.api]",
        &api,
        &section("`[agent.api]`"),
        &mut problems,
    );
    let buffer = keys_at(
        &check(
            dir,
            &format!("{INPUT}[[output]]\ntype = \"null\"\n[output.buffer]\nzz_unknown_key = 1\n"),
        ),
        "output[0].buffer",
    )
    .expect("[output.buffer] has an unknown-field error");
    compare(
        "README.md [output.buffer]",
        &buffer,
        &section("`[output.buffer]`"),
        &mut problems,
    );
    // the keys every plugin table takes, read by the engine: each one is
    // known (a wrong value is a type error, not an unknown field)
    for row in section("Plugins:") {
        for key in &row.keys {
            for (kind, ty) in [("filter", "user_agent"), ("output", "null")] {
                let mut fields = BTreeMap::from([
                    ("type".to_string(), format!("\"{ty}\"")),
                    ("match".to_string(), "\"**\"".to_string()),
                ]);
                fields.insert(key.clone(), "[]".to_string());
                let section: String = fields.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
                let config = match kind {
                    "filter" => format!("{INPUT}[[filter]]\n{section}{OUTPUT}"),
                    _ => format!("{INPUT}[[output]]\n{section}"),
                };
                let lines = check(dir, &config);
                let unknown = format!("unknown field `{key}`");
                if lines.iter().any(|l| l.contains(&unknown)) {
                    problems.push(format!(
                        "README.md plugins: `{key}` is documented but a {kind} refuses it"
                    ));
                }
            }
        }
    }

    assert!(
        problems.is_empty(),
        "the configuration reference and the code disagree:\n{}",
        problems.join("\n")
    );
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// as `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut fence = false;
    let mut out = BTreeSet::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            fence = !fence;
        }
        if !fence && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// Every relative link in README.md, docs/ and the plugin READMEs points at
/// a file of the repository (and at a heading of it, with `#anchor`).
#[test]
fn relative_links_resolve() {
    let root = repo_root();
    let mut pages = vec![root.join("README.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                pages.push(p);
            }
        }
    }
    for e in std::fs::read_dir(root.join("plugins")).unwrap() {
        let p = e.unwrap().path().join("README.md");
        if p.exists() {
            pages.push(p);
        }
    }
    let mut problems = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        let mut fence = false;
        for line in text.lines() {
            if line.starts_with("```") {
                fence = !fence;
            }
            if fence {
                continue;
            }
            for (i, _) in line.match_indices("](") {
                let rest = &line[i + 2..];
                let Some(end) = rest.find(')') else { continue };
                let target = &rest[..end];
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
                let file = if file.is_empty() {
                    page.clone()
                } else {
                    page.parent().unwrap().join(file)
                };
                let shown = page.strip_prefix(&root).unwrap().display();
                let Ok(canon) = file.canonicalize() else {
                    problems.push(format!("{shown}: ({target}): no such file"));
                    continue;
                };
                if !canon.starts_with(root.canonicalize().unwrap()) {
                    problems.push(format!("{shown}: ({target}): outside the repository"));
                    continue;
                }
                if !anchor.is_empty() {
                    let target_text = std::fs::read_to_string(&canon).unwrap_or_default();
                    if !anchors(&target_text).contains(anchor) {
                        problems.push(format!("{shown}: ({target}): no heading #{anchor}"));
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}
