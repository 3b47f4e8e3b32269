//! SIGHUP through the real binary: a good config takes effect (new output
//! path, new filter, new API address) and the chunks buffered before it are
//! delivered after it (file and memory buffers); a bad config is refused
//! with the same lines `fuwa check` prints and the old pipeline keeps
//! accepting and delivering; a new config that cannot start (a port taken)
//! falls back to the old one; systemd hears READY, RELOADING, STOPPING.

mod common;
mod ops_util;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::*;
use ops_util::*;

/// forward → file output `files` at {dir}/OUT/out.log, buffer `kind`.
fn config(out: &str, kind: &str, extra: &str) -> String {
    format!(
        r#"[agent]
shutdown_timeout = "2s"

[agent.api]
bind = "127.0.0.1:{{api}}"

[[input]]
type = "forward"
bind = "127.0.0.1:{{port}}"
{extra}

[[output]]
id = "files"
match = "**"
type = "file"
path = "{{dir}}/{out}/out.log"
[output.buffer]
type = "{kind}"
flush_interval = "50ms"
retry_wait = "100ms"
retry_max_interval = "200ms"
retry_forever = true
"#
    )
}

/// `{dir}/down` as a regular file: an output writing below it fails.
fn make_down(a: &Agent) {
    std::fs::write(a.path("down"), b"not a directory").unwrap();
}

fn hup(a: &Agent) {
    signal(&a.child, "HUP");
}

fn wait_reload(a: &Agent, n: usize) {
    assert!(
        wait_until(Duration::from_secs(15), || a
            .stderr()
            .matches("config reloaded")
            .count()
            >= n),
        "no reload: {}",
        a.stderr()
    );
}

fn buffered_then_reloaded(kind: &str) {
    let (mut a, api) = start_agent(&config("down", kind, ""), &[]);
    make_down(&a);
    // 30 events acked while the output cannot write: they wait in the buffer
    send_acked(a.port, "app.web", 0, 30, 10);
    assert!(wait_until(Duration::from_secs(10), || {
        scrape(api).must("fuwa_output_retries_total", &[("id", "files")]) >= 1.0
    }));
    // the new config writes somewhere that works, adds a filter, and moves
    // the API to another port
    let filter = "[[filter]]\nmatch = \"**\"\ntype = \"record\"\nset = { reloaded = \"yes\" }\n";
    rewrite(
        &a,
        api,
        &format!("{}\n{filter}", config("good", kind, "")).replace("{api}", "0"),
    );
    hup(&a);
    wait_reload(&a, 1);
    // the new API address is port 0: the port the kernel gave, from the log
    let moved = a.stderr();
    let moved = &moved[moved.find("SIGHUP").expect("reload logged")..];
    let api2 = listening_port(moved, "API listening").expect("the API moved");
    assert_ne!(api2, api);
    // everything buffered before the reload arrives through the new output
    assert!(
        wait_until(Duration::from_secs(10), || ids(&a.path("good")).len() == 30),
        "{}",
        a.stderr()
    );
    assert!(a.stderr().contains("took over the chunks") || kind == "file");
    assert!(a.stderr().contains("re-keyed for the new config"));
    // the forward port was bound again: a client reconnects and sends more,
    // which now pass the new filter
    send_acked(a.port, "app.web", 100, 20, 10);
    assert!(wait_until(Duration::from_secs(10), || ids(&a.path("good"))
        .len()
        == 50));
    let lines = read_json_lines(&a.path("good"));
    for (_, j) in &lines {
        let id = j["id"].as_u64().unwrap();
        assert_eq!(
            j.get("reloaded").and_then(|v| v.as_str()) == Some("yes"),
            id >= 100,
            "filters apply to events that arrive after the reload: {j}"
        );
    }
    assert!(ids(&a.path("good")).values().all(|c| *c == 1));
    assert!(ids(&a.path("down")).is_empty());
    // the API moved; counters kept counting across the reload
    assert!(std::net::TcpStream::connect(("127.0.0.1", api)).is_err());
    let s = scrape(api2);
    assert_eq!(s.must("fuwa_reloads_total", &[]), 1.0);
    assert_eq!(
        s.must("fuwa_input_records_total", &[("id", "forward.0")]),
        50.0
    );
    assert_eq!(
        s.must("fuwa_output_proc_records_total", &[("id", "files")]),
        50.0
    );
    assert_eq!(s.must("fuwa_buffer_chunks", &[("id", "files")]), 0.0);
    let (_, st) = get_json(api2, "/api/status");
    assert_eq!(st["last_reload"]["ok"], true, "{st}");
    assert_eq!(st["filters"][0]["id"], "record.0", "{st}");
    assert_eq!(st["filters"][0]["match"], "**");
    assert!(a.stop().success());
}

