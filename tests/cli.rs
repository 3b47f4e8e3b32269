//! The command line: --version, --help, `check`, `run` refusing bad
//! configs, every example config in conf/, the embedded default, outputs,
//! retries and graceful shutdown.

#[path = "common/check.rs"]
mod check;
mod common;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::*;
use rmpv::Value as V;

fn fuwa(args: &[&str]) -> std::process::Output {
    Command::new(bin()).args(args).output().expect("run fuwa")
}

fn rec(i: i64) -> V {
    V::Map(vec![(V::from("i"), V::from(i))])
}

fn msg(tag: &str, secs: u32, i: i64, chunk: &str) -> Vec<u8> {
    let mut d = secs.to_be_bytes().to_vec();
    d.extend_from_slice(&0u32.to_be_bytes());
    mp(&V::Array(vec![
        V::from(tag),
        V::Ext(0, d),
        rec(i),
        V::Map(vec![(V::from("chunk"), V::from(chunk))]),
    ]))
}

fn acked(s: &mut std::net::TcpStream, chunk: &str) {
    assert_eq!(read_mp(s), V::Map(vec![(V::from("ack"), V::from(chunk))]));
}

#[test]
fn version_and_help() {
    let o = fuwa(&["--version"]);
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("fuwa 0."),
        "{o:?}"
    );
    let o = fuwa(&["--help"]);
    let h = String::from_utf8_lossy(&o.stdout);
    assert!(
        h.contains("run") && h.contains("check") && h.contains("forward"),
        "{h}"
    );
    let o = fuwa(&["run", "--help"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("--data-dir"));
}

