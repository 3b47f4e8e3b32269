//! Chunks through the encoder and back through the parquet crate's reader.

use super::*;
use bytes::Bytes;
use fuwa_api::EventTime;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use proptest::prelude::*;
use rmpv::Value as V;
use std::sync::Arc;

fn chunk(entries: &[(EventTime, V)]) -> Chunk {
    let mut seg = Vec::new();
    for (t, v) in entries {
        let mut r = Vec::new();
        rmpv::encode::write_value(&mut r, v).unwrap();
        fuwa_api::event::write_entry(&mut seg, *t, &r);
    }
    Chunk {
        id: "c".into(),
        tag: Arc::from("app.web"),
        key: Arc::from("k"),
        segments: vec![Bytes::from(seg)],
        records: entries.len() as u32,
        bytes: 0,
        created: std::time::SystemTime::now(),
    }
}

fn settings(codec: Codec, rows: usize) -> Settings {
    Settings {
        codec,
        level: None,
        row_group_size: rows,
        time_key: "time".into(),
        tag_key: Some("tag".into()),
    }
}

/// (file bytes, pieces handed out)
fn encode(e: &ParquetEncoder, c: &Chunk, piece: usize) -> (Vec<u8>, usize, Stats) {
    let mut pieces = Vec::new();
    let stats = e
        .encode(c, piece, |p| {
            pieces.push(p);
            true
        })
        .unwrap();
    (pieces.concat(), pieces.len(), stats)
}

fn rows(file: Vec<u8>) -> (Vec<Vec<(String, Field)>>, usize) {
    let r = SerializedFileReader::new(Bytes::from(file)).unwrap();
    let groups = r.metadata().num_row_groups();
    let rows = r
        .get_row_iter(None)
        .unwrap()
        .map(|row| {
            row.unwrap()
                .get_column_iter()
                .map(|(n, f)| (n.clone(), f.clone()))
                .collect()
        })
        .collect();
    (rows, groups)
}

fn get<'a>(row: &'a [(String, Field)], name: &str) -> &'a Field {
    &row.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .1
}

