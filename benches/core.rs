//! Criterion benches of flowfail's engine. Comparisons sit in the same group so criterion
//! reports them side by side:
//!
//! - `prune_5MB`: pruning a 5 MB bundle to 180 KB next to a plain serde_json parse, and
//!   parse + serialize, of the same bytes;
//! - `classify` (the labelled corpus), `classify_log_10MB` (`classify_lines`, `classify_failures`, next to classifying
//!   line by line), `detect`, `schema` (flowfail's `validate` and `is_valid` next to a bare
//!   jsonschema-rs validator), `decide` (10k and 100k failed tasks), `replay` (the four
//!   scenarios end to end on the in-memory backends, virtual time).
//!
//! `cargo bench --bench core`

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use chrono::{TimeDelta, Utc};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flowfail::decide::{
    BundleObs, IncidentState, Observation, ObservedTask, classification, decide,
};
use flowfail::detect::{Detector, DetectorConfig};
use flowfail::prune::{PruneOptions, prune};
use flowfail::replay::{ReplayOptions, Scenario, replay_blocking};
use flowfail::schema::SchemaSet;
use flowfail::{
    FlowType, Policy, Quota, QuotaUsage, StatusCounts, Task, TaskId, TaskStatus, classify,
    classify_failures, classify_lines,
};
use serde_json::json;

#[path = "support/bundle.rs"]
mod bundle;
#[path = "support/log.rs"]
mod log;
use bundle::bundle_5mb;

fn bench_prune(c: &mut Criterion) {
    let input = bundle_5mb();
    let mut g = c.benchmark_group("prune_5MB");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("flowfail_prune_to_180KB", |b| {
        b.iter(|| prune(black_box(&input), 180_000, &PruneOptions::default()).unwrap())
    });
    g.bench_function("serde_json_parse", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&input)).unwrap())
    });
    g.bench_function("serde_json_parse_serialize", |b| {
        b.iter(|| {
            serde_json::to_vec(
                &serde_json::from_slice::<serde_json::Value>(black_box(&input)).unwrap(),
            )
            .unwrap()
        })
    });
    g.finish();
}

fn corpus() -> Vec<(String, Option<u16>)> {
    include_str!("../testdata/corpus/errors-sample.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            (
                v["message"].as_str().unwrap_or("").to_owned(),
                v["status"].as_u64().map(|s| s as u16),
            )
        })
        .collect()
}

fn bench_classify(c: &mut Criterion) {
    let msgs = corpus();
    let bytes: usize = msgs.iter().map(|m| m.0.len()).sum();
    let mut g = c.benchmark_group("classify");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("corpus", |b| {
        b.iter(|| {
            for (m, s) in &msgs {
                black_box(classify(m, *s));
            }
        })
    });
    g.finish();

    // A whole log: the needle scan of `classify_lines` next to classifying line by line.
    let mut text = Vec::new();
    log::write_log(10_000_000, 7, &mut text).unwrap();
    let mut g = c.benchmark_group("classify_log_10MB");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.sample_size(10);
    g.bench_function("classify_lines", |b| {
        b.iter(|| {
            let mut errors = 0u32;
            classify_lines(black_box(&text), |_, c| {
                errors += u32::from(c.rule != "no_rule");
            });
            errors
        })
    });
    g.bench_function("classify_failures", |b| {
        b.iter(|| {
            let mut failures = 0u32;
            classify_failures(black_box(&text), |_, _, _| failures += 1);
            failures
        })
    });
    g.bench_function("classify_each_line", |b| {
        b.iter(|| {
            let lines = std::str::from_utf8(&text).unwrap().lines();
            lines
                .filter(|l| classify(black_box(l), None).rule != "no_rule")
                .count()
        })
    });
    g.finish();
}

fn bench_detect(c: &mut Criterion) {
    let mut g = c.benchmark_group("detect");
    let n = 1_000_000u64;
    g.throughput(Throughput::Elements(n));
    g.bench_function("record_1M", |b| {
        b.iter(|| {
            let mut d = Detector::new(DetectorConfig::default());
            for i in 0..n {
                d.record(i / 300, i % 97 == 0);
            }
            black_box(d.evaluate(n / 300))
        })
    });
    g.finish();
}

