//! A context-bundle store on a local directory, for `flowfail prune-context --bundle-dir`.
//!
//! Bundles are `<dir>/<task_id>.json`; archives are `<dir>/archive/<task_id>.<sha256>.json`.
//! The version of a bundle is the SHA-256 of its bytes. Writes go to a temporary file with a
//! random name, created with `O_EXCL` and mode 0600, and are renamed into place; archives are
//! created with `O_EXCL` (create-only) and mode 0600. A version check and the rename are two
//! steps, so unlike S3's `If-Match` this store is only safe against concurrent writers that
//! also use it one at a time.
//!
//! The directory may be shared with others, so nothing in it is trusted. It is opened once
//! ([`FsBundleStore::open`], `O_DIRECTORY | O_NOFOLLOW`) and everything after is relative to
//! that handle (`openat`, `mkdirat`, `renameat`, `unlinkat`), one name at a time: `archive` is
//! opened with `O_DIRECTORY | O_NOFOLLOW` and the files in it relative to its own handle, so a
//! link swapped in anywhere at any moment is refused, never followed, and nothing is written
//! or read outside the directory. Every file is opened with `O_NOFOLLOW` and `O_NONBLOCK` (a
//! FIFO cannot hang the open), and anything that is not a regular file is refused. No read
//! goes past [`MAX_READ`]. Refusals are `InvalidInput` (the bundle is found wanting).

use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use flowfail_core::{
    Bundle, BundleMeta, BundleStore, BundleVersion, Error, ErrorKind, Result, TaskId,
};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

/// The most the store reads of any file, whatever a caller asks for: 256 MiB, what
/// `prune-context` reads at most.
pub(crate) const MAX_READ: u64 = 256 << 20;

/// The name of the archive directory in the bundle directory.
const ARCHIVE: &str = "archive";

/// How a directory is opened: for lookups only, never through a link.
const DIR: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Bundles in a directory, held open.
#[derive(Debug, Clone)]
pub(crate) struct FsBundleStore {
    /// The directory as it was named, for messages only: nothing is opened by this path after
    /// [`FsBundleStore::open`].
    dir: PathBuf,
    fd: Arc<OwnedFd>,
}

impl FsBundleStore {
    /// Opens the store at `dir`: the directory itself, not a symbolic link to one (its parents
    /// are the caller's to trust). Every later operation works on this handle, so renaming or
    /// replacing `dir` afterwards does not move the store.
    pub(crate) fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        const OP: &str = "bundle.open";
        let dir = dir.into();
        let fd = rustix::fs::open(&dir, DIR, Mode::empty()).map_err(|e| {
            // Linux answers a link with ENOTDIR under O_DIRECTORY, ELOOP otherwise.
            let link = e == Errno::LOOP
                || e == Errno::NOTDIR
                    && rustix::fs::lstat(&dir).is_ok_and(|st| file_type(&st) == FileType::Symlink);
            match e {
                _ if link => Error::invalid_input(format!(
                    "{} is a symbolic link, refused: name the directory itself",
                    dir.display()
                )),
                Errno::NOTDIR => {
                    Error::invalid_input(format!("{} is not a directory", dir.display()))
                }
                e => io(OP, e.into()),
            }
            .with_operation(OP)
        })?;
        Ok(FsBundleStore {
            dir,
            fd: Arc::new(fd),
        })
    }

    fn dir_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `archive/`, opened relative to the bundle directory without following a link; with
    /// `create`, made first (0700) if missing. A link or anything else that is not a directory
    /// is refused; a missing one (without `create`) is `NotFound`.
    fn archive_dir(&self, op: &'static str, create: bool) -> Result<OwnedFd> {
        let open = || rustix::fs::openat(self.dir_fd(), ARCHIVE, DIR, Mode::empty());
        match open() {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) if create => {}
            Err(e) => return Err(self.archive_error(op, e)),
        }
        match rustix::fs::mkdirat(self.dir_fd(), ARCHIVE, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(io(op, e.into())),
        }
        rustix::fs::fsync(self.dir_fd()).map_err(|e| io(op, e.into()))?;
        // Opened by name again, without following a link: whatever was planted between the
        // create and the open is refused like any other.
        open().map_err(|e| self.archive_error(op, e))
    }

    fn archive_error(&self, op: &'static str, e: Errno) -> Error {
        let shown = self.dir.join(ARCHIVE);
        match e {
            Errno::LOOP => refused_as(op, &shown, "a symbolic link"),
            Errno::NOTDIR => {
                match rustix::fs::statat(self.dir_fd(), ARCHIVE, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if file_type(&st) != FileType::Directory => {
                        refused(op, &shown, file_type(&st))
                    }
                    // Changed again since: still refused, whatever it is now.
                    _ => refused_as(op, &shown, "not a directory"),
                }
            }
            e => io(op, e.into()),
        }
    }
}

