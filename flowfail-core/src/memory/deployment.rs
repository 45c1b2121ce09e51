//! In-memory [`DeploymentController`](crate::ports::DeploymentController).

use super::*;

/// A revision's pod template, reduced to what flowfail touches: the main container's env.
type Template = BTreeMap<String, String>;

#[derive(Debug)]
struct DeployDb {
    state: DeploymentState,
    /// revision -> template, including the current one.
    templates: BTreeMap<u64, Template>,
    rv: u64,
    /// Status polls left before the current rollout completes.
    rollout_polls_left: u32,
    rollout_polls: u32,
    /// The next rollout fails (`ProgressDeadlineExceeded`).
    fail_next: bool,
    /// The current rollout failed.
    rollout_failing: bool,
}

/// In-memory [`DeploymentController`] for one Deployment, behaving as Kubernetes does: an env
/// change creates a new revision; a rollback re-deploys an old revision's template under the
/// next revision number; every write bumps the resourceVersion; a rollout completes after a
/// configurable number of status polls. Each mutation's change cause is kept with its call
/// ([`Call::cause`]).
#[derive(Debug, Clone)]
pub struct MemoryDeployment {
    db: Arc<Mutex<DeployDb>>,
    clock: Clock,
    faults: Faults,
    log: CallLog,
}

impl MemoryDeployment {
    /// A Deployment at `revision`, deployed at `deployed_at`, with `env`, and older revisions
    /// (each with the same env) available for rollback.
    pub fn new(
        name: &str,
        revision: u64,
        deployed_at: Option<Timestamp>,
        env: BTreeMap<String, String>,
        history: Vec<RevisionInfo>,
        clock: Clock,
    ) -> Self {
        let mut templates = BTreeMap::new();
        for h in &history {
            templates.insert(h.revision, env.clone());
        }
        templates.insert(revision, env.clone());
        let state = DeploymentState {
            name: name.to_owned(),
            revision,
            deployed_at,
            resource_version: "1".into(),
            env,
            paused: false,
            history,
            gitops: None,
        };
        MemoryDeployment {
            db: Arc::new(Mutex::new(DeployDb {
                state,
                templates,
                rv: 1,
                rollout_polls_left: 0,
                rollout_polls: 1,
                fail_next: false,
                rollout_failing: false,
            })),
            clock,
            faults: Faults::default(),
            log: CallLog::default(),
        }
    }
    common_accessors!();

    /// A snapshot of the state.
    pub fn snapshot(&self) -> DeploymentState {
        lock(&self.db).state.clone()
    }

    /// Pauses or resumes rollouts (a human's `kubectl rollout pause`).
    pub fn set_paused(&self, paused: bool) {
        let mut db = lock(&self.db);
        db.state.paused = paused;
        bump(&mut db);
    }

    /// The GitOps controller that owns the Deployment (its labels, as the adapter reads them).
    pub fn set_gitops(&self, owner: Option<crate::model::GitOpsOwner>) {
        let mut db = lock(&self.db);
        db.state.gitops = owner;
        bump(&mut db);
    }

    /// A human edits the env outside flowfail (bumps the resourceVersion, new revision).
    pub fn human_set_env(&self, name: &str, value: &str) {
        let now = self.clock.now();
        let mut db = lock(&self.db);
        let mut env = db.state.env.clone();
        env.insert(name.to_owned(), value.to_owned());
        new_revision(&mut db, env, now);
    }

    /// A human (or a GitOps controller putting Git's template back) removes an env var
    /// outside flowfail (bumps the resourceVersion, new revision).
    pub fn human_unset_env(&self, name: &str) {
        let now = self.clock.now();
        let mut db = lock(&self.db);
        let mut env = db.state.env.clone();
        env.remove(name);
        new_revision(&mut db, env, now);
    }

    /// A new revision is deployed (a human's `kubectl apply`): the current one joins the history.
    pub fn deploy(&self, revision: u64, at: Timestamp) {
        let mut db = lock(&self.db);
        let env = db.state.env.clone();
        let old = db.state.revision;
        let old_at = db.state.deployed_at;
        db.state.history.push(RevisionInfo::new(old, old_at));
        db.templates.insert(revision, env);
        db.state.revision = revision;
        db.state.deployed_at = Some(at);
        db.rollout_polls_left = db.rollout_polls;
        bump(&mut db);
    }

    /// How many status polls a rollout takes before it completes (default 1).
    pub fn set_rollout_polls(&self, polls: u32) {
        lock(&self.db).rollout_polls = polls;
    }

    /// Makes the next rollout fail with `ProgressDeadlineExceeded`.
    pub fn fail_next_rollout(&self) {
        lock(&self.db).fail_next = true;
    }

    /// Removes a revision from the history (its ReplicaSet was garbage-collected).
    pub fn forget_revision(&self, revision: u64) {
        let mut db = lock(&self.db);
        db.templates.remove(&revision);
        db.state.history.retain(|h| h.revision != revision);
    }
}

fn bump(db: &mut DeployDb) {
    db.rv += 1;
    db.state.resource_version = db.rv.to_string();
}

