//! JSON as amazon-kinesis-agent's Jackson `ObjectMapper` reads and writes
//! it: objects keep their key order (a `LinkedHashMap`; a repeated key keeps
//! its first place and takes the last value), numbers are re-printed the way
//! Java prints an `Integer`/`Long`/`BigInteger` or a `Double`, strings are
//! escaped as Jackson escapes them (`\b \t \n \f \r`, other control
//! characters as `\u00XX` in upper case, nothing else), and the pretty
//! printer is Jackson's `DefaultPrettyPrinter`. Comments (`//`, `/* */`) are
//! accepted where kinesis-agent accepts them (its config reader enables
//! `ALLOW_COMMENTS`).

use std::fmt::Write as _;

/// Deepest nesting accepted (Jackson's own default limit is 1,000).
pub const MAX_DEPTH: usize = 256;

#[derive(Debug, Clone, PartialEq)]
pub enum JVal {
    Null,
    Bool(bool),
    /// the text Java would print for the number
    Num(String),
    Str(String),
    Arr(Vec<JVal>),
    Obj(Vec<(String, JVal)>),
}

impl JVal {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            JVal::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn get(&self, key: &str) -> Option<&JVal> {
        match self {
            JVal::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    /// `LinkedHashMap::put`: a known key keeps its place.
    pub fn put(map: &mut Vec<(String, JVal)>, key: String, value: JVal) {
        match map.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => map.push((key, value)),
        }
    }
}

struct P<'a> {
    s: &'a [u8],
    i: usize,
    comments: bool,
}

/// Parses one JSON value at the start of `text` (after whitespace); returns
/// it and the offset after it. What follows is not looked at (Jackson's
/// `readValue` ignores trailing content by default).
pub fn parse_prefix(text: &str, comments: bool) -> Result<(JVal, usize), String> {
    let mut p = P {
        s: text.as_bytes(),
        i: 0,
        comments,
    };
    p.ws()?;
    let v = p.value(0)?;
    Ok((v, p.i))
}

/// Parses a whole document: one value and nothing but whitespace (and
/// comments, when allowed) after it.
pub fn parse_document(text: &str, comments: bool) -> Result<JVal, String> {
    let mut p = P {
        s: text.as_bytes(),
        i: 0,
        comments,
    };
    p.ws()?;
    let v = p.value(0)?;
    p.ws()?;
    if p.i < p.s.len() {
        return Err(p.err("text after the JSON value"));
    }
    Ok(v)
}

