//! The file output: JSON Lines appended to files whose path is a template
//! (`${tag}`, `${tag[N]}`, `${hostname}`, `${record.x}`, strftime of the
//! event time), optionally gzip-compressed (one gzip member per chunk, which
//! every gzip reader reads as one stream); or, with `format = "parquet"`,
//! one typed Parquet file per chunk (the path holds `${chunk_id}`; written
//! beside and renamed into place, so a retried chunk replaces its file).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use fuwa_api::memory::{grown, size, GZIP_STATE, JSON_OF_MSGPACK, MAX_RECORD, MIB};
use fuwa_api::{
    BuildContext, Chunk, ConfigError, ConfigSection, MemoryBound, MemoryEnv, Metric, Output,
    OutputError, Partitioner,
};
use fuwa_render::{parse_timezone, JsonLines, Template, TimeFormat};
use serde::Deserialize;
use tracing::warn;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    path: String,
    tag_key: Option<String>,
    time_key: Option<String>,
    #[serde(default = "rfc3339")]
    time_format: String,
    /// default: none, or snappy for Parquet
    compress: Option<Compress>,
    #[serde(default)]
    format: Format,
    /// Parquet: column types by field name
    schema: Option<std::collections::BTreeMap<String, String>>,
    /// Parquet: rows per row group
    row_group_size: Option<usize>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Compress {
    None,
    Gzip,
    /// Parquet only
    Zstd,
    /// Parquet only
    Snappy,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Json,
    Parquet,
}

/// Rows per Parquet row group unless `row_group_size` says otherwise.
const DEFAULT_ROW_GROUP_SIZE: usize = 50_000;

fn rfc3339() -> String {
    "rfc3339".into()
}

pub struct FileOutput {
    id: String,
    template: Arc<Template>,
    lines: Arc<JsonLines>,
    compress: Compress,
    parquet: Option<Arc<fuwa_parquet::ParquetEncoder>>,
}

pub fn build(
    section: &ConfigSection<'_>,
    ctx: &BuildContext,
) -> Result<Arc<dyn Output>, Vec<ConfigError>> {
    let cfg: FileConfig = section.parse().map_err(|e| vec![e])?;
    let tz = parse_timezone(&ctx.timezone).map_err(|e| vec![section.error("timezone", e)])?;
    let mut errors = Vec::new();
    let template =
        Template::parse(&cfg.path, tz, &ctx.hostname).map_err(|e| section.error("path", e));
    let time_format =
        TimeFormat::parse(&cfg.time_format, tz).map_err(|e| section.error("time_format", e));
    let parquet = cfg.format == Format::Parquet;
    if let Ok(t) = &template {
        let per_chunk = t.as_str().contains("${chunk_id}");
        if t.as_str().contains("${uuid}") {
            errors.push(section.error("path", "${uuid} is for object keys, not file paths"));
        }
        if per_chunk && !parquet {
            errors.push(section.error(
                "path",
                "${chunk_id} is for format = \"parquet\" (one file per chunk); JSON Lines are appended",
            ));
        }
        if !per_chunk && parquet {
            errors.push(section.error(
                "path",
                "a Parquet file per chunk: the path must contain ${chunk_id}",
            ));
        }
        if cfg.path.ends_with('/') {
            errors.push(section.error("path", "the path names a directory; it must name a file"));
        }
    }
    let compress = cfg.compress.unwrap_or(if parquet {
        Compress::Snappy
    } else {
        Compress::None
    });
    if !parquet && matches!(compress, Compress::Zstd | Compress::Snappy) {
        errors.push(section.error(
            "compress",
            "JSON Lines are none or gzip; zstd and snappy are for format = \"parquet\"",
        ));
    }
    for (k, set) in [
        ("schema", cfg.schema.is_some()),
        ("row_group_size", cfg.row_group_size.is_some()),
    ] {
        if set && !parquet {
            errors.push(section.error(k, "only for format = \"parquet\""));
        }
    }
    if cfg.row_group_size == Some(0) {
        errors.push(section.error("row_group_size", "at least 1 row"));
    }
    let mut declared = Vec::new();
    for (name, ty) in cfg.schema.iter().flatten() {
        match fuwa_parquet::ColumnType::parse(ty) {
            Ok(t) => declared.push((name.clone(), t)),
            Err(m) => errors.push(section.error(&format!("schema.{name}"), m)),
        }
    }
    let time_key = match (cfg.time_key, parquet) {
        (None, true) => Some("time".to_string()),
        (k, _) => k,
    };
    let encoder = if parquet {
        let settings = fuwa_parquet::Settings {
            codec: match compress {
                Compress::Snappy => fuwa_parquet::Codec::Snappy,
                Compress::Zstd => fuwa_parquet::Codec::Zstd,
                Compress::Gzip => fuwa_parquet::Codec::Gzip,
                Compress::None => fuwa_parquet::Codec::None,
            },
            level: None,
            row_group_size: cfg.row_group_size.unwrap_or(DEFAULT_ROW_GROUP_SIZE),
            time_key: time_key.clone().unwrap_or_default(),
            tag_key: cfg.tag_key.clone(),
        };
        let path = fuwa_parquet::schema_path(&ctx.data_dir, &ctx.id);
        match fuwa_parquet::ParquetEncoder::new(settings, &declared, Some(path)) {
            Ok(e) => Some(Arc::new(e)),
            Err(m) => {
                errors.push(section.error("format", m));
                None
            }
        }
    } else {
        None
    };
    match (template, time_format) {
        (Ok(t), Ok(tf)) if errors.is_empty() => Ok(Arc::new(FileOutput {
            id: ctx.id.clone(),
            template: Arc::new(t),
            lines: Arc::new(JsonLines {
                tag_key: cfg.tag_key,
                time_key,
                time_format: tf,
            }),
            compress,
            parquet: encoder,
        })),
        (t, tf) => {
            errors.extend(t.err());
            errors.extend(tf.err());
            Err(errors)
        }
    }
}

