//! In-memory [`Pager`](crate::ports::Pager) and [`Notifier`](crate::ports::Notifier).

use super::*;

/// In-memory [`Pager`]: pages are deduplicated by key; only configured targets are accepted.
#[derive(Debug, Clone)]
pub struct MemoryPager {
    targets: Arc<HashSet<String>>,
    pages: Arc<Mutex<Vec<Page>>>,
    resolved: Arc<Mutex<Vec<String>>>,
    faults: Faults,
    log: CallLog,
}

impl MemoryPager {
    /// A pager that accepts these targets.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(targets: I) -> Self {
        MemoryPager {
            targets: Arc::new(targets.into_iter().map(Into::into).collect()),
            pages: Arc::default(),
            resolved: Arc::default(),
            faults: Faults::default(),
            log: CallLog::default(),
        }
    }
    common_accessors!();
    /// Pages delivered (deduplicated ones excluded).
    pub fn pages(&self) -> Vec<Page> {
        lock(&self.pages).clone()
    }
    /// Keys resolved.
    pub fn resolved(&self) -> Vec<String> {
        lock(&self.resolved).clone()
    }
}

#[async_trait]
impl Pager for MemoryPager {
    async fn page(&self, page: &Page) -> Result<Delivery> {
        let t = enter(&self.log, &self.faults, "pager.page", true, || {
            format!("{} {}", page.target, page.dedup_key)
        })
        .await?;
        if !self.targets.contains(&page.target) {
            return Err(
                Error::refused(format!("page target {:?} is not configured", page.target))
                    .with_operation("pager.page")
                    .with_backend(BACKEND),
            );
        }
        let d = {
            let mut pages = lock(&self.pages);
            if pages.iter().any(|p| p.dedup_key == page.dedup_key) {
                Delivery::Deduplicated
            } else {
                pages.push(page.clone());
                Delivery::Sent
            }
        };
        t.finish("pager.page", d)
    }

    async fn resolve(&self, dedup_key: &str) -> Result<()> {
        let t = enter(&self.log, &self.faults, "pager.resolve", true, || {
            dedup_key.to_owned()
        })
        .await?;
        lock(&self.resolved).push(dedup_key.to_owned());
        t.finish("pager.resolve", ())
    }
}

/// In-memory [`Notifier`], deduplicated by key.
#[derive(Debug, Clone, Default)]
pub struct MemoryNotifier {
    sent: Arc<Mutex<Vec<Notification>>>,
    faults: Faults,
    log: CallLog,
}

impl MemoryNotifier {
    /// A notifier.
    pub fn new() -> Self {
        Self::default()
    }
    common_accessors!();
    /// Notifications delivered.
    pub fn sent(&self) -> Vec<Notification> {
        lock(&self.sent).clone()
    }
}

#[async_trait]
impl Notifier for MemoryNotifier {
    async fn notify(&self, n: &Notification) -> Result<Delivery> {
        let t = enter(&self.log, &self.faults, "notifier.notify", true, || {
            format!("{} {}", n.audience, n.dedup_key)
        })
        .await?;
        let d = {
            let mut sent = lock(&self.sent);
            if sent.iter().any(|s| s.dedup_key == n.dedup_key) {
                Delivery::Deduplicated
            } else {
                sent.push(n.clone());
                Delivery::Sent
            }
        };
        t.finish("notifier.notify", d)
    }
}
