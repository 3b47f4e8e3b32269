//! The durable file buffer through the real binary: acks only after fsync,
//! kill -9 while producing with the output down, backpressure with a small
//! total_limit_size, torn and corrupt chunks at start, the retry schedule,
//! dead letters and their replay.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rmpv::Value as V;

/// forward → file output at {dir}/out/blocked/out.log through a file buffer.
/// While `{dir}/out/blocked` is a regular file the output is "down".
fn config(buffer: &str) -> String {
    format!(
        r#"[agent]
shutdown_timeout = "2s"

[[input]]
type = "forward"
bind = "127.0.0.1:{{port}}"

[[output]]
id = "files"
match = "**"
type = "file"
path = "{{dir}}/out/blocked/out.log"
[output.buffer]
type = "file"
{buffer}
"#
    )
}

fn block_output(a: &Agent) {
    std::fs::create_dir_all(a.path("out")).unwrap();
    std::fs::write(a.path("out/blocked"), b"the output is down").unwrap();
}

fn unblock_output(a: &Agent) {
    let _ = std::fs::remove_file(a.path("out/blocked"));
}

fn packed(first_id: u64, n: u64) -> Vec<u8> {
    let mut body = Vec::new();
    for id in first_id..first_id + n {
        let rec = V::Map(vec![
            (V::from("id"), V::from(id)),
            (V::from("pad"), V::from("x".repeat(80))),
        ]);
        body.extend(mp(&V::Array(vec![V::from(1_700_000_000u32), rec])));
    }
    body
}

fn message(first_id: u64, n: u64, chunk: &str) -> Vec<u8> {
    mp(&V::Array(vec![
        V::from("buf"),
        V::Binary(packed(first_id, n)),
        V::Map(vec![(V::from("chunk"), V::from(chunk))]),
    ]))
}

/// Sends one message and waits for its ack; false on any failure.
fn send_acked(s: &mut TcpStream, first_id: u64, n: u64, chunk: &str) -> bool {
    if s.write_all(&message(first_id, n, chunk)).is_err() {
        return false;
    }
    match rmpv::decode::read_value(s) {
        Ok(v) => v == V::Map(vec![(V::from("ack"), V::from(chunk))]),
        Err(_) => false,
    }
}

