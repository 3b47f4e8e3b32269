//! The pipeline an input emits into: route by tag, run the matching filters
//! in config order, hand the result to every matching output's buffer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use fuwa_api::{Batch, EmitError, Emitter, Filter, FilterResult, Record, TagPattern};

use crate::buffer::OutputBuffer;

pub struct RoutedFilter {
    pub id: String,
    pub pattern: TagPattern,
    pub plugin: Box<dyn Filter>,
}

pub struct RoutedOutput {
    pub pattern: TagPattern,
    pub buffer: Arc<OutputBuffer>,
}

pub struct Pipeline {
    pub filters: Vec<RoutedFilter>,
    pub outputs: Vec<RoutedOutput>,
    closed: AtomicBool,
}

impl Pipeline {
    pub fn new(filters: Vec<RoutedFilter>, outputs: Vec<RoutedOutput>) -> Self {
        Pipeline {
            filters,
            outputs,
            closed: AtomicBool::new(false),
        }
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Runs the filters that match the tag, on each record's bytes (a filter
    /// that needs a value tree decodes it; it is encoded once at the end).
    fn apply_filters(&self, batch: Batch) -> Batch {
        let active: Vec<&RoutedFilter> = self
            .filters
            .iter()
            .filter(|f| f.pattern.matches(&batch.tag))
            .collect();
        if active.is_empty() {
            return batch;
        }
        let mut out = Vec::with_capacity(batch.entries.len() + batch.entries.len() / 4);
        let mut count = 0;
        let mut record = Record::new();
        for e in batch.iter() {
            let Ok(e) = e else { break };
            let mut time = e.time;
            record.reset(e.record);
            let mut keep = true;
            for f in &active {
                if let FilterResult::Drop = f.plugin.filter(&batch.tag, &mut time, &mut record) {
                    tracing::trace!(filter = %f.id, tag = %batch.tag, "record dropped");
                    keep = false;
                    break;
                }
            }
            if keep {
                out.push(0x92);
                out.extend_from_slice(&time.to_msgpack());
                record.write_to(&mut out);
                count += 1;
            }
        }
        Batch::new(batch.tag, Bytes::from(out), count)
    }
}

#[async_trait]
impl Emitter for Pipeline {
    async fn emit(&self, batch: Batch) -> Result<(), EmitError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(EmitError::ShuttingDown);
        }
        let batch = if self.filters.is_empty() {
            batch
        } else {
            self.apply_filters(batch)
        };
        if batch.count == 0 {
            return Ok(());
        }
        for o in &self.outputs {
            if o.pattern.matches(&batch.tag) {
                o.buffer.append(&batch).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::config::BufferConfig;
    use fuwa_api::event::write_entry;
    use fuwa_api::{Chunk, EventTime, Output, OutputError};
    use std::sync::Mutex;

    struct Collect(Mutex<Vec<Chunk>>);
    #[async_trait]
    impl Output for Collect {
        fn memory_bound(&self, _: &fuwa_api::MemoryEnv) -> fuwa_api::MemoryBound {
            fuwa_api::MemoryBound::new()
        }
        async fn write(&self, chunk: &Chunk) -> Result<(), OutputError> {
            self.0.lock().unwrap().push(chunk.clone());
            Ok(())
        }
    }

    /// drops records whose "drop" field is true, adds "seen" = filter id
    struct TestFilter(&'static str);
    impl Filter for TestFilter {
        fn memory_bound(&self, _: &fuwa_api::MemoryEnv) -> fuwa_api::MemoryBound {
            fuwa_api::MemoryBound::new()
        }
        fn filter(&self, _tag: &str, time: &mut EventTime, record: &mut Record) -> FilterResult {
            let Some(record) = record.value_mut() else {
                return FilterResult::Keep;
            };
            let map = record.as_map().cloned().unwrap_or_default();
            if map
                .iter()
                .any(|(k, v)| k.as_str() == Some("drop") && v.as_bool() == Some(true))
            {
                return FilterResult::Drop;
            }
            if let rmpv::Value::Map(m) = record {
                m.push((rmpv::Value::from("seen"), rmpv::Value::from(self.0)));
            }
            time.nanos = 7;
            FilterResult::Keep
        }
    }

    fn batch(tag: &str, recs: &[rmpv::Value]) -> Batch {
        let mut out = Vec::new();
        for r in recs {
            let mut b = Vec::new();
            rmpv::encode::write_value(&mut b, r).unwrap();
            write_entry(&mut out, EventTime::new(1, 0), &b);
        }
        Batch::new(Arc::from(tag), Bytes::from(out), recs.len() as u32)
    }

    #[tokio::test]
    async fn routes_and_filters_in_order() {
        let a = Arc::new(Collect(Mutex::new(vec![])));
        let b = Arc::new(Collect(Mutex::new(vec![])));
        let p = Pipeline::new(
            vec![
                RoutedFilter {
                    id: "f1".into(),
                    pattern: TagPattern::parse("app.**").unwrap(),
                    plugin: Box::new(TestFilter("one")),
                },
                RoutedFilter {
                    id: "f2".into(),
                    pattern: TagPattern::parse("app.web").unwrap(),
                    plugin: Box::new(TestFilter("two")),
                },
            ],
            vec![
                RoutedOutput {
                    pattern: TagPattern::parse("app.*").unwrap(),
                    buffer: OutputBuffer::new(
                        "a",
                        a.clone(),
                        BufferConfig::memory(),
                        std::path::Path::new("/nonexistent"),
                    )
                    .unwrap(),
                },
                RoutedOutput {
                    pattern: TagPattern::parse("**").unwrap(),
                    buffer: OutputBuffer::new(
                        "b",
                        b.clone(),
                        BufferConfig::memory(),
                        std::path::Path::new("/nonexistent"),
                    )
                    .unwrap(),
                },
            ],
        );
        let keep = rmpv::Value::Map(vec![(rmpv::Value::from("x"), rmpv::Value::from(1))]);
        let drop = rmpv::Value::Map(vec![(rmpv::Value::from("drop"), rmpv::Value::from(true))]);
        p.emit(batch(
            "app.web",
            &[keep.clone(), drop.clone(), keep.clone()],
        ))
        .await
        .unwrap();
        p.emit(batch("other", std::slice::from_ref(&drop)))
            .await
            .unwrap();
        for o in &p.outputs {
            o.buffer.seal_due(true);
            let w = o.buffer.clone();
            w.close();
            w.worker().await;
        }
        let a = a.0.lock().unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].records, 2);
        let e = a[0].entries().next().unwrap().unwrap();
        assert_eq!(e.time.nanos, 7);
        let rec = rmpv::decode::read_value(&mut &e.record[..]).unwrap();
        let seen: Vec<&str> = rec
            .as_map()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.as_str() == Some("seen"))
            .filter_map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(seen, vec!["one", "two"]);
        // "other" matched no filter: its record passes untouched, unfiltered
        let b = b.0.lock().unwrap();
        assert_eq!(b.iter().map(|c| c.records).sum::<u32>(), 3);
    }
}

