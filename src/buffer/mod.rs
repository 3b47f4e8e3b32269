//! An output's buffer: open chunks keyed by (tag, partition key), sealed by
//! size, record count or age, or when more than `max_open_chunks` are open
//! (the least recently written first), queued, and written by the output's
//! workers. The total size is bounded: when full, `append` waits (block),
//! refuses (reject) or drops the oldest queued chunk (drop_oldest_chunk).
//! Chunk files and dead letters are 0600 in 0700 directories.
//!
//! This file holds what every part shares (the queue, the state, the
//! buffer itself, the overflow policy, the split of a batch by partition
//! key); the jobs live beside it:
//! - storage: `memory` keeps the inputs' bytes as segments (appending
//!   copies nothing); `file` (the default) writes every append to a chunk
//!   file and answers only after fsync (group commit in `file::store`), and
//!   queues whatever it finds on disk at start (`file::chunkfile` is the
//!   format);
//! - `delivery`: the workers, write attempts, retries and backoff, and the
//!   reload hand-over (halt, take_queue, adopt, repartition);
//! - `deadletter`: writing chunks the output gave up on, and reading,
//!   listing and replaying them (`fuwa dead-letter`);
//! - `config`: `[outputs.buffer]` and its checks.

pub mod config;
pub mod deadletter;
pub mod delivery;
pub mod file;
mod memory;
#[cfg(test)]
mod test_support;

pub use deadletter::{dead_letter_dir, DeadLetterNote};
pub use delivery::backoff;
pub use file::chunkfile;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use fuwa_api::event::read_entry;
use fuwa_api::ratelimit::RateLimit;
use fuwa_api::{Batch, EmitError, Output, Partitioner};
use tokio::sync::{oneshot, Notify};
use tracing::{error, info, warn};

use crate::metrics::Counters;
use config::{BufferConfig, BufferType, OverflowAction};
use file::store::{self, Cmd, Limits, Writer};
use memory::OpenChunk;

/// The longest gap between two "will retry" warnings of one output.
const RETRY_WARN_EVERY_MS: u64 = 10_000;
/// One "buffer full" warning per output per this interval.
const FULL_WARN_EVERY_MS: u64 = 10_000;

pub(crate) fn new_chunk_id() -> String {
    let r: u128 = rand::random();
    format!("{:032x}", r)
}

pub(crate) fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Where a sealed chunk's events are.
pub enum QueuedData {
    /// segments and their record counts
    Memory(Vec<(Bytes, u32)>),
    File(PathBuf),
}

/// A sealed chunk waiting for (or being written by) a worker.
pub struct Queued {
    pub id: String,
    pub tag: Arc<str>,
    pub key: Arc<str>,
    pub records: u32,
    pub bytes: usize,
    pub created: SystemTime,
    pub data: QueuedData,
    /// its failed write attempts so far (kept while it waits in the queue,
    /// and across a reload for chunks handed over in memory)
    pub retry: RetryState,
}

/// A chunk's write attempts: a chunk that failed waits in the queue until
/// `not_before` while the workers deliver the others.
#[derive(Debug, Clone, Default)]
pub struct RetryState {
    /// failed attempts
    pub attempts: u32,
    /// when the first attempt started (wall clock, for the dead-letter note)
    pub first_attempt: Option<SystemTime>,
    /// when the first attempt started (for retry_timeout)
    pub started: Option<Instant>,
    /// not to be tried again before this
    pub not_before: Option<Instant>,
}

impl Queued {
    fn eligible(&self, now: Instant) -> bool {
        self.retry.not_before.map(|t| t <= now).unwrap_or(true)
    }
}

