use super::*;

#[test]
fn roles() {
    let cases: &[(&str, LineRole)] = &[
        (
            "2026-11-13T09:50:00Z ERROR flowengine step failed",
            LineRole::Failure,
        ),
        (
            "2026-11-13T09:50:00Z INFO  dispatching to lambda timeout=45s error_rate=0",
            LineRole::Other,
        ),
        (
            "[ERROR]\t2026-11-13T09:50:00.000Z\tabc\tboom",
            LineRole::Failure,
        ),
        ("ERROR:root:boom", LineRole::Failure),
        (
            "2026-11-13 09:50:00,123 CRITICAL [main] c.f.Foo - down",
            LineRole::Failure,
        ),
        (
            "2026-11-13T09:50:00Z\terror\tmain.go:10\tboom",
            LineRole::Failure,
        ),
        (
            "\u{1b}[31mERROR\u{1b}[0m flowengine: boom",
            LineRole::Failure,
        ),
        (
            "time=2026-11-13T09:50:00Z level=error msg=\"boom\"",
            LineRole::Failure,
        ),
        (
            "time=2026-11-13T09:50:00Z level=info msg=\"no error here\"",
            LineRole::Other,
        ),
        (r#"{"level":"error","msg":"boom"}"#, LineRole::Failure),
        (
            r#"{"levelname": "ERROR", "message": "boom"}"#,
            LineRole::Failure,
        ),
        (
            r#"{"severity":"WARNING","message":"Error code: 429 earlier"}"#,
            LineRole::Other,
        ),
        (r#"{"level":50,"msg":"boom"}"#, LineRole::Failure),
        (r#"{"level":30,"msg":"error budget ok"}"#, LineRole::Other),
        (
            "2026-11-13T09:50:00.000Z 1f0c Task timed out after 45.00 seconds",
            LineRole::Failure,
        ),
        (
            "openai.RateLimitError: Error code: 429",
            LineRole::Exception,
        ),
        ("httpx.ReadTimeout: timed out", LineRole::Exception),
        ("KeyError", LineRole::Exception),
        (
            "google.api_core.exceptions.TooManyRequests: 429 Too Many Requests",
            LineRole::Exception,
        ),
        ("flowengine.step: done", LineRole::Other),
        (
            "thread 'main' panicked at src/main.rs:3:5:",
            LineRole::Exception,
        ),
        ("Traceback (most recent call last):", LineRole::Traceback),
        ("  File \"x.py\", line 1, in <module>", LineRole::Other),
        ("the error handler is registered", LineRole::Other),
        ("step error=\"x\" ok", LineRole::Other),
        (
            "2026/11/13 09:50:00 [emerg] 1#1: bind() to 0.0.0.0:80 failed",
            LineRole::Failure,
        ),
        ("level=Severe msg=x", LineRole::Failure),
        // Spellings no logger writes, and number levels pino does not write, are no level.
        ("[eRRoR] x", LineRole::Other),
        (r#"{"level":70,"msg":"x"}"#, LineRole::Other),
        (r#"{"lvl":60,"msg":"x"}"#, LineRole::Other),
    ];
    for (line, want) in cases {
        assert_eq!(role(line.as_bytes()), *want, "{line}");
    }
}

fn found(log: &str) -> (usize, Vec<(usize, String, &'static str)>) {
    let mut v = Vec::new();
    let n = RuleSet::builtin().classify_failures(log.as_bytes(), |i, t, c| {
        v.push((i, String::from_utf8_lossy(t).into_owned(), c.rule));
    });
    (n, v)
}

#[test]
fn tracebacks_are_one_failure() {
    let log = [
        "INFO start",
        "ERROR flow t-1 failed",
        "Traceback (most recent call last):",
        "  File \"a.py\", line 1, in <module>",
        "    raise X",
        "httpx.ReadTimeout: timed out",
        "",
        "During handling of the above exception, another exception occurred:",
        "",
        "Traceback (most recent call last):",
        "  File \"b.py\", line 2, in run",
        "openai.APITimeoutError: Request timed out.",
        "INFO next",
        "Traceback (most recent call last):",
        "  File \"c.py\", line 9, in call",
        "anthropic.RateLimitError: Error code: 429",
        "KeyError: 'x'",
        "",
    ]
    .join("\n");
    let log = log.as_str();
    let (n, v) = found(log);
    assert_eq!(n, 17);
    assert_eq!(v.len(), 3, "{v:#?}");
    assert_eq!(v[0].0, 1);
    assert!(
        v[0].1
            .ends_with("openai.APITimeoutError: Request timed out.")
    );
    assert_eq!(v[0].2, "exception:timeout");
    assert_eq!((v[1].0, v[1].2), (13, "exception:rate_limit"));
    assert_eq!((v[2].0, v[2].2), (16, "exception:programming_error"));
}

#[test]
fn cuts_never_split_a_traceback() {
    let log = b"INFO a\nERROR b\nTraceback (most recent call last):\n  File \"x\"\nKeyError: 'k'\nINFO c\nINFO d\n";
    let starts: Vec<usize> = std::iter::once(0)
        .chain(memchr::memchr_iter(b'\n', log).map(|i| i + 1))
        .collect();
    let safe: Vec<usize> = starts
        .iter()
        .copied()
        .filter(|s| safe_cut(log, *s))
        .collect();
    // Before ERROR b, before INFO c, before INFO d, and the end.
    assert_eq!(safe, [0, 7, 75, 82, 89]);
    assert_eq!(record_boundary(log, 9), Some(75));
    assert_eq!(record_boundary_before(log, 60), Some(7));
    assert_eq!(record_boundary_before(log, 7), Some(7));
    assert_eq!(record_boundary(b"  a\n  b", 1), None);
}

#[test]
fn line_counts_match_the_all_lines_scan() {
    for log in ["", "\n", "a", "a\n", "ERROR x\r\nb", "ERROR x\n\nERROR y"] {
        let mut all = 0;
        RuleSet::builtin().classify_lines(log.as_bytes(), |_, _| all += 1);
        assert_eq!(found(log).0, all, "{log:?}");
    }
    assert_eq!(found("ERROR x\n\nERROR y").1.len(), 2);
}

/// Every line looked at in turn, without the searches: what [`find_failures`] must find.
fn line_by_line(log: &[u8]) -> (usize, Vec<(usize, Vec<u8>)>) {
    let mut found = Vec::new();
    let mut pos = 0;
    while pos < log.len() {
        let end = memchr::memchr(b'\n', &log[pos..]).map_or(log.len(), |i| pos + i);
        let line = strip_cr(&log[pos..end]);
        pos = match record(log, pos, end, line) {
            Some((text, record_end)) => {
                let index = memchr::memchr_iter(b'\n', &log[..pos]).count();
                found.push((index, text.into_owned()));
                record_end + 1
            }
            None => end + 1,
        };
    }
    let mut lines = 0;
    RuleSet::builtin().classify_lines(log, |_, _| lines += 1);
    (lines, found)
}

fn searched(log: &[u8]) -> (usize, Vec<(usize, Vec<u8>)>) {
    let mut found = Vec::new();
    let lines = find_failures(log, |i, text| found.push((i, text.to_vec())));
    (lines, found)
}

#[test]
fn exception_lines_without_a_level_literal_are_found() {
    let log = b"INFO a\nAccessDenied: no\nbotocore.exceptions.NoCredentials: x\nINFO: fine\nWARNING:root:fine\nTraceback (most recent call last):\n  File \"x\"\nhttpx.ReadTimeout\r\n";
    let (lines, found) = searched(log);
    assert_eq!(lines, 8);
    let texts: Vec<_> = found
        .iter()
        .map(|(i, t)| (*i, String::from_utf8_lossy(t).into_owned()))
        .collect();
    assert_eq!(
        texts,
        [
            (1, "AccessDenied: no".to_owned()),
            (2, "botocore.exceptions.NoCredentials: x".to_owned()),
            (5, "httpx.ReadTimeout".to_owned()),
        ]
    );
    assert_eq!(searched(log), line_by_line(log));
}

use proptest::strategy::Strategy;

proptest::proptest! {
    #[test]
    fn the_searches_find_what_a_look_at_every_line_finds(
        parts in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::sample::select(vec![
                    "2026-11-13T09:50:00Z INFO ok", "2026-11-13T09:50:00Z ERROR boom",
                    "ERROR:root:x", "INFO:root:x", "WARNING: y", "[error] z", "level=error",
                    "level=info msg=\"error\"", "{\"level\":50}", "{\"level\":\"info\"}",
                    "level=err msg=x", "<3> Err: disk", "{\"level\":\"err\"}",
                    "2026/11/13 09:50:00 [emerg] 1#1: bind() failed", "[alert] x",
                    "level=alert", "severity=Severe", "{\"level\":\"emerg\"}", "[ErRoR] x",
                    "level=eRROR", "{\"level\":70}", "{\"level\":100}", "{\"level\":  50}",
                    "{\"level\" :50}", "{\"lvl\":60}", "{\"severity\":50}", "{\"level\": 60}",
                    "[Emergency] y", "Alert: z", "2026-11-13 SEVERE w",
                    "Traceback (most recent call last):", "  File \"a.py\", line 1",
                    "    raise X", "httpx.ReadTimeout: timed out", "KeyError: 'k'",
                    "AccessDenied", "a.B: c", "Foo.bar: x", "panic: x", "fatal error: y",
                    "thread 'main' panicked at src/x.rs:1:1:", "Task timed out after 3.00 seconds",
                    "Runtime exited with error: signal: killed", "ReadTimeout", "Traceback",
                    "During handling of the above exception, another exception occurred:",
                    "The above exception was the direct cause of the following exception:",
                ]).prop_map(str::to_owned),
                "[ -~]{0,30}",
                "[A-Za-z._:]{0,12}",
                proptest::sample::select(vec!["\n", "\r\n", "\n\n", " ", "\t", "\r"])
                    .prop_map(str::to_owned),
            ],
            0..30,
        ),
    ) {
        let log = parts.concat().into_bytes();
        proptest::prop_assert_eq!(searched(&log), line_by_line(&log));
    }
}
