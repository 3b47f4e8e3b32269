//! Turning a chunk into Firehose records and records into PutRecordBatch
//! calls, within Firehose's hard limits.

use bytes::Bytes;
use fuwa_api::Chunk;
use fuwa_render::JsonLines;

/// Firehose's limits: bytes of one record (before base64), records and
/// bytes of one PutRecordBatch call.
pub const MAX_RECORD: usize = 1000 * 1024;
pub const MAX_CALL_RECORDS: usize = 500;
pub const MAX_CALL_BYTES: usize = 4 * 1024 * 1024;
/// Firehose bills ingestion per record rounded up to the next 5 KB.
pub const BILLING_UNIT: u64 = 5 * 1024;

pub fn billed(len: usize) -> u64 {
    (len as u64).div_ceil(BILLING_UNIT).max(1) * BILLING_UNIT
}

/// The records of one chunk, always built the same way from the same chunk
/// and config, so that a record index means the same bytes on every retry.
#[derive(Debug, Default)]
pub struct Rendered {
    pub records: Vec<Bytes>,
    /// events too big for one record: their rendered size and the
    /// `[time, record]` entry (the engine dead-letters them alone)
    pub oversize: Vec<(usize, Bytes)>,
    /// entries that could not be rendered
    pub bad: usize,
}

/// The string value of `key` in a record (`log_key`).
fn raw_value<'a>(record: &'a [u8], key: &str) -> Option<&'a [u8]> {
    use fuwa_api::msgpack::{read_head, Head};
    let r = fuwa_api::rawmap::find(record, &[key.to_string()]).ok()??;
    match read_head(record, r.start).ok()? {
        (Head::Str(n) | Head::Bin(n), p) => record.get(p..p + n),
        _ => None,
    }
}

pub fn render(
    lines: &JsonLines,
    log_key: Option<&str>,
    chunk: &Chunk,
    append_newline: bool,
    aggregate: Option<usize>,
) -> Rendered {
    let mut out = Rendered::default();
    let mut agg: Vec<u8> = Vec::new();
    let mut line = Vec::new();
    for e in chunk.entries() {
        let Ok(e) = e else {
            out.bad += 1;
            break;
        };
        line.clear();
        if let Some(k) = log_key {
            match raw_value(e.record, k) {
                Some(v) => {
                    line.extend_from_slice(v);
                    line.push(b'\n');
                }
                None => {
                    out.bad += 1;
                    continue;
                }
            }
        } else if lines.write_segment(&chunk.tag, e.raw, &mut line) > 0 || line.is_empty() {
            out.bad += 1;
            continue;
        }
        if !append_newline && line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.len() > MAX_RECORD {
            out.oversize
                .push((line.len(), Bytes::copy_from_slice(e.raw)));
            continue;
        }
        match aggregate {
            None => out.records.push(Bytes::copy_from_slice(&line)),
            Some(max) => {
                if !agg.is_empty() && agg.len() + line.len() > max {
                    out.records.push(Bytes::from(std::mem::take(&mut agg)));
                }
                agg.extend_from_slice(&line);
            }
        }
    }
    if !agg.is_empty() {
        out.records.push(Bytes::from(agg));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_stay_within_the_limits() {
        let records: Vec<Bytes> = (0..2000)
            .map(|i| Bytes::from(vec![b'x'; if i % 7 == 0 { MAX_RECORD } else { 300 }]))
            .collect();
        let pending: Vec<usize> = (0..records.len()).collect();
        let calls = fuwa_aws::batch::pack(
            &records,
            &pending,
            Bytes::len,
            MAX_CALL_RECORDS,
            MAX_CALL_BYTES,
        );
        let mut seen = Vec::new();
        for c in &calls {
            assert!(c.len() <= MAX_CALL_RECORDS);
            assert!(c.iter().map(|&i| records[i].len()).sum::<usize>() <= MAX_CALL_BYTES);
            seen.extend_from_slice(c);
        }
        assert_eq!(seen, pending);
    }

    #[test]
    fn billing_rounds_up_to_5kb() {
        assert_eq!(billed(1), 5120);
        assert_eq!(billed(5120), 5120);
        assert_eq!(billed(5121), 10240);
        assert_eq!(billed(0), 5120);
    }
}
