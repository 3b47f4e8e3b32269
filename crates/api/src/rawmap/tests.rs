//! Unit tests of `rawmap.rs`.

use super::*;
use crate::record::{self, path};
use proptest::prelude::*;
use rmpv::Value;

fn enc(v: &Value) -> Vec<u8> {
    let mut b = Vec::new();
    record::encode(&mut b, v);
    b
}

fn dec(b: &[u8]) -> Value {
    record::decode(b).expect("decodes")
}

#[test]
fn key_heads_read_in_words_match_bytewise() {
    let naive = |n: &[u8]| {
        let mut b = [0u8; 8];
        let k = n.len().min(8);
        b[..k].copy_from_slice(&n[..k]);
        u64::from_le_bytes(b)
    };
    let text = b"abcdefghijklmnopq";
    for len in 0..=12 {
        let n = &text[..len];
        assert_eq!(head8(n), naive(n), "len {len}");
        for start in 0..=text.len() - len {
            assert_eq!(
                head8_at(text, start, len),
                naive(&text[start..start + len]),
                "start {start} len {len}"
            );
        }
    }
}

#[test]
fn set_find_remove() {
    let v = Value::Map(vec![
        (
            Value::from("a"),
            Value::Map(vec![(Value::from("b"), Value::from(1))]),
        ),
        (Value::from("s"), Value::from("x")),
    ]);
    let mut b = enc(&v);
    assert_eq!(
        find(&b, &path("a.b")).unwrap().map(|r| b[r].to_vec()),
        Some(vec![1])
    );
    assert_eq!(find(&b, &path("a.c")).unwrap(), None);
    assert_eq!(find(&b, &path("s.x")).unwrap(), None);
    set(&mut b, &path("a.c.d"), &enc(&Value::from("y"))).unwrap();
    set(&mut b, &path("s.t"), &enc(&Value::from(true))).unwrap();
    set(&mut b, &path("n"), &enc(&Value::from(5))).unwrap();
    let mut t = v.clone();
    record::set(&mut t, &path("a.c.d"), Value::from("y"));
    record::set(&mut t, &path("s.t"), Value::from(true));
    record::set(&mut t, &path("n"), Value::from(5));
    assert_eq!(dec(&b), t);
    assert_eq!(remove(&mut b, &path("a.b")).unwrap(), Some(vec![1]));
    record::remove(&mut t, &path("a.b"));
    assert_eq!(dec(&b), t);
    assert_eq!(remove(&mut b, &path("zz.b")).unwrap(), None);
}

#[test]
fn header_grows_and_shrinks() {
    // 15 entries (fixmap) + 1 = map16; removing one goes back to fixmap
    let v = Value::Map(
        (0..15)
            .map(|i| (Value::from(format!("k{i}")), Value::from(i)))
            .collect(),
    );
    let mut b = enc(&v);
    set(&mut b, &path("new"), &enc(&Value::from("v"))).unwrap();
    assert_eq!(b[0], 0xde);
    assert_eq!(dec(&b).as_map().map(Vec::len), Some(16));
    remove(&mut b, &path("k0")).unwrap();
    assert_eq!(b[0], 0x8f);
    assert_eq!(dec(&b).as_map().map(Vec::len), Some(15));
}

/// msgpack biased to what hurts: long runs of container headers (deep
/// nesting), headers declaring huge lengths, then arbitrary bytes.
fn hostile_msgpack() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(0usize..10, 1..8),
        0usize..3000,
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(heads, reps, tail)| crate::testing::hostile_msgpack(&heads, reps, &tail))
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<i64>().prop_map(Value::from),
        "[a-c]{0,3}".prop_map(Value::from),
        proptest::collection::vec(any::<u8>(), 0..4).prop_map(Value::Binary),
    ];
    leaf.prop_recursive(3, 30, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::vec(("[a-c]{1,2}", inner), 0..18).prop_map(|kv| Value::Map(
                kv.into_iter().map(|(k, v)| (Value::from(k), v)).collect()
            )),
        ]
    })
}

fn record_value() -> impl Strategy<Value = Value> {
    proptest::collection::vec(("[a-c]{1,2}", value()), 0..18)
        .prop_map(|kv| Value::Map(kv.into_iter().map(|(k, v)| (Value::from(k), v)).collect()))
}