#[async_trait]
impl Output for FileOutput {
    /// JSON Lines: a 1 MiB piece and the JSON of the entry that filled it
    /// (a record counted up to 1 MiB), in a buffer that may have doubled;
    /// gzip adds its deflate state. Parquet: the chunk's row groups and the
    /// encoded pieces.
    fn memory_bound(&self, env: &MemoryEnv) -> MemoryBound {
        let c = env.chunk_limit_size;
        let mut b = MemoryBound::new();
        if self.parquet.is_some() {
            b.add(
                format!(
                    "a row group's values and pages (3 × chunk_limit_size {})",
                    size(c)
                ),
                c.saturating_mul(3),
            );
            b.add("encoded pieces 2 × 1 MiB", 2 * MIB);
            return b;
        }
        b.add(
            format!(
                "render buffer: 1 MiB piece + an entry as JSON ({JSON_OF_MSGPACK} × a record up to {}), grown ×2",
                size(MAX_RECORD)
            ),
            grown(MIB + JSON_OF_MSGPACK * MAX_RECORD),
        );
        if self.compress == Compress::Gzip {
            b.add("gzip state 320 KiB", GZIP_STATE);
        }
        b
    }

    fn partitioner(&self) -> Option<Arc<dyn Partitioner>> {
        Some(self.template.clone())
    }

    fn metrics(&self) -> Vec<Metric> {
        self.parquet
            .as_ref()
            .map(|p| p.metrics())
            .unwrap_or_default()
    }

    fn upstream_types(&self, types: &[(String, &'static str)]) {
        if let Some(p) = &self.parquet {
            let t: Vec<_> = types
                .iter()
                .filter_map(|(n, t)| {
                    fuwa_parquet::ColumnType::of_types_filter(t).map(|t| (n.clone(), t))
                })
                .collect();
            p.declare_upstream(&t);
        }
    }

    async fn write(&self, chunk: &Chunk) -> Result<(), OutputError> {
        let chunk = chunk.clone();
        let lines = self.lines.clone();
        let compress = self.compress;
        let id = self.id.clone();
        let parquet = self.parquet.clone();
        tokio::task::spawn_blocking(move || match parquet {
            Some(p) => write_parquet(&id, &chunk, &p),
            None => write_blocking(&id, &chunk, &lines, compress),
        })
        .await
        .map_err(|e| {
            // a panic would come back on every retry of this chunk
            if e.is_panic() {
                OutputError::Fatal(format!("writer task panicked: {e}"))
            } else {
                OutputError::Retryable(format!("writer task failed: {e}"))
            }
        })?
    }
}

/// Renders and writes in pieces of about 1 MiB, so memory stays small
/// whatever the chunk size. A failure part-way leaves the lines written so
/// far in the file; the retry writes the whole chunk again (at-least-once).
fn write_blocking(
    id: &str,
    chunk: &Chunk,
    lines: &JsonLines,
    compress: Compress,
) -> Result<(), OutputError> {
    const PIECE: usize = 1 << 20;
    // a key rendered by an older version (a chunk buffered then, a dead
    // letter replayed) may still hold a component over 255 bytes
    let key = fuwa_render::template::shorten_path(&chunk.key);
    let path = Path::new(&key);
    let open = || OpenOptions::new().create(true).append(true).open(path);
    // no mkdir per chunk for a file that is already there: the directory
    // is created (and its errors classified as before: a file where the
    // output's directory should be is retried) only when the open fails
    let file = match open() {
        Err(_) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    classify(e, &format!("cannot create directory {}", dir.display()))
                })?;
            }
            open()
        }
        r => r,
    }
    .map_err(|e| classify(e, &format!("cannot open {}", path.display())))?;
    let werr = |e: std::io::Error| classify(e, &format!("cannot write {}", path.display()));
    let mut sink = match compress {
        Compress::Gzip => Sink::Gzip(Box::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::default(),
        ))),
        _ => Sink::Plain(file),
    };
    let mut buf = Vec::with_capacity(PIECE + PIECE / 4);
    let mut bad = 0;
    // a segment is one input batch (a forward message may be the whole
    // chunk): rendered until a piece is full, written, then on from there,
    // so the buffer holds a piece and one entry's JSON, not a segment's
    for seg in &chunk.segments {
        let mut pos = 0;
        while pos < seg.len() {
            match lines.write_segment_from(&chunk.tag, seg, pos, &mut buf, PIECE) {
                Some(next) => pos = next,
                None => {
                    bad += 1;
                    pos = seg.len();
                }
            }
            if buf.len() >= PIECE {
                sink.write_all(&buf).map_err(werr)?;
                buf.clear();
            }
        }
    }
    sink.write_all(&buf).map_err(werr)?;
    sink.finish().map_err(werr)?;
    if bad > 0 {
        warn!(output = %id, bad, path = %path.display(), "entries that could not be rendered as JSON were skipped");
    }
    Ok(())
}

