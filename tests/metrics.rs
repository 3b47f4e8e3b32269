//! `[agent.api]` through the real binary: /metrics parsed by Prometheus'
//! own parser with values matching what was sent, retries and errors
//! counted while the output is down, /health turning 503 for the two
//! failing cases it defines, /api/status's shape, and the logs (JSON and
//! text) being one line per event with repeated warnings rate-limited.

mod common;
mod ops_util;

use std::time::Duration;

use common::*;
use ops_util::*;

/// forward → file output `files` at {dir}/out/blocked/out.log (down while
/// `{dir}/out/blocked` is a regular file), file buffer.
fn config(agent: &str, buffer: &str) -> String {
    format!(
        r#"[agent]
shutdown_timeout = "2s"
{agent}

[agent.api]
bind = "127.0.0.1:{{api}}"
health_max_failed_writes = 3

[[input]]
type = "forward"
bind = "127.0.0.1:{{port}}"

[[output]]
id = "files"
match = "**"
type = "file"
path = "{{dir}}/out/blocked/out.log"
[output.buffer]
type = "file"
flush_interval = "50ms"
{buffer}
"#
    )
}

fn block(a: &Agent) {
    std::fs::create_dir_all(a.path("out")).unwrap();
    if a.path("out/blocked").is_dir() {
        // what was delivered so far moves aside (still counted below out/)
        std::fs::rename(a.path("out/blocked"), a.path("out/before")).unwrap();
    }
    std::fs::write(a.path("out/blocked"), b"the output is down").unwrap();
}

fn unblock(a: &Agent) {
    let _ = std::fs::remove_file(a.path("out/blocked"));
}

const OUT: &[(&str, &str)] = &[("id", "files"), ("type", "file")];
const IN: &[(&str, &str)] = &[("id", "forward.0"), ("type", "forward")];

