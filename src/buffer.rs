//! An output's buffer: open chunks keyed by (tag, partition key), sealed by
//! size, record count or age, queued, and written by the output's workers
//! with retries (exponential backoff, jitter, cap). The total size is
//! bounded: when full, `append` waits (block), refuses (reject) or drops the
//! oldest queued chunk (drop_oldest_chunk).
//!
//! This is the memory buffer; chunks hold the input's bytes as segments, so
//! appending copies nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use fuwa_api::event::read_entry;
use fuwa_api::{Batch, Chunk, EmitError, Output, OutputError, Partitioner};
use tokio::sync::Notify;
use tracing::{error, warn};

use crate::config::{BufferConfig, OverflowAction};

struct OpenChunk {
    segments: Vec<Bytes>,
    records: u32,
    bytes: usize,
    created: Instant,
    created_sys: SystemTime,
}

#[derive(Default)]
struct State {
    open: HashMap<(Arc<str>, Arc<str>), OpenChunk>,
    queue: VecDeque<Chunk>,
    /// bytes in open, queued and in-flight chunks
    total: usize,
    in_flight: usize,
    closing: bool,
}

#[derive(Default)]
pub struct Counters {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub records_dropped: AtomicU64,
    pub retries: AtomicU64,
    pub errors: AtomicU64,
}

pub struct OutputBuffer {
    pub id: Arc<str>,
    output: Arc<dyn Output>,
    partitioner: Option<Arc<dyn Partitioner>>,
    cfg: BufferConfig,
    flush_interval: Duration,
    state: Mutex<State>,
    /// woken when space is freed
    space: Notify,
    /// woken when a chunk is queued or the buffer is closing
    work: Notify,
    pub counters: Counters,
}

fn chunk_id() -> String {
    let r: u128 = rand::random();
    format!("{:032x}", r)
}

