//! Log line parsers shared by the tail input, the HTTP input and the parser
//! filter: json, ltsv, csv, tsv, regex, apache2, apache_error, nginx, syslog
//! and none. A parser turns one line into a msgpack record and, when
//! `time_key` is set, the event time taken from it.

mod json;
pub mod kinesis_agent;
mod time;

use std::collections::HashMap;

use chrono_tz::Tz;
use fuwa_api::msgpack;
use fuwa_api::EventTime;
use regex::Regex;
use serde::{Deserialize, Deserializer};
use thiserror::Error;

pub use time::TimeParser;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum ParseError {
    #[error("{0}")]
    NoMatch(String),
    #[error("time `{value}` does not match time_format: {why}")]
    Time { value: String, why: String },
}

/// Declares a config struct that takes the shared parser keys beside its
/// own: the struct as written, followed by `format`, `expression`, `keys`,
/// `delimiter`, `label_delimiter`, `message_format`, `time_key`,
/// `time_format`, `keep_time_key` and `types`, and a `parser_config()` that
/// hands them to [`Parser::new`]. This is the one definition of those keys
/// ([`ParserConfig`], the tail input and the parser filter all use it).
///
/// A macro, not `#[serde(flatten)]`: flattening buffers the section, which
/// drops the TOML spans (errors would lose their line and key) and makes
/// `deny_unknown_fields` stop listing the accepted keys.
#[macro_export]
macro_rules! with_parser_keys {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($fields:tt)* }) => {
        $(#[$meta])*
        $vis struct $name {
            $($fields)*
            /// json | ltsv | csv | tsv | regex | apache2 | apache_error |
            /// nginx | syslog | none (None: none, or required where the
            /// plugin says so)
            #[serde(default)]
            pub format: Option<$crate::Format>,
            /// regex format: a pattern with named groups
            pub expression: Option<String>,
            /// csv/tsv: column names
            #[serde(default)]
            pub keys: Vec<String>,
            /// ltsv: field separator (default tab) and key/value separator
            /// (default `:`)
            pub delimiter: Option<String>,
            pub label_delimiter: Option<String>,
            /// syslog: auto | rfc3164 | rfc5424
            pub message_format: Option<$crate::MessageFormat>,
            /// field holding the event time
            pub time_key: Option<String>,
            /// strftime, or rfc3339 / iso8601 / unix / unix_ms / unix_float
            pub time_format: Option<String>,
            /// keep time_key in the record after using it (default false)
            #[serde(default)]
            pub keep_time_key: bool,
            /// field types: `{ code = "integer", size = "integer", ratio =
            /// "float", ok = "bool" }`
            #[serde(default)]
            pub types: ::std::collections::HashMap<String, $crate::FieldType>,
        }

        impl $name {
            /// The parser keys alone, for [`Parser::new`]($crate::Parser::new).
            pub fn parser_config(&self) -> $crate::ParserConfig {
                $crate::ParserConfig {
                    format: self.format,
                    expression: self.expression.clone(),
                    keys: self.keys.clone(),
                    delimiter: self.delimiter.clone(),
                    label_delimiter: self.label_delimiter.clone(),
                    message_format: self.message_format,
                    time_key: self.time_key.clone(),
                    time_format: self.time_format.clone(),
                    keep_time_key: self.keep_time_key,
                    types: self.types.clone(),
                }
            }
        }
    };
}

with_parser_keys! {
    /// The parser settings alone (`format` None means `none`).
    #[derive(Debug, Clone, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct ParserConfig {}
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub time: Option<EventTime>,
    /// a msgpack map
    pub record: Vec<u8>,
}

/// Reads a string-named setting with `parse`, whose message says what is
/// accepted.
fn by_name<'de, D: Deserializer<'de>, T>(
    d: D,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).map_err(serde::de::Error::custom)
}

/// `format`: which parser reads the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Ltsv,
    Csv,
    Tsv,
    Regex,
    Apache2,
    ApacheError,
    Nginx,
    Syslog,
    None,
}

