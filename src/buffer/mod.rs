//! An output's buffer: open chunks keyed by (tag, partition key), sealed by
//! size, record count or age, or when more than `max_open_chunks` are open
//! (the least recently written first), queued, and written by the output's
//! workers with retries (exponential backoff, jitter, cap). A chunk that
//! fails goes back to the queue with its own not-before time and attempt
//! count, and the workers go on with the others (no head-of-line blocking);
//! after any failure the output as a whole waits backoff(failures in a row)
//! before its next attempt and tries a chunk never tried before first, so a
//! down output is not hit by every queued chunk at once. Past the retries,
//! or on a fatal error, a chunk goes intact to the dead-letter directory.
//! The total size is bounded: when full, `append` waits (block), refuses
//! (reject) or drops the oldest queued chunk (drop_oldest_chunk).
//! Chunk files and dead letters are 0600 in 0700 directories.
//!
//! Two storages share all of that: `memory` keeps the inputs' bytes as
//! segments (appending copies nothing); `file` (the default) writes every
//! append to a chunk file and answers only after fsync (group commit in
//! `filestore`), and queues whatever it finds on disk at start.

pub mod chunkfile;
pub mod config;
pub mod filestore;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use fuwa_api::event::read_entry;
use fuwa_api::ratelimit::RateLimit;
use fuwa_api::{Batch, Chunk, EmitError, Output, OutputError, Partitioner};
use tokio::sync::{oneshot, Notify};
use tracing::{error, info, warn};

use crate::metrics::Counters;
use chunkfile::ChunkMeta;
use config::{BufferConfig, BufferType, OverflowAction};
use filestore::{Cmd, Limits, Writer};

/// The longest gap between two "will retry" warnings of one output.
const RETRY_WARN_EVERY_MS: u64 = 10_000;
/// One "buffer full" warning per output per this interval.
const FULL_WARN_EVERY_MS: u64 = 10_000;

