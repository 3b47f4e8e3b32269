//! What the buffer's unit tests share: outputs that fail on purpose, and
//! batches to append.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use fuwa_api::event::write_entry;
use fuwa_api::{Batch, Chunk, EventTime, Output, OutputError};

/// always fails with a retryable error
pub(super) struct Down;
#[async_trait]
impl Output for Down {
    fn memory_bound(&self, _: &fuwa_api::MemoryEnv) -> fuwa_api::MemoryBound {
        fuwa_api::MemoryBound::new()
    }
    async fn write(&self, _chunk: &Chunk) -> Result<(), OutputError> {
        Err(OutputError::Retryable("down".into()))
    }
}

/// fails (retryable) every chunk of tag "bad", writes the others
#[derive(Default)]
pub(super) struct FailsBad {
    pub(super) written: Mutex<Vec<(String, u32)>>,
    pub(super) bad_attempts: AtomicU64,
}
#[async_trait]
impl Output for FailsBad {
    fn memory_bound(&self, _: &fuwa_api::MemoryEnv) -> fuwa_api::MemoryBound {
        fuwa_api::MemoryBound::new()
    }
    async fn write(&self, chunk: &Chunk) -> Result<(), OutputError> {
        if &*chunk.tag == "bad" {
            self.bad_attempts.fetch_add(1, Ordering::Relaxed);
            return Err(OutputError::Retryable("bad".into()));
        }
        self.written
            .lock()
            .unwrap()
            .push((chunk.tag.to_string(), chunk.records));
        Ok(())
    }
}

pub(super) fn tagged(tag: &str, n: u32) -> Batch {
    let b = batch(n);
    Batch::new(Arc::from(tag), b.entries, n)
}

pub(super) async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(20), "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(super) fn batch(n: u32) -> Batch {
    let mut out = Vec::new();
    for i in 0..n {
        let mut b = Vec::new();
        rmpv::encode::write_value(&mut b, &rmpv::Value::from(i)).unwrap();
        write_entry(&mut out, EventTime::new(1, 0), &b);
    }
    Batch::new(Arc::from("t"), Bytes::from(out), n)
}
