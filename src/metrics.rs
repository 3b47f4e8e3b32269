//! What the engine counts and how it is shown: per-input counters (an
//! `Emitter` wrapper, so the router does not change), the write-latency
//! histogram, and the Prometheus text exposition format (version 0.0.4).

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use fuwa_api::{Batch, EmitError, Emitter, MetricKind};

/// Upper bounds (seconds) of the write-duration buckets.
pub const WRITE_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A fixed-bucket histogram, lock-free. Buckets are not cumulative here;
/// the exposition makes them so.
pub struct Histogram {
    buckets: Vec<AtomicU64>,
    /// the +Inf bucket
    over: AtomicU64,
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: WRITE_BUCKETS.iter().map(|_| AtomicU64::new(0)).collect(),
            over: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        match WRITE_BUCKETS.iter().position(|b| secs <= *b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_nanos
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// (upper bound, cumulative count) for every bucket, +Inf last.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut acc = 0;
        let mut out = Vec::with_capacity(WRITE_BUCKETS.len() + 1);
        for (b, n) in WRITE_BUCKETS.iter().zip(&self.buckets) {
            acc += n.load(Ordering::Relaxed);
            out.push((*b, acc));
        }
        acc += self.over.load(Ordering::Relaxed);
        out.push((f64::INFINITY, acc));
        out
    }
}

/// What one input delivered into the pipeline.
#[derive(Default)]
pub struct InputCounters {
    /// records the pipeline accepted (before filters)
    pub records: AtomicU64,
    /// msgpack bytes of those records
    pub bytes: AtomicU64,
    /// records the pipeline refused (buffer full with reject, shutting down)
    pub rejected: AtomicU64,
    /// records the input refused as invalid before its ack (bad tag, bad
    /// entry, bad time)
    pub invalid: AtomicU64,
}

/// Counters per plugin id, kept across reloads (a plugin that keeps its id
/// keeps counting; Prometheus counters only reset on a restart).
#[derive(Default)]
pub struct Registry {
    inputs: Mutex<HashMap<String, Arc<InputCounters>>>,
    outputs: Mutex<HashMap<String, Arc<Counters>>>,
}

impl Registry {
    pub fn input(&self, id: &str) -> Arc<InputCounters> {
        let mut m = self.inputs.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(id.to_string()).or_default().clone()
    }

    pub fn output(&self, id: &str) -> Arc<Counters> {
        let mut m = self.outputs.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(id.to_string()).or_default().clone()
    }
}

/// The emitter an input gets: counts what it emits, then passes it on.
pub struct CountingEmitter {
    pub counters: Arc<InputCounters>,
    pub inner: Arc<dyn Emitter>,
}

#[async_trait]
impl Emitter for CountingEmitter {
    async fn emit(&self, batch: Batch) -> Result<(), EmitError> {
        let records = batch.count as u64;
        let bytes = batch.entries.len() as u64;
        let r = self.inner.emit(batch).await;
        match &r {
            Ok(()) => {
                self.counters.records.fetch_add(records, Ordering::Relaxed);
                self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            Err(_) => {
                self.counters.rejected.fetch_add(records, Ordering::Relaxed);
            }
        }
        r
    }

    fn invalid(&self, records: u64) {
        self.counters.invalid.fetch_add(records, Ordering::Relaxed);
        self.inner.invalid(records);
    }
}

/// Writes the Prometheus text format: one `# HELP` and `# TYPE` per family,
/// families in the order they are first seen, samples grouped under them.
#[derive(Default)]
pub struct Exposition {
    order: Vec<String>,
    families: HashMap<String, Family>,
}

struct Family {
    help: String,
    kind: &'static str,
    samples: String,
}

pub type Labels<'a> = &'a [(&'a str, &'a str)];

impl Exposition {
    fn family(&mut self, name: &str, help: &str, kind: &'static str) -> &mut Family {
        if !self.families.contains_key(name) {
            self.order.push(name.to_string());
            self.families.insert(
                name.to_string(),
                Family {
                    help: help.to_string(),
                    kind,
                    samples: String::new(),
                },
            );
        }
        self.families
            .get_mut(name)
            .unwrap_or_else(|| unreachable!("inserted above"))
    }

    pub fn counter(&mut self, name: &str, help: &str, labels: Labels<'_>, value: f64) {
        let f = self.family(name, help, "counter");
        sample(&mut f.samples, name, labels, None, value);
    }

    pub fn gauge(&mut self, name: &str, help: &str, labels: Labels<'_>, value: f64) {
        let f = self.family(name, help, "gauge");
        sample(&mut f.samples, name, labels, None, value);
    }

    pub fn metric(&mut self, kind: MetricKind, name: &str, help: &str, labels: Labels<'_>, v: f64) {
        match kind {
            MetricKind::Counter => self.counter(name, help, labels, v),
            MetricKind::Gauge => self.gauge(name, help, labels, v),
        }
    }