impl Format {
    const NAMES: [(&'static str, Format); 10] = [
        ("json", Format::Json),
        ("ltsv", Format::Ltsv),
        ("csv", Format::Csv),
        ("tsv", Format::Tsv),
        ("regex", Format::Regex),
        ("apache2", Format::Apache2),
        ("apache_error", Format::ApacheError),
        ("nginx", Format::Nginx),
        ("syslog", Format::Syslog),
        ("none", Format::None),
    ];

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                format!("unknown format `{s}` (json, ltsv, csv, tsv, regex, apache2, apache_error, nginx, syslog, none)")
            })
    }

    /// The name the config gives it.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("none", |(n, _)| n)
    }
}

impl<'de> Deserialize<'de> for Format {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        by_name(d, Format::parse)
    }
}

/// `message_format` of the syslog parser.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MessageFormat {
    /// RFC 3164 or RFC 5424, whichever the line is
    #[default]
    Auto,
    Rfc3164,
    Rfc5424,
}

impl MessageFormat {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(MessageFormat::Auto),
            "rfc3164" => Ok(MessageFormat::Rfc3164),
            "rfc5424" => Ok(MessageFormat::Rfc5424),
            other => Err(format!("`{other}`: use auto, rfc3164 or rfc5424")),
        }
    }
}

impl<'de> Deserialize<'de> for MessageFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        by_name(d, MessageFormat::parse)
    }
}

/// A field type of `types`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldType {
    Integer,
    Float,
    Bool,
    String,
}

impl FieldType {
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "integer" | "int" => FieldType::Integer,
            "float" => FieldType::Float,
            "bool" | "boolean" => FieldType::Bool,
            "string" => FieldType::String,
            other => {
                return Err(format!(
                    "unknown type `{other}` (integer, float, bool, string)"
                ))
            }
        })
    }
}

impl<'de> Deserialize<'de> for FieldType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        by_name(d, FieldType::parse)
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Json,
    Ltsv {
        delimiter: String,
        label: String,
    },
    Csv,
    Tsv,
    Regex(Regex),
    Syslog {
        rfc3164: Option<Regex>,
        rfc5424: Option<Regex>,
    },
    None,
}

#[derive(Debug, Clone)]
pub struct Parser {
    kind: Kind,
    keys: Vec<String>,
    time_key: Option<String>,
    time: Option<TimeParser>,
    keep_time_key: bool,
    types: HashMap<String, FieldType>,
}

const APACHE2: &str = r#"^(?P<host>[^ ]*) [^ ]* (?P<user>[^ ]*) \[(?P<time>[^\]]*)\] "(?P<method>\S+)(?: +(?P<path>(?:[^"\\]|\\.)*?)(?: +\S*)?)?" (?P<code>[^ ]*) (?P<size>[^ ]*)(?: "(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)")?$"#;
const NGINX: &str = r#"^(?P<remote>[^ ]*) (?P<host>[^ ]*) (?P<user>[^ ]*) \[(?P<time>[^\]]*)\] "(?P<method>\S+)(?: +(?P<path>(?:[^"\\]|\\.)*?)(?: +\S*)?)?" (?P<code>[^ ]*) (?P<size>[^ ]*)(?: "(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)"(?:\s+"?(?P<http_x_forwarded_for>[^"]*)"?)?)?$"#;
const APACHE_ERROR: &str = r#"^\[[^ ]* (?P<time>[^\]]*)\] \[(?P<level>[^\]]*)\](?: \[pid (?P<pid>[^\]]*)\])?(?: \[client (?P<client>[^\]]*)\])? (?P<message>.*)$"#;
const RFC3164: &str = r#"^(?:<(?P<pri>[0-9]{1,3})>)?(?P<time>[A-Z][a-z]{2} {1,2}[0-9]{1,2} [0-9]{2}:[0-9]{2}:[0-9]{2}) (?P<host>[^ ]*) (?P<ident>[^ :\[]*)(?:\[(?P<pid>[0-9]+)\])?(?:[^:]*:)? *(?P<message>.*)$"#;
const RFC5424: &str = r#"^<(?P<pri>[0-9]{1,3})>1 (?P<time>[^ ]+) (?P<host>[^ ]+) (?P<ident>[^ ]+) (?P<pid>[-0-9]+|-) (?P<msgid>[^ ]+) (?P<extradata>-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?P<message>.*))?$"#;

