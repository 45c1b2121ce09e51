//! Reading a log in blocks of whole lines, and splitting a block over threads.

use std::io::Read;

use flowfail_core::classify::{record_boundary, record_boundary_before};

/// Block size of the reused read buffer.
pub(super) const BLOCK: usize = 1 << 20;

/// Reads `r` in blocks of whole lines into a reused buffer and calls `each` with every block,
/// in order. A block is never cut between a failure line and its traceback; a line longer than
/// a block is passed by its head (one block without `\n`) and the rest of it is skipped.
pub(super) fn for_each_block(
    mut r: impl Read,
    mut each: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; BLOCK];
    let mut filled = 0;
    // Inside a line longer than a block: its head was classified, the rest is skipped.
    let mut skipping = false;
    loop {
        let n = read_some(&mut r, &mut buf[filled..])?;
        filled += n;
        let eof = n == 0;
        if skipping {
            match memchr::memchr(b'\n', &buf[..filled]) {
                Some(i) => {
                    buf.copy_within(i + 1..filled, 0);
                    filled -= i + 1;
                    skipping = false;
                }
                None => {
                    filled = 0;
                    if eof {
                        return Ok(());
                    }
                    continue;
                }
            }
        }
        if filled < buf.len() && !eof {
            continue;
        }
        let whole = if eof {
            filled
        } else {
            match memchr::memrchr(b'\n', &buf[..filled]) {
                // The rest goes on with the next block: never cut a traceback off its line.
                Some(i) => record_boundary_before(&buf[..filled], i + 1)
                    .filter(|b| *b > 0)
                    .unwrap_or(i + 1),
                None => {
                    // One line longer than a block: classification reads its head only.
                    each(&buf[..filled])?;
                    filled = 0;
                    skipping = true;
                    continue;
                }
            }
        };
        each(&buf[..whole])?;
        if eof {
            return Ok(());
        }
        buf.copy_within(whole..filled, 0);
        filled -= whole;
    }
}

/// Lines in `buf` as the scans count them (a final line without `\n` counts).
pub(super) fn line_count(buf: &[u8]) -> u64 {
    let n = memchr::memchr_iter(b'\n', buf).count() as u64;
    n + u64::from(!buf.is_empty() && !buf.ends_with(b"\n"))
}

fn read_some(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            res => return res,
        }
    }
}

/// Splits `buf` into at most `n` parts of about equal size, each ending at a line end.
pub(super) fn split_at_lines(buf: &[u8], n: usize) -> Vec<&[u8]> {
    let mut parts = Vec::with_capacity(n);
    let mut start = 0;
    for k in 1..n {
        let target = (buf.len() * k / n).max(start);
        let Some(i) = buf[target..].iter().position(|b| *b == b'\n') else {
            break;
        };
        // Never between a failure line and its traceback.
        let cut = record_boundary(buf, target + i + 1).unwrap_or(target + i + 1);
        if cut >= buf.len() {
            break;
        }
        parts.push(&buf[start..cut]);
        start = cut;
    }
    parts.push(&buf[start..]);
    parts.retain(|p| !p.is_empty());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_end_at_line_ends_and_cover_everything() {
        let text = b"a\nbb\nccc\ndddd\neeeee";
        for n in 1..8 {
            let parts = split_at_lines(text, n);
            assert_eq!(parts.concat(), text);
            for p in &parts[..parts.len() - 1] {
                assert_eq!(p.last(), Some(&b'\n'));
            }
        }
    }
}
