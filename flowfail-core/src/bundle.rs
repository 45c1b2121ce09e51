//! Operations on a [`BundleStore`] built from its primitives, as an extension trait with a
//! blanket impl (the way `object_store` keeps conveniences out of implementors' way).
//!
//! [`BundleStoreExt::prune_context`] is the runbook's "prune the context bundle" step, made safe:
//! the original is archived and verified before the pruned bundle replaces it, and the replace is
//! conditional on the version read. The responder uses it; so do the CLI's `prune-context` and
//! anyone holding a `BundleStore`.

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};
use crate::model::{ByteSize, TaskId};
use crate::ports::{Bundle, BundleStore};
use crate::prune::{Manifest, PruneOptions, Pruned, prune};

/// What [`prune_context`] did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PruneContextOutcome {
    /// Pruned: the original is archived (and verified) under `archive_checksum`.
    Pruned {
        /// Size before.
        from_bytes: u64,
        /// Size after.
        to_bytes: u64,
        /// SHA-256 of the original (the archive's name).
        archive_checksum: String,
        /// What pruning removed.
        manifest: Box<Manifest>,
    },
    /// Already within the budget: nothing done.
    AlreadySmall {
        /// Its size.
        bytes: u64,
    },
}

/// What a prune-context would do, read and pruned in memory, nothing written: the plan that
/// [`BundleStoreExt::prune_context`] carries out, and that a dry run prints.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PrunePlan {
    /// Already within the budget: nothing to do.
    AlreadySmall {
        /// Its size.
        bytes: u64,
    },
    /// Over the budget: the bundle as read, what it prunes to, and the archive's name.
    Prune(Box<PlannedPrune>),
}

/// A prune planned on a bundle read at one version.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PlannedPrune {
    /// The bundle as read (its bytes become the archive; its version fences the write).
    pub original: Bundle,
    /// The pruned bundle and what pruning removed.
    pub pruned: Pruned,
    /// SHA-256 of the original, hex: the archive's name.
    pub archive_checksum: String,
}

impl PlannedPrune {
    /// The outcome of carrying this plan out.
    fn outcome(self) -> PruneContextOutcome {
        PruneContextOutcome::Pruned {
            from_bytes: self.original.bytes.len() as u64,
            to_bytes: self.pruned.bytes.len() as u64,
            archive_checksum: self.archive_checksum,
            manifest: Box::new(self.pruned.manifest),
        }
    }
}

/// Conveniences on every [`BundleStore`].
#[async_trait]
pub trait BundleStoreExt: BundleStore {
    /// The safe prune-context operation: size check → get → archive the original create-only
    /// and verify its checksum → write the pruned bundle only if the stored version is still
    /// the one read. A version conflict re-reads and decides again (at most 3 times); a failed
    /// archive means no prune. The original is never lost. A lost reply of the final write is
    /// checked by reading the bundle back.
    ///
    /// ```
    /// use flowfail_core::bundle::{BundleStoreExt, PruneContextOutcome};
    /// use flowfail_core::memory::{MemoryBundleStore, synthesize_bundle};
    /// use flowfail_core::{ByteSize, TaskId, prune::PruneOptions};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = MemoryBundleStore::new();
    /// let id = TaskId::parse("t-1").unwrap();
    /// store.put(&id, synthesize_bundle(&id, 600_000));
    /// let out = store
    ///     .prune_context(&id, ByteSize::kb(180), ByteSize::mb(256), &PruneOptions::default())
    ///     .await
    ///     .unwrap();
    /// assert!(matches!(out, PruneContextOutcome::Pruned { to_bytes, .. } if to_bytes <= 180_000));
    /// # });
    /// ```
    async fn prune_context(
        &self,
        task_id: &TaskId,
        max_size: ByteSize,
        max_read: ByteSize,
        options: &PruneOptions,
    ) -> Result<PruneContextOutcome> {
        prune_context(self, task_id, max_size, max_read, options).await
    }

    /// The reads and the in-memory prune of [`prune_context`](Self::prune_context), nothing
    /// written: size check → get → prune → the archive's checksum. A dry run prints this plan;
    /// the real run carries the same plan out.
    async fn plan_prune_context(
        &self,
        task_id: &TaskId,
        max_size: ByteSize,
        max_read: ByteSize,
        options: &PruneOptions,
    ) -> Result<PrunePlan> {
        plan(self, task_id, max_size, max_read, options).await
    }
}

