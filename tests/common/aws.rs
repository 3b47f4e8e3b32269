//! Shared by the AWS output tests (tests/s3.rs, tests/firehose.rs,
//! tests/kinesis*.rs, …): the Python with moto, the test credentials, moto's
//! server, reading one HTTP request for the in-test endpoints and proxies,
//! and what the Firehose and Kinesis tests both do around the agent
//! (PackedForward sends, dead letters).

use std::io::{BufRead, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use rmpv::Value as V;
use serde_json::Value as J;

use super::{mp, read_mp, repo_root, Agent};

pub mod endpoint;

/// The Python that has moto[server], boto3, duckdb (tests/python/requirements.txt).
pub fn python() -> PathBuf {
    std::env::var_os("FUWA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
            "FUWA_PYTHON is not set: it must name a Python with moto[server], boto3 and duckdb \
             (run `bash .ci/run` once, or `python3 -m venv /var/tmp/fuwa-ci/venv && \
             /var/tmp/fuwa-ci/venv/bin/pip install -r tests/python/requirements.txt && \
             export FUWA_PYTHON=/var/tmp/fuwa-ci/venv/bin/python`)"
        )
        })
}

/// Runs `tests/python/<script>` with `args` and returns its stdout.
pub fn py_script(script: &str, args: &[&str]) -> String {
    let o = Command::new(python())
        .arg(repo_root().join("tests").join("python").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(
        o.status.success(),
        "{script} {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8 output")
}

/// Credentials for the agent (it inherits the test's environment): static
/// test keys, no metadata service, no profile files, no proxy for loopback.
pub fn aws_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::remove_var("AWS_SESSION_TOKEN");
        std::env::remove_var("AWS_PROFILE");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/fuwa-test/config");
        std::env::set_var(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/fuwa-test/credentials",
        );
        std::env::set_var("NO_PROXY", "127.0.0.1,localhost");
        std::env::set_var("no_proxy", "127.0.0.1,localhost");
    });
}

/// moto's server on a free port; killed on drop.
pub struct MotoServer {
    child: Child,
    pub port: u16,
}

impl MotoServer {
    pub fn start() -> MotoServer {
        aws_env();
        // moto binds port 0 and says which port it got: no port is guessed
        let mut child = Command::new(python())
            .arg(repo_root().join("tests/python/moto_server.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto (is moto[server] installed in FUWA_PYTHON?)");
        let mut line = String::new();
        let out = child.stdout.take().expect("moto stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)
            .expect("read moto's port");
        let port: u16 = match line.trim().parse() {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                panic!("moto did not start: {line:?}");
            }
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(s)) = child.try_wait() {
                panic!("moto exited early: {s}");
            }
            assert!(Instant::now() < deadline, "moto did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        MotoServer { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads one request: head lines and a Content-Length body (`None` at EOF).
pub fn read_request(r: &mut impl BufRead) -> std::io::Result<Option<(Vec<String>, Vec<u8>)>> {
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
    assert!(
        header(&head, "transfer-encoding").is_none(),
        "only Content-Length bodies are handled: {head:?}"
    );
    let len = header(&head, "content-length")
        .map(|v| v.parse::<usize>().expect("content-length"))
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

/// The value of header `name` among the request's head lines.
pub fn header(head: &[String], name: &str) -> Option<String> {
    head.iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Standard base64 (with or without padding), for record data read back.
pub fn b64decode(s: &str) -> Vec<u8> {
    fn val(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    }
    let b: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(b.len() * 3 / 4);
    for q in b.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in q.iter().enumerate() {
            n |= val(c) << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if q.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if q.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}

/// [`aws_env`], and the agent logs `krate` at debug (per-chunk statistics)
/// unless FUWA_TEST_LOG says otherwise.
pub fn aws_env_debug(krate: &str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        aws_env();
        if std::env::var_os("FUWA_TEST_LOG").is_none() {
            std::env::set_var("FUWA_TEST_LOG", format!("info,{krate}=debug"));
        }
    });
}

/// A forward EventTime.
pub fn event_time(secs: u32, nanos: u32) -> V {
    let mut b = Vec::with_capacity(8);
    b.extend_from_slice(&secs.to_be_bytes());
    b.extend_from_slice(&nanos.to_be_bytes());
    V::Ext(0, b)
}

/// Sends `[tag, entries, {chunk}]` (PackedForward, one second apart from
/// 2024-05-31T13:30:00.000000005Z) and waits for the ack.
pub fn send_packed(s: &mut TcpStream, tag: &str, records: &[V]) {
    static N: AtomicU64 = AtomicU64::new(1);
    let mut body = Vec::new();
    for (i, rec) in records.iter().enumerate() {
        body.extend(mp(&V::Array(vec![
            event_time(1_717_162_200 + i as u32, 5),
            rec.clone(),
        ])));
    }
    let chunk = format!("c{}", N.fetch_add(1, Ordering::Relaxed));
    let msg = V::Array(vec![
        V::from(tag),
        V::Binary(body),
        V::Map(vec![(V::from("chunk"), V::from(chunk.as_str()))]),
    ]);
    s.write_all(&mp(&msg)).expect("send");
    let ack = read_mp(s);
    assert_eq!(ack, V::Map(vec![(V::from("ack"), V::from(chunk.as_str()))]));
}

/// The dead letters (JSON) output `id` wrote.
pub fn dead_letters(a: &Agent, id: &str) -> Vec<J> {
    let Ok(rd) = std::fs::read_dir(a.path(&format!("data/dead-letter/{id}"))) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect()
}

/// The agent's log shows a chunk that went back to the engine with the
/// output keeping what was delivered, and its retry skipping those records
/// (the batch outputs' debug log, see [`aws_env_debug`]).
pub fn assert_retry_skipped_delivered(a: &Agent) {
    let log = a.stderr();
    for what in [
        "will retry",
        "kept so a retry skips them",
        // logged by the output itself (its crate's debug filter shows it)
        "partial failure: resending only the failed records",
    ] {
        assert!(log.contains(what), "log lacks `{what}`:\n{log}");
    }
    assert!(
        log.contains("skipped_delivered=") && !log.contains("skipped_delivered=0 "),
        "{log}"
    );
}
