//! Unit tests of `protocol.rs`.

use super::*;
use proptest::prelude::*;
use rmpv::Value as V;

fn enc(v: &V) -> Bytes {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    Bytes::from(out)
}
fn et(secs: u32, nanos: u32) -> V {
    let mut d = secs.to_be_bytes().to_vec();
    d.extend_from_slice(&nanos.to_be_bytes());
    V::Ext(0, d)
}
fn rec(i: i64) -> V {
    V::Map(vec![
        (V::from("i"), V::from(i)),
        (V::from("msg"), V::from("hello")),
    ])
}
fn decode(msg: &Bytes) -> Result<Decoded, ProtocolError> {
    let mut g = MessageGrouper::default();
    let mut out = Decoded::default();
    decode_message(msg, 1 << 20, 1024, &mut g, &mut out)?;
    g.flush(&mut out.batches);
    Ok(out)
}
fn events(d: &Decoded) -> Vec<(String, EventTime, V)> {
    let mut v = Vec::new();
    for b in &d.batches {
        for e in b.iter() {
            let e = e.unwrap();
            v.push((
                b.tag.to_string(),
                e.time,
                rmpv::decode::read_value(&mut &e.record[..]).unwrap(),
            ));
        }
    }
    v
}
fn packed(entries: &[V]) -> Vec<u8> {
    let mut b = Vec::new();
    for e in entries {
        rmpv::encode::write_value(&mut b, e).unwrap();
    }
    b
}

#[test]
fn message_mode_with_every_time_kind() {
    for (t, expect) in [
        (
            et(1_700_000_000, 123_456_789),
            EventTime::new(1_700_000_000, 123_456_789),
        ),
        (V::from(1_700_000_000u32), EventTime::new(1_700_000_000, 0)),
        (V::from(1_700_000_000i64), EventTime::new(1_700_000_000, 0)),
        (
            V::F64(1_700_000_000.5),
            EventTime::new(1_700_000_000, 500_000_000),
        ),
        (
            V::Array(vec![et(5, 6), V::Map(vec![])]),
            EventTime::new(5, 6),
        ),
    ] {
        let d = decode(&enc(&V::Array(vec![V::from("t"), t, rec(1)]))).unwrap();
        let ev = events(&d);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].1, expect);
        assert_eq!(ev[0].2, rec(1));
        assert!(d.ack.is_none());
    }
}

#[test]
fn chunk_is_echoed_in_its_own_type() {
    for chunk in [
        V::from("abc"),
        V::Binary(b"xyz".to_vec()),
        V::from("x".repeat(48)),
    ] {
        let opt = V::Map(vec![
            (V::from("chunk"), chunk.clone()),
            (V::from("size"), V::from(999)),
        ]);
        let d = decode(&enc(&V::Array(vec![V::from("t"), V::from(1), rec(1), opt]))).unwrap();
        let mut ack = Vec::new();
        ack_msgpack(&mut ack, d.ack.as_ref().unwrap());
        let expect = enc(&V::Map(vec![(V::from("ack"), chunk)]));
        assert_eq!(&ack[..], &expect[..]);
    }
}

#[test]
fn forward_mode() {
    let entries = V::Array(vec![
        V::Array(vec![et(1, 2), rec(1)]),
        V::Array(vec![V::from(3), rec(2)]),
    ]);
    let opt = V::Map(vec![(V::from("chunk"), V::from("c1"))]);
    let d = decode(&enc(&V::Array(vec![V::from("fw"), entries, opt]))).unwrap();
    let ev = events(&d);
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].1, EventTime::new(1, 2));
    assert_eq!(ev[1].2, rec(2));
    assert!(d.ack.is_some());
    // empty forward
    let d = decode(&enc(&V::Array(vec![V::from("fw"), V::Array(vec![])]))).unwrap();
    assert!(d.batches.is_empty());
}

