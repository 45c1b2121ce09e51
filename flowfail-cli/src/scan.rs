//! `classify --plain`: a log's failures (or, with `--all-lines`, every line) classified at
//! memory-scan speed on all cores.
//!
//! Input is read in blocks of whole lines into a reused buffer; each block is handed to
//! [`RuleSet::classify_failures`], which looks only at failure lines, or to
//! [`RuleSet::classify_lines`], which classifies in full only the lines that hold evidence for
//! some rule. Stdin is read by one thread and each block split over all cores. A regular file
//! given with `--count` is split at line ends up front so that reading is parallel too: with
//! `--all-lines` every core reads and scans its own part; a failure count pipelines, readers
//! finding failures and classifiers classifying them (see [`count_failures_pipelined`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use flowfail_core::classify::{
    Explanation, find_failures, record_boundary, record_boundary_before,
};
use flowfail_core::{Classification, FailureKind, RuleSet};

use crate::CliResult;
use crate::failure::{Exit, Failure};

/// What `classify --plain` prints.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanOptions {
    /// Counts instead of a line per result.
    pub(crate) count: bool,
    /// Every line, not only failure lines.
    pub(crate) all_lines: bool,
    /// Each result line says how it was decided.
    pub(crate) explain: bool,
}

/// The rules of a scan: the built-in ones, compiled on first use (a failure count starts
/// reading the log while another thread compiles them), or rules already loaded.
pub(crate) enum Rules {
    Builtin,
    Loaded(Box<RuleSet>),
}

impl Rules {
    pub(crate) fn get(&self) -> &RuleSet {
        match self {
            Rules::Builtin => RuleSet::builtin(),
            Rules::Loaded(rules) => rules,
        }
    }
}

/// Counts of classified lines, for `classify --count`.
///
/// Rules are few and `'static`: a short vector searched by address first is much cheaper per
/// line than a map keyed by string.
#[derive(Default)]
pub(crate) struct ClassCounts {
    lines: u64,
    /// Failure lines, when only those were classified (`None`: every line was).
    failure_lines: Option<u64>,
    by_rule: Vec<(&'static str, FailureKind, u64)>,
}

impl ClassCounts {
    fn failures_only() -> Self {
        ClassCounts {
            failure_lines: Some(0),
            ..ClassCounts::default()
        }
    }

    pub(crate) fn add(&mut self, c: Classification) {
        self.lines += 1;
        self.add_n(c.rule, c.kind, 1);
    }

    fn add_failure(&mut self, c: Classification) {
        if let Some(f) = &mut self.failure_lines {
            *f += 1;
        }
        self.add_n(c.rule, c.kind, 1);
    }

