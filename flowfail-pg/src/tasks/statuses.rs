//! FlowEngine's spellings of the task statuses: [`TaskStatuses`].

use flowfail_core::model::describe_untrusted_pub as describe;
use flowfail_core::{Error, Result, TaskStatus};

use crate::conn::BACKEND;

/// The longest status value accepted in the configuration.
const MAX_VALUE: usize = 64;

/// The TaskDB's values for each [`TaskStatus`], where FlowEngine's differ from flowfail's
/// (`failed = ["failed", "error"]`).
///
/// Every value listed is read as its status: by the alert's counts, by triage, and by the
/// fences of a retry. The **first** value of a status is the one flowfail writes (a scheduled
/// retry writes `pending`'s first, a task given up on `failed_final`'s first). The default is
/// flowfail's own name for each status, alone.
///
/// Values go into the SQL as literals, built once: they are validated (1–64 characters of
/// `A-Z a-z 0-9 _ - . :`, no value under two statuses, at least one per status).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskStatuses {
    /// Waiting to run, a scheduled retry included (default `pending`).
    pub pending: Vec<String>,
    /// Running (default `running`).
    pub running: Vec<String>,
    /// Finished successfully (default `succeeded`).
    pub succeeded: Vec<String>,
    /// Finished with an error that may be retried (default `failed`).
    pub failed: Vec<String>,
    /// Failed for good (default `failed_final`).
    pub failed_final: Vec<String>,
}

impl Default for TaskStatuses {
    fn default() -> Self {
        TaskStatuses {
            pending: vec!["pending".into()],
            running: vec!["running".into()],
            succeeded: vec!["succeeded".into()],
            failed: vec!["failed".into()],
            failed_final: vec!["failed_final".into()],
        }
    }
}

/// Every status the TaskDB holds, in the order they are checked and reported.
const ALL: [TaskStatus; 5] = [
    TaskStatus::Pending,
    TaskStatus::Running,
    TaskStatus::Succeeded,
    TaskStatus::Failed,
    TaskStatus::FailedFinal,
];

impl TaskStatuses {
    /// The values read as `status`.
    pub fn values(&self, status: TaskStatus) -> &[String] {
        match status {
            TaskStatus::Pending => &self.pending,
            TaskStatus::Running => &self.running,
            TaskStatus::Succeeded => &self.succeeded,
            TaskStatus::FailedFinal => &self.failed_final,
            _ => &self.failed,
        }
    }

    /// The values read as `status`, to be replaced.
    pub fn values_mut(&mut self, status: TaskStatus) -> &mut Vec<String> {
        match status {
            TaskStatus::Pending => &mut self.pending,
            TaskStatus::Running => &mut self.running,
            TaskStatus::Succeeded => &mut self.succeeded,
            TaskStatus::FailedFinal => &mut self.failed_final,
            _ => &mut self.failed,
        }
    }

    /// The status a TaskDB value is read as, if any.
    pub fn parse(&self, value: &str) -> Option<TaskStatus> {
        ALL.into_iter()
            .find(|s| self.values(*s).iter().any(|v| v == value))
    }

    /// The value written for `status` (its first).
    pub fn written(&self, status: TaskStatus) -> &str {
        self.values(status).first().map_or("", String::as_str)
    }

