//! The shared AWS layer (fuwa-aws) through the real binary: `role_arn` with
//! `sts_endpoint` / `sts_region` against moto's STS (the credentials the
//! output signs with change to the assumed role's, and calls succeed, into
//! an in-test Kinesis endpoint that records the signing key and into moto's
//! Kinesis), and `profile` (the named profile's keys win over the
//! environment's, as with `aws --profile`).

mod common;
mod kinesis_fake;

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::aws::{aws_env, py_script, read_request, MotoServer};
use common::*;
use kinesis_fake::{FakeKinesis, STREAM};
use rmpv::Value as V;
use serde_json::Value as J;

/// Starts the agent on `config` with extra environment (`""` removes a variable).
fn start_with_env(config: &str, env: &[(&str, &str)]) -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config
        .replace("{port}", "0")
        .replace("{dir}", &dir.path().display().to_string());
    std::fs::write(dir.path().join("fuwa.toml"), cfg).unwrap();
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

fn output(id: &str, tag: &str, stream: &str, endpoint: &str, extra: &str) -> String {
    format!(
        r#"
[[output]]
id = "{id}"
match = "{tag}"
type = "kinesis_streams"
stream_name = "{stream}"
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

const HEAD: &str = r#"[agent]
shutdown_timeout = "3s"

[[input]]
type = "forward"
bind = "127.0.0.1:{port}"
"#;

fn send(s: &mut TcpStream, tag: &str, ids: std::ops::Range<u64>) {
    static N: AtomicU64 = AtomicU64::new(1);
    let mut body = Vec::new();
    for i in ids {
        body.extend(mp(&V::Array(vec![
            V::from(1_717_162_200u32),
            V::Map(vec![
                (V::from("id"), V::from(i)),
                (V::from("user_id"), V::from(format!("u{}", i % 3))),
            ]),
        ])));
    }
    let chunk = format!("c{}", N.fetch_add(1, Ordering::Relaxed));
    let msg = V::Array(vec![
        V::from(tag),
        V::Binary(body),
        V::Map(vec![(V::from("chunk"), V::from(chunk.as_str()))]),
    ]);
    s.write_all(&mp(&msg)).unwrap();
    assert_eq!(
        read_mp(s),
        V::Map(vec![(V::from("ack"), V::from(chunk.as_str()))])
    );
}

/// Requests seen: head lines and body.
type Seen = Arc<Mutex<Vec<(Vec<String>, String)>>>;

/// An HTTP relay in front of moto that records each request (head lines
/// and body) on its way: what the agent's STS client sent.
struct Relay {
    port: u16,
    seen: Seen,
}

impl Relay {
    fn start(upstream: u16) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let seen = s2.clone();
                std::thread::spawn(move || {
                    let _ = relay(c, upstream, &seen);
                });
            }
        });
        Relay { port, seen }
    }
}

