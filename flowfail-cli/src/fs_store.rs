//! A context-bundle store on a local directory, for `flowfail prune-context --bundle-dir`.
//!
//! Bundles are `<dir>/<task_id>.json`; archives are `<dir>/archive/<task_id>.<sha256>.json`.
//! The version of a bundle is the SHA-256 of its bytes. Writes go to a temporary file and are
//! renamed into place; archives are created with `create_new` (create-only). A version check
//! and the rename are two steps, so unlike S3's `If-Match` this store is only safe against
//! concurrent writers that also use it one at a time.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use flowfail_core::{
    Bundle, BundleMeta, BundleStore, BundleVersion, Error, ErrorKind, Result, TaskId,
};
use sha2::{Digest, Sha256};

/// Bundles in a directory.
#[derive(Debug, Clone)]
pub(crate) struct FsBundleStore {
    dir: PathBuf,
}

impl FsBundleStore {
    /// A store rooted at `dir`.
    pub(crate) fn new(dir: impl Into<PathBuf>) -> Self {
        FsBundleStore { dir: dir.into() }
    }

    fn live(&self, id: &TaskId) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn archive(&self, id: &TaskId, checksum: &str) -> Result<PathBuf> {
        if checksum.len() != 64 || !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid_input(
                "archive checksum must be 64 hex digits",
            ));
        }
        Ok(self
            .dir
            .join("archive")
            .join(format!("{id}.{checksum}.json")))
    }
}

fn io(op: &'static str, e: std::io::Error) -> Error {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
        std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        _ => ErrorKind::Unavailable,
    };
    Error::new(kind, e.to_string())
        .with_operation(op)
        .with_backend("fs")
}

/// Opens `path` for `op`; a missing file is `NotFound` naming the bundle and the path (and,
/// like a missing S3 key, with no cause: the bundle itself is missing).
fn open(path: &Path, op: &'static str) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            let name = path.file_name().map_or_else(String::new, |n| {
                n.to_string_lossy().trim_end_matches(".json").to_owned()
            });
            Error::not_found(format!("bundle {name} not found at {}", path.display()))
                .with_operation(op)
                .with_backend("fs")
        } else {
            io(op, e)
        }
    })
}

fn read_bounded(path: &Path, max: u64, op: &'static str) -> Result<Vec<u8>> {
    let f = open(path, op)?;
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io(op, e))?;
    if buf.len() as u64 > max {
        return Err(
            Error::new(ErrorKind::TooLarge, format!("over the {max}-byte limit"))
                .with_operation(op)
                .with_backend("fs"),
        );
    }
    Ok(buf)
}

fn version_of(bytes: &[u8]) -> BundleVersion {
    BundleVersion(
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

#[async_trait]
impl BundleStore for FsBundleStore {
    async fn head(&self, id: &TaskId) -> Result<BundleMeta> {
        let bytes = read_bounded(&self.live(id), u64::MAX - 1, "bundle.head")?;
        Ok(BundleMeta::new(bytes.len() as u64, version_of(&bytes)))
    }

    async fn get(&self, id: &TaskId, max_bytes: u64) -> Result<Bundle> {
        let bytes = read_bounded(&self.live(id), max_bytes, "bundle.get")?;
        let v = version_of(&bytes);
        Ok(Bundle::new(bytes, v))
    }

    async fn put_archive(&self, id: &TaskId, checksum: &str, bytes: &[u8]) -> Result<()> {
        let path = self.archive(id, checksum)?;
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(|e| io("bundle.put_archive", e))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io("bundle.put_archive", e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| io("bundle.put_archive", e))
    }

    async fn get_archive(&self, id: &TaskId, checksum: &str, max_bytes: u64) -> Result<Vec<u8>> {
        read_bounded(
            &self.archive(id, checksum)?,
            max_bytes,
            "bundle.get_archive",
        )
    }

    async fn put_if_version(
        &self,
        id: &TaskId,
        bytes: &[u8],
        expected: &BundleVersion,
    ) -> Result<BundleVersion> {
        let live = self.live(id);
        let current = read_bounded(&live, u64::MAX - 1, "bundle.put_if_version")?;
        if &version_of(&current) != expected {
            return Err(
                Error::conflict(format!("bundle {id} changed since it was read"))
                    .with_backend("fs"),
            );
        }
        let tmp = self.dir.join(format!(".{id}.json.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(|e| io("bundle.put_if_version", e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| io("bundle.put_if_version", e))?;
        std::fs::rename(&tmp, &live).map_err(|e| io("bundle.put_if_version", e))?;
        Ok(version_of(bytes))
    }
}
