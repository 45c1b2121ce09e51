//! A Deployment Argo CD owns, with the real binary: flowfail enables the circuit breaker in a
//! rate-limit incident, Argo CD's self-heal puts Git's value back (the test plays the
//! controller on the fake API server), and flowfail pages on-call once to make the change in
//! Git instead of fighting the sync: the breaker is set once, never again. Asserted on the
//! Deployment's writes and the pager's requests.

use std::collections::BTreeMap;

use super::{set_quota, terminate, until, world};

const BREAKER: &str = "ENABLE_CIRCUIT_BREAKER";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argo_cd_revert_is_paged_as_such_and_not_fought() {
    let Some(w) = world("gitops").await else {
        return;
    };
    w.k8s.add_deployment(
        "default",
        "flowengine",
        "flowengine",
        &BTreeMap::from([(BREAKER.to_owned(), "false".to_owned())]),
        2,
    );
    w.k8s.edit("default", "flowengine", |d| {
        d["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] =
            "flowengine:apps/Deployment:default/flowengine".into();
    });
    set_quota(&w.quota, 86).await;
    let rl = r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
    let ids = ["a-0", "a-1", "a-2", "a-3"];
    w.seed_tasks(200, &ids.map(|i| (i, rl, Some(429)))).await;
    let mut p = w.run("act", "gitops");
    until(&w, 30, "the breaker enabled", &mut p, "gitops", || async {
        w.env().get(BREAKER).map(String::as_str) == Some("true")
    })
    .await;
    let writes = || {
        w.k8s
            .writes()
            .iter()
            .filter(|x| {
                x.resource == "deployments" && x.field_manager.as_deref() == Some("flowfail")
            })
            .count()
    };
    let flowfail_writes = writes();
    // Argo CD's self-heal: Git's template back (as `kubectl apply` from the controller).
    w.k8s.edit("default", "flowengine", |d| {
        for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array_mut()
            .unwrap()
        {
            if e["name"] == BREAKER {
                e["value"] = "false".into();
            }
        }
    });
    until(&w, 30, "the revert paged", &mut p, "gitops", || async {
        w.pages()
            .await
            .keys()
            .any(|k| k.contains("gitops_reverted"))
    })
    .await;
    // A few more passes: still Git's value, no second write of flowfail's.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("gitops"));
    assert_eq!(w.env().get(BREAKER).map(String::as_str), Some("false"));
    assert_eq!(
        writes(),
        flowfail_writes,
        "flowfail wrote again after the revert"
    );
    let pages = w.pages().await;
    let gitops: Vec<_> = pages
        .iter()
        .filter(|(k, _)| k.contains("gitops_reverted"))
        .collect();
    assert_eq!(gitops.len(), 1, "{pages:?}");
    assert_eq!(*gitops[0].1, 1, "paged once");
    let summary = w
        .pager
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap())
        .find(|v| {
            v["dedup_key"]
                .as_str()
                .is_some_and(|k| k.contains("gitops_reverted"))
        })
        .map(|v| v["payload"]["summary"].as_str().unwrap_or("").to_owned())
        .unwrap();
    assert!(
        summary.contains("Argo CD (application flowengine) reverted flowfail's change of ENABLE_CIRCUIT_BREAKER=true")
            && summary.contains("make the change in Git"),
        "{summary}"
    );
}
