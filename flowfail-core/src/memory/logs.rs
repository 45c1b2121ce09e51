//! In-memory [`LogSource`](crate::ports::LogSource).

use super::*;

/// In-memory [`LogSource`].
#[derive(Debug, Clone, Default)]
pub struct MemoryLogSource {
    events: Arc<Mutex<Vec<LogEvent>>>,
    faults: Faults,
    log: CallLog,
}

impl MemoryLogSource {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }
    common_accessors!();
    /// Adds an event.
    pub fn push(&self, event: LogEvent) {
        let mut e = lock(&self.events);
        e.push(event);
        e.sort_by_key(|e| e.timestamp);
    }
}

#[async_trait]
impl LogSource for MemoryLogSource {
    async fn errors(&self, q: &LogQuery) -> Result<LogBatch> {
        let t = enter(&self.log, &self.faults, "logs.errors", false, || {
            format!("{}..{} {:?}", q.start, q.end, q.pattern)
        })
        .await?;
        let events = lock(&self.events);
        let mut out = Vec::new();
        let mut truncated = false;
        for e in events
            .iter()
            .filter(|e| e.timestamp >= q.start && e.timestamp < q.end)
            .filter(|e| q.matches(&e.message))
        {
            if out.len() == q.max_events {
                truncated = true;
                break;
            }
            out.push(e.clone());
        }
        t.finish("logs.errors", LogBatch::new(out, truncated))
    }
}
