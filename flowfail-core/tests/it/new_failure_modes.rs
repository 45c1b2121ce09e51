//! The runbook's `unknown` branch, summarised: a replayed incident with 250 unknown failures of
//! three kinds (`testdata/scenarios/new-failure-modes.json`) pages on-call once, and the page
//! the pager received carries the three message templates with their counts, an example and a
//! proposed rule each; the post-incident record (JSON, Markdown, text) carries the same.

use flowfail_core::FailureKind;
use flowfail_core::replay::{ReplayOptions, Scenario, replay_blocking};
use regex::Regex;

fn scenario() -> (Scenario, serde_json::Value) {
    let path = format!(
        "{}/../testdata/scenarios/new-failure-modes.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).unwrap();
    (
        Scenario::from_json(&text).unwrap(),
        serde_json::from_str(&text).unwrap(),
    )
}

/// The scenario's messages, by the kind they were generated as (their first word).
fn messages(raw: &serde_json::Value) -> Vec<(usize, String)> {
    raw["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let m = t["error_message"].as_str().unwrap().to_owned();
            let kind = ["ToolRegistryError", "worker", "Planner"]
                .iter()
                .position(|p| m.starts_with(p))
                .unwrap();
            (kind, m)
        })
        .collect()
}

#[test]
fn the_page_carries_three_templates_with_counts_examples_and_a_rule_each() {
    let (sc, raw) = scenario();
    let msgs = messages(&raw);
    assert_eq!(msgs.len(), 250);
    let (report, world) = replay_blocking(&sc, &ReplayOptions::default()).unwrap();
    assert_eq!(report.classification[&FailureKind::Unknown], 250);

    // The pager's raw calls: one page, to on-call, for the new failure mode.
    let calls = world.pager.calls().of("pager.page");
    assert_eq!(calls.len(), 1, "{calls:?}");
    let pages = world.pager.pages();
    assert_eq!(pages.len(), 1);
    let page = &pages[0];
    assert_eq!(page.target, "on_call");
    assert!(page.dedup_key.ends_with(":page:on_call:new_failure_mode"));
    assert!(
        page.summary.contains("250 failed tasks") && page.summary.contains("3 message template"),
        "{}",
        page.summary
    );
    let ev = &page.details["evidence"]["new_failure_modes"];
    assert_eq!(ev["total"], 250);
    assert_eq!(ev["ungrouped"], 0);
    let templates = ev["templates"].as_array().unwrap();
    assert_eq!(templates.len(), 3, "{templates:#?}");
    let counts: Vec<u64> = templates
        .iter()
        .map(|t| t["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [120, 80, 50]);

    for (kind, t) in templates.iter().enumerate() {
        // One example, from the group, and its task.
        let example = t["example"].as_str().unwrap();
        assert!(
            msgs.iter().any(|(k, m)| *k == kind && m == example),
            "{example}"
        );
        assert!(t["example_task_id"].as_str().unwrap().starts_with("t-"));
        // The proposed rule: valid TOML in the rule-file format, matching exactly its kind.
        let rule = &t["proposed_rule"];
        let toml: toml::Value = toml::from_str(rule["toml"].as_str().unwrap()).unwrap();
        let r = &toml["rule"][0];
        assert_eq!(r["name"].as_str(), rule["name"].as_str());
        assert_eq!(r["kind"].as_str(), Some("unknown"));
        assert_eq!(r["retryable"].as_bool(), Some(false));
        let pattern = r["pattern"].as_str().unwrap();
        assert!(
            pattern.starts_with('^') && pattern.ends_with('$'),
            "{pattern}"
        );
        let re = Regex::new(pattern).unwrap();
        for (k, m) in &msgs {
            assert_eq!(re.is_match(m), *k == kind, "{pattern} on {m}");
        }
    }

    // The post-incident record: JSON, Markdown and text.
    let p = &report.post_incident;
    assert_eq!(p.failure_templates.len(), 3);
    assert_eq!(p.new_failure_modes.len(), 3);
    assert!(p.new_failure_modes[0].starts_with("120× ToolRegistryError"));
    let md = report.to_markdown();
    assert_eq!(md.matches("[[rule]]").count(), 3, "{md}");
    assert!(md.contains("## Proposed rules"));
    let text = report.to_text();
    assert_eq!(text.matches("    rule: name = ").count(), 3, "{text}");
    assert!(report.escalated);
}

#[test]
fn the_page_is_sent_once_and_the_templates_survive_a_dry_run() {
    let (sc, _) = scenario();
    let (report, world) = replay_blocking(&sc, &ReplayOptions::default().dry_run(true)).unwrap();
    assert!(world.pager.calls().of("pager.page").is_empty());
    assert_eq!(report.post_incident.failure_templates.len(), 3);
}
