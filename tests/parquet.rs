//! `format = "parquet"` through the real binary: forward in → types filter
//! → file buffer → s3 (moto's server) or file out, read back with DuckDB
//! (`read_parquet(…, hive_partitioning = 1)`) via
//! tests/python/parquet_check.py: exact row counts per partition, columns
//! typed as declared, values as sent.
//!
//! Needs `FUWA_PYTHON` with moto[server], boto3 and duckdb
//! (tests/python/requirements.txt).

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::aws::{aws_env, py_script, MotoServer};
use common::*;
use rmpv::Value as V;
use serde_json::Value as J;

const BUCKET: &str = "analytics-parquet";
const REGION: &str = "ap-northeast-1";

fn event_time(secs: u32, nanos: u32) -> V {
    let mut b = Vec::with_capacity(8);
    b.extend_from_slice(&secs.to_be_bytes());
    b.extend_from_slice(&nanos.to_be_bytes());
    V::Ext(0, b)
}

/// Sends `[tag, entries, {chunk}]` (PackedForward) and waits for the ack.
fn send_packed(s: &mut TcpStream, tag: &str, events: &[(u32, u32, V)]) {
    let mut body = Vec::new();
    for (secs, nanos, rec) in events {
        body.extend(mp(&V::Array(vec![event_time(*secs, *nanos), rec.clone()])));
    }
    let msg = V::Array(vec![
        V::from(tag),
        V::Binary(body),
        V::Map(vec![(V::from("chunk"), V::from("c1"))]),
    ]);
    s.write_all(&mp(&msg)).expect("send");
    let ack = read_mp(s);
    assert_eq!(ack, V::Map(vec![(V::from("ack"), V::from("c1"))]));
}

/// Two tags over four hours, crossing a day and a month in Tokyo
/// (2024-05-31 22:30 JST on). `status` comes as text (the types filter
/// makes it an integer), `latency` as an integer into a declared double,
/// `at` as RFC 3339 text into a declared timestamp; every 50th record has
/// a `latency` that fits no double.
fn events(per_hour: usize) -> Vec<(&'static str, u32, u32, V)> {
    let base = 1_717_162_200u32;
    let mut out = Vec::new();
    let mut id = 0u64;
    for h in 0..4u32 {
        for tag in ["action_logs", "page_views"] {
            for i in 0..per_hour {
                let secs = base + h * 3600 + (i as u32 * 7) % 1700;
                let latency = if id.is_multiple_of(50) {
                    V::from("fast")
                } else {
                    V::from(id % 1000)
                };
                let rec = V::Map(vec![
                    (V::from("id"), V::from(id)),
                    (V::from("status"), V::from(format!("{}", 200 + id % 3))),
                    (V::from("latency"), latency),
                    (V::from("ok"), V::from(id.is_multiple_of(2))),
                    (V::from("user"), V::from(format!("u{}", id % 13))),
                    (V::from("at"), V::from("2024-05-31T13:30:00.250Z")),
                    (
                        V::from("nested"),
                        V::Map(vec![(V::from("a"), V::Array(vec![V::from(1)]))]),
                    ),
                ]);
                out.push((tag, secs, 5_000 + i as u32 * 1000, rec));
                id += 1;
            }
        }
    }
    out
}

