//! Every threshold of the runbook, with its default, loadable from TOML or JSON and validated.
//!
//! Field names are the configuration keys (and the keys of a scenario's `policy` object).
//! Durations are whole seconds (`*_s`), ratios are fractions in `0..=1`, sizes are strings such as
//! `"500KB"` (1000-based) or `"180KiB"` (1024-based).
//!
//! ```
//! use flowfail_core::Policy;
//! let p = Policy::from_toml_str("alert_failure_rate = 0.02\nprune_target = \"150KB\"").unwrap();
//! assert_eq!(p.alert_failure_rate, 0.02);
//! assert_eq!(p.min_sample, 100); // untouched fields keep the runbook's defaults
//! assert!(Policy::from_toml_str("alert_failure_rate = 1.5").is_err());
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::ByteSize;

/// A model to route to when the primary vendor is down, and the vendor it runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Fallback {
    /// Vendor whose status page must say operational before routing there.
    pub vendor: String,
    /// Value written to `FALLBACK_MODEL`.
    pub model: String,
}

impl Fallback {
    /// A fallback model on a vendor.
    pub fn new(vendor: impl Into<String>, model: impl Into<String>) -> Self {
        Fallback {
            vendor: vendor.into(),
            model: model.into(),
        }
    }
}

/// The longest duration any `*_s` setting may have: a year.
pub const MAX_DURATION_S: u64 = 365 * 24 * 3600;

/// The largest `vendor_5xx_min_sample`: a sample no alert window of FlowEngine's reaches is a
/// typo that would switch the observed-rate check off unnoticed.
pub const MAX_VENDOR_SAMPLE: u64 = 10_000_000;

/// The runbook's thresholds. `Policy::default()` is the runbook as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Policy {
    // --- detection ---
    /// Alert when the failure rate exceeds this (runbook: 1 %).
    pub alert_failure_rate: f64,
    /// The alert clears only when the rate falls to this or below (hysteresis).
    pub alert_clear_rate: f64,
    /// The alert window (runbook: 1 h).
    pub alert_window_s: u64,
    /// Fewer finished tasks than this in the window never fire the alert.
    pub min_sample: u64,

    // --- timeouts ---
    /// A timeout with a bundle larger than this is pruned (runbook: 500 KB).
    pub timeout_bundle_threshold: ByteSize,
    /// Prune to at most this (runbook: 180 KB).
    pub prune_target: ByteSize,
    /// Refuse to read bundles larger than this.
    pub max_bundle_size: ByteSize,

    // --- rate limits ---
    /// Enable the circuit breaker when quota use exceeds this (runbook: 80 %).
    pub quota_breaker_threshold: f64,
    /// Disable a breaker flowfail enabled only when quota use falls to this or below.
    pub quota_breaker_clear: f64,
    /// Page `on_call` for a vendor limit increase at or above this (quota critically low).
    pub quota_critical_threshold: f64,
    /// Wait this long after enabling the breaker before retrying rate-limited tasks (runbook: 60 s).
    pub half_open_after_s: u64,
    /// Env var that enables FlowEngine's circuit breaker.
    pub breaker_env: String,

    // --- model API outages ---
    /// The vendor FlowEngine's primary model runs on.
    pub primary_vendor: String,
    /// Fallback per primary vendor.
    pub fallbacks: BTreeMap<String, Fallback>,
    /// Env var naming the fallback model.
    pub fallback_env: String,
    /// Env var enabling manual review mode.
    pub manual_review_env: String,
    /// Page SRE and TL when an outage lasts longer than this (runbook: 30 min).
    pub outage_escalation_after_s: u64,
    /// A vendor whose model calls fail with 5xx or "overloaded" in at least this share of the
    /// tasks finished in the alert window is treated as degraded, whatever its status page says
    /// (see [`crate::decide::vendor_of`] for how a failure is attributed to a vendor).
    pub vendor_5xx_rate_threshold: f64,
    /// The observed 5xx rate counts only over at least this many finished tasks in the window.
    pub vendor_5xx_min_sample: u64,
    /// A vendor is observed failing only while its latest 5xx is younger than this: routed
    /// away from, it produces no new evidence, and after this long its status page decides
    /// again (LiteLLM's cooldown, with the runbook's safety rules).
    pub vendor_5xx_cooldown_s: u64,

    // --- retries ---
    /// At most this many retries per task (runbook: 3).
    pub max_attempts: u32,
    /// First retry backoff; doubles each attempt, with deterministic jitter.
    pub retry_base_delay_s: u64,
    /// Backoff ceiling.
    pub retry_max_delay_s: u64,
    /// At most this many retries scheduled in one pass (the retry budget).
    pub retry_budget_per_pass: usize,

    // --- rollback ---
    /// A failure rate at or above this, not caused by a vendor, is "widespread".
    pub widespread_failure_rate: f64,
    /// Roll back only when the current revision was deployed at most this long ago.
    pub rollback_max_deploy_age_s: u64,
    /// After a rollback, failures still above the alert this long later count as persisting.
    pub rollback_verify_after_s: u64,
    /// Give up waiting for `rollout status` after this long.
    pub rollout_timeout_s: u64,
    /// Env var of FlowEngine's Deployment naming the TaskObject schema version the running
    /// revision expects (a schema-version mismatch finding names it when it is set).
    pub schema_version_env: String,

    // --- responder ---
    /// The Deployment flowfail acts on.
    pub deployment: String,
    /// How often the responder observes while an incident is open.
    pub poll_interval_s: u64,
    /// Deadline of one port call.
    pub step_timeout_s: u64,
    /// At most this many mutations per minute per responder (excess is escalated, not dropped).
    pub max_actions_per_minute: u32,
    /// Failed tasks read per pass (the runbook's `LIMIT`).
    pub triage_limit: usize,
    /// Page targets flowfail may use. Only these, never a target read from outside data.
    pub page_targets: Vec<String>,
    /// Who is paged for critical quota, unknown failures and exhausted automation.
    pub on_call_target: String,
    /// Who is paged when an outage outlasts `outage_escalation_after_s`.
    pub outage_page_targets: Vec<String>,
    /// Who is notified of a long outage.
    pub stakeholder_audience: String,

    // --- operator control ---
    /// Actions carried out only once a human approved them for the incident
    /// (`flowfail approve INCIDENT ACTION`); names from [`crate::operator::GATED_ACTIONS`].
    /// Empty by default: nothing waits for approval.
    pub require_approval: Vec<String>,
    /// How long an approval stays valid after it was given.
    pub approval_ttl_s: u64,
}

