//! What the AWS outputs (S3, Firehose, Kinesis Data Streams) share:
//! building the SDK configuration (region, the default credential chain or
//! a named profile, an optional assume-role with its own STS endpoint and
//! region, an endpoint override, timeouts, an HTTPS proxy, a rustls/ring
//! HTTP client), classifying SDK errors into the engine's `Retryable` /
//! `Fatal`, the rate guards ([`limit`]) and the batch sender of the
//! Firehose and Kinesis outputs ([`batch`]).
//!
//! Credentials come only from aws-config's providers, never hand-rolled:
//! environment, the shared config/credentials files (`profile`, including
//! `credential_process`), web identity (EKS IRSA: `AWS_WEB_IDENTITY_TOKEN_FILE`
//! and `AWS_ROLE_ARN`), the container provider (ECS and EKS Pod Identity:
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`) and IMDSv2 on EC2. AWS SSO profiles are not built in (the `sso` feature
//! of aws-config adds two SDK crates); `credential_process` covers them.
//!
//! Proxy: the `proxy` key, else `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY`
//! from the environment, with `NO_PROXY`; requests to the instance metadata
//! and container credential addresses never go through the proxy. HTTPS is
//! tunnelled with CONNECT by the SDK's own HTTP client.
//!
//! Nothing here touches the network when an output is built: the SDK config
//! is loaded on the first write ([`LazyClient`]), so an unreachable endpoint
//! or metadata service never stops the agent from starting. Credentials are
//! resolved by the SDK on each request (and cached by it); they are never
//! logged.

use std::time::Duration;

use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::{tls, Connector};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use fuwa_api::OutputError;
use tokio::sync::OnceCell;

pub mod batch;
pub mod classify;
pub mod limit;

pub use classify::{classify_code, Class};
pub use limit::{Aimd, TokenBucket};

/// The AWS settings an output exposes in its config section.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// `None`: the SDK's region chain (AWS_REGION, profile, IMDS)
    pub region: Option<String>,
    /// an endpoint override (S3-compatible stores, tests)
    pub endpoint: Option<String>,
    /// assume this role with STS on top of the default credential chain
    pub role_arn: Option<String>,
    pub role_session_name: Option<String>,
    pub external_id: Option<String>,
    /// where AssumeRole goes (default: the regional STS endpoint)
    pub sts_endpoint: Option<String>,
    /// the region of the STS endpoint (default: `region`)
    pub sts_region: Option<String>,
    /// a profile of the shared config/credentials files (default:
    /// AWS_PROFILE, else `default`)
    pub profile: Option<String>,
    /// `http://[user:pass@]host:port`: every request goes through this
    /// proxy (HTTPS by CONNECT) except the NO_PROXY hosts; unset: the
    /// environment's HTTPS_PROXY / HTTP_PROXY / ALL_PROXY
    pub proxy: Option<String>,
    /// the limit of one request (connect, send, receive)
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

/// The [`AwsSettings`] of an output's config struct, which names the AWS
/// keys as `AwsSettings` does (`timeout` / `connect_timeout` are
/// `HumanDuration`s): `fuwa_aws::aws_settings!(cfg)`.
#[macro_export]
macro_rules! aws_settings {
    ($cfg:expr) => {{
        let c = &$cfg;
        $crate::AwsSettings {
            region: c.region.clone(),
            endpoint: c.endpoint.clone(),
            role_arn: c.role_arn.clone(),
            role_session_name: c.role_session_name.clone(),
            external_id: c.external_id.clone(),
            sts_endpoint: c.sts_endpoint.clone(),
            sts_region: c.sts_region.clone(),
            profile: c.profile.clone(),
            proxy: c.proxy.clone(),
            timeout: c.timeout.0,
            connect_timeout: c.connect_timeout.0,
        }
    }};
}

