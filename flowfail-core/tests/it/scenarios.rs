//! The four incident scenarios, replayed end to end, with the runbook's semantics asserted.

use chrono::TimeDelta;
use flowfail_core::TaskId;
use flowfail_core::memory::World;
use flowfail_core::replay::{ReplayOptions, Scenario, replay_blocking};
use flowfail_core::report::{ActionFields, ActionRecord, Outcome, Report};

use crate::support::load;

fn run(name: &str) -> (Report, World) {
    replay_blocking(&load(name), &ReplayOptions::default()).unwrap()
}

fn applied<'a>(r: &'a Report, kind: &str) -> Vec<&'a ActionRecord> {
    r.actions
        .iter()
        .filter(|a| a.action.kind() == kind && a.outcome == Outcome::Applied)
        .collect()
}

#[test]
fn pilot_timeout_prunes_three_bundles_retries_each_and_resolves() {
    let (r, w) = run("pilot-timeout");
    assert!(r.alert.firing);
    assert_eq!(r.classification[&flowfail_core::FailureKind::Timeout], 3);
    let prunes = applied(&r, "prune_context");
    assert_eq!(prunes.len(), 3);
    for p in &prunes {
        let ActionFields::PruneContext {
            task_id,
            from_bytes,
            to_bytes,
        } = &p.action
        else {
            unreachable!()
        };
        assert!(
            *from_bytes > 500_000 && *to_bytes <= 180_000,
            "{from_bytes} -> {to_bytes}"
        );
        // Each prune is followed by a retry of the same task.
        let i = r.actions.iter().position(|a| std::ptr::eq(a, *p)).unwrap();
        assert!(r.actions[i + 1..].iter().any(|a| matches!(&a.action,
            ActionFields::RetryTask { task_id: t, attempt: 1, .. } if t == task_id)
            && a.outcome == Outcome::Applied));
        // The original is archived and verifiable; the live bundle is valid JSON within budget.
        let id = TaskId::parse(task_id).unwrap();
        let archives = w.bundles.archives(&id);
        assert_eq!(archives.len(), 1);
        assert_eq!(archives[0].1.len() as u64, *from_bytes);
        let live = w.bundles.bytes(&id).unwrap();
        assert!(live.len() <= 180_000);
        serde_json::from_slice::<serde_json::Value>(&live).unwrap();
    }
    assert!(applied(&r, "rollback").is_empty());
    assert!(applied(&r, "page").is_empty());
    assert!(r.resolved);
    let mttr = r.post_incident.mttr_seconds.unwrap();
    assert!(mttr <= 10, "MTTR {mttr}s");
}

#[test]
fn rate_limit_enables_breaker_once_and_waits_for_half_open() {
    rate_limit_runbook("rate-limit");
}

/// The rate-limit and outage branches with OpenAI and with Google as the primary vendor, each
/// failing in its own error format: the same runbook as with Anthropic, the fallback on the
/// primary's own fallback vendor.
#[test]
fn every_vendor_as_primary_gets_the_same_runbook() {
    for (vendor, fallback_model) in [("openai", "claude-sonnet-4-5"), ("google", "gpt-4-turbo")] {
        rate_limit_runbook(&format!("rate-limit-primary-{vendor}"));
        outage_runbook(&format!("vendor-outage-primary-{vendor}"), fallback_model);
    }
}

/// Every vendor the policy names has its status page read each pass, not only the primary's
/// and its fallback's (a vendor the status port does not know is left out without a gap).
#[test]
fn every_vendor_the_policy_names_has_its_status_read() {
    let (r, w) = run("vendor-outage-primary-google");
    let read: std::collections::BTreeSet<String> = w
        .status
        .calls()
        .of("status.health")
        .iter()
        .map(|c| c.detail.clone())
        .collect();
    assert_eq!(
        read.into_iter().collect::<Vec<_>>(),
        ["anthropic", "google", "openai"]
    );
    assert!(
        r.data_gaps.iter().all(|g| !g.contains("anthropic")),
        "{:?}",
        r.data_gaps
    );
}

fn rate_limit_runbook(name: &str) {
    let (r, w) = run(name);
    assert_eq!(
        r.classification
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>(),
        ["rate_limit"],
        "{name}"
    );
    let flips: Vec<_> = applied(&r, "set_env")
        .into_iter()
        .filter(|a| matches!(&a.action, ActionFields::SetEnv { name, value: Some(v), .. } if name == "ENABLE_CIRCUIT_BREAKER" && v == "true"))
        .collect();
    assert_eq!(flips.len(), 1, "breaker enabled exactly once");
    let t0 = flips[0].at;
    let retries = applied(&r, "retry_task");
    assert!(!retries.is_empty());
    assert!(
        retries.iter().all(|a| a.at - t0 >= TimeDelta::seconds(60)),
        "no retry within 60 s of the breaker"
    );
    // Half-open admits one probe before the rest.
    let first = retries[0];
    assert!(matches!(
        first.action,
        ActionFields::RetryTask { probe: true, .. }
    ));
    assert!(retries[1..].iter().all(|a| a.at > first.at));
    assert!(applied(&r, "rollback").is_empty());
    assert_eq!(
        w.deployment.snapshot().env["ENABLE_CIRCUIT_BREAKER"],
        "true"
    );
    assert!(r.resolved);
    assert!(r.post_incident.mttr_seconds.unwrap() <= 90);
}