/// One request per connection: forwarded with `Connection: close`, the
/// answer copied back until moto closes.
fn relay(c: TcpStream, upstream: u16, seen: &Seen) -> std::io::Result<()> {
    let mut w = c.try_clone()?;
    let mut r = BufReader::new(c);
    let Some((head, body)) = read_request(&mut r)? else {
        return Ok(());
    };
    seen.lock()
        .unwrap()
        .push((head.clone(), String::from_utf8_lossy(&body).into_owned()));
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    let mut out = String::new();
    for h in &head {
        if !h.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(h);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    up.write_all(out.as_bytes())?;
    up.write_all(&body)?;
    let mut resp = Vec::new();
    BufReader::new(up).read_to_end(&mut resp)?;
    w.write_all(&resp)?;
    w.flush()?;
    Ok(())
}

#[test]
fn assume_role_through_moto_sts_signs_with_the_roles_credentials() {
    aws_env();
    let moto = MotoServer::start();
    py_script(
        "kinesis_util.py",
        &["create", &moto.endpoint(), "assumed", "ap-northeast-1", "2"],
    );
    let plain = FakeKinesis::start(vec![]);
    let assumed = FakeKinesis::start(vec![]);
    let sts = Relay::start(moto.port);
    let role = format!(
        "role_arn = \"arn:aws:iam::123456789012:role/fuwa-writer\"\nrole_session_name = \"fuwa-test\"\nexternal_id = \"ext-42\"\nsts_endpoint = \"http://127.0.0.1:{}\"\nsts_region = \"us-east-1\"",
        sts.port
    );
    let cfg = format!(
        "{HEAD}{}{}{}",
        output("plain", "plain", STREAM, &plain.endpoint(), ""),
        output("assumed", "assumed", STREAM, &assumed.endpoint(), &role),
        // one call in flight: moto's Kinesis loses records to concurrent calls
        output(
            "moto",
            "moto",
            "assumed",
            &moto.endpoint(),
            &format!("{role}\nmax_in_flight = 1"),
        ),
    );
    let a = Agent::start(&cfg);
    let mut s = a.connect();
    send(&mut s, "plain", 0..10);
    send(&mut s, "assumed", 0..10);
    send(&mut s, "moto", 0..10);
    assert_eq!(
        plain.wait_ids(10, &|| a.stderr()),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(
        assumed.wait_ids(10, &|| a.stderr()),
        (0..10).collect::<Vec<_>>()
    );

    // without role_arn: the environment's key, no session token
    for c in plain.calls() {
        assert_eq!(c.access_key, "testing");
        assert!(!c.session_token);
    }
    // with it: the temporary credentials moto's STS issued
    let calls = assumed.calls();
    assert!(!calls.is_empty());
    for c in &calls {
        assert_ne!(c.access_key, "testing", "signed with the role's key");
        assert!(!c.access_key.is_empty());
        assert!(
            c.session_token,
            "temporary credentials carry a session token"
        );
    }

    // and calls with the assumed role succeed against moto's Kinesis
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = py_script(
            "kinesis_util.py",
            &["read", &moto.endpoint(), "assumed", "ap-northeast-1"],
        );
        let v: J = serde_json::from_str(&out).unwrap();
        let n = v["records"].as_array().unwrap().len();
        if n >= 10 {
            assert_eq!(n, 10, "each event once");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} of 10 in moto after 60s:\n{}",
            a.stderr()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(!a.stderr().contains("dead-letter"), "{}", a.stderr());

    // what went to STS: AssumeRole with the role, session name and
    // external id, signed for sts_region with the environment's key
    let seen = sts.seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "STS was called at sts_endpoint");
    for (head, body) in &seen {
        assert!(body.contains("Action=AssumeRole"), "{body}");
        for want in [
            "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Ffuwa-writer",
            "RoleSessionName=fuwa-test",
            "ExternalId=ext-42",
        ] {
            assert!(body.contains(want), "{want} in {body}");
        }
        let auth = head
            .iter()
            .find(|h| h.to_ascii_lowercase().starts_with("authorization:"))
            .expect("a signed request");
        assert!(
            auth.contains("Credential=testing/") && auth.contains("/us-east-1/sts/aws4_request"),
            "{auth}"
        );
    }
}

#[test]
fn a_named_profile_supplies_the_credentials_and_region() {
    aws_env();
    let k = FakeKinesis::start(vec![]);
    let files = tempfile::tempdir().unwrap();
    let config = files.path().join("config");
    let creds = files.path().join("credentials");
    std::fs::write(
        &config,
        "[default]\nregion = us-west-2\n\n[profile fuwa-test]\nregion = eu-west-1\n",
    )
    .unwrap();
    std::fs::write(
        &creds,
        "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s1\n\n[fuwa-test]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = s2\n",
    )
    .unwrap();
    let section = output("k", "app", STREAM, &k.endpoint(), "profile = \"fuwa-test\"")
        .replace("region = \"ap-northeast-1\"\n", "");
    let a = start_with_env(
        &format!("{HEAD}{section}"),
        &[
            ("AWS_CONFIG_FILE", config.to_str().unwrap()),
            ("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap()),
            // the environment's keys stay set: the named profile wins
            ("AWS_ACCESS_KEY_ID", "AKIDENV"),
            ("AWS_SECRET_ACCESS_KEY", "s3"),
        ],
    );
    let mut s = a.connect();
    send(&mut s, "app", 0..5);
    assert_eq!(k.wait_ids(5, &|| a.stderr()), (0..5).collect::<Vec<_>>());
    for c in k.calls() {
        assert_eq!(c.access_key, "AKIDPROFILE");
        assert_eq!(c.region, "eu-west-1", "the profile's region");
    }
}
