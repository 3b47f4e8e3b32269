use super::*;
use rmpv::Value as V;

fn p(cfg: &str) -> Parser {
    let c: ParserConfig = toml::from_str(cfg).unwrap();
    Parser::new(&c, chrono_tz::UTC).unwrap()
}

fn rec(parsed: &Parsed) -> V {
    rmpv::decode::read_value(&mut &parsed.record[..]).unwrap()
}

fn get<'a>(v: &'a V, k: &str) -> &'a V {
    v.as_map()
        .unwrap()
        .iter()
        .find(|(kk, _)| kk.as_str() == Some(k))
        .map(|(_, v)| v)
        .unwrap_or(&V::Nil)
}

fn has(v: &V, k: &str) -> bool {
    v.as_map()
        .unwrap()
        .iter()
        .any(|(kk, _)| kk.as_str() == Some(k))
}

#[test]
fn json_with_time_key_and_types() {
    let parser = p("format = \"json\"\ntime_key = \"at\"\ntime_format = \"%Y-%m-%d %H:%M:%S%.f\"\ntypes = { n = \"integer\", ok = \"bool\" }");
    let r = parser
        .parse(r#"{"at":"2024-05-01 12:34:56.123456789","msg":"h\u00e9llo \"q\"","n":"42","ok":"true","nested":{"a":[1,2.5,null,{"b":false}]},"big":18446744073709551615,"neg":-7}"#)
        .unwrap();
    assert_eq!(r.time, Some(EventTime::new(1714566896, 123456789)));
    let v = rec(&r);
    assert!(!has(&v, "at"), "time_key removed");
    assert_eq!(get(&v, "msg"), &V::from("héllo \"q\""));
    assert_eq!(get(&v, "n"), &V::from(42));
    assert_eq!(get(&v, "ok"), &V::from(true));
    assert_eq!(get(&v, "big"), &V::from(u64::MAX));
    assert_eq!(get(&v, "neg"), &V::from(-7));
    assert_eq!(
        get(get(&v, "nested"), "a").as_array().unwrap()[1],
        V::from(2.5)
    );
    // keep_time_key
    let parser =
        p("format = \"json\"\ntime_key = \"t\"\ntime_format = \"unix\"\nkeep_time_key = true");
    let r = parser.parse(r#"{"t":1700000000,"x":1}"#).unwrap();
    assert_eq!(r.time, Some(EventTime::new(1_700_000_000, 0)));
    assert_eq!(get(&rec(&r), "t"), &V::from(1_700_000_000));
}

#[test]
fn json_errors() {
    let parser = p("format = \"json\"");
    assert!(parser.parse("not json").is_err());
    assert!(parser.parse("[1,2]").is_err());
    assert!(parser.parse("{\"a\":1} trailing").is_err());
    assert!(parser.parse("{\"a\":").is_err());
    let parser = p("format = \"json\"\ntime_key = \"t\"\ntime_format = \"%Y\"");
    assert!(matches!(
        parser.parse(r#"{"t":"yesterday"}"#),
        Err(ParseError::Time { .. })
    ));
}

#[test]
fn many_keys_and_long_strings() {
    let parser = p("format = \"json\"");
    let mut line = String::from("{");
    for i in 0..40 {
        line.push_str(&format!("\"k{i}\":\"{}\",", "v".repeat(i * 10)));
    }
    line.push_str("\"end\":[");
    line.push_str(
        &(0..100)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    line.push_str("]}");
    let v = rec(&parser.parse(&line).unwrap());
    assert_eq!(v.as_map().unwrap().len(), 41);
    assert_eq!(get(&v, "k39"), &V::from("v".repeat(390)));
    assert_eq!(get(&v, "end").as_array().unwrap().len(), 100);
}

#[test]
fn apache_combined_with_quotes_and_escapes() {
    let parser = p("format = \"apache2\"");
    let line = r#"192.168.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif?q=a%20b HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav) \"quoted\"""#;
    let r = parser.parse(line).unwrap();
    assert_eq!(r.time, Some(EventTime::new(971211336, 0)));
    let v = rec(&r);
    assert_eq!(get(&v, "host"), &V::from("192.168.0.1"));
    assert_eq!(get(&v, "user"), &V::from("frank"));
    assert_eq!(get(&v, "method"), &V::from("GET"));
    assert_eq!(get(&v, "path"), &V::from("/apache_pb.gif?q=a%20b"));
    assert_eq!(get(&v, "code"), &V::from(200));
    assert_eq!(get(&v, "size"), &V::from(2326));
    assert_eq!(
        get(&v, "referer"),
        &V::from("http://www.example.com/start.html")
    );
    assert_eq!(
        get(&v, "agent"),
        &V::from(r#"Mozilla/4.08 [en] (Win98; I ;Nav) \"quoted\""#)
    );
    // common log format (no referer/agent), size "-"
    let r = parser
        .parse(r#"127.0.0.1 - - [01/Jan/2024:00:00:00 +0000] "HEAD / HTTP/1.1" 304 -"#)
        .unwrap();
    let v = rec(&r);
    assert_eq!(get(&v, "size"), &V::Nil);
    assert_eq!(get(&v, "user"), &V::Nil);
    assert!(parser.parse("garbage line").is_err());
}

#[test]
fn nginx_combined() {
    let parser = p("format = \"nginx\"");
    let line = r#"203.0.113.9 - - [25/Nov/2026:10:00:00 +0900] "POST /api/v1/events HTTP/2.0" 201 17 "-" "curl/8.5.0" "198.51.100.2""#;
    let r = parser.parse(line).unwrap();
    assert_eq!(r.time, Some(EventTime::new(1795568400, 0)));
    let v = rec(&r);
    assert_eq!(get(&v, "remote"), &V::from("203.0.113.9"));
    assert_eq!(get(&v, "code"), &V::from(201));
    assert_eq!(get(&v, "referer"), &V::Nil);
    assert_eq!(get(&v, "agent"), &V::from("curl/8.5.0"));
    assert_eq!(get(&v, "http_x_forwarded_for"), &V::from("198.51.100.2"));
}

#[test]
fn apache_error_log() {
    let parser = p("format = \"apache_error\"");
    let r = parser
        .parse("[Wed Oct 11 14:32:52.123456 2000] [core:error] [pid 35708:tid 4328636416] [client 72.15.99.187:5000] File does not exist: /usr/local/apache2/htdocs/favicon.ico")
        .unwrap();
    assert_eq!(r.time, Some(EventTime::new(971274772, 123456000)));
    let v = rec(&r);
    assert_eq!(get(&v, "level"), &V::from("core:error"));
    assert_eq!(get(&v, "client"), &V::from("72.15.99.187:5000"));
    assert!(get(&v, "message")
        .as_str()
        .unwrap()
        .starts_with("File does not exist"));
    let r = parser.parse("[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok /etc/httpd/conf/workers2.properties").unwrap();
    assert_eq!(get(&rec(&r), "level"), &V::from("notice"));
}

#[test]
fn syslog_rfc3164_and_rfc5424() {
    let parser = p("format = \"syslog\"");
    let r = parser
        .parse("<34>Oct 11 22:14:15 mymachine su[123]: 'su root' failed for lonvick on /dev/pts/8")
        .unwrap();
    let v = rec(&r);
    assert_eq!(get(&v, "pri"), &V::from(34));
    assert_eq!(get(&v, "host"), &V::from("mymachine"));
    assert_eq!(get(&v, "ident"), &V::from("su"));
    assert_eq!(get(&v, "pid"), &V::from("123"));
    assert_eq!(
        get(&v, "message"),
        &V::from("'su root' failed for lonvick on /dev/pts/8")
    );
    assert!(r.time.is_some());
    // without priority, one-digit day padded with a space
    let r = parser
        .parse("Feb  5 17:32:18 web-1 CRON[9]: (root) CMD (run-parts)")
        .unwrap();
    assert_eq!(get(&rec(&r), "ident"), &V::from("CRON"));
    let r = parser
        .parse(r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application"] An application event"#)
        .unwrap();
    assert_eq!(r.time, Some(EventTime::new(1065910455, 3_000_000)));
    let v = rec(&r);
    assert_eq!(get(&v, "ident"), &V::from("evntslog"));
    assert_eq!(get(&v, "msgid"), &V::from("ID47"));
    assert_eq!(get(&v, "message"), &V::from("An application event"));
    assert!(get(&v, "extradata")
        .as_str()
        .unwrap()
        .contains("eventSource"));
}

#[test]
fn ltsv_csv_tsv() {
    let r = p("format = \"ltsv\"\ntypes = { status = \"integer\" }")
        .parse("host:127.0.0.1\tident:-\treq:GET /a:b HTTP/1.1\tstatus:200\tempty:")
        .unwrap();
    let v = rec(&r);
    assert_eq!(get(&v, "req"), &V::from("GET /a:b HTTP/1.1"));
    assert_eq!(get(&v, "status"), &V::from(200));
    assert_eq!(get(&v, "ident"), &V::Nil);
    assert_eq!(get(&v, "empty"), &V::from(""));
    let csv =
        p("format = \"csv\"\nkeys = [\"id\", \"name\", \"note\"]\ntypes = { id = \"integer\" }");
    let v = rec(&csv.parse(r#"7,"Doe, Jane","said ""hi"", left""#).unwrap());
    assert_eq!(get(&v, "id"), &V::from(7));
    assert_eq!(get(&v, "name"), &V::from("Doe, Jane"));
    assert_eq!(get(&v, "note"), &V::from(r#"said "hi", left"#));
    assert!(csv.parse("1,2").is_err(), "wrong column count");
    assert!(csv.parse(r#"1,"open,3"#).is_err(), "unterminated quote");
    let v = rec(&p("format = \"tsv\"\nkeys = [\"a\", \"b\"]")
        .parse("x y\tz")
        .unwrap());
    assert_eq!(get(&v, "a"), &V::from("x y"));
}

#[test]
fn regex_and_none() {
    let r = p("format = \"regex\"\nexpression = '^(?P<level>\\w+) (?P<msg>.*)$'")
        .parse("WARN disk almost full")
        .unwrap();
    assert_eq!(get(&rec(&r), "level"), &V::from("WARN"));
    let r = p("format = \"none\"").parse("anything at all").unwrap();
    assert_eq!(get(&rec(&r), "message"), &V::from("anything at all"));
}

#[test]
fn bad_configs_name_the_key() {
    let bad = |cfg: &str| {
        let c: ParserConfig = toml::from_str(cfg).unwrap();
        Parser::new(&c, chrono_tz::UTC).unwrap_err().0
    };
    // names and types that are not known are refused while the config is
    // read, at their key
    let refused = |cfg: &str| {
        let e = fuwa_api::ConfigSection::from_toml("input[0]", cfg)
            .unwrap()
            .parse::<ParserConfig>()
            .unwrap_err();
        (e.key, e.message)
    };
    let (key, msg) = refused("format = \"xml\"");
    assert_eq!(key, "input[0].format");
    assert!(
        msg.starts_with("unknown format `xml` (json, ltsv,"),
        "{msg}"
    );
    let (key, msg) = refused("format = \"json\"\ntypes = { a = \"complex\" }");
    assert_eq!(key, "input[0].types.a");
    assert!(msg.starts_with("unknown type `complex`"), "{msg}");
    let (key, msg) = refused("format = \"syslog\"\nmessage_format = \"rfc1\"");
    assert_eq!(key, "input[0].message_format");
    assert!(msg.contains("use auto, rfc3164 or rfc5424"), "{msg}");
    assert_eq!(bad("format = \"regex\""), "expression");
    assert_eq!(bad("format = \"regex\"\nexpression = \"(\""), "expression");
    assert_eq!(
        bad("format = \"regex\"\nexpression = \"no groups\""),
        "expression"
    );
    assert_eq!(bad("format = \"csv\""), "keys");
    assert_eq!(
        bad("format = \"json\"\ntime_key = \"t\"\ntime_format = \"%Q\""),
        "time_format"
    );
}

#[test]
fn unparsed_lines_keep_their_text() {
    let v = rmpv::decode::read_value(&mut &unparsed_record("raw line", "no match")[..]).unwrap();
    assert_eq!(get(&v, "message"), &V::from("raw line"));
    assert_eq!(get(&v, "_parse_error"), &V::from("no match"));
}

proptest::proptest! {
    #[test]
    fn parsers_never_panic(line in ".{0,200}") {
        for f in ["format = \"json\"", "format = \"apache2\"", "format = \"nginx\"", "format = \"syslog\"", "format = \"ltsv\"",
                  "format = \"csv\"\nkeys = [\"a\",\"b\"]", "format = \"apache_error\""] {
            if let Ok(r) = p(f).parse(&line) {
                proptest::prop_assert!(rmpv::decode::read_value(&mut &r.record[..]).is_ok());
            }
        }
    }

    #[test]
    fn json_transcoding_matches_serde_json(v in proptest::collection::hash_map("[a-z]{1,8}", proptest::prelude::any::<i64>(), 0..20)) {
        let line = serde_json::to_string(&v).unwrap();
        let r = p("format = \"json\"").parse(&line).unwrap();
        let back = rmpv::decode::read_value(&mut &r.record[..]).unwrap();
        proptest::prop_assert_eq!(back.as_map().unwrap().len(), v.len());
        for (k, val) in &v {
            proptest::prop_assert_eq!(get(&back, k), &V::from(*val));
        }
    }
}

/// A tailed line (or an HTTP body, or a field the parser filter reads) is
/// client bytes: nesting as deep as a line can hold is a parse error (the
/// line is kept unparsed), never a stack overflow; what fits the depth
/// bound parses and comes out as msgpack the engine's walkers accept.
#[test]
fn deep_json_is_an_error_not_a_stack_overflow() {
    let parser = p("format = \"json\"");
    for depth in [200usize, 10_000, 1_000_000] {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let line = format!("{{\"x\":{}1{}}}", open.repeat(depth), close.repeat(depth));
            assert!(parser.parse(&line).is_err(), "depth {depth} {open}");
        }
    }
    let ok = format!("{{\"x\":{}1{}}}", "[".repeat(100), "]".repeat(100));
    let r = parser.parse(&ok).expect("100 levels parse");
    assert!(fuwa_api::msgpack::skip(&r.record, 0).is_ok());
}

proptest::proptest! {
    /// Lines biased to depth and length: runs of brackets and braces, long
    /// strings and numbers, cut anywhere.
    #[test]
    fn json_lines_biased_to_depth_never_panic(
        parts in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just("[".repeat(64)),
                proptest::strategy::Just("{\"k\":".repeat(64)),
                proptest::strategy::Just("]".repeat(64)),
                proptest::strategy::Just("}".repeat(64)),
                "\"[ -~]{0,300}\"",
                "-?[0-9]{1,400}(\\.[0-9]{0,40})?([eE][+-]?[0-9]{1,5})?",
                proptest::strategy::Just(",".to_string()),
                proptest::strategy::Just("\\u00".to_string()),
            ],
            0..40,
        ),
        cut in 0usize..20_000,
    ) {
        let parser = p("format = \"json\"");
        let line: String = format!("{{\"x\":{}", parts.concat());
        let line = &line[..line.len().min(cut).max(1)];
        let line = match line.char_indices().last() {
            Some(_) if line.is_char_boundary(line.len()) => line,
            _ => "{",
        };
        if let Ok(r) = parser.parse(line) {
            proptest::prop_assert!(fuwa_api::msgpack::skip(&r.record, 0).is_ok());
        }
    }
}
