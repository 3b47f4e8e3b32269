//! Benchmark of the forward output alone: `write(chunk)` in a loop against an
//! in-process forward server that frames each message, reads its options and
//! acks it (it does not decompress or decode the entries).
//!
//! ```sh
//! cargo run --release -p fuwa-out-forward --example forward_bench -- text 5
//! cargo run --release -p fuwa-out-forward --example forward_bench -- gzip 5
//! ```
//! Arguments: compression (`text`/`gzip`), seconds (5), events per chunk
//! (10000), writers in parallel (2). Prints one markdown table row.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use fuwa_api::msgpack::{self, Framer, Head};
use fuwa_api::{BuildContext, Chunk, ConfigSection, EventTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn record(i: u64) -> Vec<u8> {
    let v = rmpv::Value::Map(vec![
        (
            "host".into(),
            format!("192.168.{}.{}", i % 256, (i / 256) % 256).into(),
        ),
        ("user".into(), "-".into()),
        ("method".into(), "GET".into()),
        (
            "path".into(),
            format!("/articles/{}?ref=top", i % 10_000).into(),
        ),
        ("code".into(), 200.into()),
        ("size".into(), (i % 5000).into()),
        ("referer".into(), "https://example.com/".into()),
        (
            "agent".into(),
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36".into(),
        ),
        (
            "request_id".into(),
            format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).into(),
        ),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &v).expect("encode");
    out
}

/// Acks every message; counts records from the `size` option.
async fn sink(listener: TcpListener, records: Arc<AtomicU64>) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        let records = records.clone();
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(1 << 20);
            let mut framer = Framer::new();
            loop {
                match framer.advance(&buf) {
                    Ok(Some(len)) => {
                        let msg = buf.split_to(len).freeze();
                        let (n, chunk) = options(&msg).expect("a PackedForward message");
                        records.fetch_add(n, Ordering::Relaxed);
                        let mut ack = Vec::new();
                        msgpack::write_map_len(&mut ack, 1);
                        msgpack::write_str(&mut ack, b"ack");
                        msgpack::write_str(&mut ack, &chunk);
                        if s.write_all(&ack).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => panic!("sink: {e}"),
                }
                buf.reserve(256 * 1024);
                match s.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
    }
}

/// `[tag, bin, {size, chunk, ...}]` -> (size, chunk)
fn options(b: &[u8]) -> Option<(u64, Vec<u8>)> {
    let (_, p) = msgpack::read_head(b, 0).ok()?;
    let p = msgpack::skip(b, p).ok()?;
    let p = msgpack::skip(b, p).ok()?;
    let (Head::Map(n), mut p) = msgpack::read_head(b, p).ok()? else {
        return None;
    };
    let (mut size, mut chunk) = (0, Vec::new());
    for _ in 0..n {
        let (k, vp) = msgpack::read_bytes_like(b, p).ok()?;
        match k {
            b"size" => {
                if let (Head::Uint(v), next) = msgpack::read_head(b, vp).ok()? {
                    size = v;
                    p = next;
                    continue;
                }
                return None;
            }
            b"chunk" => {
                let (v, next) = msgpack::read_bytes_like(b, vp).ok()?;
                chunk = v.to_vec();
                p = next;
            }
            _ => p = msgpack::skip(b, vp).ok()?,
        }
    }
    Some((size, chunk))
}

fn cpu_seconds() -> f64 {
    // utime + stime, fields 14 and 15 of /proc/self/stat, in clock ticks
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    t / 100.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let compress = args.first().cloned().unwrap_or_else(|| "text".into());
    let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let per_chunk: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let writers: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2);

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let received = Arc::new(AtomicU64::new(0));
    tokio::spawn(sink(listener, received.clone()));

    let toml = format!(
        "servers = [{{ host = \"127.0.0.1\", port = {port} }}]\ncompress = \"{compress}\"\nkeepalive = true\nrequire_ack_response = true"
    );
    let section = ConfigSection::from_toml("output[0]", &toml).expect("toml");
    let ctx = BuildContext {
        id: "bench".into(),
        hostname: "bench-host".into(),
        timezone: "UTC".into(),
        data_dir: std::env::temp_dir(),
    };
    let out = fuwa_out_forward::build(&section, &ctx)
        .map_err(|e| format!("{e:?}"))
        .expect("build");

    // one chunk's entries, in segments of 1000 events as the buffer makes them
    let mut segments = Vec::new();
    let mut seg = Vec::new();
    for i in 0..per_chunk {
        fuwa_api::event::write_entry(
            &mut seg,
            EventTime::new(1_700_000_000 + i as i64, (i * 7919) as u32 % 1_000_000_000),
            &record(i),
        );
        if (i + 1) % 1000 == 0 {
            segments.push(Bytes::from(std::mem::take(&mut seg)));
        }
    }
    if !seg.is_empty() {
        segments.push(Bytes::from(seg));
    }
    let bytes: usize = segments.iter().map(|s| s.len()).sum();

    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let out = out.clone();
        let segments = segments.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let chunk = Chunk {
                    id: format!("{:016x}{:016x}", w, n),
                    tag: Arc::from("bench.access"),
                    key: Arc::from(""),
                    segments: segments.clone(),
                    records: per_chunk as u32,
                    bytes,
                    created: SystemTime::now(),
                };
                out.write(&chunk).await.expect("write");
                n += 1;
            }
            n
        }));
    }
    let mut chunks = 0;
    for t in tasks {
        chunks += t.await.expect("writer");
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    out.close().await;
    let events = chunks * per_chunk;
    assert_eq!(received.load(Ordering::Relaxed), events, "sink count");
    println!(
        "| {compress} | {writers} | {per_chunk} | {:.0} | {:.0} | {:.1} | {:.2} |",
        chunks as f64 / wall,
        events as f64 / wall,
        (chunks as f64 * bytes as f64) / wall / 1e6,
        cpu / wall,
    );
}
