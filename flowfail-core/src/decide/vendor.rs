//! Outages seen in the data: each vendor's observed 5xx rate in the TaskDB's alert window,
//! judged together with its status page.
//!
//! Status pages lag, often by tens of minutes, or say nothing. The TaskDB already shows an
//! outage: model calls failing with 5xx or "overloaded". A task carries no vendor field (see
//! [`crate::model::Task`]), so [`vendor_of`] reads the vendor from the failure itself:
//!
//! 1. **A name** in the message (case-insensitive): `bedrock` → `bedrock` (Bedrock serves other
//!    vendors' models, and it is Bedrock's API that failed); otherwise exactly one of
//!    `anthropic`/`claude` → `anthropic`, `openai`/`gpt-` → `openai`,
//!    `google`/`gemini`/`vertex`/`generativelanguage` → `google`. SDK exception names
//!    (`anthropic.InternalServerError`, `openai.APIError`), API hosts (`api.anthropic.com`) and
//!    model names are all names. A message naming two of them names none.
//! 2. **The vendor's error format**, when no name is given (quotes and spaces normalised, so
//!    JSON and Python reprs read alike): Anthropic's envelope `{"type": "error", "error": {…}}`,
//!    its `overloaded_error` and `api_error` types, and HTTP 529 (a status only Anthropic
//!    uses); OpenAI's `server_error` type and the `param` field of its error objects; Google's
//!    `"status": "UNAVAILABLE"` / `"INTERNAL"`.
//! 3. Otherwise the failure is **unattributed**: counted and shown, never charged to a vendor.
//!
//! Names and formats are read with echoed tenant input masked
//! ([`crate::classify::mask_echoes`]): a tenant's title that says `claude` names no vendor.
//!
//! A vendor's **observed 5xx rate** is the number of failed tasks in the alert window that the
//! classifier calls `model_api_5xx`, that carry a server failure's structure
//! ([`crate::classify::server_failure`]: an HTTP status ≥ 500 in the TaskDB, or a vendor's
//! server error starting the message — never a word further in) and that are attributed to the
//! vendor, over every task
//! finished in the window (every FlowEngine flow makes model calls, and FlowEngine sends them to
//! one vendor at a time, so for the primary vendor this is the share of its calls that failed).
//! The vendor is **observed failing** when that rate is at least
//! [`Policy::vendor_5xx_rate_threshold`] over at least [`Policy::vendor_5xx_min_sample`]
//! finished tasks, and its latest such failure is less than [`Policy::vendor_5xx_cooldown_s`]
//! old. The cooldown matters because routing away stops the evidence: with its traffic on the
//! fallback, a vendor produces no new failures, and its old ones would otherwise hold it
//! "failing" for as long as they stay in the window. After the cooldown its status page decides
//! again, and the held 5xx retries go to it: if it still fails, they bring fresh evidence and
//! flowfail routes away again (at most once per cooldown, each retry within `max_attempts`).
//!
//! A vendor is then **degraded** when its status page says so *or* it is observed failing, and
//! **healthy** only when its status page says operational *and* it is not observed failing: the
//! fallback goes only to a healthy vendor. An unreadable status page is still never healthy.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Ctx;
use crate::model::{FailureKind, Timestamp, VendorHealth};
use crate::policy::Policy;

/// Bytes of a message read for its vendor.
const SCAN_BYTES: usize = 4096;

/// The vendor a failed model call went to, read from its error message and HTTP status (see
/// the [module docs](self)); `None` when nothing names or betrays one.
///
/// ```
/// use flowfail_core::decide::vendor_of;
/// assert_eq!(vendor_of("anthropic.InternalServerError: Error code: 500", None), Some("anthropic"));
/// assert_eq!(vendor_of(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#, Some(529)), Some("anthropic"));
/// assert_eq!(vendor_of("Error code: 503 - {'error': {'message': 'busy', 'type': 'server_error', 'param': None}}", None), Some("openai"));
/// assert_eq!(vendor_of("502 Bad Gateway", Some(502)), None);
/// ```
pub fn vendor_of(message: &str, http_status: Option<u16>) -> Option<&'static str> {
    let mut cut = message.len().min(SCAN_BYTES);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    // A vendor named inside echoed tenant input is not the vendor the call went to.
    let lower = crate::classify::mask_echoes(&message[..cut]).to_ascii_lowercase();
    if lower.contains("bedrock") {
        return Some("bedrock");
    }
    const NAMES: [(&str, &[&str]); 3] = [
        ("anthropic", &["anthropic", "claude"]),
        ("openai", &["openai", "gpt-"]),
        (
            "google",
            &["google", "gemini", "vertex", "generativelanguage"],
        ),
    ];
    let named: Vec<&'static str> = NAMES
        .iter()
        .filter(|(_, words)| words.iter().any(|w| lower.contains(w)))
        .map(|(v, _)| *v)
        .collect();
    match named.as_slice() {
        [one] => return Some(one),
        [] => {}
        _ => return None,
    }
    let norm: String = lower
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| if c == '\'' { '"' } else { c })
        .collect();
    let anthropic = http_status == Some(529)
        || [
            "\"type\":\"error\",\"error\":",
            "\"overloaded_error\"",
            "\"api_error\"",
        ]
        .iter()
        .any(|f| norm.contains(f));
    let openai = ["\"server_error\"", "\"param\":"]
        .iter()
        .any(|f| norm.contains(f));
    let google = ["\"status\":\"unavailable\"", "\"status\":\"internal\""]
        .iter()
        .any(|f| norm.contains(f));
    match (anthropic, openai, google) {
        (true, false, false) => Some("anthropic"),
        (false, true, false) => Some("openai"),
        (false, false, true) => Some("google"),
        _ => None,
    }
}