#[test]
fn packed_forward_is_zero_copy_when_canonical() {
    let body = packed(&[
        V::Array(vec![et(1, 2), rec(1)]),
        V::Array(vec![V::from(7u32), rec(2)]),
    ]);
    let msg = enc(&V::Array(vec![V::from("p"), V::Binary(body.clone())]));
    let d = decode(&msg).unwrap();
    assert_eq!(d.batches.len(), 1);
    assert_eq!(&d.batches[0].entries[..], &body[..]);
    // the batch points into the message's own bytes
    assert!(msg.as_ptr_range().contains(&d.batches[0].entries.as_ptr()));
    assert_eq!(d.batches[0].count, 2);
    // also as str32 (old clients send entries as a string)
    let mut raw = vec![0x92, 0xa1, b'p', 0xdb];
    raw.extend_from_slice(&(body.len() as u32).to_be_bytes());
    raw.extend_from_slice(&body);
    assert_eq!(events(&decode(&Bytes::from(raw)).unwrap()).len(), 2);
}

#[test]
fn packed_forward_rewrites_fluent_bit_metadata_and_floats() {
    let body = packed(&[
        V::Array(vec![
            V::Array(vec![et(9, 8), V::Map(vec![(V::from("m"), V::from(1))])]),
            rec(1),
        ]),
        V::Array(vec![V::F64(10.25), rec(2)]),
        V::Array(vec![et(11, 0), rec(3)]),
    ]);
    let d = decode(&enc(&V::Array(vec![V::from("p"), V::Binary(body)]))).unwrap();
    let ev = events(&d);
    assert_eq!(
        ev.iter().map(|e| e.1).collect::<Vec<_>>(),
        vec![
            EventTime::new(9, 8),
            EventTime::new(10, 250_000_000),
            EventTime::new(11, 0)
        ]
    );
    // the rewritten entries are canonical
    for b in &d.batches {
        let mut pos = 0;
        while pos < b.entries.len() {
            let (_, next, canonical) = read_entry(&b.entries, pos).unwrap();
            assert!(canonical);
            pos = next;
        }
    }
}

#[test]
fn compressed_gzip_multi_member_and_zstd() {
    use std::io::Write;
    let part1 = packed(&[V::Array(vec![et(1, 0), rec(1)])]);
    let part2 = packed(&[
        V::Array(vec![et(2, 0), rec(2)]),
        V::Array(vec![et(3, 0), rec(3)]),
    ]);
    let mut gz = Vec::new();
    for part in [&part1, &part2] {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(part).unwrap();
        gz.extend(e.finish().unwrap());
    }
    let opt = V::Map(vec![
        (V::from("compressed"), V::from("gzip")),
        (V::from("chunk"), V::from("z")),
    ]);
    let d = decode(&enc(&V::Array(vec![V::from("c"), V::Binary(gz), opt]))).unwrap();
    assert_eq!(events(&d).len(), 3);
    assert!(d.ack.is_some());

    let mut all = part1.clone();
    all.extend(&part2);
    let z = zstd::encode_all(&all[..], 3).unwrap();
    let opt = V::Map(vec![(V::from("compressed"), V::from("zstd"))]);
    let d = decode(&enc(&V::Array(vec![V::from("c"), V::Binary(z), opt]))).unwrap();
    assert_eq!(events(&d).len(), 3);

    let opt = V::Map(vec![(V::from("compressed"), V::from("text"))]);
    let d = decode(&enc(&V::Array(vec![V::from("c"), V::Binary(all), opt]))).unwrap();
    assert_eq!(events(&d).len(), 3);
}

#[test]
fn gzip_bomb_is_capped() {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&vec![0u8; 8 << 20]).unwrap();
    let gz = e.finish().unwrap();
    assert!(gz.len() < 100_000);
    let opt = V::Map(vec![(V::from("compressed"), V::from("gzip"))]);
    let msg = enc(&V::Array(vec![V::from("c"), V::Binary(gz), opt]));
    let mut g = MessageGrouper::default();
    let mut out = Decoded::default();
    let r = decode_message(&msg, 1 << 20, 1024, &mut g, &mut out);
    assert_eq!(r.unwrap_err(), ProtocolError::TooLarge(1 << 20));
}

