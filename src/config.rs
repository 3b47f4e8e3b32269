//! Loading and checking the TOML config. Every problem is reported as
//! `FILE:LINE: key: what is wrong`, all of them at once.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuwa_api::{
    BuildContext, ConfigError, ConfigSection, Filter, HumanDuration, Input, Output, TagPattern,
};
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::buffer::config::BufferConfig;
use crate::plugins;

/// Used by `fuwa run` without `-c`: forward on 127.0.0.1:24224 → stdout.
pub const DEFAULT_CONFIG: &str = r#"# fuwa's embedded default: forward protocol in, JSON Lines on stdout
[[input]]
type = "forward"
bind = "127.0.0.1:24224"

[[output]]
match = "**"
type = "stdout"
[output.buffer]
type = "memory"
flush_interval = "1s"
"#;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    pub hostname: Option<String>,
    #[serde(default = "utc")]
    pub timezone: String,
    #[serde(default = "info")]
    pub log_level: String,
    #[serde(default)]
    pub log_format: LogFormat,
    #[serde(default = "default_shutdown")]
    pub shutdown_timeout: HumanDuration,
    /// `[agent.api]`: the metrics / health / status endpoint (off when absent)
    pub api: Option<ApiConfig>,
}

/// `[agent.api]`: `GET /metrics`, `GET /health`, `GET /api/status`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// e.g. `127.0.0.1:24220`
    pub bind: std::net::SocketAddr,
    /// how far back `/health` looks for dead-lettered chunks
    #[serde(default = "health_period")]
    pub health_period: HumanDuration,
    /// more chunks dead-lettered (or dropped) than this within
    /// health_period makes an output unhealthy
    #[serde(default)]
    pub health_max_dead_letters: u64,
    /// more consecutive failed writes than this (no success in between)
    /// makes an output unhealthy
    #[serde(default = "health_max_failed_writes")]
    pub health_max_failed_writes: u64,
}

fn health_period() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn health_max_failed_writes() -> u64 {
    5
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            data_dir: default_data_dir(),
            hostname: None,
            timezone: utc(),
            log_level: info(),
            log_format: LogFormat::Text,
            shutdown_timeout: default_shutdown(),
            api: None,
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/fuwa")
}
fn utc() -> String {
    "UTC".into()
}
fn info() -> String {
    "info".into()
}
fn default_shutdown() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

pub struct InputSpec {
    pub id: String,
    /// the plugin type (`forward`, `tail`, ...)
    pub kind: String,
    pub plugin: Box<dyn Input>,
}

pub struct FilterSpec {
    pub id: String,
    pub pattern: TagPattern,
    pub plugin: Box<dyn Filter>,
}

pub struct OutputSpec {
    pub id: String,
    /// the plugin type (`file`, `s3`, ...)
    pub kind: String,
    pub pattern: TagPattern,
    pub plugin: Arc<dyn Output>,
    pub buffer: BufferConfig,
}

/// A checked config with its plugins built and ready to start.
pub struct Config {
    pub agent: AgentConfig,
    pub hostname: String,
    /// data_dir was set by the config or --data-dir (not defaulted)
    pub data_dir_explicit: bool,
    pub inputs: Vec<InputSpec>,
    pub filters: Vec<FilterSpec>,
    pub outputs: Vec<OutputSpec>,
}

/// Every problem found, ready to print.
#[derive(Debug)]
pub struct ConfigErrors {
    pub file: String,
    pub lines: Vec<String>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            writeln!(f, "{l}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

fn line_of(src: &str, span: &Option<Range<usize>>) -> usize {
    match span {
        Some(s) => src[..s.start.min(src.len())].matches('\n').count() + 1,
        None => 1,
    }
}

pub fn load_file(path: &Path, data_dir_override: Option<&Path>) -> Result<Config, ConfigErrors> {
    let name = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        file: name.clone(),
        lines: vec![format!("{name}: cannot read the config file: {e}")],
    })?;
    load_str(&src, &name, data_dir_override)
}

