//! From a validated [`Config`] to real adapters, a supervisor, and read-only probes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;

use flowfail_core::control::{self, Approval, Pause};
use flowfail_core::history;
use flowfail_core::ports::{IncidentQuery, IncidentStore, Ports};
use flowfail_core::respond::{Responder, ResponderBuilder, Supervisor, SupervisorBuilder};
use flowfail_core::{Clock, Error, Quota, QuotaChecker, Result};

use super::config::{Config, Mode, QuotaSource, SecretRef};

/// The real adapters a config names, connected lazily (building them reads no network).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Live {
    /// The config.
    pub config: Config,
    /// Every port, for the responder.
    pub ports: Ports,
    /// The classification rules: the built-in ones with the config's `rules` files.
    pub rules: Arc<flowfail_core::RuleSet>,
    /// The TaskDB (for probes and migrations).
    pub tasks: flowfail_pg::PgTaskStore,
    /// The incident ledger (created by [`Live::prepare`]).
    pub ledger: flowfail_pg::PgIncidentStore,
    /// The Deployment.
    pub deployment: Arc<flowfail_k8s::KubeDeploymentController>,
    /// The vendors' status pages (for probes that say why a page is unreadable).
    pub status: Arc<flowfail_http::StatusPages>,
    /// The TaskObject schemas (built in, with the config's over them), and where each
    /// version comes from.
    pub schemas: (Arc<flowfail_core::schema::SchemaSet>, crate::SchemaSources),
    /// The kill switch every responder of this process shares ([`Config::kill_switch`]).
    pub kill: flowfail_core::respond::KillSwitch,
    /// The config file, when it was loaded from one: `SIGHUP` and `POST /reload` read it again
    /// ([`Live::reload_from`]).
    pub source: Option<std::path::PathBuf>,
}

/// The HTTP ports of a config ([`Config::http_ports`]).
pub(crate) struct HttpPorts {
    pub(crate) quota: Arc<dyn QuotaChecker>,
    pub(crate) status: Arc<flowfail_http::StatusPages>,
    pub(crate) pager: Arc<dyn flowfail_core::Pager>,
    pub(crate) notifier: Arc<dyn flowfail_core::Notifier>,
}

/// One line of `flowfail check-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Probe {
    /// The port or backend (`postgres`, `logs`, `bundles`, …).
    pub port: String,
    /// Whether it answered as needed.
    pub ok: bool,
    /// What was checked, or why it failed.
    pub detail: String,
}

fn pg_password(config: &Config, cfg: &tokio_postgres::Config) -> Result<Option<String>> {
    if let Some(r) = config.postgres.password_ref()? {
        return Ok(Some(
            r.resolve("postgres password")?.expose_secret().to_owned(),
        ));
    }
    let Ok(path) = std::env::var("PGPASSFILE") else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::invalid_input(format!("PGPASSFILE {path}: {e}")))?;
    Ok(pgpass_lookup(&text, cfg))
}

/// The password for `cfg` in a libpq password file (`host:port:db:user:password`, `*`
/// matches anything, `\:` and `\\` escape).
fn pgpass_lookup(text: &str, cfg: &tokio_postgres::Config) -> Option<String> {
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "localhost".to_owned(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432).to_string();
    let user = cfg.get_user().unwrap_or_default().to_owned();
    let db = cfg.get_dbname().unwrap_or(&user).to_owned();
    let want = [host, port, db, user];
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => cur.extend(chars.next()),
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        if fields.len() == 4 && fields.iter().zip(&want).all(|(f, w)| f == "*" || f == w) {
            return Some(cur);
        }
    }
    None
}

impl Config {
    /// Builds every adapter. Reads files (kubeconfig, secrets) but no network: connections
    /// open on first use. A config of several Deployments (`[[deployment]]`) is
    /// [`ErrorKind::InvalidInput`](flowfail_core::ErrorKind::InvalidInput) here: see
    /// [`Config::connect_fleet`].
    pub async fn connect(&self) -> Result<Live> {
        if !self.deployments.is_empty() {
            return Err(Error::invalid_input(format!(
                "this config watches {} Deployments ([[deployment]]): connect them with Config::connect_fleet",
                self.deployments.len()
            )));
        }
        self.connect_on(self.pg_pool(1)?).await
    }