#[test]
fn typed_columns_row_groups_and_misfits() {
    let declared = vec![
        ("status".to_string(), ColumnType::Int64),
        ("at".to_string(), ColumnType::Timestamp),
    ];
    let e = ParquetEncoder::new(settings(Codec::Zstd, 100), &declared, None).unwrap();
    let mut entries = Vec::new();
    for i in 0..1000i64 {
        entries.push((
            EventTime::new(1_700_000_000 + i, 123_456_789),
            V::Map(vec![
                (
                    "status".into(),
                    if i == 7 {
                        V::from("oops")
                    } else {
                        V::from(200 + i)
                    },
                ),
                ("at".into(), V::from("2024-05-31T13:30:00.5Z")),
                ("ratio".into(), V::from(i as f64 / 4.0)),
                ("ok".into(), V::from(i % 2 == 0)),
                (
                    "nested".into(),
                    V::Map(vec![("a".into(), V::from(vec![V::from(1)]))]),
                ),
                ("time".into(), V::from("replaced by the event time")),
            ]),
        ));
    }
    entries.push((EventTime::new(0, 0), V::from("not a map")));
    let c = chunk(&entries);
    let (file, pieces, stats) = encode(&e, &c, 1 << 10);
    assert!(
        pieces > 2,
        "row groups are handed out as they are written: {pieces}"
    );
    assert_eq!(
        stats,
        Stats {
            rows: 1000,
            bad: 1,
            misfits: 1
        }
    );
    let (rows, groups) = rows(file);
    assert_eq!(groups, 10);
    assert_eq!(rows.len(), 1000);
    let r = &rows[3];
    assert_eq!(get(r, "status"), &Field::Long(203));
    assert_eq!(
        get(r, "time"),
        &Field::TimestampMicros(1_700_000_003_123_456)
    );
    assert_eq!(get(r, "tag"), &Field::Str("app.web".into()));
    assert_eq!(get(r, "at"), &Field::TimestampMicros(1_717_162_200_500_000));
    assert_eq!(get(r, "ratio"), &Field::Double(0.75));
    assert_eq!(get(r, "ok"), &Field::Bool(false));
    assert_eq!(get(r, "nested"), &Field::Str(r#"{"a":[1]}"#.into()));
    assert_eq!(get(&rows[7], "status"), &Field::Null, "a misfit is null");
    let names: Vec<&str> = rows[0].iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(&names[..4], ["time", "tag", "status", "at"]);
    assert_eq!(e.metrics()[0].value, 1.0);
}

#[test]
fn the_schema_is_persisted_kept_stable_and_grows() {
    let dir = tempfile::tempdir().unwrap();
    let path = schema_path(dir.path(), "s3/odd id");
    assert!(path.ends_with("parquet/s3_odd_id.schema.json"));
    let t = EventTime::new(1_700_000_000, 0);
    let e = ParquetEncoder::new(settings(Codec::Snappy, 10), &[], Some(path.clone())).unwrap();
    assert!(!path.exists(), "nothing is written before the first chunk");
    encode(
        &e,
        &chunk(&[(t, V::Map(vec![("n".into(), V::from(1))]))]),
        1 << 20,
    );
    assert!(path.exists());
    // a restart: the inferred type holds even when values now look different
    let e = ParquetEncoder::new(settings(Codec::Snappy, 10), &[], Some(path.clone())).unwrap();
    let (file, _, stats) = encode(
        &e,
        &chunk(&[(
            t,
            V::Map(vec![
                ("n".into(), V::from("x")),
                ("new".into(), V::from(true)),
            ]),
        )]),
        1 << 20,
    );
    assert_eq!(stats.misfits, 1);
    let (rows, _) = rows(file);
    assert_eq!(get(&rows[0], "n"), &Field::Null);
    assert_eq!(get(&rows[0], "new"), &Field::Bool(true));
    let s = Schema::load(&path).unwrap().unwrap();
    let cols: Vec<(&str, ColumnType)> = s.columns.iter().map(|c| (c.name.as_str(), c.ty)).collect();
    assert_eq!(
        cols,
        [
            ("time", ColumnType::Timestamp),
            ("tag", ColumnType::String),
            ("n", ColumnType::Int64),
            ("new", ColumnType::Bool)
        ]
    );
    // a declared type wins over the persisted one
    let declared = [("n".to_string(), ColumnType::String)];
    let e =
        ParquetEncoder::new(settings(Codec::Snappy, 10), &declared, Some(path.clone())).unwrap();
    assert_eq!(e.schema().get("n").unwrap().ty, ColumnType::String);
    // the types filters' types: below the output's own, above inferred ones
    e.declare_upstream(&[
        ("n".to_string(), ColumnType::Int64),
        ("new".to_string(), ColumnType::String),
        ("time".to_string(), ColumnType::String),
        ("more".to_string(), ColumnType::Double),
    ]);
    let s = e.schema();
    assert_eq!(s.get("n").unwrap().ty, ColumnType::String);
    assert_eq!(s.get("new").unwrap().ty, ColumnType::String);
    assert_eq!(s.get("time").unwrap().ty, ColumnType::Timestamp);
    assert_eq!(s.columns.last().unwrap().name, "more");
    std::fs::write(&path, "not json").unwrap();
    assert!(ParquetEncoder::new(settings(Codec::Snappy, 10), &[], Some(path)).is_err());
}

#[test]
fn an_empty_chunk_is_a_valid_file_and_every_codec_reads_back() {
    for codec in [Codec::Snappy, Codec::Zstd, Codec::Gzip, Codec::None] {
        let e = ParquetEncoder::new(settings(codec, 10), &[], None).unwrap();
        let (file, _, _) = encode(&e, &chunk(&[]), 1 << 20);
        assert_eq!(rows(file).0.len(), 0);
        let c = chunk(&[(
            EventTime::new(5, 0),
            V::Map(vec![("s".into(), V::from("x"))]),
        )]);
        let (file, _, _) = encode(&e, &c, 1 << 20);
        assert_eq!(
            get(&rows(file).0[0], "s"),
            &Field::Str("x".into()),
            "{codec:?}"
        );
    }
}

#[derive(Debug, Clone)]
struct Rec {
    time: (i64, u32),
    i: Option<i64>,
    f: Option<f64>,
    b: Option<bool>,
    s: Option<String>,
    t: Option<i64>,
}

fn rec() -> impl Strategy<Value = Rec> {
    (
        (0i64..4_000_000_000, 0u32..1_000_000_000),
        proptest::option::of(any::<i64>()),
        proptest::option::of(any::<f64>().prop_filter("finite", |f| f.is_finite())),
        proptest::option::of(any::<bool>()),
        proptest::option::of(".{0,40}"),
        proptest::option::of(-62_135_596_800_000_000i64..253_402_300_799_000_000),
    )
        .prop_map(|(time, i, f, b, s, t)| Rec {
            time,
            i,
            f,
            b,
            s,
            t,
        })
}

fn rfc3339(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let us = micros.rem_euclid(1_000_000) as u32;
    chrono::DateTime::from_timestamp(secs, us * 1000)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn arbitrary_typed_records_read_back_equal(
        recs in proptest::collection::vec(rec(), 0..300),
        group in 1usize..64,
        codec in prop_oneof![Just(Codec::Snappy), Just(Codec::Zstd), Just(Codec::Gzip), Just(Codec::None)],
    ) {
        let declared = vec![
            ("i".to_string(), ColumnType::Int64),
            ("f".to_string(), ColumnType::Double),
            ("b".to_string(), ColumnType::Bool),
            ("s".to_string(), ColumnType::String),
            ("t".to_string(), ColumnType::Timestamp),
        ];
        let e = ParquetEncoder::new(settings(codec, group), &declared, None).unwrap();
        let entries: Vec<(EventTime, V)> = recs
            .iter()
            .map(|r| {
                let mut m = Vec::new();
                // absent and nil are both null
                let mut put = |k: &str, v: Option<V>, nil: bool| match v {
                    Some(v) => m.push((V::from(k), v)),
                    None if nil => m.push((V::from(k), V::Nil)),
                    None => {}
                };
                put("i", r.i.map(V::from), r.time.0 % 2 == 0);
                put("f", r.f.map(V::from), true);
                put("b", r.b.map(V::from), false);
                put("s", r.s.clone().map(V::from), r.time.1 % 2 == 0);
                put("t", r.t.map(|t| V::from(rfc3339(t))), false);
                (EventTime::new(r.time.0, r.time.1), V::Map(m))
            })
            .collect();
        let (file, _, stats) = encode(&e, &chunk(&entries), 4096);
        prop_assert_eq!(stats, Stats { rows: recs.len() as u64, bad: 0, misfits: 0 });
        let (rows, groups) = rows(file);
        prop_assert_eq!(rows.len(), recs.len());
        prop_assert_eq!(groups, recs.len().div_ceil(group));
        let opt = |f: Option<Field>| f.unwrap_or(Field::Null);
        for (r, row) in recs.iter().zip(&rows) {
            prop_assert_eq!(get(row, "time"), &Field::TimestampMicros(r.time.0 * 1_000_000 + (r.time.1 / 1000) as i64));
            prop_assert_eq!(get(row, "tag"), &Field::Str("app.web".into()));
            prop_assert_eq!(get(row, "i"), &opt(r.i.map(Field::Long)));
            prop_assert_eq!(get(row, "f"), &opt(r.f.map(Field::Double)));
            prop_assert_eq!(get(row, "b"), &opt(r.b.map(Field::Bool)));
            prop_assert_eq!(get(row, "s"), &opt(r.s.clone().map(Field::Str)));
            prop_assert_eq!(get(row, "t"), &opt(r.t.map(Field::TimestampMicros)));
        }
    }
}

#[test]
fn hostile_records_are_bounded_and_skipped_not_fatal() {
    let e = ParquetEncoder::new(settings(Codec::Snappy, 100), &[], None).unwrap();
    let t = EventTime::new(1, 0);
    // thousands of distinct keys: the schema stops at MAX_COLUMNS
    let wide = V::Map(
        (0..5000)
            .map(|i| (V::from(format!("k{i}")), V::from(i)))
            .collect(),
    );
    // nested deeper than msgpack::MAX_DEPTH: a JSON text column refuses it
    let mut deep = V::from(1);
    for _ in 0..200 {
        deep = V::Array(vec![deep]);
    }
    let deep = V::Map(vec![("d".into(), deep)]);
    let fine = V::Map(vec![("k1".into(), V::from(7))]);
    let mut c = chunk(&[(t, wide), (t, fine)]);
    // a malformed entry ends its segment (as for JSON); the next segment
    // is read all the same
    let deep_seg = chunk(&[(t, deep)]).segments[0].clone();
    let truncated = Bytes::from_static(&[0x92, 0xd7, 0x00, 1, 2]);
    let not_a_map = chunk(&[(t, V::from(3))]).segments[0].clone();
    c.segments.insert(0, deep_seg);
    c.segments.insert(1, truncated);
    c.segments.insert(2, not_a_map);
    let (file, _, stats) = encode(&e, &c, 1 << 20);
    assert_eq!(e.schema().columns.len(), schema::MAX_COLUMNS);
    assert_eq!(
        stats,
        Stats {
            rows: 2,
            bad: 3,
            misfits: 0
        }
    );
    let (rows, _) = rows(file);
    assert_eq!(get(&rows[1], "k1"), &Field::Long(7));
}
