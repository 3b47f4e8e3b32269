//! The Amazon Data Firehose output: PutRecordBatch, one JSON line per event
//! (or many lines per record with `aggregate = true`), within Firehose's
//! hard limits (500 records and 4 MiB per call, 1,000 KiB per record).
//!
//! Retries. Outputs normally never retry: the engine retries the whole
//! chunk. PutRecordBatch is the exception: it can succeed for some records
//! and fail for others (`FailedPutCount > 0`), and resending the whole chunk
//! would duplicate the records that went through. So `write` resends only
//! the failed records itself, with backoff, for at most `retry_attempts`
//! rounds / `retry_timeout` (the sender shared with the Kinesis output,
//! `fuwa_aws::batch`; this file keeps the request, the hints and the
//! counters). If records still fail after that, it returns
//! `Retryable` and remembers, in memory and keyed by chunk id, which records
//! of the chunk were delivered, so the engine's retry of that chunk skips
//! them. A crash (or restart) loses that memory: the chunk is then sent
//! again from its start and records delivered before the crash are
//! duplicated (at-least-once).
//!
//! Events larger than one record can hold are not sent: the rest of the
//! chunk is delivered, then `write` returns `Rejected` with those events, so
//! the engine dead-letters them alone (a replay sends nothing twice).
//!
//! Up to `max_in_flight` calls are in flight per chunk: no ordering between
//! records is guaranteed.

mod records;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use aws_sdk_firehose::Client;
use bytes::Bytes;
use fuwa_api::{
    BuildContext, ByteSize, Chunk, ConfigError, ConfigSection, HumanDuration, MemoryBound,
    MemoryEnv, Metric, Output, OutputError,
};
use fuwa_aws::batch::{self, Answer, CallOutcome, Job, Limits, Observe, Pace, Sender};
use fuwa_aws::LazyClient;
use fuwa_render::{parse_timezone, JsonLines, TimeFormat};
use serde::Deserialize;
use tracing::{debug, warn};

pub use records::{billed, MAX_CALL_BYTES, MAX_CALL_RECORDS, MAX_RECORD};

