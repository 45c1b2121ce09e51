//! The failure-rate alert (`FlowFailureRate`: > 1 % failures over 1 h), as a streaming detector.
//!
//! The window is cut into a fixed number of time buckets, each holding a success and a failure
//! count. Recording an outcome is O(1) and touches one bucket; memory is fixed whatever the
//! volume. The window is bucket-aligned: at time `now` it covers the `buckets` buckets ending
//! with the one holding `now`.
//!
//! The alert fires when the window holds at least `min_sample` finished tasks and the failure
//! rate exceeds the firing threshold; once firing, it clears only when the rate falls to the
//! clear threshold or below (or the sample falls under `min_sample`), so a rate hovering at the
//! threshold does not flap.
//!
//! ```
//! use flowfail_core::detect::{Detector, DetectorConfig};
//! let mut d = Detector::new(DetectorConfig::default());
//! for i in 0..1000 { d.record(i, i % 50 == 0); } // 2 % failures, times in seconds
//! assert!(d.evaluate(1000).firing);
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::policy::Policy;

/// Detector settings.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct DetectorConfig {
    /// Window length in seconds.
    pub window_s: u64,
    /// Number of buckets the window is cut into (resolution = window / buckets).
    pub buckets: usize,
    /// Minimum finished tasks in the window before the alert may fire.
    pub min_sample: u64,
    /// Fire above this failure rate.
    pub fire_rate: f64,
    /// Clear at or below this failure rate.
    pub clear_rate: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self::from_policy(&Policy::default())
    }
}

impl DetectorConfig {
    /// The runbook's alert from a policy, with one-minute buckets where the window allows.
    pub fn from_policy(p: &Policy) -> Self {
        let buckets = p.alert_window_s.clamp(1, 60) as usize;
        DetectorConfig {
            window_s: p.alert_window_s,
            buckets,
            min_sample: p.min_sample,
            fire_rate: p.alert_failure_rate,
            clear_rate: p.alert_clear_rate,
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.buckets == 0
            || self.window_s == 0
            || !self.window_s.is_multiple_of(self.buckets as u64)
        {
            return Err(Error::invalid_input(
                "detector window must be a positive multiple of the bucket count",
            ));
        }
        if !(0.0..=1.0).contains(&self.fire_rate)
            || !(0.0..=1.0).contains(&self.clear_rate)
            || self.clear_rate > self.fire_rate
        {
            return Err(Error::invalid_input(
                "detector rates must be in 0..=1 with clear_rate <= fire_rate",
            ));
        }
        Ok(())
    }
}

/// The alert's state at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AlertState {
    /// Whether the alert fires.
    pub firing: bool,
    /// Failure rate in the window.
    pub failure_rate: f64,
    /// Finished tasks in the window.
    pub window_tasks: u64,
    /// Failed tasks in the window.
    pub failed: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Absolute bucket number (time / width); `u64::MAX` marks an unused bucket.
    index: u64,
    ok: u64,
    failed: u64,
}

/// Sliding-window failure-rate detector with hysteresis.
#[derive(Debug, Clone)]
pub struct Detector {
    config: DetectorConfig,
    width: u64,
    buckets: Box<[Bucket]>,
    firing: bool,
}

impl Detector {
    /// A detector. Invalid settings fall back to one bucket per window; use
    /// [`Detector::try_new`] to get an error instead.
    pub fn new(config: DetectorConfig) -> Self {
        Self::try_new(config).unwrap_or_else(|_| {
            let mut c = config;
            c.window_s = c.window_s.max(1);
            c.buckets = 1;
            c.clear_rate = c.clear_rate.min(c.fire_rate);
            Self::build(c)
        })
    }

    /// A detector, or an error for invalid settings.
    pub fn try_new(config: DetectorConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self::build(config))
    }

    fn build(config: DetectorConfig) -> Self {
        Detector {
            width: config.window_s / config.buckets as u64,
            buckets: vec![
                Bucket {
                    index: u64::MAX,
                    ok: 0,
                    failed: 0
                };
                config.buckets
            ]
            .into_boxed_slice(),
            config,
            firing: false,
        }
    }

    /// Records one finished task at `t` (seconds since any fixed epoch). Outcomes older than the
    /// bucket they would land in are dropped.
    #[inline]
    pub fn record(&mut self, t: u64, failed: bool) {
        let index = t / self.width;
        let slot = (index % self.buckets.len() as u64) as usize;
        let b = &mut self.buckets[slot];
        if b.index != index {
            if b.index != u64::MAX && b.index > index {
                return; // too old: its bucket was reused by newer time
            }
            *b = Bucket {
                index,
                ok: 0,
                failed: 0,
            };
        }
        if failed {
            b.failed += 1;
        } else {
            b.ok += 1;
        }
    }

    /// Records `ok` successes and `failed` failures at `t` at once.
    pub fn record_many(&mut self, t: u64, ok: u64, failed: u64) {
        let index = t / self.width;
        let slot = (index % self.buckets.len() as u64) as usize;
        let b = &mut self.buckets[slot];
        if b.index != index {
            if b.index != u64::MAX && b.index > index {
                return;
            }
            *b = Bucket {
                index,
                ok: 0,
                failed: 0,
            };
        }
        b.ok += ok;
        b.failed += failed;
    }

    /// Counts in the window ending at `now`: (succeeded, failed).
    pub fn window_counts(&self, now: u64) -> (u64, u64) {
        let newest = now / self.width;
        let oldest = newest.saturating_sub(self.buckets.len() as u64 - 1);
        self.buckets
            .iter()
            .filter(|b| b.index != u64::MAX && b.index >= oldest && b.index <= newest)
            .fold((0, 0), |(o, f), b| (o + b.ok, f + b.failed))
    }

    /// Evaluates the alert at `now`, updating the hysteresis state.
    pub fn evaluate(&mut self, now: u64) -> AlertState {
        let (ok, failed) = self.window_counts(now);
        let n = ok + failed;
        let rate = if n == 0 {
            0.0
        } else {
            failed as f64 / n as f64
        };
        let enough = n >= self.config.min_sample;
        self.firing = if self.firing {
            enough && rate > self.config.clear_rate
        } else {
            enough && rate > self.config.fire_rate
        };
        AlertState {
            firing: self.firing,
            failure_rate: rate,
            window_tasks: n,
            failed,
        }
    }

    /// Whether the alert fired at the last evaluation.
    pub fn is_firing(&self) -> bool {
        self.firing
    }

    /// The settings.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }
}

