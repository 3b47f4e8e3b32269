//! The memory bound of a config (docs/limits.md): `fuwa check` prints it
//! with its parts, which follow the config as the table says; and an agent
//! under load stays at or below the bound it logged at start.

#[path = "common/check.rs"]
mod check;
mod common;

use std::time::{Duration, Instant};

use common::{bin, message, send, Agent};

const MIB: u64 = 1 << 20;
const KIB: u64 = 1 << 10;

/// `fuwa check` on `toml`: (the `memory bound:` line, every part as
/// (who: what, bytes)).
fn check(toml: &str) -> (String, Vec<(String, u64)>) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, toml.replace("{dir}", &dir.path().display().to_string())).unwrap();
    let (out, parts) = check::bound_parts(bin(), &p, &[]);
    let mut lines = out.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .ends_with("ok (1 input(s), 0 filter(s), 1 output(s))"),
        "{out}"
    );
    let line = lines.next().unwrap().to_string();
    assert!(line.starts_with("memory bound: "), "{out}");
    (line, parts)
}

fn part(parts: &[(String, u64)], what: &str) -> u64 {
    let found: Vec<_> = parts.iter().filter(|(w, _)| w.contains(what)).collect();
    assert_eq!(found.len(), 1, "`{what}` in {parts:#?}");
    found[0].1
}

fn total(parts: &[(String, u64)]) -> u64 {
    parts.iter().map(|(_, n)| n).sum()
}

