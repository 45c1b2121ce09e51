//! `flowfail.toml`: every value checked before anything connects; unknown keys named by path;
//! secrets only by reference, never echoed.

#![cfg(feature = "live")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use flowfail::live::{Config, Mode};

/// A secret in a file of its own (tests cannot set environment variables safely).
fn secret_file(name: &str, value: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flowfail-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    p
}

fn base() -> String {
    let key = secret_file("key", "s3cr3t-canary-value");
    let k = key.display();
    format!(
        r#"
[postgres]
url = "postgres://flowfail@127.0.0.1:5432/postgres"
schema = "public"

[aws]
region = "us-east-1"
log_group = "/aws/lambda/flowengine"
bucket = "context-bundles"

[kubernetes]
namespace = "default"
deployment = "flowengine"

[vendors]
primary = "anthropic"
[vendors.anthropic]
quota = "anthropic"
api_url = "https://api.anthropic.com"
api_key_file = "{k}"
status_url = "https://status.anthropic.com"
[vendors.openai]
quota = "none"
status_url = "https://status.openai.com"

[pager.routing_keys]
on_call = {{ file = "{k}" }}
sre = {{ file = "{k}" }}
tech_lead = {{ file = "{k}" }}
"#
    )
}

fn err(text: &str) -> String {
    let e = Config::from_toml_str(text).unwrap_err().to_string();
    assert!(!e.contains("s3cr3t"), "a secret leaked into an error: {e}");
    e
}

#[test]
fn a_minimal_config_is_valid_and_shadow_by_default() {
    let c = Config::from_toml_str(&base()).unwrap();
    assert_eq!(c.mode, Mode::Shadow);
    // The policy follows the Deployment and the primary vendor named once.
    assert_eq!(c.policy.deployment, "flowengine");
    assert_eq!(c.policy.primary_vendor, "anthropic");
    let act = Config::from_toml_str(&format!("mode = \"act\"\n{}", base())).unwrap();
    assert_eq!(act.mode, Mode::Act);
}

#[test]
fn unknown_keys_are_errors_with_their_path() {
    let e = err(&base().replace("schema = \"public\"", "schema = \"public\"\ncolums = 1"));
    assert!(e.contains("postgres") && e.contains("colums"), "{e}");
    let e = err(&format!("{}\n[policy]\nalert_failure_rat = 0.02\n", base()));
    assert!(
        e.contains("policy") && e.contains("alert_failure_rat"),
        "{e}"
    );
    let e = err(&format!("moed = \"act\"\n{}", base()));
    assert!(e.contains("moed"), "{e}");
}

#[test]
fn nonsense_values_are_refused_before_anything_connects() {
    let e = err(&format!("{}\n[policy]\nalert_failure_rate = 1.5\n", base()));
    assert!(e.contains("alert_failure_rate"), "{e}");
    let e = err(&base().replace(
        "deployment = \"flowengine\"",
        "deployment = \"Flow_Engine\"",
    ));
    assert!(e.contains("kubernetes.deployment"), "{e}");
    let e = err(&base().replace("primary = \"anthropic\"", "primary = \"google\""));
    assert!(e.contains("vendors.primary"), "{e}");
    let e = err(&base().replace("https://status.openai.com", "ftp://status"));
    assert!(e.contains("vendors.openai.status_url"), "{e}");
    let e = err(&format!("mode = \"yolo\"\n{}", base()));
    assert!(e.contains("mode"), "{e}");
    // Every page target of the policy needs a routing key.
    let e = err(&base().replace("sre = {", "#sre = {"));
    assert!(e.contains("sre"), "{e}");
}

#[test]
fn secrets_are_only_accepted_by_reference() {
    let e = err(&base().replace(
        "schema = \"public\"",
        "schema = \"public\"\npassword = \"s3cr3t-inline\"",
    ));
    assert!(
        e.contains("inline is refused") && e.contains("postgres.password"),
        "{e}"
    );
    let e = err(&base().replace("postgres://flowfail@", "postgres://flowfail:s3cr3t-inline@"));
    assert!(e.contains("carries a password"), "{e}");
    let e = err(&base().replace("on_call = {", "on_call = \"s3cr3t-inline\"\n#"));
    assert!(
        e.contains("inline is refused") && e.contains("on_call"),
        "{e}"
    );
    let e = err(&base().replace(
        "quota = \"anthropic\"",
        "quota = \"anthropic\"\napi_key = \"s3cr3t-inline\"",
    ));
    assert!(e.contains("inline is refused"), "{e}");
    // A reference to a secret that is not there is named, not guessed.
    let e = err(&base().replace(
        "api_key_file = ",
        "api_key_env = \"FLOWFAIL_TEST_NO_SUCH_VARIABLE\"\n#",
    ));
    assert!(
        e.contains("FLOWFAIL_TEST_NO_SUCH_VARIABLE") && e.contains("not set"),
        "{e}"
    );
}

#[test]
fn the_example_in_the_repo_is_a_valid_config() {
    // The example references secrets that exist only in a deployment: point them at files.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/flowfail.example.toml"
    ))
    .unwrap();
    let key = secret_file("example-key", "x-test");
    let k = key.display().to_string();
    let text = text
        .replace(
            "password_env = \"FLOWFAIL_PG_PASSWORD\"",
            &format!("password_file = \"{k}\""),
        )
        .replace(
            "api_key_env = \"ANTHROPIC_API_KEY\"",
            &format!("api_key_file = \"{k}\""),
        )
        .replace(
            "api_key_env = \"OPENAI_API_KEY\"",
            &format!("api_key_file = \"{k}\""),
        )
        .replace(
            "{ env = \"PAGERDUTY_ON_CALL_KEY\" }",
            &format!("{{ file = \"{k}\" }}"),
        )
        .replace(
            "{ env = \"PAGERDUTY_SRE_KEY\" }",
            &format!("{{ file = \"{k}\" }}"),
        )
        .replace("/etc/flowfail/secrets/pagerduty-tech-lead", &k)
        .replace(
            "url_env = \"FLOWFAIL_STAKEHOLDER_WEBHOOK_URL\"",
            &format!("url_file = \"{k}\""),
        );
    let c = Config::from_toml_str(&text).unwrap();
    assert_eq!(c.mode, Mode::Shadow);
    assert_eq!(c.policy.deployment, c.kubernetes.deployment);
}
