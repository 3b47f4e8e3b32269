//! Unit tests of `decode.rs`.

use super::*;
use proptest::prelude::*;

fn utc() -> Tz {
    fuwa_render::parse_timezone("UTC").unwrap()
}

fn plain() -> Decoder {
    Decoder::new(None, None, false, utc()).unwrap()
}

fn info() -> RequestInfo<'static> {
    RequestInfo {
        time: EventTime::new(1_700_000_000, 5),
        remote_addr: None,
    }
}

/// Decodes and returns (time, record as JSON) of every entry.
fn run(
    d: &Decoder,
    f: Format,
    body: &[u8],
    info: &RequestInfo<'_>,
) -> Result<Vec<(EventTime, serde_json::Value)>, BodyError> {
    let mut out = Vec::new();
    let n = d.decode(f, body, info, &mut out)?;
    let got: Vec<_> = fuwa_api::event::entries(&out)
        .map(|e| {
            let e = e.expect("entries are valid");
            let v = rmpv::decode::read_value(&mut &e.record[..]).unwrap();
            (e.time, to_json(&v))
        })
        .collect();
    assert_eq!(got.len(), n as usize);
    Ok(got)
}

fn to_json(v: &rmpv::Value) -> serde_json::Value {
    use rmpv::Value as V;
    use serde_json::Value as J;
    match v {
        V::Nil => J::Null,
        V::Boolean(b) => J::Bool(*b),
        V::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => J::from(u),
            (None, Some(i)) => J::from(i),
            _ => J::Null,
        },
        V::F64(f) => J::from(*f),
        V::F32(f) => J::from(*f as f64),
        V::String(s) => J::String(s.as_str().unwrap_or_default().to_string()),
        V::Array(a) => J::Array(a.iter().map(to_json).collect()),
        V::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), to_json(v)))
                .collect(),
        ),
        other => J::String(format!("{other:?}")),
    }
}

