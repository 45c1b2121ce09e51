//! Issue 17 #6: the claim epoch fences every mutation of the world, not only ledger writes. A
//! replica whose claim another replica superseded sets no env var, retries nothing, prunes
//! nothing and pages nobody.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use flowfail_core::memory::{MemoryIncidentStore, World};
use flowfail_core::ports::{Epoch, IncidentRecord, IncidentStore, TimelineEntry};
use flowfail_core::respond::Responder;
use flowfail_core::{Clock, Policy, Result, Timestamp};

use crate::support::{load, paused, world_mutations};

/// A ledger that, right after its first `claim` returns, lets another responder run a whole pass
/// on the same ledger: the claim of the responder using this store is superseded before it acts.
struct Overtaken {
    inner: MemoryIncidentStore,
    other: Arc<Responder>,
    world: World,
    /// The world's mutations right after the other responder's pass (set once).
    after_other: Arc<Mutex<Option<usize>>>,
}

impl std::fmt::Debug for Overtaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overtaken").finish_non_exhaustive()
    }
}

use flowfail_core::control::{Approval, Pause};

#[async_trait]
impl IncidentStore for Overtaken {
    async fn open(
        &self,
        scope: &str,
        key: &str,
        at: Timestamp,
        state: &serde_json::Value,
    ) -> Result<(IncidentRecord, bool)> {
        self.inner.open(scope, key, at, state).await
    }
    async fn find_open(&self, scope: &str) -> Result<Option<IncidentRecord>> {
        self.inner.find_open(scope).await
    }
    async fn latest_closed(&self, scope: &str) -> Result<Option<IncidentRecord>> {
        self.inner.latest_closed(scope).await
    }
    async fn claim(&self, key: &str) -> Result<Epoch> {
        let mine = self.inner.claim(key).await?;
        let first = self.after_other.lock().unwrap().is_none();
        if first {
            let out = self.other.pass().await.unwrap();
            assert!(out.incident_open);
            *self.after_other.lock().unwrap() = Some(world_mutations(&self.world).len());
        }
        Ok(mine)
    }
    async fn get(&self, key: &str) -> Result<IncidentRecord> {
        self.inner.get(key).await
    }
    async fn save_state(&self, key: &str, epoch: Epoch, state: &serde_json::Value) -> Result<()> {
        self.inner.save_state(key, epoch, state).await
    }
    async fn reserve_effect(&self, key: &str, epoch: Epoch, effect: &str) -> Result<bool> {
        self.inner.reserve_effect(key, epoch, effect).await
    }
    async fn check_epoch(&self, key: &str, epoch: Epoch) -> Result<()> {
        self.inner.check_epoch(key, epoch).await
    }
    async fn append(&self, key: &str, epoch: Epoch, entries: &[TimelineEntry]) -> Result<()> {
        self.inner.append(key, epoch, entries).await
    }
    async fn close(
        &self,
        key: &str,
        epoch: Epoch,
        at: Timestamp,
        post: &serde_json::Value,
    ) -> Result<()> {
        self.inner.close(key, epoch, at, post).await
    }
    async fn set_pause(&self, scope: &str, pause: Option<&Pause>) -> Result<()> {
        self.inner.set_pause(scope, pause).await
    }
    async fn pause_flag(&self, scope: &str) -> Result<Option<Pause>> {
        self.inner.pause_flag(scope).await
    }
    async fn add_approval(&self, key: &str, approval: &Approval) -> Result<()> {
        self.inner.add_approval(key, approval).await
    }
    async fn approvals(&self, key: &str) -> Result<Vec<Approval>> {
        self.inner.approvals(key).await
    }
}

