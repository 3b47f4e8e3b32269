//! amazon-kinesis-agent's `dataProcessingOptions`, applied to tailed lines
//! so that fuwa delivers byte for byte the records kinesis-agent delivers
//! (`fuwa import kinesis-agent` sets this up; the tail input's
//! `kinesis_agent_processing` key holds the options as kinesis-agent's JSON).
//!
//! Like kinesis-agent, the chain works on text: each converter takes the
//! previous one's output (a line ending in `\n`), in order. A LOGTOJSON line
//! that does not match is skipped; a converter that fails sends the original
//! line instead (kinesis-agent's "falling back to raw data"). The result is
//! the whole record kinesis-agent would send, without its final `\n`, kept
//! as the `message` field; the outputs send it as it is (`log_key`).
//!
//! The behaviour follows kinesis-agent's sources (Amazon Software License,
//! github.com/awslabs/amazon-kinesis-agent, `processing/processors`,
//! `processing/parsers`); the expected records in the tests are its own.

mod imds;
pub mod jackson;
pub mod java_regex;
#[cfg(test)]
mod tests;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use fuwa_api::msgpack;
use regex::Regex;

use jackson::JVal;
pub use jackson::{parse_document, write_compact};

// kinesis-agent's PatternConstants, in Java syntax (translated when compiled)
const INT: &str = r"(?:[+-]?(?:[0-9]+))";
const POSINT: &str = r"(?:[1-9][0-9]*)";
const NONNEGINT: &str = r"(?:[0-9]+)";
const ANYDATA: &str = r".*";
const WORD: &str = r"\w+";
const NOQUOTE: &str = r#"[^"]+"#;
const IP: &str = r"(?:[\d\.]+)";
const HOSTNAME: &str = r"(?:[\w\-]+)(?:\.(?:[\w\-]+))*(?:\.?|\b)";
const USER: &str = r"(?:[a-zA-Z0-9._-]+)";
const MONTHDAY: &str = r"(?:(?:0[1-9])|(?:[12][0-9])|(?:3[01])|[1-9])";
const DAY: &str = r"(?:Mon(?:day)?|Tue(?:sday)?|Wed(?:nesday)?|Thu(?:rsday)?|Fri(?:day)?|Sat(?:urday)?|Sun(?:day)?)";
const MONTH: &str = r"\b(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|Jun(?:e)?|Jul(?:y)?|Aug(?:ust)?|Sep(?:tember)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\b";
const YEAR: &str = r"(?:[1-9]\d*)";
const HOUR: &str = r"(?:2[0123]|[01]?[0-9])";
const MINUTE: &str = r"(?:[0-5][0-9])";
const SECOND: &str = r"(?:(?:[0-5]?[0-9]|60)(?:[:\.,][0-9]+)?)";
const RFC3339: &str = r"(?:\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?)(?:Z|(?:[-+]\d{2}:\d{2}))";