proptest! {
    /// the byte-level edits give the same record as the value-tree ones
    #[test]
    fn agrees_with_the_value_tree(r in record_value(), p in "[a-c]{1,2}(\\.[a-c]{1,2}){0,2}", v in value(), op in 0..3u8) {
        let parts = path(&p);
        let mut b = enc(&r);
        let mut t = r.clone();
        match op {
            0 => {
                set(&mut b, &parts, &enc(&v)).unwrap();
                record::set(&mut t, &parts, v);
            }
            1 => {
                let got = remove(&mut b, &parts).unwrap().map(|x| dec(&x));
                prop_assert_eq!(got, record::remove(&mut t, &parts));
                let mut t2 = t.clone();
                let mut again = enc(&t2);
                prop_assert_eq!(delete(&mut again, &parts).unwrap(), record::remove(&mut t2, &parts).is_some());
                prop_assert_eq!(dec(&again), t2.clone());
                let mut all = enc(&t2);
                let mut n = 0;
                while record::remove(&mut t2, &parts).is_some() {
                    n += 1;
                }
                prop_assert_eq!(delete_all(&mut all, &parts).unwrap(), n);
                prop_assert_eq!(dec(&all), t2);
            }
            _ => {
                let got = find(&b, &parts).unwrap().map(|x| dec(&b[x]));
                prop_assert_eq!(got.as_ref(), record::get(&t, &parts));
            }
        }
        prop_assert_eq!(dec(&b), t);
    }

    /// the index gives the same record as the value tree, over a sequence of edits
    #[test]
    fn the_index_agrees_with_the_value_tree(r in record_value(), ops in proptest::collection::vec(("[a-c]{1,2}", value(), 0..4u8), 1..12)) {
        let mut b = enc(&r);
        let mut t = r.clone();
        let mut ix = Index::default();
        ix.build(&b);
        prop_assert!(ix.ok());
        for (k, v, op) in ops {
            let parts = path(&k);
            match op {
                0 => {
                    ix.set(&mut b, k.as_bytes(), &enc(&v));
                    record::set(&mut t, &parts, v);
                }
                1 => {
                    let mut n = 0;
                    while record::remove(&mut t, &parts).is_some() {
                        n += 1;
                    }
                    prop_assert_eq!(ix.delete_all(&mut b, k.as_bytes()), n);
                }
                2 => {
                    let got = ix.remove(&mut b, k.as_bytes()).map(|x| dec(&x));
                    prop_assert_eq!(got, record::remove(&mut t, &parts));
                }
                _ => {
                    let got = ix.slot(&b, k.as_bytes()).map(|(_, x)| dec(&b[x]));
                    prop_assert_eq!(got.as_ref(), record::get(&t, &parts));
                }
            }
            prop_assert_eq!(dec(&b), t.clone());
            // and it still describes the bytes as a fresh index would
            let mut fresh = Index::default();
            fresh.build(&b);
            prop_assert_eq!(format!("{:?}", fresh.slots), format!("{:?}", ix.slots));
        }
    }

    #[test]
    fn deep_records_never_panic_nor_recurse(b in hostile_msgpack(), p in "[a-c]{1,2}(\\.[a-c]{1,2}){0,2}") {
        // a map whose values are the hostile bytes: the index, find,
        // set and delete walk them without a stack
        let mut r = vec![0x82, 0xa1, b'a'];
        r.extend_from_slice(&b);
        r.extend_from_slice(&[0xa1, b'b', 0x01]);
        let path = crate::record::path(&p);
        let _ = find(&r, &path);
        let mut idx = Index::default();
        idx.build(&r);
        let mut w = r.clone();
        let _ = set(&mut w, &path, &[0xc0]);
        let mut w = r.clone();
        let _ = delete_all(&mut w, &path);
        let _ = crate::record::decode(&r);
        let mut rec = crate::record::Record::from_slice(&r);
        let _ = rec.get(&path);
        let _ = rec.value_mut();
    }

    #[test]
    fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64), p in "[a-c]{1,2}(\\.[a-c]{1,2}){0,2}") {
        let parts = path(&p);
        let _ = find(&b, &parts);
        let _ = set(&mut b.clone(), &parts, &[0xc0]);
        let _ = remove(&mut b.clone(), &parts);
        let mut ix = Index::default();
        ix.build(&b);
    }
}
