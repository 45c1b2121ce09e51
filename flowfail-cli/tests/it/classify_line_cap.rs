//! Security review #15 (classify): a JSON line is read up to 1 MiB; a longer one is an error
//! for that line (with its input line number, like a malformed line), its rest is skipped
//! without being buffered, and reading goes on.

use std::io::Write;
use std::process::Stdio;

use serde_json::Value;

use crate::support::{flowfail_cmd, run_with_stdin};

const MIB: usize = 1 << 20;

fn ok_line(msg: &str) -> String {
    format!("{{\"message\": \"{msg}\", \"status\": 429}}\n")
}

/// A valid JSON line whose message is `len` bytes: the code before the fix classified it.
fn long_line(len: usize) -> Vec<u8> {
    let mut l = b"{\"message\": \"".to_vec();
    l.resize(l.len() + len, b'x');
    l.extend_from_slice(b"\"}\n");
    l
}

#[test]
fn an_over_long_line_is_an_error_for_that_line_and_reading_goes_on() {
    let mut input = ok_line("rate limit exceeded").into_bytes();
    input.extend(long_line(2 * MIB));
    input.extend(ok_line("429 Too Many Requests").into_bytes());
    // Just under the limit: still read.
    input.extend(long_line(MIB - 20));
    let out = run(&["classify"], &input);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "one output line per input line");
    assert!(lines[0].get("kind").is_some(), "{}", lines[0]);
    assert_eq!(lines[1]["line"], 2);
    let why = lines[1]["error"].as_str().unwrap();
    assert!(
        why.starts_with("line 2:") && why.contains("1048576-byte limit"),
        "{why}"
    );
    assert!(lines[2].get("kind").is_some(), "{}", lines[2]);
    assert!(lines[3].get("kind").is_some(), "{}", lines[3]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 malformed input line(s): line 2"), "{err}");

    // With --count the over-long line is reported the same way and not counted.
    let out = run(&["classify", "--count"], &input);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"line\":2"), "{text}");
}

#[test]
fn the_rest_of_an_over_long_line_is_not_buffered() {
    let mut child = flowfail_cmd()
        .arg("classify")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    // 256 MiB on one line, in 1 MiB writes; when the last write returns, flowfail has read
    // all but a pipe buffer of it.
    let chunk = vec![b'x'; MIB];
    stdin.write_all(b"{\"message\": \"").unwrap();
    for _ in 0..256 {
        stdin.write_all(&chunk).unwrap();
    }
    stdin.write_all(b"\"}\n").unwrap();
    stdin.flush().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    stdin
        .write_all(ok_line("rate limit exceeded").as_bytes())
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        peak_kib < 64 * 1024,
        "peak resident memory {peak_kib} KiB while skipping a 256 MiB line"
    );
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text:.300}");
    assert!(lines[0].contains("\"line\":1") && lines[0].contains("limit"));
    assert!(lines[1].contains("\"kind\""));
}

fn run(args: &[&str], stdin: &[u8]) -> std::process::Output {
    run_with_stdin(flowfail_cmd().args(args), stdin).0
}
