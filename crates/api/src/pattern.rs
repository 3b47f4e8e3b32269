//! Fluentd tag patterns: `*` matches one tag part, `**` zero or more parts,
//! `{a,b}` either alternative; several patterns separated by spaces match
//! when any of them does.

use regex::Regex;

#[derive(Debug, Clone)]
pub struct TagPattern {
    source: String,
    regex: Regex,
}

impl TagPattern {
    pub fn parse(src: &str) -> Result<Self, String> {
        let parts: Vec<&str> = src.split_whitespace().collect();
        if parts.is_empty() {
            return Err("empty tag pattern".into());
        }
        let mut alts = Vec::new();
        for p in &parts {
            alts.push(glob_to_regex(p)?);
        }
        // (?s): a tag with a newline in it is still a tag; `**` and `*` match it
        let re = format!("(?s)^(?:{})$", alts.join("|"));
        let regex = Regex::new(&re).map_err(|e| format!("bad tag pattern `{src}`: {e}"))?;
        Ok(TagPattern {
            source: src.to_string(),
            regex,
        })
    }

    pub fn matches(&self, tag: &str) -> bool {
        self.regex.is_match(tag)
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The literal tags this pattern matches when it has no wildcards
    /// (`None` when any part is open).
    pub fn literal_tags(&self) -> Option<Vec<String>> {
        let mut out = Vec::new();
        for p in self.source.split_whitespace() {
            if p.contains(['*', '{', '}', ',']) {
                return None;
            }
            out.push(p.to_string());
        }
        Some(out)
    }
}

fn glob_to_regex(p: &str) -> Result<String, String> {
    let chars: Vec<char> = p.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut depth = 0usize;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' => {
                if i + 1 < chars.len() && chars[i + 1] == '*' {
                    // `**`: zero or more parts. `a.**` also matches `a`;
                    // `**.b` also matches `b`.
                    let dot_before = out.ends_with("\\.");
                    let dot_after = i + 2 < chars.len() && chars[i + 2] == '.';
                    if dot_before {
                        out.truncate(out.len() - 2);
                        out.push_str("(?:\\..*)?");
                        i += 2;
                    } else if dot_after && i == 0 {
                        out.push_str("(?:.*\\.)?");
                        i += 3;
                    } else {
                        out.push_str(".*");
                        i += 2;
                    }
                    continue;
                }
                out.push_str("[^.]*");
            }
            '{' => {
                depth += 1;
                out.push_str("(?:");
            }
            ',' if depth > 0 => out.push('|'),
            '}' => {
                if depth == 0 {
                    return Err(format!("unbalanced `}}` in tag pattern `{p}`"));
                }
                depth -= 1;
                out.push(')');
            }
            c => out.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    if depth != 0 {
        return Err(format!("unbalanced `{{` in tag pattern `{p}`"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        TagPattern::parse(p).unwrap().matches(t)
    }

    #[test]
    fn fluentd_rules() {
        assert!(m("a.*", "a.b"));
        assert!(!m("a.*", "a"));
        assert!(!m("a.*", "a.b.c"));
        assert!(m("a.**", "a"));
        assert!(m("a.**", "a.b"));
        assert!(m("a.**", "a.b.c"));
        assert!(!m("a.**", "ab"));
        assert!(m("**", "anything.at.all"));
        assert!(m("**", ""));
        assert!(m("**.c", "c"));
        assert!(m("**.c", "a.b.c"));
        assert!(!m("**.c", "a.bc"));
        assert!(m("{a,b}.x", "a.x"));
        assert!(m("{a,b}.x", "b.x"));
        assert!(!m("{a,b}.x", "c.x"));
        assert!(m("a.{b,c.*}", "a.c.d"));
        assert!(m("action_logs page_views", "page_views"));
        assert!(!m("action_logs page_views", "page"));
        assert!(m("app.*.log", "app.web.log"));
        assert!(!m("a+b", "aab"));
        assert!(m("a+b", "a+b"));
        // a tag with a newline is matched like any other
        assert!(m("**", "a\nb"));
        assert!(m("a.*", "a.x\ny"));
        assert!(m("a.**", "a.\n.c"));
    }

    #[test]
    fn bad_patterns() {
        assert!(TagPattern::parse("").is_err());
        assert!(TagPattern::parse("{a,b").is_err());
        assert!(TagPattern::parse("a}").is_err());
    }

    #[test]
    fn literals() {
        let p = TagPattern::parse("action_logs page_views").unwrap();
        assert_eq!(p.literal_tags().unwrap(), vec!["action_logs", "page_views"]);
        assert!(TagPattern::parse("app.**")
            .unwrap()
            .literal_tags()
            .is_none());
    }
}
