//! A context-bundle store on a local directory, for `flowfail prune-context --bundle-dir`.
//!
//! Bundles are `<dir>/<task_id>.json`; archives are `<dir>/archive/<task_id>.<sha256>.json`.
//! The version of a bundle is the SHA-256 of its bytes. Writes go to a temporary file with a
//! random name, created with `create_new` and mode 0600, and are renamed into place; archives
//! are created with `create_new` (create-only) and mode 0600. A version check and the rename
//! are two steps, so unlike S3's `If-Match` this store is only safe against concurrent writers
//! that also use it one at a time.
//!
//! The directory may be shared with others, so nothing in it is trusted: every file is opened
//! with `O_NOFOLLOW` (a symbolic link is refused, never followed) and `O_NONBLOCK` (a FIFO
//! cannot hang the open), and anything that is not a regular file is refused; `archive` must
//! be a real directory. No read goes past [`MAX_READ`]. Refusals are `InvalidInput` (the bundle
//! is found wanting).

use std::fs::{File, FileType, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use flowfail_core::{
    Bundle, BundleMeta, BundleStore, BundleVersion, Error, ErrorKind, Result, TaskId,
};
use sha2::{Digest, Sha256};

/// The most the store reads of any file, whatever a caller asks for: 256 MiB, what
/// `prune-context` reads at most.
pub(crate) const MAX_READ: u64 = 256 << 20;

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

    fn archive_dir(&self) -> PathBuf {
        self.dir.join("archive")
    }

    fn archive(&self, id: &TaskId, checksum: &str) -> Result<PathBuf> {
        if checksum.len() != 64 || !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid_input(
                "archive checksum must be 64 hex digits",
            ));
        }
        Ok(self.archive_dir().join(format!("{id}.{checksum}.json")))
    }

    /// The archive directory, created (0700) if missing; a symbolic link or anything else
    /// that is not a directory is refused.
    fn ensure_archive_dir(&self, op: &'static str) -> Result<PathBuf> {
        let d = self.archive_dir();
        match std::fs::symlink_metadata(&d) {
            Ok(m) if m.file_type().is_dir() => return Ok(d),
            Ok(m) => return Err(refused(op, &d, m.file_type())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(op, e)),
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(op, e)),
        }
        // Checked again: someone may have planted a link between the look and the create.
        let m = std::fs::symlink_metadata(&d).map_err(|e| io(op, e))?;
        if !m.file_type().is_dir() {
            return Err(refused(op, &d, m.file_type()));
        }
        sync_dir(&self.dir, op)?;
        Ok(d)
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

/// What a file that is not a regular file is, for the refusal.
fn what(t: FileType) -> &'static str {
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// The refusal of `path`, which is `t`: the input found wanting (no backend: nothing failed).
fn refused(op: &'static str, path: &Path, t: FileType) -> Error {
    refused_as(op, path, what(t))
}

fn refused_as(op: &'static str, path: &Path, what: &str) -> Error {
    Error::invalid_input(format!(
        "{} is {what}, refused: the bundle directory holds only regular files and links are \
         never followed",
        path.display()
    ))
    .with_operation(op)
}

/// Opens `path` for reading, without following a symbolic link and without blocking on a
/// FIFO; anything but a regular file is refused. A missing file is `NotFound` naming the
/// bundle and the path (and, like a missing S3 key, with no cause: the bundle itself is
/// missing).
fn open_regular(path: &Path, op: &'static str) -> Result<File> {
    // A clear refusal for what is there now; O_NOFOLLOW and the fstat below close the race.
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => return Err(refused(op, path, m.file_type())),
        Ok(_) => {}
        Err(e) => return Err(open_error(path, op, e)),
    }
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| open_error(path, op, e))?;
    let m = f.metadata().map_err(|e| io(op, e))?;
    if !m.file_type().is_file() {
        return Err(refused(op, path, m.file_type()));
    }
    Ok(f)
}

