//! The S3 output: one object per chunk, under a key rendered from a
//! template (`${tag}`, `${tag[N]}`, `${hostname}`, `${record.x}`,
//! `${chunk_id}`, `${uuid}`, strftime of the event time in the agent's time
//! zone), JSON Lines or msgpack (gzip/zstd/none), or typed Parquet
//! (snappy/zstd/gzip/none inside the file). The key depends only on
//! the chunk, so a retried chunk overwrites its object instead of adding a
//! duplicate. PutObject below `multipart_threshold`, multipart above.
//!
//! AWS setup (credentials, region, endpoint, assume-role) and error
//! classification come from `fuwa-aws`; the client is built on the first
//! write, so the agent starts even when S3 is unreachable.

mod encode;
mod key;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::RequestChecksumCalculation;
use aws_sdk_s3::types::{ServerSideEncryption, StorageClass};
use aws_sdk_s3::Client;
use fuwa_api::memory::{grown, size, zstd_state, GZIP_STATE, JSON_OF_MSGPACK, MAX_RECORD};
use fuwa_api::{
    BuildContext, ByteSize, Chunk, ConfigError, ConfigSection, HumanDuration, MemoryBound,
    MemoryEnv, Metric, Output, OutputError, Partitioner,
};
use fuwa_aws::LazyClient;
use fuwa_render::{parse_timezone, JsonLines, Template, TimeFormat};
use serde::Deserialize;

pub use encode::{Compression, Format};
pub use key::{object_key, uuid_for};

const MIB: u64 = 1 << 20;
/// S3's smallest part (all but the last) and largest part
const MIN_PART: u64 = 5 * MIB;
const MAX_PART: u64 = 5 * 1024 * MIB;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct S3Config {
    bucket: String,
    key: String,
    region: Option<String>,
    endpoint: Option<String>,
    #[serde(default)]
    force_path_style: bool,
    #[serde(default)]
    format: Format,
    /// default: gzip, or snappy for Parquet
    compression: Option<Compression>,
    compression_level: Option<i32>,
    /// Parquet: column types by field name
    schema: Option<std::collections::BTreeMap<String, String>>,
    /// Parquet: rows per row group
    row_group_size: Option<usize>,
    time_key: Option<String>,
    #[serde(default = "rfc3339")]
    time_format: String,
    tag_key: Option<String>,
    storage_class: Option<String>,
    server_side_encryption: Option<String>,
    sse_kms_key_id: Option<String>,
    role_arn: Option<String>,
    role_session_name: Option<String>,
    external_id: Option<String>,
    sts_endpoint: Option<String>,
    sts_region: Option<String>,
    profile: Option<String>,
    proxy: Option<String>,
    #[serde(default = "default_threshold")]
    multipart_threshold: ByteSize,
    #[serde(default = "default_part_size")]
    part_size: ByteSize,
    #[serde(default = "default_timeout")]
    timeout: HumanDuration,
    #[serde(default = "default_connect_timeout")]
    connect_timeout: HumanDuration,
}

fn rfc3339() -> String {
    "rfc3339".into()
}
fn default_threshold() -> ByteSize {
    ByteSize(16 * MIB)
}
fn default_part_size() -> ByteSize {
    ByteSize(8 * MIB)
}
fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

/// Rows per Parquet row group unless `row_group_size` says otherwise.
pub const DEFAULT_ROW_GROUP_SIZE: usize = 50_000;
/// The event time column of Parquet objects unless `time_key` says otherwise.
pub const DEFAULT_PARQUET_TIME_KEY: &str = "time";

/// What an S3 output writes, as `fuwa athena-ddl` needs it.
pub struct Layout<'a> {
    pub bucket: &'a str,
    /// the key template as configured
    pub key: &'a str,
    pub format: Format,
    pub compression: Compression,
    pub time_key: Option<&'a str>,
    pub time_format: &'a str,
    pub tag_key: Option<&'a str>,
    /// Parquet: the columns known now (time, tag, declared, persisted)
    pub parquet: Option<fuwa_parquet::Schema>,
}