fn new_revision(db: &mut DeployDb, env: BTreeMap<String, String>, now: Timestamp) {
    let old = db.state.revision;
    let next = db.templates.keys().max().copied().unwrap_or(old) + 1;
    db.state
        .history
        .push(RevisionInfo::new(old, db.state.deployed_at));
    db.templates.insert(next, env.clone());
    db.state.revision = next;
    db.state.deployed_at = Some(now);
    db.state.env = env;
    db.rollout_polls_left = db.rollout_polls;
    db.rollout_failing = std::mem::take(&mut db.fail_next);
    bump(db);
}

#[async_trait]
impl DeploymentController for MemoryDeployment {
    async fn state(&self, name: &str) -> Result<DeploymentState> {
        let t = enter(&self.log, &self.faults, "deployment.state", false, || {
            name.to_owned()
        })
        .await?;
        let s = {
            let db = lock(&self.db);
            if db.state.name != name {
                return Err(not_found(
                    "deployment.state",
                    format!("deployment {name:?}"),
                ));
            }
            db.state.clone()
        };
        t.finish("deployment.state", s)
    }

    async fn set_env(
        &self,
        name: &str,
        changes: &[EnvChange],
        precondition: Option<String>,
        cause: &ChangeCause,
    ) -> Result<DeploymentState> {
        let t = enter_caused(
            &self.log,
            &self.faults,
            "deployment.set_env",
            true,
            Some(cause.clone()),
            || {
                let c: Vec<String> = changes
                    .iter()
                    .map(|c| match &c.value {
                        Some(v) => format!("{}={v}", c.name),
                        None => format!("{}-", c.name),
                    })
                    .collect();
                format!("{name} {} if rv={precondition:?}", c.join(" "))
            },
        )
        .await?;
        let now = self.clock.now();
        let s = {
            let mut db = lock(&self.db);
            if db.state.name != name {
                return Err(not_found(
                    "deployment.set_env",
                    format!("deployment {name:?}"),
                ));
            }
            if let Some(rv) = &precondition
                && *rv != db.state.resource_version
            {
                return Err(Error::conflict(format!(
                    "deployment {name} is at resourceVersion {}, not {rv}",
                    db.state.resource_version
                ))
                .with_operation("deployment.set_env")
                .with_backend(BACKEND));
            }
            let mut env = db.state.env.clone();
            for c in changes {
                match &c.value {
                    Some(v) => {
                        env.insert(c.name.clone(), v.clone());
                    }
                    None => {
                        env.remove(&c.name);
                    }
                }
            }
            if env != db.state.env {
                new_revision(&mut db, env, now);
            }
            db.state.clone()
        };
        t.finish("deployment.set_env", s)
    }

    async fn rollback(
        &self,
        name: &str,
        to_revision: u64,
        expected_resource_version: &str,
        cause: &ChangeCause,
    ) -> Result<DeploymentState> {
        let t = enter_caused(
            &self.log,
            &self.faults,
            "deployment.rollback",
            true,
            Some(cause.clone()),
            || format!("{name} to {to_revision} if rv={expected_resource_version}"),
        )
        .await?;
        let now = self.clock.now();
        let s = {
            let mut db = lock(&self.db);
            let err = |kind: ErrorKind, msg: String| {
                Error::new(kind, msg)
                    .with_operation("deployment.rollback")
                    .with_backend(BACKEND)
            };
            if db.state.name != name {
                return Err(not_found(
                    "deployment.rollback",
                    format!("deployment {name:?}"),
                ));
            }
            if db.state.resource_version != expected_resource_version {
                return Err(err(
                    ErrorKind::Conflict,
                    format!(
                        "deployment {name} is at resourceVersion {}, not {expected_resource_version}",
                        db.state.resource_version
                    ),
                ));
            }
            if db.state.paused {
                return Err(err(
                    ErrorKind::Refused,
                    format!("deployment {name} is paused"),
                ));
            }
            if to_revision == db.state.revision {
                return Err(err(
                    ErrorKind::Refused,
                    format!("revision {to_revision} is already the current revision"),
                ));
            }
            let Some(tpl) = db.templates.get(&to_revision).cloned() else {
                return Err(err(
                    ErrorKind::Refused,
                    format!("revision {to_revision} is no longer in the history"),
                ));
            };
            // Kubernetes re-labels the old ReplicaSet with the next revision number.
            db.templates.remove(&to_revision);
            db.state.history.retain(|h| h.revision != to_revision);
            new_revision(&mut db, tpl, now);
            db.state.clone()
        };
        t.finish("deployment.rollback", s)
    }

    async fn rollout_status(&self, name: &str) -> Result<RolloutStatus> {
        let t = enter(
            &self.log,
            &self.faults,
            "deployment.rollout_status",
            false,
            || name.to_owned(),
        )
        .await?;
        let s = {
            let mut db = lock(&self.db);
            if db.state.name != name {
                return Err(not_found(
                    "deployment.rollout_status",
                    format!("deployment {name:?}"),
                ));
            }
            if db.rollout_polls_left > 0 {
                db.rollout_polls_left -= 1;
                RolloutStatus::Progressing {
                    message: "Waiting for deployment rollout to finish: 1 old replicas are pending termination".into(),
                }
            } else if db.rollout_failing {
                RolloutStatus::Failed {
                    message: format!("deployment {name:?} exceeded its progress deadline"),
                }
            } else {
                RolloutStatus::Complete
            }
        };
        t.finish("deployment.rollout_status", s)
    }
}