fn open_error(path: &Path, op: &'static str, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        let name = path.file_name().map_or_else(String::new, |n| {
            n.to_string_lossy().trim_end_matches(".json").to_owned()
        });
        Error::not_found(format!("bundle {name} not found at {}", path.display()))
            .with_operation(op)
            .with_backend("fs")
    } else if e.raw_os_error() == Some(libc::ELOOP) {
        refused_as(op, path, "a symbolic link")
    } else {
        io(op, e)
    }
}

/// The bytes of the regular file at `path`, at most `max` (and never over [`MAX_READ`]), and
/// its permission bits.
fn read_bounded(path: &Path, max: u64, op: &'static str) -> Result<(Vec<u8>, u32)> {
    let max = max.min(MAX_READ);
    let f = open_regular(path, op)?;
    let m = f.metadata().map_err(|e| io(op, e))?;
    let too_large = || {
        Error::new(
            ErrorKind::TooLarge,
            format!("{} is over the {max}-byte limit", path.display()),
        )
        .with_operation(op)
    };
    if m.len() > max {
        return Err(too_large());
    }
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io(op, e))?;
    if buf.len() as u64 > max {
        return Err(too_large());
    }
    Ok((buf, m.permissions().mode() & 0o777))
}

fn version_of(bytes: &[u8]) -> BundleVersion {
    BundleVersion(
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

/// Makes a rename or a create in `dir` durable.
fn sync_dir(dir: &Path, op: &'static str) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(op, e))
}

/// A new temporary file next to the bundles: a random name, created only if nothing is there
/// (so a planted file or link is never written through), mode 0600.
fn create_temp(dir: &Path, id: &TaskId, op: &'static str) -> Result<(PathBuf, File)> {
    let mut last = None;
    for _ in 0..16 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let tmp = dir.join(format!(".{id}.json.{:016x}.tmp", h.finish()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(io(op, e)),
        }
    }
    Err(io(
        op,
        last.unwrap_or_else(|| std::io::Error::other("no free temporary name")),
    ))
}

#[async_trait]
impl BundleStore for FsBundleStore {
    async fn head(&self, id: &TaskId) -> Result<BundleMeta> {
        let (bytes, _) = read_bounded(&self.live(id), MAX_READ, "bundle.head")?;
        Ok(BundleMeta::new(bytes.len() as u64, version_of(&bytes)))
    }

    async fn get(&self, id: &TaskId, max_bytes: u64) -> Result<Bundle> {
        let (bytes, _) = read_bounded(&self.live(id), max_bytes, "bundle.get")?;
        let v = version_of(&bytes);
        Ok(Bundle::new(bytes, v))
    }

    async fn put_archive(&self, id: &TaskId, checksum: &str, bytes: &[u8]) -> Result<()> {
        const OP: &str = "bundle.put_archive";
        let path = self.archive(id, checksum)?;
        let dir = self.ensure_archive_dir(OP)?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| io(OP, e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| io(OP, e))?;
        sync_dir(&dir, OP)
    }

    async fn get_archive(&self, id: &TaskId, checksum: &str, max_bytes: u64) -> Result<Vec<u8>> {
        let (bytes, _) = read_bounded(
            &self.archive(id, checksum)?,
            max_bytes,
            "bundle.get_archive",
        )?;
        Ok(bytes)
    }

    async fn put_if_version(
        &self,
        id: &TaskId,
        bytes: &[u8],
        expected: &BundleVersion,
    ) -> Result<BundleVersion> {
        const OP: &str = "bundle.put_if_version";
        let live = self.live(id);
        let (current, mode) = read_bounded(&live, MAX_READ, OP)?;
        if &version_of(&current) != expected {
            return Err(
                Error::conflict(format!("bundle {id} changed since it was read"))
                    .with_backend("fs"),
            );
        }
        let (tmp, mut f) = create_temp(&self.dir, id, OP)?;
        // Written 0600, then given the permissions of the bundle it replaces.
        let written = f
            .write_all(bytes)
            .and_then(|()| f.set_permissions(std::fs::Permissions::from_mode(mode)))
            .and_then(|()| f.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &live));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(OP, e));
        }
        sync_dir(&self.dir, OP)?;
        Ok(version_of(bytes))
    }
}
