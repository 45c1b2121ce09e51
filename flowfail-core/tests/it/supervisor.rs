//! The supervisor across incidents, in virtual time on the in-memory backends: a fresh state
//! per incident, cheap idle passes, no second incident while an escalated one's alert still
//! fires, the open incident picked up after a restart, old failures left alone, shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use flowfail_core::memory::World;
use flowfail_core::respond::{Responder, Supervisor};
use flowfail_core::{Clock, FlowType, IncidentStore, Policy, Task, TaskId, TaskStatus};
use tokio_util::sync::CancellationToken;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-11-13T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn paused() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// `n` failed tasks `prefix-i` at `at` whose retries succeed (`timeout`) or fail for good
/// (`unknown`: a failure mode flowfail does not know).
fn fail(w: &World, prefix: &str, n: usize, at: DateTime<Utc>, unknown: bool) -> Vec<TaskId> {
    (0..n)
        .map(|i| {
            let id = TaskId::parse(&format!("{prefix}-{i}")).unwrap();
            let msg = if unknown {
                "KeyError: 'context_refs'"
            } else {
                "Task timed out after 45.00 seconds"
            };
            w.tasks.insert(
                Task::new(id.clone(), FlowType::Impl, TaskStatus::Failed, at).with_error(msg, None),
            );
            w.tasks.script_retries(&id, [TaskStatus::Succeeded]);
            id
        })
        .collect()
}

fn supervisor(w: &World, clock: &Clock, reports: &Arc<Mutex<Vec<String>>>) -> Supervisor {
    let reports = reports.clone();
    Supervisor::builder()
        .responder(
            Responder::builder()
                .ports(w.ports())
                .policy(Policy::default())
                .clock(clock.clone()),
        )
        .on_settled(move |r| reports.lock().unwrap().push(r.post_incident.status.clone()))
        .build()
        .unwrap()
}

/// The supervisor spawned on the current runtime, with the token that stops it.
fn spawn(
    s: Supervisor,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<flowfail_core::Result<()>>,
) {
    let stop = CancellationToken::new();
    let run = tokio::spawn({
        let stop = stop.clone();
        async move { s.run(stop).await }
    });
    (stop, run)
}

fn closed(w: &World) -> Vec<(String, bool)> {
    w.incidents
        .incidents()
        .into_iter()
        .map(|r| (r.key, r.closed_at.is_some()))
        .collect()
}

#[test]
fn two_incidents_in_a_row_each_get_a_fresh_state() {
    paused().block_on(async {
        let clock = Clock::tokio_anchored(t0());
        let w = World::new(&Policy::default(), clock.clone());
        w.tasks.set_background(300, 0);
        let first = fail(&w, "a", 5, t0() - TimeDelta::minutes(1), false);
        let reports = Arc::new(Mutex::new(Vec::new()));
        let s = supervisor(&w, &clock, &reports);
        let (stop, run) = spawn(s);
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(*reports.lock().unwrap(), ["resolved"]);
        for id in &first {
            assert_eq!(
                w.tasks
                    .tasks()
                    .iter()
                    .find(|t| &t.task_id == id)
                    .unwrap()
                    .attempts,
                1
            );
        }
        // Idle: only the window counts are read.
        let reads = |op: &str| {
            w.tasks.calls().of(op).len()
                + w.logs.calls().of(op).len()
                + w.quota.calls().of(op).len()
                + w.status.calls().of(op).len()
        };
        let (logs, quota, status, counts) = (
            reads("logs.errors"),
            reads("quota.quota"),
            reads("status.health"),
            reads("task.counts"),
        );
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert_eq!(
            (
                reads("logs.errors"),
                reads("quota.quota"),
                reads("status.health")
            ),
            (logs, quota, status),
            "idle passes read only the counts"
        );
        assert!(
            reads("task.counts") >= counts + 50,
            "one count read per 5 s poll"
        );

        // A second incident: a new key, a fresh state, its own retries.
        let second = fail(&w, "b", 5, clock.now(), false);
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(*reports.lock().unwrap(), ["resolved", "resolved"]);
        let incidents = closed(&w);
        assert_eq!(incidents.len(), 2, "{incidents:?}");
        assert!(incidents.iter().all(|(_, closed)| *closed));
        assert_ne!(incidents[0].0, incidents[1].0);
        for id in second.iter().chain(&first) {
            assert_eq!(
                w.tasks
                    .tasks()
                    .iter()
                    .find(|t| &t.task_id == id)
                    .unwrap()
                    .attempts,
                1,
                "{id}"
            );
        }
        stop.cancel();
        run.await.unwrap().unwrap();
    });
}

