//! Delivery: the output's workers take sealed chunks from the queue and
//! make one write attempt each. A chunk that fails goes back to the queue
//! with its own not-before time and attempt count, and the workers go on
//! with the others (no head-of-line blocking); after any failure the output
//! as a whole waits backoff(failures in a row) before its next attempt and
//! tries a chunk never tried before first, so a down output is not hit by
//! every queued chunk at once. Past the retries, or on a fatal error, a
//! chunk goes intact to the dead letters (`super::deadletter`).
//!
//! A reload stops the workers with `halt`, takes the queue with
//! `take_queue` and gives it to the new pipeline's buffer (`adopt`, then
//! `repartition` when the output keys its events differently now).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use fuwa_api::{Batch, Chunk, OutputError};
use tracing::{error, warn};

use super::config::BufferConfig;
use super::file::{chunkfile, store};
use super::{OutputBuffer, Queued, QueuedData, RetryState, State};

#[cfg(test)]
mod tests;

/// Why a queued chunk could not be read.
enum Unreadable {
    /// not a whole chunk: set aside in corrupt/
    Corrupt(String),
    /// the file is gone
    Gone(String),
    /// an I/O error that may pass (EMFILE, EIO...): retried
    Io(String),
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

impl OutputBuffer {
    /// Periodically seals chunks that reached flush_interval; returns as
    /// soon as the buffer closes or halts (a stop waits for it).
    pub async fn flusher(self: Arc<Self>) {
        let tick =
            (self.flush_interval / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            let closed = self.shared.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.lock().closing {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = closed => return,
            }
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
        self.shared.closed.notify_waiters();
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
                        store::set_aside(&p, &corrupt, &id, &reason)
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
                self.delivered(q, q.records, q.bytes).await;
                true
            }
            Err(OutputError::Fatal(e)) => {
                self.counters.failed(&q.id, &e);
                let attempts = q.retry.attempts + 1;
                self.dead_letter(q, "fatal error", &e, attempts, first)
                    .await;
                true
            }
            Err(OutputError::Rejected { events, reason }) => {
                // the rest of the chunk is delivered: only these events are
                // set aside, in a letter of their own under the chunk's id
                let n = events.len().min(q.records as usize) as u32;
                let size: usize = events.iter().map(|e| e.len()).sum();
                self.delivered(q, q.records - n, q.bytes.saturating_sub(size))
                    .await;
                self.counters.failed(&q.id, &reason);
                let rejected = Queued {
                    id: q.id.clone(),
                    tag: q.tag.clone(),
                    key: q.key.clone(),
                    records: n,
                    bytes: size,
                    created: q.created,
                    data: QueuedData::Memory(vec![(Bytes::from(events.concat()), n)]),
                    retry: RetryState::default(),
                };
                let attempts = q.retry.attempts + 1;
                self.dead_letter(&rejected, "events rejected", &reason, attempts, first)
                    .await;
                true
            }
            Err(OutputError::Retryable(e)) => self.retry_later(q, &e, started, first).await,
        }
    }

    /// After a write delivered `records` events of the chunk (`bytes` of
    /// payload): counted, the failure streak ends, the chunk file goes.
    async fn delivered(&self, q: &Queued, records: u32, bytes: usize) {
        self.counters
            .records_out
            .fetch_add(records as u64, Ordering::Relaxed);
        self.counters
            .bytes_out
            .fetch_add(bytes as u64, Ordering::Relaxed);
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
