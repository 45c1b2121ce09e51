//! Helpers of the responder: panic containment, dedup keys, timeline matching.

use crate::ports::{TimelineEntry, TimelineKind};

/// Runs `fut`, containing a panic: `Err` carries the panic's message (sanitized).
pub(super) async fn contain<T>(
    fut: impl std::future::Future<Output = T>,
) -> std::result::Result<T, String> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!("contained a panic: {}", crate::model::sanitize(&what, 200));
            crate::model::sanitize(&what, 200)
        })
}

/// The pager dedup key of an effect: `<incident key>:<effect>`, at most 255 bytes (cut at a
/// character boundary).
pub fn dedup_key(incident: &str, effect: &str) -> String {
    let mut k = format!("{incident}:{effect}");
    if k.len() > 255 {
        let mut cut = 255;
        while !k.is_char_boundary(cut) {
            cut -= 1;
        }
        k.truncate(cut);
    }
    k
}

/// The action entries of a timeline.
pub(super) fn recorded_actions(timeline: &[TimelineEntry]) -> Vec<&serde_json::Value> {
    timeline
        .iter()
        .filter(|e| e.kind == TimelineKind::Action)
        .map(|e| &e.detail)
        .collect()
}

/// The entries of `kept` the timeline does not hold yet: an action is recorded when the
/// timeline has the same action with the same outcome (another process wrote it meanwhile).
pub(super) fn not_yet_recorded(
    timeline: &[TimelineEntry],
    kept: Vec<TimelineEntry>,
) -> Vec<TimelineEntry> {
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

#[cfg(test)]
mod tests {
    use super::dedup_key;

    #[test]
    fn dedup_key_is_cut_at_a_character_boundary() {
        let incident = "é".repeat(200);
        let k = dedup_key(&incident, "page:on_call:x");
        assert!(k.len() <= 255);
        assert!(k.starts_with('é'));
        assert_eq!(dedup_key("inc", "page:x"), "inc:page:x");
    }
}
