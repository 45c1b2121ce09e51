//! The operator's controls through [`flowfail_service::Live`], on the real adapters: the
//! PostgreSQL ledger and the fake Kubernetes API server. Every change flowfail makes to the
//! Deployment carries its own change cause (what `kubectl rollout history` shows).
//!
//! Needs PostgreSQL (`FLOWFAIL_PG_URL`); skips without it unless `FLOWFAIL_PG_REQUIRED=1`.

use std::collections::BTreeMap;

use chrono::Utc;
use flowfail_core::ChangeCause;
use flowfail_k8s::fake::FakeApiServer;
use flowfail_service::{Config, Live};

async fn live(k8s: &FakeApiServer) -> Option<(Live, String)> {
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
        "ff_test_live_ctl_{}_{}",
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
api_url = "{}"
namespace = "default"
deployment = "flowengine"
[vendors]
primary = "anthropic"
[vendors.anthropic]
quota = "none"
[pager.routing_keys]
on_call = {{ file = "{k}" }}
sre = {{ file = "{k}" }}
tech_lead = {{ file = "{k}" }}
"#,
        k8s.url()
    );
    let live = Config::from_toml_str(&text)
        .unwrap()
        .connect()
        .await
        .unwrap();
    live.prepare().await.unwrap();
    Some((live, schema))
}

fn change_cause(k8s: &FakeApiServer) -> String {
    let d = k8s.deployment("default", "flowengine").unwrap();
    d.pointer("/metadata/annotations/kubernetes.io~1change-cause")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Each change carries its own cause: the responder's ports are the PostgreSQL ledger itself
/// (nothing wraps it to tell the Kubernetes adapter which incident a pass claimed, so the claim
/// fence is the store's own one-row check) and the adapter writes the cause it is given. A
/// claim changes nothing in what the next change says; a change for another incident, made
/// while this one is claimed, names that other incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_name_the_incident_their_cause_names() {
    let k8s = FakeApiServer::start().await.unwrap();
    k8s.add_deployment("default", "flowengine", "flowengine", &BTreeMap::new(), 2);
    let Some((live, _)) = live(&k8s).await else {
        return;
    };
    let ledger = &live.ports.incidents;
    assert_eq!(format!("{ledger:?}"), "PgIncidentStore { .. }");
    let deployment = &live.ports.deployment;
    let key = "flowengine-20251113T1000Z";
    ledger
        .open("flowengine", key, Utc::now(), &serde_json::json!({}))
        .await
        .unwrap();
    let epoch = ledger.claim(key).await.unwrap();
    ledger.check_epoch(key, epoch).await.unwrap();

    deployment
        .set_env(
            "flowengine",
            &[flowfail_core::EnvChange::set(
                "ENABLE_CIRCUIT_BREAKER",
                "true",
            )],
            None,
            &ChangeCause::for_incident(key, "quota 91% above 85%: enable circuit breaker"),
        )
        .await
        .unwrap();
    assert_eq!(
        change_cause(&k8s),
        format!(
            "flowfail: set ENABLE_CIRCUIT_BREAKER=true (incident {key}: quota 91% above 85%: enable circuit breaker)"
        )
    );

    let state = deployment.state("flowengine").await.unwrap();
    let other = "flowengine-20251113T1100Z";
    deployment
        .rollback(
            "flowengine",
            1,
            &state.resource_version,
            &ChangeCause::for_incident(other, ""),
        )
        .await
        .unwrap();
    assert_eq!(
        change_cause(&k8s),
        format!("flowfail: roll back to revision 1 (incident {other})"),
        "the cause given, not the incident claimed"
    );
    // `kubectl rollout history` reads the cause from the ReplicaSets.
    let causes: Vec<String> = k8s
        .replicasets("default")
        .iter()
        .filter_map(|rs| {
            rs.pointer("/metadata/annotations/kubernetes.io~1change-cause")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        })
        .collect();
    assert!(
        causes
            .iter()
            .any(|c| c.contains(&format!("(incident {other})"))),
        "{causes:?}"
    );

    deployment
        .set_env(
            "flowengine",
            &[flowfail_core::EnvChange::set(
                "ENABLE_CIRCUIT_BREAKER",
                "false",
            )],
            None,
            &ChangeCause::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        change_cause(&k8s),
        "flowfail: set ENABLE_CIRCUIT_BREAKER=false",
        "no cause given, none named, whatever the ledger holds"
    );
}

/// `Live::pause`, `resume`, `paused` and `approve` on the PostgreSQL ledger; refused calls
/// (unknown incident, unknown action, empty reason) write nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_controls_on_the_ledger() {
    let k8s = FakeApiServer::start().await.unwrap();
    let Some((live, _)) = live(&k8s).await else {
        return;
    };
    assert_eq!(live.paused().await.unwrap(), None);
    let e = live.pause("  ", "alice").await.unwrap_err();
    assert_eq!(e.kind(), flowfail_core::ErrorKind::InvalidInput);
    assert_eq!(live.paused().await.unwrap(), None);
    live.pause("change freeze", "alice").await.unwrap();
    let p = live.paused().await.unwrap().unwrap();
    assert_eq!(
        (p.reason.as_str(), p.by.as_str()),
        ("change freeze", "alice")
    );
    live.resume("bob").await.unwrap();
    assert_eq!(live.paused().await.unwrap(), None);

    let key = "default.flowengine-20251113T1100Z";
    live.ports
        .incidents
        .open(
            "default.flowengine",
            key,
            Utc::now(),
            &serde_json::json!({}),
        )
        .await
        .unwrap();
    let e = live.approve("nope", "rollback", "carol").await.unwrap_err();
    assert_eq!(e.kind(), flowfail_core::ErrorKind::NotFound);
    let e = live.approve(key, "reboot", "carol").await.unwrap_err();
    assert_eq!(e.kind(), flowfail_core::ErrorKind::InvalidInput);
    assert!(
        live.ports
            .incidents
            .approvals(key)
            .await
            .unwrap()
            .is_empty()
    );
    let a = live.approve(key, "rollback", "carol").await.unwrap();
    assert_eq!((a.incident.as_str(), a.action.as_str()), (key, "rollback"));
    let stored = live.ports.incidents.approvals(key).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].by, "carol");
}
