#![doc = include_str!("../README.md")]

use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, Utc};
use flowfail_core::{
    Bundle, BundleMeta, BundleStore, BundleVersion, Error, ErrorKind, LogBatch, LogEvent, LogQuery,
    LogSource, Result, TaskId,
};

/// Re-exported so callers can build an [`aws_config::SdkConfig`] themselves.
pub use aws_config::SdkConfig;

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

fn status_of<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// The text between `<tag>` and `</tag>` in an XML error body.
fn xml_element<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let start = body.find(&format!("<{tag}>"))? + tag.len() + 2;
    let len = body[start..].find(&format!("</{tag}>"))?;
    Some(body[start..start + len].trim())
}

/// What the server said: its error code and message. When the SDK could not parse the body
/// (moto answers some JSON APIs in XML), the `Code` and `Message` elements of the raw body;
/// nothing else of a body is ever taken, since the rest can echo request details.
fn server_words<E>(e: &SdkError<E, HttpResponse>) -> (String, String)
where
    E: ProvideErrorMetadata,
{
    let (mut code, mut message) = match e {
        SdkError::ServiceError(se) => (
            se.err().code().unwrap_or("").to_owned(),
            se.err().message().unwrap_or("").to_owned(),
        ),
        _ => (String::new(), String::new()),
    };
    if let Some(body) = e
        .raw_response()
        .and_then(|r| r.body().bytes())
        .map(String::from_utf8_lossy)
    {
        if code.is_empty() {
            code = xml_element(&body, "Code").unwrap_or("").to_owned();
        }
        if message.is_empty() {
            message = xml_element(&body, "Message").unwrap_or("").to_owned();
        }
    }
    let code = if code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.') {
        code
    } else {
        String::new()
    };
    (code, flowfail_core::model::sanitize(&message, 300))
}

/// `e` and its causes, `: `-separated, each said once (`dispatch failure: io error: …:
/// Connection refused (os error 111)`), without the debug dump of `DisplayErrorContext`.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = c.source();
    }
    out
}

fn sdk_err<E>(op: &'static str, backend: &'static str, e: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = status_of(&e);
    let (code, words) = server_words(&e);
    let by_code = if code.contains("NotFound") || code.starts_with("NoSuch") {
        Some((ErrorKind::NotFound, false))
    } else if code.contains("Throttl") || code == "SlowDown" || code.contains("LimitExceeded") {
        Some((ErrorKind::RateLimited, true))
    } else if code.contains("AccessDenied")
        || code.contains("Unauthorized")
        || code == "ExpiredToken"
        || code == "InvalidAccessKeyId"
        || code == "SignatureDoesNotMatch"
        || code == "UnrecognizedClientException"
    {
        Some((ErrorKind::PermissionDenied, false))
    } else {
        None
    };
    let (kind, transient) = match (&e, status) {
        _ if by_code.is_some() => by_code.unwrap_or((ErrorKind::Unexpected, false)),
        (SdkError::TimeoutError(_), _) => (ErrorKind::Timeout, true),
        (SdkError::DispatchFailure(_), _) => (ErrorKind::Unavailable, true),
        (SdkError::ConstructionFailure(_), _) => (ErrorKind::InvalidInput, false),
        (_, Some(404)) => (ErrorKind::NotFound, false),
        (_, Some(409 | 412)) => (ErrorKind::Conflict, false),
        (_, Some(401 | 403)) => (ErrorKind::PermissionDenied, false),
        (_, Some(429 | 503)) => (ErrorKind::RateLimited, true),
        (_, Some(500..=599)) => (ErrorKind::Unavailable, true),
        (SdkError::ResponseError(_), _) => (ErrorKind::Unavailable, true),
        _ => (ErrorKind::Unexpected, false),
    };
    let said = if words.is_empty() {
        String::new()
    } else {
        format!(": {words}")
    };
    let msg = match (status, code.as_str()) {
        (Some(s), "") => format!("HTTP {s}{said}"),
        (Some(s), c) => format!("HTTP {s} {c}{said}"),
        (None, _) => causes(&e),
    };
    Error::new(kind, msg)
        .with_operation(op)
        .with_backend(backend)
        .with_source(e)
        .transient_if(transient)
}

/// A failed GET: `NoSuchKey` (or a 404 without a code) is the object missing; anything else,
/// `NoSuchBucket` included, is the server's error with its code and message.
fn get_err(
    op: &'static str,
    what: &str,
    e: SdkError<aws_sdk_s3::operation::get_object::GetObjectError, HttpResponse>,
) -> Error {
    let code = e.as_service_error().and_then(|s| s.code());
    let missing = e.as_service_error().is_some_and(|s| s.is_no_such_key())
        || (status_of(&e) == Some(404) && code.is_none_or(|c| c == "NoSuchKey"));
    if missing {
        return Error::not_found(format!("{what} not found"))
            .with_operation(op)
            .with_backend("s3");
    }
    sdk_err(op, "s3", e)
}

