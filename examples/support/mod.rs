// Helpers shared by the benchmark examples (`#[path]`-included; not an example itself).

/// The first command-line argument parsed as a number, or `default` when there is none.
pub(crate) fn number_arg<T: std::str::FromStr>(default: T) -> Result<T, String> {
    match std::env::args().nth(1) {
        Some(a) => a
            .parse()
            .map_err(|_| format!("a number expected, got {a:?}")),
        None => Ok(default),
    }
}

/// The process's peak resident set (`VmHWM`), in KiB; 0 where `/proc` is not there.
#[allow(dead_code)] // not every example reports memory
pub(crate) fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