pub struct S3Output {
    id: String,
    bucket: String,
    time_format: String,
    template: Arc<Template>,
    encoder: Arc<encode::Encoder>,
    storage_class: Option<StorageClass>,
    sse: Option<ServerSideEncryption>,
    sse_kms_key_id: Option<String>,
    multipart_threshold: usize,
    part_size: usize,
    client: LazyClient<Client>,
}

pub fn build(
    section: &ConfigSection<'_>,
    ctx: &BuildContext,
) -> Result<Arc<dyn Output>, Vec<ConfigError>> {
    let cfg: S3Config = section.parse().map_err(|e| vec![e])?;
    let tz = parse_timezone(&ctx.timezone).map_err(|e| vec![section.error("timezone", e)])?;
    let mut errors = Vec::new();
    let mut err = |k: &str, m: String| errors.push(section.error(k, m));

    if cfg.bucket.is_empty() || cfg.bucket.contains('/') {
        err(
            "bucket",
            "a bucket name only (no `s3://`, no slashes)".into(),
        );
    }
    let template = match Template::parse(&cfg.key, tz, &ctx.hostname) {
        Ok(t) => Some(t),
        Err(e) => {
            err("key", e);
            None
        }
    };
    if !(cfg.key.contains("${chunk_id}") || cfg.key.contains("${uuid}")) {
        err(
            "key",
            "the key must contain ${chunk_id} or ${uuid}, else chunks of one partition overwrite each other".into(),
        );
    }
    if cfg.key.starts_with('/') {
        err("key", "an S3 key does not start with `/`".into());
    }
    let time_format = match TimeFormat::parse(&cfg.time_format, tz) {
        Ok(t) => Some(t),
        Err(e) => {
            err("time_format", e);
            None
        }
    };
    let parquet = cfg.format == Format::Parquet;
    let compression = cfg.compression.unwrap_or(if parquet {
        Compression::Snappy
    } else {
        Compression::Gzip
    });
    let zstd_min = if parquet { 1 } else { -7 };
    match (compression, cfg.compression_level) {
        (Compression::Snappy, _) if !parquet => err(
            "compression",
            "snappy is for format = \"parquet\"; JSON and msgpack objects are gzip, zstd or none"
                .into(),
        ),
        (Compression::Gzip, Some(l)) if !(0..=9).contains(&l) => {
            err("compression_level", format!("{l}: gzip levels are 0 to 9"))
        }
        (Compression::Zstd, Some(l)) if !(zstd_min..=22).contains(&l) => err(
            "compression_level",
            format!("{l}: zstd levels are {zstd_min} to 22"),
        ),
        (Compression::None | Compression::Snappy, Some(_)) => err(
            "compression_level",
            "the configured compression has no levels".into(),
        ),
        _ => {}
    }
    if !parquet {
        for (k, set) in [
            ("schema", cfg.schema.is_some()),
            ("row_group_size", cfg.row_group_size.is_some()),
        ] {
            if set {
                err(k, "only for format = \"parquet\"".into());
            }
        }
    }
    if cfg.row_group_size == Some(0) {
        err("row_group_size", "at least 1 row".into());
    }
    let mut declared = Vec::new();
    for (name, ty) in cfg.schema.iter().flatten() {
        match fuwa_parquet::ColumnType::parse(ty) {
            Ok(t) => declared.push((name.clone(), t)),
            Err(m) => err(&format!("schema.{name}"), m),
        }
    }
    let time_key = match (&cfg.time_key, parquet) {
        (None, true) => Some(DEFAULT_PARQUET_TIME_KEY.to_string()),
        (k, _) => k.clone(),
    };
    let parquet_encoder = if parquet {
        let settings = fuwa_parquet::Settings {
            codec: match compression {
                Compression::Snappy => fuwa_parquet::Codec::Snappy,
                Compression::Zstd => fuwa_parquet::Codec::Zstd,
                Compression::Gzip => fuwa_parquet::Codec::Gzip,
                Compression::None => fuwa_parquet::Codec::None,
            },
            level: cfg.compression_level,
            row_group_size: cfg.row_group_size.unwrap_or(DEFAULT_ROW_GROUP_SIZE),
            time_key: time_key.clone().unwrap_or_default(),
            tag_key: cfg.tag_key.clone(),
        };
        let path = fuwa_parquet::schema_path(&ctx.data_dir, &ctx.id);
        match fuwa_parquet::ParquetEncoder::new(settings, &declared, Some(path)) {
            Ok(e) => Some(e),
            Err(m) => {
                err("format", m);
                None
            }
        }
    } else {
        None
    };
    let storage_class = cfg.storage_class.as_deref().map(StorageClass::from);
    if cfg
        .storage_class
        .as_deref()
        .is_some_and(|s| !StorageClass::values().contains(&s))
    {
        err(
            "storage_class",
            format!(
                "unknown storage class (known: {})",
                StorageClass::values().join(", ")
            ),
        );
    }
    let sse = cfg
        .server_side_encryption
        .as_deref()
        .map(ServerSideEncryption::from);
    if cfg
        .server_side_encryption
        .as_deref()
        .is_some_and(|s| !ServerSideEncryption::values().contains(&s))
    {
        err(
            "server_side_encryption",
            format!(
                "unknown (known: {})",
                ServerSideEncryption::values().join(", ")
            ),
        );
    }
    if cfg.sse_kms_key_id.is_some()
        && !matches!(
            sse,
            Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse)
        )
    {
        err(
            "sse_kms_key_id",
            "needs server_side_encryption = \"aws:kms\" (or \"aws:kms:dsse\")".into(),
        );
    }
    if !(MIN_PART..=MAX_PART).contains(&cfg.part_size.0) {
        err("part_size", "S3 parts are 5MiB to 5GiB".into());
    }
    if cfg.multipart_threshold.0 < MIN_PART || cfg.multipart_threshold.0 > MAX_PART {
        err(
            "multipart_threshold",
            "between 5MiB (S3's smallest part) and 5GiB".into(),
        );
    }
    let aws = fuwa_aws::aws_settings!(cfg);
    for (k, m) in aws.validate() {
        err(k, m);
    }
    let (Some(template), Some(time_format)) = (template, time_format) else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let force_path_style = cfg.force_path_style;
    let client = LazyClient::new(aws, move |conf| {
        let c = aws_sdk_s3::config::Builder::from(conf)
            .force_path_style(force_path_style)
            // checksums only where S3 requires them: S3-compatible stores
            // often reject the aws-chunked trailers of the newer default;
            // the SigV4 payload hash still covers every body
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .build();
        Client::from_conf(c)
    });
    Ok(Arc::new(S3Output {
        id: ctx.id.clone(),
        bucket: cfg.bucket,
        time_format: cfg.time_format,
        template: Arc::new(template),
        encoder: Arc::new(encode::Encoder {
            format: cfg.format,
            compression,
            level: cfg.compression_level,
            lines: JsonLines {
                tag_key: cfg.tag_key,
                time_key,
                time_format,
            },
            parquet: parquet_encoder,
        }),
        storage_class,
        sse,
        sse_kms_key_id: cfg.sse_kms_key_id,
        multipart_threshold: cfg.multipart_threshold.0 as usize,
        part_size: cfg.part_size.0 as usize,
        client,
    }))
}

