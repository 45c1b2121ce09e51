//! The world an incident of history opened in, as a replay scenario.

use std::collections::BTreeMap;

use chrono::TimeDelta;
use serde::Serialize;
use serde_json::{Value, json};

use super::{IncidentSpan, Sample};
use crate::error::{Error, Result};
use crate::model::{DeploymentState, LogEvent, RevisionInfo, Task, TaskId, Timestamp};
use crate::policy::Policy;

/// The longest stretch of an incident a replay covers (an alert firing for days is replayed over
/// its first twelve hours, and the report says so).
pub const MAX_REPLAY: TimeDelta = TimeDelta::hours(12);

/// The vendor statuses a scenario accepts.
const STATUSES: [&str; 6] = [
    "operational",
    "degraded_performance",
    "partial_outage",
    "major_outage",
    "under_maintenance",
    "unknown",
];

/// What history does not keep — quota, the vendors' status pages at the time — supplied by the
/// user (`--assume quota=0.5`, `--assume status.openai=major_outage`). Without them each is a
/// gap: unreadable in the replay, never a value that looks healthy.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Assumptions {
    /// The primary vendor's quota used, 0–1.
    pub quota: Option<f64>,
    /// Vendor → Statuspage status.
    pub vendors: BTreeMap<String, String>,
}

impl Assumptions {
    /// Adds one `KEY=VALUE`: `quota=0.5`, or `status.VENDOR=STATUS` (operational,
    /// degraded_performance, partial_outage, major_outage, under_maintenance, unknown).
    pub fn set(&mut self, kv: &str) -> Result<()> {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| Error::invalid_input(format!("{kv:?}: expected KEY=VALUE")))?;
        let (k, v) = (k.trim(), v.trim());
        if k == "quota" {
            let q: f64 = v
                .parse()
                .ok()
                .filter(|q: &f64| (0.0..=1.0).contains(q))
                .ok_or_else(|| Error::invalid_input("quota: expected a ratio from 0 to 1"))?;
            self.quota = Some(q);
            return Ok(());
        }
        if let Some(vendor) = k.strip_prefix("status.") {
            let ok_name = !vendor.is_empty()
                && vendor.len() <= 40
                && vendor.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !ok_name {
                return Err(Error::invalid_input("status.VENDOR: not a vendor name"));
            }
            if !STATUSES.contains(&v) {
                return Err(Error::invalid_input(format!(
                    "status.{vendor}: expected one of {}",
                    STATUSES.join(", ")
                )));
            }
            self.vendors.insert(vendor.to_owned(), v.to_owned());
            return Ok(());
        }
        Err(Error::invalid_input(format!(
            "{}: expected quota or status.VENDOR",
            crate::model::describe_untrusted_pub(k)
        )))
    }

    /// The assumptions in words, for the report.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(q) = self.quota {
            out.push(format!("quota used {:.0} % (assumed)", q * 100.0));
        }
        for (v, s) in &self.vendors {
            out.push(format!("{v} status page {s} (assumed)"));
        }
        out
    }
}

/// The Deployment as it stood at a time, from what the cluster keeps now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DeploymentAt {
    /// The Deployment.
    pub name: String,
    /// The revision running then.
    pub revision: u64,
    /// When it was deployed.
    pub deployed_at: Option<Timestamp>,
    /// Older revisions then available for rollback.
    pub history: Vec<RevisionInfo>,
    /// The main container's environment (as it is now: history does not keep it).
    pub env: BTreeMap<String, String>,
}

impl DeploymentAt {
    /// The Deployment at `at`, from its state now: the newest revision deployed by then, the
    /// older ones as its history. `None` when the cluster keeps no revision deployed by then
    /// (its history was garbage-collected).
    ///
    /// A revision dated before a lower-numbered one (a rollback reuses an old ReplicaSet, and
    /// its creation time) has no known deploy time here.
    pub fn at(state: &DeploymentState, at: Timestamp) -> Option<DeploymentAt> {
        let mut all: Vec<RevisionInfo> = state.history.clone();
        all.push(RevisionInfo::new(state.revision, state.deployed_at));
        all.sort_by_key(|r| r.revision);
        let mut latest: Option<Timestamp> = None;
        for r in &mut all {
            match (r.deployed_at, latest) {
                (Some(d), Some(l)) if d < l => r.deployed_at = None,
                (Some(d), _) => latest = Some(d),
                _ => {}
            }
        }
        let running = all
            .iter()
            .rev()
            .find(|r| r.deployed_at.is_some_and(|d| d <= at))?
            .clone();
        Some(DeploymentAt {
            name: state.name.clone(),
            revision: running.revision,
            deployed_at: running.deployed_at,
            history: all
                .into_iter()
                .filter(|r| r.revision < running.revision && r.deployed_at.is_none_or(|d| d <= at))
                .collect(),
            env: state.env.clone(),
        })
    }
}

