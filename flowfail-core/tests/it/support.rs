//! Helpers shared by the scenario-driven integration tests of this crate.

use flowfail_core::replay::Scenario;

/// A scenario of `testdata/scenarios/` by name (or of its `extra/` folder).
pub(crate) fn load(name: &str) -> Scenario {
    let dir = format!("{}/../testdata/scenarios", env!("CARGO_MANIFEST_DIR"));
    let p = if std::path::Path::new(&format!("{dir}/{name}.json")).exists() {
        format!("{dir}/{name}.json")
    } else {
        format!("{dir}/extra/{name}.json")
    };
    Scenario::from_json(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Runs `f` to completion on a current-thread runtime with tokio's clock paused.
pub(crate) fn paused<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(f)
}

/// Every mutating call to a port of the world other than the ledger.
pub(crate) fn world_mutations(
    w: &flowfail_core::memory::World,
) -> Vec<flowfail_core::memory::Call> {
    [
        w.tasks.calls().mutations(),
        w.bundles.calls().mutations(),
        w.deployment.calls().mutations(),
        w.pager.calls().mutations(),
        w.notifier.calls().mutations(),
    ]
    .concat()
}
