//! The `parser` filter (Fluentd's `filter_parser`): parses one string field
//! of the record with the shared log parsers (json, ltsv, csv, tsv, regex,
//! apache2, apache_error, nginx, syslog, none) and replaces the record with
//! the parsed fields, or merges them in (`reserve_data`).
//!
//! A value that does not parse never loses the record: it is kept as it
//! was, with `_parse_error` added (`on_error = "mark"`, the default) or
//! without it (`on_error = "keep"`). Failures are counted and logged at most
//! once per 10 seconds.

use std::sync::atomic::{AtomicU64, Ordering};

use fuwa_api::ratelimit::RateLimit;
use fuwa_api::record;
use fuwa_api::{
    BuildContext, ConfigError, ConfigSection, EventTime, Filter, FilterResult, MemoryBound,
    MemoryEnv, Record,
};
use fuwa_parsers::Parser;
use rmpv::Value;
use serde::Deserialize;
use tracing::warn;

/// The field added to a record whose value did not parse (as in the tail
/// input).
pub const PARSE_ERROR_KEY: &str = "_parse_error";

fuwa_parsers::with_parser_keys! {
    /// The filter's own keys, then the shared parser keys (`format` is
    /// required here).
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ParserFilterConfig {
        /// the field to parse (a dot path)
        key_name: Option<String>,
        /// keep the record's other fields (parsed fields win on a clash)
        #[serde(default)]
        reserve_data: bool,
        /// keep the event time even when the parser finds one
        #[serde(default)]
        reserve_time: bool,
        /// with reserve_data: drop key_name once it parsed
        #[serde(default)]
        remove_key_name_field: bool,
        /// `p_`: keys become `p_KEY`; `log.`: keys go under `log`; `log.p_`: both
        inject_key_prefix: Option<String>,
        #[serde(default)]
        on_error: OnError,
    }
}

/// What happens to a record whose field does not parse. Either way the
/// record is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// unchanged, plus `_parse_error` = why
    #[default]
    Mark,
    /// unchanged
    Keep,
}

pub struct ParserFilter {
    id: String,
    key_name: String,
    key_path: Vec<String>,
    parser: Parser,
    reserve_data: bool,
    reserve_time: bool,
    remove_key_name_field: bool,
    /// the map the parsed fields go into (empty: the record itself)
    nest: Vec<String>,
    /// prepended to every parsed key
    prefix: String,
    on_error: OnError,
    failures: AtomicU64,
    warn_limit: RateLimit,
}

/// Builds the filter from its section (`[[filter]] type = "parser"`).
pub fn build(
    section: &ConfigSection<'_>,
    ctx: &BuildContext,
) -> Result<Box<dyn Filter>, Vec<ConfigError>> {
    ParserFilter::from_section(section, ctx).map(|f| Box::new(f) as Box<dyn Filter>)
}

fn bad_path(p: &[String]) -> bool {
    p.is_empty() || p.iter().any(String::is_empty)
}

impl ParserFilter {
    pub fn from_section(
        section: &ConfigSection<'_>,
        ctx: &BuildContext,
    ) -> Result<Self, Vec<ConfigError>> {
        let cfg: ParserFilterConfig = section.parse_all()?;
        let mut errors = Vec::new();
        let tz = fuwa_render::parse_timezone(&ctx.timezone)
            .map_err(|e| vec![section.error("timezone", e)])?;

        let key_name = cfg.key_name.clone().unwrap_or_default();
        // Fluentd's record accessor `$.a.b` means the same as `a.b`
        let key_path = record::path(key_name.strip_prefix("$.").unwrap_or(&key_name));
        if cfg.key_name.is_none() {
            errors.push(section.error(
                "key_name",
                "required: the field to parse, e.g. key_name = \"log\"",
            ));
        } else if bad_path(&key_path) {
            errors.push(section.error(
                "key_name",
                format!(
                    "`{key_name}` is not a field path (dot-separated names, none of them empty)"
                ),
            ));
        }

        let (nest, prefix) = match cfg.inject_key_prefix.as_deref() {
            None | Some("") => (Vec::new(), String::new()),
            Some(p) => match p.rsplit_once('.') {
                None => (Vec::new(), p.to_string()),
                Some((nest, lit)) => {
                    let nest = record::path(nest);
                    if bad_path(&nest) {
                        errors.push(section.error(
                            "inject_key_prefix",
                            format!("`{p}`: the part before the last `.` must be a field path (e.g. \"log.\" or \"parsed.p_\")"),
                        ));
                    }
                    (nest, lit.to_string())
                }
            },
        };

        let parser = match &cfg.format {
            None => {
                errors.push(section.error(
                    "format",
                    "required: json, ltsv, csv, tsv, regex, apache2, apache_error, nginx, syslog or none",
                ));
                None
            }
            Some(_) => match Parser::new(&cfg.parser_config(), tz) {
                Ok(p) => Some(p),
                Err((k, m)) => {
                    errors.push(section.error(&k, m));
                    None
                }
            },
        };
        match parser {
            Some(parser) if errors.is_empty() => Ok(ParserFilter {
                id: ctx.id.clone(),
                key_name,
                key_path,
                parser,
                reserve_data: cfg.reserve_data,
                reserve_time: cfg.reserve_time,
                remove_key_name_field: cfg.remove_key_name_field,
                nest,
                prefix,
                on_error: cfg.on_error,
                failures: AtomicU64::new(0),
                warn_limit: RateLimit::new(10_000),
            }),
            _ => Err(errors),
        }
    }