impl Default for Policy {
    fn default() -> Self {
        let mut fallbacks = BTreeMap::new();
        fallbacks.insert("anthropic".into(), Fallback::new("openai", "gpt-4-turbo"));
        fallbacks.insert(
            "openai".into(),
            Fallback::new("anthropic", "claude-sonnet-4-5"),
        );
        fallbacks.insert("google".into(), Fallback::new("openai", "gpt-4-turbo"));
        Policy {
            alert_failure_rate: 0.01,
            alert_clear_rate: 0.005,
            alert_window_s: 3600,
            min_sample: 100,
            timeout_bundle_threshold: ByteSize::kb(500),
            prune_target: ByteSize::kb(180),
            max_bundle_size: ByteSize::mb(64),
            quota_breaker_threshold: 0.80,
            quota_breaker_clear: 0.70,
            quota_critical_threshold: 0.95,
            half_open_after_s: 60,
            breaker_env: "ENABLE_CIRCUIT_BREAKER".into(),
            primary_vendor: "anthropic".into(),
            fallbacks,
            fallback_env: "FALLBACK_MODEL".into(),
            manual_review_env: "MANUAL_REVIEW_MODE".into(),
            schema_version_env: "TASK_SCHEMA_VERSION".into(),
            outage_escalation_after_s: 1800,
            vendor_5xx_rate_threshold: 0.05,
            vendor_5xx_min_sample: 100,
            vendor_5xx_cooldown_s: 600,
            max_attempts: 3,
            retry_base_delay_s: 10,
            retry_max_delay_s: 300,
            retry_budget_per_pass: 500,
            widespread_failure_rate: 0.25,
            rollback_max_deploy_age_s: 6 * 3600,
            rollback_verify_after_s: 600,
            rollout_timeout_s: 300,
            deployment: "flowengine".into(),
            poll_interval_s: 5,
            step_timeout_s: 30,
            max_actions_per_minute: 600,
            triage_limit: 1000,
            page_targets: vec!["on_call".into(), "sre".into(), "tech_lead".into()],
            on_call_target: "on_call".into(),
            outage_page_targets: vec!["sre".into(), "tech_lead".into()],
            stakeholder_audience: "stakeholders".into(),
            require_approval: Vec::new(),
            approval_ttl_s: 3600,
        }
    }
}