#[test]
fn an_escalated_incident_is_not_reopened_while_its_alert_fires() {
    paused().block_on(async {
        let clock = Clock::tokio_anchored(t0());
        let w = World::new(&Policy::default(), clock.clone());
        w.tasks.set_background(300, 0);
        fail(&w, "u", 10, t0() - TimeDelta::minutes(1), true);
        let reports = Arc::new(Mutex::new(Vec::new()));
        let s = supervisor(&w, &clock, &reports);
        let (stop, run) = spawn(s);
        tokio::time::sleep(Duration::from_secs(1200)).await;
        assert_eq!(*reports.lock().unwrap(), ["escalated"]);
        assert_eq!(closed(&w).len(), 1, "{:?}", closed(&w));
        let pages = w.pager.calls().of("pager.page").len();
        assert_eq!(pages, 1, "on-call paged once: {:?}", w.pager.pages());
        stop.cancel();
        run.await.unwrap().unwrap();
    });
}

#[test]
fn a_restarted_supervisor_continues_the_open_incident() {
    paused().block_on(async {
        let clock = Clock::tokio_anchored(t0());
        let w = World::new(&Policy::default(), clock.clone());
        w.tasks.set_background(300, 0);
        let ids = fail(&w, "r", 5, t0() - TimeDelta::minutes(1), false);
        // The first process opens the incident and retries; its first retry fails again; then
        // the process dies (dropped) with the incident open in the ledger.
        w.tasks.script_retries(&ids[0], [TaskStatus::Failed]);
        let first = Responder::builder()
            .ports(w.ports())
            .clock(clock.clone())
            .build()
            .unwrap();
        assert!(first.pass().await.unwrap().incident_open);
        drop(first);
        let key = w
            .incidents
            .find_open("flowengine")
            .await
            .unwrap()
            .unwrap()
            .key;
        tokio::time::sleep(Duration::from_secs(30)).await;

        let reports = Arc::new(Mutex::new(Vec::new()));
        let s = supervisor(&w, &clock, &reports);
        let (stop, run) = spawn(s);
        tokio::time::sleep(Duration::from_secs(900)).await;
        stop.cancel();
        run.await.unwrap().unwrap();
        let rec = w.incidents.get(&key).await.unwrap();
        assert!(
            rec.closed_at.is_some(),
            "the same incident was continued and closed"
        );
        assert_eq!(closed(&w).len(), 1, "{:?}", closed(&w));
        // The record is built from the ledger: it holds the first process's retries too.
        let post = rec.post_incident.unwrap();
        assert_eq!(
            post["actions_summary"]["retry_task"]["applied"], 5,
            "{post:#}"
        );
        assert_eq!(*reports.lock().unwrap(), ["resolved"]);
        // Nothing done twice.
        for id in &ids[1..] {
            let t = w
                .tasks
                .tasks()
                .into_iter()
                .find(|t| &t.task_id == id)
                .unwrap();
            assert_eq!(t.attempts, 1, "{id}");
        }
    });
}