fn live_name(id: &TaskId) -> String {
    format!("{id}.json")
}

fn archive_name(id: &TaskId, checksum: &str) -> Result<String> {
    if checksum.len() != 64 || !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid_input(
            "archive checksum must be 64 hex digits",
        ));
    }
    Ok(format!("{id}.{checksum}.json"))
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

fn file_type(st: &rustix::fs::Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// What a file that is not a regular file is, for the refusal.
fn what(t: FileType) -> &'static str {
    match t {
        FileType::Symlink => "a symbolic link",
        FileType::Directory => "a directory",
        FileType::Fifo => "a FIFO",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Socket => "a socket",
        FileType::RegularFile | FileType::Unknown => "not a regular file",
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

/// Opens `name` in `dir` for reading, without following a symbolic link and without blocking
/// on a FIFO; anything but a regular file is refused. `shown` is the path for messages. A
/// missing file is `NotFound` naming the bundle and the path (and, like a missing S3 key, with
/// no cause: the bundle itself is missing).
fn open_regular(dir: BorrowedFd<'_>, name: &str, shown: &Path, op: &'static str) -> Result<File> {
    // A clear refusal for what is there now; O_NOFOLLOW and the fstat below close the race.
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if file_type(&st) != FileType::RegularFile => {
            return Err(refused(op, shown, file_type(&st)));
        }
        Ok(_) => {}
        Err(e) => return Err(open_error(shown, op, e)),
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty())
        .map_err(|e| open_error(shown, op, e))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| io(op, e.into()))?;
    if file_type(&st) != FileType::RegularFile {
        return Err(refused(op, shown, file_type(&st)));
    }
    Ok(File::from(fd))
}

fn open_error(path: &Path, op: &'static str, e: Errno) -> Error {
    match e {
        Errno::NOENT => {
            let name = path.file_name().map_or_else(String::new, |n| {
                n.to_string_lossy().trim_end_matches(".json").to_owned()
            });
            Error::not_found(format!("bundle {name} not found at {}", path.display()))
                .with_operation(op)
                .with_backend("fs")
        }
        Errno::LOOP => refused_as(op, path, "a symbolic link"),
        e => io(op, e.into()),
    }
}

/// The bytes of the regular file `name` in `dir`, at most `max` (and never over [`MAX_READ`]),
/// and its permission bits.
fn read_bounded(
    dir: BorrowedFd<'_>,
    name: &str,
    shown: &Path,
    max: u64,
    op: &'static str,
) -> Result<(Vec<u8>, u32)> {
    let max = max.min(MAX_READ);
    let f = open_regular(dir, name, shown, op)?;
    let st = rustix::fs::fstat(&f).map_err(|e| io(op, e.into()))?;
    let too_large = || {
        Error::new(
            ErrorKind::TooLarge,
            format!("{} is over the {max}-byte limit", shown.display()),
        )
        .with_operation(op)
    };
    if u64::try_from(st.st_size).unwrap_or(0) > max {
        return Err(too_large());
    }
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io(op, e))?;
    if buf.len() as u64 > max {
        return Err(too_large());
    }
    Ok((buf, st.st_mode & 0o777))
}

