//! kinesis-agent's records, end to end: for every converter case of
//! kinesis-agent's own tests (tests/data/kinesis-agent/converter-cases.json,
//! copied from its DataConverterTest, plus a few of ours marked as such) an
//! agent.json flow tails a file; `fuwa import kinesis-agent` translates it,
//! `fuwa check` accepts the result untouched, fuwa runs it, and the records
//! that reach a Firehose endpoint written here (PutRecordBatch over JSON
//! 1.1, recording every record's bytes) are compared byte for byte with what
//! kinesis-agent's tests expect; the same cases go to moto's Kinesis, with
//! DETERMINISTIC partition keys checked. ADDEC2METADATA runs against an instance
//! metadata service written here, and off EC2.
//!
//! Over 600 lines on purpose: one feature (what an imported config
//! delivers), whose tests share the Firehose and metadata-service stand-ins
//! written here.

mod common;

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::aws::{aws_env, b64decode, py_script, read_request, MotoServer};
use common::*;
use serde_json::{json, Value as J};

/// A Firehose endpoint that accepts everything and keeps each stream's
/// records in the order they arrived.
struct Firehose {
    port: u16,
    records: Arc<Mutex<HashMap<String, Vec<Vec<u8>>>>>,
}

impl Firehose {
    fn start() -> Firehose {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let records: Arc<Mutex<HashMap<String, Vec<Vec<u8>>>>> = Default::default();
        let rec = records.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { return };
                let rec = rec.clone();
                std::thread::spawn(move || {
                    let _ = serve(c, &rec);
                });
            }
        });
        Firehose { port, records }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn stream(&self, name: &str) -> Vec<Vec<u8>> {
        self.records
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .unwrap_or_default()
    }
}

