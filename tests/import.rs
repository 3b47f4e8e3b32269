//! `fuwa import kinesis-agent` on kinesis-agent's own configs (its shipped
//! default, its example, a config from its tests with comments) and on
//! configs shaped after its documentation: what it reads, what each key
//! becomes, what is listed, and that `fuwa check` accepts the result as it
//! is. The records these configs deliver: tests/import_records.rs.

mod common;

use std::process::Command;

use common::*;

struct Out {
    t: toml::Table,
    text: String,
    err: String,
}

fn import_path(path: &std::path::Path) -> Out {
    let o = Command::new(bin())
        .args(["import", "kinesis-agent"])
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let t: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("not TOML: {e}\n{text}"));
    Out {
        t,
        text,
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn import(name: &str) -> Out {
    import_path(&repo_root().join("tests/data/kinesis-agent").join(name))
}

fn import_text(json: &str) -> Out {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("agent.json");
    std::fs::write(&p, json).unwrap();
    import_path(&p)
}

fn import_fails(json: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("agent.json");
    std::fs::write(&p, json).unwrap();
    let o = Command::new(bin())
        .args(["import", "kinesis-agent"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn list(t: &toml::Table, k: &str) -> Vec<toml::Table> {
    t[k].as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_table().unwrap().clone())
        .collect()
}

/// `fuwa check` on the output exactly as printed.
fn check(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("imported.toml");
    std::fs::write(&p, text).unwrap();
    let o = Command::new(bin())
        .args(["check", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The notes that are not about credentials (what a user must fix by hand
/// besides moving credentials).
fn non_credential_notes(err: &str) -> Vec<&str> {
    err.lines()
        .filter(|l| l.starts_with("not translated:"))
        .filter(|l| !l.contains("cloudwatch.") && !l.contains("not copied"))
        .collect()
}

#[test]
fn the_shipped_default_config_imports_and_checks_with_nothing_to_fix() {
    let o = import("aws-kinesis-agent.json");
    check(&o.text);
    assert!(non_credential_notes(&o.err).is_empty(), "{}", o.err);
    let ins = list(&o.t, "input");
    let outs = list(&o.t, "output");
    assert_eq!(ins.len(), 2);
    assert_eq!(outs.len(), 2);
    assert_eq!(outs[0]["type"].as_str(), Some("kinesis_streams"));
    assert_eq!(outs[0]["stream_name"].as_str(), Some("yourkinesisstream"));
    assert!(
        outs[0].get("partition_key").is_none(),
        "RANDOM is the default"
    );
    assert_eq!(outs[1]["type"].as_str(), Some("firehose"));
    assert_eq!(
        outs[1]["delivery_stream"].as_str(),
        Some("yourdeliverystream")
    );
    for (i, o) in ins.iter().zip(&outs) {
        assert_eq!(i["path"].as_str(), Some("/tmp/app.log*"));
        assert_eq!(i["read_from_head"].as_bool(), Some(false), "END_OF_FILE");
        assert_eq!(o["match"].as_str(), i["tag"].as_str());
        // the lines as they are, as kinesis-agent sends them
        assert_eq!(o["log_key"].as_str(), Some("message"));
        assert_eq!(o["append_newline"].as_bool(), Some(true));
        // empty endpoints: the SDK's region chain
        assert!(o.get("region").is_none() && o.get("endpoint").is_none());
    }
    assert_ne!(ins[0]["tag"], ins[1]["tag"], "each flow has its own output");
}

#[test]
fn kinesis_agents_example_config_credentials_are_never_copied() {
    let o = import("example-agent.json");
    check(&o.text);
    assert!(!o.text.contains("ACCESSKEY") && !o.text.contains("SECRETKEY"));
    assert!(o.err.contains("awsAccessKeyId: not copied"), "{}", o.err);
    assert!(o.err.contains("AWS_ACCESS_KEY_ID"), "{}", o.err);
    assert!(
        o.err.contains("userDefinedCredentialsProvider.classname"),
        "{}",
        o.err
    );
    assert!(o.err.contains("checkpointFile"), "{}", o.err);
    let outs = list(&o.t, "output");
    // kinesis.endpoint https://kinesis.us-west-2.amazonaws.com is a region
    assert_eq!(outs[0]["region"].as_str(), Some("us-west-2"));
    assert!(outs[0].get("endpoint").is_none());
    let ins = list(&o.t, "input");
    assert_eq!(ins[1]["read_from_head"].as_bool(), Some(true));
    assert!(ins[0]["kinesis_agent_processing"]
        .as_str()
        .unwrap()
        .contains(r#""delimiter":"\\t""#));
}

#[test]
fn a_config_from_kinesis_agents_tests_with_comments_imports() {
    let o = import("agentconfig1.json");
    check(&o.text);
    let outs = list(&o.t, "output");
    assert_eq!(outs.len(), 2);
    assert_eq!(outs[0]["region"].as_str(), Some("us-east-1"));
    assert_eq!(outs[0]["connect_timeout"].as_str(), Some("12ms"));
    assert_eq!(outs[0]["timeout"].as_str(), Some("1234ms"));
    assert_eq!(
        outs[0]["buffer"]["flush_interval"].as_str(),
        Some("10000ms")
    );
    // "sendingThreadsMaxQueueSize": "21", a number as a string: listed, not fatal
    assert!(
        o.err.contains("sendingThreadsMaxQueueSize = \"21\""),
        "{}",
        o.err
    );
    assert!(o.err.contains("log.level"), "{}", o.err);
}

#[test]
fn comments_numbers_as_strings_and_unknown_keys() {
    let o = import_text(
        r#"// a comment first
{
  /* block */ "firehose.endpoint": "https://firehose.ap-northeast-1.amazonaws.com", // trailing
  "someFutureKey": {"x": 1},
  "flows": [{
    "filePattern": "/var/log/app/*.log",
    "deliveryStream": "s",
    "maxBufferAgeMillis": "1000",
    "maxBufferSizeRecords": "250",
    "maxBufferSizeBytes": "1048576",
    "skipHeaderLines": "2",
    "retryInitialBackoffMillis": "100",
    "retryMaxBackoffMillis": 10000,
    "maxTimeBetweenFileTrackerRefreshMillis": "2000",
    "multiLineStartPattern": "^\\d{4}-\\w+",
    "truncatedRecordTerminator": "...",
    "fileFooterPattern": "^END$",
    "minTimeBetweenFilePollsMillis": "100",
    "aFlowKeyNobodyKnows": true
  }]
}"#,
    );
    check(&o.text);
    let i = &list(&o.t, "input")[0];
    let out = &list(&o.t, "output")[0];
    assert_eq!(out["region"].as_str(), Some("ap-northeast-1"));
    let b = out["buffer"].as_table().unwrap();
    assert_eq!(b["flush_interval"].as_str(), Some("1000ms"));
    assert_eq!(b["chunk_limit_records"].as_integer(), Some(250));
    assert_eq!(b["chunk_limit_size"].as_integer(), Some(1048576));
    assert_eq!(b["retry_wait"].as_str(), Some("100ms"));
    assert_eq!(b["retry_max_interval"].as_str(), Some("10000ms"));
    assert_eq!(i["skip_header_lines"].as_integer(), Some(2));
    assert_eq!(i["refresh_interval"].as_str(), Some("2000ms"));
    assert_eq!(i["file_footer_pattern"].as_str(), Some(r"\A(?:^END$)\z"));
    assert!(!o.err.contains("fileFooterPattern"), "{}", o.err);
    // Java's ASCII \d and \w
    assert_eq!(
        i["multiline_start"].as_str(),
        Some(r"\A(?:^[[:digit:]]{4}-[[:word:]]+)")
    );
    for k in [
        "someFutureKey = {\"x\":1}: unknown key",
        "flows[0].aFlowKeyNobodyKnows = true: unknown key",
        "flows[0].truncatedRecordTerminator",
        "flows[0].minTimeBetweenFilePollsMillis",
    ] {
        assert!(o.err.contains(k), "{k} is listed: {}", o.err);
        assert!(o.text.contains(k), "{k} is listed in the TOML head too");
    }
}

#[test]
fn endpoints_roles_and_partition_keys() {
    let o = import_text(
        r#"{
  "kinesis.endpoint": "http://127.0.0.1:4567",
  "firehose.endpoint": "vpce-0123-abcd.firehose.ap-northeast-1.vpce.amazonaws.com",
  "sts.endpoint": "https://sts.ap-northeast-1.amazonaws.com",
  "assumeRoleARN": "arn:aws:iam::123456789012:role/kinesis-agent",
  "assumeRoleExternalId": "ext-1",
  "flows": [
    {"filePattern": "/a.log", "kinesisStream": "k1", "partitionKeyOption": "DETERMINISTIC"},
    {"filePattern": "/b.log", "kinesisStream": "k2", "partitionKeyOption": "RANDOM"},
    {"filePattern": "/c.log", "deliveryStream": "f1", "aggregatedRecordSizeBytes": "4096"}
  ]
}"#,
    );
    check(&o.text);
    let outs = list(&o.t, "output");
    assert_eq!(outs[0]["endpoint"].as_str(), Some("http://127.0.0.1:4567"));
    assert_eq!(outs[0]["partition_key"].as_str(), Some("${md5}"));
    assert!(outs[1].get("partition_key").is_none());
    assert_eq!(
        outs[2]["endpoint"].as_str(),
        Some("https://vpce-0123-abcd.firehose.ap-northeast-1.vpce.amazonaws.com")
    );
    assert_eq!(outs[2]["aggregate"].as_bool(), Some(true));
    assert_eq!(outs[2]["aggregate_max_size"].as_integer(), Some(4096));
    for o in &outs {
        assert_eq!(
            o["role_arn"].as_str(),
            Some("arn:aws:iam::123456789012:role/kinesis-agent")
        );
        assert_eq!(o["external_id"].as_str(), Some("ext-1"));
        assert_eq!(
            o["sts_endpoint"].as_str(),
            Some("https://sts.ap-northeast-1.amazonaws.com")
        );
        assert_eq!(o["sts_region"].as_str(), Some("ap-northeast-1"));
    }
}

#[test]
fn every_processing_option_is_carried_over_and_checks() {
    let o = import("processing.json");
    check(&o.text);
    for i in list(&o.t, "input") {
        let p = i["kinesis_agent_processing"].as_str().unwrap();
        assert!(p.starts_with("[{\"optionName\":"), "{p}");
        assert!(i.get("format").is_none(), "the chain replaces the parser");
    }
    // ADDEC2METADATA says where its metadata comes from
    let o = import_text(
        r#"{"flows":[{"filePattern":"/x","deliveryStream":"s","dataProcessingOptions":[
            {"optionName":"LOGTOJSON","logFormat":"SYSLOG"},
            {"optionName":"ADDEC2METADATA","logFormat":"SYSLOG","metadataTTL":"600","bogus":1}]}]}"#,
    );
    check(&o.text);
    assert!(o.err.contains("instance metadata service"), "{}", o.err);
    assert!(
        o.err
            .contains("bogus = 1: kinesis-agent does not read this key"),
        "{}",
        o.err
    );
}

#[test]
fn what_kinesis_agent_refuses_is_refused() {
    let bad = |opts: &str| {
        import_fails(&format!(
            r#"{{"flows":[{{"filePattern":"/x","deliveryStream":"s","dataProcessingOptions":{opts}}}]}}"#
        ))
    };
    assert!(bad(r#"[{"optionName":"LOGTOJSON"}]"#).contains("logFormat is missing"));
    assert!(bad(r#"[{"optionName":"LOGTOJSON","logFormat":"NGINX"}]"#).contains("COMMONAPACHELOG"));
    assert!(
        bad(r#"[{"optionName":"LOGTOJSON","logFormat":"SYSLOG","matchPattern":"(.*)"}]"#)
            .contains("customFieldNames must be specified")
    );
    assert!(
        bad(r#"[{"optionName":"LOGTOJSON","logFormat":"SYSLOG","customFieldNames":["a"]}]"#)
            .contains("has 5 fields")
    );
    assert!(bad(r#"[{"optionName":"CSVTOJSON"}]"#).contains("customFieldNames is missing"));
    assert!(bad(r#"[{"optionName":"USINGPLUGGIN"}]"#).contains("Java class"));
    assert!(bad(r#"[{"optionName":"LOGTOJSON","logFormat":"SYSLOG","matchPattern":"(a)\\1","customFieldNames":["a"]}]"#)
        .contains("bad regular expression"));
    let e = import_fails(
        r#"{"flows":[{"filePattern":"/x","deliveryStream":"s","kinesisStream":"k"}]}"#,
    );
    assert!(
        e.contains("flows[0]: both deliveryStream and kinesisStream"),
        "{e}"
    );
    let e = import_fails(
        r#"{"flows":[{"filePattern":"/x","kinesisStream":"k","partitionKeyOption":"ROUND"}]}"#,
    );
    assert!(e.contains("partitionKeyOption `ROUND`"), "{e}");
}

#[test]
fn a_broken_file_is_an_error() {
    let e = import_fails("{ not json");
    assert!(e.contains("is not valid JSON"), "{e}");
    let e = import_fails("{\"flows\": [] /* unterminated");
    assert!(e.contains("is not valid JSON"), "{e}");
    // deep nesting is bounded, not a stack overflow
    let e = import_fails(&format!("{{\"x\": {}", "[".repeat(100_000)));
    assert!(e.contains("nested too deep"), "{e}");
}