/// What history holds of the world when an incident opened.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct History {
    /// The failed tasks of the alert window at the opening poll (as triage would read them).
    pub tasks: Vec<Task>,
    /// Bundle sizes of those tasks, where the objects still exist.
    pub bundles: BTreeMap<TaskId, u64>,
    /// The Deployment then (`None`: the cluster no longer keeps it).
    pub deployment: Option<DeploymentAt>,
    /// Error log events of the window.
    pub logs: Vec<LogEvent>,
    /// The vendors configured (each gets a status: assumed, or unknown).
    pub vendors: Vec<String>,
    /// What could not be read, in words.
    pub gaps: Vec<String>,
}

impl History {
    /// The scenario (the replay format, `testdata/scenarios/FORMAT.md`) of `span` on this
    /// history: the world at the opening poll, and the window's volume once a minute as events,
    /// so the replayed alert follows history's.
    pub fn scenario(
        &self,
        name: &str,
        span: &IncidentSpan,
        policy: &Policy,
        assume: &Assumptions,
    ) -> Value {
        let open = span.opened_at;
        let until = span
            .samples
            .last()
            .map(|s| s.at)
            .or(span.closed_at)
            .unwrap_or(open)
            .min(open + MAX_REPLAY);
        let max_virtual_s = (until - open).num_seconds().max(0) as u64 + 1800;
        let window = TimeDelta::seconds(i64::try_from(policy.alert_window_s).unwrap_or(3600));
        // The unlisted failures of a sample's window: its failures less the listed tasks that
        // finished in it (the replay counts those itself, by their finish time).
        let volume = |s: &Sample| {
            let listed = self
                .tasks
                .iter()
                .filter(|t| {
                    let at = t.finished_or_created();
                    at >= s.at - window && at < s.at + TimeDelta::milliseconds(1)
                })
                .count() as u64;
            json!({"succeeded": s.succeeded, "failed": s.failed.saturating_sub(listed)})
        };
        let first = span.samples.first().copied().unwrap_or(Sample {
            at: open,
            succeeded: span.alert.window_tasks.saturating_sub(span.alert.failed),
            failed: span.alert.failed,
        });
        let events: Vec<Value> = span
            .samples
            .iter()
            .filter(|s| s.at > open && s.at <= until)
            .map(|s| json!({"after_s": (s.at - open).num_seconds(), "volume": volume(s)}))
            .collect();
        let vendors: BTreeMap<&str, &str> = self
            .vendors
            .iter()
            .map(|v| {
                let s = assume.vendors.get(v).map_or("unknown", String::as_str);
                (v.as_str(), s)
            })
            .chain(assume.vendors.iter().map(|(v, s)| (v.as_str(), s.as_str())))
            .collect();
        json!({
            "name": name,
            "now": open,
            "max_virtual_s": max_virtual_s,
            "policy": policy,
            "deployment": self.deployment_json(policy),
            "tasks": self.tasks.iter().map(task_json).collect::<Vec<_>>(),
            "volume": volume(&first),
            "logs": self.logs.iter().map(|l| json!({"timestamp": l.timestamp, "message": l.message})).collect::<Vec<_>>(),
            "bundles": self.bundles.iter().map(|(id, n)| (id.to_string(), json!({"size_bytes": n}))).collect::<BTreeMap<_, _>>(),
            "quota": assume.quota.map(|q| json!({"used_ratio": q})),
            "vendors": vendors,
            "primary_vendor": policy.primary_vendor,
            "events": events,
        })
    }

    fn deployment_json(&self, policy: &Policy) -> Value {
        match &self.deployment {
            Some(d) => {
                // Only the variables the runbook reads: an exported scenario carries no other
                // value of the Deployment's (credentials, URLs).
                let read = [
                    &policy.breaker_env,
                    &policy.fallback_env,
                    &policy.manual_review_env,
                    &policy.schema_version_env,
                ];
                let env: BTreeMap<&String, &String> =
                    d.env.iter().filter(|(k, _)| read.contains(k)).collect();
                json!({
                    "name": d.name,
                    "revision": d.revision,
                    "deployed_at": d.deployed_at,
                    "env": env,
                    "history": d.history,
                })
            }
            // Not kept by the cluster: a revision with no deploy time (no rollback is proposed
            // on a deploy time nobody knows).
            None => json!({"name": policy.deployment, "revision": 1, "deployed_at": null}),
        }
    }
}

fn task_json(t: &Task) -> Value {
    json!({
        "task_id": t.task_id.to_string(),
        "flow_type": t.flow_type,
        // A task given up since is read as it is now: the replay does not retry it.
        "status": t.status,
        "finished_at": t.finished_at,
        "error_message": t.error_message,
        "http_status": t.http_status,
        "created_at": t.created_at,
        "attempts": t.attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assumptions_are_checked() {
        let mut a = Assumptions::default();
        a.set("quota=0.5").unwrap();
        a.set("status.openai = major_outage").unwrap();
        assert_eq!(a.quota, Some(0.5));
        assert_eq!(a.vendors["openai"], "major_outage");
        for bad in [
            "quota=2",
            "quota",
            "status.openai=fine",
            "status.=operational",
            "colour=blue",
            "status.a\u{1b}b=operational",
        ] {
            assert!(a.set(bad).is_err(), "{bad}");
        }
        assert_eq!(a.describe().len(), 2);
    }
}
