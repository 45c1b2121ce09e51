//! The real `flowfail run --config F` against every real peer at once: PostgreSQL (TaskDB and
//! ledger), the local AWS API (S3 bundles, CloudWatch logs), the fake Kubernetes API server
//! (started here), and local HTTP servers for quota, status pages, PagerDuty and the webhook.
//! The test plays FlowEngine's worker (a retried task succeeds) and asserts on the peers, never
//! on flowfail's own report: bundles in S3, attempts in PostgreSQL, env and revisions on the
//! Deployment, requests at the pager, the incident closed in the ledger.
//!
//! Needs PostgreSQL (`FLOWFAIL_PG_URL`) and the local AWS API (`FLOWFAIL_AWS_ENDPOINT`); skips
//! without them unless `FLOWFAIL_PG_REQUIRED=1` / `FLOWFAIL_AWS_REQUIRED=1` (CI).
//!
//! One module per group of scenarios; the world they share (the peers, the worker, the
//! process under test, its listener) is here.

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
use tokio::sync::RwLockReadGuard;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{flowfail_cmd, local_aws_shared};

mod backtest;
mod check_config;
mod console;
mod fleet;
mod gitops;
mod hostile;
mod incidents;
mod kill_switch;
mod lambda;
mod own_statuses;
mod pass_cost;
mod pause_and_recovery;
mod read_back;
mod reload;
mod shared;
mod tracker;
mod webhook;

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
    logs: aws_sdk_cloudwatchlogs::Client,
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
    flowfail_testkit::write_secret(&dir.join("key"), "e2e-secret-key\n");
    Some(World {
        name: name.to_owned(),
        schema,
        pool,
        tasks,
        ledger,
        s3,
        bucket,
        logs,
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
                flowfail_testkit::write_secret(&p, &format!("{}/hook\n", self.webhook.uri()));
                p.display().to_string()
            },
        );
        let text = match listen {
            Some(port) => {
                let secret = |name: &str, value: &str| {
                    let path = self.dir.join(name);
                    flowfail_testkit::write_secret(&path, &format!("{value}\n"));
                    path.display().to_string()
                };
                format!(
                    "{text}\n[server]\nlisten = \"127.0.0.1:{port}\"\nwebhook_token = {{ file = \"{}\" }}\ncontrol_token = {{ file = \"{}\" }}\n",
                    secret("webhook-token", HTTP_TOKEN),
                    secret("control-token", CONTROL_TOKEN),
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
        self.run_with(config, tag, &[])
    }

    /// Starts `flowfail run` with this config and these extra arguments.
    fn run_with(&self, config: &std::path::Path, tag: &str, extra: &[&str]) -> Child {
        let log = std::fs::File::create(self.dir.join(format!("run-{tag}.log"))).unwrap();
        flowfail_cmd()
            .args(["run", "--config"])
            .arg(config)
            .args(extra)
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

    /// The function's log lines, as Lambda writes them to its log group: `(minutes ago, line)`.
    async fn put_logs(&self, lines: &[(i64, &str)]) {
        use aws_sdk_cloudwatchlogs::types::InputLogEvent;
        let stream = format!("s-{}", Utc::now().timestamp_nanos_opt().unwrap_or(0));
        self.logs
            .create_log_stream()
            .log_group_name(&self.group)
            .log_stream_name(&stream)
            .send()
            .await
            .unwrap();
        let now = Utc::now().timestamp_millis();
        let mut events: Vec<InputLogEvent> = lines
            .iter()
            .map(|(ago, m)| {
                InputLogEvent::builder()
                    .timestamp(now - ago * 60_000)
                    .message(*m)
                    .build()
                    .unwrap()
            })
            .collect();
        events.sort_by_key(InputLogEvent::timestamp);
        self.logs
            .put_log_events()
            .log_group_name(&self.group)
            .log_stream_name(&stream)
            .set_log_events(Some(events))
            .send()
            .await
            .unwrap();
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
        matches!(self.ledger.find_open(SCOPE).await, Ok(Some(_)))
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
/// The ledger scope of the world's Deployment (`NAMESPACE.DEPLOYMENT`, no cluster configured).
const SCOPE: &str = "default.flowengine";
/// The listener's webhook token (what Grafana holds).
const HTTP_TOKEN: &str = "e2e-http-token-0123456789";
/// The listener's control token (what the operators hold).
const CONTROL_TOKEN: &str = "e2e-control-token-0123456789";

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
            // A connection per request: the listener closes idle keep-alive connections after
            // 5 s, and a POST on one it just closed would fail.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
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

    /// One sample of the metrics (0 when the series is absent): the sum of the series `name{labels}` matches: every line of that metric whose labels
    /// include the ones given (`flowfail_incidents_open` sums every Deployment's;
    /// `flowfail_incidents_open{deployment="a.b"}` is one's).
    async fn metric(&self, series: &str) -> f64 {
        let Some((_, text)) = self.get("/metrics").await else {
            return 0.0; // not listening yet
        };
        sum_series(&text, series)
    }
}

/// Splits `name{a="1",b="2"}` into the name and its `a="1"` labels.
fn series_parts(series: &str) -> (&str, Vec<&str>) {
    match series.split_once('{') {
        Some((name, rest)) => (
            name,
            rest.trim_end_matches('}')
                .split(',')
                .filter(|l| !l.is_empty())
                .collect(),
        ),
        None => (series, Vec::new()),
    }
}

/// See [`Listener::metric`].
fn sum_series(text: &str, series: &str) -> f64 {
    let (name, want) = series_parts(series);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(s, _)| {
            let (n, labels) = series_parts(s);
            n == name && want.iter().all(|w| labels.contains(w))
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
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

/// Page triggers at the pager whose dedup key ends with `suffix`.
async fn triggers_with(w: &World, suffix: &str) -> usize {
    w.pages()
        .await
        .iter()
        .filter(|(k, _)| k.ends_with(suffix))
        .map(|(_, n)| n)
        .sum()
}
