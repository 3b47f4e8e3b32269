//! fuwa-http-loadgen: HTTP/1.1 load generator for the HTTP input.
//!
//! `--connections` keep-alive connections, one request in flight on each:
//! `POST /<tag>` with one small JSON event (about 200 bytes, the same bytes
//! every time), read the response (status line, headers, Content-Length
//! body), send the next. Runs `--warmup` first, then counts 2xx responses for
//! `--duration` and prints requests per second, other statuses, errors and
//! latency percentiles. One thread (a current-thread tokio runtime): the
//! generator takes as little CPU as it can from the agent it measures.
//! A connection the server closes is reopened (counted in `reconnects`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
#[command(
    name = "fuwa-http-loadgen",
    about = "HTTP load generator: keep-alive connections, one JSON event per POST, counts 2xx per second"
)]
struct Args {
    /// server address
    #[arg(long, default_value = "127.0.0.1:9880")]
    addr: String,
    /// concurrent keep-alive connections
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// measured seconds
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// seconds of load before measuring
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// request path (the tag)
    #[arg(long, default_value = "/bench.http")]
    path: String,
    /// the JSON body (default: a page-view event of about 200 bytes)
    #[arg(long)]
    body: Option<String>,
}

const DEFAULT_BODY: &str = r#"{"event":"pageview","user_id":1234567,"note_id":"n1a2b3c4d5e6","path":"/alice/n/n1a2b3c4d5e6","referrer":"https://www.google.com/","ua":"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X)","ms":42}"#;

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    other: AtomicU64,
    errors: AtomicU64,
    reconnects: AtomicU64,
}

fn main() {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(run(args));
}

async fn run(args: Args) {
    let body = args
        .body
        .clone()
        .unwrap_or_else(|| DEFAULT_BODY.to_string());
    let request: Arc<[u8]> = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        args.path,
        args.addr,
        body.len(),
        body
    )
    .into_bytes()
    .into();
    let counts = Arc::new(Counts::default());
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (req, c, m, s, addr) = (
            request.clone(),
            counts.clone(),
            measuring.clone(),
            stop.clone(),
            args.addr.clone(),
        );
        tasks.push(tokio::spawn(
            async move { connection(addr, req, c, m, s).await },
        ));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        if let Ok(l) = t.await {
            lat.extend(l);
        }
    }
    lat.sort_unstable();
    let pct = |p: f64| {
        if lat.is_empty() {
            0
        } else {
            lat[((lat.len() - 1) as f64 * p) as usize]
        }
    };
    let ok = counts.ok.load(Ordering::Relaxed);
    println!(
        "connections={} duration={:.2}s ok={} rps={:.0} non_2xx={} errors={} reconnects={} p50_us={} p99_us={} max_us={}",
        args.connections,
        elapsed,
        ok,
        ok as f64 / elapsed,
        counts.other.load(Ordering::Relaxed),
        counts.errors.load(Ordering::Relaxed),
        counts.reconnects.load(Ordering::Relaxed),
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or(0),
    );
}

/// One keep-alive connection; returns the latencies (µs) measured.
async fn connection(
    addr: String,
    req: Arc<[u8]>,
    counts: Arc<Counts>,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Vec<u32> {
    let mut lat = Vec::with_capacity(1 << 16);
    let mut buf = vec![0u8; 16 * 1024];
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        let mut s = match TcpStream::connect(&addr).await {
            Ok(s) => s,
            Err(e) => {
                counts.errors.fetch_add(1, Ordering::Relaxed);
                if first {
                    eprintln!("cannot connect to {addr}: {e}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !first {
            counts.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        let _ = s.set_nodelay(true);
        loop {
            if stop.load(Ordering::Relaxed) {
                return lat;
            }
            let t = Instant::now();
            if s.write_all(&req).await.is_err() {
                counts.errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
            match read_response(&mut s, &mut buf).await {
                Some((status, close)) => {
                    if measuring.load(Ordering::Relaxed) {
                        if (200..300).contains(&status) {
                            counts.ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            counts.other.fetch_add(1, Ordering::Relaxed);
                        }
                        lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    if close {
                        break;
                    }
                }
                None => {
                    counts.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
    lat
}

/// Reads one response; returns its status and whether the server closes.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(u16, bool)> {
    let mut have = 0;
    loop {
        if have == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = s.read(&mut buf[have..]).await.ok()?;
        if n == 0 {
            return None;
        }
        have += n;
        let Some(end) = find(&buf[..have], b"\r\n\r\n") else {
            continue;
        };
        let head = &buf[..end];
        let status: u16 = std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()?;
        let mut len = 0usize;
        let mut close = false;
        for line in head.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(i) = line.iter().position(|&b| b == b':') {
                let (k, v) = (&line[..i], line[i + 1..].trim_ascii());
                if k.eq_ignore_ascii_case(b"content-length") {
                    len = std::str::from_utf8(v).ok()?.parse().ok()?;
                } else if k.eq_ignore_ascii_case(b"connection") && v.eq_ignore_ascii_case(b"close")
                {
                    close = true;
                }
            }
        }
        let total = end + 4 + len;
        while have < total {
            if have == buf.len() {
                buf.resize(total, 0);
            }
            let n = s.read(&mut buf[have..]).await.ok()?;
            if n == 0 {
                return None;
            }
            have += n;
        }
        return Some((status, close));
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}
