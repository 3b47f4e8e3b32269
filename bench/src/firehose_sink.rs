//! A stand-in Firehose endpoint for benchmarks (and Kinesis Data Streams:
//! a `Kinesis_*.PutRecords` target gets a PutRecords answer): answers every
//! PutRecordBatch with success as fast as it can and counts calls, records
//! and bytes (written to the file given with --stats every 200 ms).
//!
//!   fuwa-firehose-sink --port 4566 --stats /tmp/sink.json

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    port: u16,
    #[arg(long)]
    stats: std::path::PathBuf,
}

#[derive(Default)]
struct Stats {
    calls: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
}

fn serve(s: TcpStream, stats: Arc<Stats>) -> std::io::Result<()> {
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    let mut body = Vec::new();
    let mut resp = String::new();
    loop {
        let mut len = 0usize;
        let mut kinesis = false;
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
                kinesis |= k.eq_ignore_ascii_case("x-amz-target") && v.contains("Kinesis_");
            }
        }
        body.resize(len, 0);
        r.read_exact(&mut body)?;
        // one "Data" per record
        let n = body.windows(6).filter(|w| w == b"\"Data\"").count();
        stats.calls.fetch_add(1, Ordering::Relaxed);
        stats.records.fetch_add(n as u64, Ordering::Relaxed);
        stats.bytes.fetch_add(len as u64, Ordering::Relaxed);
        resp.clear();
        let (head, each) = if kinesis {
            (
                "{\"FailedRecordCount\":0,\"Records\":[",
                "{\"SequenceNumber\":\"1\",\"ShardId\":\"shardId-000000000000\"}",
            )
        } else {
            (
                "{\"FailedPutCount\":0,\"Encrypted\":false,\"RequestResponses\":[",
                "{\"RecordId\":\"r\"}",
            )
        };
        resp.push_str(head);
        for i in 0..n {
            if i > 0 {
                resp.push(',');
            }
            resp.push_str(each);
        }
        resp.push_str("]}");
        write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: bench\r\nContent-Length: {}\r\n\r\n{}",
            resp.len(),
            resp
        )?;
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let l = TcpListener::bind(("127.0.0.1", args.port))?;
    let stats = Arc::new(Stats::default());
    let st = stats.clone();
    let path = args.stats.clone();
    std::thread::spawn(move || loop {
        let _ = std::fs::write(
            &path,
            format!(
                "{{\"calls\":{},\"records\":{},\"bytes\":{}}}",
                st.calls.load(Ordering::Relaxed),
                st.records.load(Ordering::Relaxed),
                st.bytes.load(Ordering::Relaxed)
            ),
        );
        std::thread::sleep(Duration::from_millis(200));
    });
    for s in l.incoming().flatten() {
        let _ = s.set_nodelay(true);
        let stats = stats.clone();
        std::thread::spawn(move || serve(s, stats));
    }
    Ok(())
}
