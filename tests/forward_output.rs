//! The forward output through the real binary: to a second fuwa (its
//! forward input) and to a Python forward server that can withhold acks,
//! close connections and require the handshake (tests/python/forward_server.py).
//!
//! Over 600 lines for a reason: one feature (the forward output against
//! real receivers), one failure mode a test, sharing one harness.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::aws::python;
use common::*;
use rmpv::Value as V;

const T0: u32 = 1_700_000_000;

fn et(secs: u32, nanos: u32) -> V {
    let mut d = secs.to_be_bytes().to_vec();
    d.extend_from_slice(&nanos.to_be_bytes());
    V::Ext(0, d)
}

/// Event i: its time (with nanoseconds that differ per event) and record.
fn event_time(i: u32) -> (u32, u32) {
    (T0 + i / 10, (i * 7_919_013 + 1) % 1_000_000_000)
}

fn event(i: u32) -> V {
    let (s, ns) = event_time(i);
    V::Array(vec![
        et(s, ns),
        V::Map(vec![
            (V::from("i"), V::from(i)),
            (V::from("msg"), V::from(format!("hello {i} ✓"))),
        ]),
    ])
}

/// Sends events `from..from+n` to an agent's forward input, `per_msg` per
/// Forward-mode message, waiting for each ack (so each message is one batch
/// and the events are in the buffer when this returns).
fn send_events(a: &Agent, tag: &str, from: u32, n: u32, per_msg: u32) {
    let mut s = a.connect();
    let mut i = from;
    while i < from + n {
        let end = (i + per_msg).min(from + n);
        let entries = (i..end).map(event).collect();
        let chunk = format!("m{i}");
        send(
            &mut s,
            &mp(&V::Array(vec![
                V::from(tag),
                V::Array(entries),
                V::Map(vec![(V::from("chunk"), V::from(chunk.as_str()))]),
            ])),
        );
        assert_eq!(
            read_mp(&mut s),
            V::Map(vec![(V::from("ack"), V::from(chunk.as_str()))])
        );
        i = end;
    }
}

/// A fuwa whose forward input ships everything to a forward output with
/// `out` (TOML keys of the output table).
fn sender(out: &str) -> Agent {
    sender_with(out, "")
}

fn sender_with(out: &str, buffer: &str) -> Agent {
    Agent::start(&format!(
        r#"[[input]]
type = "forward"
bind = "127.0.0.1:{{port}}"
udp_heartbeat = false

# an explicit id: the default ids of a forward input and a forward
# output are both `forward.0`
[[output]]
id = "fwd_out"
match = "**"
type = "forward"
{out}
[output.buffer]
type = "memory"
flush_interval = "100ms"
retry_wait = "200ms"
retry_max_interval = "1s"
retry_randomize = false
{buffer}
"#
    ))
}

/// A fuwa receiving on its forward input (with `input` keys) and writing
/// JSON lines with the time in RFC 3339 (nanoseconds) under `{dir}/out`.
fn receiver(input: &str) -> Agent {
    Agent::start(&format!(
        r#"[[input]]
type = "forward"
bind = "127.0.0.1:{{port}}"
{input}

[[output]]
match = "**"
type = "file"
path = "{{dir}}/out/${{tag}}.log"
tag_key = "tag"
time_key = "time"
time_format = "rfc3339"
[output.buffer]
type = "memory"
flush_interval = "100ms"
"#
    ))
}

fn rfc3339(secs: u32, nanos: u32) -> String {
    chrono::DateTime::from_timestamp(secs as i64, nanos)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.9fZ")
        .to_string()
}

/// Checks that the receiver has exactly events `0..n` of `tag`, each once,
/// with its record and its time to the nanosecond.
fn assert_received_exactly(lines: &[(PathBuf, serde_json::Value)], tag: &str, n: u32) {
    let mut seen: Vec<u32> = Vec::new();
    for (_, j) in lines {
        let i = j["i"].as_u64().expect("i") as u32;
        let (s, ns) = event_time(i);
        assert_eq!(j["tag"], tag);
        assert_eq!(j["msg"], format!("hello {i} ✓"));
        assert_eq!(j["time"], rfc3339(s, ns), "time of event {i}");
        seen.push(i);
    }
    seen.sort();
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
}