fn send_all(a: &Agent, evs: &[(&'static str, u32, u32, V)]) {
    let mut s = a.connect();
    for tag in ["action_logs", "page_views"] {
        let mine: Vec<(u32, u32, V)> = evs
            .iter()
            .filter(|e| e.0 == tag)
            .map(|e| (e.1, e.2, e.3.clone()))
            .collect();
        for part in mine.chunks(500) {
            send_packed(&mut s, tag, part);
        }
    }
}

/// The Hive partition of an event time in Tokyo (UTC+9).
fn partition(tag: &str, secs: u32) -> String {
    let t = chrono::DateTime::from_timestamp(secs as i64 + 9 * 3600, 0).unwrap();
    format!(
        "content_type={tag}/{}",
        t.format("year=%Y/month=%m/day=%d/hour=%H")
    )
}

/// Each query's rows; empty when no file matches yet.
fn duckdb(glob: &str, sqls: &[&str]) -> Vec<Vec<Vec<J>>> {
    let mut args = vec![glob];
    args.extend_from_slice(sqls);
    let out = py_script("parquet_check.py", &args);
    let v: Option<Vec<Vec<Vec<J>>>> =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v.unwrap_or_default()
}

fn config(output: &str) -> String {
    format!(
        r#"[agent]
hostname = "web-1"
timezone = "Asia/Tokyo"
data_dir = "{{dir}}/data"
shutdown_timeout = "3s"

[[input]]
type = "forward"
bind = "127.0.0.1:{{port}}"

[[filter]]
type = "types"
match = "action_logs page_views"
fields = {{ status = "integer" }}

{output}
[output.buffer]
type = "file"
flush_interval = "1s"
retry_wait = "100ms"
retry_max_interval = "500ms"
"#
    )
}

/// Polls until the files under `dir` matching `glob` hold `rows` rows.
fn wait_rows(glob: &str, rows: u64, a: &Agent, mut refresh: impl FnMut()) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        refresh();
        let n = duckdb(glob, &["SELECT count(*) FROM t"])
            .first()
            .and_then(|r| r.first())
            .and_then(|r| r[0].as_u64());
        if n == Some(rows) {
            return;
        }
        assert!(
            n.is_none_or(|n| n < rows),
            "{n:?} rows, more than the {rows} sent"
        );
        assert!(
            Instant::now() < deadline,
            "{n:?} of {rows} rows after 90s; agent log:\n{}",
            a.stderr()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn dump(m: &MotoServer, dir: &Path) -> J {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let out = py_script(
        "s3_util.py",
        &["dump", &m.endpoint(), BUCKET, &dir.display().to_string()],
    );
    serde_json::from_str(&out).unwrap()
}

/// Checks what DuckDB reads back: rows per partition, column types,
/// values, misfits as nulls.
fn check_table(glob: &str, evs: &[(&'static str, u32, u32, V)]) {
    let r = duckdb(
        glob,
        &[
            "SELECT content_type, year, month, day, hour, count(*) FROM t GROUP BY ALL ORDER BY ALL",
            "SELECT column_name, column_type FROM (DESCRIBE t) ORDER BY column_name",
            "SELECT count(*), count(latency), sum(status), min(id), max(id), count(DISTINCT id), sum(CASE WHEN ok THEN 1 ELSE 0 END) FROM t",
            r#"SELECT epoch_us("time"), epoch_us("at"), tag, nested, latency FROM t WHERE id = 3"#,
        ],
    );
    let got: BTreeMap<String, u64> = r[0]
        .iter()
        .map(|row| {
            let p: Vec<String> = (0..5)
                .map(|i| match &row[i] {
                    J::String(s) => s.clone(),
                    v => v.to_string(),
                })
                .collect();
            (
                format!(
                    "content_type={}/year={}/month={:0>2}/day={:0>2}/hour={:0>2}",
                    p[0], p[1], p[2], p[3], p[4]
                ),
                row[5].as_u64().unwrap(),
            )
        })
        .collect();
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for (tag, secs, _, _) in evs {
        *want.entry(partition(tag, *secs)).or_default() += 1;
    }
    assert_eq!(got, want, "rows per partition");
    assert_eq!(
        got.len(),
        8,
        "two tags over four hours, across a day and a month"
    );

    let types: BTreeMap<String, String> = r[1]
        .iter()
        .map(|row| {
            (
                row[0].as_str().unwrap().to_string(),
                row[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (col, ty) in [
        ("id", "BIGINT"),
        ("status", "BIGINT"),
        ("latency", "DOUBLE"),
        ("ok", "BOOLEAN"),
        ("user", "VARCHAR"),
        ("nested", "VARCHAR"),
        ("tag", "VARCHAR"),
        ("time", "TIMESTAMP WITH TIME ZONE"),
        ("at", "TIMESTAMP WITH TIME ZONE"),
    ] {
        assert_eq!(
            types.get(col).map(String::as_str),
            Some(ty),
            "{col}: {types:?}"
        );
    }

    let n = evs.len() as u64;
    let agg = &r[2][0];
    let misfits = evs
        .iter()
        .filter(|e| matches!(&e.3, V::Map(m) if m.iter().any(|(k, v)| k.as_str() == Some("latency") && v.is_str())))
        .count() as u64;
    let status: u64 = (0..n).map(|id| 200 + id % 3).sum();
    let oks = (0..n).filter(|id| id.is_multiple_of(2)).count() as u64;
    assert_eq!(
        agg,
        &vec![
            J::from(n),
            J::from(n - misfits),
            J::from(status),
            J::from(0),
            J::from(n - 1),
            J::from(n),
            J::from(oks)
        ],
        "count, non-null latency, sum(status), ids, ok"
    );
    let (tag, secs, nanos, _) = &evs[3];
    let row = &r[3][0];
    assert_eq!(
        row[0],
        J::from(*secs as i64 * 1_000_000 + (*nanos / 1000) as i64)
    );
    assert_eq!(row[1], J::from(1_717_162_200_250_000i64));
    assert_eq!(row[2], J::from(*tag));
    assert_eq!(row[3], J::from(r#"{"a":[1]}"#));
    assert_eq!(row[4], J::from(3.0));
}

#[test]
fn parquet_objects_in_s3_read_back_typed_with_duckdb() {
    aws_env();
    let moto = MotoServer::start();
    py_script(
        "s3_util.py",
        &["create-bucket", &moto.endpoint(), BUCKET, REGION],
    );
    let out = format!(
        r#"[[output]]
id = "s3"
match = "action_logs page_views"
type = "s3"
bucket = "{BUCKET}"
region = "{REGION}"
endpoint = "{}"
force_path_style = true
key = "content_type=${{tag}}/year=%Y/month=%m/day=%d/hour=%H/${{hostname}}-${{chunk_id}}.parquet"
format = "parquet"
compression = "zstd"
row_group_size = 64
tag_key = "tag"
schema = {{ latency = "double", at = "timestamp" }}
"#,
        moto.endpoint()
    );
    let a = Agent::start(&config(&out));
    let evs = events(120);
    send_all(&a, &evs);
    let dir = tempfile::tempdir().unwrap();
    let glob = format!("{}/**/*.parquet", dir.path().display());
    let mut objects = J::Null;
    wait_rows(&glob, evs.len() as u64, &a, || {
        objects = dump(&moto, dir.path())
    });
    check_table(&glob, &evs);
    let objs = objects["objects"].as_array().unwrap();
    assert!(
        objs.len() >= 8,
        "one object per chunk, one chunk per partition at least"
    );
    for o in objs {
        assert_eq!(o["content_type"], "application/vnd.apache.parquet");
        assert!(o["content_encoding"].is_null(), "{o}");
        let key = o["key"].as_str().unwrap();
        let file = key.rsplit('/').next().unwrap();
        assert!(
            file.starts_with("web-1-") && file.ends_with(".parquet") && file.len() == 6 + 32 + 8,
            "{key}"
        );
        let raw = std::fs::read(dir.path().join(key)).unwrap();
        assert!(raw.starts_with(b"PAR1") && raw.ends_with(b"PAR1"), "{key}");
    }
    // the schema the output settled on is kept for its next start
    let s = std::fs::read_to_string(a.path("data/parquet/s3.schema.json")).unwrap();
    let s: J = serde_json::from_str(&s).unwrap();
    let cols: Vec<(&str, &str)> = s["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        &cols[..5],
        [
            ("time", "timestamp"),
            ("tag", "string"),
            ("at", "timestamp"),
            ("latency", "double"),
            ("status", "int64")
        ],
        "time and tag, the output's schema, the types filter's, then inferred: {cols:?}"
    );
}

#[test]
fn the_file_output_writes_one_parquet_file_per_chunk() {
    let out = r#"[[output]]
id = "pq"
match = "action_logs page_views"
type = "file"
path = "{dir}/out/content_type=${tag}/year=%Y/month=%m/day=%d/hour=%H/${chunk_id}.parquet"
format = "parquet"
tag_key = "tag"
schema = { latency = "double", at = "timestamp" }
"#;
    let a = Agent::start(&config(out));
    let evs = events(60);
    send_all(&a, &evs);
    let glob = format!("{}/**/*.parquet", a.path("out").display());
    wait_rows(&glob, evs.len() as u64, &a, || {});
    check_table(&glob, &evs);
    let mut stack = vec![a.path("out")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                assert!(
                    p.extension().is_some_and(|x| x == "parquet"),
                    "only whole files, no temporaries left: {}",
                    p.display()
                );
            }
        }
    }
}

#[test]
fn parquet_config_mistakes_are_named() {
    for (output, want) in [
        (
            "type = \"file\"\npath = \"{dir}/x.parquet\"\nformat = \"parquet\"",
            "must contain ${chunk_id}",
        ),
        (
            "type = \"file\"\npath = \"{dir}/x-${chunk_id}.log\"",
            "${chunk_id} is for format = \"parquet\"",
        ),
        (
            "type = \"file\"\npath = \"{dir}/x-${chunk_id}.p\"\nformat = \"parquet\"\nschema = { a = \"varchar\" }",
            "schema.a",
        ),
        (
            "type = \"s3\"\nbucket = \"b\"\nregion = \"us-east-1\"\nkey = \"${chunk_id}.json\"\ncompression = \"snappy\"",
            "snappy is for format = \"parquet\"",
        ),
        (
            "type = \"s3\"\nbucket = \"b\"\nregion = \"us-east-1\"\nkey = \"${chunk_id}.json\"\nrow_group_size = 10",
            "row_group_size",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = format!(
            "[[input]]\ntype = \"forward\"\nbind = \"127.0.0.1:0\"\n[[output]]\nmatch = \"**\"\n{}\n",
            output.replace("{dir}", &dir.path().display().to_string())
        );
        let p = dir.path().join("fuwa.toml");
        std::fs::write(&p, cfg).unwrap();
        let o = std::process::Command::new(bin())
            .args(["check", "-c"])
            .arg(&p)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{want}: {err}");
    }
}

#[test]
fn a_big_parquet_chunk_goes_up_as_a_multipart_upload() {
    aws_env();
    let moto = MotoServer::start();
    py_script(
        "s3_util.py",
        &["create-bucket", &moto.endpoint(), BUCKET, REGION],
    );
    let out = format!(
        r#"[[output]]
id = "s3"
match = "action_logs"
type = "s3"
bucket = "{BUCKET}"
region = "{REGION}"
endpoint = "{}"
force_path_style = true
key = "big/${{chunk_id}}.parquet"
format = "parquet"
compression = "none"
row_group_size = 1000
multipart_threshold = "5MiB"
part_size = "5MiB"
"#,
        moto.endpoint()
    );
    let cfg = config(&out).replace(
        "flush_interval = \"1s\"",
        "flush_interval = \"4s\"\nchunk_limit_size = \"64MiB\"\ntotal_limit_size = \"512MiB\"",
    );
    let a = Agent::start(&cfg);
    // ~12 MB of barely compressible text in one chunk
    let mut seed = 0x2545F4914F6CDD1Du64;
    let n = 12_000u64;
    let mut s = a.connect();
    let mut batch = Vec::new();
    for id in 0..n {
        let blob = incompressible_text(&mut seed, 1000);
        let rec = V::Map(vec![
            (V::from("id"), V::from(id)),
            (V::from("blob"), V::from(blob)),
        ]);
        batch.push((1_717_162_200u32, 0u32, rec));
        if batch.len() == 1000 {
            send_packed(&mut s, "action_logs", &batch);
            batch.clear();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let glob = format!("{}/**/*.parquet", dir.path().display());
    let mut objects = J::Null;
    wait_rows(&glob, n, &a, || objects = dump(&moto, dir.path()));
    let objs = objects["objects"].as_array().unwrap();
    assert_eq!(objs.len(), 1, "{objs:?}");
    let etag = objs[0]["etag"].as_str().unwrap_or("");
    assert!(
        etag.trim_matches('"')
            .split('-')
            .nth(1)
            .is_some_and(|p| p.parse::<u32>().unwrap() >= 2),
        "a multipart ETag ends in -<parts>: {etag}"
    );
    assert_eq!(objects["uploads"], 0);
    let r = duckdb(
        &glob,
        &["SELECT count(DISTINCT id), min(id), max(id), min(length(blob)) FROM t"],
    );
    assert_eq!(
        r[0][0],
        vec![J::from(n), J::from(0), J::from(n - 1), J::from(1000)]
    );
}
