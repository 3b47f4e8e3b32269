//! `fuwa athena-ddl` through the real binary: the DDL for the README's
//! Hive layout (compared as text), open matches and record fields
//! (injected projection), columns from buffered chunks, errors, and every
//! generated DDL parsed by sqlglot's Athena dialect.
//!
//! The parse needs a Python with sqlglot (tests/python/requirements.txt) in
//! `FUWA_PYTHON` (`bash .ci/run` sets it up; else `python3`). Without
//! sqlglot the tests fail and say so.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use rmpv::Value as V;
use serde_json::{json, Value as J};

const AGENT: &str = r#"[agent]
hostname = "web-1"
timezone = "Asia/Tokyo"
shutdown_timeout = "2s"

[[input]]
type = "forward"
bind = "127.0.0.1:{port}"
"#;

/// The README's S3 output (`id = "s3"`), then `extra` outputs.
fn config(extra: &str) -> String {
    format!(
        r#"{AGENT}
[[output]]
id = "s3"
match = "action_logs page_views"
type = "s3"
bucket = "analytics-raw"
region = "ap-northeast-1"
endpoint = "http://127.0.0.1:1"
key = "content_type=${{tag}}/year=%Y/month=%m/day=%d/hour=%H/${{hostname}}-${{chunk_id}}.json.gz"
time_key = "time"
[output.buffer]
type = "file"
flush_interval = "1h"
{extra}"#
    )
}

/// Runs `fuwa athena-ddl -c fuwa.toml ARGS` in `dir`: (exit ok, stdout, stderr).
fn athena(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let o = Command::new(bin())
        .current_dir(dir)
        .args(["athena-ddl", "-c", "fuwa.toml"])
        .args(args)
        .output()
        .expect("run fuwa");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn setup(cfg: &str, sample: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("fuwa.toml"),
        cfg.replace("{port}", &free_port().to_string()),
    )
    .unwrap();
    if let Some(s) = sample {
        std::fs::write(dir.path().join("sample.jsonl"), s).unwrap();
    }
    dir
}

fn python() -> PathBuf {
    std::env::var_os("FUWA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// sqlglot's reading of a DDL (see tests/python/athena_check.py).
fn parse_sql(sql: &str) -> J {
    let script = repo_root().join("tests/python/athena_check.py");
    let mut child = Command::new(python())
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python().display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("No module named 'sqlglot'"),
        "{} has no sqlglot: set FUWA_PYTHON to a Python with tests/python/requirements.txt \
         installed (bash .ci/run does)",
        python().display()
    );
    assert!(o.status.success(), "sqlglot rejects the DDL: {err}\n{sql}");
    serde_json::from_slice(&o.stdout).unwrap()
}

const SAMPLE: &str = r#"{"id": 1, "user": "u1", "score": 1.5, "ok": true, "time": "2024-05-31T13:30:00.123456789Z", "nested": {"a": [1, 2], "b": {"c": 1}}, "tags": ["x", "y"], "v": 1, "content_type": "action_logs"}
{"id": 2, "user": null, "score": 2, "ok": false, "seen_at": "not a time", "nested": {"a": [], "b": {"c": 2.5, "d": "z"}}, "tags": [], "v": "one", "User-Agent": {"Name": "Safari", "os version": "17.4"}}

{"id": 3, "seen_at": "2024-06-01T00:00:00+09:00", "when": "2024-06-01T00:00:00+09:00", "list": [{"k": 1}, {"k": 2.5, "j": true}], "mix": [1, "a"], "empty": {}}
"#;

const EXPECTED: &str = r#"-- fuwa athena-ddl: output `s3` (s3://analytics-raw/content_type=${tag}/year=%Y/month=%m/day=%d/hour=%H/${hostname}-${chunk_id}.json.gz)
-- columns from 3 record(s) of sample.jsonl
-- partition times are event times in [agent] timezone Asia/Tokyo
-- fields also in the key, so only partition columns: content_type
CREATE EXTERNAL TABLE `analytics`.`action_logs` (
  `id` bigint,
  `nested` struct<a:array<bigint>,b:struct<c:double,d:string>>,
  `ok` boolean,
  `score` double,
  `tags` array<string>,
  `time` string COMMENT 'RFC 3339 time as text: read it with from_iso8601_timestamp()',
  `user` string,
  `v` string COMMENT 'values of several types in the sample: kept as text (JSON)',
  `user_agent` struct<Name:string,`os version`:string>,
  `seen_at` string,
  `empty` string,
  `list` array<struct<k:double,j:boolean>>,
  `mix` array<string>,
  `when` string COMMENT 'RFC 3339 time as text: read it with from_iso8601_timestamp()'
)
PARTITIONED BY (`content_type` string, `year` int, `month` int, `day` int, `hour` int)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
WITH SERDEPROPERTIES (
  'mapping.user_agent' = 'User-Agent'
)
STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'
OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION 's3://analytics-raw/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.content_type.type' = 'enum',
  'projection.content_type.values' = 'action_logs,page_views',
  'projection.year.type' = 'integer',
  'projection.year.range' = '2020,2100',
  'projection.year.digits' = '4',
  'projection.month.type' = 'integer',
  'projection.month.range' = '1,12',
  'projection.month.digits' = '2',
  'projection.day.type' = 'integer',
  'projection.day.range' = '1,31',
  'projection.day.digits' = '2',
  'projection.hour.type' = 'integer',
  'projection.hour.range' = '0,23',
  'projection.hour.digits' = '2',
  'storage.location.template' = 's3://analytics-raw/content_type=${content_type}/year=${year}/month=${month}/day=${day}/hour=${hour}/'
)
;
"#;