#[test]
fn bad_entries_are_skipped_not_fatal() {
    let body = packed(&[
        V::Array(vec![et(1, 0), rec(1)]),
        V::Array(vec![et(1, 0), V::from("not a map")]),
        V::Array(vec![V::from("bad time"), rec(2)]),
        V::from(42),
        V::Array(vec![et(2, 0), rec(3)]),
    ]);
    let d = decode(&enc(&V::Array(vec![V::from("p"), V::Binary(body)]))).unwrap();
    assert_eq!(events(&d).len(), 2);
    assert_eq!(d.skipped.len(), 3);
    assert_eq!(d.invalid, 3);
}

#[test]
fn wrong_shapes_are_errors() {
    for v in [
        V::from(1),
        V::Array(vec![V::from(1), V::from(2), rec(1)]),
        V::Array(vec![V::from("t")]),
        V::Array(vec![V::from("t"), V::from(1)]),
        V::Array(vec![V::from("t"), V::Binary(vec![]), V::from("opt")]),
    ] {
        assert!(decode(&enc(&v)).is_err(), "{v:?}");
    }
    // a non-map record in Message mode skips the event, the connection lives
    let d = decode(&enc(&V::Array(vec![
        V::from("t"),
        V::from(1),
        V::from("x"),
    ])))
    .unwrap();
    assert!(d.batches.is_empty());
    assert_eq!(d.skipped.len(), 1);
    // nil is a heartbeat
    assert!(decode(&Bytes::from_static(&[0xc0]))
        .unwrap()
        .batches
        .is_empty());
}

#[test]
fn unknown_ext_and_invalid_utf8_in_records_are_kept() {
    // {"e": ext(5, [1,2]), "s": str(ff)}
    let record = [0x82, 0xa1, b'e', 0xd5, 0x05, 1, 2, 0xa1, b's', 0xa1, 0xff];
    let mut msg = vec![0x93, 0xa1, b't', 0x01];
    msg.extend_from_slice(&record);
    let d = decode(&Bytes::from(msg)).unwrap();
    let e = d.batches[0].iter().next().unwrap().unwrap();
    assert_eq!(e.record, &record[..]);
}

#[test]
fn grouping_keeps_order_across_tags() {
    let mut g = MessageGrouper::default();
    let mut out = Decoded::default();
    for (tag, i) in [("a", 1), ("a", 2), ("b", 3), ("a", 4)] {
        decode_message(
            &enc(&V::Array(vec![V::from(tag), V::from(1), rec(i)])),
            1 << 20,
            1024,
            &mut g,
            &mut out,
        )
        .unwrap();
    }
    g.flush(&mut out.batches);
    let tags: Vec<(String, u32)> = out
        .batches
        .iter()
        .map(|b| (b.tag.to_string(), b.count))
        .collect();
    assert_eq!(
        tags,
        vec![("a".into(), 2), ("b".into(), 1), ("a".into(), 1)]
    );
}