fn version_of(bytes: &[u8]) -> BundleVersion {
    BundleVersion(
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

/// A new file `name` in `dir`, created only if nothing is there (so a planted file or link is
/// never written through), mode 0600.
fn create_new(dir: BorrowedFd<'_>, name: &str) -> std::result::Result<File, Errno> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600)).map(File::from)
}

/// A new temporary file next to the bundles: a random name, created with [`create_new`].
fn create_temp(dir: BorrowedFd<'_>, id: &TaskId, op: &'static str) -> Result<(String, File)> {
    for _ in 0..16 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let tmp = format!(".{id}.json.{:016x}.tmp", h.finish());
        match create_new(dir, &tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(Errno::EXIST) => {}
            Err(e) => return Err(io(op, e.into())),
        }
    }
    Err(io(op, Errno::EXIST.into()))
}

#[async_trait]
impl BundleStore for FsBundleStore {
    async fn head(&self, id: &TaskId) -> Result<BundleMeta> {
        let name = live_name(id);
        let shown = self.dir.join(&name);
        let (bytes, _) = read_bounded(self.dir_fd(), &name, &shown, MAX_READ, "bundle.head")?;
        Ok(BundleMeta::new(bytes.len() as u64, version_of(&bytes)))
    }

    async fn get(&self, id: &TaskId, max_bytes: u64) -> Result<Bundle> {
        let name = live_name(id);
        let shown = self.dir.join(&name);
        let (bytes, _) = read_bounded(self.dir_fd(), &name, &shown, max_bytes, "bundle.get")?;
        let v = version_of(&bytes);
        Ok(Bundle::new(bytes, v))
    }

    async fn put_archive(&self, id: &TaskId, checksum: &str, bytes: &[u8]) -> Result<()> {
        const OP: &str = "bundle.put_archive";
        let name = archive_name(id, checksum)?;
        let dir = self.archive_dir(OP, true)?;
        let mut f = create_new(dir.as_fd(), &name).map_err(|e| io(OP, e.into()))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| io(OP, e))?;
        rustix::fs::fsync(&dir).map_err(|e| io(OP, e.into()))
    }

    async fn get_archive(&self, id: &TaskId, checksum: &str, max_bytes: u64) -> Result<Vec<u8>> {
        const OP: &str = "bundle.get_archive";
        let name = archive_name(id, checksum)?;
        let shown = self.dir.join(ARCHIVE).join(&name);
        let dir = match self.archive_dir(OP, false) {
            Ok(d) => d,
            // No archive directory: no archive, reported as the missing file.
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(open_error(&shown, OP, Errno::NOENT));
            }
            Err(e) => return Err(e),
        };
        let (bytes, _) = read_bounded(dir.as_fd(), &name, &shown, max_bytes, OP)?;
        Ok(bytes)
    }

    async fn put_if_version(
        &self,
        id: &TaskId,
        bytes: &[u8],
        expected: &BundleVersion,
    ) -> Result<BundleVersion> {
        const OP: &str = "bundle.put_if_version";
        let live = live_name(id);
        let shown = self.dir.join(&live);
        let (current, mode) = read_bounded(self.dir_fd(), &live, &shown, MAX_READ, OP)?;
        if &version_of(&current) != expected {
            return Err(
                Error::conflict(format!("bundle {id} changed since it was read"))
                    .with_backend("fs"),
            );
        }
        let (tmp, mut f) = create_temp(self.dir_fd(), id, OP)?;
        // Written 0600, then given the permissions of the bundle it replaces.
        let written = f
            .write_all(bytes)
            .and_then(|()| rustix::fs::fchmod(&f, Mode::from_raw_mode(mode)).map_err(Into::into))
            .and_then(|()| f.sync_all())
            .and_then(|()| {
                rustix::fs::renameat(self.dir_fd(), &tmp, self.dir_fd(), &live).map_err(Into::into)
            });
        if let Err(e) = written {
            let _ = rustix::fs::unlinkat(self.dir_fd(), &tmp, AtFlags::empty());
            return Err(io(OP, e));
        }
        rustix::fs::fsync(self.dir_fd()).map_err(|e| io(OP, e.into()))?;
        Ok(version_of(bytes))
    }
}

#[cfg(test)]
mod tests;
