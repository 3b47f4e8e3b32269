//! The HTTP input through the real binary: every body kind (object, array,
//! NDJSON, msgpack, form json= and msgpack=, beacon text/plain, gzip), the
//! `time` parameter and time_key, each error status (400 with nothing kept,
//! 401, 403, 404, 405, 413 plain/chunked/gzip, 415, 503 under backpressure),
//! CORS allowed and refused, keep-alive.
//!
//! Over 600 lines for a reason: one feature (the HTTP input's contract),
//! one body kind or status a test, sharing one harness.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use rmpv::Value as V;

/// One keep-alive HTTP/1.1 connection written by hand.
struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
    port: u16,
    /// the server said `Connection: close`: the next request opens a new one
    reconnect: bool,
    /// connections opened so far
    connections: usize,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Client {
    fn new(port: u16) -> Client {
        let (r, w) = Self::open(port);
        Client {
            r,
            w,
            port,
            reconnect: false,
            connections: 1,
        }
    }

    fn open(port: u16) -> (BufReader<TcpStream>, TcpStream) {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        (BufReader::new(s.try_clone().unwrap()), s)
    }

    fn send_head(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        len: Option<usize>,
    ) {
        if self.reconnect {
            (self.r, self.w) = Self::open(self.port);
            self.reconnect = false;
            self.connections += 1;
        }
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(n) = len {
            req.push_str(&format!("Content-Length: {n}\r\n"));
        }
        req.push_str("\r\n");
        self.w.write_all(req.as_bytes()).unwrap();
    }

    fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        self.send_head(method, path, headers, Some(body.len()));
        self.w.write_all(body).unwrap();
        self.reply()
    }

    fn post(&mut self, path: &str, ctype: &str, body: &[u8]) -> Reply {
        self.request("POST", path, &[("Content-Type", ctype)], body)
    }

    fn reply(&mut self) -> Reply {
        let mut line = String::new();
        self.r.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("bad status line {line:?}"))
            .parse()
            .unwrap();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.r.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let mut body = vec![0; len];
        self.r.read_exact(&mut body).unwrap();
        if headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"))
        {
            self.reconnect = true;
        }
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

/// http on {port} → file output {dir}/out/<tag>.log, memory buffer.
fn config(input_extra: &str) -> String {
    input_to_file("http", input_extra)
}

fn lines_of(a: &Agent, tag: &str) -> Vec<serde_json::Value> {
    read_json_lines(&a.path("out"))
        .into_iter()
        .filter(|(_, v)| v["tag"] == tag)
        .map(|(_, v)| v)
        .collect()
}

