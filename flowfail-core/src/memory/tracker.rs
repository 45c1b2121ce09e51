//! In-memory [`Tracker`](crate::ports::Tracker).

use super::*;
use crate::ports::{IssueText, Tracker, TrackerIssue};

/// One issue as the in-memory tracker keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryIssue {
    /// Its number.
    pub number: u64,
    /// What was filed or last written.
    pub text: IssueText,
    /// Comments, oldest first.
    pub comments: Vec<String>,
    /// Retired as a duplicate.
    pub duplicate: bool,
}

/// In-memory [`Tracker`]: issues numbered from 1, every write kept ([`MemoryTracker::issues`]).
#[derive(Debug, Clone, Default)]
pub struct MemoryTracker {
    issues: Arc<Mutex<Vec<MemoryIssue>>>,
    faults: Faults,
    log: CallLog,
}

impl MemoryTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }
    common_accessors!();
    /// Every issue, duplicates included, in filing order.
    pub fn issues(&self) -> Vec<MemoryIssue> {
        lock(&self.issues).clone()
    }

    fn issue(i: &MemoryIssue) -> TrackerIssue {
        TrackerIssue::new(
            i.number.to_string(),
            format!("memory://issues/{}", i.number),
            i.text.incident_key.clone(),
            i.text.settled,
        )
    }
}

#[async_trait]
impl Tracker for MemoryTracker {
    async fn find(&self, incident_key: &str) -> Result<Vec<TrackerIssue>> {
        let t = enter(&self.log, &self.faults, "tracker.find", false, || {
            incident_key.to_owned()
        })
        .await?;
        let found = lock(&self.issues)
            .iter()
            .filter(|i| !i.duplicate && i.text.incident_key == incident_key)
            .map(Self::issue)
            .collect();
        t.finish("tracker.find", found)
    }

    async fn file(&self, text: &IssueText) -> Result<TrackerIssue> {
        let t = enter(&self.log, &self.faults, "tracker.file", true, || {
            text.incident_key.clone()
        })
        .await?;
        let filed = {
            let mut issues = lock(&self.issues);
            let i = MemoryIssue {
                number: issues.len() as u64 + 1,
                text: text.clone(),
                comments: Vec::new(),
                duplicate: false,
            };
            issues.push(i.clone());
            Self::issue(&i)
        };
        t.finish("tracker.file", filed)
    }

    async fn update(&self, issue: &TrackerIssue, text: &IssueText) -> Result<TrackerIssue> {
        let t = enter(&self.log, &self.faults, "tracker.update", true, || {
            issue.id.clone()
        })
        .await?;
        let updated = {
            let mut issues = lock(&self.issues);
            let Some(i) = issues.iter_mut().find(|i| i.number.to_string() == issue.id) else {
                return Err(not_found("tracker.update", format!("issue {}", issue.id)));
            };
            let was = i.text.settled;
            i.text = IssueText {
                settled: text.settled || was,
                ..text.clone()
            };
            if text.settled && !was {
                i.comments.push("settled".to_owned());
            }
            Self::issue(i)
        };
        t.finish("tracker.update", updated)
    }

    async fn retire(&self, duplicate: &TrackerIssue, of: &TrackerIssue) -> Result<()> {
        let t = enter(&self.log, &self.faults, "tracker.retire", true, || {
            format!("{} of {}", duplicate.id, of.id)
        })
        .await?;
        {
            let mut issues = lock(&self.issues);
            let Some(i) = issues
                .iter_mut()
                .find(|i| i.number.to_string() == duplicate.id)
            else {
                return Err(not_found(
                    "tracker.retire",
                    format!("issue {}", duplicate.id),
                ));
            };
            i.duplicate = true;
            i.comments.push(format!("duplicate of {}", of.id));
        }
        t.finish("tracker.retire", ())
    }
}
