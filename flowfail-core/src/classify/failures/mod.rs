//! The failures of a log: lines logged at a failure level (ERROR, FATAL, CRITICAL, … in plain
//! text, logfmt and JSON logs), exceptions with their Python tracebacks, and the runtime's own
//! failure lines (AWS Lambda's `Task timed out after …`).
//!
//! A line logged at a failure level holds one of a few literals (`ERR`, `rror`, `FATAL`, …),
//! and an exception line or a traceback starts its line with a name (`httpx.ReadTimeout:`,
//! `Traceback (`), so the log is searched for those literals (a SIMD multi-literal search over
//! the raw bytes, no copy) and the first bytes of the lines in between are looked at; only
//! such candidate lines are looked at further, and only failure lines are classified.

use std::borrow::Cow;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, MatchKind};
use memchr::memmem;

use super::lines::strip_cr;
use super::{Classification, RuleSet};

/// Literals one of which every line at a failure level holds (case matters: these are raw
/// bytes): each level word of [`failure_level`] in its lower, title and upper spelling, and
/// the JSON number levels [`json_level`] reads.
const NEEDLES: &[&str] = &[
    "ERR",            // ERROR, ERR
    "rror",           // error, Error
    "err",            // err (syslog's name for the level), error
    "Err",            //
    "FATAL",          //
    "atal",           // fatal, Fatal
    "CRIT",           // CRITICAL, CRIT
    "crit",           // critical, crit
    "Crit",           // Critical
    "ALERT",          //
    "alert",          //
    "Alert",          //
    "EMERG",          // EMERG, EMERGENCY
    "emerg",          //
    "Emerg",          //
    "PANIC",          //
    "anic",           // panic, Panic, panicked
    "SEVERE",         // java.util.logging
    "severe",         //
    "Severe",         //
    "Task timed out", // AWS Lambda
    "Runtime exited", // AWS Lambda
    "\"level\":5",    // pino / bunyan numeric levels: 50 error, 60 fatal
    "\"level\":6",
    "\"level\": 5",
    "\"level\": 6",
];

const TRACEBACK: &[u8] = b"Traceback (most recent call last):";

/// Substring searchers built once (building one per line costs more than the search).
type Finders<const N: usize> = LazyLock<[memmem::Finder<'static>; N]>;

/// AWS Lambda's own failure lines.
static LAMBDA: Finders<2> = LazyLock::new(|| {
    [&b"Task timed out after"[..], b"Runtime exited with error"].map(memmem::Finder::new)
});
/// The level keys of logfmt lines.
static LOGFMT_KEYS: Finders<4> = LazyLock::new(|| {
    [&b"level="[..], b"lvl=", b"severity=", b"loglevel="].map(memmem::Finder::new)
});
/// The level keys of JSON log lines.
static JSON_KEYS: Finders<8> = LazyLock::new(|| {
    [
        &b"\"level\""[..],
        b"\"levelname\"",
        b"\"severity\"",
        b"\"log.level\"",
        b"\"lvl\"",
        b"\"loglevel\"",
        b"\"log_level\"",
        b"\"@l\"",
    ]
    .map(memmem::Finder::new)
});
static PANICKED: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"' panicked at"));

static FINDER: LazyLock<Option<Finder>> = LazyLock::new(Finder::build);

enum Finder {
    Packed(aho_corasick::packed::Searcher),
    Automaton(AhoCorasick),
}

impl Finder {
    fn build() -> Option<Finder> {
        if let Some(p) = aho_corasick::packed::Config::new()
            .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
            .heuristic_pattern_limits(false)
            .builder()
            .extend(NEEDLES)
            .build()
        {
            return Some(Finder::Packed(p));
        }
        AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(NEEDLES)
            .ok()
            .map(Finder::Automaton)
    }

    /// The start of the first needle at or after `at`.
    fn find(&self, hay: &[u8], at: usize) -> Option<usize> {
        let span = aho_corasick::Span::from(at..hay.len());
        match self {
            Finder::Packed(p) => p.find_in(hay, span).map(|m| m.start()),
            Finder::Automaton(a) => a
                .find(aho_corasick::Input::new(hay).span(span))
                .map(|m| m.start()),
        }
    }
}

