//! Unit tests of `msgpack.rs`.

use super::*;
use proptest::prelude::*;

fn enc(v: &rmpv::Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

#[test]
fn fixed_lengths_agree_with_the_headers() {
    for b in 0..=255u8 {
        let mut buf = vec![b];
        buf.resize(64, 0);
        let fixed = FIXED_LEN[b as usize] as usize;
        let whole = match read_head(&buf, 0) {
            Ok((Head::Str(n) | Head::Bin(n) | Head::Ext(_, n), p)) => Some(p + n),
            Ok((Head::Map(_) | Head::Array(_), _)) => None,
            Ok((_, p)) => Some(p),
            Err(_) => None,
        };
        let variable = matches!(b, 0xc4..=0xc9 | 0xd9..=0xdb);
        match whole {
            Some(len) if !variable => assert_eq!(fixed, len, "byte {b:#04x}"),
            _ => assert_eq!(fixed, 0, "byte {b:#04x}"),
        }
    }
}

#[test]
fn skip_matches_rmpv_on_known_values() {
    let v = rmpv::Value::Array(vec![
        rmpv::Value::from("tag"),
        rmpv::Value::Map(vec![
            (rmpv::Value::from("a"), rmpv::Value::from(-5)),
            (rmpv::Value::from("b"), rmpv::Value::from(1.5f64)),
            (
                rmpv::Value::from("c"),
                rmpv::Value::Ext(0, vec![0, 0, 0, 1, 0, 0, 0, 2]),
            ),
            (rmpv::Value::from("d"), rmpv::Value::Binary(vec![1; 300])),
            (rmpv::Value::from("e"), rmpv::Value::from(u64::MAX)),
        ]),
    ]);
    let b = enc(&v);
    assert_eq!(skip(&b, 0), Ok(b.len()));
    for cut in 0..b.len() {
        assert_eq!(
            skip(&b[..cut], 0),
            Err(DecodeError::Incomplete),
            "cut {cut}"
        );
    }
}

#[test]
fn nesting_deeper_than_the_inline_stack_is_walked_right() {
    // [1, [1, [1, ... [] ..., 2], 2], 2] 60 levels deep
    fn nest(d: usize) -> rmpv::Value {
        if d == 0 {
            return rmpv::Value::Array(vec![]);
        }
        rmpv::Value::Array(vec![
            rmpv::Value::from(1),
            nest(d - 1),
            rmpv::Value::from("two"),
        ])
    }
    for d in [10, 15, 16, 17, 30, 60, 120] {
        let mut b = enc(&nest(d));
        let len = b.len();
        b.extend_from_slice(&[0xc0, 0xc0]);
        assert_eq!(skip(&b, 0), Ok(len), "depth {d}");
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let mut b = vec![0x91u8; 100_000];
    b.push(0xc0);
    assert!(matches!(skip(&b, 0), Err(DecodeError::Invalid { .. })));
    let mut f = Framer::new();
    assert!(matches!(f.advance(&b), Err(DecodeError::Invalid { .. })));
}

#[test]
fn a_framer_with_a_limit_refuses_huge_declared_strings_at_once() {
    let b = [0x92, 0xa1, b't', 0xc6, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(Framer::new().advance(&b), Ok(None));
    assert!(matches!(
        Framer::with_limit(1 << 20).advance(&b),
        Err(DecodeError::Invalid { .. })
    ));
}

#[test]
fn huge_declared_lengths_are_incomplete_not_allocations() {
    // array32 of 4 billion items with nothing behind it
    let b = [0xdd, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(skip(&b, 0), Err(DecodeError::Incomplete));
    let b = [0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0];
    assert!(skip(&b, 0).is_err());
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

fn arb_value() -> impl Strategy<Value = rmpv::Value> {
    let leaf = prop_oneof![
        Just(rmpv::Value::Nil),
        any::<bool>().prop_map(rmpv::Value::from),
        any::<i64>().prop_map(rmpv::Value::from),
        any::<u64>().prop_map(rmpv::Value::from),
        any::<f64>().prop_map(rmpv::Value::from),
        any::<f32>().prop_map(rmpv::Value::F32),
        ".{0,40}".prop_map(rmpv::Value::from),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(rmpv::Value::Binary),
        (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..20))
            .prop_map(|(t, d)| rmpv::Value::Ext(t, d)),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..20).prop_map(rmpv::Value::Array),
            proptest::collection::vec((inner.clone(), inner), 0..20).prop_map(rmpv::Value::Map),
        ]
    })
}

proptest! {
    #[test]
    fn skip_and_framer_agree_with_rmpv(v in arb_value(), splits in proptest::collection::vec(0usize..2000, 0..6)) {
        let b = enc(&v);
        prop_assert_eq!(skip(&b, 0), Ok(b.len()));
        // feed the framer in arbitrary pieces
        let mut cuts: Vec<usize> = splits.into_iter().map(|s| s % (b.len() + 1)).collect();
        cuts.sort();
        let mut f = Framer::new();
        for c in cuts {
            if c < b.len() {
                prop_assert_eq!(f.advance(&b[..c]), Ok(None));
            }
        }
        prop_assert_eq!(f.advance(&b), Ok(Some(b.len())));
    }

    #[test]
    fn deep_and_huge_declared_input_is_refused_or_incomplete(b in hostile_msgpack(), cut in 0usize..10_000) {
        match skip(&b, 0) {
            Ok(end) => prop_assert!(end <= b.len()),
            Err(DecodeError::Incomplete) => {}
            Err(DecodeError::Invalid { offset, .. }) => prop_assert!(offset <= b.len()),
        }
        // the framer agrees with skip, fed in two pieces
        let mut f = Framer::with_limit(1 << 20);
        let c = cut % (b.len() + 1);
        let first = f.advance(&b[..c]);
        if let Ok(None) = first {
            let second = f.advance(&b);
            if let (Ok(Some(n)), Ok(end)) = (&second, skip(&b, 0)) {
                prop_assert_eq!(*n, end);
            }
        }
    }

    #[test]
    fn skip_never_panics_on_garbage(b in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = skip(&b, 0);
        let mut f = Framer::new();
        let _ = f.advance(&b);
    }
}
