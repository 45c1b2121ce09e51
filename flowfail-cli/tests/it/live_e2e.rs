//! The real `flowfail run --config F` against every real peer at once: PostgreSQL (TaskDB and
//! ledger), the local AWS API (S3 bundles, CloudWatch logs), the fake Kubernetes API server
//! (started here), and local HTTP servers for quota, status pages, PagerDuty and the webhook.
//! The test plays FlowEngine's worker (a retried task succeeds) and asserts on the peers, never
//! on flowfail's own report: bundles in S3, attempts in PostgreSQL, env and revisions on the
//! Deployment, requests at the pager, the incident closed in the ledger.
//!
//! Needs PostgreSQL (`FLOWFAIL_PG_URL`) and the local AWS API (`FLOWFAIL_AWS_ENDPOINT`); skips
//! without them unless `FLOWFAIL_PG_REQUIRED=1` / `FLOWFAIL_AWS_REQUIRED=1` (CI).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use chrono::{TimeDelta, Utc};
use flowfail_aws::{AwsOptions, load_config};
use flowfail_core::memory::synthesize_bundle;
use flowfail_core::{FlowType, IncidentStore, Task, TaskId, TaskStatus, TaskStore};
use flowfail_k8s::fake::FakeApiServer;
use flowfail_pg::{PgIncidentStore, PgTaskStore, TaskTable, connect};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::RwLockReadGuard;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{flowfail_cmd, local_aws_shared};

fn pg_url() -> String {
    flowfail_testkit::pg_url()
}

/// One world: every peer, seeded for one scenario.
struct World {
    name: String,
    schema: String,
    pool: deadpool_postgres::Pool,
    tasks: PgTaskStore,
    ledger: PgIncidentStore,
    s3: aws_sdk_s3::Client,
    bucket: String,
    group: String,
    aws_endpoint: String,
    k8s: FakeApiServer,
    /// Keeps `aws_denied` from switching the local AWS API's IAM enforcement on meanwhile.
    _local_aws: RwLockReadGuard<'static, ()>,
    quota: MockServer,
    status: MockServer,
    pager: MockServer,
    webhook: MockServer,
    dir: PathBuf,
}

async fn world(name: &str) -> Option<World> {
    // A missing peer: one visible skip line for this module (or a failure with *_REQUIRED=1).
    let local_aws = local_aws_shared().await;
    let aws_endpoint = flowfail_testkit::aws_endpoint_in(module_path!())?;
    let pool = connect(&pg_url(), 4).unwrap();
    let c = match pool.get().await {
        Ok(c) => c,
        Err(e) => {
            flowfail_testkit::pg_unreachable_in(module_path!(), &pg_url(), &e);
            return None;
        }
    };
    let n = Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let schema = format!("ff_test_e2e_{name}_{}", std::process::id());
    c.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ))
    .await
    .unwrap();
    let tasks = PgTaskStore::new(pool.clone(), &TaskTable::in_schema(schema.clone())).unwrap();
    tasks.migrate().await.unwrap();
    let ledger = PgIncidentStore::new(pool.clone(), Some(&schema)).unwrap();

    let aws = load_config(&AwsOptions::local(aws_endpoint.clone())).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&aws)
            .force_path_style(true)
            .build(),
    );
    let bucket = format!("e2e-{name}-{n}");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let logs = aws_sdk_cloudwatchlogs::Client::new(&aws);
    let group = format!("/aws/lambda/flowengine-e2e-{name}-{n}");
    logs.create_log_group()
        .log_group_name(&group)
        .send()
        .await
        .unwrap();

    let k8s = FakeApiServer::start().await.unwrap();
    let (quota, status, pager, webhook) = (
        MockServer::start().await,
        MockServer::start().await,
        MockServer::start().await,
        MockServer::start().await,
    );
    for s in [&status] {
        Mock::given(method("GET"))
            .and(path("/api/v2/summary.json"))
            .respond_with(ResponseTemplate::new(200).set_body_json(summary("operational")))
            .mount(s)
            .await;
    }
    set_quota(&quota, 20).await;
    Mock::given(method("POST"))
        .and(path("/v2/enqueue"))
        .respond_with(
            ResponseTemplate::new(202)
                .set_body_json(json!({"status": "success", "message": "Event processed"})),
        )
        .mount(&pager)
        .await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&webhook)
        .await;
    let dir = std::env::temp_dir().join(format!("flowfail-e2e-{name}-{n}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("key"), "e2e-secret-key\n").unwrap();
    Some(World {
        name: name.to_owned(),
        schema,
        pool,
        tasks,
        ledger,
        s3,
        bucket,
        group,
        aws_endpoint,
        _local_aws: local_aws,
        k8s,
        quota,
        status,
        pager,
        webhook,
        dir,
    })
}

fn summary(component: &str) -> serde_json::Value {
    json!({
        "page": {"id": "x", "name": "Vendor"},
        "status": {"indicator": "none", "description": "All Systems Operational"},
        "components": [{"name": "Claude API", "status": component}, {"name": "API", "status": component},
                       {"name": "Chat Completions", "status": component}],
        "incidents": []
    })
}

/// The primary vendor's quota, as its rate-limit headers say it.
async fn set_quota(server: &MockServer, used_percent: u64) {
    server.reset().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages/count_tokens"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("anthropic-ratelimit-requests-limit", "100")
                .insert_header(
                    "anthropic-ratelimit-requests-remaining",
                    (100 - used_percent).to_string().as_str(),
                )
                .set_body_json(json!({"input_tokens": 1})),
        )
        .mount(server)
        .await;
}

impl World {
    /// The config of `flowfail run` for this world.
    fn config(&self, mode: &str) -> PathBuf {
        self.config_with(mode, 1, None)
    }

