//! Sending a chunk's records in batch calls (Firehose PutRecordBatch,
//! Kinesis PutRecords), shared by both outputs: each keeps only what is its
//! service's (building the request, reading the per-record answers, error
//! codes and hints, metrics), and hands this module a call.
//!
//! [`send`] packs the pending records into calls ([`pack`], by max records
//! and max bytes), keeps at most the AIMD's number of calls in flight,
//! resends only the records that failed, with exponential backoff and
//! jitter, until all are delivered, `attempts` rounds or `timeout` are used
//! up, or an error no retry fixes comes back. Throttling (a whole call that
//! failed retryably, or records the service refused for throughput) halves
//! the calls in flight and the rate factor, once per round; an answered call
//! without throttled records raises them.
//!
//! Which records of a chunk were delivered is kept in [`Delivered`], by
//! chunk id, when the attempts run out, so the engine's retry of the chunk
//! skips them. It is memory only: a crash loses it and the chunk is then
//! sent again from its start (at-least-once).
//!
//! An output keeps a [`Sender`] (its rates as a [`Pace`], the AIMD, the
//! memory, its [`Limits`] and retry keys) and calls [`Sender::send`] with a
//! [`Job`]; it is told of rejected records and failed calls through
//! [`Observe`] (its counters and debug lines). The config checks and
//! defaults of the keys both outputs accept ([`check_keys`], [`defaults`],
//! [`is_stream_name`]) and the `Rejected` of oversize events ([`oversize`])
//! are here too.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fuwa_api::memory::{grown, size, JSON_OF_MSGPACK, MIB};
use fuwa_api::{MemoryBound, OutputError};
use rand::Rng;
use tokio::task::JoinSet;

use crate::limit::{Aimd, TokenBucket};

/// How long a partly delivered chunk is remembered for a retry.
pub const MEMORY_TTL: Duration = Duration::from_secs(24 * 3600);

/// What the service said about one record of an answered call.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Ok,
    /// rejected, a resend may go through; `error` is what the final
    /// `Retryable` quotes, `throttled` lowers the rate
    Retry {
        error: String,
        throttled: bool,
    },
    /// rejected for good: the chunk fails with this `Fatal` message
    Fatal(String),
}

/// What became of one call.
#[derive(Debug)]
pub enum CallOutcome {
    /// one answer per record, in the order the records were given
    Answered(Vec<Answer>),
    /// the call failed as a whole; `throttled` is what the service said,
    /// for the counters (any retryable failure lowers the rate)
    Failed { error: OutputError, throttled: bool },
}

/// What an output counts and logs of the sending, told as it happens (the
/// output logs it, so its log target and filters stay its own).
pub trait Observe: Sync {
    /// `failed` records of `chunk` were rejected inside an answered call,
    /// `throttled` of them for throughput; they will be resent
    fn failed_records(&self, _chunk: &str, _failed: u64, _throttled: u64) {}
    /// a call for `chunk` failed as a whole; `retry` is its error when a
    /// resend may go through (then the sender backs off)
    fn failed_call(&self, _chunk: &str, _throttled: bool, _retry: Option<&str>) {}
}

/// The per-chunk memory of delivered record indexes.
#[derive(Debug, Default)]
pub struct Delivered {
    chunks: Mutex<HashMap<String, (Instant, HashSet<usize>)>>,
}

impl Delivered {
    pub fn get(&self, chunk: &str) -> HashSet<usize> {
        self.lock()
            .get(chunk)
            .map(|d| d.1.clone())
            .unwrap_or_default()
    }

    /// Keep `done` for `chunk` (nothing if empty), dropping entries older
    /// than [`MEMORY_TTL`].
    pub fn remember(&self, chunk: &str, done: &HashSet<usize>) {
        let mut m = self.lock();
        let now = Instant::now();
        m.retain(|_, v| now.duration_since(v.0) < MEMORY_TTL);
        if !done.is_empty() {
            m.insert(chunk.to_string(), (now, done.clone()));
        }
    }