    /// How many values failed to parse since the filter was built.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn failed(&self, rec: &mut Value, why: String, value: &str) {
        let total = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if self.warn_limit.ready() {
            warn!(
                filter = %self.id,
                key = %self.key_name,
                value = %excerpt(value),
                error = %why,
                failures_total = total,
                "field does not parse; the record is kept unparsed (further failures are not logged for 10s)"
            );
        }
        if self.on_error == OnError::Mark {
            record::set(rec, &[PARSE_ERROR_KEY.to_string()], Value::from(why));
        }
    }

    /// Parses the field; `Err` says why it did not.
    fn parse(&self, text: &str) -> Result<Parsed, String> {
        let parsed = self.parser.parse(text).map_err(|e| e.to_string())?;
        match rmpv::decode::read_value(&mut &parsed.record[..]) {
            Ok(Value::Map(m)) => Ok((parsed.time, m)),
            Ok(_) => Err("the parser did not produce a map".into()),
            Err(e) => Err(format!("the parsed record could not be read: {e}")),
        }
    }
}

/// The time the parser found, and the parsed fields.
type Parsed = (Option<EventTime>, Vec<(Value, Value)>);

fn excerpt(s: &str) -> String {
    if s.len() <= 200 {
        return s.to_string();
    }
    let mut cut = 200;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "null",
        Value::Boolean(_) => "a boolean",
        Value::Integer(_) => "an integer",
        Value::F32(_) | Value::F64(_) => "a float",
        Value::String(_) => "a string",
        Value::Binary(_) => "binary",
        Value::Array(_) => "an array",
        Value::Map(_) => "a map",
        Value::Ext(..) => "an extension value",
    }
}

impl Filter for ParserFilter {
    /// Nothing beyond the record being filtered (the input's): a record is parsed and merged in place; nothing is kept between records.
    fn memory_bound(&self, _env: &MemoryEnv) -> MemoryBound {
        MemoryBound::new()
    }

    fn filter(&self, _tag: &str, time: &mut EventTime, rec: &mut Record) -> FilterResult {
        // merging parsed fields into the record is done on its value tree
        match rec.value_mut() {
            Some(v) => self.filter_tree(time, v),
            None => FilterResult::Keep,
        }
    }
}

impl ParserFilter {
    fn filter_tree(&self, time: &mut EventTime, rec: &mut Value) -> FilterResult {
        if !rec.is_map() {
            return FilterResult::Keep;
        }
        // a record without the field (or with null) passes as it is
        let text = match record::get(rec, &self.key_path) {
            None | Some(Value::Nil) => return FilterResult::Keep,
            Some(Value::String(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            Some(Value::Binary(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(other) => {
                let why = format!("`{}` is {}, not a string", self.key_name, kind(other));
                let shown = other.to_string();
                self.failed(rec, why, &shown);
                return FilterResult::Keep;
            }
        };
        let (parsed_time, fields) = match self.parse(&text) {
            Ok(p) => p,
            Err(why) => {
                self.failed(rec, why, &text);
                return FilterResult::Keep;
            }
        };
        if self.reserve_data {
            if self.remove_key_name_field {
                while record::remove(rec, &self.key_path).is_some() {}
            }
        } else {
            *rec = Value::Map(Vec::with_capacity(fields.len()));
        }
        let mut path = self.nest.clone();
        path.push(String::new());
        for (k, v) in fields {
            let k = match &k {
                Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                Value::Binary(b) => String::from_utf8_lossy(b).into_owned(),
                other => other.to_string(),
            };
            if let Some(last) = path.last_mut() {
                *last = format!("{}{k}", self.prefix);
            }
            record::set(rec, &path, v);
        }
        if let (Some(t), false) = (parsed_time, self.reserve_time) {
            *time = t;
        }
        FilterResult::Keep
    }
}

#[cfg(test)]
mod tests;
