//! Counting a regular file in parallel: every thread reads its own run of lines, found with
//! positional reads, and a failure count is pipelined between readers and classifiers.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

use flowfail_core::RuleSet;
use flowfail_core::classify::{find_failures, record_boundary};

use super::blocks::for_each_block;
use super::{ClassCounts, Rules, Scan, ScanOptions};

/// Counts a regular file on `threads` threads. A failure count is pipelined (see
/// [`count_failures_pipelined`]); otherwise every thread reads and scans its own run of lines.
pub(super) fn count_file_parallel(
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
    use std::path::PathBuf;

    use super::*;

    const ALL_COUNT: ScanOptions = ScanOptions::ALL_COUNT;
    const FAILURE_COUNT: ScanOptions = ScanOptions::FAILURE_COUNT;

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
