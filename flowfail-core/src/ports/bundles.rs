//! Context bundles: versions, metadata and the [`BundleStore`] port.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::TaskId;

/// Opaque version of a stored bundle (an S3 ETag).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BundleVersion(pub String);

/// Size and version of a stored bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BundleMeta {
    /// Size in bytes.
    pub size: u64,
    /// Current version.
    pub version: BundleVersion,
}

impl BundleMeta {
    /// Metadata of a bundle.
    pub fn new(size: u64, version: BundleVersion) -> Self {
        BundleMeta { size, version }
    }
}

/// A bundle's bytes and the version they were read at.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Bundle {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// The version read.
    pub version: BundleVersion,
}

impl Bundle {
    /// A bundle read at `version`.
    pub fn new(bytes: Vec<u8>, version: BundleVersion) -> Self {
        Bundle { bytes, version }
    }
}

/// Where context bundles live (`s3://context-bundles/<task_id>.json`).
#[async_trait]
pub trait BundleStore: Send + Sync + Debug + 'static {
    /// Size and version of the task's bundle.
    ///
    /// **Behavior**
    /// 1. A missing bundle is [`crate::ErrorKind::NotFound`].
    /// 2. The version changes whenever the bytes change.
    async fn head(&self, task_id: &TaskId) -> Result<BundleMeta>;

    /// The task's bundle, refusing bundles larger than `max_bytes`.
    ///
    /// **Behavior**
    /// 1. A missing bundle is `NotFound`; one larger than `max_bytes` is
    ///    [`crate::ErrorKind::TooLarge`] (nothing is buffered beyond the bound).
    /// 2. The version returned is the version of exactly the bytes returned.
    async fn get(&self, task_id: &TaskId, max_bytes: u64) -> Result<Bundle>;

    /// Stores `bytes` as the archive of the task's bundle under `checksum` (hex SHA-256 of
    /// `bytes`), create-only.
    ///
    /// **Behavior**
    /// 1. Create-only: if an archive with this checksum exists, the call is
    ///    [`crate::ErrorKind::AlreadyExists`] and the stored archive is untouched.
    /// 2. The live bundle is never modified.
    async fn put_archive(&self, task_id: &TaskId, checksum: &str, bytes: &[u8]) -> Result<()>;

    /// Reads an archive back (to verify it), refusing archives larger than `max_bytes`.
    ///
    /// **Behavior**
    /// 1. A missing archive is `NotFound`.
    async fn get_archive(
        &self,
        task_id: &TaskId,
        checksum: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>>;

    /// Replaces the task's bundle with `bytes` only if its version is still `expected`.
    ///
    /// **Behavior**
    /// 1. If the stored version differs from `expected` (a concurrent writer), the call is
    ///    [`crate::ErrorKind::Conflict`] and the stored bundle is untouched.
    /// 2. A missing bundle is `NotFound` (this never creates a bundle).
    /// 3. On success the new version is returned and differs from `expected`.
    async fn put_if_version(
        &self,
        task_id: &TaskId,
        bytes: &[u8],
        expected: &BundleVersion,
    ) -> Result<BundleVersion>;
}
