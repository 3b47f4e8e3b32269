//! A `java.util.regex` pattern (as kinesis-agent's `matchPattern`,
//! `delimiter` and its built-in log patterns are written) rewritten for the
//! `regex` crate with Java's meaning: `\w \d \s \b` are ASCII-only as in
//! Java's default mode, `.` stops at every Java line terminator (`\n \r
//! \u0085 \u2028 \u2029`), and `\Q...\E` quotes. What the `regex` crate
//! cannot do (back-references, look-around, possessive quantifiers, atomic
//! groups) is refused when the regex is compiled, with its message.

use regex::Regex;

/// Rewrites `pat` for the `regex` crate.
pub fn translate(pat: &str) -> String {
    let mut out = String::with_capacity(pat.len() + 16);
    let chars: Vec<char> = pat.chars().collect();
    let mut i = 0;
    let mut class_depth = 0usize;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if i + 1 < chars.len() => {
                let n = chars[i + 1];
                i += 2;
                let inside = class_depth > 0;
                let class = |name: &str, neg: bool| {
                    let body = format!("[:{}{name}:]", if neg { "^" } else { "" });
                    if inside {
                        body
                    } else {
                        format!("[{body}]")
                    }
                };
                match n {
                    'w' => out.push_str(&class("word", false)),
                    'W' => out.push_str(&class("word", true)),
                    'd' => out.push_str(&class("digit", false)),
                    'D' => out.push_str(&class("digit", true)),
                    's' => out.push_str(&class("space", false)),
                    'S' => out.push_str(&class("space", true)),
                    'b' if !inside => out.push_str(r"(?-u:\b)"),
                    'B' if !inside => out.push_str(r"(?-u:\B)"),
                    'Q' => {
                        // quoted up to \E (or the end)
                        let mut lit = String::new();
                        while i < chars.len() {
                            if chars[i] == '\\' && chars.get(i + 1) == Some(&'E') {
                                i += 2;
                                break;
                            }
                            lit.push(chars[i]);
                            i += 1;
                        }
                        out.push_str(&regex::escape(&lit));
                    }
                    'Z' if !inside => out.push_str(r"(?:\n|\r\n|\r|\x{85}|\x{2028}|\x{2029})?\z"),
                    // Java's \e escape (U+001B) and \a (bell)
                    'e' => out.push_str(r"\x1B"),
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
                continue;
            }
            '[' => {
                // a nested class in Java is a union; the regex crate nests
                // classes the same way
                class_depth += 1;
                out.push('[');
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                // a `]` first in a class is a literal in Java too
                if chars.get(i + 1) == Some(&']') {
                    out.push_str(r"\]");
                    i += 1;
                }
            }
            ']' if class_depth > 0 => {
                class_depth -= 1;
                out.push(']');
            }
            '.' if class_depth == 0 => out.push_str(r"[^\n\r\x{85}\x{2028}\x{2029}]"),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// Compiles a Java pattern for `Matcher.matches()` (the whole input).
pub fn whole(pat: &str) -> Result<Regex, String> {
    Regex::new(&format!(r"\A(?:{})\z", translate(pat))).map_err(|e| e.to_string())
}

/// Compiles a Java pattern for `find()` / `split()`.
pub fn anywhere(pat: &str) -> Result<Regex, String> {
    Regex::new(&translate(pat)).map_err(|e| e.to_string())
}

/// `String.split(regex)`: no leading empty piece for a zero-width match at
/// the start, trailing empty pieces removed, the whole input when nothing
/// matches.
pub fn split<'a>(re: &Regex, s: &'a str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut last = 0;
    let mut matched = false;
    for m in re.find_iter(s) {
        if m.end() == 0 {
            continue;
        }
        matched = true;
        out.push(&s[last..m.start()]);
        last = m.end();
    }
    if !matched {
        return vec![s];
    }
    out.push(&s[last..]);
    while out.last().map(|p| p.is_empty()).unwrap_or(false) {
        out.pop();
    }
    out
}
