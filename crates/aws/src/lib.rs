//! What the AWS outputs (S3, later Firehose) share: building the SDK
//! configuration (region, the default credential chain, an optional
//! assume-role, an endpoint override, timeouts, a rustls/ring HTTP client)
//! and classifying SDK errors into the engine's `Retryable` / `Fatal`.
//!
//! Nothing here touches the network when an output is built: the SDK config
//! is loaded on the first write ([`LazyConfig`]), so an unreachable endpoint
//! or metadata service never stops the agent from starting. Credentials are
//! resolved by the SDK on each request (and cached by it); they are never
//! logged.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use fuwa_api::OutputError;
use tokio::sync::OnceCell;

pub mod classify;

pub use classify::{classify_code, Class};

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
    /// the limit of one request (connect, send, receive)
    pub timeout: Duration,
    pub connect_timeout: Duration,
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
        if let Some(r) = &self.region {
            if r.is_empty() || !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                errs.push((
                    "region",
                    format!("`{r}` is not a region name (e.g. ap-northeast-1)"),
                ));
            }
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
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(s.connect_timeout.min(s.timeout))
        .operation_attempt_timeout(s.timeout)
        .operation_timeout(s.timeout)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts);
    if let Some(r) = &s.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(e) = &s.endpoint {
        loader = loader.endpoint_url(e.clone());
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
    // STS itself goes to AWS, not to the S3 endpoint override.
    let mut sts_conf = base.to_builder();
    sts_conf.set_endpoint_url(None);
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
