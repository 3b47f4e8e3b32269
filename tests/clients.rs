//! The real third-party forward clients against the real binary: the PyPI
//! `fluent-logger` 0.11.1 (sync and async senders, integer, float and
//! EventTime times) and the npm `fluent-logger` 3.4.1 (Message,
//! PackedForward, CompressedPackedForward, acks, shared key + user auth).
//!
//! The clients are driven by tests/python/emit.py and tests/node/emit.js.
//! They need a Python with fluent-logger (`FUWA_PYTHON`) and the npm packages
//! (`FUWA_NODE_DIR`); `bash .ci/run` installs both. When they are missing the
//! tests fail and say so.
//!
//! Over 600 lines for a reason: one feature (third-party clients), one
//! client and mode a test, sharing the driver scripts' harness.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Every script's times start here (2023-11-14T22:13:20Z).
const BASE: i64 = 1_700_000_000;
const N: usize = 50;
/// What a script may take before the test gives up on it.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(15);

const SECURE: &str = r#"shared_key = "s3cret"
self_hostname = "fuwa-server"
users = [{ username = "alice", password = "wonder" }]"#;

const SETUP_HINT: &str = "run `bash .ci/run` once (it creates the Python venv with fluent-logger \
and runs `npm install` in tests/node), or by hand: \
`python3 -m venv /var/tmp/fuwa-ci/venv && /var/tmp/fuwa-ci/venv/bin/pip install -r tests/python/requirements.txt \
&& export FUWA_PYTHON=/var/tmp/fuwa-ci/venv/bin/python` and `(cd tests/node && npm install)`";

// ---------------------------------------------------------------------------
// tools

/// The Python that has fluent-logger 0.11.1: `FUWA_PYTHON`, else `python3`.
fn python() -> PathBuf {
    let (py, from) = match std::env::var_os("FUWA_PYTHON") {
        Some(p) => (PathBuf::from(p), "FUWA_PYTHON"),
        None => (PathBuf::from("python3"), "python3 (FUWA_PYTHON is not set)"),
    };
    let probe = Command::new(&py)
        .args([
            "-c",
            "import importlib.metadata as m, fluent.sender, fluent.asyncsender, msgpack; \
             print(m.version('fluent-logger'))",
        ])
        .output();
    match probe {
        Ok(o) if o.status.success() => {
            let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
            assert_eq!(
                v,
                "0.11.1",
                "{} has fluent-logger {v}, the tests need 0.11.1: {SETUP_HINT}",
                py.display()
            );
            py
        }
        Ok(o) => panic!(
            "{from} = {} cannot import fluent-logger/msgpack ({}): {SETUP_HINT}",
            py.display(),
            String::from_utf8_lossy(&o.stderr)
                .trim()
                .lines()
                .last()
                .unwrap_or_default()
        ),
        Err(e) => panic!("{from} = {} does not run ({e}): {SETUP_HINT}", py.display()),
    }
}

