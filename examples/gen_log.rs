//! Writes a deterministic FlowEngine-style log to stdout, for the classification comparison
//! (`scripts/compare.sh`, P1 in `docs/BENCHMARKS.md`).
//!
//! ```bash
//! cargo run --release --example gen_log -- 100 > /tmp/flowengine.log   # about 100 MB
//! ```
//!
//! Most lines are ordinary INFO lines of a healthy flow; about 3 % are WARN lines carrying
//! numbers that are *not* HTTP statuses (a priority of 429, a latency of 500ms); about 7 % are
//! ERROR lines whose error text is one of the labelled real-world messages in
//! `testdata/corpus/`. The same size argument always gives the same bytes.

use std::io::{BufWriter, Write};

#[path = "../benches/support/log.rs"]
mod log;

#[path = "support/mod.rs"]
mod support;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let megabytes: u64 = support::number_arg(100)?;
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    log::write_log(megabytes * 1_000_000, &mut out)?;
    out.flush()?;
    Ok(())
}
