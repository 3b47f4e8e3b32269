//! The memory storage: open chunks are lists of the inputs' own byte
//! segments (zero-copy slices of their batches), sealed into the queue by
//! size, record count, age, or when more than `max_open_chunks` are open
//! (the least recently written first, like the file storage). Nothing
//! survives a restart; a reload hands the queue over in memory.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::{new_chunk_id, OutputBuffer, Queued, QueuedData, RetryState, State};

pub(super) struct OpenChunk {
    pub(super) segments: Vec<(Bytes, u32)>,
    pub(super) records: u32,
    pub(super) bytes: usize,
    pub(super) created: Instant,
    pub(super) created_sys: SystemTime,
    /// when it was last appended to (`State::clock`)
    pub(super) last_used: u64,
}

impl OutputBuffer {
    /// Appends a batch's runs to the open memory chunks; returns how many
    /// chunks it sealed (the caller wakes that many workers).
    pub(super) fn append_memory(&self, tag: &Arc<str>, runs: Vec<(Arc<str>, Bytes, u32)>) -> usize {
        let mut sealed = 0;
        {
            let mut st = self.lock();
            for (key, seg, count) in runs {
                let k = (tag.clone(), key);
                let len = seg.len();
                let full = st
                    .open
                    .get(&k)
                    .map(|c| c.bytes > 0 && c.bytes + len > self.cfg.chunk_limit_size.0 as usize)
                    .unwrap_or(false);
                if full {
                    if let Some(c) = st.open.remove(&k) {
                        seal_memory(&mut st, k.clone(), c);
                        sealed += 1;
                    }
                }
                // like the file storage: at most max_open_chunks open, the
                // least recently written sealed first (each open chunk costs
                // its tag and key beside the bytes total_limit_size counts)
                if !st.open.contains_key(&k) {
                    while st.open.len() >= self.max_open {
                        let lru = st
                            .open
                            .iter()
                            .min_by_key(|(_, c)| c.last_used)
                            .map(|(k, _)| k.clone());
                        let Some(old) = lru else { break };
                        if let Some(c) = st.open.remove(&old) {
                            seal_memory(&mut st, old, c);
                            sealed += 1;
                        }
                    }
                }
                st.clock += 1;
                let now = st.clock;
                let c = st.open.entry(k.clone()).or_insert_with(|| OpenChunk {
                    segments: Vec::new(),
                    records: 0,
                    bytes: 0,
                    created: Instant::now(),
                    created_sys: SystemTime::now(),
                    last_used: 0,
                });
                c.last_used = now;
                c.segments.push((seg, count));
                c.records += count;
                c.bytes += len;
                let seal_now = c.bytes >= self.cfg.chunk_limit_size.0 as usize
                    || self
                        .cfg
                        .chunk_limit_records
                        .map(|n| c.records >= n)
                        .unwrap_or(false);
                if seal_now {
                    if let Some(c) = st.open.remove(&k) {
                        seal_memory(&mut st, k, c);
                        sealed += 1;
                    }
                }
            }
        }
        sealed
    }

    /// Seals the memory chunks older than flush_interval (all of them when
    /// `all`); returns how many.
    pub(super) fn seal_due_memory(&self, all: bool) -> usize {
        let mut n = 0;
        {
            let mut st = self.lock();
            let due: Vec<(Arc<str>, Arc<str>)> = st
                .open
                .iter()
                .filter(|(_, c)| all || c.created.elapsed() >= self.flush_interval)
                .map(|(k, _)| k.clone())
                .collect();
            for k in due {
                if let Some(c) = st.open.remove(&k) {
                    seal_memory(&mut st, k, c);
                    n += 1;
                }
            }
        }
        n
    }
}

fn seal_memory(st: &mut State, (tag, key): (Arc<str>, Arc<str>), c: OpenChunk) {
    st.queue.push_back(Queued {
        id: new_chunk_id(),
        tag,
        key,
        records: c.records,
        bytes: c.bytes,
        created: c.created_sys,
        data: QueuedData::Memory(c.segments),
        retry: RetryState::default(),
    });
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::config::BufferConfig;
    use super::super::test_support::{tagged, Down};
    use super::*;

    #[tokio::test]
    async fn memory_open_chunks_are_capped_too() {
        let cfg = BufferConfig {
            max_open_chunks: Some(3),
            ..BufferConfig::memory()
        };
        let b = OutputBuffer::new("o", Arc::new(Down), cfg, Path::new("/x")).unwrap();
        for i in 0..10 {
            b.append(&tagged(&format!("t{i}"), 1)).await.unwrap();
            assert!(b.lock().open.len() <= 3);
        }
        assert_eq!(b.snapshot().queued_chunks, 7);
        assert_eq!(b.pending(), (10, 10));
    }
}
