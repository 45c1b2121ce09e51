// The 5 MB chat bundle of P2 in `docs/BENCHMARKS.md`, shared by the `core` bench and the
// `gen_bundle` example so the criterion numbers and `scripts/compare.sh` measure the same bytes.

/// 2,500 alternating user / assistant turns of about 2 KB, a task and a system prompt.
pub(crate) fn bundle_5mb() -> Vec<u8> {
    let msgs: Vec<_> = (0..2500)
        .map(|i| serde_json::json!({"role": if i % 2 == 0 {"user"} else {"assistant"}, "turn": i, "content": format!("{} {}", i, "lorem ipsum dolor sit amet ".repeat(77))}))
        .collect();
    serde_json::to_vec(&serde_json::json!({"task": {"task_id": "t-1", "instructions": "do it"}, "system_prompt": "be good", "messages": msgs}))
        .unwrap_or_default()
}
