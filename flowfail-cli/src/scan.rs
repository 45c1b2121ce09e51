//! `classify --plain`: a log's lines classified at memory-scan speed on all cores.
//!
//! Input is read in blocks of whole lines into a reused buffer; each block is handed to
//! [`classify_lines`], which classifies in full only the lines that hold evidence for some rule.
//! Stdin is read by one thread and each block split over all cores; a regular file given with
//! `--count` is split at line ends up front and every core reads and scans its own part, so
//! reading is parallel too.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use flowfail_core::{Classification, FailureKind, classify, classify_lines};

use crate::CliResult;
use crate::failure::{Exit, Failure};

/// Counts of classified lines, for `classify --count`.
///
/// Rules are few and `'static`: a short vector searched by address first is much cheaper per
/// line than a map keyed by string.
#[derive(Default)]
pub(crate) struct ClassCounts {
    lines: u64,
    by_rule: Vec<(&'static str, FailureKind, u64)>,
}

impl ClassCounts {
    pub(crate) fn add(&mut self, c: Classification) {
        self.add_n(c.rule, c.kind, 1);
    }

    fn add_n(&mut self, rule: &'static str, kind: FailureKind, n: u64) {
        self.lines += n;
        let hit = self
            .by_rule
            .iter_mut()
            .find(|(r, k, _)| *k == kind && (std::ptr::eq(*r, rule) || *r == rule));
        match hit {
            Some((_, _, count)) => *count += n,
            None => self.by_rule.push((rule, kind, n)),
        }
    }

    fn merge(&mut self, other: ClassCounts) {
        for (rule, kind, n) in other.by_rule {
            self.add_n(rule, kind, n);
        }
    }

    pub(crate) fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
        let mut by_rule: BTreeMap<&str, u64> = BTreeMap::new();
        for (rule, kind, n) in &self.by_rule {
            *by_kind.entry(kind.as_str()).or_default() += n;
            *by_rule.entry(rule).or_default() += n;
        }
        let v = serde_json::json!({"lines": self.lines, "by_kind": by_kind, "by_rule": by_rule});
        serde_json::to_writer(&mut *out, &v)?;
        out.write_all(b"\n")
    }
}

/// One classification as a JSON line.
pub(crate) fn write_class(out: &mut impl Write, c: Classification) -> std::io::Result<()> {
    writeln!(
        out,
        r#"{{"kind":"{}","retryable":{},"rule":"{}"}}"#,
        c.kind, c.retryable, c.rule
    )
}

/// Where the results of a scan go: counts, or one JSON line per input line.
enum Sink<'a, W: Write> {
    Count(&'a mut ClassCounts),
    Lines(&'a mut W),
}

impl<W: Write> Sink<'_, W> {
    fn push(&mut self, c: Classification) -> std::io::Result<()> {
        match self {
            Sink::Count(n) => {
                n.add(c);
                Ok(())
            }
            Sink::Lines(w) => write_class(w, c),
        }
    }
}

/// Block size of the reused read buffer.
const BLOCK: usize = 1 << 20;

pub(crate) fn cmd_classify_plain(count: bool, files: &[PathBuf]) -> CliResult {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut counts = ClassCounts::default();
    if files.is_empty() {
        let stdin = std::io::stdin().lock();
        if count {
            scan_stream(stdin, threads, &mut Sink::<Vec<u8>>::Count(&mut counts))
        } else {
            scan_stream(stdin, threads, &mut Sink::Lines(&mut out))
        }
        .map_err(|e| Failure::io("classifying stdin", e))?;
    }
    for path in files {
        let file =
            File::open(path).map_err(|e| Failure::io(format!("reading {}", path.display()), e))?;
        if count {
            count_file_parallel(&file, threads).map(|c| counts.merge(c))
        } else {
            scan_stream(&file, threads, &mut Sink::Lines(&mut out))
        }
        .map_err(|e| Failure::io(format!("classifying {}", path.display()), e))?;
    }
    if count {
        counts.write(&mut out)
    } else {
        Ok(())
    }
    .and_then(|()| out.flush())
    .map_err(|e| Failure::io("writing to stdout", e))?;
    Ok(Exit::Ok)
}

