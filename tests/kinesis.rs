//! The Kinesis Data Streams output through the real binary against moto's
//! Kinesis: forward in → file buffer → kinesis_streams out → a 4-shard
//! stream, read back shard by shard with GetRecords (boto3) and, for
//! aggregated records, de-aggregated by the reference library
//! (`aws-kinesis-agg`, tests/python/kinesis_util.py).
//!
//! Needs a Python with `moto[server]`, `boto3` and `aws-kinesis-agg`
//! (tests/python/requirements.txt) in `FUWA_PYTHON`; `bash .ci/run` sets it
//! up.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use common::aws::{aws_env_debug, b64decode, py_script, send_packed, MotoServer};
use common::*;
use rmpv::Value as V;
use serde_json::Value as J;

const REGION: &str = "ap-northeast-1";

fn config(endpoint: &str, outputs: &[(&str, &str, &str)]) -> String {
    let mut c = r#"[agent]
hostname = "web-1"
timezone = "Asia/Tokyo"
shutdown_timeout = "3s"

[[input]]
type = "forward"
bind = "127.0.0.1:{port}"
"#
    .to_string();
    for (tag, stream, extra) in outputs {
        c.push_str(&format!(
            r#"
[[output]]
id = "{stream}"
match = "{tag}"
type = "kinesis_streams"
stream_name = "{stream}"
region = "{REGION}"
endpoint = "{endpoint}"
# moto's Shard.put_record is not safe for concurrent calls (two calls can
# take the same sequence number and one record overwrites the other): one
# call in flight, so what is read back is what fuwa delivered
max_in_flight = 1
{extra}
[output.buffer]
type = "file"
flush_interval = "300ms"
retry_wait = "100ms"
retry_max_interval = "500ms"
"#
        ));
    }
    c
}

fn event(id: u64, users: u64) -> V {
    V::Map(vec![
        (V::from("id"), V::from(id)),
        (V::from("user_id"), V::from(format!("u{}", id % users))),
        (V::from("path"), V::from("/notes/n1?ref=top")),
    ])
}

/// One user record read back from the stream.
#[derive(Debug, Clone)]
struct Got {
    shard: String,
    seq: String,
    key: String,
    aggregated: bool,
    data: Vec<u8>,
}

impl Got {
    fn json(&self) -> J {
        let text = std::str::from_utf8(&self.data).expect("utf-8 record");
        assert!(
            text.ends_with('\n'),
            "a record ends with its newline: {text:?}"
        );
        serde_json::from_str(text.trim_end()).unwrap_or_else(|e| panic!("{e}: {text:?}"))
    }
}

fn read_stream(moto: &MotoServer, stream: &str) -> (usize, Vec<Got>) {
    let out = py_script(
        "kinesis_util.py",
        &["read", &moto.endpoint(), stream, REGION],
    );
    let v: J = serde_json::from_str(&out).expect("kinesis_util read output");
    let records = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Got {
            shard: r["shard"].as_str().unwrap().to_string(),
            seq: r["seq"].as_str().unwrap().to_string(),
            key: r["key"].as_str().unwrap().to_string(),
            aggregated: r["aggregated"].as_bool().unwrap(),
            data: b64decode(r["data"].as_str().unwrap()),
        })
        .collect();
    (v["shards"].as_u64().unwrap() as usize, records)
}