    pub fn histogram(&mut self, name: &str, help: &str, labels: Labels<'_>, h: &Histogram) {
        let f = self.family(name, help, "histogram");
        let bucket = format!("{name}_bucket");
        for (le, n) in h.cumulative() {
            let le = if le.is_infinite() {
                "+Inf".to_string()
            } else {
                fmt_value(le)
            };
            sample(&mut f.samples, &bucket, labels, Some(&le), n as f64);
        }
        sample(
            &mut f.samples,
            &format!("{name}_sum"),
            labels,
            None,
            h.sum_seconds(),
        );
        sample(
            &mut f.samples,
            &format!("{name}_count"),
            labels,
            None,
            h.count() as f64,
        );
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for name in &self.order {
            let Some(f) = self.families.get(name) else {
                continue;
            };
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&f.help));
            let _ = writeln!(out, "# TYPE {name} {}", f.kind);
            out.push_str(&f.samples);
        }
        out
    }
}

fn sample(out: &mut String, name: &str, labels: Labels<'_>, le: Option<&str>, value: f64) {
    out.push_str(name);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        for (k, v) in labels.iter().copied().chain(le.map(|l| ("le", l))) {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(k);
            out.push_str("=\"");
            out.push_str(&escape_label(v));
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&fmt_value(value));
    out.push('\n');
}

/// Label values escape `\`, `"` and newline.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// HELP text escapes `\` and newline.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(20));
        h.observe(Duration::from_secs(120));
        let c = h.cumulative();
        assert_eq!(c[0], (0.001, 1));
        assert_eq!(c.iter().find(|(b, _)| *b == 0.025).unwrap().1, 2);
        assert_eq!(c[c.len() - 2].1, 2);
        assert_eq!(c.last().unwrap().1, 3);
        assert_eq!(h.count(), 3);
        assert!((h.sum_seconds() - 120.0205).abs() < 1e-6);
    }

    #[test]
    fn families_are_grouped_and_labels_escaped() {
        let mut e = Exposition::default();
        e.counter("a_total", "A things", &[("id", "x")], 3.0);
        e.gauge("b", "B\nline", &[], 0.5);
        e.counter("a_total", "A things", &[("id", "q\"u\\o\nte")], 4.0);
        let h = Histogram::default();
        h.observe(Duration::from_millis(2));
        e.histogram("lat_seconds", "latency", &[("id", "x")], &h);
        let out = e.render();
        let expected_start = "# HELP a_total A things\n# TYPE a_total counter\na_total{id=\"x\"} 3\na_total{id=\"q\\\"u\\\\o\\nte\"} 4\n# HELP b B\\nline\n# TYPE b gauge\nb 0.5\n# HELP lat_seconds latency\n# TYPE lat_seconds histogram\nlat_seconds_bucket{id=\"x\",le=\"0.001\"} 0\nlat_seconds_bucket{id=\"x\",le=\"0.005\"} 1\n";
        assert!(out.starts_with(expected_start), "{out}");
        assert!(out.contains("lat_seconds_bucket{id=\"x\",le=\"+Inf\"} 1\n"));
        assert!(out.contains("lat_seconds_count{id=\"x\"} 1\n"));
        assert!(out.ends_with('\n'));
    }
}

/// What an output's buffer counts, for the metrics and status endpoints.
/// Kept by the engine per output id, so the counters survive a reload.
#[derive(Default)]
pub struct Counters {
    /// records accepted into the buffer
    pub records_in: AtomicU64,
    /// records the output wrote
    pub records_out: AtomicU64,
    /// bytes (msgpack entries) of the chunks the output wrote
    pub bytes_out: AtomicU64,
    pub records_dropped: AtomicU64,
    pub records_dead: AtomicU64,
    /// chunks moved to the dead-letter directory (or dropped trying)
    pub chunks_dead: AtomicU64,
    pub retries: AtomicU64,
    /// failed write attempts (retryable and fatal)
    pub errors: AtomicU64,
    /// failed writes since the last successful one
    pub failing_streak: AtomicU64,
    /// times an input had to wait for room (overflow_action = block)
    pub backpressure_waits: AtomicU64,
    /// file buffer: rounds of fsyncs before appends were acknowledged
    pub buffer_commits: AtomicU64,
    /// every write attempt, successful or not
    pub write_duration: Histogram,
    pub last_error: Mutex<Option<LastError>>,
    /// when chunks were last dead-lettered (pruned by the health check)
    pub dead_letters_at: Mutex<VecDeque<Instant>>,
}

#[derive(Debug, Clone)]
pub struct LastError {
    pub at: SystemTime,
    pub message: String,
    pub chunk: String,
}

impl Counters {
    pub(crate) fn failed(&self, chunk: &str, message: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.failing_streak.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut l) = self.last_error.lock() {
            *l = Some(LastError {
                at: SystemTime::now(),
                message: message.to_string(),
                chunk: chunk.to_string(),
            });
        }
    }

    pub(crate) fn dead(&self, records: u32) {
        self.records_dead
            .fetch_add(records as u64, Ordering::Relaxed);
        self.chunks_dead.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut d) = self.dead_letters_at.lock() {
            d.push_back(Instant::now());
            while d.len() > 10_000 {
                d.pop_front();
            }
        }
    }

    /// Chunks dead-lettered within `period` (older entries are forgotten).
    pub fn dead_letters_within(&self, period: Duration) -> usize {
        match self.dead_letters_at.lock() {
            Ok(mut d) => {
                while d.front().map(|t| t.elapsed() > period).unwrap_or(false) {
                    d.pop_front();
                }
                d.len()
            }
            Err(_) => 0,
        }
    }
}
