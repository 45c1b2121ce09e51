//! `[postgres.statuses]` and `[postgres] task_filter`: how FlowEngine's TaskDB spells its
//! statuses, and which of its rows are this Deployment's.

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

/// `[postgres] task_filter`: the rows whose `column` holds `value`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TaskFilterConfig {
    /// The column (text).
    pub column: String,
    /// This Deployment's value.
    pub value: String,
}

impl TaskFilterConfig {
    /// The store's filter.
    pub fn to_filter(&self) -> flowfail_pg::TaskFilter {
        flowfail_pg::TaskFilter::new(self.column.clone(), self.value.clone())
    }
}
