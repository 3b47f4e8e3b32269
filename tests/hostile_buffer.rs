//! Hostile input against the buffer and the outputs, through the real
//! binary: every acked event is delivered or dead-lettered with a reason.
//! A tag too long for a file name, a path no retry can fix, one chunk that
//! keeps failing while the others must go on, hundreds of distinct tags
//! under a low open-file limit, two agents on one data_dir, and the modes of
//! the files that hold user data.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rmpv::Value as V;

/// Sends one message and waits for its ack; the reason when there is none.
fn send_acked(s: &mut TcpStream, tag: &str, first_id: u64, n: u64) -> Result<(), String> {
    use std::io::Write;
    let chunk = format!("c{first_id}");
    s.write_all(&message(tag, first_id, n, &chunk))
        .map_err(|e| format!("send: {e}"))?;
    match rmpv::decode::read_value(s) {
        Ok(v) if v == V::Map(vec![(V::from("ack"), V::from(chunk.as_str()))]) => Ok(()),
        Ok(v) => Err(format!("unexpected reply {v}")),
        Err(e) => Err(format!("no ack: {e}")),
    }
}

/// id → how many times it was written, below `dir`.
fn delivered(dir: &Path) -> BTreeMap<u64, usize> {
    let mut m = BTreeMap::new();
    for (_, j) in read_json_lines(dir) {
        *m.entry(j["id"].as_u64().expect("id")).or_insert(0) += 1;
    }
    m
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

const HEAD: &str = r#"[agent]
shutdown_timeout = "2s"

[[input]]
type = "forward"
bind = "127.0.0.1:{port}"
"#;

/// Item 2: a 1,000-byte tag rendered into `${tag}` of a file path used to
/// fail with ENAMETOOLONG, classed retryable: with one worker and
/// retry_timeout 72h every later chunk waited behind it. The component is now
/// cut to 255 bytes with a hash of the whole, and written.
#[test]
fn a_tag_too_long_for_a_file_name_is_written_under_a_shortened_name() {
    let cfg = format!(
        r#"{HEAD}
[[output]]
id = "files"
match = "**"
type = "file"
path = "{{dir}}/out/${{tag}}.log"
[output.buffer]
type = "file"
flush_interval = "200ms"
"#
    );
    let a = Agent::start(&cfg);
    let long = "L".repeat(1000);
    let mut s = a.connect();
    send_acked(&mut s, &long, 0, 50).expect("acked");
    send_acked(&mut s, "short", 100, 50).expect("acked");
    send_acked(&mut s, &format!("{long}.other"), 200, 50).expect("acked");
    let out = a.path("out");
    let deadline = Instant::now() + Duration::from_secs(30);
    while delivered(&out).len() < 150 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = delivered(&out);
    assert_eq!(
        got.len(),
        150,
        "every acked event written once: {:?}\n{}",
        got.keys().collect::<Vec<_>>(),
        a.stderr()
    );
    assert!(got.values().all(|&n| n == 1));
    let mut names: Vec<String> = files_below(&out)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    for n in &names {
        assert!(n.len() <= 255, "{n}");
    }
    // two long tags sharing their first 238 bytes get two files
    let long_ones: Vec<&String> = names.iter().filter(|n| n.starts_with("LLL")).collect();
    assert_eq!(long_ones.len(), 2);
    assert_ne!(long_ones[0], long_ones[1]);
    assert!(
        long_ones[0].starts_with(&"L".repeat(238)),
        "{}",
        long_ones[0]
    );
    assert!(!a.stderr().contains("will retry"), "{}", a.stderr());
}

/// Item 2: a path that no shortening makes valid (17 components of 255
/// bytes: over PATH_MAX) is Fatal: dead-lettered at once, logged once, and
/// the other chunks are written.
#[test]
fn a_path_no_retry_can_fix_is_dead_lettered_at_once_and_the_rest_written() {
    let parts = vec!["${tag}"; 17].join("/");
    let cfg = format!(
        r#"{HEAD}
[[output]]
id = "files"
match = "**"
type = "file"
path = "{{dir}}/out/{parts}/x.log"
[output.buffer]
type = "file"
flush_interval = "200ms"
retry_wait = "1s"
"#
    );
    let a = Agent::start(&cfg);
    let mut s = a.connect();
    send_acked(&mut s, &"T".repeat(300), 0, 20).expect("acked");
    send_acked(&mut s, "ok", 100, 20).expect("acked");
    let out = a.path("out");
    wait_until("the good chunk", Duration::from_secs(30), || {
        delivered(&out).len() == 20
    });
    let dl = a.path("data/dead-letter/files");
    wait_until("the dead letter", Duration::from_secs(30), || {
        files_below(&dl)
            .iter()
            .any(|p| p.extension().map(|x| x == "json").unwrap_or(false))
    });
    let note_path = files_below(&dl)
        .into_iter()
        .find(|p| p.extension().map(|x| x == "json").unwrap_or(false))
        .unwrap();
    let note: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&note_path).unwrap()).unwrap();
    assert_eq!(note["reason"], "fatal error", "{note}");
    assert_eq!(note["attempts"], 1, "{note}");
    assert_eq!(note["records"], 20, "{note}");
    assert!(
        note["error"].as_str().unwrap().contains("too long"),
        "{note}"
    );
    let err = a.stderr();
    assert_eq!(
        err.matches("chunk moved to the dead-letter directory")
            .count(),
        1,
        "{err}"
    );
    assert!(!err.contains("will retry"), "{err}");
}