const LIMITS: Limits = Limits {
    call_records: MAX_CALL_RECORDS,
    call_bytes: MAX_CALL_BYTES,
    record: MAX_RECORD,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FirehoseConfig {
    delivery_stream: String,
    region: Option<String>,
    endpoint: Option<String>,
    role_arn: Option<String>,
    role_session_name: Option<String>,
    external_id: Option<String>,
    sts_endpoint: Option<String>,
    sts_region: Option<String>,
    profile: Option<String>,
    proxy: Option<String>,
    #[serde(default)]
    aggregate: bool,
    #[serde(default = "default_aggregate_max")]
    aggregate_max_size: ByteSize,
    #[serde(default = "yes")]
    append_newline: bool,
    records_per_second: Option<u64>,
    bytes_per_second: Option<ByteSize>,
    requests_per_second: Option<u64>,
    #[serde(default = "fuwa_aws::batch::defaults::max_in_flight")]
    max_in_flight: usize,
    #[serde(default = "fuwa_aws::batch::defaults::retry_attempts")]
    retry_attempts: u32,
    #[serde(default = "fuwa_aws::batch::defaults::retry_timeout")]
    retry_timeout: HumanDuration,
    time_key: Option<String>,
    #[serde(default = "rfc3339")]
    time_format: String,
    tag_key: Option<String>,
    /// send this field's value as it is instead of the JSON record
    log_key: Option<String>,
    #[serde(default = "fuwa_aws::batch::defaults::timeout")]
    timeout: HumanDuration,
    #[serde(default = "fuwa_aws::batch::defaults::connect_timeout")]
    connect_timeout: HumanDuration,
}

fn yes() -> bool {
    true
}
fn rfc3339() -> String {
    "rfc3339".into()
}
fn default_aggregate_max() -> ByteSize {
    ByteSize(MAX_RECORD as u64)
}

/// Counters of what this output sent (for the metrics endpoint to come).
#[derive(Debug, Default)]
pub struct FirehoseStats {
    /// PutRecordBatch calls made (answered or not)
    pub calls: AtomicU64,
    /// calls that failed as a whole (throttling, 5xx, network)
    pub failed_calls: AtomicU64,
    /// records Firehose accepted
    pub records: AtomicU64,
    /// records Firehose rejected in a partial failure (each resend counts)
    pub failed_records: AtomicU64,
    /// bytes of the accepted records
    pub payload_bytes: AtomicU64,
    /// bytes billed for them: each record rounded up to 5 KB
    pub billed_bytes: AtomicU64,
    /// events too big for one record (dead-lettered with their chunk)
    pub oversize_events: AtomicU64,
}

pub struct FirehoseOutput {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    stream: String,
    lines: JsonLines,
    log_key: Option<String>,
    append_newline: bool,
    aggregate: Option<usize>,
    /// rates, AIMD, the memory of delivered records, retries
    sender: Sender,
    client: LazyClient<Client>,
    stats: FirehoseStats,
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
) -> Result<FirehoseOutput, Vec<ConfigError>> {
    let cfg: FirehoseConfig = section.parse().map_err(|e| vec![e])?;
    let tz = parse_timezone(&ctx.timezone).map_err(|e| vec![section.error("timezone", e)])?;
    let mut errors = Vec::new();
    let mut err = |k: &str, m: String| errors.push(section.error(k, m));
    if !batch::is_stream_name(&cfg.delivery_stream, 64) {
        err(
            "delivery_stream",
            "a delivery stream name: 1 to 64 of A-Z a-z 0-9 _ . - (not an ARN)".into(),
        );
    }
    if cfg.aggregate_max_size.0 == 0 || cfg.aggregate_max_size.0 > MAX_RECORD as u64 {
        err(
            "aggregate_max_size",
            "more than zero and at most 1000KiB (Firehose's record limit)".into(),
        );
    }
    // (with log_key the values carry their own separators, as kinesis-agent's
    // processed records do)
    if cfg.aggregate && !cfg.append_newline && cfg.log_key.is_none() {
        err(
            "append_newline",
            "aggregate = true needs append_newline = true (or a log_key whose values end in their own separator): the newline separates the events of a record".into(),
        );
    }
    for (k, m) in batch::check_keys(
        cfg.max_in_flight,
        cfg.records_per_second,
        cfg.bytes_per_second.map(|b| b.0),
        cfg.retry_attempts,
    ) {
        err(k, m);
    }
    if cfg.requests_per_second == Some(0) {
        err("requests_per_second", "more than zero (or unset)".into());
    }
    let time_format = match TimeFormat::parse(&cfg.time_format, tz) {
        Ok(t) => Some(t),
        Err(e) => {
            err("time_format", e);
            None
        }
    };
    let aws = fuwa_aws::aws_settings!(cfg);
    for (k, m) in aws.validate() {
        err(k, m);
    }
    let Some(time_format) = time_format else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let client = LazyClient::new(aws, Client::new);
    Ok(FirehoseOutput {
        inner: Arc::new(Inner {
            id: ctx.id.clone(),
            stream: cfg.delivery_stream,
            lines: JsonLines {
                tag_key: cfg.tag_key,
                time_key: cfg.time_key,
                time_format,
            },
            log_key: cfg.log_key,
            append_newline: cfg.append_newline,
            aggregate: cfg.aggregate.then_some(cfg.aggregate_max_size.0 as usize),
            sender: Sender::new(
                LIMITS,
                Pace::new(
                    cfg.requests_per_second,
                    cfg.records_per_second,
                    cfg.bytes_per_second.map(|b| b.0),
                ),
                cfg.max_in_flight,
                cfg.retry_attempts,
                cfg.retry_timeout.0,
            ),
            client,
            stats: FirehoseStats::default(),
        }),
    })
}

impl FirehoseOutput {
    pub fn stats(&self) -> &FirehoseStats {
        &self.inner.stats
    }
}

impl Inner {
    async fn call(self: Arc<Self>, client: Client, recs: Vec<Bytes>) -> CallOutcome {
        let bytes: usize = recs.iter().map(Bytes::len).sum();
        self.sender.acquire(recs.len(), bytes).await;
        let mut records = Vec::with_capacity(recs.len());
        for data in &recs {
            match Record::builder().data(Blob::new(data.to_vec())).build() {
                Ok(r) => records.push(r),
                Err(e) => {
                    return CallOutcome::Failed {
                        error: OutputError::Fatal(e.to_string()),
                        throttled: false,
                    };
                }
            }
        }
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let res = client
            .put_record_batch()
            .delivery_stream_name(&self.stream)
            .set_records(Some(records))
            .send()
            .await;
        match res {
            Ok(out) => CallOutcome::Answered(
                out.request_responses()
                    .iter()
                    .map(|a| match a.error_code() {
                        None => Answer::Ok,
                        Some(c) => Answer::Retry {
                            error: format!("record rejected: {c}"),
                            throttled: false,
                        },
                    })
                    .collect(),
            ),
            Err(e) => {
                let what = format!("PutRecordBatch {}", self.stream);
                let stream = self.stream.clone();
                let error = fuwa_aws::classify_sdk_error(&e, &what, |c| firehose_hint(c, &stream));
                CallOutcome::Failed {
                    error,
                    throttled: false,
                }
            }
        }
    }

    async fn write(self: &Arc<Self>, chunk: &Chunk) -> Result<(), OutputError> {
        let client = self.client.get().await?.clone();
        let rendered = records::render(
            &self.lines,
            self.log_key.as_deref(),
            chunk,
            self.append_newline,
            self.aggregate,
        );
        if rendered.bad > 0 {
            warn!(output = %self.id, chunk = %chunk.id, bad = rendered.bad, "entries that could not be rendered were skipped");
        }
        let records = rendered.records;
        let what = format!("PutRecordBatch {}", self.stream);
        let job = Job {
            what: &what,
            chunk: &chunk.id,
            records: &records,
            size: Bytes::len,
            observe: &**self,
        };
        let call = |recs| self.clone().call(client.clone(), recs);
        let sent = self.sender.send(job, call).await;
        sent.result?;
        let sent_records = sent.delivered.len() as u64;
        let payload: u64 = sent
            .delivered
            .iter()
            .map(|&i| records[i].len() as u64)
            .sum();
        let billed_bytes: u64 = sent
            .delivered
            .iter()
            .map(|&i| billed(records[i].len()))
            .sum();
        self.stats
            .records
            .fetch_add(sent_records, Ordering::Relaxed);
        self.stats
            .payload_bytes
            .fetch_add(payload, Ordering::Relaxed);
        self.stats
            .billed_bytes
            .fetch_add(billed_bytes, Ordering::Relaxed);
        let avg = payload.checked_div(sent_records).unwrap_or(0);
        let per_call = if sent.calls > 0 {
            sent_records as f64 / sent.calls as f64
        } else {
            0.0
        };
        debug!(
            output = %self.id,
            chunk = %chunk.id,
            events = chunk.records,
            records = sent_records,
            skipped_delivered = sent.skipped,
            calls = sent.calls,
            attempts = sent.attempts,
            payload_bytes = payload,
            billed_bytes = billed_bytes,
            avg_record_bytes = avg,
            records_per_call = format!("{per_call:.1}"),
            "chunk sent to firehose"
        );
        // the engine dead-letters those events now; the memory of the chunk
        // was dropped when its last record went through
        let limit = "exceeds Firehose's 1,000 KiB record limit";
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
    fn failed_records(&self, chunk: &str, failed: u64, _throttled: u64) {
        self.stats
            .failed_records
            .fetch_add(failed, Ordering::Relaxed);
        debug!(output = %self.id, chunk, failed, "partial failure: resending only the failed records");
    }

    fn failed_call(&self, chunk: &str, _throttled: bool, retry: Option<&str>) {
        self.stats.failed_calls.fetch_add(1, Ordering::Relaxed);
        if let Some(error) = retry {
            debug!(output = %self.id, chunk, error, "call failed; backing off");
        }
    }
}

/// What to fix, for the Firehose errors no retry fixes.
fn firehose_hint(code: &str, stream: &str) -> Option<String> {
    Some(match code {
        "AccessDeniedException" => format!(
            "the credentials in use need firehose:PutRecordBatch on arn:aws:firehose:REGION:ACCOUNT:deliverystream/{stream}; check the IAM policy and `role_arn`"
        ),
        "ResourceNotFoundException" => format!(
            "delivery stream `{stream}` does not exist in this region/account: create it, or fix `delivery_stream` / `region`"
        ),
        "InvalidKMSResourceException" => {
            "the stream's KMS key cannot be used: check the key and its policy".to_string()
        }
        _ => return None,
    })
}

#[async_trait]
impl Output for FirehoseOutput {
    /// The batching sender's bound (fuwa_aws::batch::Sender::memory_bound).
    fn memory_bound(&self, env: &MemoryEnv) -> MemoryBound {
        self.inner
            .sender
            .memory_bound(env.chunk_limit_size, self.inner.aggregate.map(|a| a as u64))
    }

    async fn write(&self, chunk: &Chunk) -> Result<(), OutputError> {
        self.inner.write(chunk).await
    }

    fn metrics(&self) -> Vec<Metric> {
        let s = &self.inner.stats;
        let v = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            Metric::counter(
                "fuwa_firehose_calls_total",
                "PutRecordBatch calls made (answered or not)",
                v(&s.calls),
            ),
            Metric::counter(
                "fuwa_firehose_failed_calls_total",
                "PutRecordBatch calls that failed as a whole (throttling, 5xx, network)",
                v(&s.failed_calls),
            ),
            Metric::counter(
                "fuwa_firehose_records_total",
                "Firehose records accepted",
                v(&s.records),
            ),
            Metric::counter(
                "fuwa_firehose_failed_records_total",
                "Firehose records rejected inside a batch (each resend counts)",
                v(&s.failed_records),
            ),
            Metric::counter(
                "fuwa_firehose_payload_bytes_total",
                "bytes of the accepted Firehose records",
                v(&s.payload_bytes),
            ),
            Metric::counter(
                "fuwa_firehose_billed_bytes_total",
                "bytes Firehose bills for the accepted records (each rounded up to 5 KB)",
                v(&s.billed_bytes),
            ),
            Metric::counter(
                "fuwa_firehose_oversize_events_total",
                "events too big for one Firehose record",
                v(&s.oversize_events),
            ),
        ]
    }
}

#[cfg(test)]
mod tests;
