//! `fuwa import kinesis-agent` on sample configs shaped after
//! kinesis-agent's documentation: every flow becomes a tail input with the
//! right parser, and whatever has no equivalent is listed.

mod common;

use std::process::Command;

use common::*;

fn import(name: &str) -> (toml::Table, String, String) {
    let path = repo_root().join("tests/data/kinesis-agent").join(name);
    let o = Command::new(bin())
        .args(["import", "kinesis-agent"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let t: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("not TOML: {e}\n{text}"));
    (t, text, String::from_utf8_lossy(&o.stderr).into_owned())
}

fn inputs(t: &toml::Table) -> Vec<toml::Table> {
    t["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_table().unwrap().clone())
        .collect()
}

fn outputs(t: &toml::Table) -> Vec<toml::Table> {
    t["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_table().unwrap().clone())
        .collect()
}

#[test]
fn basic_firehose_flow() {
    let (t, text, err) = import("firehose-basic.json");
    let i = &inputs(&t)[0];
    assert_eq!(i["type"].as_str(), Some("tail"));
    assert_eq!(i["path"].as_str(), Some("/tmp/app.log*"));
    assert_eq!(
        i["read_from_head"].as_bool(),
        Some(false),
        "kinesis-agent starts at END_OF_FILE"
    );
    assert_eq!(
        i["format"].as_str(),
        Some("none"),
        "lines are sent as they are"
    );
    let o = &outputs(&t)[0];
    assert_eq!(o["type"].as_str(), Some("firehose"));
    assert_eq!(o["delivery_stream"].as_str(), Some("yourdeliverystream"));
    assert_eq!(o["match"].as_str(), i["tag"].as_str());
    assert!(
        text.contains("firehose.endpoint") && err.contains("firehose.endpoint"),
        "the endpoint is listed: {text}"
    );
    assert!(err.contains("cloudwatch.emitMetrics"));
}

#[test]
fn two_flows_with_buffers_and_a_kinesis_stream() {
    let (t, _text, err) = import("two-flows.json");
    let ins = inputs(&t);
    let outs = outputs(&t);
    assert_eq!(ins.len(), 2);
    assert_eq!(ins[1]["read_from_head"].as_bool(), Some(true));
    let b = outs[1]["buffer"].as_table().unwrap();
    assert_eq!(b["flush_interval"].as_str(), Some("30000ms"));
    assert_eq!(b["chunk_limit_records"].as_integer(), Some(500));
    assert_eq!(b["chunk_limit_size"].as_integer(), Some(1048576));
    assert!(err.contains("kinesisStream \"yourkinesisstream\""), "{err}");
    assert_eq!(outs[0]["type"].as_str(), Some("file"));
}

#[test]
fn processing_options_become_parsers() {
    let (t, _text, err) = import("processing.json");
    let ins = inputs(&t);
    let fmt = |i: usize| ins[i]["format"].as_str().unwrap().to_string();
    assert_eq!(fmt(0), "apache2");
    assert_eq!(fmt(1), "apache_error");
    assert_eq!(fmt(2), "syslog");
    assert_eq!(ins[2]["message_format"].as_str(), Some("rfc3164"));
    assert_eq!(fmt(3), "regex");
    assert_eq!(fmt(4), "csv");
    assert_eq!(ins[4]["keys"].as_array().unwrap().len(), 3);
    assert_eq!(ins[4]["skip_header_lines"].as_integer(), Some(1));
    assert_eq!(
        ins[5]["multiline_start"].as_str(),
        Some(r"^\d{4}-\d{2}-\d{2}")
    );
    assert_eq!(fmt(6), "regex");
    let expr = ins[6]["expression"].as_str().unwrap();
    assert!(
        expr.contains("(?P<host>") && expr.contains("(?P<bytes>"),
        "{expr}"
    );
    assert!(
        err.contains("SINGLELINE") && err.contains("ADDMETADATA"),
        "{err}"
    );

    // every generated input is a valid tail input: check it with the real
    // `fuwa check` against a null output (the firehose output is separate work)
    let dir = tempfile::tempdir().unwrap();
    let mut doc = toml::Table::new();
    doc.insert(
        "input".into(),
        toml::Value::Array(ins.into_iter().map(toml::Value::Table).collect()),
    );
    let mut null = toml::Table::new();
    null.insert("type".into(), "null".into());
    doc.insert(
        "output".into(),
        toml::Value::Array(vec![toml::Value::Table(null)]),
    );
    let p = dir.path().join("imported.toml");
    std::fs::write(&p, toml::to_string(&doc).unwrap()).unwrap();
    let o = Command::new(bin())
        .args(["check", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_broken_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("agent.json");
    std::fs::write(&p, "{ not json").unwrap();
    let o = Command::new(bin())
        .args(["import", "kinesis-agent"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not valid JSON"));
}