#[test]
fn vendor_outage_falls_back_pages_after_30_min_and_recovers() {
    outage_runbook("vendor-outage", "gpt-4-turbo");
}

fn outage_runbook(name: &str, model: &str) {
    let (r, w) = run(name);
    let start = r.detected_at.unwrap();
    let fb: Vec<_> = applied(&r, "set_env")
        .into_iter()
        .filter(|a| matches!(&a.action, ActionFields::SetEnv { name, value: Some(v), .. } if name == "FALLBACK_MODEL" && v == model))
        .collect();
    assert_eq!(fb.len(), 1, "{name}: {:#?}", r.actions);
    assert_eq!(fb[0].at, start);
    let pages = applied(&r, "page");
    let targets: Vec<&str> = pages
        .iter()
        .map(|a| match &a.action {
            ActionFields::Page { target, .. } => target.as_str(),
            _ => "",
        })
        .collect();
    assert!(
        targets.contains(&"sre") && targets.contains(&"tech_lead"),
        "{targets:?}"
    );
    assert_eq!(targets.len(), 2, "each paged once");
    for p in &pages {
        let after = p.at - start;
        assert!(
            after >= TimeDelta::minutes(30) && after < TimeDelta::minutes(31),
            "paged after {after}"
        );
    }
    // Stakeholders: told of the outage once, and once that it is over.
    let notices: Vec<_> = applied(&r, "notify")
        .into_iter()
        .map(|a| match &a.action {
            ActionFields::Notify { message, .. } => message.clone(),
            _ => String::new(),
        })
        .collect();
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(notices[0].contains("outage for") && notices[1].contains("outage is over"));
    assert!(applied(&r, "rollback").is_empty());
    // No retry during the outage; the fallback is undone on recovery and tasks retried.
    let recovery = start + TimeDelta::seconds(2700);
    assert!(applied(&r, "retry_task").iter().all(|a| a.at >= recovery));
    assert!(applied(&r, "set_env").iter().any(|a| matches!(&a.action, ActionFields::SetEnv { name, value: None, .. } if name == "FALLBACK_MODEL")));
    assert!(!w.deployment.snapshot().env.contains_key("FALLBACK_MODEL"));
    assert!(
        !w.deployment
            .snapshot()
            .env
            .contains_key("MANUAL_REVIEW_MODE")
    );
    assert!(r.resolved);
}

#[test]
fn bad_deploy_rolls_back_exactly_once_8_to_7() {
    let (r, w) = run("bad-deploy");
    let rollbacks: Vec<_> = r
        .actions
        .iter()
        .filter(|a| a.action.kind() == "rollback")
        .collect();
    assert_eq!(rollbacks.len(), 1);
    assert!(matches!(
        rollbacks[0].action,
        ActionFields::Rollback {
            from_revision: 8,
            to_revision: 7,
            ..
        }
    ));
    assert_eq!(rollbacks[0].outcome, Outcome::Applied);
    assert!(r.actions.iter().any(
        |a| matches!(&a.action, ActionFields::VerifyRollout { status, .. } if status == "complete")
    ));
    assert_eq!(w.deployment.calls().of("deployment.rollback").len(), 1);
    // The unknown failure mode is paged once to on-call.
    let pages = applied(&r, "page");
    assert_eq!(pages.len(), 1);
    assert!(!r.post_incident.new_failure_modes.is_empty());
    // Tasks are retried only after the rollback, and no task beyond the policy's attempts.
    let rb_at = rollbacks[0].at;
    assert!(applied(&r, "retry_task").iter().all(|a| a.at > rb_at));
    assert!(w.tasks.tasks().iter().all(|t| t.attempts <= 3));
    assert!(r.resolved);
}

#[test]
fn dry_run_mutates_nothing_and_reports_what_it_would_do() {
    for name in ["pilot-timeout", "rate-limit", "vendor-outage", "bad-deploy"] {
        let (r, w) = replay_blocking(&load(name), &ReplayOptions::default().dry_run(true)).unwrap();
        assert!(w.mutations().is_empty(), "{name}: {:?}", w.mutations());
        assert!(!r.actions.is_empty(), "{name}");
        assert!(
            r.actions.iter().all(|a| a.outcome == Outcome::DryRun),
            "{name}"
        );
        assert_eq!(r.post_incident.status, "dry_run");
    }
}

