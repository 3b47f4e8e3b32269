//! The filter chain through the real binary: forward in, user_agent +
//! referrer + types + record + grep, file out with a path that uses a field
//! a filter set (how outputs partition by filter results).

mod common;

use std::time::Duration;

use common::*;
use rmpv::Value as V;

const CONFIG: &str = r#"[agent]
hostname = "web-7"

[[input]]
type = "forward"
bind = "127.0.0.1:{port}"

[[filter]]
match = "action_logs"
type = "user_agent"
key = "user_agent"
target = "ua"

[[filter]]
match = "action_logs"
type = "referrer"
key = "referrer"
target = "ref"
own_hosts = ["note.com", "*.note.com"]

[[filter]]
match = "action_logs"
type = "types"
fields = { user_id = "integer", price = "float", paid = "bool" }

[[filter]]
match = "**"
type = "grep"
exclude = [{ key = "path", pattern = "^/health" }]

[[filter]]
match = "action_logs"
type = "record"
set = { content_type = "${tag}", host = "${hostname}" }
remove = ["debug"]

[[output]]
match = "**"
type = "file"
path = "{dir}/out/content_type=${record.content_type}/events.log"
[output.buffer]
type = "memory"
flush_interval = "100ms"
"#;

fn event(fields: &[(&str, &str)]) -> V {
    V::Map(
        fields
            .iter()
            .map(|(k, v)| (V::from(*k), V::from(*v)))
            .collect(),
    )
}

#[test]
fn the_chain_enriches_routes_and_partitions() {
    let a = Agent::start(CONFIG);
    let mut s = a.connect();
    let entries = V::Array(vec![
        V::Array(vec![
            V::from(1_700_000_000u32),
            event(&[
                ("user_agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"),
                ("referrer", "https://www.google.co.jp/search?q=%E3%83%86%E3%82%B9%E3%83%88&utm_source=x"),
                ("user_id", "42"),
                ("price", "9.5"),
                ("paid", "yes"),
                ("path", "/n/abc"),
                ("debug", "remove me"),
            ]),
        ]),
        V::Array(vec![V::from(1_700_000_001u32), event(&[("path", "/healthz"), ("user_agent", "curl/8")])]),
        V::Array(vec![
            V::from(1_700_000_002u32),
            event(&[("user_agent", ""), ("referrer", "https://note.com/x"), ("user_id", "not a number"), ("path", "/n/def")]),
        ]),
    ]);
    let opt = V::Map(vec![(V::from("chunk"), V::from("c"))]);
    send(
        &mut s,
        &mp(&V::Array(vec![
            V::from("action_logs"),
            entries,
            opt.clone(),
        ])),
    );
    assert_eq!(
        read_mp(&mut s),
        V::Map(vec![(V::from("ack"), V::from("c"))])
    );
    // another tag: only grep applies
    send(
        &mut s,
        &mp(&V::Array(vec![
            V::from("page_views"),
            V::from(1_700_000_003u32),
            event(&[("path", "/p"), ("content_type", "page_views")]),
            opt,
        ])),
    );
    assert_eq!(
        read_mp(&mut s),
        V::Map(vec![(V::from("ack"), V::from("c"))])
    );

    wait_lines(&a.path("out"), 3, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let lines = read_json_lines(&a.path("out"));
    assert_eq!(lines.len(), 3, "the health check was dropped: {lines:?}");
    let action: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|(p, _)| p.to_string_lossy().contains("content_type=action_logs/"))
        .map(|(_, j)| j)
        .collect();
    assert_eq!(action.len(), 2);
    let first = action.iter().find(|j| j["path"] == "/n/abc").unwrap();
    assert_eq!(first["ua"]["name"], "Safari");
    assert_eq!(first["ua"]["category"], "smartphone");
    assert_eq!(first["ua"]["os"], "iPhone");
    assert_eq!(first["ref"]["medium"], "search");
    assert_eq!(first["ref"]["source"], "Google");
    assert_eq!(first["ref"]["term"], "テスト");
    assert_eq!(first["ref"]["query"]["utm_source"], "x");
    assert_eq!(first["user_id"], 42);
    assert_eq!(first["price"], 9.5);
    assert_eq!(first["paid"], true);
    assert_eq!(first["content_type"], "action_logs");
    assert_eq!(first["host"], "web-7");
    assert!(first.get("debug").is_none());
    let second = action.iter().find(|j| j["path"] == "/n/def").unwrap();
    assert_eq!(second["ua"]["name"], "UNKNOWN");
    assert_eq!(second["ref"]["medium"], "internal");
    assert_eq!(
        second["user_id"], "not a number",
        "a value that does not convert is kept"
    );
    let pv: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|(p, _)| p.to_string_lossy().contains("content_type=page_views/"))
        .map(|(_, j)| j)
        .collect();
    assert_eq!(pv.len(), 1);
    assert!(
        pv[0].get("ua").is_none(),
        "filters matching other tags left it alone"
    );
}
