//! How to reach AWS: [`AwsOptions`] and [`load_config`].

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

/// How to reach AWS: the standard configuration chain, optionally with an explicit endpoint,
/// region and static credentials (for tests against a local AWS API). Every client has
/// timeouts: a timeout left `None` takes its default ([`AwsOptions::DEFAULT_OPERATION_TIMEOUT`]
/// and the others), so a hung endpoint never stalls a pass.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct AwsOptions {
    /// Endpoint URL override (`http://127.0.0.1:5000`).
    pub endpoint: Option<String>,
    /// Region override.
    pub region: Option<String>,
    /// Static access key id and secret (tests only; production uses the standard chain).
    /// `Debug` shows the key id, never the secret.
    pub static_credentials: Option<(String, String)>,
    /// Deadline of one operation (default [`AwsOptions::DEFAULT_OPERATION_TIMEOUT`]).
    pub operation_timeout: Option<Duration>,
    /// Deadline of one attempt of an operation (default: the operation's deadline, at most
    /// [`AwsOptions::DEFAULT_ATTEMPT_TIMEOUT`]).
    pub attempt_timeout: Option<Duration>,
    /// Deadline of opening a connection (default [`AwsOptions::DEFAULT_CONNECT_TIMEOUT`]).
    pub connect_timeout: Option<Duration>,
    /// Deadline of the first byte of a response (default [`AwsOptions::DEFAULT_READ_TIMEOUT`]).
    pub read_timeout: Option<Duration>,
}

impl std::fmt::Debug for AwsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let creds = self
            .static_credentials
            .as_ref()
            .map(|(id, _)| format!("({id:?}, [redacted])"));
        f.debug_struct("AwsOptions")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("static_credentials", &creds)
            .field("operation_timeout", &self.operation_timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .finish()
    }
}

impl AwsOptions {
    /// The deadline of one operation when none is set.
    pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
    /// The longest deadline of one attempt when none is set.
    pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
    /// The deadline of opening a connection when none is set.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// The deadline of a response's first byte when none is set.
    pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(20);

    /// The standard chain (environment, profile, instance or task role), default timeouts.
    pub fn standard() -> Self {
        Self::default()
    }
    /// A local AWS API at `endpoint` with throwaway credentials.
    pub fn local(endpoint: impl Into<String>) -> Self {
        AwsOptions {
            endpoint: Some(endpoint.into()),
            region: Some("us-east-1".into()),
            static_credentials: Some(("testing".into(), "testing".into())),
            operation_timeout: Some(Duration::from_secs(10)),
            ..Self::default()
        }
    }

    /// The timeouts every client gets: the ones set, defaults for the rest.
    pub fn timeout_config(&self) -> TimeoutConfig {
        let operation = self
            .operation_timeout
            .unwrap_or(Self::DEFAULT_OPERATION_TIMEOUT);
        let attempt = self
            .attempt_timeout
            .unwrap_or(Self::DEFAULT_ATTEMPT_TIMEOUT)
            .min(operation);
        TimeoutConfig::builder()
            .operation_timeout(operation)
            .operation_attempt_timeout(attempt)
            .connect_timeout(
                self.connect_timeout
                    .unwrap_or(Self::DEFAULT_CONNECT_TIMEOUT),
            )
            .read_timeout(self.read_timeout.unwrap_or(Self::DEFAULT_READ_TIMEOUT))
            .build()
    }
}

/// Loads an SDK configuration with [`AwsOptions::timeout_config`]'s timeouts. The SDK's own
/// retries are turned off: flowfail's responder retries reads itself, and stacking retry loops
/// multiplies load during an incident.
pub async fn load_config(opts: &AwsOptions) -> SdkConfig {
    let mut l = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(opts.timeout_config());
    if let Some(e) = &opts.endpoint {
        l = l.endpoint_url(e);
    }
    if let Some(r) = &opts.region {
        l = l.region(aws_config::Region::new(r.clone()));
    }
    if let Some((id, secret)) = &opts.static_credentials {
        l = l.credentials_provider(aws_credential_types::Credentials::new(
            id,
            secret,
            None,
            None,
            "flowfail-static",
        ));
    }
    l.load().await
}