fn delivered_ids(a: &Agent) -> BTreeMap<u64, usize> {
    let mut m = BTreeMap::new();
    for (_, j) in read_json_lines(&a.path("out")) {
        *m.entry(j["id"].as_u64().expect("id")).or_insert(0) += 1;
    }
    m
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// A producer that keeps sending acked messages, reconnecting after
/// failures, and remembers exactly which ids were acknowledged.
struct Producer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<HashSet<u64>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Producer {
    fn start(port: u16, base: u64, per_msg: u64) -> Producer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(HashSet::new()));
        let (st, ak) = (stop.clone(), acked.clone());
        let handle = std::thread::spawn(move || {
            let mut next = base;
            let mut conn: Option<TcpStream> = None;
            while !st.load(Ordering::Relaxed) {
                if conn.is_none() {
                    conn = TcpStream::connect(("127.0.0.1", port)).ok().inspect(|s| {
                        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                        let _ = s.set_nodelay(true);
                    });
                    if conn.is_none() {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                }
                let s = conn.as_mut().expect("conn");
                let chunk = format!("m{next}");
                if send_acked(s, next, per_msg, &chunk) {
                    let mut set = ak.lock().expect("lock");
                    for id in next..next + per_msg {
                        set.insert(id);
                    }
                    next += per_msg;
                } else {
                    // not acked: the same ids are sent again on a new
                    // connection (this is how duplicates can arise)
                    conn = None;
                }
            }
        });
        Producer {
            stop,
            acked,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> HashSet<u64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.acked.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

#[test]
fn acked_events_survive_kill_9_with_the_output_down() {
    let cfg = config("flush_interval = \"200ms\"\nchunk_limit_size = \"256KiB\"\nretry_wait = \"100ms\"\nretry_max_interval = \"300ms\"\nretry_forever = true");
    let mut a = Agent::start(&cfg);
    block_output(&a);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("seed {seed}");
    let producers: Vec<Producer> = (0..2)
        .map(|i| Producer::start(a.port, i * 1_000_000_000, 50))
        .collect();
    for round in 0..4 {
        let wait = 200 + lcg(&mut seed) % 600;
        std::thread::sleep(Duration::from_millis(wait));
        a.kill9();
        eprintln!("round {round}: killed after {wait}ms");
        std::thread::sleep(Duration::from_millis(50));
        a.restart();
    }
    std::thread::sleep(Duration::from_millis(300));
    let acked: HashSet<u64> = producers.into_iter().flat_map(|p| p.finish()).collect();
    assert!(
        acked.len() > 500,
        "producers made progress: {}",
        acked.len()
    );
    // the output comes back
    unblock_output(&a);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = delivered_ids(&a);
    while Instant::now() < deadline && !acked.iter().all(|id| got.contains_key(id)) {
        std::thread::sleep(Duration::from_millis(200));
        got = delivered_ids(&a);
    }
    let missing: Vec<&u64> = acked
        .iter()
        .filter(|id| !got.contains_key(id))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "acked but never delivered: {missing:?}\n{}",
        a.stderr()
    );
    let dups: usize = got.values().map(|c| c - 1).sum();
    let unacked_delivered = got.keys().filter(|id| !acked.contains(id)).count();
    eprintln!(
        "kill -9 x4: {} acked events all delivered; {dups} duplicates; {unacked_delivered} delivered that were never acked (sent before a kill)",
        acked.len()
    );
    // a duplicate can only come from a batch written before a kill but not
    // acked, then sent again: never more than one batch per connection per kill
    assert!(
        dups <= 2 * 4 * 50,
        "duplicates bounded by one batch per producer per kill: {dups}"
    );
}

#[test]
fn backpressure_bounds_disk_and_memory_and_loses_nothing() {
    let cfg = config("flush_interval = \"100ms\"\nchunk_limit_size = \"64KiB\"\ntotal_limit_size = \"256KiB\"\nretry_wait = \"100ms\"\nretry_max_interval = \"200ms\"\nretry_forever = true");
    let a = Agent::start(&cfg);
    block_output(&a);
    let p = Producer::start(a.port, 0, 100);
    std::thread::sleep(Duration::from_secs(2));
    let acked_then = p.acked.lock().unwrap().len();
    std::thread::sleep(Duration::from_secs(1));
    let acked_later = p.acked.lock().unwrap().len();
    assert_eq!(
        acked_then, acked_later,
        "no acks while the buffer is full: the producer is pushed back"
    );
    assert!(acked_then > 0 && acked_then < 5000, "acked {acked_then}");
    let on_disk = dir_size(&a.path("data/buffer/files"));
    let limit = 256 * 1024 + 64 * 1024 + 16 * 1024; // limit + one chunk + headers
    assert!(on_disk <= limit, "disk use {on_disk} within {limit}");
    let rss_kib = common::proc_kib(a.pid(), "VmRSS");
    assert!(rss_kib < 64 * 1024, "RSS stays bounded: {rss_kib} KiB");
    eprintln!("blocked: {acked_then} acked, {on_disk} bytes on disk, RSS {rss_kib} KiB");
    unblock_output(&a);
    std::thread::sleep(Duration::from_millis(1500));
    let acked = p.finish();
    assert!(
        acked.len() > acked_then,
        "producing resumed once the output came back"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = delivered_ids(&a);
    while Instant::now() < deadline && !acked.iter().all(|id| got.contains_key(id)) {
        std::thread::sleep(Duration::from_millis(100));
        got = delivered_ids(&a);
    }
    assert!(
        acked.iter().all(|id| got.contains_key(id)),
        "every acked event delivered"
    );
}

#[test]
fn torn_and_corrupt_chunks_at_start() {
    let cfg = config("flush_interval = \"1h\"\nchunk_limit_records = 10\nretry_wait = \"10s\"");
    let mut a = Agent::start(&cfg);
    block_output(&a);
    let mut s = a.connect();
    for m in 0..6u64 {
        assert!(send_acked(&mut s, m * 5, 5, &format!("c{m}")));
    }
    a.kill9();
    let dir = a.path("data/buffer/files");
    let mut chunks: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    chunks.sort();
    assert_eq!(chunks.len(), 3, "three chunks of two blocks each");
    // chunk 0: cut in the middle of its second block (a torn write)
    let len = std::fs::metadata(&chunks[0]).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&chunks[0])
        .unwrap()
        .set_len(len - 30)
        .unwrap();
    // chunk 1: flip a bit inside its first block
    let mut b = std::fs::read(&chunks[1]).unwrap();
    let header_len = 16 + u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize;
    b[header_len + 12 + 20] ^= 0x04;
    std::fs::write(&chunks[1], &b).unwrap();
    // chunk 2: intact
    unblock_output(&a);
    a.restart();
    let lines = wait_lines(&a.path("out"), 15, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        read_json_lines(&a.path("out")).len(),
        15,
        "5 from the torn chunk + 10 from the intact one: {}",
        a.stderr()
    );
    assert_eq!(lines.len(), 15);
    let err = a.stderr();
    assert!(
        err.contains("torn write") && err.contains("dropped_records=Some(5)"),
        "{err}"
    );
    assert!(err.contains("corrupt chunk set aside"), "{err}");
    let corrupt: Vec<_> = std::fs::read_dir(a.path("data/corrupt"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(corrupt.len(), 2, "the chunk and its reason: {corrupt:?}");
    let reason = corrupt
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".reason.json"))
        .unwrap();
    let note: serde_json::Value = serde_json::from_slice(&std::fs::read(reason).unwrap()).unwrap();
    assert!(
        note["reason"]
            .as_str()
            .unwrap()
            .contains("fails its checksum"),
        "{note}"
    );
    // set aside intact: byte for byte what was there
    let kept = corrupt
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".chunk"))
        .unwrap();
    assert_eq!(std::fs::read(kept).unwrap(), b);
}

