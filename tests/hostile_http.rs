//! The HTTP input against hostile clients, through the real binary (issue 8,
//! "acked means delivered"): deep bodies, long tags, idle sockets under a low
//! fd limit, stalled bodies against the memory budget, times an event cannot
//! carry, X-Forwarded-For from untrusted peers, CORS "*" with credentials.
//! In every test a good client keeps being served, and every event answered
//! 2xx is counted at the output.
//!
//! The agent binds port 0 and the tests read the real ports from its log.
//! `FUWA_TEST_BIN` runs these tests against another build of fuwa (to see
//! them fail on an old one).
//!
//! Over 600 lines for a reason: one feature (the HTTP input under attack),
//! one attack a test, sharing one harness.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn fuwa_bin() -> String {
    std::env::var("FUWA_TEST_BIN").unwrap_or_else(|_| common::bin().to_string())
}

/// fuwa on a config (`{dir}` replaced), optionally under a hard and soft
/// RLIMIT_NOFILE, with the ports it bound read from its log.
struct Fuwa {
    child: Child,
    dir: tempfile::TempDir,
    stderr: Arc<Mutex<String>>,
    http: u16,
    api: u16,
}

/// http on port 0 → file output `{dir}/out/<tag>.log`, API on port 0.
fn config(input_extra: &str) -> String {
    format!(
        r#"[agent.api]
bind = "127.0.0.1:0"

[[input]]
type = "http"
bind = "127.0.0.1:0"
{input_extra}

[[output]]
match = "**"
type = "file"
path = "{{dir}}/out/${{tag}}.log"
tag_key = "tag"
[output.buffer]
type = "memory"
flush_interval = "100ms"
"#
    )
}

