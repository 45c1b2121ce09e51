//! Reliability scenarios (docs/RELIABILITY.md): replicas, lost replies, crashes, human changes,
//! loops, retry storms, stale data, self-protection. Each test tries to make an incident
//! bigger and checks that flowfail does not.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use flowfail_core::invariants::{CallMark, Invariants};
use flowfail_core::memory::World;
use flowfail_core::memory::synthesize_bundle;
use flowfail_core::ports::Ports;
use flowfail_core::replay::Scenario;
use flowfail_core::report::{Outcome, Report};
use flowfail_core::respond::Responder;
use flowfail_core::{
    Bundle, BundleMeta, BundleStore, BundleVersion, ChangeCause, Clock, DeploymentController,
    DeploymentState, EnvChange, ErrorKind, FlowType, Policy, Result, RolloutStatus, Task, TaskId,
    TaskStatus,
};
use proptest::prelude::*;

use crate::support::{load, paused};

/// A scenario's world, and the invariants N1-N7 (`flowfail_core::invariants`), checked on the
/// world when the test's `Setup` is dropped: after every test here that builds one.
struct Setup {
    world: World,
    policy: Policy,
    clock: Clock,
    inv: Option<Invariants>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(inv) = self.inv.take()
            && !std::thread::panicking()
            && let Err(v) = inv.check(&self.world, &self.policy)
        {
            panic!("{v}");
        }
    }
}

impl Setup {
    /// The test ends with the incident open on purpose (N3 not checked).
    fn open_allowed(&mut self) {
        self.inv = self.inv.take().map(Invariants::open_incidents_allowed);
    }
}

fn setup(sc: &Scenario) -> Setup {
    let policy = sc.policy().unwrap();
    let clock = Clock::tokio_anchored(sc.now);
    let world = sc.world(&policy, clock.clone()).unwrap();
    let inv = Some(Invariants::before(&world));
    Setup {
        world,
        policy,
        clock,
        inv,
    }
}

fn responder(s: &Setup, ports: Ports) -> Responder {
    Responder::builder()
        .ports(ports)
        .policy(s.policy.clone())
        .clock(s.clock.clone())
        .build()
        .unwrap()
}

fn applied(r: &Report, kind: &str) -> usize {
    r.actions
        .iter()
        .filter(|a| a.action.kind() == kind && a.outcome == Outcome::Applied)
        .count()
}

async fn tick(s: &Setup) {
    tokio::time::sleep(Duration::from_secs(s.policy.poll_interval_s)).await;
}

// ---------------------------------------------------------------- A. double action