    /// [`Config::connect`] on a TaskDB and ledger pool (every Deployment of a fleet shares
    /// one).
    pub(crate) async fn connect_on(&self, pool: flowfail_pg::Pool) -> Result<Live> {
        let rules = self.rules_in_force()?;
        let (tasks, ledger) = self.stores_on(pool)?;
        let aws = {
            let mut o = flowfail_aws::AwsOptions::standard();
            o.endpoint = self.aws.endpoint.clone();
            o.region = Some(self.aws.region.clone());
            o.operation_timeout = Some(Duration::from_secs(30));
            flowfail_aws::load_config(&o).await
        };
        let logs = flowfail_aws::CloudWatchLogSource::new(&aws, self.aws.log_group.clone());
        let bundles = flowfail_aws::S3BundleStore::new(&aws, self.aws.bucket.clone())
            .prefix(self.aws.key_prefix.clone());
        let deployment = Arc::new(self.kube().await?);
        let http = self.http_ports()?;
        let (schema_set, schema_sources) = self.schemas.load()?;
        let ports = Ports::builder()
            .logs(Arc::new(logs))
            .tasks(Arc::new(tasks.clone()))
            .bundles(Arc::new(bundles))
            .quota(http.quota)
            .deployment(deployment.clone())
            .status(http.status.clone())
            .pager(http.pager)
            .notifier(http.notifier)
            .incidents(Arc::new(ledger.clone()))
            .build()?;
        Ok(Live {
            kill: self.kill_switch(),
            config: self.clone(),
            ports,
            rules,
            tasks,
            ledger,
            deployment,
            status: http.status,
            schemas: (Arc::new(schema_set), schema_sources),
            source: None,
        })
    }

    /// The ports that talk HTTP to vendors, PagerDuty and the stakeholders' webhook: built
    /// again on a reload (no connection to keep).
    pub(crate) fn http_ports(&self) -> Result<HttpPorts> {
        let opts = flowfail_http::HttpOptions::default();
        let notifier: Arc<dyn flowfail_core::Notifier> = match &self.notifier {
            Some(n) => Arc::new(flowfail_http::Webhook::new(
                n.url_ref()?.resolve("notifier url")?,
                opts.clone(),
            )?),
            None => Arc::new(NoNotifier),
        };
        Ok(HttpPorts {
            quota: Arc::new(self.quota(&opts)?),
            status: Arc::new(self.status_pages(&opts)?),
            pager: Arc::new(self.pager(&opts)?),
            notifier,
        })
    }

    /// The classification rules: the built-in ones with the config's `rules` files.
    pub(crate) fn rules_in_force(&self) -> Result<Arc<flowfail_core::RuleSet>> {
        // The responders of this config classify with its rules; nothing is installed for the
        // process, so two configs in one process keep their own.
        Ok(if self.rules.is_empty() {
            flowfail_core::RuleSet::shared_builtin()
        } else {
            Arc::new(self.rule_set()?)
        })
    }

    /// The TaskDB and ledger pool: `pool_size` connections, or 2 per Deployment watched and 2
    /// more (4 for one) when it is not set.
    pub(crate) fn pg_pool(&self, deployments: usize) -> Result<flowfail_pg::Pool> {
        let pg = &self.postgres;
        let mut cfg: tokio_postgres::Config = pg
            .url
            .parse()
            .map_err(|e| Error::invalid_input(format!("postgres.url: {e}")))?;
        if let Some(p) = pg_password(self, &cfg)? {
            cfg.password(p);
        }
        let size = pg
            .pool_size
            .unwrap_or_else(|| deployments.max(1).saturating_mul(2).saturating_add(2));
        flowfail_pg::connect_config(cfg, size)
    }

    fn postgres_stores(&self) -> Result<(flowfail_pg::PgTaskStore, flowfail_pg::PgIncidentStore)> {
        self.stores_on(self.pg_pool(1)?)
    }

