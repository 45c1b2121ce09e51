//! [`TaskFilter`]: the rows of one Deployment in a TaskDB several share.

use flowfail_core::model::describe_untrusted_pub as describe;
use flowfail_core::{Error, Result};

use crate::conn::{BACKEND, ident};

/// Only the rows whose `column` holds `value` (`environment = 'prod'`): the tasks of one
/// Deployment in a TaskDB that several share. Every read, count, retry and give-up of the
/// store is limited to them, so a responder never counts, triages or retries another
/// Deployment's tasks; rows the store inserts (seeds, tests) carry the value.
///
/// The column is a validated identifier; the value, 1–64 characters of `A-Z a-z 0-9 _ - . :`,
/// goes into the SQL as a literal built once.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskFilter {
    /// The column (text).
    pub column: String,
    /// The value of this Deployment's rows.
    pub value: String,
}

impl TaskFilter {
    /// Rows where `column = value`.
    pub fn new(column: impl Into<String>, value: impl Into<String>) -> Self {
        TaskFilter {
            column: column.into(),
            value: value.into(),
        }
    }

    /// The column and the value checked (what the store does when it is built).
    pub fn check(&self) -> Result<()> {
        self.sql().map(drop)
    }

    /// The quoted column and the literal value, checked.
    pub(crate) fn sql(&self) -> Result<(String, String)> {
        let col = ident(&self.column)?;
        let ok = !self.value.is_empty()
            && self.value.len() <= 64
            && self
                .value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
        if !ok {
            return Err(Error::invalid_input(format!(
                "task filter: {} is not a filter value (1-64 of A-Z a-z 0-9 _ - . :)",
                describe(&self.value)
            ))
            .with_backend(BACKEND));
        }
        Ok((col, format!("'{}'", self.value)))
    }

    /// ` AND {prefix}col = 'value'` for `filter`, empty without one.
    pub(crate) fn and(filter: Option<&TaskFilter>, prefix: &str) -> Result<String> {
        Ok(match filter {
            Some(f) => {
                let (col, val) = f.sql()?;
                format!(" AND {prefix}{col} = {val}")
            }
            None => String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_column_and_value_are_checked_and_quoted() {
        let f = TaskFilter::new("environment", "prod-eu");
        assert_eq!(
            TaskFilter::and(Some(&f), "t.").ok().as_deref(),
            Some(" AND t.\"environment\" = 'prod-eu'")
        );
        assert_eq!(TaskFilter::and(None, "").ok().as_deref(), Some(""));
        for (c, v) in [
            ("env", "x' OR '1'='1"),
            ("env", ""),
            ("e;v", "prod"),
            ("env", &"a".repeat(65)),
        ] {
            assert!(TaskFilter::new(c, v).sql().is_err(), "{c} {v}");
        }
    }
}
