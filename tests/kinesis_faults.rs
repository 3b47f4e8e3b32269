//! The Kinesis Data Streams output through the real binary against a
//! Kinesis endpoint written here (tests/kinesis_fake): partial failures
//! (throughput, InternalFailure, KMS throttling), whole-call throttling,
//! 5xx, hung calls, an oversize event, a fatal error and the rate cap.
//! Every event is delivered once and only failed records are resent.

mod common;
mod kinesis_fake;
mod ops_util;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::aws::{
    assert_retry_skipped_delivered, aws_env_debug, b64decode, dead_letters, python, send_packed,
};
use common::*;
use kinesis_fake::{FakeKinesis, Step, STREAM};
use rmpv::Value as V;
use serde_json::{json, Value as J};

fn config(endpoint: &str, extra: &str) -> String {
    format!(
        r#"[agent]
hostname = "web-1"
timezone = "Asia/Tokyo"
shutdown_timeout = "3s"

[[input]]
type = "forward"
bind = "127.0.0.1:{{port}}"

[[output]]
id = "kinesis"
match = "app.**"
type = "kinesis_streams"
stream_name = "{STREAM}"
region = "ap-northeast-1"
endpoint = "{endpoint}"
partition_key = "${{record.user_id}}"
{extra}
[output.buffer]
type = "file"
flush_interval = "300ms"
retry_wait = "100ms"
retry_max_interval = "500ms"
"#
    )
}

fn event(id: u64, pad: usize) -> V {
    let mut m = vec![
        (V::from("id"), V::from(id)),
        (V::from("user_id"), V::from(format!("u{}", id % 16))),
    ];
    if pad > 0 {
        m.push((V::from("pad"), V::from("x".repeat(pad))));
    }
    V::Map(m)
}

#[test]
fn partial_failures_throttling_5xx_and_timeouts_deliver_every_event_once() {
    aws_env_debug("fuwa_out_kinesis_streams");
    let k = FakeKinesis::start(vec![
        Step::Throttle,
        Step::Unavailable,
        Step::FailEvery(3, "ProvisionedThroughputExceededException"),
        Step::Hang(Duration::from_secs(4)),
        Step::FailEvery(2, "InternalFailure"),
        Step::Internal,
        Step::FailEvery(4, "KMSThrottlingException"),
        Step::FailEvery(2, "ProvisionedThroughputExceededException"),
        Step::Throttle,
        Step::FailEvery(5, "InternalFailure"),
    ]);
    let a = Agent::start(&config(
        &k.endpoint(),
        "max_in_flight = 4\ntimeout = \"1500ms\"",
    ));
    let mut s = a.connect();
    let small: Vec<V> = (0..3000).map(|i| event(i, 0)).collect();
    for part in small.chunks(500) {
        send_packed(&mut s, "app.api", part);
    }
    // 8 events of ~900 KiB: more than 5 MiB together, each under 1 MiB
    let big: Vec<V> = (3000..3008).map(|i| event(i, 900 * 1024)).collect();
    send_packed(&mut s, "app.api", &big);

    let ids = k.wait_ids(3008, &|| a.stderr());
    assert_eq!(
        ids,
        (0..3008).collect::<Vec<u64>>(),
        "each event exactly once"
    );
    assert_eq!(k.violations(), Vec::<String>::new());
    let log = a.stderr();
    assert!(log.contains("call failed; backing off"), "{log}");
    let st = k.state.lock().unwrap();
    assert!(
        st.script.is_empty(),
        "every fault was injected: {:?}",
        st.script
    );
    for status in [0, 400, 500, 503] {
        assert!(
            st.calls.iter().any(|c| c.status == status),
            "no {status} call"
        );
    }
    assert!(!st.ledger.failed.is_empty());
    for f in &st.ledger.failed {
        assert_eq!(
            st.ledger.accepted.get(f).map(|x| x.1),
            Some(1),
            "a failed record was resent once"
        );
    }
    assert!(st.ledger.unaccepted.is_empty());
    assert!(
        st.ledger.resend_only_calls > 0,
        "failed records are resent alone"
    );
    assert!(
        st.calls.iter().any(|c| c.records == 500),
        "small events go 500 to a call"
    );
    // one key, one partition key: every record carries its user_id
    for (data, (key, _)) in &st.ledger.accepted {
        let j: J = serde_json::from_slice(data).unwrap();
        assert_eq!(j["user_id"].as_str(), Some(key.as_str()));
    }
    drop(st);
    assert!(
        dead_letters(&a, "kinesis").is_empty(),
        "{:?}",
        dead_letters(&a, "kinesis")
    );
}

