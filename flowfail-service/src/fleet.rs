//! Several Deployments in one process: each watched by its own supervisor under its own
//! ledger scope, over one TaskDB and ledger pool, one listener and one kill switch ([`Fleet`]).

use std::path::PathBuf;

use flowfail_core::control::Pause;
use flowfail_core::history::{IncidentLine, IncidentView};
use flowfail_core::model::describe_untrusted_pub;
use flowfail_core::ports::{IncidentQuery, IncidentStore};
use flowfail_core::{Error, Result};

use crate::config::Config;
use crate::members::pick;
use crate::serve::Control;
use crate::wire::{Controls, Live, Probe};

impl Config {
    /// The operator's controls of the Deployment whose incident `key` is, acting or shadow
    /// (read from the ledger): what `approve`, `deny` and `incident` act on when no Deployment
    /// is named. A config of one Deployment gives its own; an incident of none of this
    /// config's Deployments is [`flowfail_core::ErrorKind::NotFound`].
    pub async fn controls_for_incident(&self, key: &str) -> Result<Controls> {
        let members = self.members();
        if members.len() == 1 {
            return self.controls_of(None);
        }
        let scopes: Vec<String> = members.iter().map(|m| m.kubernetes.scope()).collect();
        let first = self.controls_of(scopes.first().map(String::as_str))?;
        let rec = first.ledger().get(key).await?;
        let own = rec
            .scope
            .strip_suffix(flowfail_core::history::SHADOW_SUFFIX)
            .unwrap_or(&rec.scope);
        match scopes.iter().find(|s| *s == own) {
            Some(s) => self.controls_of(Some(s)),
            None => Err(Error::not_found(format!(
                "no incident {} of this config's Deployments",
                describe_untrusted_pub(key)
            ))),
        }
    }

    /// Every Deployment's incidents (acting and shadow), newest first, at most `limit`.
    pub async fn incidents_of_all(
        &self,
        open_only: bool,
        since: Option<flowfail_core::Timestamp>,
        limit: usize,
    ) -> Result<Vec<IncidentLine>> {
        let members = self.members();
        let Some(first) = members.first() else {
            return Ok(Vec::new());
        };
        let controls = self.controls_of(Some(&first.kubernetes.scope()))?;
        let scopes = members.iter().flat_map(|m| {
            let s = m.kubernetes.scope();
            [
                s.clone(),
                format!("{s}{}", flowfail_core::history::SHADOW_SUFFIX),
            ]
        });
        let q = IncidentQuery::scopes(scopes)
            .open_only(open_only)
            .since(since)
            .limit(limit);
        let found = controls.ledger().list(&q).await?;
        Ok(found.iter().map(IncidentLine::of).collect())
    }

    /// Every Deployment of this config, connected lazily over one TaskDB and ledger pool and
    /// one kill switch (see [`Config::connect`]).
    pub async fn connect_fleet(&self) -> Result<Fleet> {
        let members = self.members();
        let pool = self.pg_pool(members.len())?;
        let kill = self.kill_switch();
        let mut lives = Vec::with_capacity(members.len());
        for m in members {
            let mut live = m.connect_on(pool.clone()).await?;
            live.kill = kill.clone();
            lives.push(live);
        }
        Ok(Fleet {
            members: lives,
            source: None,
        })
    }
}

/// The Deployments one process watches ([`Config::connect_fleet`]), in the config's order:
/// what [`crate::run`] runs, a supervisor each. Its [`Control`] routes each call to the
/// Deployment it names.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Fleet {
    /// One [`Live`] per Deployment, in the config's order.
    pub members: Vec<Live>,
    /// The config file, when it was loaded from one: `SIGHUP` and `POST /reload` read it again.
    pub source: Option<PathBuf>,
}

impl From<Live> for Fleet {
    fn from(live: Live) -> Self {
        let source = live.source.clone();
        Fleet {
            members: vec![live],
            source,
        }
    }
}

impl Fleet {
    /// Where [`crate::run`] reads the config again on `SIGHUP` and `POST /reload`.
    pub fn reload_from(mut self, path: impl Into<PathBuf>) -> Self {
        self.source = Some(path.into());
        self
    }

