//! The tail input's `build`: its config section checked and turned into
//! the input (parser, multiline and footer patterns, globs).

use std::path::Path;

use fuwa_api::{BuildContext, ConfigError, ConfigSection, Input};
use fuwa_parsers::Parser;
use regex::Regex;

use crate::config::TailConfig;
use crate::TailInput;

pub fn build(
    section: &ConfigSection<'_>,
    ctx: &BuildContext,
) -> Result<Box<dyn Input>, Vec<ConfigError>> {
    let cfg: TailConfig = section.parse().map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let tz = fuwa_render::parse_timezone(&ctx.timezone).unwrap_or(chrono_tz_utc());
    let parser = match Parser::new(&cfg.parser_config(), tz) {
        Ok(p) => Some(p),
        Err((k, m)) => {
            errors.push(section.error(&k, m));
            None
        }
    };
    let kinesis_agent = match cfg.kinesis_agent_processing.as_deref() {
        Some(_) if !matches!(cfg.format, None | Some(fuwa_parsers::Format::None)) => {
            errors.push(section.error(
                "kinesis_agent_processing",
                "replaces the parser: leave `format` unset",
            ));
            None
        }
        Some(j) => fuwa_parsers::kinesis_agent::Chain::new(j)
            .map_err(|e| errors.push(section.error("kinesis_agent_processing", e)))
            .ok(),
        None => None,
    };
    let multiline = match cfg.multiline_start.as_deref().map(Regex::new) {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            errors.push(section.error("multiline_start", format!("bad regular expression: {e}")));
            None
        }
    };
    let footer = match cfg.file_footer_pattern.as_deref().map(Regex::new) {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            errors.push(section.error(
                "file_footer_pattern",
                format!("bad regular expression: {e}"),
            ));
            None
        }
    };
    let includes = cfg.path.list();
    if includes.is_empty() {
        errors.push(section.error("path", "give at least one path or glob"));
    }
    for p in &includes {
        if let Err(e) = glob::Pattern::new(p) {
            errors.push(section.error("path", format!("`{p}` is not a valid glob: {e}")));
        }
        if !Path::new(p).is_absolute()
            && !p.starts_with("./")
            && !p.starts_with("../")
            && Path::new(p).components().count() == 0
        {
            errors.push(section.error("path", format!("`{p}` names nothing")));
        }
    }
    let mut excludes = Vec::new();
    for p in &cfg.exclude_path {
        match glob::Pattern::new(p) {
            Ok(g) => excludes.push(g),
            Err(e) => errors
                .push(section.error("exclude_path", format!("`{p}` is not a valid glob: {e}"))),
        }
    }
    if !cfg.tag.contains("${") && !cfg.tag.contains('*') {
        if let Err(e) = fuwa_api::tag::check(&cfg.tag, cfg.tag_length_limit.0 as usize) {
            errors.push(section.error("tag", e.to_string()));
        }
    } else if cfg.tag.is_empty() {
        errors.push(section.error("tag", "the tag is empty"));
    }
    if let Some(t) = &cfg.parse_error_tag {
        if let Err(e) = fuwa_api::tag::check(t, cfg.tag_length_limit.0 as usize) {
            errors.push(section.error("parse_error_tag", e.to_string()));
        }
    }
    if cfg.max_line_size.0 == 0 {
        errors.push(section.error("max_line_size", "must be more than 0"));
    }
    match parser {
        Some(parser) if errors.is_empty() => Ok(Box::new(TailInput {
            positions_path: ctx.data_dir.join("tail").join(format!("{}.json", ctx.id)),
            cfg,
            parser,
            kinesis_agent,
            multiline,
            footer,
            includes,
            excludes,
            refused_tags: Default::default(),
        })),
        _ => Err(errors),
    }
}

fn chrono_tz_utc() -> fuwa_render::time::Tz {
    fuwa_render::parse_timezone("UTC").unwrap_or_default()
}