    fn stores_on(
        &self,
        pool: flowfail_pg::Pool,
    ) -> Result<(flowfail_pg::PgTaskStore, flowfail_pg::PgIncidentStore)> {
        let pg = &self.postgres;
        let mut table = flowfail_pg::TaskTable::default();
        table.schema = pg.schema.clone();
        if let Some(t) = &pg.table {
            table.table = t.clone();
        }
        for (k, v) in &pg.columns {
            let c = &mut table.columns;
            let slot = match k.as_str() {
                "task_id" => &mut c.task_id,
                "flow_type" => &mut c.flow_type,
                "status" => &mut c.status,
                "error_message" => &mut c.error_message,
                "http_status" => &mut c.http_status,
                "created_at" => &mut c.created_at,
                "finished_at" => &mut c.finished_at,
                "attempts" => &mut c.attempts,
                "task_object" => &mut c.task_object,
                "retry_not_before" => &mut c.retry_not_before,
                "claimed_by" => &mut c.claimed_by,
                other => {
                    return Err(Error::invalid_input(format!(
                        "postgres.columns.{other}: not a column flowfail reads"
                    )));
                }
            };
            *slot = v.clone();
        }
        table.flow_types = pg.flow_types.clone();
        table.statuses = pg.task_statuses();
        table.filter = pg
            .task_filter
            .as_ref()
            .map(crate::statuses::TaskFilterConfig::to_filter);
        let tasks = flowfail_pg::PgTaskStore::new(pool.clone(), &table)?;
        let ledger_schema = pg.ledger_schema.as_deref().or(pg.schema.as_deref());
        let ledger = flowfail_pg::PgIncidentStore::new(pool, ledger_schema)?;
        Ok((tasks, ledger))
    }