fn patterns(format: &str) -> Option<(String, &'static [&'static str], bool)> {
    let time = format!("(?:{HOUR}:{MINUTE}:{SECOND})");
    let iporhost = format!("(?:{HOSTNAME}|{IP})");
    let urihost = format!("(?:{iporhost}(?::{POSINT})?)");
    let httpdate = format!(r"(?:{MONTHDAY}/{MONTH}/{YEAR}:{time}\s{INT})");
    let errts = format!(r"(?:{DAY}\s+{MONTH}\s+{MONTHDAY}\s+{time}\s+{YEAR})");
    let systs = format!(r"(?:{MONTH}\s+{MONTHDAY}\s+{time})");
    let facility = format!("<{NONNEGINT}.{NONNEGINT}>");
    let prog = r"([\w\._/%-]+)";
    let sysprog = format!(r"{prog}(?:\[({POSINT})\])?");
    let common = format!(
        r#"^({iporhost}) ({USER}) ({USER}) \[({httpdate})\] "({NOQUOTE})" ({INT}|\-) ({INT}|\-)"#
    );
    const COMMON: &[&str] = &[
        "host", "ident", "authuser", "datetime", "request", "response", "bytes",
    ];
    const COMBINED: &[&str] = &[
        "host", "ident", "authuser", "datetime", "request", "response", "bytes", "referer", "agent",
    ];
    const ERROR: &[&str] = &[
        "timestamp",
        "module",
        "severity",
        "processid",
        "threadid",
        "client",
        "message",
    ];
    const SYSLOG: &[&str] = &["timestamp", "hostname", "program", "processid", "message"];
    Some(match format {
        "COMMONAPACHELOG" => (format!("{common}.*"), COMMON, true),
        "COMBINEDAPACHELOG" => (
            format!(r#"{common} "({NOQUOTE})" "({NOQUOTE})".*"#),
            COMBINED,
            true,
        ),
        "APACHEERRORLOG" => (
            format!(
                r"^\[({errts})\] \[(?:({WORD}):)?({WORD})\] \[pid ({NONNEGINT})(?::tid ({NONNEGINT}))?\] \[client ({urihost})\] ({ANYDATA})"
            ),
            ERROR,
            true,
        ),
        "SYSLOG" => (
            format!(r"^({systs}) (?:{facility} )?({USER}) {sysprog}: ({ANYDATA})"),
            SYSLOG,
            false,
        ),
        "RFC3339SYSLOG" => (
            format!(r"^({RFC3339}) (?:{facility} )?({USER}) {sysprog}: ({ANYDATA})"),
            SYSLOG,
            false,
        ),
        _ => return None,
    })
}

#[derive(Clone, Copy)]
enum Printer {
    Compact,
    Pretty,
}

impl Printer {
    fn line(self, v: &JVal) -> String {
        let mut s = String::new();
        match self {
            Printer::Compact => jackson::write_compact(&mut s, v),
            Printer::Pretty => jackson::write_pretty(&mut s, v, 0),
        }
        s.push('\n');
        s
    }
}

/// When the metadata was last read, and what was read (empty: none).
type Ec2State = (Option<Instant>, Vec<(String, JVal)>);

struct Ec2 {
    imds: imds::Imds,
    ttl: Duration,
    state: Mutex<Ec2State>,
}

enum Conv {
    SingleLine {
        trim: bool,
        escape: bool,
    },
    Csv {
        fields: Vec<String>,
        delimiter: Regex,
        printer: Printer,
    },
    Log {
        re: Regex,
        fields: Vec<String>,
        /// Apache formats turn `-` into null, syslog ones do not
        dash_null: bool,
        printer: Printer,
    },
    AddMetadata {
        metadata: JVal,
        timestamp: bool,
        printer: Printer,
    },
    AddEc2 {
        ec2: Box<Ec2>,
        printer: Printer,
    },
    Brackets,
}

/// What kinesis-agent does with one line.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// this record, byte for byte as kinesis-agent sends it (most end in
    /// a newline; ADDBRACKETS's `{line\n}` does not)
    Send(String),
    /// LOGTOJSON did not match: nothing is sent
    Skip,
}

pub struct Chain {
    convs: Vec<Conv>,
}

fn strip_nl(s: &str) -> &str {
    s.strip_suffix('\n').unwrap_or(s)
}

/// Java's `String.trim()`: every char up to U+0020 at both ends.
fn java_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