#[test]
fn the_readme_layout_with_a_sample_file() {
    let dir = setup(&config(""), Some(SAMPLE));
    let (ok, out, err) = athena(
        dir.path(),
        &[
            "--output",
            "s3",
            "--table",
            "analytics.action_logs",
            "--sample-file",
            "sample.jsonl",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out, EXPECTED, "stderr: {err}");
    let p = parse_sql(&out);
    assert_eq!(p["kind"], "TABLE");
    assert_eq!(p["external"], true);
    assert_eq!(
        p["partitions"],
        json!([
            ["content_type", "VARCHAR"],
            ["year", "INTEGER"],
            ["month", "INTEGER"],
            ["day", "INTEGER"],
            ["hour", "INTEGER"]
        ])
    );
    assert_eq!(
        p["columns"][1][1],
        "ROW(a ARRAY(BIGINT), b ROW(c DOUBLE, d VARCHAR))"
    );
    assert_eq!(p["serde"], "org.openx.data.jsonserde.JsonSerDe");
    assert_eq!(p["serde_properties"]["mapping.user_agent"], "User-Agent");
    assert_eq!(p["location"], "s3://analytics-raw/");
    assert_eq!(p["tblproperties"]["projection.enabled"], "true");
    assert_eq!(
        p["tblproperties"]["projection.content_type.values"],
        "action_logs,page_views"
    );
}

#[test]
fn open_matches_and_record_fields_are_injected() {
    let extra = r#"
[[output]]
match = "app.**"
type = "s3"
bucket = "app-logs"
key = "raw/v1/app=${tag}/ct=${record.content_type}/env=prod/dt=%Y-%m-%d/${tag[1]}/${uuid}.json.gz"
time_key = "ts"
time_format = "unix_ms"
tag_key = "tag"
"#;
    let dir = setup(&config(extra), None);
    let (ok, out, err) = athena(dir.path(), &["--output", "s3.1", "--table", "app"]);
    assert!(ok, "{err}");
    let has = |l: &str| assert!(out.lines().any(|x| x == l), "no line {l:?} in\n{out}");
    has("CREATE EXTERNAL TABLE `app` (");
    has("  `ts` bigint,");
    has("  `tag` string");
    has("  -- add your columns here");
    has("PARTITIONED BY (`app` string, `ct` string, `env` string, `dt` string, `tag_1` string)");
    has("LOCATION 's3://app-logs/raw/v1/'");
    has("  'projection.app.type' = 'injected',");
    has("  'projection.ct.type' = 'injected',");
    has("  'projection.env.type' = 'enum',");
    has("  'projection.env.values' = 'prod',");
    has("  'projection.dt.type' = 'injected',");
    has("  'projection.tag_1.type' = 'injected',");
    has("  'storage.location.template' = 's3://app-logs/raw/v1/app=${app}/ct=${ct}/env=${env}/dt=${dt}/${tag_1}/'");
    assert!(err.contains("no --sample-file"), "{err}");
    let p = parse_sql(&out);
    assert_eq!(p["columns"], json!([["ts", "BIGINT"], ["tag", "VARCHAR"]]));
    assert_eq!(p["tblproperties"]["projection.app.type"], "injected");
}

fn event_time(secs: u32) -> V {
    let mut b = secs.to_be_bytes().to_vec();
    b.extend_from_slice(&0u32.to_be_bytes());
    V::Ext(0, b)
}

#[test]
fn columns_from_the_records_buffered_for_the_output() {
    // S3 unreachable, flush in an hour: the events stay in the file buffer
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let mut a = Agent::start(&config(""));
    let mut s = a.connect();
    for (i, tag) in ["action_logs", "page_views", "action_logs"]
        .iter()
        .enumerate()
    {
        let rec = V::Map(vec![
            (V::from("id"), V::from(i as u64)),
            (V::from("path"), V::from("/notes/n1")),
            (
                V::from(if i == 2 { "latency" } else { "ok" }),
                if i == 2 { V::from(0.25) } else { V::from(true) },
            ),
            (
                V::from("geo"),
                V::Map(vec![(V::from("country"), V::from("JP"))]),
            ),
        ]);
        let entries = V::Array(vec![V::Array(vec![event_time(1_717_162_200), rec])]);
        let chunk = format!("c{i}");
        let msg = V::Array(vec![
            V::from(*tag),
            entries,
            V::Map(vec![(V::from("chunk"), V::from(chunk.as_str()))]),
        ]);
        send(&mut s, &mp(&msg));
        assert_eq!(
            read_mp(&mut s),
            V::Map(vec![(V::from("ack"), V::from(chunk.as_str()))])
        );
    }
    drop(s);
    a.stop();
    let data = a.path("data");
    let buffered = std::fs::read_dir(data.join("buffer/s3"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(buffered > 0, "nothing buffered: {}", a.stderr());
    std::fs::write(
        a.dir.path().join("fuwa.toml"),
        config("").replace("{port}", &a.port.to_string()),
    )
    .unwrap();
    let (ok, out, err) = athena(
        a.dir.path(),
        &[
            "--output",
            "s3",
            "--table",
            "logs",
            "--data-dir",
            &data.display().to_string(),
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("-- columns from 3 record(s) buffered in "),
        "{out}"
    );
    let p = parse_sql(&out);
    assert_eq!(
        p["columns"],
        json!([
            ["id", "BIGINT"],
            ["path", "VARCHAR"],
            ["ok", "BOOLEAN"],
            ["geo", "ROW(country VARCHAR)"],
            ["latency", "DOUBLE"],
            ["time", "VARCHAR"]
        ]),
        "{out}"
    );
}

#[test]
fn errors_are_clear() {
    let extra = r#"
[[output]]
id = "mp"
match = "x"
type = "s3"
bucket = "b"
format = "msgpack"
key = "${uuid}.msgpack.gz"

[[output]]
match = "y"
type = "stdout"
"#;
    let dir = setup(&config(extra), Some(SAMPLE));
    let (ok, out, err) = athena(dir.path(), &["--output", "nope", "--table", "t"]);
    assert!(!ok && out.is_empty());
    assert!(
        err.contains("no output `nope`") && err.contains("s3 (s3), mp (s3), stdout.2 (stdout)"),
        "{err}"
    );
    let (ok, _, err) = athena(dir.path(), &["--output", "stdout.2", "--table", "t"]);
    assert!(!ok);
    assert!(
        err.contains("`stdout.2` is type = \"stdout\", not \"s3\""),
        "{err}"
    );
    let (ok, _, err) = athena(dir.path(), &["--output", "mp", "--table", "t"]);
    assert!(!ok);
    assert!(
        err.contains("format = \"msgpack\": Athena cannot read msgpack"),
        "{err}"
    );
    let (ok, _, err) = athena(
        dir.path(),
        &[
            "--output",
            "s3",
            "--table",
            "a.b.c",
            "--sample-file",
            "sample.jsonl",
        ],
    );
    assert!(!ok);
    assert!(err.contains("give TABLE or DATABASE.TABLE"), "{err}");
    // a DDL sqlglot does not understand fails the check
    let bad = EXPECTED.replace("ROW FORMAT SERDE", "ROW FORMT SERDE");
    let r = std::panic::catch_unwind(|| parse_sql(&bad));
    assert!(r.is_err(), "the parser check accepts broken DDL");
}

#[test]
fn a_parquet_output_is_stored_as_parquet_with_typed_columns() {
    let cfg = format!(
        r#"{AGENT}
[[filter]]
type = "types"
match = "action_logs"
fields = {{ status = "integer", took = "float" }}

[[output]]
id = "pq"
match = "action_logs page_views"
type = "s3"
bucket = "analytics"
region = "ap-northeast-1"
endpoint = "http://127.0.0.1:1"
key = "pq/content_type=${{tag}}/year=%Y/month=%m/day=%d/hour=%H/${{hostname}}-${{chunk_id}}.parquet"
format = "parquet"
compression = "zstd"
tag_key = "tag"
schema = {{ at = "timestamp", took = "string" }}
"#
    );
    let sample = r#"{"status": "200", "took": 1, "at": "x", "user": "u1", "seen": "2024-06-01T00:00:00Z", "nested": {"a": [1]}, "Mixed-Case": 1}
"#;
    let dir = setup(&cfg, Some(sample));
    // a column the output inferred from an earlier chunk, kept in data_dir
    let pq = dir.path().join("data/parquet");
    std::fs::create_dir_all(&pq).unwrap();
    std::fs::write(
        pq.join("pq.schema.json"),
        r#"{"columns": [{"name": "time", "type": "timestamp"}, {"name": "bytes", "type": "int64"}, {"name": "ok", "type": "bool"}]}"#,
    )
    .unwrap();
    let (ok, out, err) = athena(
        dir.path(),
        &[
            "--output",
            "pq",
            "--table",
            "analytics.logs",
            "--sample-file",
            "sample.jsonl",
            "--data-dir",
            "data",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("\nSTORED AS PARQUET\n"), "{out}");
    assert!(!out.contains("SERDE"), "{out}");
    let p = parse_sql(&out);
    assert_eq!(p["kind"], "TABLE");
    assert_eq!(p["external"], true);
    assert_eq!(p["file_format"], "PARQUET", "{p}");
    assert_eq!(
        p["columns"],
        json!([
            ["time", "TIMESTAMP"],
            ["tag", "VARCHAR"],
            ["at", "TIMESTAMP"],
            ["took", "VARCHAR"],
            ["bytes", "BIGINT"],
            ["ok", "BOOLEAN"],
            ["status", "BIGINT"],
            ["mixed_case", "BIGINT"],
            ["nested", "VARCHAR"],
            ["seen", "TIMESTAMP"],
            ["user", "VARCHAR"]
        ]),
        "the writer's order (time, tag, schema, persisted, the types filter's new column), then sampled: {out}"
    );
    assert_eq!(
        p["partitions"],
        json!([
            ["content_type", "VARCHAR"],
            ["year", "INTEGER"],
            ["month", "INTEGER"],
            ["day", "INTEGER"],
            ["hour", "INTEGER"]
        ])
    );
    assert_eq!(p["location"], "s3://analytics/pq/");
    assert_eq!(
        p["tblproperties"]["storage.location.template"],
        "s3://analytics/pq/content_type=${content_type}/year=${year}/month=${month}/day=${day}/hour=${hour}/"
    );
    assert_eq!(
        p["tblproperties"]["projection.content_type.values"],
        "action_logs,page_views"
    );
    assert!(
        out.contains("json_extract"),
        "nested values are JSON text: {out}"
    );
    assert!(
        err.contains("`Mixed-Case`") && err.contains("reads Parquet columns by name"),
        "{err}"
    );
}