// ---------------------------------------------------------------------------------------------
// CloudWatch Logs

/// [`LogSource`] over CloudWatch Logs `FilterLogEvents`.
#[derive(Debug, Clone)]
pub struct CloudWatchLogSource {
    client: aws_sdk_cloudwatchlogs::Client,
    log_group: String,
    max_pages: usize,
}

impl CloudWatchLogSource {
    /// The runbook's log group, `/aws/lambda/flowengine`.
    pub const DEFAULT_LOG_GROUP: &'static str = "/aws/lambda/flowengine";

    /// A source reading `log_group`, at most 50 pages per query.
    pub fn new(config: &SdkConfig, log_group: impl Into<String>) -> Self {
        CloudWatchLogSource {
            client: aws_sdk_cloudwatchlogs::Client::new(config),
            log_group: log_group.into(),
            max_pages: 50,
        }
    }

    /// Bounds the pages read per query.
    pub fn max_pages(mut self, n: usize) -> Self {
        self.max_pages = n.max(1);
        self
    }

    /// The client, for setup in tests and tools.
    pub fn client(&self) -> &aws_sdk_cloudwatchlogs::Client {
        &self.client
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

#[async_trait]
impl LogSource for CloudWatchLogSource {
    async fn errors(&self, q: &LogQuery) -> Result<LogBatch> {
        let mut req = self
            .client
            .filter_log_events()
            .log_group_name(&self.log_group)
            .start_time(ms(q.start))
            // CloudWatch's end time is inclusive; the port's window is half-open.
            .end_time(ms(q.end) - 1)
            .limit(i32::try_from(q.max_events.clamp(1, 10_000)).unwrap_or(10_000));
        if !q.pattern.is_empty() {
            req = req.filter_pattern(&q.pattern);
        }
        let mut pages = req.into_paginator().send();
        let mut events = Vec::new();
        let mut truncated = false;
        let mut read = 0usize;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_err("logs.errors", "cloudwatch", e))?;
            read += 1;
            for e in page.events() {
                let (Some(ts), Some(msg)) = (e.timestamp(), e.message()) else {
                    continue;
                };
                let Some(at) = DateTime::<Utc>::from_timestamp_millis(ts) else {
                    continue;
                };
                if at < q.start || at >= q.end {
                    continue;
                }
                if events.len() == q.max_events {
                    truncated = true;
                    break;
                }
                events.push(LogEvent::new(at, msg));
            }
            if truncated {
                break;
            }
            if read >= self.max_pages {
                // More pages may remain: what we have is a sample, and says so.
                truncated = page.next_token().is_some();
                break;
            }
        }
        events.sort_by_key(|e| e.timestamp);
        Ok(LogBatch::new(events, truncated))
    }
}

// ---------------------------------------------------------------------------------------------
// S3

/// [`BundleStore`] over S3: live bundles at `{prefix}{task_id}.json` in the bucket (default
/// `context-bundles`), archives at `{archive_prefix}{task_id}.{sha256}.json`. Keys are built
/// only from a validated [`TaskId`] and a hex checksum.
#[derive(Debug, Clone)]
pub struct S3BundleStore {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    archive_prefix: String,
}

impl S3BundleStore {
    /// The runbook's bucket, `context-bundles`.
    pub const DEFAULT_BUCKET: &'static str = "context-bundles";

    /// A store in `bucket` with no key prefix and archives under `archive/`. Path-style
    /// addressing is used when an endpoint override is configured (local AWS APIs need it).
    pub fn new(config: &SdkConfig, bucket: impl Into<String>) -> Self {
        let path_style = config.endpoint_url().is_some();
        let conf = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(path_style)
            .build();
        S3BundleStore {
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket: bucket.into(),
            prefix: String::new(),
            archive_prefix: "archive/".into(),
        }
    }

    /// Sets the live bundles' key prefix.
    pub fn prefix(mut self, p: impl Into<String>) -> Self {
        self.prefix = p.into();
        self
    }

    /// Sets the archives' key prefix.
    pub fn archive_prefix(mut self, p: impl Into<String>) -> Self {
        self.archive_prefix = p.into();
        self
    }

    /// The client, for setup in tests and tools.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The live key of a task's bundle.
    pub fn key(&self, id: &TaskId) -> String {
        format!("{}{}.json", self.prefix, id.as_str())
    }