/// Item 2: one chunk that keeps failing (a file stands where its directory
/// must go: retryable, an operator can fix it) backs off in the queue while
/// the single worker writes every other chunk; once fixed, it is written.
#[test]
fn one_failing_chunk_does_not_hold_up_the_others() {
    let cfg = format!(
        r#"{HEAD}
[[output]]
id = "files"
match = "**"
type = "file"
path = "{{dir}}/out/${{tag}}/x.log"
[output.buffer]
type = "file"
flush_interval = "100ms"
flush_thread_count = 1
retry_wait = "200ms"
retry_max_interval = "1s"
retry_randomize = false
"#
    );
    let a = Agent::start(&cfg);
    std::fs::create_dir_all(a.path("out")).unwrap();
    // an empty file where the directory must go (the line reader skips it)
    std::fs::write(a.path("out/stuck"), b"").unwrap();
    let mut s = a.connect();
    send_acked(&mut s, "stuck", 0, 10).expect("acked");
    assert!(
        a.wait_stderr("will retry", Duration::from_secs(20)),
        "{}",
        a.stderr()
    );
    for i in 0..10u64 {
        send_acked(&mut s, &format!("ok{i}"), 1000 + i * 10, 10).expect("acked");
    }
    let out = a.path("out");
    wait_until(
        "the other chunks while one backs off",
        Duration::from_secs(30),
        || delivered(&out).keys().filter(|&&id| id >= 1000).count() == 100,
    );
    assert!(!delivered(&out).contains_key(&0));
    std::fs::remove_file(a.path("out/stuck")).unwrap();
    wait_until("the fixed chunk", Duration::from_secs(30), || {
        delivered(&out).len() == 110
    });
    assert!(delivered(&out).values().all(|&n| n == 1));
}

/// A child process killed when the test ends, passed or not.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts fuwa under `prlimit --nofile=N:N` (soft and hard) on a config
/// whose forward input binds port 0; returns it and the port it logged.
fn start_limited(nofile: u32, cfg: &str, dir: &Path) -> (Killed, u16, Arc<Mutex<String>>) {
    let cfg = cfg.replace("{dir}", &dir.display().to_string());
    std::fs::write(dir.join("fuwa.toml"), cfg).unwrap();
    let mut child = Killed(
        Command::new("prlimit")
            .arg(format!("--nofile={nofile}:{nofile}"))
            .arg(bin())
            .args(["run", "-c"])
            .arg(dir.join("fuwa.toml"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env("FUWA_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("prlimit fuwa"),
    );
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.0.stderr.take().unwrap();
    let l = log.clone();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stderr);
        let mut line = String::new();
        while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
            if line.contains("forward input listening") {
                if let Some(port) = line
                    .split("addr=")
                    .nth(1)
                    .and_then(|x| x.split_whitespace().next())
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.parse::<u16>().ok())
                {
                    let _ = tx.send(port);
                }
            }
            l.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("no port logged: {}", log.lock().unwrap()));
    (child, port, log)
}

/// Item 3: each distinct tag keeps an open chunk file until flush_interval;
/// 500 tags under 128 descriptors used to end in EMFILE and forward closing
/// without an ack. The open chunks are now capped (RLIMIT_NOFILE / 8 by
/// default), the least recently written sealed first: every message is
/// acked and every event written.
#[test]
fn five_hundred_tags_under_a_low_fd_limit_are_all_acked_and_written() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = r#"[agent]
shutdown_timeout = "20s"

[[input]]
type = "forward"
bind = "127.0.0.1:0"

[[output]]
id = "files"
match = "**"
type = "file"
path = "{dir}/out/all.log"
[output.buffer]
type = "file"
flush_interval = "1h"
"#;
    let (mut child, port, log) = start_limited(128, cfg, dir.path());
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    for t in 0..500u64 {
        if let Err(e) = send_acked(&mut s, &format!("tag{t}"), t * 4, 4) {
            panic!("tag {t}: {e}\n{}", log.lock().unwrap());
        }
    }
    // the cap sealed and wrote most of them long before flush_interval
    let out = dir.path().join("out");
    wait_until("sealed chunks written", Duration::from_secs(60), || {
        delivered(&out).len() >= 400
    });
    signal(&child.0, "TERM");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(st)) = child.0.try_wait() {
            assert!(st.success(), "{st}: {}", log.lock().unwrap());
            break;
        }
        assert!(Instant::now() < deadline, "did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = delivered(&out);
    assert_eq!(got.len(), 2000, "{}", log.lock().unwrap());
    assert!(got.values().all(|&n| n == 1));
    let text = log.lock().unwrap().clone();
    assert!(!text.contains("Too many open files"), "{text}");
    assert!(text.contains("open-file limit"), "{text}");
}