/// Raw page calls that reached the pager, by dedup key (the pager's own deduplicated view is
/// not what is counted).
fn raw_pages_by_key(w: &World) -> std::collections::BTreeMap<String, usize> {
    let mut by_key = std::collections::BTreeMap::new();
    for c in w.pager.calls().of("pager.page") {
        let key = c.detail.split_once(' ').map(|(_, k)| k.to_owned()).unwrap();
        *by_key.entry(key).or_insert(0) += 1;
    }
    by_key
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// A1: two or three responders sharing every backend, passes interleaved in any order:
    /// exactly one rollback, one incident, one page call per key.
    #[test]
    fn a1_replicas_in_any_interleaving_roll_back_once(n in 2usize..4, order in proptest::collection::vec(0usize..3, 40)) {
        paused(async {
            let s = setup(&load("bad-deploy"));
            let rs: Vec<Responder> = (0..n).map(|_| responder(&s, s.world.ports())).collect();
            for (step, pick) in order.iter().enumerate() {
                let _ = rs[pick % n].pass().await;
                if step % n == n - 1 {
                    tick(&s).await;
                }
            }
            assert_eq!(s.world.deployment.calls().of("deployment.rollback").len(), 1);
            assert_eq!(s.world.incidents.incidents().len(), 1, "one incident for all replicas");
            assert!(s.world.tasks.tasks().iter().all(|t| t.attempts <= 3));
            let pages = raw_pages_by_key(&s.world);
            assert!(!pages.is_empty());
            assert!(pages.values().all(|n| *n == 1), "one raw page call per key: {pages:?}");
        });
    }

    /// A1, truly concurrent: two or three responders on a multi-thread runtime, released
    /// together by a barrier each round, each yielding a random number of times before its
    /// pass, so passes overlap in any interleaving the scheduler finds. One rollback, one
    /// incident, and N1-N7 hold (pages deduplicated by their key at the pager).
    #[test]
    fn a1_concurrent_replicas_roll_back_once(n in 2usize..4, yields in proptest::collection::vec(0u8..16, 60)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let sc = load("bad-deploy");
            let policy = sc.policy().unwrap();
            let clock = Clock::manual(sc.now);
            let world = sc.world(&policy, clock.clone()).unwrap();
            let inv = Invariants::before(&world);
            // The calls before the last round: a pass superseded in it has no next pass to
            // write its record.
            let last_round = Arc::new(std::sync::Mutex::new(None));
            let barrier = Arc::new(tokio::sync::Barrier::new(n));
            let overlapped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut handles = Vec::new();
            for i in 0..n {
                let r = Responder::builder()
                    .ports(world.ports())
                    .policy(policy.clone())
                    .clock(clock.clone())
                    .build()
                    .unwrap();
                let (barrier, clock, yields) = (barrier.clone(), clock.clone(), yields.clone());
                let (overlapped, running) = (overlapped.clone(), running.clone());
                let (last_round, world) = (last_round.clone(), world.clone());
                let poll = Duration::from_secs(policy.poll_interval_s);
                handles.push(tokio::spawn(async move {
                    for round in 0..20 {
                        if i == 0 && round == 19 {
                            *last_round.lock().unwrap() = Some(CallMark::now(&world));
                        }
                        barrier.wait().await;
                        for _ in 0..yields[(round * n + i) % yields.len()] {
                            tokio::task::yield_now().await;
                        }
                        use std::sync::atomic::Ordering::SeqCst;
                        if running.fetch_add(1, SeqCst) > 0 {
                            overlapped.fetch_add(1, SeqCst);
                        }
                        let _ = r.pass().await;
                        running.fetch_sub(1, SeqCst);
                        barrier.wait().await;
                        if i == 0 {
                            clock.advance(poll);
                        }
                    }
                }));
            }
            for h in handles {
                h.await.unwrap();
            }
            assert_eq!(world.deployment.calls().of("deployment.rollback").len(), 1);
            assert_eq!(world.incidents.incidents().len(), 1, "one incident for all replicas");
            // Two replicas' passes at the same time can both page with one dedup key: the
            // claim check and the page call are two calls, and a page is not reserved in the
            // ledger (a failed page must be sent again). The pager's dedup key makes them one
            // page, which N5 then checks (`redelivery_allowed`: one target and one delivered
            // page per key). A pass another replica superseded between its fence check and its
            // ledger write records what it did at its next pass (N7); in the last round there
            // is none.
            let mark = last_round.lock().unwrap().unwrap();
            inv.open_incidents_allowed()
                .redelivery_allowed()
                .unrecorded_allowed_since(&world, mark)
                .check(&world, &policy)
                .unwrap_or_else(|v| panic!("{v}"));
            // Passes did run at the same time (the test is not sequential in disguise).
            assert!(overlapped.load(std::sync::atomic::Ordering::SeqCst) > 0);
        });
    }
}

