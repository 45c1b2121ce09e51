//! The circuit breaker flowfail keeps for rate-limited retries, driven by an injected clock.
//!
//! When quota use crosses the policy threshold flowfail enables FlowEngine's breaker
//! (`ENABLE_CIRCUIT_BREAKER=true`) and opens its own: no rate-limited task is retried while it is
//! open. After `half_open_after_s` it goes half-open and admits **one** probe retry; the probe
//! succeeding closes it (the remaining tasks are retried), the probe failing opens it again for
//! another period.

use serde::{Deserialize, Serialize};

use crate::model::{TaskId, Timestamp};

/// Breaker state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Breaker {
    /// Retries flow.
    #[default]
    Closed,
    /// No retries until `until`.
    Open {
        /// When it opened.
        since: Timestamp,
        /// When it goes half-open.
        until: Timestamp,
    },
    /// One probe admitted.
    HalfOpen {
        /// The probe task, once chosen.
        probe: Option<TaskId>,
    },
}

/// What the breaker allows now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Admission {
    /// Retry everything due.
    All,
    /// Retry only this one task (the probe).
    Probe,
    /// Retry nothing; the probe (if any) is still out.
    None {
        /// Why.
        reason: String,
        /// When to look again, if known.
        until: Option<Timestamp>,
    },
}

impl Breaker {
    /// Opens the breaker at `now` for `period_s`.
    pub fn open(now: Timestamp, period_s: u64) -> Self {
        Breaker::Open {
            since: now,
            until: now + chrono::TimeDelta::seconds(period_s as i64),
        }
    }

    /// Advances time: an open breaker past its period goes half-open.
    pub fn tick(&mut self, now: Timestamp) {
        if let Breaker::Open { until, .. } = self
            && now >= *until
        {
            *self = Breaker::HalfOpen { probe: None };
        }
    }

    /// What may be retried now.
    pub fn admission(&self) -> Admission {
        match self {
            Breaker::Closed => Admission::All,
            Breaker::Open { until, .. } => Admission::None {
                reason: format!("circuit breaker open until {until} (half-open wait)"),
                until: Some(*until),
            },
            Breaker::HalfOpen { probe: None } => Admission::Probe,
            Breaker::HalfOpen { probe: Some(p) } => Admission::None {
                reason: format!("circuit breaker half-open: waiting for probe {p}"),
                until: None,
            },
        }
    }

    /// Records the probe chosen.
    pub fn probe_sent(&mut self, task: TaskId) {
        if let Breaker::HalfOpen { probe } = self {
            *probe = Some(task);
        }
    }

    /// Records the probe's outcome: success closes, failure re-opens for another period.
    pub fn probe_result(&mut self, succeeded: bool, now: Timestamp, period_s: u64) {
        if let Breaker::HalfOpen { probe: Some(_) } = self {
            *self = if succeeded {
                Breaker::Closed
            } else {
                Breaker::open(now, period_s)
            };
        }
    }

    /// The probe in flight, if any.
    pub fn probe(&self) -> Option<&TaskId> {
        match self {
            Breaker::HalfOpen { probe } => probe.as_ref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn opens_half_opens_admits_one_probe_and_closes_or_reopens() {
        let t0 = chrono::DateTime::UNIX_EPOCH;
        let mut b = Breaker::open(t0, 60);
        assert!(matches!(b.admission(), Admission::None { .. }));
        b.tick(t0 + TimeDelta::seconds(59));
        assert!(matches!(b.admission(), Admission::None { .. }));
        b.tick(t0 + TimeDelta::seconds(60));
        assert_eq!(b.admission(), Admission::Probe);
        b.probe_sent(TaskId::parse("t-1").unwrap());
        assert!(
            matches!(b.admission(), Admission::None { .. }),
            "only one probe"
        );
        b.probe_result(false, t0 + TimeDelta::seconds(65), 60);
        assert!(matches!(b, Breaker::Open { .. }));
        b.tick(t0 + TimeDelta::seconds(125));
        b.probe_sent(TaskId::parse("t-2").unwrap());
        b.probe_result(true, t0 + TimeDelta::seconds(130), 60);
        assert_eq!(b.admission(), Admission::All);
    }
}
