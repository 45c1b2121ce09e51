//! The parts of a rule set built on first use: the Unicode builds, the log-scan regex and its
//! prefilter, the vendor-code rules and each rule alone.

use std::sync::OnceLock;

use regex::{Regex, RegexSet};

use super::load::{MAX_PATTERN_SIZE, too_big, too_big_rule};
use super::{RuleSet, Stage};
use crate::error::Result;
use crate::prefilter::Prefilter;

/// Where a vendor puts an error code: the value of a code field of a JSON or Python-dict body
/// (`"type": "…"`, `'code': '…'`; escaped inside a JSON log line too), botocore's
/// `An error occurred (…)`, or an exception class starting the message, a traceback's last
/// line (after an indented frame line), a logfmt `err=` / `error=` / `msg=` / `exception=`
/// value or a JSON log line's message.
const VENDOR_PLACES: &str = r#"(?:\\?['"](?:type|code|status|reason|__type|error_?type|errorType|error_?code|errorCode)\\?['"]\s*:\s*\\?['"]|An error occurred \(|(?:\A\s*|\n[ \t]+[^\n]*\n\s*|\b(?:err|error|msg|message|exception|exc|error_type)=\s*\\?['"]?|\\?['"](?:msg|message|error|err|exception)\\?['"]\s*:\s*\\?['"])(?:\[[A-Z]+\]\s+)?(?:[A-Za-z_]\w*\.)*)"#;

/// A rule's pattern as the vendor-code stage reads it: only at a vendor's places, unless it
/// starts at a quote (a field of its own).
fn vendor_form(pattern: &str) -> String {
    if pattern.starts_with("['") || pattern.starts_with("[\"'") || pattern.starts_with("\\?[") {
        pattern.to_owned()
    } else {
        format!("{VENDOR_PLACES}(?:{pattern})")
    }
}

impl RuleSet {
    fn patterns(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.pattern.as_str()).collect()
    }

    fn build_unicode(&self) -> Result<RegexSet> {
        regex::RegexSetBuilder::new(self.patterns())
            .size_limit(64 << 20)
            .build()
            .map_err(too_big)
    }

    fn build_evidence(&self) -> Result<regex::bytes::Regex> {
        let union = self
            .patterns()
            .iter()
            .map(|p| format!("(?:{p})"))
            .collect::<Vec<_>>()
            .join("|");
        // On ASCII text the ASCII forms of `\b`, `\w`, `\d`, `\s` and `(?i)` mean exactly what
        // the Unicode forms mean, so the union is exact there; lines with other bytes are
        // always classified in full.
        regex::bytes::RegexBuilder::new(&union)
            .unicode(false)
            .multi_line(true)
            .size_limit(64 << 20)
            .dfa_size_limit(64 << 20)
            .build()
            .map_err(too_big)
    }

    /// Builds every lazily built part now; an error says the rules are too large together.
    pub(crate) fn build_all(&self) -> Result<()> {
        let unicode = self.build_unicode()?;
        let evidence = self.build_evidence()?;
        let status = self.build_status_unicode()?;
        let vendor = self.build_vendor()?;
        for i in 0..self.rules.len() {
            if self.rule_regex(i).is_none() {
                return Err(too_big_rule(self.rules[i].name));
            }
        }
        let _ = self.lazy.vendor.set(Some(vendor));
        let _ = self.lazy.unicode.set(Some(unicode));
        let _ = self.lazy.evidence.set(Some(evidence));
        let _ = self.lazy.status_unicode.set(Some(status));
        self.prefilter();
        Ok(())
    }

    /// Whether some rule matches this ASCII line (the ASCII set, stopping at the first match).
    pub(crate) fn may_match(&self, line: &[u8]) -> bool {
        self.ascii.is_match(line)
    }

    fn build_vendor(&self) -> Result<regex::bytes::RegexSet> {
        let range = self.stages[Stage::VendorCode as usize].clone();
        regex::bytes::RegexSetBuilder::new(
            self.rules[range].iter().map(|r| vendor_form(&r.pattern)),
        )
        .unicode(false)
        .size_limit(64 << 20)
        .build()
        .map_err(too_big)
    }

    /// The vendor-code rules alone, for a message whose body values are masked.
    pub(super) fn vendor_set(&self) -> Option<&regex::bytes::RegexSet> {
        self.lazy
            .vendor
            .get_or_init(|| self.build_vendor().ok())
            .as_ref()
    }

    /// Rule `i` alone (ASCII build; a vendor-code rule in its [`vendor_form`]), built on first
    /// use, to find where its match starts.
    pub(super) fn rule_regex(&self, i: usize) -> Option<&regex::bytes::Regex> {
        let each = self
            .lazy
            .each
            .get_or_init(|| self.rules.iter().map(|_| OnceLock::new()).collect());
        each.get(i)?
            .get_or_init(|| {
                let r = &self.rules[i];
                // Vendor codes, and exception names when they say a vendor's error leads,
                // count only at a vendor's places.
                let pattern = if matches!(r.stage, Stage::VendorCode | Stage::Exception) {
                    vendor_form(&r.pattern)
                } else {
                    r.pattern.clone()
                };
                regex::bytes::RegexBuilder::new(&pattern)
                    .unicode(false)
                    .size_limit(MAX_PATTERN_SIZE)
                    .build()
                    .ok()
            })
            .as_ref()
    }

    /// Which lazily built parts exist: (Unicode set, evidence regex, prefilter).
    #[cfg(test)]
    pub(crate) fn lazy_parts_built(&self) -> (bool, bool, bool) {
        (
            self.lazy.unicode.get().is_some(),
            self.lazy.evidence.get().is_some(),
            self.lazy.prefilter.get().is_some(),
        )
    }

    fn build_status_unicode(&self) -> Result<Vec<Regex>> {
        self.rules[self.stages[Stage::StatusInMessage as usize].clone()]
            .iter()
            .map(|r| Regex::new(&r.pattern).map_err(too_big))
            .collect()
    }

    /// The status rules' Unicode regexes, for non-ASCII text.
    pub(super) fn status_unicode(&self) -> Option<&Vec<Regex>> {
        self.lazy
            .status_unicode
            .get_or_init(|| self.build_status_unicode().ok())
            .as_ref()
    }

    /// The Unicode build of every pattern, for non-ASCII text.
    pub(super) fn unicode_set(&self) -> Option<&RegexSet> {
        self.lazy
            .unicode
            .get_or_init(|| self.build_unicode().ok())
            .as_ref()
    }

    /// Every pattern in one ASCII multi-line regex, for the log scan of every line.
    pub(crate) fn evidence_regex(&self) -> Option<&regex::bytes::Regex> {
        self.lazy
            .evidence
            .get_or_init(|| self.build_evidence().ok())
            .as_ref()
    }

    /// The literal prefilter of the log scan of every line; `None` when the rules do not allow
    /// a sound one.
    pub(crate) fn prefilter(&self) -> Option<&Prefilter> {
        self.lazy
            .prefilter
            .get_or_init(|| Prefilter::build(&self.patterns()))
            .as_ref()
    }
}
