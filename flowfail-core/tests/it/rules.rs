//! Users' rule files: what they can add, and what a bad file is told.

use flowfail_core::classify::RuleSet;
use flowfail_core::{ErrorKind, FailureKind};

fn rule(name: &str, stage: &str, kind: &str, extra: &str, pattern: &str) -> String {
    format!(
        "[[rule]]\nname = \"{name}\"\nstage = \"{stage}\"\nkind = \"{kind}\"\n{extra}pattern = '''{pattern}'''\n"
    )
}

fn err(text: &str) -> String {
    let e = RuleSet::with_extra_toml([("extra.toml", text)]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    e.to_string()
}

#[test]
fn a_users_rule_classifies_a_format_the_built_in_rules_do_not_know() {
    let msg = "flowengine: step budget of 45s spent in llm_call";
    assert_eq!(
        RuleSet::builtin().classify(msg, None).kind,
        FailureKind::Unknown
    );
    let rules = RuleSet::with_extra_toml([(
        "extra.toml",
        rule(
            "flowengine:step_budget",
            "pattern",
            "timeout",
            "",
            r"step budget of \d+s spent",
        )
        .as_str(),
    )])
    .unwrap();
    let c = rules.classify(msg, None);
    assert_eq!(
        (c.kind, c.retryable, c.rule),
        (FailureKind::Timeout, true, "flowengine:step_budget")
    );
    // Users' rules come first in their stage, and the built-in rules still work.
    assert_eq!(rules.len(), RuleSet::builtin().len() + 1);
    assert_eq!(
        rules
            .classify("Task timed out after 45.00 seconds", None)
            .kind,
        FailureKind::Timeout
    );
}

#[test]
fn a_users_quota_rule_makes_a_rate_limit_not_retryable() {
    let rules = RuleSet::with_extra_toml([(
        "extra.toml",
        rule(
            "flowengine:budget_cap",
            "pattern",
            "rate_limit",
            "quota_exhausted = true\n",
            r"team budget cap reached",
        )
        .as_str(),
    )])
    .unwrap();
    let c = rules.classify(
        "openai.RateLimitError: Error code: 429 - team budget cap reached",
        None,
    );
    assert_eq!(
        (c.kind, c.retryable),
        (FailureKind::RateLimit, false),
        "{c:?}"
    );
}

#[test]
fn users_rules_can_never_make_validation_retryable() {
    // Declared retryable: refused.
    let e = err(&rule(
        "mine:v",
        "pattern",
        "validation",
        "retryable = true\n",
        "bad task",
    ));
    assert!(e.contains("never retryable"), "{e}");
    let e = err(&rule(
        "mine:u",
        "pattern",
        "unknown",
        "retryable = true\n",
        "bad task",
    ));
    assert!(e.contains("never retryable"), "{e}");
    // A retryable rule that matches a message the built-in rules see as validation: validation
    // wins, in every stage a user can add to.
    let msg = "missing field `inputs` at line 1 column 20 (step timed out)";
    for stage in ["vendor_code", "exception", "pattern"] {
        let rules = RuleSet::with_extra_toml([(
            "extra.toml",
            rule("mine:retry_everything", stage, "timeout", "", ".").as_str(),
        )])
        .unwrap();
        let c = rules.classify(msg, None);
        assert_eq!(
            (c.kind, c.retryable),
            (FailureKind::Validation, false),
            "{stage}: {c:?}"
        );
        let e = rules.explain(msg, None);
        assert_eq!(e.steps.last().unwrap().stage, "guard", "{e:?}");
        // A schema validator's line is validation before a user's pattern is weighed (a
        // user's vendor code or exception matching at its start is caught by the guard).
        let e = rules.explain("'inputs' is a required property (step timed out)", None);
        let last = if stage == "pattern" {
            "validation"
        } else {
            "guard"
        };
        assert_eq!(
            (e.classification.kind, e.steps.last().unwrap().stage),
            (FailureKind::Validation, last),
            "{e:?}"
        );
    }
    let status = "[[rule]]\nname = \"mine:status\"\nstage = \"status_in_message\"\npattern = '''code (\\d{3})'''\n";
    let rules = RuleSet::with_extra_toml([("extra.toml", status)]).unwrap();
    let c = rules.classify("1 validation error for TaskObject (code 503)", None);
    assert_eq!(
        (c.kind, c.retryable),
        (FailureKind::Validation, false),
        "{c:?}"
    );
    // Without validation evidence the user's rule decides.
    let c = rules.classify("vendor said code 503", None);
    assert_eq!(
        (c.kind, c.rule),
        (FailureKind::ModelApi5xx, "status_in_message:5xx")
    );
}

#[test]
fn a_bad_regex_names_the_file_the_rule_and_the_position() {
    let e = err(&rule(
        "mine:broken",
        "pattern",
        "timeout",
        "",
        "step (budget",
    ));
    assert!(e.contains("extra.toml"), "{e}");
    assert!(e.contains("rule 1"), "{e}");
    assert!(e.contains("mine:broken"), "{e}");
    assert!(e.contains("column 6"), "{e}");
    assert!(e.contains("unclosed group"), "{e}");
    let e = err(&format!(
        "{}{}",
        rule("mine:ok", "pattern", "timeout", "", "fine"),
        rule("mine:bad_class", "pattern", "timeout", "", r"x[z-a]")
    ));
    assert!(
        e.contains("rule 2") && e.contains("mine:bad_class") && e.contains("column 3"),
        "{e}"
    );
}

#[test]
fn bad_files_are_refused_with_clear_errors() {
    // TOML syntax: line and column.
    let e = err("[[rule]]\nname = \"x\"\nstage = pattern\n");
    assert!(e.contains("extra.toml (line 3"), "{e}");
    // Unknown keys, stages and kinds.
    let e = err(&format!(
        "{}colour = \"red\"\n",
        rule("mine:a", "pattern", "timeout", "", "a")
    ));
    assert!(e.contains("colour"), "{e}");
    assert!(err(&rule("mine:a", "stage_six", "timeout", "", "a")).contains("stage_six"));
    assert!(err(&rule("mine:a", "pattern", "slow", "", "a")).contains("slow"));
    // Names: format, and unique (the built-in ones included).
    assert!(err(&rule("Mine A", "pattern", "timeout", "", "a")).contains("a name is"));
    let e = err(&rule("pattern:timeout", "pattern", "timeout", "", "a"));
    assert!(e.contains("defined twice"), "{e}");
    // Missing kind; a status rule without a group, or with a kind.
    assert!(
        err("[[rule]]\nname = \"a\"\nstage = \"pattern\"\npattern = 'x'\n")
            .contains("missing `kind`")
    );
    let e = err("[[rule]]\nname = \"a\"\nstage = \"status_in_message\"\npattern = 'code \\d+'\n");
    assert!(e.contains("captures the status"), "{e}");
    let e = err(&rule(
        "a",
        "status_in_message",
        "timeout",
        "",
        r"code (\d+)",
    ));
    assert!(e.contains("has no kind"), "{e}");
    // An empty file; a quota rule that is not a rate limit.
    assert!(err("").contains("no [[rule]]"));
    let e = err(&rule(
        "a",
        "pattern",
        "timeout",
        "quota_exhausted = true\n",
        "x",
    ));
    assert!(e.contains("quota_exhausted"), "{e}");
    // Unicode classes have no ASCII form for the log scan.
    let e = err(&rule("a", "pattern", "timeout", "", r"\pL+ timed out"));
    assert!(e.contains("Unicode"), "{e}");
}

#[test]
fn rule_files_are_read_from_disk_and_a_missing_one_is_named() {
    let dir = std::env::temp_dir().join(format!("ff-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("flowengine.toml");
    std::fs::write(
        &path,
        rule("fe:budget", "pattern", "timeout", "", "budget spent"),
    )
    .unwrap();
    let rules = RuleSet::with_extra(&[&path]).unwrap();
    assert_eq!(rules.classify("budget spent", None).rule, "fe:budget");
    let missing = dir.join("nope.toml");
    let e = RuleSet::with_extra(&[&missing]).unwrap_err();
    assert!(e.to_string().contains("nope.toml"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_built_in_rule_file_is_the_documented_format() {
    // Loading the built-in file as a user's file fails only because the names are taken.
    let e = err(flowfail_core::classify::BUILTIN_RULES);
    assert!(e.contains("defined twice"), "{e}");
}
