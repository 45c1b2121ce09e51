//! [`ResponderBuilder`]: the responder's ports, policy, clock, rules and switches.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::{Inner, KillSwitch, Responder, control};
use crate::classify::RuleSet;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::ports::Ports;
use crate::prune::PruneOptions;
use crate::report::ReportBuilder;
use crate::schema::SchemaSet;

/// Builds a [`Responder`]. `Clone`, so a [`Supervisor`] can build a fresh responder per
/// incident from the same settings.
#[derive(Debug, Default, Clone)]
pub struct ResponderBuilder {
    ports: Option<Ports>,
    policy: Option<Policy>,
    clock: Option<Clock>,
    schemas: Option<Arc<SchemaSet>>,
    rules: Option<Arc<RuleSet>>,
    dry_run: bool,
    shadow: bool,
    kill: Option<KillSwitch>,
    name: Option<String>,
    prune_options: Option<PruneOptions>,
    woken_by: Option<String>,
    scope: Option<String>,
}

impl ResponderBuilder {
    /// The ports (required).
    pub fn ports(mut self, ports: Ports) -> Self {
        self.ports = Some(ports);
        self
    }
    /// The policy (default: the runbook's).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = Some(policy);
        self
    }
    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }
    /// The classification rules failed tasks are read with (default: the built-in ones,
    /// [`RuleSet::builtin`]). Passed in, not installed for the process: two responders in one
    /// process may classify with different rules.
    pub fn rules(mut self, rules: Arc<RuleSet>) -> Self {
        self.rules = Some(rules);
        self
    }
    /// The TaskObject schemas (default: the built-in v1 and v2).
    pub fn schemas(mut self, schemas: Arc<SchemaSet>) -> Self {
        self.schemas = Some(schemas);
        self
    }
    /// Dry run: decide and report, mutate nothing.
    pub fn dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
        self
    }
    /// Shadow mode: observe, decide, record in the ledger and report — change nothing in the
    /// world (no prune, env change, rollback, retry or page). Unlike a dry run it keeps
    /// running and keeps the ledger, so a shadow run's records can be compared with what `act`
    /// would do. A decision repeated pass after pass is recorded once. Its incidents are kept
    /// under a ledger scope of their own (`<deployment>:shadow`, see
    /// [`Responder::ledger_scope`]): a shadow process beside an acting one on the same ledger
    /// never claims, writes or closes the acting one's incident.
    pub fn shadow(mut self, on: bool) -> Self {
        self.shadow = on;
        self
    }
    /// A kill switch shared with whoever may pull it.
    pub fn kill_switch(mut self, k: KillSwitch) -> Self {
        self.kill = Some(k);
        self
    }
    /// A name for the report.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Pruning options for prune-context.
    pub fn prune_options(mut self, o: PruneOptions) -> Self {
        self.prune_options = Some(o);
        self
    }
    /// The alert that woke flowfail for the incident this responder may open (a webhook's
    /// description); recorded in the incident's state and its post-incident record. The alert
    /// is a trigger, not a verdict: the responder still opens an incident only when its own
    /// read of the failure rate fires.
    pub fn woken_by(mut self, alert: Option<String>) -> Self {
        self.woken_by = alert;
        self
    }
    /// The ledger scope its incidents, pause and approvals are kept under (default: the
    /// policy's Deployment name). A service that shares its ledger with others names the
    /// cluster and namespace in it (`prod.default.flowengine`), so two Deployments of one name
    /// never share an incident, a pause or an approval. Shadow mode appends `:shadow`.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }
    /// Builds the responder; the policy is validated.
    pub fn build(self) -> Result<Responder> {
        let ports = self
            .ports
            .ok_or_else(|| Error::invalid_input("responder needs ports"))?;
        let policy = self.policy.unwrap_or_default();
        policy.validate()?;
        let report = ReportBuilder {
            name: self.name,
            dry_run: self.dry_run,
            shadow: self.shadow,
            ..ReportBuilder::default()
        };
        let base_scope = self.scope.unwrap_or_else(|| policy.deployment.clone());
        if base_scope.trim().is_empty() || base_scope.ends_with(crate::history::SHADOW_SUFFIX) {
            return Err(Error::invalid_input(
                "the ledger scope must not be empty nor end in the shadow suffix",
            ));
        }
        let scope = if self.shadow {
            format!("{base_scope}{}", crate::history::SHADOW_SUFFIX)
        } else {
            base_scope.clone()
        };
        Ok(Responder {
            scope,
            base_scope,
            ports,
            clock: self.clock.unwrap_or_else(Clock::system),
            schemas: self
                .schemas
                .unwrap_or_else(|| Arc::new(SchemaSet::builtin())),
            rules: self.rules.unwrap_or_else(RuleSet::shared_builtin),
            dry_run: self.dry_run,
            shadow: self.shadow,
            kill: self.kill.unwrap_or_default(),
            prune_options: self.prune_options.unwrap_or_default(),
            woken_by: self.woken_by,
            inner: Mutex::new(Inner {
                incident: None,
                report,
                spent: Vec::new(),
                class_cache: HashMap::new(),
                bundle_sizes: HashMap::new(),
                shadow_seen: HashSet::new(),
                last_waiting: Vec::new(),
                pause: control::PauseState::default(),
                paused_seen: HashSet::new(),
                proposed_seen: HashSet::new(),
                unrecorded: None,
                last_decision: None,
                log_window: Default::default(),
            }),
            pass_lock: tokio::sync::Mutex::new(()),
            ledger_calls: Default::default(),
            policy,
        })
    }
}