    fn add_n(&mut self, rule: &'static str, kind: FailureKind, n: u64) {
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
        self.lines += other.lines;
        if let (Some(a), Some(b)) = (&mut self.failure_lines, other.failure_lines) {
            *a += b;
        }
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
        let v = match self.failure_lines {
            None => {
                serde_json::json!({"lines": self.lines, "by_kind": by_kind, "by_rule": by_rule})
            }
            Some(f) => serde_json::json!({
                "lines": self.lines, "failure_lines": f, "by_kind": by_kind, "by_rule": by_rule
            }),
        };
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

/// One failure of a log as a JSON line, with its 1-based line number.
fn write_failure(out: &mut impl Write, line: u64, c: Classification) -> std::io::Result<()> {
    writeln!(
        out,
        r#"{{"line":{line},"kind":"{}","retryable":{},"rule":"{}"}}"#,
        c.kind, c.retryable, c.rule
    )
}

/// A classification with its explanation as a JSON line (`line` for a log's failures).
pub(crate) fn write_explained(
    out: &mut impl Write,
    line: Option<u64>,
    e: &Explanation,
) -> std::io::Result<()> {
    let c = e.classification;
    let mut v = serde_json::json!({
        "kind": c.kind, "retryable": c.retryable, "rule": c.rule, "explain": e.steps
    });
    if let Some(n) = line {
        v["line"] = n.into();
    }
    serde_json::to_writer(&mut *out, &v)?;
    out.write_all(b"\n")
}

/// Scans one part of a log (whole lines) into counts or result lines; line numbers in the
/// output start after `first_line` lines.
fn scan_part(
    rules: &RuleSet,
    opts: ScanOptions,
    part: &[u8],
    first_line: u64,
    counts: &mut ClassCounts,
    out: &mut Vec<u8>,
) -> u64 {
    // Writing into memory cannot fail.
    if opts.all_lines {
        let mut lines = 0;
        rules.classify_lines(part, |line, c| {
            lines += 1;
            if opts.count {
                counts.add(c);
            } else if opts.explain {
                let text = String::from_utf8_lossy(line);
                let _ = write_explained(out, None, &rules.explain(&text, None));
            } else {
                let _ = write_class(out, c);
            }
        });
        return lines;
    }
    let lines = rules.classify_failures(part, |i, text, c| {
        let n = first_line + i as u64 + 1;
        if opts.count {
            counts.add_failure(c);
        } else if opts.explain {
            let text = String::from_utf8_lossy(text);
            let _ = write_explained(out, Some(n), &rules.explain(&text, None));
        } else {
            let _ = write_failure(out, n, c);
        }
    }) as u64;
    if opts.count {
        counts.lines += lines;
    }
    lines
}

/// Block size of the reused read buffer.
const BLOCK: usize = 1 << 20;

pub(crate) fn cmd_classify_plain(rules: &Rules, opts: ScanOptions, files: &[PathBuf]) -> CliResult {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut scan = Scan::new(rules, opts, threads);
    if files.is_empty() {
        scan.stream(std::io::stdin().lock(), &mut out)
            .map_err(|e| Failure::io("classifying stdin", e))?;
    }
    for path in files {
        let file =
            File::open(path).map_err(|e| Failure::io(format!("reading {}", path.display()), e))?;
        if opts.count {
            count_file_parallel(rules, opts, &file, threads).map(|c| scan.counts.merge(c))
        } else {
            scan.stream(&file, &mut out)
        }
        .map_err(|e| Failure::io(format!("classifying {}", path.display()), e))?;
    }
    if opts.count {
        scan.counts.write(&mut out)
    } else {
        Ok(())
    }
    .and_then(|()| out.flush())
    .map_err(|e| Failure::io("writing to stdout", e))?;
    Ok(Exit::Ok)
}

/// A scan in progress: its options, counts, and the lines read so far (for line numbers).
struct Scan<'r> {
    /// Compiled when a block is first classified here.
    rules: &'r Rules,
    opts: ScanOptions,
    threads: usize,
    counts: ClassCounts,
    lines: u64,
}

impl<'r> Scan<'r> {
    fn new(rules: &'r Rules, opts: ScanOptions, threads: usize) -> Self {
        let counts = if opts.all_lines {
            ClassCounts::default()
        } else {
            ClassCounts::failures_only()
        };
        Scan {
            rules,
            opts,
            threads,
            counts,
            lines: 0,
        }
    }

    /// Reads `r` in blocks of whole lines; each block is split at line ends over the threads
    /// and the results are written in input order. Line numbers go on from the last stream's.
    fn stream(&mut self, r: impl Read, out: &mut impl Write) -> std::io::Result<()> {
        for_each_block(r, |block| self.block(block, out))
    }

    /// Classifies a block of whole lines, split over the threads.
    fn block(&mut self, block: &[u8], out: &mut impl Write) -> std::io::Result<()> {
        let (rules, opts) = (self.rules.get(), self.opts);
        let parts = split_at_lines(block, self.threads);
        // Line numbers need each part's first line: count them up front, unless counting.
        let numbered = !opts.count && !opts.all_lines && parts.len() > 1;
        let mut firsts = Vec::with_capacity(parts.len());
        let mut at = self.lines;
        for p in &parts {
            firsts.push(at);
            if numbered {
                at += line_count(p);
            }
        }
        let results: Vec<(ClassCounts, Vec<u8>, u64)> = if parts.len() <= 1 {
            parts
                .iter()
                .zip(&firsts)
                .map(|(part, first)| {
                    let mut counts = ClassCounts::failures_only();
                    let mut text = Vec::new();
                    let n = scan_part(rules, opts, part, *first, &mut counts, &mut text);
                    (counts, text, n)
                })
                .collect()
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = parts
                    .iter()
                    .zip(&firsts)
                    .map(|(part, first)| {
                        s.spawn(move || {
                            let mut counts = ClassCounts::failures_only();
                            let mut text = Vec::new();
                            let n = scan_part(rules, opts, part, *first, &mut counts, &mut text);
                            (counts, text, n)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_default())
                    .collect()
            })
        };
        for (counts, text, n) in results {
            self.lines += n;
            self.counts.merge(counts);
            out.write_all(&text)?;
        }
        Ok(())
    }
}

/// Reads `r` in blocks of whole lines into a reused buffer and calls `each` with every block,
/// in order. A block is never cut between a failure line and its traceback; a line longer than
/// a block is passed by its head (one block without `\n`) and the rest of it is skipped.
fn for_each_block(
    mut r: impl Read,
    mut each: impl FnMut(&[u8]) -> std::io::Result<()>,
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
            match memchr::memchr(b'\n', &buf[..filled]) {
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
            match memchr::memrchr(b'\n', &buf[..filled]) {
                // The rest goes on with the next block: never cut a traceback off its line.
                Some(i) => record_boundary_before(&buf[..filled], i + 1)
                    .filter(|b| *b > 0)
                    .unwrap_or(i + 1),
                None => {
                    // One line longer than a block: classification reads its head only.
                    each(&buf[..filled])?;
                    filled = 0;
                    skipping = true;
                    continue;
                }
            }
        };
        each(&buf[..whole])?;
        if eof {
            return Ok(());
        }
        buf.copy_within(whole..filled, 0);
        filled -= whole;
    }
}

/// Lines in `buf` as the scans count them (a final line without `\n` counts).
fn line_count(buf: &[u8]) -> u64 {
    let n = memchr::memchr_iter(b'\n', buf).count() as u64;
    n + u64::from(!buf.is_empty() && !buf.ends_with(b"\n"))
}

fn read_some(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            res => return res,
        }
    }
}

