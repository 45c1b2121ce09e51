//! A hostile network against the real `flowfail run`: thousands of connections that never
//! finish their headers, some with 400 KB of them. The process stays small, and a legitimate
//! webhook is answered within a second during the attack.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{HTTP_TOKEN, Listener, free_port, grafana_alert, terminate, until, world};

/// The peak and current resident size of process `pid`, in MB (Linux `/proc`).
fn memory_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |key: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{key} not in /proc/{pid}/status"))
    };
    (kb("VmHWM:") / 1024.0, kb("VmRSS:") / 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_network_neither_starves_the_webhook_nor_grows_the_process() {
    let Some(w) = world("hostile").await else {
        return;
    };
    w.k8s
        .add_deployment("default", "flowengine", "flowengine", &BTreeMap::new(), 2);
    w.seed_tasks(100, &[]).await;
    let port = free_port();
    let mut p = w.run_config(&w.config_with("shadow", 300, Some(port)), "h");
    let l = Listener::new(port);
    until(&w, 30, "ready", &mut p, "h", || async {
        matches!(l.get("/readyz").await, Some((200, _)))
    })
    .await;
    let pid = p.id();
    let (_, at_start) = memory_mb(pid);
    let addr = format!("127.0.0.1:{port}");

    // 2,000 connections that send 400 KB of headers that never end, in the background.
    let mut big = tokio::task::JoinSet::new();
    for _ in 0..2000 {
        let addr = addr.clone();
        big.spawn(async move {
            let mut s = TcpStream::connect(&addr).await.ok()?;
            let mut head = b"POST /hooks/grafana HTTP/1.1\r\nHost: flowfail\r\nX-Pad: ".to_vec();
            head.resize(400 * 1024, b'a');
            // The listener stops reading (and closes) long before the end: errors expected.
            let _ = s.write_all(&head).await;
            Some(s)
        });
    }
    // 3,000 connections that send nothing at all.
    let mut idle = Vec::new();
    for _ in 0..3000 {
        if let Ok(s) = TcpStream::connect(&addr).await {
            idle.push(s);
        }
    }
    // During the attack, signed webhooks are answered within a second.
    for i in 0..3 {
        let sent = Instant::now();
        let (code, text) = l
            .post(
                "/hooks/grafana",
                Some(HTTP_TOKEN),
                grafana_alert(&format!("hostile{i}")),
            )
            .await;
        let took = sent.elapsed();
        assert_eq!(code, 202, "{text}");
        assert!(took < Duration::from_secs(1), "webhook {i} took {took:?}");
    }
    let mut held = Vec::new();
    while let Some(r) = big.join_next().await {
        held.extend(r.unwrap());
    }
    let (peak, during) = memory_mb(pid);
    assert!(
        peak < 100.0,
        "peak resident size {peak:.1} MB (at start {at_start:.1} MB, now {during:.1} MB)"
    );
    // The cap held: silent connections were closed for newer ones.
    assert!(
        l.metric("flowfail_requests_refused_total{path=\"*\",reason=\"evicted\"}")
            .await
            > 0.0
    );
    drop(idle);
    drop(held);
    // The process is still healthy and answers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(l.get("/healthz").await.map(|r| r.0), Some(200));
    let (_, after) = memory_mb(pid);
    eprintln!(
        "hostile network: resident {at_start:.1} MB at start, peak {peak:.1} MB, {during:.1} MB during, {after:.1} MB after"
    );
    let status = terminate(&mut p);
    assert!(status.success(), "flowfail run exited with {status}");
}
