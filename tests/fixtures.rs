//! Replays byte streams captured from real forward clients (see
//! tests/data/forward/README.md): every event must arrive, with its
//! time to the nanosecond, and every `chunk` must be answered with exactly
//! the bytes the original server sent.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use rmpv::Value as V;

/// (name, events the README lists)
const FIXTURES: &[(&str, usize)] = &[
    ("python-message_nano", 6),
    ("python-many", 2000),
    ("node-packed", 6),
    ("node-compressed_ack", 6),
    ("node-message_ack", 6),
    ("go-subsecond_ack", 4),
    ("go-json", 4),
    ("go-docker_subsecond", 5),
    ("rust-poston-basic", 6),
];

fn config() -> String {
    forward_to_file("").replace("\"unix_float\"", "\"%s.%f\"")
}

/// An independent reading of the capture: (tag, "secs.nanos") of every event.
fn expected_events(bytes: &[u8]) -> Vec<(String, String)> {
    if bytes.first() == Some(&b'[') {
        let mut out = Vec::new();
        for v in serde_json::Deserializer::from_slice(bytes).into_iter::<serde_json::Value>() {
            let v = v.unwrap();
            let t = v[1].as_f64().unwrap();
            out.push((
                v[0].as_str().unwrap().to_string(),
                format!(
                    "{}.{:09}",
                    t.trunc() as i64,
                    ((t.fract()) * 1e9).round() as u32
                ),
            ));
        }
        return out;
    }
    let mut out = Vec::new();
    let mut r = bytes;
    while !r.is_empty() {
        let msg = rmpv::decode::read_value(&mut r).unwrap();
        let arr = msg.as_array().unwrap();
        let tag = arr[0].as_str().unwrap().to_string();
        let time = |t: &V| -> String {
            match t {
                V::Ext(0, d) => format!(
                    "{}.{:09}",
                    u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
                    u32::from_be_bytes([d[4], d[5], d[6], d[7]])
                ),
                V::Array(a) => match &a[0] {
                    V::Ext(0, d) => format!(
                        "{}.{:09}",
                        u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
                        u32::from_be_bytes([d[4], d[5], d[6], d[7]])
                    ),
                    other => panic!("{other:?}"),
                },
                other => format!("{}.000000000", other.as_i64().unwrap()),
            }
        };
        match &arr[1] {
            V::Array(entries) => {
                for e in entries {
                    out.push((tag.clone(), time(&e.as_array().unwrap()[0])));
                }
            }
            V::Binary(_) | V::String(_) => {
                let raw: Vec<u8> = match &arr[1] {
                    V::Binary(b) => b.clone(),
                    V::String(s) => s.as_bytes().to_vec(),
                    _ => unreachable!(),
                };
                let compressed = arr
                    .get(2)
                    .and_then(|o| o.as_map())
                    .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("compressed")))
                    .and_then(|(_, v)| v.as_str().map(str::to_string));
                let body = if compressed.as_deref() == Some("gzip") {
                    let mut b = Vec::new();
                    flate2::read::MultiGzDecoder::new(&raw[..])
                        .read_to_end(&mut b)
                        .unwrap();
                    b
                } else {
                    raw
                };
                let mut br = &body[..];
                while !br.is_empty() {
                    let e = rmpv::decode::read_value(&mut br).unwrap();
                    out.push((tag.clone(), time(&e.as_array().unwrap()[0])));
                }
            }
            t => out.push((tag, time(t))),
        }
    }
    out
}

fn multiset(v: Vec<(String, String)>) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for e in v {
        *m.entry(e).or_insert(0) += 1;
    }
    m
}

#[test]
fn replays_every_capture_with_exact_counts_times_and_acks() {
    let a = Agent::start(&config());
    let mut total = 0;
    for (name, count) in FIXTURES {
        let bytes = std::fs::read(fixtures_dir().join(format!("{name}.bin"))).unwrap_or_else(|e| {
            panic!("fixture {name}: {e} (the fixtures live in tests/data/forward)")
        });
        let expect = expected_events(&bytes);
        assert_eq!(
            expect.len(),
            *count,
            "{name}: the capture itself holds {count} events"
        );
        let s2c = std::fs::read(fixtures_dir().join(format!("{name}.s2c.bin"))).unwrap_or_default();

        let mut s = a.connect();
        s.write_all(&bytes).unwrap();
        let mut got = vec![0u8; s2c.len()];
        if !s2c.is_empty() {
            s.read_exact(&mut got)
                .unwrap_or_else(|e| panic!("{name}: acks: {e}"));
            assert_eq!(
                got, s2c,
                "{name}: acks must equal the original server's bytes"
            );
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{name}: unexpected extra reply {rest:?}");

        total += count;
        let lines = wait_lines(&a.path("out"), total, Duration::from_secs(10));
        assert_eq!(lines.len(), total, "{name}: all events written");
        let tags: std::collections::HashSet<String> =
            expect.iter().map(|(t, _)| t.clone()).collect();
        let got: Vec<(String, String)> = lines
            .iter()
            .filter(|(_, j)| tags.contains(j["tag"].as_str().unwrap_or("")))
            .map(|(_, j)| {
                (
                    j["tag"].as_str().unwrap().to_string(),
                    j["time"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            multiset(got),
            multiset(expect),
            "{name}: every event with its exact time"
        );
    }
}

#[test]
fn handshake_capture_is_understood() {
    // The node client's PING from a handshake capture cannot be replayed (the
    // nonce differs), but its shape must be what our server parses.
    let bytes = std::fs::read(fixtures_dir().join("node-sharedkey_packed.bin")).unwrap();
    let mut r = &bytes[..];
    let ping = rmpv::decode::read_value(&mut r).unwrap();
    let p = ping.as_array().unwrap();
    assert_eq!(p.len(), 6);
    assert_eq!(p[0].as_str(), Some("PING"));
    // then two PackedForward messages
    let mut n = 0;
    while !r.is_empty() {
        let m = rmpv::decode::read_value(&mut r).unwrap();
        assert!(m.as_array().unwrap()[1].as_slice().is_some() || m.as_array().unwrap()[1].is_str());
        n += 1;
    }
    assert_eq!(n, 2);
}
