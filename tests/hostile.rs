//! Hostile or unlucky input that is not a network client's (those are in
//! hostile_forward.rs, hostile_http.rs and hostile_buffer.rs): config values
//! that used to panic, and tailed files whose derived tag cannot be a tag.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::*;

fn check(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    std::fs::write(&path, config).unwrap();
    let o = Command::new(bin())
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// `flush_interval = "1e20"` made `fuwa check` panic (exit 101, which
/// systemd restarts in a loop) and `message_length_limit = -5` answered
/// "data did not match any variant of untagged enum Raw". Both are exit 2
/// now, with a message saying what is expected, at the key's line.
#[test]
fn config_values_that_panicked_are_errors_naming_the_key() {
    let (code, out) = check(
        "[[input]]\ntype = \"forward\"\nbind = \"127.0.0.1:0\"\n[[output]]\ntype = \"null\"\nmatch = \"**\"\n[output.buffer]\nflush_interval = \"1e20\"\n",
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("f.toml:8: output[0].buffer.flush_interval:") && out.contains("100 years"),
        "{out}"
    );
    let (code, out) = check(
        "[[input]]\ntype = \"forward\"\nbind = \"127.0.0.1:0\"\nmessage_length_limit = -5\n[[output]]\ntype = \"null\"\nmatch = \"**\"\n",
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("f.toml:4: input[0].message_length_limit: -5 is negative")
            && out.contains("\"8MiB\""),
        "{out}"
    );
    assert!(!out.contains("untagged"), "{out}");
    for bad in [
        "retry_wait = 1e300",
        "retry_timeout = \"inf\"",
        "chunk_limit_size = \"1e30\"",
    ] {
        let (code, out) = check(&format!(
            "[[input]]\ntype = \"forward\"\nbind = \"127.0.0.1:0\"\n[[output]]\ntype = \"null\"\nmatch = \"**\"\n[output.buffer]\n{bad}\n"
        ));
        assert_eq!(code, 2, "{bad}: {out}");
    }
}

/// A tail tag derived from a path (`${path}`, `*`) can be longer than any
/// tag should be, or hold a control character (a file name may contain a
/// newline). Such a file is not read, with one warning naming it; the other
/// files are read as usual; tail's position files are the agent's only
/// (0600 in a 0700 directory).
#[test]
fn tail_does_not_read_a_file_whose_derived_tag_is_refused() {
    let logs = tempfile::tempdir().unwrap();
    let deep = logs.path().join("x".repeat(60)).join("y".repeat(60));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("app.log"), "{\"n\":1}\n").unwrap();
    std::fs::write(logs.path().join("ok.log"), "{\"n\":2}\n").unwrap();
    std::fs::write(logs.path().join("bad\nname.log"), "{\"n\":3}\n").unwrap();
    let cfg = format!(
        r#"[agent]
shutdown_timeout = "3s"
[[input]]
type = "forward"
bind = "127.0.0.1:{{port}}"
[[input]]
type = "tail"
path = ["{dir}/*.log", "{dir}/**/*.log"]
tag = "t.*"
read_from_head = true
format = "json"
refresh_interval = "200ms"
tag_length_limit = 100
[[output]]
match = "**"
type = "file"
path = "{{dir}}/out/all.log"
tag_key = "tag"
[output.buffer]
flush_interval = "100ms"
"#,
        dir = logs.path().display()
    );
    let a = Agent::start(&cfg);
    // both refusals are decided when the files are found, before ok.log's
    // line reaches the output
    for what in [
        "over tag_length_limit (100 bytes)",
        "control character (0x0a)",
    ] {
        assert!(
            a.wait_stderr(what, Duration::from_secs(20)),
            "{}",
            a.stderr()
        );
    }
    let lines = wait_lines(&a.path("out"), 1, Duration::from_secs(20));
    let ns: Vec<_> = lines.iter().map(|(_, v)| v["n"].clone()).collect();
    assert_eq!(ns, vec![serde_json::json!(2)], "{}", a.stderr());
    // warned once per file, not at every refresh
    assert_eq!(
        a.stderr().matches("over tag_length_limit").count(),
        1,
        "{}",
        a.stderr()
    );
    let tail_dir = a.path("data/tail");
    let pos = std::fs::read_dir(&tail_dir)
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().map(|x| x == "json").unwrap_or(false))
        .expect("a position file");
    assert_eq!(pos.metadata().unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(&tail_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
}