/// What one line is to the failure scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineRole {
    /// Logged at a failure level, or a runtime's failure line.
    Failure,
    /// `Traceback (most recent call last):` with no failure line before it.
    Traceback,
    /// An exception line: `openai.RateLimitError: …`, `panic: …`.
    Exception,
    /// Anything else: healthy, or no failure evidence.
    Other,
}

/// The role of one line (`\r` stripped).
pub(crate) fn role(line: &[u8]) -> LineRole {
    if line.starts_with(TRACEBACK) {
        return LineRole::Traceback;
    }
    let trimmed = trim_start(line);
    let level = if trimmed.starts_with(b"{") {
        json_level(trimmed)
    } else {
        logfmt_level(line).or_else(|| head_level(trimmed))
    };
    match level {
        Some(true) => return LineRole::Failure,
        Some(false) => return LineRole::Other,
        None => {}
    }
    if LAMBDA.iter().any(|f| f.find(line).is_some()) {
        return LineRole::Failure;
    }
    if is_exception_line(line) {
        return LineRole::Exception;
    }
    LineRole::Other
}

fn trim_start(b: &[u8]) -> &[u8] {
    let i = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    &b[i..]
}

/// Whether a level word is a failure level; `None` when it is no level at all.
fn failure_level(word: &[u8]) -> Option<bool> {
    const FAILURE: &[&str] = &[
        "error",
        "err",
        "fatal",
        "critical",
        "crit",
        "alert",
        "emerg",
        "emergency",
        "panic",
        "severe",
    ];
    const OTHER: &[&str] = &[
        "trace", "debug", "info", "notice", "warn", "warning", "verbose", "fine", "finer",
        "finest", "config", "dbug", "inf", "wrn",
    ];
    if word.is_empty() || word.len() > 9 {
        return None;
    }
    if FAILURE
        .iter()
        .any(|w| w.as_bytes().eq_ignore_ascii_case(word))
    {
        // Loggers write a level in lower, title or upper case (`error`, `Error`, `ERROR`); the
        // literal search looks for those spellings only, so `eRRoR` is no level.
        let title = word[1..].iter().all(u8::is_ascii_lowercase);
        (title || word.iter().all(u8::is_ascii_uppercase)).then_some(true)
    } else if OTHER
        .iter()
        .any(|w| w.as_bytes().eq_ignore_ascii_case(word))
    {
        Some(false)
    } else {
        None
    }
}