impl S3Output {
    /// What this output writes, for `fuwa athena-ddl`.
    pub fn layout(&self) -> Layout<'_> {
        let e = &self.encoder;
        Layout {
            bucket: &self.bucket,
            key: self.template.as_str(),
            format: e.format,
            compression: e.compression,
            time_key: e.lines.time_key.as_deref(),
            time_format: &self.time_format,
            tag_key: e.lines.tag_key.as_deref(),
            parquet: e.parquet.as_ref().map(|p| p.schema()),
        }
    }

    fn classify<E>(
        &self,
        e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
        op: &str,
        key: &str,
    ) -> OutputError
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        let bucket = &self.bucket;
        let what = format!("{op} s3://{bucket}/{key}");
        fuwa_aws::classify_sdk_error(e, &what, |code| s3_hint(code, bucket))
    }
}

/// What to fix, for the S3 errors no retry fixes.
fn s3_hint(code: &str, bucket: &str) -> Option<String> {
    Some(match code {
        "AccessDenied" | "AllAccessDisabled" => format!(
            "the credentials in use need s3:PutObject and s3:AbortMultipartUpload on arn:aws:s3:::{bucket}/* (and kms:GenerateDataKey on the key when server_side_encryption = \"aws:kms\"); check the IAM policy, the bucket policy and `role_arn`"
        ),
        "NoSuchBucket" => format!(
            "bucket `{bucket}` does not exist at this endpoint/region: create it or fix `bucket`"
        ),
        "PermanentRedirect" | "AuthorizationHeaderMalformed" => format!(
            "bucket `{bucket}` is in another region: set `region` to the bucket's region"
        ),
        "InvalidStorageClass" => "fix `storage_class`".to_string(),
        c if c.starts_with("KMS.") => {
            "the KMS key cannot be used: check `sse_kms_key_id` and the key policy".to_string()
        }
        _ => return None,
    })
}