/// What the TaskDB shows of one vendor in the alert window.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ObservedRate {
    /// Failed tasks in the window classified `model_api_5xx` and attributed to the vendor.
    pub failures_5xx: u64,
    /// Tasks finished in the window (the denominator).
    pub window_tasks: u64,
    /// `failures_5xx / window_tasks` (0 when nothing finished).
    pub rate: f64,
    /// When the latest of those failures happened.
    pub last_failure_at: Option<Timestamp>,
    /// 5xx failures in the window that name no vendor (not charged to any).
    pub unattributed_5xx: u64,
    /// The failed-task read hit `triage_limit`: the counts are lower bounds.
    pub truncated: bool,
}

/// One vendor, judged on its status page and its observed rate.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct VendorJudgement {
    pub(super) vendor: String,
    /// What the status page says (`Unknown` when unread).
    pub(super) page: VendorHealth,
    /// What the TaskDB shows.
    pub(super) observed: ObservedRate,
    /// Observed failing: over the threshold, with the sample, within the cooldown.
    pub(super) failing: bool,
}

impl VendorJudgement {
    /// Degraded by its status page or by the data.
    pub(super) fn degraded(&self) -> bool {
        self.page.is_degraded() || self.failing
    }

    /// Healthy by both: the status page says operational and the data shows no failing.
    pub(super) fn healthy(&self) -> bool {
        self.page.is_operational() && !self.failing
    }

    /// Which evidence was used: `status_page`, `observed_rate` or `both`, for a degraded
    /// vendor; `none` otherwise.
    pub(super) fn evidence(&self) -> &'static str {
        match (self.page.is_degraded(), self.failing) {
            (true, true) => "both",
            (true, false) => "status_page",
            (false, true) => "observed_rate",
            (false, false) => "none",
        }
    }

    /// The evidence in words, with the numbers: `status page: MajorOutage; observed: 150 of
    /// 1650 tasks in the window (9.09%) failed with anthropic 5xx (threshold 5.00% over ≥ 100
    /// tasks)`.
    pub(super) fn describe(&self, policy: &Policy) -> String {
        let o = &self.observed;
        format!(
            "status page: {:?}; observed: {} of {} tasks in the window ({}) failed with {} 5xx{} (threshold {} over ≥ {} tasks{})",
            self.page,
            o.failures_5xx,
            o.window_tasks,
            super::pct(o.rate),
            self.vendor,
            if o.truncated { " or more" } else { "" },
            super::pct(policy.vendor_5xx_rate_threshold),
            policy.vendor_5xx_min_sample,
            if o.unattributed_5xx > 0 {
                format!("; {} 5xx name no vendor", o.unattributed_5xx)
            } else {
                String::new()
            },
        )
    }

    /// The observed rate in a few words, saying why it does or does not count as failing.
    pub(super) fn observed_words(&self, policy: &Policy) -> String {
        let (o, v) = (&self.observed, &self.vendor);
        if o.failures_5xx == 0 {
            return format!("no {v} 5xx in the window");
        }
        let seen = format!(
            "{} of {} tasks ({}) failed with {v} 5xx",
            o.failures_5xx,
            o.window_tasks,
            super::pct(o.rate)
        );
        if self.failing {
            format!(
                "{seen}, at or over the {} threshold",
                super::pct(policy.vendor_5xx_rate_threshold)
            )
        } else if o.window_tasks < policy.vendor_5xx_min_sample {
            format!(
                "{seen}, under the {}-task sample",
                policy.vendor_5xx_min_sample
            )
        } else if o.rate < policy.vendor_5xx_rate_threshold {
            format!(
                "{seen}, under the {} threshold",
                super::pct(policy.vendor_5xx_rate_threshold)
            )
        } else {
            format!(
                "{seen}, none in the last {} s",
                policy.vendor_5xx_cooldown_s
            )
        }
    }

    /// The evidence as data, for findings and pages.
    pub(super) fn details(&self, policy: &Policy) -> serde_json::Value {
        serde_json::json!({
            "vendor": self.vendor,
            "evidence": self.evidence(),
            "status_page": format!("{:?}", self.page),
            "observed": self.observed,
            "observed_failing": self.failing,
            "threshold": policy.vendor_5xx_rate_threshold,
            "min_sample": policy.vendor_5xx_min_sample,
            "cooldown_s": policy.vendor_5xx_cooldown_s,
        })
    }
}