impl AwsSettings {
    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut errs = Vec::new();
        if let Some(e) = &self.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                errs.push((
                    "endpoint",
                    format!("`{e}` is not a URL: write it as https://host[:port]"),
                ));
            }
        }
        if let Some(e) = &self.sts_endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                errs.push((
                    "sts_endpoint",
                    format!("`{e}` is not a URL: write it as https://sts.REGION.amazonaws.com"),
                ));
            }
        }
        for (key, r) in [("region", &self.region), ("sts_region", &self.sts_region)] {
            if let Some(r) = r {
                if r.is_empty() || !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    errs.push((
                        key,
                        format!("`{r}` is not a region name (e.g. ap-northeast-1)"),
                    ));
                }
            }
        }
        if let Some(p) = &self.profile {
            if p.is_empty() || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
                errs.push(("profile", format!("`{p}` is not a profile name")));
            }
        }
        if let Some(p) = &self.proxy {
            if let Err(e) = proxy_from_key(p) {
                errs.push(("proxy", e));
            }
        }
        if (self.sts_endpoint.is_some() || self.sts_region.is_some()) && self.role_arn.is_none() {
            errs.push((
                if self.sts_endpoint.is_some() {
                    "sts_endpoint"
                } else {
                    "sts_region"
                },
                "only used to assume `role_arn`: set role_arn too, or remove it".to_string(),
            ));
        }
        if let Some(a) = &self.role_arn {
            if !a.starts_with("arn:") {
                errs.push((
                    "role_arn",
                    format!("`{a}` is not an ARN (arn:aws:iam::ACCOUNT:role/NAME)"),
                ));
            }
        }
        if self.timeout.is_zero() {
            errs.push(("timeout", "must be more than zero".to_string()));
        }
        errs
    }
}

/// Loads the SDK configuration: the default credential chain (env, profile,
/// web identity/IRSA, ECS, IMDSv2), wrapped in an `AssumeRoleProvider` when
/// `role_arn` is set. SDK-level retries are off: the engine retries.
pub async fn load(s: &AwsSettings) -> Result<SdkConfig, String> {
    let http = http_client(proxy_config(s.proxy.as_deref(), &|k| {
        std::env::var(k).ok()
    })?);
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(s.connect_timeout.min(s.timeout))
        .operation_attempt_timeout(s.timeout)
        .operation_timeout(s.timeout)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http.clone())
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts.clone());
    if let Some(r) = &s.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(e) = &s.endpoint {
        loader = loader.endpoint_url(e.clone());
    }
    if let Some(p) = &s.profile {
        // as `aws --profile`: the profile's credentials (keys, role_arn +
        // source_profile, credential_process), not the environment's
        let pc = ProviderConfig::without_region()
            .with_http_client(http.clone())
            .with_region(s.region.clone().map(Region::new))
            .with_timeout_config(timeouts)
            .with_retry_config(RetryConfig::disabled());
        let creds = ProfileFileCredentialsProvider::builder()
            .profile_name(p.clone())
            .configure(&pc)
            .build();
        loader = loader.profile_name(p.clone()).credentials_provider(creds);
    }
    let base = loader.load().await;
    if base.region().is_none() {
        return Err(
            "no AWS region: set `region` (or AWS_REGION / a profile region) for this output".into(),
        );
    }
    let Some(role) = &s.role_arn else {
        return Ok(base);
    };
    // STS goes to `sts_endpoint` (else AWS), never to the service's
    // endpoint override, in `sts_region` (else the output's region).
    let mut sts_conf = base.to_builder();
    sts_conf.set_endpoint_url(s.sts_endpoint.clone());
    if let Some(r) = &s.sts_region {
        sts_conf.set_region(Some(Region::new(r.clone())));
    }
    let sts_conf = sts_conf.build();
    let mut b = aws_config::sts::AssumeRoleProvider::builder(role.clone())
        .session_name(
            s.role_session_name
                .clone()
                .unwrap_or_else(|| "fuwa".to_string()),
        )
        .configure(&sts_conf);
    if let Some(x) = &s.external_id {
        b = b.external_id(x.clone());
    }
    let provider = b.build().await;
    Ok(base
        .into_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(provider),
        )
        .build())
}

/// Addresses of the instance metadata service and the ECS / EKS Pod
/// Identity credential endpoints: link-local, never behind a proxy.
const METADATA_HOSTS: &str =
    "169.254.169.254,169.254.170.2,169.254.170.23,fd00:ec2::254,fd00:ec2::23";

fn proxy_from_key(url: &str) -> Result<ProxyConfig, String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "`{url}` is not a proxy URL: write it as http://host:port (or http://user:password@host:port)"
        ));
    }
    ProxyConfig::all(url).map_err(|e| format!("`{url}`: {e}"))
}

