//! Issue 27 #13: the kill switch of `flowfail run` is a file named in its config. Present, the
//! service changes nothing on any peer and writes nothing to the ledger; removed, it acts — no
//! restart either way.

use std::time::Duration;

use super::{terminate, timeout_world, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_file_holds_every_peer_and_removing_it_lets_the_service_act() {
    let ids = ["k-0", "k-1", "k-2"];
    let Some((w, originals)) = timeout_world("kill", ids).await else {
        return;
    };
    let kill = w.dir.join("kill");
    std::fs::write(&kill, "").unwrap();
    let config = w.config("act");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("kill_switch_file = \"{}\"\n{text}", kill.display()),
    )
    .unwrap();
    let rv = w.resource_version();
    let mut p = w.run_config(&config, "k");
    until(&w, 30, "the switch noticed", &mut p, "k", || async {
        w.log("k").contains("kill switch is on")
    })
    .await;
    // Five polls with the failures in the TaskDB and the switch on.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (id, original) in ids.iter().zip(&originals) {
        assert_eq!(
            w.task(id).await.attempts,
            0,
            "{id} retried with the switch on"
        );
        assert_eq!(
            &w.object(&format!("{id}.json")).await.unwrap(),
            original,
            "{id} pruned with the switch on"
        );
    }
    assert!(
        w.keys().await.iter().all(|k| !k.starts_with("archive/")),
        "archived with the switch on"
    );
    assert_eq!(w.resource_version(), rv, "the Deployment changed");
    assert!(w.pages().await.is_empty(), "paged with the switch on");
    assert!(
        !w.open_incident().await,
        "the ledger was written with the switch on"
    );
    // Removed: the same process acts on the same failures.
    std::fs::remove_file(&kill).unwrap();
    until(
        &w,
        60,
        "the retries after the switch",
        &mut p,
        "k",
        || async {
            let mut all = true;
            for id in ids {
                all &= w.task(id).await.attempts == 1;
            }
            all
        },
    )
    .await;
    assert!(w.keys().await.iter().any(|k| k.starts_with("archive/")));
    assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("k"));
}