fn string_list(o: &JVal, key: &str, at: &str) -> Result<Option<Vec<String>>, String> {
    match o.get(key) {
        None | Some(JVal::Null) => Ok(None),
        Some(JVal::Arr(a)) => a
            .iter()
            .map(|v| match v {
                JVal::Str(s) => Ok(s.clone()),
                JVal::Num(n) => Ok(n.clone()),
                _ => Err(format!("{at}.{key}: a list of strings")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(format!("{at}.{key}: a list of strings")),
    }
}

fn string(o: &JVal, key: &str, at: &str) -> Result<Option<String>, String> {
    match o.get(key) {
        None | Some(JVal::Null) => Ok(None),
        Some(JVal::Str(s)) => Ok(Some(s.clone())),
        Some(JVal::Num(n)) => Ok(Some(n.clone())),
        Some(JVal::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(format!("{at}.{key}: a string")),
    }
}

fn printer(o: &JVal, at: &str) -> Result<Printer, String> {
    match string(o, "jsonFormat", at)?.as_deref() {
        None | Some("COMPACT") => Ok(Printer::Compact),
        Some("PRETTYPRINT") => Ok(Printer::Pretty),
        Some(other) => Err(format!(
            "{at}.jsonFormat: `{other}` (COMPACT or PRETTYPRINT)"
        )),
    }
}

/// The keys each option reads (kinesis-agent ignores others; the importer
/// lists them).
pub fn known_keys(option: &str) -> &'static [&'static str] {
    match option {
        "SINGLELINE" => &["optionName", "parseOptions"],
        "CSVTOJSON" => &["optionName", "customFieldNames", "delimiter", "jsonFormat"],
        "LOGTOJSON" => &[
            "optionName",
            "logFormat",
            "matchPattern",
            "customFieldNames",
            "jsonFormat",
        ],
        "ADDMETADATA" => &["optionName", "metadata", "timestamp", "jsonFormat"],
        "ADDEC2METADATA" => &[
            "optionName",
            "metadataTTL",
            "logFormat",
            "matchPattern",
            "customFieldNames",
            "jsonFormat",
        ],
        "ADDBRACKETS" => &["optionName"],
        _ => &[],
    }
}

fn build(o: &JVal, at: &str) -> Result<Conv, String> {
    let name = string(o, "optionName", at)?.ok_or_else(|| format!("{at}.optionName is missing"))?;
    Ok(match name.as_str() {
        "SINGLELINE" => {
            let opts = string_list(o, "parseOptions", at)?.unwrap_or_default();
            Conv::SingleLine {
                trim: !opts.iter().any(|s| s == "NO_TRIM"),
                escape: opts.iter().any(|s| s == "ESCAPE_NEW_LINE"),
            }
        }
        "CSVTOJSON" => {
            let fields = string_list(o, "customFieldNames", at)?
                .ok_or_else(|| format!("{at}.customFieldNames is missing (CSVTOJSON needs it)"))?;
            let d = string(o, "delimiter", at)?.unwrap_or_else(|| ",".into());
            Conv::Csv {
                fields,
                delimiter: java_regex::anywhere(&d)
                    .map_err(|e| format!("{at}.delimiter: bad regular expression: {e}"))?,
                printer: printer(o, at)?,
            }
        }
        "LOGTOJSON" => {
            let lf = string(o, "logFormat", at)?
                .ok_or_else(|| format!("{at}.logFormat is missing (LOGTOJSON needs it)"))?;
            let (default, default_fields, dash_null) = patterns(&lf).ok_or_else(|| {
                format!("{at}.logFormat: `{lf}` (COMMONAPACHELOG, COMBINEDAPACHELOG, APACHEERRORLOG, SYSLOG, RFC3339SYSLOG)")
            })?;
            let custom = string_list(o, "customFieldNames", at)?;
            let (pat, fields) = match string(o, "matchPattern", at)? {
                Some(p) => (
                    p,
                    custom.ok_or_else(|| {
                        format!("{at}: customFieldNames must be specified when matchPattern is specified")
                    })?,
                ),
                None => {
                    let fields = match custom {
                        Some(c) if c.len() != default_fields.len() => {
                            return Err(format!(
                                "{at}.customFieldNames: {lf} has {} fields, not {}; give matchPattern too",
                                default_fields.len(),
                                c.len()
                            ))
                        }
                        Some(c) => c,
                        None => default_fields.iter().map(|s| s.to_string()).collect(),
                    };
                    (default, fields)
                }
            };
            Conv::Log {
                re: java_regex::whole(&pat)
                    .map_err(|e| format!("{at}.matchPattern: bad regular expression: {e}"))?,
                fields,
                dash_null,
                printer: printer(o, at)?,
            }
        }
        "ADDMETADATA" => {
            // kinesis-agent reads `timestamp` as a string ("true"); a JSON
            // boolean is taken too
            let timestamp = match o.get("timestamp") {
                Some(JVal::Bool(b)) => *b,
                Some(JVal::Str(s)) => s.eq_ignore_ascii_case("true"),
                None | Some(JVal::Null) => false,
                Some(_) => return Err(format!("{at}.timestamp: \"true\" or \"false\"")),
            };
            Conv::AddMetadata {
                metadata: o.get("metadata").cloned().unwrap_or(JVal::Null),
                timestamp,
                printer: printer(o, at)?,
            }
        }
        "ADDEC2METADATA" => {
            let ttl = match string(o, "metadataTTL", at)? {
                None => 3600,
                Some(s) => s
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{at}.metadataTTL: seconds, not `{s}`"))?,
            };
            Conv::AddEc2 {
                ec2: Box::new(Ec2 {
                    imds: imds::Imds::from_env(),
                    ttl: Duration::from_secs(ttl),
                    state: Mutex::new((None, Vec::new())),
                }),
                printer: printer(o, at)?,
            }
        }
        "ADDBRACKETS" => Conv::Brackets,
        "USINGPLUGGIN" => {
            return Err(format!(
                "{at}: USINGPLUGGIN loads a Java class; fuwa cannot run it"
            ))
        }
        other => {
            return Err(format!(
                "{at}.optionName: `{other}` (SINGLELINE, CSVTOJSON, LOGTOJSON, ADDMETADATA, ADDEC2METADATA, ADDBRACKETS)"
            ))
        }
    })
}

impl Chain {
    /// `json`: kinesis-agent's `dataProcessingOptions` array (comments
    /// allowed).
    pub fn new(json: &str) -> Result<Chain, String> {
        let v = jackson::parse_document(json, true)?;
        Self::from_value(&v)
    }

    pub fn from_value(v: &JVal) -> Result<Chain, String> {
        let JVal::Arr(a) = v else {
            return Err("dataProcessingOptions must be a list of options".into());
        };
        let convs = a
            .iter()
            .enumerate()
            .map(|(i, o)| build(o, &format!("[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Chain { convs })
    }

    /// Runs the chain on one line (or multiline record) as the tail input
    /// read it, without its newline.
    pub fn apply(&self, line: &str) -> Outcome {
        let original = format!("{line}\n");
        let mut data = original.clone();
        for c in &self.convs {
            match c.convert(&data) {
                Ok(Some(d)) => data = d,
                Ok(None) => return Outcome::Skip,
                Err(why) => {
                    tracing::debug!(%why, "kinesis-agent processing failed: the line is sent as it is");
                    data = original;
                    break;
                }
            }
        }
        Outcome::Send(data)
    }

    /// [`Chain::apply`] as a record: `{"message": text}`, or None to skip.
    pub fn record(&self, line: &str) -> Option<Vec<u8>> {
        match self.apply(line) {
            Outcome::Skip => None,
            Outcome::Send(t) => {
                let mut rec = Vec::with_capacity(t.len() + 12);
                msgpack::write_map_len(&mut rec, 1);
                msgpack::write_str(&mut rec, b"message");
                msgpack::write_str(&mut rec, t.as_bytes());
                Some(rec)
            }
        }
    }
}

impl Conv {
    /// Ok(None): skip the record; Err: send the original line.
    fn convert(&self, data: &str) -> Result<Option<String>, String> {
        Ok(Some(match self {
            Conv::SingleLine { trim, escape } => {
                let mut lines: Vec<&str> = data.split('\n').collect();
                while lines.last().map(|l| l.is_empty()).unwrap_or(false) {
                    lines.pop();
                }
                if *trim {
                    for l in &mut lines {
                        *l = java_trim(l);
                    }
                }
                let mut s = lines.join(if *escape { r"\\n" } else { "" });
                s.push('\n');
                s
            }
            Conv::Csv {
                fields,
                delimiter,
                printer,
            } => {
                let cols = java_regex::split(delimiter, strip_nl(data));
                let m = fields
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let v = cols
                            .get(i)
                            .map(|c| JVal::Str(c.to_string()))
                            .unwrap_or(JVal::Null);
                        (f.clone(), v)
                    })
                    .fold(Vec::new(), |mut m, (k, v)| {
                        JVal::put(&mut m, k, v);
                        m
                    });
                printer.line(&JVal::Obj(m))
            }
            Conv::Log {
                re,
                fields,
                dash_null,
                printer,
            } => {
                let Some(caps) = re.captures(strip_nl(data)) else {
                    return Ok(None);
                };
                if caps.len() - 1 != fields.len() {
                    return Ok(None);
                }
                let mut m = Vec::new();
                for (i, f) in fields.iter().enumerate() {
                    let v = match caps.get(i + 1).map(|c| c.as_str()) {
                        None => JVal::Null,
                        Some("-") if *dash_null => JVal::Null,
                        Some(s) => JVal::Str(s.to_string()),
                    };
                    JVal::put(&mut m, f.clone(), v);
                }
                printer.line(&JVal::Obj(m))
            }
            Conv::AddMetadata {
                metadata,
                timestamp,
                printer,
            } => {
                let mut m = Vec::new();
                if *timestamp {
                    let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
                    m.push(("ts".to_string(), JVal::Str(ts.to_string())));
                }
                m.push(("metadata".to_string(), metadata.clone()));
                m.push(("data".to_string(), JVal::Str(strip_nl(data).to_string())));
                printer.line(&JVal::Obj(m))
            }
            Conv::AddEc2 { ec2, printer } => {
                let meta = ec2.metadata();
                if meta.is_empty() {
                    return Ok(Some(data.to_string()));
                }
                let (v, _) = jackson::parse_prefix(data, false)?;
                let JVal::Obj(mut m) = v else {
                    return Err("ADDEC2METADATA: the data is not a JSON object".into());
                };
                for (k, v) in meta {
                    JVal::put(&mut m, k, v);
                }
                printer.line(&JVal::Obj(m))
            }
            Conv::Brackets => format!("{{{data}}}"),
        }))
    }
}

impl Ec2 {
    /// The metadata, read again when older than the TTL; empty when the
    /// metadata service cannot be reached (the records pass unchanged, as
    /// with kinesis-agent, and the reason is logged as an error).
    fn metadata(&self) -> Vec<(String, JVal)> {
        let mut st = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let stale = st.0.map(|t| t.elapsed() >= self.ttl).unwrap_or(true);
        if stale {
            st.0 = Some(Instant::now());
            let now = chrono::Local::now()
                .format("%Y-%m-%dT%H:%M:%S%z")
                .to_string();
            match self.imds.instance_metadata(&now) {
                Ok(m) => st.1 = m,
                Err(e) => {
                    tracing::error!(
                        endpoint = %self.imds.endpoint(),
                        error = %e,
                        "ADDEC2METADATA: no EC2 instance metadata (is this host an EC2 instance? \
                         AWS_EC2_METADATA_SERVICE_ENDPOINT overrides the address); records are sent \
                         without it, as kinesis-agent does, and it is tried again after metadataTTL"
                    );
                    st.1.clear();
                }
            }
        }
        st.1.clone()
    }
}