    /// The config with this poll interval and, with a port, the listener on it.
    fn config_with(&self, mode: &str, poll_s: u64, listen: Option<u16>) -> PathBuf {
        let key = self.dir.join("key");
        let k = key.display();
        let text = format!(
            r#"mode = "{mode}"

[postgres]
url = "{pg}"
schema = "{schema}"

[aws]
region = "us-east-1"
endpoint = "{aws}"
log_group = "{group}"
bucket = "{bucket}"

[kubernetes]
api_url = "{k8s}"
namespace = "default"
deployment = "flowengine"
container = "flowengine"

[vendors]
primary = "anthropic"
[vendors.anthropic]
quota = "anthropic"
api_url = "{quota}"
api_key_file = "{k}"
status_url = "{status}"
[vendors.openai]
quota = "none"
status_url = "{status}"

[pager]
url = "{pager}"
[pager.routing_keys]
on_call = {{ file = "{k}" }}
sre = {{ file = "{k}" }}
tech_lead = {{ file = "{k}" }}

[notifier]
url_file = "{hook}"

[policy]
poll_interval_s = {poll_s}
half_open_after_s = 2
retry_base_delay_s = 1
retry_max_delay_s = 2
step_timeout_s = 10
"#,
            pg = pg_url(),
            schema = self.schema,
            aws = self.aws_endpoint,
            group = self.group,
            bucket = self.bucket,
            k8s = self.k8s.url(),
            quota = self.quota.uri(),
            status = self.status.uri(),
            pager = self.pager.uri(),
            hook = {
                let p = self.dir.join("hook-url");
                std::fs::write(&p, format!("{}/hook\n", self.webhook.uri())).unwrap();
                p.display().to_string()
            },
        );
        let text = match listen {
            Some(port) => {
                std::fs::write(self.dir.join("http-token"), format!("{HTTP_TOKEN}\n")).unwrap();
                format!(
                    "{text}\n[server]\nlisten = \"127.0.0.1:{port}\"\ntoken = {{ file = \"{}\" }}\n",
                    self.dir.join("http-token").display()
                )
            }
            None => text,
        };
        let p = self.dir.join(format!("flowfail-{mode}.toml"));
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Starts `flowfail run`; its log goes to a file in the world's folder.
    fn run(&self, mode: &str, tag: &str) -> Child {
        self.run_config(&self.config(mode), tag)
    }

    /// Starts `flowfail run` with this config.
    fn run_config(&self, config: &std::path::Path, tag: &str) -> Child {
        let log = std::fs::File::create(self.dir.join(format!("run-{tag}.log"))).unwrap();
        flowfail_cmd()
            .args(["run", "--config"])
            .arg(config)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn log(&self, tag: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("run-{tag}.log"))).unwrap_or_default()
    }

    async fn seed_tasks(&self, succeeded: usize, failed: &[(&str, &str, Option<u16>)]) {
        let now = Utc::now();
        let mut all: Vec<Task> = (0..succeeded)
            .map(|i| {
                Task::new(
                    TaskId::parse(&format!("ok-{i}")).unwrap(),
                    FlowType::Plan,
                    TaskStatus::Succeeded,
                    now - TimeDelta::minutes(10),
                )
            })
            .collect();
        for (id, msg, status) in failed {
            all.push(
                Task::new(
                    TaskId::parse(id).unwrap(),
                    FlowType::Impl,
                    TaskStatus::Failed,
                    now - TimeDelta::minutes(2),
                )
                .with_error(*msg, *status),
            );
        }
        self.tasks.insert(&all, &[]).await.unwrap();
    }

    async fn put_bundle(&self, id: &str, size: u64) -> Vec<u8> {
        let bytes = synthesize_bundle(&TaskId::parse(id).unwrap(), size);
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(format!("{id}.json"))
            .body(ByteStream::from(bytes.clone()))
            .send()
            .await
            .unwrap();
        bytes
    }

    async fn object(&self, key: &str) -> Option<Vec<u8>> {
        let o = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .ok()?;
        Some(o.body.collect().await.unwrap().into_bytes().to_vec())
    }

