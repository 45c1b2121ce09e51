//! In-memory [`Pager`](crate::ports::Pager) and [`Notifier`](crate::ports::Notifier).

use super::*;

/// In-memory [`Pager`]: pages are deduplicated by key; only configured targets are accepted.
/// Every page that reaches it is kept ([`MemoryPager::deliveries`]), a repeated key too.
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
    /// Pages delivered, the first of each key (deduplicated ones excluded).
    pub fn pages(&self) -> Vec<Page> {
        first_per_key(&lock(&self.pages), |p| &p.dedup_key)
    }
    /// Every page that reached the pager, in order, a repeated key (answered
    /// [`Delivery::Deduplicated`]) included.
    pub fn deliveries(&self) -> Vec<Page> {
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
            let seen = pages.iter().any(|p| p.dedup_key == page.dedup_key);
            pages.push(page.clone());
            if seen {
                Delivery::Deduplicated
            } else {
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

/// In-memory [`Notifier`], deduplicated by key; every notification that reaches it is kept
/// ([`MemoryNotifier::deliveries`]).
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
    /// Notifications delivered, the first of each key.
    pub fn sent(&self) -> Vec<Notification> {
        first_per_key(&lock(&self.sent), |n| &n.dedup_key)
    }
    /// Every notification that reached the notifier, in order, a repeated key included.
    pub fn deliveries(&self) -> Vec<Notification> {
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
            let seen = sent.iter().any(|s| s.dedup_key == n.dedup_key);
            sent.push(n.clone());
            if seen {
                Delivery::Deduplicated
            } else {
                Delivery::Sent
            }
        };
        t.finish("notifier.notify", d)
    }
}

/// The first item of each key, in order.
fn first_per_key<T: Clone>(items: &[T], key: impl Fn(&T) -> &String) -> Vec<T> {
    let mut seen = HashSet::new();
    items
        .iter()
        .filter(|i| seen.insert(key(i).clone()))
        .cloned()
        .collect()
}
