//! P10 in `docs/BENCHMARKS.md`: what one incident pass costs on the live stack with 10,000
//! failed tasks — 5,000 timeouts (each with its context bundle in S3) and 5,000 503s — read
//! by the real `flowfail run` from PostgreSQL, the local AWS API, the fake Kubernetes API
//! server and local HTTP peers. Passes 5 s apart (the default poll), in shadow mode so that
//! every pass sees the same world.
//!
//! Per pass: its duration (the service's own histogram), the reads it made by port
//! (`flowfail_port_reads_total`), the requests that reached the quota API, the status pages
//! and the Kubernetes API (counted there), and the bytes the process received from its peers
//! and files (what `read`/`recvfrom`/`recvmsg` returned, under `strace` where installed, over
//! further passes). The first pass, which finds nothing read before, is
//! shown apart from the passes after it.
//!
//! ```bash
//! cargo test --release -p flowfail-cli --test it live_e2e::pass_cost -- --ignored --nocapture
//! ```

use std::collections::BTreeMap;

use chrono::{TimeDelta, Utc};
use flowfail_core::{FlowType, Task, TaskId, TaskStatus};

use super::{Listener, free_port, set_quota, terminate, until, world};

const PORTS: [&str; 6] = ["tasks", "logs", "deployment", "bundles", "quota", "status"];

/// One reading of everything counted.
#[derive(Debug, Clone, Default)]
struct Sample {
    passes: f64,
    seconds: f64,
    reads: BTreeMap<&'static str, f64>,
    quota_requests: usize,
    status_requests: usize,
    k8s_requests: usize,
}

/// Bytes the process `pid` received from sockets and files while `strace` (if installed)
/// watched it until `stop` resolved: the sum of what `read`, `recvfrom` and `recvmsg`
/// returned. `None` without strace.
async fn bytes_received(pid: u32, stop: impl std::future::Future<Output = ()>) -> Option<u64> {
    let out = std::env::temp_dir().join(format!("ff-p10-strace-{pid}"));
    let mut strace = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=read,recvfrom,recvmsg", "-o"])
        .arg(&out)
        .arg("-p")
        .arg(pid.to_string())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    stop.await;
    let _ = strace.kill();
    let _ = strace.wait();
    let text = std::fs::read_to_string(&out).ok()?;
    let _ = std::fs::remove_file(&out);
    Some(
        text.lines()
            .filter_map(|l| {
                l.rsplit_once(") = ")?
                    .1
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark (P10): run it with --ignored --nocapture"]
async fn p10_incident_pass_cost_at_10k_failed_tasks() {
    let passes: f64 = std::env::var("FLOWFAIL_P10_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12.0);
    let Some(w) = world("p10").await else {
        return;
    };
    w.k8s
        .add_deployment("default", "flowengine", "flowengine", &BTreeMap::new(), 2);
    set_quota(&w.quota, 35).await;
    let now = Utc::now();
    let task = |i: usize| {
        let (msg, status) = if i.is_multiple_of(2) {
            ("Task timed out after 45.00 seconds", None)
        } else {
            ("HTTP 503 Service Unavailable", Some(503))
        };
        let mut t = Task::new(
            TaskId::parse(&format!("p10-{i}")).unwrap(),
            FlowType::Impl,
            TaskStatus::Failed,
            now - TimeDelta::seconds(300) + TimeDelta::milliseconds(i as i64 * 25),
        )
        .with_error(msg, status);
        t.finished_at = Some(t.created_at + TimeDelta::seconds(5));
        t
    };
    let all: Vec<Task> = (0..10_000).map(task).collect();
    for chunk in all.chunks(1000) {
        w.tasks.insert(chunk, &[]).await.unwrap();
    }
    w.seed_tasks(2000, &[]).await;
    // The timeouts' bundles: 20 kB each, under the prune threshold.
    for i in (0..10_000).step_by(2) {
        w.put_bundle(&format!("p10-{i}"), 20_000).await;
    }
    w.put_logs(&[(2, "Task timed out after 45.00 seconds"), (1, "HTTP 503")])
        .await;
    let port = free_port();
    let mut p = w.run_config(&w.config_with("shadow", 5, Some(port)), "p10");
    let pid = p.id();
    let l = Listener::new(port);
    let sample = || async {
        let mut s = Sample {
            passes: l.metric("flowfail_passes_total{kind=\"incident\"}").await,
            seconds: l
                .metric("flowfail_pass_duration_seconds_sum{kind=\"incident\"}")
                .await,
            quota_requests: w.quota.received_requests().await.map_or(0, |r| r.len()),
            status_requests: w.status.received_requests().await.map_or(0, |r| r.len()),
            k8s_requests: w.k8s.requests().len(),
            ..Sample::default()
        };
        for port in PORTS {
            let series = format!("flowfail_port_reads_total{{kind=\"incident\",port=\"{port}\"}}");
            s.reads.insert(port, l.metric(&series).await);
        }
        s
    };
    until(&w, 60, "a first idle pass", &mut p, "p10", || async {
        l.metric("flowfail_passes_total{kind=\"idle\"}").await >= 1.0
    })
    .await;
    let before = sample().await;
    // The first sample with at least `n` incident passes.
    let after = |n: f64, secs: u64| {
        let sample = &sample;
        let w = &w;
        async move {
            let start = std::time::Instant::now();
            loop {
                let s = sample().await;
                if s.passes >= n {
                    return s;
                }
                assert!(
                    start.elapsed().as_secs() < secs,
                    "{n} incident passes: {}",
                    w.log("p10")
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    let first = after(1.0, 120).await;
    let last = after(1.0 + passes, 600).await;
    // Bytes received, under strace (it slows the process, so apart from the timing): over
    // the next passes.
    let traced_from = sample().await;
    let traced_passes = 6.0;
    let bytes = bytes_received(pid, async {
        after(traced_from.passes + traced_passes, 300).await;
    })
    .await;
    assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("p10"));
    // What each side of the table covers.
    let per = |a: &Sample, b: &Sample| {
        let n = b.passes - a.passes;
        let mut row = format!(
            "passes {n}: {:.0} ms a pass",
            (b.seconds - a.seconds) / n * 1e3
        );
        for port in PORTS {
            row += &format!(", {port} {:.1}", (b.reads[port] - a.reads[port]) / n);
        }
        row += &format!(
            "; at the peers: quota {:.2}, status pages {:.2}, Kubernetes {:.2} requests",
            (b.quota_requests - a.quota_requests) as f64 / n,
            (b.status_requests - a.status_requests) as f64 / n,
            (b.k8s_requests - a.k8s_requests) as f64 / n,
        );
        row
    };
    println!("P10, 10,000 failed tasks (5,000 timeouts with bundles), a pass every 5 s:");
    println!("  first incident pass: {}", per(&before, &first));
    println!("  the passes after it: {}", per(&first, &last));
    match bytes {
        Some(b) => println!(
            "  bytes the process received a pass (strace, {traced_passes} passes): {:.1} kB",
            b as f64 / traced_passes / 1e3
        ),
        None => println!("  bytes received: strace is not installed"),
    }
    // The passes after the first read no bundle again: each was measured once.
    let bundles_after =
        (last.reads["bundles"] - first.reads["bundles"]) / (last.passes - first.passes);
    assert!(first.reads["bundles"] > 0.0, "{first:?}");
    assert!(
        bundles_after < first.reads["bundles"] / 10.0,
        "{first:?} {last:?}"
    );
}