#[test]
fn a_task_that_failed_long_ago_is_not_retried_by_todays_incident() {
    paused().block_on(async {
        let clock = Clock::tokio_anchored(t0());
        let w = World::new(&Policy::default(), clock.clone());
        w.tasks.set_background(300, 0);
        let old = fail(&w, "old", 1, t0() - TimeDelta::days(30), false);
        let recent = fail(&w, "new", 5, t0() - TimeDelta::minutes(1), false);
        let reports = Arc::new(Mutex::new(Vec::new()));
        let s = supervisor(&w, &clock, &reports);
        let (stop, run) = spawn(s);
        tokio::time::sleep(Duration::from_secs(600)).await;
        stop.cancel();
        run.await.unwrap().unwrap();
        assert_eq!(*reports.lock().unwrap(), ["resolved"]);
        let attempts = |id: &TaskId| {
            w.tasks
                .tasks()
                .into_iter()
                .find(|t| &t.task_id == id)
                .unwrap()
                .attempts
        };
        assert_eq!(attempts(&old[0]), 0, "30-day-old failure retried");
        assert!(recent.iter().all(|id| attempts(id) == 1));
    });
}

#[test]
fn the_supervisor_is_send_and_stops_when_cancelled() {
    // A multi-thread runtime: `tokio::spawn` there needs a `Send` future.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let clock = Clock::system();
        let w = World::new(&Policy::default(), clock.clone());
        let reports = Arc::new(Mutex::new(Vec::new()));
        let s = supervisor(&w, &clock, &reports);
        let (stop, run) = spawn(s);
        stop.cancel();
        let done = tokio::time::timeout(Duration::from_secs(5), run).await;
        done.expect("stopped within 5 s").unwrap().unwrap();
        assert!(w.mutations().is_empty());
    });
}

#[test]
fn durations_never_overflow() {
    paused().block_on(async {
        let clock = Clock::tokio_anchored(t0());
        let w = World::new(&Policy::default(), clock.clone());
        let r = Responder::builder()
            .ports(w.ports())
            .clock(clock.clone())
            .build()
            .unwrap();
        // An empty world: the run ends after one pass whatever `max` is.
        let report = r.run(Duration::MAX).await.unwrap();
        assert_eq!(report.passes, 1);
    });
}

#[test]
fn a_new_incident_in_the_same_minute_as_a_closed_one_gets_its_own_key() {
    paused().block_on(async {
        let clock = Clock::tokio_anchored(t0());
        let w = World::new(&Policy::default(), clock.clone());
        w.tasks.set_background(300, 0);
        fail(&w, "a", 5, t0() - TimeDelta::minutes(1), false);
        let reports = Arc::new(Mutex::new(Vec::new()));
        let s = supervisor(&w, &clock, &reports);
        let (stop, run) = spawn(s);
        // Resolved within seconds; a second burst of failures in the same minute.
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert_eq!(*reports.lock().unwrap(), ["resolved"]);
        fail(&w, "b", 5, clock.now(), false);
        tokio::time::sleep(Duration::from_secs(30)).await;
        stop.cancel();
        run.await.unwrap().unwrap();
        assert_eq!(*reports.lock().unwrap(), ["resolved", "resolved"]);
        let keys: Vec<String> = closed(&w).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert_eq!(keys[1], format!("{}-2", keys[0]));
    });
}

/// A responder run on a world whose ledger fails `op` once (transiently).
async fn run_with_ledger_fault(op: &str) -> (World, flowfail_core::report::Report) {
    let clock = Clock::tokio_anchored(t0());
    let w = World::new(&Policy::default(), clock.clone());
    w.tasks.set_background(300, 0);
    fail(&w, "f", 5, t0() - TimeDelta::minutes(1), false);
    w.incidents
        .faults()
        .fail_nth(op, 1, flowfail_core::ErrorKind::Unavailable);
    let r = Responder::builder()
        .ports(w.ports())
        .clock(clock)
        .build()
        .unwrap();
    let report = r.run(Duration::from_secs(600)).await.unwrap();
    (w, report)
}

#[test]
fn a_transient_error_opening_the_incident_does_not_end_the_run() {
    paused().block_on(async {
        let (w, report) = run_with_ledger_fault("incident.open").await;
        assert_eq!(
            report.post_incident.status, "resolved",
            "{:?}",
            report.data_gaps
        );
        assert_eq!(closed(&w).len(), 1);
        assert!(closed(&w)[0].1, "closed in the ledger");
    });
}

