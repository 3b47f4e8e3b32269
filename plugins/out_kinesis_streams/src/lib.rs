//! The Amazon Kinesis Data Streams output: PutRecords, one record per
//! event (JSON Lines, msgpack or the raw value of `log_key`), or KPL
//! aggregated records (`aggregation = true`) packing the events of one
//! partition key together, within the service's hard limits (500 records
//! and 5 MiB per call, 1 MiB of data + partition key per record, keys of
//! 1 to 256 characters).
//!
//! Retries work as in the Firehose output. PutRecords can accept some
//! records and reject others (`FailedRecordCount > 0`, per record
//! `ProvisionedThroughputExceededException`, `InternalFailure`, KMS
//! throttling); `write` resends only the rejected records, with backoff, for
//! at most `retry_attempts` rounds / `retry_timeout`. If records still fail,
//! it returns `Retryable` and remembers in memory, by chunk id, which
//! records were delivered, so the engine's retry of the chunk skips them. A
//! crash loses that memory: the chunk is then sent again (at-least-once).
//! A record rejected with an error no retry fixes (a KMS key that is
//! disabled or missing, access denied) makes the chunk `Fatal`.
//!
//! Throttling (of a call or of records) halves the calls in flight and the
//! rate factor of the token buckets (AIMD shared with Firehose, in
//! `fuwa_aws::limit`); each answered call without throttling raises them.
//!
//! Events larger than one record can hold are not sent: the rest of the
//! chunk is delivered, then `write` returns `Rejected` with those events, so
//! the engine dead-letters them alone, not their chunk (as the Firehose
//! output does).

mod agg;
mod config;
mod key;
mod records;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::Client;
use fuwa_api::{BuildContext, Chunk, ConfigError, ConfigSection, Metric, Output, OutputError};
use fuwa_aws::{classify_code, Aimd, Class, LazyClient, TokenBucket};
use rand::Rng;
use tokio::task::JoinSet;
use tracing::{debug, warn};

pub use agg::{Aggregator, MAGIC};
use config::Settings;
pub use key::{md5_hex, KeyTemplate};
pub use records::{put_units, MAX_CALL_BYTES, MAX_CALL_RECORDS, MAX_RECORD};
use records::{Rec, Renderer};

/// Counters of what this output sent.
#[derive(Debug, Default)]
pub struct KinesisStats {
    /// PutRecords calls made (answered or not)
    pub calls: AtomicU64,
    /// calls that failed as a whole (throttling, 5xx, network)
    pub failed_calls: AtomicU64,
    /// Kinesis records accepted
    pub records: AtomicU64,
    /// events inside the accepted records (more than records when aggregated)
    pub events: AtomicU64,
    /// records rejected in a partial failure (each resend counts)
    pub failed_records: AtomicU64,
    /// throttled: calls refused for throughput plus records rejected with
    /// ProvisionedThroughputExceeded / KMS throttling
    pub throttled: AtomicU64,
    /// bytes of the accepted records (data + partition key)
    pub payload_bytes: AtomicU64,
    /// 25 KB PUT payload units the accepted records cost
    pub put_units: AtomicU64,
    /// events too big for one record (dead-lettered with their chunk)
    pub oversize_events: AtomicU64,
    /// partition keys that fell back to random (missing field)
    pub key_fallbacks: AtomicU64,
    /// events that could not be rendered (or had no `log_key`)
    pub skipped_events: AtomicU64,
}

/// Chunks that were partly delivered and may come back for a retry.
const MEMORY_TTL: Duration = Duration::from_secs(24 * 3600);

pub struct KinesisOutput {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    stream: String,
    renderer: Renderer,
    explicit_hash_key: Option<String>,
    retry_attempts: u32,
    retry_timeout: Duration,
    records_bucket: Option<TokenBucket>,
    bytes_bucket: Option<TokenBucket>,
    aimd: Aimd,
    client: LazyClient<Client>,
    /// chunk id → indexes of its records already accepted
    delivered: Mutex<HashMap<String, (Instant, HashSet<usize>)>>,
    stats: KinesisStats,
}

pub fn build(
    section: &ConfigSection<'_>,
    ctx: &BuildContext,
) -> Result<Arc<dyn Output>, Vec<ConfigError>> {
    build_output(section, ctx).map(|o| Arc::new(o) as Arc<dyn Output>)
}

