//! Security review #15 (scenarios): every bundle is capped, and so is their total, since the
//! replay synthesises each one in memory.

use flowfail_core::ErrorKind;
use flowfail_core::replay::Scenario;
use serde_json::{Value, json};

const MIB: u64 = 1024 * 1024;

/// `pilot-timeout` with its bundles replaced by `sizes`.
fn with_bundles(sizes: &[u64]) -> String {
    let p = format!(
        "{}/../testdata/scenarios/pilot-timeout.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut sc: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let bundles: serde_json::Map<String, Value> = sizes
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("t-{i:05}"), json!({ "size_bytes": s })))
        .collect();
    sc["bundles"] = Value::Object(bundles);
    sc.to_string()
}

#[test]
fn bundles_over_the_total_limit_are_refused_with_a_clear_error() {
    // Each under the 256 MiB limit of one bundle, 600 MiB together.
    let e = Scenario::from_json(&with_bundles(&[200 * MIB, 200 * MIB, 200 * MIB])).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let msg = e.to_string();
    assert!(
        msg.contains("bundle t-00002") && msg.contains("536870912") && msg.contains("together"),
        "{msg}"
    );
    // Many small bundles add up just the same.
    let many = vec![MIB; 513];
    assert!(Scenario::from_json(&with_bundles(&many)).is_err());
}

#[test]
fn bundles_up_to_the_total_limit_are_accepted() {
    Scenario::from_json(&with_bundles(&[256 * MIB, 256 * MIB])).unwrap();
    Scenario::from_json(&with_bundles(&vec![MIB; 512])).unwrap();
}