impl Fuwa {
    fn start(cfg: &str, nofile: Option<u64>) -> Fuwa {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = cfg.replace("{dir}", &dir.path().display().to_string());
        let path = dir.path().join("fuwa.toml");
        std::fs::write(&path, cfg).expect("write config");
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(fuwa_bin());
                c
            }
            None => Command::new(fuwa_bin()),
        };
        cmd.args(["run", "-c"])
            .arg(&path)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("FUWA_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start fuwa");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr");
        let into = stderr.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(pipe);
            let mut line = String::new();
            while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
                if let Ok(mut s) = into.lock() {
                    s.push_str(&line);
                }
                line.clear();
            }
        });
        let mut f = Fuwa {
            child,
            dir,
            stderr,
            http: 0,
            api: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while f.http == 0 || f.api == 0 {
            if Instant::now() > deadline {
                panic!("fuwa did not start: {}", f.stderr());
            }
            if let Ok(Some(st)) = f.child.try_wait() {
                panic!("fuwa exited early ({st}): {}", f.stderr());
            }
            let log = f.stderr();
            f.http = port_after(&log, "http input listening", "addr=");
            f.api = port_after(&log, "API listening", "bind=");
            std::thread::sleep(Duration::from_millis(20));
        }
        f
    }

    fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// A counter of /metrics for the http input.
    fn metric(&self, name: &str) -> f64 {
        let r = request(self.api, "GET", "/metrics", &[], b"");
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
            .lines()
            .filter(|l| l.starts_with(name) && l.contains("http"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits until the output holds `n` lines of `tag` (and not more).
    fn delivered(&self, tag: &str, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got: Vec<_> = common::read_json_lines(&self.out())
                .into_iter()
                .map(|(_, v)| v)
                .filter(|v| v["tag"] == tag)
                .collect();
            if got.len() >= n || Instant::now() > deadline {
                assert_eq!(got.len(), n, "events of {tag} at the output");
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Fuwa {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port in `key<ip>:<port>` on the first log line holding `what`.
fn port_after(log: &str, what: &str, key: &str) -> u16 {
    log.lines()
        .find(|l| l.contains(what))
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix(key)))
        .and_then(|a| a.rsplit(':').next()?.parse().ok())
        .unwrap_or(0)
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn closes(&self) -> bool {
        self.head.to_ascii_lowercase().contains("connection: close")
    }
}

/// One request on its own connection (`Connection: close`).
fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    send(&mut s, method, path, headers, body, true);
    read_reply(&mut s)
}

fn send(
    s: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        req.push_str("Connection: close\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut all = req.into_bytes();
    all.extend_from_slice(body);
    s.write_all(&all).expect("send");
}

/// Reads one response (its body by Content-Length).
fn read_reply(s: &mut TcpStream) -> Reply {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            other => panic!(
                "no reply head ({other:?}) after {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("reply body");
    Reply {
        status,
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn post_json(port: u16, tag: &str, body: &str) -> Reply {
    request(
        port,
        "POST",
        &format!("/{tag}"),
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

/// The good client: one event, answered 200.
fn good(f: &Fuwa, n: usize) {
    let r = post_json(f.http, "good", &format!(r#"{{"n":{n}}}"#));
    assert_eq!(r.status, 200, "the good client is served: {}", r.body);
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn deep_json(depth: usize) -> String {
    format!(r#"{{"a":{}1{}}}"#, "[".repeat(depth), "]".repeat(depth))
}

/// Item 1: deep bodies in every format get a clear 400; the agent lives on.
#[test]
fn deep_bodies_get_400_and_the_agent_survives() {
    let f = Fuwa::start(&config(r#"time_key = "t""#), None);
    let deep = deep_json(200_000);
    let mut deep_mp = vec![0x81, 0xa1, b'a'];
    deep_mp.extend(std::iter::repeat_n(0x91u8, 200_000));
    deep_mp.push(0xc0);
    let form = format!("json={}", deep.replace('{', "%7B").replace('}', "%7D"));
    type Case<'a> = (&'a str, &'a str, Vec<u8>, &'a [(&'a str, &'a str)]);
    let cases: Vec<Case> = vec![
        ("json", "application/json", deep.clone().into_bytes(), &[]),
        (
            "ndjson",
            "application/x-ndjson",
            format!("{{\"ok\":1}}\n{deep}\n").into_bytes(),
            &[],
        ),
        (
            "array",
            "application/json",
            format!("[{{\"ok\":1}},{deep}]").into_bytes(),
            &[],
        ),
        (
            "time_key",
            "application/json",
            format!(r#"{{"t":{}1{}}}"#, "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            &[],
        ),
        ("msgpack", "application/msgpack", deep_mp, &[]),
        (
            "form",
            "application/x-www-form-urlencoded",
            form.into_bytes(),
            &[],
        ),
        (
            "gzip",
            "application/json",
            gzip(deep.as_bytes()),
            &[("Content-Encoding", "gzip")],
        ),
    ];
    for (i, (what, ctype, body, extra)) in cases.iter().enumerate() {
        let mut h = vec![("Content-Type", *ctype)];
        h.extend_from_slice(extra);
        let r = request(f.http, "POST", "/deep", &h, body);
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        assert!(
            r.body.contains("nesting deeper than 127 levels")
                || r.body.contains("nesting deeper than 128 levels"),
            "{what}: the answer says why: {}",
            r.body
        );
        good(&f, i);
    }
    // 100 levels are fine and delivered as they were sent
    let ok = deep_json(100);
    assert_eq!(post_json(f.http, "deep", &ok).status, 200);
    let got = f.delivered("deep", 1);
    let mut v = &got[0]["a"];
    for _ in 0..100 {
        v = &v[0];
    }
    assert_eq!(v, 1);
    f.delivered("good", cases.len());
    assert!(f.metric("fuwa_input_invalid_records_total") >= cases.len() as f64);
}

/// Item 2: a tag over tag_length_limit is refused with a reason, counted,
/// logged with the peer; nothing of it reaches an output.
#[test]
fn long_tags_are_refused_counted_and_logged() {
    let f = Fuwa::start(&config("tag_length_limit = 200"), None);
    let tag = "a".repeat(300);
    let r = post_json(f.http, &tag, r#"[{"a":1},{"a":2},{"a":3}]"#);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("tag_length_limit"), "{}", r.body);
    assert!(r.body.contains("300"), "{}", r.body);
    assert_eq!(f.metric("fuwa_input_invalid_records_total"), 3.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f.stderr().contains("peer=127.0.0.1") {
        assert!(
            Instant::now() < deadline,
            "logged with the peer: {}",
            f.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // the log line does not carry the whole tag
    assert!(!f.stderr().contains(&tag));
    // at the limit it is taken
    let ok = "b".repeat(200);
    assert_eq!(post_json(f.http, &ok, r#"{"a":1}"#).status, 200);
    good(&f, 0);
    f.delivered("good", 1);
    f.delivered(&ok, 1);
    // the default limit (1024 bytes)
    let f = Fuwa::start(&config(""), None);
    let r = post_json(f.http, &"c".repeat(1025), r#"{"a":1}"#);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("tag_length_limit (1024 bytes)"),
        "{}",
        r.body
    );
    assert_eq!(f.metric("fuwa_input_invalid_records_total"), 1.0);
    good(&f, 1);
    f.delivered("good", 1);
}

/// Opens `n` sockets that send nothing (or stop in the middle of a head).
fn idle_sockets(port: u16, n: usize, partial: bool) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect idle");
            if partial {
                let _ = s.write_all(b"POST /x HTTP/1.1\r\nHost: a\r\n");
            }
            s
        })
        .collect()
}

/// Waits until the server closed `s` (EOF or reset).
fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue, // a 408 or the like, then EOF
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Item 3: 250 idle sockets under a 256-fd limit. With the default
/// max_connections (a quarter of the limit) the rest wait in the backlog;
/// with a max_connections above the limit accepts fail with EMFILE and back
/// off with few warnings. Either way the idle ones are closed after
/// header_timeout and a good client is served.
#[test]
fn idle_sockets_under_a_low_fd_limit_do_not_stop_a_good_client() {
    for max in ["", "max_connections = 10000"] {
        let f = Fuwa::start(
            &config(&format!(
                "header_timeout = \"1s\"\nidle_timeout = \"1s\"\n{max}"
            )),
            Some(256),
        );
        if max.is_empty() {
            assert!(
                f.stderr().contains("max_connections=64"),
                "a quarter of 256: {}",
                f.stderr()
            );
        }
        let mut idle = idle_sockets(f.http, 125, false);
        idle.extend(idle_sockets(f.http, 125, true));
        let t0 = Instant::now();
        // the good client: its connection is served once the idle ones are
        // gone (they are first in the queue)
        good(&f, 0);
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "served after {:?}",
            t0.elapsed()
        );
        // every idle socket is closed by the server, not left open
        for s in idle.iter_mut() {
            assert!(
                closed_by_server(s, Duration::from_secs(30)),
                "an idle socket was not closed: {}",
                f.stderr()
            );
        }
        drop(idle);
        // and the input keeps serving
        for i in 1..20 {
            good(&f, i);
        }
        f.delivered("good", 20);
        let log = f.stderr();
        let accept_warnings = log
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("accept failed"))
            .count();
        assert!(
            accept_warnings <= 3,
            "accept errors back off and warn rate-limited ({accept_warnings}): {log}"
        );
        if max.is_empty() {
            assert!(log.contains("max_connections reached"), "{log}");
        }
    }
}

/// Item 3: a keep-alive connection is closed after idle_timeout; one that
/// starts a head and stops is closed after header_timeout.
#[test]
fn idle_and_slow_head_connections_are_closed() {
    let f = Fuwa::start(
        &config("header_timeout = \"2s\"\nidle_timeout = \"1s\""),
        None,
    );
    let mut s = TcpStream::connect(("127.0.0.1", f.http)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    send(&mut s, "POST", "/ka", &[], br#"{"a":1}"#, false);
    assert_eq!(read_reply(&mut s).status, 200);
    let t = Instant::now();
    assert!(closed_by_server(&mut s, Duration::from_secs(30)));
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "not before idle_timeout"
    );
    // a head sent one byte a while: the deadline counts from its first byte
    let mut slow = TcpStream::connect(("127.0.0.1", f.http)).unwrap();
    let t = Instant::now();
    let head = b"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}";
    let mut closed = false;
    for b in head.iter() {
        if slow.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        if t.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    assert!(closed || closed_by_server(&mut slow, Duration::from_secs(30)));
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "the slow head is cut at header_timeout"
    );
    good(&f, 0);
    f.delivered("good", 1);
    f.delivered("ka", 1);
    f.delivered("slow", 0);
}

/// Item 4: stalled bodies hold at most body_buffer_limit; a request that
/// would go over is refused with 503 and Connection: close, a warning says
/// why; stalled ones get 408 after read_timeout and their memory comes
/// back; small requests are served meanwhile.
#[test]
fn stalled_bodies_are_bounded_by_the_budget_and_time_out() {
    let f = Fuwa::start(
        &config(
            "body_size_limit = \"1MiB\"\nbody_buffer_limit = \"2MiB\"\nread_timeout = \"3s\"\nheader_timeout = \"30s\"",
        ),
        None,
    );
    let part = vec![b' '; 900 * 1024];
    // two senders stop 900 KiB into a 1000 KiB body; each tells what it
    // was answered
    let (tx, rx) = std::sync::mpsc::channel();
    let mut readers = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(("127.0.0.1", f.http)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.write_all(
            format!(
                "POST /stalled HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"a\":1}}",
                1000 * 1024
            )
            .as_bytes(),
        )
        .unwrap();
        s.write_all(&part).unwrap();
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let r = read_reply(&mut s);
            let _ = tx.send(r.status);
            r
        }));
    }
    // a third big body does not fit beside them: whichever request grows
    // over body_buffer_limit gets 503 (a third taken before the stalled
    // bodies were read is delivered)
    let mut body = br#"{"a":1}"#.to_vec();
    body.resize(800 * 1024, b' ');
    let mut taken = 0;
    let mut refused = None;
    let mut stalled_answers = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while refused.is_none() && stalled_answers.len() < 2 && Instant::now() < deadline {
        let r = request(
            f.http,
            "POST",
            "/third",
            &[("Content-Type", "application/json")],
            &body,
        );
        match r.status {
            200 => taken += 1,
            _ => refused = Some(r),
        }
        stalled_answers.extend(rx.try_iter());
    }
    if let Some(r) = &refused {
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(r.closes(), "{}", r.head);
        assert!(r.body.contains("body_buffer_limit"), "{}", r.body);
    }
    // a small request still fits
    good(&f, 0);
    // the stalled ones time out (408) or were the ones over the budget (503);
    // both close the connection
    let mut statuses = Vec::new();
    for t in readers {
        let r = t.join().expect("reader");
        assert!(matches!(r.status, 408 | 503), "{} {}", r.status, r.body);
        assert!(r.closes(), "{}", r.head);
        statuses.push(r.status);
    }
    assert!(
        refused.is_some() || statuses.contains(&503),
        "the budget refused someone: {statuses:?}, {taken} taken"
    );
    assert!(
        f.stderr().contains("body_buffer_limit reached"),
        "{}",
        f.stderr()
    );
    // and their memory is back: a big body is taken again
    let r = request(
        f.http,
        "POST",
        "/big",
        &[("Content-Type", "application/json")],
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    good(&f, 1);
    f.delivered("good", 2);
    f.delivered("big", 1);
    f.delivered("stalled", 0);
    f.delivered("third", taken);
}

/// Item 6: negative times are times (before 1970), delivered as sent; a
/// time no output could write (beyond ±8×10¹² s) is refused before the ack
/// and counted, never acked and written as another time; every event
/// answered 200 is at the output.
#[test]
fn times_before_1970_are_times_and_impossible_ones_are_refused() {
    let cfg = config(r#"time_key = "t""#).replace(
        "tag_key = \"tag\"",
        "tag_key = \"tag\"\ntime_key = \"time\"\ntime_format = \"%Y-%m-%dT%H:%M:%S%.3fZ\"",
    );
    let f = Fuwa::start(&cfg, None);
    // before 1970 (a valid int64): delivered with its time
    let r = request(f.http, "POST", "/neg?time=-1", &[], br#"[{"a":1},{"a":2}]"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(post_json(f.http, "neg", r#"{"t":-5.25,"a":3}"#).status, 200);
    let got = f.delivered("neg", 3);
    let mut times: Vec<&str> = got.iter().filter_map(|v| v["time"].as_str()).collect();
    times.sort();
    assert_eq!(
        times,
        vec![
            "1969-12-31T23:59:54.750Z",
            "1969-12-31T23:59:59.000Z",
            "1969-12-31T23:59:59.000Z"
        ]
    );
    // beyond what any output can write: refused, counted, nothing kept
    let r = post_json(f.http, "far", r#"{"t":9e15,"a":1}"#);
    assert_eq!(r.status, 400, "{}", r.body);
    let r = request(
        f.http,
        "POST",
        "/far",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"time=-9000000000000&json=%7B%7D",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("outside"), "{}", r.body);
    assert_eq!(f.metric("fuwa_input_invalid_records_total"), 2.0);
    assert_eq!(post_json(f.http, "pos", "[]").status, 200);
    f.delivered("far", 0);
    assert_eq!(
        f.metric("fuwa_input_records_total"),
        3.0,
        "acked = delivered: {got:?}"
    );
}

/// Item 9: X-Forwarded-For is believed only from trusted_proxies, and then
/// its right-most untrusted address is the client.
#[test]
fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let f = Fuwa::start(&config(r#"remote_addr_key = "ip""#), None);
    let r = request(
        f.http,
        "POST",
        "/xff",
        &[("X-Forwarded-For", "6.6.6.6")],
        br#"{"a":1}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(f.delivered("xff", 1)[0]["ip"], "127.0.0.1");
    let f = Fuwa::start(
        &config("remote_addr_key = \"ip\"\ntrusted_proxies = [\"127.0.0.0/8\", \"10.0.0.0/8\"]"),
        None,
    );
    let r = request(
        f.http,
        "POST",
        "/xff",
        &[("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.1.1.1")],
        br#"{"a":1}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(f.delivered("xff", 1)[0]["ip"], "203.0.113.7");
}

fn check(cfg: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("fuwa.toml");
    std::fs::write(&p, cfg.replace("{dir}", &dir.path().display().to_string())).unwrap();
    Command::new(fuwa_bin())
        .args(["check", "-c"])
        .arg(&p)
        .output()
        .expect("fuwa check")
}

/// Item 9: CORS "*" with credentials, and bad limits, fail `fuwa check`
/// with exit 2 and a message naming the key.
#[test]
fn check_refuses_star_with_credentials_and_bad_limits() {
    for (extra, key) in [
        (
            "cors_allow_origins = [\"*\"]\ncors_allow_credentials = true",
            "cors_allow_credentials",
        ),
        (
            "trusted_proxies = [\"10.0.0.0/33\"]\nremote_addr_key = \"ip\"",
            "trusted_proxies",
        ),
        ("tag_length_limit = 0", "tag_length_limit"),
        ("max_connections = 0", "max_connections"),
        ("header_timeout = \"0s\"", "header_timeout"),
        ("idle_timeout = \"0s\"", "idle_timeout"),
        (
            "body_size_limit = \"2MiB\"\nbody_buffer_limit = \"1MiB\"",
            "body_buffer_limit",
        ),
    ] {
        let o = check(&config(extra));
        let err =
            String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(2), "{extra}: {err}");
        assert!(err.contains(key), "{extra}: names {key}: {err}");
    }
    let ok = check(&config(
        "cors_allow_origins = [\"https://a.example\"]\ncors_allow_credentials = true\ntag_length_limit = \"2KiB\"\nmax_connections = 100\nbody_buffer_limit = \"64MiB\"",
    ));
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

/// Item 4, the memory: 32 senders each stop 3.5 MiB into a 4 MiB body
/// (112 MiB on the wire) while the input may hold 16 MiB of bodies (the
/// default body_buffer_limit, 4 × body_size_limit): the agent's peak memory
/// grows by far less than what was sent, and a good client is served.
#[test]
fn stalled_senders_hold_no_more_than_the_budget() {
    let f = Fuwa::start(
        &config("body_size_limit = \"4MiB\"\nread_timeout = \"5s\""),
        None,
    );
    good(&f, 0);
    let pid = f.child.id();
    let before = common::proc_kib(pid, "VmRSS");
    let part = vec![b' '; 3584 * 1024];
    let senders: Vec<_> = (0..32)
        .map(|_| {
            let port = f.http;
            let part = part.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                let head = format!(
                    "POST /stalled HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    4 << 20
                );
                let sent = s.write_all(head.as_bytes()).and_then(|_| s.write_all(&part));
                // the answer: 503 (over the budget) or 408 (stalled)
                let mut r = BufReader::new(s);
                let mut status = String::new();
                let _ = r.read_line(&mut status);
                (sent.is_ok(), status)
            })
        })
        .collect();
    good(&f, 1);
    let mut answers = Vec::new();
    for t in senders {
        answers.push(t.join().expect("sender"));
    }
    let peak = common::proc_kib(pid, "VmHWM");
    let grew_mib = peak.saturating_sub(before) / 1024;
    eprintln!("peak memory grew by {grew_mib} MiB");
    // 16 MiB of bodies, hyper's buffers, allocator slack; not 112 MiB
    assert!(
        grew_mib < 56,
        "peak memory grew by {grew_mib} MiB (before {} MiB)",
        before / 1024
    );
    assert!(
        answers
            .iter()
            .all(|(_, st)| st.contains(" 503 ") || st.contains(" 408 ")),
        "{answers:?}"
    );
    assert!(
        answers.iter().any(|(_, st)| st.contains(" 503 ")),
        "{answers:?}"
    );
    good(&f, 2);
    f.delivered("good", 3);
    f.delivered("stalled", 0);
}