fn serve(c: TcpStream, rec: &Mutex<HashMap<String, Vec<Vec<u8>>>>) -> std::io::Result<()> {
    let mut w = c.try_clone()?;
    let mut r = BufReader::new(c);
    while let Some((_head, body)) = read_request(&mut r)? {
        let req: J = serde_json::from_slice(&body).unwrap_or(J::Null);
        let stream = req["DeliveryStreamName"].as_str().unwrap_or("").to_string();
        let data: Vec<Vec<u8>> = req["Records"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| b64decode(r["Data"].as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        let answers: Vec<J> = (0..data.len())
            .map(|i| json!({"RecordId": format!("r{i}")}))
            .collect();
        rec.lock().unwrap().entry(stream).or_default().extend(data);
        let body = json!({"FailedPutCount": 0, "Encrypted": false, "RequestResponses": answers})
            .to_string();
        write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        w.flush()?;
    }
    Ok(())
}

fn env() {
    aws_env();
    std::env::set_var("AWS_REGION", "ap-northeast-1");
}

/// `fuwa import kinesis-agent` on `agent`; the TOML and the notes.
fn import(agent: &Path) -> (String, String) {
    let o = Command::new(bin())
        .args(["import", "kinesis-agent"])
        .arg(agent)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `fuwa check` on the imported config as it is.
fn check(dir: &Path, toml_text: &str) {
    let p = dir.join("imported.toml");
    std::fs::write(&p, toml_text).unwrap();
    let o = Command::new(bin())
        .args(["check", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "fuwa check refused the imported config:\n{}\n{toml_text}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn wait_records(fh: &Firehose, stream: &str, n: usize, a: &Agent) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = fh.stream(stream);
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{stream}: {} of {n} records after 60s; agent log:\n{}",
            got.len(),
            a.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn show(b: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(b))
}

fn cases() -> Vec<J> {
    let cases: Vec<J> = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("tests/data/kinesis-agent/converter-cases.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(cases.len() >= 14);
    cases
}

/// Where the records go: the flow key naming the stream and the top-level
/// endpoint key.
enum Sink<'a> {
    Firehose(&'a Firehose),
    Kinesis(&'a MotoServer),
}

/// One agent.json with a flow per case, imported, checked and run; returns
/// the running agent.
fn run_cases(cases: &[J], sink: &Sink<'_>, logs: &Path, dir: &Path) -> Agent {
    let mut flows = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let path = logs.join(format!("case{i}.log"));
        std::fs::write(&path, c["file"].as_str().unwrap()).unwrap();
        let mut f = json!({
            "filePattern": path.display().to_string(),
            "initialPosition": "START_OF_FILE",
            // numbers written as strings, as many published configs do
            "maxBufferAgeMillis": "200",
            "maxBufferSizeRecords": "500",
        });
        match sink {
            Sink::Firehose(_) => f["deliveryStream"] = json!(format!("case-{i}")),
            Sink::Kinesis(_) => {
                f["kinesisStream"] = json!(format!("case-{i}"));
                f["partitionKeyOption"] = json!(if i % 2 == 0 {
                    "DETERMINISTIC"
                } else {
                    "RANDOM"
                });
            }
        }
        if let Some(p) = c["multiLineStartPattern"].as_str() {
            f["multiLineStartPattern"] = json!(p);
        }
        if !c["options"].is_null() {
            f["dataProcessingOptions"] = c["options"].clone();
        }
        flows.push(f);
    }
    let mut top = json!({ "cloudwatch.emitMetrics": false, "flows": flows });
    match sink {
        Sink::Firehose(fh) => top["firehose.endpoint"] = json!(fh.endpoint()),
        Sink::Kinesis(m) => top["kinesis.endpoint"] = json!(m.endpoint()),
    }
    let body = serde_json::to_string_pretty(&top).unwrap();
    // kinesis-agent reads its config with comments allowed
    let agent_json =
        format!("/* written by tests/import_records.rs */\n// one flow per case\n{body}\n");
    let aj = dir.join("agent.json");
    std::fs::write(&aj, agent_json).unwrap();
    let (toml_text, notes) = import(&aj);
    assert!(
        !notes.contains("unknown key") && !notes.contains("does not read"),
        "{notes}"
    );
    check(dir, &toml_text);
    Agent::start_with(&toml_text, false)
}

fn compare(c: &J, got: &[Vec<u8>], failures: &mut Vec<String>) {
    let expected: Vec<Vec<u8>> = expected(c);
    if got != expected {
        failures.push(format!(
            "{} ({}):\n  expected {}\n  got      {}",
            c["name"],
            c["source"],
            expected
                .iter()
                .map(|e| show(e))
                .collect::<Vec<_>>()
                .join("\n           "),
            got.iter()
                .map(|e| show(e))
                .collect::<Vec<_>>()
                .join("\n           ")
        ));
    }
}

fn expected(c: &J) -> Vec<Vec<u8>> {
    c["expected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().as_bytes().to_vec())
        .collect()
}

#[test]
fn every_converter_case_delivers_kinesis_agents_exact_records_to_firehose() {
    env();
    let cases = cases();
    let fh = Firehose::start();
    let (logs, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = run_cases(&cases, &Sink::Firehose(&fh), logs.path(), dir.path());
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let n = expected(c).len();
        let got = wait_records(&fh, &format!("case-{i}"), n, &a);
        compare(c, &got, &mut failures);
    }
    // nothing more arrives: skipped lines stay skipped
    std::thread::sleep(Duration::from_millis(800));
    for (i, c) in cases.iter().enumerate() {
        compare(c, &fh.stream(&format!("case-{i}")), &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // the lines LOGTOJSON skips are counted in the tail input's warning
    assert!(
        a.wait_stderr(
            "skipped by kinesis-agent's LOGTOJSON",
            Duration::from_secs(30)
        ),
        "{}",
        a.stderr()
    );
}

/// Every record of a one-shard stream, in order, with its partition key.
fn read_kinesis(moto: &MotoServer, stream: &str) -> Vec<(String, Vec<u8>)> {
    let out = py_script(
        "kinesis_util.py",
        &["read", &moto.endpoint(), stream, "ap-northeast-1"],
    );
    let v: J = serde_json::from_str(&out).unwrap();
    let mut recs: Vec<(u128, String, Vec<u8>)> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["seq"].as_str().unwrap().parse().unwrap(),
                r["key"].as_str().unwrap().to_string(),
                b64decode(r["data"].as_str().unwrap()),
            )
        })
        .collect();
    recs.sort_by_key(|r| r.0);
    recs.into_iter().map(|(_, k, d)| (k, d)).collect()
}

fn md5_hex(data: &[u8]) -> String {
    let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
    let o = Command::new(common::aws::python())
        .args([
            "-c",
            "import hashlib,sys; print(hashlib.md5(bytes.fromhex(sys.argv[1])).hexdigest())",
            &hex,
        ])
        .output()
        .unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

#[test]
fn every_converter_case_delivers_kinesis_agents_exact_records_to_a_kinesis_stream() {
    env();
    let cases = cases();
    let moto = MotoServer::start();
    for i in 0..cases.len() {
        py_script(
            "kinesis_util.py",
            &[
                "create",
                &moto.endpoint(),
                &format!("case-{i}"),
                "ap-northeast-1",
                "1",
            ],
        );
    }
    let (logs, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = run_cases(&cases, &Sink::Kinesis(&moto), logs.path(), dir.path());
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let stream = format!("case-{i}");
        let n = expected(c).len();
        let deadline = Instant::now() + Duration::from_secs(90);
        let got = loop {
            let got = read_kinesis(&moto, &stream);
            if got.len() >= n {
                break got;
            }
            assert!(
                Instant::now() < deadline,
                "{stream}: {} of {n} records after 90s; agent log:\n{}",
                got.len(),
                a.stderr()
            );
            std::thread::sleep(Duration::from_millis(300));
        };
        let data: Vec<Vec<u8>> = got.iter().map(|(_, d)| d.clone()).collect();
        compare(c, &data, &mut failures);
        for (key, d) in &got {
            if i % 2 == 0 {
                // DETERMINISTIC: kinesis-agent's key is the hex MD5 of the record
                if *key != md5_hex(d) {
                    failures.push(format!("{stream}: key {key} is not the MD5 of {}", show(d)));
                }
            } else if key.is_empty() || key.len() > 256 {
                failures.push(format!("{stream}: bad random key {key:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// An instance metadata service: IMDSv2 token, identity document, tags.
fn imds() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<String>>> = Default::default();
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            let mut w = c.try_clone().unwrap();
            let mut r = BufReader::new(c);
            while let Ok(Some((head, _))) = read_request(&mut r) {
                let line = head.first().cloned().unwrap_or_default();
                let token_ok = head
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case("x-aws-ec2-metadata-token: tok-1"));
                s2.lock().unwrap().push(line.clone());
                let (code, body) = match line.split_whitespace().take(2).collect::<Vec<_>>()[..] {
                    ["PUT", "/latest/api/token"] => (200, "tok-1".to_string()),
                    [_, _] if !token_ok => (401, String::new()),
                    ["GET", "/latest/dynamic/instance-identity/document"] => (200, r#"{
  "accountId" : "123456789012", "architecture" : "x86_64", "availabilityZone" : "ap-northeast-1a",
  "imageId" : "ami-0abcdef1234567890", "instanceId" : "i-0123456789abcdef0", "instanceType" : "t3.micro",
  "pendingTime" : "2024-01-01T00:00:00Z", "privateIp" : "10.0.0.12", "region" : "ap-northeast-1", "version" : "2017-09-30"
}"#.to_string()),
                    ["GET", "/latest/meta-data/tags/instance"] => (200, "Name\nTeam".to_string()),
                    ["GET", "/latest/meta-data/tags/instance/Name"] => (200, "web-1".to_string()),
                    ["GET", "/latest/meta-data/tags/instance/Team"] => (200, "Growth".to_string()),
                    _ => (404, String::new()),
                };
                let _ = write!(
                    w,
                    "HTTP/1.1 {code} X\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        }
    });
    (port, seen)
}

fn start_with_env(cfg: &str, env: &[(&str, &str)]) -> Agent {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fuwa.toml"), cfg).unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let stdout = Arc::new(Mutex::new(String::new()));
    let child = spawn_agent_with(dir.path(), stdout.clone(), stderr.clone(), env);
    Agent {
        child,
        dir,
        port: 0,
        stderr,
        stdout,
    }
}

fn ec2_flow(fh: &Firehose, log: &Path, dir: &Path) -> String {
    let agent_json = json!({
        "firehose.endpoint": fh.endpoint(),
        "flows": [{
            "filePattern": log.display().to_string(),
            "deliveryStream": "ec2",
            "initialPosition": "START_OF_FILE",
            "maxBufferAgeMillis": 200,
            "dataProcessingOptions": [
                {"optionName": "LOGTOJSON", "logFormat": "SYSLOG"},
                // kinesis-agent wants a logFormat here too (its converter builds a parser it never uses)
                {"optionName": "ADDEC2METADATA", "logFormat": "SYSLOG"}
            ]
        }]
    });
    let aj = dir.join("agent.json");
    std::fs::write(&aj, agent_json.to_string()).unwrap();
    let (t, _) = import(&aj);
    check(dir, &t);
    t
}

#[test]
fn add_ec2_metadata_reads_the_instance_metadata_service() {
    env();
    let fh = Firehose::start();
    let (port, seen) = imds();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("messages");
    std::fs::write(
        &log,
        "Mar 12 12:01:02 server4 snort: Ports to decode telnet on: 21 23 25 119\n",
    )
    .unwrap();
    let cfg = ec2_flow(&fh, &log, dir.path());
    let ep = format!("http://127.0.0.1:{port}");
    let a = start_with_env(
        &cfg,
        &[
            ("AWS_EC2_METADATA_DISABLED", ""),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &ep),
            ("TZ", "UTC"),
        ],
    );
    let got = wait_records(&fh, "ec2", 1, &a);
    let text = String::from_utf8(got[0].clone()).unwrap();
    let re = regex_lite(
        r#"{"timestamp":"Mar 12 12:01:02","hostname":"server4","program":"snort","processid":null,"message":"Ports to decode telnet on: 21 23 25 119","privateIp":"10.0.0.12","availabilityZone":"ap-northeast-1a","instanceId":"i-0123456789abcdef0","instanceType":"t3.micro","accountId":"123456789012","amiId":"ami-0abcdef1234567890","region":"ap-northeast-1","metadataTimestamp":"#,
        r#","tags":{"name":"web-1","team":"Growth"}}
"#,
        &text,
    );
    assert!(re, "{text:?}");
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls[0], "PUT /latest/api/token HTTP/1.1", "{calls:?}");
}

/// `prefix` + a `yyyy-MM-dd'T'HH:mm:ssZ` timestamp string + `suffix`.
fn regex_lite(prefix: &str, suffix: &str, text: &str) -> bool {
    let Some(rest) = text.strip_prefix(prefix) else {
        return false;
    };
    let Some(ts) = rest.strip_suffix(suffix) else {
        return false;
    };
    let b = ts.as_bytes();
    ts.len() == 26
        && b[0] == b'"'
        && b[25] == b'"'
        && b[5] == b'-'
        && b[11] == b'T'
        && (b[20] == b'+' || b[20] == b'-')
        && ts[1..5].bytes().all(|c| c.is_ascii_digit())
}

#[test]
fn add_ec2_metadata_off_ec2_is_a_clear_error_and_records_pass_unchanged() {
    env();
    let fh = Firehose::start();
    // a port nothing listens on
    let ep = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("messages");
    std::fs::write(&log, "Mar 12 12:01:02 server4 snort: hi\n").unwrap();
    let cfg = ec2_flow(&fh, &log, dir.path());
    let a = start_with_env(
        &cfg,
        &[
            ("AWS_EC2_METADATA_DISABLED", ""),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &ep),
        ],
    );
    let got = wait_records(&fh, "ec2", 1, &a);
    assert_eq!(
        show(&got[0]),
        show(b"{\"timestamp\":\"Mar 12 12:01:02\",\"hostname\":\"server4\",\"program\":\"snort\",\"processid\":null,\"message\":\"hi\"}\n")
    );
    assert!(
        a.wait_stderr(
            "ADDEC2METADATA: no EC2 instance metadata",
            Duration::from_secs(10)
        ),
        "{}",
        a.stderr()
    );
    assert!(
        a.stderr().contains(&ep),
        "the error names the address: {}",
        a.stderr()
    );
}

#[test]
fn a_line_longer_than_a_record_is_cut_as_kinesis_agent_cuts_it() {
    env();
    let fh = Firehose::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("long.log");
    let long = "a".repeat(1_500_000);
    std::fs::write(&log, format!("{long}\nnext\n")).unwrap();
    let aj = dir.path().join("agent.json");
    std::fs::write(
        &aj,
        json!({
            "firehose.endpoint": fh.endpoint(),
            "flows": [{"filePattern": log.display().to_string(), "deliveryStream": "long",
                       "initialPosition": "START_OF_FILE", "maxBufferAgeMillis": 200,
                       "truncatedRecordTerminator": "\n"}]
        })
        .to_string(),
    )
    .unwrap();
    let (t, notes) = import(&aj);
    assert!(!notes.contains("truncatedRecordTerminator"), "{notes}");
    check(dir.path(), &t);
    let a = Agent::start_with(&t, false);
    let got = wait_records(&fh, "long", 2, &a);
    // Firehose's record limit is 1000 KiB: kinesis-agent keeps 1000 KiB - 1
    // bytes and its terminator "\n"
    let mut first = "a".repeat(1000 * 1024 - 1).into_bytes();
    first.push(b'\n');
    assert_eq!(got[0].len(), first.len());
    assert!(got[0] == first, "the cut record differs");
    assert_eq!(show(&got[1]), show(b"next\n"));
}

#[test]
fn nothing_after_the_file_footer_is_sent() {
    env();
    let fh = Firehose::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("report.log");
    std::fs::write(&log, "a\nb\n  --END--  \nc\n").unwrap();
    let other = dir.path().join("other.log");
    std::fs::write(&other, "x\n").unwrap();
    let aj = dir.path().join("agent.json");
    std::fs::write(
        &aj,
        json!({
            "firehose.endpoint": fh.endpoint(),
            "flows": [
                {"filePattern": log.display().to_string(), "deliveryStream": "footer",
                 "initialPosition": "START_OF_FILE", "maxBufferAgeMillis": 200,
                 "fileFooterPattern": "-+END-+"},
                {"filePattern": other.display().to_string(), "deliveryStream": "other",
                 "initialPosition": "START_OF_FILE", "maxBufferAgeMillis": 200}
            ]
        })
        .to_string(),
    )
    .unwrap();
    let (t, notes) = import(&aj);
    assert!(!notes.contains("fileFooterPattern"), "{notes}");
    check(dir.path(), &t);
    let a = Agent::start_with(&t, false);
    let got = wait_records(&fh, "footer", 2, &a);
    assert_eq!(got, vec![b"a\n".to_vec(), b"b\n".to_vec()]);
    // a line appended after the footer is not sent either, while the other
    // flow's new line is
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(b"d\n")
        .unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&other)
        .unwrap()
        .write_all(b"y\n")
        .unwrap();
    let o = wait_records(&fh, "other", 2, &a);
    assert_eq!(o, vec![b"x\n".to_vec(), b"y\n".to_vec()]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(fh.stream("footer").len(), 2, "{:?}", fh.stream("footer"));
}

#[test]
fn aggregated_firehose_records_are_kinesis_agents_concatenated_lines() {
    env();
    let fh = Firehose::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("agg.log");
    std::fs::write(
        &log,
        "Mar 12 12:01:02 h p: one\nnot syslog\nMar 12 12:01:03 h p[7]: two\n",
    )
    .unwrap();
    let aj = dir.path().join("agent.json");
    std::fs::write(
        &aj,
        json!({
            "firehose.endpoint": fh.endpoint(),
            "flows": [{"filePattern": log.display().to_string(), "deliveryStream": "agg",
                       "initialPosition": "START_OF_FILE", "maxBufferAgeMillis": "500",
                       "aggregatedRecordSizeBytes": "4096",
                       "dataProcessingOptions": [{"optionName": "LOGTOJSON", "logFormat": "SYSLOG"}]}]
        })
        .to_string(),
    )
    .unwrap();
    let (t, _) = import(&aj);
    check(dir.path(), &t);
    let a = Agent::start_with(&t, false);
    let got = wait_records(&fh, "agg", 1, &a);
    assert_eq!(
        show(&got[0]),
        show(b"{\"timestamp\":\"Mar 12 12:01:02\",\"hostname\":\"h\",\"program\":\"p\",\"processid\":null,\"message\":\"one\"}\n{\"timestamp\":\"Mar 12 12:01:03\",\"hostname\":\"h\",\"program\":\"p\",\"processid\":\"7\",\"message\":\"two\"}\n")
    );
}