pub fn build_output(
    section: &ConfigSection<'_>,
    ctx: &BuildContext,
) -> Result<KinesisOutput, Vec<ConfigError>> {
    let Settings { cfg, renderer, aws } = config::settings(section, ctx)?;
    let client = LazyClient::new(aws, Client::new);
    Ok(KinesisOutput {
        inner: Arc::new(Inner {
            id: ctx.id.clone(),
            stream: cfg.stream_name,
            renderer,
            explicit_hash_key: cfg.explicit_hash_key,
            retry_attempts: cfg.retry_attempts,
            retry_timeout: cfg.retry_timeout.0,
            records_bucket: cfg.records_per_second.map(|r| TokenBucket::new(r as f64)),
            bytes_bucket: cfg.bytes_per_second.map(|b| TokenBucket::new(b.0 as f64)),
            aimd: Aimd::new(cfg.max_in_flight),
            client,
            delivered: Mutex::new(HashMap::new()),
            stats: KinesisStats::default(),
        }),
    })
}

impl KinesisOutput {
    pub fn stats(&self) -> &KinesisStats {
        &self.inner.stats
    }
}

/// What became of one PutRecords call.
enum CallResult {
    /// per record of the call: accepted, or (error code, message)
    Answered(Vec<(usize, Option<(String, String)>)>),
    Failed(OutputError, bool),
}

/// Record error codes that mean "too fast": they lower the rate.
fn is_throttle(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException"
            | "KMSThrottlingException"
            | "KMS.ThrottlingException"
            | "ThrottlingException"
            | "LimitExceededException"
    )
}

/// Record error codes no resend fixes: the stream's KMS key cannot be
/// used, or the credentials may not use it.
fn record_error_is_fatal(code: &str) -> bool {
    matches!(
        code,
        "KMSDisabledException"
            | "KMSNotFoundException"
            | "KMSInvalidStateException"
            | "KMSAccessDeniedException"
            | "KMSOptInRequired"
    ) || classify_code(Some(code), None) == Class::Fatal
}

impl Inner {
    /// Records and bytes per call: the service limits, and no more than a
    /// quarter second's worth of a configured rate, so pacing stays smooth.
    fn call_limits(&self) -> (usize, usize) {
        let mut recs = MAX_CALL_RECORDS;
        if let Some(b) = &self.records_bucket {
            recs = recs.min(((b.rate() / 4.0) as usize).max(1));
        }
        let mut bytes = MAX_CALL_BYTES;
        if let Some(b) = &self.bytes_bucket {
            bytes = bytes.min(((b.rate() / 4.0) as usize).max(MAX_RECORD));
        }
        (recs, bytes)
    }

