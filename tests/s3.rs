//! The S3 output through the real binary: forward in → file buffer → s3
//! out, against a local S3 (moto's server, started by each test on a free
//! port), sometimes behind a fault-injecting HTTP proxy. Objects are read
//! back with boto3 and DuckDB via tests/python/s3_util.py.
//!
//! Needs a Python with `moto[server]`, `boto3` and `duckdb`
//! (tests/python/requirements.txt) in `FUWA_PYTHON`; `bash .ci/run` sets it
//! up. Without it the tests fail and say so.
//!
//! Over 600 lines for a reason: one feature (the S3 output end to end:
//! keys, formats, multipart, retries and faults), one scenario a test.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::aws::{aws_env, py_script, read_request, MotoServer};
use common::*;
use rmpv::Value as V;
use serde_json::{json, Value as J};

const BUCKET: &str = "analytics-raw";
const REGION: &str = "ap-northeast-1";

// ---------------------------------------------------------------------------
// tools

/// moto's S3 server on a free port; killed on drop.
struct Moto(MotoServer);

impl std::ops::Deref for Moto {
    type Target = MotoServer;
    fn deref(&self) -> &MotoServer {
        &self.0
    }
}

impl Moto {
    fn start() -> Moto {
        Moto(MotoServer::start())
    }

    fn create_bucket(&self) {
        py(&["create-bucket", &self.endpoint(), BUCKET, REGION]);
    }

    /// Downloads every object into a fresh `dir` (same key layout).
    fn dump(&self, dir: &Path) -> Dump {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        let out = py(&["dump", &self.endpoint(), BUCKET, &dir.display().to_string()]);
        let v: J = serde_json::from_str(&out).expect("dump output");
        Dump {
            objects: v["objects"].as_array().unwrap().clone(),
            open_uploads: v["uploads"].as_u64().unwrap(),
            dir: dir.to_path_buf(),
        }
    }

