//! `[output.buffer]`: owned by the engine and the same for every output.

use std::time::Duration;

use fuwa_api::{ByteSize, HumanDuration};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum OverflowAction {
    Block,
    DropOldestChunk,
    Reject,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum BufferType {
    Memory,
    File,
}

/// `[output.buffer]`: owned by the engine, the same for every output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    #[serde(rename = "type", default = "file_buffer")]
    pub kind: BufferType,
    pub flush_interval: Option<HumanDuration>,
    #[serde(default = "chunk_limit")]
    pub chunk_limit_size: ByteSize,
    pub chunk_limit_records: Option<u32>,
    /// default: 1GiB for file buffers, 64MiB for memory buffers
    pub total_limit_size: Option<ByteSize>,
    #[serde(default = "one")]
    pub flush_thread_count: usize,
    #[serde(default = "block")]
    pub overflow_action: OverflowAction,
    #[serde(default = "retry_wait")]
    pub retry_wait: HumanDuration,
    #[serde(default = "two")]
    pub retry_exponential_backoff_base: f64,
    #[serde(default = "retry_max_interval")]
    pub retry_max_interval: HumanDuration,
    #[serde(default = "yes")]
    pub retry_randomize: bool,
    #[serde(default = "retry_timeout")]
    pub retry_timeout: HumanDuration,
    pub retry_max_times: Option<u32>,
    #[serde(default)]
    pub retry_forever: bool,
    /// file buffers: at most this many chunk files open at once (one per
    /// distinct tag and partition key); at the cap the least recently
    /// written one is sealed. Default: RLIMIT_NOFILE / 8, 16..=1024.
    pub max_open_chunks: Option<usize>,
    /// file buffers: fsync at most once per window (group commit); appends
    /// that arrive within it wait for the same fsync, so their acks are
    /// delayed by up to this much. 0 (the default): fsync at once.
    #[serde(default = "no_window")]
    pub commit_window: HumanDuration,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            kind: file_buffer(),
            flush_interval: None,
            chunk_limit_size: chunk_limit(),
            chunk_limit_records: None,
            total_limit_size: None,
            flush_thread_count: 1,
            overflow_action: block(),
            retry_wait: retry_wait(),
            retry_exponential_backoff_base: 2.0,
            retry_max_interval: retry_max_interval(),
            retry_randomize: true,
            retry_timeout: retry_timeout(),
            retry_max_times: None,
            retry_forever: false,
            max_open_chunks: None,
            commit_window: no_window(),
        }
    }
}

impl BufferConfig {
    pub fn total_limit(&self) -> usize {
        match (self.total_limit_size, self.kind) {
            (Some(s), _) => s.0 as usize,
            (None, BufferType::File) => 1 << 30,
            (None, BufferType::Memory) => 64 << 20,
        }
    }

    /// What is wrong with the values, as (key, message) pairs; empty when
    /// they work together.
    pub fn validate(&self) -> Vec<(&'static str, &'static str)> {
        let mut e = Vec::new();
        if self.flush_thread_count == 0 {
            e.push(("flush_thread_count", "must be at least 1"));
        }
        if self.chunk_limit_size.0 == 0 {
            e.push(("chunk_limit_size", "must be more than 0"));
        }
        if (self.total_limit() as u64) < self.chunk_limit_size.0 {
            e.push(("total_limit_size", "must be at least chunk_limit_size"));
        }
        // (NaN is not at least 1 either)
        if !(self.retry_exponential_backoff_base >= 1.0
            && self.retry_exponential_backoff_base.is_finite())
        {
            e.push((
                "retry_exponential_backoff_base",
                "must be a finite number of at least 1",
            ));
        }
        if self.chunk_limit_records == Some(0) {
            e.push(("chunk_limit_records", "must be at least 1"));
        }
        if self.max_open_chunks == Some(0) {
            e.push(("max_open_chunks", "must be at least 1"));
        }
        if self.commit_window.0 > MAX_COMMIT_WINDOW {
            e.push((
                "commit_window",
                "must be at most 1s (every ack waits for it)",
            ));
        }
        e
    }

    #[cfg(test)]
    pub fn memory() -> Self {
        BufferConfig {
            kind: BufferType::Memory,
            ..Default::default()
        }
    }
}

/// `commit_window` at most: every acknowledgement may wait this long
pub const MAX_COMMIT_WINDOW: Duration = Duration::from_secs(1);

fn no_window() -> HumanDuration {
    HumanDuration(Duration::ZERO)
}
fn file_buffer() -> BufferType {
    BufferType::File
}
fn chunk_limit() -> ByteSize {
    ByteSize(8 << 20)
}
fn one() -> usize {
    1
}
fn block() -> OverflowAction {
    OverflowAction::Block
}
fn retry_wait() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn two() -> f64 {
    2.0
}
fn retry_max_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}
fn yes() -> bool {
    true
}
fn retry_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(72 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_that_cannot_work_are_named() {
        assert!(BufferConfig::default().validate().is_empty());
        let bad = BufferConfig {
            flush_thread_count: 0,
            chunk_limit_size: ByteSize(0),
            retry_exponential_backoff_base: f64::NAN,
            chunk_limit_records: Some(0),
            max_open_chunks: Some(0),
            commit_window: HumanDuration(Duration::from_millis(1001)),
            ..Default::default()
        };
        let keys: Vec<&str> = bad.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            vec![
                "flush_thread_count",
                "chunk_limit_size",
                "retry_exponential_backoff_base",
                "chunk_limit_records",
                "max_open_chunks",
                "commit_window"
            ]
        );
        let small = BufferConfig {
            total_limit_size: Some(ByteSize(1)),
            ..Default::default()
        };
        assert_eq!(small.validate()[0].0, "total_limit_size");
    }
}
