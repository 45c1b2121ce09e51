//! A fast necessary condition for "this log line may hold evidence for some classification
//! rule", derived from the rules' own patterns, so that [`crate::classify_lines`] touches only
//! the few lines worth a regex.
//!
//! From every alternative of every pattern, lowercased, the literal text any match must start
//! or end with is extracted (`regex-syntax`), and from each such literal one short, rare window
//! is kept as a *needle*. On ASCII text every match of a rule then contains one of the needles,
//! ignoring case, so lowercasing a block of lines and running one multi-needle search (SIMD
//! "Teddy", for fewer than 128 needles) finds every line that can match — and, in a typical log, few
//! others. Alternatives anchored at the start of a line have no needle; they are checked at
//! each line start with an anchored regex instead.
//!
//! Soundness does not depend on which window is picked, only on (a) the extraction being
//! sound, (b) lowercasing the pattern being a *widening* on ASCII text, which
//! [`lower_pattern`] ensures by refusing any pattern where it might not be, and (c) needles
//! never holding a line break, so that matches stay within lines. When any of that fails, no
//! prefilter is built and the caller scans with the full regex.

use aho_corasick::{AhoCorasick, MatchKind};
use regex_syntax::hir::literal::{ExtractKind, Extractor, Seq};
use regex_syntax::hir::{Hir, HirKind, Look};

/// Needles are at most this long: short enough to share, long enough to be selective.
const NEEDLE_LEN: usize = 4;
/// The multi-needle search leaves its SIMD path at 128 needles; stay well below, or refuse
/// rather than go slow.
const MAX_NEEDLES: usize = 100;

pub(crate) struct Prefilter {
    /// Lowercase needles, searched in lowercased text.
    needles: Needles,
    #[cfg(test)]
    needle_count: usize,

    /// The line-anchored alternatives, case-insensitive, matched against one line at a time
    /// (a lazy DFA: the check runs on every line, so it must cost little more than a call).
    anchored: Option<regex_automata::hybrid::dfa::DFA>,
}

impl Prefilter {
    /// Builds the prefilter for these patterns, or `None` when one cannot be derived soundly
    /// or would not be fast.
    pub(crate) fn build(patterns: &[&str]) -> Option<Prefilter> {
        let mut literals: Vec<Vec<u8>> = Vec::new();
        let mut anchored: Vec<String> = Vec::new();
        for p in patterns {
            let lowered = lower_pattern(p)?;
            let hir = regex_syntax::ParserBuilder::new()
                .unicode(false)
                .utf8(false)
                .build()
                .parse(&lowered)
                .ok()?;
            let mut alts = Vec::new();
            alternatives(&hir, &mut alts);
            for alt in alts {
                if starts_at_line_start(&alt) {
                    anchored.push(format!("(?:{alt})"));
                    continue;
                }
                literals.extend(necessary_literals(&alt)?);
            }
        }
        let needles = cover(literals);
        if needles.is_empty() || needles.len() > MAX_NEEDLES {
            return None;
        }
        #[cfg(test)]
        let needle_count = needles.len();

        let needles = match aho_corasick::packed::Config::new()
            .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
            // Up to 64 needles by default; fat Teddy's 16 buckets still beat an automaton here.
            .heuristic_pattern_limits(false)
            .builder()
            .extend(&needles)
            .build()
        {
            Some(packed) => Needles::Packed(packed),
            None => Needles::Automaton(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostFirst)
                    .build(&needles)
                    .ok()?,
            ),
        };
        let anchored = if anchored.is_empty() {
            None
        } else {
            Some(
                regex_automata::hybrid::dfa::DFA::builder()
                    .syntax(
                        regex_automata::util::syntax::Config::new()
                            .case_insensitive(true)
                            .unicode(false)
                            .utf8(false),
                    )
                    .build(&anchored.join("|"))
                    .ok()?,
            )
        };
        Some(Prefilter {
            needles,
            #[cfg(test)]
            needle_count,

            anchored,
        })
    }

    /// Calls `lines` with the start offsets (in `lowered`) of the lines holding a needle, in
    /// order, each once. `lowered` is ASCII-lowercased text of whole lines.
    pub(crate) fn candidate_lines(&self, lowered: &[u8], mut lines: impl FnMut(usize)) {
        let mut at = 0;
        while at < lowered.len() {
            let span = aho_corasick::Span::from(at..lowered.len());
            let m = match &self.needles {
                Needles::Packed(p) => p.find_in(lowered, span),
                Needles::Automaton(a) => a.find(aho_corasick::Input::new(lowered).span(span)),
            };
            let Some(m) = m else {
                return;
            };
            let start = memchr::memrchr(b'\n', &lowered[..m.start()]).map_or(0, |i| i + 1);
            lines(start);
            at = memchr::memchr(b'\n', &lowered[m.end()..])
                .map_or(lowered.len(), |i| m.end() + i + 1);
        }
    }

    /// The search cache of [`Prefilter::anchored_match`], one per thread.
    pub(crate) fn anchored_cache(&self) -> Option<regex_automata::hybrid::dfa::Cache> {
        self.anchored.as_ref().map(|dfa| dfa.create_cache())
    }

    /// Whether a line-anchored alternative may match this one line (`cache` from
    /// [`Prefilter::anchored_cache`]); `true` when the DFA gives up, so that the line is
    /// classified in full.
    pub(crate) fn anchored_match(
        &self,
        cache: &mut Option<regex_automata::hybrid::dfa::Cache>,
        line: &[u8],
    ) -> bool {
        let (Some(dfa), Some(cache)) = (&self.anchored, cache) else {
            return false;
        };
        let input = regex_automata::Input::new(line)
            .anchored(regex_automata::Anchored::Yes)
            .earliest(true);
        !matches!(dfa.try_search_fwd(cache, &input), Ok(None))
    }

    /// The needles; for tests and docs.
    #[cfg(test)]
    pub(crate) fn needle_count(&self) -> usize {
        self.needle_count
    }
}