#[test]
fn an_incident_is_resolved_only_once_the_ledger_has_closed_it() {
    paused().block_on(async {
        let (w, report) = run_with_ledger_fault("incident.close").await;
        assert_eq!(report.post_incident.status, "resolved");
        let incidents = closed(&w);
        assert_eq!(incidents.len(), 1);
        assert!(
            incidents[0].1,
            "the run ended with the incident still open in the ledger"
        );
    });
}

/// A TaskStore whose `counts` panics the first time (data its adapter did not expect).
#[derive(Debug)]
struct PanicsOnce(
    flowfail_core::memory::MemoryTaskStore,
    std::sync::atomic::AtomicBool,
);

#[async_trait::async_trait]
impl flowfail_core::TaskStore for PanicsOnce {
    async fn recent_failed(&self, limit: usize) -> flowfail_core::Result<Vec<Task>> {
        self.0.recent_failed(limit).await
    }
    async fn counts(
        &self,
        since: chrono::DateTime<Utc>,
        until: chrono::DateTime<Utc>,
    ) -> flowfail_core::Result<flowfail_core::StatusCounts> {
        if !self.1.swap(true, std::sync::atomic::Ordering::SeqCst) {
            panic!("column \"attempts\" is of type text");
        }
        self.0.counts(since, until).await
    }
    async fn get(&self, id: &TaskId) -> flowfail_core::Result<Task> {
        self.0.get(id).await
    }
    async fn task_object(&self, id: &TaskId) -> flowfail_core::Result<Option<serde_json::Value>> {
        self.0.task_object(id).await
    }
    async fn schedule_retries(
        &self,
        r: &[flowfail_core::RetryRequest],
    ) -> flowfail_core::Result<Vec<flowfail_core::RetryOutcome>> {
        self.0.schedule_retries(r).await
    }
    async fn mark_final(&self, id: &TaskId, a: u32) -> flowfail_core::Result<()> {
        self.0.mark_final(id, a).await
    }
}

#[test]
fn a_panic_while_observing_is_contained_and_the_run_goes_on() {
    paused().block_on(async {
        let clock = Clock::tokio_anchored(t0());
        let w = World::new(&Policy::default(), clock.clone());
        w.tasks.set_background(300, 0);
        let ids = fail(&w, "p", 5, t0() - TimeDelta::minutes(1), false);
        let tasks = Arc::new(PanicsOnce(w.tasks.clone(), Default::default()));
        let r = Responder::builder()
            .ports(w.ports_builder().tasks(tasks).build().unwrap())
            .clock(clock)
            .build()
            .unwrap();
        let first = r.pass().await.unwrap();
        assert!(!first.incident_open);
        assert!(
            r.report().data_gaps.iter().any(|g| g.contains("panicked")),
            "{:?}",
            r.report().data_gaps
        );
        let report = r.run(Duration::from_secs(600)).await.unwrap();
        assert_eq!(report.post_incident.status, "resolved");
        for id in &ids {
            assert_eq!(
                w.tasks
                    .tasks()
                    .iter()
                    .find(|t| &t.task_id == id)
                    .unwrap()
                    .attempts,
                1
            );
        }
    });
}

/// A healthy world polled every ten minutes, and a supervisor builder on it with a wake handle.
fn polled_every_ten_minutes() -> (
    Clock,
    World,
    flowfail_core::respond::Wake,
    flowfail_core::respond::SupervisorBuilder,
) {
    let clock = Clock::tokio_anchored(t0());
    let mut policy = Policy::default();
    policy.poll_interval_s = 600;
    let w = World::new(&policy, clock.clone());
    w.tasks.set_background(300, 0);
    let wake = flowfail_core::respond::Wake::new();
    let builder = Supervisor::builder()
        .responder(
            Responder::builder()
                .ports(w.ports())
                .policy(policy)
                .clock(clock.clone()),
        )
        .wake(wake.clone());
    (clock, w, wake, builder)
}