/// The directory whose node_modules holds fluent-logger 3.4.1:
/// `FUWA_NODE_DIR`, else tests/node.
fn node_dir() -> PathBuf {
    let dir = std::env::var_os("FUWA_NODE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("tests").join("node"));
    let pkg = dir.join("node_modules/fluent-logger/package.json");
    let text = std::fs::read_to_string(&pkg).unwrap_or_else(|e| {
        panic!(
            "the npm fluent-logger is not installed ({}: {e}): {SETUP_HINT}",
            pkg.display()
        )
    });
    let v: Value = serde_json::from_str(&text).expect("fluent-logger package.json");
    assert_eq!(
        v["version"],
        "3.4.1",
        "{} is not fluent-logger 3.4.1: {SETUP_HINT}",
        pkg.display()
    );
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        other => panic!("`node` does not run ({other:?}): {SETUP_HINT}"),
    }
    dir
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to its end; kills it and fails the test after `timeout`.
fn run(cmd: &mut Command, timeout: Duration) -> Run {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let out = drain(child.stdout.take().expect("stdout"));
    let err = drain(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let (o, e) = (out.join().unwrap(), err.join().unwrap());
            panic!(
                "{cmd:?} still running after {timeout:?}, killed\n--- stdout\n{o}\n--- stderr\n{e}"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn drain<R: Read + Send + 'static>(mut r: R) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    })
}

// ---------------------------------------------------------------------------
// fuwa side

/// forward on {port} → one file per tag under {dir}/out, times in RFC 3339
/// with all nine fractional digits.
fn config(extra_input: &str) -> String {
    forward_to_file(extra_input).replace("unix_float", "rfc3339")
}

fn rfc3339(secs: i64, nanos: u32) -> String {
    chrono::DateTime::from_timestamp(secs, nanos)
        .expect("valid time")
        .format("%Y-%m-%dT%H:%M:%S%.9fZ")
        .to_string()
}

/// Waits for `n` lines, lets the output flush a few more times, and checks
/// there are exactly `n`, all in `<tag>.log` with `tag` set, carrying
/// `i` = 0..n once each. Returns them ordered by `i`.
fn expect_events(a: &Agent, tag: &str, n: usize) -> Vec<Value> {
    let out = a.path("out");
    let first = wait_lines(&out, n, Duration::from_secs(10));
    assert!(
        first.len() >= n,
        "{tag}: only {} of {n} events arrived\nfuwa stderr:\n{}",
        first.len(),
        a.stderr()
    );
    // anything duplicated or late would show up within a few flushes
    std::thread::sleep(Duration::from_millis(600));
    let lines = read_json_lines(&out);
    assert_eq!(
        lines.len(),
        n,
        "{tag}: expected exactly {n} lines, got {}\nfuwa stderr:\n{}",
        lines.len(),
        a.stderr()
    );
    let file = format!("{tag}.log");
    let mut by_i: Vec<Option<Value>> = vec![None; n];
    for (path, v) in lines {
        assert!(
            path.ends_with(&file),
            "{tag}: line in {}: {v}",
            path.display()
        );
        assert_eq!(v["tag"], tag, "{v}");
        let i = v["i"]
            .as_u64()
            .unwrap_or_else(|| panic!("no integer i: {v}")) as usize;
        assert!(i < n, "{tag}: unexpected i={i}: {v}");
        assert!(by_i[i].is_none(), "{tag}: i={i} arrived twice: {v}");
        by_i[i] = Some(v);
    }
    by_i.into_iter().map(|v| v.expect("every i once")).collect()
}

/// The fields every script puts in event i, besides `i`, `tag` and `time`.
fn check_record(v: &Value, i: usize, msg_prefix: &str, client: &str) {
    assert_eq!(v["msg"], format!("{msg_prefix} #{i}"), "{v}");
    assert_eq!(v["client"], client, "{v}");
    assert_eq!(v["unicode"], "ふわ ✓", "{v}");
    assert_eq!(
        v["nested"],
        json!({"list": [1, 2.5, null, true], "n": -(i as i64)}),
        "{v}"
    );
    let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
    assert_eq!(keys.len(), 7, "no extra or missing fields: {v}");
}

fn no_events_after(a: &Agent, wait: Duration) {
    std::thread::sleep(wait);
    let lines = read_json_lines(&a.path("out"));
    assert!(
        lines.is_empty(),
        "refused clients got {} events in: {:?}",
        lines.len(),
        lines.first()
    );
}

// ---------------------------------------------------------------------------
// Python fluent-logger 0.11.1

/// Runs tests/python/emit.py; it must exit 0. Returns the (secs, nanos) the
/// client reports having encoded for each event.
fn py_emit(a: &Agent, tag: &str, n: usize, args: &[&str]) -> Vec<(i64, u32)> {
    let script = repo_root().join("tests/python/emit.py");
    let r = run(
        Command::new(python())
            .arg(&script)
            .args(["--host", "127.0.0.1", "--port"])
            .arg(a.port.to_string())
            .args(["--tag", tag, "--count"])
            .arg(n.to_string())
            .args(args),
        SCRIPT_TIMEOUT,
    );
    assert!(
        r.status.success(),
        "python client failed: {r}\nfuwa stderr:\n{}",
        a.stderr()
    );
    assert!(r.stdout.contains(&format!("done {n}\n")), "{r}");
    let mut sent = vec![None; n];
    for l in r.stdout.lines().filter(|l| l.starts_with("sent ")) {
        let f: Vec<&str> = l.split(' ').collect();
        let i: usize = f[1].parse().unwrap();
        sent[i] = Some((f[2].parse().unwrap(), f[3].parse().unwrap()));
    }
    sent.into_iter()
        .map(|s| s.unwrap_or_else(|| panic!("script did not report every event: {r}")))
        .collect()
}

/// What emit.py gives emit_with_time as a float for event i: BASE + i + k/512,
/// exact in binary, so the client's nanoseconds are exactly k * 1953125.
fn py_float_time(i: usize) -> (i64, u32) {
    let k = ((i * 37 + 1) % 512) as u32;
    (BASE + i as i64, k * 1_953_125)
}

fn check_python(a: &Agent, tag: &str, client: &str, expected: &[(i64, u32)]) {
    let got = expect_events(a, tag, expected.len());
    for (i, v) in got.iter().enumerate() {
        check_record(v, i, "python", client);
        let (s, ns) = expected[i];
        assert_eq!(v["time"], rfc3339(s, ns), "event {i}: {v}");
    }
}

#[test]
fn python_sync_sender_nanosecond_float_times() {
    let a = Agent::start(&config(""));
    let tag = "py.sync.ns";
    let sent = py_emit(
        &a,
        tag,
        N,
        &[
            "--sender",
            "sync",
            "--time",
            "float",
            "--nanosecond-precision",
        ],
    );
    let expected: Vec<_> = (0..N).map(py_float_time).collect();
    // the client really sent these as EventTime with sub-microsecond parts
    assert_eq!(sent, expected, "fluent-logger encoded other times");
    assert!(expected.iter().any(|(_, ns)| ns % 1000 != 0));
    check_python(&a, tag, "python-sync", &expected);
}

#[test]
fn python_sync_sender_explicit_event_times() {
    let a = Agent::start(&config(""));
    let tag = "py.sync.eventtime";
    let sent = py_emit(
        &a,
        tag,
        N,
        &[
            "--sender",
            "sync",
            "--time",
            "eventtime",
            "--nanosecond-precision",
        ],
    );
    let expected: Vec<_> = (0..N)
        .map(|i| (BASE + i as i64, 123_456_789 + i as u32))
        .collect();
    assert_eq!(sent, expected);
    check_python(&a, tag, "python-sync", &expected);
}

#[test]
fn python_async_sender_nanosecond_float_times() {
    let a = Agent::start(&config(""));
    let tag = "py.async.ns";
    let sent = py_emit(
        &a,
        tag,
        N,
        &[
            "--sender",
            "async",
            "--time",
            "float",
            "--nanosecond-precision",
        ],
    );
    let expected: Vec<_> = (0..N).map(py_float_time).collect();
    assert_eq!(sent, expected);
    check_python(&a, tag, "python-async", &expected);
}

#[test]
fn python_sync_sender_integer_times() {
    let a = Agent::start(&config(""));
    let tag = "py.sync.int";
    let sent = py_emit(&a, tag, N, &["--sender", "sync", "--time", "int"]);
    let expected: Vec<_> = (0..N).map(|i| (BASE + i as i64, 0)).collect();
    assert_eq!(sent, expected);
    check_python(&a, tag, "python-sync", &expected);
}

#[test]
fn python_default_sender_float_times_go_as_msgpack_floats() {
    // without nanosecond_precision the client puts the float itself on the
    // wire (msgpack float64); fuwa must keep its fractional part
    let a = Agent::start(&config(""));
    let tag = "py.sync.float64";
    let sent = py_emit(&a, tag, N, &["--sender", "sync", "--time", "float"]);
    let expected: Vec<_> = (0..N).map(py_float_time).collect();
    assert_eq!(sent, expected);
    check_python(&a, tag, "python-sync", &expected);
}

// ---------------------------------------------------------------------------
// Node fluent-logger 3.4.1

struct NodeOpts<'a> {
    mode: &'a str,
    ack: bool,
    /// (shared key, username, password)
    security: Option<(&'a str, &'a str, &'a str)>,
    expect_refused: bool,
}

/// Runs tests/node/emit.js; it must exit 0 (its own check that the outcome
/// was the expected one). Returns its JSON summary.
fn node_emit(a: &Agent, tag: &str, n: usize, o: &NodeOpts) -> Value {
    let dir = node_dir();
    let script = repo_root().join("tests/node/emit.js");
    let mut cmd = Command::new("node");
    cmd.arg(&script)
        .arg("--host=127.0.0.1")
        .arg(format!("--port={}", a.port))
        .arg(format!("--tag={tag}"))
        .arg(format!("--count={n}"))
        .arg(format!("--mode={}", o.mode))
        .arg("--timeout-ms=8000")
        .env("NODE_PATH", dir.join("node_modules"));
    if o.ack {
        cmd.arg("--ack");
    }
    if let Some((key, user, pass)) = o.security {
        cmd.arg(format!("--shared-key={key}"))
            .arg("--client-hostname=node-client")
            .arg(format!("--username={user}"))
            .arg(format!("--password={pass}"));
    }
    if o.expect_refused {
        cmd.arg("--expect=refused");
    }
    let r = run(&mut cmd, SCRIPT_TIMEOUT);
    assert!(
        r.status.success(),
        "node client ({}) did not get the expected outcome: {r}\nfuwa stderr:\n{}",
        o.mode,
        a.stderr()
    );
    let last = r.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("no summary line ({e}): {r}"))
}

/// Event i from emit.js: even i carry EventTime(BASE + i, 987654321 - i),
/// odd i the integer BASE + i.
fn node_time(i: usize) -> (i64, u32) {
    match i % 2 {
        0 => (BASE + i as i64, 987_654_321 - i as u32),
        _ => (BASE + i as i64, 0),
    }
}

fn check_node(a: &Agent, tag: &str, mode: &str, n: usize) {
    let got = expect_events(a, tag, n);
    for (i, v) in got.iter().enumerate() {
        check_record(v, i, "node", &format!("node-{mode}"));
        let (s, ns) = node_time(i);
        assert_eq!(v["time"], rfc3339(s, ns), "event {i}: {v}");
    }
}

fn node_ok(a: &Agent, tag: &str, o: &NodeOpts) {
    let summary = node_emit(a, tag, N, o);
    assert_eq!(
        summary,
        json!({"result": "ok", "succeeded": N, "errors": []}),
        "{tag}"
    );
}

#[test]
fn node_message_mode_with_acks() {
    let a = Agent::start(&config(""));
    let o = NodeOpts {
        mode: "Message",
        ack: true,
        security: None,
        expect_refused: false,
    };
    // with requireAckResponse every emit callback waits for fuwa's ack
    node_ok(&a, "node.message", &o);
    check_node(&a, "node.message", "Message", N);
}

#[test]
fn node_packed_forward_mode() {
    let a = Agent::start(&config(""));
    let o = NodeOpts {
        mode: "PackedForward",
        ack: false,
        security: None,
        expect_refused: false,
    };
    node_ok(&a, "node.packed", &o);
    check_node(&a, "node.packed", "PackedForward", N);
}

#[test]
fn node_compressed_packed_forward_mode_with_acks() {
    let a = Agent::start(&config(""));
    let o = NodeOpts {
        mode: "CompressedPackedForward",
        ack: true,
        security: None,
        expect_refused: false,
    };
    node_ok(&a, "node.compressed", &o);
    check_node(&a, "node.compressed", "CompressedPackedForward", N);
}

#[test]
fn node_shared_key_and_user_auth() {
    let a = Agent::start(&config(SECURE));
    let good = Some(("s3cret", "alice", "wonder"));
    let o = NodeOpts {
        mode: "Message",
        ack: true,
        security: good,
        expect_refused: false,
    };
    node_ok(&a, "node.sec.message", &o);
    check_node(&a, "node.sec.message", "Message", N);
    assert!(
        !a.stderr().contains("authentication failed"),
        "{}",
        a.stderr()
    );
}

#[test]
fn node_shared_key_and_user_auth_compressed() {
    let a = Agent::start(&config(SECURE));
    let o = NodeOpts {
        mode: "CompressedPackedForward",
        ack: true,
        security: Some(("s3cret", "alice", "wonder")),
        expect_refused: false,
    };
    node_ok(&a, "node.sec.compressed", &o);
    check_node(&a, "node.sec.compressed", "CompressedPackedForward", N);
}

#[test]
fn node_refused_with_wrong_key_or_password() {
    let a = Agent::start(&config(SECURE));
    for (mode, sec, reason) in [
        (
            "Message",
            ("wrong", "alice", "wonder"),
            "shared_key mismatch",
        ),
        (
            "PackedForward",
            ("wrong", "alice", "wonder"),
            "shared_key mismatch",
        ),
        (
            "Message",
            ("s3cret", "alice", "nope"),
            "username/password mismatch",
        ),
        (
            "CompressedPackedForward",
            ("s3cret", "alice", "nope"),
            "username/password mismatch",
        ),
        (
            "Message",
            ("s3cret", "mallory", "wonder"),
            "username/password mismatch",
        ),
    ] {
        let o = NodeOpts {
            mode,
            ack: true,
            security: Some(sec),
            expect_refused: true,
        };
        let summary = node_emit(&a, "node.refused", 5, &o);
        assert_eq!(
            summary,
            json!({
                "result": "refused",
                "succeeded": 0,
                "errors": [format!("HandshakeError: Authentication failed: {reason}")],
            }),
            "{mode} {sec:?}"
        );
        let want = format!("authentication failed: {reason}");
        assert!(
            a.wait_stderr(&want, Duration::from_secs(5)),
            "fuwa does not log `{want}`: {}",
            a.stderr()
        );
    }
    assert_eq!(
        a.stderr().matches("authentication failed").count(),
        5,
        "one failure logged per refused connection: {}",
        a.stderr()
    );
    no_events_after(&a, Duration::from_secs(1));
    // the same agent still takes a client with the right key: the empty
    // output above is the refusal, not a broken pipeline
    let o = NodeOpts {
        mode: "Message",
        ack: true,
        security: Some(("s3cret", "alice", "wonder")),
        expect_refused: false,
    };
    node_ok(&a, "node.after", &o);
    check_node(&a, "node.after", "Message", N);
}

#[test]
fn tools_are_installed() {
    // a clear failure, once, when the clients are missing
    let _ = python();
    let dir = node_dir();
    assert!(Path::new(&dir).join("package.json").exists());
}
