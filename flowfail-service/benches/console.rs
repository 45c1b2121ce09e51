//! P11 (docs/BENCHMARKS.md): the console's incident page of a 250-task incident with 2 hours
//! of passes — reading the record into its view (`IncidentView::from_record`) and rendering
//! the page — beside the index page of 200 incidents and the same incident's Markdown record.
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
    let page = incident_page(&view, None, &viewer);
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
            incident_page(&v, None, &viewer)
        })
    });
    g.bench_function("view_only", |b| {
        b.iter(|| IncidentView::from_record(black_box(&rec), &[], now))
    });
    g.bench_function("page_only", |b| {
        b.iter(|| incident_page(black_box(&view), None, &viewer))
    });
    g.bench_function("markdown_record", |b| {
        b.iter(|| black_box(&view).to_markdown())
    });
    g.bench_function("index_200_incidents", |b| {
        b.iter(|| index_page(black_box(&lines), None, &viewer))
    });
    g.finish();
}

criterion_group!(benches, bench_console);
criterion_main!(benches);