#[derive(Default)]
struct State {
    /// memory storage's open chunks (the file storage's live in its writer)
    open: HashMap<(Arc<str>, Arc<str>), OpenChunk>,
    /// counts memory appends, for least-recently-used sealing
    clock: u64,
    /// open chunk files held by the file storage's writer
    open_files: usize,
    queue: VecDeque<Queued>,
    /// bytes in open, queued and in-flight chunks
    total: usize,
    in_flight: usize,
    /// creation times of the in-flight chunks
    flying: Vec<SystemTime>,
    closing: bool,
    /// workers stop after their current write attempt (reload)
    halting: bool,
    /// failed attempts (any chunk) since the last successful write
    streak: u32,
    /// after a failed attempt, no chunk is tried before this (the output's
    /// own backoff, backoff(streak)): a down output sees about as many
    /// attempts as with one chunk retried in place
    gate: Option<Instant>,
}

/// What the buffer and its file writer thread share.
#[derive(Default)]
pub struct Shared {
    state: Mutex<State>,
    /// woken when space is freed
    space: Notify,
    /// woken when a chunk is queued or the buffer is closing
    work: Notify,
    /// woken when the workers must stop (reload)
    halt: Notify,
    /// woken when the buffer closes or halts (the flusher stops at once)
    closed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn enqueue(&self, chunks: Vec<Queued>) {
        let n = chunks.len();
        self.lock().queue.extend(chunks);
        for _ in 0..n {
            self.work.notify_one();
        }
    }

    pub(crate) fn set_open(&self, n: usize) {
        let closing = {
            let mut st = self.lock();
            st.open_files = n;
            st.closing
        };
        if closing && n == 0 {
            self.work.notify_waiters();
        }
    }
}

/// The buffer's state right now.
#[derive(Debug, Clone, Default)]
pub struct BufferSnapshot {
    /// bytes in open, queued and in-flight chunks
    pub bytes: usize,
    /// open + queued + in-flight chunks
    pub chunks: usize,
    pub queued_chunks: usize,
    pub in_flight_chunks: usize,
    /// records in memory-open and queued chunks
    pub records: u64,
    /// creation time of the oldest queued or in-flight chunk
    pub oldest: Option<SystemTime>,
    pub total_limit: usize,
}

pub struct OutputBuffer {
    pub id: Arc<str>,
    output: Arc<dyn Output>,
    partitioner: Option<Arc<dyn Partitioner>>,
    cfg: BufferConfig,
    flush_interval: Duration,
    /// max_open_chunks (resolved)
    max_open: usize,
    shared: Arc<Shared>,
    writer: Option<Mutex<mpsc::Sender<Cmd>>>,
    data_dir: PathBuf,
    pub counters: Arc<Counters>,
    retry_warn: RateLimit,
    full_warn: RateLimit,
}

pub fn buffer_dir(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("buffer").join(id)
}

/// Buffer, dead-letter and corrupt/ directories hold user data: created
/// 0700 (and made so when they exist), whatever the umask.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

/// Writes a file readable by the agent's user only (0600), whatever the umask.
pub(crate) fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

/// The default `max_open_chunks`: an eighth of the open-file limit (the
/// soft RLIMIT_NOFILE, which fuwa raises to the hard limit at start),
/// between 16 and 1,024, so sockets, tailed files and other outputs keep
/// most of the descriptors.
pub fn default_max_open_chunks() -> usize {
    fuwa_api::fdlimit::share_of(fuwa_api::fdlimit::soft_nofile(), 8, 16, 1024, 1024)
}

impl OutputBuffer {
    /// Creates the buffer; with file storage, queues every chunk left on
    /// disk by an earlier run.
    #[cfg(test)]
    pub fn new(
        id: &str,
        output: Arc<dyn Output>,
        cfg: BufferConfig,
        data_dir: &Path,
    ) -> std::io::Result<Arc<Self>> {
        Self::with_counters(id, output, cfg, data_dir, Arc::default())
    }

