//! A Kinesis Data Streams endpoint written for the tests (tests/kinesis_faults.rs,
//! tests/aws_sts.rs, tests/aws_proxy.rs): PutRecords over JSON 1.1, plain or
//! TLS, enforcing the service's limits, injecting throttling, 5xx, hung
//! calls and partial failures from a script, and recording what it
//! accepted and with which credentials.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::BufReader;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value as J};

use crate::common::aws::endpoint::{self, Conn, Ledger, Limits, Listener};
use crate::common::aws::{b64decode, header, read_request};

pub const STREAM: &str = "app-events";
pub const MAX_RECORD: usize = 1024 * 1024;
pub const MAX_CALL_BYTES: usize = 5 * 1024 * 1024;
const LIMITS: Limits = Limits {
    target: "Kinesis_20131202.PutRecords",
    stream: STREAM,
    max_record: MAX_RECORD,
    max_call_bytes: MAX_CALL_BYTES,
};

/// What the endpoint does with the next calls, in order; then it accepts all.
#[derive(Clone, Debug)]
pub enum Step {
    /// HTTP 400 `ProvisionedThroughputExceededException` for the whole call
    Throttle,
    /// HTTP 503 `ServiceUnavailableException`
    Unavailable,
    /// HTTP 500 `InternalFailure`
    Internal,
    /// reads the call, answers nothing for this long, then closes
    Hang(Duration),
    /// answers, rejecting the records at positions `i % n == 1` with `code`
    FailEvery(usize, &'static str),
    /// HTTP 400 `AccessDeniedException`
    Deny,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub at: Instant,
    pub status: u16,
    pub records: usize,
    pub accepted: usize,
    /// the access key id of the Authorization header, and whether a
    /// session token came with it
    pub access_key: String,
    pub session_token: bool,
    /// the region of the signature's credential scope
    pub region: String,
}

#[derive(Default)]
pub struct State {
    pub script: VecDeque<Step>,
    /// what was accepted, rejected, sent again
    pub ledger: Ledger,
    pub calls: Vec<Call>,
}

pub struct FakeKinesis {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
    listener: Listener,
}

impl FakeKinesis {
    pub fn start(script: Vec<Step>) -> FakeKinesis {
        Self::start_with(script, None)
    }

    /// With `tls`, every connection is a TLS server session.
    pub fn start_with(script: Vec<Step>, tls: Option<Arc<rustls::ServerConfig>>) -> FakeKinesis {
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            ..State::default()
        }));
        let st = state.clone();
        let listener = Listener::start(tls, move |c| serve(c, &st));
        FakeKinesis {
            port: listener.port,
            state,
            listener,
        }
    }

    pub fn endpoint(&self) -> String {
        self.listener.endpoint()
    }

    /// Every accepted record: (partition key, data), once per acceptance.
    pub fn records(&self) -> Vec<(String, Vec<u8>)> {
        self.state.lock().unwrap().ledger.records()
    }

    /// Every event id in the accepted (plain JSON) records, once per acceptance.
    pub fn ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .records()
            .iter()
            .map(|(_, d)| {
                let text = std::str::from_utf8(d).expect("utf-8 record");
                let j: J = serde_json::from_str(text.trim_end()).expect("a JSON record");
                j["id"].as_u64().unwrap()
            })
            .collect();
        ids.sort();
        ids
    }

    /// Waits until `ids()` yields `n` distinct ids (then once more after a
    /// pause, so a late duplicate shows up).
    pub fn wait_ids(&self, n: usize, log: &dyn Fn() -> String) -> Vec<u64> {
        self.wait(n, &|| self.ids(), log)
    }

    pub fn wait(&self, n: usize, ids: &dyn Fn() -> Vec<u64>, log: &dyn Fn() -> String) -> Vec<u64> {
        endpoint::wait_distinct(n, ids, log)
    }

    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().ledger.violations.clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }
}

/// Serves one connection (keep-alive): checks each PutRecords against the
/// service's limits and answers it per the script.
fn serve(c: &mut dyn Conn, state: &Mutex<State>) -> std::io::Result<()> {
    let mut r = BufReader::new(c);
    while let Some((head, body)) = read_request(&mut r)? {
        let target = header(&head, "x-amz-target");
        let auth = header(&head, "authorization").unwrap_or_default();
        let scope: Vec<String> = auth
            .split("Credential=")
            .nth(1)
            .and_then(|c| c.split(',').next())
            .unwrap_or("")
            .split('/')
            .map(str::to_string)
            .collect();
        let access_key = scope.first().cloned().unwrap_or_default();
        let region = scope.get(2).cloned().unwrap_or_default();
        let session_token = header(&head, "x-amz-security-token").is_some();
        let req: J = serde_json::from_slice(&body).unwrap_or(J::Null);
        let records: Vec<(String, Vec<u8>)> = req["Records"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| {
                        (
                            r["PartitionKey"].as_str().unwrap_or("").to_string(),
                            b64decode(r["Data"].as_str().unwrap_or("")),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut st = state.lock().unwrap();
        let sizes: Vec<usize> = records.iter().map(|(k, d)| k.len() + d.len()).collect();
        st.ledger
            .check_call(&LIMITS, target.as_deref(), &req["StreamName"], &sizes);
        for (k, _) in &records {
            let chars = k.chars().count();
            if !(1..=256).contains(&chars) {
                st.ledger
                    .violations
                    .push(format!("a partition key of {chars} characters"));
            }
        }
        let data: Vec<&[u8]> = records.iter().map(|r| r.1.as_slice()).collect();
        st.ledger.arrived(&data);
        let step = st.script.pop_front();
        let mut call = Call {
            at: Instant::now(),
            status: 200,
            records: records.len(),
            accepted: 0,
            access_key,
            session_token,
            region,
        };
        let whole = |st: &mut State, call: Call, code: &str, status: u16| {
            st.ledger.unanswered(records.iter().map(|r| r.1.as_slice()));
            st.calls.push(Call { status, ..call });
            (
                status,
                json!({"__type": code, "message": format!("injected {code}")}),
            )
        };
        let (status, answer) = match step {
            Some(Step::Throttle) => {
                whole(&mut st, call, "ProvisionedThroughputExceededException", 400)
            }
            Some(Step::Unavailable) => whole(&mut st, call, "ServiceUnavailableException", 503),
            Some(Step::Internal) => whole(&mut st, call, "InternalFailure", 500),
            Some(Step::Deny) => whole(&mut st, call, "AccessDeniedException", 400),
            Some(Step::Hang(d)) => {
                whole(&mut st, call, "", 0);
                drop(st);
                std::thread::sleep(d);
                return Ok(());
            }
            step => {
                let (every, code) = match step {
                    Some(Step::FailEvery(k, c)) => (k, c),
                    _ => (0, ""),
                };
                let mut answers = Vec::new();
                let mut failed = 0;
                for (i, (k, d)) in records.into_iter().enumerate() {
                    if every > 0 && i % every == 1 {
                        failed += 1;
                        st.ledger.reject(d);
                        answers.push(json!({"ErrorCode": code, "ErrorMessage": "injected"}));
                    } else {
                        st.ledger.accept(k, d);
                        answers.push(json!({"SequenceNumber": format!("{i}"), "ShardId": "shardId-000000000000"}));
                    }
                }
                call.accepted = call.records - failed;
                st.calls.push(call);
                (
                    200,
                    json!({"FailedRecordCount": failed, "Records": answers, "EncryptionType": "NONE"}),
                )
            }
        };
        drop(st);
        endpoint::respond(r.get_mut(), status, &answer)?;
    }
    Ok(())
}