    async fn call(self: Arc<Self>, client: Client, recs: Vec<(usize, Rec)>) -> CallResult {
        let (_, scale) = self.aimd.current();
        let bytes: usize = recs.iter().map(|r| r.1.size()).sum();
        if let Some(b) = &self.records_bucket {
            b.acquire(recs.len() as f64, scale).await;
        }
        if let Some(b) = &self.bytes_bucket {
            b.acquire(bytes as f64, scale).await;
        }
        let mut entries = Vec::with_capacity(recs.len());
        for (_, r) in &recs {
            let e = PutRecordsRequestEntry::builder()
                .data(Blob::new(r.data.to_vec()))
                .partition_key(&r.key)
                .set_explicit_hash_key(self.explicit_hash_key.clone())
                .build();
            match e {
                Ok(e) => entries.push(e),
                Err(e) => return CallResult::Failed(OutputError::Fatal(e.to_string()), false),
            }
        }
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let res = client
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(entries))
            .send()
            .await;
        let idx: Vec<usize> = recs.iter().map(|r| r.0).collect();
        match res {
            Ok(out) => {
                let answers = out.records();
                if answers.len() != idx.len() {
                    return CallResult::Failed(
                        OutputError::Retryable(format!(
                            "PutRecords {}: {} answers for {} records",
                            self.stream,
                            answers.len(),
                            idx.len()
                        )),
                        false,
                    );
                }
                CallResult::Answered(
                    idx.into_iter()
                        .zip(answers)
                        .map(|(i, a)| {
                            let e = a.error_code().map(|c| {
                                (c.to_string(), a.error_message().unwrap_or("").to_string())
                            });
                            (i, e)
                        })
                        .collect(),
                )
            }
            Err(e) => {
                use aws_sdk_kinesis::error::ProvideErrorMetadata;
                let throttled = e.code().is_some_and(is_throttle)
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 429);
                let what = format!("PutRecords {}", self.stream);
                let stream = self.stream.clone();
                let err = fuwa_aws::classify_sdk_error(&e, &what, |c| kinesis_hint(c, &stream));
                CallResult::Failed(err, throttled)
            }
        }
    }

    async fn write(self: &Arc<Self>, chunk: &Chunk) -> Result<(), OutputError> {
        let client = self.client.get().await?.clone();
        let rendered = self.renderer.render(chunk);
        if rendered.bad > 0 {
            self.stats
                .skipped_events
                .fetch_add(rendered.bad as u64, Ordering::Relaxed);
            warn!(output = %self.id, chunk = %chunk.id, bad = rendered.bad, "entries that could not be rendered (or lack log_key) were skipped");
        }
        if rendered.key_fallbacks > 0 {
            self.stats
                .key_fallbacks
                .fetch_add(rendered.key_fallbacks, Ordering::Relaxed);
            debug!(output = %self.id, chunk = %chunk.id, fallbacks = rendered.key_fallbacks, "partition key field missing: random keys used");
        }
        let records = rendered.records;
        let mut done: HashSet<usize> = self
            .delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&chunk.id)
            .map(|d| d.1.clone())
            .unwrap_or_default();
        let skipped = done.len();
        let (max_recs, max_bytes) = self.call_limits();
        let started = Instant::now();
        let (mut calls, mut payload, mut units, mut sent, mut events) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        let mut attempt = 0u32;
        let mut last_error: Option<String> = None;
        loop {
            let pending: Vec<usize> = (0..records.len()).filter(|i| !done.contains(i)).collect();
            if pending.is_empty() {
                break;
            }
            if attempt >= self.retry_attempts
                || (attempt > 0 && started.elapsed() >= self.retry_timeout)
            {
                self.remember(&chunk.id, &done);
                self.count(sent, events, payload, units);
                return Err(OutputError::Retryable(format!(
                    "PutRecords {}: {} of {} records still failing after {attempt} attempts ({} delivered, kept so a retry skips them): {}",
                    self.stream,
                    pending.len(),
                    records.len(),
                    done.len(),
                    last_error.unwrap_or_default()
                )));
            }
            if attempt > 0 {
                // exponential backoff with jitter: 100ms, 200ms, ... 5s
                let base = (100u64 << (attempt - 1).min(6)).min(5000);
                let ms = rand::thread_rng().gen_range(base / 2..=base);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            attempt += 1;
            let mut batches = records::pack(&records, &pending, max_recs, max_bytes).into_iter();
            let mut set = JoinSet::new();
            let mut fatal: Option<OutputError> = None;
            let mut throttled = false;
            loop {
                while set.len() < self.aimd.current().0 {
                    let Some(b) = batches.next() else { break };
                    let recs = b.into_iter().map(|i| (i, records[i].clone())).collect();
                    set.spawn(self.clone().call(client.clone(), recs));
                }
                let Some(r) = set.join_next().await else {
                    break;
                };
                calls += 1;
                match r {
                    Ok(CallResult::Answered(answers)) => {
                        let mut failed = 0u64;
                        let mut throttled_here = 0u64;
                        for (i, e) in answers {
                            match e {
                                None => {
                                    done.insert(i);
                                    let r = &records[i];
                                    sent += 1;
                                    events += r.events as u64;
                                    payload += r.size() as u64;
                                    units += put_units(r.size());
                                }
                                Some((code, msg)) => {
                                    failed += 1;
                                    if is_throttle(&code) {
                                        throttled_here += 1;
                                    } else if record_error_is_fatal(&code) {
                                        let hint = kinesis_hint(&code, &self.stream)
                                            .map(|h| format!(" — {h}"))
                                            .unwrap_or_default();
                                        fatal.get_or_insert(OutputError::Fatal(format!(
                                            "PutRecords {}: record rejected: {code}: {msg}{hint}",
                                            self.stream
                                        )));
                                    }
                                    last_error = Some(format!("record rejected: {code}: {msg}"));
                                }
                            }
                        }
                        if throttled_here > 0 {
                            self.stats
                                .throttled
                                .fetch_add(throttled_here, Ordering::Relaxed);
                            if !throttled {
                                self.aimd.decrease();
                                throttled = true;
                            }
                        } else {
                            self.aimd.increase();
                        }
                        if failed > 0 {
                            self.stats
                                .failed_records
                                .fetch_add(failed, Ordering::Relaxed);
                            debug!(output = %self.id, chunk = %chunk.id, failed, "partial failure: resending only the failed records");
                        }
                    }
                    Ok(CallResult::Failed(e, was_throttled)) => {
                        self.stats.failed_calls.fetch_add(1, Ordering::Relaxed);
                        if was_throttled {
                            self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                        }
                        match e {
                            OutputError::Fatal(m) | OutputError::Rejected { reason: m, .. } => {
                                fatal.get_or_insert(OutputError::Fatal(m));
                            }
                            OutputError::Retryable(m) => {
                                if !throttled {
                                    self.aimd.decrease();
                                    throttled = true;
                                }
                                debug!(output = %self.id, chunk = %chunk.id, error = %m, "call failed; backing off");
                                last_error = Some(m);
                            }
                        }
                    }
                    Err(e) => {
                        last_error = Some(format!("send task failed: {e}"));
                    }
                }
            }
            if let Some(f) = fatal {
                self.forget(&chunk.id);
                self.count(sent, events, payload, units);
                return Err(f);
            }
        }
        self.count(sent, events, payload, units);
        debug!(
            output = %self.id,
            chunk = %chunk.id,
            events = chunk.records,
            records = sent,
            skipped_delivered = skipped,
            calls,
            attempts = attempt,
            payload_bytes = payload,
            put_units = units,
            "chunk sent to kinesis"
        );
        self.forget(&chunk.id);
        if let Some(&(n, _)) = rendered.oversize.first() {
            self.stats
                .oversize_events
                .fetch_add(rendered.oversize.len() as u64, Ordering::Relaxed);
            let more = match rendered.oversize.len() {
                1 => String::new(),
                k => format!(" ({k} such events in this chunk)"),
            };
            return Err(OutputError::Rejected {
                events: rendered.oversize.iter().map(|(_, e)| e.clone()).collect(),
                reason: format!(
                    "event of {n} bytes (data + partition key) exceeds Kinesis's 1 MiB record limit{more}; the {} other records of the chunk were delivered",
                    records.len()
                ),
            });
        }
        Ok(())
    }

    fn count(&self, sent: u64, events: u64, payload: u64, units: u64) {
        self.stats.records.fetch_add(sent, Ordering::Relaxed);
        self.stats.events.fetch_add(events, Ordering::Relaxed);
        self.stats
            .payload_bytes
            .fetch_add(payload, Ordering::Relaxed);
        self.stats.put_units.fetch_add(units, Ordering::Relaxed);
    }

    fn remember(&self, chunk: &str, done: &HashSet<usize>) {
        let mut m = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        m.retain(|_, v| now.duration_since(v.0) < MEMORY_TTL);
        if !done.is_empty() {
            m.insert(chunk.to_string(), (now, done.clone()));
        }
    }

    fn forget(&self, chunk: &str) {
        self.delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(chunk);
    }
}