    pub fn forget(&self, chunk: &str) {
        self.lock().remove(chunk);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, HashSet<usize>)>> {
        self.chunks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Group the `pending` record indexes, in order, into calls of at most
/// `max_records` records and `max_bytes` bytes (`size` of each record); a
/// record larger than `max_bytes` goes alone.
pub fn pack<R>(
    records: &[R],
    pending: &[usize],
    size: impl Fn(&R) -> usize,
    max_records: usize,
    max_bytes: usize,
) -> Vec<Vec<usize>> {
    let mut calls = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for &i in pending {
        let n = size(&records[i]);
        if !cur.is_empty() && (cur.len() >= max_records || bytes + n > max_bytes) {
            calls.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        cur.push(i);
        bytes += n;
    }
    if !cur.is_empty() {
        calls.push(cur);
    }
    calls
}

/// The configured rates of an output (token buckets), slowed by the AIMD's
/// rate factor.
#[derive(Debug, Default)]
pub struct Pace {
    pub requests: Option<TokenBucket>,
    pub records: Option<TokenBucket>,
    pub bytes: Option<TokenBucket>,
}

impl Pace {
    pub fn new(requests: Option<u64>, records: Option<u64>, bytes: Option<u64>) -> Self {
        let b = |r: Option<u64>| r.map(|r| TokenBucket::new(r as f64));
        Pace {
            requests: b(requests),
            records: b(records),
            bytes: b(bytes),
        }
    }

    /// Records and bytes per call: the service's limits, and no more than a
    /// quarter second's worth of a configured rate, so pacing stays smooth
    /// (never less than one record of `max_record` bytes).
    pub fn call_limits(
        &self,
        max_records: usize,
        max_bytes: usize,
        max_record: usize,
    ) -> (usize, usize) {
        let mut recs = max_records;
        if let Some(b) = &self.records {
            recs = recs.min(((b.rate() / 4.0) as usize).max(1));
        }
        let mut bytes = max_bytes;
        if let Some(b) = &self.bytes {
            bytes = bytes.min(((b.rate() / 4.0) as usize).max(max_record));
        }
        (recs, bytes)
    }

    /// Wait for one call of `records` records and `bytes` bytes.
    pub async fn acquire(&self, aimd: &Aimd, records: usize, bytes: usize) {
        let (_, scale) = aimd.current();
        if let Some(b) = &self.requests {
            b.acquire(1.0, scale).await;
        }
        if let Some(b) = &self.records {
            b.acquire(records as f64, scale).await;
        }
        if let Some(b) = &self.bytes {
            b.acquire(bytes as f64, scale).await;
        }
    }
}

/// The checks of the sending keys both batch outputs accept.
pub fn check_keys(
    max_in_flight: usize,
    records_per_second: Option<u64>,
    bytes_per_second: Option<u64>,
    retry_attempts: u32,
) -> Vec<(&'static str, String)> {
    let mut errors = Vec::new();
    if !(1..=64).contains(&max_in_flight) {
        errors.push(("max_in_flight", "1 to 64".into()));
    }
    if records_per_second == Some(0) {
        errors.push(("records_per_second", "more than zero (or unset)".into()));
    }
    if bytes_per_second == Some(0) {
        errors.push(("bytes_per_second", "more than zero (or unset)".into()));
    }
    if retry_attempts == 0 {
        errors.push(("retry_attempts", "at least 1".into()));
    }
    errors
}

/// Whether `name` is a stream name: 1 to `max` of A-Z a-z 0-9 _ . - (an
/// ARN is not).
pub fn is_stream_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// The `Rejected` of the events too big for one record (`None` if there is
/// none), once the `others` records of the chunk were delivered: "event of
/// N bytes `limit`; …".
pub fn oversize(oversize: &[(usize, Bytes)], limit: &str, others: usize) -> Option<OutputError> {
    let &(n, _) = oversize.first()?;
    let more = match oversize.len() {
        1 => String::new(),
        k => format!(" ({k} such events in this chunk)"),
    };
    Some(OutputError::Rejected {
        events: oversize.iter().map(|(_, e)| e.clone()).collect(),
        reason: format!(
            "event of {n} bytes {limit}{more}; the {others} other records of the chunk were delivered"
        ),
    })
}

/// The defaults of the sending keys both batch outputs accept (serde
/// `default = "fuwa_aws::batch::defaults::…"`).
pub mod defaults {
    use std::time::Duration;

    use fuwa_api::HumanDuration;

    pub fn max_in_flight() -> usize {
        4
    }
    pub fn retry_attempts() -> u32 {
        8
    }
    pub fn retry_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }
    /// of one call
    pub fn timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }
    pub fn connect_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
}

/// One chunk to send.
pub struct Batch<'a, R> {
    /// the call and stream, for messages: "PutRecords my-stream"
    pub what: &'a str,
    /// the chunk id: the key of the delivered memory
    pub chunk: &'a str,
    pub records: &'a [R],
    /// what a record counts against `max_bytes`
    pub size: fn(&R) -> usize,
    pub max_records: usize,
    pub max_bytes: usize,
    /// rounds of calls at most (at least one is made)
    pub attempts: u32,
    /// no new round starts after this
    pub timeout: Duration,
    pub aimd: &'a Aimd,
    pub memory: &'a Delivered,
    pub observe: &'a dyn Observe,
}

