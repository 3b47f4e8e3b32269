//! Shared by tests/metrics.rs and tests/reload.rs: HTTP GETs against
//! `[agent.api]`, the Prometheus parser (Python's prometheus_client), acked
//! forward messages, starting the agent with extra environment variables.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmpv::Value as V;

use crate::common::{aws::python, free_port, read_json_lines, spawn_agent_with, Agent};

/// GET `path` on 127.0.0.1:`port`: (status code, body).
pub fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the API");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the response");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    (code, body.to_string())
}

pub fn get_json(port: u16, path: &str) -> (u16, serde_json::Value) {
    let (code, body) = get(port, path);
    let v =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
    (code, v)
}

/// /metrics parsed by prometheus_client's parser.
pub struct Scrape {
    pub text: String,
    pub families: serde_json::Map<String, serde_json::Value>,
    pub samples: Vec<(
        String,
        serde_json::Map<String, serde_json::Value>,
        serde_json::Value,
    )>,
}

impl Scrape {
    /// The value of `name` whose labels include every pair in `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).and_then(|x| x.as_str()) == Some(*v))
            })
            .and_then(|(_, _, v)| v.as_f64())
    }

    pub fn must(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in:\n{}", self.text))
    }
}

pub fn scrape(port: u16) -> Scrape {
    let (code, text) = get(port, "/metrics");
    assert_eq!(code, 200, "{text}");
    let mut child = Command::new(python())
        .arg(crate::common::repo_root().join("tests/python/prom_parse.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the Prometheus parser (is prometheus-client installed in FUWA_PYTHON?)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "prometheus_client could not parse /metrics: {}\n{text}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let families = v["families"].as_object().unwrap().clone();
    let samples = v["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s[0].as_str().unwrap().to_string(),
                s[1].as_object().unwrap().clone(),
                s[2].clone(),
            )
        })
        .collect();
    Scrape {
        text,
        families,
        samples,
    }
}

/// Polls `f` until it is true (every 50 ms, up to `timeout`).
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

pub use crate::common::message;

/// Sends events with ids first..first+n on a new connection, `per` per
/// message, each acked. Panics unless every ack arrives.
pub fn send_acked(port: u16, tag: &str, first: u64, n: u64, per: u64) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut id = first;
    while id < first + n {
        let k = per.min(first + n - id);
        let chunk = format!("c{id}");
        s.write_all(&message(tag, id, k, &chunk)).unwrap();
        let ack = rmpv::decode::read_value(&mut s).expect("an ack");
        assert_eq!(ack, V::Map(vec![(V::from("ack"), V::from(chunk.as_str()))]));
        id += k;
    }
}

/// The ids written as JSON lines below `dir`, with how often each was.
pub fn ids(dir: &std::path::Path) -> std::collections::BTreeMap<u64, usize> {
    let mut m = std::collections::BTreeMap::new();
    for (_, j) in read_json_lines(dir) {
        if let Some(id) = j["id"].as_u64() {
            *m.entry(id).or_insert(0) += 1;
        }
    }
    m
}

/// Like `Agent::start`, with extra environment variables (an empty value
/// removes the variable); `{api}` in the config is the API's port
/// (returned). These agents reload their config and fall back to the old
/// one, which must come back on the same ports, and some log only warnings,
/// so their ports are chosen up front rather than read from the log: when
/// one was taken in between (the agent exits saying "Address already in
/// use"), the agent is started again on other ports, so a collision costs a
/// retry, never a failed test.
pub fn start_agent(config: &str, env: &[(&str, &str)]) -> (Agent, u16) {
    for _ in 0..10 {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let api = free_port();
        let cfg = config
            .replace("{port}", &port.to_string())
            .replace("{api}", &api.to_string())
            .replace("{dir}", &dir.path().display().to_string());
        std::fs::write(dir.path().join("fuwa.toml"), cfg).expect("write config");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let child = spawn_agent_with(dir.path(), stdout.clone(), stderr.clone(), env);
        let mut a = Agent {
            child,
            dir,
            port,
            stderr,
            stdout,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (a, api);
            }
            if let Ok(Some(status)) = a.child.try_wait() {
                // let the pump take the last lines
                std::thread::sleep(Duration::from_millis(50));
                if a.stderr().contains("Address already in use") {
                    break;
                }
                panic!("fuwa exited early ({status}): {}", a.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "fuwa did not listen on {port}: {}",
                a.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("no free ports for fuwa after 10 tries");
}

/// Rewrites the agent's config (placeholders as in `start_agent`).
pub fn rewrite(a: &Agent, api: u16, config: &str) {
    a.rewrite_config(&config.replace("{api}", &api.to_string()));
}
