//! The incident tracker kept in step with the ledger: [`sync`] files one issue per incident
//! (when it opens, or when it closes) and writes the settled record into it.
//!
//! The ledger is the truth and the tracker is found again by the incident key each time, so a
//! restarted process finds the issue an earlier one filed, and two replicas that file the same
//! incident at once leave one issue: the first filed stays, the other is
//! [retired](crate::ports::Tracker::retire) as its duplicate.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use flowfail_core::memory::MemoryTracker;
//! use flowfail_core::ports::IssueText;
//! use flowfail_core::tracking::{FileWhen, Synced, sync_text};
//!
//! let tracker = MemoryTracker::new();
//! let open = IssueText::new("flowengine:2026-12-07T10:00:00Z", "Incident", "so far", false);
//! assert!(matches!(sync_text(&tracker, &open, FileWhen::Open).await?, Synced::Filed(_)));
//! assert!(matches!(sync_text(&tracker, &open, FileWhen::Open).await?, Synced::Unchanged(_)));
//! let settled = IssueText::new("flowengine:2026-12-07T10:00:00Z", "Incident: resolved", "record", true);
//! assert!(matches!(sync_text(&tracker, &settled, FileWhen::Open).await?, Synced::Settled(_)));
//! assert_eq!(tracker.issues().len(), 1);
//! # Ok::<(), flowfail_core::Error>(())
//! # }).unwrap();
//! ```

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::history::IncidentView;
use crate::ports::{IssueText, Tracker, TrackerIssue};
use crate::report::Conduct;
use crate::text::clean_text;

/// The tag a tracker finds an incident's issue by: `flowfail-` and the first 16 hex digits of
/// the SHA-256 of its key. Exact (a key that contains another has another tag) and safe in a
/// label, a query or an HTML comment whatever the key holds.
pub fn incident_tag(incident_key: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(incident_key.as_bytes());
    let hex: String = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("flowfail-{hex}")
}

/// When an incident's issue is filed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FileWhen {
    /// When the incident opens (updated with the record when it settles).
    #[default]
    Open,
    /// Only when it has settled, with its record.
    Close,
}

/// What [`sync`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Synced {
    /// Nothing to file yet (an open incident, issues filed when they close).
    NotYet,
    /// The incident's issue was filed now.
    Filed(TrackerIssue),
    /// The issue was there and needed nothing.
    Unchanged(TrackerIssue),
    /// The issue now carries the settled record.
    Settled(TrackerIssue),
}

/// The issue text of an incident: the title names the Deployment's incident, its status and
/// root cause; the body is the record as `flowfail incident KEY --markdown` prints it.
pub fn issue_text(view: &IncidentView) -> IssueText {
    let settled = view.closed_at.is_some();
    let p = &view.report.post_incident;
    let mut title = format!(
        "flowfail incident {}: {}",
        clean_text(&view.key),
        view.status
    );
    if settled && !p.root_cause.is_empty() {
        title.push_str(" — ");
        title.push_str(&clean_text(&p.root_cause));
    }
    let title: String = title.chars().take(200).collect();
    IssueText::new(view.key.clone(), title, view.to_markdown(), settled)
}

/// Brings the tracker in step with `view` ([`sync_text`] of its [`issue_text`]). Shadow
/// incidents are never filed.
pub async fn sync(tracker: &dyn Tracker, view: &IncidentView, when: FileWhen) -> Result<Synced> {
    if view.mode == Conduct::Shadow {
        return Ok(Synced::NotYet);
    }
    sync_text(tracker, &issue_text(view), when).await
}

/// Brings the tracker in step with `text`: finds the incident's issue by its key, retires any
/// duplicate, files the issue if there is none (an open incident only with
/// [`FileWhen::Open`]), and writes a settled text into an issue not yet settled.
pub async fn sync_text(tracker: &dyn Tracker, text: &IssueText, when: FileWhen) -> Result<Synced> {
    let found = tracker.find(&text.incident_key).await?;
    let Some(first) = found.first().cloned() else {
        if !text.settled && when == FileWhen::Close {
            return Ok(Synced::NotYet);
        }
        let filed = tracker.file(text).await?;
        // Another replica may have filed at the same time: the first filed stays.
        let now = tracker.find(&text.incident_key).await?;
        return Ok(match now.first() {
            Some(first) if first.id != filed.id => {
                tracker.retire(&filed, first).await?;
                Synced::Unchanged(first.clone())
            }
            _ => Synced::Filed(filed),
        });
    };
    for dup in &found[1..] {
        tracker.retire(dup, &first).await?;
    }
    if text.settled && !first.settled {
        return Ok(Synced::Settled(tracker.update(&first, text).await?));
    }
    Ok(Synced::Unchanged(first))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::memory::MemoryTracker;

    fn text(settled: bool) -> IssueText {
        IssueText::new("d:1", "t", "b", settled)
    }

    #[tokio::test]
    async fn filed_once_when_it_closes_with_file_when_close() {
        let t = MemoryTracker::new();
        assert_eq!(
            sync_text(&t, &text(false), FileWhen::Close).await.unwrap(),
            Synced::NotYet
        );
        assert!(t.issues().is_empty());
        assert!(matches!(
            sync_text(&t, &text(true), FileWhen::Close).await.unwrap(),
            Synced::Filed(i) if i.settled
        ));
        assert!(matches!(
            sync_text(&t, &text(true), FileWhen::Close).await.unwrap(),
            Synced::Unchanged(_)
        ));
        assert_eq!(t.issues().len(), 1);
        assert!(t.calls().of("tracker.update").is_empty());
    }

    #[tokio::test]
    async fn a_duplicate_filed_by_a_replica_is_retired_and_the_first_settled() {
        let t = MemoryTracker::new();
        t.file(&text(false)).await.unwrap();
        t.file(&text(false)).await.unwrap();
        let Synced::Settled(i) = sync_text(&t, &text(true), FileWhen::Open).await.unwrap() else {
            panic!("not settled");
        };
        assert_eq!(i.id, "1");
        let issues = t.issues();
        assert!(!issues[0].duplicate && issues[0].text.settled);
        assert!(issues[1].duplicate && !issues[1].text.settled);
        assert_eq!(issues[1].comments, ["duplicate of 1"]);
    }
}
