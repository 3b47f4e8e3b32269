//! The `kinesis_streams` section: its keys, their defaults, and the
//! checks that need no network.

use fuwa_api::{BuildContext, ByteSize, ConfigError, ConfigSection, HumanDuration};
use fuwa_aws::AwsSettings;
use fuwa_render::{parse_timezone, JsonLines, TimeFormat};
use serde::Deserialize;

use crate::key::{self, KeyTemplate};
use crate::records::{Format, Renderer};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KinesisConfig {
    pub(crate) stream_name: String,
    pub(crate) region: Option<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) role_arn: Option<String>,
    pub(crate) role_session_name: Option<String>,
    pub(crate) external_id: Option<String>,
    pub(crate) sts_endpoint: Option<String>,
    pub(crate) sts_region: Option<String>,
    pub(crate) profile: Option<String>,
    pub(crate) proxy: Option<String>,
    pub(crate) partition_key: Option<String>,
    pub(crate) explicit_hash_key: Option<String>,
    #[serde(default)]
    pub(crate) aggregation: bool,
    #[serde(default = "json")]
    pub(crate) format: String,
    pub(crate) log_key: Option<String>,
    pub(crate) append_newline: Option<bool>,
    pub(crate) time_key: Option<String>,
    #[serde(default = "rfc3339")]
    pub(crate) time_format: String,
    pub(crate) tag_key: Option<String>,
    pub(crate) records_per_second: Option<u64>,
    pub(crate) bytes_per_second: Option<ByteSize>,
    #[serde(default = "fuwa_aws::batch::defaults::max_in_flight")]
    pub(crate) max_in_flight: usize,
    #[serde(default = "fuwa_aws::batch::defaults::retry_attempts")]
    pub(crate) retry_attempts: u32,
    #[serde(default = "fuwa_aws::batch::defaults::retry_timeout")]
    pub(crate) retry_timeout: HumanDuration,
    #[serde(default = "fuwa_aws::batch::defaults::timeout")]
    pub(crate) timeout: HumanDuration,
    #[serde(default = "fuwa_aws::batch::defaults::connect_timeout")]
    pub(crate) connect_timeout: HumanDuration,
}

fn json() -> String {
    "json".into()
}
fn rfc3339() -> String {
    "rfc3339".into()
}

/// A checked section.
pub(crate) struct Settings {
    pub cfg: KinesisConfig,
    pub renderer: Renderer,
    pub aws: AwsSettings,
}

pub(crate) fn settings(
    section: &ConfigSection<'_>,
    ctx: &BuildContext,
) -> Result<Settings, Vec<ConfigError>> {
    let cfg: KinesisConfig = section.parse().map_err(|e| vec![e])?;
    let tz = parse_timezone(&ctx.timezone).map_err(|e| vec![section.error("timezone", e)])?;
    let mut errors = Vec::new();
    let mut err = |k: &str, m: String| errors.push(section.error(k, m));
    if !fuwa_aws::batch::is_stream_name(&cfg.stream_name, 128) {
        err(
            "stream_name",
            "a stream name: 1 to 128 of A-Z a-z 0-9 _ . - (not an ARN)".into(),
        );
    }
    let key = match cfg
        .partition_key
        .as_deref()
        .map(|k| KeyTemplate::parse(k, &ctx.hostname))
    {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            err("partition_key", e);
            None
        }
    };
    if let Some(h) = &cfg.explicit_hash_key {
        if let Err(e) = key::check_hash_key(h) {
            err("explicit_hash_key", e);
        }
    }
    for (k, m) in fuwa_aws::batch::check_keys(
        cfg.max_in_flight,
        cfg.records_per_second,
        cfg.bytes_per_second.map(|b| b.0),
        cfg.retry_attempts,
    ) {
        err(k, m);
    }
    let time_format = match TimeFormat::parse(&cfg.time_format, tz) {
        Ok(t) => Some(t),
        Err(e) => {
            err("time_format", e);
            None
        }
    };
    let format = match (cfg.format.as_str(), &cfg.log_key) {
        (_, Some(k)) if k.is_empty() => {
            err("log_key", "the name of a record key".into());
            None
        }
        ("json", Some(k)) => {
            if cfg.tag_key.is_some() || cfg.time_key.is_some() {
                err(
                    "log_key",
                    "sends one key's value as it is: tag_key / time_key cannot be added to it"
                        .into(),
                );
            }
            Some(Format::LogKey(k.clone()))
        }
        ("json", None) => time_format.clone().map(|time_format| {
            Format::Json(JsonLines {
                tag_key: cfg.tag_key.clone(),
                time_key: cfg.time_key.clone(),
                time_format,
            })
        }),
        ("msgpack", None) => {
            if cfg.append_newline == Some(true) {
                err(
                    "append_newline",
                    "format = \"msgpack\" records are self-delimiting: no newline is added".into(),
                );
            }
            time_format.clone().map(|time_format| Format::Msgpack {
                tag_key: cfg.tag_key.clone(),
                time_key: cfg.time_key.clone(),
                time_format,
            })
        }
        ("msgpack", Some(_)) => {
            err("log_key", "works with format = \"json\" only".into());
            None
        }
        (f, _) => {
            err("format", format!("`{f}`: \"json\" or \"msgpack\""));
            None
        }
    };
    let append_newline = cfg
        .append_newline
        .unwrap_or(!matches!(format, Some(Format::Msgpack { .. })));
    let aws = fuwa_aws::aws_settings!(cfg);
    for (k, m) in aws.validate() {
        err(k, m);
    }
    let (Some(format), true) = (format, errors.is_empty()) else {
        return Err(errors);
    };
    Ok(Settings {
        renderer: Renderer {
            format,
            append_newline,
            key,
            explicit_hash_key: cfg.explicit_hash_key.clone(),
            aggregation: cfg.aggregation,
        },
        cfg,
        aws,
    })
}