/// What [`send`] did.
#[derive(Debug)]
pub struct Sent {
    /// indexes delivered by this write (not those skipped), in answer order
    pub delivered: Vec<usize>,
    /// indexes skipped because an earlier write delivered them
    pub skipped: usize,
    /// calls made
    pub calls: u64,
    /// rounds made
    pub attempts: u32,
    /// `Ok` when every record is delivered
    pub result: Result<(), OutputError>,
}

/// Send `batch.records` with `call` (given the records of one call, in
/// order), as the module comment says. On `Ok` and on a fatal error the
/// chunk is forgotten; when attempts or time run out, what was delivered
/// is remembered and the result is `Retryable`.
pub async fn send<R, F, Fut>(batch: Batch<'_, R>, mut call: F) -> Sent
where
    R: Clone,
    F: FnMut(Vec<R>) -> Fut,
    Fut: Future<Output = CallOutcome> + Send + 'static,
{
    let b = &batch;
    let records = b.records;
    let mut done = b.memory.get(b.chunk);
    let skipped = done.len();
    let started = Instant::now();
    let mut sent = Sent {
        delivered: Vec::new(),
        skipped,
        calls: 0,
        attempts: 0,
        result: Ok(()),
    };
    let mut last_error: Option<String> = None;
    loop {
        let pending: Vec<usize> = (0..records.len()).filter(|i| !done.contains(i)).collect();
        if pending.is_empty() {
            break;
        }
        let attempt = sent.attempts;
        if attempt >= b.attempts || (attempt > 0 && started.elapsed() >= b.timeout) {
            b.memory.remember(b.chunk, &done);
            sent.result = Err(OutputError::Retryable(format!(
                "{}: {} of {} records still failing after {attempt} attempts ({} delivered, kept so a retry skips them): {}",
                b.what,
                pending.len(),
                records.len(),
                done.len(),
                last_error.unwrap_or_default()
            )));
            return sent;
        }
        if attempt > 0 {
            tokio::time::sleep(backoff(attempt)).await;
        }
        sent.attempts += 1;
        let mut calls = pack(records, &pending, b.size, b.max_records, b.max_bytes).into_iter();
        let mut set = JoinSet::new();
        let mut fatal: Option<OutputError> = None;
        let mut throttled = false;
        loop {
            while set.len() < b.aimd.current().0 {
                let Some(idx) = calls.next() else { break };
                let fut = call(idx.iter().map(|&i| records[i].clone()).collect());
                set.spawn(async move { (idx, fut.await) });
            }
            let Some(r) = set.join_next().await else {
                break;
            };
            sent.calls += 1;
            let (idx, outcome) = match r {
                Ok(r) => r,
                Err(e) => {
                    last_error = Some(format!("send task failed: {e}"));
                    continue;
                }
            };
            let outcome = match outcome {
                CallOutcome::Answered(a) if a.len() != idx.len() => CallOutcome::Failed {
                    error: OutputError::Retryable(format!(
                        "{}: {} answers for {} records",
                        b.what,
                        a.len(),
                        idx.len()
                    )),
                    throttled: false,
                },
                o => o,
            };
            match outcome {
                CallOutcome::Answered(answers) => {
                    let (mut failed, mut throttled_here) = (0u64, 0u64);
                    for (i, a) in idx.into_iter().zip(answers) {
                        match a {
                            Answer::Ok => {
                                done.insert(i);
                                sent.delivered.push(i);
                            }
                            Answer::Retry { error, throttled } => {
                                failed += 1;
                                throttled_here += u64::from(throttled);
                                last_error = Some(error);
                            }
                            Answer::Fatal(m) => {
                                failed += 1;
                                fatal.get_or_insert(OutputError::Fatal(m));
                            }
                        }
                    }
                    if throttled_here > 0 {
                        if !throttled {
                            b.aimd.decrease();
                            throttled = true;
                        }
                    } else {
                        b.aimd.increase();
                    }
                    if failed > 0 {
                        b.observe.failed_records(b.chunk, failed, throttled_here);
                    }
                }
                CallOutcome::Failed {
                    error,
                    throttled: t,
                } => match error {
                    OutputError::Fatal(m) | OutputError::Rejected { reason: m, .. } => {
                        b.observe.failed_call(b.chunk, t, None);
                        fatal.get_or_insert(OutputError::Fatal(m));
                    }
                    OutputError::Retryable(m) => {
                        b.observe.failed_call(b.chunk, t, Some(&m));
                        if !throttled {
                            b.aimd.decrease();
                            throttled = true;
                        }
                        last_error = Some(m);
                    }
                },
            }
        }
        if let Some(f) = fatal {
            b.memory.forget(b.chunk);
            sent.result = Err(f);
            return sent;
        }
    }
    b.memory.forget(b.chunk);
    sent
}

/// A service's hard limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub call_records: usize,
    pub call_bytes: usize,
    pub record: usize,
}