impl Parser {
    /// Builds a parser; errors name the key that is wrong.
    pub fn new(cfg: &ParserConfig, tz: Tz) -> Result<Self, (String, String)> {
        let err = |k: &str, m: String| (k.to_string(), m);
        let mut time_key = cfg.time_key.clone();
        let mut time_format = cfg.time_format.clone();
        let mut types = HashMap::new();
        let re = |src: &str| {
            Regex::new(src).map_err(|e| err("expression", format!("bad regular expression: {e}")))
        };
        let format = cfg.format.unwrap_or(Format::None);
        let kind = match format {
            Format::Json => Kind::Json,
            Format::Ltsv => Kind::Ltsv {
                delimiter: cfg.delimiter.clone().unwrap_or_else(|| "\t".into()),
                label: cfg.label_delimiter.clone().unwrap_or_else(|| ":".into()),
            },
            Format::Csv | Format::Tsv => {
                if cfg.keys.is_empty() {
                    return Err(err(
                        "keys",
                        format!("format {} needs keys = [column names]", format.name()),
                    ));
                }
                if format == Format::Csv {
                    Kind::Csv
                } else {
                    Kind::Tsv
                }
            }
            Format::Regex => {
                let src = cfg
                    .expression
                    .as_deref()
                    .ok_or_else(|| err("expression", "format regex needs expression".into()))?;
                let r = re(src)?;
                if r.capture_names().flatten().next().is_none() {
                    return Err(err(
                        "expression",
                        "the expression has no named group (?P<name>...)".into(),
                    ));
                }
                Kind::Regex(r)
            }
            Format::Apache2 | Format::Nginx => {
                time_key.get_or_insert_with(|| "time".into());
                time_format.get_or_insert_with(|| "%d/%b/%Y:%H:%M:%S %z".into());
                types.insert("code".to_string(), FieldType::Integer);
                types.insert("size".to_string(), FieldType::Integer);
                Kind::Regex(re(if format == Format::Nginx {
                    NGINX
                } else {
                    APACHE2
                })?)
            }
            Format::ApacheError => {
                time_key.get_or_insert_with(|| "time".into());
                time_format.get_or_insert_with(|| "apache_error".into());
                Kind::Regex(re(APACHE_ERROR)?)
            }
            Format::Syslog => {
                time_key.get_or_insert_with(|| "time".into());
                time_format.get_or_insert_with(|| "syslog".into());
                types.insert("pri".to_string(), FieldType::Integer);
                let (a, b) = match cfg.message_format.unwrap_or_default() {
                    MessageFormat::Auto => (Some(re(RFC3164)?), Some(re(RFC5424)?)),
                    MessageFormat::Rfc3164 => (Some(re(RFC3164)?), None),
                    MessageFormat::Rfc5424 => (None, Some(re(RFC5424)?)),
                };
                Kind::Syslog {
                    rfc3164: a,
                    rfc5424: b,
                }
            }
            Format::None => Kind::None,
        };
        types.extend(cfg.types.iter().map(|(k, v)| (k.clone(), *v)));
        let time = match (&time_key, &time_format) {
            (Some(_), Some(f)) => Some(TimeParser::new(f, tz).map_err(|e| err("time_format", e))?),
            (Some(_), None) => {
                Some(TimeParser::new("auto", tz).map_err(|e| err("time_format", e))?)
            }
            (None, Some(_)) => return Err(err("time_format", "time_format needs time_key".into())),
            (None, None) => None,
        };
        Ok(Parser {
            kind,
            keys: cfg.keys.clone(),
            time_key,
            time,
            keep_time_key: cfg.keep_time_key,
            types,
        })
    }

