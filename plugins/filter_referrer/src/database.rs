//! Loading a referrer database in Snowplow referer-parser's format:
//! `referers.yml`, or the same structure as JSON.
//!
//! ```yaml
//! search:                 # the medium
//!   Google:               # the source name
//!     parameters:         # query parameters holding the term (search only)
//!       - q
//!     domains:            # keys: hosts (subdomains match), `name.*`, `host/path`
//!       - google.com
//!       - www.google.co.jp
//! social:
//!   Facebook:
//!     domains: [facebook.com, fb.me]
//! ```
//!
//! Mediums: `search`, `social`, `email`, `paid`, `chatbot`, `unknown`. Each
//! source takes `domains` (required, not empty), `parameters` (optional, any
//! medium: the term's parameters) and,
//! as an extension of the format, `encoding` (the engine's charset label for
//! terms that are not UTF-8: `shift_jis`, `euc-jp`, `gbk`, ...).
//!
//! The YAML reader takes the block style such files are written in: nested
//! mappings, `- item` sequences, `[a, b]` flow sequences, plain, 'single'
//! and "double" quoted scalars and `#` comments. Everything else (anchors,
//! tags, block scalars, several documents) is refused with its line. Every
//! scalar is text (`360.cn` and `yes` are strings).

use std::path::Path;

use encoding_rs::Encoding;

use crate::table::{check_key_with_path, Entry, Medium};

/// Database files larger than this are refused.
pub const MAX_FILE_SIZE: u64 = 8 * 1024 * 1024;
/// Nesting deeper than this is refused (the format needs 4 levels).
const MAX_DEPTH: usize = 16;

/// One entry of the file: its medium, source and keys, with the line it
/// starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbEntry {
    pub line: usize,
    pub key: String,
    pub entry: Entry,
}

/// Reads a database file (YAML, or JSON when the name ends in `.json` or the
/// text starts with `{`). Errors read `FILE:LINE: entry `medium.Source`: what`.
pub fn load(path: &Path) -> Result<Vec<DbEntry>, String> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| format!("{name}: {e}"))?;
    if meta.len() > MAX_FILE_SIZE {
        return Err(format!(
            "{name}: {} bytes, more than the {MAX_FILE_SIZE} a database may have",
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        || text.trim_start().starts_with('{');
    parse(&name, &text, json)
}

/// Parses database text; `name` is used in errors.
pub fn parse(name: &str, text: &str, json: bool) -> Result<Vec<DbEntry>, String> {
    let tree = if json {
        from_json(name, text)?
    } else {
        Yaml::new(name, text).document()?
    };
    entries(name, &tree)
}

/// A parsed node with the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Map(Vec<(String, usize, Node)>),
    Seq(Vec<(usize, Node)>),
    Scalar(String),
    Null,
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::Map(_) => "a mapping",
            Node::Seq(_) => "a list",
            Node::Scalar(_) => "a string",
            Node::Null => "nothing",
        }
    }
}