impl<T: BundleStore + ?Sized> BundleStoreExt for T {}

async fn plan<S: BundleStore + ?Sized>(
    bundles: &S,
    task_id: &TaskId,
    max_size: ByteSize,
    max_read: ByteSize,
    options: &PruneOptions,
) -> Result<PrunePlan> {
    let meta = bundles.head(task_id).await?;
    if meta.size <= max_size.bytes() {
        return Ok(PrunePlan::AlreadySmall { bytes: meta.size });
    }
    let original = bundles.get(task_id, max_read.bytes()).await?;
    if original.bytes.len() as u64 <= max_size.bytes() {
        // Pruned by another writer between the two reads: nothing left to do.
        return Ok(PrunePlan::AlreadySmall {
            bytes: original.bytes.len() as u64,
        });
    }
    let pruned = prune(&original.bytes, max_size.bytes(), options)?;
    let archive_checksum = hex(&Sha256::digest(&original.bytes));
    Ok(PrunePlan::Prune(Box::new(PlannedPrune {
        original,
        pruned,
        archive_checksum,
    })))
}

async fn prune_context<S: BundleStore + ?Sized>(
    bundles: &S,
    task_id: &TaskId,
    max_size: ByteSize,
    max_read: ByteSize,
    options: &PruneOptions,
) -> Result<PruneContextOutcome> {
    let mut last_conflict = None;
    for _ in 0..3 {
        let planned = match plan(bundles, task_id, max_size, max_read, options).await? {
            PrunePlan::AlreadySmall { bytes } => {
                return Ok(PruneContextOutcome::AlreadySmall { bytes });
            }
            PrunePlan::Prune(p) => *p,
        };
        archive(bundles, task_id, &planned, max_read).await?;
        match bundles
            .put_if_version(task_id, &planned.pruned.bytes, &planned.original.version)
            .await
        {
            Ok(_) => return Ok(planned.outcome()),
            Err(e) if e.kind() == ErrorKind::Conflict => {
                last_conflict = Some(e);
                continue; // someone wrote the bundle: re-read and decide again
            }
            Err(e) => {
                // A lost reply: the write may have applied. Look before reporting failure; a
                // read that fails is tried again (up to three reads), since reporting failure
                // for a write that landed would leave the record short of what was done.
                for _ in 0..READ_BACK_ATTEMPTS {
                    match bundles.get(task_id, max_read.bytes()).await {
                        Ok(now) if now.bytes == planned.pruned.bytes => {
                            return Ok(planned.outcome());
                        }
                        Ok(_) => break,
                        Err(_) => continue,
                    }
                }
                return Err(e);
            }
        }
    }
    Err(
        Error::conflict(format!("bundle {task_id} kept changing while being pruned"))
            .with_operation("prune_context")
            .with_source(last_conflict.unwrap_or_else(|| Error::conflict("conflict"))),
    )
}

/// Archives the plan's original create-only and verifies it by reading it back: an archive
/// that fails or does not match its checksum means no prune.
async fn archive<S: BundleStore + ?Sized>(
    bundles: &S,
    task_id: &TaskId,
    planned: &PlannedPrune,
    max_read: ByteSize,
) -> Result<()> {
    let checksum = &planned.archive_checksum;
    match bundles
        .put_archive(task_id, checksum, &planned.original.bytes)
        .await
    {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {} // verified below
        Err(e) => {
            return Err(Error::new(
                e.kind(),
                format!(
                    "archive of {task_id} failed, bundle not pruned: {}",
                    e.message()
                ),
            )
            .with_operation("prune_context")
            .with_source(e));
        }
    }
    let archived = bundles
        .get_archive(task_id, checksum, max_read.bytes())
        .await
        .map_err(|e| {
            Error::new(
                e.kind(),
                format!("archive of {task_id} could not be read back, bundle not pruned"),
            )
            .with_operation("prune_context")
            .with_source(e)
        })?;
    if hex(&Sha256::digest(&archived)) != *checksum {
        return Err(Error::new(
            ErrorKind::Unexpected,
            format!("archive of {task_id} does not match its checksum, bundle not pruned"),
        )
        .with_operation("prune_context"));
    }
    Ok(())
}

/// Reads of a bundle after a write whose reply was lost, before reporting the write failed.
const READ_BACK_ATTEMPTS: usize = 3;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