#[async_trait]
impl Output for S3Output {
    /// upload.rs: the encoder (a blocking thread) hands 1 MiB pieces
    /// through a channel of two; they gather into the object (PutObject)
    /// or the part being filled, at most the larger of multipart_threshold
    /// and part_size plus a piece, in a Vec that may have doubled; a part
    /// is sent before more pieces are taken (one part in flight).
    fn memory_bound(&self, env: &MemoryEnv) -> MemoryBound {
        let piece = upload::PIECE as u64;
        let most = (self.multipart_threshold.max(self.part_size) as u64).saturating_add(piece);
        let mut b = MemoryBound::new()
            .with(
                format!(
                    "object or part being filled: max(multipart_threshold, part_size) {} + 1 MiB, grown ×2",
                    size(most - piece)
                ),
                grown(most),
            )
            .with("3 pieces of 1 MiB (channel and encoder)", 3 * piece)
            .with("SDK client, connection and request state 1 MiB", MIB);
        let c = env.chunk_limit_size;
        match (self.encoder.format, self.encoder.compression) {
            (Format::Parquet, comp) => {
                b.add(
                    format!(
                        "Parquet row group's values and pages (3 × chunk_limit_size {})",
                        size(c)
                    ),
                    c.saturating_mul(3),
                );
                if comp == Compression::Zstd {
                    let l = self.encoder.level.unwrap_or(3);
                    b.add(format!("zstd level {l} state"), zstd_state(l));
                }
            }
            (_, comp) => {
                let raw = encode::RAW_SLICE as u64;
                b.add(
                    format!(
                        "rendered slice: 256 KiB + a run of entries ({} + a record up to 1 MiB) as JSON, grown ×2",
                        size(raw / 2)
                    ),
                    grown(raw + JSON_OF_MSGPACK * (raw / 2 + MAX_RECORD)),
                );
                match comp {
                    Compression::Gzip => b.add("gzip state 320 KiB", GZIP_STATE),
                    Compression::Zstd => {
                        let l = self.encoder.level.unwrap_or(3);
                        b.add(format!("zstd level {l} state"), zstd_state(l));
                    }
                    _ => {}
                }
            }
        }
        b
    }

    fn partitioner(&self) -> Option<Arc<dyn Partitioner>> {
        Some(self.template.clone())
    }

