//! Object sizes and single-core encoding speed of one chunk of *distinct*
//! access-log records (the load generator of bench/s3.sh repeats one
//! message per connection, which flatters Parquet's dictionaries):
//! JSON Lines + gzip (level 6, as the s3 output's default) against Parquet
//! snappy and zstd.
//!
//!   cargo run --release -p fuwa-parquet --example sizes [RECORDS]

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use fuwa_api::{Chunk, EventTime};
use fuwa_parquet::{Codec, ParquetEncoder, Settings};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(500_000);
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut rnd = |m: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % m
    };
    let users = ["alice", "bob", "carol", "dave"];
    let methods = ["GET", "POST", "PUT", "DELETE"];
    let agents = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
        "curl/8.5.0",
        "Googlebot/2.1 (+http://www.google.com/bot.html)",
    ];
    let codes = [200u64, 200, 200, 304, 404, 500];
    let mut seg = Vec::new();
    for i in 0..n {
        let rec = rmpv::Value::Map(vec![
            (
                "host".into(),
                format!("10.{}.{}.{}", rnd(256), rnd(256), 1 + rnd(254)).into(),
            ),
            ("user".into(), users[rnd(4) as usize].into()),
            ("method".into(), methods[rnd(4) as usize].into()),
            (
                "path".into(),
                format!("/api/v1/items/{}?page={}", rnd(100_000), rnd(50)).into(),
            ),
            ("code".into(), codes[rnd(6) as usize].into()),
            ("size".into(), (100 + rnd(50_000)).into()),
            (
                "referer".into(),
                format!("https://www.example.com/p/{}", rnd(10_000)).into(),
            ),
            ("agent".into(), agents[rnd(4) as usize].into()),
            (
                "request_id".into(),
                format!("{:016x}", rnd(u64::MAX)).into(),
            ),
        ]);
        let mut r = Vec::new();
        rmpv::encode::write_value(&mut r, &rec).unwrap();
        let t = EventTime::new(1_717_162_200 + (i / 1000) as i64, (i % 1000) as u32 * 1000);
        fuwa_api::event::write_entry(&mut seg, t, &r);
    }
    let raw = seg.len();
    let chunk = Chunk {
        id: "c".into(),
        tag: Arc::from("access"),
        key: Arc::from("k"),
        segments: vec![bytes::Bytes::from(seg)],
        records: n as u32,
        bytes: raw,
        created: std::time::SystemTime::now(),
    };
    println!(
        "{n} distinct records, {:.1} MB of msgpack",
        raw as f64 / 1e6
    );
    println!("| format | object MB | of raw | MB/s of input, one core |");
    println!("|---|---:|---:|---:|");
    let row = |name: &str, size: usize, secs: f64| {
        println!(
            "| {name} | {:.1} | {:.1}% | {:.0} |",
            size as f64 / 1e6,
            100.0 * size as f64 / raw as f64,
            raw as f64 / 1e6 / secs
        )
    };
    let tz = fuwa_render::parse_timezone("UTC").unwrap();
    let lines = fuwa_render::JsonLines {
        tag_key: None,
        time_key: Some("time".into()),
        time_format: fuwa_render::TimeFormat::parse("rfc3339", tz).unwrap(),
    };
    let t0 = Instant::now();
    let mut json = Vec::new();
    lines.write_chunk(&chunk, &mut json);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&json).unwrap();
    let gz = gz.finish().unwrap();
    row("JSON Lines + gzip 6", gz.len(), t0.elapsed().as_secs_f64());
    for (name, codec) in [
        ("Parquet snappy", Codec::Snappy),
        ("Parquet zstd 3", Codec::Zstd),
    ] {
        let settings = Settings {
            codec,
            level: None,
            row_group_size: 50_000,
            time_key: "time".into(),
            tag_key: None,
        };
        let e = ParquetEncoder::new(settings, &[], None).unwrap();
        let t0 = Instant::now();
        let mut size = 0;
        let stats = e
            .encode(&chunk, 1 << 20, |p| {
                size += p.len();
                true
            })
            .unwrap();
        assert_eq!(stats.rows as usize, n);
        row(name, size, t0.elapsed().as_secs_f64());
    }
}
