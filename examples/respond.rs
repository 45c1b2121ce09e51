//! The pilot's timeout incident (Run #2), built in code on the in-memory backends and resolved
//! by the runbook: three tasks time out because their context bundles are over 500 KB; flowfail
//! prunes each to 180 KB (archiving the original first), retries it, and the alert clears.
//!
//! ```text
//! cargo run --example respond
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use flowfail::memory::World;
use flowfail::memory::{MemoryDeployment, synthesize_bundle};
use flowfail::respond::Responder;
use flowfail::{
    Clock, FlowType, LogEvent, Policy, Quota, QuotaUsage, RevisionInfo, Task, TaskId, TaskStatus,
    VendorHealth, VendorStatus,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Virtual time: the whole incident replays instantly.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?;
    rt.block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let start: DateTime<Utc> = "2025-11-13T10:00:00Z".parse()?;
    let clock = Clock::tokio_anchored(start);
    let policy = Policy::default();

    let mut world = World::new(&policy, clock.clone());
    let mut env = BTreeMap::new();
    env.insert("ENABLE_CIRCUIT_BREAKER".to_owned(), "false".to_owned());
    world.deployment = MemoryDeployment::new(
        "flowengine",
        7,
        Some(start - TimeDelta::hours(10)),
        env,
        vec![RevisionInfo::new(6, Some(start - TimeDelta::days(2)))],
        clock.clone(),
    );

    // 150 tasks succeeded in the last hour; three timed out with oversized bundles.
    world.tasks.set_background(150, 0);
    for (i, flow) in [FlowType::Plan, FlowType::Impl, FlowType::Review]
        .into_iter()
        .enumerate()
    {
        let id = TaskId::parse(&format!("t-{i:05}"))?;
        let at = start - TimeDelta::minutes(10 + i as i64);
        let message = "Task timed out after 45.02 seconds";
        world
            .tasks
            .insert(Task::new(id.clone(), flow, TaskStatus::Failed, at).with_error(message, None));
        world.tasks.script_retries(&id, [TaskStatus::Succeeded]);
        world
            .logs
            .push(LogEvent::new(at, format!("ERROR {id} {message}")));
        world
            .bundles
            .put(&id, synthesize_bundle(&id, 734_003 + 1000 * i as u64));
    }
    world
        .quota
        .set("anthropic", Quota::Known(QuotaUsage::from_ratio(0.35)));
    world
        .status
        .set("anthropic", VendorStatus::new(VendorHealth::Operational));
    world
        .status
        .set("openai", VendorStatus::new(VendorHealth::Operational));

    let responder = Responder::builder()
        .ports(world.ports())
        .policy(policy)
        .clock(clock)
        .name("pilot-timeout (Run #2)")
        .build()?;
    let report = responder.run(Duration::from_secs(2 * 3600)).await?;

    print!("{}", report.to_text());
    for id in ["t-00000", "t-00001", "t-00002"] {
        let id = TaskId::parse(id)?;
        let archived = world.bundles.archives(&id).len();
        let size = world.bundles.bytes(&id).map_or(0, |b| b.len());
        println!("bundle {id}: now {size} bytes, {archived} archived original(s)");
    }
    match report.post_incident.mttr_seconds {
        Some(s) if report.resolved => {
            println!("\nresolved: MTTR {s} s (the pilot took 12.3 min by hand)")
        }
        _ => {
            println!("\nnot resolved");
            std::process::exit(1);
        }
    }
    Ok(())
}
