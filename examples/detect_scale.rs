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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = match std::env::args().nth(1) {
        Some(a) => a
            .parse()
            .map_err(|_| format!("a count expected, got {a:?}"))?,
        None => 1_000_000,
    };
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
        peak_rss_kib()
    );
    Ok(())
}

/// The process's peak resident set (`VmHWM`), in KiB; 0 where `/proc` is not there.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
