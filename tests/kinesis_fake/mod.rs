//! A Kinesis Data Streams endpoint written for the tests (tests/kinesis_faults.rs,
//! tests/aws_sts.rs, tests/aws_proxy.rs): PutRecords over JSON 1.1, plain or
//! TLS, enforcing the service's limits, injecting throttling, 5xx, hung
//! calls and partial failures from a script, and recording what it
//! accepted and with which credentials.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value as J};

use crate::common::aws::b64decode;

pub const STREAM: &str = "app-events";
pub const MAX_RECORD: usize = 1024 * 1024;
pub const MAX_CALL_BYTES: usize = 5 * 1024 * 1024;

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
    /// record data → (partition key, times accepted)
    pub accepted: HashMap<Vec<u8>, (String, usize)>,
    /// record data answered with an error code
    pub failed: HashSet<Vec<u8>>,
    /// records sent in a failed call or rejected, and not accepted since
    pub unaccepted: HashSet<Vec<u8>>,
    /// calls made only of records sent before and not accepted
    pub resend_only_calls: usize,
    pub violations: Vec<String>,
    pub calls: Vec<Call>,
}

pub struct FakeKinesis {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    tls: bool,
}

impl FakeKinesis {
    pub fn start(script: Vec<Step>) -> FakeKinesis {
        Self::start_with(script, None)
    }

    /// With `tls`, every connection is a TLS server session.
    pub fn start_with(script: Vec<Step>, tls: Option<Arc<rustls::ServerConfig>>) -> FakeKinesis {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let is_tls = tls.is_some();
        std::thread::spawn(move || {
            while !sp.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        let st = st.clone();
                        let tls = tls.clone();
                        std::thread::spawn(move || {
                            let _ = match tls {
                                Some(cfg) => match rustls::ServerConnection::new(cfg) {
                                    Ok(conn) => serve(rustls::StreamOwned::new(conn, c), &st),
                                    Err(_) => Ok(()),
                                },
                                None => serve(c, &st),
                            };
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeKinesis {
            port,
            state,
            stop,
            tls: is_tls,
        }
    }

    pub fn endpoint(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.port)
        } else {
            format!("http://127.0.0.1:{}", self.port)
        }
    }

    /// Every accepted record: (partition key, data), once per acceptance.
    pub fn records(&self) -> Vec<(String, Vec<u8>)> {
        let st = self.state.lock().unwrap();
        let mut out = Vec::new();
        for (data, (key, n)) in &st.accepted {
            for _ in 0..*n {
                out.push((key.clone(), data.clone()));
            }
        }
        out
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
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let distinct: HashSet<u64> = ids().into_iter().collect();
            if distinct.len() >= n {
                std::thread::sleep(Duration::from_millis(1500));
                return ids();
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} events accepted after 90s; agent log:\n{}",
                distinct.len(),
                log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }
}

impl Drop for FakeKinesis {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn respond(w: &mut impl Write, status: u16, body: &J) -> std::io::Result<()> {
    let body = body.to_string();
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        500 => "Internal Server Error",
        _ => "Service Unavailable",
    };
    write!(
        w,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: test\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    w.flush()
}

/// Reads one request: head lines and a Content-Length body (`None` at EOF).
fn read_request(r: &mut impl BufRead) -> std::io::Result<Option<(Vec<String>, Vec<u8>)>> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let len = header(&head, "content-length")
        .map(|v| v.parse::<usize>().expect("content-length"))
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

pub fn header(head: &[String], name: &str) -> Option<String> {
    head.iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Serves one connection (keep-alive): checks each PutRecords against the
/// service's limits and answers it per the script.
fn serve<S: Read + Write>(c: S, state: &Mutex<State>) -> std::io::Result<()> {
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
        if target.as_deref() != Some("Kinesis_20131202.PutRecords") {
            st.violations.push(format!("unexpected target {target:?}"));
        }
        if req["StreamName"] != json!(STREAM) {
            st.violations
                .push(format!("wrong stream name {}", req["StreamName"]));
        }
        let total: usize = records.iter().map(|(k, d)| k.len() + d.len()).sum();
        if records.is_empty() || records.len() > 500 {
            st.violations
                .push(format!("a call with {} records", records.len()));
        }
        if total > MAX_CALL_BYTES {
            st.violations.push(format!("a call of {total} bytes"));
        }
        for (k, d) in &records {
            if k.len() + d.len() > MAX_RECORD {
                st.violations
                    .push(format!("a record of {} bytes", k.len() + d.len()));
            }
            let chars = k.chars().count();
            if !(1..=256).contains(&chars) {
                st.violations
                    .push(format!("a partition key of {chars} characters"));
            }
            if st.accepted.contains_key(d) {
                let text = String::from_utf8_lossy(&d[..d.len().min(60)]).to_string();
                st.violations
                    .push(format!("an accepted record was sent again: {text}"));
            }
        }
        if !records.is_empty() && records.iter().all(|(_, d)| st.unaccepted.contains(d)) {
            st.resend_only_calls += 1;
        }
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
            st.unaccepted.extend(records.iter().map(|r| r.1.clone()));
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
                        st.failed.insert(d.clone());
                        st.unaccepted.insert(d);
                        answers.push(json!({"ErrorCode": code, "ErrorMessage": "injected"}));
                    } else {
                        st.unaccepted.remove(&d);
                        st.accepted.entry(d).or_insert((k, 0)).1 += 1;
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
        respond(r.get_mut(), status, &answer)?;
    }
    Ok(())
}