/// What to fix, for the Kinesis errors no retry fixes.
fn kinesis_hint(code: &str, stream: &str) -> Option<String> {
    Some(match code {
        "AccessDeniedException" => format!(
            "the credentials in use need kinesis:PutRecords on arn:aws:kinesis:REGION:ACCOUNT:stream/{stream} (and kms:GenerateDataKey for an encrypted stream); check the IAM policy and `role_arn`"
        ),
        "ResourceNotFoundException" => format!(
            "stream `{stream}` does not exist in this region/account (or is not ACTIVE): create it, or fix `stream_name` / `region`"
        ),
        "KMSDisabledException" | "KMSNotFoundException" | "KMSInvalidStateException"
        | "KMSAccessDeniedException" | "KMSOptInRequired" => {
            "the stream's KMS key cannot be used: check the key, its state and its policy".to_string()
        }
        _ => return None,
    })
}

#[async_trait]
impl Output for KinesisOutput {
    async fn write(&self, chunk: &Chunk) -> Result<(), OutputError> {
        self.inner.write(chunk).await
    }

    fn metrics(&self) -> Vec<Metric> {
        let s = &self.inner.stats;
        let v = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            Metric::counter(
                "fuwa_kinesis_calls_total",
                "PutRecords calls made (answered or not)",
                v(&s.calls),
            ),
            Metric::counter(
                "fuwa_kinesis_failed_calls_total",
                "PutRecords calls that failed as a whole (throttling, 5xx, network)",
                v(&s.failed_calls),
            ),
            Metric::counter(
                "fuwa_kinesis_records_total",
                "Kinesis records accepted",
                v(&s.records),
            ),
            Metric::counter(
                "fuwa_kinesis_events_total",
                "events inside the accepted Kinesis records (more than records when aggregated)",
                v(&s.events),
            ),
            Metric::counter(
                "fuwa_kinesis_failed_records_total",
                "Kinesis records rejected inside a call (each resend counts)",
                v(&s.failed_records),
            ),
            Metric::counter(
                "fuwa_kinesis_throttled_total",
                "throttled calls plus records rejected for throughput or KMS throttling",
                v(&s.throttled),
            ),
            Metric::counter(
                "fuwa_kinesis_payload_bytes_total",
                "bytes of the accepted Kinesis records (data + partition key)",
                v(&s.payload_bytes),
            ),
            Metric::counter(
                "fuwa_kinesis_put_units_total",
                "25 KB PUT payload units the accepted records cost",
                v(&s.put_units),
            ),
            Metric::counter(
                "fuwa_kinesis_oversize_events_total",
                "events too big for one Kinesis record",
                v(&s.oversize_events),
            ),
            Metric::counter(
                "fuwa_kinesis_key_fallbacks_total",
                "partition keys that fell back to random (template field missing)",
                v(&s.key_fallbacks),
            ),
            Metric::counter(
                "fuwa_kinesis_skipped_events_total",
                "events that could not be rendered (or had no log_key)",
                v(&s.skipped_events),
            ),
        ]
    }
}

#[cfg(test)]
mod tests;