pub(crate) fn new_chunk_id() -> String {
    let r: u128 = rand::random();
    format!("{:032x}", r)
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Why a queued chunk could not be read.
enum Unreadable {
    /// not a whole chunk: set aside in corrupt/
    Corrupt(String),
    /// the file is gone
    Gone(String),
    /// an I/O error that may pass (EMFILE, EIO...): retried
    Io(String),
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

struct OpenChunk {
    segments: Vec<(Bytes, u32)>,
    records: u32,
    bytes: usize,
    created: Instant,
    created_sys: SystemTime,
    /// when it was last appended to (`State::clock`)
    last_used: u64,
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

impl State {
    /// The queued chunk a worker should try now: with the last attempt
    /// failed, one never tried before first (is the output down, or was it
    /// that chunk?); otherwise the oldest eligible one.
    fn pick(&mut self, now: Instant) -> Option<Queued> {
        if self.gate.map(|g| g > now).unwrap_or(false) {
            return None;
        }
        let fresh = if self.streak > 0 {
            self.queue.iter().position(|q| q.retry.attempts == 0)
        } else {
            None
        };
        let i = fresh.or_else(|| self.queue.iter().position(|q| q.eligible(now)))?;
        self.queue.remove(i)
    }

    /// When a worker with nothing to take should look again.
    fn next_wake(&self, now: Instant) -> Option<Instant> {
        let earliest = self
            .queue
            .iter()
            .map(|q| q.retry.not_before.unwrap_or(now))
            .min()?;
        Some(self.gate.map(|g| g.max(earliest)).unwrap_or(earliest))
    }
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

pub fn dead_letter_dir(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("dead-letter").join(id)
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
            let recovered = filestore::recover(&dir, &data_dir.join("corrupt"), id)?;
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
            };
            writer = Some(Mutex::new(Writer::spawn(dir, limits, shared.clone(), id)?));
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
        let mut sealed = 0;
        {
            let mut st = self.lock();
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
        for _ in 0..n {
            self.shared.work.notify_one();
        }
    }

    /// Stops accepting; open chunks are sealed; workers finish the queue and exit.
    pub fn close(&self) {
        self.lock().closing = true;
        self.seal_due(true);
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

    /// One worker: takes the first queued chunk that is not waiting for a
    /// retry and makes one write attempt. A chunk that failed goes back to
    /// the head of the queue with a not-before time (its backoff), and the
    /// worker goes on with the next one: one failing chunk never holds the
    /// others up. After `halt`, it stops once its current write attempt is
    /// over; an unfinished chunk stays queued for `take_queue`.
    pub async fn worker(self: Arc<Self>) {
        loop {
            let notified = self.shared.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let halted = self.shared.halt.notified();
            tokio::pin!(halted);
            halted.as_mut().enable();
            let mut wake_at = None;
            let next = {
                let mut st = self.lock();
                if st.halting {
                    return;
                }
                match st.pick(Instant::now()) {
                    Some(c) => {
                        st.in_flight += 1;
                        st.flying.push(c.created);
                        Some(c)
                    }
                    None if st.queue.is_empty()
                        && st.closing
                        && st.open.is_empty()
                        && st.open_files == 0 =>
                    {
                        return
                    }
                    None => {
                        wake_at = st.next_wake(Instant::now());
                        None
                    }
                }
            };
            let Some(mut q) = next else {
                match wake_at {
                    Some(t) => {
                        tokio::select! {
                            _ = notified => {}
                            _ = halted => {}
                            _ = tokio::time::sleep_until(t.into()) => {}
                        }
                    }
                    None => {
                        tokio::select! {
                            _ = notified => {}
                            _ = halted => {}
                        }
                    }
                }
                continue;
            };
            // more work may be waiting for another worker
            self.shared.work.notify_one();
            let done = self.attempt(&mut q).await;
            let bytes = q.bytes;
            {
                let mut st = self.lock();
                st.in_flight -= 1;
                if let Some(i) = st.flying.iter().position(|t| *t == q.created) {
                    st.flying.swap_remove(i);
                }
                if !done {
                    // back in its place (creation order), tried again first
                    // among its elders once its backoff is over
                    let at = st
                        .queue
                        .iter()
                        .position(|c| c.created > q.created)
                        .unwrap_or(st.queue.len());
                    st.queue.insert(at, q);
                    drop(st);
                    // an idle worker recomputes when to wake up
                    self.shared.work.notify_one();
                    continue;
                }
            }
            self.release(bytes);
        }
    }

    /// Stops the workers after their current write attempt (a retry wait is
    /// cut short) and stops accepting; what is left stays queued for
    /// `take_queue`. Used by a reload to hand chunks to the new pipeline.
    pub fn halt(&self) {
        {
            let mut st = self.lock();
            st.halting = true;
            st.closing = true;
        }
        self.seal_due(true);
        self.shared.halt.notify_waiters();
        self.shared.work.notify_waiters();
        self.shared.space.notify_waiters();
    }

    /// Waits (up to `timeout`) until the file writer has sealed and queued
    /// every open chunk; true when it has.
    pub async fn wait_sealed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let open = {
                let st = self.lock();
                st.open_files + st.open.len()
            };
            if open == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Removes and returns every queued chunk (after `halt`).
    pub fn take_queue(&self) -> Vec<Queued> {
        let taken: Vec<Queued> = {
            let mut st = self.lock();
            let q: Vec<Queued> = st.queue.drain(..).collect();
            let bytes: usize = q.iter().map(|c| c.bytes).sum();
            st.total = st.total.saturating_sub(bytes);
            q
        };
        self.shared.space.notify_waiters();
        taken
    }

    /// Queues chunks handed over by the previous pipeline, ahead of new ones.
    pub fn adopt(&self, chunks: Vec<Queued>) {
        let n = chunks.len();
        {
            let mut st = self.lock();
            for c in chunks.into_iter().rev() {
                st.total += c.bytes;
                st.queue.push_front(c);
            }
        }
        for _ in 0..n {
            self.shared.work.notify_one();
        }
    }

    /// After a reload, before the workers start: a queued chunk whose events
    /// the output now keys differently (its path or key template changed)
    /// is buffered again through the current partitioner and the old chunk
    /// removed; the others stay as they are. Returns (chunks re-keyed,
    /// records in them).
    pub async fn repartition(&self) -> (usize, u64) {
        let queued: Vec<Queued> = {
            let mut st = self.lock();
            let q: Vec<Queued> = st.queue.drain(..).collect();
            let bytes: usize = q.iter().map(|c| c.bytes).sum();
            st.total = st.total.saturating_sub(bytes);
            q
        };
        let mut keep = Vec::new();
        let (mut moved, mut records) = (0, 0);
        for q in queued {
            // an unreadable chunk is left for the worker to set aside
            let Ok(chunk) = self.materialize(&q).await else {
                keep.push(q);
                continue;
            };
            let entries = if chunk.segments.len() == 1 {
                chunk.segments[0].clone()
            } else {
                Bytes::from(chunk.segments.concat())
            };
            let batch = Batch::new(q.tag.clone(), entries, q.records);
            if self.split(&batch).iter().all(|(k, _, _)| *k == q.key) {
                keep.push(q);
                continue;
            }
            match self.append_counted(&batch, false).await {
                Ok(()) => {
                    moved += 1;
                    records += q.records as u64;
                    if let QueuedData::File(p) = &q.data {
                        let p2 = p.clone();
                        let removed = tokio::task::spawn_blocking(move || std::fs::remove_file(p2))
                            .await
                            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                        if let Err(e) = removed {
                            warn!(output = %self.id, path = %p.display(), error = %e, "re-keyed chunk could not be removed: its events may be written twice");
                        }
                    }
                }
                Err(e) => {
                    warn!(output = %self.id, chunk = %q.id, error = %e, "cannot re-key a chunk after the reload; it keeps its old destination");
                    keep.push(q);
                }
            }
        }
        self.adopt(keep);
        (moved, records)
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

    pub fn backoff(&self, attempt: u32) -> Duration {
        backoff(&self.cfg, attempt)
    }

    /// Reads a queued chunk into memory for the output.
    async fn materialize(&self, q: &Queued) -> Result<Chunk, Unreadable> {
        let segments = match &q.data {
            QueuedData::Memory(segs) => segs.iter().map(|(b, _)| b.clone()).collect(),
            QueuedData::File(path) => {
                let p = path.clone();
                let data = tokio::task::spawn_blocking(move || std::fs::read(&p))
                    .await
                    .map_err(|e| Unreadable::Io(e.to_string()))?
                    .map_err(|e| {
                        let m = format!("cannot read chunk {}: {e}", path.display());
                        if e.kind() == std::io::ErrorKind::NotFound {
                            Unreadable::Gone(m)
                        } else {
                            // EMFILE, EIO, ENOMEM...: the chunk may read
                            // fine later; it is retried, not set aside
                            Unreadable::Io(m)
                        }
                    })?;
                let scanned = chunkfile::scan(&data).map_err(Unreadable::Corrupt)?;
                scanned.segments(&Bytes::from(data))
            }
        };
        Ok(Chunk {
            id: q.id.clone(),
            tag: q.tag.clone(),
            key: q.key.clone(),
            segments,
            records: q.records,
            bytes: q.bytes,
            created: q.created,
        })
    }

    /// One write attempt of a chunk. True when the chunk is done with
    /// (written, dead-lettered, or set aside as corrupt); false when it
    /// failed and must be tried again at `q.retry.not_before`.
    async fn attempt(&self, q: &mut Queued) -> bool {
        let first = *q.retry.first_attempt.get_or_insert_with(SystemTime::now);
        let started = *q.retry.started.get_or_insert_with(Instant::now);
        let chunk = match self.materialize(q).await {
            Ok(c) => c,
            Err(Unreadable::Corrupt(reason)) => {
                if let QueuedData::File(p) = &q.data {
                    let (p, corrupt, id) = (
                        p.clone(),
                        self.data_dir.join("corrupt"),
                        self.id.to_string(),
                    );
                    let _ = tokio::task::spawn_blocking(move || {
                        filestore::set_aside(&p, &corrupt, &id, &reason)
                    })
                    .await;
                }
                self.counters
                    .records_dropped
                    .fetch_add(q.records as u64, Ordering::Relaxed);
                return true;
            }
            Err(Unreadable::Gone(reason)) => {
                error!(output = %self.id, chunk = %q.id, records = q.records, error = %reason, "a queued chunk file is gone (removed by someone else?): its records are lost");
                self.counters
                    .records_dropped
                    .fetch_add(q.records as u64, Ordering::Relaxed);
                return true;
            }
            Err(Unreadable::Io(reason)) => {
                return self.retry_later(q, &reason, started, first).await
            }
        };
        let t0 = Instant::now();
        let result = self.output.write(&chunk).await;
        self.counters.write_duration.observe(t0.elapsed());
        drop(chunk);
        match result {
            Ok(()) => {
                self.counters
                    .records_out
                    .fetch_add(q.records as u64, Ordering::Relaxed);
                self.counters
                    .bytes_out
                    .fetch_add(q.bytes as u64, Ordering::Relaxed);
                self.counters.failing_streak.store(0, Ordering::Relaxed);
                {
                    let mut st = self.lock();
                    st.streak = 0;
                    st.gate = None;
                }
                if let QueuedData::File(p) = &q.data {
                    let p = p.clone();
                    let removed = tokio::task::spawn_blocking(move || std::fs::remove_file(&p))
                        .await
                        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                    if let (Err(e), QueuedData::File(p)) = (removed, &q.data) {
                        warn!(output = %self.id, path = %p.display(), error = %e, "delivered chunk could not be removed");
                    }
                }
                true
            }
            Err(OutputError::Fatal(e)) => {
                self.counters.failed(&q.id, &e);
                let attempts = q.retry.attempts + 1;
                self.dead_letter(q, "fatal error", &e, attempts, first)
                    .await;
                true
            }
            Err(OutputError::Retryable(e)) => self.retry_later(q, &e, started, first).await,
        }
    }

    /// After a retryable failure: the chunk waits its backoff in the queue
    /// (false), or is dead-lettered when its retries are exhausted (true).
    async fn retry_later(
        &self,
        q: &mut Queued,
        e: &str,
        started: Instant,
        first: SystemTime,
    ) -> bool {
        self.counters.failed(&q.id, e);
        q.retry.attempts += 1;
        let attempt = q.retry.attempts;
        let exhausted = !self.cfg.retry_forever
            && (self
                .cfg
                .retry_max_times
                .map(|m| attempt > m)
                .unwrap_or(false)
                || started.elapsed() >= self.cfg.retry_timeout.0);
        if exhausted {
            self.dead_letter(q, "retries exhausted", e, attempt, first)
                .await;
            return true;
        }
        let wait = self.backoff(attempt);
        self.counters.retries.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = self.retry_warn.check() {
            warn!(output = %self.id, chunk = %q.id, tag = %q.tag, attempt, retry_in = ?wait, suppressed, error = %e, "write failed, will retry (the other chunks go on)");
        }
        q.retry.not_before = Some(Instant::now() + wait);
        let mut st = self.lock();
        st.streak = st.streak.saturating_add(1);
        let gate = if st.streak == attempt {
            wait
        } else {
            self.backoff(st.streak)
        };
        st.gate = Some(Instant::now() + gate);
        false
    }

    /// Moves a chunk, intact, to `data_dir/dead-letter/<output>/` with a JSON
    /// file saying why (both 0600, the directory 0700), off the reactor.
    async fn dead_letter(
        &self,
        q: &Queued,
        reason: &str,
        err: &str,
        attempts: u32,
        first: SystemTime,
    ) {
        let dir = dead_letter_dir(&self.data_dir, &self.id);
        let dest = dir.join(format!("{}.chunk", q.id));
        let note = DeadLetterNote {
            output: self.id.to_string(),
            chunk_id: q.id.clone(),
            tag: q.tag.to_string(),
            key: q.key.to_string(),
            records: q.records,
            bytes: q.bytes,
            reason: reason.to_string(),
            error: err.to_string(),
            attempts,
            created_ms: millis(q.created),
            first_attempt_ms: millis(first),
            last_attempt_ms: millis(SystemTime::now()),
        };
        let source = match &q.data {
            QueuedData::File(p) => Ok(p.clone()),
            QueuedData::Memory(segs) => {
                let meta = ChunkMeta {
                    id: q.id.clone(),
                    tag: q.tag.to_string(),
                    key: q.key.to_string(),
                    created_ms: millis(q.created),
                };
                Err(chunkfile::encode_chunk(&meta, segs))
            }
        };
        let dest2 = dest.clone();
        let written = tokio::task::spawn_blocking(move || {
            create_private_dir(&dir)?;
            match source {
                Ok(p) => std::fs::rename(&p, &dest2)?,
                Err(bytes) => write_private(&dest2, &bytes)?,
            }
            write_private(
                &dest2.with_extension("json"),
                &serde_json::to_vec_pretty(&note).unwrap_or_default(),
            )
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        self.counters.dead(q.records);
        match written {
            Ok(()) => {
                error!(output = %self.id, chunk = %q.id, tag = %q.tag, records = q.records, attempts, reason, error = err, path = %dest.display(), "chunk moved to the dead-letter directory")
            }
            Err(e) => {
                self.counters
                    .records_dropped
                    .fetch_add(q.records as u64, Ordering::Relaxed);
                error!(output = %self.id, chunk = %q.id, records = q.records, reason, error = err, io_error = %e, "chunk could not be written to the dead-letter directory: dropped")
            }
        }
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

pub fn backoff(cfg: &BufferConfig, attempt: u32) -> Duration {
    let base = cfg.retry_wait.0.as_secs_f64();
    let exp = cfg
        .retry_exponential_backoff_base
        .powi(attempt.saturating_sub(1).min(64) as i32);
    let mut secs = (base * exp).min(cfg.retry_max_interval.0.as_secs_f64());
    if cfg.retry_randomize {
        secs *= 0.875 + rand::random::<f64>() * 0.25;
    }
    Duration::from_secs_f64(secs.max(0.0))
}

/// The JSON file beside a dead-lettered chunk.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DeadLetterNote {
    pub output: String,
    pub chunk_id: String,
    pub tag: String,
    pub key: String,
    pub records: u32,
    pub bytes: usize,
    pub reason: String,
    pub error: String,
    pub attempts: u32,
    pub created_ms: u64,
    pub first_attempt_ms: u64,
    pub last_attempt_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use fuwa_api::event::write_entry;
    use fuwa_api::EventTime;
    use std::sync::atomic::AtomicU64;

    /// always fails with a retryable error
    struct Down;
    #[async_trait]
    impl Output for Down {
        async fn write(&self, _chunk: &Chunk) -> Result<(), OutputError> {
            Err(OutputError::Retryable("down".into()))
        }
    }

    /// fails (retryable) every chunk of tag "bad", writes the others
    #[derive(Default)]
    struct FailsBad {
        written: Mutex<Vec<(String, u32)>>,
        bad_attempts: AtomicU64,
    }
    #[async_trait]
    impl Output for FailsBad {
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

    fn tagged(tag: &str, n: u32) -> Batch {
        let b = batch(n);
        Batch::new(Arc::from(tag), b.entries, n)
    }

    async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !cond() {
            assert!(t0.elapsed() < Duration::from_secs(20), "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_chunk_backing_off_does_not_hold_up_the_others() {
        let cfg = BufferConfig {
            retry_wait: fuwa_api::HumanDuration(Duration::from_millis(300)),
            retry_randomize: false,
            retry_max_times: Some(2),
            ..BufferConfig::memory()
        };
        let out = Arc::new(FailsBad::default());
        let dir = tempfile::tempdir().unwrap();
        let b = OutputBuffer::new("o", out.clone(), cfg, dir.path()).unwrap();
        b.append(&tagged("bad", 3)).await.unwrap();
        b.seal_due(true);
        let w = tokio::spawn(b.clone().worker());
        for i in 0..5 {
            b.append(&tagged(&format!("good{i}"), 2)).await.unwrap();
            b.seal_due(true);
        }
        // one worker: every good chunk is written while "bad" backs off
        wait_for("good chunks written", || {
            out.written.lock().unwrap().len() == 5
        })
        .await;
        assert!(out.bad_attempts.load(Ordering::Relaxed) <= 2);
        // then "bad" runs out of its 2 retries (3 attempts) and is dead-lettered
        wait_for("bad dead-lettered", || {
            b.counters.chunks_dead.load(Ordering::Relaxed) == 1
        })
        .await;
        assert_eq!(out.bad_attempts.load(Ordering::Relaxed), 3);
        let note: DeadLetterNote = serde_json::from_slice(
            &std::fs::read(
                std::fs::read_dir(dead_letter_dir(dir.path(), "o"))
                    .unwrap()
                    .flatten()
                    .map(|e| e.path())
                    .find(|p| p.extension().map(|x| x == "json").unwrap_or(false))
                    .unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (note.attempts, note.records, note.tag.as_str()),
            (3, 3, "bad")
        );
        assert!(note.first_attempt_ms < note.last_attempt_ms);
        assert_eq!(b.counters.records_out.load(Ordering::Relaxed), 10);
        assert_eq!(b.counters.records_dead.load(Ordering::Relaxed), 3);
        b.close();
        tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .expect("the worker stopped")
            .unwrap();
    }

    /// counts its attempts, fails every one
    #[derive(Default)]
    struct CountingDown(AtomicU64);
    #[async_trait]
    impl Output for CountingDown {
        async fn write(&self, _chunk: &Chunk) -> Result<(), OutputError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Err(OutputError::Retryable("down".into()))
        }
    }

    #[tokio::test]
    async fn a_down_output_sees_one_backoff_not_one_attempt_per_chunk() {
        let cfg = BufferConfig {
            retry_wait: fuwa_api::HumanDuration(Duration::from_millis(100)),
            retry_randomize: false,
            retry_forever: true,
            flush_thread_count: 4,
            ..BufferConfig::memory()
        };
        let out = Arc::new(CountingDown::default());
        let b = OutputBuffer::new("o", out.clone(), cfg, Path::new("/nonexistent")).unwrap();
        for i in 0..20 {
            b.append(&tagged(&format!("t{i}"), 1)).await.unwrap();
        }
        b.seal_due(true);
        let workers: Vec<_> = (0..4).map(|_| tokio::spawn(b.clone().worker())).collect();
        // attempts at about 0, 100ms, 300ms (the output's backoff doubles)
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = out.0.load(Ordering::Relaxed);
        assert!((1..=5).contains(&n), "{n} attempts in 500ms");
        b.halt();
        for w in workers {
            tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .expect("stopped")
                .unwrap();
        }
        assert_eq!(b.take_queue().len(), 20);
    }

    fn queued_file(path: PathBuf) -> Queued {
        Queued {
            id: new_chunk_id(),
            tag: Arc::from("t"),
            key: Arc::from(""),
            records: 7,
            bytes: 70,
            created: SystemTime::now(),
            data: QueuedData::File(path),
            retry: RetryState::default(),
        }
    }

    #[tokio::test]
    async fn a_chunk_that_cannot_be_read_now_is_retried_not_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BufferConfig {
            retry_wait: fuwa_api::HumanDuration(Duration::from_secs(3600)),
            ..BufferConfig::default()
        };
        let out = Arc::new(FailsBad::default());
        let b = OutputBuffer::new("o", out.clone(), cfg, dir.path()).unwrap();
        // reading a directory fails with an I/O error (like EMFILE or EIO
        // would), not with a corrupt chunk
        let unreadable = dir.path().join("unreadable.chunk");
        std::fs::create_dir(&unreadable).unwrap();
        b.shared.enqueue(vec![
            queued_file(dir.path().join("gone.chunk")),
            queued_file(unreadable.clone()),
        ]);
        let w = tokio::spawn(b.clone().worker());
        wait_for("both tried", || {
            b.counters.retries.load(Ordering::Relaxed) == 1
                && b.counters.records_dropped.load(Ordering::Relaxed) == 7
        })
        .await;
        // the unreadable one waits for its retry; the gone one is counted lost
        assert!(!dir.path().join("corrupt").exists());
        assert!(unreadable.exists());
        assert_eq!(b.snapshot().queued_chunks, 1);
        b.halt();
        tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .expect("stopped")
            .unwrap();
    }

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

    #[tokio::test]
    async fn open_chunk_files_are_capped_least_recently_written_sealed_first() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BufferConfig {
            max_open_chunks: Some(4),
            flush_interval: Some(fuwa_api::HumanDuration(Duration::from_secs(3600))),
            ..BufferConfig::default()
        };
        let b = OutputBuffer::new("o", Arc::new(Down), cfg, dir.path()).unwrap();
        // "keep" is written between every other tag: never the least recent
        for i in 0..40 {
            b.append(&tagged(&format!("tag{i}"), 1)).await.unwrap();
            b.append(&tagged("keep", 1)).await.unwrap();
            assert!(b.lock().open_files <= 4, "{} open", b.lock().open_files);
        }
        let s = b.snapshot();
        assert_eq!(s.queued_chunks, 37, "40 tags + keep, 4 still open");
        assert!(b.lock().queue.iter().all(|q| &*q.tag != "keep"));
        let chunk_files = std::fs::read_dir(buffer_dir(dir.path(), "o"))
            .unwrap()
            .count();
        assert_eq!(chunk_files, 41);
        let (_, records) = b.pending();
        assert_eq!(
            records, 37,
            "queued records (the open ones are not counted)"
        );
        // private files and directories whatever the umask
        use std::os::unix::fs::PermissionsExt;
        for e in std::fs::read_dir(buffer_dir(dir.path(), "o"))
            .unwrap()
            .flatten()
        {
            let mode = e.metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", e.path().display());
        }
        let mode = std::fs::metadata(buffer_dir(dir.path(), "o"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    fn batch(n: u32) -> Batch {
        let mut out = Vec::new();
        for i in 0..n {
            let mut b = Vec::new();
            rmpv::encode::write_value(&mut b, &rmpv::Value::from(i)).unwrap();
            write_entry(&mut out, EventTime::new(1, 0), &b);
        }
        Batch::new(Arc::from("t"), Bytes::from(out), n)
    }

    #[tokio::test]
    async fn halt_cuts_a_retry_wait_short_and_hands_the_chunks_back() {
        let cfg = BufferConfig {
            retry_wait: fuwa_api::HumanDuration(Duration::from_secs(3600)),
            retry_forever: true,
            ..BufferConfig::memory()
        };
        let b = OutputBuffer::new("o", Arc::new(Down), cfg, Path::new("/nonexistent")).unwrap();
        b.append(&batch(3)).await.unwrap();
        b.seal_due(true);
        b.append(&batch(2)).await.unwrap();
        b.seal_due(true);
        let w = tokio::spawn(b.clone().worker());
        // the worker tries the first chunk, fails, and the output waits an
        // hour (its backoff) before trying any chunk
        let t0 = Instant::now();
        while b.counters.retries.load(Ordering::Relaxed) < 1 || b.snapshot().queued_chunks < 2 {
            assert!(t0.elapsed() < Duration::from_secs(5));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let s = b.snapshot();
        assert_eq!((s.in_flight_chunks, s.queued_chunks, s.chunks), (0, 2, 2));
        assert!(s.oldest.is_some());
        b.halt();
        tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .expect("the worker stopped")
            .unwrap();
        let left = b.take_queue();
        assert_eq!(
            left.iter().map(|q| q.records).collect::<Vec<_>>(),
            vec![3, 2]
        );
        assert_eq!(b.snapshot().bytes, 0);
        assert_eq!(b.counters.failing_streak.load(Ordering::Relaxed), 1);
        assert_eq!(
            left.iter().map(|q| q.retry.attempts).collect::<Vec<_>>(),
            vec![1, 0]
        );
        assert!(b.counters.last_error.lock().unwrap().is_some());

        // another buffer adopts them ahead of its own
        let c = OutputBuffer::new("o", Arc::new(Down), BufferConfig::memory(), Path::new("/x"))
            .unwrap();
        c.append(&batch(1)).await.unwrap();
        c.seal_due(true);
        let bytes: usize = left.iter().map(|q| q.bytes).sum();
        c.adopt(left);
        let s = c.snapshot();
        assert_eq!(s.queued_chunks, 3);
        assert_eq!(s.records, 6);
        assert!(s.bytes > bytes);
        // no partitioner: nothing to re-key
        assert_eq!(c.repartition().await, (0, 0));
        assert_eq!(c.snapshot().queued_chunks, 3);
    }
}
