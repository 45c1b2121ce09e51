//! What a pass writes to the ledger: its timeline entries, the state and, when the incident
//! settled, the post-incident record; what a pass could not write is kept for the next one
//! (or, the incident closed meanwhile, written late), never written twice.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{Reconciled, Responder, contain, dedup_key, guard, lock};
use crate::decide::IncidentState;
use crate::error::Error;
use crate::model::Timestamp;
use crate::ports::{Epoch, Op, TimelineEntry, TimelineKind};

/// How often, at most, an unchanged decision adds a `sample` of the alert's numbers.
const SAMPLE_EVERY_S: i64 = 60;

impl Responder {
    /// Writes the pass to the ledger: timeline entries, the state, and — when the incident
    /// settled — the post-incident record. A stale epoch means another replica took over this
    /// pass: the next pass re-reads.
    pub(super) async fn record(
        &self,
        next: &IncidentState,
        epoch: Epoch,
        entries: &[TimelineEntry],
        settled: bool,
        now: Timestamp,
    ) -> bool {
        let appended = AtomicBool::new(false);
        let write = async {
            let state_json = serde_json::to_value(next)?;
            if let Err(e) = self
                .call(
                    Op::IncidentAppend,
                    self.ports.incidents.append(&next.key, epoch, entries),
                )
                .await
                && !self.appended_anyway(&next.key, entries, &e).await
            {
                return Err(e);
            }
            appended.store(true, Ordering::SeqCst);
            self.call(
                Op::IncidentSaveState,
                self.ports
                    .incidents
                    .save_state(&next.key, epoch, &state_json),
            )
            .await?;
            if settled {
                // The record is the ledger's whole timeline, not only this process's passes.
                let timeline = self
                    .call(Op::IncidentGet, self.ports.incidents.get(&next.key))
                    .await?
                    .timeline;
                let builder = lock(&self.inner).report.with_ledger_timeline(&timeline);
                let report = builder.build(Some(next), now);
                let post = serde_json::to_value(&report.post_incident)?;
                self.call(
                    Op::IncidentClose,
                    self.ports.incidents.close(&next.key, epoch, now, &post),
                )
                .await?;
            }
            Ok::<(), Error>(())
        };
        let write = contain(write).await.unwrap_or_else(|what| {
            Err(Error::new(
                crate::ErrorKind::Unexpected,
                format!("panicked (contained): {what}"),
            ))
        });
        match write {
            Ok(()) => true,
            Err(e) => {
                self.note_gap(format!("incident ledger write: {e}"));
                if !appended.load(Ordering::SeqCst) {
                    self.keep_unrecorded(&next.key, entries.to_vec());
                }
                false
            }
        }
    }

    /// Whether timeline entries whose append failed with `e` are in the ledger all the same
    /// (the reply was lost): the timeline ends with them. Appending them again would record
    /// every action in them twice.
    pub(super) async fn appended_anyway(
        &self,
        key: &str,
        entries: &[TimelineEntry],
        e: &Error,
    ) -> bool {
        if entries.is_empty() || e.kind() == crate::ErrorKind::Conflict {
            return false;
        }
        let Ok(rec) = self
            .call(Op::IncidentGet, self.ports.incidents.get(key))
            .await
        else {
            return false;
        };
        let Some(tail) = rec
            .timeline
            .len()
            .checked_sub(entries.len())
            .map(|from| &rec.timeline[from..])
        else {
            return false;
        };
        // A store may keep timestamps to the microsecond.
        tail.iter().zip(entries).all(|(a, b)| {
            a.kind == b.kind
                && a.detail == b.detail
                && (a.at - b.at)
                    .num_microseconds()
                    .is_some_and(|d| d.abs() < 1000)
        })
    }

    /// Keeps timeline entries the ledger did not take, for the next pass with a claim.
    pub(super) fn keep_unrecorded(&self, key: &str, entries: Vec<TimelineEntry>) {
        if entries.is_empty() {
            return;
        }
        let mut inner = lock(&self.inner);
        match &mut inner.unrecorded {
            Some((k, kept)) if k == key => kept.extend(entries),
            other => *other = Some((key.to_owned(), entries)),
        }
    }

    /// The entries kept for `key` by [`Responder::keep_unrecorded`], taken out.
    pub(super) fn take_unrecorded(&self, key: &str) -> Vec<TimelineEntry> {
        let mut inner = lock(&self.inner);
        match inner.unrecorded.take() {
            Some((k, kept)) if k == key => kept,
            other => {
                inner.unrecorded = other;
                Vec::new()
            }
        }
    }

    /// What an earlier pass of an incident closed since could not write (it was superseded
    /// before its ledger write): appended to the closed incident's timeline under its last
    /// epoch, unless it is there already. Nothing claims a closed incident, so no writer can
    /// race this append; what happened in the world stays in the record.
    pub(super) async fn record_late(&self, key: &str) {
        let kept = self.take_unrecorded(key);
        if kept.is_empty() {
            return;
        }
        let write = async {
            let rec = self
                .call(Op::IncidentGet, self.ports.incidents.get(key))
                .await?;
            let late = not_yet_recorded(&rec.timeline, kept.clone());
            if late.is_empty() {
                return Ok(());
            }
            self.call(
                Op::IncidentAppend,
                self.ports.incidents.append(key, rec.epoch, &late),
            )
            .await
        };
        if let Err(e) = write.await {
            self.note_gap(format!(
                "incident ledger: could not record {} late entr{} in closed incident {key}: {e}",
                kept.len(),
                if kept.len() == 1 { "y" } else { "ies" }
            ));
        }
    }

