//! kinesis-agent's own DataConverterTest cases (tst/com/amazon/kinesis/
//! streaming/agent/processing/processors/DataConverterTest.java), each
//! expected record as that test expects it, plus the JSON and regex details
//! the converters rely on.

use super::jackson::{java_double, parse_document, write_compact, write_pretty};
use super::java_regex;
use super::*;

fn run(opts: &str, input: &str) -> Outcome {
    let c = Chain::new(opts).unwrap_or_else(|e| panic!("{opts}: {e}"));
    // kinesis-agent's tests feed the record with or without its newline;
    // the tail input hands the chain a line without it
    c.apply(input.strip_suffix('\n').unwrap_or(input))
}

fn sends(opts: &str, input: &str, exp: &str) {
    assert_eq!(
        run(opts, input),
        Outcome::Send(exp.to_string()),
        "{opts} on {input:?}"
    );
}

#[test]
fn single_line_escape_new_line() {
    let data = "{\n   \"a\": {\n           \"b\": 1,\n           \"c\": null,\n           \"d\": true\n    },\n   \"e\": \"f\",\n   \"g\": 2\n     }\n";
    let exp = "{\\\\n\"a\": {\\\\n\"b\": 1,\\\\n\"c\": null,\\\\n\"d\": true\\\\n},\\\\n\"e\": \"f\",\\\\n\"g\": 2\\\\n}\n";
    sends(
        r#"[{"optionName":"SINGLELINE","parseOptions":["ESCAPE_NEW_LINE"]}]"#,
        data,
        exp,
    );
    // default: trimmed lines joined with nothing
    sends(r#"[{"optionName":"SINGLELINE"}]"#, " a \n  b\n", "ab\n");
    sends(
        r#"[{"optionName":"SINGLELINE","parseOptions":["NO_TRIM"]}]"#,
        " a \n  b\n",
        " a   b\n",
    );
}

const CSV4: &str =
    r#"[{"optionName":"CSVTOJSON","customFieldNames":["column1","column2","column3","column4"]}]"#;

#[test]
fn csv_to_json() {
    sends(CSV4, "value1, value2,valu\ne3,    value4\n", "{\"column1\":\"value1\",\"column2\":\" value2\",\"column3\":\"valu\\ne3\",\"column4\":\"    value4\"}\n");
    sends(CSV4, "value1, value2,value3\n", "{\"column1\":\"value1\",\"column2\":\" value2\",\"column3\":\"value3\",\"column4\":null}\n");
    sends(CSV4, "value1,value2,value3,value4,value5\n", "{\"column1\":\"value1\",\"column2\":\"value2\",\"column3\":\"value3\",\"column4\":\"value4\"}\n");
    // String.split drops trailing empty columns: they become null
    sends(
        CSV4,
        "a,,b,\n",
        "{\"column1\":\"a\",\"column2\":\"\",\"column3\":\"b\",\"column4\":null}\n",
    );
}

#[test]
fn csv_to_json_tsv() {
    let opts = r#"[{"optionName":"CSVTOJSON","customFieldNames":["column1","column2","column3","column4"],"delimiter":"\\t"}]"#;
    sends(opts, "value1\t value2\tvalue3\t    value4\n", "{\"column1\":\"value1\",\"column2\":\" value2\",\"column3\":\"value3\",\"column4\":\"    value4\"}\n");
    // a regular expression as delimiter, as String.split takes it
    let opts = r#"[{"optionName":"CSVTOJSON","customFieldNames":["a","b","c"],"delimiter":"\\s*\\|\\s*"}]"#;
    sends(opts, "x | y|z", "{\"a\":\"x\",\"b\":\"y\",\"c\":\"z\"}\n");
}

const APACHE_LINE: &str = "123.45.67.89 - - [27/Oct/2000:09:27:09 -0400] \"GET /java/javaResources.html HTTP/1.0\" 200 10450";
const COMMON_EXP: &str = "{\"host\":\"123.45.67.89\",\"ident\":null,\"authuser\":null,\"datetime\":\"27/Oct/2000:09:27:09 -0400\",\"request\":\"GET /java/javaResources.html HTTP/1.0\",\"response\":\"200\",\"bytes\":\"10450\"}\n";

#[test]
fn combined_apache_log() {
    let opts = r#"[{"optionName":"LOGTOJSON","logFormat":"COMBINEDAPACHELOG"}]"#;
    let line = format!("{APACHE_LINE} \"-\" \"Mozilla/4.6 [en] (X11; U; OpenBSD 2.8 i386; Nav)\" \"ANY_RANDOM_DATA\"");
    sends(opts, &line, "{\"host\":\"123.45.67.89\",\"ident\":null,\"authuser\":null,\"datetime\":\"27/Oct/2000:09:27:09 -0400\",\"request\":\"GET /java/javaResources.html HTTP/1.0\",\"response\":\"200\",\"bytes\":\"10450\",\"referer\":null,\"agent\":\"Mozilla/4.6 [en] (X11; U; OpenBSD 2.8 i386; Nav)\"}\n");
}

#[test]
fn common_apache_log() {
    let opts = r#"[{"optionName":"LOGTOJSON","logFormat":"COMMONAPACHELOG"}]"#;
    sends(
        opts,
        &format!("{APACHE_LINE} \"-\" \"Mozilla/4.6 [en] (X11; U; OpenBSD 2.8 i386; Nav)\""),
        COMMON_EXP,
    );
    sends(opts, APACHE_LINE, COMMON_EXP);
    sends(
        opts,
        &APACHE_LINE.replace("123.45.67.89", "lj1036.inktomisearch.com"),
        &COMMON_EXP.replace("123.45.67.89", "lj1036.inktomisearch.com"),
    );
    // invalid: filtered out
    let short = "123.45.67.89 - - [27/Oct/2000:09:27:09 -0400] \"GET /java/javaResources.html HTTP/1.0\" 200";
    assert_eq!(run(opts, short), Outcome::Skip);
}

#[test]
fn apache_error_log() {
    let opts = r#"[{"optionName":"LOGTOJSON","logFormat":"APACHEERRORLOG"}]"#;
    sends(opts, "[Fri Sep 09 10:42:29.902022 2011] [core:error] [pid 35708:tid 4328636416] [client 72.15.99.187] File does not exist: /usr/local/apache2/htdocs/favicon.ico",
        "{\"timestamp\":\"Fri Sep 09 10:42:29.902022 2011\",\"module\":\"core\",\"severity\":\"error\",\"processid\":\"35708\",\"threadid\":\"4328636416\",\"client\":\"72.15.99.187\",\"message\":\"File does not exist: /usr/local/apache2/htdocs/favicon.ico\"}\n");
    sends(opts, "[Fri Sep 09 10:42:29 2011] [core:error] [pid 35708] [client 72.15.99.187] File does not exist: /usr/local/apache2/htdocs/favicon.ico",
        "{\"timestamp\":\"Fri Sep 09 10:42:29 2011\",\"module\":\"core\",\"severity\":\"error\",\"processid\":\"35708\",\"threadid\":null,\"client\":\"72.15.99.187\",\"message\":\"File does not exist: /usr/local/apache2/htdocs/favicon.ico\"}\n");
    sends(opts, "[Fri Sep 09 10:42:29.902022 2011] [error] [pid 35708:tid 4328636416] [client 72.15.99.187:12345] File does not exist: /usr/local/apache2/htdocs/favicon.ico",
        "{\"timestamp\":\"Fri Sep 09 10:42:29.902022 2011\",\"module\":null,\"severity\":\"error\",\"processid\":\"35708\",\"threadid\":\"4328636416\",\"client\":\"72.15.99.187:12345\",\"message\":\"File does not exist: /usr/local/apache2/htdocs/favicon.ico\"}\n");
}

#[test]
fn custom_names_and_pattern() {
    let opts = r#"[{"optionName":"LOGTOJSON","logFormat":"COMMONAPACHELOG","customFieldNames":["column1","column2","column3","column4","column5","column6","column7"]}]"#;
    sends(opts, APACHE_LINE, "{\"column1\":\"123.45.67.89\",\"column2\":null,\"column3\":null,\"column4\":\"27/Oct/2000:09:27:09 -0400\",\"column5\":\"GET /java/javaResources.html HTTP/1.0\",\"column6\":\"200\",\"column7\":\"10450\"}\n");
    let opts = r#"[{"optionName":"LOGTOJSON","logFormat":"COMMONAPACHELOG","matchPattern":"^([\\d.]+) (\\S+) (\\S+) \\[([\\w:/]+\\s[+\\-]\\d{4})\\] \"(.+?)\" (\\d{3})","customFieldNames":["column1","column2","column3","column4","column5","column6"]}]"#;
    let line = "123.45.67.89 - - [27/Oct/2000:09:27:09 -0400] \"GET /java/javaResources.html HTTP/1.0\" 200";
    sends(opts, line, "{\"column1\":\"123.45.67.89\",\"column2\":null,\"column3\":null,\"column4\":\"27/Oct/2000:09:27:09 -0400\",\"column5\":\"GET /java/javaResources.html HTTP/1.0\",\"column6\":\"200\"}\n");
    // wrong number of names: refused as kinesis-agent refuses it
    assert!(Chain::new(
        r#"[{"optionName":"LOGTOJSON","logFormat":"SYSLOG","customFieldNames":["a"]}]"#
    )
    .is_err());
    assert!(Chain::new(
        r#"[{"optionName":"LOGTOJSON","logFormat":"SYSLOG","matchPattern":"(.*)"}]"#
    )
    .is_err());
    // a pattern with more groups than names skips every line
    let opts = r#"[{"optionName":"LOGTOJSON","logFormat":"SYSLOG","matchPattern":"(a)(b)","customFieldNames":["x"]}]"#;
    assert_eq!(run(opts, "ab"), Outcome::Skip);
}

#[test]
fn syslog() {
    let opts = r#"[{"optionName":"LOGTOJSON","logFormat":"SYSLOG"}]"#;
    sends(opts, "Mar 12 12:00:08 server2 rcd[308]: Loaded 12 packages in 'ximian-red-carpet|351' (0.01878 seconds) ",
        "{\"timestamp\":\"Mar 12 12:00:08\",\"hostname\":\"server2\",\"program\":\"rcd\",\"processid\":\"308\",\"message\":\"Loaded 12 packages in 'ximian-red-carpet|351' (0.01878 seconds) \"}\n");
    sends(opts, "Mar 12 12:01:02 server4 snort: Ports to decode telnet on: 21 23 25 119",
        "{\"timestamp\":\"Mar 12 12:01:02\",\"hostname\":\"server4\",\"program\":\"snort\",\"processid\":null,\"message\":\"Ports to decode telnet on: 21 23 25 119\"}\n");
    let opts = r#"[{"optionName":"LOGTOJSON","logFormat":"RFC3339SYSLOG"}]"#;
    sends(opts, "2016-08-09T12:34:56.789+09:00 host1 sshd[42]: Accepted - key",
        "{\"timestamp\":\"2016-08-09T12:34:56.789+09:00\",\"hostname\":\"host1\",\"program\":\"sshd\",\"processid\":\"42\",\"message\":\"Accepted - key\"}\n");
}

#[test]
fn add_metadata() {
    // kinesis-agent's test builds the metadata as a HashMap, which iterates
    // foo before key; a JSON config keeps the order it is written in
    let opts = r#"[{"optionName":"ADDMETADATA","metadata":{"foo":{"bar":"bas"},"key":"value"}}]"#;
    sends(opts, "This is the data", "{\"metadata\":{\"foo\":{\"bar\":\"bas\"},\"key\":\"value\"},\"data\":\"This is the data\"}\n");
    let opts = r#"[{"optionName":"ADDMETADATA","timestamp":"true","metadata":{"n":1.50,"i":-0}}]"#;
    let Outcome::Send(s) = run(opts, "x") else {
        panic!()
    };
    let re = regex::Regex::new(r#"^\{"ts":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","metadata":\{"n":1\.5,"i":0\},"data":"x"\}\n$"#).unwrap();
    assert!(re.is_match(&s), "{s}");
}

#[test]
fn chains_run_in_order() {
    let opts = r#"[{"optionName":"SINGLELINE"},{"optionName":"CSVTOJSON","customFieldNames":["a","b"]},{"optionName":"ADDMETADATA","metadata":"m"}]"#;
    sends(
        opts,
        " 1,\n 2\n",
        "{\"metadata\":\"m\",\"data\":\"{\\\"a\\\":\\\"1\\\",\\\"b\\\":\\\"2\\\"}\"}\n",
    );
    // a LOGTOJSON skip ends the chain
    let opts = r#"[{"optionName":"LOGTOJSON","logFormat":"SYSLOG"},{"optionName":"ADDMETADATA"}]"#;
    assert_eq!(run(opts, "not syslog"), Outcome::Skip);
    sends(
        r#"[{"optionName":"ADDBRACKETS"}]"#,
        "hello there!! :)",
        "{hello there!! :)\n}",
    );
}

#[test]
fn ec2_metadata_without_a_service_passes_records() {
    // a port nothing listens on
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let ec2 = Ec2 {
        imds: imds::Imds::new(&format!("http://{addr}"), false),
        ttl: Duration::from_secs(3600),
        state: Mutex::new((None, Vec::new())),
    };
    let c = Chain {
        convs: vec![Conv::AddEc2 {
            ec2: Box::new(ec2),
            printer: Printer::Compact,
        }],
    };
    assert_eq!(c.apply("{\"a\":1}"), Outcome::Send("{\"a\":1}\n".into()));
}

#[test]
fn pretty_print_is_jacksons() {
    let v = parse_document(r#"{"a":"b","c":{"d":null,"e":[1,2.0,[]],"f":{}}}"#, false).unwrap();
    let mut s = String::new();
    write_pretty(&mut s, &v, 0);
    assert_eq!(s, "{\n  \"a\" : \"b\",\n  \"c\" : {\n    \"d\" : null,\n    \"e\" : [ 1, 2.0, [ ] ],\n    \"f\" : { }\n  }\n}");
}

#[test]
fn jackson_escapes_and_numbers() {
    let v = parse_document(
        "{\"s\":\"\\u0001\\u001f\\b\\f\\n\\/é\\ud83d\\ude00\",\"k\":1,\"k\":2}",
        false,
    )
    .unwrap();
    let mut s = String::new();
    write_compact(&mut s, &v);
    assert_eq!(s, "{\"s\":\"\\u0001\\u001F\\b\\f\\n/é😀\",\"k\":2}");
    for (f, j) in [
        (1.0, "1.0"),
        (0.001, "0.001"),
        (1234567.0, "1234567.0"),
        (1e7, "1.0E7"),
        (1.5e-4, "1.5E-4"),
        (-2.25, "-2.25"),
        (123456789012.0, "1.23456789012E11"),
    ] {
        assert_eq!(java_double(f), j);
    }
    let v = parse_document("/* c */ [1 // x\n, 2] // end", true).unwrap();
    assert_eq!(
        v,
        JVal::Arr(vec![JVal::Num("1".into()), JVal::Num("2".into())])
    );
    assert!(parse_document("[1] x", true).is_err());
    let deep = "[".repeat(10_000);
    assert!(parse_document(&deep, false).is_err());
}

#[test]
fn java_regex_meaning() {
    // \w is ASCII in Java
    let r = java_regex::whole(r"\w+").unwrap();
    assert!(r.is_match("abc_1"));
    assert!(!r.is_match("é"));
    // . stops at \r as in Java
    assert!(!java_regex::whole(".*").unwrap().is_match("a\rb"));
    assert!(java_regex::whole(r"\Qa.b\E").unwrap().is_match("a.b"));
    assert!(!java_regex::whole(r"\Qa.b\E").unwrap().is_match("axb"));
    assert!(java_regex::whole(r"[\w\-]+\b").unwrap().is_match("ab-c"));
    let sp = java_regex::anywhere(",").unwrap();
    assert_eq!(java_regex::split(&sp, ",a,,b,,"), vec!["", "a", "", "b"]);
    assert_eq!(java_regex::split(&sp, "abc"), vec!["abc"]);
    let all = java_regex::anywhere("").unwrap();
    assert_eq!(java_regex::split(&all, "abc"), vec!["a", "b", "c"]);
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// No line makes a chain of every option panic, and what it sends
        /// never ends in the newline the output adds.
        #[test]
        fn no_line_panics(line in "(?s).{0,300}", quote in any::<bool>()) {
            let opts = r#"[{"optionName":"SINGLELINE","parseOptions":["ESCAPE_NEW_LINE"]},
                {"optionName":"CSVTOJSON","customFieldNames":["a","b"],"delimiter":"\\s*[,;]\\s*"},
                {"optionName":"ADDMETADATA","metadata":{"k":[1,2.5,null,{"x":"y"}]},"timestamp":"true"},
                {"optionName":"ADDBRACKETS"}]"#;
            let c = Chain::new(opts).unwrap();
            let line = if quote { format!("\"{line}") } else { line };
            if let Outcome::Send(s) = c.apply(&line) {
                prop_assert!(!s.is_empty());
            }
            for f in ["COMMONAPACHELOG", "COMBINEDAPACHELOG", "APACHEERRORLOG", "SYSLOG", "RFC3339SYSLOG"] {
                let c = Chain::new(&format!(r#"[{{"optionName":"LOGTOJSON","logFormat":"{f}","jsonFormat":"PRETTYPRINT"}}]"#)).unwrap();
                let _ = c.apply(&line);
            }
        }

        /// The JSON reader never panics, and what it reads it writes back
        /// as JSON that reads the same.
        #[test]
        fn json_round_trips(text in "(?s)[\\[\\]{}\",:0-9.eE+\\-a-z\\\\/ \n*]{0,200}") {
            if let Ok(v) = parse_document(&text, true) {
                let mut s = String::new();
                write_compact(&mut s, &v);
                let again = parse_document(&s, false).unwrap();
                let mut s2 = String::new();
                write_compact(&mut s2, &again);
                prop_assert_eq!(s, s2);
            }
        }
    }
}