#[test]
fn metrics_match_what_was_sent_and_count_retries_while_the_output_is_down() {
    let (a, api) = start_agent(
        &config(
            "",
            "retry_wait = \"200ms\"\nretry_max_interval = \"200ms\"\nretry_forever = true\nchunk_limit_records = 10\nflush_thread_count = 4",
        ),
        &[],
    );
    // before anything: every family there, at zero, HELP and TYPE given
    let s = scrape(api);
    assert_eq!(s.must("fuwa_input_records_total", IN), 0.0);
    assert_eq!(s.must("fuwa_output_proc_records_total", OUT), 0.0);
    for (name, kind) in [
        ("fuwa_input_records", "counter"),
        ("fuwa_output_proc_records", "counter"),
        ("fuwa_output_retries", "counter"),
        ("fuwa_output_errors", "counter"),
        ("fuwa_output_dropped_records", "counter"),
        ("fuwa_buffer_bytes", "gauge"),
        ("fuwa_buffer_chunks", "gauge"),
        ("fuwa_buffer_oldest_chunk_age_seconds", "gauge"),
        ("fuwa_output_write_duration_seconds", "histogram"),
        ("fuwa_log_suppressed", "counter"),
    ] {
        assert_eq!(
            s.families.get(name).and_then(|t| t.as_str()),
            Some(kind),
            "{name} in {:?}",
            s.families
        );
        assert!(s.text.contains(&format!("# HELP {name}")), "{name}");
    }

    // N events with acks, the output up
    let n = 120;
    send_acked(a.port, "app.web", 0, n, 10);
    assert!(wait_until(Duration::from_secs(10), || ids(&a.path("out"))
        .len()
        == n as usize));
    assert!(wait_until(Duration::from_secs(5), || scrape(api)
        .must("fuwa_output_proc_records_total", OUT)
        == n as f64));
    let s = scrape(api);
    assert_eq!(s.must("fuwa_input_records_total", IN), n as f64);
    assert_eq!(s.must("fuwa_output_buffered_records_total", OUT), n as f64);
    let in_bytes = s.must("fuwa_input_bytes_total", IN);
    let out_bytes = s.must("fuwa_output_proc_bytes_total", OUT);
    assert!(in_bytes > (n * 40) as f64, "{in_bytes}");
    assert_eq!(
        out_bytes, in_bytes,
        "the chunks hold the bytes the input emitted"
    );
    assert_eq!(s.must("fuwa_output_retries_total", OUT), 0.0);
    assert_eq!(s.must("fuwa_output_errors_total", OUT), 0.0);
    assert_eq!(s.must("fuwa_buffer_chunks", OUT), 0.0);
    assert_eq!(s.must("fuwa_buffer_bytes", OUT), 0.0);
    // 10 records per chunk: 12 writes, each in the histogram
    let writes = s.must("fuwa_output_write_duration_seconds_count", OUT);
    assert_eq!(writes, 12.0, "{}", s.text);
    assert_eq!(
        s.must(
            "fuwa_output_write_duration_seconds_bucket",
            &[("id", "files"), ("le", "+Inf")]
        ),
        writes
    );
    assert!(s.must("fuwa_output_write_duration_seconds_sum", OUT) > 0.0);
    assert_eq!(s.must("fuwa_output_healthy", OUT), 1.0);
    let (code, h) = get_json(api, "/health");
    assert_eq!((code, h["status"].as_str()), (200, Some("ok")), "{h}");

    // the output goes down: retries and errors are counted, the buffer
    // holds the chunks, health turns 503 past health_max_failed_writes
    block(&a);
    send_acked(a.port, "app.web", 1000, 40, 10);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let s = scrape(api);
            s.must("fuwa_output_retries_total", OUT) >= 8.0
        }),
        "{}",
        a.stderr()
    );
    let s = scrape(api);
    assert!(s.must("fuwa_output_errors_total", OUT) >= s.must("fuwa_output_retries_total", OUT));
    assert_eq!(s.must("fuwa_buffer_chunks", OUT), 4.0, "{}", s.text);
    assert!(s.must("fuwa_buffer_bytes", OUT) > 0.0);
    assert!(s.must("fuwa_buffer_oldest_chunk_age_seconds", OUT) > 0.1);
    assert_eq!(s.must("fuwa_output_proc_records_total", OUT), n as f64);
    assert_eq!(s.must("fuwa_input_records_total", IN), (n + 40) as f64);
    assert_eq!(s.must("fuwa_output_healthy", OUT), 0.0);
    // four workers failing together: their retry warnings are rate-limited
    // (one per output per retry_wait) and the held-back ones counted
    assert!(s.must("fuwa_log_suppressed_total", &[]) > 0.0, "{}", s.text);
    let warned = a
        .stderr()
        .lines()
        .filter(|l| l.contains("will retry"))
        .count() as f64;
    assert!(
        warned < s.must("fuwa_output_retries_total", OUT),
        "{warned} warnings for every retry"
    );

    let (code, h) = get_json(api, "/health");
    assert_eq!(code, 503, "{h}");
    assert_eq!(h["status"], "unhealthy");
    let reason = h["reasons"][0].as_str().unwrap();
    assert!(
        reason.contains("output files") && reason.contains("failed in a row"),
        "{reason}"
    );
    assert!(
        reason.contains("blocked"),
        "the last error is named: {reason}"
    );

    let (code, st) = get_json(api, "/api/status");
    assert_eq!(code, 200);
    assert_eq!(st["healthy"], false);
    assert_eq!(st["inputs"][0]["id"], "forward.0");
    assert_eq!(st["inputs"][0]["type"], "forward");
    assert_eq!(st["inputs"][0]["records"], n + 40);
    let o = &st["outputs"][0];
    assert_eq!(o["id"], "files");
    assert_eq!(o["type"], "file");
    assert_eq!(o["match"], "**");
    assert_eq!(o["healthy"], false);
    assert_eq!(o["buffer"]["type"], "file");
    assert_eq!(o["buffer"]["chunks"], 4);
    assert!(o["buffer"]["oldest_chunk_age_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(o["records_out"], n);
    assert!(o["retries"].as_u64().unwrap() >= 8);
    assert!(
        o["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("blocked"),
        "{o}"
    );
    assert!(o["last_error"]["at"].as_f64().unwrap() > 1.7e9);
    assert!(st["uptime_seconds"].as_f64().unwrap() > 0.0);
    assert!(st["config"].as_str().unwrap().ends_with("fuwa.toml"));

    // back up: everything delivered once, healthy again, buffer empty
    unblock(&a);
    assert!(wait_until(Duration::from_secs(10), || ids(&a.path("out"))
        .len()
        == (n + 40) as usize));
    assert!(ids(&a.path("out")).values().all(|c| *c == 1));
    assert!(wait_until(Duration::from_secs(5), || get(api, "/health").0 == 200));
    let s = scrape(api);
    assert_eq!(
        s.must("fuwa_output_proc_records_total", OUT),
        (n + 40) as f64
    );
    assert_eq!(s.must("fuwa_buffer_chunks", OUT), 0.0);
    assert_eq!(s.must("fuwa_buffer_oldest_chunk_age_seconds", OUT), 0.0);
    assert_eq!(s.must("fuwa_output_dropped_records_total", OUT), 0.0);

    // wrong paths and methods are answered, not fatal
    assert_eq!(get(api, "/nope").0, 404);
    let mut c = std::net::TcpStream::connect(("127.0.0.1", api)).unwrap();
    use std::io::{Read, Write};
    c.write_all(
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut r = String::new();
    c.read_to_string(&mut r).unwrap();
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    c = std::net::TcpStream::connect(("127.0.0.1", api)).unwrap();
    c.write_all(b"\x16\x03\x01garbage\r\n\r\n").unwrap();
    let _ = c.read_to_string(&mut r);
    assert_eq!(get(api, "/health").0, 200);
}

#[test]
fn dead_letters_make_health_fail_for_health_period() {
    let cfg = config(
        "",
        "retry_wait = \"50ms\"\nretry_max_times = 1\nretry_randomize = false",
    )
    .replace(
        "health_max_failed_writes = 3",
        "health_max_failed_writes = 100\nhealth_period = \"2s\"",
    );
    let (a, api) = start_agent(&cfg, &[]);
    block(&a);
    send_acked(a.port, "app.web", 0, 7, 7);
    assert!(a.wait_stderr("dead-letter", Duration::from_secs(10)));
    let (code, h) = get_json(api, "/health");
    assert_eq!(code, 503, "{h}");
    let reason = h["reasons"][0].as_str().unwrap();
    assert!(
        reason.contains("output files: 1 chunk(s) dead-lettered in the last 2s"),
        "{reason}"
    );
    let s = scrape(api);
    assert_eq!(s.must("fuwa_output_retries_failed_total", OUT), 1.0);
    assert_eq!(s.must("fuwa_output_dead_letter_records_total", OUT), 7.0);
    assert_eq!(s.must("fuwa_output_errors_total", OUT), 2.0);
    assert_eq!(s.must("fuwa_output_retries_total", OUT), 1.0);
    let (_, st) = get_json(api, "/api/status");
    assert_eq!(st["outputs"][0]["dead_letter_chunks"], 1);
    assert_eq!(st["outputs"][0]["dead_letter_records"], 7);
    // health_period later, with nothing new dead-lettered: healthy again
    assert!(wait_until(Duration::from_secs(5), || get(api, "/health").0 == 200));
}

#[test]
fn api_bind_taken_refuses_to_start_and_a_bad_bind_is_a_config_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[agent.api]\nbind = \"127.0.0.1:{port}\"\n[[input]]\ntype = \"forward\"\nbind = \"127.0.0.1:{}\"\n[[output]]\ntype = \"null\"\n",
        free_port()
    );
    let path = dir.path().join("f.toml");
    std::fs::write(&path, cfg).unwrap();
    let o = std::process::Command::new(bin())
        .args(["run", "--data-dir"])
        .arg(dir.path())
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("[agent.api] cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );

    let check = |src: &str| {
        std::fs::write(&path, src).unwrap();
        let o = std::process::Command::new(bin())
            .args(["check", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let name = path.display().to_string();
    let tail = "[[input]]\ntype = \"forward\"\n[[output]]\ntype = \"null\"\n";
    let out = check(&format!("[agent.api]\nbind = \"localhost\"\n{tail}"));
    assert!(
        out.starts_with(&format!("{name}:2: agent.api.bind:")),
        "{out}"
    );
    let out = check(&format!(
        "[agent.api]\nbind = \"127.0.0.1:24220\"\nhealth_max_retries = 1\n{tail}"
    ));
    assert!(
        out.starts_with(&format!(
            "{name}:3: agent.api.health_max_retries: unknown field"
        )),
        "{out}"
    );
}

#[test]
fn logs_are_one_line_per_event_in_json_and_in_text() {
    for format in ["json", "text"] {
        let (mut a, api) = start_agent(
            &config(
                &format!("log_format = \"{format}\""),
                "retry_wait = \"50ms\"\nretry_max_times = 1\nretry_randomize = false",
            ),
            &[],
        );
        block(&a);
        send_acked(a.port, "app.web", 0, 3, 3);
        assert!(a.wait_stderr("dead-letter", Duration::from_secs(10)));
        // a reload refused with several problems: one event per problem
        rewrite(
            &a,
            api,
            "[agent]\nbogus = 1\n[[input]]\ntype = \"forward\"\nbind = \"x\"\n[[output]]\ntype = \"nope\"\n",
        );
        signal(&a.child, "HUP");
        assert!(a.wait_stderr("reload refused", Duration::from_secs(10)));
        a.stop();
        let err = a.stderr();
        let lines: Vec<&str> = err.lines().filter(|l| !l.is_empty()).collect();
        assert!(lines.len() >= 8, "{err}");
        for l in &lines {
            match format {
                "json" => {
                    let v: serde_json::Value = serde_json::from_str(l)
                        .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {l}"));
                    assert!(v["timestamp"].is_string() && v["level"].is_string(), "{l}");
                    assert!(v["fields"]["message"].is_string(), "{l}");
                }
                _ => {
                    assert!(
                        l.len() > 28
                            && l.as_bytes()[4] == b'-'
                            && l[..28].contains('T')
                            && ["ERROR", "WARN", "INFO", "DEBUG"]
                                .iter()
                                .any(|lv| l.contains(lv)),
                        "not one event per line: {l}"
                    );
                }
            }
        }
        for needle in [
            "write failed, will retry",
            "chunk moved to the dead-letter directory",
            "agent.bogus",
            "input[0].bind",
            "output[0].type",
            "reload refused",
        ] {
            assert!(err.contains(needle), "{format}: {needle}: {err}");
        }
    }
}

#[test]
fn firehose_billed_bytes_are_on_the_metrics_endpoint() {
    common::aws::aws_env();
    let moto = common::aws::MotoServer::start();
    let region = "ap-northeast-1";
    common::aws::py_script(
        "firehose_util.py",
        &["create", &moto.endpoint(), "fh-out", "action-logs", region],
    );
    let cfg = format!(
        r#"[agent.api]
bind = "127.0.0.1:{{api}}"

[[input]]
type = "forward"
bind = "127.0.0.1:{{port}}"

[[output]]
id = "fh"
match = "**"
type = "firehose"
delivery_stream = "action-logs"
region = "{region}"
endpoint = "{}"
[output.buffer]
type = "file"
flush_interval = "200ms"
retry_wait = "100ms"
"#,
        moto.endpoint()
    );
    let (a, api) = start_agent(&cfg, &[]);
    let n = 50;
    send_acked(a.port, "app.web", 0, n, 25);
    let fh: &[(&str, &str)] = &[("id", "fh"), ("type", "firehose")];
    assert!(
        wait_until(Duration::from_secs(30), || scrape(api)
            .value("fuwa_firehose_records_total", fh)
            == Some(n as f64)),
        "{}",
        a.stderr()
    );
    let s = scrape(api);
    // one small record per event (no aggregation): each billed as 5 KB
    assert_eq!(
        s.must("fuwa_firehose_billed_bytes_total", fh),
        (n * 5 * 1024) as f64
    );
    let payload = s.must("fuwa_firehose_payload_bytes_total", fh);
    assert!(
        payload > (n * 40) as f64 && payload < (n * 200) as f64,
        "{payload}"
    );
    assert!(s.must("fuwa_firehose_calls_total", fh) >= 1.0);
    assert_eq!(s.must("fuwa_firehose_failed_records_total", fh), 0.0);
    assert_eq!(s.must("fuwa_output_proc_records_total", fh), n as f64);
    assert_eq!(
        s.families
            .get("fuwa_firehose_billed_bytes")
            .and_then(|t| t.as_str()),
        Some("counter")
    );
    let (_, st) = get_json(api, "/api/status");
    assert_eq!(
        st["outputs"][0]["plugin"]["fuwa_firehose_billed_bytes_total"],
        (n * 5 * 1024) as f64
    );
}