pub fn load_str(
    src: &str,
    name: &str,
    data_dir_override: Option<&Path>,
) -> Result<Config, ConfigErrors> {
    let mut errors: Vec<ConfigError> = Vec::new();
    let (doc, syntax) = DeTable::parse_recoverable(src);
    for e in syntax {
        errors.push(ConfigError {
            span: e.span(),
            key: "syntax".into(),
            message: e.message().trim().replace('\n', " "),
        });
    }
    let doc_span = doc.span();
    let doc = doc.into_inner();

    let mut agent = AgentConfig::default();
    let mut input_tables = Vec::new();
    let mut filter_tables = Vec::new();
    let mut output_tables = Vec::new();
    for (k, v) in doc.iter() {
        match k.get_ref().as_ref() {
            "agent" => {
                let s = ConfigSection::new("agent", v.clone());
                match s.parse::<AgentConfig>() {
                    Ok(a) => agent = a,
                    Err(e) => errors.push(e),
                }
            }
            kind @ ("input" | "filter" | "output") => match v.get_ref() {
                DeValue::Array(items) => {
                    let dest = match kind {
                        "input" => &mut input_tables,
                        "filter" => &mut filter_tables,
                        _ => &mut output_tables,
                    };
                    dest.extend(items.iter().cloned());
                }
                _ => errors.push(ConfigError {
                    span: Some(k.span()),
                    key: kind.into(),
                    message: format!("write each one as [[{kind}]] (an array of tables)"),
                }),
            },
            other => errors.push(ConfigError {
                span: Some(k.span()),
                key: other.to_string(),
                message: "unknown section (expected agent, input, filter or output)".into(),
            }),
        }
    }
    let data_dir_explicit =
        data_dir_override.is_some() || key_span(&doc, &["agent", "data_dir"]).is_some();
    if let Some(d) = data_dir_override {
        agent.data_dir = d.to_path_buf();
    }
    let tz_ok = match fuwa_render::parse_timezone(&agent.timezone) {
        Ok(_) => true,
        Err(e) => {
            errors.push(ConfigError {
                span: key_span(&doc, &["agent", "timezone"]),
                key: "agent.timezone".into(),
                message: e,
            });
            false
        }
    };
    if tracing_subscriber::EnvFilter::try_new(&agent.log_level).is_err() {
        errors.push(ConfigError {
            span: key_span(&doc, &["agent", "log_level"]),
            key: "agent.log_level".into(),
            message: format!(
                "`{}` is not a log level (error, warn, info, debug, trace)",
                agent.log_level
            ),
        });
    }
    let hostname = agent
        .hostname
        .clone()
        .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned());
    if input_tables.is_empty() {
        errors.push(ConfigError {
            span: Some(doc_span.start..doc_span.start),
            key: "input".into(),
            message: "no [[input]]: nothing would be read".into(),
        });
    }
    if output_tables.is_empty() {
        errors.push(ConfigError {
            span: Some(doc_span.start..doc_span.start),
            key: "output".into(),
            message: "no [[output]]: nothing would be written".into(),
        });
    }

    let mut ids = HashSet::new();
    let base_ctx = |id: &str| BuildContext {
        id: id.to_string(),
        hostname: hostname.clone(),
        timezone: if tz_ok {
            agent.timezone.clone()
        } else {
            "UTC".into()
        },
        data_dir: agent.data_dir.clone(),
    };

    let mut inputs = Vec::new();
    for (i, t) in input_tables.into_iter().enumerate() {
        let name = format!("input[{i}]");
        let Some(common) = take_common(t, &name, false, &mut errors) else {
            continue;
        };
        let id = common
            .id
            .clone()
            .unwrap_or_else(|| format!("{}.{i}", common.kind));
        check_id(&id, &common, &mut ids, &mut errors);
        let Some(factory) = plugins::find(plugins::INPUTS, &common.kind) else {
            errors.push(unknown_type(
                &common,
                "input",
                &plugins::names(plugins::INPUTS),
            ));
            continue;
        };
        match factory(&common.section, &base_ctx(&id)) {
            Ok(plugin) => inputs.push(InputSpec {
                id,
                kind: common.kind.clone(),
                plugin,
            }),
            Err(es) => errors.extend(es),
        }
    }

    // ids are unique among their kind: a relay's forward input and forward
    // output may both keep the default `forward.0`
    ids.clear();
    let mut filters = Vec::new();
    for (i, t) in filter_tables.into_iter().enumerate() {
        let name = format!("filter[{i}]");
        let Some(common) = take_common(t, &name, true, &mut errors) else {
            continue;
        };
        let id = common
            .id
            .clone()
            .unwrap_or_else(|| format!("{}.{i}", common.kind));
        check_id(&id, &common, &mut ids, &mut errors);
        let Some(factory) = plugins::find(plugins::FILTERS, &common.kind) else {
            errors.push(unknown_type(
                &common,
                "filter",
                &plugins::names(plugins::FILTERS),
            ));
            continue;
        };
        match (factory(&common.section, &base_ctx(&id)), common.pattern) {
            (Ok(plugin), Some(pattern)) => filters.push(FilterSpec {
                id,
                pattern,
                plugin,
            }),
            (Err(es), _) => errors.extend(es),
            _ => {}
        }
    }

    ids.clear();
    let mut outputs = Vec::new();
    for (i, t) in output_tables.into_iter().enumerate() {
        let name = format!("output[{i}]");
        let Some(common) = take_common(t, &name, true, &mut errors) else {
            continue;
        };
        let id = common
            .id
            .clone()
            .unwrap_or_else(|| format!("{}.{i}", common.kind));
        check_id(&id, &common, &mut ids, &mut errors);
        let buffer = match &common.buffer {
            None => Ok(BufferConfig::default()),
            Some(b) => {
                ConfigSection::new(format!("{name}.buffer"), b.clone()).parse::<BufferConfig>()
            }
        };
        let buffer = match buffer {
            Ok(b) => {
                let bsec = common
                    .buffer
                    .clone()
                    .map(|b| ConfigSection::new(format!("{name}.buffer"), b));
                let berr = |key: &str, msg: &str| match &bsec {
                    Some(s) => s.error(key, msg),
                    None => common.section.error("buffer", msg),
                };
                for (key, msg) in b.validate() {
                    errors.push(berr(key, msg));
                }
                Some(b)
            }
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let Some(factory) = plugins::find(plugins::OUTPUTS, &common.kind) else {
            errors.push(unknown_type(
                &common,
                "output",
                &plugins::names(plugins::OUTPUTS),
            ));
            continue;
        };
        match (
            factory(&common.section, &base_ctx(&id)),
            common.pattern,
            buffer,
        ) {
            (Ok(plugin), Some(pattern), Some(buffer)) => outputs.push(OutputSpec {
                id,
                kind: common.kind.clone(),
                pattern,
                plugin,
                buffer,
            }),
            (Err(es), _, _) => errors.extend(es),
            _ => {}
        }
    }

    if !errors.is_empty() {
        errors.sort_by_key(|e| e.span.as_ref().map(|s| s.start).unwrap_or(0));
        return Err(ConfigErrors {
            file: name.to_string(),
            lines: errors
                .iter()
                .map(|e| format!("{name}:{}: {}: {}", line_of(src, &e.span), e.key, e.message))
                .collect(),
        });
    }
    share_column_types(&filters, &outputs);
    Ok(Config {
        agent,
        hostname,
        data_dir_explicit,
        inputs,
        filters,
        outputs,
    })
}

