//! fuwa-steady: the steady loads of bench/steady.sh, and the check of what an
//! agent wrote for them.
//!
//! - `tail`: appends ~512-byte JSON lines to a file at `--rate` lines/s in
//!   10 ms steps (one write(2) per step), as an application logging at a
//!   steady rate does.
//! - `forward`: `--connections` keep-alive connections, each sending a
//!   Forward-mode message `[tag, [[EventTime, record], ...], {"chunk": id}]`
//!   of `--batch` events every `batch × connections / rate` seconds and
//!   waiting for its `{"ack": id}` before the next, as fluent-logger
//!   libraries with acks on send them. Connections are out of step by
//!   interval / connections, as independent clients are.
//! - `http`: `--connections` keep-alive connections, one `POST /<tag>` of one
//!   JSON event every `connections / rate` seconds each, waiting for the
//!   response (2xx counted).
//! - `floor`: the least a server can do for the forward or HTTP load
//!   (floor.rs), to measure what the kernel alone costs per message.
//! - `check`: reads every file under `--dir` (incrementally, polling until
//!   `--expect` lines arrived or `--timeout`), takes the `"seq":N` of each
//!   line and reports how many lines, how many distinct seqs in 0..expect,
//!   duplicates and missing ones; exits 1 unless every seq is there.
//!
//! Every event carries `"seq": N`, N from 0 to rate × duration − 1, so the
//! check proves each one arrived. Pacing is by absolute deadlines: a step
//! that is late is sent at once, so the total is always rate × duration and
//! the rate holds on average even on a busy machine (`late_steps` counts
//! steps sent more than one step late).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};

mod floor;

/// The `content-length` of a lowercased HTTP head (0 without one).
fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[derive(Parser, Debug)]
#[command(
    name = "fuwa-steady",
    about = "steady loads (tail, forward, http) and their output check"
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// append JSON lines to a file at a steady rate
    Tail {
        #[arg(long)]
        path: PathBuf,
        #[arg(long, default_value_t = 20000)]
        rate: u64,
        #[arg(long, default_value_t = 20.0)]
        duration: f64,
        /// bytes per line, newline included (at least 160)
        #[arg(long, default_value_t = 512)]
        line_size: usize,
    },
    /// forward protocol, Forward mode with acks
    Forward {
        #[arg(long)]
        addr: String,
        #[arg(long, default_value_t = 10000)]
        rate: u64,
        #[arg(long, default_value_t = 20.0)]
        duration: f64,
        #[arg(long, default_value_t = 4)]
        connections: u64,
        /// events per message
        #[arg(long, default_value_t = 25)]
        batch: u64,
        #[arg(long, default_value = "bench.forward")]
        tag: String,
    },
    /// HTTP POST of one JSON event per request
    Http {
        #[arg(long)]
        addr: String,
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 20.0)]
        duration: f64,
        #[arg(long, default_value_t = 4)]
        connections: u64,
        #[arg(long, default_value = "bench.http")]
        tag: String,
    },
    /// the least a server does for the forward or HTTP load (read each
    /// message, answer it, keep nothing): prints its port, serves until killed
    Floor {
        /// forward or http
        #[arg(long)]
        kind: String,
    },
    /// check the lines an agent wrote
    Check {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        expect: u64,
        /// seconds to wait for every line
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
    },
}

fn main() {
    let args = Args::parse();
    let r = match args.cmd {
        Cmd::Tail {
            path,
            rate,
            duration,
            line_size,
        } => tail(&path, rate, duration, line_size),
        Cmd::Forward {
            addr,
            rate,
            duration,
            connections,
            batch,
            tag,
        } => paced(&addr, rate, duration, connections, batch, &tag, true),
        Cmd::Http {
            addr,
            rate,
            duration,
            connections,
            tag,
        } => paced(&addr, rate, duration, connections, 1, &tag, false),
        Cmd::Floor { kind } => floor::serve(&kind),
        Cmd::Check {
            dir,
            expect,
            timeout,
        } => check(&dir, expect, timeout),
    };
    if let Err(e) = r {
        eprintln!("fuwa-steady: {e}");
        std::process::exit(1);
    }
}

