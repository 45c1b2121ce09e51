//! `classify --plain`: a log's failures (or, with `--all-lines`, every line) classified at
//! memory-scan speed on all cores.
//!
//! Input is read in blocks of whole lines into a reused buffer; each block is handed to
//! [`RuleSet::classify_failures`], which looks only at failure lines, or to
//! [`RuleSet::classify_lines`], which classifies in full only the lines that hold evidence for
//! some rule. Stdin is read by one thread and each block split over all cores. A regular file
//! given with `--count` is split at line ends up front so that reading is parallel too: with
//! `--all-lines` every core reads and scans its own part; a failure count pipelines, readers
//! finding failures and classifiers classifying them (see [`file::count_failures_pipelined`]).

mod blocks;
mod counts;
mod file;

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;

use flowfail_core::classify::Explanation;
use flowfail_core::{Classification, RuleSet};

use crate::CliResult;
use crate::failure::{Exit, Failure};
use blocks::{for_each_block, line_count, split_at_lines};
pub(crate) use counts::ClassCounts;
use file::count_file_parallel;

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

#[cfg(test)]
impl ScanOptions {
    /// Every line, counted.
    const ALL_COUNT: ScanOptions = ScanOptions {
        count: true,
        all_lines: true,
        explain: false,
    };
    /// Failure lines, counted.
    const FAILURE_COUNT: ScanOptions = ScanOptions {
        count: true,
        all_lines: false,
        explain: false,
    };
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

#[cfg(test)]
mod tests {
    use super::blocks::BLOCK;
    use super::*;

    const ALL_COUNT: ScanOptions = ScanOptions::ALL_COUNT;

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
}
