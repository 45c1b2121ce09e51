//! A long incident as the ledger holds it, for the console's bench (P11 in
//! docs/BENCHMARKS.md) and its page-size test: `tasks` timeouts over `duration` of passes every
//! 5 s, written the way the responder writes them — a decision when it changes (every five
//! minutes here, the skipped subjects moving), a sample of the alert's numbers each minute,
//! every task pruned and retried, a third of them failing again and retried twice more, the
//! findings of each round, and a rollback proposed.

use chrono::TimeDelta;
use flowfail_core::decide::IncidentState;
use flowfail_core::detect::AlertState;
use flowfail_core::model::{FailureKind, Timestamp};
use flowfail_core::ports::{IncidentRecord, TimelineEntry, TimelineKind};
use serde_json::json;

/// The record of an open incident of `tasks` failed tasks, `duration` long, opened at `t0`.
pub fn long_incident(
    tasks: usize,
    duration: TimeDelta,
    t0: Timestamp,
) -> serde_json::Result<IncidentRecord> {
    let key = format!("flowengine-{}", t0.format("%Y%m%dT%H%MZ"));
    let alert: AlertState = serde_json::from_value(json!({"firing": true,
        "failure_rate": 0.25, "window_tasks": tasks * 4, "failed": tasks}))?;
    let state = IncidentState::open(
        key.clone(),
        t0,
        alert,
        [(FailureKind::Timeout, tasks as u64)].into_iter().collect(),
        None,
    );
    let mut rec = IncidentRecord::new(key, "flowengine", t0, serde_json::to_value(&state)?);
    let ids: Vec<String> = (0..tasks).map(|i| format!("t-{i:05}")).collect();
    let e = |at: Timestamp, kind: TimelineKind, detail: serde_json::Value| {
        TimelineEntry::new(at, kind, detail)
    };
    let mut tl = Vec::new();
    let passes = duration.num_seconds() / 5;
    for pass in 0..=passes {
        let at = t0 + TimeDelta::seconds(pass * 5);
        let rate = 0.25 * (1.0 - pass as f64 / (passes.max(1) as f64 * 1.2));
        let numbers = json!({"firing": true, "failure_rate": rate,
            "window_tasks": tasks * 4, "failed": (rate * tasks as f64 * 4.0) as u64});
        if pass % 60 == 0 {
            // The decision changed: a new round of retries, other subjects held back.
            let round = pass / 60;
            let held: Vec<&String> = ids
                .iter()
                .skip(round as usize % tasks.max(1))
                .take(10)
                .collect();
            tl.push(e(at, TimelineKind::Decision, json!({
                "mode": "act", "acted": true, "alert": numbers,
                "classification": {"timeout": tasks},
                "planned": [{"kind": "retry_task", "count": tasks / 3, "subjects": &held}],
                "awaiting_approval": ["rollback"],
                "skipped": [
                    {"action": "retry_task", "reason": format!("waiting for backoff (round {round})"), "count": tasks / 3, "examples": &held},
                    {"action": "rollback", "reason": "awaiting approval (rollback is in require_approval): approve with `flowfail approve KEY rollback`", "count": 1, "examples": []},
                    {"action": "retry_task", "reason": "attempt limit reached: marked final", "count": round, "examples": &held}
                ],
                "findings": ["retry_failed_again"],
                "waiting": ["retry backoff", "failure rate after the retries"]
            })));
        } else if pass % 12 == 0 {
            tl.push(e(at, TimelineKind::Sample, numbers));
        }
        let action = |kind: &str, id: &str, attempt: u32| {
            let a = match kind {
                "prune_context" => {
                    json!({"kind": "prune_context", "task_id": id, "from_bytes": 600_000, "to_bytes": 180_000})
                }
                _ => {
                    json!({"kind": "retry_task", "task_id": id, "attempt": attempt, "failure_kind": "timeout"})
                }
            };
            json!({"action": a, "outcome": "applied", "detail": null, "mode": "act", "acted": true})
        };
        // Round 1 at the start, rounds 2 and 3 for a third of the tasks at 10 and 30 minutes.
        let round = match pass {
            0 => Some((1, tasks)),
            120 => Some((2, tasks / 3)),
            360 => Some((3, tasks / 3)),
            _ => None,
        };
        if let Some((attempt, n)) = round {
            if attempt == 1 {
                for id in &ids {
                    tl.push(e(at, TimelineKind::Action, action("prune_context", id, 0)));
                }
                tl.push(e(at, TimelineKind::Proposed, json!({"gate": "rollback",
                    "action": "roll back flowengine to revision 7", "reason": "failures began with revision 8"})));
            } else {
                tl.push(e(at, TimelineKind::Finding, json!({"kind": "retry_failed_again",
                    "task_id": null, "summary": format!("{n} retried tasks failed again"), "details": {"tasks": &ids[..n]}})));
            }
            for id in &ids[..n] {
                tl.push(e(
                    at,
                    TimelineKind::Action,
                    action("retry_task", id, attempt),
                ));
            }
        }
    }
    rec.timeline = tl;
    Ok(rec)
}
