//! The conformance suite against every in-memory backend.

use flowfail_core::conformance;
use flowfail_core::memory::*;

#[tokio::test]
async fn log_source() {
    conformance::log_source(&MemoryLogSource::new()).await;
}

#[tokio::test]
async fn task_store() {
    conformance::task_store(&MemoryTaskStore::new()).await;
}

#[tokio::test]
async fn bundle_store() {
    conformance::bundle_store(&MemoryBundleStore::new()).await;
}

#[tokio::test]
async fn quota_checker() {
    conformance::quota_checker(&conformance::MemoryQuotaFixture::default()).await;
}

#[tokio::test]
async fn status_page() {
    conformance::status_page(&conformance::MemoryStatusFixture::default()).await;
}

#[tokio::test(start_paused = true)]
async fn deployment_controller() {
    conformance::deployment_controller(&conformance::MemoryDeploymentFixture::default()).await;
}

#[tokio::test]
async fn pager() {
    conformance::pager(&MemoryPager::new(["on_call"]), "on_call").await;
}

#[tokio::test]
async fn notifier() {
    conformance::notifier(&MemoryNotifier::new()).await;
}

#[tokio::test]
async fn incident_store() {
    conformance::incident_store(&MemoryIncidentStore::new()).await;
}

#[tokio::test]
async fn tracker() {
    conformance::tracker(&MemoryTracker::new()).await;
}