#[test]
fn json_mode() {
    let mut g = MessageGrouper::default();
    let mut out = Decoded::default();
    let mut ack = None;
    let v: serde_json::Value = serde_json::from_str(r#"["go.json", 1795544471, {"a": [1, -1, 18446744073709551615], "f": 1.5}, {"chunk": "abc"}]"#).unwrap();
    decode_json(v, 1024, &mut g, &mut out, &mut ack).unwrap();
    g.flush(&mut out.batches);
    assert_eq!(ack, Some(serde_json::json!("abc")));
    let ev = events(&out);
    assert_eq!(ev[0].1.secs, 1795544471);
    assert_eq!(
        ev[0].2.as_map().unwrap()[0].1.as_array().unwrap()[2],
        V::from(u64::MAX)
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        let msg = Bytes::from(b);
        let mut g = MessageGrouper::default();
        let mut out = Decoded::default();
        let _ = decode_message(&msg, 1 << 16, 1024, &mut g, &mut out);
        // whatever was accepted is well-formed
        g.flush(&mut out.batches);
        for batch in &out.batches {
            let mut n = 0;
            for e in batch.iter() { prop_assert!(e.is_ok()); n += 1; }
            prop_assert_eq!(n, batch.count);
        }
    }

    #[test]
    fn hostile_packed_bodies_never_panic_nor_recurse(
        depth in 0usize..20_000,
        meta in any::<bool>(),
        heads in proptest::collection::vec(prop_oneof![Just(0x91u8), Just(0x92), Just(0x81), Just(0xdd), Just(0xdb)], 0..8),
        reps in 0usize..5000,
        tail in proptest::collection::vec(any::<u8>(), 0..64),
        compressed in 0u8..3,
        tag_len in prop_oneof![1usize..8, 1000usize..1100],
    ) {
        use std::io::Write;
        // a good entry, one with a nested [time, {meta}] time, one of
        // arbitrary deep or huge-length bytes, a good one again
        let mut body = packed(&[V::Array(vec![et(1, 0), rec(1)])]);
        body.push(0x92);
        body.extend(std::iter::repeat_n(0x92u8, depth));
        body.extend_from_slice(&[0xd7, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
        body.extend(std::iter::repeat_n(if meta { 0x80u8 } else { 0x90 }, depth));
        body.extend(packed(&[rec(2)]));
        for i in 0..reps { if !heads.is_empty() { body.push(heads[i % heads.len()]); } }
        body.extend(tail);
        body.extend(packed(&[V::Array(vec![et(3, 0), rec(3)])]));
        let (body, opt) = match compressed {
            0 => (body, V::Map(vec![(V::from("chunk"), V::from("c"))])),
            1 => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&body).unwrap();
                (e.finish().unwrap(), V::Map(vec![(V::from("chunk"), V::from("c")), (V::from("compressed"), V::from("gzip"))]))
            }
            _ => (zstd::encode_all(&body[..], 1).unwrap(), V::Map(vec![(V::from("chunk"), V::from("c")), (V::from("compressed"), V::from("zstd"))])),
        };
        let tag = "t".repeat(tag_len);
        let msg = enc(&V::Array(vec![V::from(tag.as_str()), V::Binary(body), opt]));
        let mut g = MessageGrouper::default();
        let mut out = Decoded::default();
        let r = decode_message(&msg, 1 << 20, 1024, &mut g, &mut out);
        g.flush(&mut out.batches);
        prop_assert!(r.is_ok(), "{r:?}");
        prop_assert!(out.ack.is_some());
        let accepted: u64 = out.batches.iter().map(|b| b.count as u64).sum();
        for batch in &out.batches {
            prop_assert_eq!(batch.iter().filter(|e| e.is_ok()).count() as u32, batch.count);
        }
        if tag_len > 1024 {
            prop_assert_eq!(accepted, 0);
            prop_assert!(out.invalid >= 1);
        } else {
            // the first entry always survives; the nested one never does
            prop_assert!(accepted >= 1);
            prop_assert!(out.invalid >= 1);
        }
    }

    #[test]
    fn mutated_valid_messages_never_panic(seed in proptest::collection::vec((0usize..400, any::<u8>()), 0..8)) {
        let body = packed(&[V::Array(vec![et(1, 2), rec(1)]), V::Array(vec![V::from(7u32), rec(2)])]);
        let mut msg = enc(&V::Array(vec![V::from("p"), V::Binary(body), V::Map(vec![(V::from("chunk"), V::from("c"))])])).to_vec();
        for (i, b) in seed { let len = msg.len(); msg[i % len] = b; }
        let msg = Bytes::from(msg);
        let mut g = MessageGrouper::default();
        let mut out = Decoded::default();
        let _ = decode_message(&msg, 1 << 16, 1024, &mut g, &mut out);
        for batch in &out.batches {
            prop_assert_eq!(batch.iter().filter(|e| e.is_ok()).count() as u32, batch.count);
        }
    }
}
