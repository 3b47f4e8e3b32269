//! The forward input against hand-built frames: every mode and option, the
//! handshake, TLS, heartbeats and bad input, through the real binary.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use rmpv::Value as V;

fn et(secs: u32, nanos: u32) -> V {
    let mut d = secs.to_be_bytes().to_vec();
    d.extend_from_slice(&nanos.to_be_bytes());
    V::Ext(0, d)
}

fn rec(i: i64) -> V {
    V::Map(vec![
        (V::from("i"), V::from(i)),
        (V::from("msg"), V::from("hello")),
    ])
}

fn chunk_opt(c: &str) -> V {
    V::Map(vec![(V::from("chunk"), V::from(c))])
}

fn expect_ack(s: &mut std::net::TcpStream, chunk: &str) {
    let v = read_mp(s);
    assert_eq!(v, V::Map(vec![(V::from("ack"), V::from(chunk))]));
}

fn by_i(lines: &[(std::path::PathBuf, serde_json::Value)]) -> Vec<i64> {
    let mut v: Vec<i64> = lines
        .iter()
        .map(|(_, j)| j["i"].as_i64().unwrap_or(-1))
        .collect();
    v.sort();
    v
}

#[test]
fn every_mode_is_accepted_and_acked_with_times_kept() {
    let mut a = Agent::start(&forward_to_file(""));
    let mut s = a.connect();
    // Message, EventTime with nanoseconds
    send(
        &mut s,
        &mp(&V::Array(vec![
            V::from("m"),
            et(1_700_000_000, 123_456_789),
            rec(1),
            chunk_opt("c1"),
        ])),
    );
    expect_ack(&mut s, "c1");
    // Message, integer time, no option
    send(
        &mut s,
        &mp(&V::Array(vec![
            V::from("m"),
            V::from(1_700_000_001u32),
            rec(2),
        ])),
    );
    // Forward
    let entries = V::Array(vec![
        V::Array(vec![et(1_700_000_002, 1), rec(3)]),
        V::Array(vec![V::F64(1_700_000_003.5), rec(4)]),
    ]);
    send(
        &mut s,
        &mp(&V::Array(vec![V::from("f"), entries, chunk_opt("c2")])),
    );
    expect_ack(&mut s, "c2");
    // PackedForward with Fluent Bit's [EventTime, {meta}] time
    let mut body = mp(&V::Array(vec![et(1_700_000_004, 0), rec(5)]));
    body.extend(mp(&V::Array(vec![
        V::Array(vec![et(1_700_000_005, 5), V::Map(vec![])]),
        rec(6),
    ])));
    send(
        &mut s,
        &mp(&V::Array(vec![
            V::from("p"),
            V::Binary(body.clone()),
            chunk_opt("c3"),
        ])),
    );
    expect_ack(&mut s, "c3");
    // CompressedPackedForward: two gzip members
    let mut gz = Vec::new();
    for i in [7, 8] {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&mp(&V::Array(vec![et(1_700_000_006, 0), rec(i)])))
            .unwrap();
        gz.extend(e.finish().unwrap());
    }
    let opt = V::Map(vec![
        (V::from("chunk"), V::from("c4")),
        (V::from("compressed"), V::from("gzip")),
        (V::from("size"), V::from(12345)),
    ]);
    send(
        &mut s,
        &mp(&V::Array(vec![V::from("c"), V::Binary(gz), opt])),
    );
    expect_ack(&mut s, "c4");
    // compressed: "text" (node fluent-logger)
    let body = mp(&V::Array(vec![et(1_700_000_007, 0), rec(9)]));
    let opt = V::Map(vec![
        (V::from("chunk"), V::from("c5")),
        (V::from("compressed"), V::from("text")),
    ]);
    send(
        &mut s,
        &mp(&V::Array(vec![V::from("t"), V::Binary(body), opt])),
    );
    expect_ack(&mut s, "c5");
    // a TCP heartbeat (nil) is ignored
    send(&mut s, &[0xc0]);
    let lines = wait_lines(&a.path("out"), 9, Duration::from_secs(10));
    assert_eq!(by_i(&lines), (1..=9).collect::<Vec<_>>());
    let first = lines.iter().find(|(_, j)| j["i"] == 1).unwrap();
    assert_eq!(
        first.1["time"].as_f64().map(|f| f.to_string()),
        Some("1700000000.1234567".into()),
        "{:?}",
        first.1
    );
    assert_eq!(first.1["tag"], "m");
    let six = lines.iter().find(|(_, j)| j["i"] == 6).unwrap();
    assert!(six.0.ends_with("p.log"));
    assert!(a.stop().success());
}