/// SIMD search where the CPU has it, an automaton elsewhere.
enum Needles {
    Packed(aho_corasick::packed::Searcher),
    Automaton(AhoCorasick),
}

/// The pattern with its text lowercased and case-insensitivity dropped, when that is a
/// widening on ASCII text: whatever the pattern matches, the result matches in the lowercased
/// text. Refused (`None`) when some construct could break that: escapes that name a class or
/// a byte by an uppercase letter or a number (`\S`, `\W`, `\D`, `\B`, `\p{..}`, `\x41`, `\u..`),
/// negated classes, and ranges that run from uppercase into lowercase.
fn lower_pattern(p: &str) -> Option<String> {
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1).copied()) {
            (b'\\', Some(e)) => {
                if e.is_ascii_uppercase()
                    || matches!(e, b'p' | b'u')
                    || (e == b'x' && !p[i..].starts_with(r"\x22"))
                {
                    return None;
                }
                i += 2;
                continue;
            }
            (b'[', Some(b'^')) => return None,
            (c, Some(b'-'))
                if c.is_ascii_uppercase() && !b.get(i + 2).is_some_and(u8::is_ascii_uppercase) =>
            {
                return None;
            }
            _ => {}
        }
        i += 1;
    }
    Some(
        p.to_ascii_lowercase()
            .replace("(?i)", "")
            .replace("(?-i:", "(?:"),
    )
}

/// The top-level alternatives of a pattern, through groups.
fn alternatives(h: &Hir, out: &mut Vec<Hir>) {
    match h.kind() {
        HirKind::Alternation(subs) => subs.iter().for_each(|s| alternatives(s, out)),
        HirKind::Capture(c) => alternatives(&c.sub, out),
        _ => out.push(h.clone()),
    }
}

fn starts_at_line_start(h: &Hir) -> bool {
    let first = match h.kind() {
        HirKind::Concat(items) => items.first(),
        _ => Some(h),
    };
    matches!(
        first.map(Hir::kind),
        Some(HirKind::Look(Look::Start | Look::StartLF | Look::StartCRLF))
    )
}