/// The proxy to use: the `proxy` key, else the environment's
/// HTTPS_PROXY / HTTP_PROXY / ALL_PROXY (upper or lower case); NO_PROXY and
/// the metadata addresses bypass it. `None`: connect directly.
pub fn proxy_config(
    key: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<ProxyConfig>, String> {
    let var = |name: &str| {
        env(name)
            .or_else(|| env(&name.to_ascii_lowercase()))
            .filter(|v| !v.trim().is_empty())
    };
    let mut bypass = METADATA_HOSTS.to_string();
    if let Some(n) = var("NO_PROXY") {
        bypass.push(',');
        bypass.push_str(&n);
    }
    let cfg = if let Some(url) = key {
        proxy_from_key(url)?
    } else {
        let (https, http, all) = (var("HTTPS_PROXY"), var("HTTP_PROXY"), var("ALL_PROXY"));
        let bad = |k: &str, e: String| format!("{k} in the environment: {e}");
        match (https, http, all) {
            (None, None, None) => return Ok(None),
            (Some(s), Some(h), _) if s != h => {
                // two different proxies: hyper-util's own reading of the
                // environment keeps them apart (NO_PROXY applies, the
                // metadata bypass only if NO_PROXY lists it)
                return Ok(Some(ProxyConfig::from_env()));
            }
            (Some(s), Some(_), _) => {
                ProxyConfig::all(&s).map_err(|e| bad("HTTPS_PROXY", e.to_string()))?
            }
            (Some(s), None, _) => {
                ProxyConfig::https(&s).map_err(|e| bad("HTTPS_PROXY", e.to_string()))?
            }
            (None, Some(h), None) => {
                ProxyConfig::http(&h).map_err(|e| bad("HTTP_PROXY", e.to_string()))?
            }
            (None, Some(h), Some(a)) if h == a => {
                ProxyConfig::all(&a).map_err(|e| bad("ALL_PROXY", e.to_string()))?
            }
            (None, Some(_), Some(_)) => return Ok(Some(ProxyConfig::from_env())),
            (None, None, Some(a)) => {
                ProxyConfig::all(&a).map_err(|e| bad("ALL_PROXY", e.to_string()))?
            }
        }
    };
    Ok(Some(cfg.no_proxy(bypass)))
}

/// The SDK's own hyper client with rustls/ring, through `proxy` if set.
fn http_client(proxy: Option<ProxyConfig>) -> SharedHttpClient {
    let tls = tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring);
    let Some(proxy) = proxy else {
        return aws_smithy_http_client::Builder::new()
            .tls_provider(tls)
            .build_https();
    };
    // the high-level builder has no proxy setting: build each connector as
    // it does (settings and sleep from the runtime), with the proxy added
    aws_smithy_http_client::Builder::new().build_with_connector_fn(move |settings, components| {
        let mut b = Connector::builder();
        b.set_connector_settings(settings.cloned());
        if let Some(c) = components {
            b.set_sleep_impl(c.sleep_impl());
        }
        b.proxy_config(proxy.clone())
            .tls_provider(tls.clone())
            .build()
    })
}

/// An SDK client built on first use, from settings checked at start.
pub struct LazyClient<C> {
    settings: AwsSettings,
    make: MakeClient<C>,
    cell: OnceCell<C>,
}

type MakeClient<C> = Box<dyn Fn(&SdkConfig) -> C + Send + Sync>;

impl<C> LazyClient<C> {
    pub fn new(
        settings: AwsSettings,
        make: impl Fn(&SdkConfig) -> C + Send + Sync + 'static,
    ) -> Self {
        LazyClient {
            settings,
            make: Box::new(make),
            cell: OnceCell::new(),
        }
    }

    /// The client; a failure to build it (e.g. no region) is `Fatal`.
    pub async fn get(&self) -> Result<&C, OutputError> {
        self.cell
            .get_or_try_init(|| async {
                let conf = load(&self.settings).await.map_err(OutputError::Fatal)?;
                Ok((self.make)(&conf))
            })
            .await
    }

    pub fn settings(&self) -> &AwsSettings {
        &self.settings
    }
}