    /// Waits until the objects hold `records` JSON lines in all.
    fn wait_records(&self, dir: &Path, records: usize, a: &Agent) -> Dump {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let d = self.dump(dir);
            let n = d.lines().len();
            if n >= records {
                return d;
            }
            if Instant::now() > deadline {
                panic!(
                    "{n} of {records} records in S3 after 60s; agent log:\n{}",
                    a.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

fn py(args: &[&str]) -> String {
    py_script("s3_util.py", args)
}

struct Dump {
    objects: Vec<J>,
    open_uploads: u64,
    dir: PathBuf,
}

impl Dump {
    /// (key, parsed JSON line) for every line of every object
    fn lines(&self) -> Vec<(String, J)> {
        let mut out = Vec::new();
        for o in &self.objects {
            let key = o["key"].as_str().unwrap().to_string();
            let raw = std::fs::read(self.dir.join(&key)).unwrap();
            let mut text = String::new();
            if key.ends_with(".gz") {
                flate2::read::GzDecoder::new(&raw[..])
                    .read_to_string(&mut text)
                    .unwrap_or_else(|e| panic!("{key} does not gunzip: {e}"));
            } else {
                text = String::from_utf8(raw).unwrap();
            }
            for l in text.lines() {
                let j: J = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{key}: not JSON ({e}): {l}"));
                out.push((key.clone(), j));
            }
        }
        out
    }
}

/// The S3 output config; `{endpoint}` and `{extra}` filled by the caller.
fn config(endpoint: &str, extra_output: &str, buffer: &str) -> String {
    format!(
        r#"[agent]
hostname = "web-1"
timezone = "Asia/Tokyo"
shutdown_timeout = "3s"

[[input]]
type = "forward"
bind = "127.0.0.1:{{port}}"

[[output]]
id = "s3"
match = "action_logs page_views"
type = "s3"
bucket = "{BUCKET}"
region = "{REGION}"
endpoint = "{endpoint}"
force_path_style = true
key = "content_type=${{tag}}/year=%Y/month=%m/day=%d/hour=%H/${{hostname}}-${{chunk_id}}.json.gz"
time_key = "time"
{extra_output}
[output.buffer]
type = "file"
retry_wait = "100ms"
retry_max_interval = "500ms"
{buffer}
"#
    )
}

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
    let chunk = format!("c{}", rand_id());
    let msg = V::Array(vec![
        V::from(tag),
        V::Binary(body),
        V::Map(vec![(V::from("chunk"), V::from(chunk.as_str()))]),
    ]);
    s.write_all(&mp(&msg)).expect("send");
    let ack = read_mp(s);
    assert_eq!(ack, V::Map(vec![(V::from("ack"), V::from(chunk.as_str()))]));
}

fn rand_id() -> u64 {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

fn rfc3339(secs: u32, nanos: u32) -> String {
    chrono::DateTime::from_timestamp(secs as i64, nanos)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.9fZ")
        .to_string()
}

/// The Hive partition of an event time in Tokyo (UTC+9, no DST).
fn partition(tag: &str, secs: u32) -> String {
    let t = chrono::DateTime::from_timestamp(secs as i64 + 9 * 3600, 0).unwrap();
    format!(
        "content_type={tag}/{}",
        t.format("year=%Y/month=%m/day=%d/hour=%H")
    )
}

fn dir_of(key: &str) -> &str {
    &key[..key.rfind('/').unwrap()]
}

/// Events for two tags over several hours, crossing a day and a month
/// boundary in Tokyo: 2024-05-31 22:xx JST to 2024-06-01 01:xx JST.
/// Returns (tag, secs, nanos, record) and the expected JSON of each line.
fn hourly_events(per_hour: &[(&'static str, usize)]) -> Vec<(&'static str, u32, u32, V)> {
    let base = 1_717_162_200u32; // 2024-05-31T13:30:00Z = 22:30 JST
    let mut out = Vec::new();
    let mut id = 0u64;
    for h in 0..4u32 {
        for (tag, n) in per_hour {
            for i in 0..*n {
                let secs = base + h * 3600 + (i as u32 * 7) % 1700;
                let nanos = 123_456_789 + i as u32;
                let rec = V::Map(vec![
                    (V::from("id"), V::from(id)),
                    (V::from("user"), V::from(format!("u{}", id % 13))),
                    (V::from("path"), V::from("/notes/n1?ref=top")),
                    (V::from("score"), V::from(1.5)),
                    (V::from("ok"), V::from(id.is_multiple_of(2))),
                    (
                        V::from("nested"),
                        V::Map(vec![(
                            V::from("a"),
                            V::Array(vec![V::from(1), V::from("two")]),
                        )]),
                    ),
                ]);
                out.push((*tag, secs, nanos, rec));
                id += 1;
            }
        }
    }
    out
}

fn expected_json(secs: u32, nanos: u32, rec: &V) -> J {
    let mut j: J = serde_json::from_str(&rmpv_to_json(rec)).unwrap();
    j["time"] = json!(rfc3339(secs, nanos));
    j
}

fn rmpv_to_json(v: &V) -> String {
    fn conv(v: &V) -> J {
        match v {
            V::Nil => J::Null,
            V::Boolean(b) => json!(b),
            V::Integer(i) => {
                if let Some(u) = i.as_u64() {
                    json!(u)
                } else {
                    json!(i.as_i64().unwrap())
                }
            }
            V::F64(f) => json!(f),
            V::F32(f) => json!(f),
            V::String(s) => json!(s.as_str().unwrap()),
            V::Array(a) => J::Array(a.iter().map(conv).collect()),
            V::Map(m) => J::Object(
                m.iter()
                    .map(|(k, v)| (k.as_str().unwrap().to_string(), conv(v)))
                    .collect(),
            ),
            other => panic!("unexpected {other:?}"),
        }
    }
    conv(v).to_string()
}

fn send_events(a: &Agent, events: &[(&'static str, u32, u32, V)]) {
    let mut s = a.connect();
    for tag in ["action_logs", "page_views"] {
        let evs: Vec<(u32, u32, V)> = events
            .iter()
            .filter(|e| e.0 == tag)
            .map(|e| (e.1, e.2, e.3.clone()))
            .collect();
        for part in evs.chunks(500) {
            send_packed(&mut s, tag, part);
        }
    }
}

fn key_re_ok(key: &str) -> bool {
    // content_type=T/year=Y/month=M/day=D/hour=H/web-1-<32 hex>.json.gz
    let Some(file) = key.rsplit('/').next() else {
        return false;
    };
    let id = file
        .strip_prefix("web-1-")
        .and_then(|f| f.strip_suffix(".json.gz"));
    key.split('/').count() == 6
        && id.is_some_and(|i| i.len() == 32 && i.chars().all(|c| c.is_ascii_hexdigit()))
}

// ---------------------------------------------------------------------------
// a fault-injecting HTTP proxy in front of moto

#[derive(Clone, Debug)]
enum Fault {
    /// answer with this status and S3 error code; S3 never sees the request
    Status(u16, &'static str),
    /// let S3 store it, then answer with an error anyway (the client must
    /// retry; a retry must not add a second object)
    ForwardThenStatus(u16, &'static str),
    /// read the request and answer nothing for this long
    Hang(Duration),
}

struct Proxy {
    port: u16,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Fails the first requests with `faults` in order; then forwards
    /// everything to `upstream`, or answers with `always` if set.
    fn start(upstream: u16, faults: Vec<Fault>, always: Option<Fault>) -> Proxy {
        Self::start_at(0, upstream, faults, always)
    }

    fn start_at(port: u16, upstream: u16, faults: Vec<Fault>, always: Option<Fault>) -> Proxy {
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let faults = Arc::new(Mutex::new(VecDeque::from(faults)));
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (rq, st) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        let (f, rq, al) = (faults.clone(), rq.clone(), always.clone());
                        std::thread::spawn(move || {
                            let _ = serve(c, upstream, &f, &rq, al);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy {
            port,
            requests,
            stop,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn error_response(status: u16, code: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the test proxy</Message><RequestId>TEST</RequestId></Error>"
    );
    format!(
        "HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Forwards one request to moto on a fresh connection and returns the
/// whole response, marked `Connection: close`.
fn forward(upstream: u16, head: &[String], body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    let mut req = String::new();
    for h in head {
        if !h.to_ascii_lowercase().starts_with("connection:") {
            req.push_str(h);
            req.push_str("\r\n");
        }
    }
    req.push_str("Connection: close\r\n\r\n");
    up.write_all(req.as_bytes())?;
    up.write_all(body)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&resp[..end]).to_string();
    let mut out: Vec<u8> = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect::<Vec<_>>()
        .join("\r\n")
        .into_bytes();
    out.extend_from_slice(b"\r\nConnection: close");
    out.extend_from_slice(&resp[end..]);
    Ok(out)
}

fn serve(
    c: TcpStream,
    upstream: u16,
    faults: &Mutex<VecDeque<Fault>>,
    requests: &AtomicUsize,
    always: Option<Fault>,
) -> std::io::Result<()> {
    let mut w = c.try_clone()?;
    let mut r = BufReader::new(c);
    let Some((head, body)) = read_request(&mut r)? else {
        return Ok(());
    };
    requests.fetch_add(1, Ordering::Relaxed);
    let fault = faults.lock().unwrap().pop_front().or(always);
    match fault {
        Some(Fault::Status(s, code)) => w.write_all(&error_response(s, code))?,
        Some(Fault::ForwardThenStatus(s, code)) => {
            forward(upstream, &head, &body)?;
            w.write_all(&error_response(s, code))?;
        }
        Some(Fault::Hang(d)) => std::thread::sleep(d),
        None => w.write_all(&forward(upstream, &head, &body)?)?,
    }
    w.flush()?;
    Ok(())
}

fn dead_letters(a: &Agent) -> Vec<J> {
    let dir = a.path("data/dead-letter/s3");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------
// tests

#[test]
fn events_land_under_their_event_time_partition_as_gzip_json_lines() {
    let moto = Moto::start();
    moto.create_bucket();
    let cfg = config(
        &moto.endpoint(),
        "storage_class = \"STANDARD_IA\"",
        "flush_interval = \"1s\"",
    );
    let a = Agent::start(&cfg);
    let events = hourly_events(&[("action_logs", 40), ("page_views", 25)]);
    send_events(&a, &events);
    let out = tempfile::tempdir().unwrap();
    let d = moto.wait_records(out.path(), events.len(), &a);

    // every object: the layout, the headers
    for o in &d.objects {
        let key = o["key"].as_str().unwrap();
        assert!(key_re_ok(key), "{key}");
        assert_eq!(o["content_type"], "application/x-ndjson", "{o}");
        assert_eq!(o["content_encoding"], "gzip", "{o}");
        assert_eq!(o["storage_class"], "STANDARD_IA", "{o}");
    }
    // 4 hours × 2 tags, one chunk each
    let dirs: std::collections::BTreeSet<&str> = d
        .objects
        .iter()
        .map(|o| dir_of(o["key"].as_str().unwrap()))
        .collect();
    let want_dirs: std::collections::BTreeSet<String> = events
        .iter()
        .map(|(tag, secs, _, _)| partition(tag, *secs))
        .collect();
    assert_eq!(
        dirs.iter()
            .map(|s| s.to_string())
            .collect::<std::collections::BTreeSet<_>>(),
        want_dirs
    );
    assert!(want_dirs.contains("content_type=page_views/year=2024/month=06/day=01/hour=00"));
    assert!(want_dirs.contains("content_type=action_logs/year=2024/month=05/day=31/hour=22"));

    // every line: equal to its input event, under its event-time partition
    let lines = d.lines();
    assert_eq!(lines.len(), events.len());
    let mut by_id: BTreeMap<u64, (String, J)> = BTreeMap::new();
    for (key, j) in lines {
        let id = j["id"].as_u64().unwrap();
        assert!(by_id.insert(id, (key, j)).is_none(), "record {id} twice");
    }
    for (i, (tag, secs, nanos, rec)) in events.iter().enumerate() {
        let (key, got) = &by_id[&(i as u64)];
        assert_eq!(got, &expected_json(*secs, *nanos, rec));
        assert_eq!(dir_of(key), partition(tag, *secs), "record {i}");
    }
    assert_eq!(d.open_uploads, 0);
}

#[test]
fn duckdb_reads_the_objects_as_a_hive_partitioned_table() {
    let moto = Moto::start();
    moto.create_bucket();
    let cfg = config(&moto.endpoint(), "", "flush_interval = \"1s\"");
    let a = Agent::start(&cfg);
    let events = hourly_events(&[("action_logs", 30), ("page_views", 11)]);
    send_events(&a, &events);
    let out = tempfile::tempdir().unwrap();
    moto.wait_records(out.path(), events.len(), &a);

    let glob = format!("{}/**/*.json.gz", out.path().display());
    let rows: Vec<J> = serde_json::from_str(&py(&["duckdb", &glob])).unwrap();
    let got: BTreeMap<String, u64> = rows
        .iter()
        .map(|r| {
            let p: Vec<String> = (0..5).map(|i| r[i].as_str().unwrap().to_string()).collect();
            (
                format!(
                    "content_type={}/year={}/month={:0>2}/day={:0>2}/hour={:0>2}",
                    p[0], p[1], p[2], p[3], p[4]
                ),
                r[5].as_u64().unwrap(),
            )
        })
        .collect();
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for (tag, secs, _, _) in &events {
        *want.entry(partition(tag, *secs)).or_default() += 1;
    }
    assert_eq!(got, want);
    assert_eq!(got.len(), 8);
}

#[test]
fn a_big_chunk_goes_up_as_a_multipart_upload() {
    let moto = Moto::start();
    moto.create_bucket();
    let cfg = config(
        &moto.endpoint(),
        "multipart_threshold = \"5MiB\"\npart_size = \"5MiB\"",
        "flush_interval = \"4s\"\nchunk_limit_size = \"64MiB\"\ntotal_limit_size = \"512MiB\"",
    );
    let a = Agent::start(&cfg);
    // ~20 MiB of barely compressible records in one hour, one tag
    let mut seed = 0x2545F4914F6CDD1Du64;
    let n = 20_000u64;
    let mut s = a.connect();
    let mut batch = Vec::new();
    for id in 0..n {
        let blob = incompressible_text(&mut seed, 1000);
        let rec = V::Map(vec![
            (V::from("id"), V::from(id)),
            (V::from("blob"), V::from(blob)),
        ]);
        batch.push((1_717_162_200u32 + (id % 600) as u32, 0u32, rec));
        if batch.len() == 1000 {
            send_packed(&mut s, "action_logs", &batch);
            batch.clear();
        }
    }
    let out = tempfile::tempdir().unwrap();
    let d = moto.wait_records(out.path(), n as usize, &a);
    assert_eq!(d.objects.len(), 1, "{:?}", d.objects);
    let size = d.objects[0]["size"].as_u64().unwrap();
    assert!(size > 12 << 20, "compressed object is {size} bytes");
    let etag = d.objects[0]["etag"].as_str().unwrap_or("");
    assert!(
        etag.trim_matches('"')
            .split('-')
            .nth(1)
            .is_some_and(|p| p.parse::<u32>().unwrap() >= 3),
        "a multipart ETag ends in -<parts>: {etag}"
    );
    assert_eq!(d.objects[0]["content_encoding"], "gzip");
    let lines = d.lines();
    let mut ids: Vec<u64> = lines
        .iter()
        .map(|(_, j)| j["id"].as_u64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (0..n).collect::<Vec<_>>());
    assert_eq!(d.open_uploads, 0);
}

#[test]
fn injected_500_503_and_timeouts_are_retried_without_duplicate_objects() {
    let moto = Moto::start();
    moto.create_bucket();
    let proxy = Proxy::start(
        moto.port,
        vec![
            Fault::ForwardThenStatus(500, "InternalError"),
            Fault::Status(503, "SlowDown"),
            Fault::Hang(Duration::from_secs(6)),
            Fault::ForwardThenStatus(503, "SlowDown"),
        ],
        None,
    );
    let cfg = config(
        &proxy.endpoint(),
        "timeout = \"1s\"\nconnect_timeout = \"1s\"",
        "flush_interval = \"1s\"\nretry_max_times = 20",
    );
    let a = Agent::start(&cfg);
    let events: Vec<_> = hourly_events(&[("action_logs", 30)]);
    send_events(&a, &events);
    let out = tempfile::tempdir().unwrap();
    let d = moto.wait_records(out.path(), events.len(), &a);
    // give a late duplicate the chance to show up
    std::thread::sleep(Duration::from_secs(2));
    let d2 = moto.dump(out.path());
    assert_eq!(d2.objects.len(), d.objects.len());
    let err = a.stderr();
    for what in [
        "InternalError (HTTP 500)",
        "SlowDown (HTTP 503)",
        "timed out",
        "will retry",
    ] {
        assert!(err.contains(what), "log lacks `{what}`:\n{err}");
    }
    assert!(proxy.requests.load(Ordering::Relaxed) >= 4 + 4);
    // exactly one object per chunk (one chunk per hour here), each record once
    let dirs: Vec<&str> = d2
        .objects
        .iter()
        .map(|o| dir_of(o["key"].as_str().unwrap()))
        .collect();
    let uniq: std::collections::BTreeSet<&str> = dirs.iter().copied().collect();
    assert_eq!(dirs.len(), 4, "{dirs:?}");
    assert_eq!(uniq.len(), 4, "two objects in one partition: {dirs:?}");
    let mut ids: Vec<u64> = d2
        .lines()
        .iter()
        .map(|(_, j)| j["id"].as_u64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (0..events.len() as u64).collect::<Vec<_>>());
    assert!(dead_letters(&a).is_empty());
}

#[test]
fn access_denied_is_fatal_with_a_clear_message_and_a_dead_letter() {
    let moto = Moto::start();
    moto.create_bucket();
    let proxy = Proxy::start(moto.port, vec![], Some(Fault::Status(403, "AccessDenied")));
    let cfg = config(
        &proxy.endpoint(),
        "",
        "flush_interval = \"500ms\"\nretry_max_times = 5",
    );
    let a = Agent::start(&cfg);
    send_events(&a, &hourly_events(&[("page_views", 3)])[..3]);
    assert!(
        a.wait_stderr("dead-letter", Duration::from_secs(20)),
        "{}",
        a.stderr()
    );
    let err = a.stderr();
    assert!(err.contains("AccessDenied (HTTP 403)"), "{err}");
    assert!(err.contains("s3:PutObject"), "says which permission: {err}");
    assert!(!err.contains("will retry"), "not retried: {err}");
    assert!(!err.contains("testing"), "no credentials in the log");
    let notes = dead_letters(&a);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["reason"], "fatal error");
    assert_eq!(notes[0]["attempts"], 1);
    assert_eq!(notes[0]["records"], 3);
    assert!(notes[0]["error"].as_str().unwrap().contains("AccessDenied"));
    assert_eq!(proxy.requests.load(Ordering::Relaxed), 1);
}

#[test]
fn a_missing_bucket_is_fatal_with_a_clear_message_and_a_dead_letter() {
    let moto = Moto::start(); // no bucket created
    let cfg = config(
        &moto.endpoint(),
        "",
        "flush_interval = \"500ms\"\nretry_max_times = 5",
    );
    let a = Agent::start(&cfg);
    send_events(&a, &hourly_events(&[("action_logs", 2)])[..2]);
    assert!(
        a.wait_stderr("dead-letter", Duration::from_secs(20)),
        "{}",
        a.stderr()
    );
    let err = a.stderr();
    assert!(err.contains("NoSuchBucket"), "{err}");
    assert!(
        err.contains(&format!("bucket `{BUCKET}` does not exist")),
        "{err}"
    );
    assert!(!err.contains("will retry"), "{err}");
    let notes = dead_letters(&a);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["reason"], "fatal error");
    assert_eq!(notes[0]["records"], 2);
}

#[test]
fn the_agent_starts_with_s3_unreachable_and_delivers_once_it_is_up() {
    aws_env();
    // nothing listens on the endpoint yet
    let port = free_port();
    let cfg = config(
        &format!("http://127.0.0.1:{port}"),
        "timeout = \"2s\"\nconnect_timeout = \"1s\"",
        "flush_interval = \"300ms\"\nretry_forever = true",
    );
    let a = Agent::start(&cfg);
    let events = hourly_events(&[("action_logs", 5)]);
    send_events(&a, &events[..5]);
    assert!(
        a.wait_stderr("will retry", Duration::from_secs(20)),
        "{}",
        a.stderr()
    );
    assert!(
        a.stderr().contains("connection error") || a.stderr().contains("timed out"),
        "{}",
        a.stderr()
    );
    // S3 comes up (with its bucket) behind that port
    let moto = Moto::start();
    moto.create_bucket();
    let _proxy = Proxy::start_at(port, moto.port, vec![], None);
    let out = tempfile::tempdir().unwrap();
    let d = moto.wait_records(out.path(), 5, &a);
    assert_eq!(d.lines().len(), 5);
    assert!(dead_letters(&a).is_empty());
}

/// A tag longer than a key component may be (1,000 bytes, under the inputs'
/// tag limit) used to give a 1,100-byte key that S3 refuses (and no file
/// system can mirror). The component is cut to 255 bytes with a hash of the
/// whole, and the object is written like any other.
#[test]
fn a_tag_too_long_for_a_key_component_is_shortened_and_delivered() {
    let moto = Moto::start();
    moto.create_bucket();
    let cfg = config(&moto.endpoint(), "", "flush_interval = \"1s\"")
        .replace(r#"match = "action_logs page_views""#, r#"match = "**""#);
    let a = Agent::start(&cfg);
    let long = "a".repeat(1000);
    let events = |from: u64| -> Vec<(u32, u32, V)> {
        (from..from + 10)
            .map(|id| {
                (
                    1_717_162_200u32,
                    0u32,
                    V::Map(vec![(V::from("id"), V::from(id))]),
                )
            })
            .collect()
    };
    let mut s = a.connect();
    send_packed(&mut s, &long, &events(0));
    send_packed(&mut s, "action_logs", &events(10));
    let out = tempfile::tempdir().unwrap();
    let d = moto.wait_records(out.path(), 20, &a);
    assert_eq!(d.objects.len(), 2, "{:?}", d.objects);
    let keys: Vec<&str> = d
        .objects
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    for k in &keys {
        assert!(k.len() <= 1024, "{k}");
        assert!(k.split('/').all(|c| c.len() <= 255), "{k}");
    }
    let cut = keys
        .iter()
        .find(|k| k.starts_with("content_type=aaa"))
        .expect("the long tag's object");
    let first = cut.split('/').next().unwrap();
    assert_eq!(first.len(), 255, "{first}");
    assert!(
        first.starts_with(&format!("content_type={}-", "a".repeat(225))),
        "{first}"
    );
    let mut ids: Vec<u64> = d
        .lines()
        .iter()
        .map(|(_, j)| j["id"].as_u64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (0..20).collect::<Vec<_>>());
    assert!(dead_letters(&a).is_empty());
}

#[test]
fn a_retried_parquet_chunk_overwrites_its_object() {
    let moto = Moto::start();
    moto.create_bucket();
    // S3 stores the first two uploads, then the client is told they failed
    let proxy = Proxy::start(
        moto.port,
        vec![
            Fault::ForwardThenStatus(500, "InternalError"),
            Fault::ForwardThenStatus(503, "SlowDown"),
        ],
        None,
    );
    let cfg = config(
        &proxy.endpoint(),
        "format = \"parquet\"\ntimeout = \"2s\"",
        "flush_interval = \"1s\"\nretry_max_times = 20",
    )
    .replace(".json.gz\"", ".parquet\"");
    let a = Agent::start(&cfg);
    let events: Vec<_> = hourly_events(&[("action_logs", 30)]);
    send_events(&a, &events);
    let out = tempfile::tempdir().unwrap();
    let glob = format!("{}/**/*.parquet", out.path().display());
    let count = |d: &Dump| -> u64 {
        if d.objects.is_empty() {
            return 0;
        }
        let r: J = serde_json::from_str(&py_script(
            "parquet_check.py",
            &[&glob, "SELECT count(*), count(DISTINCT id) FROM t"],
        ))
        .unwrap();
        assert_eq!(r[0][0][0], r[0][0][1], "a record twice: {r}");
        r[0][0][0].as_u64().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut d = moto.dump(out.path());
    while count(&d) < events.len() as u64 {
        assert!(Instant::now() < deadline, "agent log:\n{}", a.stderr());
        std::thread::sleep(Duration::from_millis(300));
        d = moto.dump(out.path());
    }
    // give a late duplicate the chance to show up
    std::thread::sleep(Duration::from_secs(2));
    let d = moto.dump(out.path());
    assert_eq!(count(&d), events.len() as u64);
    let err = a.stderr();
    assert!(
        err.contains("InternalError (HTTP 500)") && err.contains("will retry"),
        "{err}"
    );
    let dirs: std::collections::BTreeSet<&str> = d
        .objects
        .iter()
        .map(|o| dir_of(o["key"].as_str().unwrap()))
        .collect();
    assert_eq!(
        d.objects.len(),
        4,
        "one object per hour's chunk: {:?}",
        d.objects
    );
    assert_eq!(dirs.len(), 4);
    assert!(d
        .objects
        .iter()
        .all(|o| o["content_type"] == "application/vnd.apache.parquet"));
    assert!(dead_letters(&a).is_empty());
}