/// Counts a regular file on `threads` threads. A failure count is pipelined (see
/// [`count_failures_pipelined`]); otherwise every thread reads and scans its own run of lines.
fn count_file_parallel(
    rules: &Rules,
    opts: ScanOptions,
    file: &File,
    threads: usize,
) -> std::io::Result<ClassCounts> {
    if threads > 1 && !opts.all_lines {
        return count_failures_pipelined(rules, file, threads);
    }
    let bounds = line_bounds(file, threads)?;
    let results: Vec<std::io::Result<ClassCounts>> = std::thread::scope(|s| {
        let handles: Vec<_> = bounds
            .windows(2)
            .map(|w| {
                let (from, to) = (w[0], w[1]);
                s.spawn(move || {
                    let mut scan = Scan::new(rules, opts, 1);
                    let part = FileRange {
                        file,
                        pos: from,
                        end: to,
                    };
                    scan.stream(part, &mut std::io::sink())?;
                    Ok(scan.counts)
                })
            })
            .collect();
        handles.into_iter().map(joined).collect()
    });
    let mut total = Scan::new(rules, opts, 1).counts;
    for r in results {
        total.merge(r?);
    }
    Ok(total)
}

/// Batches the pipelined count keeps waiting for a classifier (at most 2 MiB of failure text):
/// enough to cover the rules' compilation at the start of a scan.
const QUEUE: usize = 32;

/// Counts the failures of a regular file with readers and classifiers: `threads / 2` threads
/// read their own runs of lines and find the failures in them (a literal search, at memory
/// speed), and hand the failures' texts in batches to the other threads, which classify them.
/// So few threads build and warm the rules' automata, the rules compile while the file is
/// being read, and each thread does what it does fast. A reader that finds every classifier
/// busy (the queue full, as on a log of failures only) classifies the batch itself.
fn count_failures_pipelined(
    rules: &Rules,
    file: &File,
    threads: usize,
) -> std::io::Result<ClassCounts> {
    let readers = (threads / 2).max(1);
    let classifiers = threads.saturating_sub(readers).max(1);
    let bounds = line_bounds(file, readers)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(QUEUE);
    let rx = std::sync::Mutex::new(rx);
    let results: Vec<std::io::Result<ClassCounts>> = std::thread::scope(|s| {
        let mut handles: Vec<_> = (0..classifiers)
            .map(|_| {
                s.spawn(|| {
                    let rules = rules.get();
                    let mut counts = ClassCounts::failures_only();
                    // A poisoned lock means another classifier panicked: that join reports it.
                    while let Some(batch) = rx.lock().ok().and_then(|rx| rx.recv().ok()) {
                        batch.classify_into(rules, &mut counts);
                    }
                    Ok(counts)
                })
            })
            .collect();
        for w in bounds.windows(2) {
            let mut handoff = Handoff {
                tx: tx.clone(),
                rules,
                batch: Batch::default(),
            };
            let part = FileRange {
                file,
                pos: w[0],
                end: w[1],
            };
            handles.push(s.spawn(move || {
                let mut counts = ClassCounts::failures_only();
                for_each_block(part, |block| {
                    let lines = find_failures(block, |_, text| handoff.push(text, &mut counts));
                    counts.lines += lines as u64;
                    Ok(())
                })?;
                handoff.flush(&mut counts);
                Ok(counts)
            }));
        }
        // The classifiers stop once every reader's sender is gone.
        drop(tx);
        handles.into_iter().map(joined).collect()
    });
    let mut total = ClassCounts::failures_only();
    for r in results {
        total.merge(r?);
    }
    Ok(total)
}