/// Literals of which every match of `alt` contains one, without line breaks, all at least
/// three bytes long: the prefixes or suffixes of the whole alternative or of any tail of it
/// (a match of the whole contains a match of each tail), whichever set has the longest
/// shortest literal. `None` when no such set exists.
fn necessary_literals(alt: &Hir) -> Option<Vec<Vec<u8>>> {
    let mut candidates = vec![alt.clone()];
    if let HirKind::Concat(items) = alt.kind() {
        candidates.extend((1..items.len()).map(|i| Hir::concat(items[i..].to_vec())));
    }
    let mut best: Option<(usize, Vec<Vec<u8>>)> = None;
    for c in &candidates {
        for kind in [ExtractKind::Prefix, ExtractKind::Suffix] {
            let mut ex = Extractor::new();
            ex.kind(kind);
            let Some(lits) = usable(&ex.extract(c)) else {
                continue;
            };
            let shortest = lits.iter().map(Vec::len).min().unwrap_or(0);
            if best.as_ref().is_none_or(|b| shortest > b.0) {
                best = Some((shortest, lits));
            }
        }
    }
    best.map(|b| b.1)
}

/// A finite literal set, minus literals holding a line break (a match inside one line cannot
/// contain them), when all the rest are at least three bytes long.
fn usable(seq: &Seq) -> Option<Vec<Vec<u8>>> {
    let lits: Vec<Vec<u8>> = seq
        .literals()?
        .iter()
        .map(|l| l.as_bytes().to_vec())
        .filter(|l| !l.contains(&b'\n'))
        .collect();
    (!lits.is_empty() && lits.iter().all(|l| l.len() >= 3)).then_some(lits)
}

/// Needles covering every literal, chosen greedily: each round takes the window (of
/// [`NEEDLE_LEN`] bytes, or a whole shorter literal) found in the most literals not yet
/// covered, preferring windows absent from [`ORDINARY`] log lines, then windows of less common
/// bytes. Fewer needles make the SIMD search faster; rare ones make its hits worth checking.
fn cover(mut literals: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    use std::collections::{HashMap, HashSet};
    literals.sort();
    literals.dedup();
    let ordinary = ORDINARY.to_ascii_lowercase();
    // Every window of the ordinary lines a needle could be (3 bytes up to NEEDLE_LEN), looked
    // up once per candidate instead of searched for.
    let ordinary: HashSet<&[u8]> = (3..=NEEDLE_LEN)
        .flat_map(|n| ordinary.as_bytes().windows(n))
        .collect();
    // Window -> the literals holding it. Short literals are windows of their own, and also
    // of every longer literal that contains them.
    let short: Vec<&[u8]> = literals
        .iter()
        .filter(|l| l.len() < NEEDLE_LEN)
        .map(Vec::as_slice)
        .collect();
    let mut holders: HashMap<&[u8], Vec<usize>> = HashMap::new();
    for (i, lit) in literals.iter().enumerate() {
        let mut windows: Vec<&[u8]> = lit.windows(NEEDLE_LEN.min(lit.len())).collect();
        windows.extend(
            short
                .iter()
                .filter(|s| lit.windows(s.len()).any(|w| w == **s)),
        );
        windows.sort();
        windows.dedup();
        for w in windows {
            holders.entry(w).or_default().push(i);
        }
    }
    // (window, seen in ordinary lines, commonness of its bytes, the literals holding it)
    let mut candidates: Vec<(&[u8], bool, u32, Vec<usize>)> = holders
        .into_iter()
        .map(|(w, held)| {
            let seen = ordinary.contains(w);
            let common = w.iter().map(|b| u32::from(commonness(*b))).sum::<u32>();
            (w, seen, common, held)
        })
        .collect();
    // A fixed order, so that ties always break the same way.
    candidates.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    let mut covered = vec![false; literals.len()];
    let mut left = literals.len();
    let mut needles = Vec::new();
    while left > 0 {
        let best = candidates
            .iter()
            .enumerate()
            .map(|(k, (_, seen, common, held))| {
                let gain = held.iter().filter(|i| !covered[**i]).count();
                (k, gain, *seen, *common)
            })
            .filter(|c| c.1 > 0)
            .min_by_key(|(_, gain, seen, common)| (*seen, std::cmp::Reverse(*gain), *common));
        let Some((k, _, _, _)) = best else {
            break;
        };
        let (w, _, _, held) = &candidates[k];
        for i in held {
            if !covered[*i] {
                covered[*i] = true;
                left -= 1;
            }
        }
        needles.push(w.to_vec());
    }
    needles
}

