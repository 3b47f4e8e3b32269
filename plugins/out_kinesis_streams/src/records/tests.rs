use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use fuwa_api::event::write_entry;
use fuwa_api::{Chunk, EventTime};
use fuwa_render::{JsonLines, TimeFormat};
use rmpv::Value as V;

use super::*;
use crate::agg::MAGIC;
use crate::key::KeyTemplate;

fn enc(v: &V) -> Vec<u8> {
    let mut b = Vec::new();
    rmpv::encode::write_value(&mut b, v).unwrap();
    b
}

fn chunk(records: &[V]) -> Chunk {
    let mut seg = Vec::new();
    for r in records {
        write_entry(&mut seg, EventTime::new(1_717_162_200, 5), &enc(r));
    }
    Chunk {
        id: "c1".into(),
        tag: Arc::from("app.api"),
        key: Arc::from(""),
        segments: vec![Bytes::from(seg)],
        records: records.len() as u32,
        bytes: 0,
        created: SystemTime::now(),
    }
}

fn ev(user: &str, msg: &str) -> V {
    V::Map(vec![
        (V::from("user"), V::from(user)),
        (V::from("msg"), V::from(msg)),
    ])
}

fn json(key: Option<&str>, aggregation: bool) -> Renderer {
    Renderer {
        format: Format::Json(JsonLines {
            tag_key: None,
            time_key: None,
            time_format: TimeFormat::Rfc3339,
        }),
        append_newline: true,
        key: key.map(|k| KeyTemplate::parse(k, "web-1").unwrap()),
        explicit_hash_key: None,
        aggregation,
    }
}

#[test]
fn one_json_line_per_event_with_the_field_key() {
    let r = json(Some("${record.user}"), false).render(&chunk(&[ev("a", "1"), ev("b", "2")]));
    assert_eq!(r.records.len(), 2);
    assert_eq!(&r.records[0].data[..], b"{\"user\":\"a\",\"msg\":\"1\"}\n");
    assert_eq!(r.records[0].key, "a");
    assert_eq!(r.records[1].key, "b");
    let mut nl = json(None, false);
    nl.append_newline = false;
    let r = nl.render(&chunk(&[ev("a", "1")]));
    assert_eq!(&r.records[0].data[..], b"{\"user\":\"a\",\"msg\":\"1\"}");
    assert!(r.records[0].key.parse::<f64>().is_ok(), "random key");
}

#[test]
fn msgpack_injects_tag_and_time_first() {
    let r = Renderer {
        format: Format::Msgpack {
            tag_key: Some("tag".into()),
            time_key: Some("user".into()),
            time_format: TimeFormat::Unix,
        },
        append_newline: false,
        key: None,
        explicit_hash_key: None,
        aggregation: false,
    }
    .render(&chunk(&[ev("a", "1")]));
    let v = rmpv::decode::read_value(&mut &r.records[0].data[..]).unwrap();
    assert_eq!(
        v,
        V::Map(vec![
            (V::from("tag"), V::from("app.api")),
            (V::from("user"), V::from(1_717_162_200i64)),
            (V::from("msg"), V::from("1")),
        ])
    );
}

#[test]
fn log_key_sends_the_raw_value() {
    let mut r = json(None, false);
    r.format = Format::LogKey("log".into());
    let recs = [
        V::Map(vec![(V::from("log"), V::from("GET / 200"))]),
        V::Map(vec![(
            V::from("log"),
            V::Map(vec![(V::from("a"), V::Array(vec![V::from(1), V::Nil]))]),
        )]),
        V::Map(vec![(V::from("log"), V::from(7))]),
        V::Map(vec![(V::from("other"), V::from("x"))]),
    ];
    let out = r.render(&chunk(&recs));
    let datas: Vec<&[u8]> = out.records.iter().map(|r| &r.data[..]).collect();
    assert_eq!(
        datas,
        vec![&b"GET / 200\n"[..], &b"{\"a\":[1,null]}\n"[..], &b"7\n"[..]]
    );
    assert_eq!(out.bad, 1, "the event without `log` is counted");
}

