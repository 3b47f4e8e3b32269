//! The YAML reader for database files: the block-style subset they are
//! written in (nested mappings, `- item` sequences, `[a, b]` flow
//! sequences, plain, quoted scalars, `#` comments); everything else is
//! refused with its line.

use super::{Node, MAX_DEPTH};

struct Line<'a> {
    no: usize,
    indent: usize,
    text: &'a str,
}

pub(super) struct Yaml<'a> {
    name: &'a str,
    lines: Vec<Line<'a>>,
    pos: usize,
    error: Option<String>,
}

impl<'a> Yaml<'a> {
    pub(super) fn new(name: &'a str, text: &'a str) -> Self {
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

    pub(super) fn document(mut self) -> Result<Node, String> {
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
