//! Backtest: what flowfail would have done over a period of real history, before anyone turns
//! it on.
//!
//! The pieces are pure; the caller brings the history:
//!
//! 1. [`Scan`] takes every finished task of the period in time order (its finish time and
//!    whether it failed), rebuilds the failure rate the supervisor would have read at each
//!    poll — the alert window counted exactly as the TaskDB query counts it, `[poll - window,
//!    poll)` — and opens and closes the incidents it would have opened, with the alert's
//!    hysteresis and minimum sample. Its memory is one entry per second of the alert window,
//!    whatever the period's length.
//! 2. For each [`IncidentSpan`], [`History`] gathers what the world held when it opened (the
//!    failed tasks of the window, bundle sizes, the Deployment's revisions, log events), and
//!    [`History::scenario`] writes it as a scenario in the replay format, so the responder is
//!    replayed on it in virtual time ([`crate::replay`]) and the incident can be kept as a
//!    regression test. What history cannot tell (quota, status pages at the time) is a gap —
//!    unreadable in the scenario — unless an [`Assumptions`] value supplies it.
//! 3. [`BacktestReport`] puts the replays together: each incident with its actions and their
//!    reasons, what was not done and why, and a summary.
//!
//! ```
//! use chrono::{TimeDelta, TimeZone, Utc};
//! use flowfail_core::backtest::Scan;
//! use flowfail_core::Policy;
//!
//! let from = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
//! let to = from + TimeDelta::days(1);
//! let mut scan = Scan::new(&Policy::default(), from, to);
//! // A quiet day with one bad hour at noon: 20 % of the tasks fail.
//! for s in (0..86_400).step_by(10) {
//!     let at = from + TimeDelta::seconds(s);
//!     let bad = (43_200..46_800).contains(&s) && s % 50 == 0;
//!     scan.record(at, bad);
//! }
//! let spans = scan.finish();
//! assert_eq!(spans.len(), 1);
//! assert!(spans[0].opened_at > from + TimeDelta::hours(12));
//! assert!(spans[0].peak_rate > 0.1);
//! ```

mod report;
mod scenario;

use std::collections::VecDeque;

use chrono::TimeDelta;
use serde::Serialize;

use crate::detect::{AlertState, alert_from_counts};
use crate::model::Timestamp;
use crate::policy::Policy;

pub use report::{BacktestIncident, BacktestReport, BacktestSummary};
pub use scenario::{Assumptions, DeploymentAt, History, MAX_REPLAY};

/// The window counts at one poll of an incident, kept once a minute: the scenario's volume
/// over virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Sample {
    /// The poll.
    pub at: Timestamp,
    /// Tasks succeeded in the window before it.
    pub succeeded: u64,
    /// Tasks failed in the window before it.
    pub failed: u64,
}

/// An incident the supervisor would have opened: from the first poll whose alert fired to the
/// first whose alert cleared.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct IncidentSpan {
    /// The poll that opened it.
    pub opened_at: Timestamp,
    /// The poll whose alert cleared (`None`: still firing at the period's end).
    pub closed_at: Option<Timestamp>,
    /// The alert at the opening poll.
    pub alert: AlertState,
    /// The highest failure rate of its polls.
    pub peak_rate: f64,
    /// When the failures stopped: the last failure of the last minute, while it was open, whose
    /// own failure rate was above the alert's clear rate (a baseline of failures does not
    /// stretch it to the clearing poll).
    pub last_failure_at: Option<Timestamp>,
    /// The window once a minute while it was open, and for [`TAIL`] after it cleared (what a
    /// replay's last half hour sees).
    pub samples: Vec<Sample>,
}

/// How often an open incident's window is sampled.
const SAMPLE_EVERY: TimeDelta = TimeDelta::minutes(1);

/// How long a closed incident's window is still sampled: a replay runs on past the clear.
pub const TAIL: TimeDelta = TimeDelta::minutes(30);

/// The live window reaches past its poll by a millisecond (`alert_window_at`).
const PAST_POLL: TimeDelta = TimeDelta::milliseconds(1);

/// One minute's outcomes, for when a burst ended.
#[derive(Debug, Default)]
struct Minute {
    index: i64,
    succeeded: u64,
    failed: u64,
    last_failure: Option<Timestamp>,
}

/// The supervisor's polls over a period, on the tasks' outcomes in time order. See the
/// [module docs](self).
#[derive(Debug)]
pub struct Scan {
    policy: Policy,
    window: TimeDelta,
    poll: TimeDelta,
    to: Timestamp,
    /// The next poll to evaluate.
    next_poll: Timestamp,
    /// Outcomes in the window: (second, succeeded, failed), oldest first.
    seconds: VecDeque<(i64, u64, u64)>,
    succeeded: u64,
    failed: u64,
    firing: bool,
    open: Option<IncidentSpan>,
    spans: Vec<IncidentSpan>,
    /// The latest time recorded (outcomes must come in time order).
    latest: Option<Timestamp>,
    out_of_order: u64,
    /// The minute being counted.
    minute: Minute,
    /// The last closed span still sampled, and until when.
    tail: Option<(usize, Timestamp)>,
}

