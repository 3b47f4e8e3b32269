//! The Firehose output through the real binary: forward in → file buffer →
//! firehose out, against a Firehose endpoint written here (JSON 1.1
//! PutRecordBatch, enforcing Firehose's limits and injecting throttling and
//! partial failures), and against moto's Firehose delivering into moto's S3.
//!
//! The moto test needs a Python with `moto[server]` and `boto3`
//! (tests/python/requirements.txt) in `FUWA_PYTHON`; `bash .ci/run` sets it
//! up.
//!
//! The endpoint's accept loop and ledger are shared with the Kinesis fake
//! (tests/common/aws/endpoint.rs).

mod common;

use std::collections::VecDeque;
use std::io::BufReader;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::aws::endpoint::{respond, wait_distinct, Conn, Ledger, Limits, Listener};
use common::aws::{
    assert_retry_skipped_delivered, aws_env_debug, b64decode, dead_letters, header, py_script,
    read_request, send_packed,
};
use common::*;
use rmpv::Value as V;
use serde_json::{json, Value as J};

const STREAM: &str = "action-logs";
const REGION: &str = "ap-northeast-1";
const LIMITS: Limits = Limits {
    target: "Firehose_20150804.PutRecordBatch",
    stream: STREAM,
    max_record: 1000 * 1024,
    max_call_bytes: 4 * 1024 * 1024,
};

fn config(endpoint: &str, extra_output: &str) -> String {
    format!(
        r#"[agent]
hostname = "web-1"
timezone = "Asia/Tokyo"
shutdown_timeout = "3s"

[[input]]
type = "forward"
bind = "127.0.0.1:{{port}}"

[[output]]
id = "firehose"
match = "action_logs"
type = "firehose"
delivery_stream = "{STREAM}"
region = "{REGION}"
endpoint = "{endpoint}"
{extra_output}
[output.buffer]
type = "file"
flush_interval = "500ms"
retry_wait = "100ms"
retry_max_interval = "500ms"
"#
    )
}

fn event(id: u64, pad: usize) -> V {
    let mut m = vec![
        (V::from("id"), V::from(id)),
        (V::from("path"), V::from("/notes/n1?ref=top")),
    ];
    if pad > 0 {
        m.push((V::from("pad"), V::from("x".repeat(pad))));
    }
    V::Map(m)
}

// ---------------------------------------------------------------------------
// a Firehose endpoint: PutRecordBatch over JSON 1.1

/// What the endpoint does with the next calls, in order; then it accepts all.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// HTTP 400 `ThrottlingException`
    Throttle,
    /// HTTP 503 `ServiceUnavailableException`
    Unavailable,
    /// answers, failing the records at positions `i % n == 1`
    FailEvery(usize),
}

#[derive(Debug)]
struct Call {
    at: Instant,
    status: u16,
    records: usize,
    accepted: usize,
}

#[derive(Default)]
struct State {
    script: VecDeque<Step>,
    /// what was accepted, rejected, sent again (no partition keys)
    ledger: Ledger,
    calls: Vec<Call>,
}

struct FakeFirehose {
    state: Arc<Mutex<State>>,
    listener: Listener,
}

impl FakeFirehose {
    fn start(script: Vec<Step>) -> FakeFirehose {
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            ..State::default()
        }));
        let st = state.clone();
        let listener = Listener::start(None, move |c| serve(c, &st));
        FakeFirehose { state, listener }
    }

    fn endpoint(&self) -> String {
        self.listener.endpoint()
    }

    /// Every event id in the accepted records, once per acceptance.
    fn ids(&self) -> Vec<u64> {
        let mut ids = Vec::new();
        for (_, data) in self.state.lock().unwrap().ledger.records() {
            let text = std::str::from_utf8(&data).expect("utf-8 record");
            assert!(text.ends_with('\n'), "record lacks its newline: {text:.80}");
            for line in text.lines() {
                let j: J = serde_json::from_str(line).expect("a JSON line");
                ids.push(j["id"].as_u64().unwrap());
            }
        }
        ids.sort();
        ids
    }

    fn wait_ids(&self, n: usize, a: &Agent) -> Vec<u64> {
        wait_distinct(n, &|| self.ids(), &|| a.stderr())
    }

    fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().ledger.violations.clone()
    }
}