fn responder(policy: &Policy, clock: &Clock, ports: flowfail_core::ports::Ports) -> Responder {
    Responder::builder()
        .ports(ports)
        .policy(policy.clone())
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// Two responders on one ledger: A claims, B claims after it and acts; A, now stale, makes no
/// raw call to any mutating port of the world for the rest of its pass.
#[test]
fn a_superseded_replica_mutates_nothing() {
    for name in ["pilot-timeout", "rate-limit", "bad-deploy", "vendor-outage"] {
        paused(async {
            let sc = load(name);
            let policy = sc.policy().unwrap();
            let clock = Clock::tokio_anchored(sc.now);
            let world = sc.world(&policy, clock.clone()).unwrap();
            let b = Arc::new(responder(&policy, &clock, world.ports()));
            let after_other = Arc::new(Mutex::new(None));
            let ports = world
                .ports_builder()
                .incidents(Arc::new(Overtaken {
                    inner: world.incidents.clone(),
                    other: b,
                    world: world.clone(),
                    after_other: after_other.clone(),
                }))
                .build()
                .unwrap();
            let a = responder(&policy, &clock, ports);
            let out = a.pass().await.unwrap();
            let after_b = after_other.lock().unwrap().expect("B ran inside A's claim");
            assert!(after_b > 0, "{name}: B acted in its pass");
            let all = world_mutations(&world);
            assert_eq!(
                all.len(),
                after_b,
                "{name}: the stale replica made raw mutating calls: {:?}",
                &all[after_b..]
            );
            assert!(
                out.settled.is_none(),
                "{name}: a stale pass settles nothing"
            );
            let r = a.report();
            assert!(
                r.data_gaps.iter().any(|g| g.contains("another responder")),
                "{name}: {:?}",
                r.data_gaps
            );
            // The next pass claims again and carries on (nothing is lost by stepping aside).
            tokio::time::sleep(Duration::from_secs(policy.poll_interval_s)).await;
            a.pass().await.unwrap();
        });
    }
}

/// Issue 27 #11: a responder that joined an incident another responder then closed makes no
/// call to a mutating port under the closed key — even with new failures to act on — and
/// settles as the ledger says.
#[test]
fn a_replica_stops_on_an_incident_closed_elsewhere() {
    paused(async {
        let sc = load("vendor-outage");
        let policy = sc.policy().unwrap();
        let clock = Clock::tokio_anchored(sc.now);
        let world = sc.world(&policy, clock.clone()).unwrap();
        let a = responder(&policy, &clock, world.ports());
        let b = responder(&policy, &clock, world.ports());
        let out = a.pass().await.unwrap();
        assert!(out.incident_open, "{out:?}");
        let out = b.pass().await.unwrap();
        assert!(out.incident_open, "B joined: {out:?}");
        // A settles the incident: closed in the ledger at its current epoch.
        let open = world
            .incidents
            .find_open(&policy.deployment)
            .await
            .unwrap()
            .expect("open incident");
        world
            .incidents
            .close(&open.key, open.epoch, clock.now(), &serde_json::json!({}))
            .await
            .unwrap();
        // New timeouts with large bundles: what B would prune and retry under the old key.
        let now = clock.now();
        for i in 0..3 {
            let id = flowfail_core::TaskId::parse(&format!("late-{i}")).unwrap();
            world.tasks.insert(
                flowfail_core::Task::new(
                    id.clone(),
                    flowfail_core::FlowType::Impl,
                    flowfail_core::TaskStatus::Failed,
                    now - chrono::TimeDelta::seconds(30),
                )
                .with_error("Lambda timeout after 900s", None),
            );
            world
                .bundles
                .put(&id, flowfail_core::memory::synthesize_bundle(&id, 600_000));
        }
        let before = world_mutations(&world).len();
        let incident_calls = world.incidents.calls().mutations().len();
        tokio::time::sleep(Duration::from_secs(policy.poll_interval_s)).await;
        let out = b.pass().await.unwrap();
        let after = world_mutations(&world);
        assert_eq!(
            after.len(),
            before,
            "B acted under a closed incident: {:?}",
            &after[before..]
        );
        assert_eq!(
            world.incidents.calls().mutations().len(),
            incident_calls,
            "B claimed or wrote the closed incident"
        );
        assert!(out.settled.is_some() && out.stop, "{out:?}");
        assert!(b.report().post_incident.timeline.iter().any(|l| {
            l.event
                .contains("closed in the ledger by another responder")
        }));
    });
}

/// Issue 27 #12: a shadow responder beside an acting one on the same ledger keeps its incidents
/// under a scope of its own. The acting incident carries no shadow decision and is claimed by
/// the acting responder alone; the shadow incident records only what would have been done.
#[test]
fn a_shadow_responder_never_touches_the_acting_incident() {
    paused(async {
        let sc = load("bad-deploy");
        let policy = sc.policy().unwrap();
        let clock = Clock::tokio_anchored(sc.now);
        let world = sc.world(&policy, clock.clone()).unwrap();
        let act = responder(&policy, &clock, world.ports());
        let shadow = Responder::builder()
            .ports(world.ports())
            .policy(policy.clone())
            .clock(clock.clone())
            .shadow(true)
            .build()
            .unwrap();
        assert_eq!(shadow.ledger_scope(), "flowengine:shadow");
        assert_eq!(act.ledger_scope(), "flowengine");
        let mut act_claims = 0;
        for _ in 0..30 {
            let before = world.incidents.calls().of("incident.claim").len();
            let a = act.pass().await.unwrap();
            act_claims += world.incidents.calls().of("incident.claim").len() - before;
            let _ = shadow.pass().await.unwrap();
            if a.stop {
                break;
            }
            tokio::time::sleep(Duration::from_secs(policy.poll_interval_s)).await;
        }
        let all = world.incidents.incidents();
        let acting: Vec<_> = all.iter().filter(|r| r.scope == "flowengine").collect();
        let shadowed: Vec<_> = all
            .iter()
            .filter(|r| r.scope == "flowengine:shadow")
            .collect();
        assert_eq!((acting.len(), shadowed.len(), all.len()), (1, 1, 2));
        let outcomes = |r: &IncidentRecord| -> Vec<String> {
            r.timeline
                .iter()
                .filter(|e| e.kind == "action")
                .map(|e| e.detail["outcome"].as_str().unwrap_or("").to_owned())
                .collect()
        };
        let a = outcomes(acting[0]);
        assert!(a.iter().any(|o| o == "applied"), "{a:?}");
        let mixed = a.iter().filter(|o| *o == "dry_run").count();
        assert_eq!(mixed, 0, "shadow decisions in the acting incident");
        let s = outcomes(shadowed[0]);
        assert!(!s.is_empty() && s.iter().all(|o| o == "dry_run"), "{s:?}");
        // Every claim of the acting incident is the acting responder's.
        assert_eq!(
            acting[0].epoch, act_claims as Epoch,
            "another writer claimed it"
        );
        assert_eq!(world.deployment.calls().of("deployment.rollback").len(), 1);
    });
}

/// The claim check right before a mutation fails for another reason than a newer claim (the
/// ledger does not answer): the action is recorded as failed with the reason — not taken as
/// superseded, which would leave it out of the record — and the world is not touched. Found by
/// mutation testing (`scripts/mutants.sh`): no test told the two apart.
#[test]
fn a_claim_check_the_ledger_cannot_answer_fails_the_action_and_says_why() {
    paused(async {
        let sc = load("pilot-timeout");
        let policy = sc.policy().unwrap();
        let clock = Clock::tokio_anchored(sc.now);
        let world = sc.world(&policy, clock.clone()).unwrap();
        world.incidents.faults().fail_always(
            "incident.check_epoch",
            flowfail_core::ErrorKind::Unavailable,
        );
        let r = responder(&policy, &clock, world.ports());
        r.pass().await.unwrap();
        assert!(
            world_mutations(&world).is_empty(),
            "{:?}",
            world_mutations(&world)
        );
        let report = r.report();
        let failed: Vec<_> = report
            .actions
            .iter()
            .filter(|a| {
                a.detail
                    .as_deref()
                    .is_some_and(|d| d.contains("could not confirm this pass's claim"))
            })
            .collect();
        assert!(!failed.is_empty(), "{:#?}", report.actions);
    });
}

/// A claim check the ledger fails in a way nobody expected names the step it came before, so
/// the record says which action it held back. Found by mutation testing: the wording was
/// never asserted.
#[test]
fn an_unexpected_claim_check_error_names_the_step_it_held_back() {
    paused(async {
        let sc = load("pilot-timeout");
        let policy = sc.policy().unwrap();
        let clock = Clock::tokio_anchored(sc.now);
        let world = sc.world(&policy, clock.clone()).unwrap();
        world
            .incidents
            .faults()
            .fail_always("incident.check_epoch", flowfail_core::ErrorKind::Unexpected);
        let r = responder(&policy, &clock, world.ports());
        r.pass().await.unwrap();
        assert!(world_mutations(&world).is_empty());
        let report = r.report();
        assert!(
            report.actions.iter().any(|a| a
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("the claim check before "))),
            "{:#?}",
            report.actions
        );
    });
}

