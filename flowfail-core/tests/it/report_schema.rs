//! The published JSON Schemas (`docs/schemas/report.schema.json`,
//! `docs/schemas/post-incident.schema.json`) accept the real report of every scenario under
//! `testdata/scenarios` (and `extra/`), replayed for real and as a dry run, and reject a report
//! that was tampered with.

use std::path::{Path, PathBuf};

use flowfail_core::replay::{ReplayOptions, Scenario, replay_blocking};
use jsonschema::{Registry, Validator};
use serde_json::{Value, json};

const BASE: &str = "https://flowfail.invalid/schemas/";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schema(name: &str) -> Value {
    let path = root().join("docs/schemas").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The post-incident schema on its own.
fn post_incident_validator() -> Validator {
    let s = schema("post-incident.schema.json");
    assert_eq!(s["$id"], json!(format!("{BASE}post-incident.schema.json")));
    jsonschema::options()
        .should_validate_formats(true)
        .build(&s)
        .unwrap()
}

/// The report schema, with the post-incident schema it refers to registered (offline).
fn report_validator() -> Validator {
    let post = schema("post-incident.schema.json");
    let report = schema("report.schema.json");
    assert_eq!(report["$id"], json!(format!("{BASE}report.schema.json")));
    let registry = Registry::new()
        .add(format!("{BASE}post-incident.schema.json"), post)
        .unwrap()
        .prepare()
        .unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .with_registry(&registry)
        .build(&report)
        .unwrap()
}

fn scenarios() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["scenarios", "scenarios/extra"] {
        for e in std::fs::read_dir(root().join("testdata").join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn report_of(path: &Path, dry_run: bool) -> Value {
    let sc = Scenario::from_json(&std::fs::read_to_string(path).unwrap()).unwrap();
    let opts = ReplayOptions::default()
        .dry_run(dry_run)
        .base_dir(path.parent().map(PathBuf::from));
    let (report, _) = replay_blocking(&sc, &opts).unwrap();
    serde_json::to_value(&report).unwrap()
}

fn errors(v: &Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn the_schemas_are_draft_2020_12() {
    for name in ["report.schema.json", "post-incident.schema.json"] {
        let s = schema(name);
        assert_eq!(
            s["$schema"],
            json!("https://json-schema.org/draft/2020-12/schema"),
            "{name}"
        );
        // The schema itself is valid against its meta-schema.
        jsonschema::meta::validate(&s).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn every_scenario_report_validates_against_the_published_schemas() {
    let report = report_validator();
    let post = post_incident_validator();
    let files = scenarios();
    assert!(files.len() >= 16, "scenarios not found: {files:?}");
    let mut failures = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    let mut outcomes = std::collections::BTreeSet::new();
    for path in &files {
        for dry_run in [false, true] {
            let doc = report_of(path, dry_run);
            for a in doc["actions"].as_array().unwrap() {
                kinds.insert(a["kind"].as_str().unwrap().to_owned());
                outcomes.insert(a["outcome"].as_str().unwrap().to_owned());
            }
            let name = format!("{} (dry run: {dry_run})", path.display());
            for e in errors(&report, &doc) {
                failures.push(format!("{name}: report: {e}"));
            }
            for e in errors(&post, &doc["post_incident"]) {
                failures.push(format!("{name}: post_incident: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // The scenarios exercise every action kind, so every branch of the schema was used.
    assert_eq!(kinds.len(), 7, "{kinds:?}");
    assert!(
        outcomes.contains("applied") && outcomes.contains("dry_run"),
        "{outcomes:?}"
    );
}

/// A change to a report.
type Mutation = Box<dyn Fn(&mut Value)>;

/// One mutation of a real report, and the schema must reject it.
fn assert_rejected(v: &Validator, doc: &Value, what: &str, mutate: impl Fn(&mut Value)) {
    let mut bad = doc.clone();
    mutate(&mut bad);
    assert_ne!(&bad, doc, "{what}: the mutation changed nothing");
    assert!(!v.is_valid(&bad), "{what}: a mutated report was accepted");
}

#[test]
fn a_mutated_report_fails_validation() {
    let report = report_validator();
    let post = post_incident_validator();
    let doc = report_of(&root().join("testdata/scenarios/bad-deploy.json"), false);
    assert!(report.is_valid(&doc), "{:?}", errors(&report, &doc));
    let mutations: Vec<(&str, Mutation)> = vec![
        (
            "unknown outcome",
            Box::new(|d| d["actions"][0]["outcome"] = json!("maybe")),
        ),
        (
            "unknown action kind",
            Box::new(|d| d["actions"][0]["kind"] = json!("reboot")),
        ),
        (
            "extra action field",
            Box::new(|d| d["actions"][0]["extra"] = json!(1)),
        ),
        (
            "extra top-level field",
            Box::new(|d| d["surprise"] = json!(true)),
        ),
        (
            "missing actions",
            Box::new(|d| drop(d.as_object_mut().unwrap().remove("actions"))),
        ),
        ("string count", Box::new(|d| d["passes"] = json!("7"))),
        (
            "negative count",
            Box::new(|d| d["alert"]["window_tasks"] = json!(-1)),
        ),
        (
            "failure rate over 1",
            Box::new(|d| d["alert"]["failure_rate"] = json!(1.5)),
        ),
        (
            "unknown failure kind",
            Box::new(|d| d["classification"]["gremlins"] = json!(1)),
        ),
        (
            "bad timestamp",
            Box::new(|d| d["actions"][0]["at"] = json!("yesterday")),
        ),
        (
            "bad task id",
            Box::new(|d| {
                let a = d["actions"].as_array_mut().unwrap();
                let r = a.iter_mut().find(|a| a["kind"] == "retry_task").unwrap();
                r["task_id"] = json!("../etc/passwd");
            }),
        ),
        (
            "attempt 0",
            Box::new(|d| {
                let a = d["actions"].as_array_mut().unwrap();
                let r = a.iter_mut().find(|a| a["kind"] == "retry_task").unwrap();
                r["attempt"] = json!(0);
            }),
        ),
        (
            "rollback without a revision",
            Box::new(|d| {
                let a = d["actions"].as_array_mut().unwrap();
                let r = a.iter_mut().find(|a| a["kind"] == "rollback").unwrap();
                drop(r.as_object_mut().unwrap().remove("to_revision"));
            }),
        ),
        (
            "unknown status",
            Box::new(|d| d["post_incident"]["status"] = json!("fine")),
        ),
        (
            "missing root cause",
            Box::new(|d| {
                drop(
                    d["post_incident"]
                        .as_object_mut()
                        .unwrap()
                        .remove("root_cause"),
                );
            }),
        ),
        (
            "summary of an unknown outcome",
            Box::new(|d| {
                d["post_incident"]["actions_summary"]["rollback"]["maybe"] = json!(1);
            }),
        ),
        (
            "timeline line with more fields",
            Box::new(|d| {
                d["post_incident"]["timeline"][0]["color"] = json!("red");
            }),
        ),
    ];
    for (what, m) in &mutations {
        assert_rejected(&report, &doc, what, m);
    }
    // The post-incident schema on its own rejects the post-incident mutations too.
    let pi = &doc["post_incident"];
    assert!(post.is_valid(pi), "{:?}", errors(&post, pi));
    assert_rejected(&post, pi, "unknown status", |p| p["status"] = json!("fine"));
    assert_rejected(&post, pi, "negative MTTR", |p| {
        p["mttr_seconds"] = json!(-5)
    });
    assert_rejected(&post, pi, "extra field", |p| p["extra"] = json!([]));
}
