//! A. Double action: replicas in any interleaving, lost replies, restarts and crashes between
//! acting and recording, a human's change between decide and act, refused rollbacks. The
//! property tests' regression seeds are in
//! `tests/proptest-regressions/reliability/double_action.txt`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flowfail_core::invariants::{CallMark, Invariants};
use flowfail_core::memory::World;
use flowfail_core::report::Outcome;
use flowfail_core::respond::Responder;
use flowfail_core::{
    ChangeCause, Clock, DeploymentController, DeploymentState, EnvChange, ErrorKind, Result,
    RolloutStatus,
};
use proptest::prelude::*;

use super::{applied, responder, setup, tick};
use crate::support::{load, paused};

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
            // page; N5 then checks one target per key (`redelivery_allowed`: these passes
            // cannot be declared one by one). A pass another replica superseded between its fence check and its
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
            let mut s = setup(&load(name));
            let mut settled = false;
            for _ in 0..800 {
                let r = responder(&s, s.world.ports());
                let out = r.pass().await.unwrap();
                s.report(&r.report());
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
