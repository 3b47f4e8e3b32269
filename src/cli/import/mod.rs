//! `fuwa import kinesis-agent FILE`: reads amazon-kinesis-agent's
//! `agent.json` as kinesis-agent reads it (comments allowed, numbers and
//! booleans also written as strings) and prints a fuwa config that tails the
//! same files and delivers the same records to the same streams: each flow
//! is a tail input and a `firehose` or `kinesis_streams` output, and its
//! `dataProcessingOptions` run as kinesis-agent runs them
//! (`kinesis_agent_processing`, see crates/parsers/src/kinesis_agent.rs).
//! Whatever has no equivalent is listed at the top of the output (and on
//! stderr), never silently dropped; credentials are never copied.
//! The flows: [`flow`].

mod flow;

use std::fmt::Write as _;

use anyhow::{bail, Result};
use fuwa_parsers::kinesis_agent::jackson::{parse_document, JVal};

/// The translated config and the list of what could not be translated.
pub struct Imported {
    pub toml: String,
    pub untranslated: Vec<String>,
}

/// A TOML basic string.
pub(crate) fn q(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A scalar as kinesis-agent's config reader takes it: a string, or a
/// number or boolean written as one.
pub(crate) fn text(v: &JVal) -> Option<String> {
    match v {
        JVal::Str(s) => Some(s.clone()),
        JVal::Num(n) => Some(n.clone()),
        JVal::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A whole number, also when written as a string (`"1000"`).
pub(crate) fn number(v: &JVal) -> Option<u64> {
    text(v).and_then(|s| s.trim().parse().ok())
}

/// The settings shared by every output (from the top level of agent.json).
#[derive(Default)]
pub(crate) struct Aws {
    pub firehose: Endpoint,
    pub kinesis: Endpoint,
    /// `key = value` lines for the AWS layer (role, STS)
    pub keys: Vec<(String, String)>,
    /// `timeout` / `connect_timeout`
    pub timeouts: Vec<(String, String)>,
}

#[derive(Default, Clone)]
pub(crate) struct Endpoint {
    pub region: Option<String>,
    pub endpoint: Option<String>,
}

/// `firehose.ap-northeast-1.amazonaws.com` (with or without https://) is a
/// region; anything else is an endpoint (https:// added when there is no
/// scheme).
pub(crate) fn endpoint(service: &str, v: &str) -> Endpoint {
    let v = v.trim();
    if v.is_empty() {
        return Endpoint::default();
    }
    let host = v
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_ascii_lowercase();
    let svc = format!("{service}.");
    let svc_fips = format!("{service}-fips.");
    let rest = host
        .strip_prefix(&svc)
        .or_else(|| host.strip_prefix(&svc_fips));
    if let Some(rest) = rest {
        let region = rest
            .strip_suffix(".amazonaws.com")
            .or_else(|| rest.strip_suffix(".amazonaws.com.cn"));
        if let Some(r) = region {
            if !r.is_empty()
                && !r.contains('.')
                && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !host.starts_with(&svc_fips)
            {
                return Endpoint {
                    region: Some(r.to_string()),
                    endpoint: None,
                };
            }
        }
    }
    let url = if v.contains("://") {
        v.to_string()
    } else {
        format!("https://{v}")
    };
    Endpoint {
        region: None,
        endpoint: Some(url),
    }
}

pub fn kinesis_agent(text_in: &str, source: &str) -> Result<Imported> {
    let cfg = match parse_document(text_in, true) {
        Ok(v) => v,
        Err(e) => bail!("{source} is not valid JSON: {e}"),
    };
    let JVal::Obj(top) = &cfg else {
        bail!("{source} is not valid JSON: the top level must be an object");
    };
    let mut notes = Vec::new();
    let mut aws = Aws::default();
    let mut region_keys = (None, None);
    for (k, v) in top {
        let val = text(v).unwrap_or_default();
        match k.as_str() {
            "flows" => {}
            "firehose.endpoint" => aws.firehose = endpoint("firehose", &val),
            "kinesis.endpoint" => aws.kinesis = endpoint("kinesis", &val),
            "firehose.region" => region_keys.0 = Some(val).filter(|s| !s.is_empty()),
            "kinesis.region" => region_keys.1 = Some(val).filter(|s| !s.is_empty()),
            "sts.endpoint" if !val.trim().is_empty() => {
                let e = endpoint("sts", &val);
                match (e.region, e.endpoint) {
                    (Some(r), _) => {
                        aws.keys.push(("sts_endpoint".into(), q(&format!("https://sts.{r}.amazonaws.com"))));
                        aws.keys.push(("sts_region".into(), q(&r)));
                    }
                    (None, Some(ep)) => aws.keys.push(("sts_endpoint".into(), q(&ep))),
                    _ => {}
                }
            }
            "sts.endpoint" => {}
            "assumeRoleARN" if !val.is_empty() => aws.keys.push(("role_arn".into(), q(&val))),
            "assumeRoleExternalId" if !val.is_empty() => {
                aws.keys.push(("external_id".into(), q(&val)))
            }
            "assumeRoleARN" | "assumeRoleExternalId" => {}
            "awsAccessKeyId" | "awsSecretAccessKey" | "awsSessionToken" => notes.push(format!(
                "{k}: not copied. Give fuwa its credentials through the environment \
                 (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, e.g. an EnvironmentFile in the systemd unit), \
                 a profile, or an instance/pod role: fuwa never reads them from its config"
            )),
            k if k.starts_with("userDefinedCredentialsProvider.") => notes.push(format!(
                "{k}: a Java credentials provider cannot be loaded; use the AWS default chain (environment, profile, web identity, ECS/EC2 roles)"
            )),
            "connectionTimeoutMillis" => match number(v) {
                Some(ms) => aws.timeouts.push(("connect_timeout".into(), q(&format!("{ms}ms")))),
                None => notes.push(format!("{k} = {}: not a number", show(v))),
            },
            "socketTimeoutMillis" => match number(v) {
                Some(ms) => aws.timeouts.push(("timeout".into(), q(&format!("{ms}ms")))),
                None => notes.push(format!("{k} = {}: not a number", show(v))),
            },
            k if k.starts_with("cloudwatch.") => notes.push(format!(
                "{k}: fuwa exposes its metrics for Prometheus ([agent.api] bind = ..., GET /metrics) instead of sending them to CloudWatch"
            )),
            "checkpointFile" | "checkpointTimeToLiveDays" => notes.push(format!(
                "{k}: fuwa keeps its read positions under data_dir (tail/<input id>.json); kinesis-agent's checkpoints are not read, so set read_from_head as needed for the first start"
            )),
            k if k.starts_with("log.") => notes.push(format!(
                "{k}: fuwa's own logging is [agent] log_level / log_format; its counters are in /metrics"
            )),
            "maxSendingThreads" | "maxSendingThreadsPerCore" | "sendingThreadsKeepAliveMillis"
            | "sendingThreadsMaxQueueSize" | "maxConnections" | "connectionTTLMillis"
            | "useTcpKeepAlive" | "useHttpGzip" | "shutdownTimeoutMillis" => notes.push(format!(
                "{k} = {}: no equivalent (fuwa's outputs size their own concurrency: max_in_flight, [output.buffer] flush_thread_count; stopping: [agent] shutdown_timeout)",
                show(v)
            )),
            other => notes.push(format!("{other} = {}: unknown key, not translated", show(v))),
        }
    }
    if aws.firehose.region.is_none() && aws.firehose.endpoint.is_none() {
        aws.firehose.region = region_keys.0;
    }
    if aws.kinesis.region.is_none() && aws.kinesis.endpoint.is_none() {
        aws.kinesis.region = region_keys.1;
    }
    let flows = match cfg.get("flows") {
        Some(JVal::Arr(a)) => a.clone(),
        None | Some(JVal::Null) => Vec::new(),
        Some(_) => bail!("{source}: `flows` must be a list"),
    };
    if flows.is_empty() {
        notes.push("no flows: nothing to tail".into());
    }
    let mut body = String::new();
    body.push_str("[agent]\ndata_dir = \"/var/lib/fuwa\"\n");
    for (i, f) in flows.iter().enumerate() {
        flow::translate(i, f, &aws, &mut body, &mut notes)
            .map_err(|e| anyhow::anyhow!("{source}: flows[{i}]: {e}"))?;
    }
    let mut out = String::new();
    let _ = writeln!(out, "# Translated by `fuwa import kinesis-agent {source}`.");
    if !notes.is_empty() {
        out.push_str("# Not translated (check these by hand):\n");
        for n in &notes {
            let _ = writeln!(out, "#   - {}", n.replace('\n', " "));
        }
    }
    out.push_str(&body);
    Ok(Imported {
        toml: out,
        untranslated: notes,
    })
}

/// A value for a note: its JSON text.
pub(crate) fn show(v: &JVal) -> String {
    let mut s = String::new();
    fuwa_parsers::kinesis_agent::write_compact(&mut s, v);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_become_regions_or_endpoints() {
        let r = |s: &str| endpoint("firehose", s);
        assert_eq!(
            r("firehose.ap-northeast-1.amazonaws.com").region.as_deref(),
            Some("ap-northeast-1")
        );
        assert_eq!(
            r("https://firehose.us-west-2.amazonaws.com/")
                .region
                .as_deref(),
            Some("us-west-2")
        );
        assert_eq!(
            r("firehose.cn-north-1.amazonaws.com.cn").region.as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(
            r("vpce-1234.firehose.us-east-1.vpce.amazonaws.com")
                .endpoint
                .as_deref(),
            Some("https://vpce-1234.firehose.us-east-1.vpce.amazonaws.com")
        );
        assert_eq!(
            r("http://127.0.0.1:4573").endpoint.as_deref(),
            Some("http://127.0.0.1:4573")
        );
        assert_eq!(
            r("firehose-fips.us-east-1.amazonaws.com")
                .endpoint
                .as_deref(),
            Some("https://firehose-fips.us-east-1.amazonaws.com")
        );
        assert!(r("").region.is_none() && r("").endpoint.is_none());
    }

    #[test]
    fn strings_for_numbers() {
        assert_eq!(number(&JVal::Str(" 1000".into())), Some(1000));
        assert_eq!(number(&JVal::Num("5".into())), Some(5));
        assert_eq!(number(&JVal::Str("x".into())), None);
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(q("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