/// What an output keeps for sending: its rates, the AIMD, the memory of
/// delivered records, its retry keys.
#[derive(Debug)]
pub struct Sender {
    pub pace: Pace,
    pub aimd: Aimd,
    pub delivered: Delivered,
    limits: Limits,
    attempts: u32,
    timeout: Duration,
}

/// One chunk for [`Sender::send`].
pub struct Job<'a, R> {
    pub what: &'a str,
    pub chunk: &'a str,
    pub records: &'a [R],
    pub size: fn(&R) -> usize,
    pub observe: &'a dyn Observe,
}

impl Sender {
    pub fn new(
        limits: Limits,
        pace: Pace,
        max_in_flight: usize,
        attempts: u32,
        timeout: Duration,
    ) -> Self {
        Sender {
            pace,
            aimd: Aimd::new(max_in_flight),
            delivered: Delivered::default(),
            limits,
            attempts,
            timeout,
        }
    }

    /// What one write of a batching output (Firehose, Kinesis) holds for a
    /// chunk of `chunk_limit` bytes: its records rendered at once (JSON and
    /// each record's own allocation, or records packed into aggregates of
    /// at most `aggregate` bytes), and `max_in_flight` calls, each holding
    /// its records copied into the request and the request's JSON body
    /// (base64: 4/3 of the bytes, in a buffer that may have doubled).
    pub fn memory_bound(&self, chunk_limit: u64, aggregate: Option<u64>) -> MemoryBound {
        let c = chunk_limit;
        let call = self.call_limits().1 as u64;
        let n = self.aimd.max() as u64;
        let mut b = MemoryBound::new();
        match aggregate {
            Some(agg) => {
                b.add(
                    format!(
                        "the chunk's records as JSON ({JSON_OF_MSGPACK} × chunk_limit_size {})",
                        size(c)
                    ),
                    JSON_OF_MSGPACK.saturating_mul(c),
                );
                b.add(
                    format!(
                        "an aggregate of at most {} being filled, grown ×2",
                        size(agg)
                    ),
                    grown(agg),
                );
            }
            None => b.add(
                format!(
                    "the chunk's records as JSON, one allocation each ({} × chunk_limit_size {})",
                    JSON_OF_MSGPACK + 1,
                    size(c)
                ),
                (JSON_OF_MSGPACK + 1).saturating_mul(c),
            ),
        }
        b.add(
            format!(
                "{n} calls in flight × {} × (a copy + base64 JSON body 4/3, grown ×2)",
                size(call)
            ),
            n.saturating_mul(call).saturating_mul(11) / 3,
        );
        b.add("SDK client, connections and answers 1 MiB", MIB);
        b
    }

    /// Records and bytes per call (the service's limits, or less under a
    /// configured rate).
    pub fn call_limits(&self) -> (usize, usize) {
        let l = self.limits;
        self.pace
            .call_limits(l.call_records, l.call_bytes, l.record)
    }

    /// Wait for the rates to allow one call.
    pub async fn acquire(&self, records: usize, bytes: usize) {
        self.pace.acquire(&self.aimd, records, bytes).await;
    }

    /// [`send`] with this output's settings.
    pub async fn send<R, F, Fut>(&self, job: Job<'_, R>, call: F) -> Sent
    where
        R: Clone,
        F: FnMut(Vec<R>) -> Fut,
        Fut: Future<Output = CallOutcome> + Send + 'static,
    {
        let (max_records, max_bytes) = self.call_limits();
        let batch = Batch {
            what: job.what,
            chunk: job.chunk,
            records: job.records,
            size: job.size,
            max_records,
            max_bytes,
            attempts: self.attempts,
            timeout: self.timeout,
            aimd: &self.aimd,
            memory: &self.delivered,
            observe: job.observe,
        };
        send(batch, call).await
    }
}

/// Exponential backoff with jitter before round `attempt` + 1: 100ms,
/// 200ms, ... 5s, each between half and all of it.
fn backoff(attempt: u32) -> Duration {
    let base = (100u64 << (attempt - 1).min(6)).min(5000);
    Duration::from_millis(rand::thread_rng().gen_range(base / 2..=base))
}

#[cfg(test)]
mod tests;