    /// Under this pass's claim (so a superseded pass can no longer write after the look): the
    /// entries an earlier pass of this incident could not write, and what reconciliation found
    /// of a reserved rollback, first in this pass's entries — each unless the ledger's timeline
    /// already records the same action with the same outcome (another process did meanwhile).
    pub(super) async fn record_pending(
        &self,
        key: &str,
        now: Timestamp,
        entries: &mut Vec<TimelineEntry>,
        found: Option<Reconciled>,
    ) {
        use crate::report::Outcome;
        let kept = self.take_unrecorded(key);
        if kept.is_empty() && found.is_none() {
            return;
        }
        // Unreadable, nothing is taken as recorded: an action twice rather than not at all.
        let timeline = match self
            .call(Op::IncidentGet, self.ports.incidents.get(key))
            .await
        {
            Ok(r) => r.timeline,
            Err(_) => Vec::new(),
        };
        let mut out = not_yet_recorded(&timeline, kept);
        let actions = recorded_actions(&timeline);
        if let Some(Reconciled {
            fields,
            outcome,
            detail,
        }) = found
        {
            // A rollback recorded as applied, or a never-reached one recorded at all, is not
            // recorded again.
            let mut rollbacks = actions.iter().filter(|a| a["action"]["kind"] == "rollback");
            let known = match outcome {
                Outcome::Failed => rollbacks.next().is_some(),
                _ => rollbacks.any(|a| a["outcome"] == "applied"),
            };
            if !known {
                out.push(TimelineEntry::new(
                    now,
                    TimelineKind::Action,
                    serde_json::json!({"action": &fields, "outcome": outcome, "detail": &detail}),
                ));
                lock(&self.inner)
                    .report
                    .action(now, fields, outcome, Some(detail));
            }
        }
        out.append(entries);
        *entries = out;
    }

    /// Notes the pass's decision in its timeline entries when it differs from the last one
    /// this process recorded for the incident (a steady incident does not write the same
    /// decision every pass); an unchanged decision adds a `sample` of the alert's numbers at
    /// most once a minute, for the failure rate over the incident's course.
    pub(super) fn note_decision(
        &self,
        key: &str,
        d: &crate::decide::Decision,
        (held, gaps): (Vec<String>, &[String]),
        paused: bool,
        now: Timestamp,
        entries: &mut Vec<TimelineEntry>,
    ) {
        use crate::report::{Conduct, DecisionRecord};
        let mode = if self.shadow {
            Conduct::Shadow
        } else if paused {
            Conduct::Paused
        } else {
            Conduct::Act
        };
        let rec = DecisionRecord::of(d, mode, held).with_gaps(gaps);
        let signature = rec.signature();
        let mut inner = lock(&self.inner);
        match &mut inner.last_decision {
            Some(last) if last.key == key && last.signature == signature => {
                if now - last.sampled_at >= chrono::TimeDelta::seconds(SAMPLE_EVERY_S)
                    && let Some(a) = d.alert
                {
                    last.sampled_at = now;
                    entries.push(TimelineEntry::new(
                        now,
                        TimelineKind::Sample,
                        serde_json::to_value(a).unwrap_or_default(),
                    ));
                }
            }
            last => {
                tracing::info!(incident = %key, mode = mode.as_str(), decision = %crate::text::clean_text(&rec.summary()), "decision");
                entries.push(TimelineEntry::new(
                    now,
                    TimelineKind::Decision,
                    serde_json::to_value(&rec).unwrap_or_default(),
                ));
                *last = Some(super::LastDecision {
                    key: key.to_owned(),
                    signature,
                    sampled_at: now,
                });
            }
        }
    }

    /// Resolves the pages of a resolved incident, each through the guard.
    pub(super) async fn resolve_pages(
        &self,
        next: &IncidentState,
        fence: &guard::Fence,
        now: Timestamp,
    ) {
        let pages = next.effects.iter().filter(|k| {
            matches!(
                crate::decide::effects::EffectKey::parse(k),
                crate::decide::effects::EffectKey::Page { .. }
            )
        });
        for k in pages {
            let dk = dedup_key(&next.key, k);
            let _ = self
                .guarded(fence, Op::PagerResolve, guard::Budget::Exempt, now, || {
                    self.read(Op::PagerResolve, || self.ports.pager.resolve(&dk))
                })
                .await;
        }
    }
}

/// The action entries of a timeline.
fn recorded_actions(timeline: &[TimelineEntry]) -> Vec<&serde_json::Value> {
    timeline
        .iter()
        .filter(|e| e.kind == TimelineKind::Action)
        .map(|e| &e.detail)
        .collect()
}

/// The entries of `kept` the timeline does not hold yet: an action is recorded when the
/// timeline has the same action with the same outcome (another process wrote it meanwhile).
fn not_yet_recorded(timeline: &[TimelineEntry], kept: Vec<TimelineEntry>) -> Vec<TimelineEntry> {
    let actions = recorded_actions(timeline);
    let recorded = |d: &serde_json::Value| {
        actions
            .iter()
            .any(|a| a["action"] == d["action"] && a["outcome"] == d["outcome"])
    };
    kept.into_iter()
        .filter(|e| e.kind != TimelineKind::Action || !recorded(&e.detail))
        .collect()
}