#[test]
fn sighup_with_a_good_config_file_buffer_keeps_the_buffered_chunks() {
    buffered_then_reloaded("file");
}

#[test]
fn sighup_with_a_good_config_memory_buffer_hands_its_chunks_over() {
    buffered_then_reloaded("memory");
}

#[test]
fn sighup_with_a_bad_config_is_refused_and_the_old_pipeline_keeps_delivering() {
    let good = config("out", "file", "");
    let (mut a, api) = start_agent(&good, &[]);
    send_acked(a.port, "app.web", 0, 10, 10);
    let bad = "[agent]\nshutdown_timeout = \"soon\"\n\n[[input]]\ntype = \"forward\"\nbind = \"127.0.0.1:{port}\"\nbogus = true\n\n[[output]]\ntype = \"nope\"\n";
    rewrite(&a, api, bad);
    // what `fuwa check` says about it
    let check = std::process::Command::new(bin())
        .args(["check", "-c"])
        .arg(a.path("fuwa.toml"))
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(2));
    let expected: Vec<String> = String::from_utf8_lossy(&check.stderr)
        .lines()
        .filter(|l| l.contains(".toml:") && !l.contains("problem(s) found"))
        .map(String::from)
        .collect();
    assert_eq!(expected.len(), 3, "{expected:?}");

    // the same connection stays up across the refused reload
    let mut s = a.connect();
    hup(&a);
    assert!(a.wait_stderr("reload refused", Duration::from_secs(10)));
    let err = a.stderr();
    for line in &expected {
        assert!(err.contains(line.as_str()), "`{line}` not logged:\n{err}");
    }
    use std::io::Write;
    s.write_all(&message("app.web", 10, 10, "after-bad"))
        .unwrap();
    let ack = rmpv::decode::read_value(&mut s).unwrap();
    assert_eq!(ack["ack"].as_str(), Some("after-bad"));
    send_acked(a.port, "app.web", 20, 10, 10);
    assert!(wait_until(Duration::from_secs(10), || ids(&a.path("out"))
        .len()
        == 30));
    let s = scrape(api);
    assert_eq!(s.must("fuwa_reload_failures_total", &[]), 1.0);
    assert_eq!(s.must("fuwa_reloads_total", &[]), 0.0);
    let (_, st) = get_json(api, "/api/status");
    assert_eq!(st["last_reload"]["ok"], false);
    assert_eq!(
        st["last_reload"]["errors"].as_array().unwrap().len(),
        3,
        "{st}"
    );
    // an unreadable config is refused the same way
    std::fs::remove_file(a.path("fuwa.toml")).unwrap();
    hup(&a);
    assert!(a.wait_stderr("cannot read the config file", Duration::from_secs(10)));
    send_acked(a.port, "app.web", 30, 5, 5);
    assert!(wait_until(Duration::from_secs(10), || ids(&a.path("out"))
        .len()
        == 35));
    assert!(a.stop().success());
}

#[test]
fn a_new_config_that_cannot_start_falls_back_to_the_old_one() {
    let (mut a, api) = start_agent(&config("out", "memory", ""), &[]);
    send_acked(a.port, "app.web", 0, 5, 5);
    // the new config adds a second input on a port someone else holds
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let extra = format!("\n[[input]]\ntype = \"forward\"\nbind = \"127.0.0.1:{busy}\"\n");
    rewrite(&a, api, &config("new", "memory", &extra));
    hup(&a);
    assert!(a.wait_stderr("starting the previous one again", Duration::from_secs(15)));
    // the old pipeline runs again on the same port and output
    assert!(wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", a.port)).is_ok()
    }));
    send_acked(a.port, "app.web", 5, 5, 5);
    assert!(wait_until(Duration::from_secs(10), || ids(&a.path("out"))
        .len()
        == 10));
    assert!(ids(&a.path("new")).is_empty());
    let s = scrape(api);
    assert_eq!(s.must("fuwa_reload_failures_total", &[]), 1.0);
    assert!(a.stop().success());
}

/// Reads notify messages until one contains `want` (or the time is up).
fn recv_until(sock: &UnixDatagram, want: &str, seen: &mut Vec<String>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = m.lines().any(|l| l == want || l.starts_with(want));
                seen.push(m);
                if hit {
                    return true;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("notify socket: {e}"),
        }
    }
    false
}

