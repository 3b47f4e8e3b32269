//! Lines → events → batches: each line (or multiline event) parsed (or
//! run through kinesis-agent's processing), the path added when asked,
//! and gathered into one batch per tag until a batch is full.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use fuwa_api::event::write_entry;
use fuwa_api::{msgpack, Batch, EventTime};
use fuwa_parsers::unparsed_record;

use crate::TailInput;

/// A batch is at most this many lines or bytes.
pub(crate) const BATCH_LINES: usize = 8192;
pub(crate) const BATCH_BYTES: usize = 1024 * 1024;

/// Lines → events → batches (one per tag).
pub(crate) struct Builder<'a> {
    pub(crate) input: &'a TailInput,
    pub(crate) batches: HashMap<Arc<str>, (Vec<u8>, u32)>,
    pub(crate) lines: usize,
    pub(crate) bytes: usize,
    pub(crate) now: EventTime,
    pub(crate) truncated: u64,
    pub(crate) skipped_long: u64,
    pub(crate) parse_errors: u64,
    pub(crate) last_error: Option<String>,
}

impl<'a> Builder<'a> {
    pub(crate) fn new(input: &'a TailInput) -> Self {
        Builder {
            input,
            batches: HashMap::new(),
            lines: 0,
            bytes: 0,
            now: EventTime::now(),
            truncated: 0,
            skipped_long: 0,
            parse_errors: 0,
            last_error: None,
        }
    }

    pub(crate) fn full(&self) -> bool {
        self.lines >= BATCH_LINES || self.bytes >= BATCH_BYTES
    }

    /// One line (or multiline event) that began at byte `start` of its file.
    pub(crate) fn event(&mut self, tag: &Arc<str>, path: &str, text: &[u8], start: u64) {
        // valid UTF-8 (nearly always): checked by the fast validator, borrowed
        let line = match std::str::from_utf8(text) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(text),
        };
        let parsed = match &self.input.kinesis_agent {
            // kinesis-agent skips what LOGTOJSON does not match: counted, not sent
            Some(chain) => match chain.record(&line) {
                Some(record) => Ok(fuwa_parsers::Parsed { time: None, record }),
                None => {
                    self.parse_errors += 1;
                    self.last_error = Some(format!("line at byte offset {start}: skipped by kinesis-agent's LOGTOJSON (no match)"));
                    return;
                }
            },
            None => self.input.parser.parse(&line),
        };
        let (tag, time, mut record) = match parsed {
            Ok(p) => (tag.clone(), p.time.unwrap_or(self.now), p.record),
            Err(e) => {
                self.parse_errors += 1;
                self.last_error = Some(format!("line at byte offset {start}: {e}"));
                let t = match &self.input.cfg.parse_error_tag {
                    Some(t) => Arc::from(t.as_str()),
                    None => tag.clone(),
                };
                (t, self.now, unparsed_record(&line, &e.to_string()))
            }
        };
        if let Some(k) = &self.input.cfg.path_key {
            record = add_field(&record, k, path);
        }
        let (buf, n) = self.batches.entry(tag).or_insert_with(|| (Vec::new(), 0));
        write_entry(buf, time, &record);
        *n += 1;
        self.lines += 1;
        self.bytes += record.len() + 12;
    }

    pub(crate) fn take(&mut self) -> Vec<Batch> {
        self.lines = 0;
        self.bytes = 0;
        self.now = EventTime::now();
        self.batches
            .drain()
            .map(|(tag, (b, n))| Batch::new(tag, Bytes::from(b), n))
            .collect()
    }
}

/// Appends `key: value` to a msgpack map.
fn add_field(record: &[u8], key: &str, value: &str) -> Vec<u8> {
    let Ok((msgpack::Head::Map(n), body)) = msgpack::read_head(record, 0) else {
        return record.to_vec();
    };
    let mut out = Vec::with_capacity(record.len() + key.len() + value.len() + 8);
    msgpack::write_map_len(&mut out, n as u32 + 1);
    out.extend_from_slice(&record[body..]);
    msgpack::write_str(&mut out, key.as_bytes());
    msgpack::write_str(&mut out, value.as_bytes());
    out
}