/// tests/python/forward_server.py on a free port; killed on drop.
struct PyServer {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl PyServer {
    fn start(args: &[&str]) -> PyServer {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("received.jsonl");
        let port = free_port();
        let mut child = Command::new(python())
            .arg(repo_root().join("tests/python/forward_server.py"))
            .args(["--port", &port.to_string(), "--log"])
            .arg(&log)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start forward_server.py (FUWA_PYTHON needs msgpack)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("READY"), "forward_server.py: {line:?}");
        PyServer {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// Every logged line (messages and handshakes).
    fn lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn messages(&self) -> Vec<serde_json::Value> {
        self.lines()
            .into_iter()
            .filter(|l| l.get("events").is_some())
            .collect()
    }

    /// Event indexes of acked messages.
    fn acked_events(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .messages()
            .iter()
            .filter(|m| m["acked"] == true)
            .flat_map(|m| m["events"].as_array().unwrap().clone())
            .map(|e| e[2]["i"].as_u64().unwrap() as u32)
            .collect();
        v.sort();
        v
    }

    fn wait_acked(&self, n: usize, timeout: Duration) -> Vec<u32> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.acked_events();
            if v.len() >= n || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn server(&self, extra: &str) -> String {
        format!("{{ host = \"127.0.0.1\", port = {}{extra} }}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn to_another_fuwa_with_acks_text_and_gzip() {
    for compress in ["text", "gzip"] {
        let rx = receiver("");
        let tx = sender(&format!(
            r#"servers = [{{ host = "127.0.0.1", port = {} }}]
compress = "{compress}"
require_ack_response = true
ack_response_timeout = "5s"
keepalive = true"#,
            rx.port
        ));
        send_events(&tx, "app.events", 0, 300, 50);
        let lines = wait_lines(&rx.path("out"), 300, Duration::from_secs(15));
        assert_received_exactly(&lines, "app.events", 300);
        // nothing failed on the way, so nothing was sent twice
        std::thread::sleep(Duration::from_millis(300));
        assert_received_exactly(&read_json_lines(&rx.path("out")), "app.events", 300);
        assert!(
            !tx.stderr().contains("will retry"),
            "{compress}: {}",
            tx.stderr()
        );
    }
}

#[test]
fn python_server_sees_packed_forward_with_chunk_id_and_gzip() {
    let py = PyServer::start(&[]);
    let tx = sender(&format!(
        "servers = [{}]\ncompress = \"gzip\"",
        py.server("")
    ));
    send_events(&tx, "py.gz", 0, 20, 20);
    assert_eq!(
        py.wait_acked(20, Duration::from_secs(10)),
        (0..20).collect::<Vec<_>>()
    );
    let m = &py.messages()[0];
    assert_eq!(m["tag"], "py.gz");
    assert_eq!(m["compressed"], "gzip");
    assert_eq!(m["size"], 20);
    // base64 of the buffer chunk's 16-byte id
    assert_eq!(m["chunk"].as_str().unwrap().len(), 24, "{m}");
    let e = &m["events"][3];
    let (s, ns) = event_time(3);
    assert_eq!(
        (e[0].as_u64().unwrap() as u32, e[1].as_u64().unwrap() as u32),
        (s, ns)
    );
}

#[test]
fn withheld_ack_is_retried_with_the_same_chunk_id() {
    let py = PyServer::start(&["--withhold-acks", "1"]);
    let tx = sender(&format!(
        "servers = [{}]\nack_response_timeout = \"1s\"\nheartbeat_interval = \"200ms\"",
        py.server("")
    ));
    send_events(&tx, "retry.ack", 0, 10, 10);
    let acked = py.wait_acked(10, Duration::from_secs(15));
    assert_eq!(acked, (0..10).collect::<Vec<_>>(), "{}", tx.stderr());
    let msgs = py.messages();
    assert!(msgs.len() >= 2);
    assert_eq!(msgs[0]["acked"], false);
    // at-least-once: the same chunk (same id, same events) came again
    let last = msgs.iter().rfind(|m| m["acked"] == true).unwrap();
    assert_eq!(msgs[0]["chunk"], last["chunk"]);
    assert_eq!(msgs[0]["events"], last["events"]);
    assert!(
        tx.stderr().contains("no ack within ack_response_timeout"),
        "{}",
        tx.stderr()
    );
}

#[test]
fn an_ack_for_another_chunk_does_not_count() {
    let py = PyServer::start(&["--wrong-acks", "1"]);
    let tx = sender(&format!(
        "servers = [{}]\nheartbeat_interval = \"200ms\"",
        py.server("")
    ));
    send_events(&tx, "retry.wrong", 0, 10, 10);
    let acked = py.wait_acked(10, Duration::from_secs(15));
    assert_eq!(acked, (0..10).collect::<Vec<_>>(), "{}", tx.stderr());
    let msgs = py.messages();
    assert_eq!(msgs[0]["acked"], false);
    assert!(msgs.len() >= 2);
    assert!(
        tx.stderr().contains("ack for another chunk"),
        "{}",
        tx.stderr()
    );
}

#[test]
fn connection_closed_instead_of_ack_is_retried() {
    let py = PyServer::start(&["--close-first", "2"]);
    let tx = sender(&format!(
        "servers = [{}]\nack_response_timeout = \"5s\"\nheartbeat_interval = \"200ms\"\nkeepalive = true",
        py.server("")
    ));
    send_events(&tx, "retry.close", 0, 10, 10);
    let acked = py.wait_acked(10, Duration::from_secs(15));
    assert_eq!(acked, (0..10).collect::<Vec<_>>(), "{}", tx.stderr());
    assert!(py.messages().len() >= 3);
    assert!(
        tx.stderr().contains("closed the connection"),
        "{}",
        tx.stderr()
    );
}

#[test]
fn keepalive_replaces_a_connection_the_server_closed() {
    let py = PyServer::start(&["--close-after-ack"]);
    let tx = sender(&format!(
        "servers = [{}]\nkeepalive = true\nheartbeat_type = \"none\"",
        py.server("")
    ));
    for k in 0..5 {
        send_events(&tx, "keepalive", k * 10, 10, 10);
        assert_eq!(
            py.wait_acked(((k + 1) * 10) as usize, Duration::from_secs(10))
                .len(),
            ((k + 1) * 10) as usize
        );
    }
    // each chunk on its own connection, none lost, none retried
    assert_eq!(py.messages().len(), 5);
    assert!(!tx.stderr().contains("will retry"), "{}", tx.stderr());
}

#[test]
fn first_server_down_events_go_to_the_second() {
    let dead = free_port();
    let py = PyServer::start(&[]);
    let tx = sender(&format!(
        "servers = [{{ host = \"127.0.0.1\", port = {dead}, weight = 100 }}, {}]\nheartbeat_interval = \"200ms\"",
        py.server(", weight = 1")
    ));
    send_events(&tx, "failover", 0, 50, 5);
    let acked = py.wait_acked(50, Duration::from_secs(15));
    assert_eq!(acked, (0..50).collect::<Vec<_>>(), "{}", tx.stderr());
    assert!(
        tx.stderr().contains(&format!("127.0.0.1:{dead}")) && tx.stderr().contains("is down"),
        "{}",
        tx.stderr()
    );
}

#[test]
fn standby_is_used_only_when_the_primaries_are_down() {
    let mut a = PyServer::start(&["--hostname", "a"]);
    let b = PyServer::start(&["--hostname", "b"]);
    let tx = sender(&format!(
        "servers = [{}, {}]\nheartbeat_interval = \"200ms\"\nkeepalive = true",
        a.server(""),
        b.server(", standby = true")
    ));
    send_events(&tx, "standby", 0, 40, 4);
    assert_eq!(a.wait_acked(40, Duration::from_secs(15)).len(), 40);
    assert!(
        b.messages().is_empty(),
        "standby got data while the primary was up"
    );
    a.kill();
    send_events(&tx, "standby", 40, 40, 4);
    let got = b.wait_acked(40, Duration::from_secs(15));
    assert_eq!(got, (40..80).collect::<Vec<_>>(), "{}", tx.stderr());
}

#[test]
fn udp_heartbeat_takes_a_silent_server_out() {
    // the Python server speaks TCP only: its UDP heartbeats go unanswered;
    // fuwa's forward input answers them
    let py = PyServer::start(&[]);
    let rx = receiver("");
    let tx = sender(&format!(
        "servers = [{}, {{ host = \"127.0.0.1\", port = {}, standby = true }}]\nheartbeat_type = \"udp\"\nheartbeat_interval = \"200ms\"",
        py.server(""),
        rx.port
    ));
    // the first write starts the heartbeats
    send_events(&tx, "udp.hb", 0, 10, 10);
    assert!(
        tx.wait_stderr("forward server is down", Duration::from_secs(10)),
        "{}",
        tx.stderr()
    );
    assert!(tx.stderr().contains(&format!("127.0.0.1:{}", py.port)));
    assert!(tx.stderr().contains("UDP heartbeat"), "{}", tx.stderr());
    send_events(&tx, "udp.hb", 10, 30, 10);
    let deadline = Instant::now() + Duration::from_secs(15);
    let at_rx = loop {
        let v: Vec<u32> = read_json_lines(&rx.path("out"))
            .iter()
            .map(|(_, j)| j["i"].as_u64().unwrap() as u32)
            .collect();
        if v.iter().filter(|&&i| i >= 10).count() >= 30 || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        at_rx.iter().filter(|&&i| i >= 10).count(),
        30,
        "python on {} got {:?}, fuwa on {} got {at_rx:?}: {}",
        py.port,
        py.acked_events(),
        rx.port,
        tx.stderr()
    );
    assert!(py.acked_events().iter().all(|&i| i < 10));
}

#[test]
fn weights_are_roughly_respected() {
    let a = PyServer::start(&["--hostname", "a"]);
    let b = PyServer::start(&["--hostname", "b"]);
    let tx = sender_with(
        &format!(
            "servers = [{}, {}]\nkeepalive = true",
            a.server(", weight = 3"),
            b.server(", weight = 1")
        ),
        "chunk_limit_records = 1\nflush_thread_count = 4",
    );
    // one event per message: one chunk each
    send_events(&tx, "weights", 0, 200, 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (na, nb) = loop {
        let (na, nb) = (a.acked_events().len(), b.acked_events().len());
        if na + nb >= 200 || Instant::now() > deadline {
            break (na, nb);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(na + nb, 200, "{}", tx.stderr());
    // expected 150:50; binomial sd is about 6, so these bounds are ~5 sd wide
    assert!((120..=180).contains(&na), "a got {na}, b got {nb}");
    // keepalive: far fewer connections than chunks
    let conns: std::collections::HashSet<_> = a
        .messages()
        .iter()
        .map(|m| m["conn"].as_u64().unwrap())
        .collect();
    assert!(
        conns.len() <= 10,
        "{} connections for {na} chunks",
        conns.len()
    );
}

#[test]
fn handshake_with_fuwa_right_key_and_user_work_wrong_password_is_refused() {
    let rx = receiver(
        "shared_key = \"s3cret\"\nself_hostname = \"rx\"\nusers = [{ username = \"app\", password = \"pw\" }]",
    );
    let good = sender(&format!(
        "servers = [{{ host = \"127.0.0.1\", port = {} }}]\nshared_key = \"s3cret\"\nself_hostname = \"tx\"\nusername = \"app\"\npassword = \"pw\"",
        rx.port
    ));
    send_events(&good, "hs.good", 0, 30, 10);
    let lines = wait_lines(&rx.path("out"), 30, Duration::from_secs(15));
    assert_received_exactly(&lines, "hs.good", 30);

    let bad = sender(&format!(
        "servers = [{{ host = \"127.0.0.1\", port = {} }}]\nshared_key = \"s3cret\"\nself_hostname = \"tx\"\nusername = \"app\"\npassword = \"wrong\"",
        rx.port
    ));
    send_events(&bad, "hs.bad", 0, 5, 5);
    assert!(
        bad.wait_stderr("username/password mismatch", Duration::from_secs(10)),
        "{}",
        bad.stderr()
    );
    let err = bad.stderr();
    assert!(err.contains("refused the handshake"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{}", rx.port)), "{err}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !rx.path("out/hs.bad.log").exists(),
        "refused events were delivered"
    );
}

#[test]
fn handshake_with_python_wrong_key_is_refused_right_key_works() {
    let py = PyServer::start(&["--shared-key", "k1", "--user", "u:p"]);
    let bad = sender(&format!(
        "servers = [{}]\nshared_key = \"nope\"\nusername = \"u\"\npassword = \"p\"",
        py.server("")
    ));
    send_events(&bad, "hs.py", 0, 5, 5);
    assert!(
        bad.wait_stderr("shared_key mismatch", Duration::from_secs(10)),
        "{}",
        bad.stderr()
    );
    assert!(bad.stderr().contains("refused the handshake"));
    assert!(
        py.messages().is_empty(),
        "data sent after a refused handshake"
    );
    assert!(py.lines().iter().any(|l| l["handshake"] == false));
    drop(bad);

    let good = sender(&format!(
        "servers = [{}]\nshared_key = \"k1\"\nusername = \"u\"\npassword = \"p\"\nkeepalive = true",
        py.server("")
    ));
    send_events(&good, "hs.py", 0, 5, 5);
    assert_eq!(
        py.wait_acked(5, Duration::from_secs(10)),
        (0..5).collect::<Vec<_>>()
    );
}

#[test]
fn tls_with_a_self_signed_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    let other_path = dir.path().join("other.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    std::fs::write(&other_path, other.cert.pem()).unwrap();
    let rx = receiver(&format!(
        "[input.tls]\ncert_path = \"{}\"\nkey_path = \"{}\"",
        cert_path.display(),
        key_path.display()
    ));
    let server = format!("servers = [{{ host = \"127.0.0.1\", port = {} }}]", rx.port);

    let verified = sender(&format!(
        "{server}\ntls = {{ ca_path = \"{}\", server_name = \"localhost\" }}",
        cert_path.display()
    ));
    send_events(&verified, "tls.ok", 0, 20, 10);
    let lines = wait_lines(&rx.path("out"), 20, Duration::from_secs(15));
    assert_received_exactly(&lines, "tls.ok", 20);

    // a certificate from another CA is refused
    let wrong_ca = sender(&format!(
        "{server}\ntls = {{ ca_path = \"{}\", server_name = \"localhost\" }}\nheartbeat_type = \"none\"",
        other_path.display()
    ));
    send_events(&wrong_ca, "tls.wrong", 0, 5, 5);
    assert!(
        wrong_ca.wait_stderr("TLS handshake failed", Duration::from_secs(10)),
        "{}",
        wrong_ca.stderr()
    );
    assert!(!rx.path("out/tls.wrong.log").exists());

    // verify = false accepts it, with a warning
    let unverified = sender(&format!("{server}\ntls = {{ verify = false }}"));
    send_events(&unverified, "tls.any", 0, 5, 5);
    let lines = wait_lines(&rx.path("out"), 25, Duration::from_secs(15));
    assert_eq!(lines.len(), 25);
    assert!(unverified.stderr().contains("tls.verify = false"));
}

#[test]
fn bad_configs_are_refused_with_the_key() {
    for (cfg, expect) in [
        ("servers = []", "at least one server"),
        (
            "servers = [{ host = \"h\" }]\nusername = \"u\"\npassword = \"p\"",
            "needs shared_key",
        ),
        ("servers = [{ host = \"h\", prt = 1 }]", "prt"),
        (
            "servers = [{ host = \"h\" }]\ncompress = \"zstd\"",
            "compress",
        ),
        (
            "servers = [{ host = \"h\" }]\ntls = { ca_path = \"/nonexistent/ca.pem\" }",
            "cannot read ca_path",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fuwa.toml");
        std::fs::write(
            &p,
            format!("[[output]]\nmatch = \"**\"\ntype = \"forward\"\n{cfg}\n"),
        )
        .unwrap();
        let o = Command::new(bin())
            .arg("check")
            .arg("-c")
            .arg(&p)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{cfg} accepted");
        assert!(err.contains(expect), "{cfg}: {err}");
    }
}