fn entries(name: &str, tree: &Node) -> Result<Vec<DbEntry>, String> {
    if *tree == Node::Null {
        // an empty file (or only comments): no entries
        return Ok(Vec::new());
    }
    let Node::Map(mediums) = tree else {
        return Err(format!(
            "{name}:1: the file must be a mapping of mediums (search:, social:, email:, ...), not {}",
            tree.kind()
        ));
    };
    let mut out = Vec::new();
    for (medium_name, line, sources) in mediums {
        let Some(medium) = Medium::parse(medium_name) else {
            return Err(format!(
                "{name}:{line}: `{medium_name}` is not a medium (search, social, email, paid, chatbot, unknown)"
            ));
        };
        let sources = match sources {
            Node::Map(m) => m.as_slice(),
            Node::Null => &[],
            other => {
                return Err(format!(
                    "{name}:{line}: `{medium_name}` must be a mapping of source names, not {}",
                    other.kind()
                ))
            }
        };
        for (source, line, body) in sources {
            let at = |line: usize, m: String| {
                format!("{name}:{line}: entry `{medium_name}.{source}`: {m}")
            };
            if source.trim().is_empty() {
                return Err(at(*line, "the source name is empty".into()));
            }
            let Node::Map(fields) = body else {
                return Err(at(
                    *line,
                    format!("must be a mapping with `domains`, not {}", body.kind()),
                ));
            };
            let mut domains: Option<Vec<(usize, String)>> = None;
            let mut params = Vec::new();
            let mut encoding: Option<&'static Encoding> = None;
            for (field, fline, value) in fields {
                match field.as_str() {
                    "domains" => domains = Some(strings(value).map_err(|m| at(*fline, m))?),
                    "parameters" => {
                        for (pline, p) in strings(value).map_err(|m| at(*fline, m))? {
                            if p.is_empty() {
                                return Err(at(pline, "an empty parameter name".into()));
                            }
                            params.push(p);
                        }
                    }
                    "encoding" => {
                        let label = match value {
                            Node::Scalar(s) => s,
                            other => {
                                return Err(at(
                                    *fline,
                                    format!("`encoding` must be a string, not {}", other.kind()),
                                ))
                            }
                        };
                        encoding = Some(Encoding::for_label(label.as_bytes()).ok_or_else(
                            || at(*fline, format!("`{label}` is not a known charset label")),
                        )?);
                    }
                    other => {
                        return Err(at(
                            *fline,
                            format!(
                                "unknown field `{other}` (expected `domains`, `parameters`, `encoding`)"
                            ),
                        ))
                    }
                }
            }
            let domains = domains.ok_or_else(|| at(*line, "has no `domains`".into()))?;
            if domains.is_empty() {
                return Err(at(*line, "`domains` is empty".into()));
            }
            let entry = Entry {
                medium,
                source: source.clone(),
                params,
                encoding,
            };
            for (dline, d) in domains {
                let key = check_key_with_path(&d).map_err(|m| at(dline, m))?;
                out.push(DbEntry {
                    line: dline,
                    key,
                    entry: entry.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// A list of strings (or one string), with lines.
fn strings(v: &Node) -> Result<Vec<(usize, String)>, String> {
    match v {
        Node::Seq(items) => items
            .iter()
            .map(|(line, n)| match n {
                Node::Scalar(s) => Ok((*line, s.clone())),
                other => Err(format!(
                    "a list item must be a string, not {}",
                    other.kind()
                )),
            })
            .collect(),
        Node::Null => Ok(Vec::new()),
        other => Err(format!("must be a list of strings, not {}", other.kind())),
    }
}

// ---- JSON ----

fn from_json(name: &str, text: &str) -> Result<Node, String> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("{name}:{}: not valid JSON: {e}", e.line()))?;
    let mut finder = LineFinder::new(text);
    Ok(json_node(&v, &mut finder, 0))
}

/// Lines of object keys in JSON text, found by searching for the quoted key
/// after the position of the last one found (the tree is walked in order).
struct LineFinder<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> LineFinder<'a> {
    fn new(text: &'a str) -> Self {
        LineFinder { text, pos: 0 }
    }

    fn line_of_key(&mut self, key: &str) -> usize {
        let quoted = serde_json::to_string(key).unwrap_or_default();
        let found = self.text[self.pos..]
            .find(&quoted)
            .map(|i| self.pos + i)
            .or_else(|| self.text.find(&quoted));
        match found {
            Some(i) => {
                self.pos = i + quoted.len();
                line_at(self.text, i)
            }
            None => line_at(self.text, self.pos),
        }
    }
}

fn line_at(text: &str, byte: usize) -> usize {
    text.as_bytes()[..byte.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn json_node(v: &serde_json::Value, lines: &mut LineFinder<'_>, line: usize) -> Node {
    use serde_json::Value as J;
    match v {
        J::Null => Node::Null,
        J::String(s) => Node::Scalar(s.clone()),
        J::Bool(b) => Node::Scalar(b.to_string()),
        J::Number(n) => Node::Scalar(n.to_string()),
        J::Array(a) => Node::Seq(
            a.iter()
                .map(|x| (line.max(1), json_node(x, lines, line)))
                .collect(),
        ),
        J::Object(o) => {
            // keys in the order of the text, so the search finds each after the last
            let mut keys: Vec<(usize, &String, &serde_json::Value)> = o
                .iter()
                .map(|(k, x)| {
                    let at = lines.text[lines.pos..]
                        .find(&serde_json::to_string(k).unwrap_or_default())
                        .unwrap_or(usize::MAX);
                    (at, k, x)
                })
                .collect();
            keys.sort_by_key(|(at, _, _)| *at);
            Node::Map(
                keys.into_iter()
                    .map(|(_, k, x)| {
                        let l = lines.line_of_key(k);
                        (k.clone(), l, json_node(x, lines, l))
                    })
                    .collect(),
            )
        }
    }
}

// ---- YAML (the block-style subset database files use) ----

struct Line<'a> {
    no: usize,
    indent: usize,
    text: &'a str,
}

struct Yaml<'a> {
    name: &'a str,
    lines: Vec<Line<'a>>,
    pos: usize,
    error: Option<String>,
}

impl<'a> Yaml<'a> {
    fn new(name: &'a str, text: &'a str) -> Self {
        let mut lines = Vec::new();
        let mut error = None;
        for (i, raw) in text.lines().enumerate() {
            let no = i + 1;
            let raw = if i == 0 {
                raw.trim_start_matches('\u{feff}')
            } else {
                raw
            };
            let content = strip_comment(raw).trim_end();
            let trimmed = content.trim_start_matches(' ');
            if trimmed.is_empty() || (no == 1 && trimmed.starts_with("%YAML")) {
                continue;
            }
            if trimmed.starts_with('\t') && error.is_none() {
                error = Some(format!(
                    "{name}:{no}: a tab in the indentation (YAML indents with spaces)"
                ));
            }
            if trimmed == "---" && lines.is_empty() {
                continue;
            }
            if (trimmed == "---" || trimmed == "...") && error.is_none() {
                error = Some(format!(
                    "{name}:{no}: a second document: a database is one YAML document"
                ));
            }
            lines.push(Line {
                no,
                indent: content.len() - trimmed.len(),
                text: trimmed,
            });
        }
        Yaml {
            name,
            lines,
            pos: 0,
            error,
        }
    }

    fn err(&self, no: usize, m: impl std::fmt::Display) -> String {
        format!("{}:{no}: {m}", self.name)
    }

    fn document(mut self) -> Result<Node, String> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let Some(first) = self.lines.first() else {
            return Ok(Node::Null);
        };
        let indent = first.indent;
        let node = self.block(indent, 0)?;
        if let Some(l) = self.lines.get(self.pos) {
            return Err(self.err(l.no, "this line is indented less than the one it follows"));
        }
        Ok(node)
    }

    /// A block (mapping or sequence) whose lines are indented `indent`.
    fn block(&mut self, indent: usize, depth: usize) -> Result<Node, String> {
        if depth > MAX_DEPTH {
            let no = self.lines.get(self.pos).map_or(0, |l| l.no);
            return Err(self.err(no, format!("nested more than {MAX_DEPTH} levels")));
        }
        let Some(first) = self.lines.get(self.pos) else {
            return Ok(Node::Null);
        };
        if is_seq_item(first.text) {
            self.sequence(indent, depth)
        } else {
            self.mapping(indent, depth)
        }
    }

    fn sequence(&mut self, indent: usize, depth: usize) -> Result<Node, String> {
        let mut items = Vec::new();
        while let Some(l) = self.lines.get(self.pos) {
            if l.indent < indent {
                break;
            }
            let (no, text) = (l.no, l.text);
            if l.indent > indent {
                return Err(self.err(no, "unexpected indentation"));
            }
            if !is_seq_item(text) {
                // the end of a list written at its key's indentation; the
                // caller refuses this line where it is out of place
                break;
            }
            let rest = text[1..].trim_start();
            self.pos += 1;
            if rest.is_empty() {
                let child = self.nested(indent, depth)?;
                items.push((no, child));
            } else if split_key(rest).is_some() && !rest.starts_with(['"', '\'', '[']) {
                return Err(self.err(
                    no,
                    "a mapping inside a list item is not supported here (database lists hold strings)",
                ));
            } else {
                items.push((no, self.inline(no, rest)?));
            }
        }
        Ok(Node::Seq(items))
    }

    fn mapping(&mut self, indent: usize, depth: usize) -> Result<Node, String> {
        let mut fields: Vec<(String, usize, Node)> = Vec::new();
        while let Some(l) = self.lines.get(self.pos) {
            if l.indent < indent {
                break;
            }
            let (no, text) = (l.no, l.text);
            if l.indent > indent {
                return Err(self.err(no, "unexpected indentation"));
            }
            if is_seq_item(text) {
                return Err(self.err(no, "a `- item` where a `key:` was expected"));
            }
            let Some((key, rest)) = split_key(text) else {
                return Err(self.err(
                    no,
                    format!("expected `key: value`, found `{}`", truncate(text)),
                ));
            };
            let key = self.key(no, key)?;
            if fields.iter().any(|(k, _, _)| *k == key) {
                return Err(self.err(no, format!("`{key}` appears twice in the same mapping")));
            }
            self.pos += 1;
            let value = if rest.is_empty() {
                // a nested block, or a sequence at the key's own indentation
                match self.lines.get(self.pos) {
                    Some(n) if n.indent == indent && is_seq_item(n.text) => {
                        self.sequence(indent, depth + 1)?
                    }
                    _ => self.nested(indent, depth)?,
                }
            } else {
                self.inline(no, rest)?
            };
            fields.push((key, no, value));
        }
        Ok(Node::Map(fields))
    }

    /// The block under a line indented `indent`, or nothing.
    fn nested(&mut self, indent: usize, depth: usize) -> Result<Node, String> {
        match self.lines.get(self.pos) {
            Some(n) if n.indent > indent => {
                let i = n.indent;
                self.block(i, depth + 1)
            }
            _ => Ok(Node::Null),
        }
    }

    fn key(&self, no: usize, k: &str) -> Result<String, String> {
        match self.scalar(no, k.trim())? {
            Node::Scalar(s) => Ok(s),
            other => Err(self.err(no, format!("a key must be a string, not {}", other.kind()))),
        }
    }

    /// A value on one line: a scalar, `[a, b]` or `{}`.
    fn inline(&self, no: usize, s: &str) -> Result<Node, String> {
        let s = s.trim();
        if let Some(inner) = s.strip_prefix('[') {
            let Some(inner) = inner.strip_suffix(']') else {
                return Err(self.err(no, "a `[` list must close on the same line"));
            };
            let mut items = Vec::new();
            for part in split_flow(inner).map_err(|m| self.err(no, m))? {
                let part = part.trim();
                if part.is_empty() {
                    continue;
                }
                items.push((no, self.scalar(no, part)?));
            }
            return Ok(Node::Seq(items));
        }
        if s == "{}" {
            return Ok(Node::Map(Vec::new()));
        }
        self.scalar(no, s)
    }

    fn scalar(&self, no: usize, s: &str) -> Result<Node, String> {
        if let Some(inner) = s.strip_prefix('\'') {
            let Some(inner) = inner.strip_suffix('\'') else {
                return Err(self.err(no, "a '…' string must close on the same line"));
            };
            return Ok(Node::Scalar(inner.replace("''", "'")));
        }
        if let Some(inner) = s.strip_prefix('"') {
            let Some(inner) = inner.strip_suffix('"').filter(|_| s.len() >= 2) else {
                return Err(self.err(no, "a \"…\" string must close on the same line"));
            };
            return unescape(inner)
                .map(Node::Scalar)
                .map_err(|m| self.err(no, m));
        }
        if s.starts_with(['&', '*', '!', '|', '>', '{', '@', '`']) {
            return Err(self.err(
                no,
                format!(
                    "`{}`: anchors, aliases, tags, block scalars and flow mappings are not supported in a database",
                    truncate(s)
                ),
            ));
        }
        Ok(Node::Scalar(s.to_string()))
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn is_seq_item(t: &str) -> bool {
    t == "-" || t.starts_with("- ")
}

/// `key: value` → (`key`, `value`), the colon outside quotes and followed by
/// a space or the end of the line.
fn split_key(t: &str) -> Option<(&str, &str)> {
    let b = t.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(b'\'') if c == b'\'' && b.get(i + 1) == Some(&b'\'') => i += 1,
            Some(b'"') if c == b'\\' => i += 1,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if (c == b'"' || c == b'\'') && i == 0 => quote = Some(c),
            None if c == b':' && (i + 1 == b.len() || b[i + 1] == b' ') => {
                return Some((t[..i].trim_end(), t[i + 1..].trim()));
            }
            None => {}
        }
        i += 1;
    }
    None
}

/// The text before a `#` comment (a `#` at the start or after a space,
/// outside quotes).
fn strip_comment(line: &str) -> &str {
    let b = line.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match quote {
            // '' in a '…' string and \x in a "…" string do not close it
            Some(b'\'') if c == b'\'' && b.get(i + 1) == Some(&b'\'') => i += 1,
            Some(b'"') if c == b'\\' => i += 1,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'"' || c == b'\'' => {
                // quotes only open a string at the start of a value
                let prev = line[..i].trim_end();
                if prev.is_empty() || prev.ends_with([':', '-', '[', ',']) {
                    quote = Some(c);
                }
            }
            None if c == b'#' && (i == 0 || b[i - 1] == b' ' || b[i - 1] == b'\t') => {
                return &line[..i];
            }
            None => {}
        }
        i += 1;
    }
    line
}

/// The items of a flow list, split at commas outside quotes.
fn split_flow(s: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match quote {
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == ',' => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            None if c == '[' || c == ']' || c == '{' || c == '}' => {
                return Err("nested flow collections are not supported in a database".into())
            }
            None => {}
        }
    }
    out.push(&s[start..]);
    Ok(out)
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut cs = s.chars();
    while let Some(c) = cs.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match cs.next() {
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('/') => out.push('/'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some(' ') => out.push(' '),
            Some(k @ ('x' | 'u' | 'U')) => {
                let n = match k {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex: String = cs.by_ref().take(n).collect();
                let c = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == n)
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("`\\{k}{hex}` is not a valid escape"))?;
                out.push(c);
            }
            Some(o) => return Err(format!("`\\{o}` is not a valid escape")),
            None => return Err("a string ends with `\\`".into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
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
}