#[test]
fn reports_serialize_with_the_required_fields() {
    let (r, _) = run("bad-deploy");
    let v = serde_json::to_value(&r).unwrap();
    for f in [
        "alert",
        "classification",
        "actions",
        "findings",
        "resolved",
        "detected_at",
        "resolved_at",
        "post_incident",
    ] {
        assert!(v.get(f).is_some(), "missing {f}");
    }
    for f in ["firing", "failure_rate", "window_tasks"] {
        assert!(v["alert"].get(f).is_some());
    }
    for k in [
        "timeout",
        "rate_limit",
        "validation",
        "model_api_5xx",
        "unknown",
    ] {
        assert!(v["classification"].get(k).is_some());
    }
    let a = &v["actions"][0];
    assert!(a["at"].is_string() && a["kind"].is_string() && a["outcome"].is_string());
    assert!(v["post_incident"]["mttr_seconds"].is_i64());
    assert!(r.to_markdown().contains("# Post-incident review"));
}

#[test]
fn unknown_policy_fields_are_ignored_and_reported_known_ones_validated() {
    let text = std::fs::read_to_string(format!(
        "{}/../testdata/scenarios/pilot-timeout.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["policy"] = serde_json::json!({"min_sample": 50, "some_future_knob": true});
    let sc = Scenario::from_json(&json.to_string()).unwrap();
    assert_eq!(sc.policy().unwrap().min_sample, 50);
    let (r, _) = replay_blocking(&sc, &ReplayOptions::default()).unwrap();
    assert!(r.resolved);
    assert!(r.data_gaps.iter().any(|g| g.contains("some_future_knob")));
    json["policy"] = serde_json::json!({"alert_failure_rate": 7.0});
    let sc = Scenario::from_json(&json.to_string()).unwrap();
    assert!(
        replay_blocking(&sc, &ReplayOptions::default()).is_err(),
        "nonsense values are still refused"
    );
}

/// Every change flowfail makes to the Deployment carries its own cause: the incident it acts for
/// and the action's purpose (what the Kubernetes adapter writes as the change cause).
#[test]
fn every_deployment_change_carries_its_incident_and_purpose() {
    for (name, purpose) in [
        (
            "bad-deploy",
            "widespread failures after the deploy of revision 8",
        ),
        ("rate-limit", "enable circuit breaker"),
        ("vendor-outage", "route to"),
    ] {
        let (r, w) = run(name);
        let key = r.post_incident.incident_key.clone().unwrap();
        let changes = w.deployment.calls().mutations();
        assert!(!changes.is_empty(), "{name}");
        for c in &changes {
            let cause = c
                .cause
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: {c:?} carries no cause"));
            assert_eq!(cause.incident(), Some(key.as_str()), "{name}: {c:?}");
            assert!(!cause.purpose().is_empty(), "{name}: {c:?}");
        }
        assert!(
            changes
                .iter()
                .filter_map(|c| c.cause.as_ref())
                .any(|c| c.purpose().contains(purpose)),
            "{name}: {changes:?}"
        );
    }
}

/// The Deployment's raw `set_env` calls, as the in-memory controller received them
/// (`flowengine NAME=value if rv=…`, `NAME-` for an unset).
fn set_env_calls(w: &World) -> Vec<String> {
    w.deployment
        .calls()
        .of("deployment.set_env")
        .into_iter()
        .map(|c| c.detail)
        .collect()
}

#[test]
fn status_page_green_during_a_5xx_storm_falls_back_to_the_healthy_vendor() {
    let (r, w) = run("status-green-5xx-storm");
    let start = r.detected_at.unwrap();
    // The Deployment: routed to the fallback at detection, restored once, nothing else.
    let calls = set_env_calls(&w);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls[0].starts_with("flowengine FALLBACK_MODEL=gpt-4-turbo "),
        "{calls:?}"
    );
    assert!(
        calls[1].starts_with("flowengine FALLBACK_MODEL- "),
        "{calls:?}"
    );
    assert!(!w.deployment.snapshot().env.contains_key("FALLBACK_MODEL"));
    assert!(
        !w.deployment
            .snapshot()
            .env
            .contains_key("MANUAL_REVIEW_MODE")
    );
    // The decision says which evidence it used, with the numbers.
    let sets = applied(&r, "set_env");
    assert_eq!(sets[0].at, start);
    let ActionFields::SetEnv { purpose, .. } = &sets[0].action else {
        unreachable!()
    };
    assert!(
        purpose.contains("observed: 150 of 1660 tasks (9.04%) failed with anthropic 5xx")
            && purpose.contains("status page Operational"),
        "{purpose}"
    );
    let f = r
        .findings
        .iter()
        .find(|f| f.finding.kind == "vendor_degraded")
        .unwrap();
    assert_eq!(f.finding.details["evidence"], "observed_rate");
    assert_eq!(f.finding.details["observed"]["failures_5xx"], 150);
    assert_eq!(f.finding.details["observed"]["unattributed_5xx"], 10);
    // No 5xx retry while routed away; the fallback is undone once the storm is 10 min old.
    let undo_at = sets[1].at;
    assert!(
        undo_at - start >= TimeDelta::minutes(9),
        "undone at {undo_at}"
    );
    let retries = applied(&r, "retry_task");
    assert_eq!(retries.len(), 160);
    assert!(retries.iter().all(|a| a.at >= undo_at));
    assert!(
        w.tasks
            .tasks()
            .iter()
            .all(|t| t.status == flowfail_core::TaskStatus::Succeeded)
    );
    assert!(r.resolved);
    assert!(applied(&r, "page").is_empty());
}

#[test]
fn without_the_observed_rate_the_green_status_page_would_have_been_believed() {
    let text = std::fs::read_to_string(format!(
        "{}/../testdata/scenarios/status-green-5xx-storm.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["policy"] = serde_json::json!({"vendor_5xx_rate_threshold": 1.0});
    let sc = Scenario::from_json(&json.to_string()).unwrap();
    let (r, w) = replay_blocking(&sc, &ReplayOptions::default()).unwrap();
    assert!(set_env_calls(&w).is_empty());
    assert!(
        r.findings
            .iter()
            .all(|f| f.finding.kind != "vendor_degraded")
    );
}

#[test]
fn both_vendors_failing_go_to_manual_review_never_to_the_fallback() {
    let (r, w) = run("both-vendors-fail");
    let start = r.detected_at.unwrap();
    // The Deployment: manual review at detection — both status pages still green then —, the
    // fallback never, manual review restored after recovery.
    let calls = set_env_calls(&w);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls[0].starts_with("flowengine MANUAL_REVIEW_MODE=true "),
        "{calls:?}"
    );
    assert!(
        calls[1].starts_with("flowengine MANUAL_REVIEW_MODE- "),
        "{calls:?}"
    );
    assert!(calls.iter().all(|c| !c.contains("FALLBACK_MODEL")));
    assert!(
        !w.deployment
            .snapshot()
            .env
            .contains_key("MANUAL_REVIEW_MODE")
    );
    assert_eq!(applied(&r, "set_env")[0].at, start);
    assert!(
        r.not_taken.iter().any(|s| s.skip.reason.starts_with(
            "fallback vendor openai is failing (status page: Operational; observed: 100 of 1750"
        )),
        "{:#?}",
        r.not_taken
    );
    // Escalated after 30 min, counted from the first (observed) sight; by then the status
    // pages had turned red and the storm was older than the cooldown: the page SRE and TL
    // received says the status page is the evidence now, with the numbers of both.
    let pages = w.pager.pages();
    assert_eq!(pages.len(), 2, "{pages:?}");
    for p in &pages {
        let v = &p.details["evidence"]["vendor_health"];
        assert_eq!(v["vendor"], "anthropic");
        assert_eq!(v["evidence"], "status_page", "{v}");
        assert_eq!(v["status_page"], "MajorOutage");
        assert_eq!(v["observed"]["failures_5xx"], 150);
        assert_eq!(v["observed_failing"], false);
        assert_eq!(
            p.summary,
            "anthropic outage for 30 min (status page MajorOutage)"
        );
    }
    assert!(
        applied(&r, "retry_task")
            .iter()
            .all(|a| a.at >= start + TimeDelta::seconds(2700))
    );
    assert!(r.resolved);
}

/// A deploy that rejects the TaskObjects tenants still send: one finding names the versions the
/// failing TaskObjects carry and the version the running revision expects (its
/// `TASK_SCHEMA_VERSION`), with the runbook's fix; the rollback branch rolls back once.
#[test]
fn a_schema_version_mismatch_is_named_with_both_versions_and_rolled_back() {
    let (r, _) = run("deploy-rejects-old-taskobjects");
    let found: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.finding.kind == "schema_version_mismatch")
        .collect();
    assert_eq!(found.len(), 1, "once per incident");
    let s = &found[0].finding.summary;
    assert!(
        s.contains("carry schema version 1.4.0")
            && s.contains("revision 8 expects 2.0.0 (TASK_SCHEMA_VERSION)")
            && s.contains("roll back to a compatible schema version"),
        "{s}"
    );
    assert_eq!(applied(&r, "rollback").len(), 1);
}
