//! The incident tracker (GitHub Issues, Jira): the [`Tracker`] port.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// What flowfail files for one incident: its key, a title, and a Markdown body (the record, or
/// the state so far of an open incident).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IssueText {
    /// The incident key: the issue is found again by it.
    pub incident_key: String,
    /// One line.
    pub title: String,
    /// Markdown.
    pub body: String,
    /// The incident has settled: its record is final.
    pub settled: bool,
}

impl IssueText {
    /// A text for `incident_key`.
    pub fn new(
        incident_key: impl Into<String>,
        title: impl Into<String>,
        body: impl Into<String>,
        settled: bool,
    ) -> Self {
        IssueText {
            incident_key: incident_key.into(),
            title: title.into(),
            body: body.into(),
            settled,
        }
    }
}

/// An issue in the tracker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TrackerIssue {
    /// The tracker's id (GitHub's issue number, Jira's issue key).
    pub id: String,
    /// Where a person reads it.
    pub url: String,
    /// The incident key it was filed for.
    pub incident_key: String,
    /// It carries the settled record (closed on GitHub, labelled on Jira).
    pub settled: bool,
}

impl TrackerIssue {
    /// An issue.
    pub fn new(
        id: impl Into<String>,
        url: impl Into<String>,
        incident_key: impl Into<String>,
        settled: bool,
    ) -> Self {
        TrackerIssue {
            id: id.into(),
            url: url.into(),
            incident_key: incident_key.into(),
            settled,
        }
    }
}

/// The incident tracker: one issue per incident, found again by the incident key (never from
/// memory of this process, so a restarted process finds the issue an earlier one filed).
#[async_trait]
pub trait Tracker: Send + Sync + Debug + 'static {
    /// The issues filed for `incident_key`, the first filed first; empty when there is none.
    ///
    /// **Behavior**
    /// 1. An issue [filed](Tracker::file) for a key is found by that key, by any instance
    ///    over the same tracker, and by no other key (not even one that contains it).
    /// 2. Issues that are not flowfail's are never returned.
    async fn find(&self, incident_key: &str) -> Result<Vec<TrackerIssue>>;

    /// Files `text` as a new issue.
    ///
    /// **Behavior**
    /// 1. The issue is found by the text's key afterwards, with the text's `settled`.
    async fn file(&self, text: &IssueText) -> Result<TrackerIssue>;

    /// Replaces `issue`'s title and text with `text`'s; a settled text marks the issue
    /// settled and leaves a comment saying so.
    ///
    /// **Behavior**
    /// 1. A settled text's issue is found settled afterwards.
    /// 2. An issue that does not exist is `NotFound`.
    async fn update(&self, issue: &TrackerIssue, text: &IssueText) -> Result<TrackerIssue>;

    /// Marks `duplicate` (a second issue for the same incident, filed by a replica at the
    /// same time) as a duplicate of `of`: no longer found by the key, with a comment linking
    /// `of`.
    ///
    /// **Behavior**
    /// 1. Afterwards [`Tracker::find`] returns `of` and not `duplicate`.
    async fn retire(&self, duplicate: &TrackerIssue, of: &TrackerIssue) -> Result<()>;
}
