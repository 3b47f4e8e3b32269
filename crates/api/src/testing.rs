//! Helpers for plugin tests (the `testing` feature, for dev-dependencies):
//! run a filter on a value tree through either form of [`Record`] the
//! engine may hand it, build a section and a context as the engine would,
//! and draw hostile records and msgpack.

use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Union};
use rmpv::Value;

use crate::config::ConfigSection;
use crate::event::EventTime;
use crate::plugin::{BuildContext, Filter, FilterResult};
use crate::record::{decode, encode, Record};

/// The section of the first `[[filter]]` of a config (`filter[0]`), from
/// the TOML of its body.
pub fn filter_section(src: &str) -> ConfigSection<'_> {
    match ConfigSection::from_toml("filter[0]", src) {
        Ok(s) => s,
        Err(e) => panic!("test section does not parse: {e}"),
    }
}

/// The context the engine hands a plugin with this id, on host `web-1`, in
/// time zone `tz`, with the temporary directory as data_dir.
pub fn build_context(id: &str, tz: &str) -> BuildContext {
    BuildContext {
        id: id.into(),
        hostname: "web-1".into(),
        timezone: tz.into(),
        data_dir: std::env::temp_dir(),
    }
}

/// A msgpack map of string keys, in the order given (`map(vec![...])` or
/// `map(&[...])`).
pub fn map<'a>(pairs: impl AsRef<[(&'a str, Value)]>) -> Value {
    Value::Map(
        pairs
            .as_ref()
            .iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect(),
    )
}

/// What the record strategies draw from: the map keys the filter under test
/// reads and strings it reads specially, beside arbitrary ones.
#[derive(Debug, Clone, Copy)]
pub struct Values {
    /// drawn for 8 keys in 10
    pub keys: &'static [&'static str],
    /// drawn beside arbitrary strings (may be empty)
    pub texts: &'static [&'static str],
}

impl Values {
    /// A scalar of every msgpack kind: nil, bool, integers, floats, strings,
    /// binaries, exts and EventTimes (ext 0).
    pub fn scalar(self) -> BoxedStrategy<Value> {
        let mut arms: Vec<BoxedStrategy<Value>> = vec![
            Just(Value::Nil).boxed(),
            any::<bool>().prop_map(Value::Boolean).boxed(),
            any::<i64>().prop_map(Value::from).boxed(),
            any::<u64>().prop_map(Value::from).boxed(),
            any::<f32>().prop_map(Value::F32).boxed(),
            any::<f64>().prop_map(Value::F64).boxed(),
            ".{0,12}".prop_map(Value::from).boxed(),
            proptest::collection::vec(any::<u8>(), 0..10)
                .prop_map(Value::Binary)
                .boxed(),
            (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..10))
                .prop_map(|(t, d)| Value::Ext(t, d))
                .boxed(),
            (any::<u32>(), any::<u32>())
                .prop_map(|(s, n)| {
                    let mut d = s.to_be_bytes().to_vec();
                    d.extend_from_slice(&n.to_be_bytes());
                    Value::Ext(0, d)
                })
                .boxed(),
        ];
        if !self.texts.is_empty() {
            arms.push(
                proptest::sample::select(self.texts)
                    .prop_map(Value::from)
                    .boxed(),
            );
        }
        Union::new(arms).boxed()
    }

    /// A map key: mostly one of `keys`, else any short string or scalar.
    pub fn key(self) -> BoxedStrategy<Value> {
        let mut arms = vec![
            (1, ".{0,4}".prop_map(Value::from).boxed()),
            (1, self.scalar()),
        ];
        if !self.keys.is_empty() {
            arms.push((
                8,
                proptest::sample::select(self.keys)
                    .prop_map(Value::from)
                    .boxed(),
            ));
        }
        Union::new_weighted(arms).boxed()
    }

    /// Any value: scalars, and arrays and maps nested up to 4 deep.
    pub fn value(self) -> BoxedStrategy<Value> {
        self.scalar()
            .prop_recursive(4, 48, 6, move |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    proptest::collection::vec((self.key(), inner), 0..6).prop_map(Value::Map),
                ]
            })
            .boxed()
    }

    /// A record: a map of up to 8 entries.
    pub fn record(self) -> BoxedStrategy<Value> {
        proptest::collection::vec((self.key(), self.value()), 0..8)
            .prop_map(Value::Map)
            .boxed()
    }
}

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