/// "87.3" of `memory bound: 87.3 MiB (...)`
fn line_mib(line: &str) -> f64 {
    line["memory bound: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

const FORWARD_TO_S3: &str = r#"
[agent]
data_dir = "{dir}/data"

[[input]]
id = "in"
type = "forward"
bind = "127.0.0.1:0"
max_connections = 10
message_length_limit = "1MiB"
pending_bytes_limit = "8MiB"

[[output]]
id = "out"
type = "s3"
bucket = "b"
region = "us-east-1"
key = "logs/${tag}/${chunk_id}.json.gz"
multipart_threshold = "16MiB"
part_size = "8MiB"
[output.buffer]
chunk_limit_size = "4MiB"
total_limit_size = "64MiB"
max_open_chunks = 16
flush_thread_count = 2
"#;

#[test]
fn check_prints_the_parts_the_config_sets() {
    let (line, parts) = check(FORWARD_TO_S3);
    // the line's total is the sum of the parts
    let sum = total(&parts) as f64 / MIB as f64;
    assert!((line_mib(&line) - sum).abs() < 0.06, "{line} vs {sum}");
    assert!(line.contains("forward \"in\" "), "{line}");
    assert!(line.contains("s3 \"out\" "), "{line}");
    // forward: 2 × pending, connections × 512 KiB, workers × 10 × message
    assert_eq!(
        part(&parts, "forward \"in\": 2 × pending_bytes_limit"),
        16 * MIB
    );
    assert_eq!(part(&parts, "10 connections × read buffer"), 10 * 512 * KIB);
    let workers = part(&parts, "worker threads × 10 × message_length_limit") / (10 * MIB);
    assert!(workers >= 1, "{parts:#?}");
    // s3, per write, × 2 flush threads: the part being filled (16 MiB +
    // a 1 MiB piece, grown ×2), gzip's state; the buffer: 2 chunks read
    assert_eq!(
        part(&parts, "object or part being filled"),
        2 * 2 * 17 * MIB
    );
    assert_eq!(part(&parts, "gzip state"), 2 * 320 * KIB);
    assert_eq!(part(&parts, "a chunk read whole"), 2 * 4 * MIB);
    assert_eq!(part(&parts, "open + 16 queued chunks"), (16 + 16) * 256);

    // a bigger chunk: 2 flush threads × 4 MiB more read whole; 8 fewer
    // queued chunks of 256 B
    let (_, p2) = check(&FORWARD_TO_S3.replace("\"4MiB\"", "\"8MiB\""));
    assert_eq!(total(&p2) - total(&parts), 2 * 4 * MIB - 8 * 256);
    // pending_bytes_limit 8 → 16 MiB: twice 8 MiB more
    let (_, p3) = check(&FORWARD_TO_S3.replace(
        "pending_bytes_limit = \"8MiB\"",
        "pending_bytes_limit = \"16MiB\"",
    ));
    assert_eq!(total(&p3) - total(&parts), 2 * 8 * MIB);
    // a larger part size moves the part being filled: max(16, 32) + 1, ×2 ×2
    let (_, p4) = check(&FORWARD_TO_S3.replace("part_size = \"8MiB\"", "part_size = \"32MiB\""));
    assert_eq!(part(&p4, "object or part being filled"), 2 * 2 * 33 * MIB);
    // a memory buffer holds its total_limit_size instead of chunks read
    let (_, p5) =
        check(&FORWARD_TO_S3.replace("max_open_chunks", "type = \"memory\"\nmax_open_chunks"));
    assert_eq!(part(&p5, "memory buffer: total_limit_size"), 64 * MIB);
}

#[test]
fn every_plugin_states_its_parts() {
    let tail = r#"
[agent]
data_dir = "{dir}/data"
[[input]]
id = "t"
type = "tail"
path = "{dir}/*.log"
tag = "app"
max_line_size = "64KiB"
[[output]]
id = "f"
type = "firehose"
delivery_stream = "d"
region = "us-east-1"
aggregate = true
max_in_flight = 3
"#;
    let (_, parts) = check(tail);
    // tail: 1 MiB + 2 × max_line_size, grown ×2, being built and in flight
    assert_eq!(part(&parts, "a batch being built"), 2 * (MIB + 128 * KIB));
    assert_eq!(part(&parts, "a batch in flight"), 2 * (MIB + 128 * KIB));
    assert_eq!(part(&parts, "file(s) matched now"), 2 * 64 * KIB);
    // firehose: 3 calls × 4 MiB × 11/3; the chunk rendered; an aggregate
    assert_eq!(part(&parts, "3 calls in flight"), 3 * 4 * MIB * 11 / 3);
    assert_eq!(part(&parts, "the chunk's records as JSON"), 2 * 8 * MIB);
    assert_eq!(part(&parts, "an aggregate of at most"), 2 * 1000 * KIB);
}

const LOADED: &str = r#"
[agent]
log_level = "info"

[[input]]
type = "forward"
bind = "127.0.0.1:{port}"
max_connections = 4
message_length_limit = "512KiB"
pending_bytes_limit = "2MiB"

[[output]]
match = "**"
type = "file"
path = "{dir}/out/${tag}.log"
[output.buffer]
chunk_limit_size = "2MiB"
total_limit_size = "64MiB"
max_open_chunks = 16
flush_interval = "200ms"
"#;

#[test]
fn an_agent_under_load_stays_within_its_bound() {
    let mut agent = Agent::start(LOADED);
    assert!(agent.wait_stderr("memory bound: ", Duration::from_secs(20)));
    let log = agent.stderr();
    let bound: u64 = log
        .lines()
        .find(|l| l.contains("memory bound: "))
        .and_then(|l| l.split("bytes=").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no bytes= in the bound line:\n{log}"));
    // the bound counts the release binary at rest; this one is the test
    // build (its debug pages are larger): its own at-rest figure replaces
    // the constant, the rest of the bound is what the config may add
    let rest = common::proc_kib(agent.pid(), "VmHWM") * KIB;
    let allowed = bound - fuwa::cli::bound::AT_REST + rest.max(fuwa::cli::bound::AT_REST);

    // two connections, 60 messages of 2,000 events (~130 KiB) each: ~15 MiB
    let (messages, per) = (60u64, 2000u64);
    let senders: Vec<_> = (0..2u64)
        .map(|c| {
            let mut s = agent.connect();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            std::thread::spawn(move || {
                for m in 0..messages {
                    let first = (c * messages + m) * per;
                    send(&mut s, &message("load", first, per, &format!("c{c}m{m}")));
                    let ack = common::read_mp(&mut s);
                    assert!(ack.as_map().is_some(), "{ack}");
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let want = 2 * messages * per;
    let path = agent.path("out/load.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = std::fs::read(&path)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64)
            .unwrap_or(0);
        if n >= want {
            break;
        }
        assert!(Instant::now() < deadline, "{n} of {want} lines delivered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let peak = common::proc_kib(agent.pid(), "VmHWM") * KIB;
    agent.stop();
    assert!(
        peak <= allowed,
        "peak {peak} bytes over the bound {allowed} (logged {bound}, at rest {rest})"
    );
    eprintln!(
        "peak {:.1} MiB, at rest {:.1} MiB, bound {:.1} MiB (with this build at rest {:.1})",
        peak as f64 / MIB as f64,
        rest as f64 / MIB as f64,
        bound as f64 / MIB as f64,
        allowed as f64 / MIB as f64
    );
}

/// A PackedForward message of `n` events of `size` bytes each, acked.
fn big_message(tag: &str, n: usize, size: usize, chunk: &str) -> Vec<u8> {
    use rmpv::Value as V;
    let mut body = Vec::new();
    for i in 0..n {
        let rec = V::Map(vec![
            (V::from("i"), V::from(i as u64)),
            (V::from("pad"), V::from("y".repeat(size))),
        ]);
        body.extend(common::mp(&V::Array(vec![V::from(1_700_000_000u32), rec])));
    }
    common::mp(&V::Array(vec![
        V::from(tag),
        V::Binary(body),
        V::Map(vec![(V::from("chunk"), V::from(chunk))]),
    ]))
}

/// A connection that once carried a big message does not keep its buffer
/// while it stays open: the bound counts 512 KiB per connection, not the
/// largest message each one ever sent.
#[test]
fn idle_connections_give_back_big_message_buffers() {
    let mut agent = Agent::start(
        r#"
[[input]]
type = "forward"
bind = "127.0.0.1:{port}"
message_length_limit = "16MiB"
pending_bytes_limit = "64MiB"

[[output]]
match = "**"
type = "null"
[output.buffer]
flush_interval = "100ms"
"#,
    );
    let rest = common::proc_kib(agent.pid(), "VmRSS") * KIB;
    // six connections, one after the other, each sends one 6 MiB message
    // (mmapped: its pages go back to the system when freed) and stays open
    let msg = big_message("big", 6, 1 << 20, "c");
    let mut open = Vec::new();
    for _ in 0..6 {
        let mut s = agent.connect();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        send(&mut s, &msg);
        let ack = common::read_mp(&mut s);
        assert!(ack.as_map().is_some(), "{ack}");
        open.push(s);
    }
    // what the buffer still holds drains to the null output; then what is
    // resident is the agent at rest, not 6 × 6 MiB of read buffers
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut now;
    loop {
        now = common::proc_kib(agent.pid(), "VmRSS") * KIB;
        if now < rest + 16 * MIB || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(open);
    agent.stop();
    assert!(
        now < rest + 16 * MIB,
        "VmRSS {:.1} MiB with six idle connections, {:.1} MiB at rest",
        now as f64 / MIB as f64,
        rest as f64 / MIB as f64
    );
}
