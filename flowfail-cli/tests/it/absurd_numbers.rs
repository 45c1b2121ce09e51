//! Absurd numbers in a scenario or a policy are refused with a clear error (exit 1), never a
//! panic (exit 101) from time arithmetic that overflows.

use crate::support::flowfail_cmd;

fn respond_with(edit: impl Fn(&mut serde_json::Value)) -> (Option<i32>, String) {
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let text =
        std::fs::read_to_string(format!("{repo}/testdata/scenarios/rate-limit.json")).unwrap();
    let mut sc: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut sc);
    let dir = std::env::temp_dir().join(format!("flowfail-absurd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.json", rand_name(&sc)));
    std::fs::write(&path, serde_json::to_vec(&sc).unwrap()).unwrap();
    let out = flowfail_cmd()
        .args(["respond", "--scenario"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rand_name(v: &serde_json::Value) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.to_string().hash(&mut h);
    format!("{:x}", h.finish())
}

#[test]
fn max_virtual_s_near_u64_max_is_refused() {
    let (code, err) = respond_with(|sc| sc["max_virtual_s"] = serde_json::json!(u64::MAX - 7));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("max_virtual_s"), "{err}");
}

#[test]
fn an_event_after_9e18_seconds_is_refused() {
    let (code, err) = respond_with(|sc| {
        sc["events"] = serde_json::json!([{"after_s": 9_200_000_000_000_000_000u64, "quota": {"used_ratio": 0.1}}]);
    });
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("after_s"), "{err}");
}

#[test]
fn a_poll_interval_near_i64_max_is_refused() {
    let (code, err) = respond_with(|sc| {
        sc["policy"] = serde_json::json!({"poll_interval_s": i64::MAX as u64 - 1});
    });
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("poll_interval_s"), "{err}");
    let (code, err) = respond_with(|sc| {
        sc["policy"] = serde_json::json!({"half_open_after_s": u64::MAX});
    });
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("half_open_after_s"), "{err}");
}
