//! HTTPS proxy support of the AWS layer (fuwa-aws) through the real binary:
//! a tiny CONNECT proxy on 127.0.0.1 written here, in front of an HTTPS
//! Kinesis endpoint (tests/kinesis_fake with TLS, its certificate issued by
//! a test CA that the agent trusts through SSL_CERT_FILE). The `proxy` key
//! (with Basic proxy authentication), `HTTPS_PROXY` from the environment,
//! and `NO_PROXY` bypassing it.

mod common;
mod kinesis_fake;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::aws::aws_env;
use common::*;
use kinesis_fake::{FakeKinesis, STREAM};
use rmpv::Value as V;

/// Request lines the proxy saw, each with its Proxy-Authorization.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A CONNECT proxy: records each request line and its Proxy-Authorization,
/// tunnels CONNECT to 127.0.0.1:<port>, refuses anything else.
struct ConnectProxy {
    port: u16,
    seen: Seen,
}

impl ConnectProxy {
    fn start() -> ConnectProxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let seen = s2.clone();
                std::thread::spawn(move || {
                    let _ = tunnel(c, &seen);
                });
            }
        });
        ConnectProxy { port, seen }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<(String, Option<String>)> {
        self.seen.lock().unwrap().clone()
    }
}

fn tunnel(c: TcpStream, seen: &Mutex<Vec<(String, Option<String>)>>) -> std::io::Result<()> {
    let mut r = BufReader::new(c.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut auth = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("proxy-authorization") {
                auth = Some(v.trim().to_string());
            }
        }
    }
    let line = line.trim().to_string();
    seen.lock().unwrap().push((line.clone(), auth));
    let mut w = c.try_clone()?;
    let target = line
        .strip_prefix("CONNECT ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|hp| hp.rsplit_once(':'))
        .and_then(|(_, p)| p.parse::<u16>().ok());
    let Some(port) = target else {
        w.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")?;
        return Ok(());
    };
    let up = TcpStream::connect(("127.0.0.1", port))?;
    w.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")?;
    // bytes the client sent after the CONNECT head (none, with TLS) are in r
    let buffered = r.buffer().to_vec();
    let mut up_w = up.try_clone()?;
    up_w.write_all(&buffered)?;
    let mut up_r = up.try_clone()?;
    let down = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut w);
        let _ = w.shutdown(Shutdown::Write);
    });
    let mut c_r = r.into_inner();
    let _ = std::io::copy(&mut c_r, &mut up_w);
    let _ = up_w.shutdown(Shutdown::Write);
    let _ = down.join();
    Ok(())
}

/// A test CA and a certificate for `localhost` it issued; the CA's PEM.
fn tls() -> (Arc<rustls::ServerConfig>, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "fuwa test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca_cert, &ca_key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    (Arc::new(cfg), ca_cert.pem())
}

fn start_with_env(config: &str, env: &[(&str, &str)]) -> Agent {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fuwa.toml"), config.replace("{port}", "0")).unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let stdout = Arc::new(Mutex::new(String::new()));
    let child = spawn_agent_with(dir.path(), stdout.clone(), stderr.clone(), env);
    let mut a = Agent {
        child,
        dir,
        port: 0,
        stderr,
        stdout,
    };
    a.wait_port();
    a
}

fn config(endpoint: &str, extra: &str) -> String {
    format!(
        r#"[agent]
shutdown_timeout = "3s"

[[input]]
type = "forward"
bind = "127.0.0.1:{{port}}"

[[output]]
id = "k"
match = "**"
type = "kinesis_streams"
stream_name = "{STREAM}"
region = "ap-northeast-1"
endpoint = "{endpoint}"
{extra}
[output.buffer]
flush_interval = "200ms"
retry_wait = "100ms"
retry_max_interval = "500ms"
"#
    )
}

fn send(s: &mut TcpStream, ids: std::ops::Range<u64>) {
    static C: AtomicU64 = AtomicU64::new(1);
    let mut body = Vec::new();
    for i in ids {
        body.extend(mp(&V::Array(vec![
            V::from(1_717_162_200u32),
            V::Map(vec![(V::from("id"), V::from(i))]),
        ])));
    }
    let chunk = format!("c{}", C.fetch_add(1, Ordering::Relaxed));
    let msg = V::Array(vec![
        V::from("app"),
        V::Binary(body),
        V::Map(vec![(V::from("chunk"), V::from(chunk.as_str()))]),
    ]);
    s.write_all(&mp(&msg)).unwrap();
    assert_eq!(
        read_mp(s),
        V::Map(vec![(V::from("ack"), V::from(chunk.as_str()))])
    );
}

