//! The EC2 instance metadata kinesis-agent's ADDEC2METADATA adds, read from
//! the instance metadata service (IMDSv2 token first, IMDSv1 when the token
//! call is not supported). A small blocking HTTP/1.1 client over a TCP
//! socket: the parsers have no async runtime, the calls are rare (once per
//! `metadataTTL`, an hour by default) and bounded (1 s to connect, 1 s per
//! read, as the AWS SDKs' IMDS clients, and 64 KiB per answer).
//!
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT` (e.g. `http://127.0.0.1:8080`)
//! overrides the address and `AWS_EC2_METADATA_DISABLED=true` turns the
//! service off, as for the AWS SDKs.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::jackson::{parse_document, JVal};

const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
const TIMEOUT: Duration = Duration::from_secs(1);
const MAX_ANSWER: usize = 64 * 1024;

pub struct Imds {
    /// host:port
    addr: String,
    host: String,
    disabled: bool,
}

impl Imds {
    pub fn from_env() -> Self {
        let ep = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let disabled = std::env::var("AWS_EC2_METADATA_DISABLED")
            .map(|v| v.eq_ignore_ascii_case("true"))
            .unwrap_or(false);
        Self::new(&ep, disabled)
    }

    pub fn new(endpoint: &str, disabled: bool) -> Self {
        let rest = endpoint
            .trim()
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let host = rest.split('/').next().unwrap_or(rest).to_string();
        let addr = if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && (!host.starts_with('[') || host.contains("]:"))
        {
            host.clone()
        } else {
            format!("{host}:80")
        };
        Imds {
            addr,
            host,
            disabled,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.host)
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, String), String> {
        let addr = self
            .addr
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .next()
            .ok_or_else(|| format!("{} resolves to nothing", self.addr))?;
        let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n",
            self.host
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_ANSWER {
                return Err(format!("answer longer than {MAX_ANSWER} bytes"));
            }
            if let Some(done) = complete(&buf) {
                buf.truncate(done);
                break;
            }
        }
        let head_end = find(&buf, b"\r\n\r\n").ok_or("no HTTP answer")?;
        let head = String::from_utf8_lossy(&buf[..head_end]);
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or("no HTTP status")?;
        let body = String::from_utf8_lossy(&buf[head_end + 4..]).into_owned();
        Ok((status, body))
    }

    fn get(&self, path: &str, token: Option<&str>) -> Result<(u16, String), String> {
        match token {
            Some(t) => self.call("GET", path, &[("X-aws-ec2-metadata-token", t)]),
            None => self.call("GET", path, &[]),
        }
    }

    /// kinesis-agent's metadata, in its order: privateIp, availabilityZone,
    /// instanceId, instanceType, accountId, amiId, region,
    /// metadataTimestamp, and `tags` (lower-cased keys) when the instance
    /// exposes its tags in the metadata. kinesis-agent reads the tags with
    /// EC2 DescribeTags and leaves `tags` out when that call fails; fuwa
    /// reads them from the metadata service (the instance's "allow tags in
    /// metadata" option) and leaves them out when they are not there.
    pub fn instance_metadata(&self, now: &str) -> Result<Vec<(String, JVal)>, String> {
        if self.disabled {
            return Err("AWS_EC2_METADATA_DISABLED is set".into());
        }
        let token = match self.call(
            "PUT",
            "/latest/api/token",
            &[("X-aws-ec2-metadata-token-ttl-seconds", "21600")],
        ) {
            Ok((200, t)) => Some(t.trim().to_string()),
            // IMDSv1 only (older instances, some stand-ins)
            Ok((403..=405, _)) => None,
            Ok((code, _)) => return Err(format!("token request answered {code}")),
            Err(e) => return Err(e),
        };
        let (code, doc) = self.get(
            "/latest/dynamic/instance-identity/document",
            token.as_deref(),
        )?;
        if code != 200 {
            return Err(format!("identity document request answered {code}"));
        }
        let doc = parse_document(&doc, false)
            .map_err(|e| format!("identity document is not JSON: {e}"))?;
        let field = |k: &str| doc.get(k).cloned().unwrap_or(JVal::Null);
        let mut m = vec![
            ("privateIp".to_string(), field("privateIp")),
            ("availabilityZone".to_string(), field("availabilityZone")),
            ("instanceId".to_string(), field("instanceId")),
            ("instanceType".to_string(), field("instanceType")),
            ("accountId".to_string(), field("accountId")),
            ("amiId".to_string(), field("imageId")),
            ("region".to_string(), field("region")),
            ("metadataTimestamp".to_string(), JVal::Str(now.to_string())),
        ];
        if let Ok((200, keys)) = self.get("/latest/meta-data/tags/instance", token.as_deref()) {
            let mut tags = Vec::new();
            for k in keys
                .lines()
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .take(64)
            {
                if let Ok((200, v)) = self.get(
                    &format!("/latest/meta-data/tags/instance/{}", path_escape(k)),
                    token.as_deref(),
                ) {
                    JVal::put(&mut tags, k.to_lowercase(), JVal::Str(v));
                }
            }
            m.push(("tags".to_string(), JVal::Obj(tags)));
        }
        Ok(m)
    }
}

fn path_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// The length of a full answer once head and `Content-Length` body are in.
fn complete(buf: &[u8]) -> Option<usize> {
    let end = find(buf, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())?;
    (buf.len() >= end + 4 + len).then_some(end + 4 + len)
}
