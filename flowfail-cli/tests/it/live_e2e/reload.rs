//! Reload without a restart, with the real binary: `flowfail run` reads its config file again
//! on SIGHUP and on `POST /reload`. An invalid file is refused (the running config stays, the
//! metrics say so); a valid one is in force at the next pass (here: a threshold the failure
//! rate crosses, so the incident opens and its tasks are retried in PostgreSQL); a change that
//! needs new connections is named as such.

use std::collections::BTreeMap;
use std::process::Command;

use super::{CONTROL_TOKEN, Listener, free_port, terminate, until, world};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_post_reload_swap_the_policy_between_passes() {
    let Some(w) = world("reload").await else {
        return;
    };
    w.k8s
        .add_deployment("default", "flowengine", "flowengine", &BTreeMap::new(), 2);
    let err = r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#;
    let ids = ["h-0", "h-1", "h-2", "h-3"];
    w.seed_tasks(200, &ids.map(|i| (i, err, Some(500)))).await;
    let port = free_port();
    let config = w.config_with("act", 1, Some(port));
    let strict = std::fs::read_to_string(&config).unwrap();
    // 2% failures: under a 50% threshold nothing opens.
    let lenient = strict.replace(
        "[policy]\n",
        "[policy]\nalert_failure_rate = 0.5\nwidespread_failure_rate = 0.6\n",
    );
    std::fs::write(&config, &lenient).unwrap();
    let mut p = w.run_config(&config, "reload");
    let l = Listener::new(port);
    until(&w, 30, "three idle passes", &mut p, "reload", || async {
        l.metric("flowfail_passes_total{kind=\"idle\"}").await >= 3.0
    })
    .await;
    assert!(!w.open_incident().await);
    assert_eq!(
        l.metric("flowfail_config_last_reload_successful").await,
        1.0
    );

    // An invalid file on SIGHUP: refused, counted, the process runs on with the old config.
    std::fs::write(
        &config,
        lenient.replace("alert_failure_rate = 0.5", "alert_failure_rate = 7"),
    )
    .unwrap();
    assert!(
        Command::new("kill")
            .args(["-HUP", &p.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    until(&w, 15, "the reload refused", &mut p, "reload", || async {
        l.metric("flowfail_config_reloads_total{result=\"refused\"}")
            .await
            == 1.0
    })
    .await;
    assert_eq!(
        l.metric("flowfail_config_last_reload_successful").await,
        0.0
    );
    let idle = l.metric("flowfail_passes_total{kind=\"idle\"}").await;
    until(&w, 15, "two more idle passes", &mut p, "reload", || async {
        l.metric("flowfail_passes_total{kind=\"idle\"}").await >= idle + 2.0
    })
    .await;
    assert!(!w.open_incident().await, "the lenient policy still runs");
    for id in ids {
        assert_eq!(w.task(id).await.attempts, 0, "{id}");
    }

    // The default threshold, and a pool size that needs a restart, by POST /reload: the
    // control token is needed; the answer names what waits for a restart.
    std::fs::write(
        &config,
        strict.replace("[postgres]\n", "[postgres]\npool_size = 2\n"),
    )
    .unwrap();
    let (code, _) = l.post("/reload", None, "{}".into()).await;
    assert_eq!(code, 401);
    let (code, said) = l
        .post("/reload", Some(CONTROL_TOKEN), r#"{"by": "sre"}"#.into())
        .await;
    assert_eq!(code, 200, "{said}");
    assert!(
        said.contains("next pass") && said.contains("postgres"),
        "{said}"
    );
    assert_eq!(
        l.metric("flowfail_config_last_reload_successful").await,
        1.0
    );
    assert_eq!(
        l.metric("flowfail_config_reloads_total{result=\"applied\"}")
            .await,
        1.0
    );
    until(
        &w,
        30,
        "the incident opened and its tasks retried",
        &mut p,
        "reload",
        || async {
            let mut all = true;
            for id in ids {
                all &= w.task(id).await.attempts == 1;
            }
            all
        },
    )
    .await;
    assert!(w.open_incident().await || !w.closed().await.is_empty());
    until(&w, 60, "the incident closed", &mut p, "reload", || async {
        w.work().await;
        !w.open_incident().await && !w.closed().await.is_empty()
    })
    .await;
    assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("reload"));
    let log = w.log("reload");
    assert!(log.contains("config reload refused"), "{log}");
    assert!(
        log.contains("new settings in force from this pass"),
        "{log}"
    );
}
