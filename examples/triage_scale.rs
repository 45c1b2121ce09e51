//! P5 in `docs/BENCHMARKS.md`: one observe → triage → decide pass of the responder (dry run)
//! over N failed tasks on the in-memory backends, with its wall time and the process's peak
//! memory.
//!
//! ```bash
//! cargo run --release --example triage_scale -- 10000
//! cargo run --release --example triage_scale -- 100000
//! ```
//!
//! The failed tasks carry the labelled real-world error messages of `testdata/corpus/`, so
//! the pass classifies a realistic mix; a third of them have a context bundle to size.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use flowfail::memory::World;
use flowfail::memory::synthesize_bundle;
use flowfail::respond::Responder;
use flowfail::{
    Clock, FlowType, Policy, Quota, QuotaUsage, Task, TaskId, TaskStatus, VendorHealth,
    VendorStatus,
};

const CORPUS: [&str; 2] = [
    include_str!("../testdata/corpus/errors-sample.jsonl"),
    include_str!("../testdata/corpus/errors-extended.jsonl"),
];

#[path = "support/mod.rs"]
mod support;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = support::number_arg(10_000)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?;
    rt.block_on(run(n))
}

async fn run(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let mut errors: Vec<(String, Option<u16>)> = Vec::new();
    for line in CORPUS.iter().flat_map(|c| c.lines()) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            let status = v["status"].as_u64().and_then(|s| u16::try_from(s).ok());
            errors.push((v["message"].as_str().unwrap_or("").to_owned(), status));
        }
    }
    let start: DateTime<Utc> = "2025-11-13T10:00:00Z".parse()?;
    let clock = Clock::tokio_anchored(start);
    let mut policy = Policy::default();
    policy.triage_limit = n;

    let world = World::new(&policy, clock.clone());
    world.tasks.set_background(9 * n as u64, 0);
    let bundle = synthesize_bundle(&TaskId::parse("t-0")?, 2_000);
    let flows = [
        FlowType::Plan,
        FlowType::Impl,
        FlowType::Review,
        FlowType::Docs,
    ];
    for i in 0..n {
        let id = TaskId::parse(&format!("t-{i:07}"))?;
        let (message, status) = &errors[i % errors.len()];
        let at = start - TimeDelta::seconds(1 + (i % 3000) as i64);
        world.tasks.insert(
            Task::new(id.clone(), flows[i % 4], TaskStatus::Failed, at)
                .with_error(message.clone(), *status),
        );
        if i % 3 == 0 {
            world.bundles.put(&id, bundle.clone());
        }
    }
    world
        .quota
        .set("anthropic", Quota::Known(QuotaUsage::from_ratio(0.35)));
    world
        .status
        .set("anthropic", VendorStatus::new(VendorHealth::Operational));
    let seeded_kib = support::peak_rss_kib();

    let responder = Responder::builder()
        .ports(world.ports())
        .policy(policy)
        .clock(clock)
        .dry_run(true)
        .name("triage-scale")
        .build()?;
    let t = Instant::now();
    let outcome = responder.pass().await?;
    let elapsed = t.elapsed();
    let report = responder.report();
    println!(
        "failed tasks {n}: pass (observe + classify + decide) {:.1} ms; incident open {}; {} decisions; peak RSS {} KiB ({} KiB with the tasks seeded, before the pass)",
        elapsed.as_secs_f64() * 1e3,
        outcome.incident_open,
        report.actions.len(),
        support::peak_rss_kib(),
        seeded_kib,
    );
    // Nothing waits in a dry run; a stray timer would show up here.
    tokio::time::sleep(Duration::from_millis(1)).await;
    Ok(())
}