/// Reads `r` in blocks of whole lines; each block is split at line ends over `threads` threads
/// and the results are written in input order.
fn scan_stream<W: Write>(
    mut r: impl Read,
    threads: usize,
    sink: &mut Sink<'_, W>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; BLOCK];
    let mut filled = 0;
    // Inside a line longer than a block: its head was classified, the rest is skipped.
    let mut skipping = false;
    loop {
        let n = read_some(&mut r, &mut buf[filled..])?;
        filled += n;
        let eof = n == 0;
        if skipping {
            match buf[..filled].iter().position(|b| *b == b'\n') {
                Some(i) => {
                    buf.copy_within(i + 1..filled, 0);
                    filled -= i + 1;
                    skipping = false;
                }
                None => {
                    filled = 0;
                    if eof {
                        return Ok(());
                    }
                    continue;
                }
            }
        }
        if filled < buf.len() && !eof {
            continue;
        }
        let whole = if eof {
            filled
        } else {
            match buf[..filled].iter().rposition(|b| *b == b'\n') {
                Some(i) => i + 1,
                None => {
                    // One line longer than a block: classification reads its head only.
                    sink.push(classify(&String::from_utf8_lossy(&buf[..filled]), None))?;
                    filled = 0;
                    skipping = true;
                    continue;
                }
            }
        };
        scan_block(&buf[..whole], threads, sink)?;
        if eof {
            return Ok(());
        }
        buf.copy_within(whole..filled, 0);
        filled -= whole;
    }
}

fn read_some(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            res => return res,
        }
    }
}

