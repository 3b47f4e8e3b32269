//! load_str's messages: every problem, with its line and dotted key.

use super::*;

fn errs(src: &str) -> Vec<String> {
    match load_str(src, "f.toml", None) {
        Ok(_) => vec![],
        Err(e) => e.lines,
    }
}

#[test]
fn default_config_is_valid() {
    let c = load_str(DEFAULT_CONFIG, "default", None).unwrap();
    assert_eq!(c.inputs.len(), 1);
    assert_eq!(c.outputs[0].id, "stdout.0");
}

#[test]
fn every_problem_is_reported_with_its_line() {
    let src = r#"[agent]
timezone = "Mars/Base"

[[input]]
type = "forward"
bind = "127.0.0.1:24224"
bogus = 1

[[output]]
type = "file"
match = "{a,b"
path = "/tmp/x"
[output.buffer]
flush_interval = "soon"

[[output]]
type = "nope"
"#;
    let e = errs(src);
    assert_eq!(e.len(), 5, "{e:#?}");
    assert!(e[0].starts_with("f.toml:2: agent.timezone:"), "{e:#?}");
    assert!(
        e[1].starts_with("f.toml:7: input[0].bogus: unknown field"),
        "{e:#?}"
    );
    assert!(e[2].starts_with("f.toml:11: output[0].match:"), "{e:#?}");
    assert!(
        e[3].starts_with("f.toml:14: output[0].buffer.flush_interval:"),
        "{e:#?}"
    );
    assert!(
        e[4].starts_with("f.toml:17: output[1].type: unknown output type `nope`"),
        "{e:#?}"
    );
}

#[test]
fn agent_api_defaults_and_mistakes() {
    let tail = "[[input]]\ntype = \"forward\"\n[[output]]\ntype = \"null\"\n";
    let c = load_str(
        &format!("[agent.api]\nbind = \"127.0.0.1:24220\"\n{tail}"),
        "f.toml",
        None,
    )
    .unwrap();
    let api = c.agent.api.unwrap();
    assert_eq!(api.bind.to_string(), "127.0.0.1:24220");
    assert_eq!(api.health_period.0, Duration::from_secs(60));
    assert_eq!(api.health_max_dead_letters, 0);
    assert_eq!(api.health_max_failed_writes, 5);
    assert!(load_str(tail, "f.toml", None).unwrap().agent.api.is_none());
    let e = errs(&format!(
        "[agent.api]\nbind = \"127.0.0.1:24220\"\nhealth_period = \"often\"\n{tail}"
    ));
    assert!(
        e[0].starts_with("f.toml:3: agent.api.health_period:"),
        "{e:#?}"
    );
    let e = errs(&format!("[agent.api]\n{tail}"));
    assert!(
        e[0].contains("agent.api") && e[0].contains("bind"),
        "{e:#?}"
    );
}

#[test]
fn wrong_types_and_duplicates() {
    let src = r#"[[input]]
type = "forward"
bind = 24224

[[output]]
id = "x"
type = "null"
[[output]]
id = "x"
type = "null"
"#;
    let e = errs(src);
    assert!(
        e.iter().any(|l| l.starts_with("f.toml:3: input[0].bind:")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|l| l.starts_with("f.toml:9: output[1].id: id `x` is used twice")),
        "{e:#?}"
    );
}

#[test]
fn ids_are_unique_among_their_kind() {
    // a relay: forward in, forward out, both `forward.0` by default
    let src = r#"
[[input]]
type = "forward"
bind = "127.0.0.1:24224"

[[output]]
type = "forward"
servers = [{ host = "127.0.0.1", port = 24225 }]
"#;
    assert_eq!(errs(src), Vec::<String>::new());
    let dup = "[[output]]\nid = \"x\"\ntype = \"null\"\n[[output]]\nid = \"x\"\ntype = \"null\"\n";
    assert!(errs(dup).iter().any(|l| l.contains("id `x` is used twice")));
}

#[test]
fn syntax_errors_and_unknown_sections() {
    let e = errs("[[input]]\ntype = \"forward\"\n[[output]]\ntype = \"null\"\n[agnet]\nx = 1\n");
    assert!(
        e.iter()
            .any(|l| l.starts_with("f.toml:5: agnet: unknown section")),
        "{e:#?}"
    );
    let e = errs("[[input]\ntype=");
    assert!(
        e.iter().any(|l| l.starts_with("f.toml:1: syntax:")),
        "{e:#?}"
    );
}

#[test]
fn every_wrong_key_of_a_section_is_reported_not_only_the_first() {
    // serde stops at the first bad key; every one is still reported, and a
    // required key that was wrong is not reported again as missing
    let src = r#"[agent]
log_format = "xml"
shutdown_timeout = "soon"

[[input]]
type = "http"
bind = "nowhere"
max_connections = 0
header_timeout = "0s"
colour = "blue"

[[output]]
type = "forward"
servers = 3
connect_timeout = 0
[output.buffer]
flush_interval = "never"
chunk_limit_size = "huge"
"#;
    let e = errs(src);
    for want in [
        "f.toml:2: agent.log_format:",
        "f.toml:3: agent.shutdown_timeout:",
        "f.toml:7: input[0].bind: `nowhere` is not an address",
        "f.toml:8: input[0].max_connections:",
        "f.toml:9: input[0].header_timeout: must be more than 0",
        "f.toml:10: input[0].colour: unknown field",
        "f.toml:14: output[0].servers:",
        "f.toml:15: output[0].connect_timeout: must be more than 0",
        "f.toml:17: output[0].buffer.flush_interval:",
        "f.toml:18: output[0].buffer.chunk_limit_size:",
    ] {
        assert!(
            e.iter().any(|l| l.starts_with(want)),
            "no `{want}` in {e:#?}"
        );
    }
    assert!(!e.iter().any(|l| l.contains("missing field")), "{e:#?}");
    assert_eq!(e.len(), 10, "{e:#?}");
}