/// A webhook's alert wakes the supervisor between polls: with a 10-minute poll, the incident
/// opens within a second of the alert (not at the next poll), and its state names the alert.
/// An alert that arrives while the failure rate does not fire opens nothing.
#[test]
fn an_alert_wakes_the_supervisor_at_once_and_is_recorded() {
    use flowfail_core::respond::{AlertTrigger, PassKind};
    paused().block_on(async {
        let (clock, w, wake, builder) = polled_every_ten_minutes();
        let passes = Arc::new(Mutex::new(Vec::new()));
        let seen = passes.clone();
        let s = builder
            .on_pass(move |p| seen.lock().unwrap().push(p.clone()))
            .build()
            .unwrap();
        let (stop, run) = spawn(s);
        tokio::time::sleep(Duration::from_secs(5)).await;
        // A healthy world: the alert's wake is a trigger, not a verdict.
        wake.alert(AlertTrigger::new("grafana", "FlowFailureRate", Some("a1")));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(w.incidents.incidents().is_empty());
        let idle = passes.lock().unwrap().len();
        assert_eq!(idle, 2, "the start pass and the woken one");
        // Now failures appear; the next poll is ten minutes away.
        let now = clock.now();
        fail(&w, "w", 5, now - TimeDelta::seconds(30), false);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(
            w.incidents.incidents().is_empty(),
            "nothing before the wake"
        );
        wake.alert(AlertTrigger::new("grafana", "FlowFailureRate", Some("b2")));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let incidents = w.incidents.incidents();
        assert_eq!(incidents.len(), 1, "opened within a second of the alert");
        assert_eq!(
            incidents[0].state["woken_by"],
            "grafana alert \"FlowFailureRate\" (fingerprint b2)"
        );
        tokio::time::sleep(Duration::from_secs(120)).await;
        let stats = passes.lock().unwrap().clone();
        assert!(stats.iter().any(|p| {
            p.kind == PassKind::Incident
                && p.actions
                    .iter()
                    .any(|a| a.kind == "retry_task" && a.outcome == "applied")
        }));
        assert!(stats.iter().all(|p| p.reads.iter().all(|r| r.ok)));
        assert_eq!(stats[0].failure_rate, Some(0.0));
        stop.cancel();
        run.await.unwrap().unwrap();
    });
}