impl Scan {
    /// A scan of the polls in `[from, to]` (both cut to whole seconds), with `policy`'s alert,
    /// window and poll interval. Outcomes from `from - alert_window_s` on count in the first
    /// polls' windows.
    pub fn new(policy: &Policy, from: Timestamp, to: Timestamp) -> Self {
        let whole = |t: Timestamp| chrono::DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t);
        let (from, to) = (whole(from), whole(to));
        let poll = TimeDelta::seconds(i64::try_from(policy.poll_interval_s.max(1)).unwrap_or(5));
        Scan {
            window: TimeDelta::seconds(i64::try_from(policy.alert_window_s.max(1)).unwrap_or(3600)),
            policy: policy.clone(),
            poll,
            to,
            next_poll: from,
            seconds: VecDeque::new(),
            succeeded: 0,
            failed: 0,
            firing: false,
            open: None,
            spans: Vec::new(),
            latest: None,
            out_of_order: 0,
            minute: Minute::default(),
            tail: None,
        }
    }

    /// Where the history must start for the first poll's window to be whole.
    pub fn history_from(&self) -> Timestamp {
        self.next_poll - self.window
    }

    /// One finished task: when it finished, and whether it failed. Outcomes must come in time
    /// order; one earlier than the last is counted in [`Scan::out_of_order`] and left out.
    pub fn record(&mut self, at: Timestamp, failed: bool) {
        self.record_many(at, u64::from(!failed), u64::from(failed));
    }

    /// `succeeded` and `failed` tasks finished at `at`.
    pub fn record_many(&mut self, at: Timestamp, succeeded: u64, failed: u64) {
        if self.latest.is_some_and(|l| at < l) {
            self.out_of_order += succeeded + failed;
            return;
        }
        self.latest = Some(at);
        // Every poll sees the window up to a millisecond past it, as the TaskDB count does
        // (`[poll - window, poll + 1 ms)`): a poll is evaluated once an outcome comes later.
        while self.next_poll + PAST_POLL <= at && self.next_poll <= self.to {
            self.evaluate();
        }
        let m = at.timestamp().div_euclid(60);
        if m != self.minute.index {
            self.end_minute();
            self.minute = Minute {
                index: m,
                ..Minute::default()
            };
        }
        self.minute.succeeded += succeeded;
        self.minute.failed += failed;
        if failed > 0 {
            self.minute.last_failure = Some(at);
        }
        let s = at.timestamp();
        match self.seconds.back_mut() {
            Some(last) if last.0 == s => {
                last.1 += succeeded;
                last.2 += failed;
            }
            _ => self.seconds.push_back((s, succeeded, failed)),
        }
        self.succeeded += succeeded;
        self.failed += failed;
    }

    /// Outcomes left out because they came earlier than one already recorded.
    pub fn out_of_order(&self) -> u64 {
        self.out_of_order
    }

    /// How far the scan is through its period, 0–1 (for a progress bar).
    pub fn progress(&self, from: Timestamp) -> f64 {
        let total = (self.to - from).num_seconds().max(1) as f64;
        ((self.next_poll - from).num_seconds() as f64 / total).clamp(0.0, 1.0)
    }

    /// A minute is over: while an incident is open, a minute whose own failure rate is above
    /// the clear rate moves when its failures stopped.
    fn end_minute(&mut self) {
        let m = &self.minute;
        let n = m.succeeded + m.failed;
        let bursting = m.failed > 0 && m.failed as f64 / n as f64 > self.policy.alert_clear_rate;
        if bursting && let Some(open) = &mut self.open {
            open.last_failure_at = m.last_failure;
        }
    }

    /// The polls left to the period's end, and the incidents, oldest first.
    pub fn finish(mut self) -> Vec<IncidentSpan> {
        while self.next_poll <= self.to {
            self.evaluate();
        }
        self.spans.extend(self.open.take());
        self.spans
    }

    /// The poll at `next_poll`: the window slid to it, the alert read with hysteresis.
    fn evaluate(&mut self) {
        let now = self.next_poll;
        let oldest = (now - self.window).timestamp();
        while let Some(&(s, ok, bad)) = self.seconds.front() {
            if s >= oldest {
                break;
            }
            self.seconds.pop_front();
            self.succeeded -= ok;
            self.failed -= bad;
        }
        let alert = alert_from_counts(self.succeeded, self.failed, self.firing, &self.policy);
        match (&mut self.open, alert.firing) {
            (None, true) => {
                self.tail = None;
                self.open = Some(IncidentSpan {
                    opened_at: now,
                    closed_at: None,
                    alert,
                    peak_rate: alert.failure_rate,
                    last_failure_at: None,
                    samples: vec![self.sample(now)],
                });
            }
            (Some(open), true) => {
                open.peak_rate = open.peak_rate.max(alert.failure_rate);
                if open
                    .samples
                    .last()
                    .is_none_or(|s| now - s.at >= SAMPLE_EVERY)
                {
                    let s = Sample {
                        at: now,
                        succeeded: self.succeeded,
                        failed: self.failed,
                    };
                    open.samples.push(s);
                }
            }
            (Some(_), false) => {
                // The minute in progress counts for when the failures stopped.
                self.end_minute();
                let closing = self.sample(now);
                if let Some(mut open) = self.open.take() {
                    open.closed_at = Some(now);
                    open.samples.push(closing);
                    self.spans.push(open);
                    self.tail = Some((self.spans.len() - 1, now + TAIL));
                }
            }
            (None, false) => self.sample_tail(now),
        }
        self.firing = alert.firing;
        self.next_poll = now + self.poll;
    }

    /// The window once a minute for a while after an incident closed.
    fn sample_tail(&mut self, now: Timestamp) {
        let Some((i, until)) = self.tail else {
            return;
        };
        if now > until {
            self.tail = None;
            return;
        }
        let s = self.sample(now);
        if let Some(span) = self.spans.get_mut(i)
            && span
                .samples
                .last()
                .is_none_or(|l| now - l.at >= SAMPLE_EVERY)
        {
            span.samples.push(s);
        }
    }

    fn sample(&self, at: Timestamp) -> Sample {
        Sample {
            at,
            succeeded: self.succeeded,
            failed: self.failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn t0() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
    }

    /// The plain count: every outcome kept, the window counted at each poll.
    fn naive(
        policy: &Policy,
        from: Timestamp,
        to: Timestamp,
        outcomes: &[(i64, bool)],
    ) -> Vec<(Timestamp, bool)> {
        let mut out = Vec::new();
        let mut firing = false;
        let mut p = from;
        while p <= to {
            let lo = p - TimeDelta::seconds(policy.alert_window_s as i64);
            let (mut ok, mut bad) = (0, 0);
            for (s, f) in outcomes {
                let at = t0() + TimeDelta::milliseconds(*s);
                if at >= lo && at < p + TimeDelta::milliseconds(1) {
                    if *f {
                        bad += 1;
                    } else {
                        ok += 1;
                    }
                }
            }
            let a = alert_from_counts(ok, bad, firing, policy);
            if a.firing != firing {
                out.push((p, a.firing));
            }
            firing = a.firing;
            p += TimeDelta::seconds(policy.poll_interval_s as i64);
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The scan opens and closes incidents at exactly the polls where the plain count's
        /// alert changes.
        #[test]
        fn spans_are_where_the_plain_count_changes(
            raw in proptest::collection::vec(
                (0i64..4000, prop_oneof![Just(0i64), Just(1i64), 0i64..1000], proptest::bool::weighted(0.1)),
                0..400,
            ),
        ) {
            // Milliseconds: on a poll's second, a millisecond past it, anywhere in it.
            let mut outcomes: Vec<(i64, bool)> =
                raw.iter().map(|(s, ms, f)| (s * 1000 + ms, *f)).collect();
            outcomes.sort_by_key(|o| o.0);
            let policy = Policy {
                alert_window_s: 600,
                poll_interval_s: 7,
                min_sample: 10,
                alert_failure_rate: 0.1,
                alert_clear_rate: 0.05,
                ..Policy::default()
            };
            let (from, to) = (t0() + TimeDelta::seconds(300), t0() + TimeDelta::seconds(4200));
            let mut scan = Scan::new(&policy, from, to);
            // Times in milliseconds: outcomes at a poll's instant and just past it.
            for (s, f) in &outcomes {
                scan.record(t0() + TimeDelta::milliseconds(*s), *f);
            }
            let mut got = Vec::new();
            for span in scan.finish() {
                got.push((span.opened_at, true));
                if let Some(c) = span.closed_at {
                    got.push((c, false));
                }
            }
            prop_assert_eq!(got, naive(&policy, from, to, &outcomes));
        }
    }

    #[test]
    fn outcomes_out_of_order_are_counted_and_left_out() {
        let mut scan = Scan::new(&Policy::default(), t0(), t0() + TimeDelta::hours(1));
        scan.record(t0() + TimeDelta::seconds(10), false);
        scan.record(t0() + TimeDelta::seconds(5), true);
        assert_eq!(scan.out_of_order(), 1);
        assert!(scan.finish().is_empty());
    }
}
