//! The human timeline groups repeated per-task actions (and `to_text_verbose` does not), and
//! both the timeline and the Markdown record render text from outside inert.

use chrono::{DateTime, TimeDelta, Utc};
use flowfail_core::FailureKind;
use flowfail_core::decide::{Finding, Skip};
use flowfail_core::report::{ActionFields, Outcome, Report, ReportBuilder, clean_text, md_escape};
use serde_json::json;

fn t0() -> DateTime<Utc> {
    "2025-11-13T10:00:00Z".parse().unwrap()
}

fn retry(b: &mut ReportBuilder, at: DateTime<Utc>, id: &str, attempt: u32) {
    let action = ActionFields::RetryTask {
        task_id: id.into(),
        attempt,
        failure_kind: FailureKind::Unknown,
        probe: false,
    };
    b.action(at, action, Outcome::Applied, None);
}

fn prune(b: &mut ReportBuilder, at: DateTime<Utc>, id: &str, from: u64) {
    let action = ActionFields::PruneContext {
        task_id: id.into(),
        from_bytes: from,
        to_bytes: 1000,
    };
    b.action(
        at,
        action,
        Outcome::Applied,
        Some(format!("original archived as sha256 {from:016x}")),
    );
}

fn page(b: &mut ReportBuilder, at: DateTime<Utc>, summary: &str) {
    let action = ActionFields::Page {
        target: "on_call".into(),
        reason: "new_failure_mode".into(),
        summary: summary.into(),
    };
    b.action(at, action, Outcome::Applied, None);
}

fn finding(summary: &str, error: &str) -> Finding {
    serde_json::from_value(json!({
        "kind": "new_failure_mode",
        "task_id": null,
        "summary": summary,
        "details": [{"error": error}],
    }))
    .unwrap()
}

fn timeline(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("  20")).collect()
}

#[test]
fn repeated_actions_share_a_line_and_verbose_shows_each() {
    let mut b = ReportBuilder::default();
    // Interleaved prune/retry per task at the same time, as the responder does them.
    for i in 0..250 {
        prune(&mut b, t0(), &format!("t-{i:05}"), 2000 + i);
        retry(&mut b, t0(), &format!("t-{i:05}"), 1);
    }
    page(&mut b, t0(), "first page");
    page(&mut b, t0(), "second page");
    // Second attempts, scattered ids, a second later; a page in the middle splits the run.
    let later = t0() + TimeDelta::seconds(1);
    for i in [1, 7, 9, 20, 21, 22, 23, 40] {
        retry(&mut b, later, &format!("t-{i}"), 2);
    }
    retry(&mut b, later, "t-50", 3);
    page(&mut b, later, "third page");
    retry(&mut b, later, "t-60", 2);
    retry(&mut b, later, "t-61", 2);
    let report = b.build(None, later);
    let text = report.to_text();
    let lines = timeline(&text);
    let sum_from: u64 = (0..250).map(|i| 2000 + i).sum();
    assert_eq!(
        lines,
        [
            format!(
                "  2025-11-13 10:00:00  prune_context 250 tasks: {sum_from} -> 250000 bytes — applied, originals archived: t-00000…t-00249"
            )
            .as_str(),
            "  2025-11-13 10:00:00  retry_task 250 tasks (unknown), attempt 1 — applied: t-00000…t-00249",
            "  2025-11-13 10:00:00  page on_call: first page [applied]",
            "  2025-11-13 10:00:00  page on_call: second page [applied]",
            "  2025-11-13 10:00:01  retry_task 8 tasks (unknown), attempt 2 — applied: t-1, t-7, t-9 and 5 more",
            "  2025-11-13 10:00:01  retry_task t-50 attempt 3 (unknown) [applied]",
            "  2025-11-13 10:00:01  page on_call: third page [applied]",
            "  2025-11-13 10:00:01  retry_task 2 tasks (unknown), attempt 2 — applied: t-60, t-61",
        ],
        "{text}"
    );
    // --verbose: one line per action, as the JSON report has them.
    let verbose = report.to_text_verbose();
    assert_eq!(timeline(&verbose).len(), report.actions.len(), "{verbose}");
    assert_eq!(report.actions.len(), 500 + 2 + 8 + 1 + 1 + 2);
}

#[test]
fn ids_collapse_into_ranges_when_consecutive() {
    let mut b = ReportBuilder::default();
    for id in ["t-3", "t-1", "t-2", "t-10", "t-9", "t-11", "zeta", "alpha"] {
        retry(&mut b, t0(), id, 1);
    }
    let text = b.build(None, t0()).to_text();
    assert!(
        text.contains(
            "retry_task 8 tasks (unknown), attempt 1 — applied: alpha, t-1…t-3, t-9…t-11 and 1 more"
        ),
        "{text}"
    );
    let mut b = ReportBuilder::default();
    for id in ["job-1", "job-2", "job-4"] {
        retry(&mut b, t0(), id, 1);
    }
    let text = b.build(None, t0()).to_text();
    assert!(text.contains("— applied: job-1, job-2, job-4\n"), "{text}");
}

