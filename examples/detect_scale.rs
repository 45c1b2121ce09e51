//! P4 in `docs/BENCHMARKS.md`: the failure-rate detector fed N outcomes on one core, with its
//! throughput and the process's peak memory, to show the memory does not grow with N.
//!
//! ```bash
//! cargo run --release --example detect_scale -- 1000000
//! cargo run --release --example detect_scale -- 100000000
//! ```

use std::hint::black_box;
use std::time::Instant;

use flowfail::detect::{Detector, DetectorConfig};

#[path = "support/mod.rs"]
mod support;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = support::number_arg(1_000_000)?;
    let mut d = Detector::new(DetectorConfig::default());
    let start = Instant::now();
    // One outcome per 300 in a second of virtual time; about 1 % fail.
    for i in 0..n {
        d.record(black_box(i / 300), i % 97 == 0);
    }
    let alert = d.evaluate(n / 300);
    let elapsed = start.elapsed();
    println!(
        "outcomes {n} in {:.1} ms: {:.0} M outcomes/s; alert {alert:?}; detector {} bytes; peak RSS {} KiB",
        elapsed.as_secs_f64() * 1e3,
        n as f64 / elapsed.as_secs_f64() / 1e6,
        std::mem::size_of_val(&d),
        support::peak_rss_kib()
    );
    Ok(())
}
