//! Unit tests of the Firehose output: building offline, its counters, config mistakes and error hints.

use super::*;

fn ctx() -> BuildContext {
    BuildContext {
        id: "firehose".into(),
        hostname: "host".into(),
        timezone: "Asia/Tokyo".into(),
        data_dir: std::env::temp_dir(),
    }
}

fn try_build(src: &str) -> Result<FirehoseOutput, Vec<ConfigError>> {
    let s = ConfigSection::from_toml("output[0]", src).unwrap();
    build_output(&s, &ctx())
}

#[test]
fn builds_without_touching_the_network() {
    let o = try_build(
        "delivery_stream = \"action-logs\"\nregion = \"ap-northeast-1\"\nendpoint = \"http://127.0.0.1:1\"\naggregate = true\naggregate_max_size = \"1000KiB\"\nrecords_per_second = 1000\nbytes_per_second = \"1MiB\"\nrequests_per_second = 1000\nmax_in_flight = 4",
    )
    .map_err(|e| format!("{e:?}"))
    .unwrap();
    assert_eq!(o.stats().calls.load(Ordering::Relaxed), 0);
    assert_eq!(o.inner.sender.call_limits(), (250, MAX_RECORD));
}

#[test]
fn counters_reach_the_engine_through_dyn_output() {
    let o = try_build("delivery_stream = \"s\"\nregion = \"ap-northeast-1\"").unwrap();
    o.stats().billed_bytes.fetch_add(10_240, Ordering::Relaxed);
    o.stats().records.fetch_add(2, Ordering::Relaxed);
    let o: Arc<dyn Output> = Arc::new(o);
    let m = o.metrics();
    let get = |n: &str| m.iter().find(|x| x.name == n).map(|x| x.value);
    assert_eq!(get("fuwa_firehose_billed_bytes_total"), Some(10_240.0));
    assert_eq!(get("fuwa_firehose_records_total"), Some(2.0));
    assert_eq!(get("fuwa_firehose_calls_total"), Some(0.0));
    assert!(m
        .iter()
        .all(|x| x.name.ends_with("_total") && x.kind == fuwa_api::MetricKind::Counter));
}

#[test]
fn config_mistakes_are_named() {
    let e = try_build("delivery_stream = \"arn:aws:firehose:x\"\naggregate_max_size = \"2MiB\"\nmax_in_flight = 0\nrecords_per_second = 0\naggregate = true\nappend_newline = false\nendpoint = \"localhost\"")
        .err()
        .unwrap();
    for k in [
        "delivery_stream",
        "aggregate_max_size",
        "max_in_flight",
        "records_per_second",
        "append_newline",
        "endpoint",
    ] {
        assert!(e.iter().any(|e| e.key.ends_with(k)), "{k}: {e:?}");
    }
    let e = try_build("delivery_stream = \"s\"\ndelivery_steam = \"x\"")
        .err()
        .unwrap();
    assert!(e[0].message.contains("delivery_steam"), "{e:?}");
}

#[test]
fn hints_say_what_to_fix() {
    assert!(firehose_hint("AccessDeniedException", "s")
        .unwrap()
        .contains("firehose:PutRecordBatch"));
    assert!(firehose_hint("ResourceNotFoundException", "s")
        .unwrap()
        .contains("`s` does not exist"));
    assert!(firehose_hint("ServiceUnavailableException", "s").is_none());
}