#[test]
fn records_failing_past_the_inner_retries_go_back_to_the_engine_without_duplicates() {
    aws_env_debug("fuwa_out_kinesis_streams");
    let k = FakeKinesis::start(vec![
        Step::FailEvery(
            2,
            "ProvisionedThroughputExceededException"
        );
        5
    ]);
    let a = Agent::start(&config(&k.endpoint(), "retry_attempts = 2"));
    let mut s = a.connect();
    let evs: Vec<V> = (0..100).map(|i| event(i, 0)).collect();
    send_packed(&mut s, "app.api", &evs);
    let ids = k.wait_ids(100, &|| a.stderr());
    assert_eq!(
        ids,
        (0..100).collect::<Vec<u64>>(),
        "each event exactly once"
    );
    assert_eq!(k.violations(), Vec::<String>::new());
    assert_retry_skipped_delivered(&a);
    assert!(dead_letters(&a, "kinesis").is_empty());
}

#[test]
fn an_oversize_event_alone_is_dead_lettered_and_the_rest_of_its_chunk_delivered_once() {
    aws_env_debug("fuwa_out_kinesis_streams");
    for agg in ["", "aggregation = true"] {
        let k = FakeKinesis::start(vec![]);
        let a = Agent::start(&config(&k.endpoint(), agg));
        let mut s = a.connect();
        let mut evs: Vec<V> = (0..50).map(|i| event(i, 0)).collect();
        evs.insert(20, event(999, 1100 * 1024));
        send_packed(&mut s, "app.api", &evs);
        assert!(
            a.wait_stderr("dead-letter", Duration::from_secs(30)),
            "{}",
            a.stderr()
        );
        let got = k.wait(50, &|| deaggregated_ids(&k), &|| a.stderr());
        assert_eq!(got, (0..50).collect::<Vec<u64>>(), "{agg}");
        assert_eq!(k.violations(), Vec::<String>::new());
        let notes = dead_letters(&a, "kinesis");
        assert_eq!(notes.len(), 1, "{notes:?}");
        // the oversize event alone, not its chunk: a replay sends nothing twice
        assert_eq!(notes[0]["reason"], "events rejected");
        assert_eq!(notes[0]["attempts"], 1);
        assert_eq!(notes[0]["records"], 1);
        let bytes = notes[0]["bytes"].as_u64().unwrap();
        assert!((1100 * 1024..1200 * 1024).contains(&bytes), "{bytes}");
        let err = notes[0]["error"].as_str().unwrap();
        assert!(
            err.contains("exceeds Kinesis's 1 MiB record limit"),
            "{err}"
        );
        assert!(!a.stderr().contains("will retry"), "not retried");
    }
}

#[test]
fn access_denied_is_fatal_at_once_with_what_to_fix() {
    aws_env_debug("fuwa_out_kinesis_streams");
    let k = FakeKinesis::start(vec![Step::Deny]);
    let a = Agent::start(&config(&k.endpoint(), ""));
    let mut s = a.connect();
    send_packed(&mut s, "app.api", &[event(1, 0)]);
    assert!(
        a.wait_stderr("dead-letter", Duration::from_secs(30)),
        "{}",
        a.stderr()
    );
    let notes = dead_letters(&a, "kinesis");
    assert_eq!(notes[0]["attempts"], 1);
    let err = notes[0]["error"].as_str().unwrap();
    assert!(
        err.contains("AccessDeniedException") && err.contains("kinesis:PutRecords"),
        "{err}"
    );
    assert_eq!(k.calls().len(), 1, "not retried");
}

/// The ids in the accepted records, KPL aggregates de-aggregated by
/// aws-kinesis-agg (tests/python/kinesis_util.py deagg).
fn deaggregated_ids(k: &FakeKinesis) -> Vec<u64> {
    let mut ids: Vec<u64> = deaggregate(&k.records())
        .iter()
        .map(|(_, d, _)| {
            let j: J = serde_json::from_slice(d).unwrap();
            j["id"].as_u64().unwrap()
        })
        .collect();
    ids.sort();
    ids
}