#[test]
fn systemd_hears_ready_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let (mut a, api) = start_agent(
        &config("out", "file", ""),
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    let mut seen = Vec::new();
    assert!(recv_until(&sock, "READY=1", &mut seen), "{seen:?}");
    // READY only once everything listens
    assert!(std::net::TcpStream::connect(("127.0.0.1", a.port)).is_ok());
    assert_eq!(get(api, "/health").0, 200);

    // an API connection opened before the reload is served after it: the
    // listener (bind unchanged) was kept
    let mut keep = std::net::TcpStream::connect(("127.0.0.1", api)).unwrap();
    keep.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    hup(&a);
    assert!(recv_until(&sock, "RELOADING=1", &mut seen), "{seen:?}");
    let reloading = seen.last().unwrap().clone();
    let usec: u128 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"))
        .parse()
        .unwrap();
    assert!(usec > 0);
    assert!(recv_until(&sock, "READY=1", &mut seen), "{seen:?}");
    wait_reload(&a, 1);
    {
        use std::io::{Read, Write};
        keep.write_all(b"GET /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut r = String::new();
        keep.read_to_string(&mut r).unwrap();
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.contains("\"reloads\": 1"), "{r}");
    }
    send_acked(a.port, "app.web", 0, 3, 3);

    // a refused reload is also RELOADING=1 then READY=1
    rewrite(&a, api, "[[input]]\ntype = \"nope\"\n");
    hup(&a);
    assert!(recv_until(&sock, "RELOADING=1", &mut seen), "{seen:?}");
    assert!(recv_until(&sock, "READY=1", &mut seen), "{seen:?}");

    signal(&a.child, "TERM");
    assert!(recv_until(&sock, "STOPPING=1", &mut seen), "{seen:?}");
    assert!(a.child.wait().unwrap().success());
    assert_eq!(ids(&a.path("out")).len(), 3);
}

#[test]
fn a_reload_applies_a_new_log_level() {
    let quiet = config("out", "memory", "").replace(
        "shutdown_timeout = \"2s\"",
        "shutdown_timeout = \"2s\"\nlog_level = \"warn\"",
    );
    // without FUWA_LOG, the config's log_level rules
    let (mut a, api) = start_agent(&quiet, &[("FUWA_LOG", "")]);
    send_acked(a.port, "app.web", 0, 1, 1);
    assert!(!a.stderr().contains("INFO"), "{}", a.stderr());
    rewrite(&a, api, &config("out", "memory", ""));
    hup(&a);
    assert!(
        a.wait_stderr("log level changed", Duration::from_secs(10)),
        "{}",
        a.stderr()
    );
    assert!(a.wait_stderr("config reloaded", Duration::from_secs(5)));
    assert!(a.stop().success());
    assert!(a.stderr().contains("fuwa stopped"));
}

#[test]
fn a_tail_input_resumes_at_its_position_after_a_reload() {
    let log = tempfile::tempdir().unwrap();
    let file = log.path().join("app.log");
    let append = |from: u64, to: u64| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .unwrap();
        for i in from..to {
            writeln!(f, "{{\"id\":{i}}}").unwrap();
        }
    };
    append(0, 20);
    let tail = format!(
        "\n[[input]]\ntype = \"tail\"\npath = \"{}\"\ntag = \"app.tail\"\nread_from_head = true\nrefresh_interval = \"200ms\"\nformat = \"json\"\n",
        file.display()
    );
    let (mut a, api) = start_agent(&config("out", "file", &tail), &[]);
    assert!(wait_until(Duration::from_secs(10), || ids(&a.path("out"))
        .len()
        == 20));
    // reload into a new output path; lines written meanwhile are read once
    rewrite(&a, api, &config("after", "file", &tail));
    append(20, 30);
    hup(&a);
    wait_reload(&a, 1);
    append(30, 40);
    assert!(
        wait_until(Duration::from_secs(10), || ids(&a.path("out")).len()
            + ids(&a.path("after")).len()
            == 40),
        "{}",
        a.stderr()
    );
    std::thread::sleep(Duration::from_millis(500));
    let mut all = ids(&a.path("out"));
    for (k, v) in ids(&a.path("after")) {
        *all.entry(k).or_insert(0) += v;
    }
    assert_eq!(all.len(), 40);
    assert!(all.values().all(|c| *c == 1), "{all:?}");
    assert!(ids(&a.path("after")).contains_key(&39));
    assert!(a.stop().success());
}