/// A JSON event of `size` bytes (no newline) with `"seq": seq` first.
fn json_event(seq: u64, size: usize) -> String {
    let mut s = format!(
        r#"{{"seq":{seq},"level":"info","logger":"app.http","host":"10.1.{}.{}","method":"GET","path":"/api/v1/items/{}","code":200,"ms":{},"msg":""#,
        seq % 251,
        seq % 241,
        seq % 100_000,
        seq % 997
    );
    let fill = size.saturating_sub(s.len() + 2);
    // a deterministic, readable filler
    const WORDS: &[u8] = b"request served from cache after revalidation with upstream ";
    for i in 0..fill {
        s.push(WORDS[(i + seq as usize) % WORDS.len()] as char);
    }
    s.push_str("\"}");
    s
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

fn tail(path: &Path, rate: u64, duration: f64, line_size: usize) -> Result<(), String> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let total = (rate as f64 * duration).round() as u64;
    let steps = (duration * 100.0).round().max(1.0) as u64;
    let step = Duration::from_millis(10);
    let t0 = Instant::now();
    let (mut seq, mut late, mut buf) = (0u64, 0u64, Vec::new());
    for i in 0..steps {
        let due = t0 + step * i as u32;
        if Instant::now() > due + step {
            late += 1;
        }
        sleep_until(due);
        let until = total * (i + 1) / steps;
        buf.clear();
        while seq < until {
            buf.extend_from_slice(json_event(seq, line_size - 1).as_bytes());
            buf.push(b'\n');
            seq += 1;
        }
        f.write_all(&buf).map_err(|e| format!("write: {e}"))?;
    }
    println!(
        "{{\"sent\":{seq},\"seconds\":{:.3},\"late_steps\":{late}}}",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let _ = rmp::encode::write_str(out, s);
}

/// The msgpack record of event `seq` (the same fields as the JSON one).
fn msgpack_record(out: &mut Vec<u8>, seq: u64) {
    let _ = rmp::encode::write_map_len(out, 9);
    put_str(out, "seq");
    let _ = rmp::encode::write_uint(out, seq);
    for (k, v) in [
        ("level", "info".to_string()),
        ("logger", "app.http".to_string()),
        ("host", format!("10.1.{}.{}", seq % 251, seq % 241)),
        ("method", "GET".to_string()),
        ("path", format!("/api/v1/items/{}", seq % 100_000)),
    ] {
        put_str(out, k);
        put_str(out, &v);
    }
    put_str(out, "code");
    let _ = rmp::encode::write_uint(out, 200);
    put_str(out, "ms");
    let _ = rmp::encode::write_uint(out, seq % 997);
    put_str(out, "msg");
    put_str(
        out,
        "request served from cache after revalidation with upstream",
    );
}

fn event_time(out: &mut Vec<u8>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    out.extend_from_slice(&[0xd7, 0x00]);
    out.extend_from_slice(&(now.as_secs() as u32).to_be_bytes());
    out.extend_from_slice(&now.subsec_nanos().to_be_bytes());
}

#[derive(Default)]
struct Totals {
    acked: AtomicU64,
    late: AtomicU64,
    errors: AtomicU64,
    lat_us_sum: AtomicU64,
    lat_us_max: AtomicU64,
    requests: AtomicU64,
}

/// `connections` threads, each with its share of rate × duration events in
/// messages of `batch`, paced by absolute deadlines.
fn paced(
    addr: &str,
    rate: u64,
    duration: f64,
    connections: u64,
    batch: u64,
    tag: &str,
    forward: bool,
) -> Result<(), String> {
    let connections = connections.max(1);
    let batch = batch.max(1);
    let total = (rate as f64 * duration).round() as u64;
    let per_conn = total / connections;
    if per_conn * connections != total || !per_conn.is_multiple_of(batch) {
        return Err(format!(
            "rate × duration ({total}) must split into {connections} connections of whole batches of {batch}"
        ));
    }
    let messages = per_conn / batch;
    let interval = Duration::from_secs_f64(duration / messages as f64);
    let totals = Arc::new(Totals::default());
    let t0 = Instant::now();
    let mut threads = Vec::new();
    for c in 0..connections {
        let (addr, tag, totals) = (addr.to_string(), tag.to_string(), totals.clone());
        threads.push(std::thread::spawn(move || -> Result<(), String> {
            let mut s = TcpStream::connect(&addr).map_err(|e| format!("{addr}: {e}"))?;
            let _ = s.set_nodelay(true);
            s.set_read_timeout(Some(Duration::from_secs(30)))
                .map_err(|e| e.to_string())?;
            let mut msg = Vec::new();
            let mut got = Vec::new();
            for m in 0..messages {
                // connections are not in step with each other (as
                // independent clients are not): each starts its own share
                // of an interval later than the one before
                let due = t0 + interval * m as u32 + interval * c as u32 / connections as u32;
                if Instant::now() > due + interval.max(Duration::from_millis(10)) {
                    totals.late.fetch_add(1, Ordering::Relaxed);
                }
                sleep_until(due);
                // seqs: connection c owns c, c + connections, ...
                let first = m * batch;
                let seqs = (first..first + batch).map(|k| k * connections + c);
                msg.clear();
                let id = format!("c{c}m{m:020}");
                if forward {
                    let _ = rmp::encode::write_array_len(&mut msg, 3);
                    put_str(&mut msg, &tag);
                    let _ = rmp::encode::write_array_len(&mut msg, batch as u32);
                    for seq in seqs {
                        let _ = rmp::encode::write_array_len(&mut msg, 2);
                        event_time(&mut msg);
                        msgpack_record(&mut msg, seq);
                    }
                    let _ = rmp::encode::write_map_len(&mut msg, 1);
                    put_str(&mut msg, "chunk");
                    put_str(&mut msg, &id);
                } else {
                    let seq = seqs.into_iter().next().unwrap_or(0);
                    let body = json_event(seq, 300);
                    msg.extend_from_slice(
                        format!(
                            "POST /{tag} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    );
                }
                let sent = Instant::now();
                s.write_all(&msg).map_err(|e| format!("send: {e}"))?;
                let ok = if forward {
                    read_ack(&mut s, &mut got, &id)?
                } else {
                    read_response(&mut s, &mut got)?
                };
                let us = sent.elapsed().as_micros() as u64;
                totals.lat_us_sum.fetch_add(us, Ordering::Relaxed);
                totals.lat_us_max.fetch_max(us, Ordering::Relaxed);
                totals.requests.fetch_add(1, Ordering::Relaxed);
                if ok {
                    totals.acked.fetch_add(batch, Ordering::Relaxed);
                } else {
                    totals.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(())
        }));
    }
    for t in threads {
        t.join().map_err(|_| "a connection thread panicked")??;
    }
    let n = totals.requests.load(Ordering::Relaxed).max(1);
    println!(
        "{{\"sent\":{total},\"acked\":{},\"errors\":{},\"seconds\":{:.3},\"late_steps\":{},\"latency_mean_us\":{},\"latency_max_us\":{}}}",
        totals.acked.load(Ordering::Relaxed),
        totals.errors.load(Ordering::Relaxed),
        t0.elapsed().as_secs_f64(),
        totals.late.load(Ordering::Relaxed),
        totals.lat_us_sum.load(Ordering::Relaxed) / n,
        totals.lat_us_max.load(Ordering::Relaxed),
    );
    if totals.acked.load(Ordering::Relaxed) != total {
        return Err("not every event was acknowledged".into());
    }
    Ok(())
}

/// Reads one msgpack value and checks it is `{"ack": id}`.
fn read_ack(s: &mut TcpStream, got: &mut Vec<u8>, id: &str) -> Result<bool, String> {
    let mut tmp = [0u8; 512];
    loop {
        let mut cur = std::io::Cursor::new(&got[..]);
        match rmpv::decode::read_value(&mut cur) {
            Ok(v) => {
                let used = cur.position() as usize;
                got.drain(..used);
                let ok = v
                    .as_map()
                    .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("ack")))
                    .and_then(|(_, v)| v.as_str())
                    == Some(id);
                return Ok(ok);
            }
            Err(_) if got.len() < 4096 => {}
            Err(e) => return Err(format!("bad reply: {e}")),
        }
        let n = s.read(&mut tmp).map_err(|e| format!("read ack: {e}"))?;
        if n == 0 {
            return Err("connection closed before the ack".into());
        }
        got.extend_from_slice(&tmp[..n]);
    }
}

/// Reads one HTTP/1.1 response (Content-Length or none); true on 2xx.
fn read_response(s: &mut TcpStream, got: &mut Vec<u8>) -> Result<bool, String> {
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let status: u32 = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or("no status code")?;
            let len = content_length(&head);
            if got.len() >= end + 4 + len {
                got.drain(..end + 4 + len);
                return Ok((200..300).contains(&status));
            }
        }
        if got.len() > 1 << 20 {
            return Err("response too large".into());
        }
        let n = s
            .read(&mut tmp)
            .map_err(|e| format!("read response: {e}"))?;
        if n == 0 {
            return Err("connection closed before the response".into());
        }
        got.extend_from_slice(&tmp[..n]);
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn check(dir: &Path, expect: u64, timeout: f64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs_f64(timeout);
    let mut seen = vec![false; expect as usize];
    let (mut lines, mut distinct, mut dupes, mut outside, mut no_seq) = (0u64, 0u64, 0, 0, 0);
    // per file: bytes consumed and the unfinished last line
    let mut state: std::collections::HashMap<PathBuf, (u64, Vec<u8>)> = Default::default();
    let mut buf = Vec::new();
    loop {
        let mut paths = Vec::new();
        files_under(dir, &mut paths);
        for p in paths {
            let (off, rest) = state.entry(p.clone()).or_default();
            let Ok(mut f) = std::fs::File::open(&p) else {
                continue;
            };
            use std::io::Seek;
            if f.seek(std::io::SeekFrom::Start(*off)).is_err() {
                continue;
            }
            buf.clear();
            let Ok(n) = f.read_to_end(&mut buf) else {
                continue;
            };
            *off += n as u64;
            rest.extend_from_slice(&buf);
            let mut start = 0;
            while let Some(nl) = rest[start..].iter().position(|&b| b == b'\n') {
                let line = &rest[start..start + nl];
                start += nl + 1;
                lines += 1;
                match seq_of(line) {
                    Some(s) if s < expect => {
                        if seen[s as usize] {
                            dupes += 1;
                        } else {
                            seen[s as usize] = true;
                            distinct += 1;
                        }
                    }
                    Some(_) => outside += 1,
                    None => no_seq += 1,
                }
            }
            rest.drain(..start);
        }
        if distinct >= expect || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "{{\"lines\":{lines},\"distinct\":{distinct},\"missing\":{},\"duplicates\":{dupes},\"out_of_range\":{outside},\"without_seq\":{no_seq}}}",
        expect - distinct
    );
    if distinct != expect {
        return Err(format!("{} of {expect} events missing", expect - distinct));
    }
    Ok(())
}

/// The number after the first `"seq":` of a line.
fn seq_of(line: &[u8]) -> Option<u64> {
    let k = line.windows(6).position(|w| w == b"\"seq\":")?;
    let digits: Vec<u8> = line[k + 6..]
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_their_size_and_seq() {
        for seq in [0, 7, 123_456_789] {
            let e = json_event(seq, 511);
            assert_eq!(e.len(), 511);
            assert_eq!(seq_of(e.as_bytes()), Some(seq));
            assert!(e.starts_with('{') && e.ends_with("\"}"));
        }
        assert_eq!(seq_of(br#"{"a":1,"seq": 42}"#), Some(42));
        assert_eq!(seq_of(br#"{"a":1}"#), None);
    }
}