    /// Parses one line (without its newline).
    pub fn parse(&self, line: &str) -> Result<Parsed, ParseError> {
        match &self.kind {
            Kind::Json => json::parse(line, self),
            Kind::None => {
                let mut rec = Vec::with_capacity(line.len() + 12);
                msgpack::write_map_len(&mut rec, 1);
                msgpack::write_str(&mut rec, b"message");
                msgpack::write_str(&mut rec, line.as_bytes());
                Ok(Parsed {
                    time: None,
                    record: rec,
                })
            }
            Kind::Ltsv { delimiter, label } => {
                let fields = line
                    .split(delimiter.as_str())
                    .filter(|f| !f.is_empty())
                    .map(|f| match f.split_once(label.as_str()) {
                        Some((k, v)) => (k, Some(v)),
                        None => (f, None),
                    });
                self.build(fields)
            }
            Kind::Tsv => {
                let vals: Vec<&str> = line.split('\t').collect();
                self.columns(vals.into_iter().map(std::borrow::Cow::Borrowed).collect())
            }
            Kind::Csv => {
                let vals = split_csv(line)
                    .ok_or_else(|| ParseError::NoMatch("unterminated quoted field".into()))?;
                self.columns(vals)
            }
            Kind::Regex(re) => self.regex(re, line),
            Kind::Syslog { rfc3164, rfc5424 } => {
                if line.starts_with('<')
                    && line.get(..8).map(|h| h.contains(">1 ")).unwrap_or(false)
                {
                    if let Some(r) = rfc5424 {
                        return self.regex(r, line);
                    }
                }
                match (rfc3164, rfc5424) {
                    (Some(r), _) => self.regex(r, line),
                    (None, Some(r)) => self.regex(r, line),
                    _ => Err(ParseError::NoMatch("no syslog pattern".into())),
                }
            }
        }
    }

    fn columns(&self, vals: Vec<std::borrow::Cow<'_, str>>) -> Result<Parsed, ParseError> {
        if vals.len() != self.keys.len() {
            return Err(ParseError::NoMatch(format!(
                "{} columns, expected {}",
                vals.len(),
                self.keys.len()
            )));
        }
        self.build(
            self.keys
                .iter()
                .map(|k| k.as_str())
                .zip(vals.iter().map(|v| Some(v.as_ref()))),
        )
    }

    fn regex(&self, re: &Regex, line: &str) -> Result<Parsed, ParseError> {
        let caps = re
            .captures(line)
            .ok_or_else(|| ParseError::NoMatch("the line does not match the pattern".into()))?;
        self.build(
            re.capture_names()
                .flatten()
                .filter_map(|n| caps.name(n).map(|m| (n, Some(m.as_str())))),
        )
    }

    /// Writes `fields` as a msgpack map, typing them and taking out the time.
    fn build<'a>(
        &self,
        fields: impl Iterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<Parsed, ParseError> {
        let fields: Vec<(&str, Option<&str>)> = fields.collect();
        let mut time = None;
        let mut rec = Vec::with_capacity(
            64 + fields
                .iter()
                .map(|(k, v)| k.len() + v.map(str::len).unwrap_or(0) + 2)
                .sum::<usize>(),
        );
        let mut n = 0u32;
        let mut body = Vec::with_capacity(rec.capacity());
        for (k, v) in fields {
            if Some(k) == self.time_key.as_deref() {
                if let (Some(tp), Some(v)) = (&self.time, v) {
                    time = Some(tp.parse(v).map_err(|why| ParseError::Time {
                        value: v.to_string(),
                        why,
                    })?);
                    if !self.keep_time_key {
                        continue;
                    }
                }
            }
            msgpack::write_str(&mut body, k.as_bytes());
            match (v, self.types.get(k)) {
                (None, _) => body.push(0xc0),
                (Some(v), Some(t)) => write_typed(&mut body, v, *t),
                (Some("-"), None) => body.push(0xc0),
                (Some(v), None) => msgpack::write_str(&mut body, v.as_bytes()),
            }
            n += 1;
        }
        msgpack::write_map_len(&mut rec, n);
        rec.extend_from_slice(&body);
        Ok(Parsed { time, record: rec })
    }

    pub(crate) fn time_key(&self) -> Option<&str> {
        self.time_key.as_deref()
    }
    pub(crate) fn time_parser(&self) -> Option<&TimeParser> {
        self.time.as_ref()
    }
    pub(crate) fn keep_time_key(&self) -> bool {
        self.keep_time_key
    }
    pub(crate) fn has_types(&self) -> bool {
        !self.types.is_empty()
    }
    pub(crate) fn field_type(&self, k: &str) -> Option<FieldType> {
        if self.types.is_empty() {
            None
        } else {
            self.types.get(k).copied()
        }
    }
}

