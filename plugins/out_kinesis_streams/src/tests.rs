use super::*;

fn ctx() -> BuildContext {
    BuildContext {
        id: "kinesis".into(),
        hostname: "host".into(),
        timezone: "Asia/Tokyo".into(),
        data_dir: std::env::temp_dir(),
    }
}

fn try_build(src: &str) -> Result<KinesisOutput, Vec<ConfigError>> {
    let s = ConfigSection::from_toml("output[0]", src).unwrap();
    build_output(&s, &ctx())
}

#[test]
fn builds_without_touching_the_network() {
    let o = try_build(
        "stream_name = \"my-stream\"\nregion = \"ap-northeast-1\"\nendpoint = \"http://127.0.0.1:1\"\npartition_key = \"${record.user_id}\"\nexplicit_hash_key = \"42\"\naggregation = true\nrecords_per_second = 1000\nbytes_per_second = \"1MiB\"\nmax_in_flight = 4\nrole_arn = \"arn:aws:iam::123456789012:role/r\"\nsts_endpoint = \"http://127.0.0.1:1\"\nsts_region = \"us-east-1\"\nprofile = \"prod\"\nproxy = \"http://127.0.0.1:3128\"",
    )
    .map_err(|e| format!("{e:?}"))
    .unwrap();
    assert_eq!(o.stats().calls.load(Ordering::Relaxed), 0);
    assert_eq!(o.inner.sender.call_limits(), (250, MAX_RECORD));
    assert!(o.inner.renderer.append_newline);
}

#[test]
fn newline_defaults_follow_the_format() {
    let o = try_build("stream_name = \"s\"\nformat = \"msgpack\"").unwrap();
    assert!(!o.inner.renderer.append_newline);
    let o = try_build("stream_name = \"s\"\nlog_key = \"log\"").unwrap();
    assert!(o.inner.renderer.append_newline);
    let o = try_build("stream_name = \"s\"\nappend_newline = false").unwrap();
    assert!(!o.inner.renderer.append_newline);
}

#[test]
fn counters_reach_the_engine_through_dyn_output() {
    let o = try_build("stream_name = \"s\"\nregion = \"ap-northeast-1\"").unwrap();
    o.stats().put_units.fetch_add(3, Ordering::Relaxed);
    o.stats().throttled.fetch_add(2, Ordering::Relaxed);
    let o: Arc<dyn Output> = Arc::new(o);
    let m = o.metrics();
    let get = |n: &str| m.iter().find(|x| x.name == n).map(|x| x.value);
    assert_eq!(get("fuwa_kinesis_put_units_total"), Some(3.0));
    assert_eq!(get("fuwa_kinesis_throttled_total"), Some(2.0));
    assert_eq!(get("fuwa_kinesis_calls_total"), Some(0.0));
    assert!(m
        .iter()
        .all(|x| x.name.ends_with("_total") && x.kind == fuwa_api::MetricKind::Counter));
}

#[test]
fn config_mistakes_are_named() {
    let e = try_build("stream_name = \"arn:aws:kinesis:x\"\npartition_key = \"${nope}\"\nexplicit_hash_key = \"-5\"\nmax_in_flight = 0\nrecords_per_second = 0\nformat = \"xml\"\nendpoint = \"localhost\"\nproxy = \"socks5://x\"\nsts_region = \"us-east-1\"")
        .err()
        .unwrap();
    for k in [
        "stream_name",
        "partition_key",
        "explicit_hash_key",
        "max_in_flight",
        "records_per_second",
        "format",
        "endpoint",
        "proxy",
        "sts_region",
    ] {
        assert!(e.iter().any(|e| e.key.ends_with(k)), "{k}: {e:?}");
    }
    let e = try_build("stream_name = \"s\"\nformat = \"msgpack\"\nappend_newline = true")
        .err()
        .unwrap();
    assert!(e[0].key.ends_with("append_newline"), "{e:?}");
    let e = try_build("stream_name = \"s\"\nlog_key = \"log\"\ntag_key = \"t\"")
        .err()
        .unwrap();
    assert!(e[0].key.ends_with("log_key"), "{e:?}");
    let e = try_build("stream_name = \"s\"\nstream = \"x\"")
        .err()
        .unwrap();
    assert!(e[0].message.contains("stream"), "{e:?}");
}

#[test]
fn record_errors_are_sorted() {
    assert!(is_throttle("ProvisionedThroughputExceededException"));
    assert!(is_throttle("KMSThrottlingException"));
    assert!(!record_error_is_fatal("InternalFailure"));
    assert!(!record_error_is_fatal(
        "ProvisionedThroughputExceededException"
    ));
    assert!(record_error_is_fatal("KMSDisabledException"));
    assert!(record_error_is_fatal("AccessDeniedException"));
}

#[test]
fn hints_say_what_to_fix() {
    assert!(kinesis_hint("AccessDeniedException", "s")
        .unwrap()
        .contains("kinesis:PutRecords"));
    assert!(kinesis_hint("ResourceNotFoundException", "s")
        .unwrap()
        .contains("`s` does not exist"));
    assert!(kinesis_hint("InternalFailure", "s").is_none());
}
