//! `flowfail validate`: TaskObject files against the known schemas, one JSON line per file.
//!
//! Exit 1 when a file was read and found wanting (invalid, not JSON, too large to be a
//! TaskObject); exit 2 when a file could not be read at all, so a script can tell a bad task
//! from a bad path. Every file gets its line either way.

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flowfail_core::schema::SchemaSet;

use crate::CliResult;
use crate::failure::{Exit, Failure};

/// What became of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Valid,
    Wanting,
    Unreadable,
}

/// The schemas: built in, or the `--schema VERSION=PATH` given.
fn schema_set(schemas: &[String]) -> Result<SchemaSet, Failure> {
    if schemas.is_empty() {
        return Ok(SchemaSet::builtin());
    }
    let mut v = Vec::new();
    for s in schemas {
        let (ver, path) = s
            .split_once('=')
            .ok_or_else(|| Failure::usage(format!("--schema {s:?}: expected VERSION=PATH")))?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::io(format!("reading --schema {path}"), e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Failure::usage(e).doing(format!("parsing --schema {path}")))?;
        v.push((ver.to_owned(), json));
    }
    SchemaSet::new(v).map_err(|e| Failure::usage(e).doing("compiling the --schema files"))
}

pub(crate) fn cmd_validate(schemas: &[String], files: &[PathBuf]) -> CliResult {
    let set = schema_set(schemas)?;
    // Files are taken in small batches from a shared counter, so a slow file or disk on one
    // core does not leave the other idle; results are put back in input order.
    const BATCH: usize = 32;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len().div_ceil(BATCH).max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, Vec<u8>, Verdict)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (set, next) = (&set, &next);
                s.spawn(move || {
                    let mut done = Vec::new();
                    let mut buf = Vec::new();
                    loop {
                        let start = next.fetch_add(BATCH, std::sync::atomic::Ordering::Relaxed);
                        if start >= files.len() {
                            break;
                        }
                        let mut text = Vec::with_capacity(BATCH * 128);
                        let mut worst = Verdict::Valid;
                        for f in &files[start..(start + BATCH).min(files.len())] {
                            worst = worst.max(validate_file(set, f, &mut buf, &mut text));
                        }
                        done.push((start, text, worst));
                    }
                    done
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().map_err(|_| "a validation thread failed")?);
        }
        Ok::<_, &str>(all)
    })?;
    results.sort_unstable_by_key(|r| r.0);
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut worst = Verdict::Valid;
    for (_, text, v) in results {
        worst = worst.max(v);
        out.write_all(&text)
            .map_err(|e| Failure::io("writing to stdout", e))?;
    }
    out.flush()
        .map_err(|e| Failure::io("writing to stdout", e))?;
    Ok(match worst {
        Verdict::Valid => Exit::Ok,
        Verdict::Wanting => Exit::Wanting,
        Verdict::Unreadable => {
            eprintln!(
                "flowfail: some files could not be read (their lines say why): exit 2, not 1"
            );
            Exit::Usage
        }
    })
}

/// One result line of `validate`: a report, a file that is not a TaskObject at all, or why the
/// file could not be read.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum ValidateLine<'a> {
    Checked {
        file: &'a str,
        valid: bool,
        declared_version: Option<&'a str>,
        errors: &'a [flowfail_core::schema::SchemaError],
        version_mismatch: Option<&'a str>,
    },
    NotATaskObject {
        file: &'a str,
        valid: bool,
        error: &'a str,
    },
    Unreadable {
        file: &'a str,
        valid: bool,
        readable: bool,
        error: &'a str,
    },
}

/// TaskObjects larger than this are refused unread.
const MAX_TASK_OBJECT: usize = 16 << 20;

/// Why a file gave no JSON value.
enum ReadError {
    /// It could not be read (exit 2).
    Io(std::io::Error),
    /// It was read and is not a TaskObject: too large, or not JSON (exit 1).
    NotATaskObject(String),
}

/// Reads a whole file into the reused, already-initialised `buf` (grown when needed) with plain
/// reads: no size probing, which costs two system calls per file. Returns the length.
fn read_whole(mut file: std::fs::File, buf: &mut Vec<u8>) -> Result<usize, ReadError> {
    if buf.len() < 64 << 10 {
        buf.resize(64 << 10, 0);
    }
    let mut len = 0;
    loop {
        if len == buf.len() {
            if len >= MAX_TASK_OBJECT {
                return Err(ReadError::NotATaskObject(format!(
                    "larger than {} MiB: not a TaskObject",
                    MAX_TASK_OBJECT >> 20
                )));
            }
            buf.resize(len * 2, 0);
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => return Ok(len),
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// Validates one file, appending its result line to `out`; `buf` is a reused read buffer.
fn validate_file(set: &SchemaSet, f: &Path, buf: &mut Vec<u8>, out: &mut Vec<u8>) -> Verdict {
    let parsed = std::fs::File::open(f)
        .map_err(ReadError::Io)
        .and_then(|file| read_whole(file, buf))
        .and_then(|n| {
            serde_json::from_slice::<serde_json::Value>(&buf[..n])
                .map_err(|e| ReadError::NotATaskObject(format!("invalid JSON: {e}")))
        });
    let file = f.to_string_lossy();
    let (verdict, line) = match &parsed {
        Ok(v) => {
            let r = set.validate(v);
            let line = ValidateLine::Checked {
                file: &file,
                valid: r.valid,
                declared_version: r.declared_version.as_deref(),
                errors: &r.errors,
                version_mismatch: r.version_mismatch.as_deref(),
            };
            (
                if r.valid {
                    Verdict::Valid
                } else {
                    Verdict::Wanting
                },
                serde_json::to_vec(&line),
            )
        }
        Err(ReadError::NotATaskObject(why)) => (
            Verdict::Wanting,
            serde_json::to_vec(&ValidateLine::NotATaskObject {
                file: &file,
                valid: false,
                error: why,
            }),
        ),
        Err(ReadError::Io(e)) => (
            Verdict::Unreadable,
            serde_json::to_vec(&ValidateLine::Unreadable {
                file: &file,
                valid: false,
                readable: false,
                error: &e.to_string(),
            }),
        ),
    };
    // Serialising these lines to memory cannot fail; if it did, the file would count as unread.
    match line {
        Ok(l) => {
            out.extend_from_slice(&l);
            out.push(b'\n');
            verdict
        }
        Err(_) => Verdict::Unreadable,
    }
}
