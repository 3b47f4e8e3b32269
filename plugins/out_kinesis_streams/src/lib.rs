//! The Amazon Kinesis Data Streams output: PutRecords, one record per
//! event (JSON Lines, msgpack or the raw value of `log_key`), or KPL
//! aggregated records (`aggregation = true`) packing the events of one
//! partition key together, within the service's hard limits (500 records
//! and 5 MiB per call, 1 MiB of data + partition key per record, keys of
//! 1 to 256 characters).
//!
//! Retries work as in the Firehose output (the sender both share is
//! `fuwa_aws::batch`; this file keeps the request, the record error codes,
//! the hints and the counters). PutRecords can accept some
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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::Client;
use fuwa_api::{
    BuildContext, Chunk, ConfigError, ConfigSection, MemoryBound, MemoryEnv, Metric, Output,
    OutputError,
};
use fuwa_aws::batch::{self, Answer, CallOutcome, Job, Limits, Observe, Pace, Sender};
use fuwa_aws::{classify_code, Class, LazyClient};
use tracing::{debug, warn};

pub use agg::{Aggregator, MAGIC};
use config::Settings;
pub use key::{md5_hex, KeyTemplate};
pub use records::{put_units, MAX_CALL_BYTES, MAX_CALL_RECORDS, MAX_RECORD};
use records::{Rec, Renderer};

const LIMITS: Limits = Limits {
    call_records: MAX_CALL_RECORDS,
    call_bytes: MAX_CALL_BYTES,
    record: MAX_RECORD,
};

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

pub struct KinesisOutput {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    stream: String,
    renderer: Renderer,
    explicit_hash_key: Option<String>,
    /// rates, AIMD, the memory of delivered records, retries
    sender: Sender,
    client: LazyClient<Client>,
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
            sender: Sender::new(
                LIMITS,
                Pace::new(
                    None,
                    cfg.records_per_second,
                    cfg.bytes_per_second.map(|b| b.0),
                ),
                cfg.max_in_flight,
                cfg.retry_attempts,
                cfg.retry_timeout.0,
            ),
            client,
            stats: KinesisStats::default(),
        }),
    })
}

impl KinesisOutput {
    pub fn stats(&self) -> &KinesisStats {
        &self.inner.stats
    }
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
    /// What a rejected record means: resend (throttled or not), or fatal.
    fn answer(&self, code: &str, msg: &str) -> Answer {
        if !is_throttle(code) && record_error_is_fatal(code) {
            let hint = kinesis_hint(code, &self.stream)
                .map(|h| format!(" — {h}"))
                .unwrap_or_default();
            return Answer::Fatal(format!(
                "PutRecords {}: record rejected: {code}: {msg}{hint}",
                self.stream
            ));
        }
        Answer::Retry {
            error: format!("record rejected: {code}: {msg}"),
            throttled: is_throttle(code),
        }
    }

    async fn call(self: Arc<Self>, client: Client, recs: Vec<Rec>) -> CallOutcome {
        let bytes: usize = recs.iter().map(Rec::size).sum();
        self.sender.acquire(recs.len(), bytes).await;
        let mut entries = Vec::with_capacity(recs.len());
        for r in &recs {
            let e = PutRecordsRequestEntry::builder()
                .data(Blob::new(r.data.to_vec()))
                .partition_key(&r.key)
                .set_explicit_hash_key(self.explicit_hash_key.clone())
                .build();
            match e {
                Ok(e) => entries.push(e),
                Err(e) => {
                    return CallOutcome::Failed {
                        error: OutputError::Fatal(e.to_string()),
                        throttled: false,
                    }
                }
            }
        }
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let res = client
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(entries))
            .send()
            .await;
        match res {
            Ok(out) => CallOutcome::Answered(
                out.records()
                    .iter()
                    .map(|a| match a.error_code() {
                        None => Answer::Ok,
                        Some(c) => self.answer(c, a.error_message().unwrap_or("")),
                    })
                    .collect(),
            ),
            Err(e) => {
                use aws_sdk_kinesis::error::ProvideErrorMetadata;
                let throttled = e.code().is_some_and(is_throttle)
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 429);
                let what = format!("PutRecords {}", self.stream);
                let stream = self.stream.clone();
                let error = fuwa_aws::classify_sdk_error(&e, &what, |c| kinesis_hint(c, &stream));
                CallOutcome::Failed { error, throttled }
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
        let what = format!("PutRecords {}", self.stream);
        let job = Job {
            what: &what,
            chunk: &chunk.id,
            records: &records,
            size: Rec::size,
            observe: &**self,
        };
        let call = |recs| self.clone().call(client.clone(), recs);
        let sent = self.sender.send(job, call).await;
        // what went through counts even when the chunk fails
        let (mut events, mut payload, mut units) = (0u64, 0u64, 0u64);
        for &i in &sent.delivered {
            let r = &records[i];
            events += r.events as u64;
            payload += r.size() as u64;
            units += put_units(r.size());
        }
        let n = sent.delivered.len() as u64;
        self.stats.records.fetch_add(n, Ordering::Relaxed);
        self.stats.events.fetch_add(events, Ordering::Relaxed);
        self.stats
            .payload_bytes
            .fetch_add(payload, Ordering::Relaxed);
        self.stats.put_units.fetch_add(units, Ordering::Relaxed);
        sent.result?;
        debug!(
            output = %self.id,
            chunk = %chunk.id,
            events = chunk.records,
            records = n,
            skipped_delivered = sent.skipped,
            calls = sent.calls,
            attempts = sent.attempts,
            payload_bytes = payload,
            put_units = units,
            "chunk sent to kinesis"
        );
        let limit = "(data + partition key) exceeds Kinesis's 1 MiB record limit";
        if let Some(e) = batch::oversize(&rendered.oversize, limit, records.len()) {
            self.stats
                .oversize_events
                .fetch_add(rendered.oversize.len() as u64, Ordering::Relaxed);
            return Err(e);
        }
        Ok(())
    }
}

impl Observe for Inner {
    fn failed_records(&self, chunk: &str, failed: u64, throttled: u64) {
        self.stats.throttled.fetch_add(throttled, Ordering::Relaxed);
        self.stats
            .failed_records
            .fetch_add(failed, Ordering::Relaxed);
        debug!(output = %self.id, chunk, failed, "partial failure: resending only the failed records");
    }

    fn failed_call(&self, chunk: &str, throttled: bool, retry: Option<&str>) {
        self.stats.failed_calls.fetch_add(1, Ordering::Relaxed);
        if throttled {
            self.stats.throttled.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(error) = retry {
            debug!(output = %self.id, chunk, error, "call failed; backing off");
        }
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
    /// The batching sender's bound (fuwa_aws::batch::Sender::memory_bound).
    fn memory_bound(&self, env: &MemoryEnv) -> MemoryBound {
        let agg = self.inner.renderer.aggregation.then_some(MAX_RECORD as u64);
        self.inner.sender.memory_bound(env.chunk_limit_size, agg)
    }

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