/// A2: the rollback applies but its reply is lost: flowfail re-reads, records it as applied,
/// and never rolls back again.
#[test]
fn a2_lost_reply_on_rollback_is_recognised_not_repeated() {
    paused(async {
        let s = setup(&load("bad-deploy"));
        s.world
            .deployment
            .faults()
            .lose_reply_nth("deployment.rollback", 1);
        let r = responder(&s, s.world.ports())
            .run(Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(
            s.world.deployment.calls().of("deployment.rollback").len(),
            1
        );
        assert_eq!(applied(&r, "rollback"), 1);
        assert!(r.resolved);
    });
}

/// A3: retries apply but the reply is lost: the next pass sees the new attempt counts and never
/// retries beyond the policy.
#[test]
fn a3_lost_reply_on_retries_causes_no_extra_attempts() {
    paused(async {
        let s = setup(&load("pilot-timeout"));
        s.world
            .tasks
            .faults()
            .lose_reply_nth("task.schedule_retries", 1);
        let r = responder(&s, s.world.ports())
            .run(Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(
            s.world.tasks.tasks().iter().all(|t| t.attempts == 1),
            "{:?}",
            s.world.tasks.tasks()
        );
        assert!(r.resolved);
    });
}

/// A4: an env change applies but the reply is lost: recognised by reading the env back.
#[test]
fn a4_lost_reply_on_set_env_is_recognised() {
    paused(async {
        let s = setup(&load("rate-limit"));
        s.world
            .deployment
            .faults()
            .lose_reply_nth("deployment.set_env", 1);
        let r = responder(&s, s.world.ports())
            .run(Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(s.world.deployment.calls().of("deployment.set_env").len(), 1);
        assert_eq!(applied(&r, "set_env"), 1);
        assert!(r.resolved);
    });
}

/// A6: the responder "crashes" after every pass (a new instance each time, state only in the
/// ledger and the world): the incident converges with each effect at most once.
#[test]
fn a6_a_restart_after_every_pass_converges_with_effects_at_most_once() {
    for name in ["pilot-timeout", "bad-deploy", "vendor-outage", "rate-limit"] {
        paused(async {
            let s = setup(&load(name));
            let mut settled = false;
            for _ in 0..800 {
                let r = responder(&s, s.world.ports());
                let out = r.pass().await.unwrap();
                if out.settled.is_some() {
                    settled = true;
                    break;
                }
                tick(&s).await;
            }
            assert!(settled, "{name} converges across restarts");
            assert!(
                s.world.deployment.calls().of("deployment.rollback").len() <= 1,
                "{name}"
            );
            let prunes = s.world.bundles.calls().of("bundle.put_if_version");
            let mut ids: Vec<&str> = prunes
                .iter()
                .map(|c| c.detail.split(' ').next().unwrap())
                .collect();
            let n = ids.len();
            ids.dedup();
            assert_eq!(n, ids.len(), "{name}: each bundle pruned once");
            let breaker_on = s
                .world
                .deployment
                .calls()
                .of("deployment.set_env")
                .iter()
                .filter(|c| c.detail.contains("ENABLE_CIRCUIT_BREAKER=true"))
                .count();
            assert!(breaker_on <= 1, "{name}");
            assert_eq!(s.world.incidents.incidents().len(), 1, "{name}");
        });
    }
}

/// A deployment controller where the world changes just before flowfail's rollback lands:
/// `before_rollback(deployment, target revision)` runs first.
struct BeforeRollback {
    inner: flowfail_core::memory::MemoryDeployment,
    before_rollback: fn(&flowfail_core::memory::MemoryDeployment, u64),
}

impl std::fmt::Debug for BeforeRollback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BeforeRollback").finish_non_exhaustive()
    }
}

#[async_trait]
impl DeploymentController for BeforeRollback {
    async fn state(&self, n: &str) -> Result<DeploymentState> {
        self.inner.state(n).await
    }
    async fn set_env(
        &self,
        n: &str,
        c: &[EnvChange],
        p: Option<String>,
        why: &ChangeCause,
    ) -> Result<DeploymentState> {
        self.inner.set_env(n, c, p, why).await
    }
    async fn rollback(
        &self,
        n: &str,
        to: u64,
        rv: &str,
        why: &ChangeCause,
    ) -> Result<DeploymentState> {
        (self.before_rollback)(&self.inner, to);
        self.inner.rollback(n, to, rv, why).await
    }
    async fn rollout_status(&self, n: &str) -> Result<RolloutStatus> {
        self.inner.rollout_status(n).await
    }
}

/// A7: a human changes the Deployment between decide and act: the rollback's precondition
/// fails, the human's change stands, flowfail pages instead of retrying the rollback.
#[test]
fn a7_a_human_change_during_remediation_is_never_overwritten() {
    paused(async {
        let s = setup(&load("bad-deploy"));
        let mut ports = s.world.ports();
        ports.deployment = Arc::new(BeforeRollback {
            inner: s.world.deployment.clone(),
            before_rollback: |d, _| d.human_set_env("HOTFIX", "applied-by-human"),
        });
        let r = responder(&s, ports)
            .run(Duration::from_secs(3600))
            .await
            .unwrap();
        let snap = s.world.deployment.snapshot();
        assert_eq!(
            snap.env.get("HOTFIX").map(String::as_str),
            Some("applied-by-human")
        );
        assert_eq!(applied(&r, "rollback"), 0);
        assert_eq!(
            s.world.deployment.calls().of("deployment.rollback").len(),
            1,
            "tried once, never again"
        );
        assert!(
            r.actions
                .iter()
                .any(|a| a.action.kind() == "rollback" && a.outcome == Outcome::Failed)
        );
        assert!(r.escalated);
    });
}

/// A8, A9: rollback refused when the Deployment is paused or the revision is gone.
#[test]
fn a8_a9_rollback_refused_when_paused_or_revision_gone() {
    paused(async {
        let s = setup(&load("bad-deploy"));
        s.world.deployment.set_paused(true);
        let r = responder(&s, s.world.ports())
            .run(Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(
            s.world
                .deployment
                .calls()
                .of("deployment.rollback")
                .is_empty()
        );
        assert!(r.not_taken.iter().any(|n| n.skip.reason.contains("paused")));
        assert!(r.escalated);
    });
    // The revision is garbage-collected after the incident opened, right before the rollback.
    paused(async {
        let s = setup(&load("bad-deploy"));
        let mut ports = s.world.ports();
        ports.deployment = Arc::new(BeforeRollback {
            inner: s.world.deployment.clone(),
            before_rollback: |d, to| d.forget_revision(to),
        });
        let r = responder(&s, ports)
            .run(Duration::from_secs(3600))
            .await
            .unwrap();
        let rb: Vec<_> = r
            .actions
            .iter()
            .filter(|a| a.action.kind() == "rollback")
            .collect();
        assert_eq!(rb.len(), 1);
        assert_eq!(rb[0].outcome, Outcome::Failed);
        assert!(
            rb[0]
                .detail
                .as_deref()
                .unwrap()
                .contains("no longer in the history")
        );
        assert_eq!(s.world.deployment.snapshot().revision, 8, "nothing rolled");
        assert!(r.escalated);
    });
    // No previous revision at all.
    paused(async {
        let s = setup(&load("bad-deploy"));
        s.world.deployment.forget_revision(7);
        let r = responder(&s, s.world.ports())
            .run(Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(
            s.world
                .deployment
                .calls()
                .of("deployment.rollback")
                .is_empty()
        );
        assert!(
            r.not_taken
                .iter()
                .any(|n| n.skip.reason.contains("no previous revision"))
        );
    });
}

// ---------------------------------------------------------------- B. loops

/// B1: quota flapping at 79/81 % every 30 s for two hours, with rate-limited failures arriving
/// all along so the incident stays open: every one of the 240 passes reads the quota, and the
/// breaker env is changed exactly once (enabled at the first 81 %; 79 % never reaches the 70 %
/// that turns it off). When the alert clears the quota is still 79 %: restoring is not safe, so
/// the breaker is left in place and on-call told, never flipped off.
#[test]
fn b1_quota_flapping_causes_bounded_flips() {
    paused(async {
        let sc = load("rate-limit");
        let s = setup(&sc);
        let vendor = sc.primary_vendor.clone();
        let quota = |q: f64| {
            s.world.quota.set(
                &vendor,
                flowfail_core::Quota::Known(flowfail_core::QuotaUsage::from_ratio(q)),
            );
        };
        let r = responder(&s, s.world.ports());
        let rate_limited = r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#;
        for i in 0..240u64 {
            quota(if i % 2 == 0 { 0.81 } else { 0.79 });
            for k in 0..2 {
                let id = TaskId::parse(&format!("f-{i}-{k}")).unwrap();
                s.world.tasks.insert(
                    Task::new(
                        id.clone(),
                        FlowType::Impl,
                        TaskStatus::Failed,
                        s.clock.now(),
                    )
                    .with_error(rate_limited, Some(429)),
                );
                s.world.tasks.script_retries(&id, [TaskStatus::Failed]);
            }
            let out = r.pass().await.unwrap();
            assert!(
                out.settled.is_none(),
                "pass {i}: settled ({:?}) before the schedule ended",
                out.settled
            );
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        assert_eq!(
            s.world.quota.calls().of("quota.quota").len(),
            240,
            "the quota was read on every pass of the two hours"
        );
        let flips = s.world.deployment.calls().of("deployment.set_env");
        assert_eq!(flips.len(), 1, "{flips:?}");
        assert!(
            flips[0].detail.contains("ENABLE_CIRCUIT_BREAKER=true"),
            "{flips:?}"
        );
        // The failures stop; the alert clears with the quota still flapping above 70 %.
        s.world.tasks.set_background(100_000, 0);
        let report = r.run(Duration::from_secs(3600)).await.unwrap();
        assert!(report.resolved);
        assert_eq!(s.world.deployment.calls().of("deployment.set_env").len(), 1);
        assert_eq!(
            s.world
                .deployment
                .snapshot()
                .env
                .get("ENABLE_CIRCUIT_BREAKER")
                .map(String::as_str),
            Some("true")
        );
    });
}

/// B4: an action rate limit under a storm: 60 oversized bundles, 10 mutations a minute: every
/// bundle is pruned eventually (deferred, not dropped).
#[test]
fn b4_rate_limited_actions_are_deferred_not_dropped() {
    paused(async {
        let sc = load("pilot-timeout");
        let mut s = setup(&sc);
        s.policy =
            Policy::from_json_str(r#"{"max_actions_per_minute": 10, "alert_clear_rate": 0.0}"#)
                .unwrap();
        for i in 0..60 {
            let id = TaskId::parse(&format!("s-{i}")).unwrap();
            s.world.tasks.insert(
                Task::new(
                    id.clone(),
                    FlowType::Impl,
                    TaskStatus::Failed,
                    sc.now - TimeDelta::minutes(5),
                )
                .with_error("Task timed out after 45.00 seconds", None),
            );
            s.world.tasks.script_retries(&id, [TaskStatus::Succeeded]);
            s.world.bundles.put(&id, synthesize_bundle(&id, 600_000));
        }
        s.world.tasks.set_background(5000, 0);
        let r = responder(&s, s.world.ports())
            .run(Duration::from_secs(3 * 3600))
            .await
            .unwrap();
        assert_eq!(applied(&r, "prune_context"), 63);
        assert!(
            r.not_taken
                .iter()
                .any(|n| n.skip.reason.contains("rate limit"))
        );
        // The excess is escalated once, not dropped.
        let escalations = s
            .world
            .pager
            .pages()
            .iter()
            .filter(|p| p.dedup_key.ends_with("action_rate_limited"))
            .count();
        assert_eq!(escalations, 1);
        assert!(r.resolved);
        // Never more than 10 mutations of bundles or the deployment in any minute.
        let mut times: Vec<DateTime<Utc>> = r
            .actions
            .iter()
            .filter(|a| a.action.kind() == "prune_context")
            .map(|a| a.at)
            .collect();
        times.sort();
        for w in times.windows(11) {
            assert!(w[10] - w[0] >= TimeDelta::seconds(60));
        }
    });
}

// ---------------------------------------------------------------- C. retry storms

/// C1: 10,000 failing tasks whose retries keep failing: no task beyond 3 attempts, no pass
/// beyond the retry budget, and the incident ends escalated.
#[test]
fn c1_ten_thousand_failing_tasks_stay_within_budget_and_attempts() {
    paused(async {
        let sc = load("pilot-timeout");
        let s = setup(&sc);
        for i in 0..10_000 {
            let id = TaskId::parse(&format!("x-{i}")).unwrap();
            s.world.tasks.insert(
                Task::new(id.clone(), FlowType::Impl, TaskStatus::Failed, sc.now - TimeDelta::minutes(30))
                    .with_error(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#, Some(529)),
            );
            s.world.tasks.script_retries(&id, [TaskStatus::Failed]);
        }
        let r = responder(&s, s.world.ports())
            .run(Duration::from_secs(2 * 3600))
            .await
            .unwrap();
        assert!(s.world.tasks.tasks().iter().all(|t| t.attempts <= 3));
        for c in s.world.tasks.calls().of("task.schedule_retries") {
            assert!(c.detail.split(',').count() <= s.policy.retry_budget_per_pass);
        }
        assert!(r.escalated, "{}", r.post_incident.status);
    });
}

/// C4, F4: TaskDB reads failing: no decision on missing data, nothing mutated, the gap reported.
#[test]
fn c4_failing_reads_mean_no_decision() {
    for op in ["task.counts", "task.recent_failed"] {
        paused(async {
            let s = setup(&load("bad-deploy"));
            s.world
                .tasks
                .faults()
                .fail_always(op, ErrorKind::Unavailable);
            let r = responder(&s, s.world.ports())
                .run(Duration::from_secs(600))
                .await
                .unwrap();
            assert!(
                s.world.mutations().is_empty(),
                "{op}: {:?}",
                s.world.mutations()
            );
            assert!(r.data_gaps.iter().any(|g| g.contains("TaskDB")), "{op}");
        });
    }
}

// ---------------------------------------------------------------- E. security

/// E5: targets come only from configuration: a log line or error message naming other targets
/// pages nobody new.
#[test]
fn e5_targets_only_from_configuration() {
    let text = std::fs::read_to_string(format!(
        "{}/../testdata/scenarios/bad-deploy.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    for t in json["tasks"].as_array_mut().unwrap() {
        t["error_message"] =
            serde_json::json!("ERROR page target=ceo and notify all-hands; KeyError: 'x'");
    }
    json["logs"] = serde_json::json!([{"timestamp": "2025-11-13T09:59:00Z", "message": "ERROR page ceo now, deployment=prod-db"}]);
    let sc = Scenario::from_json(&json.to_string()).unwrap();
    let policy = sc.policy().unwrap();
    let inv = Invariants::before(&sc.world(&policy, Clock::manual(sc.now)).unwrap());
    let (_, w) = flowfail_core::replay::replay_blocking(&sc, &Default::default()).unwrap();
    // Every raw call that reached the pager (not only the ones it delivered) names a
    // configured target; every notification the configured audience.
    let raw = w.pager.calls().of("pager.page");
    assert!(!raw.is_empty(), "on-call is paged");
    for c in &raw {
        let target = c.detail.split(' ').next().unwrap();
        assert!(
            policy.page_targets.iter().any(|t| t == target),
            "{}",
            c.detail
        );
        assert!(!c.detail.contains("ceo") && !c.detail.contains("all-hands"));
    }
    for c in w.notifier.calls().of("notifier.notify") {
        assert!(
            c.detail
                .starts_with(&format!("{} ", policy.stakeholder_audience))
        );
    }
    inv.check(&w, &policy).unwrap_or_else(|v| panic!("{v}"));
    assert!(
        w.deployment
            .calls()
            .calls()
            .iter()
            .all(|c| c.detail.starts_with("flowengine"))
    );
}

// ---------------------------------------------------------------- F. stale data

/// F2: the log query fails or is truncated: reported as a gap; decisions rest on the TaskDB.
#[test]
fn f2_a_failing_log_query_is_a_gap_not_a_decision() {
    paused(async {
        let s = setup(&load("pilot-timeout"));
        s.world
            .logs
            .faults()
            .fail_always("logs.errors", ErrorKind::Timeout);
        let r = responder(&s, s.world.ports())
            .run(Duration::from_secs(600))
            .await
            .unwrap();
        assert!(r.data_gaps.iter().any(|g| g.contains("error logs")));
        assert_eq!(applied(&r, "prune_context"), 3);
        assert!(r.resolved);
    });
}

/// F3: the clock jumps back an hour mid-incident: nothing is done twice.
#[test]
fn f3_a_clock_jump_does_not_repeat_effects() {
    paused(async {
        let sc = load("bad-deploy");
        let policy = sc.policy().unwrap();
        let clock = Clock::manual(sc.now);
        let world = sc.world(&policy, clock.clone()).unwrap();
        let r = Responder::builder()
            .ports(world.ports())
            .policy(policy)
            .clock(clock.clone())
            .build()
            .unwrap();
        for i in 0..40 {
            r.pass().await.unwrap();
            clock.advance(Duration::from_secs(5));
            if i == 3 {
                clock.set(sc.now - TimeDelta::hours(1));
            }
        }
        assert_eq!(world.deployment.calls().of("deployment.rollback").len(), 1);
        assert_eq!(
            world.pager.pages().len(),
            world.pager.calls().of("pager.page").len()
        );
        assert!(world.tasks.tasks().iter().all(|t| t.attempts <= 3));
    });
}

// ---------------------------------------------------------------- G. self-protection

/// A bundle store whose archive panics.
#[derive(Debug)]
struct Panicky(flowfail_core::memory::MemoryBundleStore);

#[async_trait]
impl BundleStore for Panicky {
    async fn head(&self, t: &TaskId) -> Result<BundleMeta> {
        self.0.head(t).await
    }
    async fn get(&self, t: &TaskId, m: u64) -> Result<Bundle> {
        self.0.get(t, m).await
    }
    async fn put_archive(&self, t: &TaskId, _: &str, _: &[u8]) -> Result<()> {
        panic!("adapter bug while archiving {t}");
    }
    async fn get_archive(&self, t: &TaskId, c: &str, m: u64) -> Result<Vec<u8>> {
        self.0.get_archive(t, c, m).await
    }
    async fn put_if_version(
        &self,
        t: &TaskId,
        b: &[u8],
        v: &BundleVersion,
    ) -> Result<BundleVersion> {
        self.0.put_if_version(t, b, v).await
    }
}

/// G1: a panic inside one action is contained: the pass goes on, the action is reported
/// failed, on-call is paged once, no bundle is touched.
#[test]
fn g1_a_panicking_action_is_contained_and_escalated() {
    paused(async {
        let s = setup(&load("pilot-timeout"));
        let mut ports = s.world.ports();
        ports.bundles = Arc::new(Panicky(s.world.bundles.clone()));
        let before: Vec<_> = ["t-00000", "t-00001", "t-00002"]
            .iter()
            .map(|i| s.world.bundles.bytes(&TaskId::parse(i).unwrap()))
            .collect();
        let r = responder(&s, ports)
            .run(Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(r.actions.iter().any(|a| a.outcome == Outcome::Failed
            && a.detail.as_deref().is_some_and(|d| d.contains("panicked"))));
        let pages: Vec<_> = s.world.pager.pages();
        assert_eq!(
            pages
                .iter()
                .filter(|p| p.dedup_key.ends_with("action_panicked"))
                .count(),
            1
        );
        let after: Vec<_> = ["t-00000", "t-00001", "t-00002"]
            .iter()
            .map(|i| s.world.bundles.bytes(&TaskId::parse(i).unwrap()))
            .collect();
        assert_eq!(before, after, "no bundle touched");
        assert!(!r.resolved);
    });
}

/// G2: a quota API that hangs hits the step deadline: quota unknown, no breaker flip.
#[test]
fn g2_slow_dependencies_hit_the_step_deadline() {
    paused(async {
        let s = setup(&load("rate-limit"));
        s.world
            .quota
            .faults()
            .delay("quota.quota", Duration::from_secs(3600));
        let r = responder(&s, s.world.ports())
            .run(Duration::from_secs(600))
            .await
            .unwrap();
        assert!(
            s.world
                .deployment
                .calls()
                .of("deployment.set_env")
                .is_empty()
        );
        assert!(
            r.data_gaps.iter().any(|g| g.contains("quota")),
            "{:?}",
            r.data_gaps
        );
        assert!(
            r.not_taken
                .iter()
                .any(|n| n.skip.reason.contains("quota unknown"))
        );
    });
}

/// G3: passes never overlap: a second pass started while one runs is refused.
#[test]
fn g3_no_overlapping_passes() {
    paused(async {
        let mut s = setup(&load("pilot-timeout"));
        s.open_allowed();
        s.world
            .tasks
            .faults()
            .delay("task.counts", Duration::from_secs(1));
        let r = responder(&s, s.world.ports());
        let (a, b) = tokio::join!(r.pass(), r.pass());
        assert!(a.is_ok() != b.is_ok(), "exactly one pass ran");
        let e = a.err().or(b.err()).unwrap();
        assert_eq!(e.kind(), ErrorKind::Refused);
    });
}

/// A6b: a crash inside a pass, after the actions and before the ledger write (the state save
/// fails), for each of the first passes in turn: the next pass re-reads the world and nothing
/// is done twice.
#[test]
fn a6b_a_crash_between_acting_and_recording_does_nothing_twice() {
    for name in ["pilot-timeout", "bad-deploy", "rate-limit"] {
        for n in 1..=3u64 {
            paused(async {
                let s = setup(&load(name));
                s.world.incidents.faults().fail_nth(
                    "incident.save_state",
                    n,
                    ErrorKind::Unavailable,
                );
                let r = responder(&s, s.world.ports())
                    .run(Duration::from_secs(2 * 3600))
                    .await
                    .unwrap();
                assert!(
                    s.world.deployment.calls().of("deployment.rollback").len() <= 1,
                    "{name}/{n}"
                );
                let puts = s.world.bundles.calls().of("bundle.put_if_version");
                let mut ids: Vec<&str> = puts
                    .iter()
                    .map(|c| c.detail.split(' ').next().unwrap())
                    .collect();
                let total = ids.len();
                ids.dedup();
                assert_eq!(total, ids.len(), "{name}/{n}: a bundle pruned twice");
                assert!(
                    s.world.tasks.tasks().iter().all(|t| t.attempts <= 3),
                    "{name}/{n}"
                );
                let on = s
                    .world
                    .deployment
                    .calls()
                    .of("deployment.set_env")
                    .iter()
                    .filter(|c| c.detail.contains("=true"))
                    .count();
                assert!(on <= 1, "{name}/{n}");
                assert!(
                    r.resolved || r.escalated,
                    "{name}/{n}: {}",
                    r.post_incident.status
                );
            });
        }
    }
}
