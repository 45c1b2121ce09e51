//! How a verdict was reached, for `flowfail classify --explain`.

use serde::Serialize;

use super::Classification;

/// A verdict and the steps that led to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Explanation {
    /// The verdict, exactly what [`RuleSet::classify`](super::RuleSet::classify) returns.
    pub classification: Classification,
    /// Every stage weighed, in order, up to the one that decided.
    pub steps: Vec<Step>,
}

/// One stage of a classification and what it came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Step {
    /// `mask` (echoed tenant input was masked), `validation`, `http_status`, `vendor_code`,
    /// `exception`, `status_in_message`, `pattern`, `fallback` or `guard` (a user's rule
    /// overruled by built-in validation evidence).
    pub stage: &'static str,
    /// What it found: `decided: …`, or why it did not decide.
    pub outcome: String,
}
