//! Helpers for filter tests: run a filter on a value tree, through either
//! form of [`Record`] the engine may hand it.

use rmpv::Value;

use crate::event::EventTime;
use crate::plugin::{Filter, FilterResult};
use crate::record::{decode, encode, Record};

/// Runs the filter the way the engine does for a record fresh from an input
/// (as msgpack bytes) and writes the result back into `v`.
pub fn filter_value<F: Filter + ?Sized>(
    f: &F,
    tag: &str,
    time: &mut EventTime,
    v: &mut Value,
) -> FilterResult {
    let mut b = Vec::new();
    encode(&mut b, v);
    let mut r = Record::from_slice(&b);
    let res = f.filter(tag, time, &mut r);
    *v = decode(r.bytes()).unwrap_or(Value::Nil);
    res
}

/// Runs the filter on a record already decoded into a tree (as after a
/// filter that needed the whole record).
pub fn filter_tree<F: Filter + ?Sized>(
    f: &F,
    tag: &str,
    time: &mut EventTime,
    v: &mut Value,
) -> FilterResult {
    let mut r = Record::from_value(std::mem::replace(v, Value::Nil));
    let res = f.filter(tag, time, &mut r);
    *v = r.into_value().unwrap_or(Value::Nil);
    res
}

/// Runs `bytes` on the record as bytes and `tree` on it as a tree (two
/// filters built alike, so counters and caches do not mix) and returns both
/// outcomes, for tests that check that the two forms agree.
pub fn both_forms(
    bytes: &dyn Filter,
    tree: &dyn Filter,
    tag: &str,
    time: EventTime,
    v: &Value,
) -> ((bool, EventTime, Value), (bool, EventTime, Value)) {
    let run = |f: &dyn Filter, as_tree: bool| {
        let mut t = time;
        let mut x = v.clone();
        let keep = if as_tree {
            filter_tree(f, tag, &mut t, &mut x)
        } else {
            filter_value(f, tag, &mut t, &mut x)
        };
        (matches!(keep, FilterResult::Keep), t, x)
    };
    (run(bytes, false), run(tree, true))
}

/// The msgpack headers that hurt a walker: container heads (nesting) and
/// heads declaring huge lengths (arrays, maps, strings, bins, exts).
pub const HOSTILE_MSGPACK_HEADS: [&[u8]; 10] = [
    &[0x91],
    &[0x92],
    &[0x81],
    &[0xdc, 0xff, 0xff],
    &[0xdd, 0xff, 0xff, 0xff, 0xff],
    &[0xdf, 0xff, 0xff, 0xff, 0xff],
    &[0xdb, 0xff, 0xff, 0xff, 0xff],
    &[0xc6, 0x7f, 0xff, 0xff, 0xff],
    &[0xc9, 0xff, 0xff, 0xff, 0xff, 0x00],
    &[0xa1, b'k'],
];

/// msgpack biased to what hurts, for property tests of every decoder: `reps`
/// headers taken in turn from the [`HOSTILE_MSGPACK_HEADS`] picked by
/// `heads` (indices, taken modulo the table), then arbitrary `tail` bytes.
pub fn hostile_msgpack(heads: &[usize], reps: usize, tail: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    if !heads.is_empty() {
        for i in 0..reps {
            b.extend_from_slice(
                HOSTILE_MSGPACK_HEADS[heads[i % heads.len()] % HOSTILE_MSGPACK_HEADS.len()],
            );
        }
    }
    b.extend_from_slice(tail);
    b
}