/// A scan thread's result; a panic in it becomes an error.
fn joined<T>(h: std::thread::ScopedJoinHandle<'_, std::io::Result<T>>) -> std::io::Result<T> {
    h.join()
        .unwrap_or_else(|_| Err(std::io::Error::other("a scan thread failed")))
}

/// The texts of some failures, one after another, for a classifier.
#[derive(Default)]
struct Batch {
    text: Vec<u8>,
    ends: Vec<usize>,
}

impl Batch {
    /// A batch is handed over once it holds this much text.
    const BYTES: usize = 64 << 10;

    fn push(&mut self, text: &[u8]) {
        self.text.extend_from_slice(text);
        self.ends.push(self.text.len());
    }

    fn classify_into(&self, rules: &RuleSet, counts: &mut ClassCounts) {
        let mut start = 0;
        for &end in &self.ends {
            counts.add_failure(rules.classify_bytes(&self.text[start..end], None));
            start = end;
        }
    }
}

/// A reader's side of the pipelined count: the batch it fills and where it goes.
struct Handoff<'r> {
    tx: std::sync::mpsc::SyncSender<Batch>,
    rules: &'r Rules,
    batch: Batch,
}

impl Handoff<'_> {
    fn push(&mut self, text: &[u8], counts: &mut ClassCounts) {
        self.batch.push(text);
        if self.batch.text.len() >= Batch::BYTES {
            self.flush(counts);
        }
    }

    /// Hands the batch to a classifier, or classifies it here when none can take it.
    fn flush(&mut self, counts: &mut ClassCounts) {
        if self.batch.ends.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        if let Err(
            std::sync::mpsc::TrySendError::Full(mut batch)
            | std::sync::mpsc::TrySendError::Disconnected(mut batch),
        ) = self.tx.try_send(batch)
        {
            batch.classify_into(self.rules.get(), counts);
            // Its buffers are filled again.
            batch.text.clear();
            batch.ends.clear();
            self.batch = batch;
        }
    }
}