    /// Every configured value, checked: see the type's documentation.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::invalid_input(msg).with_backend(BACKEND));
        let mut seen: Vec<(&str, TaskStatus)> = Vec::new();
        for s in ALL {
            let name = status_name(s);
            if self.values(s).is_empty() {
                return bad(format!(
                    "postgres.statuses.{name}: at least one value is needed"
                ));
            }
            for v in self.values(s) {
                let ok = !v.is_empty()
                    && v.len() <= MAX_VALUE
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
                if !ok {
                    return bad(format!(
                        "postgres.statuses.{name}: {} is not a status value (1-{MAX_VALUE} of A-Z a-z 0-9 _ - . :)",
                        describe(v)
                    ));
                }
                if let Some((_, other)) = seen.iter().find(|(w, _)| w == v) {
                    return bad(format!(
                        "postgres.statuses.{name}: {v:?} is already read as {}",
                        status_name(*other)
                    ));
                }
                seen.push((v, s));
            }
        }
        Ok(())
    }

    /// `{col} = 'v'` for a single value (so an index on the column orders the rows), `{col}
    /// IN ('v', 'w')` for several, over every value of `statuses`. Only after [`Self::validate`].
    pub(crate) fn sql_is(&self, col: &str, statuses: &[TaskStatus]) -> String {
        let vals: Vec<String> = statuses
            .iter()
            .flat_map(|s| self.values(*s))
            .map(|v| literal(v))
            .collect();
        match vals.as_slice() {
            [one] => format!("{col} = {one}"),
            many => format!("{col} IN ({})", many.join(", ")),
        }
    }

    /// The SQL literal of the value written for `status`. Only after [`Self::validate`].
    pub(crate) fn sql_written(&self, status: TaskStatus) -> String {
        literal(self.written(status))
    }
}

/// The configuration's name of a status.
pub(crate) fn status_name(s: TaskStatus) -> &'static str {
    match s {
        TaskStatus::Pending => "pending",
        TaskStatus::Running => "running",
        TaskStatus::Succeeded => "succeeded",
        TaskStatus::FailedFinal => "failed_final",
        _ => "failed",
    }
}

/// A validated value as a SQL string literal (its characters need no escaping; quotes are
/// doubled all the same).
fn literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped() -> TaskStatuses {
        let mut s = TaskStatuses::default();
        *s.values_mut(TaskStatus::Failed) = vec!["FAILED".into(), "error".into()];
        *s.values_mut(TaskStatus::Pending) = vec!["queued".into(), "retry".into()];
        s
    }

    #[test]
    fn values_are_read_as_their_status_and_the_first_is_written() {
        let s = mapped();
        s.validate().unwrap();
        assert_eq!(s.parse("error"), Some(TaskStatus::Failed));
        assert_eq!(s.parse("FAILED"), Some(TaskStatus::Failed));
        assert_eq!(s.parse("failed"), None);
        assert_eq!(s.parse("retry"), Some(TaskStatus::Pending));
        assert_eq!(s.written(TaskStatus::Pending), "queued");
        assert_eq!(s.written(TaskStatus::FailedFinal), "failed_final");
        assert_eq!(
            s.sql_is("\"st\"", &[TaskStatus::Failed, TaskStatus::FailedFinal]),
            "\"st\" IN ('FAILED', 'error', 'failed_final')"
        );
        assert_eq!(
            s.sql_is("\"st\"", &[TaskStatus::Succeeded]),
            "\"st\" = 'succeeded'"
        );
        assert_eq!(s.sql_written(TaskStatus::Pending), "'queued'");
    }

    #[test]
    fn a_value_that_is_empty_hostile_or_under_two_statuses_is_refused() {
        for (status, values, why) in [
            (TaskStatus::Failed, vec![], "at least one value"),
            (
                TaskStatus::Failed,
                vec!["".to_owned()],
                "not a status value",
            ),
            (
                TaskStatus::Failed,
                vec!["x' OR '1'='1".to_owned()],
                "not a status value",
            ),
            (
                TaskStatus::Failed,
                vec!["a".repeat(65)],
                "not a status value",
            ),
            (
                TaskStatus::Failed,
                vec!["fa\u{202e}iled".to_owned()],
                "not a status value",
            ),
            (
                TaskStatus::Failed,
                vec!["succeeded".to_owned()],
                "already read as succeeded",
            ),
        ] {
            let mut s = TaskStatuses::default();
            *s.values_mut(status) = values.clone();
            let e = s.validate().unwrap_err().to_string();
            assert!(
                e.contains(why) && e.contains("postgres.statuses.failed"),
                "{values:?}: {e}"
            );
            assert!(!e.contains('\u{202e}'), "{e}");
        }
    }
}
