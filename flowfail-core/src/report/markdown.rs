//! The post-incident record as Markdown, for the incident tracker.

use std::fmt::Write as _;

use super::Report;
use super::escape::md_escape;
use crate::templates::FailureTemplate;
use crate::text::clean_text;

impl Report {
    /// The post-incident record as Markdown, for the incident tracker. Every piece of text in
    /// it passes [`md_escape`]: error messages, vendor names, env values and summaries come
    /// from outside and render as plain text.
    pub fn to_markdown(&self) -> String {
        let p = &self.post_incident;
        let e = md_escape;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Post-incident review: {}\n",
            e(p.incident_key.as_deref().unwrap_or("no incident"))
        );
        if self.shadow {
            let _ = writeln!(
                s,
                "- **Mode:** shadow: what flowfail would have done (nothing was changed)"
            );
        }
        let _ = writeln!(s, "- **Status:** {}", e(&p.status));
        let _ = writeln!(s, "- **Root cause:** {}", e(&p.root_cause));
        if let Some(d) = p.detected_at {
            let _ = writeln!(s, "- **Detected:** {d}");
        }
        if let Some(r) = p.resolved_at {
            let _ = writeln!(s, "- **Resolved:** {r}");
        }
        if let Some(m) = p.mttr_seconds {
            let _ = writeln!(s, "- **MTTR:** {m} s");
        }
        let _ = writeln!(
            s,
            "- **Alert at detection:** {:.2}% failures over {} tasks\n",
            self.alert.failure_rate * 100.0,
            self.alert.window_tasks
        );
        let _ = writeln!(s, "## Timeline\n");
        let _ = writeln!(s, "| time | event |\n|---|---|");
        for l in &p.timeline {
            let _ = writeln!(s, "| {} | {} |", l.at.format("%H:%M:%S"), e(&l.event));
        }
        let _ = writeln!(s, "\n## Actions\n");
        let _ = writeln!(s, "| action | outcome | count |\n|---|---|---|");
        for (k, m) in &p.actions_summary {
            for (o, n) in m {
                let _ = writeln!(s, "| {} | {} | {n} |", e(k), e(o));
            }
        }
        if !p.not_taken.is_empty() {
            let _ = writeln!(s, "\n## Not done, and why\n");
            let _ = writeln!(s, "| action | count | why not | e.g. |\n|---|---|---|---|");
            for r in &p.not_taken {
                let ex: Vec<&str> = r.skip.examples.iter().take(3).map(String::as_str).collect();
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} |",
                    e(r.skip.action.as_str()),
                    r.skip.count,
                    e(&r.skip.reason),
                    e(&ex.join(", "))
                );
            }
        }
        let sections = [
            ("New failure modes", &p.new_failure_modes),
            ("Left in place", &p.left_in_place),
            ("Follow-ups", &p.follow_ups),
        ];
        for (title, items) in sections {
            if !items.is_empty() {
                let _ = writeln!(s, "\n## {title}\n");
                for i in items {
                    let _ = writeln!(s, "- {}", e(i));
                }
            }
        }
        proposed_rules_markdown(&p.failure_templates, &mut s);
        s
    }
}
/// The Markdown section of the new failure modes' templates: each with its count and example,
/// then the proposed rules in one TOML block to review and paste into a rules file. The block's
/// fence is longer than any run of backticks in it, so nothing inside can close it.
fn proposed_rules_markdown(templates: &[FailureTemplate], s: &mut String) {
    if templates.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n## New failure modes: templates\n");
    let _ = writeln!(s, "| count | template | example |\n|---|---|---|");
    for t in templates {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            t.count,
            md_escape(&t.template),
            md_escape(&t.example)
        );
    }
    let rules: Vec<String> = templates
        .iter()
        .filter_map(|t| t.proposed_rule.as_ref())
        .map(|r| {
            r.toml
                .lines()
                .map(clean_text)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    if rules.is_empty() {
        return;
    }
    let body = rules.join("\n\n");
    let longest = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let _ = writeln!(
        s,
        "\n## Proposed rules\n\nReview each rule, set its `kind`, and add it to a rules file:\n\n{fence}toml\n{body}\n{fence}"
    );
}