impl Policy {
    /// The alert window (`alert_window_s`) as a duration.
    pub fn alert_window(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(i64::try_from(self.alert_window_s).unwrap_or(i64::MAX / 1000))
    }

    /// The alert window ending now, as the half-open range `[since, until)` the TaskDB is asked
    /// about: `until` is a millisecond after `now`, so a task finished at `now` counts.
    pub fn alert_window_at(
        &self,
        now: crate::model::Timestamp,
    ) -> (crate::model::Timestamp, crate::model::Timestamp) {
        let since = now.checked_sub_signed(self.alert_window()).unwrap_or(now);
        (since, now + chrono::TimeDelta::milliseconds(1))
    }

    /// Loads a policy from TOML; missing fields keep their defaults; the result is validated.
    pub fn from_toml_str(s: &str) -> Result<Self> {
        let p: Policy = toml::from_str(s)
            .map_err(|e| Error::invalid_input(format!("invalid policy TOML: {e}")))?;
        p.validate()?;
        Ok(p)
    }

    /// Loads a policy from JSON; missing fields keep their defaults; the result is validated.
    pub fn from_json_str(s: &str) -> Result<Self> {
        let p: Policy = serde_json::from_str(s)
            .map_err(|e| Error::invalid_input(format!("invalid policy JSON: {e}")))?;
        p.validate()?;
        Ok(p)
    }

    /// Applies a JSON object of overrides on top of this policy and validates the result.
    pub fn with_overrides(&self, overrides: &serde_json::Value) -> Result<Self> {
        let mut base = serde_json::to_value(self)?;
        let (Some(b), Some(o)) = (base.as_object_mut(), overrides.as_object()) else {
            return Err(Error::invalid_input(
                "policy overrides must be a JSON object",
            ));
        };
        for (k, v) in o {
            b.insert(k.clone(), v.clone());
        }
        let p: Policy = serde_json::from_value(base)
            .map_err(|e| Error::invalid_input(format!("invalid policy override: {e}")))?;
        p.validate()?;
        Ok(p)
    }

