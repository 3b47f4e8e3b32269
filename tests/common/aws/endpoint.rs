//! What the in-test JSON 1.1 endpoints of the Firehose and Kinesis tests
//! share (FakeFirehose in tests/firehose.rs, FakeKinesis in
//! tests/kinesis_fake): the accept loop on 127.0.0.1 port 0 (plain or TLS),
//! the answer, the ledger of what was accepted, rejected and sent again, and
//! waiting for the events to arrive. Each fake keeps its service's request
//! parsing, limits, script and answers.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value as J};

/// One accepted connection, plain or TLS.
pub trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

/// A listener that serves each connection on its own thread; stops
/// accepting on drop.
pub struct Listener {
    pub port: u16,
    tls: bool,
    stop: Arc<AtomicBool>,
}

impl Listener {
    /// With `tls`, every connection is a TLS server session.
    pub fn start<F>(tls: Option<Arc<rustls::ServerConfig>>, serve: F) -> Listener
    where
        F: Fn(&mut dyn Conn) -> std::io::Result<()> + Send + Sync + 'static,
    {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let sp = stop.clone();
        let is_tls = tls.is_some();
        let serve = Arc::new(serve);
        std::thread::spawn(move || {
            while !sp.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        let (serve, tls) = (serve.clone(), tls.clone());
                        std::thread::spawn(move || {
                            let _ = match tls {
                                Some(cfg) => match rustls::ServerConnection::new(cfg) {
                                    Ok(conn) => serve(&mut rustls::StreamOwned::new(conn, c)),
                                    Err(_) => Ok(()),
                                },
                                None => serve(&mut { c }),
                            };
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Listener {
            port,
            tls: is_tls,
            stop,
        }
    }

    pub fn endpoint(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.port)
        } else {
            format!("http://127.0.0.1:{}", self.port)
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A JSON 1.1 answer.
pub fn respond(w: &mut impl Write, status: u16, body: &J) -> std::io::Result<()> {
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

/// What became of the records sent to a fake.
#[derive(Default, Debug)]
pub struct Ledger {
    /// record data → (partition key, "" for Firehose; times accepted)
    pub accepted: HashMap<Vec<u8>, (String, usize)>,
    /// record data answered with an error code
    pub failed: HashSet<Vec<u8>>,
    /// records sent in a failed call or rejected, and not accepted since
    pub unaccepted: HashSet<Vec<u8>>,
    /// calls made only of records sent before and not accepted
    pub resend_only_calls: usize,
    pub violations: Vec<String>,
}

/// What a fake's service accepts in one batch call.
pub struct Limits {
    /// the `X-Amz-Target` of the call
    pub target: &'static str,
    pub stream: &'static str,
    pub max_record: usize,
    pub max_call_bytes: usize,
}

impl Ledger {
    /// The checks of every call: its target and stream name, 1 to 500
    /// records, each of at most `max_record` and all of at most
    /// `max_call_bytes` (`sizes`: what counts of each record).
    pub fn check_call(&mut self, want: &Limits, target: Option<&str>, stream: &J, sizes: &[usize]) {
        let v = &mut self.violations;
        if target != Some(want.target) {
            v.push(format!("unexpected target {target:?}"));
        }
        if *stream != json!(want.stream) {
            v.push(format!("wrong stream name {stream}"));
        }
        if sizes.is_empty() || sizes.len() > 500 {
            v.push(format!("a call with {} records", sizes.len()));
        }
        let total: usize = sizes.iter().sum();
        if total > want.max_call_bytes {
            v.push(format!("a call of {total} bytes"));
        }
        if let Some(n) = sizes.iter().find(|&&n| n > want.max_record) {
            v.push(format!("a record of {n} bytes"));
        }
    }

    /// A call came with these records: sending an accepted one again is a
    /// violation; a call of only unaccepted ones is a resend.
    pub fn arrived(&mut self, data: &[&[u8]]) {
        for d in data {
            if self.accepted.contains_key(*d) {
                let text = String::from_utf8_lossy(&d[..d.len().min(60)]).to_string();
                self.violations
                    .push(format!("an accepted record was sent again: {text}"));
            }
        }
        if !data.is_empty() && data.iter().all(|d| self.unaccepted.contains(*d)) {
            self.resend_only_calls += 1;
        }
    }

    /// The whole call failed.
    pub fn unanswered<'a>(&mut self, data: impl IntoIterator<Item = &'a [u8]>) {
        self.unaccepted.extend(data.into_iter().map(<[u8]>::to_vec));
    }

    /// Answered with an error code.
    pub fn reject(&mut self, data: Vec<u8>) {
        self.failed.insert(data.clone());
        self.unaccepted.insert(data);
    }

    pub fn accept(&mut self, key: String, data: Vec<u8>) {
        self.unaccepted.remove(&data);
        self.accepted.entry(data).or_insert((key, 0)).1 += 1;
    }

    /// Every accepted record: (partition key, data), once per acceptance.
    pub fn records(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for (data, (key, n)) in &self.accepted {
            for _ in 0..*n {
                out.push((key.clone(), data.clone()));
            }
        }
        out
    }
}

/// Waits (90 s at most) until `ids()` yields `n` distinct ids, then returns
/// them once more after a pause, so a late duplicate shows up.
pub fn wait_distinct(n: usize, ids: &dyn Fn() -> Vec<u64>, log: &dyn Fn() -> String) -> Vec<u64> {
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
