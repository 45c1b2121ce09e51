//! Issue 27 #9: the incident ledger's PostgreSQL behind a network that stops forwarding
//! mid-incident (no reset, no answer: a black hole; the TaskDB stays reachable). A supervisor's
//! passes end at the step deadline and go on, each failed ledger call shows in the pass's
//! numbers (the service's `flowfail_data_gaps{port="ledger"}`), and once the network heals the
//! ledger answers again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use flowfail_core::memory::{World, synthesize_bundle};
use flowfail_core::respond::{PassKind, PassStats, Responder, Supervisor};
use flowfail_core::{Clock, FlowType, IncidentStore, Policy, Task, TaskId, TaskStatus};
use flowfail_pg::PgIncidentStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::support::{fresh_stores, url};

/// A TCP proxy to the server that can turn into a black hole: it keeps every connection open
/// and forwards nothing. Healed, the connections of the black-hole era are closed (their
/// streams are broken) and new ones are forwarded.
struct Proxy {
    port: u16,
    black: Arc<AtomicBool>,
    era: Arc<AtomicU64>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let black = Arc::new(AtomicBool::new(false));
        let era = Arc::new(AtomicU64::new(0));
        let (b, e) = (black.clone(), era.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let born = e.load(Ordering::SeqCst);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, b.clone(), e.clone(), born));
                tokio::spawn(pipe(sr, cw, b.clone(), e.clone(), born));
            }
        });
        Proxy { port, black, era }
    }

    fn black_hole(&self, on: bool) {
        if !on {
            self.era.fetch_add(1, Ordering::SeqCst);
        }
        self.black.store(on, Ordering::SeqCst);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    black: Arc<AtomicBool>,
    era: Arc<AtomicU64>,
    born: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if n == 0 || era.load(Ordering::SeqCst) != born {
            return;
        }
        if black.load(Ordering::SeqCst) {
            continue; // swallowed: no answer, no reset
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_database_costs_a_pass_its_step_deadline_never_the_schedule() {
    let Some((direct_tasks, direct_ledger, schema, _pool)) =
        fresh_stores(module_path!(), "ff_test_hole", 2).await
    else {
        return;
    };
    let cfg: tokio_postgres::Config = url().parse().unwrap();
    let host = match &cfg.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        #[allow(unreachable_patterns)]
        _ => "127.0.0.1".to_owned(),
    };
    let upstream = tokio::net::lookup_host((host.as_str(), cfg.get_ports()[0]))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(upstream).await;
    let via = format!(
        "postgres://{}@127.0.0.1:{}/{}?sslmode=disable",
        cfg.get_user().unwrap_or("postgres"),
        proxy.port,
        cfg.get_dbname().unwrap_or("postgres")
    );
    let pool = flowfail_pg::connect(&via, 4).unwrap();
    let ledger = PgIncidentStore::new(pool, Some(&schema)).unwrap();

    let now = Utc::now();
    let mut seed: Vec<Task> = (0..100)
        .map(|i| {
            let id = TaskId::parse(&format!("ok-{i}")).unwrap();
            Task::new(
                id,
                FlowType::Plan,
                TaskStatus::Succeeded,
                now - TimeDelta::seconds(120),
            )
        })
        .collect();
    let mut policy = Policy::default();
    policy.poll_interval_s = 1;
    policy.step_timeout_s = 2;
    let world = World::new(&policy, Clock::system());
    for i in 0..5 {
        let id = TaskId::parse(&format!("t-{i}")).unwrap();
        world.bundles.put(&id, synthesize_bundle(&id, 600_000));
        seed.push(
            Task::new(
                id,
                FlowType::Impl,
                TaskStatus::Failed,
                now - TimeDelta::seconds(60),
            )
            .with_error("Task timed out after 45.00 seconds", None),
        );
    }
    direct_tasks.insert(&seed, &[]).await.unwrap();
    let ports = world
        .ports_builder()
        .tasks(Arc::new(direct_tasks.clone()))
        .incidents(Arc::new(ledger))
        .build()
        .unwrap();
    let passes: Arc<std::sync::Mutex<Vec<(Instant, PassStats)>>> = Arc::default();
    let seen = passes.clone();
    let s = Supervisor::builder()
        .responder(
            Responder::builder()
                .ports(ports)
                .policy(policy.clone())
                .clock(Clock::system()),
        )
        .on_pass(move |p| seen.lock().unwrap().push((Instant::now(), p.clone())))
        .build()
        .unwrap();
    let stop = CancellationToken::new();
    let run = tokio::spawn({
        let stop = stop.clone();
        async move { s.run(stop).await }
    });
    // The incident opens through the proxy.
    let opened = Instant::now();
    while direct_ledger
        .find_open(&policy.deployment)
        .await
        .unwrap()
        .is_none()
    {
        assert!(opened.elapsed() < Duration::from_secs(30), "no incident");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.black_hole(true);
    let from = passes.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(25)).await;
    let during: Vec<(Instant, PassStats)> = passes.lock().unwrap()[from..].to_vec();
    proxy.black_hole(false);
    let healed = passes.lock().unwrap().len();
    // Passes went on: without the step deadline a call on a black-holed connection waits for
    // the kernel's retransmissions (about 15 minutes), and no pass would end in these 25 s.
    let incident = during
        .iter()
        .filter(|(_, p)| p.kind == PassKind::Incident)
        .count();
    assert!(
        incident >= 2,
        "{incident} incident passes ended in 25 s of black hole"
    );
    // The failed ledger calls are in the passes' numbers.
    let failed = during
        .iter()
        .flat_map(|(_, p)| &p.reads)
        .filter(|r| r.port == "ledger" && !r.ok)
        .count();
    assert!(failed >= 2, "{failed} failed ledger calls counted");
    // Healed: the ledger answers again.
    let back = Instant::now();
    loop {
        let ok = passes.lock().unwrap()[healed..]
            .iter()
            .any(|(_, p)| p.reads.iter().any(|r| r.port == "ledger" && r.ok));
        if ok {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(60),
            "the ledger never answered again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    run.await.unwrap().unwrap();
}