/// Classifies an SDK error. `what` names the operation and object
/// (`PutObject s3://bucket/key`); `hint` adds service-specific advice for
/// a fatal error code (e.g. which IAM action is missing).
pub fn classify_sdk_error<E>(
    err: &SdkError<E, HttpResponse>,
    what: &str,
    hint: impl Fn(&str) -> Option<String>,
) -> OutputError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::TimeoutError(_) => {
            OutputError::Retryable(format!("{what}: timed out (see `timeout`)"))
        }
        SdkError::DispatchFailure(d) => {
            let kind = if d.is_timeout() {
                "timed out"
            } else if d.is_io() {
                "connection error"
            } else {
                "request could not be sent"
            };
            OutputError::Retryable(format!("{what}: {kind}: {}", DisplayErrorContext(err)))
        }
        SdkError::ConstructionFailure(_) => {
            let text = DisplayErrorContext(err).to_string();
            let lower = text.to_ascii_lowercase();
            if lower.contains("credential") || lower.contains("identity") {
                // the credential chain may be waiting for IMDS/ECS/STS
                OutputError::Retryable(format!(
                    "{what}: no AWS credentials could be loaded (env, profile, web identity, ECS, IMDS): {text}"
                ))
            } else {
                OutputError::Fatal(format!("{what}: the request could not be built: {text}"))
            }
        }
        SdkError::ResponseError(r) => {
            let status = r.raw().status().as_u16();
            let class = classify_code(None, Some(status));
            class.error(format!(
                "{what}: unreadable response (HTTP {status}): {}",
                DisplayErrorContext(err)
            ))
        }
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let e = s.err();
            let code = e.code();
            let msg = e.message().unwrap_or("");
            let class = classify_code(code, Some(status));
            let code_txt = code.unwrap_or("no error code");
            let mut text = format!("{what}: {code_txt} (HTTP {status})");
            if !msg.is_empty() {
                text.push_str(": ");
                text.push_str(msg);
            }
            if class == Class::Fatal {
                if let Some(h) = code
                    .and_then(&hint)
                    .or_else(|| classify::generic_hint(code, status))
                {
                    text.push_str(" — ");
                    text.push_str(&h);
                }
            }
            class.error(text)
        }
        _ => OutputError::Retryable(format!("{what}: {}", DisplayErrorContext(err))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn dbg(key: Option<&str>, vars: &[(&str, &str)]) -> Option<String> {
        proxy_config(key, &env(vars))
            .unwrap()
            .map(|p| format!("{p:?}"))
    }

    #[test]
    fn no_proxy_anywhere_connects_directly() {
        assert_eq!(dbg(None, &[]), None);
        assert_eq!(dbg(None, &[("HTTPS_PROXY", " ")]), None);
    }

    #[test]
    fn the_key_wins_and_metadata_always_bypasses() {
        let d = dbg(
            Some("http://proxy.internal:3128"),
            &[("HTTPS_PROXY", "http://other:1"), ("NO_PROXY", ".corp")],
        )
        .unwrap();
        assert!(d.contains("All") && d.contains("proxy.internal"), "{d}");
        assert!(!d.contains("other"), "{d}");
        assert!(
            d.contains("169.254.169.254") && d.contains("169.254.170.23"),
            "{d}"
        );
        assert!(d.contains(".corp"), "{d}");
    }

    #[test]
    fn the_environment_is_read_in_either_case() {
        let d = dbg(
            None,
            &[("https_proxy", "http://p:8080"), ("no_proxy", "localhost")],
        )
        .unwrap();
        assert!(
            d.contains("Https") && d.contains("p:8080") && d.contains("localhost"),
            "{d}"
        );
        let d = dbg(None, &[("HTTP_PROXY", "http://h:1")]).unwrap();
        assert!(d.contains("Http {"), "{d}");
        let d = dbg(
            None,
            &[("HTTP_PROXY", "http://h:1"), ("HTTPS_PROXY", "http://h:1")],
        )
        .unwrap();
        assert!(d.contains("All"), "{d}");
        let d = dbg(
            None,
            &[("HTTP_PROXY", "http://a:1"), ("HTTPS_PROXY", "http://b:1")],
        )
        .unwrap();
        assert!(d.contains("FromEnvironment"), "{d}");
        let d = dbg(None, &[("ALL_PROXY", "http://all:1")]).unwrap();
        assert!(d.contains("All") && d.contains("all:1"), "{d}");
    }

    #[test]
    fn bad_proxy_urls_are_named() {
        assert!(proxy_config(Some("proxy:3128"), &env(&[])).is_err());
        assert!(proxy_config(Some("socks5://p:1"), &env(&[])).is_err());
        assert!(proxy_config(None, &env(&[("HTTPS_PROXY", "http://[bad")])).is_err());
    }

    #[test]
    fn settings_mistakes_are_named() {
        let s = AwsSettings {
            sts_endpoint: Some("sts.amazonaws.com".into()),
            sts_region: Some("us east".into()),
            profile: Some("a b".into()),
            proxy: Some("nope".into()),
            timeout: Duration::from_secs(1),
            ..AwsSettings::default()
        };
        let keys: Vec<&str> = s.validate().into_iter().map(|e| e.0).collect();
        for k in ["sts_endpoint", "sts_region", "profile", "proxy"] {
            assert!(keys.contains(&k), "{k}: {keys:?}");
        }
        let ok = AwsSettings {
            role_arn: Some("arn:aws:iam::1:role/r".into()),
            sts_endpoint: Some("https://sts.ap-northeast-1.amazonaws.com".into()),
            sts_region: Some("ap-northeast-1".into()),
            profile: Some("prod".into()),
            proxy: Some("http://user:pw@127.0.0.1:3128".into()),
            timeout: Duration::from_secs(1),
            ..AwsSettings::default()
        };
        assert!(ok.validate().is_empty(), "{:?}", ok.validate());
    }
}
