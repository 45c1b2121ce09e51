//! Security review finding 16: `--help` of the commands that read `FLOWFAIL_PG_URL` never
//! prints its value, whose password would otherwise land in a terminal or a CI log.

use crate::support::flowfail_cmd;

const URL: &str = "postgres://u:s3cret@h/db";

#[test]
fn help_never_prints_the_value_of_flowfail_pg_url() {
    for cmd in ["triage", "retry"] {
        let out = flowfail_cmd()
            .args([cmd, "--help"])
            .env("FLOWFAIL_PG_URL", URL)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "{cmd}: {text}");
        assert!(text.contains("FLOWFAIL_PG_URL"), "{cmd}: {text}");
        assert!(!text.contains("s3cret"), "{cmd}: {text}");
        assert!(!text.contains("u:s3"), "{cmd}: {text}");
    }
}