/// Where `threads` threads should start reading `file`: line starts (never inside a failure
/// record when the window shows one), first 0 and last the file's length.
fn line_bounds(file: &File, threads: usize) -> std::io::Result<Vec<u64>> {
    let len = file.metadata()?.len();
    let mut bounds = vec![0u64];
    for k in 1..threads as u64 {
        let at = next_line_start(file, len * k / threads as u64, len)?;
        if at > *bounds.last().unwrap_or(&0) && at < len {
            bounds.push(at);
        }
    }
    bounds.push(len);
    Ok(bounds)
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
        // Never between a failure line and its traceback.
        let cut = record_boundary(buf, target + i + 1).unwrap_or(target + i + 1);
        if cut >= buf.len() {
            break;
        }
        parts.push(&buf[start..cut]);
        start = cut;
    }
    parts.push(&buf[start..]);
    parts.retain(|p| !p.is_empty());
    parts
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
        if let Some(i) = memchr::memchr(b'\n', &window[..n]) {
            // Never between a failure line and its traceback, when the window shows where.
            let cut = record_boundary(&window[..n], i + 1).unwrap_or(i + 1);
            return Ok(pos + cut as u64);
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

    const ALL_COUNT: ScanOptions = ScanOptions {
        count: true,
        all_lines: true,
        explain: false,
    };
    const FAILURE_COUNT: ScanOptions = ScanOptions {
        count: true,
        all_lines: false,
        explain: false,
    };

    /// The failures' result lines of `log`, scanned with `threads` threads.
    fn failure_lines(log: &[u8], threads: usize) -> String {
        let opts = ScanOptions {
            count: false,
            all_lines: false,
            explain: false,
        };
        let mut scan = Scan::new(&Rules::Builtin, opts, threads);
        let mut out = Vec::new();
        scan.stream(log, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn failure_line_numbers_do_not_depend_on_threads() {
        let mut log = String::new();
        for i in 0..3000 {
            log.push_str(&match i % 9 {
                0 => format!("{i} ERROR Task timed out after 45.00 seconds\n"),
                1 => format!("{i} INFO dispatching to lambda timeout=45s\n"),
                _ => format!("{i} INFO step ok\n"),
            });
        }
        let one = failure_lines(log.as_bytes(), 1);
        assert_eq!(one.lines().count(), 334);
        assert!(one.starts_with(r#"{"line":1,"kind":"timeout""#), "{one}");
        assert!(one.contains(r#"{"line":2998,"kind":"timeout""#));
        for threads in [2, 3, 7] {
            assert_eq!(
                failure_lines(log.as_bytes(), threads),
                one,
                "{threads} threads"
            );
        }
    }

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
        let mut scan = Scan::new(&Rules::Builtin, ALL_COUNT, 2);
        scan.stream(log.as_slice(), &mut std::io::sink()).unwrap();
        let mut out = Vec::new();
        scan.counts.write(&mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["lines"], 3);
        assert_eq!(v["by_kind"]["timeout"], 1);
        assert_eq!(v["by_kind"]["model_api_5xx"], 1);
        assert_eq!(v["by_kind"]["unknown"], 1);
    }

    /// A log of `lines` lines made by `line`, written to a fresh temporary folder: the folder,
    /// the open file and the text.
    fn temp_log(
        tag: &str,
        lines: usize,
        line: impl Fn(usize) -> String,
    ) -> (PathBuf, File, String) {
        let dir = std::env::temp_dir().join(format!("ff-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log: String = (0..lines).map(line).collect();
        let path = dir.join("log");
        std::fs::write(&path, &log).unwrap();
        (dir, File::open(&path).unwrap(), log)
    }

    #[test]
    fn a_file_counted_in_parallel_counts_like_one_pass() {
        let (dir, file, log) = temp_log("scan", 5000, |i| match i % 7 {
            0 => format!("{i} ERROR Task timed out after 45.00 seconds\n"),
            1 => format!("{i} ERROR openai.RateLimitError: Error code: 429\n"),
            2 => "\n".to_owned(),
            _ => format!("{i} INFO step ok latency_ms=500\r\n"),
        });
        for opts in [ALL_COUNT, FAILURE_COUNT] {
            let mut one = Scan::new(&Rules::Builtin, opts, 1);
            one.stream(log.as_bytes(), &mut std::io::sink()).unwrap();
            for threads in [1, 2, 3, 7] {
                let many = count_file_parallel(&Rules::Builtin, opts, &file, threads).unwrap();
                assert_eq!(many.lines, 5000);
                let (mut a, mut b) = (Vec::new(), Vec::new());
                many.write(&mut a).unwrap();
                one.counts.write(&mut b).unwrap();
                assert_eq!(a, b, "{threads} threads");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_pipelined_count_classifies_with_the_given_rules() {
        let (dir, file, _) = temp_log("pipe", 20_000, |i| match i % 5 {
            0 => format!("2026-11-13T09:50:00Z ERROR step budget spent for t-{i}\n"),
            1 => "2026-11-13T09:50:00Z ERROR openai.RateLimitError: Error code: 429\n".into(),
            _ => format!("2026-11-13T09:50:00Z INFO step {i} ok\n"),
        });
        let user = RuleSet::with_extra_toml([(
            "extra.toml",
            "[[rule]]\nname = \"flowengine:budget\"\nstage = \"pattern\"\nkind = \"timeout\"\npattern = 'step budget spent'\n",
        )])
        .unwrap();
        let rules = Rules::Loaded(Box::new(user));
        for threads in [2, 3, 4] {
            let counts = count_file_parallel(&rules, FAILURE_COUNT, &file, threads).unwrap();
            let mut out = Vec::new();
            counts.write(&mut out).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["lines"], 20_000, "{threads} threads");
            assert_eq!(v["failure_lines"], 8_000);
            assert_eq!(v["by_rule"]["flowengine:budget"], 4_000);
            assert_eq!(v["by_kind"]["rate_limit"], 4_000);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reader_classifies_a_batch_no_classifier_takes() {
        // No classifier waits on a rendezvous channel: every hand-off finds it full; then it
        // is gone.
        let (tx, rx) = std::sync::mpsc::sync_channel(0);
        let rules = Rules::Builtin;
        let mut handoff = Handoff {
            tx,
            rules: &rules,
            batch: Batch::default(),
        };
        let mut counts = ClassCounts::failures_only();
        let line = b"ERROR Task timed out after 45.00 seconds";
        for _ in 0..(Batch::BYTES / line.len() + 10) {
            handoff.push(line, &mut counts);
        }
        drop(rx);
        handoff.push(b"ERROR Error code: 429", &mut counts);
        handoff.flush(&mut counts);
        assert_eq!(
            counts.failure_lines,
            Some((Batch::BYTES / line.len() + 11) as u64)
        );
        assert!(handoff.batch.ends.is_empty());
        let kinds: u64 = counts.by_rule.iter().map(|(_, _, n)| n).sum();
        assert_eq!(kinds, counts.failure_lines.unwrap());
    }
}