fn wait_tag(a: &Agent, tag: &str, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = lines_of(a, tag);
        if v.len() >= n || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn urlencode(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.' {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

fn time_of(v: &serde_json::Value) -> f64 {
    v["time"]
        .as_f64()
        .unwrap_or_else(|| panic!("no time in {v}"))
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn every_body_kind_on_one_keep_alive_connection() {
    let a = Agent::start(&config("time_key = \"ts\""));
    let mut c = Client::new(a.port);
    let t0 = now();
    let ok = |r: Reply| assert_eq!(r.status, 200, "{}", r.body);

    ok(c.post(
        "/k.object",
        "application/json",
        br#"{"kind":"object","n":1,"nested":{"a":[1,2.5,null,true]}}"#,
    ));
    ok(c.post(
        "/k.array",
        "application/json",
        br#" [ {"i":1} , {"i":2},{"i":3} ] "#,
    ));
    ok(c.post(
        "/k.ndjson",
        "application/x-ndjson",
        b"{\"i\":1}\n{\"i\":2}\r\n\n{\"i\":3}\n",
    ));
    let map = |i: i64| {
        V::Map(vec![
            (V::from("i"), V::from(i)),
            (V::from("s"), V::from("mp")),
        ])
    };
    let mut mp_body = mp(&map(1));
    mp_body.extend(mp(&V::Array(vec![map(2), map(3)])));
    ok(c.post("/k.msgpack", "application/msgpack", &mp_body));
    let form = format!("json={}", urlencode(br#"{"via":"form json","x":"a&b=c"}"#));
    ok(c.post(
        "/k.formjson",
        "application/x-www-form-urlencoded",
        form.as_bytes(),
    ));
    let form = format!(
        "msgpack={}",
        urlencode(&mp(&V::Array(vec![map(7), map(8)])))
    );
    ok(c.post(
        "/k.formmsgpack",
        "application/x-www-form-urlencoded",
        form.as_bytes(),
    ));
    // navigator.sendBeacon(url, JSON.stringify(...)) sends text/plain
    ok(c.post(
        "/k.beacon",
        "text/plain;charset=UTF-8",
        br#"{"event":"pageview","path":"/n/abc"}"#,
    ));
    let gz = gzip(br#"[{"z":1},{"z":2}]"#);
    ok(c.request(
        "POST",
        "/k.gzip",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &gz,
    ));
    // Fluentd's time parameter, and time_key in records (JSON and msgpack)
    ok(c.post(
        "/k.timeparam?time=1600000000.25",
        "application/json",
        br#"{"a":1}"#,
    ));
    ok(c.post(
        "/k.timekey",
        "application/json",
        br#"[{"ts":1700000000.5,"b":1},{"ts":"2023-11-14T22:13:21Z","b":2}]"#,
    ));
    let mp_time = mp(&V::Map(vec![
        (V::from("ts"), V::from(1700000002)),
        (V::from("b"), V::from(3)),
    ]));
    ok(c.post("/k.timekey", "application/msgpack", &mp_time));
    ok(c.post("/k.empty", "application/json", b"[]"));

    let o = wait_tag(&a, "k.object", 1);
    assert_eq!(o.len(), 1);
    assert_eq!(o[0]["kind"], "object");
    assert_eq!(o[0]["nested"], serde_json::json!({"a":[1,2.5,null,true]}));
    assert!((time_of(&o[0]) - t0).abs() < 5.0, "arrival time: {}", o[0]);
    for (tag, n) in [("k.array", 3), ("k.ndjson", 3)] {
        let v = wait_tag(&a, tag, n);
        let is: Vec<_> = v.iter().map(|r| r["i"].as_i64().unwrap()).collect();
        assert_eq!(is, vec![1, 2, 3], "{tag}");
    }
    let v = wait_tag(&a, "k.msgpack", 3);
    assert_eq!(
        v.iter()
            .map(|r| r["i"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(v.iter().all(|r| r["s"] == "mp"));
    let v = wait_tag(&a, "k.formjson", 1);
    assert_eq!(v[0]["x"], "a&b=c");
    let v = wait_tag(&a, "k.formmsgpack", 2);
    assert_eq!(
        v.iter()
            .map(|r| r["i"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![7, 8]
    );
    let v = wait_tag(&a, "k.beacon", 1);
    assert_eq!(v[0]["event"], "pageview");
    let v = wait_tag(&a, "k.gzip", 2);
    assert_eq!(v.len(), 2);
    let v = wait_tag(&a, "k.timeparam", 1);
    assert!((time_of(&v[0]) - 1_600_000_000.25).abs() < 1e-3, "{}", v[0]);
    let v = wait_tag(&a, "k.timekey", 3);
    let times: Vec<f64> = v.iter().map(time_of).collect();
    assert!((times[0] - 1_700_000_000.5).abs() < 1e-3, "{v:?}");
    assert!((times[1] - 1_700_000_001.0).abs() < 1e-3, "{v:?}");
    assert!((times[2] - 1_700_000_002.0).abs() < 1e-3, "{v:?}");
    assert!(
        v.iter().all(|r| r.get("ts").is_none()),
        "time_key taken out: {v:?}"
    );
    assert!(lines_of(&a, "k.empty").is_empty());

    // the same connection still serves; several more requests on it
    for i in 0..20 {
        let r = c.post(
            "/k.keepalive",
            "application/json",
            format!("{{\"i\":{i}}}").as_bytes(),
        );
        assert_eq!(r.status, 200);
        assert_ne!(r.header("connection"), Some("close"));
    }
    assert_eq!(wait_tag(&a, "k.keepalive", 20).len(), 20);
    assert_eq!(
        c.connections, 1,
        "every request above went on one connection"
    );
}

#[test]
fn malformed_bodies_get_400_and_nothing_of_them_is_kept() {
    let a = Agent::start(&config("time_key = \"ts\""));
    let mut c = Client::new(a.port);
    let good = r#"{"kept":"must not be"}"#;
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "application/json",
            "",
            format!("[{good},{good},{{\"x\": oops}}]").into_bytes(),
        ),
        (
            "application/json",
            "",
            format!("[{good},{good}").into_bytes(),
        ),
        ("application/json", "", format!("[{good},]").into_bytes()),
        ("application/json", "", format!("[{good},1]").into_bytes()),
        ("application/json", "", format!("{good} 42").into_bytes()),
        ("application/json", "", format!("{good}}}").into_bytes()),
        ("application/json", "", b"".to_vec()),
        ("application/json", "", b"\"just a string\"".to_vec()),
        (
            "application/x-ndjson",
            "",
            format!("{good}\n{good}\n{{\"a\":\n").into_bytes(),
        ),
        ("text/plain", "", b"\xff\xfe{}".to_vec()),
        (
            "application/json",
            "",
            format!("[{good},{{\"ts\":\"yesterday\"}}]").into_bytes(),
        ),
        ("application/msgpack", "", {
            let mut b = mp(&V::Map(vec![(V::from("kept"), V::from("must not be"))]));
            b.extend_from_slice(&[0x82, 0xa1, b'a']);
            b
        }),
        ("application/msgpack", "", {
            let mut b = mp(&V::Map(vec![(V::from("kept"), V::from("must not be"))]));
            b.extend(mp(&V::from(5)));
            b
        }),
        ("application/x-www-form-urlencoded", "", b"foo=bar".to_vec()),
        (
            "application/x-www-form-urlencoded",
            "",
            format!("json={}", urlencode(format!("[{good},{{]").as_bytes())).into_bytes(),
        ),
        (
            "application/x-www-form-urlencoded",
            "",
            b"json=%zz".to_vec(),
        ),
        ("application/json", "gzip", b"this is not gzip".to_vec()),
        ("application/json", "gzip", {
            let mut g = gzip(format!("[{good},{good}]").as_bytes());
            g.truncate(g.len() - 6);
            g
        }),
    ];
    for (ct, enc, body) in &cases {
        let mut h = vec![("Content-Type", *ct)];
        if !enc.is_empty() {
            h.push(("Content-Encoding", *enc));
        }
        let r = c.request("POST", "/bad", &h, body);
        assert_eq!(
            r.status,
            400,
            "{ct} {:?}: {}",
            String::from_utf8_lossy(body),
            r.body
        );
        assert!(!r.body.trim().is_empty(), "400 says why");
    }
    let r = c.post("/bad?time=noon", "application/json", good.as_bytes());
    assert_eq!(r.status, 400);
    assert!(r.body.contains("time"), "{}", r.body);
    // the reason names the record
    let r = c.post(
        "/bad",
        "application/json",
        format!("[{good},{good},{{\"x\":}}]").as_bytes(),
    );
    assert!(r.body.contains("record 3"), "{}", r.body);
    for path in ["/", "/a..b", "/.a", "/a.", "/a%20b", "/a*b"] {
        let r = c.post(path, "application/json", good.as_bytes());
        assert_eq!(r.status, 400, "{path}: {}", r.body);
    }
    // after all that, on the same connection and tag, one good event
    let r = c.post("/bad", "application/json", br#"{"marker":true}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(c.connections, 1, "400s keep the connection");
    let v = wait_tag(&a, "bad", 1);
    std::thread::sleep(Duration::from_millis(300));
    let v2 = lines_of(&a, "bad");
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v2.len(), 1, "only the marker was kept: {v2:?}");
    assert_eq!(v2[0]["marker"], true);
    assert!(
        a.stderr().contains("400"),
        "a refusal is logged: {}",
        a.stderr()
    );
}

#[test]
fn auth_limits_methods_and_paths() {
    let a = Agent::start(&config(
        "auth_token = \"s3cret-token\"\nbody_size_limit = \"1KiB\"",
    ));
    let mut c = Client::new(a.port);
    let body = br#"{"a":1}"#;
    let r = c.post("/auth", "application/json", body);
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .unwrap_or("")
        .starts_with("Bearer"));
    let r = c.request(
        "POST",
        "/auth",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer wrong"),
        ],
        body,
    );
    assert_eq!(r.status, 401);
    let auth = ("Authorization", "Bearer s3cret-token");
    let r = c.request(
        "POST",
        "/auth",
        &[("Content-Type", "application/json"), auth],
        body,
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // health needs no token; unknown paths and methods
    assert_eq!(c.request("GET", "/health", &[], b"").status, 200);
    assert_eq!(c.request("GET", "/nope", &[], b"").status, 404);
    let r = c.request("PUT", "/auth", &[auth], body);
    assert_eq!(r.status, 405);
    assert!(r.header("allow").unwrap_or("").contains("POST"));
    assert_eq!(c.request("DELETE", "/health", &[], b"").status, 405);
    let r = c.request(
        "POST",
        "/auth",
        &[("Content-Type", "application/xml"), auth],
        b"<a/>",
    );
    assert_eq!(r.status, 415);
    let r = c.request(
        "POST",
        "/auth",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "br"),
            auth,
        ],
        body,
    );
    assert_eq!(r.status, 415);

    // 413 from Content-Length alone: answered before the body is sent
    let mut c2 = Client::new(a.port);
    c2.send_head(
        "POST",
        "/big",
        &[("Content-Type", "application/json"), auth],
        Some(5000),
    );
    let r = c2.reply();
    assert_eq!(r.status, 413, "{}", r.body);
    // chunked body growing past the limit
    let mut c3 = Client::new(a.port);
    c3.send_head(
        "POST",
        "/big",
        &[
            ("Content-Type", "application/json"),
            ("Transfer-Encoding", "chunked"),
            auth,
        ],
        None,
    );
    let chunk = format!(
        "[{}]",
        vec![r#"{"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#; 40].join(",")
    );
    let _ =
        c3.w.write_all(format!("{:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len()).as_bytes());
    assert_eq!(c3.reply().status, 413);
    // a gzip bomb: about 500 bytes on the wire, 512 KiB inflated
    let mut bomb_src = b"[{\"pad\":\"".to_vec();
    bomb_src.extend(std::iter::repeat_n(b'x', 512 << 10));
    bomb_src.extend_from_slice(b"\"}]");
    let bomb = gzip(&bomb_src);
    assert!(bomb.len() < 1024, "{}", bomb.len());
    let mut c4 = Client::new(a.port);
    let r = c4.request(
        "POST",
        "/big",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
            auth,
        ],
        &bomb,
    );
    assert_eq!(r.status, 413, "{}", r.body);
    // a body just under the limit is fine, gzipped or not
    let small = format!("{{\"pad\":\"{}\"}}", "y".repeat(900));
    let r = c4.request(
        "POST",
        "/big",
        &[("Content-Type", "application/json"), auth],
        small.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = c4.request(
        "POST",
        "/big",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
            auth,
        ],
        &gzip(small.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = wait_tag(&a, "big", 2);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lines_of(&a, "big").len(), 2, "{v:?}");
    assert_eq!(wait_tag(&a, "auth", 1).len(), 1);
}

#[test]
fn cors_preflight_and_simple_requests() {
    let a = Agent::start(&config(
        "cors_allow_origins = [\"https://note.com\", \"https://*.example.com\"]",
    ));
    let mut c = Client::new(a.port);
    let pre = |c: &mut Client, origin: &str| {
        c.request(
            "OPTIONS",
            "/web.events",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "content-type"),
            ],
            b"",
        )
    };
    let r = pre(&mut c, "https://note.com");
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://note.com")
    );
    assert!(r
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("content-type")
    );
    let r = pre(&mut c, "https://shop.example.com");
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://shop.example.com")
    );
    let r = pre(&mut c, "https://evil.org");
    assert_eq!(r.status, 403);
    assert!(r.header("access-control-allow-origin").is_none());

    let post = |c: &mut Client, origin: Option<&str>, i: i64| {
        let mut h = vec![("Content-Type", "text/plain;charset=UTF-8")];
        if let Some(o) = origin {
            h.push(("Origin", o));
        }
        c.request(
            "POST",
            "/web.events",
            &h,
            format!("{{\"i\":{i}}}").as_bytes(),
        )
    };
    let r = post(&mut c, Some("https://note.com"), 1);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://note.com")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    let r = post(&mut c, Some("https://evil.org"), 2);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.header("access-control-allow-origin").is_none());
    let r = post(&mut c, None, 3);
    assert_eq!(r.status, 200, "no Origin: not a browser, no CORS");
    assert!(r.header("access-control-allow-origin").is_none());
    let v = wait_tag(&a, "web.events", 2);
    std::thread::sleep(Duration::from_millis(300));
    let got: BTreeSet<i64> = lines_of(&a, "web.events")
        .iter()
        .map(|r| r["i"].as_i64().unwrap())
        .collect();
    assert_eq!(got, BTreeSet::from([1, 3]), "{v:?}");
}

/// Two outputs with tiny file buffers whose file output is down: one blocks
/// (overflow_action = block: 503 after backpressure_timeout), one rejects
/// (503 at once). What got 503 is not kept; what got 200 is delivered once
/// the output is back.
#[test]
fn backpressure_answers_503_with_retry_after_and_keeps_only_what_got_2xx() {
    let buffer = |action: &str| {
        format!(
            "[output.buffer]\ntype = \"file\"\nflush_interval = \"50ms\"\nchunk_limit_size = \"2KiB\"\ntotal_limit_size = \"6KiB\"\noverflow_action = \"{action}\"\nretry_wait = \"100ms\"\nretry_max_interval = \"200ms\"\nretry_forever = true\n"
        )
    };
    let cfg = format!(
        r#"[agent]
shutdown_timeout = "2s"

[[input]]
type = "http"
bind = "127.0.0.1:{{port}}"
backpressure_timeout = "300ms"
retry_after = "2s"

[[output]]
match = "block.**"
type = "file"
path = "{{dir}}/out/blocked/block.log"
{}
[[output]]
match = "reject.**"
type = "file"
path = "{{dir}}/out/blocked/reject.log"
{}"#,
        buffer("block"),
        buffer("reject")
    );
    let a = Agent::start(&cfg);
    std::fs::create_dir_all(a.path("out")).unwrap();
    std::fs::write(a.path("out/blocked"), b"the output is down").unwrap();
    let mut c = Client::new(a.port);
    let pad = "p".repeat(400);
    for tag in ["block.x", "reject.x"] {
        let mut accepted = Vec::new();
        let mut refused = Vec::new();
        for i in 0..60 {
            let started = Instant::now();
            let r = c.post(
                &format!("/{tag}"),
                "application/json",
                format!("{{\"i\":{i},\"pad\":\"{pad}\"}}").as_bytes(),
            );
            match r.status {
                200 => accepted.push(i),
                503 => {
                    assert_eq!(r.header("retry-after"), Some("2"));
                    if tag == "block.x" {
                        assert!(
                            started.elapsed() >= Duration::from_millis(250),
                            "waited for room first"
                        );
                    } else {
                        assert!(
                            started.elapsed() < Duration::from_millis(250),
                            "reject answers at once"
                        );
                    }
                    refused.push(i);
                    if refused.len() >= 3 {
                        break;
                    }
                }
                s => panic!("{tag}: unexpected {s}: {}", r.body),
            }
        }
        assert!(
            !accepted.is_empty() && accepted.len() < 40,
            "{tag}: accepted {accepted:?}"
        );
        assert_eq!(refused.len(), 3, "{tag}: 503 under backpressure");
        eprintln!("{tag}: {} accepted before 503", accepted.len());
        // the output comes back: exactly the accepted events arrive
        if tag == "reject.x" {
            std::fs::remove_file(a.path("out/blocked")).unwrap();
            let deadline = Instant::now() + Duration::from_secs(15);
            let want: BTreeSet<i64> = accepted.iter().copied().collect();
            loop {
                let got: Vec<i64> = read_json_lines(&a.path("out/blocked"))
                    .into_iter()
                    .filter(|(p, _)| p.ends_with("reject.log"))
                    .map(|(_, v)| v["i"].as_i64().unwrap())
                    .collect();
                let set: BTreeSet<i64> = got.iter().copied().collect();
                if set == want {
                    assert_eq!(got.len(), want.len(), "no duplicates");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "delivered {got:?}, accepted {want:?}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