/// The 5xx failures of the alert window by vendor (count, latest), and the unattributed count.
type Attributed = (BTreeMap<&'static str, (u64, Timestamp)>, u64);

fn attribute(cx: &Ctx<'_>) -> Attributed {
    let since = cx
        .now
        .checked_sub_signed(cx.policy.alert_window())
        .unwrap_or(cx.now);
    let mut by: BTreeMap<&'static str, (u64, Timestamp)> = BTreeMap::new();
    let mut unattributed = 0;
    // Outage evidence is structural: a server status, or a vendor's server error starting the
    // message — never a word further in (a tenant's title, a prompt a vendor quotes).
    for t in cx.failed.iter().filter(|t| {
        t.class.kind == FailureKind::ModelApi5xx
            && t.task.finished_or_created() >= since
            && crate::classify::server_failure(
                t.task.error_message.as_deref().unwrap_or(""),
                t.task.http_status,
            )
    }) {
        let at = t.task.finished_or_created();
        match vendor_of(
            t.task.error_message.as_deref().unwrap_or(""),
            t.task.http_status,
        ) {
            Some(v) => {
                let e = by.entry(v).or_insert((0, at));
                e.0 += 1;
                e.1 = e.1.max(at);
            }
            None => unattributed += 1,
        }
    }
    (by, unattributed)
}

/// Judges these vendors on this pass's observation.
pub(super) fn judge(cx: &Ctx<'_>, vendors: &[&str]) -> Vec<VendorJudgement> {
    let policy = cx.policy;
    let (by, unattributed) = attribute(cx);
    let window_tasks = cx
        .obs
        .counts
        .as_ref()
        .map_or(0, |c| c.succeeded.saturating_add(c.failed));
    vendors
        .iter()
        .map(|v| {
            let (n, last) = by.get(v).map_or((0, None), |(n, at)| (*n, Some(*at)));
            let rate = if window_tasks == 0 {
                0.0
            } else {
                n as f64 / window_tasks as f64
            };
            let fresh =
                last.is_some_and(|at| cx.now - at < super::secs(policy.vendor_5xx_cooldown_s));
            VendorJudgement {
                vendor: (*v).to_owned(),
                page: cx.obs.vendor(v),
                failing: window_tasks >= policy.vendor_5xx_min_sample
                    && n > 0
                    && rate >= policy.vendor_5xx_rate_threshold
                    && fresh,
                observed: ObservedRate {
                    failures_5xx: n,
                    window_tasks,
                    rate,
                    last_failure_at: last,
                    unattributed_5xx: unattributed,
                    truncated: cx.obs.failed_truncated,
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendors_are_read_from_names_then_formats() {
        for (m, s, want) in [
            (
                "anthropic.APIStatusError: overloaded",
                None,
                Some("anthropic"),
            ),
            (
                "POST https://api.openai.com/v1/chat/completions 503",
                None,
                Some("openai"),
            ),
            (
                "google.genai.errors.ServerError: 503 UNAVAILABLE",
                None,
                Some("google"),
            ),
            (
                "botocore ... InvokeModel on bedrock-runtime for anthropic.claude-3: ServiceUnavailableException",
                None,
                Some("bedrock"),
            ),
            ("openai fell back after anthropic failed: 500", None, None),
            (
                "{'type': 'error', 'error': {'type': 'api_error', 'message': 'Internal server error'}}",
                Some(500),
                Some("anthropic"),
            ),
            ("upstream said no", Some(529), Some("anthropic")),
            (
                r#"{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}"#,
                Some(503),
                Some("google"),
            ),
            (
                "Error code: 500 - {'error': {'message': 'The server had an error', 'type': 'server_error', 'param': None, 'code': None}}",
                Some(500),
                Some("openai"),
            ),
            ("503 Service Unavailable", Some(503), None),
        ] {
            assert_eq!(vendor_of(m, s), want, "{m}");
        }
    }
}
