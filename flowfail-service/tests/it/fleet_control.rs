//! The listener's control of a process watching two Deployments ([`flowfail_service::Fleet`]),
//! on the PostgreSQL ledger: a pause names its Deployment, an approval, a denial or a read
//! follows the incident's own scope, and nothing reaches a Deployment of another config or a
//! shadow run's incident.
//!
//! Needs PostgreSQL (`FLOWFAIL_PG_URL`); skips without it unless `FLOWFAIL_PG_REQUIRED=1`.

use chrono::Utc;
use flowfail_core::ErrorKind;
use flowfail_core::ports::IncidentStore;
use flowfail_service::serve::Control;
use flowfail_service::{Config, Fleet};

const PROD: &str = "default.flowengine";
const STAGING: &str = "staging.flowengine";

async fn fleet() -> Option<(Fleet, flowfail_pg::PgIncidentStore)> {
    let url = flowfail_testkit::pg_url();
    let pool = flowfail_pg::connect(&url, 2).unwrap();
    let c = match pool.get().await {
        Ok(c) => c,
        Err(e) => {
            flowfail_testkit::pg_unreachable_in(module_path!(), &url, &e);
            return None;
        }
    };
    let schema = format!(
        "ff_test_fleet_ctl_{}_{}",
        std::process::id(),
        Utc::now().timestamp_subsec_nanos()
    );
    c.batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("flowfail-{schema}"));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key");
    flowfail_testkit::write_secret(&key, "x-test\n");
    let k = key.display();
    let text = format!(
        r#"mode = "act"
[postgres]
url = "{url}"
schema = "{schema}"
[aws]
region = "us-east-1"
endpoint = "http://127.0.0.1:9"
log_group = "g"
bucket = "b"
[kubernetes]
api_url = "http://127.0.0.1:9"
namespace = "default"
[vendors]
primary = "anthropic"
[vendors.anthropic]
quota = "none"
[pager.routing_keys]
on_call = {{ file = "{k}" }}
sre = {{ file = "{k}" }}
tech_lead = {{ file = "{k}" }}
[policy]
require_approval = ["rollback"]

[[deployment]]
deployment = "flowengine"
task_filter = {{ column = "environment", value = "prod" }}
[[deployment]]
namespace = "staging"
deployment = "flowengine"
task_filter = {{ column = "environment", value = "staging" }}
"#
    );
    let fleet = Config::from_toml_str(&text)
        .unwrap()
        .connect_fleet()
        .await
        .unwrap();
    fleet.prepare().await.unwrap();
    let ledger = fleet.members[0].ledger.clone();
    Some((fleet, ledger))
}

#[tokio::test]
async fn control_calls_reach_the_deployment_they_name_and_no_other() {
    let Some((fleet, ledger)) = fleet().await else {
        return;
    };
    assert_eq!(fleet.deployments(), [PROD, STAGING]);
    let now = Utc::now();
    let state = serde_json::json!({});
    let staging_key = format!("{STAGING}-20261207T1000Z");
    ledger
        .open(STAGING, &staging_key, now, &state)
        .await
        .unwrap();
    let shadow_key = format!("{PROD}:shadow-20261207T1000Z");
    ledger
        .open(&format!("{PROD}:shadow"), &shadow_key, now, &state)
        .await
        .unwrap();
    let other_key = "elsewhere.flowengine-20261207T1000Z";
    ledger
        .open("elsewhere.flowengine", other_key, now, &state)
        .await
        .unwrap();

    // Approvals and denials follow the incident's scope: staging's is staging's.
    let said = fleet
        .approve(&staging_key, "rollback", "http:sre")
        .await
        .unwrap();
    assert!(said.contains(&staging_key), "{said}");
    assert_eq!(ledger.approvals(&staging_key).await.unwrap().len(), 1);
    // Another config's incident, and an unknown key: not found, nothing written.
    for key in [other_key, "default.flowengine-20991231T0000Z"] {
        let e = fleet
            .approve(key, "rollback", "http:sre")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{key}: {e}");
    }
    assert!(ledger.approvals(other_key).await.unwrap().is_empty());
    // A shadow run's incident is read back, but nothing acts on it.
    assert_eq!(fleet.incident(&shadow_key).await.unwrap().key, shadow_key);
    let e = fleet
        .approve(&shadow_key, "rollback", "http:sre")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(fleet.incident(other_key).await.is_err());
    // The index lists this process's incidents only, acting and shadow.
    let keys: Vec<String> = fleet
        .incidents(false, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.key)
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(!keys.iter().any(|k| k == other_key), "{keys:?}");

    // A pause names its Deployment (by scope, or by a name only one has).
    let e = fleet.pause(None, "freeze", "http:sre").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = fleet
        .pause(Some("flowengine"), "freeze", "http:sre")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(
        fleet
            .pause(Some(STAGING), "freeze", "http:sre")
            .await
            .unwrap(),
        STAGING
    );
    let pauses = fleet.pauses().await.unwrap();
    assert_eq!(pauses.len(), 2);
    assert_eq!(pauses[0].0, PROD);
    assert!(pauses[0].1.is_none());
    assert_eq!(pauses[1].1.as_ref().unwrap().reason, "freeze");
    assert!(ledger.pause_flag(PROD).await.unwrap().is_none());
    fleet.resume(Some(STAGING), "http:sre").await.unwrap();
    assert!(ledger.pause_flag(STAGING).await.unwrap().is_none());
}
