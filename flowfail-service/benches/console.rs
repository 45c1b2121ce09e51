//! P11 (docs/BENCHMARKS.md): the console's incident page of a 250-task incident with 2 hours
//! of passes — reading the record into its view (`IncidentView::from_record`) and rendering
//! the page — beside the index page of 200 incidents and the same incident's Markdown record.
//!
//! With `FLOWFAIL_PG_URL` set, `console_incident_pg` adds the ledger read: the record written
//! to a fresh schema on PostgreSQL, then read back (`get` and `approvals`), viewed and rendered,
//! as `GET /incidents/KEY` does.
//!
//! `cargo bench -p flowfail-service --bench console`

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use chrono::{TimeDelta, TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use flowfail_core::history::{IncidentLine, IncidentView};
use flowfail_core::ports::IncidentListing;
use flowfail_service::serve::console::pages::{Viewer, incident_page, index_page};
use flowfail_testkit::ledger::long_incident;

fn bench_console(c: &mut Criterion) {
    let t0 = Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap();
    let rec = long_incident(250, TimeDelta::hours(2), t0).unwrap();
    let now = t0 + TimeDelta::hours(2);
    let viewer = Viewer {
        control: true,
        csrf: "0".repeat(64),
        by: "bench".into(),
    };
    let view = IncidentView::from_record(&rec, &[], now);
    let page = incident_page(&view, &[], &viewer);
    eprintln!(
        "P11: {} timeline entries; incident page {} bytes ({} KB)",
        rec.timeline.len(),
        page.len(),
        page.len() / 1000
    );
    let lines: Vec<IncidentLine> = (0..200)
        .map(|_| IncidentLine::of(&IncidentListing::of(rec.clone())))
        .collect();
    let mut g = c.benchmark_group("console_incident_250_tasks_2h");
    g.bench_function("view_and_page", |b| {
        b.iter(|| {
            let v = IncidentView::from_record(black_box(&rec), &[], now);
            incident_page(&v, &[], &viewer)
        })
    });
    g.bench_function("view_only", |b| {
        b.iter(|| IncidentView::from_record(black_box(&rec), &[], now))
    });
    g.bench_function("page_only", |b| {
        b.iter(|| incident_page(black_box(&view), &[], &viewer))
    });
    g.bench_function("markdown_record", |b| {
        b.iter(|| black_box(&view).to_markdown())
    });
    g.bench_function("index_200_incidents", |b| {
        b.iter(|| index_page(black_box(&lines), &[], &viewer))
    });
    g.finish();
    if let Ok(url) = std::env::var("FLOWFAIL_PG_URL") {
        bench_console_pg(c, &url, &rec, &viewer, now);
    }
}

/// The page with its ledger read, on PostgreSQL.
fn bench_console_pg(
    c: &mut Criterion,
    url: &str,
    rec: &flowfail_core::IncidentRecord,
    viewer: &Viewer,
    now: flowfail_core::Timestamp,
) {
    use flowfail_core::IncidentStore;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let schema = format!("ff_bench_console_{}", std::process::id());
    let ledger = rt.block_on(async {
        let pool = flowfail_pg::connect(url, 2).unwrap();
        let c = pool.get().await.unwrap();
        c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .unwrap();
        let ledger = flowfail_pg::PgIncidentStore::new(pool, Some(&schema)).unwrap();
        ledger.migrate().await.unwrap();
        ledger
            .open(&rec.scope, &rec.key, rec.opened_at, &rec.state)
            .await
            .unwrap();
        let epoch = ledger.claim(&rec.key).await.unwrap();
        ledger.append(&rec.key, epoch, &rec.timeline).await.unwrap();
        ledger
    });
    let mut g = c.benchmark_group("console_incident_pg");
    g.bench_function("get_view_page", |b| {
        b.iter(|| {
            rt.block_on(async {
                let r = ledger.get(&rec.key).await.unwrap();
                let approvals = ledger.approvals(&rec.key).await.unwrap();
                let v = IncidentView::from_record(&r, &approvals, now);
                incident_page(&v, &[], viewer)
            })
        })
    });
    g.finish();
    rt.block_on(async {
        let pool = flowfail_pg::connect(url, 1).unwrap();
        let c = pool.get().await.unwrap();
        let _ = c
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await;
    });
}

criterion_group!(benches, bench_console);
criterion_main!(benches);
