//! `fuwa import kinesis-agent FILE`: reads amazon-kinesis-agent's
//! `agent.json` and prints an equivalent fuwa config. Whatever has no
//! equivalent is listed at the top of the output (and on stderr), never
//! silently ignored.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use serde_json::Value;

/// The translated config and the list of what could not be translated.
pub struct Imported {
    pub toml: String,
    pub untranslated: Vec<String>,
}

fn q(s: &str) -> String {
    // a TOML basic string
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Java's unnamed groups `( ... )` become named groups, in order, with the
/// names kinesis-agent would give them (customFieldNames).
fn name_groups(pattern: &str, names: &[String]) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars().peekable();
    let mut i = 0;
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push(c);
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '[' => {
                in_class = true;
                out.push(c);
            }
            ']' => {
                in_class = false;
                out.push(c);
            }
            '(' if !in_class && chars.peek() != Some(&'?') => {
                let name = names
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("field{}", i + 1));
                let _ = write!(out, "(?P<{name}>");
                i += 1;
            }
            c => out.push(c),
        }
    }
    out
}

const RFC3339_SYSLOG: &str = r"^(?P<timestamp>\S+) (?P<hostname>\S+) (?P<program>[^\s\[:]+)(?:\[(?P<processid>\d+)\])?: (?P<message>.*)$";

