//! Writes the 5 MB chat bundle of the prune benchmarks to stdout, for the LangChain comparison
//! (`scripts/compare.sh`, P2 in `docs/BENCHMARKS.md`).
//!
//! ```bash
//! cargo run --release --example gen_bundle > /tmp/bundle-5MB.json
//! ```

use std::io::Write;

#[path = "../benches/support/bundle.rs"]
mod bundle;

fn main() -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(&bundle::bundle_5mb())?;
    out.flush()
}
