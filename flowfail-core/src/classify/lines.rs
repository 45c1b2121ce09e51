//! Every line of a log, classified: lines without evidence for any rule are found with a
//! literal prefilter derived from the rules, so only a few lines get a regex.

use super::{Classification, RuleSet};
use crate::model::FailureKind::Unknown;
use crate::prefilter::Prefilter;

pub(super) const QUIET: Classification = Classification::new(Unknown, false, "no_rule");

pub(super) fn strip_cr(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

impl RuleSet {
    /// [`RuleSet::classify`] of a message given as bytes, as a log holds it: invalid UTF-8 is
    /// read lossily (each bad sequence becomes U+FFFD).
    ///
    /// ```
    /// use flowfail_core::{classify::RuleSet, FailureKind};
    /// let c = RuleSet::builtin().classify_bytes(b"Task timed out after 45.00 seconds \xff", None);
    /// assert_eq!(c.kind, FailureKind::Timeout);
    /// ```
    pub fn classify_bytes(&self, message: &[u8], http_status: Option<u16>) -> Classification {
        match std::str::from_utf8(message) {
            Ok(text) => self.classify(text, http_status),
            Err(_) => self.classify(&String::from_utf8_lossy(message), http_status),
        }
    }

    /// Classifies every line of a log (lines end with `\n`; a trailing `\r` is dropped),
    /// calling `each` once per line, in order, with the line and what
    /// [`RuleSet::classify`] says of it with no HTTP status. A final line without `\n` counts;
    /// an empty input has no lines.
    ///
    /// Lines without evidence for any rule are found without classifying them: blocks of
    /// about 64 KiB are lowercased and searched for the needles derived from the rules, and
    /// only lines with a needle are checked with a regex.
    pub fn classify_lines(&self, log: &[u8], mut each: impl FnMut(&[u8], Classification)) {
        if let Some(p) = self.prefilter() {
            return self.classify_lines_prefiltered(p, log, &mut each);
        }
        match self.evidence_regex() {
            Some(evidence) => self.classify_lines_scanned(evidence, log, &mut each),
            // Cannot happen with rules that loaded: classify every line in full.
            None => {
                for (s, e) in lines_of(log) {
                    let line = strip_cr(&log[s..e]);
                    each(line, self.classify_bytes(line, None));
                }
            }
        }
    }

    fn classify_lines_prefiltered(
        &self,
        p: &Prefilter,
        log: &[u8],
        each: &mut dyn FnMut(&[u8], Classification),
    ) {
        const BLOCK: usize = 64 << 10;
        let mut lowered = Vec::with_capacity(BLOCK + 1024);
        let mut candidates = Vec::new();
        let mut cache = p.anchored_cache();
        let mut pos = 0;
        while pos < log.len() {
            let cut = (pos + BLOCK).min(log.len());
            let end = memchr::memchr(b'\n', &log[cut..]).map_or(log.len(), |i| cut + i + 1);
            let block = &log[pos..end];
            let ascii = lowercase_into(block, &mut lowered);
            candidates.clear();
            p.candidate_lines(&lowered, |start| candidates.push(start));
            let mut next = candidates.iter().copied().peekable();
            for (s, e) in lines_of(block) {
                let line = strip_cr(&block[s..e]);
                let candidate = next.next_if_eq(&s).is_some();
                let evidence = (!ascii && !line.is_ascii())
                    || (candidate && self.may_match(line))
                    || p.anchored_match(&mut cache, line);
                let c = if evidence {
                    self.classify_bytes(line, None)
                } else {
                    QUIET
                };
                each(line, c);
            }
            pos = end;
        }
    }

    /// Without needles: the whole evidence regex finds the next line worth classifying.
    pub(super) fn classify_lines_scanned(
        &self,
        evidence: &regex::bytes::Regex,
        log: &[u8],
        each: &mut dyn FnMut(&[u8], Classification),
    ) {
        let line_end =
            |from: usize| memchr::memchr(b'\n', &log[from..]).map_or(log.len(), |i| from + i);
        let mut pos = 0;
        while pos < log.len() {
            // The first line, from `pos` on, where some rule may match.
            let hit = evidence.find_at(log, pos).map(|m| {
                let start = m.start();
                memchr::memrchr(b'\n', &log[pos..start]).map_or(pos, |i| pos + i + 1)
            });
            let quiet_end = hit.unwrap_or(log.len());
            // Lines before it have no evidence, unless they hold non-ASCII text.
            let quiet = &log[pos..quiet_end];
            let all_ascii = quiet.is_ascii();
            for (s, e) in lines_of(quiet) {
                let line = strip_cr(&quiet[s..e]);
                if all_ascii || line.is_ascii() {
                    each(line, QUIET);
                } else {
                    each(line, self.classify_bytes(line, None));
                }
            }
            match hit {
                Some(start) => {
                    let end = line_end(start);
                    let line = strip_cr(&log[start..end]);
                    each(line, self.classify_bytes(line, None));
                    pos = end + 1;
                }
                None => break,
            }
        }
    }
}

/// `text` ASCII-lowercased into `lowered` (its old content replaced), in one pass that also
/// says whether `text` is all ASCII.
fn lowercase_into(text: &[u8], lowered: &mut Vec<u8>) -> bool {
    lowered.clear();
    lowered.resize(text.len(), 0);
    let mut high = 0u8;
    for (to, &b) in lowered.iter_mut().zip(text) {
        high |= b;
        *to = b.to_ascii_lowercase();
    }
    high < 0x80
}

/// The lines of `text` (a final line needs no `\n`), as (start, end) without the `\n`.
pub(super) fn lines_of(text: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let last = (!text.is_empty() && !text.ends_with(b"\n")).then_some(text.len());
    let mut start = 0;
    memchr::memchr_iter(b'\n', text)
        .chain(last)
        .map(move |end| {
            let line = (start, end);
            start = end + 1;
            line
        })
}