impl OutputBuffer {
    pub fn new(id: &str, output: Arc<dyn Output>, cfg: BufferConfig) -> Arc<Self> {
        let flush_interval = cfg
            .flush_interval
            .map(|d| d.0)
            .unwrap_or_else(|| output.default_flush_interval());
        Arc::new(OutputBuffer {
            id: Arc::from(id),
            partitioner: output.partitioner(),
            output,
            cfg,
            flush_interval,
            state: Mutex::new(State::default()),
            space: Notify::new(),
            work: Notify::new(),
            counters: Counters::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Splits a batch into (key, segment, count) runs: zero-copy slices of
    /// the batch's bytes, one per run of events sharing a partition key.
    fn split(&self, batch: &Batch) -> Vec<(Arc<str>, Bytes, u32)> {
        let p = match &self.partitioner {
            None => return vec![(Arc::from(""), batch.entries.clone(), batch.count)],
            Some(p) => p,
        };
        if !p.uses_time() && !p.uses_record() {
            let key = p.key(&batch.tag, Default::default(), &[]);
            return vec![(Arc::from(key), batch.entries.clone(), batch.count)];
        }
        let b: &[u8] = &batch.entries;
        let mut runs: Vec<(Arc<str>, Bytes, u32)> = Vec::new();
        let mut pos = 0;
        let mut run_start = 0;
        let mut run_key: Option<Arc<str>> = None;
        let mut run_count = 0;
        let mut last_secs = i64::MIN;
        let mut last_key: Option<Arc<str>> = None;
        while pos < b.len() {
            let Ok((e, next, _)) = read_entry(b, pos) else {
                break;
            };
            let key: Arc<str> = if !p.uses_record() && e.time.secs == last_secs {
                last_key.clone().unwrap_or_else(|| Arc::from(""))
            } else {
                let k: Arc<str> = Arc::from(p.key(&batch.tag, e.time, e.record));
                last_secs = e.time.secs;
                last_key = Some(k.clone());
                k
            };
            if run_key.as_ref() != Some(&key) {
                if let Some(k) = run_key.take() {
                    runs.push((k, batch.entries.slice(run_start..pos), run_count));
                }
                run_key = Some(key);
                run_start = pos;
                run_count = 0;
            }
            run_count += 1;
            pos = next;
        }
        if let Some(k) = run_key {
            runs.push((k, batch.entries.slice(run_start..pos), run_count));
        }
        runs
    }

    /// Accepts a batch, waiting while the buffer is full (block).
    pub async fn append(&self, batch: &Batch) -> Result<(), EmitError> {
        let size = batch.entries.len();
        let limit = self.cfg.total_limit_size.0 as usize;
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if st.closing {
                    return Err(EmitError::ShuttingDown);
                }
                if st.total == 0 || st.total + size <= limit {
                    break;
                }
                match self.cfg.overflow_action {
                    OverflowAction::Block => {}
                    OverflowAction::Reject => {
                        return Err(EmitError::Rejected(format!(
                            "output {} has {} bytes buffered (total_limit_size {})",
                            self.id, st.total, limit
                        )))
                    }
                    OverflowAction::DropOldestChunk => {
                        if let Some(old) = st.queue.pop_front() {
                            st.total -= old.bytes;
                            self.counters
                                .records_dropped
                                .fetch_add(old.records as u64, Ordering::Relaxed);
                            warn!(output = %self.id, records = old.records, tag = %old.tag, "buffer full: dropped the oldest chunk (overflow_action = drop_oldest_chunk)");
                            continue;
                        }
                        // nothing queued to drop: wait like block
                    }
                }
            }
            notified.await;
        }
        let runs = self.split(batch);
        let mut sealed = 0;
        {
            let mut st = self.lock();
            st.total += size;
            for (key, seg, count) in runs {
                let k = (batch.tag.clone(), key);
                let len = seg.len();
                let full = st
                    .open
                    .get(&k)
                    .map(|c| c.bytes > 0 && c.bytes + len > self.cfg.chunk_limit_size.0 as usize)
                    .unwrap_or(false);
                if full {
                    if let Some(c) = st.open.remove(&k) {
                        self.seal(&mut st, k.clone(), c);
                        sealed += 1;
                    }
                }
                let c = st.open.entry(k.clone()).or_insert_with(|| OpenChunk {
                    segments: Vec::new(),
                    records: 0,
                    bytes: 0,
                    created: Instant::now(),
                    created_sys: SystemTime::now(),
                });
                c.segments.push(seg);
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
                        self.seal(&mut st, k, c);
                        sealed += 1;
                    }
                }
            }
        }
        self.counters
            .records_in
            .fetch_add(batch.count as u64, Ordering::Relaxed);
        for _ in 0..sealed {
            self.work.notify_one();
        }
        Ok(())
    }

    fn seal(&self, st: &mut State, (tag, key): (Arc<str>, Arc<str>), c: OpenChunk) {
        st.queue.push_back(Chunk {
            id: chunk_id(),
            tag,
            key,
            segments: c.segments,
            records: c.records,
            bytes: c.bytes,
            created: c.created_sys,
        });
    }

    /// Seals chunks older than flush_interval (all of them when `all`).
    pub fn seal_due(&self, all: bool) {
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
                    self.seal(&mut st, k, c);
                    n += 1;
                }
            }
        }
        for _ in 0..n {
            self.work.notify_one();
        }
    }

    /// Stops accepting; workers finish the queue and exit.
    pub fn close(&self) {
        self.lock().closing = true;
        self.seal_due(true);
        self.work.notify_waiters();
        self.space.notify_waiters();
    }

    /// (chunks, records) not yet written.
    pub fn pending(&self) -> (usize, u64) {
        let st = self.lock();
        let open: u64 = st.open.values().map(|c| c.records as u64).sum();
        let queued: u64 = st.queue.iter().map(|c| c.records as u64).sum();
        (st.open.len() + st.queue.len() + st.in_flight, open + queued)
    }

    /// Periodically seals chunks that reached flush_interval.
    pub async fn flusher(self: Arc<Self>) {
        let tick =
            (self.flush_interval / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            tokio::time::sleep(tick).await;
            if self.lock().closing {
                return;
            }
            self.seal_due(false);
        }
    }

    /// One worker: takes sealed chunks and writes them, retrying per config.
    pub async fn worker(self: Arc<Self>) {
        loop {
            let notified = self.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = {
                let mut st = self.lock();
                match st.queue.pop_front() {
                    Some(c) => {
                        st.in_flight += 1;
                        Some(c)
                    }
                    None if st.closing && st.open.is_empty() => return,
                    None => None,
                }
            };
            let Some(chunk) = next else {
                notified.await;
                continue;
            };
            // more work may be waiting for another worker
            self.work.notify_one();
            self.deliver(&chunk).await;
            {
                let mut st = self.lock();
                st.total = st.total.saturating_sub(chunk.bytes);
                st.in_flight -= 1;
            }
            self.space.notify_waiters();
        }
    }

    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self.cfg.retry_wait.0.as_secs_f64();
        let exp = self
            .cfg
            .retry_exponential_backoff_base
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let mut secs = (base * exp).min(self.cfg.retry_max_interval.0.as_secs_f64());
        if self.cfg.retry_randomize {
            secs *= 0.875 + rand::random::<f64>() * 0.25;
        }
        Duration::from_secs_f64(secs.max(0.0))
    }

    async fn deliver(&self, chunk: &Chunk) {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            match self.output.write(chunk).await {
                Ok(()) => {
                    self.counters
                        .records_out
                        .fetch_add(chunk.records as u64, Ordering::Relaxed);
                    return;
                }
                Err(OutputError::Fatal(e)) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .records_dropped
                        .fetch_add(chunk.records as u64, Ordering::Relaxed);
                    error!(output = %self.id, chunk = %chunk.id, tag = %chunk.tag, records = chunk.records, error = %e, "chunk failed with a fatal error and is dropped");
                    return;
                }
                Err(OutputError::Retryable(e)) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    attempt += 1;
                    let exhausted = !self.cfg.retry_forever
                        && (self
                            .cfg
                            .retry_max_times
                            .map(|m| attempt > m)
                            .unwrap_or(false)
                            || started.elapsed() >= self.cfg.retry_timeout.0);
                    if exhausted {
                        self.counters
                            .records_dropped
                            .fetch_add(chunk.records as u64, Ordering::Relaxed);
                        error!(output = %self.id, chunk = %chunk.id, tag = %chunk.tag, records = chunk.records, attempts = attempt, error = %e, "retries exhausted; chunk dropped");
                        return;
                    }
                    let wait = self.backoff(attempt);
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    warn!(output = %self.id, chunk = %chunk.id, attempt, retry_in = ?wait, error = %e, "write failed, will retry");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}