/// `level=error`, `lvl=ERROR`, `severity="error"` anywhere in the line.
fn logfmt_level(line: &[u8]) -> Option<bool> {
    for finder in LOGFMT_KEYS.iter() {
        let key = finder.needle();
        let mut from = 0;
        while let Some(i) = finder.find(&line[from..]) {
            let at = from + i;
            from = at + key.len();
            if at > 0 && (line[at - 1].is_ascii_alphanumeric() || line[at - 1] == b'_') {
                continue;
            }
            let rest = &line[at + key.len()..];
            let rest = rest.strip_prefix(b"\"").unwrap_or(rest);
            let word_len = rest
                .iter()
                .position(|c| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            return failure_level(&rest[..word_len]);
        }
    }
    None
}

/// The first level word among the first few tokens of a plain line: `2026-… ERROR …`,
/// `[ERROR] …`, `ERROR:root:…`, `… | error | …`, with ANSI colours.
fn head_level(line: &[u8]) -> Option<bool> {
    let head = &line[..line.len().min(160)];
    let mut prev: &[u8] = b"";
    for tok in head
        .split(|c| *c == b' ' || *c == b'\t')
        .filter(|t| !t.is_empty())
        .take(6)
    {
        // A lowercase level word counts only where it is clearly a field: after a timestamp,
        // between tabs, or set off by brackets or a colon (`the error handler` is prose).
        let fielded = prev.iter().any(u8::is_ascii_digit) || memchr::memchr(b'\t', head).is_some();
        if let Some(level) = token_level(tok, fielded) {
            return Some(level);
        }
        prev = tok;
    }
    None
}

fn token_level(tok: &[u8], fielded: bool) -> Option<bool> {
    let mut i = 0;
    let mut set_off = false;
    // Leading punctuation and ANSI colour sequences.
    while i < tok.len() && !tok[i].is_ascii_alphabetic() {
        if tok[i] == 0x1b {
            i += 1;
            while i < tok.len() && !tok[i].is_ascii_alphabetic() {
                i += 1;
            }
            i += 1; // the sequence's final letter, `m`
            continue;
        }
        if !matches!(tok[i], b'[' | b'(' | b'<' | b'|' | b'"' | b'\'') {
            return None;
        }
        set_off = true;
        i += 1;
    }
    let start = i.min(tok.len());
    while i < tok.len() && tok[i].is_ascii_alphabetic() {
        i += 1;
    }
    let word = &tok[start..i];
    let upper = word.iter().all(u8::is_ascii_uppercase);
    match tok.get(i) {
        None if upper || fielded || set_off => failure_level(word),
        Some(b']' | b')' | b'>' | b'|' | b':' | b',' | b'"' | b'\'' | 0x1b) => failure_level(word),
        _ => None,
    }
}

/// The level of a JSON log line: `"level": "error"`, `"levelname": "ERROR"`,
/// `"severity": "ERROR"`, pino's `"level": 50`; `None` without one.
fn json_level(line: &[u8]) -> Option<bool> {
    let (at, key) = JSON_KEYS
        .iter()
        .filter_map(|f| f.find(line).map(|i| (i, f.needle())))
        .min_by_key(|(i, _)| *i)?;
    let raw = &line[at + key.len()..];
    let rest = trim_start(trim_start(raw).strip_prefix(b":")?);
    if let Some(s) = rest.strip_prefix(b"\"") {
        let n = s
            .iter()
            .position(|c| !c.is_ascii_alphabetic())
            .unwrap_or(s.len());
        return Some(failure_level(&s[..n]).unwrap_or(false));
    }
    // A number level is pino's and bunyan's, written `"level":50` (or `"level": 50`): 50 is
    // error, 60 fatal, lower ones healthy; other numbers and keys are no level.
    let number = raw
        .strip_prefix(b": ")
        .or_else(|| raw.strip_prefix(b":"))
        .filter(|_| key == b"\"level\"")?;
    let n = number
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(number.len());
    let level: u32 = std::str::from_utf8(&number[..n]).ok()?.parse().ok()?;
    (level < 70).then_some(level >= 50)
}

/// How the name of an exception without a dotted module ends.
const ENDINGS: &[&[u8]] = &[
    b"Error",
    b"Exception",
    b"Timeout",
    b"Exhausted",
    b"Unavailable",
    b"Exceeded",
    b"Denied",
    b"Interrupt",
    b"Elapsed",
    b"TimedOut",
    b"Failure",
    b"Fault",
];

/// `pkg.module.SomeError: …`, `ReadTimeout`, `panic: …`, `thread 'main' panicked at …`,
/// `fatal error: …`: an exception or a crash at the start of a line.
fn is_exception_line(line: &[u8]) -> bool {
    if line.starts_with(b"panic: ")
        || line.starts_with(b"fatal error: ")
        || (line.starts_with(b"thread '") && PANICKED.find(line).is_some())
    {
        return true;
    }
    // A dotted name, then `:` or the end of the line; the module counts only before a `:`.
    match leading_name(line) {
        (name, None) => exception_name(name, false),
        (name, Some(b':')) => exception_name(name, true),
        _ => false,
    }
}

/// The dotted name `text` starts with (`pkg.module.Name`, maybe empty), and the byte after it.
fn leading_name(text: &[u8]) -> (&[u8], Option<u8>) {
    let n = text
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.'))
        .unwrap_or(text.len());
    (&text[..n], text.get(n).copied())
}

/// Whether `name` reads as an exception's: its last part is capitalised, and it ends like an
/// exception's name (`ReadTimeout`, `KeyError`) or, where `module_counts`, has a module
/// (`pkg.module.Name`) whatever it ends with.
fn exception_name(name: &[u8], module_counts: bool) -> bool {
    let last = name.rsplit(|c| *c == b'.').next().unwrap_or(name);
    last.first().is_some_and(u8::is_ascii_uppercase)
        && ((module_counts && name.len() > last.len()) || ENDINGS.iter().any(|e| last.ends_with(e)))
}

/// Walks a Python traceback from its header line (`from` is the header's start): the range
/// of its final exception line, if any, and where the traceback ends (the end of its last
/// line, without `\n`).
fn walk_traceback(log: &[u8], from: usize) -> (Option<(usize, usize)>, usize) {
    let line_end = |at: usize| memchr::memchr(b'\n', &log[at..]).map_or(log.len(), |i| at + i);
    let mut end = line_end(from);
    let mut exc = None;
    let mut after_exc = false;
    let mut at = end + 1;
    while at < log.len() {
        let le = line_end(at);
        let l = strip_cr(&log[at..le]);
        let chain = l.starts_with(b"During handling of the above exception")
            || l.starts_with(b"The above exception was the direct cause");
        if after_exc {
            if l.is_empty() {
                at = le + 1;
                continue;
            }
            if !chain {
                break;
            }
            after_exc = false;
        } else if l.is_empty() || l[0] == b' ' || l[0] == b'\t' || l.starts_with(TRACEBACK) || chain
        {
            // part of the traceback
        } else if is_exception_line(l) {
            exc = Some((at, le));
            after_exc = true;
        } else {
            break;
        }
        end = le;
        at = le + 1;
    }
    (exc, end)
}

/// Whether a line continues a record: a traceback's header, frames, blank lines and chain
/// markers (a line cut short that may be a header's start counts too).
fn continues_record(line: &[u8]) -> bool {
    let line = strip_cr(line);
    line.is_empty()
        || line[0] == b' '
        || line[0] == b'\t'
        || line.starts_with(TRACEBACK)
        || TRACEBACK.starts_with(line)
        || line.starts_with(b"During handling of the above exception")
        || line.starts_with(b"The above exception was the direct cause")
}

/// Whether `text` may be cut at `at`, a line start, without splitting a failure record.
fn safe_cut(text: &[u8], at: usize) -> bool {
    if at == 0 || at >= text.len() {
        return true;
    }
    let end = memchr::memchr(b'\n', &text[at..]).map_or(text.len(), |i| at + i);
    let prev_start = memchr::memrchr(b'\n', &text[..at - 1]).map_or(0, |i| i + 1);
    !continues_record(&text[at..end]) && !continues_record(&text[prev_start..at - 1])
}

/// The first line start at or after `at` where `text` can be cut without splitting a failure
/// record (a failure line and its Python traceback) between the parts, for splitting a log
/// over threads; `None` when there is none.
pub fn record_boundary(text: &[u8], at: usize) -> Option<usize> {
    let mut s = if at == 0 || text.get(at - 1) == Some(&b'\n') {
        at
    } else {
        memchr::memchr(b'\n', text.get(at..)?).map(|i| at + i + 1)?
    };
    while s < text.len() {
        if safe_cut(text, s) {
            return Some(s);
        }
        s = memchr::memchr(b'\n', &text[s..]).map(|i| s + i + 1)?;
    }
    None
}

/// The last line start at or before `at` (itself a line start) where `text` can be cut as
/// [`record_boundary`] says; `None` when there is none after the start of `text`.
pub fn record_boundary_before(text: &[u8], at: usize) -> Option<usize> {
    let mut s = at.min(text.len());
    while s > 0 {
        if safe_cut(text, s) {
            return Some(s);
        }
        s = memchr::memrchr(b'\n', &text[..s - 1]).map_or(0, |i| i + 1);
    }
    None
}

impl RuleSet {
    /// Classifies the failures of a log and only those: lines logged at a failure level
    /// (ERROR, FATAL, CRITICAL, … in plain text, logfmt or JSON logs with a level field),
    /// exception lines and Python tracebacks, and AWS Lambda's own `Task timed out after …`
    /// lines. Calls `each` once per failure with the index (0-based) of its first line, its
    /// text and its classification; returns the number of lines in `log` (as
    /// [`RuleSet::classify_lines`] counts them).
    ///
    /// # Behavior
    ///
    /// 1. A line logged at another level (INFO, WARN, …) is never a failure, whatever words it
    ///    holds: `INFO dispatching to lambda timeout=45s` is not a timeout.
    /// 2. A plain-text failure line followed by a traceback is one failure, classified on the
    ///    line and the traceback's final exception line together; a traceback with no failure
    ///    line before it (or after a JSON line) is one failure, classified on its final
    ///    exception line.
    /// 3. Lines are split and `\r` stripped as [`RuleSet::classify_lines`] does; invalid UTF-8
    ///    is read lossily.
    ///
    /// Finding the failures does not depend on the rules: [`find_failures`] finds them without
    /// classifying, for a caller that classifies them elsewhere (on another thread, say).
    ///
    /// ```
    /// use flowfail_core::{classify::RuleSet, FailureKind};
    /// let log = b"2026-11-13T09:50:00Z INFO retry budget ok, 429s so far: 0\n\
    /// 2026-11-13T09:50:01Z ERROR step failed\n\
    /// Traceback (most recent call last):\n  File \"flow.py\", line 3, in run\n\
    /// openai.RateLimitError: Error code: 429\n";
    /// let mut found = Vec::new();
    /// let lines = RuleSet::builtin().classify_failures(log, |i, _, c| found.push((i, c.kind)));
    /// assert_eq!((lines, found), (5, vec![(1, FailureKind::RateLimit)]));
    /// ```
    pub fn classify_failures(
        &self,
        log: &[u8],
        mut each: impl FnMut(usize, &[u8], Classification),
    ) -> usize {
        find_failures(log, |i, text| {
            each(i, text, self.classify_bytes(text, None))
        })
    }
}

/// Finds the failures of a log as [`RuleSet::classify_failures`] does, without classifying
/// them: calls `each` once per failure with the index (0-based) of its first line and the text
/// to classify (a failure line joined with its traceback's final exception line, `\r`
/// stripped); returns the number of lines in `log`.
///
/// Two searches find the candidates: one SIMD multi-literal search over the raw bytes for the
/// literals of failure levels (`ERR`, `rror`, `FATAL`, …) and of AWS Lambda's lines, and a
/// look at the first bytes of each line in between for an exception or a traceback, which
/// start a line. Only candidates are looked at further.
///
/// ```
/// use flowfail_core::classify::find_failures;
/// let log = b"INFO ok\nhttpx.ReadTimeout: timed out\nINFO ok\nWARN slow\nERROR boom\n";
/// let mut found = Vec::new();
/// let lines = find_failures(log, |i, text| found.push((i, text.to_vec())));
/// assert_eq!(lines, 5);
/// assert_eq!(found, [(1, b"httpx.ReadTimeout: timed out".to_vec()), (4, b"ERROR boom".to_vec())]);
/// ```
pub fn find_failures(log: &[u8], mut each: impl FnMut(usize, &[u8])) -> usize {
    let line_end = |at: usize| memchr::memchr(b'\n', &log[at..]).map_or(log.len(), |i| at + i);
    // Newlines in `log[..counted_to]`.
    let (mut counted_to, mut newlines) = (0, 0);
    // The start of the line holding the next needle at or after `pos` (`log.len()`: none).
    let mut needle_line = None;
    let mut pos = 0;
    while pos < log.len() {
        newlines += memchr::memchr_iter(b'\n', &log[counted_to..pos]).count();
        let next = match needle_line {
            Some(n) if n >= pos => n,
            _ => {
                let n = next_needle_line(log, pos);
                needle_line = Some(n);
                n
            }
        };
        // A line before it that may start an exception or a traceback, or that line.
        let (start, passed) = next_exception_start(log, pos, next);
        newlines += passed;
        counted_to = start;
        if start >= log.len() {
            break;
        }
        let end = line_end(start);
        let line = strip_cr(&log[start..end]);
        match record(log, start, end, line) {
            Some((text, record_end)) => {
                each(newlines, &text);
                pos = record_end + 1;
            }
            None => pos = end + 1,
        }
    }
    newlines += memchr::memchr_iter(b'\n', &log[counted_to.min(log.len())..]).count();
    newlines + usize::from(!log.is_empty() && !log.ends_with(b"\n"))
}

/// The start of the line holding the next needle at or after `pos` (a line start), or
/// `log.len()` when there is none.
fn next_needle_line(log: &[u8], pos: usize) -> usize {
    let hit = match &*FINDER {
        Some(f) => f.find(log, pos),
        // Cannot happen (the needles are fixed); look at every line rather than none.
        None => Some(pos),
    };
    hit.map_or(log.len(), |hit| {
        memchr::memrchr(b'\n', &log[pos..hit]).map_or(pos, |i| pos + i + 1)
    })
}

/// The first line start in `pos..limit` (`pos` and `limit` are line starts or the end) whose
/// line may be an exception line or a traceback's header, or else `limit`; and the number of
/// newlines before it from `pos`. Lines holding a needle are not looked at: the needle search
/// finds them.
fn next_exception_start(log: &[u8], pos: usize, limit: usize) -> (usize, usize) {
    if pos < limit && may_start_exception(&log[pos..limit]) {
        return (pos, 0);
    }
    let mut passed = 0;
    for i in memchr::memchr_iter(b'\n', &log[pos..limit]) {
        passed += 1;
        let s = pos + i + 1;
        if s < limit && may_start_exception(&log[s..limit]) {
            return (s, passed);
        }
    }
    (limit, passed)
}

/// Whether the line at the start of `rest` may be an exception line or a traceback's header,
/// judged from its first name only: a necessary condition for [`is_exception_line`], cheap
/// enough for every line.
fn may_start_exception(rest: &[u8]) -> bool {
    match leading_name(rest) {
        (_, Some(b' ')) => rest.starts_with(TRACEBACK),
        (name, None | Some(b':' | b'\n' | b'\r')) => exception_name(name, true),
        _ => false,
    }
}

/// What the line at `start..end` (its text `line`) begins, if it is a failure: the text to
/// classify and where the record ends (the end of its last line, without `\n`).
fn record<'l>(
    log: &'l [u8],
    start: usize,
    end: usize,
    line: &'l [u8],
) -> Option<(Cow<'l, [u8]>, usize)> {
    Some(match role(line) {
        LineRole::Other => return None,
        LineRole::Exception => (Cow::Borrowed(line), end),
        LineRole::Traceback => {
            let (exc, tb_end) = walk_traceback(log, start);
            let text = exc.map_or(line, |(s, e)| strip_cr(&log[s..e]));
            (Cow::Borrowed(text), tb_end)
        }
        LineRole::Failure => {
            let next = (end + 1).min(log.len());
            // A JSON logger carries its traceback inside the line: one that follows is a
            // failure of its own.
            let json = trim_start(line).starts_with(b"{");
            if !json && log[next..].starts_with(TRACEBACK) {
                let (exc, tb_end) = walk_traceback(log, next);
                match exc {
                    Some((s, e)) => {
                        let mut joined = line.to_vec();
                        joined.extend_from_slice(b" | ");
                        joined.extend_from_slice(strip_cr(&log[s..e]));
                        (Cow::Owned(joined), tb_end)
                    }
                    None => (Cow::Borrowed(line), tb_end),
                }
            } else {
                (Cow::Borrowed(line), end)
            }
        }
    })
}

#[cfg(test)]
mod tests;
