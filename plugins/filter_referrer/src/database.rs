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

mod yaml;

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
        yaml::Yaml::new(name, text).document()?
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

#[cfg(test)]
mod tests;