    async fn kube(&self) -> Result<flowfail_k8s::KubeDeploymentController> {
        let k = &self.kubernetes;
        let c = match (&k.api_url, &k.kubeconfig) {
            (Some(url), _) => flowfail_k8s::KubeDeploymentController::for_url(url, &k.namespace)?,
            (None, Some(path)) => {
                let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                    Error::invalid_input(format!("kubernetes.kubeconfig {}: {e}", path.display()))
                })?;
                let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(|e| Error::invalid_input(format!("kubernetes.kubeconfig: {e}")))?;
                let client = kube::Client::try_from(cfg)
                    .map_err(|e| Error::invalid_input(format!("kubernetes client: {e}")))?;
                flowfail_k8s::KubeDeploymentController::new(client, &k.namespace)
            }
            (None, None) => flowfail_k8s::KubeDeploymentController::infer(&k.namespace).await?,
        };
        Ok(match &k.container {
            Some(name) => c.container(name.clone()),
            None => c,
        })
    }

    /// PagerDuty, with the `[pager]` section's severity and links.
    fn pager(&self, opts: &flowfail_http::HttpOptions) -> Result<flowfail_http::PagerDuty> {
        let p = &self.pager;
        let keys = p
            .routing_keys
            .iter()
            .map(|(t, r)| Ok((t.clone(), r.resolve(&format!("pager.routing_keys.{t}"))?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        let url = p
            .url
            .clone()
            .unwrap_or_else(|| "https://events.pagerduty.com".into());
        let mut pager = flowfail_http::PagerDuty::new(url, keys, opts.clone())?
            .severity(&p.severity)
            .map_err(|e| Error::invalid_input(format!("pager.severity: {}", e.message())))?;
        if let Some(u) = &p.runbook_url {
            pager = pager.link(u.clone(), "Runbook: Flow Failure Response");
        }
        if let Some(u) = &p.grafana_url {
            pager = pager.link(u.clone(), "Grafana dashboard");
        }
        Ok(pager)
    }

    fn quota(&self, opts: &flowfail_http::HttpOptions) -> Result<flowfail_http::VendorQuotas> {
        let mut q = flowfail_http::VendorQuotas::new();
        for (name, v) in &self.vendors.vendors {
            let key = || -> Result<secrecy::SecretString> {
                v.api_key_ref(name)?
                    .unwrap_or_else(|| SecretRef::Env(String::new()))
                    .resolve(&format!("vendors.{name} API key"))
            };
            let url = v.api_url.clone().unwrap_or_default();
            let checker: Arc<dyn QuotaChecker> = match v.quota {
                QuotaSource::Anthropic => Arc::new(flowfail_http::AnthropicQuota::new(
                    url,
                    key()?,
                    opts.clone(),
                )?),
                QuotaSource::Openai => {
                    Arc::new(flowfail_http::OpenAiQuota::new(url, key()?, opts.clone())?)
                }
                QuotaSource::None => Arc::new(UnknownQuota),
            };
            q = q.with(name.clone(), checker);
        }
        Ok(q)
    }

    fn status_pages(
        &self,
        opts: &flowfail_http::HttpOptions,
    ) -> Result<flowfail_http::StatusPages> {
        let defaults = flowfail_http::StatusPageConfig::defaults();
        let mut pages = BTreeMap::new();
        for (name, v) in &self.vendors.vendors {
            if let Some(url) = &v.status_url {
                // The vendor's public page as the default; the config's format and components
                // over it.
                let mut page = defaults.get(name).cloned().map_or_else(
                    || flowfail_http::StatusPageConfig::new(url, Vec::<String>::new()),
                    |d| d.at(url),
                );
                if let Some(f) = v
                    .status_format
                    .as_deref()
                    .and_then(flowfail_http::PageFormat::parse)
                {
                    page = page.with_format(f);
                }
                if let Some(c) = &v.status_components {
                    page = page.with_components(c.iter().cloned());
                }
                pages.insert(name.clone(), page);
            }
        }
        // An incident's passes every few seconds read each page once a refresh.
        Ok(flowfail_http::StatusPages::new(pages, opts.clone())?
            .refresh(flowfail_http::STATUS_REFRESH))
    }
}

/// A vendor whose quota is not read: always unknown, never 0 % or 100 %.
#[derive(Debug)]
struct UnknownQuota;

#[async_trait::async_trait]
impl QuotaChecker for UnknownQuota {
    async fn quota(&self, _vendor: &str) -> Result<Quota> {
        Ok(Quota::Unknown {
            reason: "quota is not read for this vendor (quota = \"none\")".into(),
        })
    }
}

/// No stakeholder webhook configured: notifications are refused, and the report says so.
#[derive(Debug)]
struct NoNotifier;

#[async_trait::async_trait]
impl flowfail_core::Notifier for NoNotifier {
    async fn notify(&self, _n: &flowfail_core::Notification) -> Result<flowfail_core::Delivery> {
        Err(Error::refused("no [notifier] is configured").with_operation("notifier.notify"))
    }
}

impl Live {
    /// Creates the ledger's tables if they are missing (idempotent, safe concurrently); see
    /// [`Controls::prepare`].
    pub async fn prepare(&self) -> Result<()> {
        self.controls().prepare().await
    }

    /// A responder builder with this config's ports, policy and mode (`shadow` forces shadow).
    pub fn responder(&self, shadow: bool) -> ResponderBuilder {
        Responder::builder()
            .ports(self.ports.clone())
            .rules(self.rules.clone())
            .schemas(self.schemas.0.clone())
            .policy(self.config.policy.clone())
            .scope(self.config.kubernetes.scope())
            .clock(Clock::system())
            .kill_switch(self.kill.clone())
            .shadow(shadow || self.config.mode == Mode::Shadow)
    }

    /// A supervisor with this config (see [`Live::responder`]).
    pub fn supervisor(&self, shadow: bool) -> Result<Supervisor> {
        self.supervisor_builder(shadow).build()
    }

    /// A supervisor builder with this config, to add a wake handle, metrics or callbacks.
    pub fn supervisor_builder(&self, shadow: bool) -> SupervisorBuilder {
        Supervisor::builder().responder(self.responder(shadow))
    }
}

/// The operator's controls (see [`flowfail_core::control`]), on this config's ledger and
/// Deployment: what the HTTP listener calls. Every replica reads them at its next pass.
impl Live {
    /// The operator's controls of this config, on its ledger.
    pub fn controls(&self) -> Controls {
        Controls {
            scope: self.config.kubernetes.scope(),
            legacy_scope: legacy_scope(&self.config),
            ledger: self.ledger.clone(),
            require_approval: self.config.policy.require_approval.clone(),
        }
    }

    /// Pauses automation (see [`Controls::pause`]).
    pub async fn pause(&self, reason: &str, by: &str) -> Result<()> {
        self.controls().pause(reason, by).await
    }

    /// Lifts the pause (see [`Controls::resume`]).
    pub async fn resume(&self, by: &str) -> Result<()> {
        self.controls().resume(by).await
    }

    /// The pause in force, if automation is paused.
    pub async fn paused(&self) -> Result<Option<Pause>> {
        self.controls().paused().await
    }

    /// Approves a gated action (see [`Controls::approve`]).
    pub async fn approve(&self, incident: &str, action: &str, by: &str) -> Result<Approval> {
        self.controls().approve(incident, action, by).await
    }

    /// Denies a gated action of an open incident (see [`Controls::deny`]).
    pub async fn deny(
        &self,
        incident: &str,
        action: &str,
        reason: &str,
        by: &str,
    ) -> Result<Approval> {
        self.controls().deny(incident, action, reason, by).await
    }
}

/// The scope an earlier version kept `c`'s Deployment under, unless another Deployment of its
/// config shares the name.
fn legacy_scope(c: &Config) -> Option<String> {
    (!c.name_shared).then(|| c.kubernetes.deployment.clone())
}

/// The operator's controls of a config — pause, resume, approve — on its ledger alone: built
/// from `[postgres]` by [`Config::controls`], with no Kubernetes, AWS or vendor client.
#[derive(Debug, Clone)]
pub struct Controls {
    scope: String,
    /// The scope earlier versions kept this Deployment's incidents and pause under (its name);
    /// `None` when another Deployment of the config has that name too.
    legacy_scope: Option<String>,
    ledger: flowfail_pg::PgIncidentStore,
    /// The policy's `require_approval`: only these actions wait for a "yes" or a "no".
    require_approval: Vec<String>,
}

impl Config {
    /// The operator's controls: only the ledger is built (`[postgres]`); connections open on
    /// first use. A config of several Deployments names one: [`Config::controls_of`].
    pub fn controls(&self) -> Result<Controls> {
        self.controls_of(None)
    }

    /// The operator's controls of the Deployment `deployment` names (its scope, or its name
    /// when unique; `None` when the config watches one).
    pub fn controls_of(&self, deployment: Option<&str>) -> Result<Controls> {
        let members = self.members();
        let refs: Vec<&Config> = members.iter().collect();
        let m = &members[crate::members::pick(&refs, deployment)?];
        let (_, ledger) = m.postgres_stores()?;
        Ok(Controls {
            scope: m.kubernetes.scope(),
            legacy_scope: legacy_scope(m),
            ledger,
            require_approval: m.policy.require_approval.clone(),
        })
    }
}

impl Controls {
    /// The scope the controls act on (the Deployment).
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The ledger the controls read and write.
    pub(crate) fn ledger(&self) -> &flowfail_pg::PgIncidentStore {
        &self.ledger
    }

    /// Creates the ledger's tables if they are missing (idempotent, safe concurrently), and
    /// carries what an earlier version kept under the Deployment's name alone over to this
    /// scope ([`flowfail_pg::PgIncidentStore::adopt_scope`]).
    pub async fn prepare(&self) -> Result<()> {
        self.ledger.migrate().await?;
        // Earlier versions kept a Deployment's incidents and pause under its name alone: an
        // open incident, a pause in force or a cool-down there carries over to the new scope
        // (with several namespaces of one Deployment name on a ledger, to the first started;
        // never when one config watches several of that name: whose they were is unknown).
        let Some(legacy) = &self.legacy_scope else {
            return Ok(());
        };
        let moved = self.ledger.adopt_scope(legacy, &self.scope).await?;
        if moved > 0 {
            tracing::info!(from = %legacy, to = %self.scope, rows = moved, "ledger: incidents and pause of the former scope carried over");
        }
        Ok(())
    }

    /// Pauses automation in this config's scope: every replica stops mutating at its next
    /// pass (see [`control::pause`]).
    pub async fn pause(&self, reason: &str, by: &str) -> Result<()> {
        control::pause(&self.ledger, &self.scope, reason, by, Clock::system().now())
            .await
            .map(|_| ())
    }

    /// Lifts the pause (a no-op when not paused).
    pub async fn resume(&self, by: &str) -> Result<()> {
        control::resume(&self.ledger, &self.scope, by, Clock::system().now())
            .await
            .map(|_| ())
    }

    /// The pause in force, if automation is paused.
    pub async fn paused(&self) -> Result<Option<Pause>> {
        control::paused(&self.ledger, &self.scope).await
    }

    /// Approves `action` (one of [`control::GATED_ACTIONS`]) for the open incident
    /// `incident`: the next pass carries it out if its preconditions still hold, until the
    /// approval expires (`approval_ttl_s`). An unknown action is
    /// [`flowfail_core::ErrorKind::InvalidInput`], an unknown incident (or one of another
    /// Deployment sharing the ledger) [`flowfail_core::ErrorKind::NotFound`], a closed one
    /// [`flowfail_core::ErrorKind::Refused`]; nothing is written then.
    pub async fn approve(&self, incident: &str, action: &str, by: &str) -> Result<Approval> {
        // Only this Deployment's incidents: a ledger shared by several Deployments must not let
        // one's operators approve another's rollback.
        self.own(incident).await?;
        control::approve(&self.ledger, incident, action, by, Clock::system().now()).await
    }

    /// Denies `action` for the open incident `incident`, with `reason`: it is not carried
    /// out, nor proposed again, in that incident. Refused as [`Controls::approve`] refuses.
    pub async fn deny(
        &self,
        incident: &str,
        action: &str,
        reason: &str,
        by: &str,
    ) -> Result<Approval> {
        // A "no" to an action the policy does not hold for approval would be recorded and
        // change nothing: refused, with what would.
        if !self.require_approval.iter().any(|a| a == action) {
            return Err(Error::invalid_input(format!(
                "{} is not held for approval here (require_approval = [{}]): a denial would change nothing; pause automation instead, or add it to require_approval",
                flowfail_core::model::describe_untrusted_pub(action),
                self.require_approval.join(", ")
            )));
        }
        self.own(incident).await?;
        control::deny(
            &self.ledger,
            incident,
            action,
            reason,
            by,
            Clock::system().now(),
        )
        .await
    }

    /// `NotFound` when `incident` is not an acting incident of this Deployment (another
    /// Deployment's sharing the ledger, or a shadow run's: nothing acts on those).
    async fn own(&self, incident: &str) -> Result<()> {
        match self.ledger.get(incident).await {
            Ok(rec) if rec.scope != self.scope => Err(Error::not_found(format!(
                "no incident {} of {}",
                flowfail_core::model::describe_untrusted_pub(incident),
                self.scope
            ))),
            _ => Ok(()),
        }
    }

    /// The scopes this config's incidents are kept under: the Deployment's (acting) and its
    /// shadow run's.
    pub fn scopes(&self) -> [String; 2] {
        [
            self.scope.clone(),
            format!("{}{}", self.scope, history::SHADOW_SUFFIX),
        ]
    }

    /// This config's incidents (acting and shadow), newest first.
    pub async fn incidents(
        &self,
        open_only: bool,
        since: Option<flowfail_core::Timestamp>,
        limit: usize,
    ) -> Result<Vec<history::IncidentLine>> {
        let q = IncidentQuery::scopes(self.scopes())
            .open_only(open_only)
            .since(since)
            .limit(limit);
        let found = self.ledger.list(&q).await?;
        Ok(found.iter().map(history::IncidentLine::of).collect())
    }

    /// One incident of this config (acting or shadow), read back from the ledger: an unknown
    /// key, or one of another Deployment sharing the ledger, is
    /// [`flowfail_core::ErrorKind::NotFound`].
    pub async fn incident(&self, key: &str) -> Result<history::IncidentView> {
        let rec = match self.ledger.get(key).await {
            Ok(rec) if self.scopes().contains(&rec.scope) => rec,
            Ok(_) => {
                return Err(Error::not_found(format!(
                    "no incident {} of {}",
                    flowfail_core::model::describe_untrusted_pub(key),
                    self.scope
                )));
            }
            Err(e) => return Err(e),
        };
        let approvals = self.ledger.approvals(key).await?;
        Ok(history::IncidentView::from_record(
            &rec,
            &approvals,
            Clock::system().now(),
        ))
    }
}
