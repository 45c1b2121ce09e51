//! In-memory [`IncidentStore`](crate::ports::IncidentStore).

use super::*;

/// In-memory [`IncidentStore`].
#[derive(Debug, Clone, Default)]
pub struct MemoryIncidentStore {
    incidents: Arc<Mutex<BTreeMap<String, IncidentRecord>>>,
    pauses: Arc<Mutex<BTreeMap<String, Pause>>>,
    approvals: Arc<Mutex<BTreeMap<String, Vec<Approval>>>>,
    faults: Faults,
    log: CallLog,
}

impl MemoryIncidentStore {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }
    common_accessors!();
    /// Every incident.
    pub fn incidents(&self) -> Vec<IncidentRecord> {
        lock(&self.incidents).values().cloned().collect()
    }
    /// Changes an incident's record in place, past the ledger's rules (epochs, append-only
    /// timeline): for tests that fabricate or damage a record.
    pub fn edit(&self, key: &str, f: impl FnOnce(&mut IncidentRecord)) {
        if let Some(r) = lock(&self.incidents).get_mut(key) {
            f(r);
        }
    }
}

/// A closed incident is over: nothing claims it, and no pass acts or saves state under it.
fn check_open(r: &IncidentRecord, op: &'static str) -> Result<()> {
    match r.closed_at {
        Some(_) => Err(Error::conflict(format!("incident {:?} is closed", r.key))
            .with_operation(op)
            .with_backend(BACKEND)),
        None => Ok(()),
    }
}

fn check_epoch(r: &IncidentRecord, epoch: Epoch, op: &'static str) -> Result<()> {
    if epoch < r.epoch {
        Err(Error::conflict(format!(
            "stale writer: epoch {epoch} is older than the incident's epoch {}",
            r.epoch
        ))
        .with_operation(op)
        .with_backend(BACKEND))
    } else {
        Ok(())
    }
}

#[async_trait]
impl IncidentStore for MemoryIncidentStore {
    async fn open(
        &self,
        scope: &str,
        key: &str,
        opened_at: Timestamp,
        state: &serde_json::Value,
    ) -> Result<(IncidentRecord, bool)> {
        let t = enter(&self.log, &self.faults, "incident.open", true, || {
            format!("{scope} {key}")
        })
        .await?;
        let r = {
            let mut all = lock(&self.incidents);
            if let Some(r) = all.get(key) {
                (r.clone(), false)
            } else if let Some(r) = all
                .values()
                .find(|r| r.scope == scope && r.closed_at.is_none())
            {
                (r.clone(), false)
            } else {
                let r = IncidentRecord {
                    key: key.to_owned(),
                    scope: scope.to_owned(),
                    epoch: 0,
                    opened_at,
                    state: state.clone(),
                    effects: Vec::new(),
                    timeline: Vec::new(),
                    closed_at: None,
                    post_incident: None,
                };
                all.insert(key.to_owned(), r.clone());
                (r, true)
            }
        };
        t.finish("incident.open", r)
    }

    async fn find_open(&self, scope: &str) -> Result<Option<IncidentRecord>> {
        let t = enter(&self.log, &self.faults, "incident.find_open", false, || {
            scope.to_owned()
        })
        .await?;
        let r = lock(&self.incidents)
            .values()
            .find(|r| r.scope == scope && r.closed_at.is_none())
            .cloned();
        t.finish("incident.find_open", r)
    }

    async fn latest_closed(&self, scope: &str) -> Result<Option<IncidentRecord>> {
        let t = enter(
            &self.log,
            &self.faults,
            "incident.latest_closed",
            false,
            || scope.to_owned(),
        )
        .await?;
        let r = lock(&self.incidents)
            .values()
            .filter(|r| r.scope == scope)
            .filter_map(|r| r.closed_at.map(|at| (at, r)))
            .max_by(|(a, x), (b, y)| {
                a.cmp(b)
                    .then(x.opened_at.cmp(&y.opened_at))
                    .then(x.key.cmp(&y.key))
            })
            .map(|(_, r)| r.clone());
        t.finish("incident.latest_closed", r)
    }

    async fn claim(&self, key: &str) -> Result<Epoch> {
        let t = enter(&self.log, &self.faults, "incident.claim", true, || {
            key.to_owned()
        })
        .await?;
        let e = {
            let mut all = lock(&self.incidents);
            let r = all
                .get_mut(key)
                .ok_or_else(|| not_found("incident.claim", format!("incident {key:?}")))?;
            check_open(r, "incident.claim")?;
            r.epoch += 1;
            r.epoch
        };
        t.finish("incident.claim", e)
    }

    async fn get(&self, key: &str) -> Result<IncidentRecord> {
        let t = enter(&self.log, &self.faults, "incident.get", false, || {
            key.to_owned()
        })
        .await?;
        let r = lock(&self.incidents)
            .get(key)
            .cloned()
            .ok_or_else(|| not_found("incident.get", format!("incident {key:?}")))?;
        t.finish("incident.get", r)
    }

    async fn list(&self, query: &IncidentQuery) -> Result<Vec<IncidentListing>> {
        let t = enter(&self.log, &self.faults, "incident.list", false, String::new).await?;
        let mut found: Vec<IncidentListing> = lock(&self.incidents)
            .values()
            .filter(|r| query.matches(r))
            .cloned()
            .map(IncidentListing::of)
            .collect();
        found.sort_by(|a, b| {
            (b.record.opened_at, &b.record.key).cmp(&(a.record.opened_at, &a.record.key))
        });
        if query.limit > 0 {
            found.truncate(query.limit);
        }
        t.finish("incident.list", found)
    }