#[test]
fn every_example_config_passes_check() {
    // the examples issue #7 asks for, besides whatever else is in conf/
    for name in [
        "quickstart.toml",
        "action-logs-api.toml",
        "sidecar-tail-to-firehose.toml",
        "forward-aggregator.toml",
        "app-to-aggregator.toml",
    ] {
        assert!(repo_root().join("conf").join(name).is_file(), "conf/{name}");
    }
    let mut n = 0;
    let mut failures = Vec::new();
    for e in std::fs::read_dir(repo_root().join("conf")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().map(|x| x == "toml").unwrap_or(false) {
            if let Err(e) = check::check(bin(), &p) {
                failures.push(format!("{}:\n{e}", p.display()));
            }
            n += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(n >= 9, "{n} files");
}

const BAD: &str = r#"[agent]
timezone = "Mars/Olympus"

[[input]]
type = "forward"
bind = "not an address"
colour = "blue"

[[output]]
match = "app.{a,b"
type = "file"
path = "/tmp/${nope}"
[output.buffer]
flush_interval = "a while"
"#;

#[test]
fn check_lists_every_problem_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, BAD).unwrap();
    let o = fuwa(&["check", "-c", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    let f = p.display().to_string();
    for expect in [
        format!("{f}:2: agent.timezone: `Mars/Olympus` is not an IANA time zone"),
        format!("{f}:7: input[0].colour: unknown field `colour`"),
        format!("{f}:10: output[0].match:"),
        format!("{f}:14: output[0].buffer.flush_interval:"),
    ] {
        assert!(err.contains(&expect), "missing `{expect}` in:\n{err}");
    }
    // `run` refuses the same config the same way, before doing anything
    let o = fuwa(&["run", "-c", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("{f}:7: input[0].colour")));
}

#[test]
fn plugin_level_errors_are_reported_too() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "[[input]]\ntype = \"forward\"\nbind = \"nowhere\"\n\n[[output]]\ntype = \"file\"\npath = \"/tmp/${nope}\"\n",
    )
    .unwrap();
    let o = fuwa(&["check", "-c", p.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(":3: input[0].bind: `nowhere` is not an address"),
        "{err}"
    );
    assert!(
        err.contains(":7: output[0].path: unknown placeholder `${nope}`"),
        "{err}"
    );
}

#[test]
fn unreadable_files_are_errors() {
    let o = fuwa(&["check", "-c", "/nonexistent/fuwa.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("/nonexistent/fuwa.toml: cannot read the config file"));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tls.toml");
    std::fs::write(&p, "[[input]]\ntype = \"forward\"\n[input.tls]\ncert_path = \"/nope/cert.pem\"\nkey_path = \"/nope/key.pem\"\n\n[[output]]\ntype = \"null\"\n").unwrap();
    let o = fuwa(&["check", "-c", p.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("input[0].tls: cannot read cert_path /nope/cert.pem"),
        "{err}"
    );
}

#[test]
fn a_taken_port_fails_start_up_clearly() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, format!("[[input]]\ntype = \"forward\"\nbind = \"127.0.0.1:{port}\"\n[[output]]\ntype = \"null\"\n")).unwrap();
    let o = Command::new(bin())
        .args(["run", "-c", p.to_str().unwrap(), "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{o:?}"
    );
}

#[test]
fn embedded_default_is_forward_to_stdout() {
    // the embedded default listens on 127.0.0.1:24224
    if std::net::TcpStream::connect("127.0.0.1:24224").is_ok() {
        panic!("port 24224 is taken on this machine; the embedded-default test needs it");
    }
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(bin())
        .args(["run", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut s = None;
    for _ in 0..500 {
        if let Ok(c) = std::net::TcpStream::connect("127.0.0.1:24224") {
            s = Some(c);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut s = s.expect("default listens on 24224");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&msg("hello.world", 1_700_000_000, 7, "d"))
        .unwrap();
    acked(&mut s, "d");
    std::thread::sleep(Duration::from_millis(1500));
    signal(&child, "TERM");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.lines().next().unwrap_or("{}")).unwrap();
    assert_eq!(v["i"], 7);
    assert_eq!(v["tag"], "hello.world");
    assert_eq!(v["time"], "2023-11-14T22:13:20.000000000Z");
}

#[test]
fn file_paths_by_tag_part_and_event_hour_with_gzip() {
    let cfg = r#"[agent]
timezone = "Asia/Tokyo"
hostname = "web-7"

[[input]]
type = "forward"
bind = "127.0.0.1:{port}"

[[output]]
match = "app.**"
type = "file"
path = "{dir}/out/${tag[1]}/${hostname}/%Y%m%d-%H.jsonl.gz"
compress = "gzip"
time_key = "at"
time_format = "unix_ms"
[output.buffer]
type = "memory"
flush_interval = "100ms"

[[output]]
match = "other"
type = "null"
"#;
    let a = Agent::start(cfg);
    let mut s = a.connect();
    // 2023-11-14T22:13:20Z = 2023-11-15 07 JST; +1h = 08 JST
    s.write_all(&msg("app.web", 1_700_000_000, 1, "a")).unwrap();
    acked(&mut s, "a");
    s.write_all(&msg("app.web", 1_700_003_600, 2, "b")).unwrap();
    acked(&mut s, "b");
    s.write_all(&msg("app.api", 1_700_000_000, 3, "c")).unwrap();
    acked(&mut s, "c");
    s.write_all(&msg("other", 1_700_000_000, 4, "d")).unwrap();
    acked(&mut s, "d");
    let lines = wait_lines(&a.path("out"), 3, Duration::from_secs(10));
    let mut got: Vec<(String, i64, i64)> = lines
        .iter()
        .map(|(p, j)| {
            (
                p.strip_prefix(a.path("out")).unwrap().display().to_string(),
                j["i"].as_i64().unwrap(),
                j["at"].as_i64().unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (
                "api/web-7/20231115-07.jsonl.gz".to_string(),
                3,
                1_700_000_000_000
            ),
            (
                "web/web-7/20231115-07.jsonl.gz".to_string(),
                1,
                1_700_000_000_000
            ),
            (
                "web/web-7/20231115-08.jsonl.gz".to_string(),
                2,
                1_700_003_600_000
            ),
        ]
    );
}

#[test]
fn sigterm_flushes_what_is_buffered() {
    let cfg = forward_to_file("").replace("flush_interval = \"100ms\"", "flush_interval = \"1h\"");
    let mut a = Agent::start(&cfg);
    let mut s = a.connect();
    for i in 0..50 {
        s.write_all(&msg("t", 1_700_000_000, i, &format!("c{i}")))
            .unwrap();
        acked(&mut s, &format!("c{i}"));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        read_json_lines(&a.path("out")).is_empty(),
        "nothing flushed before the hour"
    );
    assert!(a.stop().success());
    assert_eq!(read_json_lines(&a.path("out")).len(), 50);
    assert!(a.stderr().contains("fuwa stopped"), "{}", a.stderr());
}

#[test]
fn failed_writes_are_retried_with_backoff_until_they_succeed() {
    let cfg = r#"[[input]]
type = "forward"
bind = "127.0.0.1:{port}"

[[output]]
type = "file"
path = "{dir}/blocked/out.log"
[output.buffer]
type = "memory"
flush_interval = "50ms"
retry_wait = "100ms"
retry_max_interval = "200ms"
"#;
    let a = Agent::start(cfg);
    // a regular file where the directory should be: writes fail
    std::fs::write(a.path("blocked"), b"in the way").unwrap();
    let mut s = a.connect();
    s.write_all(&msg("r", 1_700_000_000, 1, "r")).unwrap();
    acked(&mut s, "r");
    assert!(
        a.wait_stderr("will retry", Duration::from_secs(5)),
        "{}",
        a.stderr()
    );
    std::thread::sleep(Duration::from_millis(500));
    let retries = a.stderr().matches("will retry").count();
    assert!(retries >= 2, "several attempts: {}", a.stderr());
    std::fs::remove_file(a.path("blocked")).unwrap();
    let lines = wait_lines(&a.path("blocked"), 1, Duration::from_secs(5));
    assert_eq!(
        lines.len(),
        1,
        "delivered once the path is writable: {}",
        a.stderr()
    );
    assert_eq!(lines[0].1["i"], 1);
}

#[test]
fn retries_give_up_after_retry_max_times() {
    let cfg = r#"[[input]]
type = "forward"
bind = "127.0.0.1:{port}"

[[output]]
type = "file"
path = "{dir}/blocked/out.log"
[output.buffer]
type = "memory"
flush_interval = "50ms"
retry_wait = "50ms"
retry_max_times = 2
retry_randomize = false
"#;
    let a = Agent::start(cfg);
    std::fs::write(a.path("blocked"), b"in the way").unwrap();
    let mut s = a.connect();
    s.write_all(&msg("r", 1_700_000_000, 1, "r")).unwrap();
    acked(&mut s, "r");
    assert!(
        a.wait_stderr("retries exhausted", Duration::from_secs(5)),
        "{}",
        a.stderr()
    );
    assert_eq!(
        a.stderr().matches("will retry").count(),
        2,
        "{}",
        a.stderr()
    );
}
