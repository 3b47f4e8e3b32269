//! One kinesis-agent flow → a tail input and its output.

use std::fmt::Write as _;

use fuwa_parsers::kinesis_agent::{jackson::JVal, java_regex, known_keys, Chain};

use super::{number, q, show, text, Aws};

/// The flow keys kinesis-agent reads that the tail input or the output
/// take over (the rest are listed as notes).
const FILE_KEYS: &[&str] = &[
    "filePattern",
    "deliveryStream",
    "kinesisStream",
    "partitionKeyOption",
    "initialPosition",
    "maxBufferAgeMillis",
    "maxBufferSizeRecords",
    "maxBufferSizeBytes",
    "multiLineStartPattern",
    "skipHeaderLines",
    "dataProcessingOptions",
    "retryInitialBackoffMillis",
    "retryMaxBackoffMillis",
    "maxTimeBetweenFileTrackerRefreshMillis",
    "aggregatedRecordSizeBytes",
    "fileFooterPattern",
];

pub(super) fn translate(
    i: usize,
    flow: &JVal,
    aws: &Aws,
    out: &mut String,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let JVal::Obj(keys) = flow else {
        return Err("a flow must be an object".into());
    };
    let get = |k: &str| flow.get(k).filter(|v| !matches!(v, JVal::Null));
    let name = format!("flow{i}");
    let tag = format!("kinesis_agent.{name}");
    let pattern = get("filePattern").and_then(text).ok_or("no filePattern")?;
    let firehose = get("deliveryStream").and_then(text);
    let kinesis = get("kinesisStream").and_then(text);
    let (kind, stream) = match (firehose, kinesis) {
        (Some(s), None) => ("firehose", s),
        (None, Some(s)) => ("kinesis_streams", s),
        (Some(_), Some(_)) => {
            return Err(
                "both deliveryStream and kinesisStream: kinesis-agent refuses that too".into(),
            )
        }
        (None, None) => return Err("neither deliveryStream nor kinesisStream".into()),
    };
    let at = |k: &str| format!("flows[{i}].{k}");

    // ---- the input
    let _ = writeln!(out, "\n# flows[{i}]: {pattern} → {kind} {stream}");
    out.push_str("[[input]]\ntype = \"tail\"\n");
    let _ = writeln!(out, "id = {}", q(&format!("tail-{name}")));
    let _ = writeln!(out, "path = {}", q(&pattern));
    let _ = writeln!(out, "tag = {}", q(&tag));
    let start = get("initialPosition")
        .and_then(text)
        .unwrap_or_else(|| "END_OF_FILE".into());
    match start.as_str() {
        "START_OF_FILE" => out.push_str("read_from_head = true\n"),
        "END_OF_FILE" => out.push_str("read_from_head = false\n"),
        other => {
            return Err(format!(
                "initialPosition `{other}`: START_OF_FILE or END_OF_FILE"
            ))
        }
    }
    if let Some(m) = get("multiLineStartPattern").and_then(text) {
        // kinesis-agent's RegexSplitter: Matcher.lookingAt(), anchored at the start
        let rust = format!(r"\A(?:{})", java_regex::translate(&m));
        java_regex::anywhere(&m).map_err(|e| format!("multiLineStartPattern: {e}"))?;
        let _ = writeln!(out, "multiline_start = {}", q(&rust));
    }
    if let Some(m) = get("fileFooterPattern").and_then(text) {
        // kinesis-agent matches the whole trimmed line (Matcher.matches())
        java_regex::whole(&m).map_err(|e| format!("fileFooterPattern: {e}"))?;
        let rust = format!(r"\A(?:{})\z", java_regex::translate(&m));
        let _ = writeln!(out, "file_footer_pattern = {}", q(&rust));
    }
    if let Some(v) = get("skipHeaderLines") {
        let n = number(v).ok_or_else(|| format!("skipHeaderLines = {}: not a number", show(v)))?;
        let _ = writeln!(out, "skip_header_lines = {n}");
    }
    if let Some(v) = get("maxTimeBetweenFileTrackerRefreshMillis") {
        if let Some(ms) = number(v) {
            let _ = writeln!(out, "refresh_interval = {}", q(&format!("{ms}ms")));
        }
    }
    // kinesis-agent cuts a record longer than the service allows and ends
    // it with truncatedRecordTerminator (default "\n"): a line cut so that
    // it and its newline fit is the same record (Kinesis: room for the
    // longest partition key too)
    let max = if kind == "firehose" {
        1000 * 1024 - 1
    } else {
        1024 * 1024 - 256 - 1
    };
    let _ = writeln!(out, "max_line_size = {max}");
    // kinesis-agent sends a CRLF line's \r with it
    out.push_str("keep_carriage_return = true\n");
    let processed = get("dataProcessingOptions").is_some();
    if let Some(opts) = get("dataProcessingOptions") {
        if let JVal::Arr(list) = opts {
            for (j, o) in list.iter().enumerate() {
                let op = o.get("optionName").and_then(text).unwrap_or_default();
                if let JVal::Obj(m) = o {
                    for (k, v) in m {
                        if !known_keys(&op).contains(&k.as_str()) {
                            notes.push(format!(
                                "{}[{j}] {op}: {k} = {}: kinesis-agent does not read this key",
                                at("dataProcessingOptions"),
                                show(v)
                            ));
                        }
                    }
                }
                if op == "ADDEC2METADATA" {
                    notes.push(format!(
                        "{}[{j}] ADDEC2METADATA: read from the instance metadata service when fuwa runs (IMDSv2, then v1); \
                         the instance's tags come from the metadata service (enable \"allow tags in instance metadata\"), \
                         not from EC2 DescribeTags, and are left out when it has none",
                        at("dataProcessingOptions")
                    ));
                }
            }
        }
        // the same checks kinesis-agent makes at start
        Chain::from_value(opts).map_err(|e| format!("dataProcessingOptions{e}"))?;
        let _ = writeln!(out, "kinesis_agent_processing = {}", q(&show(opts)));
    }
    for (k, v) in keys {
        if FILE_KEYS.contains(&k.as_str()) {
            continue;
        }
        if k == "truncatedRecordTerminator" && text(v).as_deref() == Some("\n") {
            continue;
        }
        let why = match k.as_str() {
            "truncatedRecordTerminator" => "fuwa ends a line cut at the record limit (max_line_size) with a newline only, kinesis-agent's default",
            "minTimeBetweenFilePollsMillis" => "not needed: fuwa follows files with inotify (refresh_interval is the fallback scan)",
            "publishQueueCapacity" | "waitOnFullPublishQueueMillis" | "waitOnEmptyPublishQueueMillis"
            | "waitOnFullRetryQueueMillis" => "no equivalent: fuwa's queue is the crash-safe buffer ([output.buffer] total_limit_size)",
            "log.emitInternalMetrics" => "fuwa's counters are in /metrics",
            _ => "unknown key, not translated",
        };
        notes.push(format!("{} = {}: {why}", at(k), show(v)));
    }

    // ---- the output
    let _ = writeln!(out, "\n[[output]]\ntype = \"{kind}\"");
    let _ = writeln!(out, "id = {}", q(&format!("{kind}-{name}")));
    let _ = writeln!(out, "match = {}", q(&tag));
    let ep = if kind == "firehose" {
        let _ = writeln!(out, "delivery_stream = {}", q(&stream));
        &aws.firehose
    } else {
        let _ = writeln!(out, "stream_name = {}", q(&stream));
        match get("partitionKeyOption").and_then(text).as_deref() {
            None | Some("RANDOM") => {
                out.push_str("# partitionKeyOption RANDOM: a random partition key per record (the default)\n")
            }
            Some("DETERMINISTIC") => out.push_str(
                "# partitionKeyOption DETERMINISTIC: the hex MD5 of the record\npartition_key = \"${md5}\"\n",
            ),
            Some(other) => {
                return Err(format!("partitionKeyOption `{other}`: RANDOM or DETERMINISTIC"))
            }
        }
        &aws.kinesis
    };
    if kind == "firehose" {
        if let Some(v) = get("aggregatedRecordSizeBytes") {
            let n = number(v)
                .ok_or_else(|| format!("aggregatedRecordSizeBytes = {}: not a number", show(v)))?;
            if n > 0 {
                let _ = writeln!(out, "aggregate = true\naggregate_max_size = {n}");
            }
        }
    }
    if let Some(r) = &ep.region {
        let _ = writeln!(out, "region = {}", q(r));
    }
    if let Some(e) = &ep.endpoint {
        let _ = writeln!(out, "endpoint = {}", q(e));
    }
    // the records as kinesis-agent sends them: the line and a newline, or
    // exactly what its processing made of it (which carries its own
    // newline, or none: ADDBRACKETS's `{line\n}`)
    out.push_str(if processed {
        "log_key = \"message\"\nappend_newline = false\n"
    } else {
        "log_key = \"message\"\nappend_newline = true\n"
    });
    for (k, v) in aws.keys.iter().chain(&aws.timeouts) {
        let _ = writeln!(out, "{k} = {v}");
    }
    let mut buf = String::new();
    let ms = |k: &str| -> Result<Option<u64>, String> {
        match get(k) {
            None => Ok(None),
            Some(v) => number(v)
                .map(Some)
                .ok_or_else(|| format!("{k} = {}: not a number", show(v))),
        }
    };
    // what is not given keeps fuwa's defaults (a chunk a second; the
    // outputs split chunks into calls within the service limits)
    if let Some(age) = ms("maxBufferAgeMillis")? {
        let _ = writeln!(buf, "flush_interval = {}", q(&format!("{age}ms")));
    }
    if let Some(recs) = ms("maxBufferSizeRecords")? {
        let _ = writeln!(buf, "chunk_limit_records = {recs}");
    }
    if let Some(b) = ms("maxBufferSizeBytes")? {
        let _ = writeln!(buf, "chunk_limit_size = {b}");
    }
    if let Some(w) = ms("retryInitialBackoffMillis")? {
        let _ = writeln!(buf, "retry_wait = {}", q(&format!("{w}ms")));
    }
    if let Some(w) = ms("retryMaxBackoffMillis")? {
        let _ = writeln!(buf, "retry_max_interval = {}", q(&format!("{w}ms")));
    }
    if !buf.is_empty() {
        out.push_str("[output.buffer]\n");
        out.push_str(&buf);
    }
    Ok(())
}
