// The FlowEngine-style log of P1 in `docs/BENCHMARKS.md`, shared by the `gen_log` example and
// the `core` bench so that both measure the same lines.

use std::io::Write;

const CORPUS: [&str; 2] = [
    include_str!("../../testdata/corpus/errors-sample.jsonl"),
    include_str!("../../testdata/corpus/errors-extended.jsonl"),
];

const FLOWS: [&str; 4] = ["plan", "impl", "review", "docs"];
const STEPS: [&str; 6] = [
    "load_context",
    "llm_call",
    "tool_call",
    "write_result",
    "fetch_repo",
    "render_prompt",
];
const MODELS: [&str; 3] = ["claude-sonnet-4", "gpt-4.1", "gemini-2.5-pro"];

/// xorshift64*: fixed seed, so the log is the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Writes about `target` bytes of log to `out`: `failing` % ERROR lines carrying the labelled
/// real-world messages of `testdata/corpus/` (7 in the standard log, 30 in an incident's),
/// ~3 % WARN lines with numbers that are not HTTP statuses, INFO lines of a healthy flow for the
/// rest. The same size and share always give the same bytes.
pub(crate) fn write_log(target: u64, failing: u64, out: &mut impl Write) -> std::io::Result<()> {
    let mut errors = Vec::new();
    for line in CORPUS.iter().flat_map(|c| c.lines()) {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).map_err(std::io::Error::other)?;
        if let Some(m) = v.get("message").and_then(|m| m.as_str()) {
            // A log line is one line: the multi-line pydantic messages are joined.
            errors.push(m.replace(['\n', '\r'], " | "));
        }
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut written = 0u64;
    let mut ms = 0u64;
    while written < target {
        ms += 1 + rng.below(40);
        let (s, milli) = (ms / 1000, ms % 1000);
        let ts = format!(
            "2026-11-13T{:02}:{:02}:{:02}.{milli:03}Z",
            9 + s / 3600 % 12,
            s / 60 % 60,
            s % 60
        );
        let flow = rng.pick(&FLOWS);
        let task = 100_000 + rng.below(900_000);
        let roll = rng.below(100);
        let line = if roll < failing {
            let e = &errors[rng.below(errors.len() as u64) as usize];
            format!("{ts} ERROR flowengine flow={flow} task=t-{task} step=llm_call error=\"{e}\"\n")
        } else if roll < failing + 3 {
            format!(
                "{ts} WARN  flowengine flow={flow} task=t-{task} slow step {} took {}ms (priority {}, queue depth {})\n",
                rng.pick(&STEPS),
                400 + rng.below(200),
                [429, 500, 503][rng.below(3) as usize],
                rng.below(50)
            )
        } else {
            format!(
                "{ts} INFO  flowengine flow={flow} task=t-{task} step={} model={} latency_ms={} input_tokens={} output_tokens={} bundle_kb={} ok\n",
                rng.pick(&STEPS),
                rng.pick(&MODELS),
                50 + rng.below(9000),
                rng.below(120_000),
                rng.below(8000),
                rng.below(900)
            )
        };
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
    }
    Ok(())
}