#[test]
fn nanoseconds_survive_to_the_output() {
    let cfg = forward_to_file("").replace("unix_float", "rfc3339");
    let a = Agent::start(&cfg);
    let mut s = a.connect();
    send(
        &mut s,
        &mp(&V::Array(vec![
            V::from("n"),
            et(1_700_000_000, 5),
            rec(1),
            chunk_opt("x"),
        ])),
    );
    expect_ack(&mut s, "x");
    let lines = wait_lines(&a.path("out"), 1, Duration::from_secs(10));
    assert_eq!(lines[0].1["time"], "2023-11-14T22:13:20.000000005Z");
}

#[test]
fn json_mode_connection() {
    let a = Agent::start(&forward_to_file(""));
    let mut s = a.connect();
    s.write_all(br#"["j.one",1700000000,{"i":1,"big":18446744073709551615}]["j.one",1700000000.25,{"i":2},{"chunk":"jc"}]"#).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    let ack: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
    assert_eq!(ack, serde_json::json!({"ack": "jc"}));
    let lines = wait_lines(&a.path("out"), 2, Duration::from_secs(10));
    assert_eq!(by_i(&lines), vec![1, 2]);
    assert!(lines
        .iter()
        .any(|(_, j)| j["big"] == serde_json::json!(18446744073709551615u64)));
}

#[test]
fn bad_input_closes_only_that_connection() {
    let a = Agent::start(&forward_to_file(""));
    let mut good = a.connect();
    let mut bad = a.connect();
    let mut buf = [0u8; 16];
    // reserved byte 0xc1: malformed msgpack, the stream is lost: closed
    let mut bad2 = a.connect();
    send(&mut bad2, &[0x93, 0xc1]);
    assert_eq!(bad2.read(&mut buf).unwrap_or(0), 0);
    // a record that is not a map is skipped, the connection lives on
    send(
        &mut good,
        &mp(&V::Array(vec![
            V::from("g"),
            V::from(1),
            V::from("not a map"),
            chunk_opt("a"),
        ])),
    );
    expect_ack(&mut good, "a");
    send(
        &mut good,
        &mp(&V::Array(vec![
            V::from("g"),
            V::from(1),
            rec(1),
            chunk_opt("b"),
        ])),
    );
    expect_ack(&mut good, "b");
    let lines = wait_lines(&a.path("out"), 1, Duration::from_secs(10));
    assert_eq!(by_i(&lines), vec![1]);
    assert!(
        a.wait_stderr("127.0.0.1", Duration::from_secs(5)),
        "warnings name the peer: {}",
        a.stderr()
    );
    assert!(a.stderr().contains("record is not a map"), "{}", a.stderr());
    // a map at top level is not a message: refused (counted, logged), and
    // as its end is known the connection goes on
    send(&mut bad, &mp(&V::Map(vec![(V::from("x"), V::from(1))])));
    // so is an unknown compression, acked so that it does not come back
    send(
        &mut bad,
        &mp(&V::Array(vec![
            V::from("g"),
            V::Binary(vec![1, 2, 3]),
            V::Map(vec![
                (V::from("chunk"), V::from("lz4")),
                (V::from("compressed"), V::from("lz4")),
            ]),
        ])),
    );
    expect_ack(&mut bad, "lz4");
    send(
        &mut bad,
        &mp(&V::Array(vec![
            V::from("g"),
            V::from(1),
            rec(2),
            chunk_opt("after"),
        ])),
    );
    expect_ack(&mut bad, "after");
    let lines = wait_lines(&a.path("out"), 2, Duration::from_secs(10));
    assert_eq!(by_i(&lines), vec![1, 2]);
}

#[test]
fn message_length_limit_and_gzip_bombs() {
    let a = Agent::start(&forward_to_file("message_length_limit = \"64KiB\""));
    // too big a message
    let mut s = a.connect();
    let big = V::Map(vec![(V::from("x"), V::from("y".repeat(200_000)))]);
    let _ = s.write_all(&mp(&V::Array(vec![
        V::from("big"),
        V::from(1),
        big,
        chunk_opt("no"),
    ])));
    let mut buf = [0u8; 16];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    // a small gzip that inflates past the limit
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut entries = Vec::new();
    for _ in 0..2000 {
        entries.extend(mp(&V::Array(vec![
            V::from(1),
            V::Map(vec![(V::from("pad"), V::from("z".repeat(100)))]),
        ])));
    }
    e.write_all(&entries).unwrap();
    let gz = e.finish().unwrap();
    assert!(gz.len() < 64 * 1024);
    let mut s = a.connect();
    let opt = V::Map(vec![
        (V::from("chunk"), V::from("bomb")),
        (V::from("compressed"), V::from("gzip")),
    ]);
    s.write_all(&mp(&V::Array(vec![V::from("bomb"), V::Binary(gz), opt])))
        .unwrap();
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    assert!(
        a.wait_stderr("message_length_limit", Duration::from_secs(5)),
        "{}",
        a.stderr()
    );
    // the agent still serves
    let mut ok = a.connect();
    send(
        &mut ok,
        &mp(&V::Array(vec![
            V::from("ok"),
            V::from(1),
            rec(1),
            chunk_opt("fine"),
        ])),
    );
    expect_ack(&mut ok, "fine");
}

#[test]
fn udp_heartbeat_is_answered() {
    let a = Agent::start(&forward_to_file(""));
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    u.send_to(&[0xc0], ("127.0.0.1", a.port)).unwrap();
    let mut b = [0u8; 8];
    let (n, _) = u.recv_from(&mut b).unwrap();
    assert_eq!(&b[..n], b"\0");
}

fn helo(s: &mut std::net::TcpStream) -> (Vec<u8>, Vec<u8>) {
    let h = read_mp(s);
    let arr = h.as_array().unwrap();
    assert_eq!(arr[0], V::from("HELO"));
    let opts = arr[1].as_map().unwrap();
    let get = |k: &str| {
        opts.iter()
            .find(|(kk, _)| kk.as_str() == Some(k))
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let bytes = |v: V| match v {
        V::Binary(b) => b,
        V::String(s) => s.into_bytes(),
        other => panic!("{other:?}"),
    };
    (bytes(get("nonce")), bytes(get("auth")))
}

fn ping(nonce: &[u8], salt: &[u8], key: &str, user: Option<(&str, &str)>) -> Vec<u8> {
    fuwa_in_forward::auth::client_ping(nonce, salt, "client.local", key, user)
}

const SECURE: &str = r#"shared_key = "s3cret"
self_hostname = "fuwa-server"
users = [{ username = "alice", password = "wonder" }]"#;

#[test]
fn handshake_accepts_the_right_key_and_user() {
    let a = Agent::start(&forward_to_file(SECURE));
    let mut s = a.connect();
    let (nonce, salt) = helo(&mut s);
    assert_eq!(salt.len(), 16, "user auth announces a salt");
    send(
        &mut s,
        &ping(&nonce, &salt, "s3cret", Some(("alice", "wonder"))),
    );
    let pong = read_mp(&mut s);
    let p = pong.as_array().unwrap();
    assert_eq!(p[0], V::from("PONG"));
    assert_eq!(p[1], V::from(true), "{pong:?}");
    assert_eq!(p[3], V::from("fuwa-server"));
    send(
        &mut s,
        &mp(&V::Array(vec![
            V::from("sec"),
            V::from(1),
            rec(1),
            chunk_opt("ok"),
        ])),
    );
    expect_ack(&mut s, "ok");
    assert_eq!(
        wait_lines(&a.path("out"), 1, Duration::from_secs(10)).len(),
        1
    );
}

#[test]
fn handshake_refuses_wrong_key_wrong_password_and_no_handshake() {
    let a = Agent::start(&forward_to_file(SECURE));
    for (key, user, reason) in [
        ("wrong", Some(("alice", "wonder")), "shared_key mismatch"),
        (
            "s3cret",
            Some(("alice", "nope")),
            "username/password mismatch",
        ),
        (
            "s3cret",
            Some(("mallory", "wonder")),
            "username/password mismatch",
        ),
    ] {
        let mut s = a.connect();
        let (nonce, salt) = helo(&mut s);
        send(&mut s, &ping(&nonce, &salt, key, user));
        let pong = read_mp(&mut s);
        let p = pong.as_array().unwrap();
        assert_eq!(p[1], V::from(false));
        assert_eq!(p[2], V::from(reason));
        // whatever it sends next is not accepted: the server has closed
        let _ = s.write_all(&mp(&V::Array(vec![
            V::from("evil"),
            V::from(1),
            rec(666),
            chunk_opt("x"),
        ])));
        let mut b = [0u8; 8];
        assert_eq!(s.read(&mut b).unwrap_or(0), 0);
    }
    // a client that skips the handshake and sends events straight away
    let mut s = a.connect();
    let _ = helo(&mut s);
    send(
        &mut s,
        &mp(&V::Array(vec![
            V::from("evil"),
            V::from(1),
            rec(777),
            chunk_opt("y"),
        ])),
    );
    let pong = read_mp(&mut s);
    assert_eq!(pong.as_array().unwrap()[1], V::from(false));
    let mut b = [0u8; 8];
    assert_eq!(s.read(&mut b).unwrap_or(0), 0);
    std::thread::sleep(Duration::from_millis(400));
    assert!(
        read_json_lines(&a.path("out")).is_empty(),
        "nothing from a refused client is kept"
    );
    assert!(
        a.stderr().contains("authentication failed"),
        "{}",
        a.stderr()
    );
}

#[test]
fn tls_connections() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let extra = format!(
        "[input.tls]\ncert_path = \"{}\"\nkey_path = \"{}\"",
        cert_path.display(),
        key_path.display()
    );
    let a = Agent::start(&forward_to_file(&extra));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.cert.der().clone()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", a.port))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(&mp(&V::Array(vec![
            V::from("tls"),
            V::from(1),
            rec(42),
            chunk_opt("t"),
        ])))
        .await
        .unwrap();
        let mut b = vec![0u8; 64];
        let n = tls.read(&mut b).await.unwrap();
        let v = rmpv::decode::read_value(&mut &b[..n]).unwrap();
        assert_eq!(v, V::Map(vec![(V::from("ack"), V::from("t"))]));
    });
    // a plain-text client gets nothing accepted
    let mut plain = a.connect();
    let _ = plain.write_all(&mp(&V::Array(vec![
        V::from("tls"),
        V::from(1),
        rec(43),
        chunk_opt("p"),
    ])));
    let mut b = [0u8; 8];
    let _ = plain.read(&mut b);
    let lines = wait_lines(&a.path("out"), 1, Duration::from_secs(10));
    assert_eq!(by_i(&lines), vec![42]);
}