    /// `new`, counting into `counters` (kept by the engine across reloads).
    pub fn with_counters(
        id: &str,
        output: Arc<dyn Output>,
        cfg: BufferConfig,
        data_dir: &Path,
        counters: Arc<Counters>,
    ) -> std::io::Result<Arc<Self>> {
        let flush_interval = cfg
            .flush_interval
            .map(|d| d.0)
            .unwrap_or_else(|| output.default_flush_interval());
        let shared = Arc::new(Shared::default());
        let max_open = cfg
            .max_open_chunks
            .unwrap_or_else(default_max_open_chunks)
            .max(1);
        let mut writer = None;
        if cfg.kind == BufferType::File {
            let dir = buffer_dir(data_dir, id);
            create_private_dir(&dir).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot create buffer directory {}: {e}", dir.display()),
                )
            })?;
            let recovered = store::recover(&dir, &data_dir.join("corrupt"), id)?;
            if !recovered.is_empty() {
                let records: u64 = recovered.iter().map(|q| q.records as u64).sum();
                info!(
                    output = id,
                    chunks = recovered.len(),
                    records,
                    "queued the chunks left on disk by the last run"
                );
            }
            {
                let mut st = shared.lock();
                st.total = recovered.iter().map(|q| q.bytes).sum();
                st.queue.extend(recovered);
            }
            let limits = Limits {
                chunk_limit_size: cfg.chunk_limit_size.0 as usize,
                chunk_limit_records: cfg.chunk_limit_records,
                flush_interval,
                max_open_chunks: max_open,
                commit_window: cfg.commit_window.0,
            };
            writer = Some(Mutex::new(Writer::spawn(
                dir,
                limits,
                shared.clone(),
                counters.clone(),
                id,
            )?));
        }
        // about one retry warning per output per retry_wait (at most 10s
        // apart): the output's attempts are that far apart after a failure,
        // so each is logged while few fail, and many do not flood
        let retry_warn_ms =
            (cfg.retry_wait.0.as_millis() as u64 * 3 / 4).clamp(50, RETRY_WARN_EVERY_MS);
        Ok(Arc::new(OutputBuffer {
            id: Arc::from(id),
            partitioner: output.partitioner(),
            output,
            cfg,
            flush_interval,
            max_open,
            shared,
            writer,
            data_dir: data_dir.to_path_buf(),
            counters,
            retry_warn: RateLimit::new(retry_warn_ms),
            full_warn: RateLimit::new(FULL_WARN_EVERY_MS),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    fn send(&self, cmd: Cmd) -> bool {
        match &self.writer {
            Some(w) => w.lock().map(|tx| tx.send(cmd).is_ok()).unwrap_or(false),
            None => false,
        }
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
            let key: Arc<str> = match &last_key {
                Some(k) if !p.uses_record() && e.time.secs == last_secs => k.clone(),
                _ => {
                    let k: Arc<str> = Arc::from(p.key(&batch.tag, e.time, e.record));
                    last_secs = e.time.secs;
                    last_key = Some(k.clone());
                    k
                }
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

    /// Waits for room for `size` bytes (or refuses, or makes room, per
    /// overflow_action) and reserves it.
    async fn reserve(&self, size: usize) -> Result<(), EmitError> {
        let limit = self.cfg.total_limit();
        let mut waited = false;
        loop {
            let notified = self.shared.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if st.closing {
                    return Err(EmitError::ShuttingDown);
                }
                if st.total == 0 || st.total + size <= limit {
                    st.total += size;
                    return Ok(());
                }
                match self.cfg.overflow_action {
                    OverflowAction::Block => {
                        if !waited {
                            waited = true;
                            self.counters
                                .backpressure_waits
                                .fetch_add(1, Ordering::Relaxed);
                            if let Some(suppressed) = self.full_warn.check() {
                                warn!(output = %self.id, buffered = st.total, total_limit_size = limit, suppressed, "buffer full: inputs wait for room (backpressure)");
                            }
                        }
                    }
                    OverflowAction::Reject => {
                        return Err(EmitError::Rejected(format!(
                            "output {} has {} bytes buffered (total_limit_size {})",
                            self.id, st.total, limit
                        )))
                    }
                    OverflowAction::DropOldestChunk => {
                        if let Some(old) = st.queue.pop_front() {
                            st.total = st.total.saturating_sub(old.bytes);
                            drop(st);
                            self.counters
                                .records_dropped
                                .fetch_add(old.records as u64, Ordering::Relaxed);
                            if let Some(suppressed) = self.full_warn.check() {
                                warn!(output = %self.id, records = old.records, tag = %old.tag, suppressed, "buffer full: dropped the oldest chunk (overflow_action = drop_oldest_chunk)");
                            }
                            if let QueuedData::File(p) = old.data {
                                // off the reactor; nothing waits for it
                                tokio::task::spawn_blocking(move || std::fs::remove_file(p));
                            }
                            continue;
                        }
                        // nothing queued to drop: wait like block
                    }
                }
            }
            notified.await;
        }
    }

    fn release(&self, bytes: usize) {
        {
            let mut st = self.lock();
            st.total = st.total.saturating_sub(bytes);
        }
        self.shared.space.notify_waiters();
    }

    /// Accepts a batch. Returns once it is in the buffer: for the file
    /// storage, written and fsynced.
    pub async fn append(&self, batch: &Batch) -> Result<(), EmitError> {
        self.append_counted(batch, true).await
    }

    async fn append_counted(&self, batch: &Batch, count: bool) -> Result<(), EmitError> {
        let size = batch.entries.len();
        self.reserve(size).await?;
        let runs = self.split(batch);
        if self.writer.is_some() {
            let (tx, rx) = oneshot::channel();
            let sent = self.send(Cmd::Append {
                tag: batch.tag.clone(),
                runs,
                reply: tx,
            });
            let result = if sent { rx.await.ok() } else { None };
            match result {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    self.release(size);
                    error!(output = %self.id, error = %e, "cannot write to the buffer; batch refused");
                    return Err(EmitError::Rejected(format!(
                        "cannot write to the buffer of {}: {e}",
                        self.id
                    )));
                }
                None => {
                    self.release(size);
                    return Err(EmitError::ShuttingDown);
                }
            }
            if count {
                self.counters
                    .records_in
                    .fetch_add(batch.count as u64, Ordering::Relaxed);
            }
            return Ok(());
        }
        let sealed = self.append_memory(&batch.tag, runs);
        if count {
            self.counters
                .records_in
                .fetch_add(batch.count as u64, Ordering::Relaxed);
        }
        for _ in 0..sealed {
            self.shared.work.notify_one();
        }
        Ok(())
    }

    /// Seals chunks older than flush_interval (all of them when `all`).
    pub fn seal_due(&self, all: bool) {
        if self.writer.is_some() {
            self.send(Cmd::Seal { all });
            return;
        }
        let n = self.seal_due_memory(all);
        for _ in 0..n {
            self.shared.work.notify_one();
        }
    }

    /// Stops accepting; open chunks are sealed; workers finish the queue and exit.
    pub fn close(&self) {
        self.lock().closing = true;
        self.seal_due(true);
        self.shared.closed.notify_waiters();
        self.shared.work.notify_waiters();
        self.shared.space.notify_waiters();
    }

    /// (chunks, records) not yet written.
    pub fn pending(&self) -> (usize, u64) {
        let st = self.lock();
        let open: u64 = st.open.values().map(|c| c.records as u64).sum();
        let queued: u64 = st.queue.iter().map(|c| c.records as u64).sum();
        (
            st.open.len() + st.open_files + st.queue.len() + st.in_flight,
            open + queued,
        )
    }

    pub fn is_file(&self) -> bool {
        self.writer.is_some()
    }

    /// Sizes and ages right now, for the metrics and status endpoints.
    pub fn snapshot(&self) -> BufferSnapshot {
        let st = self.lock();
        let open: u64 = st.open.values().map(|c| c.records as u64).sum();
        let queued: u64 = st.queue.iter().map(|c| c.records as u64).sum();
        BufferSnapshot {
            bytes: st.total,
            chunks: st.open.len() + st.open_files + st.queue.len() + st.in_flight,
            queued_chunks: st.queue.len(),
            in_flight_chunks: st.in_flight,
            records: open + queued,
            oldest: st
                .queue
                .iter()
                .map(|q| q.created)
                .chain(st.flying.iter().copied())
                .min(),
            total_limit: self.cfg.total_limit(),
        }
    }

    pub fn config(&self) -> &BufferConfig {
        &self.cfg
    }
}
