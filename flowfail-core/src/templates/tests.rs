use super::rules::toml_string;
use super::*;

#[test]
fn masks_numbers_ids_hashes_uuids_and_quoted_values() {
    assert_eq!(
        mask("task t-00042 failed after 45s on gpt4 (attempt 3)"),
        "task t-<num> failed after <num>s on gpt<num> (attempt <num>)"
    );
    assert_eq!(
        mask("request 123e4567-e89b-12d3-a456-426614174000 hash 9f86d081884c7d65"),
        "request <uuid> hash <hex>"
    );
    assert_eq!(mask("lease 01HX3Y9KQ7 lost"), "lease <id> lost");
    assert_eq!(
        mask("Unknown tool 'web search v2' in \"plan\" step"),
        "Unknown tool '<str>' in \"plan\" step"
    );
    assert_eq!(
        mask(r#"{"type":"error","error":{"type":"flow_engine_panic","message":"boom at 0x1f"}}"#),
        r#"{"type":"error","error":{"type":"flow_engine_panic","message":"<str>"}}"#
    );
    assert_eq!(mask("it's 'fine'"), "it's 'fine'");
}

#[test]
fn credentials_never_reach_a_template_an_example_or_a_rule() {
    let mut m = TemplateMiner::new();
    for (i, key) in ["sk-abcdefghijklmnopqrstuv", "sk-zyxwvutsrqponmlkjihgf"]
        .iter()
        .enumerate()
    {
        m.add(
            &format!("Vault said no to api_key={key} and Authorization: Bearer tok{i}secretvalue for x-api-key: \"{key}\""),
            None,
        );
    }
    let t = &m.top(1)[0];
    assert_eq!(t.count, 2);
    let rule = t.proposed_rule.as_ref().unwrap();
    for text in [&t.template, &t.example, &rule.pattern, &rule.toml] {
        assert!(
            !text.contains("abcdefghij") && !text.contains("secretvalue"),
            "{text}"
        );
    }
    assert!(t.example.contains("api_key=***"), "{}", t.example);
    assert!(regex::Regex::new(&rule.pattern).unwrap().is_match(
        "Vault said no to api_key=sk-other1234567 and Authorization: Bearer abc for x-api-key: \"k\""
    ));
}

#[test]
fn a_message_cannot_forge_a_placeholder() {
    assert_eq!(mask("a \u{E000} b"), "a ? b");
}

#[test]
fn proposed_rules_parse_as_toml_and_match_their_examples() {
    let mut m = TemplateMiner::new();
    m.add(
        "Planner refused: step 'it''s' at 12 isn't valid",
        Some("t-1"),
    );
    m.add(
        "Planner refused: step 'other thing' at 13 isn't valid",
        None,
    );
    let t = m.top(1);
    let r = t[0].proposed_rule.as_ref().unwrap();
    let v: toml::Value = toml::from_str(&r.toml).unwrap();
    let rule = &v["rule"][0];
    assert_eq!(rule["kind"].as_str(), Some("unknown"));
    assert_eq!(rule["retryable"].as_bool(), Some(false));
    let re = regex::Regex::new(rule["pattern"].as_str().unwrap()).unwrap();
    assert!(re.is_match("Planner refused: step 'x' at 99 isn't valid"));
    assert!(!re.is_match("Planner refused: step 'x' at 99 isn't valid, and more"));
    assert_eq!(t[0].example_task_id.as_deref(), Some("t-1"));
}

/// What is proposed is what the classifier loads: `flowfail classify --rules` (and the
/// config's `rules`) take the block as it is, and it then decides its own example.
#[test]
fn proposed_rules_load_into_the_classifier_and_decide_their_example() {
    let mut m = TemplateMiner::new();
    for i in 0..5 {
        m.add(
            &format!("ToolRegistryError: no handler registered for tool 'lint.plan.v{i}' (request 43d6c44a-01b4-457b-af9c-386e67c7ee{i:02})"),
            None,
        );
        m.add(
            &format!("Planner refused: step 'x{i}' at {i} isn't valid"),
            None,
        );
    }
    let top = m.top(5);
    assert_eq!(top.len(), 2);
    let blocks: Vec<String> = top
        .iter()
        .map(|t| t.proposed_rule.as_ref().unwrap().toml.clone())
        .collect();
    let text = blocks.join("\n");
    let rules =
        crate::classify::RuleSet::with_extra_toml([("proposed.toml", text.as_str())]).unwrap();
    for t in &top {
        let r = t.proposed_rule.as_ref().unwrap();
        let c = rules.classify(&t.example, None);
        assert_eq!(c.rule, r.name, "{}", t.example);
        assert_eq!(c.kind, FailureKind::Unknown);
        assert!(!c.retryable);
    }
}

#[test]
fn every_pattern_is_written_as_a_toml_string_that_reads_back() {
    for p in [r"^a\s+b$", r"^'[^']*'\s+x$", r"^x'''y\\z\x22$", "^'$"] {
        let v: toml::Value = toml::from_str(&format!("pattern = {}", toml_string(p))).unwrap();
        assert_eq!(v["pattern"].as_str(), Some(p));
    }
}

#[test]
fn templates_of_placeholders_only_get_no_rule() {
    let mut m = TemplateMiner::new();
    m.add("42 17", None);
    assert!(m.top(1)[0].proposed_rule.is_none());
}

#[test]
fn the_template_cap_counts_the_rest_as_ungrouped() {
    let mut m = TemplateMiner::with_options(MinerOptions::default().max_templates(2));
    for w in ["alpha", "bravo", "charlie", "delta"] {
        m.add(w, None);
    }
    assert_eq!(m.top(10).len(), 2);
    assert_eq!(m.ungrouped(), 2);
    assert_eq!(m.total(), 4);
}

/// Three failure modes, each with every kind of variable part.
fn variant(kind: usize, n: u64, word: &str) -> String {
    let uuid = format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        n,
        n % 0xffff,
        n % 0xfff,
        n % 0xfff,
        n
    );
    match kind {
        0 => format!("Tool registry lookup failed for '{word} {n}' (request {uuid})"),
        1 => format!(
            "worker w-{n} lost its lease after {n}ms; checksum {:016x}",
            n + 0xabc0_0000
        ),
        _ => format!("Sandbox exited with code {n} in step \"{word} {n}\" of flow {uuid}"),
    }
}