    fn archive_key(&self, id: &TaskId, checksum: &str) -> Result<String> {
        if checksum.len() != 64 || !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(
                Error::invalid_input("archive checksum must be 64 hex digits").with_backend("s3"),
            );
        }
        Ok(format!(
            "{}{}.{}.json",
            self.archive_prefix,
            id.as_str(),
            checksum.to_ascii_lowercase()
        ))
    }

    /// Why a HEAD of `id`'s bundle was refused or found nothing. A HEAD answer has no body,
    /// so one byte is asked for with GET (the same `s3:GetObject` permission) to hear the
    /// server's reason: `NoSuchKey` (the bundle is missing), `NoSuchBucket`, `AccessDenied`.
    /// `None` when the GET succeeds (the bundle appeared meanwhile) or says nothing more.
    async fn why_absent(&self, id: &TaskId, op: &'static str) -> Option<Error> {
        let r = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(id))
            .range("bytes=0-0")
            .send()
            .await;
        match r {
            Ok(_) => None,
            Err(e) if e.as_service_error().and_then(|s| s.code()).is_some() => {
                Some(get_err(op, &format!("bundle {id}"), e))
            }
            Err(_) => None,
        }
    }

    async fn read(
        &self,
        key: &str,
        max: u64,
        op: &'static str,
        what: String,
    ) -> Result<(Vec<u8>, Option<String>)> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) => return Err(get_err(op, &what, e)),
        };
        let too_large = |n: u64| {
            Error::new(
                ErrorKind::TooLarge,
                format!("{what} is {n} bytes, over the {max}-byte limit"),
            )
            .with_operation(op)
            .with_backend("s3")
        };
        if let Some(n) = out.content_length().and_then(|n| u64::try_from(n).ok())
            && n > max
        {
            return Err(too_large(n));
        }
        let etag = out.e_tag().map(str::to_owned);
        let mut body = out.body;
        let mut buf = Vec::new();
        while let Some(chunk) = body.try_next().await.map_err(|e| {
            Error::new(ErrorKind::Unavailable, format!("reading {what}: {e}"))
                .with_operation(op)
                .with_backend("s3")
                .transient()
        })? {
            if (buf.len() + chunk.len()) as u64 > max {
                return Err(too_large((buf.len() + chunk.len()) as u64));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok((buf, etag))
    }
}

#[async_trait]
impl BundleStore for S3BundleStore {
    async fn head(&self, id: &TaskId) -> Result<BundleMeta> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.key(id))
            .send()
            .await
        {
            Ok(o) => {
                let size = o
                    .content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0);
                let etag = o.e_tag().unwrap_or_default().to_owned();
                Ok(BundleMeta::new(size, BundleVersion(etag)))
            }
            Err(e) => {
                if matches!(status_of(&e), Some(403 | 404))
                    && let Some(why) = self.why_absent(id, "bundle.head").await
                {
                    return Err(why);
                }
                if e.as_service_error().is_some_and(|s| s.is_not_found())
                    || status_of(&e) == Some(404)
                {
                    Err(Error::not_found(format!("bundle {id} not found"))
                        .with_operation("bundle.head")
                        .with_backend("s3"))
                } else {
                    Err(sdk_err("bundle.head", "s3", e))
                }
            }
        }
    }

    async fn get(&self, id: &TaskId, max_bytes: u64) -> Result<Bundle> {
        let (bytes, etag) = self
            .read(
                &self.key(id),
                max_bytes,
                "bundle.get",
                format!("bundle {id}"),
            )
            .await?;
        let etag = etag.ok_or_else(|| {
            Error::new(ErrorKind::Unexpected, "S3 returned no ETag")
                .with_operation("bundle.get")
                .with_backend("s3")
        })?;
        Ok(Bundle::new(bytes, BundleVersion(etag)))
    }

    async fn put_archive(&self, id: &TaskId, checksum: &str, bytes: &[u8]) -> Result<()> {
        let key = self.archive_key(id, checksum)?;
        let r = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(bytes.to_vec()))
            .content_type("application/json")
            .if_none_match("*")
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if matches!(status_of(&e), Some(412 | 409)) => Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("archive {checksum} of {id} already exists"),
            )
            .with_operation("bundle.put_archive")
            .with_backend("s3")),
            Err(e) => Err(sdk_err("bundle.put_archive", "s3", e)),
        }
    }

    async fn get_archive(&self, id: &TaskId, checksum: &str, max_bytes: u64) -> Result<Vec<u8>> {
        let key = self.archive_key(id, checksum)?;
        Ok(self
            .read(
                &key,
                max_bytes,
                "bundle.get_archive",
                format!("archive {checksum} of {id}"),
            )
            .await?
            .0)
    }

    async fn put_if_version(
        &self,
        id: &TaskId,
        bytes: &[u8],
        expected: &BundleVersion,
    ) -> Result<BundleVersion> {
        let r = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(id))
            .body(ByteStream::from(bytes.to_vec()))
            .content_type("application/json")
            .if_match(&expected.0)
            .send()
            .await;
        match r {
            Ok(o) => Ok(BundleVersion(o.e_tag().unwrap_or_default().to_owned())),
            Err(e) => match status_of(&e) {
                Some(412 | 409) => Err(Error::conflict(format!(
                    "bundle {id} changed since it was read"
                ))
                .with_operation("bundle.put_if_version")
                .with_backend("s3")),
                Some(404) => Err(Error::not_found(format!("bundle {id} not found"))
                    .with_operation("bundle.put_if_version")
                    .with_backend("s3")),
                _ => Err(sdk_err("bundle.put_if_version", "s3", e)),
            },
        }
    }
}