    fn default_flush_interval(&self) -> Duration {
        Duration::from_secs(60)
    }

    fn metrics(&self) -> Vec<Metric> {
        self.encoder
            .parquet
            .as_ref()
            .map(|p| p.metrics())
            .unwrap_or_default()
    }

    fn upstream_types(&self, types: &[(String, &'static str)]) {
        if let Some(p) = &self.encoder.parquet {
            let t: Vec<_> = types
                .iter()
                .filter_map(|(n, t)| {
                    fuwa_parquet::ColumnType::of_types_filter(t).map(|t| (n.clone(), t))
                })
                .collect();
            p.declare_upstream(&t);
        }
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    async fn write(&self, chunk: &Chunk) -> Result<(), OutputError> {
        let key = object_key(&chunk.key, &chunk.id);
        check_key(&key)?;
        let client = self.client.get().await?;
        upload::write_object(self, client, chunk, &key).await
    }
}

/// S3 refuses keys over 1,024 bytes (UTF-8): no retry makes one shorter,
/// so such a chunk is `Fatal` (dead-lettered, replayable once the key
/// template is fixed). Components are already at most 255 bytes each (see
/// `fuwa_render::template`); a key needs more than four long ones to get here.
pub const MAX_KEY_BYTES: usize = 1024;

fn check_key(key: &str) -> Result<(), OutputError> {
    if key.len() > MAX_KEY_BYTES {
        let start: String = key.chars().take(80).collect();
        return Err(OutputError::Fatal(format!(
            "object key is {} bytes, over S3's limit of {MAX_KEY_BYTES} (key starts `{start}`): shorten the key template",
            key.len()
        )));
    }
    if key.is_empty() {
        return Err(OutputError::Fatal("object key is empty".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_over_the_s3_limit_are_fatal() {
        assert!(check_key(&"k".repeat(1024)).is_ok());
        assert!(matches!(
            check_key(&"k".repeat(1025)),
            Err(OutputError::Fatal(m)) if m.contains("1025 bytes")
        ));
        // five long tag components: each cut to 255, the key still too long
        let tz = fuwa_render::parse_timezone("UTC").unwrap();
        let t =
            fuwa_render::Template::parse("${tag}/${tag}/${tag}/${tag}/${tag}/${chunk_id}", tz, "h")
                .unwrap();
        let k = t.key(&"t".repeat(2000), fuwa_api::EventTime::default(), &[0x80]);
        let full = object_key(&k, "abc");
        assert!(full.split('/').all(|c| c.len() <= 255));
        assert!(matches!(check_key(&full), Err(OutputError::Fatal(_))));
    }

    fn ctx() -> BuildContext {
        BuildContext {
            id: "s3".into(),
            hostname: "host".into(),
            timezone: "Asia/Tokyo".into(),
            data_dir: std::env::temp_dir(),
        }
    }

    fn try_build(src: &str) -> Result<Arc<dyn Output>, Vec<ConfigError>> {
        let s = ConfigSection::from_toml("output[0]", src).unwrap();
        build(&s, &ctx())
    }

    #[test]
    fn builds_without_touching_the_network() {
        // nothing listens there; building must still succeed
        let o = try_build(
            "bucket = \"b\"\nkey = \"a/%Y/${chunk_id}.json.gz\"\nendpoint = \"http://127.0.0.1:1\"\nregion = \"ap-northeast-1\"\nstorage_class = \"STANDARD_IA\"\nserver_side_encryption = \"aws:kms\"\nsse_kms_key_id = \"k\"",
        )
        .map_err(|e| format!("{e:?}"))
        .unwrap();
        assert_eq!(o.default_flush_interval(), Duration::from_secs(60));
        assert!(o.partitioner().unwrap().uses_time());
    }

    #[test]
    fn config_mistakes_are_named() {
        let e = try_build("bucket = \"b\"\nkey = \"a/%Y/x.json\"")
            .err()
            .unwrap();
        assert!(
            e.iter()
                .any(|e| e.key.ends_with("key") && e.message.contains("${chunk_id}")),
            "{e:?}"
        );
        let e = try_build("bucket = \"s3://b\"\nkey = \"${uuid}\"\nstorage_class = \"CHEAP\"\nmultipart_threshold = \"1MiB\"\nserver_side_encryption = \"rot13\"\nendpoint = \"localhost:9000\"")
            .err()
            .unwrap();
        for k in [
            "bucket",
            "storage_class",
            "multipart_threshold",
            "server_side_encryption",
            "endpoint",
        ] {
            assert!(e.iter().any(|e| e.key.ends_with(k)), "{k}: {e:?}");
        }
        let e = try_build("bucket = \"b\"\nkey = \"${uuid}\"\nbukcet = \"x\"")
            .err()
            .unwrap();
        assert!(e[0].message.contains("bukcet"), "{e:?}");
        let e = try_build("bucket = \"b\"\nkey = \"${uuid}\"\nsse_kms_key_id = \"k\"")
            .err()
            .unwrap();
        assert!(e[0].key.ends_with("sse_kms_key_id"), "{e:?}");
    }

    #[test]
    fn parquet_defaults_and_the_layout_athena_ddl_reads() {
        let o = build(
            &ConfigSection::from_toml(
                "output[0]",
                "bucket = \"b\"\nkey = \"t=${tag}/%Y/${chunk_id}.parquet\"\nformat = \"parquet\"\ntag_key = \"tag\"\nschema = { n = \"bigint\" }",
            )
            .unwrap(),
            &BuildContext {
                data_dir: std::path::PathBuf::from("/nonexistent/fuwa-test"),
                ..ctx()
            },
        )
        .map_err(|e| format!("{e:?}"))
        .unwrap();
        let s3 = o.as_any().unwrap().downcast_ref::<S3Output>().unwrap();
        let l = s3.layout();
        assert_eq!(
            (l.format, l.compression),
            (Format::Parquet, Compression::Snappy)
        );
        assert_eq!((l.time_key, l.tag_key), (Some("time"), Some("tag")));
        assert_eq!(l.key, "t=${tag}/%Y/${chunk_id}.parquet");
        let cols: Vec<(String, fuwa_parquet::ColumnType)> = l
            .parquet
            .unwrap()
            .columns
            .into_iter()
            .map(|c| (c.name, c.ty))
            .collect();
        use fuwa_parquet::ColumnType as C;
        assert_eq!(
            cols,
            [
                ("time".to_string(), C::Timestamp),
                ("tag".to_string(), C::String),
                ("n".to_string(), C::Int64)
            ]
        );
        // the types filters' types join the columns the schema leaves open
        o.upstream_types(&[("n".into(), "string"), ("ok".into(), "bool")]);
        let s = s3.layout().parquet.unwrap();
        assert_eq!(s.get("n").unwrap().ty, C::Int64);
        assert_eq!(s.get("ok").unwrap().ty, C::Bool);
        assert!(o
            .metrics()
            .iter()
            .any(|m| m.name == "fuwa_parquet_misfit_values_total"));
        let e = try_build("bucket = \"b\"\nkey = \"${uuid}\"\nformat = \"parquet\"\ncompression_level = 0\ncompression = \"zstd\"")
            .err()
            .unwrap();
        assert!(e[0].message.contains("1 to 22"), "{e:?}");
    }

    #[test]
    fn hints_say_what_to_fix() {
        assert!(s3_hint("AccessDenied", "b")
            .unwrap()
            .contains("s3:PutObject"));
        assert!(s3_hint("NoSuchBucket", "b")
            .unwrap()
            .contains("`b` does not exist"));
        assert!(s3_hint("PermanentRedirect", "b")
            .unwrap()
            .contains("region"));
        assert!(s3_hint("SlowDown", "b").is_none());
    }
}