    /// The ledger scopes of the Deployments, in the config's order.
    pub fn scopes(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| m.config.kubernetes.scope())
            .collect()
    }

    /// Creates the ledger's tables (once) and carries each Deployment's former scope over (see
    /// [`crate::Controls::prepare`]).
    pub async fn prepare(&self) -> Result<()> {
        for m in &self.members {
            if m.config.name_shared {
                tracing::warn!(deployment = %m.config.kubernetes.scope(), name = %m.config.kubernetes.deployment, "several Deployments of this config have this name: what an earlier version kept under the name alone (open incident, pause) is not carried over to either");
            }
            m.prepare().await?;
        }
        Ok(())
    }

    /// The read-only probes of every Deployment (named by scope when there are several), and
    /// those of what they share, once.
    pub async fn check(&self) -> Vec<Probe> {
        let Some(first) = self.members.first() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let several = self.members.len() > 1;
        for m in &self.members {
            let scope = m.config.kubernetes.scope();
            for mut p in m.check_own().await {
                if several {
                    p.port = format!("{scope}/{}", p.port);
                }
                out.push(p);
            }
        }
        out.extend(first.check_shared().await);
        out
    }

    /// The Deployment `name` names (see [`pick`]).
    pub fn member(&self, name: Option<&str>) -> Result<&Live> {
        let configs: Vec<&Config> = self.members.iter().map(|m| &m.config).collect();
        Ok(&self.members[pick(&configs, name)?])
    }

    /// The Deployment whose incident `key` is (acting or shadow): `NotFound` when it is none of
    /// this process's.
    async fn owner(&self, key: &str) -> Result<&Live> {
        let first = self
            .members
            .first()
            .ok_or_else(|| Error::not_found("no Deployment here"))?;
        let rec = first.ledger.get(key).await?;
        self.members
            .iter()
            .find(|m| m.controls().scopes().contains(&rec.scope))
            .ok_or_else(|| {
                Error::not_found(format!(
                    "no incident {} of this process's Deployments",
                    describe_untrusted_pub(key)
                ))
            })
    }
}

#[async_trait::async_trait]
impl Control for Fleet {
    async fn ready(&self) -> Result<()> {
        for m in &self.members {
            m.ports
                .incidents
                .find_open(&m.config.kubernetes.scope())
                .await?;
        }
        Ok(())
    }
    fn deployments(&self) -> Vec<String> {
        self.scopes()
    }
    async fn pause(&self, deployment: Option<&str>, reason: &str, by: &str) -> Result<String> {
        let m = self.member(deployment)?;
        m.pause(reason, by).await?;
        Ok(m.config.kubernetes.scope())
    }
    async fn resume(&self, deployment: Option<&str>, by: &str) -> Result<String> {
        let m = self.member(deployment)?;
        m.resume(by).await?;
        Ok(m.config.kubernetes.scope())
    }
    async fn approve(&self, incident: &str, action: &str, by: &str) -> Result<String> {
        let a = self
            .owner(incident)
            .await?
            .approve(incident, action, by)
            .await?;
        Ok(format!(
            "{} of {} approved by {} at {}",
            a.action, a.incident, a.by, a.at
        ))
    }
    async fn deny(&self, incident: &str, action: &str, reason: &str, by: &str) -> Result<String> {
        let m = self.owner(incident).await?;
        let a = m.deny(incident, action, reason, by).await?;
        Ok(format!(
            "{} of {} denied by {} at {}",
            a.action, a.incident, a.by, a.at
        ))
    }
    async fn incidents(&self, open_only: bool, limit: usize) -> Result<Vec<IncidentLine>> {
        let Some(first) = self.members.first() else {
            return Ok(Vec::new());
        };
        // One query over every Deployment's scopes (they share the ledger).
        let scopes = self.members.iter().flat_map(|m| m.controls().scopes());
        let q = IncidentQuery::scopes(scopes)
            .open_only(open_only)
            .limit(limit);
        let found = first.ledger.list(&q).await?;
        Ok(found.iter().map(IncidentLine::of).collect())
    }
    async fn incident(&self, key: &str) -> Result<IncidentView> {
        self.owner(key).await?.controls().incident(key).await
    }
    async fn pauses(&self) -> Result<Vec<(String, Option<Pause>)>> {
        let mut out = Vec::with_capacity(self.members.len());
        for m in &self.members {
            out.push((m.config.kubernetes.scope(), m.paused().await?));
        }
        Ok(out)
    }
}
