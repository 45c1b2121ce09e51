//! `[postgres.statuses]`: FlowEngine's values of the status column.

use serde::Deserialize;

/// One status's values in `[postgres.statuses]`: a value or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum StatusValues {
    /// One value, read and written.
    One(String),
    /// Values read as the status; the first is written.
    Many(Vec<String>),
}

impl StatusValues {
    /// The values, the written one first.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            StatusValues::One(v) => vec![v.clone()],
            StatusValues::Many(v) => v.clone(),
        }
    }
}
