//! S3 as the context-bundle store.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use flowfail_core::{
    Bundle, BundleMeta, BundleStore, BundleVersion, Error, ErrorKind, Result, TaskId,
};

use crate::error::{get_err, sdk_err, status_of};

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
