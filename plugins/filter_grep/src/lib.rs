//! The `grep` filter (Fluentd's `grep`): keeps records whose fields match
//! the `regexp` rules and drops records whose fields match the `exclude`
//! rules. Fields are found by dot path; values that are not strings are
//! matched by their text (`503`, `1.5`, `true`, JSON for maps and arrays);
//! a missing field, or null, never matches. The record is never changed.

use std::borrow::Cow;

use fuwa_api::record::{self, Text};
use fuwa_api::{
    BuildContext, ConfigError, ConfigSection, EventTime, Filter, FilterResult, MemoryBound,
    MemoryEnv, Record,
};
use regex::Regex;
use rmpv::Value;
use serde::Deserialize;
use toml::Spanned;
use tracing::warn;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    And,
    Or,
}

fn and() -> Condition {
    Condition::And
}
fn or() -> Condition {
    Condition::Or
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConfig {
    key: Spanned<String>,
    pattern: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrepConfig {
    #[serde(default)]
    regexp: Vec<RuleConfig>,
    #[serde(default)]
    exclude: Vec<RuleConfig>,
    /// `and` (default): every regexp rule must match; `or`: one is enough
    #[serde(default = "and")]
    regexp_condition: Condition,
    /// `or` (default): one matching exclude rule drops; `and`: all must match
    #[serde(default = "or")]
    exclude_condition: Condition,
}

#[derive(Debug)]
struct Rule {
    path: Vec<String>,
    re: Regex,
}

impl Rule {
    fn matches(&self, rec: &Value) -> bool {
        record::get(rec, &self.path)
            .and_then(text)
            .is_some_and(|t| self.re.is_match(&t))
    }

    fn matches_record(&self, rec: &Record) -> bool {
        match rec.text(&self.path) {
            // strings (the usual case) are matched where they lie
            Some(Text::Str(b) | Text::Bin(b)) => self.re.is_match(&String::from_utf8_lossy(b)),
            None => rec
                .get(&self.path)
                .as_ref()
                .and_then(text)
                .is_some_and(|t| self.re.is_match(&t)),
        }
    }
}

pub struct GrepFilter {
    regexp: Vec<Rule>,
    exclude: Vec<Rule>,
    regexp_condition: Condition,
    exclude_condition: Condition,
}

/// Builds the filter from its section (`[[filter]] type = "grep"`).
pub fn build(
    section: &ConfigSection<'_>,
    ctx: &BuildContext,
) -> Result<Box<dyn Filter>, Vec<ConfigError>> {
    GrepFilter::from_section(section, ctx).map(|f| Box::new(f) as Box<dyn Filter>)
}

fn rules(
    section: &ConfigSection<'_>,
    ctx: &BuildContext,
    list: &str,
    cfg: &[RuleConfig],
    errors: &mut Vec<ConfigError>,
) -> Vec<Rule> {
    let mut out = Vec::new();
    for (i, r) in cfg.iter().enumerate() {
        let at = |field: &str, span: std::ops::Range<usize>, msg: String| {
            let mut e = section.error(&format!("{list}[{i}].{field}"), msg);
            e.span = Some(span);
            e
        };
        // Fluentd's record accessor `$.a.b` means the same as `a.b`
        let key = r.key.get_ref();
        let key = key.strip_prefix("$.").unwrap_or(key);
        let path = record::path(key);
        if path.iter().any(String::is_empty) {
            errors.push(at(
                "key",
                r.key.span(),
                format!("`{key}` is not a field path (dot-separated names, none of them empty)"),
            ));
            continue;
        }
        let src = r.pattern.get_ref();
        let re = match Regex::new(src) {
            Ok(re) => re,
            Err(e) => {
                errors.push(at(
                    "pattern",
                    r.pattern.span(),
                    format!("bad regular expression: {}", one_line(&e)),
                ));
                continue;
            }
        };
        if src.len() >= 2 && src.starts_with('/') && src.ends_with('/') {
            warn!(
                filter = %ctx.id,
                pattern = %src,
                "{list}[{i}].pattern looks like a Ruby /regexp/ literal: fuwa takes the slashes literally (write the pattern without them)"
            );
        }
        out.push(Rule { path, re });
    }
    out
}

/// The regex crate's syntax errors span several lines (pattern, caret,
/// reason); config errors are one line: keep the reason.
fn one_line(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    last.trim().trim_start_matches("error: ").to_string()
}

impl GrepFilter {
    pub fn from_section(
        section: &ConfigSection<'_>,
        ctx: &BuildContext,
    ) -> Result<Self, Vec<ConfigError>> {
        let cfg: GrepConfig = section.parse_all()?;
        let mut errors = Vec::new();
        let regexp = rules(section, ctx, "regexp", &cfg.regexp, &mut errors);
        let exclude = rules(section, ctx, "exclude", &cfg.exclude, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        if cfg.regexp.is_empty() && cfg.exclude.is_empty() {
            return Err(vec![section.error(
                "regexp",
                "nothing to do: give regexp = [{ key = \"...\", pattern = \"...\" }] and/or exclude = [...]",
            )]);
        }
        Ok(GrepFilter {
            regexp,
            exclude,
            regexp_condition: cfg.regexp_condition,
            exclude_condition: cfg.exclude_condition,
        })
    }

    /// Whether the record passes (what `filter` answers, without the trait).
    pub fn keeps(&self, rec: &Value) -> bool {
        self.keeps_with(|r| r.matches(rec))
    }

    fn keeps_with(&self, matches: impl Fn(&Rule) -> bool) -> bool {
        let wanted = self.regexp.is_empty()
            || match self.regexp_condition {
                Condition::And => self.regexp.iter().all(&matches),
                Condition::Or => self.regexp.iter().any(&matches),
            };
        if !wanted {
            return false;
        }
        let excluded = !self.exclude.is_empty()
            && match self.exclude_condition {
                Condition::And => self.exclude.iter().all(&matches),
                Condition::Or => self.exclude.iter().any(&matches),
            };
        !excluded
    }
}

impl Filter for GrepFilter {
    /// Nothing beyond the record being filtered (the input's): the patterns are compiled at start (at rest); a record is matched in place.
    fn memory_bound(&self, _env: &MemoryEnv) -> MemoryBound {
        MemoryBound::new()
    }

    fn filter(&self, _tag: &str, _time: &mut EventTime, rec: &mut Record) -> FilterResult {
        if self.keeps_with(|r| r.matches_record(rec)) {
            FilterResult::Keep
        } else {
            FilterResult::Drop
        }
    }
}

/// The text a value is matched by: strings as they are (invalid UTF-8
/// replaced), numbers and booleans as JSON writes them, maps and arrays as
/// JSON, an EventTime as RFC 3339. Nil, NaN/infinite floats and other
/// extension types have none.
fn text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::Nil => None,
        Value::String(s) => Some(String::from_utf8_lossy(s.as_bytes())),
        Value::Binary(b) => Some(String::from_utf8_lossy(b)),
        Value::Integer(i) => Some(Cow::Owned(i.to_string())),
        Value::Boolean(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::F32(f) if !f.is_finite() => None,
        Value::F64(f) if !f.is_finite() => None,
        Value::Ext(0, d) if d.len() == 8 => {
            let secs = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as i64;
            let nanos = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
            if nanos >= 1_000_000_000 {
                return None;
            }
            let mut out = Vec::with_capacity(30);
            fuwa_render::time::write_rfc3339(&mut out, EventTime::new(secs, nanos));
            String::from_utf8(out).ok().map(Cow::Owned)
        }
        Value::Ext(..) => None,
        other => fuwa_render::value_json(other).map(Cow::Owned),
    }
}

#[cfg(test)]
mod tests;