#[test]
fn json_shapes() {
    let d = plain();
    let one = run(&d, Format::Json, br#"{"a":1}"#, &info()).unwrap();
    assert_eq!(one, vec![(info().time, serde_json::json!({"a":1}))]);
    let arr = run(&d, Format::Json, br#"[{"a":"]}"},{"b":"\"{"}]"#, &info()).unwrap();
    assert_eq!(arr[1].1, serde_json::json!({"b":"\"{"}));
    let nd = run(
        &d,
        Format::Json,
        b"{\"a\":1}\n\n{\"a\":2}\r\n[{\"a\":3}]",
        &info(),
    )
    .unwrap();
    assert_eq!(nd.len(), 3);
    assert!(run(&d, Format::Json, b"[]", &info()).unwrap().is_empty());
    for bad in [
        &b""[..],
        b"  ",
        b"[",
        b"[{}",
        b"[{},]",
        b"[1]",
        b"{}x",
        b"{\"a\":}",
        b"{\"a\":\"",
        b"[{}{}]",
        b"nul",
    ] {
        assert!(
            matches!(
                d.decode(Format::Json, bad, &info(), &mut Vec::new()),
                Err(BodyError::Malformed(_))
            ),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn time_key_json_and_msgpack() {
    let d = Decoder::new(Some("ts".into()), None, false, utc()).unwrap();
    let got = run(
        &d,
        Format::Json,
        br#"[{"ts":1700000001.25,"a":1},{"a":2}]"#,
        &info(),
    )
    .unwrap();
    assert_eq!(got[0].0, EventTime::new(1_700_000_001, 250_000_000));
    assert_eq!(got[0].1, serde_json::json!({"a":1}));
    assert_eq!(got[1].0, info().time, "no time_key: the request's time");
    let mut b = Vec::new();
    msgpack::write_map_len(&mut b, 2);
    msgpack::write_str(&mut b, b"ts");
    b.extend_from_slice(&EventTime::new(1_600_000_000, 7).to_msgpack());
    msgpack::write_str(&mut b, b"a");
    b.push(0x01);
    let got = run(&d, Format::Msgpack, &b, &info()).unwrap();
    assert_eq!(
        got,
        vec![(EventTime::new(1_600_000_000, 7), serde_json::json!({"a":1}))]
    );
    let mut b = Vec::new();
    msgpack::write_map_len(&mut b, 1);
    msgpack::write_str(&mut b, b"ts");
    msgpack::write_str(&mut b, b"2020-01-01T00:00:00Z");
    assert_eq!(
        run(&d, Format::Msgpack, &b, &info()).unwrap()[0].0.secs,
        1_577_836_800
    );
    let keep = Decoder::new(Some("ts".into()), Some("unix_ms".into()), true, utc()).unwrap();
    let got = run(&keep, Format::Json, br#"{"ts":1700000000123}"#, &info()).unwrap();
    assert_eq!(got[0].0, EventTime::new(1_700_000_000, 123_000_000));
    assert_eq!(got[0].1, serde_json::json!({"ts":1700000000123u64}));
    assert!(d
        .decode(Format::Json, br#"{"ts":"soon"}"#, &info(), &mut Vec::new())
        .is_err());
}

#[test]
fn remote_addr_replaces_and_adds() {
    let d = plain();
    let i = RequestInfo {
        remote_addr: Some(("ip", "10.0.0.1")),
        ..info()
    };
    let got = run(&d, Format::Json, br#"[{"ip":"spoofed","a":1},{"b":2}]"#, &i).unwrap();
    assert_eq!(got[0].1, serde_json::json!({"a":1,"ip":"10.0.0.1"}));
    assert_eq!(got[1].1, serde_json::json!({"b":2,"ip":"10.0.0.1"}));
}

#[test]
fn form_and_percent_decoding() {
    let d = plain();
    let got = run(
        &d,
        Format::Form,
        b"time=1500000000&json=%7B%22a%22%3A+%22x+y%22%7D",
        &info(),
    )
    .unwrap();
    assert_eq!(
        got,
        vec![(
            EventTime::new(1_500_000_000, 0),
            serde_json::json!({"a":"x y"})
        )]
    );
    assert!(percent_decode(b"%4").is_err());
    assert_eq!(percent_decode(b"a%2Bb+c").unwrap(), b"a+b c");
    assert!(d
        .decode(Format::Form, b"json=1&msgpack=2", &info(), &mut Vec::new())
        .is_err());
}

#[test]
fn content_types() {
    use Format::*;
    for (ct, f) in [
        (Some(&b"application/json; charset=utf-8"[..]), Some(Json)),
        (Some(b"Text/Plain;charset=UTF-8"), Some(Json)),
        (Some(b"application/x-ndjson"), Some(Json)),
        (Some(b"application/vnd.api+json"), Some(Json)),
        (None, Some(Json)),
        (Some(b"application/msgpack"), Some(Msgpack)),
        (Some(b"application/x-www-form-urlencoded"), Some(Form)),
        (Some(b"text/xml"), None),
        (Some(b"multipart/form-data; boundary=x"), None),
    ] {
        assert_eq!(Format::from_content_type(ct), f, "{ct:?}");
    }
}

#[test]
fn gzip_limit() {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&[b' '; 10_000]).unwrap();
    let gz = e.finish().unwrap();
    assert_eq!(gunzip(&gz, 10_000).unwrap().len(), 10_000);
    assert_eq!(gunzip(&gz, 9_999), Err(BodyError::TooLarge(9_999)));
    assert!(matches!(gunzip(b"nope", 100), Err(BodyError::Malformed(_))));
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value as J;
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        any::<i64>().prop_map(J::from),
        any::<u64>().prop_map(J::from),
        // few digits: serde_json (without float_roundtrip) reads these exactly
        (-1_000_000_000i64..1_000_000_000).prop_map(|i| J::from(i as f64 / 1000.0)),
        "\\PC{0,12}".prop_map(J::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(J::Array),
            prop::collection::btree_map("\\PC{0,8}", inner, 0..6)
                .prop_map(|m| J::Object(m.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = serde_json::Value> {
    prop::collection::btree_map("\\PC{0,8}", json_value(), 0..8)
        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// arbitrary bytes never panic, and what is accepted is valid entries
    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256), kind in 0..3u8) {
        let d = Decoder::new(Some("t".into()), None, false, utc()).unwrap();
        let f = [Format::Json, Format::Msgpack, Format::Form][kind as usize];
        let mut out = Vec::new();
        if let Ok(n) = d.decode(f, &body, &info(), &mut out) {
            let all: Vec<_> = fuwa_api::event::entries(&out).collect();
            prop_assert_eq!(all.len(), n as usize);
            prop_assert!(all.iter().all(|e| e.is_ok()));
        } else {
            prop_assert!(out.is_empty(), "nothing kept on error");
        }
        let _ = gunzip(&body, 1024);
    }

    /// JSON-ish bytes (braces, quotes, escapes) never panic either
    #[test]
    fn jsonish_bytes_never_panic(body in "[\\[\\]{}\",:\\\\ a1\\n]{0,64}") {
        let _ = plain().decode(Format::Json, body.as_bytes(), &info(), &mut Vec::new());
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// valid objects round-trip, alone, in an array and as NDJSON
    #[test]
    fn json_objects_round_trip(objs in prop::collection::vec(json_object(), 1..5)) {
        let d = plain();
        let single = run(&d, Format::Json, serde_json::to_string(&objs[0]).unwrap().as_bytes(), &info()).unwrap();
        prop_assert_eq!(&single[0].1, &objs[0]);
        let arr = serde_json::to_string_pretty(&objs).unwrap();
        let got: Vec<_> = run(&d, Format::Json, arr.as_bytes(), &info()).unwrap().into_iter().map(|(_, v)| v).collect();
        prop_assert_eq!(&got, &objs);
        let nd: String = objs.iter().map(|o| serde_json::to_string(o).unwrap() + "\n").collect();
        let got: Vec<_> = run(&d, Format::Json, nd.as_bytes(), &info()).unwrap().into_iter().map(|(_, v)| v).collect();
        prop_assert_eq!(&got, &objs);
        // the same records as msgpack keep their bytes
        let mut mp = Vec::new();
        for o in &objs {
            crate::decode::tests::json_to_mp(&mut mp, o);
        }
        let got: Vec<_> = run(&d, Format::Msgpack, &mp, &info()).unwrap().into_iter().map(|(_, v)| v).collect();
        prop_assert_eq!(&got, &objs);
    }
}

/// One level of JSON nesting: an array, or an object with one key.
fn json_nest(depth: usize, kinds: &[bool], inner: &str) -> String {
    let mut open = String::new();
    let mut close = String::new();
    for i in 0..depth {
        if kinds[i % kinds.len()] {
            open.push('[');
            close.insert(0, ']');
        } else {
            open.push_str("{\"k\":");
            close.insert(0, '}');
        }
    }
    format!("{{\"a\":{open}{inner}{close}}}")
}

/// msgpack heads that declare far more than follows
fn huge_head() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![0xdd, 0xff, 0xff, 0xff, 0xff]),       // array32
        Just(vec![0xdf, 0xff, 0xff, 0xff, 0xff]),       // map32
        Just(vec![0xdb, 0xff, 0xff, 0xff, 0xff]),       // str32
        Just(vec![0xc6, 0xff, 0xff, 0xff, 0xff]),       // bin32
        Just(vec![0xc9, 0xff, 0xff, 0xff, 0xff, 0x00]), // ext32
        Just(vec![0xdc, 0xff, 0xff]),                   // array16
        Just(vec![0xde, 0xff, 0xff]),                   // map16
    ]
}

fn gz(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// JSON nested to any depth: up to the bound it is taken whole, past
    /// it a clear 400; in the body, in an array, as NDJSON, in a form and
    /// under time_key; cut anywhere it is refused, never a panic
    #[test]
    fn json_depth_is_bounded(
        depth in prop_oneof![0usize..140, 120usize..136, 1000usize..50_000],
        kinds in prop::collection::vec(any::<bool>(), 1..4),
        long in prop_oneof![Just(0usize), 1usize..100, 60_000usize..70_000],
        cut in any::<prop::sample::Index>(),
    ) {
        let d = Decoder::new(Some("t".into()), None, false, utc()).unwrap();
        let leaf = format!("\"{}\"", "x".repeat(long));
        let body = json_nest(depth, &kinds, &leaf);
        // the record itself counts one level
        let ok = depth < JSON_MAX_DEPTH;
        for b in [
            body.clone(),
            format!("[{body}]"),
            format!("{{}}\n{body}\n"),
        ] {
            let r = d.decode(Format::Json, b.as_bytes(), &info(), &mut Vec::new());
            if ok {
                prop_assert!(r.is_ok(), "depth {}: {:?}", depth, r);
            } else {
                let msg = format!("{r:?}");
                prop_assert!(msg.contains("deeper than"), "depth {}: {}", depth, &msg[..msg.len().min(200)]);
            }
        }
        let form = format!("json={}", percent_encode(body.as_bytes()));
        prop_assert_eq!(
            d.decode(Format::Form, form.as_bytes(), &info(), &mut Vec::new()).is_ok(),
            ok
        );
        let under_time = json_nest(depth, &kinds, "1").replacen("\"a\"", "\"t\"", 1);
        let r = d.decode(Format::Json, under_time.as_bytes(), &info(), &mut Vec::new());
        prop_assert_eq!(r.is_ok(), depth == 0, "a nested time is no time");
        // any cut of the body is refused
        let at = cut.index(body.len());
        let r = d.decode(Format::Json, &body.as_bytes()[..at], &info(), &mut Vec::new());
        prop_assert!(matches!(r, Err(BodyError::Malformed(_))));
    }

    /// msgpack nested to any depth, with huge declared lengths and cuts:
    /// refused with a reason, never a panic, never a huge allocation
    #[test]
    fn msgpack_depth_and_lengths_are_bounded(
        depth in prop_oneof![0usize..140, 1000usize..100_000],
        map_levels in any::<bool>(),
        tail in prop_oneof![Just(vec![0xc0u8]), huge_head()],
        cut in any::<prop::sample::Index>(),
        as_array in any::<bool>(),
    ) {
        let d = Decoder::new(Some("t".into()), None, false, utc()).unwrap();
        let mut b = vec![0x81, 0xa1, b'a'];
        for _ in 0..depth {
            if map_levels {
                b.extend_from_slice(&[0x81, 0xa1, b'k']);
            } else {
                b.push(0x91);
            }
        }
        b.extend_from_slice(&tail);
        if as_array {
            b.insert(0, 0x91);
        }
        let complete = tail == [0xc0];
        let r = d.decode(Format::Msgpack, &b, &info(), &mut Vec::new());
        if complete && depth < MAX_DEPTH {
            prop_assert!(r.is_ok(), "depth {}: {:?}", depth, r);
        } else {
            prop_assert!(matches!(r, Err(BodyError::Malformed(_))), "{:?}", r);
        }
        if depth + 1 > MAX_DEPTH {
            let msg = format!("{r:?}");
            prop_assert!(msg.contains("deeper than 128"), "{}", msg);
        }
        let at = cut.index(b.len());
        if at < b.len() {
            let r = d.decode(Format::Msgpack, &b[..at], &info(), &mut Vec::new());
            prop_assert!(r.is_err());
        }
    }

    /// gzip: truncated, corrupted, bombs and stacked members never
    /// inflate past the limit or the budget, nor panic
    #[test]
    fn gzip_is_bounded(
        len in prop_oneof![0usize..1000, 100_000usize..300_000],
        members in 1usize..4,
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        limit in prop_oneof![1usize..1000, 50_000usize..400_000],
        budget in prop_oneof![Just(usize::MAX), 0usize..200_000],
    ) {
        let one = gz(&vec![b'{'; len]);
        let all: Vec<u8> = std::iter::repeat_n(one, members).flatten().collect();
        let total = len * members;
        let mut left = budget;
        let mut take = |n: usize| {
            if n <= left { left -= n; true } else { false }
        };
        match gunzip_with(&all, limit, &mut take) {
            Ok(v) => {
                prop_assert_eq!(v.len(), total);
                prop_assert!(v.len() <= limit);
            }
            Err(BodyError::TooLarge(l)) => prop_assert!(total > limit && l == limit),
            Err(BodyError::OverBudget) => prop_assert!(budget < total.min(limit) + 64 * 1024),
            Err(e) => prop_assert!(false, "{:?}", e),
        }
        let at = cut.index(all.len());
        if let Ok(v) = gunzip(&all[..at], limit) {
            prop_assert!(v.len() <= limit);
        }
        let mut bad = all.clone();
        if !bad.is_empty() {
            let i = flip.index(bad.len());
            bad[i] ^= 0x5a;
        }
        if let Ok(v) = gunzip(&bad, limit) {
            prop_assert!(v.len() <= limit);
        }
    }

    /// form fields: long values, bad escapes, deep json= and msgpack=
    #[test]
    fn form_is_bounded(
        fields in prop::collection::vec(
            prop_oneof![
                "[a-z]{0,6}=[%+a-zA-Z0-9]{0,40}".prop_map(|s| s.into_bytes()),
                (1000usize..20_000).prop_map(|n| format!("json={}", "%5B".repeat(n)).into_bytes()),
                (1000usize..20_000).prop_map(|n| {
                    let mut v = b"msgpack=".to_vec();
                    v.extend(std::iter::repeat_n(&b"%91"[..], n).flatten());
                    v
                }),
                prop::collection::vec(any::<u8>(), 0..64),
            ],
            0..5,
        ),
    ) {
        let body = fields.join(&b'&');
        let mut out = Vec::new();
        match plain().decode(Format::Form, &body, &info(), &mut out) {
            Ok(n) => prop_assert_eq!(fuwa_api::event::entries(&out).count(), n as usize),
            Err(_) => prop_assert!(out.is_empty()),
        }
    }
}

fn percent_encode(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if c.is_ascii_alphanumeric() {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

#[test]
fn the_time_must_fit_an_event() {
    assert_eq!(parse_time_param("-1").unwrap().secs, -1);
    let t = parse_time_param("-0.5").unwrap();
    assert_eq!((t.secs, t.nanos), (-1, 500_000_000));
    assert_eq!(parse_time_param("4294967296").unwrap().secs, 4_294_967_296);
    assert!(parse_time_param("8000000000001").is_err());
    assert!(parse_time_param("-8000000000001").is_err());
    assert_eq!(parse_time_param("0").unwrap().secs, 0);
    let d = Decoder::new(Some("t".into()), None, false, utc()).unwrap();
    for body in [&br#"{"t":-1}"#[..], br#"{"t":"1969-12-31T23:59:59Z"}"#] {
        let r = d.decode(Format::Json, body, &info(), &mut Vec::new());
        assert!(r.is_ok(), "{r:?}");
    }
    let r = d.decode(Format::Json, br#"{"t":9e15}"#, &info(), &mut Vec::new());
    assert!(matches!(&r, Err(BodyError::Malformed(_))), "{r:?}");
    let mut mp = Vec::new();
    msgpack::write_map_len(&mut mp, 1);
    msgpack::write_str(&mut mp, b"t");
    msgpack::write_int(&mut mp, -9_000_000_000_000);
    assert!(d
        .decode(Format::Msgpack, &mp, &info(), &mut Vec::new())
        .is_err());
}

fn json_to_mp(out: &mut Vec<u8>, v: &serde_json::Value) {
    fuwa_parsers::json_value_to_msgpack(out, v);
}