#[cfg(test)]
mod chain_properties {
    //! Arbitrary records through the whole chain of real filters never panic
    //! and never lose a record (grep, the only filter that drops, is set to
    //! a pattern no generated value can match).
    use super::*;
    use fuwa_api::event::write_entry;
    use fuwa_api::{BuildContext, ConfigSection, EventTime};
    use proptest::prelude::*;
    use rmpv::Value;

    fn filter(kind: &str, src: &str) -> RoutedFilter {
        let section = ConfigSection::from_toml("filter", src).expect("toml");
        let ctx = BuildContext {
            id: kind.into(),
            hostname: "h".into(),
            timezone: "Asia/Tokyo".into(),
            data_dir: std::env::temp_dir(),
        };
        let plugin = crate::plugins::find(crate::plugins::FILTERS, kind).expect("registered")(
            &section, &ctx,
        )
        .expect("builds");
        RoutedFilter {
            id: kind.into(),
            pattern: TagPattern::parse("**").expect("pattern"),
            plugin,
        }
    }

    fn chain() -> Pipeline {
        Pipeline::new(
            vec![
                filter("parser", "key_name = \"log\"\nformat = \"json\"\nreserve_data = true"),
                filter("user_agent", "key = \"ua_raw\"\ntarget = \"ua\""),
                filter("referrer", "key = \"ref_raw\"\ntarget = \"ref\"\nown_hosts = [\"note.com\"]"),
                filter("types", "fields = { n = \"integer\", f = \"float\", b = \"bool\", t = \"time:%Y-%m-%d\", a = \"array:,\" }"),
                filter("record", "set = { tagged = \"${tag}\", copy = \"${record.n}\", \"x.y\" = \"${hostname}\" }\nremove = [\"gone\"]\nrename = { old = \"new\" }"),
                filter("grep", "exclude = [{ key = \"never\", pattern = \"^\\u0001never\\u0002$\" }]"),
            ],
            vec![],
        )
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,30}".prop_map(Value::from),
            "(https?://)?[a-z.]{0,12}(/[a-z?=&%]{0,12})?".prop_map(Value::from),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Binary),
        ];
        leaf.prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec(("[a-z]{1,6}", inner), 0..4).prop_map(|kv| Value::Map(
                    kv.into_iter().map(|(k, v)| (Value::from(k), v)).collect()
                )),
            ]
        })
    }

    fn record() -> impl Strategy<Value = Value> {
        let keys = prop_oneof![
            Just("log".to_string()),
            Just("ua_raw".to_string()),
            Just("ref_raw".to_string()),
            Just("n".to_string()),
            Just("f".to_string()),
            Just("b".to_string()),
            Just("t".to_string()),
            Just("a".to_string()),
            Just("gone".to_string()),
            Just("old".to_string()),
            Just("x".to_string()),
            "[a-z]{1,8}",
        ];
        proptest::collection::vec((keys, value()), 0..10)
            .prop_map(|kv| Value::Map(kv.into_iter().map(|(k, v)| (Value::from(k), v)).collect()))
    }

    /// Each filter, given the same record as msgpack bytes (as from an
    /// input) and as a decoded tree (as after a filter that needed one),
    /// gives the same record, time and verdict.
    fn variants() -> Vec<RoutedFilter> {
        let mut v = chain().filters;
        v.extend([
            filter("user_agent", "key = \"ua_raw\"\ntarget = \"x.ua\"\nflatten = true\ncache_size = 0"),
            filter("referrer", "key = \"ref_raw\"\ntarget = \"ref_raw\"\ncache_size = 0"),
            filter("types", "fields = { n = \"string\", \"x.f\" = \"integer\", b = \"float\" }\non_error = \"remove\""),
            filter("record", "keep = [\"n\", \"x.y\", \"a\"]\nset = { \"a.b\" = \"${tag[1]}-${record.b}\", t = \"${time}\" }"),
            filter("record", "set = { whole = \"${record.x}\", lit = 5 }\nrename = { n = \"x.n\", f = \"g\" }\nremove = [\"ua_raw\", \"x.y\"]"),
            filter("grep", "regexp = [{ key = \"x\", pattern = \"a\" }, { key = \"n\", pattern = \"1\" }]\nregexp_condition = \"or\""),
            filter("parser", "key_name = \"log\"\nformat = \"json\"\nreserve_data = true\ninject_key_prefix = \"p_\""),
        ]);
        v
    }

    fn check_forms_agree(recs: &[Value]) -> Result<(), TestCaseError> {
        let (a, b) = (variants(), variants());
        for r in recs {
            for (fa, fb) in a.iter().zip(&b) {
                let ((keep_a, time_a, out_a), (keep_b, time_b, out_b)) =
                    fuwa_api::testing::both_forms(
                        &fa.plugin,
                        &fb.plugin,
                        "app.web",
                        EventTime::new(1_700_000_000, 5),
                        r,
                    );
                prop_assert_eq!(keep_a, keep_b, "filter {}", fa.id);
                prop_assert_eq!(time_a, time_b, "filter {}", fa.id);
                // (Debug text, so that NaN equals NaN)
                prop_assert_eq!(
                    format!("{out_a:?}"),
                    format!("{out_b:?}"),
                    "filter {}",
                    fa.id
                );
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn the_whole_chain_never_panics_and_never_loses_a_record(recs in proptest::collection::vec(record(), 1..8)) {
            let p = chain();
            let mut out = Vec::new();
            for r in &recs {
                let mut b = Vec::new();
                rmpv::encode::write_value(&mut b, r).expect("encode");
                write_entry(&mut out, EventTime::new(1_700_000_000, 5), &b);
            }
            let batch = Batch::new(Arc::from("app.web"), Bytes::from(out), recs.len() as u32);
            let filtered = p.apply_filters(batch);
            prop_assert_eq!(filtered.count as usize, recs.len());
            let mut n = 0;
            for e in filtered.iter() {
                let e = e.expect("well-formed entries");
                let v = fuwa_api::record::decode(e.record).expect("a record");
                prop_assert!(v.is_map());
                prop_assert!(fuwa_api::record::get(&v, &fuwa_api::record::path("tagged")).is_some());
                n += 1;
            }
            prop_assert_eq!(n, recs.len());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100))]
        #[test]
        fn bytes_and_tree_forms_give_the_same_record(recs in proptest::collection::vec(record(), 1..6)) {
            check_forms_agree(&recs)?;
        }
    }
}
