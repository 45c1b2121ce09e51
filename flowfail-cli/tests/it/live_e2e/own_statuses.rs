//! A TaskDB that spells its statuses FlowEngine's way (`[postgres.statuses]`): the real
//! binary counts, triages and retries through the mapping, and what it writes is FlowEngine's
//! own value. Without the mapping none of these rows would be counted: no incident at all.

use std::collections::BTreeMap;

use super::{terminate, until, world};

/// The raw status and attempts of each of `ids`, as FlowEngine reads its table.
async fn raw(w: &super::World, ids: &[&str]) -> Vec<(String, i32)> {
    let c = w.pool.get().await.unwrap();
    let mut out = Vec::new();
    for id in ids {
        let r = c
            .query_one(
                &format!(
                    "SELECT status, attempts FROM {}.tasks WHERE task_id = $1",
                    w.schema
                ),
                &[id],
            )
            .await
            .unwrap();
        out.push((r.get(0), r.get(1)));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flowengine_status_values_end_to_end() {
    let Some(w) = world("statuses").await else {
        return;
    };
    w.k8s
        .add_deployment("default", "flowengine", "flowengine", &BTreeMap::new(), 2);
    let ids = ["e-0", "e-1", "e-2", "e-3"];
    let err = r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#;
    w.pool
        .get()
        .await
        .unwrap()
        .execute(
            &format!(
                "INSERT INTO {s}.tasks (task_id, flow_type, status, error_message, http_status, created_at, attempts)
                 SELECT 'ok-' || i, 'plan', 'DONE', NULL, NULL, now() - interval '10 minutes', 0
                   FROM generate_series(1, 200) i
                 UNION ALL
                 SELECT id, 'impl', 'ERROR', $2, 500, now() - interval '2 minutes', 0
                   FROM unnest($1::text[]) id
                 UNION ALL
                 SELECT 'odd-' || i, 'plan', 'PARKED', NULL, NULL, now() - interval '3 minutes', 0
                   FROM generate_series(1, 3) i",
                s = w.schema
            ),
            &[&ids.to_vec(), &err],
        )
        .await
        .unwrap();
    let config = w.config("act");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{text}\n[postgres.statuses]\nfailed = \"ERROR\"\nfailed_final = \"DEAD\"\npending = [\"QUEUED\", \"RETRYING\"]\nrunning = \"RUNNING\"\nsucceeded = \"DONE\"\n"
        ),
    )
    .unwrap();
    let mut p = w.run_config(&config, "statuses");
    until(
        &w,
        30,
        "the failed tasks retried",
        &mut p,
        "statuses",
        || async { raw(&w, &ids).await.iter().all(|(_, a)| *a == 1) },
    )
    .await;
    // A retry writes the first pending value, once per task.
    for (id, r) in ids.iter().zip(raw(&w, &ids).await) {
        assert_eq!(r, ("QUEUED".to_owned(), 1), "{id}");
    }
    // FlowEngine's worker runs them: they finish as DONE, and the incident closes.
    until(&w, 60, "the incident closed", &mut p, "statuses", || async {
        w.pool
            .get()
            .await
            .unwrap()
            .execute(
                &format!(
                    "UPDATE {}.tasks SET status = 'DONE', finished_at = now() WHERE status = 'QUEUED'",
                    w.schema
                ),
                &[],
            )
            .await
            .unwrap();
        !w.closed().await.is_empty() && !w.open_incident().await
    })
    .await;
    assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("statuses"));
    for (id, r) in ids.iter().zip(raw(&w, &ids).await) {
        assert_eq!(r, ("DONE".to_owned(), 1), "{id}");
    }
    // Rows of a status the mapping does not name are a data gap in the record, by count.
    let record = serde_json::to_string(&w.closed().await).unwrap();
    assert!(
        record.contains("3 tasks of the alert window have a status flowfail does not read"),
        "{record}"
    );
    let mut retried = w.recorded_retries().await;
    retried.sort();
    assert_eq!(retried, ids);
    // No row left with a value flowfail would have written under its own names.
    let n: i64 = w
        .pool
        .get()
        .await
        .unwrap()
        .query_one(
            &format!(
                "SELECT count(*) FROM {}.tasks WHERE status IN ('pending', 'failed', 'failed_final', 'succeeded')",
                w.schema
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}