/// The alert decision on window counts alone, with hysteresis from the previous state: used by
/// the decision engine on counts read from the TaskDB.
pub fn alert_from_counts(
    succeeded: u64,
    failed: u64,
    was_firing: bool,
    policy: &Policy,
) -> AlertState {
    let n = succeeded.saturating_add(failed);
    let rate = if n == 0 {
        0.0
    } else {
        failed as f64 / n as f64
    };
    let enough = n >= policy.min_sample;
    let firing = if was_firing {
        enough && rate > policy.alert_clear_rate
    } else {
        enough && rate > policy.alert_failure_rate
    };
    AlertState {
        firing,
        failure_rate: rate,
        window_tasks: n,
        failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious implementation: keep every outcome, count the ones in the window.
    struct Naive {
        config: DetectorConfig,
        events: Vec<(u64, bool)>,
        firing: bool,
    }

    impl Naive {
        fn record(&mut self, t: u64, failed: bool) {
            self.events.push((t, failed));
        }
        fn evaluate(&mut self, now: u64, max_seen: u64) -> (bool, u64, u64) {
            let width = self.config.window_s / self.config.buckets as u64;
            let newest = now / width;
            let oldest = newest.saturating_sub(self.config.buckets as u64 - 1);
            // The streaming detector forgets outcomes whose bucket was overwritten by newer time.
            let evict_below = (max_seen / width).saturating_sub(self.config.buckets as u64 - 1);
            let (mut ok, mut failed) = (0, 0);
            for &(t, f) in &self.events {
                let i = t / width;
                if i >= oldest && i <= newest && i >= evict_below {
                    if f { failed += 1 } else { ok += 1 }
                }
            }
            let n = ok + failed;
            let rate = if n == 0 {
                0.0
            } else {
                failed as f64 / n as f64
            };
            let enough = n >= self.config.min_sample;
            self.firing = if self.firing {
                enough && rate > self.config.clear_rate
            } else {
                enough && rate > self.config.fire_rate
            };
            (self.firing, ok, failed)
        }
    }

    proptest! {
        #[test]
        fn matches_naive_reference(
            steps in proptest::collection::vec((0u64..400, any::<bool>(), any::<bool>()), 1..400),
            min_sample in 1u64..20,
        ) {
            let config = DetectorConfig { window_s: 120, buckets: 12, min_sample, fire_rate: 0.2, clear_rate: 0.1 };
            let mut d = Detector::new(config);
            let mut n = Naive { config, events: Vec::new(), firing: false };
            let mut t = 0u64;
            for (dt, failed, eval) in steps {
                // Time mostly moves forward, in jumps of up to 40 s.
                t += dt % 40;
                d.record(t, failed);
                n.record(t, failed);
                if eval {
                    let a = d.evaluate(t);
                    let (firing, ok, f) = n.evaluate(t, t);
                    prop_assert_eq!(d.window_counts(t), (ok, f));
                    prop_assert_eq!(a.firing, firing);
                }
            }
        }
    }

    #[test]
    fn fires_over_threshold_with_min_sample_and_does_not_flap() {
        let mut d = Detector::new(DetectorConfig::default());
        for i in 0..50 {
            d.record(i, true);
        }
        assert!(!d.evaluate(50).firing, "below min_sample");
        for i in 0..1000 {
            d.record(100 + i, i % 50 == 0);
        }
        assert!(d.evaluate(1100).firing);
        // 0.8 %: below the fire rate but above the clear rate: stays firing.
        let mut d2 = Detector::new(DetectorConfig::default());
        for i in 0..1000 {
            d2.record(i, i % 125 == 0);
        }
        assert!(!d2.evaluate(1000).firing, "0.8 % never fires");
        assert!(d.evaluate(1100).firing);
        // After an hour of clean traffic the window forgets the failures.
        for i in 0..1000 {
            d.record(5000 + i, false);
        }
        assert!(!d.evaluate(6000).firing);
    }
}