    async fn keys(&self) -> Vec<String> {
        let l = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .send()
            .await
            .unwrap();
        l.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    async fn task(&self, id: &str) -> Task {
        self.tasks.get(&TaskId::parse(id).unwrap()).await.unwrap()
    }

    /// FlowEngine's worker: every retried (pending) task runs and succeeds.
    async fn work(&self) {
        let c = self.pool.get().await.unwrap();
        c.execute(
            &format!("UPDATE {}.tasks SET status = 'succeeded', finished_at = now() WHERE status = 'pending'", self.schema),
            &[],
        )
        .await
        .unwrap();
    }

    /// FlowEngine's worker on these tasks, as it updates their rows: `running` when it picks
    /// them up, then `succeeded`, or `failed` again (with the error and the finish time).
    async fn work_on(&self, ids: &[&str], status: &str) {
        let c = self.pool.get().await.unwrap();
        let error = (status == "failed").then_some(TIMEOUT);
        let finished = status != "running";
        let n = c
            .execute(
                &format!(
                    "UPDATE {}.tasks SET status = $2, error_message = coalesce($3, error_message),
                       finished_at = CASE WHEN $4 THEN now() ELSE finished_at END
                     WHERE task_id = ANY($1)",
                    self.schema
                ),
                &[&ids, &status, &error, &finished],
            )
            .await
            .unwrap();
        assert_eq!(n as usize, ids.len());
    }

    /// Closed incidents in the ledger, with their records.
    async fn closed(&self) -> Vec<serde_json::Value> {
        let c = self.pool.get().await.unwrap();
        let rows = c
            .query(
                &format!("SELECT key FROM {}.flowfail_incidents WHERE closed_at IS NOT NULL ORDER BY opened_at", self.schema),
                &[],
            )
            .await
            .unwrap_or_default();
        let mut out = Vec::new();
        for r in rows {
            let key: String = r.get(0);
            let rec = self.ledger.get(&key).await.unwrap();
            out.push(
                json!({"key": key, "post_incident": rec.post_incident, "timeline": rec.timeline}),
            );
        }
        out
    }

    /// Task ids of the retries recorded as applied in the ledger, open or closed incidents.
    async fn recorded_retries(&self) -> Vec<String> {
        let c = self.pool.get().await.unwrap();
        let rows = c
            .query(
                &format!("SELECT key FROM {}.flowfail_incidents", self.schema),
                &[],
            )
            .await
            .unwrap_or_default();
        let mut out = Vec::new();
        for r in rows {
            let key: String = r.get(0);
            for e in self.ledger.get(&key).await.unwrap().timeline {
                if e.kind == "action"
                    && e.detail["action"]["kind"] == "retry_task"
                    && e.detail["outcome"] == "applied"
                {
                    out.push(
                        e.detail["action"]["task_id"]
                            .as_str()
                            .unwrap_or("")
                            .to_owned(),
                    );
                }
            }
        }
        out
    }

    async fn open_incident(&self) -> bool {
        matches!(self.ledger.find_open("flowengine").await, Ok(Some(_)))
    }

    fn env(&self) -> BTreeMap<String, String> {
        let d = self.k8s.deployment("default", "flowengine").unwrap();
        d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_owned(),
                    e["value"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    /// The Deployment's change cause (what `kubectl rollout history` shows).
    fn change_cause(&self) -> String {
        let d = self.k8s.deployment("default", "flowengine").unwrap();
        d.pointer("/metadata/annotations/kubernetes.io~1change-cause")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `flowfail pause|resume …` with this world's config; its exit code and stderr.
    fn control(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = flowfail_cmd()
            .args(args)
            .arg("--config")
            .arg(self.config("act"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn image(&self) -> String {
        let d = self.k8s.deployment("default", "flowengine").unwrap();
        d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn resource_version(&self) -> String {
        let d = self.k8s.deployment("default", "flowengine").unwrap();
        d["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Page triggers the pager received, by dedup key.
    async fn pages(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for r in self.pager.received_requests().await.unwrap_or_default() {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            if v["event_action"] == "trigger" {
                *out.entry(v["dedup_key"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
        out
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = &self.name;
    }
}

/// Polls `cond` (and plays the worker) every 200 ms until it holds or `secs` pass.
async fn until<F, Fut>(w: &World, secs: u64, what: &str, child: &mut Child, tag: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "flowfail exited ({status}) while waiting for {what}:\n{}",
                w.log(tag)
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}:\n{}",
            w.log(tag)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SIGTERM, then the exit status within 5 s.
fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no exit within 5 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill9(child: &mut Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

const TIMEOUT: &str = "Task timed out after 45.00 seconds";
const HTTP_TOKEN: &str = "e2e-http-token-0123456789";

/// The pilot's world: the Deployment at revision 2, and three timeouts among 100 successes
/// whose bundles are 600 kB (returned, as stored). 3 of 103 failed: the alert keeps firing
/// (hysteresis) until the last one is handled, so an incident cannot close with a task left,
/// wherever a kill lands.
async fn timeout_world(name: &str, ids: [&str; 3]) -> Option<(World, Vec<Vec<u8>>)> {
    let w = world(name).await?;
    w.k8s
        .add_deployment("default", "flowengine", "flowengine", &BTreeMap::new(), 2);
    w.seed_tasks(100, &ids.map(|i| (i, TIMEOUT, None))).await;
    let mut originals = Vec::new();
    for id in ids {
        originals.push(w.put_bundle(id, 600_000).await);
    }
    Some((w, originals))
}

/// (a) The pilot's timeout incident: three oversized bundles; killed -9 after the first
/// prune, restarted; then SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_incident_with_oversized_bundles_end_to_end() {
    let ids = ["t-0", "t-1", "t-2"];
    let Some((w, originals)) = timeout_world("timeout", ids).await else {
        return;
    };
    let mut first = w.run("act", "a1");
    // Kill -9 once the first bundle is pruned (mid-incident).
    until(
        &w,
        60,
        "a first pruned bundle",
        &mut first,
        "a1",
        || async { w.keys().await.iter().any(|k| k.starts_with("archive/")) },
    )
    .await;
    kill9(&mut first);
    // What the first process did that its record does not hold: at most the action in flight.
    let recorded_at_kill = w.recorded_retries().await;
    let mut unrecorded = 0;
    for id in ids {
        if w.task(id).await.attempts == 1 && !recorded_at_kill.contains(&id.to_owned()) {
            unrecorded += 1;
        }
    }
    let mut second = w.run("act", "a2");
    until(&w, 90, "the incident closed", &mut second, "a2", || async {
        w.work().await;
        !w.closed().await.is_empty() && !w.open_incident().await
    })
    .await;
    assert_eq!(terminate(&mut second).code(), Some(0), "{}", w.log("a2"));

    // S3: every bundle within the budget, its original archived byte for byte, once.
    let keys = w.keys().await;
    for (id, original) in ids.iter().zip(&originals) {
        let live = w.object(&format!("{id}.json")).await.unwrap();
        assert!(
            live.len() <= 180_000,
            "{id}: {} bytes\nrecord: {:#?}\nfirst run:\n{}\nsecond run:\n{}",
            live.len(),
            w.closed().await,
            w.log("a1"),
            w.log("a2")
        );
        serde_json::from_slice::<serde_json::Value>(&live).expect("pruned bundle is JSON");
        let sum: String = Sha256::digest(original)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let archives: Vec<&String> = keys
            .iter()
            .filter(|k| k.starts_with(&format!("archive/{id}.")))
            .collect();
        assert_eq!(archives.len(), 1, "{id}: {keys:?}");
        assert_eq!(archives[0], &format!("archive/{id}.{sum}.json"));
        assert_eq!(
            &w.object(archives[0]).await.unwrap(),
            original,
            "{id}: archive differs"
        );
    }
    // PostgreSQL: each retried exactly once (nothing done twice across the kill).
    for id in ids {
        let t = w.task(id).await;
        assert_eq!((t.status, t.attempts), (TaskStatus::Succeeded, 1), "{id}");
    }
    // The ledger: one incident, closed, with the record built from the whole timeline.
    let closed = w.closed().await;
    assert_eq!(closed.len(), 1, "{closed:#?}");
    let post = &closed[0]["post_incident"];
    assert_eq!(post["status"], "resolved", "{post:#}");
    // Every retry on the TaskDB is in the record, but for those in flight at the kill.
    assert_eq!(
        post["actions_summary"]["retry_task"]["applied"]
            .as_u64()
            .unwrap_or(0)
            + unrecorded,
        3,
        "{post:#}"
    );
    // Nobody paged for a timeout incident that resolved; the Deployment untouched.
    assert!(w.pages().await.is_empty());
    assert_eq!(w.image(), "flowengine:2");
}

/// (b) A rate-limit incident: quota at 86 %, then falling. The breaker goes on, retries wait
/// for half-open, the breaker setting is restored when quota is back under 70 %.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_rate_limit_incident_end_to_end() {
    let Some(w) = world("ratelimit").await else {
        return;
    };
    w.k8s.add_deployment(
        "default",
        "flowengine",
        "flowengine",
        &BTreeMap::from([("ENABLE_CIRCUIT_BREAKER".to_owned(), "false".to_owned())]),
        2,
    );
    set_quota(&w.quota, 86).await;
    let rl = r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
    let ids = ["r-0", "r-1", "r-2", "r-3"];
    w.seed_tasks(200, &ids.map(|i| (i, rl, Some(429)))).await;
    let mut p = w.run("act", "b");
    until(&w, 30, "the breaker enabled", &mut p, "b", || async {
        w.env().get("ENABLE_CIRCUIT_BREAKER").map(String::as_str) == Some("true")
    })
    .await;
    // No retry while the breaker is open.
    for id in ids {
        assert_eq!(
            w.task(id).await.attempts,
            0,
            "{id} retried while the breaker was open"
        );
    }
    set_quota(&w.quota, 50).await;
    until(&w, 90, "the incident closed", &mut p, "b", || async {
        w.work().await;
        !w.closed().await.is_empty() && !w.open_incident().await
    })
    .await;
    assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("b"));
    for id in ids {
        let t = w.task(id).await;
        assert_eq!((t.status, t.attempts), (TaskStatus::Succeeded, 1), "{id}");
    }
    assert_eq!(
        w.env().get("ENABLE_CIRCUIT_BREAKER").map(String::as_str),
        Some("false"),
        "breaker restored"
    );
    assert!(w.pages().await.is_empty(), "quota never critical: no page");
}

/// (c) A bad deploy: widespread unknown failures after a recent deploy. Rolled back once to the
/// revision recorded at open (killed -9 right after the rollback, restarted: never twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_bad_deploy_end_to_end() {
    let Some(w) = world("baddeploy").await else {
        return;
    };
    w.k8s
        .add_deployment("default", "flowengine", "flowengine", &BTreeMap::new(), 2);
    assert_eq!(w.image(), "flowengine:2");
    let ids: Vec<String> = (0..60).map(|i| format!("u-{i}")).collect();
    let failed: Vec<(&str, &str, Option<u16>)> = ids
        .iter()
        .map(|i| (i.as_str(), "KeyError: 'context_refs'", None))
        .collect();
    w.seed_tasks(140, &failed).await;
    let mut first = w.run("act", "c1");
    until(&w, 60, "the rollback", &mut first, "c1", || async {
        w.image() == "flowengine:1"
    })
    .await;
    kill9(&mut first);
    let replicasets = w.k8s.replicasets("default").len();
    let mut second = w.run("act", "c2");
    until(&w, 90, "the incident closed", &mut second, "c2", || async {
        w.work().await;
        !w.closed().await.is_empty() && !w.open_incident().await
    })
    .await;
    assert_eq!(terminate(&mut second).code(), Some(0), "{}", w.log("c2"));
    // The Deployment: rolled back to revision 1's template, exactly once.
    assert_eq!(w.image(), "flowengine:1");
    assert_eq!(
        w.k8s.replicasets("default").len(),
        replicasets,
        "a second rollout happened"
    );
    let patches = w
        .k8s
        .requests()
        .iter()
        .filter(|r| r.starts_with("PATCH deployments/flowengine"))
        .count();
    assert_eq!(patches, 1, "{:?}", w.k8s.requests());
    // The rollback names its incident in the change cause (`kubectl rollout history`).
    let closed_key = w.closed().await[0]["key"].as_str().unwrap().to_owned();
    assert_eq!(
        w.change_cause(),
        format!(
            "flowfail: roll back to revision 1 (incident {closed_key}: widespread failures after the deploy of revision 2)"
        )
    );
    // Unknown failures retried only after the verified rollback, once each.
    for id in &ids {
        let t = w.task(id).await;
        assert_eq!((t.status, t.attempts), (TaskStatus::Succeeded, 1), "{id}");
    }
    // On-call paged for the new failure mode under one dedup key. Pages are at least once: the
    // one in flight at the kill (sent, not yet checkpointed) may go out again under the same
    // key, which the pager deduplicates; no other page repeats.
    let pages = w.pages().await;
    assert!(
        pages
            .keys()
            .any(|k| k.ends_with(":page:on_call:new_failure_mode")),
        "{pages:?}"
    );
    assert!(pages.values().all(|n| *n <= 2), "{pages:?}");
    assert!(
        pages.values().filter(|n| **n == 2).count() <= 1,
        "{pages:?}"
    );
    let closed = w.closed().await;
    assert_eq!(closed.len(), 1);
    // The rollback is in the record, unless the kill landed between the rollback and its
    // checkpoint: then the ledger still holds its reservation (which kept it from happening
    // twice: one PATCH above).
    let recorded = closed[0]["post_incident"]["actions_summary"]["rollback"]["applied"]
        .as_u64()
        .unwrap_or(0);
    let key = closed[0]["key"].as_str().unwrap();
    let reserved = w.ledger.get(key).await.unwrap().effects;
    assert!(
        recorded == 1 || (recorded == 0 && reserved.iter().any(|e| e == "rollback")),
        "{:#}\nreserved: {reserved:?}",
        closed[0]
    );
}

/// (d) Paused with `flowfail pause` before the alert: the incident opens and is recorded, and
/// nothing reaches S3, the TaskDB, the Deployment or the webhook; on-call gets one "automation
/// paused" page. After `flowfail resume` the same process works the incident to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_paused_then_resumed_end_to_end() {
    let ids = ["p-0", "p-1", "p-2"];
    let Some((w, originals)) = timeout_world("paused", ids).await else {
        return;
    };
    let (code, err) = w.control(&["pause", "--reason", "change freeze", "--by", "alice"]);
    assert_eq!(code, Some(0), "{err}");
    let rv = w.resource_version();
    let mut p = w.run("act", "d");
    until(&w, 30, "the paused notice", &mut p, "d", || async {
        w.open_incident().await
            && w.pages()
                .await
                .keys()
                .any(|k| k.ends_with(":page:on_call:automation_paused"))
    })
    .await;
    // Several more passes (one a second), paused.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (id, original) in ids.iter().zip(&originals) {
        assert_eq!(
            &w.object(&format!("{id}.json")).await.unwrap(),
            original,
            "{id}"
        );
        assert_eq!(w.task(id).await.attempts, 0, "{id} retried while paused");
    }
    assert!(!w.keys().await.iter().any(|k| k.starts_with("archive/")));
    assert_eq!(
        w.resource_version(),
        rv,
        "the Deployment changed while paused"
    );
    assert!(
        !w.k8s.requests().iter().any(|r| r.starts_with("PATCH")),
        "{:?}",
        w.k8s.requests()
    );
    assert_eq!(
        w.pages().await.values().sum::<usize>(),
        1,
        "{:?}",
        w.pages().await
    );
    assert!(
        w.webhook
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );

    let (code, err) = w.control(&["resume", "--by", "alice"]);
    assert_eq!(code, Some(0), "{err}");
    until(&w, 90, "the incident closed", &mut p, "d", || async {
        w.work().await;
        !w.closed().await.is_empty() && !w.open_incident().await
    })
    .await;
    assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("d"));
    for id in ids {
        assert!(
            w.object(&format!("{id}.json")).await.unwrap().len() <= 180_000,
            "{id}"
        );
        let t = w.task(id).await;
        assert_eq!((t.status, t.attempts), (TaskStatus::Succeeded, 1), "{id}");
    }
    let pages = w.pages().await;
    assert_eq!(
        pages.values().sum::<usize>(),
        1,
        "only the notice: {pages:?}"
    );
    let closed = w.closed().await;
    let kinds: Vec<&str> = closed[0]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"paused") && kinds.contains(&"resumed"),
        "{kinds:?}"
    );
}

/// Shadow mode on (a)'s world: zero changes on every peer, the same decisions in the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_changes_nothing_and_records_the_decisions() {
    let ids = ["s-0", "s-1", "s-2"];
    let Some((w, originals)) = timeout_world("shadow", ids).await else {
        return;
    };
    let rv = w.resource_version();
    let mut p = w.run("shadow", "s");
    until(&w, 60, "decisions in the ledger", &mut p, "s", || async {
        let Ok(Some(open)) = w.ledger.find_open("flowengine").await else {
            return false;
        };
        let Ok(rec) = w.ledger.get(&open.key).await else {
            return false;
        };
        let dry: Vec<_> = rec
            .timeline
            .iter()
            .filter(|e| e.kind == "action" && e.detail["outcome"] == "dry_run")
            .collect();
        dry.iter()
            .filter(|e| e.detail["action"]["kind"] == "prune_context")
            .count()
            == 3
            && dry
                .iter()
                .filter(|e| e.detail["action"]["kind"] == "retry_task")
                .count()
                == 3
    })
    .await;
    // A few more passes: still nothing changes, decisions not repeated.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("s"));
    for (id, original) in ids.iter().zip(&originals) {
        assert_eq!(
            &w.object(&format!("{id}.json")).await.unwrap(),
            original,
            "{id} changed"
        );
        assert_eq!(w.task(id).await.attempts, 0, "{id} retried");
    }
    assert!(
        w.keys().await.iter().all(|k| !k.starts_with("archive/")),
        "archived in shadow mode"
    );
    assert_eq!(w.resource_version(), rv, "the Deployment changed");
    assert!(
        w.pager
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
    assert!(
        w.webhook
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
    let open = w.ledger.find_open("flowengine").await.unwrap().unwrap();
    let rec = w.ledger.get(&open.key).await.unwrap();
    let actions = rec.timeline.iter().filter(|e| e.kind == "action").count();
    assert_eq!(
        actions, 6,
        "each decision recorded once: {:#?}",
        rec.timeline
    );
}

fn check_config(config: &std::path::Path, offline: bool) -> (Option<i32>, String, String) {
    let mut cmd = flowfail_cmd();
    cmd.args(["check-config", "--config"]).arg(config);
    if offline {
        cmd.arg("--offline");
    }
    let out = cmd
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `check-config` probes every backend read-only: one `ok` line per port on a good world,
/// a `FAIL` line and exit 1 for a missing bucket, exit 1 with the key's path offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_probes_every_backend_read_only() {
    let Some(w) = world("check").await else {
        return;
    };
    w.k8s
        .add_deployment("default", "flowengine", "flowengine", &BTreeMap::new(), 2);
    let rv = w.resource_version();
    let config = w.config("act");
    let (code, out, err) = check_config(&config, false);
    assert_eq!(code, Some(0), "{out}\n{err}");
    for port in [
        "config",
        "postgres.tasks",
        "postgres.ledger",
        "aws.logs",
        "aws.bundles",
        "kubernetes",
        "status.anthropic",
        "quota.anthropic",
        "pager",
    ] {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(port))
            .unwrap_or_else(|| panic!("no line for {port}:\n{out}"));
        assert!(line.starts_with("ok"), "{line}");
    }
    // Read-only: nothing changed, nobody paged, the quota read once per vendor at most.
    assert_eq!(w.resource_version(), rv);
    assert!(w.pager.received_requests().await.unwrap().is_empty());
    assert!(w.webhook.received_requests().await.unwrap().is_empty());
    assert!(w.keys().await.is_empty());

    // A bucket that does not exist: one FAIL line, exit 1.
    let text = std::fs::read_to_string(&config).unwrap();
    let bad = w.dir.join("bad-bucket.toml");
    std::fs::write(
        &bad,
        text.replace(
            &format!("bucket = \"{}\"", w.bucket),
            "bucket = \"no-such-bucket-flowfail\"",
        ),
    )
    .unwrap();
    let (code, out, err) = check_config(&bad, false);
    assert_eq!(code, Some(1), "{out}\n{err}");
    let line = out
        .lines()
        .find(|l| l.contains("aws.bundles"))
        .unwrap_or_else(|| panic!("{out}\n{err}"));
    assert!(line.starts_with("FAIL"), "{out}");

    // Offline: an unknown key is found without connecting, by its path.
    let typo = w.dir.join("typo.toml");
    std::fs::write(&typo, text.replace("[aws]\n", "[aws]\nbuckt = \"x\"\n")).unwrap();
    let (code, out, err) = check_config(&typo, true);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(err.contains("aws") && err.contains("buckt"), "{err}");
    let (code, out, _) = check_config(&config, true);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("ok"), "{out}");
}

/// A free local port (bound, then released for flowfail to bind).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// flowfail's listener, from the test's side.
struct Listener {
    base: String,
    http: reqwest::Client,
}

impl Listener {
    fn new(port: u16) -> Self {
        Listener {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .ok()?;
        Some((r.status().as_u16(), r.text().await.ok()?))
    }

    async fn post(&self, path: &str, token: Option<&str>, body: String) -> (u16, String) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// One sample of the metrics (0 when the series is absent).
    async fn metric(&self, series: &str) -> f64 {
        let Some((_, text)) = self.get("/metrics").await else {
            return 0.0; // not listening yet
        };
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }
}

fn grafana_alert(fingerprint: &str) -> String {
    json!({
        "receiver": "flowfail", "status": "firing", "orgId": 1, "version": "1",
        "groupKey": "{}:{alertname=\"FlowFailureRate\"}", "title": "[FIRING:1] FlowFailureRate",
        "state": "alerting", "message": "flows failing", "externalURL": "http://grafana/",
        "commonLabels": {"alertname": "FlowFailureRate"},
        "alerts": [{"status": "firing", "labels": {"alertname": "FlowFailureRate"},
                    "annotations": {}, "startsAt": "2026-11-27T10:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z", "fingerprint": fingerprint,
                    "generatorURL": "http://grafana/alerting/1", "values": {"A": 0.03}}]
    })
    .to_string()
}

/// (d) The alert webhook starts the response. flowfail polls every five minutes here, so only
/// the Grafana webhook can explain an incident within seconds of the failures. An
/// unauthenticated call changes nothing; the metrics move from before to after; the ledger
/// names the alert that woke flowfail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_a_grafana_webhook_starts_the_response_and_the_metrics_move() {
    let Some(w) = world("webhook").await else {
        return;
    };
    w.k8s
        .add_deployment("default", "flowengine", "flowengine", &BTreeMap::new(), 2);
    w.seed_tasks(100, &[]).await;
    let ids = ["h-0", "h-1", "h-2"];
    for id in ids {
        w.put_bundle(id, 600_000).await;
    }
    let port = free_port();
    let mut p = w.run_config(&w.config_with("act", 300, Some(port)), "d");
    let l = Listener::new(port);
    until(&w, 30, "ready", &mut p, "d", || async {
        matches!(l.get("/readyz").await, Some((200, _)))
    })
    .await;
    assert_eq!(l.get("/healthz").await.unwrap().0, 200);
    until(&w, 30, "a first idle pass", &mut p, "d", || async {
        l.metric("flowfail_passes_total{kind=\"idle\"}").await >= 1.0
    })
    .await;
    let before_incident_passes = l.metric("flowfail_passes_total{kind=\"incident\"}").await;
    assert_eq!(before_incident_passes, 0.0);
    assert_eq!(l.metric("flowfail_incidents_open").await, 0.0);

    // The failures appear; the next poll is five minutes away.
    let now = Utc::now();
    let failed: Vec<Task> = ids
        .iter()
        .map(|id| {
            Task::new(
                TaskId::parse(id).unwrap(),
                FlowType::Impl,
                TaskStatus::Failed,
                now - TimeDelta::minutes(2),
            )
            .with_error(TIMEOUT, None)
        })
        .collect();
    w.tasks.insert(&failed, &[]).await.unwrap();
    // Unauthenticated and malformed alerts: refused, nothing happens.
    let (code, _) = l.post("/hooks/grafana", None, grafana_alert("x")).await;
    assert_eq!(code, 401);
    let (code, _) = l
        .post(
            "/hooks/grafana",
            Some("e2e-http-token-wrong-0000"),
            grafana_alert("x"),
        )
        .await;
    assert_eq!(code, 401);
    let (code, text) = l
        .post("/hooks/grafana", Some(HTTP_TOKEN), "{\"status\":1}".into())
        .await;
    assert_eq!(code, 400, "{text}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!w.open_incident().await, "an incident before the alert");
    assert!(w.keys().await.iter().all(|k| !k.starts_with("archive/")));

    let (code, text) = l
        .post("/hooks/grafana", Some(HTTP_TOKEN), grafana_alert("e2e1"))
        .await;
    assert_eq!(code, 202, "{text}");
    let sent = Instant::now();
    until(
        &w,
        20,
        "the bundles pruned after the alert",
        &mut p,
        "d",
        || async {
            w.keys()
                .await
                .iter()
                .filter(|k| k.starts_with("archive/"))
                .count()
                == 3
        },
    )
    .await;
    let to_prune = sent.elapsed();
    until(&w, 30, "the tasks retried", &mut p, "d", || async {
        let mut all = true;
        for id in ids {
            all &= w.task(id).await.attempts == 1;
        }
        all
    })
    .await;
    assert!(to_prune < Duration::from_secs(20), "{to_prune:?}");
    // The ledger names the alert.
    let open = w.ledger.find_open("flowengine").await.unwrap().unwrap();
    assert_eq!(
        open.state["woken_by"],
        "grafana alert \"FlowFailureRate\" (fingerprint e2e1)"
    );
    // The metrics moved (once the pass that acted has ended).
    until(&w, 20, "an incident pass counted", &mut p, "d", || async {
        l.metric("flowfail_passes_total{kind=\"incident\"}").await >= 1.0
    })
    .await;
    assert_eq!(l.metric("flowfail_incidents_open").await, 1.0);
    assert_eq!(
        l.metric("flowfail_actions_total{kind=\"prune_context\",outcome=\"applied\"}")
            .await,
        3.0
    );
    assert_eq!(
        l.metric("flowfail_actions_total{kind=\"retry_task\",outcome=\"applied\"}")
            .await,
        3.0
    );
    assert_eq!(
        l.metric("flowfail_alerts_received_total{source=\"grafana\",status=\"firing\"}")
            .await,
        1.0
    );
    assert_eq!(
        l.metric(
            "flowfail_requests_refused_total{path=\"/hooks/grafana\",reason=\"unauthenticated\"}"
        )
        .await,
        2.0
    );
    assert_eq!(
        l.metric("flowfail_requests_refused_total{path=\"/hooks/grafana\",reason=\"malformed\"}")
            .await,
        1.0
    );
    assert!(
        l.metric("flowfail_last_successful_read_timestamp_seconds{port=\"bundles\"}")
            .await
            > 1.7e9
    );
    assert_eq!(l.metric("flowfail_mode{mode=\"act\"}").await, 1.0);
    assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("d"));
}

/// P9 of docs/BENCHMARKS.md, webhook-triggered: the real binary on the live stack, polling
/// every five minutes; 200 failed tasks (HTTP 503) appear beside 1,000 succeeded ones, a
/// Grafana alert is posted, and the time from the POST to the first retry visible in
/// PostgreSQL is measured, for `FLOWFAIL_P9_ALERTS` alerts (default 20), each on a fresh world.
/// A measurement, not a test: it asserts only that each alert led to a retry.
///
/// ```bash
/// cargo test --release -p flowfail-cli --test it live_e2e::p9_webhook -- --ignored --nocapture
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark (P9): run it with --ignored --nocapture"]
async fn p9_webhook_to_first_action() {
    let n: usize = std::env::var("FLOWFAIL_P9_ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut took = Vec::new();
    for k in 0..n {
        let Some(w) = world(&format!("p9{k}")).await else {
            return;
        };
        w.k8s
            .add_deployment("default", "flowengine", "flowengine", &BTreeMap::new(), 2);
        w.seed_tasks(1000, &[]).await;
        let port = free_port();
        let mut p = w.run_config(&w.config_with("act", 300, Some(port)), "p9");
        let l = Listener::new(port);
        until(&w, 30, "a first idle pass", &mut p, "p9", || async {
            l.metric("flowfail_passes_total{kind=\"idle\"}").await >= 1.0
        })
        .await;
        let now = Utc::now();
        let failed: Vec<Task> = (0..200)
            .map(|i| {
                Task::new(
                    TaskId::parse(&format!("p9-{i}")).unwrap(),
                    FlowType::Impl,
                    TaskStatus::Failed,
                    now - TimeDelta::minutes(1),
                )
                .with_error("503 Service Unavailable", Some(503))
            })
            .collect();
        w.tasks.insert(&failed, &[]).await.unwrap();
        let c = w.pool.get().await.unwrap();
        let q = format!("SELECT count(*) FROM {}.tasks WHERE attempts > 0", w.schema);
        let (code, _) = l
            .post(
                "/hooks/grafana",
                Some(HTTP_TOKEN),
                grafana_alert(&format!("p9-{k}")),
            )
            .await;
        let sent = Instant::now();
        assert_eq!(code, 202);
        loop {
            let retried: i64 = c.query_one(&q, &[]).await.unwrap().get(0);
            if retried > 0 {
                break;
            }
            assert!(sent.elapsed() < Duration::from_secs(60), "{}", w.log("p9"));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        took.push(sent.elapsed());
        assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("p9"));
    }
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p95 = took[((took.len() * 95).div_ceil(100)).max(1) - 1];
    println!(
        "P9 webhook to first retry in PostgreSQL, {} alerts: min {:.0} ms, median {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        took.len(),
        ms(took[0]),
        ms(took[took.len() / 2]),
        ms(p95),
        ms(took[took.len() - 1])
    );
    println!(
        "  each (ms): {}",
        took.iter()
            .map(|d| format!("{:.0}", ms(*d)))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// Page triggers at the pager whose dedup key ends with `suffix`.
async fn triggers_with(w: &World, suffix: &str) -> usize {
    w.pages()
        .await
        .iter()
        .filter(|(k, _)| k.ends_with(suffix))
        .map(|(_, n)| n)
        .sum()
}

/// (e) Paused mid-incident over HTTP: new failures arrive while paused and nothing reaches any
/// peer (bundles, attempts, the Deployment, the pager but for the one "automation paused"
/// notice) until resume; then they are handled. Unauthenticated pause and resume change
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_pause_mid_incident_holds_every_peer_until_resume() {
    let first = ["q-0", "q-1", "q-2"];
    let Some((w, _)) = timeout_world("pause", first).await else {
        return;
    };
    let port = free_port();
    let mut p = w.run_config(&w.config_with("act", 1, Some(port)), "e");
    let l = Listener::new(port);
    let pause_body = json!({"reason": "e2e change freeze", "by": "e2e"}).to_string();
    // Refused: no token, a wrong one.
    until(&w, 30, "listening", &mut p, "e", || async {
        l.get("/healthz").await.is_some()
    })
    .await;
    assert_eq!(l.post("/pause", None, pause_body.clone()).await.0, 401);
    assert_eq!(
        l.post(
            "/pause",
            Some("e2e-http-token-wrong-0000"),
            pause_body.clone()
        )
        .await
        .0,
        401
    );
    // The first failures are pruned and retried: the incident is under way.
    until(&w, 60, "the first retries", &mut p, "e", || async {
        let mut all = true;
        for id in first {
            all &= w.task(id).await.attempts == 1;
        }
        all
    })
    .await;
    assert_eq!(
        l.metric("flowfail_paused").await,
        0.0,
        "paused by a refused call"
    );
    let (code, text) = l.post("/pause", Some(HTTP_TOKEN), pause_body).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(l.metric("flowfail_paused").await, 1.0);
    // Let the pass in progress end, then new failures arrive while paused.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = ["r-0", "r-1", "r-2"];
    let now = Utc::now();
    let failed: Vec<Task> = second
        .iter()
        .map(|id| {
            Task::new(
                TaskId::parse(id).unwrap(),
                FlowType::Impl,
                TaskStatus::Failed,
                now - TimeDelta::minutes(1),
            )
            .with_error(TIMEOUT, None)
        })
        .collect();
    w.tasks.insert(&failed, &[]).await.unwrap();
    let mut originals = Vec::new();
    for id in second {
        originals.push(w.put_bundle(id, 600_000).await);
    }
    let keys = w.keys().await;
    let rv = w.resource_version();
    let pages = w.pages().await;
    // Six polls: a responder that acted would have pruned and retried the new failures.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(w.open_incident().await, "the incident is still open");
    for (id, original) in second.iter().zip(&originals) {
        assert_eq!(
            w.task(id).await.attempts,
            0,
            "{id} retried while paused\n{}",
            w.log("e")
        );
        assert_eq!(
            &w.object(&format!("{id}.json")).await.unwrap(),
            original,
            "{id} pruned while paused"
        );
    }
    assert_eq!(w.keys().await, keys, "S3 changed while paused");
    assert_eq!(
        w.resource_version(),
        rv,
        "the Deployment changed while paused"
    );
    // Nothing paged but the one "automation paused" notice of each incident open while paused
    // (the first may settle during the pause, and the new failures then open a second).
    for (key, n) in w.pages().await {
        if pages.get(&key) != Some(&n) {
            assert!(
                key.ends_with(":automation_paused") && n == 1,
                "paged while paused: {key} x{n}"
            );
        }
    }
    // The ledger recorded what was held back.
    let open = w.ledger.find_open("flowengine").await.unwrap().unwrap();
    let held = w.ledger.get(&open.key).await.unwrap().timeline;
    assert!(
        held.iter().any(|e| e.detail.to_string().contains("paused")),
        "{held:#?}"
    );

    assert_eq!(l.post("/resume", None, String::new()).await.0, 401);
    let (code, text) = l.post("/resume", Some(HTTP_TOKEN), String::new()).await;
    assert_eq!(code, 200, "{text}");
    until(
        &w,
        60,
        "the held-back failures handled after resume",
        &mut p,
        "e",
        || async {
            let mut all = true;
            for id in second {
                all &= w.task(id).await.attempts == 1;
            }
            all && w
                .keys()
                .await
                .iter()
                .filter(|k| k.starts_with("archive/r-"))
                .count()
                == 3
        },
    )
    .await;
    assert_eq!(l.metric("flowfail_paused").await, 0.0);
    until(&w, 90, "the incident closed", &mut p, "e", || async {
        w.work().await;
        !w.open_incident().await
    })
    .await;
    let notices = triggers_with(&w, ":automation_paused").await;
    let incidents = w.closed().await.len();
    assert!(
        (1..=incidents).contains(&notices),
        "one paused notice per incident open while paused: {notices} for {incidents}: {:?}",
        w.pages().await
    );
    assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("e"));
}

/// (f) Issue 24 #3, "resolved" means the tasks recovered: 30 timeouts beside 100 successes.
/// flowfail retries them (pending in PostgreSQL), which takes them out of the alert's failure
/// count at once; with no worker running, the incident stays open and says what it waits for.
/// The test then plays FlowEngine's worker: running (still open), 3 succeed ("27 retried tasks
/// not finished yet"), then 26 succeed and one fails again: resolved, MTTR measured to then,
/// and the task that failed again in the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_an_incident_stays_open_until_the_retried_tasks_finish() {
    let Some(w) = world("inflight").await else {
        return;
    };
    w.k8s
        .add_deployment("default", "flowengine", "flowengine", &BTreeMap::new(), 2);
    let ids: Vec<String> = (0..30).map(|i| format!("f-{i:02}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let failed: Vec<(&str, &str, Option<u16>)> = ids.iter().map(|i| (*i, TIMEOUT, None)).collect();
    w.seed_tasks(100, &failed).await;
    let mut p = w.run("act", "f");
    until(&w, 60, "the 30 retries scheduled", &mut p, "f", || async {
        let mut all = true;
        for id in &ids {
            let t = w.task(id).await;
            all &= (t.status, t.attempts) == (TaskStatus::Pending, 1);
        }
        all
    })
    .await;
    let retried = Instant::now();

    // No worker: the alert is clear (the failures are pending now), and the incident is open.
    while retried.elapsed() < Duration::from_secs(8) {
        assert!(
            w.open_incident().await && w.closed().await.is_empty(),
            "resolved with no worker running: {:#?}\n{}",
            w.closed().await,
            w.log("f")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        w.log("f").contains("30 retried tasks not finished yet"),
        "{}",
        w.log("f")
    );
    // The worker picks them up: running is not finished.
    w.work_on(&ids, "running").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(w.open_incident().await, "resolved with every retry running");
    w.work_on(&ids[..3], "succeeded").await;
    until(&w, 30, "the wait for the other 27", &mut p, "f", || async {
        w.log("f").contains("27 retried tasks not finished yet")
    })
    .await;
    assert!(w.open_incident().await && w.closed().await.is_empty());
    let open_for = retried.elapsed();

    // They finish: 26 succeed, one fails again.
    w.work_on(&ids[3..29], "succeeded").await;
    w.work_on(&ids[29..], "failed").await;
    let finished = Utc::now();
    let finished_at = Instant::now();
    until(&w, 30, "the incident closed", &mut p, "f", || async {
        !w.closed().await.is_empty() && !w.open_incident().await
    })
    .await;
    let closed_after = finished_at.elapsed();
    assert_eq!(terminate(&mut p).code(), Some(0), "{}", w.log("f"));

    let closed = w.closed().await;
    assert_eq!(closed.len(), 1, "{closed:#?}");
    let post = &closed[0]["post_incident"];
    assert_eq!(post["status"], "resolved", "{post:#}");
    let at = |k: &str| {
        post[k]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<Utc>>()
            .unwrap()
    };
    let (detected, resolved) = (at("detected_at"), at("resolved_at"));
    let mttr = post["mttr_seconds"].as_i64().unwrap();
    assert_eq!(mttr, (resolved - detected).num_seconds());
    assert!(
        resolved >= finished - TimeDelta::seconds(1),
        "resolved at {resolved}, before the retries finished at {finished}"
    );
    assert!(
        mttr >= (finished - detected).num_seconds(),
        "MTTR {mttr} s, not to the moment the retries finished"
    );
    // The task that failed again is in the record, and was not retried with the alert clear.
    let again: Vec<&serde_json::Value> = closed[0]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "finding" && e["detail"]["kind"] == "retry_failed_again")
        .collect();
    assert_eq!(again.len(), 1, "{:#}", closed[0]["timeline"]);
    assert_eq!(again[0]["detail"]["task_id"], ids[29]);
    assert!(
        post["follow_ups"].to_string().contains("failed again"),
        "{post:#}"
    );
    let last = w.task(ids[29]).await;
    assert_eq!((last.status, last.attempts), (TaskStatus::Failed, 1));
    for id in &ids[..29] {
        let t = w.task(id).await;
        assert_eq!((t.status, t.attempts), (TaskStatus::Succeeded, 1), "{id}");
    }
    assert_eq!(
        post["actions_summary"]["retry_task"]["applied"], 30,
        "{post:#}"
    );
    eprintln!(
        "open {:.1} s after the retries were scheduled with no worker; closed {:.1} s after the worker finished; MTTR {mttr} s",
        open_for.as_secs_f64(),
        closed_after.as_secs_f64()
    );
}