/// (partition key, data, aggregated) per user record.
fn deaggregate(records: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>, bool)> {
    let input: Vec<J> = records
        .iter()
        .map(|(k, d)| json!({"key": k, "data": base64_encode(d)}))
        .collect();
    let mut child = Command::new(python())
        .arg(repo_root().join("tests/python/kinesis_util.py"))
        .arg("deagg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run kinesis_util.py");
    let mut stdin = child.stdin.take().unwrap();
    let body = serde_json::to_vec(&input).unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "kinesis_util.py deagg failed");
    let v: J = serde_json::from_slice(&out.stdout).unwrap();
    v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_string(),
                b64decode(r["data"].as_str().unwrap()),
                r["aggregated"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn base64_encode(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[test]
fn aggregation_under_partial_failures_delivers_each_event_once_per_key() {
    aws_env_debug("fuwa_out_kinesis_streams");
    let k = FakeKinesis::start(vec![
        Step::FailEvery(2, "ProvisionedThroughputExceededException"),
        Step::Unavailable,
        Step::FailEvery(3, "InternalFailure"),
    ]);
    let cfg = config(&k.endpoint(), "aggregation = true").replace(
        "[[input]]",
        "[agent.api]\nbind = \"127.0.0.1:{api}\"\n\n[[input]]",
    );
    let (a, api) = ops_util::start_agent(&cfg, &[]);
    let mut s = a.connect();
    let evs: Vec<V> = (0..2000).map(|i| event(i, 200)).collect();
    for part in evs.chunks(500) {
        send_packed(&mut s, "app.api", part);
    }
    let ids = k.wait(2000, &|| deaggregated_ids(&k), &|| a.stderr());
    assert_eq!(
        ids,
        (0..2000).collect::<Vec<u64>>(),
        "each event exactly once"
    );
    assert_eq!(k.violations(), Vec::<String>::new());
    let users = deaggregate(&k.records());
    let mut keys: HashMap<String, HashSet<String>> = HashMap::new();
    for (key, data, aggregated) in &users {
        assert!(
            aggregated,
            "16 keys over 2,000 events: every record is an aggregate"
        );
        let j: J = serde_json::from_slice(data).unwrap();
        keys.entry(j["user_id"].as_str().unwrap().to_string())
            .or_default()
            .insert(key.clone());
    }
    assert_eq!(keys.len(), 16);
    assert!(
        keys.iter().all(|(u, ks)| ks.len() == 1 && ks.contains(u)),
        "{keys:?}"
    );
    let st = k.state.lock().unwrap();
    assert!(
        st.ledger.accepted.len() < 200,
        "{} records for 2,000 events",
        st.ledger.accepted.len()
    );
    assert!(st.ledger.resend_only_calls > 0);
    assert!(st.ledger.unaccepted.is_empty());
    let (records, failed) = (st.ledger.accepted.len() as f64, st.ledger.failed.len());
    let calls = st.calls.len() as f64;
    drop(st);

    // the output's counters on the metrics endpoint say the same
    let m = ops_util::scrape(api);
    let l: &[(&str, &str)] = &[("id", "kinesis"), ("type", "kinesis_streams")];
    assert_eq!(m.must("fuwa_kinesis_events_total", l), 2000.0);
    assert_eq!(m.must("fuwa_kinesis_records_total", l), records);
    assert_eq!(m.must("fuwa_kinesis_calls_total", l), calls);
    assert_eq!(m.must("fuwa_kinesis_failed_calls_total", l), 1.0, "the 503");
    assert!(m.must("fuwa_kinesis_failed_records_total", l) >= failed as f64);
    assert!(m.must("fuwa_kinesis_throttled_total", l) >= 1.0);
    let units = m.must("fuwa_kinesis_put_units_total", l);
    assert!(
        units >= records && units < 2000.0,
        "{units} PUT units for 2,000 events"
    );
    assert!(m.must("fuwa_kinesis_payload_bytes_total", l) > 2000.0 * 200.0);
    assert_eq!(m.must("fuwa_kinesis_oversize_events_total", l), 0.0);
}

#[test]
fn records_per_second_holds_its_rate() {
    aws_env_debug("fuwa_out_kinesis_streams");
    let k = FakeKinesis::start(vec![]);
    let a = Agent::start(&config(&k.endpoint(), "records_per_second = 200"));
    let mut s = a.connect();
    let evs: Vec<V> = (0..700).map(|i| event(i, 0)).collect();
    send_packed(&mut s, "app.api", &evs);
    let ids = k.wait_ids(700, &|| a.stderr());
    assert_eq!(ids, (0..700).collect::<Vec<u64>>());
    let calls = k.calls();
    let secs = calls
        .last()
        .unwrap()
        .at
        .duration_since(calls[0].at)
        .as_secs_f64();
    let after_first: usize = calls[1..].iter().map(|c| c.accepted).sum();
    let rate = after_first as f64 / secs;
    eprintln!(
        "{} calls, {after_first} records in {secs:.2}s after the first: {rate:.0}/s",
        calls.len()
    );
    assert!(secs >= 2.0, "{secs}s");
    assert!((140.0..=260.0).contains(&rate), "{rate}/s for 200/s");
}