/// Reads the stream until `n` distinct ids are there, then once more after
/// a pause (a late duplicate would show up).
fn wait_stream(moto: &MotoServer, stream: &str, n: usize, a: &Agent) -> Vec<Got> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, got) = read_stream(moto, stream);
        let ids: BTreeSet<u64> = got
            .iter()
            .map(|g| g.json()["id"].as_u64().unwrap())
            .collect();
        if ids.len() >= n {
            std::thread::sleep(Duration::from_millis(1500));
            return read_stream(moto, stream).1;
        }
        assert!(
            Instant::now() < deadline,
            "{stream}: {} of {n} events after 90s; agent log:\n{}",
            ids.len(),
            a.stderr()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn ids_of(got: &[Got]) -> Vec<u64> {
    let mut ids: Vec<u64> = got
        .iter()
        .map(|g| g.json()["id"].as_u64().unwrap())
        .collect();
    ids.sort();
    ids
}

/// user_id → the shards its events landed on
fn shards_per_user(got: &[Got]) -> BTreeMap<String, BTreeSet<String>> {
    let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for g in got {
        let user = g.json()["user_id"].as_str().unwrap().to_string();
        m.entry(user).or_default().insert(g.shard.clone());
    }
    m
}

fn dead_letters(a: &Agent, id: &str) -> usize {
    std::fs::read_dir(a.path(&format!("data/dead-letter/{id}")))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

#[test]
fn four_shards_every_event_once_and_one_key_one_shard() {
    aws_env_debug("fuwa_out_kinesis_streams");
    let moto = MotoServer::start();
    for s in ["by-user", "random"] {
        py_script(
            "kinesis_util.py",
            &["create", &moto.endpoint(), s, REGION, "4"],
        );
    }
    let a = Agent::start(&config(
        &moto.endpoint(),
        &[
            (
                "by_user",
                "by-user",
                "partition_key = \"${record.user_id}\"",
            ),
            ("random", "random", ""),
        ],
    ));
    let mut s = a.connect();
    let evs: Vec<V> = (0..2000).map(|i| event(i, 40)).collect();
    for part in evs.chunks(400) {
        send_packed(&mut s, "by_user", part);
    }
    let evs: Vec<V> = (0..400).map(|i| event(i, 1)).collect();
    send_packed(&mut s, "random", &evs);

    let got = wait_stream(&moto, "by-user", 2000, &a);
    assert_eq!(
        ids_of(&got),
        (0..2000).collect::<Vec<u64>>(),
        "each event exactly once"
    );
    let per_user = shards_per_user(&got);
    assert_eq!(per_user.len(), 40);
    for (user, shards) in &per_user {
        assert_eq!(shards.len(), 1, "{user} on {shards:?}");
    }
    for g in &got {
        assert_eq!(
            g.key,
            g.json()["user_id"].as_str().unwrap(),
            "the field is the key"
        );
        assert!(!g.aggregated);
    }
    let used: BTreeSet<&String> = got.iter().map(|g| &g.shard).collect();
    assert!(used.len() >= 3, "40 keys over 4 shards: {used:?}");

    // no partition_key: random per record, spread over the shards
    let got = wait_stream(&moto, "random", 400, &a);
    assert_eq!(
        ids_of(&got),
        (0..400).collect::<Vec<u64>>(),
        "each event exactly once"
    );
    let mut per_shard: HashMap<&String, usize> = HashMap::new();
    for g in &got {
        *per_shard.entry(&g.shard).or_default() += 1;
        let k: f64 = g
            .key
            .parse()
            .unwrap_or_else(|_| panic!("random key {:?}", g.key));
        assert!((0.0..1_000_000.0).contains(&k));
    }
    assert_eq!(per_shard.len(), 4, "{per_shard:?}");
    assert!(per_shard.values().all(|&n| n >= 40), "{per_shard:?}");
    assert_eq!(dead_letters(&a, "by-user") + dead_letters(&a, "random"), 0);
}

#[test]
fn aggregated_records_deaggregate_with_the_reference_library() {
    aws_env_debug("fuwa_out_kinesis_streams");
    let moto = MotoServer::start();
    py_script(
        "kinesis_util.py",
        &["create", &moto.endpoint(), "agg", REGION, "4"],
    );
    let a = Agent::start(&config(
        &moto.endpoint(),
        &[(
            "agg",
            "agg",
            "partition_key = \"${record.user_id}\"\naggregation = true\ntime_key = \"time\"",
        )],
    ));
    let mut s = a.connect();
    let evs: Vec<V> = (0..3000).map(|i| event(i, 12)).collect();
    for part in evs.chunks(1000) {
        send_packed(&mut s, "agg", part);
    }
    let got = wait_stream(&moto, "agg", 3000, &a);
    assert_eq!(
        ids_of(&got),
        (0..3000).collect::<Vec<u64>>(),
        "each event exactly once"
    );
    for (user, shards) in shards_per_user(&got) {
        assert_eq!(shards.len(), 1, "{user} on {shards:?}");
    }
    for g in &got {
        let j = g.json();
        assert_eq!(g.key, j["user_id"].as_str().unwrap());
        assert!(
            j["time"].as_str().unwrap().starts_with("2024-05-31T"),
            "{j}"
        );
        assert!(g.aggregated, "de-aggregated by aws-kinesis-agg: {g:?}");
    }
    let kinesis_records: BTreeSet<&String> = got.iter().map(|g| &g.seq).collect();
    // 3 chunks × 12 keys: one aggregated record per key per chunk
    assert!(
        kinesis_records.len() <= 3 * 12,
        "{} Kinesis records for 3,000 events",
        kinesis_records.len()
    );
    assert_eq!(dead_letters(&a, "agg"), 0);
}