/// Lines of healthy LLM-service, HTTP and Kubernetes logs: needles are chosen to avoid what is
/// common here (token counts, timestamps, latencies, statuses of successful calls), because a
/// needle on an ordinary line costs that line a regex check.
const ORDINARY: &str = "\
2026-01-01T09:00:00.011Z INFO  flowengine flow=plan task=t-118712 step=llm_call model=claude-sonnet-4 latency_ms=4895 input_tokens=23144 output_tokens=4012 bundle_kb=173 ok
2026-01-01T09:00:00.046Z INFO  flowengine flow=impl task=t-279720 step=render_prompt model=gpt-4.1 latency_ms=484 input_tokens=62047 output_tokens=7741 ok
2026-01-01T09:00:00.075Z INFO  worker request_id=req_01 method=POST path=/v1/messages duration_ms=532 prompt_tokens=5400 completion_tokens=300 total_tokens=5700 stop_reason=end_turn
2026-01-01T09:00:01.002Z DEBUG scheduler queue depth 12, priority 2, next poll in 5s, attempt 1 of 3, elapsed 1.2s, timestamp 1767258000
level=info ts=2026-01-01T09:00:02Z caller=server.go:142 msg=\"task completed\" task_id=t-2 flow_type=review duration=3.2s cache_hit=true
10.0.0.1 - - [01/Jan/2026:09:00:03 +0000] \"GET /healthz\" 200 2 \"-\" \"kube-probe\" 0.001
Normal Scheduled pod/flowengine-7d9c Successfully assigned default/flowengine-7d9c to node-1; Pulled image; Created container; Started container; Readiness probe succeeded
";

/// How common a byte is in log text: English letter frequency for letters; spaces, digits and
/// the punctuation of key=value and JSON logs are common.
fn commonness(b: u8) -> u8 {
    const LETTERS: &[u8; 26] = b"etaoinsrhldcumfpgwybvkxjqz";
    match b {
        b if b.is_ascii_whitespace() || b.is_ascii_control() => 255,
        b'0'..=b'9' => 200,
        b'a'..=b'z' => {
            let rank = LETTERS.iter().position(|c| *c == b).unwrap_or(25);
            (240 - rank * 8) as u8
        }
        // Quotes and separators vary between spellings of one word ("code", 'code', code:):
        // windows of letters are shared by more literals.
        b'=' | b'-' | b'_' | b'.' | b':' | b'/' | b'"' | b',' | b'\'' | b'[' | b'`' => 250,
        _ => 60,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowering_refuses_what_it_cannot_widen() {
        assert_eq!(
            lower_pattern(r"(?i)Rate[ _]Limit|(?-i:\wError)\b\x22").as_deref(),
            Some(r"rate[ _]limit|(?:\werror)\b\x22")
        );
        for bad in [
            r"\S+", r"\W", r"\D", r"a\B", r"\p{Lu}", r"\x41", r"[^a-z]", r"[A-z]", r"\u0041",
        ] {
            assert_eq!(lower_pattern(bad), None, "{bad}");
        }
        // An escaped backslash is not an escape.
        assert!(lower_pattern(r"a\\S").is_some());
    }

    #[test]
    fn needles_come_from_literals_and_anchors_are_kept_apart() {
        let p = Prefilter::build(&[
            r"(?i)timed? ?out|deadline (?:exceeded|expired)",
            r"^\s*([1-5]\d\d)\s+[a-z]",
        ])
        .unwrap();
        assert!(p.needle_count() <= 6, "{}", p.needle_count());
        // The classification rules stay within Teddy's default limit of 64 needles.
        let rules = crate::classify::RuleSet::builtin().prefilter().unwrap();
        assert!(rules.needle_count() <= 64, "{}", rules.needle_count());
        let mut hits = Vec::new();
        let text = b"ok\nrequest timed out\nfine\ndeadline expired now\n".to_ascii_lowercase();
        p.candidate_lines(&text, |s| hits.push(s));
        assert_eq!(hits, [3, 26]);
        let mut cache = p.anchored_cache();
        assert!(p.anchored_match(&mut cache, b"  503 service unavailable"));
        assert!(p.anchored_match(&mut cache, b"\t503 Service Unavailable"));
        assert!(!p.anchored_match(&mut cache, b"x 503 service unavailable"));
        assert!(!p.anchored_match(&mut cache, b"2026-11-13T09:50:00Z 503 service unavailable"));
    }

    #[test]
    fn a_pattern_without_literals_gives_no_prefilter() {
        assert!(Prefilter::build(&[r"\d+\s\w+"]).is_none());
    }
}