#[test]
fn aggregation_groups_by_partition_key_within_the_record_limit() {
    let mut evs = Vec::new();
    for i in 0..40 {
        evs.push(ev(
            if i % 2 == 0 { "even" } else { "odd" },
            &"x".repeat(60_000),
        ));
    }
    evs.push(ev("alone", "y"));
    let out = json(Some("${record.user}"), true).render(&chunk(&evs));
    let mut per_key = std::collections::HashMap::<String, u32>::new();
    for r in &out.records {
        assert!(r.size() <= MAX_RECORD, "{}", r.size());
        *per_key.entry(r.key.clone()).or_default() += r.events;
        if r.events > 1 {
            assert_eq!(&r.data[..4], &MAGIC);
        }
    }
    assert_eq!(per_key["even"], 20);
    assert_eq!(per_key["odd"], 20);
    // 20 events of ~60 KB: two aggregates per key
    assert_eq!(out.records.iter().filter(|r| r.key == "even").count(), 2);
    let alone = out.records.iter().find(|r| r.key == "alone").unwrap();
    assert_eq!(alone.events, 1);
    assert_eq!(
        &alone.data[..],
        b"{\"user\":\"alone\",\"msg\":\"y\"}\n",
        "one event: a plain record"
    );
}

#[test]
fn aggregation_without_a_key_packs_in_order_under_random_keys() {
    let evs: Vec<V> = (0..100).map(|i| ev(&i.to_string(), "m")).collect();
    let out = json(None, true).render(&chunk(&evs));
    assert_eq!(out.records.len(), 1);
    assert_eq!(out.records[0].events, 100);
}

#[test]
fn oversize_events_are_set_aside_and_near_limit_ones_sent_plain() {
    let big = "z".repeat(MAX_RECORD);
    let near = "n".repeat(MAX_RECORD - 64);
    for agg in [false, true] {
        let out =
            json(Some("k"), agg).render(&chunk(&[ev("a", &big), ev("a", "small"), ev("a", &near)]));
        assert_eq!(out.oversize.len(), 1, "agg={agg}");
        let events: u32 = out.records.iter().map(|r| r.events).sum();
        assert_eq!(events, 2, "agg={agg}");
        assert!(out.records.iter().all(|r| r.size() <= MAX_RECORD));
    }
}

#[test]
fn calls_stay_within_the_limits() {
    let records: Vec<Rec> = (0..2000)
        .map(|i| Rec {
            data: Bytes::from(vec![b'x'; if i % 7 == 0 { MAX_RECORD - 10 } else { 300 }]),
            key: "0123456789".into(),
            events: 1,
        })
        .collect();
    let pending: Vec<usize> = (0..records.len()).collect();
    let calls = fuwa_aws::batch::pack(
        &records,
        &pending,
        Rec::size,
        MAX_CALL_RECORDS,
        MAX_CALL_BYTES,
    );
    let mut seen = Vec::new();
    for c in &calls {
        assert!(c.len() <= MAX_CALL_RECORDS);
        assert!(c.iter().map(|&i| records[i].size()).sum::<usize>() <= MAX_CALL_BYTES);
        seen.extend_from_slice(c);
    }
    assert_eq!(seen, pending);
}

#[test]
fn put_units_round_up_to_25kb() {
    assert_eq!(put_units(1), 1);
    assert_eq!(put_units(25 * 1024), 1);
    assert_eq!(put_units(25 * 1024 + 1), 2);
}

#[test]
fn aggregated_fallbacks_share_one_random_key() {
    let evs: Vec<V> = (0..50)
        .map(|i| V::Map(vec![(V::from("n"), V::from(i))]))
        .collect();
    let out = json(Some("${record.user}"), true).render(&chunk(&evs));
    assert_eq!(out.key_fallbacks, 50);
    assert_eq!(out.records.len(), 1);
    assert_eq!(out.records[0].events, 50);
}