#[test]
fn retry_schedule_dead_letter_and_replay() {
    let cfg = config("flush_interval = \"50ms\"\nretry_wait = \"100ms\"\nretry_exponential_backoff_base = 2\nretry_randomize = false\nretry_max_times = 3");
    let a = Agent::start(&cfg);
    block_output(&a);
    let mut s = a.connect();
    assert!(send_acked(&mut s, 0, 7, "x"));
    assert!(
        a.wait_stderr("dead-letter", Duration::from_secs(10)),
        "{}",
        a.stderr()
    );
    let err = a.stderr();
    let waits: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("will retry"))
        .filter_map(|l| l.split("retry_in=").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .collect();
    assert_eq!(waits, vec!["100ms", "200ms", "400ms"], "{err}");
    let dl = a.path("data/dead-letter/files");
    let files: Vec<_> = std::fs::read_dir(&dl)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 2);
    let note_path = files
        .iter()
        .find(|p| p.extension().unwrap() == "json")
        .unwrap();
    let note: serde_json::Value =
        serde_json::from_slice(&std::fs::read(note_path).unwrap()).unwrap();
    assert_eq!(note["reason"], "retries exhausted");
    assert_eq!(note["attempts"], 4);
    assert_eq!(note["records"], 7);
    assert_eq!(note["output"], "files");
    assert!(
        note["error"].as_str().unwrap().contains("blocked"),
        "{note}"
    );

    let cfg_path = a.path("fuwa.toml");
    let data = a.path("data");
    let run = |args: &[&str]| {
        std::process::Command::new(bin())
            .args(args)
            .arg("-c")
            .arg(&cfg_path)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap()
    };
    let o = run(&["dead-letter", "list"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(
        out.contains("files") && out.contains("retries exhausted") && out.contains(" 7 "),
        "{out}"
    );
    // still down: replay fails and keeps it
    let o = run(&["dead-letter", "replay"]);
    assert!(!o.status.success());
    assert_eq!(std::fs::read_dir(&dl).unwrap().count(), 2);
    // back up: replay delivers it once and removes it
    unblock_output(&a);
    let o = run(&["dead-letter", "replay", "--output", "files"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 replayed"));
    let ids = delivered_ids(&a);
    assert_eq!(ids.len(), 7);
    assert!(ids.values().all(|c| *c == 1));
    assert_eq!(std::fs::read_dir(&dl).unwrap().count(), 0);
}

#[test]
fn sigterm_leaves_undelivered_chunks_on_disk_for_the_next_start() {
    let cfg = config("flush_interval = \"50ms\"\nretry_wait = \"100ms\"\nretry_forever = true");
    let mut a = Agent::start(&cfg);
    block_output(&a);
    let mut s = a.connect();
    for m in 0..5u64 {
        assert!(send_acked(&mut s, m * 10, 10, &format!("c{m}")));
    }
    drop(s);
    let t = Instant::now();
    assert!(a.stop().success());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "stopped within shutdown_timeout"
    );
    assert!(dir_size(&a.path("data/buffer/files")) > 0, "left on disk");
    unblock_output(&a);
    a.restart();
    let lines = wait_lines(&a.path("out"), 50, Duration::from_secs(10));
    assert_eq!(lines.len(), 50, "{}", a.stderr());
    assert!(
        a.stderr().contains("queued the chunks left on disk"),
        "{}",
        a.stderr()
    );
}

#[test]
fn acks_wait_for_fsync_and_survive_kill_9_with_the_output_up() {
    // output up but slow to flush (1h): what was acked is only on disk
    let cfg = config("flush_interval = \"1h\"");
    let mut a = Agent::start(&cfg);
    let mut s = a.connect();
    for m in 0..20u64 {
        assert!(send_acked(&mut s, m * 25, 25, &format!("c{m}")));
    }
    a.kill9();
    a.restart();
    // recovered chunks are queued at once
    let lines = wait_lines(&a.path("out"), 500, Duration::from_secs(10));
    assert_eq!(lines.len(), 500);
    let mut buf = [0u8; 1];
    let _ = s.read(&mut buf);
}

/// One deadline for the whole stop: the output is down and the buffer is
/// full, so a client's message waits for room when SIGTERM comes. The agent
/// still exits within shutdown_timeout (2 s) plus a little, the waiting
/// message is refused (never acked), and every acked event is on disk and
/// delivered once at the next start.
#[test]
fn sigterm_with_a_client_waiting_on_a_full_buffer_stops_within_shutdown_timeout() {
    let cfg = config("flush_interval = \"50ms\"\nchunk_limit_size = \"2KiB\"\ntotal_limit_size = \"4KiB\"\nretry_wait = \"100ms\"\nretry_max_interval = \"200ms\"\nretry_forever = true");
    let mut a = Agent::start(&cfg);
    block_output(&a);
    let mut s = a.connect();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    // ~1 KiB a message: a few are acked, then one waits for room
    let mut acked = 0u64;
    loop {
        assert!(acked < 100, "the buffer never filled");
        if !send_acked(&mut s, acked * 10, 10, &format!("c{acked}")) {
            break;
        }
        acked += 1;
    }
    assert!(acked > 0);
    let t = Instant::now();
    assert!(a.stop().success(), "{}", a.stderr());
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(2000 + 2500),
        "stopped after {took:?} with shutdown_timeout = 2s"
    );
    assert!(dir_size(&a.path("data/buffer/files")) > 0, "left on disk");
    unblock_output(&a);
    a.restart();
    let want = (acked * 10) as usize;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = delivered_ids(&a);
    while Instant::now() < deadline && got.len() < want {
        std::thread::sleep(Duration::from_millis(50));
        got = delivered_ids(&a);
    }
    assert!(
        (0..acked * 10).all(|id| got.get(&id) == Some(&1)),
        "every acked event delivered once: {} of {want}",
        got.len()
    );
    assert_eq!(got.len(), want, "the refused message was not written");
}