/// The action rate limit is a sliding minute: the mutations made at `t` no longer count at
/// exactly `t + 60 s`. Found by mutation testing: no test reached the boundary, so a limit one
/// token stricter there passed.
#[test]
fn the_action_rate_limit_frees_its_tokens_exactly_a_minute_later() {
    paused(async {
        let sc = load("pilot-timeout");
        let mut policy = sc.policy().unwrap();
        policy.max_actions_per_minute = 2;
        let clock = Clock::manual(sc.now);
        let world = sc.world(&policy, clock.clone()).unwrap();
        let r = responder(&policy, &clock, world.ports());
        let mutations = || {
            world
                .bundles
                .calls()
                .mutations()
                .iter()
                .filter(|c| c.applied && c.op == "bundle.put_if_version")
                .count()
                + world
                    .tasks
                    .calls()
                    .mutations()
                    .iter()
                    .filter(|c| c.applied)
                    .count()
        };
        r.pass().await.unwrap();
        assert_eq!(mutations(), 2, "two tokens a minute");
        clock.advance(Duration::from_millis(59_999));
        r.pass().await.unwrap();
        assert_eq!(mutations(), 2, "still inside the minute");
        clock.advance(Duration::from_millis(1));
        r.pass().await.unwrap();
        assert_eq!(
            mutations(),
            4,
            "the first two tokens are free again at 60 s"
        );
    });
}