proptest::proptest! {
    #[test]
    fn variants_group_together_and_different_messages_stay_apart(
        cases in proptest::collection::vec((0usize..3, 0u64..u64::from(u32::MAX), "[a-z]{1,12}"), 1..60)
    ) {
        let mut m = TemplateMiner::new();
        let mut want = [0u64; 3];
        for (k, n, w) in &cases {
            m.add(&variant(*k, *n, w), None);
            want[*k] += 1;
        }
        let top = m.top(10);
        // One template per mode that occurred, with exactly that mode's count.
        proptest::prop_assert_eq!(top.len(), want.iter().filter(|n| **n > 0).count());
        for t in &top {
            let k = if t.template.starts_with("Tool") { 0 } else if t.template.starts_with("worker") { 1 } else { 2 };
            proptest::prop_assert_eq!(t.count, want[k], "{}", t.template);
            let re = regex::Regex::new(&t.proposed_rule.as_ref().unwrap().pattern).unwrap();
            for (j, n, w) in &cases {
                proptest::prop_assert_eq!(re.is_match(&variant(*j, *n, w)), *j == k);
            }
        }
    }
}

#[test]
fn long_messages_are_cut_and_their_rules_left_open() {
    let long = format!("Graph compiler aborted: {}", "node ".repeat(1000));
    let mut m = TemplateMiner::new();
    m.add(&long, None);
    let t = m.top(1);
    assert!(t[0].example.len() <= 304);
    let r = t[0].proposed_rule.as_ref().unwrap();
    assert!(!r.pattern.ends_with('$'));
    assert!(regex::Regex::new(&r.pattern).unwrap().is_match(&long));
}