pub fn kinesis_agent(text: &str, source: &str) -> Result<Imported> {
    let cfg: Value =
        serde_json::from_str(text).with_context(|| format!("{source} is not valid JSON"))?;
    let mut untranslated = Vec::new();
    let mut out = String::new();
    let _ = writeln!(out, "# Translated by `fuwa import kinesis-agent {source}`.");
    out.push_str("[agent]\ndata_dir = \"/var/lib/fuwa\"\n");
    if let Some(map) = cfg.as_object() {
        for (k, v) in map {
            match k.as_str() {
                "flows" => {}
                "awsAccessKeyId" | "awsSecretAccessKey" => {
                    untranslated.push(format!("{k}: fuwa takes credentials from the AWS default chain (environment, profile, web identity, ECS/EC2 roles), never from its config"))
                }
                "firehose.endpoint" | "kinesis.endpoint" => {
                    if v.as_str().map(|s| !s.is_empty()).unwrap_or(false) {
                        untranslated.push(format!("{k} = {v}: set `endpoint` on the output instead"));
                    }
                }
                "assumeRoleARN" => untranslated.push(format!("{k} = {v}: set `role_arn` on the output")),
                "cloudwatch.emitMetrics" | "cloudwatch.endpoint" => {
                    untranslated.push(format!("{k}: fuwa exposes Prometheus metrics instead of CloudWatch"))
                }
                other => untranslated.push(format!("{other} = {v}: no equivalent")),
            }
        }
    }
    let flows = cfg
        .get("flows")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if flows.is_empty() {
        untranslated.push("no flows: nothing to tail".into());
    }
    let mut outputs = String::new();
    for (i, flow) in flows.iter().enumerate() {
        let name = format!("flow{i}");
        let Some(pattern) = flow.get("filePattern").and_then(Value::as_str) else {
            untranslated.push(format!("flows[{i}]: no filePattern; skipped"));
            continue;
        };
        let (kind, stream) = match (
            flow.get("deliveryStream").and_then(Value::as_str),
            flow.get("kinesisStream").and_then(Value::as_str),
        ) {
            (Some(s), _) => ("firehose", s.to_string()),
            (None, Some(s)) => ("kinesis", s.to_string()),
            _ => ("none", String::new()),
        };
        let tag = format!(
            "kinesis_agent.{}",
            if stream.is_empty() {
                name.clone()
            } else {
                stream.replace(['/', ' '], "_")
            }
        );
        let _ = writeln!(out, "\n# flows[{i}]: {pattern}");
        out.push_str("[[input]]\ntype = \"tail\"\n");
        let _ = writeln!(out, "id = {}", q(&format!("tail-{name}")));
        let _ = writeln!(out, "path = {}", q(pattern));
        let _ = writeln!(out, "tag = {}", q(&tag));
        let start = flow
            .get("initialPosition")
            .and_then(Value::as_str)
            .unwrap_or("END_OF_FILE");
        let _ = writeln!(out, "read_from_head = {}", start == "START_OF_FILE");
        if let Some(m) = flow.get("multiLineStartPattern").and_then(Value::as_str) {
            let _ = writeln!(out, "multiline_start = {}", q(m));
        }
        if let Some(n) = flow.get("skipHeaderLines").and_then(Value::as_u64) {
            let _ = writeln!(out, "skip_header_lines = {n}");
        }
        if let Some(n) = flow
            .get("maxRecordSizeBytes")
            .or_else(|| flow.get("maxLineSizeBytes"))
            .and_then(Value::as_u64)
        {
            let _ = writeln!(out, "max_line_size = {n}");
        }
        let mut format_set = false;
        for opt in flow
            .get("dataProcessingOptions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            let op = opt.get("optionName").and_then(Value::as_str).unwrap_or("");
            let names: Vec<String> = opt
                .get("customFieldNames")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            match op {
                "CSVTOJSON" => {
                    let delim = opt.get("delimiter").and_then(Value::as_str).unwrap_or(",");
                    let fmt = if delim == "\\t" || delim == "\t" { "tsv" } else { "csv" };
                    if fmt == "csv" && delim != "," {
                        untranslated.push(format!("flows[{i}] CSVTOJSON delimiter {delim:?}: fuwa's csv format splits on commas; use format = \"regex\""));
                    }
                    let _ = writeln!(out, "format = \"{fmt}\"");
                    let keys: Vec<String> = names.iter().map(|n| q(n)).collect();
                    let _ = writeln!(out, "keys = [{}]", keys.join(", "));
                    format_set = true;
                }
                "LOGTOJSON" => {
                    let lf = opt.get("logFormat").and_then(Value::as_str).unwrap_or("");
                    if let Some(mp) = opt.get("matchPattern").and_then(Value::as_str) {
                        out.push_str("format = \"regex\"\n");
                        let _ = writeln!(out, "expression = {}", q(&name_groups(mp, &names)));
                    } else {
                        match lf {
                            "COMMONAPACHELOG" | "COMBINEDAPACHELOG" => out.push_str("format = \"apache2\"\n"),
                            "APACHEERRORLOG" => out.push_str("format = \"apache_error\"\n"),
                            "SYSLOG" => out.push_str("format = \"syslog\"\nmessage_format = \"rfc3164\"\n"),
                            "RFC3339SYSLOG" => {
                                out.push_str("format = \"regex\"\n");
                                let _ = writeln!(out, "expression = {}", q(RFC3339_SYSLOG));
                                out.push_str("time_key = \"timestamp\"\ntime_format = \"rfc3339\"\nkeep_time_key = true\n");
                            }
                            other => {
                                untranslated.push(format!("flows[{i}] LOGTOJSON logFormat {other:?}: unknown; lines are kept whole (format = \"none\")"));
                                out.push_str("format = \"none\"\n");
                            }
                        }
                        if !names.is_empty() {
                            untranslated.push(format!(
                                "flows[{i}] LOGTOJSON customFieldNames {names:?}: fuwa's {lf} parser uses its own field names (add a record filter to rename)"
                            ));
                        }
                    }
                    format_set = true;
                }
                "SINGLELINE" => untranslated.push(format!(
                    "flows[{i}] SINGLELINE: multiline events keep their line breaks (as \\n) in fuwa; add a record filter to join them"
                )),
                "ADDMETADATA" | "ADDEC2METADATA" => untranslated.push(format!(
                    "flows[{i}] {op}: use a record filter (set = {{ ... }}) for static fields and ${{hostname}}; fuwa adds the event time itself"
                )),
                other => untranslated.push(format!("flows[{i}] dataProcessingOptions {other:?}: no equivalent")),
            }
        }
        if !format_set {
            // kinesis-agent sends lines as they are
            out.push_str("format = \"none\"\n");
        }
        for (k, v) in flow.as_object().into_iter().flatten() {
            let known = [
                "filePattern",
                "deliveryStream",
                "kinesisStream",
                "initialPosition",
                "multiLineStartPattern",
                "skipHeaderLines",
                "maxBufferAgeMillis",
                "maxBufferSizeRecords",
                "maxBufferSizeBytes",
                "dataProcessingOptions",
                "maxRecordSizeBytes",
                "maxLineSizeBytes",
            ];
            if !known.contains(&k.as_str()) {
                untranslated.push(format!("flows[{i}] {k} = {v}: no equivalent"));
            }
        }
        // the output
        let _ = writeln!(outputs, "\n# flows[{i}] → {kind} {stream}");
        match kind {
            "firehose" => {
                outputs.push_str("[[output]]\ntype = \"firehose\"\n");
                let _ = writeln!(outputs, "id = {}", q(&format!("firehose-{name}")));
                let _ = writeln!(outputs, "match = {}", q(&tag));
                let _ = writeln!(outputs, "delivery_stream = {}", q(&stream));
                outputs.push_str("append_newline = true\n");
            }
            "kinesis" => {
                untranslated.push(format!(
                    "flows[{i}] kinesisStream {stream:?}: fuwa has no Kinesis Data Streams output; the flow is written to a file instead"
                ));
                outputs.push_str("[[output]]\ntype = \"file\"\n");
                let _ = writeln!(outputs, "id = {}", q(&format!("file-{name}")));
                let _ = writeln!(outputs, "match = {}", q(&tag));
                let _ = writeln!(
                    outputs,
                    "path = {}",
                    q(&format!("/var/log/fuwa/{stream}/%Y%m%d.jsonl"))
                );
            }
            _ => {
                untranslated.push(format!(
                    "flows[{i}]: neither deliveryStream nor kinesisStream; written to stdout"
                ));
                outputs.push_str("[[output]]\ntype = \"stdout\"\n");
                let _ = writeln!(outputs, "match = {}", q(&tag));
            }
        }
        outputs.push_str("[output.buffer]\n");
        if let Some(ms) = flow.get("maxBufferAgeMillis").and_then(Value::as_u64) {
            let _ = writeln!(outputs, "flush_interval = \"{ms}ms\"");
        }
        if let Some(n) = flow.get("maxBufferSizeRecords").and_then(Value::as_u64) {
            let _ = writeln!(outputs, "chunk_limit_records = {n}");
        }
        if let Some(n) = flow.get("maxBufferSizeBytes").and_then(Value::as_u64) {
            let _ = writeln!(outputs, "chunk_limit_size = {n}");
        }
    }
    out.push_str(&outputs);
    let mut head = String::new();
    if !untranslated.is_empty() {
        head.push_str("# Not translated (check these by hand):\n");
        for u in &untranslated {
            let _ = writeln!(head, "#   - {u}");
        }
    }
    Ok(Imported {
        toml: format!("{head}{out}"),
        untranslated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_named_in_order() {
        assert_eq!(
            name_groups(r"^(\d+) \((x)\) [(]y(?:z)$", &["a".into()]),
            r"^(?P<a>\d+) \((?P<field2>x)\) [(]y(?:z)$"
        );
    }
}
