//! Security review #11 and #15 (directory store): `prune-context --bundle-dir` on a directory
//! others can write to. Links are never followed, only regular files are read, reads are
//! capped, temporary files have random names and archives are 0600. Exit codes as the
//! README's table says for prune-context: 1 for a bundle that cannot be pruned.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::flowfail_cmd;

/// Runs `flowfail prune-context` on `dir` for `id`; a run that takes over 60 s is killed and
/// the test fails (the code before the fix hung on a FIFO and read /dev/zero for ever).
fn prune_context(dir: &Path, id: &str) -> Output {
    let mut child = flowfail_cmd()
        .args([
            "prune-context",
            "--task-id",
            id,
            "--max-size",
            "180KB",
            "--bundle-dir",
        ])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("prune-context {id} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("flowfail-hostile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("bundles")).unwrap();
    d
}

fn big_bundle() -> Vec<u8> {
    let msgs: Vec<Value> = (0..3000)
        .map(|i| json!({"role": "user", "content": format!("turn {i} {}", "z".repeat(200))}))
        .collect();
    serde_json::to_vec(&json!({"task": {"task_id": "t-3"}, "messages": msgs})).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every file under `dir` (recursively, not following links).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let p = e.unwrap().path();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_planted_temp_file_link_is_never_written_through() {
    let root = temp_dir("tmp-link");
    let dir = root.join("bundles");
    let outside = root.join("outside.txt");
    std::fs::write(&outside, b"precious, not a bundle").unwrap();
    let bundle = big_bundle();
    std::fs::write(dir.join("t-3.json"), &bundle).unwrap();
    std::fs::set_permissions(dir.join("t-3.json"), std::fs::Permissions::from_mode(0o640)).unwrap();
    symlink(&outside, dir.join(".t-3.json.tmp")).unwrap();

    let out = prune_context(&dir, "t-3");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["outcome"], "pruned");
    assert!(
        std::fs::read(&outside).unwrap() == b"precious, not a bundle",
        "the file outside the directory is untouched"
    );
    assert!(
        std::fs::symlink_metadata(dir.join(".t-3.json.tmp"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the planted link is left as it was"
    );
    let live = std::fs::read(dir.join("t-3.json")).unwrap();
    assert!(live.len() <= 180_000 && !live.is_empty());
    assert_eq!(
        mode(&dir.join("t-3.json")),
        0o640,
        "the bundle keeps its mode"
    );
    let sum = r["archive_sha256"].as_str().unwrap();
    let archive = dir.join("archive").join(format!("t-3.{sum}.json"));
    assert!(
        std::fs::read(&archive).unwrap() == bundle,
        "archived byte for byte"
    );
    assert_eq!(
        mode(&archive),
        0o600,
        "archives are readable by the owner only"
    );
    // No temporary file is left behind.
    let mut names: Vec<String> = files_under(&dir)
        .iter()
        .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".t-3.json.tmp".to_owned(),
            format!("archive/t-3.{sum}.json"),
            "t-3.json".to_owned()
        ]
    );
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn a_bundle_that_links_to_a_secret_is_refused_not_copied() {
    let root = temp_dir("secret-link");
    let dir = root.join("bundles");
    let secret = root.join("secret.json");
    // Large enough to be "pruned", so the code before the fix archived it.
    std::fs::write(&secret, big_bundle()).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    symlink(&secret, dir.join("t-4.json")).unwrap();

    let out = prune_context(&dir, "t-4");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("symbolic link"),
        "a clear error: {}",
        stderr(&out)
    );
    assert!(
        files_under(&dir.join("archive")).is_empty(),
        "the secret is not copied into archive/"
    );
    assert!(
        std::fs::symlink_metadata(dir.join("t-4.json"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(std::fs::read(&secret).unwrap() == big_bundle());
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn devices_and_fifos_are_refused_unread() {
    let root = temp_dir("devices");
    let dir = root.join("bundles");
    symlink("/dev/zero", dir.join("t-5.json")).unwrap();
    let fifo = dir.join("t-6.json");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for (id, what) in [("t-5", "symbolic link"), ("t-6", "FIFO")] {
        let out = prune_context(&dir, id);
        assert_eq!(out.status.code(), Some(1), "{id}: {}", stderr(&out));
        assert!(out.stdout.is_empty());
        assert!(stderr(&out).contains(what), "{id}: {}", stderr(&out));
    }
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn a_bundle_over_the_read_limit_is_refused_without_reading_it() {
    let root = temp_dir("huge");
    let dir = root.join("bundles");
    // Sparse: 300 MiB long, nothing on disk.
    let f = std::fs::File::create(dir.join("t-7.json")).unwrap();
    f.set_len(300 << 20).unwrap();
    drop(f);
    let out = prune_context(&dir, "t-7");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("limit"), "{}", stderr(&out));
    assert!(files_under(&dir.join("archive")).is_empty());
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn an_archive_directory_that_is_a_link_is_refused() {
    let root = temp_dir("archive-link");
    let dir = root.join("bundles");
    let elsewhere = root.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    symlink(&elsewhere, dir.join("archive")).unwrap();
    let bundle = big_bundle();
    std::fs::write(dir.join("t-8.json"), &bundle).unwrap();

    let out = prune_context(&dir, "t-8");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    assert!(
        files_under(&elsewhere).is_empty(),
        "nothing written through the link"
    );
    assert!(
        std::fs::read(dir.join("t-8.json")).unwrap() == bundle,
        "not pruned"
    );
    let _ = std::fs::remove_dir_all(root);
}