/// Serves one connection (keep-alive): checks each PutRecordBatch against
/// Firehose's limits and answers it per the script.
fn serve(c: &mut dyn Conn, state: &Mutex<State>) -> std::io::Result<()> {
    let mut r = BufReader::new(c);
    while let Some((head, body)) = read_request(&mut r)? {
        let target = header(&head, "x-amz-target");
        let req: J = serde_json::from_slice(&body).unwrap_or(J::Null);
        let records: Vec<Vec<u8>> = req["Records"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| b64decode(r["Data"].as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        let mut st = state.lock().unwrap();
        let sizes: Vec<usize> = records.iter().map(Vec::len).collect();
        st.ledger.check_call(
            &LIMITS,
            target.as_deref(),
            &req["DeliveryStreamName"],
            &sizes,
        );
        let data: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        st.ledger.arrived(&data);
        let step = st.script.pop_front();
        let at = Instant::now();
        let n = records.len();
        match step {
            Some(Step::Throttle) => {
                st.ledger.unanswered(records.iter().map(Vec::as_slice));
                st.calls.push(Call {
                    at,
                    status: 400,
                    records: n,
                    accepted: 0,
                });
                drop(st);
                respond(
                    r.get_mut(),
                    400,
                    &json!({"__type": "ThrottlingException", "message": "Rate exceeded"}),
                )?;
            }
            Some(Step::Unavailable) => {
                st.ledger.unanswered(records.iter().map(Vec::as_slice));
                st.calls.push(Call {
                    at,
                    status: 503,
                    records: n,
                    accepted: 0,
                });
                drop(st);
                respond(
                    r.get_mut(),
                    503,
                    &json!({"__type": "ServiceUnavailableException", "message": "Slow down."}),
                )?;
            }
            step => {
                let fail_every = match step {
                    Some(Step::FailEvery(k)) => k,
                    _ => 0,
                };
                let mut answers = Vec::new();
                let mut failed = 0;
                for (i, r) in records.into_iter().enumerate() {
                    if fail_every > 0 && i % fail_every == 1 {
                        failed += 1;
                        st.ledger.reject(r);
                        answers.push(json!({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."}));
                    } else {
                        st.ledger.accept(String::new(), r);
                        answers.push(json!({"RecordId": format!("r{i}")}));
                    }
                }
                st.calls.push(Call {
                    at,
                    status: 200,
                    records: n,
                    accepted: n - failed,
                });
                drop(st);
                respond(
                    r.get_mut(),
                    200,
                    &json!({"FailedPutCount": failed, "Encrypted": false, "RequestResponses": answers}),
                )?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------

#[test]
fn throttling_and_partial_failures_deliver_every_event_once_within_the_limits() {
    aws_env_debug("fuwa_out_firehose");
    let fh = FakeFirehose::start(vec![
        Step::Throttle,
        Step::Unavailable,
        Step::FailEvery(3),
        Step::FailEvery(3),
        Step::FailEvery(5),
        Step::FailEvery(2),
        Step::Throttle,
        Step::FailEvery(2),
    ]);
    let a = Agent::start(&config(&fh.endpoint(), "max_in_flight = 4"));
    let mut s = a.connect();
    let small: Vec<V> = (0..3000).map(|i| event(i, 0)).collect();
    for part in small.chunks(500) {
        send_packed(&mut s, "action_logs", part);
    }
    // 8 events of ~700 KiB: more than 4 MiB together, each under 1,000 KiB
    let big: Vec<V> = (3000..3008).map(|i| event(i, 700 * 1024)).collect();
    send_packed(&mut s, "action_logs", &big);

    let ids = fh.wait_ids(3008, &a);
    assert_eq!(
        ids,
        (0..3008).collect::<Vec<u64>>(),
        "each event exactly once"
    );
    assert_eq!(fh.violations(), Vec::<String>::new());
    let log = a.stderr();
    assert!(log.contains("call failed; backing off"), "{log}");
    let st = fh.state.lock().unwrap();
    assert!(st.script.is_empty(), "every fault was injected");
    assert!(st.calls.iter().any(|c| c.status == 400));
    assert!(st.calls.iter().any(|c| c.status == 503));
    assert!(!st.ledger.failed.is_empty());
    for f in &st.ledger.failed {
        assert_eq!(
            st.ledger.accepted.get(f).map(|a| a.1),
            Some(1),
            "a failed record was resent"
        );
    }
    assert!(st.ledger.unaccepted.is_empty());
    assert!(
        st.ledger.resend_only_calls > 0,
        "failed records are resent alone: {:?}",
        st.calls
    );
    assert!(
        st.calls.iter().any(|c| c.records == 500),
        "small events go 500 to a call"
    );
    drop(st);
    assert!(
        dead_letters(&a, "firehose").is_empty(),
        "{:?}",
        dead_letters(&a, "firehose")
    );
}

#[test]
fn records_failing_past_the_inner_retries_go_back_to_the_engine_without_duplicates() {
    aws_env_debug("fuwa_out_firehose");
    // two rounds per write: the first write returns Retryable with records
    // still failing; the engine's retry must skip the delivered ones
    let fh = FakeFirehose::start(vec![Step::FailEvery(2); 5]);
    let a = Agent::start(&config(&fh.endpoint(), "retry_attempts = 2"));
    let mut s = a.connect();
    let evs: Vec<V> = (0..100).map(|i| event(i, 0)).collect();
    send_packed(&mut s, "action_logs", &evs);
    let ids = fh.wait_ids(100, &a);
    assert_eq!(
        ids,
        (0..100).collect::<Vec<u64>>(),
        "each event exactly once"
    );
    assert_eq!(fh.violations(), Vec::<String>::new());
    assert_retry_skipped_delivered(&a);
    assert!(dead_letters(&a, "firehose").is_empty());
}

#[test]
fn aggregation_packs_a_thousand_small_events_into_a_few_records() {
    aws_env_debug("fuwa_out_firehose");
    let fh = FakeFirehose::start(vec![]);
    let a = Agent::start(&config(
        &fh.endpoint(),
        "aggregate = true\naggregate_max_size = \"1000KiB\"\ntime_key = \"time\"",
    ));
    let mut s = a.connect();
    let evs: Vec<V> = (0..1000).map(|i| event(i, 0)).collect();
    send_packed(&mut s, "action_logs", &evs);
    let ids = fh.wait_ids(1000, &a);
    assert_eq!(ids, (0..1000).collect::<Vec<u64>>());
    assert_eq!(fh.violations(), Vec::<String>::new());
    let st = fh.state.lock().unwrap();
    let records: usize = st.ledger.accepted.len();
    assert!(records <= 3, "{records} records for 1,000 small events");
    let calls = st.calls.len();
    let bytes: usize = st.ledger.accepted.keys().map(Vec::len).sum();
    eprintln!(
        "aggregation: {records} records in {calls} calls, {} bytes per record on average",
        bytes / records
    );
    for data in st.ledger.accepted.keys() {
        let text = std::str::from_utf8(data).unwrap();
        for line in text.lines() {
            let j: J = serde_json::from_str(line).unwrap();
            assert!(
                j["time"].as_str().unwrap().starts_with("2024-05-31T"),
                "{j}"
            );
        }
    }
    drop(st);
    assert!(
        a.wait_stderr("chunk sent to firehose", Duration::from_secs(5)),
        "{}",
        a.stderr()
    );
    let log = a.stderr();
    for what in ["avg_record_bytes=", "records_per_call=", "billed_bytes="] {
        assert!(log.contains(what), "log lacks `{what}`:\n{log}");
    }
}

#[test]
fn an_oversize_event_alone_is_dead_lettered_and_the_rest_of_its_chunk_delivered_once() {
    aws_env_debug("fuwa_out_firehose");
    let fh = FakeFirehose::start(vec![]);
    let a = Agent::start(&config(&fh.endpoint(), ""));
    let mut s = a.connect();
    let mut evs: Vec<V> = (0..50).map(|i| event(i, 0)).collect();
    evs.insert(20, event(999, 1100 * 1024));
    send_packed(&mut s, "action_logs", &evs);
    assert!(
        a.wait_stderr("dead-letter", Duration::from_secs(20)),
        "{}",
        a.stderr()
    );
    let ids = fh.wait_ids(50, &a);
    assert_eq!(ids, (0..50).collect::<Vec<u64>>());
    assert_eq!(fh.violations(), Vec::<String>::new());
    let notes = dead_letters(&a, "firehose");
    assert_eq!(notes.len(), 1, "{notes:?}");
    // the oversize event alone, not its chunk: a replay sends nothing twice
    assert_eq!(notes[0]["reason"], "events rejected");
    assert_eq!(notes[0]["attempts"], 1);
    assert_eq!(notes[0]["records"], 1);
    let bytes = notes[0]["bytes"].as_u64().unwrap();
    assert!((1100 * 1024..1200 * 1024).contains(&bytes), "{bytes}");
    let err = notes[0]["error"].as_str().unwrap();
    assert!(
        err.contains("exceeds Firehose's 1,000 KiB record limit") && err.contains("event of 11"),
        "{err}"
    );
    let log = a.stderr();
    assert!(!log.contains("will retry"), "not retried: {log}");
}

#[test]
fn records_per_second_holds_its_rate() {
    aws_env_debug("fuwa_out_firehose");
    let fh = FakeFirehose::start(vec![]);
    let a = Agent::start(&config(&fh.endpoint(), "records_per_second = 200"));
    let mut s = a.connect();
    let evs: Vec<V> = (0..700).map(|i| event(i, 0)).collect();
    send_packed(&mut s, "action_logs", &evs);
    let ids = fh.wait_ids(700, &a);
    assert_eq!(ids, (0..700).collect::<Vec<u64>>());
    let st = fh.state.lock().unwrap();
    let first = &st.calls[0];
    let last = st.calls.last().unwrap();
    let secs = last.at.duration_since(first.at).as_secs_f64();
    let after_first: usize = st.calls[1..].iter().map(|c| c.accepted).sum();
    let rate = after_first as f64 / secs;
    eprintln!(
        "{} calls, {after_first} records in {secs:.2}s after the first call: {rate:.0}/s",
        st.calls.len()
    );
    assert!(secs >= 2.0, "{secs}s");
    assert!((140.0..=260.0).contains(&rate), "{rate}/s for 200/s");
}

// ---------------------------------------------------------------------------
// moto: Firehose delivering into S3

fn py(args: &[&str]) -> String {
    py_script("firehose_util.py", args)
}

use common::aws::MotoServer as Moto;

#[test]
fn motos_firehose_writes_the_events_to_s3_as_json_lines_once_each() {
    aws_env_debug("fuwa_out_firehose");
    let moto = Moto::start();
    let bucket = "firehose-out";
    py(&["create", &moto.endpoint(), bucket, STREAM, REGION]);
    let a = Agent::start(&config(&moto.endpoint(), "time_key = \"time\""));
    let mut s = a.connect();
    let evs: Vec<V> = (0..300).map(|i| event(i, 0)).collect();
    for part in evs.chunks(100) {
        send_packed(&mut s, "action_logs", part);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let dump = |moto: &Moto| -> (Vec<J>, Vec<u64>) {
        let v: J = serde_json::from_str(&py(&["dump", &moto.endpoint(), bucket, REGION])).unwrap();
        let objects = v["objects"].as_array().unwrap().clone();
        let mut ids = Vec::new();
        for o in &objects {
            let body = o["body"].as_str().unwrap();
            assert!(body.ends_with('\n'), "{body:.200}");
            for line in body.lines() {
                let j: J = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                assert!(j["time"].is_string(), "{j}");
                ids.push(j["id"].as_u64().unwrap());
            }
        }
        ids.sort();
        (objects, ids)
    };
    loop {
        let (_, ids) = dump(&moto);
        if ids.len() >= 300 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of 300 events in S3 after 60s:\n{}",
            ids.len(),
            a.stderr()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let (objects, ids) = dump(&moto);
    assert_eq!(ids, (0..300).collect::<Vec<u64>>());
    assert!(objects
        .iter()
        .all(|o| o["key"].as_str().unwrap().starts_with("raw/")));
    assert!(dead_letters(&a, "firehose").is_empty());
}
