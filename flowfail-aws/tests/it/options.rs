//! Security review finding 16: `AwsOptions::standard()` gets operation, attempt, connect and
//! read timeouts, and `Debug` never shows the static secret.

use std::time::Duration;

use flowfail_aws::{AwsOptions, load_config};

const SECRET: &str = "wJalrXUtnFEMI-K7MDENG-CANARY-SECRET";

#[tokio::test]
async fn the_standard_chain_has_every_timeout() {
    let mut o = AwsOptions::standard();
    // A region, so loading never asks an instance-metadata endpoint for one.
    o.region = Some("eu-west-1".into());
    let cfg = load_config(&o).await;
    let t = cfg.timeout_config().expect("a timeout configuration");
    assert_eq!(t.operation_timeout(), Some(Duration::from_secs(30)));
    assert_eq!(t.operation_attempt_timeout(), Some(Duration::from_secs(20)));
    assert_eq!(t.connect_timeout(), Some(Duration::from_secs(5)));
    assert_eq!(t.read_timeout(), Some(Duration::from_secs(20)));
}

#[tokio::test]
async fn a_set_operation_timeout_bounds_the_attempt_and_keeps_the_other_defaults() {
    let mut o = AwsOptions::local("http://127.0.0.1:9");
    o.operation_timeout = Some(Duration::from_secs(4));
    let cfg = load_config(&o).await;
    let t = cfg.timeout_config().expect("a timeout configuration");
    assert_eq!(t.operation_timeout(), Some(Duration::from_secs(4)));
    assert_eq!(t.operation_attempt_timeout(), Some(Duration::from_secs(4)));
    assert!(t.connect_timeout().is_some());
    assert!(t.read_timeout().is_some());
}

#[test]
fn debug_never_shows_the_static_secret() {
    let mut o = AwsOptions::local("http://127.0.0.1:5000");
    o.static_credentials = Some(("AKIDEXAMPLE".into(), SECRET.into()));
    let text = format!("{o:?} {o:#?}");
    assert!(!text.contains(SECRET), "{text}");
    assert!(text.contains("AKIDEXAMPLE"), "{text}");
    assert!(text.contains("[redacted]"), "{text}");
    assert!(text.contains("127.0.0.1:5000"), "{text}");
}
