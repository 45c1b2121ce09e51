//! Writes a deterministic FlowEngine-style log to stdout, for the classification comparison
//! (`scripts/compare.sh`, P1 in `docs/BENCHMARKS.md`).
//!
//! ```bash
//! cargo run --release --example gen_log -- 100 > /tmp/flowengine.log        # about 100 MB, 7 % failing
//! cargo run --release --example gen_log -- 100 30 > /tmp/incident.log       # 30 % failing
//! ```
//!
//! Most lines are ordinary INFO lines of a healthy flow; about 3 % are WARN lines carrying
//! numbers that are *not* HTTP statuses (a priority of 429, a latency of 500ms); 7 % (or the
//! second argument's share) are ERROR lines whose error text is one of the labelled real-world
//! messages in `testdata/corpus/`. The same arguments always give the same bytes.

use std::io::{BufWriter, Write};

#[path = "../benches/support/log.rs"]
mod log;

#[path = "support/mod.rs"]
mod support;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let megabytes: u64 = support::number_arg(100)?;
    let failing: u64 = match std::env::args().nth(2) {
        Some(a) => a
            .parse()
            .ok()
            .filter(|p| *p <= 97)
            .ok_or_else(|| format!("a failure share of 0 to 97 % expected, got {a:?}"))?,
        None => 7,
    };
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    log::write_log(megabytes * 1_000_000, failing, &mut out)?;
    out.flush()?;
    Ok(())
}