/// Tells each output the field types the `types` filters give its tags
/// (for Parquet columns): for an output of literal tags, the filters that
/// match one of them; for an open pattern, the filters of the same pattern
/// or `**`. A later filter's type wins, as it converts last.
fn share_column_types(filters: &[FilterSpec], outputs: &[OutputSpec]) {
    for o in outputs {
        let tags = o.pattern.literal_tags();
        let types: Vec<(String, &'static str)> = filters
            .iter()
            .filter(|f| match &tags {
                Some(t) => t.iter().any(|t| f.pattern.matches(t)),
                None => f.pattern.as_str() == o.pattern.as_str() || f.pattern.as_str() == "**",
            })
            .flat_map(|f| f.plugin.column_types())
            .collect();
        if !types.is_empty() {
            o.plugin.upstream_types(&types);
        }
    }
}

struct Common<'a> {
    kind: String,
    kind_span: Option<Range<usize>>,
    id: Option<String>,
    id_span: Option<Range<usize>>,
    pattern: Option<TagPattern>,
    buffer: Option<Spanned<DeValue<'a>>>,
    section: ConfigSection<'a>,
}

/// Takes the engine's keys (`type`, `id`, `match`, and for outputs
/// `buffer`) out of a plugin table; what is left belongs to the plugin.
fn take_common<'a>(
    t: Spanned<DeValue<'a>>,
    name: &str,
    has_match: bool,
    errors: &mut Vec<ConfigError>,
) -> Option<Common<'a>> {
    let span = t.span();
    let mut table = match t.into_inner() {
        DeValue::Table(t) => t,
        _ => {
            errors.push(ConfigError {
                span: Some(span),
                key: name.into(),
                message: "must be a table".into(),
            });
            return None;
        }
    };
    let mut string_key = |key: &str, table: &mut DeTable<'a>| -> Option<(String, Range<usize>)> {
        let v = table.remove(key)?;
        let s = v.span();
        match v.into_inner() {
            DeValue::String(x) => Some((x.into_owned(), s)),
            _ => {
                errors.push(ConfigError {
                    span: Some(s),
                    key: format!("{name}.{key}"),
                    message: "must be a string".into(),
                });
                None
            }
        }
    };
    let kind = string_key("type", &mut table);
    let id = string_key("id", &mut table);
    let pattern_src = if has_match {
        string_key("match", &mut table)
    } else {
        None
    };
    let buffer = if name.starts_with("output") {
        table.remove("buffer")
    } else {
        None
    };
    let Some((kind, kind_span)) = kind else {
        errors.push(ConfigError {
            span: Some(span),
            key: format!("{name}.type"),
            message: "missing: every section needs a type".into(),
        });
        return None;
    };
    let pattern = if has_match {
        let (src, pspan) = pattern_src.unwrap_or_else(|| ("**".to_string(), span.clone()));
        match TagPattern::parse(&src) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(ConfigError {
                    span: Some(pspan),
                    key: format!("{name}.match"),
                    message: e,
                });
                None
            }
        }
    } else {
        None
    };
    let (id, id_span) = match id {
        Some((i, s)) => (Some(i), Some(s)),
        None => (None, None),
    };
    Some(Common {
        kind,
        kind_span: Some(kind_span),
        id,
        id_span,
        pattern,
        buffer,
        section: ConfigSection::new(name, Spanned::new(span, DeValue::Table(table))),
    })
}

