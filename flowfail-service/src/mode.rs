//! The service's mode, a leaf: the config reads it, the metrics label by it.

use serde::Deserialize;

/// `shadow` (the default) or `act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Mode {
    /// Observe, decide, record in the ledger, report — change nothing in the world.
    #[default]
    Shadow,
    /// Carry the decisions out.
    Act,
}