/// Classifies a block of whole lines, split over `threads` threads.
fn scan_block<W: Write>(
    block: &[u8],
    threads: usize,
    sink: &mut Sink<'_, W>,
) -> std::io::Result<()> {
    if threads <= 1 {
        let mut err = Ok(());
        classify_lines(block, |_, c| {
            if err.is_ok() {
                err = sink.push(c);
            }
        });
        return err;
    }
    let parts = split_at_lines(block, threads);
    let counting = matches!(sink, Sink::Count(_));
    let results: Vec<(ClassCounts, Vec<u8>)> = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .iter()
            .map(|part| {
                s.spawn(move || {
                    let mut counts = ClassCounts::default();
                    let mut text = Vec::new();
                    let mut sink = if counting {
                        Sink::Count(&mut counts)
                    } else {
                        Sink::Lines(&mut text)
                    };
                    // Pushing into memory cannot fail.
                    classify_lines(part, |_, c| {
                        let _ = sink.push(c);
                    });
                    (counts, text)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    for (counts, text) in results {
        match sink {
            Sink::Count(total) => total.merge(counts),
            Sink::Lines(w) => w.write_all(&text)?,
        }
    }
    Ok(())
}

/// Splits `buf` into at most `n` parts of about equal size, each ending at a line end.
fn split_at_lines(buf: &[u8], n: usize) -> Vec<&[u8]> {
    let mut parts = Vec::with_capacity(n);
    let mut start = 0;
    for k in 1..n {
        let target = (buf.len() * k / n).max(start);
        let Some(i) = buf[target..].iter().position(|b| *b == b'\n') else {
            break;
        };
        parts.push(&buf[start..=target + i]);
        start = target + i + 1;
    }
    parts.push(&buf[start..]);
    parts.retain(|p| !p.is_empty());
    parts
}

/// Counts a regular file on `threads` threads, each reading and scanning its own run of lines.
fn count_file_parallel(file: &File, threads: usize) -> std::io::Result<ClassCounts> {
    let len = file.metadata()?.len();
    let mut bounds = vec![0u64];
    for k in 1..threads as u64 {
        let at = next_line_start(file, len * k / threads as u64, len)?;
        if at > *bounds.last().unwrap_or(&0) && at < len {
            bounds.push(at);
        }
    }
    bounds.push(len);
    let results: Vec<std::io::Result<ClassCounts>> = std::thread::scope(|s| {
        let handles: Vec<_> = bounds
            .windows(2)
            .map(|w| {
                let (from, to) = (w[0], w[1]);
                s.spawn(move || {
                    let mut counts = ClassCounts::default();
                    let part = FileRange {
                        file,
                        pos: from,
                        end: to,
                    };
                    scan_stream(part, 1, &mut Sink::<Vec<u8>>::Count(&mut counts))?;
                    Ok(counts)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a scan thread failed")))
            })
            .collect()
    });
    let mut total = ClassCounts::default();
    for r in results {
        total.merge(r?);
    }
    Ok(total)
}

/// The offset of the first line that starts at or after `at`.
fn next_line_start(file: &File, at: u64, len: u64) -> std::io::Result<u64> {
    if at == 0 {
        return Ok(0);
    }
    let mut window = vec![0u8; 64 << 10];
    // The line containing byte `at - 1` ends at the first newline from there.
    let mut pos = at - 1;
    while pos < len {
        let n = file.read_at(&mut window, pos)?;
        if n == 0 {
            break;
        }
        if let Some(i) = window[..n].iter().position(|b| *b == b'\n') {
            return Ok(pos + i as u64 + 1);
        }
        pos += n as u64;
    }
    Ok(len)
}

/// A byte range of a file, read with positional reads (no shared cursor).
struct FileRange<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for FileRange<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.end - self.pos).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_end_at_line_ends_and_cover_everything() {
        let text = b"a\nbb\nccc\ndddd\neeeee";
        for n in 1..8 {
            let parts = split_at_lines(text, n);
            assert_eq!(parts.concat(), text);
            for p in &parts[..parts.len() - 1] {
                assert_eq!(p.last(), Some(&b'\n'));
            }
        }
    }

    #[test]
    fn a_line_longer_than_a_block_counts_once_by_its_head() {
        let mut log = b"Task timed out after 45.00 seconds ".to_vec();
        log.extend(std::iter::repeat_n(b'x', 3 * BLOCK + 17));
        log.extend_from_slice(b"\nINFO ok\n502 Bad Gateway");
        let mut counts = ClassCounts::default();
        scan_stream(log.as_slice(), 2, &mut Sink::<Vec<u8>>::Count(&mut counts)).unwrap();
        let mut out = Vec::new();
        counts.write(&mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["lines"], 3);
        assert_eq!(v["by_kind"]["timeout"], 1);
        assert_eq!(v["by_kind"]["model_api_5xx"], 1);
        assert_eq!(v["by_kind"]["unknown"], 1);
    }

    #[test]
    fn a_file_counted_in_parallel_counts_like_one_pass() {
        let dir = std::env::temp_dir().join(format!("ff-scan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let mut log = String::new();
        for i in 0..5000 {
            log.push_str(&match i % 7 {
                0 => format!("{i} ERROR Task timed out after 45.00 seconds\n"),
                1 => format!("{i} ERROR openai.RateLimitError: Error code: 429\n"),
                2 => "\n".to_owned(),
                _ => format!("{i} INFO step ok latency_ms=500\r\n"),
            });
        }
        std::fs::write(&path, &log).unwrap();
        let file = File::open(&path).unwrap();
        let mut one = ClassCounts::default();
        scan_stream(log.as_bytes(), 1, &mut Sink::<Vec<u8>>::Count(&mut one)).unwrap();
        for threads in [1, 2, 3, 7] {
            let many = count_file_parallel(&file, threads).unwrap();
            assert_eq!(many.lines, 5000);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            many.write(&mut a).unwrap();
            one.write(&mut b).unwrap();
            assert_eq!(a, b, "{threads} threads");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
