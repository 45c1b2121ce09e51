//! The backtest's pieces without a database: a day of outcomes scanned into its incident, the
//! incident's history written as a scenario that replays, the report rendered with text from
//! outside made inert.

use std::collections::BTreeMap;

use chrono::{TimeDelta, TimeZone, Utc};
use flowfail_core::backtest::{
    Assumptions, BacktestIncident, BacktestReport, DeploymentAt, History, Scan,
};
use flowfail_core::model::{DeploymentState, RevisionInfo};
use flowfail_core::replay::{ReplayOptions, Scenario, replay_blocking};
use flowfail_core::{FlowType, Policy, Task, TaskId, TaskStatus};

#[test]
fn a_day_with_a_timeout_burst_backtests_to_one_pruning_incident() {
    let from = Utc.with_ymd_and_hms(2026, 11, 5, 0, 0, 0).unwrap();
    let to = from + TimeDelta::days(1);
    let policy = Policy::default();
    let mut scan = Scan::new(&policy, from, to);
    let burst = from + TimeDelta::hours(10);
    let mut tasks = Vec::new();
    let mut t = scan.history_from();
    while t < to {
        scan.record(t, false);
        if t >= burst && t < burst + TimeDelta::minutes(10) {
            // Created two hours before it finished: the window counts it by its finish.
            let id = TaskId::parse(&format!("to-{}", tasks.len())).unwrap();
            let mut task = Task::new(
                id,
                FlowType::Impl,
                TaskStatus::Failed,
                t - TimeDelta::hours(2),
            )
            .with_error("Task timed out after 45.00 seconds", None);
            task.finished_at = Some(t);
            tasks.push(task);
            scan.record(t, true);
        }
        t += TimeDelta::seconds(3);
    }
    let spans = scan.finish();
    assert_eq!(spans.len(), 1, "{spans:?}");
    let span = &spans[0];
    assert!(span.opened_at > burst && span.opened_at < burst + TimeDelta::minutes(2));
    let closed = span.closed_at.unwrap();
    assert!(closed > burst + TimeDelta::hours(1), "{closed}");

    // The world then: the window's failed tasks, their bundles, the revision running.
    let mut state = DeploymentState::new("flowengine", 4, "1");
    state.deployed_at = Some(from + TimeDelta::days(1));
    state.history = vec![
        RevisionInfo::new(2, Some(from - TimeDelta::days(20))),
        RevisionInfo::new(3, Some(from - TimeDelta::days(2))),
    ];
    let then = DeploymentAt::at(&state, span.opened_at).unwrap();
    assert_eq!(then.revision, 3);
    assert_eq!(then.history.len(), 1);
    assert!(DeploymentAt::at(&state, from - TimeDelta::days(30)).is_none());
    let listed: Vec<Task> = tasks
        .into_iter()
        .filter(|t| t.finished_or_created() < span.opened_at + TimeDelta::milliseconds(1))
        .collect();
    let mut history = History::default();
    history.bundles = listed
        .iter()
        .map(|t| (t.task_id.clone(), 600_000))
        .collect::<BTreeMap<_, _>>();
    history.tasks = listed;
    history.deployment = Some(then);
    history.vendors = vec!["anthropic".into(), "openai".into()];
    let mut assume = Assumptions::default();
    assume.set("status.anthropic=operational").unwrap();
    let json = history.scenario("day", span, &policy, &assume);
    assert_eq!(json["vendors"]["openai"], "unknown");
    assert_eq!(json["quota"], serde_json::Value::Null);
    let scenario = Scenario::from_json(&json.to_string()).unwrap();
    let (report, _) = replay_blocking(&scenario, &ReplayOptions::default()).unwrap();
    // The replay's first read of the window is the scan's.
    assert_eq!(
        (report.alert.window_tasks, report.alert.failed),
        (span.alert.window_tasks, span.alert.failed)
    );
    let mut incident = BacktestIncident::from_replay("day", span, &report, &history.gaps);
    assert_eq!(incident.main_kind(), Some("timeout"));
    assert!(
        incident
            .actions
            .iter()
            .any(|a| a.action.kind() == "prune_context"),
        "{:#?}",
        incident.actions
    );
    assert_eq!(incident.time_to_mitigation_s, Some(0));

    // Text from outside is inert in both renderings.
    incident.root_cause = "evil\u{1b}[2J | <b>cause</b>\nforged line".into();
    let r = BacktestReport::new(
        "default.flowengine",
        (from, to),
        28_800,
        vec![incident],
        vec!["quota at the time is not kept".into()],
        assume.describe(),
    );
    assert_eq!(r.summary.incidents, 1);
    assert!(r.summary.actions_by_kind["prune_context"] >= 1);
    let text = r.to_text();
    assert!(
        text.contains("1 incident flowfail would have opened"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(!text.contains("\nforged line"), "{text}");
    assert!(
        text.contains("assumed: anthropic status page operational"),
        "{text}"
    );
    let md = r.to_markdown();
    assert!(!md.contains("| <b>"), "{md}");
    assert!(md.contains("prune_context"), "{md}");
}

/// Live, the supervisor opens nothing while an incident is open: a span that opens before the
/// last incident settled in its replay is that incident's; one after it settled is new; an
/// escalated incident (cooling until its own clear) takes nothing in.
#[test]
fn a_span_that_opens_before_the_last_incident_settled_is_that_incident() {
    use flowfail_core::backtest::IncidentSpan;
    let t = Utc.with_ymd_and_hms(2026, 11, 5, 10, 0, 0).unwrap();
    let template: IncidentSpan = {
        // A span from a real scan: an hour of 5 % failures.
        let mut s = Scan::new(&Policy::default(), t, t + TimeDelta::hours(2));
        let mut at = s.history_from();
        let mut n = 0u64;
        while at < t + TimeDelta::hours(2) {
            n += 1;
            let burst = at >= t && at < t + TimeDelta::minutes(30);
            s.record(at, burst && n.is_multiple_of(20));
            at += TimeDelta::seconds(2);
        }
        s.finish().remove(0)
    };
    let span_at = |opened: chrono::DateTime<Utc>| {
        let mut s = template.clone();
        s.opened_at = opened;
        s.closed_at = Some(opened + TimeDelta::minutes(40));
        s
    };
    let first = span_at(t);
    let mut incident = BacktestIncident::unreplayed("a", &first, "test", &[]);
    // Never settled in its replay: still open when the next span opens.
    assert!(incident.open_at(t + TimeDelta::hours(1)));
    incident.resolved = true;
    incident.resolved_at = Some(t + TimeDelta::minutes(50));
    assert!(incident.open_at(t + TimeDelta::minutes(45)));
    assert!(!incident.open_at(t + TimeDelta::minutes(55)));
    let later =
        BacktestIncident::unreplayed("b", &span_at(t + TimeDelta::minutes(45)), "test", &[]);
    incident.absorb(&later);
    assert_eq!(incident.absorbed, [t + TimeDelta::minutes(45)]);
    assert_eq!(incident.closed_at, Some(t + TimeDelta::minutes(85)));
    incident.escalated = true;
    assert!(!incident.open_at(t + TimeDelta::minutes(45)));
}