fn bench_schema(c: &mut Criterion) {
    let set = SchemaSet::builtin();
    let objs: Vec<_> = (0..1000)
        .map(|i| json!({"schema_version": "2.1.0", "task_id": format!("t-{i:06}"), "flow_type": "impl",
            "priority": i % 6, "created_at": "2025-11-13T09:00:00Z",
            "inputs": {"repo_url": "https://git.example.com/team/service.git",
                "instructions": "Implement the next step of the migration plan.",
                "files": [{"path": "src/lib.rs", "sha": "0123456789abcdef0123456789abcdef01234567"}]},
            "context_bundle": {"key": format!("bundles/t-{i:06}.json"), "size_bytes": 734_003},
            "model": {"primary": "claude-sonnet-4", "fallback": "gpt-4.1"}, "attempts": i % 3}))
        .collect();
    // The floor: the v2 validator alone, `is_valid` and nothing else.
    let bare = jsonschema::options()
        .should_validate_formats(true)
        .build(&serde_json::from_str(flowfail::schema::TASK_OBJECT_V2).unwrap())
        .unwrap();
    let mut g = c.benchmark_group("schema");
    g.throughput(Throughput::Elements(objs.len() as u64));
    g.bench_function("validate_1000_taskobjects", |b| {
        b.iter(|| objs.iter().filter(|o| set.validate(o).valid).count())
    });
    g.bench_function("flowfail_is_valid_1000", |b| {
        b.iter(|| objs.iter().filter(|o| set.is_valid(o)).count())
    });
    g.bench_function("bare_jsonschema_is_valid_1000", |b| {
        b.iter(|| objs.iter().filter(|o| bare.is_valid(o)).count())
    });
    g.finish();
}

fn observation(n: usize) -> (Observation, IncidentState) {
    let now = Utc::now();
    let kinds = [
        ("Task timed out after 45.00 seconds", None),
        (
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            Some(529),
        ),
        ("KeyError: 'context_refs'", None),
    ];
    let failed: Vec<ObservedTask> = (0..n)
        .map(|i| {
            let (m, s) = kinds[i % kinds.len()];
            let t = Task::new(
                TaskId::parse(&format!("t-{i}")).unwrap(),
                FlowType::Impl,
                TaskStatus::Failed,
                now - TimeDelta::minutes(5),
            )
            .with_error(m, s);
            let class = classify(m, s);
            let mut o = flowfail::decide::ObservedTask::from_parts(t, class);
            o.bundle = BundleObs::Size { bytes: 100_000 };
            o
        })
        .collect();
    let mut obs = Observation::new(now);
    obs.counts = Some(StatusCounts::new(10 * n as u64, n as u64));
    obs.quota = Quota::Known(QuotaUsage::from_ratio(0.3));
    let alert = flowfail::decide::alert(obs.counts.as_ref().unwrap(), false, &Policy::default());
    let state = IncidentState::open(
        "flowengine-x".into(),
        now,
        alert,
        classification(&failed),
        None,
    );
    obs.failed = Some(failed);
    (obs, state)
}

fn bench_decide(c: &mut Criterion) {
    let policy = Policy::default();
    let mut g = c.benchmark_group("decide");
    g.sample_size(20);
    for n in [10_000usize, 100_000] {
        let (obs, state) = observation(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| decide(&obs, &state, &policy))
        });
    }
    g.finish();
}

fn bench_replay(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay");
    g.sample_size(20);
    for name in ["pilot-timeout", "rate-limit", "vendor-outage", "bad-deploy"] {
        let text = std::fs::read_to_string(format!(
            "{}/testdata/scenarios/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let sc = Scenario::from_json(&text).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| replay_blocking(&sc, &ReplayOptions::default()).unwrap())
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_prune,
    bench_classify,
    bench_detect,
    bench_schema,
    bench_decide,
    bench_replay
);
criterion_main!(benches);