    async fn save_state(&self, key: &str, epoch: Epoch, state: &serde_json::Value) -> Result<()> {
        let t = enter(&self.log, &self.faults, "incident.save_state", true, || {
            format!("{key}@{epoch}")
        })
        .await?;
        {
            let mut all = lock(&self.incidents);
            let r = all
                .get_mut(key)
                .ok_or_else(|| not_found("incident.save_state", format!("incident {key:?}")))?;
            check_epoch(r, epoch, "incident.save_state")?;
            check_open(r, "incident.save_state")?;
            r.state = state.clone();
        }
        t.finish("incident.save_state", ())
    }

    async fn reserve_effect(&self, key: &str, epoch: Epoch, effect: &str) -> Result<bool> {
        let t = enter(
            &self.log,
            &self.faults,
            "incident.reserve_effect",
            true,
            || format!("{key}@{epoch} {effect}"),
        )
        .await?;
        let fresh = {
            let mut all = lock(&self.incidents);
            let r = all
                .get_mut(key)
                .ok_or_else(|| not_found("incident.reserve_effect", format!("incident {key:?}")))?;
            check_epoch(r, epoch, "incident.reserve_effect")?;
            if r.effects.iter().any(|e| e == effect) {
                false
            } else {
                r.effects.push(effect.to_owned());
                true
            }
        };
        t.finish("incident.reserve_effect", fresh)
    }

    async fn check_epoch(&self, key: &str, epoch: Epoch) -> Result<()> {
        let t = enter(
            &self.log,
            &self.faults,
            "incident.check_epoch",
            false,
            || format!("{key}@{epoch}"),
        )
        .await?;
        {
            let all = lock(&self.incidents);
            let r = all
                .get(key)
                .ok_or_else(|| not_found("incident.check_epoch", format!("incident {key:?}")))?;
            check_epoch(r, epoch, "incident.check_epoch")?;
            check_open(r, "incident.check_epoch")?;
        }
        t.finish("incident.check_epoch", ())
    }

    async fn append(&self, key: &str, epoch: Epoch, entries: &[TimelineEntry]) -> Result<()> {
        let t = enter(&self.log, &self.faults, "incident.append", true, || {
            format!("{key}@{epoch} +{}", entries.len())
        })
        .await?;
        {
            let mut all = lock(&self.incidents);
            let r = all
                .get_mut(key)
                .ok_or_else(|| not_found("incident.append", format!("incident {key:?}")))?;
            check_epoch(r, epoch, "incident.append")?;
            r.timeline.extend_from_slice(entries);
        }
        t.finish("incident.append", ())
    }

    async fn close(
        &self,
        key: &str,
        epoch: Epoch,
        closed_at: Timestamp,
        post_incident: &serde_json::Value,
    ) -> Result<()> {
        let t = enter(&self.log, &self.faults, "incident.close", true, || {
            format!("{key}@{epoch}")
        })
        .await?;
        {
            let mut all = lock(&self.incidents);
            let r = all
                .get_mut(key)
                .ok_or_else(|| not_found("incident.close", format!("incident {key:?}")))?;
            check_epoch(r, epoch, "incident.close")?;
            if r.closed_at.is_none() {
                r.closed_at = Some(closed_at);
                r.post_incident = Some(post_incident.clone());
            }
        }
        t.finish("incident.close", ())
    }

    async fn set_pause(&self, scope: &str, pause: Option<&Pause>) -> Result<()> {
        let t = enter(&self.log, &self.faults, "incident.set_pause", true, || {
            format!(
                "{scope} {}",
                if pause.is_some() { "pause" } else { "resume" }
            )
        })
        .await?;
        {
            let mut all = lock(&self.pauses);
            match pause {
                Some(p) => {
                    all.insert(scope.to_owned(), p.clone());
                }
                None => {
                    all.remove(scope);
                }
            }
        }
        t.finish("incident.set_pause", ())
    }

    async fn pause_flag(&self, scope: &str) -> Result<Option<Pause>> {
        let t = enter(
            &self.log,
            &self.faults,
            "incident.pause_flag",
            false,
            || scope.to_owned(),
        )
        .await?;
        let p = lock(&self.pauses).get(scope).cloned();
        t.finish("incident.pause_flag", p)
    }

    async fn add_approval(&self, key: &str, approval: &Approval) -> Result<()> {
        let t = enter(
            &self.log,
            &self.faults,
            "incident.add_approval",
            true,
            || format!("{key} {}", approval.action),
        )
        .await?;
        {
            let all = lock(&self.incidents);
            let r = all
                .get(key)
                .ok_or_else(|| not_found("incident.add_approval", format!("incident {key:?}")))?;
            if r.closed_at.is_some() {
                return Err(Error::refused(format!("incident {key:?} is closed"))
                    .with_operation("incident.add_approval")
                    .with_backend(BACKEND));
            }
            lock(&self.approvals)
                .entry(key.to_owned())
                .or_default()
                .push(approval.clone());
        }
        t.finish("incident.add_approval", ())
    }

    async fn approvals(&self, key: &str) -> Result<Vec<Approval>> {
        let t = enter(&self.log, &self.faults, "incident.approvals", false, || {
            key.to_owned()
        })
        .await?;
        if !lock(&self.incidents).contains_key(key) {
            return Err(not_found("incident.approvals", format!("incident {key:?}")));
        }
        let a = lock(&self.approvals).get(key).cloned().unwrap_or_default();
        t.finish("incident.approvals", a)
    }
}
