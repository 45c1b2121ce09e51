//! The incident tracker kept in step with the ledger while `flowfail run` runs
//! ([`keep_in_step`]; the tracker itself is `[tracker]`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use flowfail_core::clock::Clock;
use flowfail_core::ports::Tracker;
use flowfail_core::report::Conduct;
use flowfail_core::tracking::{FileWhen, Synced, sync};
use tokio_util::sync::CancellationToken;

use crate::metrics::DeploymentMetrics;
use crate::wire::Controls;

/// How far back incidents are brought in step (one not settled in the tracker by then is
/// left as it is).
const LOOK_BACK: TimeDelta = TimeDelta::days(7);
/// Incidents read per round.
const PER_ROUND: usize = 50;
/// Keys remembered as settled in the tracker (the set is emptied when it is full: they are
/// found settled again by their key).
const REMEMBERED: usize = 4096;

/// Brings the tracker in step with the ledger every `every` until `stop`: each acting
/// incident of the last seven days gets its issue ([`sync`]). A tracker that fails is logged
/// and counted (`flowfail_data_gaps{port="tracker"}`) and tried again next round: the
/// responder never waits for it.
pub(crate) async fn keep_in_step(
    tracker: Arc<dyn Tracker>,
    controls: Controls,
    when: FileWhen,
    every: Duration,
    metrics: DeploymentMetrics,
    stop: CancellationToken,
) {
    let mut known = Known::default();
    loop {
        round(tracker.as_ref(), &controls, when, &metrics, &mut known).await;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// What this process already knows of the tracker: incidents whose issue carries the settled
/// record (nothing more to do), and open incidents whose issue exists (nothing to do until they
/// close). Forgotten on a restart: the issues are then found again by their keys.
#[derive(Default)]
struct Known {
    settled: HashSet<String>,
    filed_open: HashSet<String>,
}

/// One round of [`keep_in_step`]: the tracker is asked only about incidents it may not be in
/// step with (not a lookup per open incident per poll).
async fn round(
    tracker: &dyn Tracker,
    controls: &Controls,
    when: FileWhen,
    metrics: &DeploymentMetrics,
    known: &mut Known,
) {
    let since = Clock::system().now() - LOOK_BACK;
    let lines = match controls.incidents(false, Some(since), PER_ROUND).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "tracker: the ledger could not be read; next round");
            return;
        }
    };
    if known.settled.len() + known.filed_open.len() >= REMEMBERED {
        *known = Known::default();
    }
    for line in lines {
        let open = line.closed_at.is_none();
        if line.mode == Conduct::Shadow
            || known.settled.contains(&line.key)
            || (open && known.filed_open.contains(&line.key))
        {
            continue;
        }
        let view = match controls.incident(&line.key).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(incident = %line.key, error = %e, "tracker: incident not readable; next round");
                continue;
            }
        };
        match sync(tracker, &view, when).await {
            Ok(Synced::Filed(i)) => {
                metrics.tracker_wrote("filed");
                tracing::info!(incident = %line.key, issue = %i.id, url = %i.url, settled = i.settled, "tracker: issue filed");
                if i.settled {
                    known.settled.insert(line.key);
                } else if open {
                    known.filed_open.insert(line.key);
                }
            }
            Ok(Synced::Settled(i)) => {
                metrics.tracker_wrote("settled");
                tracing::info!(incident = %line.key, issue = %i.id, url = %i.url, "tracker: issue updated with the settled record");
                known.filed_open.remove(&line.key);
                known.settled.insert(line.key);
            }
            Ok(Synced::Unchanged(i)) if i.settled => {
                known.settled.insert(line.key);
            }
            Ok(Synced::Unchanged(_)) if open => {
                known.filed_open.insert(line.key);
            }
            Ok(_) => {}
            Err(e) => {
                metrics.tracker_failed();
                tracing::warn!(incident = %line.key, error = %e, "tracker: not brought in step; next round");
            }
        }
    }
}
