use super::tree::safe_cut;
use super::*;
use proptest::prelude::*;
use serde_json::{Value, json};

fn opts() -> PruneOptions {
    PruneOptions::default()
}

fn chat(turns: usize, each: usize) -> Vec<u8> {
    let msgs: Vec<Value> = (0..turns)
        .map(|i| json!({"role": if i % 2 == 0 {"user"} else {"assistant"}, "content": format!("turn {i} {}", "w".repeat(each))}))
        .collect();
    serde_json::to_vec(&json!({
        "task": {"task_id": "t-1", "instructions": "do it"},
        "system_prompt": "be good",
        "messages": msgs,
    }))
    .unwrap()
}

#[test]
fn chat_history_keeps_newest_turns_and_pins() {
    let input = chat(2000, 400);
    let out = prune(&input, 180_000, &opts()).unwrap();
    assert!(out.bytes.len() <= 180_000);
    assert!(
        out.bytes.len() >= 162_000,
        "uses the budget: {}",
        out.bytes.len()
    );
    let v: Value = serde_json::from_slice(&out.bytes).unwrap();
    assert_eq!(v["task"]["task_id"], "t-1");
    assert_eq!(v["system_prompt"], "be good");
    let msgs = v["messages"].as_array().unwrap();
    assert!(
        msgs.last().unwrap()["content"]
            .as_str()
            .unwrap()
            .starts_with("turn 1999 ")
    );
    assert!(
        matches!(out.manifest.removed[0], Removal::DroppedOldest { ref pointer, .. } if pointer == "/messages")
    );
}

#[test]
fn one_huge_string_is_truncated_with_a_marker() {
    let input =
        serde_json::to_vec(&json!({"task": {"id": 1}, "dump": "é".repeat(400_000)})).unwrap();
    let out = prune(&input, 180_000, &opts()).unwrap();
    assert!(
        out.bytes.len() <= 180_000 && out.bytes.len() > 179_000,
        "{}",
        out.bytes.len()
    );
    let v: Value = serde_json::from_slice(&out.bytes).unwrap();
    assert!(
        v["dump"]
            .as_str()
            .unwrap()
            .ends_with("[truncated: original 800000 bytes]")
    );
}

#[test]
fn large_file_dumps_use_the_budget() {
    let files: Vec<Value> = (0..12)
        .map(|i| json!({"path": format!("src/f{i}.rs"), "content": "fn x() {}\n".repeat(5_000)}))
        .collect();
    let input = serde_json::to_vec(&json!({"task": {}, "files": files})).unwrap();
    let out = prune(&input, 180_000, &opts()).unwrap();
    let n = out.bytes.len();
    assert!((162_000..=180_000).contains(&n), "{n}");
    let v: Value = serde_json::from_slice(&out.bytes).unwrap();
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.last().unwrap()["path"], "src/f11.rs");
    assert_eq!(
        files.last().unwrap()["content"].as_str().unwrap().len(),
        50_000
    );
}

#[test]
fn pinned_content_over_budget_is_an_error() {
    let input = serde_json::to_vec(&json!({"task": "x".repeat(5000), "m": [1, 2, 3]})).unwrap();
    let e = prune(&input, 1000, &opts()).unwrap_err();
    assert!(e.to_string().contains("pinned"), "{e}");
}

#[test]
fn pinned_values_are_byte_identical_even_pretty_printed() {
    let input = br#"{ "keep" : { "b" : 1.50, "a" : [ 1 , 2 ] }, "junk": [ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" ] }"#;
    let out = prune(
        input,
        100,
        &PruneOptions::without_default_pins().keep("/keep"),
    )
    .unwrap();
    let s = String::from_utf8(out.bytes).unwrap();
    assert!(s.contains(r#"{ "b" : 1.50, "a" : [ 1 , 2 ] }"#), "{s}");
    assert!(s.len() <= 100);
}

#[test]
fn hostile_input_is_refused_cleanly() {
    let deep = "[".repeat(100_000);
    assert!(
        prune(deep.as_bytes(), 10, &opts())
            .unwrap_err()
            .to_string()
            .contains("nested")
    );
    assert!(prune(b"{\"a\": [1, 2", 10, &opts()).is_err());
    assert!(
        prune(b"{\"a\": \"\xff\xfe\"}", 10, &opts())
            .unwrap_err()
            .to_string()
            .contains("UTF-8")
    );
    assert!(prune(b"{} x", 10, &opts()).is_err());
    assert!(prune(b"", 10, &opts()).is_err());
    let big = vec![b' '; 100];
    assert_eq!(
        prune(&big, 10, &opts().max_input_bytes(50))
            .unwrap_err()
            .kind(),
        ErrorKind::TooLarge
    );
    assert!(prune(b"{}", 10, &opts().keep("no-slash")).is_err());
}

#[test]
fn numeric_arrays_drop_oldest() {
    let v: Vec<u64> = (0..100_000).collect();
    let input = serde_json::to_vec(&json!({"series": v})).unwrap();
    let out = prune(&input, 50_000, &opts()).unwrap();
    let n = out.bytes.len();
    assert!((49_000..=50_000).contains(&n), "{n}");
    let v: Value = serde_json::from_slice(&out.bytes).unwrap();
    assert_eq!(v["series"].as_array().unwrap().last().unwrap(), 99_999);
}

#[test]
fn safe_cut_respects_escapes_and_surrogates() {
    assert_eq!(safe_cut(br"ab\ncd", 3), 2);
    assert_eq!(safe_cut(br"ab\u00e9cd", 5), 2);
    assert_eq!(safe_cut(br"a\ud83d\ude00b", 7), 1);
    assert_eq!(safe_cut(br"a\ud83d\ude00b", 13), 13);
    assert_eq!(safe_cut("aé".as_bytes(), 2), 1);
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z\u{e9}\u{1F600}\"\\\\\n]{0,300}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 200, 12, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..12).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z/~]{1,6}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn output_is_valid_within_budget_idempotent_and_keeps_pins(
        v in arb_json(),
        budget in 50u64..3000,
        pretty in any::<bool>(),
    ) {
        let input = if pretty { serde_json::to_vec_pretty(&v).unwrap() } else { serde_json::to_vec(&v).unwrap() };
        // Pin the first member of the root object, if any.
        let pin = v.as_object().and_then(|m| m.keys().next().cloned())
            .map(|k| format!("/{}", escape_token(&k)));
        let mut o = PruneOptions::without_default_pins();
        if let Some(p) = &pin { o = o.keep(p.clone()); }
        match prune(&input, budget, &o) {
            Ok(out) => {
                prop_assert!(out.bytes.len() as u64 <= budget.max(input.len() as u64));
                if (input.len() as u64) > budget { prop_assert!(out.bytes.len() as u64 <= budget); }
                let parsed: Value = serde_json::from_slice(&out.bytes).unwrap();
                if let Some(p) = &pin {
                    prop_assert_eq!(parsed.pointer(p), v.pointer(p));
                }
                let again = prune(&out.bytes, budget, &o).unwrap();
                prop_assert_eq!(&again.bytes, &out.bytes);
                let twice = prune(&input, budget, &o).unwrap();
                prop_assert_eq!(&twice.bytes, &out.bytes);
            }
            Err(e) => prop_assert!(e.to_string().contains("pinned"), "{}", e),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), budget in 0u64..200) {
        let _ = prune(&bytes, budget, &PruneOptions::default());
    }
}
