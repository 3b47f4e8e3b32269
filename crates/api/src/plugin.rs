//! The three plugin traits and what the engine hands them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;
use tokio::sync::watch;

use crate::event::{Batch, Chunk, EventTime};
use crate::memory::{MemoryBound, MemoryEnv};
use crate::record::Record;

/// Why an input's batch was not accepted.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EmitError {
    /// the agent is stopping; the input should stop too and not acknowledge
    #[error("the pipeline is shutting down")]
    ShuttingDown,
    /// a buffer refused the batch (overflow_action = reject)
    #[error("buffer full: {0}")]
    Rejected(String),
}

/// Where inputs send their batches. `emit` resolves once every output that
/// matches the tag has accepted the batch into its buffer; it waits (that
/// wait is the backpressure) while a buffer is full.
#[async_trait]
pub trait Emitter: Send + Sync {
    async fn emit(&self, batch: Batch) -> Result<(), EmitError>;
    /// Counts `records` events the input refused before its ack (or never
    /// acks) because they were invalid: a tag too long, a malformed entry, a
    /// time that is not a time. The input logs the reason itself, naming the
    /// connection, file or line; this only counts
    /// (`fuwa_input_invalid_records_total`).
    fn invalid(&self, records: u64) {
        let _ = records;
    }
}

/// A shutdown signal passed down to every task.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    pub fn new() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown { rx })
    }

    pub fn is_set(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown has been requested.
    pub async fn wait(&mut self) {
        while !*self.rx.borrow_and_update() {
            if self.rx.changed().await.is_err() {
                return;
            }
        }
    }
}

/// What every input gets when it starts.
pub struct InputContext {
    pub id: Arc<str>,
    pub emitter: Arc<dyn Emitter>,
    pub shutdown: Shutdown,
}

#[derive(Debug, Error)]
pub enum PluginError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// An input runs until shutdown, emitting batches.
#[async_trait]
pub trait Input: Send {
    /// Binds sockets, opens files: anything that can fail at start-up, so
    /// that the agent refuses to start rather than failing later.
    async fn start(&mut self) -> Result<(), PluginError> {
        Ok(())
    }
    async fn run(self: Box<Self>, ctx: InputContext) -> Result<(), PluginError>;
    /// The most memory this input may hold, from its config: buffers per
    /// connection or file, batches being built and in flight, messages
    /// being decoded (docs/limits.md). No default: every input states its
    /// own.
    fn memory_bound(&self, env: &MemoryEnv) -> MemoryBound;
}

pub enum FilterResult {
    Keep,
    Drop,
}

/// A filter is synchronous: record in, keep/drop/changed record out.
///
/// The record comes as a [`Record`]: its msgpack bytes, edited in place by
/// the fields a filter reads and sets (the fast path), or a value tree for a
/// filter that needs the whole record ([`Record::value_mut`]).
pub trait Filter: Send + Sync {
    fn filter(&self, tag: &str, time: &mut EventTime, record: &mut Record) -> FilterResult;
    /// Top-level fields this filter gives a type (name, `integer`, `float`,
    /// `bool`, `string`, `time` or `array`): outputs that write typed
    /// columns (Parquet) take them as their columns' types.
    fn column_types(&self) -> Vec<(String, &'static str)> {
        Vec::new()
    }
    /// The most memory this filter keeps between records (its caches); a
    /// record being filtered is the input's. No default: every filter
    /// states its own (an empty bound when it keeps nothing).
    fn memory_bound(&self, env: &MemoryEnv) -> MemoryBound;
}

/// How an output failed to write a chunk. The engine retries `Retryable`
/// with backoff; `Fatal` is not retried (the chunk is dead-lettered);
/// `Rejected` says the rest of the chunk was delivered and only these events
/// can never be, so only they are dead-lettered.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum OutputError {
    #[error("{0}")]
    Retryable(String),
    #[error("{0}")]
    Fatal(String),
    /// Every other event of the chunk was delivered; `events` (whole
    /// `[time, record]` entries, as `Entry::raw` gives them) never can be,
    /// e.g. one event larger than the service's record limit.
    #[error("{reason} ({} events rejected)", .events.len())]
    Rejected {
        events: Vec<bytes::Bytes>,
        reason: String,
    },
}