/// A flood of alerts does not drive passes back to back: they stay a second apart.
#[test]
fn a_flood_of_alerts_keeps_passes_a_second_apart() {
    use flowfail_core::respond::AlertTrigger;
    paused().block_on(async {
        let (_clock, w, wake, builder) = polled_every_ten_minutes();
        let s = builder.build().unwrap();
        let (stop, run) = spawn(s);
        // 1,000 alerts over 10 seconds.
        for _ in 0..1000 {
            wake.alert(AlertTrigger::new("alertmanager", "FlowFailureRate", None));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let counts = w.tasks.calls().of("task.counts").len();
        assert!((10..=12).contains(&counts), "{counts} count reads in 10 s");
        stop.cancel();
        run.await.unwrap().unwrap();
    });
}

/// A ledger that never answers at start (the supervisor looks for an open incident to continue)
/// does not hold the supervisor: it gives up at the step deadline and starts polling.
#[test]
fn a_hung_ledger_at_start_does_not_hold_the_supervisor() {
    paused().block_on(async {
        let clock = Clock::tokio_anchored(t0());
        let w = World::new(&Policy::default(), clock.clone());
        w.incidents
            .faults()
            .delay("incident.find_open", Duration::from_secs(24 * 3600));
        let reports = Arc::new(Mutex::new(Vec::new()));
        let (stop, run) = spawn(supervisor(&w, &clock, &reports));
        tokio::time::sleep(Duration::from_secs(600)).await;
        let polls = w.tasks.calls().of("task.counts").len();
        stop.cancel();
        run.await.unwrap().unwrap();
        assert!(
            polls >= 5,
            "{polls} polls in 10 minutes: the supervisor waited on the ledger"
        );
    });
}

/// Issue 27 #10: a panic outside the guarded calls (the pause read in a pass, the idle poll's
/// count read) ends that pass, never the supervisor. Polls go on, an incident pass that panicked
/// is reported as not completed (a service's `/healthz` counts completed passes only), nothing is
/// mutated while the panics last, and the incident is handled once they stop.
#[test]
fn a_panic_outside_the_guarded_calls_is_contained_per_pass() {
    for op in ["incident.pause_flag", "task.counts"] {
        paused().block_on(async {
            let clock = Clock::tokio_anchored(t0());
            let w = World::new(&Policy::default(), clock.clone());
            w.tasks.set_background(300, 0);
            fail(&w, "c", 5, t0() - TimeDelta::minutes(1), false);
            let faults = if op == "task.counts" {
                w.tasks.faults()
            } else {
                w.incidents.faults()
            };
            faults.panic_always(op);
            let passes = Arc::new(Mutex::new(Vec::new()));
            let reports = Arc::new(Mutex::new(Vec::new()));
            let seen = passes.clone();
            let s = Supervisor::builder()
                .responder(
                    Responder::builder()
                        .ports(w.ports())
                        .policy(Policy::default())
                        .clock(clock.clone()),
                )
                .on_pass(move |p| {
                    if p.kind == flowfail_core::respond::PassKind::Incident {
                        seen.lock().unwrap().push(p.completed);
                    }
                })
                .on_settled({
                    let reports = reports.clone();
                    move |r| reports.lock().unwrap().push(r.post_incident.status.clone())
                })
                .build()
                .unwrap();
            let (stop, run) = spawn(s);
            tokio::time::sleep(Duration::from_secs(300)).await;
            let calls = if op == "task.counts" {
                w.tasks.calls().of(op).len()
            } else {
                w.incidents.calls().of(op).len()
            };
            assert!(
                calls >= 5,
                "{op}: {calls} calls in 5 min: the polls stopped"
            );
            assert!(
                passes.lock().unwrap().iter().all(|c| !*c),
                "{op}: an incident pass that panicked was reported completed"
            );
            assert!(w.tasks.calls().mutations().is_empty(), "{op}: mutated");
            faults.clear();
            tokio::time::sleep(Duration::from_secs(600)).await;
            stop.cancel();
            run.await
                .unwrap_or_else(|e| panic!("{op}: the supervisor died: {e}"))
                .unwrap();
            assert_eq!(*reports.lock().unwrap(), ["resolved"], "{op}");
        });
    }
}

/// A reload: settings offered to a running supervisor are in force from its next pass. With a
/// threshold above the failure rate nothing opens; with the reloaded one the incident opens and
/// its tasks are retried. Settings for another ledger scope are refused, the running ones stay.
#[test]
fn reloaded_settings_are_in_force_from_the_next_pass() {
    paused().block_on(async {
        let clock = Clock::tokio_anchored(t0());
        let w = World::new(&Policy::default(), clock.clone());
        w.tasks.set_background(300, 0);
        let failed = fail(&w, "r", 5, t0() - TimeDelta::minutes(1), false);
        let mut lenient = Policy::default();
        lenient.alert_failure_rate = 0.5;
        lenient.widespread_failure_rate = 0.6;
        let builder = |p: Policy| {
            Responder::builder()
                .ports(w.ports())
                .policy(p)
                .clock(clock.clone())
        };
        let reload = flowfail_core::respond::Reload::new();
        let s = Supervisor::builder()
            .responder(builder(lenient))
            .reload(reload.clone())
            .build()
            .unwrap();
        let (stop, run) = spawn(s);
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(
            w.incidents.incidents().is_empty(),
            "1.6% is under 50%: no incident"
        );
        // Another Deployment's scope: refused, nothing changes.
        let mut elsewhere = Policy::default();
        elsewhere.deployment = "elsewhere".into();
        reload.offer(builder(elsewhere));
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(!reload.pending(), "taken");
        assert!(
            w.incidents.incidents().is_empty(),
            "refused: still the lenient policy"
        );
        reload.offer(builder(Policy::default()));
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(
            w.incidents.incidents().len(),
            1,
            "the default threshold fires"
        );
        let attempts: Vec<u32> = failed
            .iter()
            .map(|id| {
                w.tasks
                    .tasks()
                    .iter()
                    .find(|t| &t.task_id == id)
                    .unwrap()
                    .attempts
            })
            .collect();
        assert_eq!(attempts, [1; 5]);
        stop.cancel();
        run.await.unwrap().unwrap();
    });
}