    /// Rejects nonsense: ratios outside 0..=1, zero windows, a clear level above the trigger,
    /// a prune target above the timeout threshold, empty or unknown targets.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        self.validate_ratios(&mut problems);
        self.validate_vendor_5xx(&mut problems);
        self.validate_levels(&mut problems);
        self.validate_durations(&mut problems);
        self.validate_limits(&mut problems);
        self.validate_targets(&mut problems);
        self.validate_approvals(&mut problems);
        self.validate_fallbacks(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid_input(format!(
                "invalid policy: {}",
                problems.join("; ")
            )))
        }
    }

    /// Every ratio in 0..=1, and an alert rate above 0.
    fn validate_ratios(&self, problems: &mut Vec<String>) {
        let ratios = [
            ("alert_failure_rate", self.alert_failure_rate),
            ("alert_clear_rate", self.alert_clear_rate),
            ("quota_breaker_threshold", self.quota_breaker_threshold),
            ("quota_breaker_clear", self.quota_breaker_clear),
            ("quota_critical_threshold", self.quota_critical_threshold),
            ("widespread_failure_rate", self.widespread_failure_rate),
            ("vendor_5xx_rate_threshold", self.vendor_5xx_rate_threshold),
        ];
        for (name, v) in ratios {
            if !(0.0..=1.0).contains(&v) || v.is_nan() {
                problems.push(format!("{name} must be a ratio in 0..=1, got {v}"));
            }
        }
        if self.alert_failure_rate <= 0.0 {
            problems.push("alert_failure_rate must be above 0".into());
        }
    }

    /// Each clear level at most its trigger, and the escalation levels not below theirs.
    fn validate_levels(&self, problems: &mut Vec<String>) {
        if self.alert_clear_rate > self.alert_failure_rate {
            problems.push("alert_clear_rate must not exceed alert_failure_rate".into());
        }
        if self.quota_breaker_clear > self.quota_breaker_threshold {
            problems.push("quota_breaker_clear must not exceed quota_breaker_threshold".into());
        }
        if self.quota_critical_threshold < self.quota_breaker_threshold {
            problems
                .push("quota_critical_threshold must not be below quota_breaker_threshold".into());
        }
        if self.widespread_failure_rate < self.alert_failure_rate {
            problems.push("widespread_failure_rate must not be below alert_failure_rate".into());
        }
    }

    /// Every window and timeout above 0, and every duration at most a year.
    fn validate_durations(&self, problems: &mut Vec<String>) {
        for (name, v) in [
            ("alert_window_s", self.alert_window_s),
            ("poll_interval_s", self.poll_interval_s),
            ("step_timeout_s", self.step_timeout_s),
            ("rollout_timeout_s", self.rollout_timeout_s),
            ("retry_max_delay_s", self.retry_max_delay_s),
        ] {
            if v == 0 {
                problems.push(format!("{name} must be above 0"));
            }
        }
        // Every duration is bounded (a year), so no time computed from the policy overflows.
        for (name, v) in [
            ("alert_window_s", self.alert_window_s),
            ("poll_interval_s", self.poll_interval_s),
            ("step_timeout_s", self.step_timeout_s),
            ("rollout_timeout_s", self.rollout_timeout_s),
            ("retry_base_delay_s", self.retry_base_delay_s),
            ("retry_max_delay_s", self.retry_max_delay_s),
            ("half_open_after_s", self.half_open_after_s),
            ("outage_escalation_after_s", self.outage_escalation_after_s),
            ("rollback_max_deploy_age_s", self.rollback_max_deploy_age_s),
            ("rollback_verify_after_s", self.rollback_verify_after_s),
            ("approval_ttl_s", self.approval_ttl_s),
        ] {
            if v > MAX_DURATION_S {
                problems.push(format!(
                    "{name} must be at most {MAX_DURATION_S} (a year), not {v}"
                ));
            }
        }
    }

    /// Counts above 0, and the prune target and bundle sizes in order.
    fn validate_limits(&self, problems: &mut Vec<String>) {
        if self.min_sample == 0 {
            problems.push("min_sample must be above 0".into());
        }
        if self.max_actions_per_minute == 0 {
            problems.push("max_actions_per_minute must be above 0".into());
        }
        if self.triage_limit == 0 {
            problems.push("triage_limit must be above 0".into());
        }
        if self.prune_target.bytes() < 64 {
            problems.push("prune_target must be at least 64B".into());
        }
        if self.prune_target > self.timeout_bundle_threshold {
            problems.push("prune_target must not exceed timeout_bundle_threshold".into());
        }
        if self.max_bundle_size < self.timeout_bundle_threshold {
            problems.push("max_bundle_size must not be below timeout_bundle_threshold".into());
        }
    }

    /// Names not empty, and every paged target one of `page_targets`.
    fn validate_targets(&self, problems: &mut Vec<String>) {
        for (name, v) in [
            ("deployment", &self.deployment),
            ("breaker_env", &self.breaker_env),
            ("fallback_env", &self.fallback_env),
            ("manual_review_env", &self.manual_review_env),
            ("primary_vendor", &self.primary_vendor),
            ("on_call_target", &self.on_call_target),
            ("stakeholder_audience", &self.stakeholder_audience),
        ] {
            if v.trim().is_empty() {
                problems.push(format!("{name} must not be empty"));
            }
        }
        if self.page_targets.is_empty() {
            problems
                .push("page_targets must not be empty (an empty set never means \"all\")".into());
        }
        if self.outage_page_targets.is_empty() {
            problems.push("outage_page_targets must not be empty".into());
        }
        for t in std::iter::once(&self.on_call_target).chain(&self.outage_page_targets) {
            if !self.page_targets.contains(t) {
                problems.push(format!("target {t:?} is not in page_targets"));
            }
        }
    }

    /// Each fallback on another vendor, with a vendor and a model.
    fn validate_fallbacks(&self, problems: &mut Vec<String>) {
        for (vendor, fb) in &self.fallbacks {
            if fb.vendor == *vendor {
                problems.push(format!("fallback for {vendor} must be on another vendor"));
            }
            if fb.model.trim().is_empty() || fb.vendor.trim().is_empty() {
                problems.push(format!("fallback for {vendor} needs a vendor and a model"));
            }
        }
    }

    /// The observed-outage thresholds (see `decide::vendor`).
    fn validate_vendor_5xx(&self, problems: &mut Vec<String>) {
        if self.vendor_5xx_rate_threshold <= 0.0 {
            problems.push("vendor_5xx_rate_threshold must be above 0".into());
        }
        if !(1..=MAX_VENDOR_SAMPLE).contains(&self.vendor_5xx_min_sample) {
            problems.push(format!(
                "vendor_5xx_min_sample must be in 1..={MAX_VENDOR_SAMPLE}, not {}",
                self.vendor_5xx_min_sample
            ));
        }
        if self.vendor_5xx_cooldown_s == 0 || self.vendor_5xx_cooldown_s > self.alert_window_s {
            problems.push(format!(
                "vendor_5xx_cooldown_s must be in 1..=alert_window_s ({}), not {}",
                self.alert_window_s, self.vendor_5xx_cooldown_s
            ));
        }
    }

    /// The approval gates.
    fn validate_approvals(&self, problems: &mut Vec<String>) {
        if self.approval_ttl_s == 0 || self.approval_ttl_s > crate::operator::MAX_APPROVAL_TTL_S {
            problems.push(format!(
                "approval_ttl_s must be in 1..={}, not {}",
                crate::operator::MAX_APPROVAL_TTL_S,
                self.approval_ttl_s
            ));
        }
        for name in &self.require_approval {
            if !crate::operator::GATED_ACTIONS.contains(&name.as_str()) {
                problems.push(format!(
                    "require_approval: {} is not an action that can wait for approval (one of {})",
                    crate::model::describe_untrusted(name),
                    crate::operator::GATED_ACTIONS.join(", ")
                ));
            }
        }
    }

    /// Whether `target` is a configured page target.
    pub fn is_page_target(&self, target: &str) -> bool {
        self.page_targets.iter().any(|t| t == target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_runbook() {
        let p = Policy::default();
        p.validate().unwrap();
        assert_eq!(p.alert_failure_rate, 0.01);
        assert_eq!(p.alert_window_s, 3600);
        assert_eq!(p.timeout_bundle_threshold.bytes(), 500_000);
        assert_eq!(p.prune_target.bytes(), 180_000);
        assert_eq!(p.quota_breaker_threshold, 0.8);
        assert_eq!(p.half_open_after_s, 60);
        assert_eq!(p.max_attempts, 3);
        assert_eq!(p.outage_escalation_after_s, 1800);
        assert_eq!(p.fallbacks["anthropic"].model, "gpt-4-turbo");
        assert_eq!(p.vendor_5xx_rate_threshold, 0.05);
        assert_eq!(p.vendor_5xx_min_sample, 100);
        assert_eq!(p.vendor_5xx_cooldown_s, 600);
    }

    #[test]
    fn nonsense_is_rejected_with_a_clear_error() {
        for bad in [
            r#"{"alert_failure_rate": 1.5}"#,
            r#"{"quota_breaker_threshold": -0.1}"#,
            r#"{"alert_window_s": 0}"#,
            r#"{"page_targets": []}"#,
            r#"{"outage_page_targets": ["ceo"]}"#,
            r#"{"prune_target": "900KB"}"#,
            r#"{"prune_target": "lots"}"#,
            r#"{"alert_failure_rat": 0.02}"#,
            r#"{"deployment": ""}"#,
            r#"{"vendor_5xx_rate_threshold": 0}"#,
            r#"{"vendor_5xx_rate_threshold": 1.5}"#,
            r#"{"vendor_5xx_min_sample": 0}"#,
            r#"{"vendor_5xx_min_sample": 10000001}"#,
            r#"{"vendor_5xx_cooldown_s": 0}"#,
            r#"{"vendor_5xx_cooldown_s": 7200}"#,
            r#"{"require_approval": ["rollback", "reboot"]}"#,
            r#"{"approval_ttl_s": 0}"#,
            r#"{"approval_ttl_s": 604801}"#,
            "[1,2]",
            "{",
        ] {
            let e = Policy::from_json_str(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{bad}");
            assert!(e.to_string().contains("policy"), "{e}");
        }
        assert!(Policy::from_toml_str("min_sample = 0").is_err());
        assert!(Policy::from_toml_str("min_sample = 10").is_ok());
    }

    #[test]
    fn overrides_apply_on_top() {
        let p = Policy::default()
            .with_overrides(&serde_json::json!({"min_sample": 50, "prune_target": "100KiB"}))
            .unwrap();
        assert_eq!(p.min_sample, 50);
        assert_eq!(p.prune_target.bytes(), 102_400);
        assert!(
            Policy::default()
                .with_overrides(&serde_json::json!({"nope": 1}))
                .is_err()
        );
    }
}