/// Splits events into chunks by what the output keeps apart (beyond the tag):
/// e.g. a rendered file path or S3 key prefix.
pub trait Partitioner: Send + Sync {
    /// the key depends on the event time
    fn uses_time(&self) -> bool;
    /// the key depends on record fields
    fn uses_record(&self) -> bool;
    fn key(&self, tag: &str, time: EventTime, record: &[u8]) -> String;
}

/// An output writes sealed chunks. It never retries or buffers on its own.
#[async_trait]
pub trait Output: Send + Sync {
    /// How events are split into chunks beyond their tag; `None`: by tag only.
    fn partitioner(&self) -> Option<Arc<dyn Partitioner>> {
        None
    }
    /// The flush interval this kind of output wants when the config is silent.
    fn default_flush_interval(&self) -> Duration {
        Duration::from_secs(1)
    }
    async fn write(&self, chunk: &Chunk) -> Result<(), OutputError>;
    /// The most memory one `write` holds beyond the chunk itself (the
    /// chunk's bytes are the buffer's part): what it renders, compresses
    /// and has in flight, for a chunk of `env.chunk_limit_size`. The engine
    /// multiplies it by the writes that run at once (`flush_thread_count`).
    /// No default: every output states its own.
    fn memory_bound(&self, env: &MemoryEnv) -> MemoryBound;
    /// Called once at shutdown, after the last write.
    async fn close(&self) {}
    /// The output's own counters and gauges, for the metrics endpoint. The
    /// engine adds the `id` and `type` labels; the default has none.
    fn metrics(&self) -> Vec<Metric> {
        Vec::new()
    }
    /// The types the filters for this output's tags give its fields (see
    /// [`Filter::column_types`]), told once after the config is built.
    fn upstream_types(&self, types: &[(String, &'static str)]) {
        let _ = types;
    }
    /// The output itself, for tools that describe what a known output type
    /// writes (`fuwa athena-ddl` reads the S3 output's layout).
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

/// Whether a metric only grows (a counter) or goes up and down (a gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// One value an output reports, e.g. `fuwa_firehose_billed_bytes_total`.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Prometheus name: `[a-zA-Z_:][a-zA-Z0-9_:]*`; counters end in `_total`
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    pub value: f64,
}

impl Metric {
    pub fn counter(name: &'static str, help: &'static str, value: u64) -> Self {
        Metric {
            name,
            help,
            kind: MetricKind::Counter,
            value: value as f64,
        }
    }

    pub fn gauge(name: &'static str, help: &'static str, value: f64) -> Self {
        Metric {
            name,
            help,
            kind: MetricKind::Gauge,
            value,
        }
    }
}

/// Shared facts plugins may need while they are built.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub id: String,
    pub hostname: String,
    /// IANA time zone name for strftime in paths and keys
    pub timezone: String,
    pub data_dir: PathBuf,
}

impl<F: Filter + ?Sized> Filter for Box<F> {
    fn filter(&self, tag: &str, time: &mut EventTime, record: &mut Record) -> FilterResult {
        (**self).filter(tag, time, record)
    }
    fn column_types(&self) -> Vec<(String, &'static str)> {
        (**self).column_types()
    }
    fn memory_bound(&self, env: &MemoryEnv) -> MemoryBound {
        (**self).memory_bound(env)
    }
}

impl<F: Filter + ?Sized> Filter for &F {
    fn filter(&self, tag: &str, time: &mut EventTime, record: &mut Record) -> FilterResult {
        (**self).filter(tag, time, record)
    }
    fn column_types(&self) -> Vec<(String, &'static str)> {
        (**self).column_types()
    }
    fn memory_bound(&self, env: &MemoryEnv) -> MemoryBound {
        (**self).memory_bound(env)
    }
}