#[test]
fn many_connections_at_once_each_get_their_acks() {
    let a = Agent::start(&forward_to_file(""));
    let port = a.port;
    let handles: Vec<_> = (0..8)
        .map(|c| {
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                for m in 0..25 {
                    let mut body = Vec::new();
                    for k in 0..10 {
                        body.extend(mp(&V::Array(vec![
                            et(1_700_000_000, 0),
                            rec(c * 1000 + m * 10 + k),
                        ])));
                    }
                    let id = format!("{c}-{m}");
                    send(
                        &mut s,
                        &mp(&V::Array(vec![
                            V::from("many"),
                            V::Binary(body),
                            chunk_opt(&id),
                        ])),
                    );
                    expect_ack(&mut s, &id);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let lines = wait_lines(&a.path("out"), 2000, Duration::from_secs(10));
    assert_eq!(lines.len(), 2000);
    let mut ids = by_i(&lines);
    ids.dedup();
    assert_eq!(ids.len(), 2000, "no duplicates");
}

#[test]
fn events_before_a_bad_message_are_kept_and_acked() {
    let a = Agent::start(&forward_to_file(""));
    let mut s = a.connect();
    let mut b = mp(&V::Array(vec![
        V::from("keep"),
        V::from(1),
        rec(1),
        chunk_opt("k1"),
    ]));
    b.extend(mp(&V::Array(vec![V::from("keep"), V::from(1), rec(2)])));
    b.extend([0x93, 0xc1, 0xc1]); // then garbage
    s.write_all(&b).unwrap();
    expect_ack(&mut s, "k1");
    let mut rest = [0u8; 8];
    assert_eq!(
        s.read(&mut rest).unwrap_or(0),
        0,
        "closed after the garbage"
    );
    let lines = wait_lines(&a.path("out"), 2, Duration::from_secs(10));
    assert_eq!(by_i(&lines), vec![1, 2]);
}
