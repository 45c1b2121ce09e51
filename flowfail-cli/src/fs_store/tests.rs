//! The directory store in a directory others can write to: `archive/` swapped for a link while
//! the store works, or a link from the start, never lets a write or a read leave the directory.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use flowfail_core::{BundleStore, ErrorKind, TaskId};
use rustix::fs::{CWD, RenameFlags, renameat_with};

use super::FsBundleStore;

/// `<tmp>/flowfail-fs-store-<name>-<pid>` with an empty `bundles/` and an empty `outside/`.
fn temp_root(name: &str) -> PathBuf {
    let root =
        std::env::temp_dir().join(format!("flowfail-fs-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("bundles")).unwrap();
    std::fs::create_dir_all(root.join("outside")).unwrap();
    root
}

fn store(dir: &Path) -> FsBundleStore {
    FsBundleStore::open(dir).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// The names in `dir` (following `dir` itself if it is a link: what a write through it left).
fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

fn is_dir_not_link(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_dir())
}

/// Sets the flag when dropped, so the swapping thread stops even when an assertion fails.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Every regular file under `dir`, not following links.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let t = std::fs::symlink_metadata(&p).unwrap().file_type();
        if t.is_dir() {
            out.extend(files_under(&p));
        } else if t.is_file() {
            out.push(p);
        }
    }
    out
}

/// Until `stop`: whenever `<dir>/archive` is a real directory, exchanges it atomically with
/// `<dir>/bait`, a link to `outside`, then moves the directory aside and makes a new bait.
/// Returns how many times it swapped.
fn swap_archive_for_links(dir: &Path, outside: &Path, stop: &AtomicBool) -> u64 {
    let (archive, bait) = (dir.join("archive"), dir.join("bait"));
    symlink(outside, &bait).unwrap();
    let mut swaps = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if !is_dir_not_link(&archive)
            || renameat_with(CWD, &archive, CWD, &bait, RenameFlags::EXCHANGE).is_err()
        {
            std::thread::yield_now();
            continue;
        }
        swaps += 1;
        std::fs::rename(&bait, dir.join(format!("kept-{swaps}"))).unwrap();
        symlink(outside, &bait).unwrap();
    }
    swaps
}

#[test]
fn archive_swapped_for_a_link_while_archiving_never_writes_outside() {
    let root = temp_root("race");
    let dir = root.join("bundles");
    let outside = root.join("outside");
    let s = store(&dir);
    let id = TaskId::parse("t-race").unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let guard = StopOnDrop(Arc::clone(&stop));
    let swapper = {
        let (dir, outside) = (dir.clone(), outside.clone());
        std::thread::spawn(move || swap_archive_for_links(&dir, &outside, &stop))
    };

    let rt = runtime();
    let (mut written, mut refused) = (0usize, 0usize);
    for i in 0..200u32 {
        // No `archive` to begin with (whatever is there, directory or link, is moved aside):
        // the store makes it, and the swapper replaces it with a link as soon as it sees it.
        let _ = std::fs::rename(dir.join("archive"), dir.join(format!("gone-{i}")));
        let checksum = format!("{i:064x}");
        match rt.block_on(s.put_archive(&id, &checksum, b"{\"messages\":[]}")) {
            Ok(()) => written += 1,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::InvalidInput, "iteration {i}: {e}");
                assert!(e.message().contains("archive"), "iteration {i}: {e}");
                refused += 1;
            }
        }
        assert!(
            names(&outside).is_empty(),
            "iteration {i}: an archive was written outside the bundle directory: {:?}",
            names(&outside)
        );
    }
    drop(guard);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 0, "the link was swapped in");
    assert_eq!(written + refused, 200);
    // Every archive written is in the bundle directory, in whichever directory it is now.
    assert_eq!(files_under(&dir).len(), written);

    // Once nobody swaps, archiving works as before.
    let _ = std::fs::rename(dir.join("archive"), dir.join("gone"));
    let checksum = "f".repeat(64);
    rt.block_on(s.put_archive(&id, &checksum, b"{}")).unwrap();
    assert_eq!(
        names(&dir.join("archive")),
        [format!("t-race.{checksum}.json")]
    );
    assert!(names(&outside).is_empty());
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn an_archive_dir_that_is_a_link_is_refused_for_writes_and_reads() {
    let root = temp_root("link");
    let dir = root.join("bundles");
    let outside = root.join("outside");
    symlink(&outside, dir.join("archive")).unwrap();
    let s = store(&dir);
    let id = TaskId::parse("t-1").unwrap();
    let rt = runtime();
    let checksum = "a".repeat(64);

    let e = rt
        .block_on(s.put_archive(&id, &checksum, b"{}"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.message().contains("symbolic link"), "{e}");
    assert!(
        names(&outside).is_empty(),
        "nothing written through the link"
    );

    // A file planted where the link leads is not read back as an archive.
    let planted = outside.join(format!("t-1.{checksum}.json"));
    std::fs::write(&planted, b"not an archive of this store").unwrap();
    let e = rt
        .block_on(s.get_archive(&id, &checksum, 1 << 20))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.message().contains("symbolic link"), "{e}");
    assert_eq!(names(&outside), [format!("t-1.{checksum}.json")]);
    assert!(
        std::fs::symlink_metadata(dir.join("archive"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link is left as it was"
    );
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn the_bundle_dir_is_held_open_and_never_opened_through_a_link() {
    let root = temp_root("held");
    let dir = root.join("bundles");
    let outside = root.join("outside");
    let id = TaskId::parse("t-2").unwrap();
    let rt = runtime();
    std::fs::write(dir.join("t-2.json"), b"{\"messages\":[]}").unwrap();

    let link = root.join("link");
    symlink(&dir, &link).unwrap();
    let e = FsBundleStore::open(&link).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.message().contains("symbolic link"), "{e}");

    // Opened, then the directory is moved away and a link to `outside` put in its place:
    // the store keeps working in the directory it opened.
    let s = store(&dir);
    let moved = root.join("moved");
    std::fs::rename(&dir, &moved).unwrap();
    symlink(&outside, &dir).unwrap();
    let v = rt.block_on(s.head(&id)).unwrap().version;
    rt.block_on(s.put_archive(&id, &v.0, b"{\"messages\":[]}"))
        .unwrap();
    rt.block_on(s.put_if_version(&id, b"{}", &v)).unwrap();
    assert!(names(&outside).is_empty(), "{:?}", names(&outside));
    assert_eq!(std::fs::read(moved.join("t-2.json")).unwrap(), b"{}");
    assert_eq!(names(&moved.join("archive")), [format!("t-2.{}.json", v.0)]);
    let _ = std::fs::remove_dir_all(root);
}