/// Writes a string value converted to `t`; a value that does not convert
/// stays a string (never an error, never a lost record); `-` and the empty
/// string become nil for numbers (Apache's size `-`).
pub fn write_typed(out: &mut Vec<u8>, v: &str, t: FieldType) {
    match t {
        FieldType::Integer => match v.trim().parse::<i64>() {
            Ok(i) => msgpack::write_int(out, i),
            Err(_) if v == "-" || v.is_empty() => out.push(0xc0),
            Err(_) => msgpack::write_str(out, v.as_bytes()),
        },
        FieldType::Float => match v.trim().parse::<f64>() {
            Ok(f) => msgpack::write_f64(out, f),
            Err(_) if v == "-" || v.is_empty() => out.push(0xc0),
            Err(_) => msgpack::write_str(out, v.as_bytes()),
        },
        FieldType::Bool => match v.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => out.push(0xc3),
            "false" | "no" | "0" | "off" => out.push(0xc2),
            _ => msgpack::write_str(out, v.as_bytes()),
        },
        FieldType::String => msgpack::write_str(out, v.as_bytes()),
    }
}

/// RFC 4180 fields: quoted fields may hold commas, newlines and `""`.
fn split_csv(line: &str) -> Option<Vec<std::borrow::Cow<'_, str>>> {
    let mut out = Vec::new();
    let b = line.as_bytes();
    let mut i = 0;
    loop {
        if i < b.len() && b[i] == b'"' {
            let mut s = String::new();
            let mut j = i + 1;
            loop {
                let rel = line[j..].find('"')?;
                s.push_str(&line[j..j + rel]);
                j += rel + 1;
                if j < b.len() && b[j] == b'"' {
                    s.push('"');
                    j += 1;
                } else {
                    break;
                }
            }
            out.push(std::borrow::Cow::Owned(s));
            i = j;
            if i < b.len() && b[i] == b',' {
                i += 1;
                continue;
            }
            if i >= b.len() {
                return Some(out);
            }
            // text after a closing quote: keep it, as most readers do
            let end = line[i..].find(',').map(|r| i + r).unwrap_or(b.len());
            if let Some(std::borrow::Cow::Owned(s)) = out.last_mut() {
                s.push_str(&line[i..end]);
            }
            if end >= b.len() {
                return Some(out);
            }
            i = end + 1;
        } else {
            let end = line[i..].find(',').map(|r| i + r).unwrap_or(b.len());
            out.push(std::borrow::Cow::Borrowed(&line[i..end]));
            if end >= b.len() {
                return Some(out);
            }
            i = end + 1;
        }
    }
}

/// The record kept for a line that did not parse: the raw line under
/// `message` and the reason under `_parse_error`.
pub fn unparsed_record(line: &str, reason: &str) -> Vec<u8> {
    let mut rec = Vec::with_capacity(line.len() + reason.len() + 24);
    msgpack::write_map_len(&mut rec, 2);
    msgpack::write_str(&mut rec, b"message");
    msgpack::write_str(&mut rec, line.as_bytes());
    msgpack::write_str(&mut rec, b"_parse_error");
    msgpack::write_str(&mut rec, reason.as_bytes());
    rec
}

#[cfg(test)]
mod tests;

/// Encodes a JSON value as msgpack.
pub fn json_value_to_msgpack(out: &mut Vec<u8>, v: &serde_json::Value) {
    use serde_json::Value as J;
    match v {
        J::Null => out.push(0xc0),
        J::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        J::Number(n) => {
            if let Some(u) = n.as_u64() {
                msgpack::write_uint(out, u)
            } else if let Some(i) = n.as_i64() {
                msgpack::write_int(out, i)
            } else {
                msgpack::write_f64(out, n.as_f64().unwrap_or(0.0))
            }
        }
        J::String(s) => msgpack::write_str(out, s.as_bytes()),
        J::Array(a) => {
            msgpack::write_array_len(out, a.len() as u32);
            for x in a {
                json_value_to_msgpack(out, x);
            }
        }
        J::Object(m) => {
            msgpack::write_map_len(out, m.len() as u32);
            for (k, x) in m {
                msgpack::write_str(out, k.as_bytes());
                json_value_to_msgpack(out, x);
            }
        }
    }
}