const HOSTILE: &[&str] = &[
    "\n# Injected heading\n",
    "[click me](https://evil.example/steal)",
    "a | b | c",
    "<script>alert(1)</script>",
    "\u{1b}[31mred\u{1b}[0m and \u{1b}]8;;https://evil.example\u{7}link\u{1b}]8;;\u{7}",
    "invoice\u{202E}fdp.exe",
    "<!channel> `rm -rf /` **bold** ![img](x.png) <https://evil.example>",
    "- list\n1. item\n> quote\n---",
];

fn hostile_report() -> Report {
    let mut b = ReportBuilder {
        name: Some(HOSTILE.concat()),
        ..ReportBuilder::default()
    };
    for (i, h) in HOSTILE.iter().enumerate() {
        let at = t0() + TimeDelta::seconds(i64::try_from(i).unwrap());
        b.finding(at, finding(h, h));
        page(&mut b, at, h);
        let action = ActionFields::SetEnv {
            deployment: (*h).to_owned(),
            name: "FALLBACK_MODEL".into(),
            value: Some((*h).to_owned()),
            purpose: "test".into(),
        };
        b.action(at, action, Outcome::Failed, Some((*h).to_owned()));
        b.gap(at, (*h).to_owned());
        b.skips(
            at,
            &[Skip::new(
                flowfail_core::decide::ActionKind::RetryTask,
                *h,
                *h,
            )],
        );
    }
    b.build(None, t0() + TimeDelta::seconds(60))
}

fn forbidden(c: char) -> bool {
    (c.is_control() && c != '\n') || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[test]
fn markdown_renders_hostile_text_inert() {
    let report = hostile_report();
    let md = report.to_markdown();
    assert!(!md.chars().any(forbidden), "{md:?}");
    // No HTML, no autolink, no <!channel>: `<` and `>` only as entities.
    assert!(!md.contains('<') && !md.contains('>'), "{md}");
    assert!(
        md.contains("&lt;script&gt;alert\\(1\\)&lt;/script&gt;"),
        "{md}"
    );
    assert!(md.contains("&lt;\\!channel&gt;"), "{md}");
    // No link: brackets and parentheses escaped.
    assert!(
        md.contains("\\[click me\\]\\(https://evil.example/steal\\)"),
        "{md}"
    );
    assert!(
        md.contains("\\`rm -rf /\\` \\*\\*bold\\*\\* \\!\\[img\\]\\(x.png\\)"),
        "{md}"
    );
    // Every unescaped inline marker is one flowfail put there.
    for (i, c) in md.char_indices() {
        if matches!(c, '[' | ']' | '`' | '(' | ')' | '_' | '!') {
            assert_eq!(&md[i - 1..i], "\\", "unescaped {c:?} at {i}: {md}");
        }
    }
    // No injected block: the headings are flowfail's own, every line is one of its shapes.
    let headings: Vec<&str> = md.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(
        headings,
        [
            "# Post-incident review: no incident",
            "## Timeline",
            "## Actions",
            "## Not done, and why",
            "## New failure modes",
            "## Follow-ups"
        ],
        "{md}"
    );
    for l in md.lines() {
        let ok = l.is_empty()
            || l.starts_with("# ")
            || l.starts_with("## ")
            || l.starts_with("- ")
            || l.starts_with("| ")
            || l.starts_with("|---");
        assert!(ok, "a line flowfail did not write: {l:?}");
    }
    // The timeline table: one row per timeline line, two cells each (`|` escaped in cells).
    let rows: Vec<&str> = md
        .lines()
        .skip_while(|l| *l != "## Timeline")
        .skip(4)
        .take_while(|l| l.starts_with("| "))
        .collect();
    assert_eq!(rows.len(), report.post_incident.timeline.len(), "{md}");
    for r in &rows {
        let cells = r.replace("\\|", "").matches('|').count();
        assert_eq!(cells, 3, "{r}");
    }
    assert!(md.contains("a \\| b \\| c"), "{md}");
    // The heading injection is inline text now.
    assert!(md.contains(" \\# Injected heading "), "{md}");
    // U+202E is gone, the text around it kept; the ANSI escapes lost their ESC.
    assert!(md.contains("invoicefdp.exe"), "{md}");
    assert!(md.contains("\\[31mred\\[0m"), "{md}");
}

#[test]
fn the_human_timeline_strips_control_and_bidi_characters() {
    let report = hostile_report();
    for text in [report.to_text(), report.to_text_verbose()] {
        assert!(!text.chars().any(forbidden), "{text:?}");
        assert!(text.contains("invoicefdp.exe"), "{text}");
        // Line breaks from outside do not start lines of their own.
        assert!(!text.lines().any(|l| l.starts_with("# Injected")), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("1. item")), "{text}");
    }
}

#[test]
fn escaping_functions() {
    assert_eq!(
        clean_text("a\u{1b}[1mb\tc\r\nd\u{200B}e\u{2067}f"),
        "a[1mb c  def"
    );
    assert_eq!(md_escape("1. not a list"), "1\\. not a list");
    assert_eq!(md_escape("- not a bullet"), "\\- not a bullet");
    assert_eq!(md_escape("# not a heading"), "\\# not a heading");
    assert_eq!(md_escape("x & y <b>"), "x &amp; y &lt;b&gt;");
    assert_eq!(md_escape("plain text, 2.5 s"), "plain text, 2.5 s");
    assert_eq!(md_escape("t_1 | *a*"), "t\\_1 \\| \\*a\\*");
}
