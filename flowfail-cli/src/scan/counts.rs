//! [`ClassCounts`]: what `classify --count` prints.

use std::collections::BTreeMap;
use std::io::Write;

use flowfail_core::{Classification, FailureKind};

/// Counts of classified lines, for `classify --count`.
///
/// Rules are few and `'static`: a short vector searched by address first is much cheaper per
/// line than a map keyed by string.
#[derive(Default)]
pub(crate) struct ClassCounts {
    pub(super) lines: u64,
    /// Failure lines, when only those were classified (`None`: every line was).
    pub(super) failure_lines: Option<u64>,
    pub(super) by_rule: Vec<(&'static str, FailureKind, u64)>,
}

impl ClassCounts {
    pub(super) fn failures_only() -> Self {
        ClassCounts {
            failure_lines: Some(0),
            ..ClassCounts::default()
        }
    }

    pub(crate) fn add(&mut self, c: Classification) {
        self.lines += 1;
        self.add_n(c.rule, c.kind, 1);
    }

    pub(super) fn add_failure(&mut self, c: Classification) {
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

    pub(super) fn merge(&mut self, other: ClassCounts) {
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
