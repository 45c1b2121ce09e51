//! `flowfail check-config`: one read-only probe per backend.

use chrono::{TimeDelta, Utc};

use flowfail_core::{
    DeploymentController, ErrorKind, IncidentStore, LogQuery, Quota, TaskId, TaskStore,
    VendorHealth,
};

use super::wire::{Live, Probe};

fn probe(port: &str, r: std::result::Result<String, String>) -> Probe {
    let (ok, detail) = match r {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    Probe {
        port: port.to_owned(),
        ok,
        detail,
    }
}

fn chain(e: &flowfail_core::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    flowfail_core::model::sanitize(&s, 400)
}

impl Live {
    /// Probes every backend read-only: nothing is written, paged or changed.
    pub async fn check(&self) -> Vec<Probe> {
        let mut out = self.check_own().await;
        out.extend(self.check_shared().await);
        out
    }

    /// The probes of what is this Deployment's own: its tasks (and their filter), its ledger
    /// scope, its log group, its bundles, the Deployment itself.
    pub(crate) async fn check_own(&self) -> Vec<Probe> {
        let c = &self.config;
        let now = Utc::now();
        let hour = now - TimeDelta::hours(1);
        let mut out = Vec::new();
        out.push(probe(
            "postgres.tasks",
            match self.tasks.counts(hour, now).await {
                Ok(n) => Ok(format!(
                    "tasks table readable: {} succeeded, {} failed in the last hour",
                    n.succeeded, n.failed
                )),
                Err(e) => Err(chain(&e)),
            },
        ));
        out.push(probe(
            "postgres.columns",
            match self.tasks.check_columns().await {
                Ok(p) if p.is_empty() => {
                    Ok("every configured column present, of a type flowfail reads".into())
                }
                Ok(p) => Err(p.join("; ")),
                Err(e) => Err(chain(&e)),
            },
        ));
        out.push(probe(
            "postgres.values",
            match self.tasks.check_values(now - TimeDelta::days(1)).await {
                Ok(p) if p.is_empty() => Ok(
                    "every status and flow type of the last day's tasks is one flowfail reads"
                        .into(),
                ),
                Ok(p) => Err(p.join("; ")),
                Err(e) => Err(chain(&e)),
            },
        ));
        out.push(probe(
            "postgres.ledger",
            match self.ledger.find_open(&c.kubernetes.scope()).await {
                Ok(Some(r)) => Ok(format!("ledger readable; incident {} is open", r.key)),
                Ok(None) => Ok("ledger readable; no open incident".into()),
                Err(e)
                    if e.kind() == ErrorKind::NotFound || chain(&e).contains("does not exist") =>
                {
                    Ok("ledger not created yet: `flowfail run` creates it".into())
                }
                Err(e) => Err(chain(&e)),
            },
        ));
        let q = LogQuery::errors(now - TimeDelta::minutes(5), now).max_events(1);
        out.push(probe(
            "aws.logs",
            match self.ports.logs.errors(&q).await {
                Ok(_) => Ok(format!("log group {} readable", c.aws.log_group)),
                Err(e) => Err(chain(&e)),
            },
        ));
        out.push(self.probe_bucket().await);
        out.extend(self.probe_deployment().await);
        out
    }

    /// The probes of what every Deployment of a config shares: schemas, vendors, pager,
    /// notifier, tracker.
    pub(crate) async fn check_shared(&self) -> Vec<Probe> {
        let c = &self.config;
        let mut out = Vec::new();
        let known: Vec<String> = self
            .schemas
            .1
            .iter()
            .map(|(v, from)| format!("v{v} ({from})"))
            .collect();
        out.push(probe(
            "schemas",
            Ok(format!(
                "TaskObject schema versions known: {}",
                known.join(", ")
            )),
        ));
        out.extend(self.probe_vendors().await);
        out.push(probe(
            "pager",
            Ok(format!(
                "routing keys for {} (not probed: a probe would page)",
                c.pager
                    .routing_keys
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ));
        out.push(probe(
            "notifier",
            Ok(if c.notifier.is_some() {
                "webhook configured (not probed: a probe would post)".into()
            } else {
                "none configured: stakeholder notifications will be refused and reported".into()
            }),
        ));
        if let Some(t) = &c.tracker {
            out.push(probe("tracker", Self::probe_tracker(t).await));
        }
        out
    }

    /// The tracker answers a lookup (read-only: a key no incident has).
    async fn probe_tracker(
        t: &super::tracker::TrackerConfig,
    ) -> std::result::Result<String, String> {
        let tracker = t.build().map_err(|e| chain(&e))?;
        match tracker.find("flowfail check-config").await {
            Ok(_) => Ok(format!(
                "{:?} issues readable (filed when an incident {})",
                t.kind,
                match t.file_when {
                    flowfail_core::tracking::FileWhen::Close => "closes",
                    _ => "opens",
                }
            )),
            Err(e) => Err(format!("issues not readable: {}", chain(&e))),
        }
    }

    async fn probe_bucket(&self) -> Probe {
        // A key no bundle has: "not found" proves the bucket answers reads.
        let id = TaskId::parse("flowfail-check-config-probe").unwrap_or_else(|_| unreachable!());
        probe(
            "aws.bundles",
            match self.ports.bundles.head(&id).await {
                Ok(_) => Ok(format!("bucket {} readable", self.config.aws.bucket)),
                Err(e)
                    if e.kind() == ErrorKind::NotFound && !chain(&e).contains("NoSuchBucket") =>
                {
                    Ok(format!("bucket {} readable", self.config.aws.bucket))
                }
                Err(e) => Err(chain(&e)),
            },
        )
    }

    async fn probe_deployment(&self) -> Vec<Probe> {
        let name = &self.config.kubernetes.deployment;
        let state = match self.deployment.state(name).await {
            Ok(s) => s,
            Err(e) => return vec![probe("kubernetes", Err(chain(&e)))],
        };
        let patch = self.deployment.check_patchable(name).await;
        vec![probe(
            "kubernetes",
            match patch {
                Ok(()) => Ok(format!(
                    "deployment {name} gettable (revision {}) and patchable (server-side dry run){}",
                    state.revision,
                    state.gitops.as_ref().map_or(String::new(), |o| format!(
                        "; owned by {}: its sync reverts flowfail's env changes (recorded and paged as such) and would undo a rollback (refused): make lasting changes in Git",
                        o.describe()
                    ))
                )),
                Err(e) => Err(format!(
                    "deployment {name} gettable but not patchable: {}",
                    chain(&e)
                )),
            },
        )]
    }

    async fn probe_vendors(&self) -> Vec<Probe> {
        let mut out = Vec::new();
        for (name, v) in &self.config.vendors.vendors {
            if v.status_url.is_some() {
                // Read directly, not through the port (which turns any error into "unknown"),
                // so a FAIL line says why on the line itself.
                let r = match self.status.read(name).await {
                    Ok(s) if s.health == VendorHealth::Unknown => {
                        Err("status page unreadable: no health on it".to_owned())
                    }
                    Ok(s) => Ok(format!("status page readable: {:?}", s.health)),
                    Err(e) => Err(format!("status page unreadable: {}", chain(&e))),
                };
                out.push(probe(&format!("status.{name}"), r));
            }
            let r = match self.ports.quota.quota(name).await {
                Ok(Quota::Known(u)) => {
                    Ok(format!("quota readable: {:.1}% used", u.used_ratio * 100.0))
                }
                Ok(Quota::Unknown { reason }) if v.quota == super::config::QuotaSource::None => {
                    Ok(format!("not read ({reason})"))
                }
                Ok(Quota::Unknown { reason }) => Err(format!("quota unreadable: {reason}")),
                Ok(_) => Err("quota in an unknown shape".into()),
                Err(e) => Err(chain(&e)),
            };
            out.push(probe(&format!("quota.{name}"), r));
        }
        out
    }
}
