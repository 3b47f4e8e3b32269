//! The file output: JSON Lines appended to files whose path is a template
//! (`${tag}`, `${tag[N]}`, `${hostname}`, `${record.x}`, strftime of the
//! event time), optionally gzip-compressed (one gzip member per chunk, which
//! every gzip reader reads as one stream).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use fuwa_api::{
    BuildContext, Chunk, ConfigError, ConfigSection, EventTime, Output, OutputError, Partitioner,
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
    #[serde(default)]
    compress: Compress,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Compress {
    #[default]
    None,
    Gzip,
}

fn rfc3339() -> String {
    "rfc3339".into()
}

pub struct FileOutput {
    id: String,
    template: Arc<PathTemplate>,
    lines: Arc<JsonLines>,
    compress: Compress,
}

struct PathTemplate(Template);

impl Partitioner for PathTemplate {
    fn uses_time(&self) -> bool {
        self.0.uses_time()
    }
    fn uses_record(&self) -> bool {
        self.0.uses_record()
    }
    fn key(&self, tag: &str, time: EventTime, record: &[u8]) -> String {
        self.0.render(tag, time, record)
    }
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
    if let Ok(t) = &template {
        if t.as_str().contains("${chunk_id}") || t.as_str().contains("${uuid}") {
            errors.push(section.error(
                "path",
                "${chunk_id} and ${uuid} are for object keys, not file paths",
            ));
        }
        if cfg.path.ends_with('/') {
            errors.push(section.error("path", "the path names a directory; it must name a file"));
        }
    }
    match (template, time_format) {
        (Ok(t), Ok(tf)) if errors.is_empty() => Ok(Arc::new(FileOutput {
            id: ctx.id.clone(),
            template: Arc::new(PathTemplate(t)),
            lines: Arc::new(JsonLines {
                tag_key: cfg.tag_key,
                time_key: cfg.time_key,
                time_format: tf,
            }),
            compress: cfg.compress,
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
    fn partitioner(&self) -> Option<Arc<dyn Partitioner>> {
        Some(self.template.clone())
    }

    async fn write(&self, chunk: &Chunk) -> Result<(), OutputError> {
        let chunk = chunk.clone();
        let lines = self.lines.clone();
        let compress = self.compress;
        let id = self.id.clone();
        tokio::task::spawn_blocking(move || write_blocking(&id, &chunk, &lines, compress))
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
        Compress::None => Sink::Plain(file),
    };
    let mut buf = Vec::with_capacity(PIECE + PIECE / 4);
    let mut bad = 0;
    for seg in &chunk.segments {
        bad += lines.write_segment(&chunk.tag, seg, &mut buf);
        if buf.len() >= PIECE {
            sink.write_all(&buf).map_err(werr)?;
            buf.clear();
        }
    }
    sink.write_all(&buf).map_err(werr)?;
    sink.finish().map_err(werr)?;
    if bad > 0 {
        warn!(output = %id, bad, path = %path.display(), "entries that could not be rendered as JSON were skipped");
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
