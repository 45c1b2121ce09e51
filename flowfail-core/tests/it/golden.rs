//! Every scenario under `testdata/scenarios` (the public four and `extra/`) replays to exactly
//! the JSON report recorded in `testdata/golden/<name>.json`. A change to the engine that
//! changes a report shows up here as a diff, to be explained in the commit.
//!
//! After an intended change: `FLOWFAIL_BLESS=1 cargo test -p flowfail-core --test it golden::`
//! rewrites the golden files; review them with `git diff testdata/golden`.

use std::path::{Path, PathBuf};

use flowfail_core::Clock;
use flowfail_core::invariants::Invariants;
use flowfail_core::replay::{ReplayOptions, Scenario, replay_blocking};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

fn scenarios() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["scenarios", "scenarios/extra"] {
        for e in std::fs::read_dir(testdata().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_scenario_replays_to_its_golden_report() {
    let bless = std::env::var_os("FLOWFAIL_BLESS").is_some();
    let files = scenarios();
    assert!(files.len() >= 16, "scenarios not found: {files:?}");
    let mut differ = Vec::new();
    let mut broken = Vec::new();
    for path in &files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let sc = Scenario::from_json(&std::fs::read_to_string(path).unwrap()).unwrap();
        let opts = ReplayOptions::default().base_dir(path.parent().map(PathBuf::from));
        let policy = sc.policy().unwrap();
        // N1-N7 after every replay, against the world as the scenario builds it.
        let before = Invariants::before(&sc.world(&policy, Clock::manual(sc.now)).unwrap());
        let (report, world) = replay_blocking(&sc, &opts).unwrap();
        let got = serde_json::to_string_pretty(&report).unwrap() + "\n";
        if let Err(v) = before
            .report(&report)
            .output(got.clone())
            .output(report.to_markdown())
            .check(&world, &policy)
        {
            broken.push(format!("{name}: {v}"));
        }
        let golden = testdata().join("golden").join(format!("{name}.json"));
        if bless {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
        if got != want {
            // The actual report, for `diff`.
            let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/golden-actual");
            std::fs::create_dir_all(&out).unwrap();
            std::fs::write(out.join(format!("{name}.json")), &got).unwrap();
            let line = got
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .map_or_else(|| "length".to_owned(), |i| format!("line {}", i + 1));
            differ.push(format!("{name} (first difference at {line})"));
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    assert!(
        differ.is_empty(),
        "reports differ from testdata/golden (actual reports in target/golden-actual): {differ:?}"
    );
}