impl P<'_> {
    fn err(&self, what: &str) -> String {
        let line = 1 + self.s[..self.i.min(self.s.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        format!("line {line}: {what}")
    }

    fn ws(&mut self) -> Result<(), String> {
        loop {
            match self.s.get(self.i) {
                Some(b' ' | b'\t' | b'\n' | b'\r') => self.i += 1,
                Some(b'/') if self.comments => match self.s.get(self.i + 1) {
                    Some(b'/') => {
                        while self.i < self.s.len() && self.s[self.i] != b'\n' {
                            self.i += 1;
                        }
                    }
                    Some(b'*') => {
                        let start = self.i;
                        self.i += 2;
                        loop {
                            if self.i + 1 >= self.s.len() {
                                self.i = start;
                                return Err(self.err("unterminated /* comment"));
                            }
                            if self.s[self.i] == b'*' && self.s[self.i + 1] == b'/' {
                                self.i += 2;
                                break;
                            }
                            self.i += 1;
                        }
                    }
                    _ => return Ok(()),
                },
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<JVal, String> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deep"));
        }
        match self.s.get(self.i) {
            None => Err(self.err("unexpected end of input")),
            Some(b'{') => {
                self.i += 1;
                let mut m: Vec<(String, JVal)> = Vec::new();
                self.ws()?;
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(JVal::Obj(m));
                }
                loop {
                    self.ws()?;
                    if self.s.get(self.i) != Some(&b'"') {
                        return Err(self.err("expected a \"key\""));
                    }
                    let k = self.string()?;
                    self.ws()?;
                    if self.s.get(self.i) != Some(&b':') {
                        return Err(self.err("expected `:`"));
                    }
                    self.i += 1;
                    self.ws()?;
                    let v = self.value(depth + 1)?;
                    JVal::put(&mut m, k, v);
                    self.ws()?;
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(JVal::Obj(m));
                        }
                        _ => return Err(self.err("expected `,` or `}`")),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws()?;
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(JVal::Arr(a));
                }
                loop {
                    self.ws()?;
                    a.push(self.value(depth + 1)?);
                    self.ws()?;
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(JVal::Arr(a));
                        }
                        _ => return Err(self.err("expected `,` or `]`")),
                    }
                }
            }
            Some(b'"') => Ok(JVal::Str(self.string()?)),
            Some(b't') => self.word("true", JVal::Bool(true)),
            Some(b'f') => self.word("false", JVal::Bool(false)),
            Some(b'n') => self.word("null", JVal::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    fn word(&mut self, w: &str, v: JVal) -> Result<JVal, String> {
        if self.s[self.i..].starts_with(w.as_bytes()) {
            self.i += w.len();
            Ok(v)
        } else {
            Err(self.err("unexpected word"))
        }
    }

    fn number(&mut self) -> Result<JVal, String> {
        let start = self.i;
        if self.s.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let int_start = self.i;
        while matches!(self.s.get(self.i), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        let int_len = self.i - int_start;
        if int_len == 0 || (int_len > 1 && self.s[int_start] == b'0') {
            return Err(self.err("bad number"));
        }
        let mut float = false;
        if self.s.get(self.i) == Some(&b'.') {
            float = true;
            self.i += 1;
            let f = self.i;
            while matches!(self.s.get(self.i), Some(b'0'..=b'9')) {
                self.i += 1;
            }
            if self.i == f {
                return Err(self.err("bad number"));
            }
        }
        if matches!(self.s.get(self.i), Some(b'e' | b'E')) {
            float = true;
            self.i += 1;
            if matches!(self.s.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            let f = self.i;
            while matches!(self.s.get(self.i), Some(b'0'..=b'9')) {
                self.i += 1;
            }
            if self.i == f {
                return Err(self.err("bad number"));
            }
        }
        // ASCII only, so this cannot fail
        let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("0");
        if !float {
            // Integer / Long / BigInteger print their digits; -0 is 0
            if text.bytes().skip(1).all(|b| b == b'0') && text.starts_with('-') {
                return Ok(JVal::Num("0".into()));
            }
            return Ok(JVal::Num(text.to_string()));
        }
        let f: f64 = text.parse().map_err(|_| self.err("bad number"))?;
        Ok(JVal::Num(java_double(f)))
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1; // the opening quote
        let mut out = String::new();
        loop {
            let start = self.i;
            while self.i < self.s.len() && self.s[self.i] != b'"' && self.s[self.i] != b'\\' {
                if self.s[self.i] < 0x20 {
                    return Err(self.err("control character in a string"));
                }
                self.i += 1;
            }
            out.push_str(
                std::str::from_utf8(&self.s[start..self.i])
                    .map_err(|_| self.err("invalid UTF-8"))?,
            );
            match self.s.get(self.i) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                _ => {
                    self.i += 1;
                    let c = match self.s.get(self.i) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            let hi = self.hex4()?;
                            if (0xd800..0xdc00).contains(&hi)
                                && self.s.get(self.i + 1) == Some(&b'\\')
                                && self.s.get(self.i + 2) == Some(&b'u')
                            {
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xdc00..0xe000).contains(&lo) {
                                    let c = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
                                    char::from_u32(c).unwrap_or('\u{fffd}')
                                } else {
                                    out.push('\u{fffd}');
                                    char::from_u32(lo).unwrap_or('\u{fffd}')
                                }
                            } else {
                                char::from_u32(hi).unwrap_or('\u{fffd}')
                            }
                        }
                        _ => return Err(self.err("bad escape")),
                    };
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    /// Reads the 4 hex digits after `\u` (self.i on the `u`), leaving
    /// self.i on the last digit.
    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .s
            .get(self.i + 1..self.i + 5)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.err("bad \\u escape"))?;
        self.i += 4;
        Ok(h)
    }
}

/// `Double.toString(d)` (shortest digits that read back, as Java 19+ and
/// nearly always before): `1.0`, `0.001`, `1234567.0`, `1.0E7`, `1.0E-4`.
pub fn java_double(f: f64) -> String {
    if f.is_nan() {
        return "\"NaN\"".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "\"Infinity\"".into()
        } else {
            "\"-Infinity\"".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let sign = if f < 0.0 { "-" } else { "" };
    let a = f.abs();
    // Rust's `{:e}` is the shortest round-trip form: d[.ddd]e[-]x
    let sci = format!("{a:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    if (1e-3..1e7).contains(&a) {
        if exp >= 0 {
            let e = exp as usize;
            let (int, frac) = if digits.len() > e + 1 {
                (digits[..e + 1].to_string(), digits[e + 1..].to_string())
            } else {
                (
                    format!("{digits}{}", "0".repeat(e + 1 - digits.len())),
                    "0".to_string(),
                )
            };
            format!("{sign}{int}.{frac}")
        } else {
            format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
        }
    } else {
        let rest = if digits.len() > 1 { &digits[1..] } else { "0" };
        format!("{sign}{}.{rest}E{exp}", &digits[..1])
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// A string literal as Jackson writes it.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let b = c as u32 as usize;
                out.push_str("\\u00");
                out.push(HEX[b >> 4] as char);
                out.push(HEX[b & 0xf] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `ObjectMapper.writeValueAsString`: compact.
pub fn write_compact(out: &mut String, v: &JVal) {
    match v {
        JVal::Null => out.push_str("null"),
        JVal::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        JVal::Num(n) => out.push_str(n),
        JVal::Str(s) => write_str(out, s),
        JVal::Arr(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_compact(out, x);
            }
            out.push(']');
        }
        JVal::Obj(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, k);
                out.push(':');
                write_compact(out, x);
            }
            out.push('}');
        }
    }
}

/// `writerWithDefaultPrettyPrinter()`: objects one field a line indented
/// by two spaces with ` : `, arrays on one line as `[ 1, 2 ]`, empty ones
/// as `{ }` and `[ ]`.
pub fn write_pretty(out: &mut String, v: &JVal, level: usize) {
    match v {
        JVal::Arr(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                out.push_str(if i > 0 { ", " } else { " " });
                write_pretty(out, x, level);
            }
            out.push_str(" ]");
        }
        JVal::Obj(m) => {
            out.push('{');
            if m.is_empty() {
                out.push_str(" }");
                return;
            }
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "\n{}", "  ".repeat(level + 1));
                write_str(out, k);
                out.push_str(" : ");
                write_pretty(out, x, level + 1);
            }
            let _ = write!(out, "\n{}}}", "  ".repeat(level));
        }
        other => write_compact(out, other),
    }
}
