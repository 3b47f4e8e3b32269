//! `load_str`: TOML text to a checked [`Config`]. The three plugin sections
//! (`[[input]]`, `[[filter]]`, `[[output]]`) go through one loop,
//! [`build_all`], driven by a [`Kind`] that says what the engine reads
//! itself in that section (`match`, `buffer`) and which plugin table builds
//! the rest.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;

use fuwa_api::{BuildContext, ConfigError, ConfigSection, TagPattern};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{AgentConfig, Config, ConfigErrors, FilterSpec, InputSpec, OutputSpec};
use crate::buffer::config::BufferConfig;
use crate::plugins::{self, Factory};

/// One kind of plugin section and what the engine takes out of it before
/// the plugin sees the rest.
struct Kind<P: 'static> {
    /// `input`, `filter` or `output`: the TOML array's name
    name: &'static str,
    plugins: &'static [(&'static str, Factory<P>)],
    /// reads `match` (default `**`)
    matches: bool,
    /// reads the `buffer` table (checked by `BufferConfig::validate`)
    buffered: bool,
}

const INPUTS: Kind<Box<dyn fuwa_api::Input>> = Kind {
    name: "input",
    plugins: plugins::INPUTS,
    matches: false,
    buffered: false,
};
const FILTERS: Kind<Box<dyn fuwa_api::Filter>> = Kind {
    name: "filter",
    plugins: plugins::FILTERS,
    matches: true,
    buffered: false,
};
const OUTPUTS: Kind<std::sync::Arc<dyn fuwa_api::Output>> = Kind {
    name: "output",
    plugins: plugins::OUTPUTS,
    matches: true,
    buffered: true,
};

