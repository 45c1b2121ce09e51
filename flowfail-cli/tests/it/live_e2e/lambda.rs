//! The Lambda side on the live stack (issue 28 #4): CloudWatch Logs (the local AWS API) holds
//! Lambda's own `Task timed out` lines beyond the timeouts the TaskDB recorded, and an error
//! for a task that never reached `failed`: the incident's record in PostgreSQL carries one
//! detection-gap finding with the counts and the task, and the post-incident follow-up.

use flowfail_core::IncidentStore;

use super::{terminate, timeout_world, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detection_gap_in_the_lambda_logs_reaches_the_record() {
    let ids = ["l-0", "l-1", "l-2"];
    let Some((w, _)) = timeout_world("lambda", ids).await else {
        return;
    };
    let mut lines: Vec<(i64, String)> = (0..7)
        .map(|i| {
            (
                3 + i,
                format!("2026-12-07T10:0{i}:00.000Z 8f1c-{i} Task timed out after 45.00 seconds"),
            )
        })
        .collect();
    lines.push((4, "[ERROR] worker lost its row task_id=t-777".to_owned()));
    lines.push((1, "INFO dispatched t-778".to_owned()));
    let lines: Vec<(i64, &str)> = lines.iter().map(|(a, m)| (*a, m.as_str())).collect();
    w.put_logs(&lines).await;
    let mut p = w.run("act", "l");
    until(&w, 90, "the incident closed", &mut p, "l", || async {
        w.work().await;
        !w.closed().await.is_empty() && !w.open_incident().await
    })
    .await;
    assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("l"));
    let closed = w.closed().await;
    let key = closed[0]["key"].as_str().unwrap();
    let rec = w.ledger.get(key).await.unwrap();
    let gaps: Vec<&serde_json::Value> = rec
        .timeline
        .iter()
        .filter(|e| e.kind == "finding" && e.detail["kind"] == "detection_gap")
        .map(|e| &e.detail)
        .collect();
    assert_eq!(gaps.len(), 1, "{:#?}", rec.timeline);
    let summary = gaps[0]["summary"].as_str().unwrap();
    assert!(
        summary.contains("7 Lambda invocations timed out")
            && summary.contains("against 3 timeouts in the TaskDB")
            && summary.contains("t-777 (not in the TaskDB")
            && !summary.contains("t-778"),
        "{summary}"
    );
    let follow_ups = closed[0]["post_incident"]["follow_ups"].to_string();
    assert!(follow_ups.contains("detection gap"), "{follow_ups}");
}