/// Item 5: two agents on one data_dir would deliver and delete each other's
/// chunks. The second `fuwa run` exits 2 naming the directory and the
/// holder's pid; `fuwa check`, `fuwa dead-letter list` and `fuwa athena-ddl`
/// (from the buffered chunks) still work beside the running agent; a crashed
/// agent's lock is gone at once.
#[test]
fn a_second_agent_on_the_same_data_dir_exits_2_naming_the_holder() {
    let cfg = format!(
        r#"{HEAD}
[[output]]
id = "files"
match = "**"
type = "file"
path = "{{dir}}/out/x.log"
[output.buffer]
type = "file"
flush_interval = "100ms"

# an S3 output that cannot deliver: its chunks stay buffered, for
# `fuwa athena-ddl` to infer columns from beside the running agent
[[output]]
id = "s3"
match = "logs.**"
type = "s3"
bucket = "b"
region = "ap-northeast-1"
endpoint = "http://127.0.0.1:1"
key = "t=${{tag}}/dt=%Y-%m-%d/${{chunk_id}}.json.gz"
[output.buffer]
type = "file"
flush_interval = "1h"
"#
    );
    let mut a = Agent::start(&cfg);
    let data = a.path("data");
    let run = |args: &[&str]| {
        let mut c = Command::new(bin());
        c.args(args)
            .arg("-c")
            .arg(a.path("fuwa.toml"))
            .env("FUWA_LOG", "info");
        if args[0] != "check" {
            c.arg("--data-dir").arg(&data);
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("`fuwa {args:?}` did not exit beside a running agent");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, err)
    };
    let (status, err) = run(&["run"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains(&data.display().to_string()), "{err}");
    assert!(err.contains(&format!("pid {}", a.pid())), "{err}");
    let (status, err) = run(&["check"]);
    assert!(status.success(), "{err}");
    let (status, err) = run(&["dead-letter", "list"]);
    assert!(status.success(), "{err}");
    let lock = std::fs::read_to_string(data.join("fuwa.lock")).unwrap();
    assert_eq!(lock.trim(), a.pid().to_string());
    // the first agent is undisturbed
    let mut s = a.connect();
    send_acked(&mut s, "app", 0, 5).expect("acked");
    wait_until("written", Duration::from_secs(30), || {
        delivered(&a.path("out")).len() == 5
    });
    // athena-ddl reads the S3 output's buffered chunks beside the agent
    send_acked(&mut s, "logs.web", 100, 3).expect("acked");
    let (status, err) = run(&["athena-ddl", "--output", "s3", "--table", "t"]);
    assert!(status.success(), "{err}");
    // kill -9 releases the lock: the next start takes it
    a.kill9();
    a.restart();
    let lock = std::fs::read_to_string(data.join("fuwa.lock")).unwrap();
    assert_eq!(lock.trim(), a.pid().to_string());
}

/// Item 9: buffered chunks and dead letters hold user data: 0600 files in
/// 0700 directories, whatever the umask (the test runs under 022).
#[test]
fn buffered_chunks_and_dead_letters_are_private() {
    let cfg = format!(
        r#"{HEAD}
[[output]]
id = "slow"
match = "keep.**"
type = "file"
path = "{{dir}}/out/keep.log"
[output.buffer]
type = "file"
flush_interval = "1h"

[[output]]
id = "fails"
match = "dir"
type = "file"
path = "{{dir}}/out/${{tag}}.log"
[output.buffer]
type = "memory"
flush_interval = "100ms"
"#
    );
    let a = Agent::start(&cfg);
    // a directory where the file should be: EISDIR, dead-lettered at once
    std::fs::create_dir_all(a.path("out/dir.log")).unwrap();
    let mut s = a.connect();
    send_acked(&mut s, "keep.a", 0, 5).expect("acked");
    send_acked(&mut s, "dir", 100, 5).expect("acked");
    let dl = a.path("data/dead-letter/fails");
    wait_until("the dead letter", Duration::from_secs(30), || {
        files_below(&dl).len() == 2
    });
    let data = a.path("data");
    for d in [
        data.clone(),
        data.join("buffer"),
        data.join("buffer/slow"),
        data.join("dead-letter"),
        dl.clone(),
    ] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    let chunks = files_below(&data.join("buffer/slow"));
    assert_eq!(chunks.len(), 1, "{chunks:?}");
    for f in chunks.iter().chain(files_below(&dl).iter()) {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
}