fn check_id(id: &str, c: &Common<'_>, ids: &mut HashSet<String>, errors: &mut Vec<ConfigError>) {
    let bad = id.is_empty()
        || !id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'));
    if bad {
        errors.push(ConfigError {
            span: c.id_span.clone(),
            key: format!("{}.id", c.section.name),
            message: format!(
                "`{id}`: ids use letters, digits, `.`, `_` and `-` (they name directories)"
            ),
        });
    }
    if !ids.insert(id.to_string()) {
        errors.push(ConfigError {
            span: c.id_span.clone().or(c.kind_span.clone()),
            key: format!("{}.id", c.section.name),
            message: format!("id `{id}` is used twice; ids must be unique"),
        });
    }
}

fn unknown_type(c: &Common<'_>, what: &str, known: &str) -> ConfigError {
    ConfigError {
        span: c.kind_span.clone(),
        key: format!("{}.type", c.section.name),
        message: format!("unknown {what} type `{}` (known: {known})", c.kind),
    }
}

fn key_span(doc: &DeTable<'_>, path: &[&str]) -> Option<Range<usize>> {
    let mut t = doc;
    for (i, p) in path.iter().enumerate() {
        let v = t.get(*p)?;
        if i + 1 == path.len() {
            return Some(v.span());
        }
        match v.get_ref() {
            DeValue::Table(inner) => t = inner,
            _ => return Some(v.span()),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(src: &str) -> Vec<String> {
        match load_str(src, "f.toml", None) {
            Ok(_) => vec![],
            Err(e) => e.lines,
        }
    }

    #[test]
    fn default_config_is_valid() {
        let c = load_str(DEFAULT_CONFIG, "default", None).unwrap();
        assert_eq!(c.inputs.len(), 1);
        assert_eq!(c.outputs[0].id, "stdout.0");
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let src = r#"[agent]
timezone = "Mars/Base"

[[input]]
type = "forward"
bind = "127.0.0.1:24224"
bogus = 1

[[output]]
type = "file"
match = "{a,b"
path = "/tmp/x"
[output.buffer]
flush_interval = "soon"

[[output]]
type = "nope"
"#;
        let e = errs(src);
        assert_eq!(e.len(), 5, "{e:#?}");
        assert!(e[0].starts_with("f.toml:2: agent.timezone:"), "{e:#?}");
        assert!(
            e[1].starts_with("f.toml:7: input[0].bogus: unknown field"),
            "{e:#?}"
        );
        assert!(e[2].starts_with("f.toml:11: output[0].match:"), "{e:#?}");
        assert!(
            e[3].starts_with("f.toml:14: output[0].buffer.flush_interval:"),
            "{e:#?}"
        );
        assert!(
            e[4].starts_with("f.toml:17: output[1].type: unknown output type `nope`"),
            "{e:#?}"
        );
    }

    #[test]
    fn agent_api_defaults_and_mistakes() {
        let tail = "[[input]]\ntype = \"forward\"\n[[output]]\ntype = \"null\"\n";
        let c = load_str(
            &format!("[agent.api]\nbind = \"127.0.0.1:24220\"\n{tail}"),
            "f.toml",
            None,
        )
        .unwrap();
        let api = c.agent.api.unwrap();
        assert_eq!(api.bind.to_string(), "127.0.0.1:24220");
        assert_eq!(api.health_period.0, Duration::from_secs(60));
        assert_eq!(api.health_max_dead_letters, 0);
        assert_eq!(api.health_max_failed_writes, 5);
        assert!(load_str(tail, "f.toml", None).unwrap().agent.api.is_none());
        let e = errs(&format!(
            "[agent.api]\nbind = \"127.0.0.1:24220\"\nhealth_period = \"often\"\n{tail}"
        ));
        assert!(
            e[0].starts_with("f.toml:3: agent.api.health_period:"),
            "{e:#?}"
        );
        let e = errs(&format!("[agent.api]\n{tail}"));
        assert!(
            e[0].contains("agent.api") && e[0].contains("bind"),
            "{e:#?}"
        );
    }

    #[test]
    fn wrong_types_and_duplicates() {
        let src = r#"[[input]]
type = "forward"
bind = 24224

[[output]]
id = "x"
type = "null"
[[output]]
id = "x"
type = "null"
"#;
        let e = errs(src);
        assert!(
            e.iter().any(|l| l.starts_with("f.toml:3: input[0].bind:")),
            "{e:#?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("f.toml:9: output[1].id: id `x` is used twice")),
            "{e:#?}"
        );
    }

    #[test]
    fn ids_are_unique_among_their_kind() {
        // a relay: forward in, forward out, both `forward.0` by default
        let src = r#"
[[input]]
type = "forward"
bind = "127.0.0.1:24224"

[[output]]
type = "forward"
servers = [{ host = "127.0.0.1", port = 24225 }]
"#;
        assert_eq!(errs(src), Vec::<String>::new());
        let dup =
            "[[output]]\nid = \"x\"\ntype = \"null\"\n[[output]]\nid = \"x\"\ntype = \"null\"\n";
        assert!(errs(dup).iter().any(|l| l.contains("id `x` is used twice")));
    }

    #[test]
    fn syntax_errors_and_unknown_sections() {
        let e =
            errs("[[input]]\ntype = \"forward\"\n[[output]]\ntype = \"null\"\n[agnet]\nx = 1\n");
        assert!(
            e.iter()
                .any(|l| l.starts_with("f.toml:5: agnet: unknown section")),
            "{e:#?}"
        );
        let e = errs("[[input]\ntype=");
        assert!(
            e.iter().any(|l| l.starts_with("f.toml:1: syntax:")),
            "{e:#?}"
        );
    }
}

#[cfg(test)]
#[path = "config_fuzz.rs"]
mod fuzz;