/// One Parquet file per chunk at the path with `${chunk_id}` filled:
/// written to `<path>.tmp` and renamed over the path, so a retry (or a
/// replay after a crash) replaces the file instead of adding a second one,
/// and a reader never sees half a file.
fn write_parquet(
    id: &str,
    chunk: &Chunk,
    enc: &fuwa_parquet::ParquetEncoder,
) -> Result<(), OutputError> {
    const PIECE: usize = 1 << 20;
    let key = Template::finish(
        &fuwa_render::template::shorten_path(&chunk.key),
        &chunk.id,
        "",
    );
    let path = Path::new(&key);
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .map_err(|e| classify(e, &format!("cannot create directory {}", dir.display())))?;
        }
    }
    let tmp = format!("{key}.tmp");
    let mut file =
        std::fs::File::create(&tmp).map_err(|e| classify(e, &format!("cannot create {tmp}")))?;
    let mut werr = None;
    let stats = enc
        .encode(chunk, PIECE, |piece| match file.write_all(&piece) {
            Ok(()) => true,
            Err(e) => {
                werr = Some(e);
                false
            }
        })
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            OutputError::Fatal(format!("{}: {e}", path.display()))
        })?;
    if let Some(e) = werr {
        let _ = std::fs::remove_file(&tmp);
        return Err(classify(e, &format!("cannot write {tmp}")));
    }
    file.sync_all()
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| classify(e, &format!("cannot write {}", path.display())))?;
    if stats.bad > 0 {
        warn!(output = %id, bad = stats.bad, path = %path.display(), "entries that are not records were skipped");
    }
    Ok(())
}

enum Sink {
    Plain(std::fs::File),
    Gzip(Box<flate2::write::GzEncoder<std::fs::File>>),
}

impl Sink {
    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Plain(f) => f.write_all(b),
            Sink::Gzip(g) => g.write_all(b),
        }
    }

    /// Ends the gzip member (its trailer) when compressing.
    fn finish(self) -> std::io::Result<()> {
        match self {
            Sink::Plain(_) => Ok(()),
            Sink::Gzip(g) => g.finish().map(|_| ()),
        }
    }
}

/// Errors that no retry of the same chunk can fix are `Fatal` (the chunk is
/// dead-lettered at once and the output goes on with the others): a path too
/// long or invalid (ENAMETOOLONG, EINVAL, ELOOP), a directory where the file
/// should be or a file where a directory should be (EISDIR, ENOTDIR), no
/// permission, a read-only file system. The rest (disk full, I/O errors, a
/// file where the output's directory should be: an operator can fix those
/// while the chunk waits) is `Retryable`.
fn classify(e: std::io::Error, what: &str) -> OutputError {
    use std::io::ErrorKind::*;
    const ELOOP: i32 = 40;
    let permanent = matches!(
        e.kind(),
        PermissionDenied
            | IsADirectory
            | NotADirectory
            | InvalidInput
            | InvalidFilename
            | ReadOnlyFilesystem
    ) || e.raw_os_error() == Some(ELOOP);
    if permanent {
        OutputError::Fatal(format!("{what}: {e}"))
    } else {
        OutputError::Retryable(format!("{what}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_no_retry_can_fix_are_fatal() {
        let long = std::env::temp_dir().join("x".repeat(300));
        let e = std::fs::File::open(&long).unwrap_err();
        assert!(
            matches!(classify(e, "open"), OutputError::Fatal(_)),
            "ENAMETOOLONG"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let e = std::fs::File::open(f.join("below")).unwrap_err();
        assert!(
            matches!(classify(e, "open"), OutputError::Fatal(_)),
            "ENOTDIR"
        );
        let e = OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.path())
            .unwrap_err();
        assert!(
            matches!(classify(e, "open"), OutputError::Fatal(_)),
            "EISDIR"
        );
        for kind in [
            std::io::ErrorKind::StorageFull,
            std::io::ErrorKind::Interrupted,
        ] {
            assert!(matches!(
                classify(std::io::Error::from(kind), "write"),
                OutputError::Retryable(_)
            ));
        }
    }
}
