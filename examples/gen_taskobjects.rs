//! Writes N deterministic TaskObject files (`task-00000.json`, …) into a directory, for the
//! validation comparison (`scripts/compare.sh`, P3 in `docs/BENCHMARKS.md`).
//!
//! ```bash
//! cargo run --release --example gen_taskobjects -- /tmp/taskobjects 10000
//! ```
//!
//! 98 % are valid v2 TaskObjects of realistic shape (inputs with a few files, a context bundle,
//! a model); every fiftieth is invalid in a way the runbook meets (an unknown flow type, a
//! missing `inputs.repo_url`, a bad sha).

use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().ok_or("usage: gen_taskobjects DIR [N]")?);
    let n: usize = match args.next() {
        Some(a) => a
            .parse()
            .map_err(|_| format!("a count expected, got {a:?}"))?,
        None => 10_000,
    };
    std::fs::create_dir_all(&dir)?;
    let flows = ["plan", "impl", "review", "docs"];
    for i in 0..n {
        let files: Vec<_> = (0..(i % 4))
            .map(|f| json!({"path": format!("src/module_{f}/file_{i}.rs"), "sha": format!("{:040x}", (i as u128 + 1) * 0x9E37_79B9_7F4A_7C15 + f as u128)}))
            .collect();
        let mut task = json!({
            "schema_version": "2.1.0",
            "task_id": format!("t-{i:06}"),
            "flow_type": flows[i % 4],
            "priority": i % 6,
            "created_at": format!("2026-11-13T{:02}:{:02}:{:02}Z", 9 + i / 3600 % 12, i / 60 % 60, i % 60),
            "inputs": {
                "repo_url": format!("https://git.example.com/team-{}/service-{}.git", i % 17, i % 101),
                "instructions": format!("Implement step {i} of the migration plan: update the handlers, keep the public API, add tests for the new error paths."),
                "files": files,
            },
            "context_bundle": {"key": format!("bundles/t-{i:06}.json"), "size_bytes": 1000 + (i * 7919) % 900_000},
            "model": {"primary": "claude-sonnet-4", "fallback": "gpt-4.1"},
            "attempts": i % 3,
        });
        if i % 50 == 49 {
            match i / 50 % 3 {
                0 => task["flow_type"] = json!("refactor"),
                1 => {
                    if let Some(inputs) = task["inputs"].as_object_mut() {
                        inputs.remove("repo_url");
                    }
                }
                _ => task["inputs"]["files"] = json!([{"path": "a.rs", "sha": "not-a-sha"}]),
            }
        }
        std::fs::write(
            dir.join(format!("task-{i:05}.json")),
            serde_json::to_vec_pretty(&task)?,
        )?;
    }
    Ok(())
}