/// Environment for the agent: trust the test CA, no proxy variables
/// inherited from the test's environment.
fn base_env(ca: &std::path::Path) -> Vec<(&'static str, String)> {
    let mut e: Vec<(&str, String)> = vec![("SSL_CERT_FILE", ca.display().to_string())];
    for v in [
        "NO_PROXY",
        "no_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        e.push((v, String::new()));
    }
    e
}

fn with(
    base: &[(&'static str, String)],
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    let mut e: Vec<(&str, String)> = base
        .iter()
        .filter(|(k, _)| !extra.iter().any(|(x, _)| x == k))
        .cloned()
        .collect();
    e.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    e
}

fn refs<'a>(e: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    e.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn the_proxy_key_tunnels_https_with_connect_and_basic_auth() {
    aws_env();
    let (server, ca) = tls();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let k = FakeKinesis::start_with(vec![], Some(server));
    let proxy = ConnectProxy::start();
    let url = proxy.url().replace("http://", "http://fuwa:s3cret@");
    let env = base_env(&ca_file);
    let a = start_with_env(
        &config(&k.endpoint(), &format!("proxy = \"{url}\"")),
        &refs(&env),
    );
    let mut s = a.connect();
    send(&mut s, 0..20);
    assert_eq!(k.wait_ids(20, &|| a.stderr()), (0..20).collect::<Vec<_>>());
    let seen = proxy.seen();
    let want = format!("CONNECT localhost:{} HTTP/1.1", k.port);
    assert!(
        !seen.is_empty() && seen.iter().all(|(l, _)| *l == want),
        "{seen:?}"
    );
    // base64("fuwa:s3cret")
    assert_eq!(seen[0].1.as_deref(), Some("Basic ZnV3YTpzM2NyZXQ="));
}

#[test]
fn https_proxy_from_the_environment_and_no_proxy_bypassing_it() {
    aws_env();
    let (server, ca) = tls();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let k = FakeKinesis::start_with(vec![], Some(server));
    let proxy = ConnectProxy::start();
    let base = base_env(&ca_file);

    let env = with(&base, &[("HTTPS_PROXY", &proxy.url())]);
    let mut a = start_with_env(&config(&k.endpoint(), ""), &refs(&env));
    let mut s = a.connect();
    send(&mut s, 0..10);
    assert_eq!(k.wait_ids(10, &|| a.stderr()), (0..10).collect::<Vec<_>>());
    let tunnelled = proxy.seen().len();
    assert!(tunnelled > 0, "HTTPS_PROXY is honoured");
    assert!(proxy.seen()[0].1.is_none());
    a.stop();

    // NO_PROXY names the endpoint's host: straight there, the proxy unused
    let env = with(
        &base,
        &[
            ("https_proxy", &proxy.url()),
            ("no_proxy", "example.com,localhost"),
        ],
    );
    let a = start_with_env(&config(&k.endpoint(), ""), &refs(&env));
    let mut s = a.connect();
    send(&mut s, 10..20);
    assert_eq!(k.wait_ids(20, &|| a.stderr()), (0..20).collect::<Vec<_>>());
    assert_eq!(k.violations(), Vec::<String>::new());
    assert_eq!(proxy.seen().len(), tunnelled, "{:?}", proxy.seen());
}

#[test]
fn an_unreachable_proxy_is_retried_not_fatal() {
    aws_env();
    let (server, ca) = tls();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let k = FakeKinesis::start_with(vec![], Some(server));
    // a port that refuses: bound, then closed
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://127.0.0.1:{}", dead.local_addr().unwrap().port());
    drop(dead);
    let env = base_env(&ca_file);
    let a = start_with_env(
        &config(&k.endpoint(), &format!("proxy = \"{dead_url}\"")),
        &refs(&env),
    );
    let mut s = a.connect();
    send(&mut s, 0..3);
    assert!(
        a.wait_stderr("will retry", std::time::Duration::from_secs(30)),
        "{}",
        a.stderr()
    );
    assert!(!a.stderr().contains("dead-letter"), "{}", a.stderr());
}
