//! The stdout output: one JSON object per line, with the tag and time
//! injected (keys `tag` and `time` unless configured otherwise).

use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use fuwa_api::memory::{grown, size, JSON_OF_MSGPACK};
use fuwa_api::{
    BuildContext, Chunk, ConfigError, ConfigSection, MemoryBound, MemoryEnv, Output, OutputError,
};
use fuwa_render::{parse_timezone, JsonLines, TimeFormat};
use serde::Deserialize;
use tracing::warn;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StdoutConfig {
    #[serde(default = "tag")]
    tag_key: String,
    #[serde(default = "time")]
    time_key: String,
    #[serde(default = "rfc3339")]
    time_format: String,
}
fn tag() -> String {
    "tag".into()
}
fn time() -> String {
    "time".into()
}
fn rfc3339() -> String {
    "rfc3339".into()
}

pub struct StdoutOutput {
    id: String,
    lines: JsonLines,
}

pub fn build(
    section: &ConfigSection<'_>,
    ctx: &BuildContext,
) -> Result<Arc<dyn Output>, Vec<ConfigError>> {
    let cfg: StdoutConfig = section.parse_all()?;
    let tz = parse_timezone(&ctx.timezone).map_err(|e| vec![section.error("timezone", e)])?;
    let time_format = TimeFormat::parse(&cfg.time_format, tz)
        .map_err(|e| vec![section.error("time_format", e)])?;
    let opt = |s: String| if s.is_empty() { None } else { Some(s) };
    Ok(Arc::new(StdoutOutput {
        id: ctx.id.clone(),
        lines: JsonLines {
            tag_key: opt(cfg.tag_key),
            time_key: opt(cfg.time_key),
            time_format,
        },
    }))
}

/// A closed stdout (EPIPE) or none at all (EBADF) stays so for the life of
/// the process: no retry can write the chunk, so it is dead-lettered
/// (replayable) instead of filling the buffer. Other errors are retried.
fn classify(e: std::io::Error) -> OutputError {
    const EBADF: i32 = 9;
    let msg = format!("cannot write to stdout: {e}");
    if e.kind() == std::io::ErrorKind::BrokenPipe || e.raw_os_error() == Some(EBADF) {
        OutputError::Fatal(msg)
    } else {
        OutputError::Retryable(msg)
    }
}

#[async_trait]
impl Output for StdoutOutput {
    /// The chunk rendered whole as JSON Lines, in a buffer that starts at
    /// twice the chunk and may double once more.
    fn memory_bound(&self, env: &MemoryEnv) -> MemoryBound {
        let c = env.chunk_limit_size;
        MemoryBound::new().with(
            format!(
                "the chunk as JSON ({JSON_OF_MSGPACK} × chunk_limit_size {}, grown ×2)",
                size(c)
            ),
            grown(JSON_OF_MSGPACK.saturating_mul(c)),
        )
    }

    async fn write(&self, chunk: &Chunk) -> Result<(), OutputError> {
        let mut out = Vec::with_capacity(chunk.bytes * 2);
        let bad = self.lines.write_chunk(chunk, &mut out);
        if bad > 0 {
            warn!(output = %self.id, bad, "entries that could not be rendered as JSON were skipped");
        }
        // a full pipe blocks: off the reactor
        tokio::task::spawn_blocking(move || {
            let mut so = std::io::stdout().lock();
            so.write_all(&out).and_then(|_| so.flush())
        })
        .await
        .map_err(|e| OutputError::Retryable(format!("stdout writer task failed: {e}")))?
        .map_err(classify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_stdout_is_fatal_a_busy_one_is_not() {
        let fatal = |e| matches!(classify(e), OutputError::Fatal(_));
        assert!(fatal(std::io::Error::from(std::io::ErrorKind::BrokenPipe)));
        assert!(fatal(std::io::Error::from_raw_os_error(9)));
        assert!(!fatal(std::io::Error::from(
            std::io::ErrorKind::Interrupted
        )));
        assert!(!fatal(std::io::Error::from_raw_os_error(28)), "ENOSPC");
    }
}
