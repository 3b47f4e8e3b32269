//! The tail input through the real binary: rotation (rename/create, several
//! times, with kill -9 in the middle), copytruncate, delete and recreate,
//! files appearing later, many files, inode reuse, long lines, partial last
//! lines, CRLF, multiline and unparsable lines.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

fn config(input: &str, buffer: &str) -> String {
    format!(
        r#"[agent]
shutdown_timeout = "3s"

[[input]]
type = "forward"
bind = "127.0.0.1:{{port}}"

[[input]]
type = "tail"
refresh_interval = "200ms"
{input}

[[output]]
match = "**"
type = "file"
path = "{{dir}}/out/${{tag}}.log"
tag_key = "tag"
[output.buffer]
flush_interval = "100ms"
{buffer}
"#
    )
}

fn start(input: &str, buffer: &str) -> Agent {
    let a = Agent::start(&config(input, buffer));
    assert!(
        a.wait_stderr("tail input started", Duration::from_secs(10)),
        "{}",
        a.stderr()
    );
    a
}

fn append(p: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn messages(a: &Agent) -> Vec<serde_json::Value> {
    read_json_lines(&a.path("out"))
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

fn wait_count(a: &Agent, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = messages(a);
        if m.len() >= n || Instant::now() > deadline {
            std::thread::sleep(Duration::from_millis(300));
            return messages(a);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ids(v: &[serde_json::Value]) -> BTreeMap<u64, usize> {
    let mut m = BTreeMap::new();
    for j in v {
        *m.entry(
            j["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("garbled line: {j}")),
        )
        .or_insert(0) += 1;
    }
    m
}

#[test]
fn rotation_by_rename_with_kill_9_loses_nothing_and_garbles_nothing() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("app.log");
    append(&log, "");
    let input = format!(
        "path = \"{}/app.log\"\ntag = \"app\"\nformat = \"json\"",
        logs.path().display()
    );
    let mut a = start(&input, "");
    let mut id = 0u64;
    for round in 0..6 {
        for _ in 0..300 {
            append(
                &log,
                &format!("{{\"id\":{id},\"pad\":\"{}\"}}\n", "p".repeat(100)),
            );
            id += 1;
        }
        // rotate: rename, then create the next file, while writing on
        std::fs::rename(&log, logs.path().join(format!("app.log.{round}"))).unwrap();
        for _ in 0..50 {
            append(
                &logs.path().join(format!("app.log.{round}")),
                &format!("{{\"id\":{id},\"late\":true}}\n"),
            );
            id += 1;
        }
        append(&log, "");
        if round == 3 {
            // killed right after the rename, with lines of the old file unread
            a.kill9();
            for _ in 0..50 {
                append(
                    &logs.path().join(format!("app.log.{round}")),
                    &format!("{{\"id\":{id},\"while_dead\":true}}\n"),
                );
                id += 1;
            }
            a.restart();
        } else if round == 2 || round == 4 {
            std::thread::sleep(Duration::from_millis(400));
            a.kill9();
            a.restart();
        } else {
            // rotations far apart compared with the agent's rescans, as in
            // life (a file created and renamed away between two rescans,
            // under a name outside the glob, cannot be seen by anyone)
            std::thread::sleep(Duration::from_millis(400));
        }
    }
    for _ in 0..100 {
        append(&log, &format!("{{\"id\":{id}}}\n"));
        id += 1;
    }
    // every id, not as many lines: duplicates after a kill count too
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut got = wait_count(&a, id as usize);
    while ids(&got).len() < id as usize && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        got = messages(&a);
    }
    let m = ids(&got);
    let missing: Vec<u64> = (0..id).filter(|i| !m.contains_key(i)).collect();
    eprintln!(
        "rotation: {} lines written, {} delivered, {} missing, {} duplicates",
        id,
        m.len(),
        missing.len(),
        m.values().map(|c| c - 1).sum::<usize>()
    );
    let dups: usize = m.values().map(|c| c - 1).sum();
    assert!(
        dups <= 2 * 1000,
        "duplicates bounded by one batch per kill: {dups}"
    );
    assert!(
        missing.iter().all(|i| got.is_empty() || *i < id),
        "ids in range"
    );
    if !missing.is_empty() {
        if let Ok(dir) = std::env::var("FUWA_TEST_KEEP") {
            let _ = std::process::Command::new("cp")
                .arg("-r")
                .arg(a.dir.path())
                .arg(&dir)
                .status();
            let _ = std::process::Command::new("cp")
                .arg("-r")
                .arg(logs.path())
                .arg(format!("{dir}-logs"))
                .status();
        }
    }
    assert!(
        missing.is_empty(),
        "lost lines: {:?}\n{}",
        &missing[..missing.len().min(20)],
        a.stderr()
    );
    assert!(a.stop().success());
}

#[test]
fn copytruncate_restarts_at_zero() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("c.log");
    append(&log, "");
    let a = start(
        &format!(
            "path = \"{}\"\ntag = \"c\"\nformat = \"json\"",
            log.display()
        ),
        "type = \"memory\"",
    );
    for i in 0..100 {
        append(&log, &format!("{{\"id\":{i}}}\n"));
    }
    wait_count(&a, 100);
    // copytruncate: copy away, then truncate in place
    std::fs::copy(&log, logs.path().join("c.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    for i in 100..150 {
        append(&log, &format!("{{\"id\":{i}}}\n"));
    }
    let got = wait_count(&a, 150);
    let m = ids(&got);
    assert_eq!(m.len(), 150, "{}", a.stderr());
    assert!(a.stderr().contains("truncated"), "{}", a.stderr());
}

#[test]
fn delete_and_recreate_and_files_appearing_later() {
    let logs = tempfile::tempdir().unwrap();
    let a = start(
        &format!(
            "path = \"{}/*.log\"\ntag = \"t.${{filename}}\"\nformat = \"json\"",
            logs.path().display()
        ),
        "type = \"memory\"",
    );
    let x = logs.path().join("x.log");
    for i in 0..20 {
        append(&x, &format!("{{\"id\":{i}}}\n"));
    }
    wait_count(&a, 20);
    std::fs::remove_file(&x).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for i in 20..40 {
        append(&x, &format!("{{\"id\":{i}}}\n"));
    }
    // and a file that did not exist at start, in another name
    for i in 40..60 {
        append(&logs.path().join("y.log"), &format!("{{\"id\":{i}}}\n"));
    }
    // excluded by extension
    append(&logs.path().join("z.txt"), "{\"id\":999}\n");
    let got = wait_count(&a, 60);
    let m = ids(&got);
    assert_eq!(m.len(), 60, "{}", a.stderr());
    assert!(!m.contains_key(&999));
    let tags: std::collections::HashSet<&str> =
        got.iter().map(|j| j["tag"].as_str().unwrap()).collect();
    assert_eq!(tags, ["t.x.log", "t.y.log"].into_iter().collect());
}

#[test]
fn a_glob_matching_many_files_with_exclusions() {
    let logs = tempfile::tempdir().unwrap();
    for d in 0..5 {
        std::fs::create_dir_all(logs.path().join(format!("svc{d}"))).unwrap();
        for f in 0..10 {
            let p = logs.path().join(format!("svc{d}/f{f}.log"));
            for i in 0..10 {
                append(&p, &format!("{{\"id\":{}}}\n", d * 1000 + f * 10 + i));
            }
            append(
                &logs.path().join(format!("svc{d}/f{f}.log.gz")),
                "not text\n",
            );
        }
    }
    let input = format!(
        "path = [\"{}/**/*.log*\"]\nexclude_path = [\"*.gz\"]\ntag = \"many\"\nformat = \"json\"\nread_from_head = true",
        logs.path().display()
    );
    let a = start(&input, "type = \"memory\"");
    let got = wait_count(&a, 500);
    assert_eq!(ids(&got).len(), 500, "{}", a.stderr());
    assert_eq!(got.len(), 500);
}

#[test]
fn inode_reuse_is_detected_by_the_fingerprint() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("r.log");
    for i in 0..50 {
        append(&log, &format!("{{\"id\":{i},\"first\":\"aaaaaaaaaa\"}}\n"));
    }
    let input = format!(
        "path = \"{}\"\ntag = \"r\"\nformat = \"json\"\nread_from_head = true",
        log.display()
    );
    let mut a = start(&input, "");
    wait_count(&a, 50);
    assert!(a.stop().success());
    let ino_before = std::fs::metadata(&log)
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    std::fs::remove_file(&log).unwrap();
    for i in 1000..1100 {
        append(&log, &format!("{{\"id\":{i},\"second\":true}}\n"));
    }
    let ino_after = std::fs::metadata(&log)
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    eprintln!(
        "inode before {ino_before}, after {ino_after} (reused: {})",
        ino_before == ino_after
    );
    a.restart();
    let got = wait_count(&a, 150);
    let m = ids(&got);
    assert_eq!(
        m.len(),
        150,
        "the new file is read from its start: {}",
        a.stderr()
    );
}

#[test]
fn long_lines_partial_lines_crlf_multiline_and_parse_errors() {
    let logs = tempfile::tempdir().unwrap();
    let a_log = logs.path().join("a.log");
    let m_log = logs.path().join("m.log");
    append(&a_log, "");
    append(&m_log, "");
    let input = format!(
        r#"path = "{}"
tag = "plain"
format = "json"
max_line_size = "64"
flush_partial_after = "300ms"
parse_error_tag = "bad"

[[input]]
type = "tail"
path = "{}"
tag = "multi"
format = "regex"
expression = '^(?P<day>\d{{4}}-\d\d-\d\d) (?P<msg>[\s\S]*)$'
multiline_start = '^\d{{4}}-\d\d-\d\d'
multiline_flush_interval = "300ms"
"#,
        a_log.display(),
        m_log.display()
    );
    let a = start(&input, "type = \"memory\"");
    append(&a_log, "{\"id\":1}\r\n");
    append(
        &a_log,
        &format!("{{\"id\":2,\"long\":\"{}\"}}\n", "L".repeat(500)),
    );
    append(&a_log, "not json at all\n");
    append(&a_log, "{\"id\":3}\n{\"id\":4,\"partial\":tr");
    std::thread::sleep(Duration::from_millis(100));
    append(&a_log, "ue}");
    append(
        &m_log,
        "2024-01-01 first\n  at a.b(c.java:1)\n  at d.e(f.java:2)\n2024-01-02 second\n",
    );
    let got = wait_count(&a, 7);
    let by_tag = |t: &str| {
        got.iter()
            .filter(|j| j["tag"] == t)
            .cloned()
            .collect::<Vec<_>>()
    };
    let plain = by_tag("plain");
    let ids: Vec<u64> = plain.iter().filter_map(|j| j["id"].as_u64()).collect();
    assert_eq!(ids, vec![1, 3, 4], "{got:?}\n{}", a.stderr());
    assert_eq!(
        plain.iter().find(|j| j["id"] == 4).unwrap()["partial"],
        true,
        "the partial last line is emitted after flush_partial_after"
    );
    let bad = by_tag("bad");
    assert_eq!(
        bad.len(),
        2,
        "the truncated long line and the non-JSON line are kept, not dropped: {got:?}"
    );
    assert!(bad.iter().any(|j| j["message"] == "not json at all"
        && j["_parse_error"].as_str().unwrap().contains("invalid JSON")));
    assert!(bad
        .iter()
        .any(|j| j["message"].as_str().unwrap().len() == 64));
    let multi = by_tag("multi");
    assert_eq!(multi.len(), 2, "{got:?}");
    assert_eq!(
        multi[0]["msg"],
        "first\n  at a.b(c.java:1)\n  at d.e(f.java:2)"
    );
    assert_eq!(multi[1]["msg"], "second");
    assert!(
        a.stderr().contains("truncated_long_lines=1"),
        "{}",
        a.stderr()
    );
    // the warning says where the bad line is: "not json at all" begins
    // after the 10-byte CRLF line and the 519-byte long one
    assert!(
        a.stderr().contains("line at byte offset 529: invalid JSON"),
        "{}",
        a.stderr()
    );
}

#[test]
fn positions_survive_restarts_without_rereading() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("p.log");
    append(&log, "");
    let mut a = start(
        &format!(
            "path = \"{}\"\ntag = \"p\"\nformat = \"json\"",
            log.display()
        ),
        "",
    );
    for i in 0..100 {
        append(&log, &format!("{{\"id\":{i}}}\n"));
    }
    wait_count(&a, 100);
    assert!(a.stop().success());
    for i in 100..150 {
        append(&log, &format!("{{\"id\":{i}}}\n"));
    }
    a.restart();
    let got = wait_count(&a, 150);
    let m = ids(&got);
    assert_eq!(m.len(), 150);
    assert!(
        m.values().all(|c| *c == 1),
        "no duplicates after a clean restart"
    );
    assert!(a.path("data/tail/tail.1.json").exists());
}

#[test]
fn inotify_finds_new_files_without_waiting_for_a_rescan() {
    let logs = tempfile::tempdir().unwrap();
    let input = format!(
        "path = \"{}/*.log\"\ntag = \"n\"\nformat = \"json\"",
        logs.path().display()
    );
    // refresh_interval is 200ms in these tests; an hour for this one
    let cfg = config(&input, "type = \"memory\"")
        .replace("refresh_interval = \"200ms\"", "refresh_interval = \"1h\"");
    let a = Agent::start(&cfg);
    assert!(a.wait_stderr("tail input started", Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    append(&logs.path().join("fresh.log"), "{\"id\":1}\n{\"id\":2}\n");
    let got = wait_count(&a, 2);
    assert_eq!(ids(&got).len(), 2, "found through inotify: {}", a.stderr());
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn header_lines_and_the_read_rate_limit() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("data.csv");
    let mut body = String::from("id,name\n");
    for i in 0..3000 {
        body.push_str(&format!("{i},{}\n", "n".repeat(90)));
    }
    std::fs::write(&log, &body).unwrap(); // ~300 KB
    let input = format!(
        "path = \"{}\"\ntag = \"csv\"\nformat = \"csv\"\nkeys = [\"id\", \"name\"]\ntypes = {{ id = \"integer\" }}\nread_from_head = true\nskip_header_lines = 1\nread_bytes_limit_per_second = \"100KiB\"",
        log.display()
    );
    let t = Instant::now();
    let a = start(&input, "type = \"memory\"");
    let got = wait_count(&a, 3000);
    let took = t.elapsed();
    assert_eq!(got.len(), 3000, "the header line is skipped");
    assert!(got.iter().all(|j| j["id"].is_u64()));
    assert!(
        took >= Duration::from_secs(2),
        "300 KB at 100 KiB/s takes about 3 s, took {took:?}"
    );
}