/// A plugin built from its section, with what the engine read beside it.
struct Built<P> {
    id: String,
    kind: String,
    /// `**` where the kind has no `match`
    pattern: TagPattern,
    /// the default where the kind has no `buffer`
    buffer: BufferConfig,
    plugin: P,
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
    // the tables of [[input]], [[filter]], [[output]], in that order
    let kinds = [INPUTS.name, FILTERS.name, OUTPUTS.name];
    let mut tables: [Vec<Spanned<DeValue<'_>>>; 3] = Default::default();
    for (k, v) in doc.iter() {
        let key = k.get_ref().as_ref();
        if key == "agent" {
            match ConfigSection::new("agent", v.clone()).parse_all::<AgentConfig>() {
                Ok(a) => agent = a,
                Err(es) => errors.extend(es),
            }
        } else if let Some(i) = kinds.iter().position(|n| *n == key) {
            match v.get_ref() {
                DeValue::Array(items) => tables[i].extend(items.iter().cloned()),
                _ => errors.push(ConfigError {
                    span: Some(k.span()),
                    key: key.into(),
                    message: format!("write each one as [[{key}]] (an array of tables)"),
                }),
            }
        } else {
            errors.push(ConfigError {
                span: Some(k.span()),
                key: key.to_string(),
                message: "unknown section (expected agent, input, filter or output)".into(),
            });
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
    for (i, what) in [
        (0, "no [[input]]: nothing would be read"),
        (2, "no [[output]]: nothing would be written"),
    ] {
        if tables[i].is_empty() {
            errors.push(ConfigError {
                span: Some(doc_span.start..doc_span.start),
                key: kinds[i].into(),
                message: what.into(),
            });
        }
    }

    let ctx = BuildContext {
        id: String::new(),
        hostname: hostname.clone(),
        timezone: if tz_ok {
            agent.timezone.clone()
        } else {
            "UTC".into()
        },
        data_dir: agent.data_dir.clone(),
    };
    let [input_tables, filter_tables, output_tables] = tables;
    let inputs = build_all(&INPUTS, input_tables, &ctx, &mut errors);
    let filters = build_all(&FILTERS, filter_tables, &ctx, &mut errors);
    let outputs = build_all(&OUTPUTS, output_tables, &ctx, &mut errors);

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
    let cfg = Config {
        agent,
        hostname,
        data_dir_explicit,
        inputs: inputs
            .into_iter()
            .map(|b| InputSpec {
                id: b.id,
                kind: b.kind,
                plugin: b.plugin,
            })
            .collect(),
        filters: filters
            .into_iter()
            .map(|b| FilterSpec {
                id: b.id,
                pattern: b.pattern,
                plugin: b.plugin,
            })
            .collect(),
        outputs: outputs
            .into_iter()
            .map(|b| OutputSpec {
                id: b.id,
                kind: b.kind,
                pattern: b.pattern,
                plugin: b.plugin,
                buffer: b.buffer,
            })
            .collect(),
    };
    share_column_types(&cfg.filters, &cfg.outputs);
    Ok(cfg)
}

/// Tells each output the column types the `types` filters on its tags give
/// (the Parquet schema reads them): filters matching one of the output's
/// literal tags, or for an open pattern the same pattern or `**`.
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

/// Builds every section of one kind. Ids are unique among their kind: a
/// relay's forward input and forward output may both keep the default
/// `forward.0`. A section with a problem is still handed to its plugin, so
/// that all of its problems are reported at once.
fn build_all<P>(
    kind: &Kind<P>,
    tables: Vec<Spanned<DeValue<'_>>>,
    ctx: &BuildContext,
    errors: &mut Vec<ConfigError>,
) -> Vec<Built<P>> {
    let mut ids = HashSet::new();
    let mut built = Vec::new();
    for (i, t) in tables.into_iter().enumerate() {
        let name = format!("{}[{i}]", kind.name);
        let Some(common) = take_common(t, &name, kind, errors) else {
            continue;
        };
        let id = common
            .id
            .clone()
            .unwrap_or_else(|| format!("{}.{i}", common.kind));
        check_id(&id, &common, &mut ids, errors);
        let buffer = if kind.buffered {
            buffer_of(&common, errors)
        } else {
            Some(BufferConfig::default())
        };
        let Some(factory) = plugins::find(kind.plugins, &common.kind) else {
            errors.push(ConfigError {
                span: common.kind_span.clone(),
                key: format!("{name}.type"),
                message: format!(
                    "unknown {} type `{}` (known: {})",
                    kind.name,
                    common.kind,
                    plugins::names(kind.plugins)
                ),
            });
            continue;
        };
        let ctx = BuildContext {
            id: id.clone(),
            ..ctx.clone()
        };
        match (factory(&common.section, &ctx), common.pattern, buffer) {
            (Ok(plugin), Some(pattern), Some(buffer)) => built.push(Built {
                id,
                kind: common.kind,
                pattern,
                buffer,
                plugin,
            }),
            (Err(es), _, _) => errors.extend(es),
            _ => {}
        }
    }
    built
}

/// The output's `[output.buffer]` (or the defaults), checked by
/// `BufferConfig::validate`; None when it does not parse.
fn buffer_of(common: &Common<'_>, errors: &mut Vec<ConfigError>) -> Option<BufferConfig> {
    let section = common
        .buffer
        .clone()
        .map(|b| ConfigSection::new(format!("{}.buffer", common.section.name), b));
    let cfg = match &section {
        None => BufferConfig::default(),
        Some(s) => match s.parse_all::<BufferConfig>() {
            Ok(cfg) => cfg,
            Err(es) => {
                errors.extend(es);
                return None;
            }
        },
    };
    for (key, msg) in cfg.validate() {
        errors.push(match &section {
            Some(s) => s.error(key, msg),
            None => common.section.error("buffer", msg),
        });
    }
    Some(cfg)
}

struct Common<'a> {
    kind: String,
    kind_span: Option<Range<usize>>,
    id: Option<String>,
    id_span: Option<Range<usize>>,
    /// None: `match` did not parse
    pattern: Option<TagPattern>,
    buffer: Option<Spanned<DeValue<'a>>>,
    section: ConfigSection<'a>,
}

/// Takes the engine's keys (`type`, `id`, and where the kind has them
/// `match` and `buffer`) out of a plugin table; what is left belongs to the
/// plugin.
fn take_common<'a, P>(
    t: Spanned<DeValue<'a>>,
    name: &str,
    kind: &Kind<P>,
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
    let kind_key = string_key("type", &mut table);
    let id = string_key("id", &mut table);
    let pattern_src = if kind.matches {
        string_key("match", &mut table)
    } else {
        None
    };
    let buffer = if kind.buffered {
        table.remove("buffer")
    } else {
        None
    };
    let Some((kind_name, kind_span)) = kind_key else {
        errors.push(ConfigError {
            span: Some(span),
            key: format!("{name}.type"),
            message: "missing: every section needs a type".into(),
        });
        return None;
    };
    let (src, pspan) = pattern_src.unwrap_or_else(|| ("**".to_string(), span.clone()));
    let pattern = match TagPattern::parse(&src) {
        Ok(p) => Some(p),
        Err(e) => {
            errors.push(ConfigError {
                span: Some(pspan),
                key: format!("{name}.match"),
                message: e,
            });
            None
        }
    };
    let (id, id_span) = match id {
        Some((i, s)) => (Some(i), Some(s)),
        None => (None, None),
    };
    Some(Common {
        kind: kind_name,
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

fn line_of(src: &str, span: &Option<Range<usize>>) -> usize {
    match span {
        Some(s) => src[..s.start.min(src.len())].matches('\n').count() + 1,
        None => 1,
    }
}
