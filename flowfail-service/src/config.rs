//! `flowfail.toml`: the backend of every port, the policy and the mode, parsed and validated
//! before anything connects.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use flowfail_core::{Error, Policy, Result};

pub use crate::mode::Mode;
pub use crate::secret::SecretRef;

/// The TaskDB and the incident ledger.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// `postgres://user@host:port/db` — without a password.
    pub url: String,
    /// The password, from an environment variable.
    pub password_env: Option<String>,
    /// The password, from a file.
    pub password_file: Option<PathBuf>,
    /// Refused: a password is never written in the config.
    pub password: Option<toml::Value>,
    /// Schema of the tasks table (default: the search path).
    pub schema: Option<String>,
    /// Schema of the ledger (default: `schema`).
    pub ledger_schema: Option<String>,
    /// The tasks table (default `tasks`).
    pub table: Option<String>,
    /// Column names where FlowEngine's differ.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// FlowEngine's flow-type values flowfail knows under another name (`implementation =
    /// "impl"`): plan, impl, review or docs. A failed task of a flow type neither known nor
    /// mapped is left out of triage and reported as a data gap.
    #[serde(default)]
    pub flow_types: BTreeMap<String, flowfail_core::FlowType>,
    /// FlowEngine's values of the status column, per status flowfail knows (`failed =
    /// ["failed", "error"]`): every value listed is read as that status, the first is the one
    /// written. Statuses not named keep flowfail's own name.
    #[serde(default)]
    pub statuses: BTreeMap<flowfail_core::TaskStatus, crate::statuses::StatusValues>,
    /// Only the tasks of this Deployment, in a TaskDB several share: `{ column =
    /// "environment", value = "prod" }` (every read, count and retry is limited to them).
    pub task_filter: Option<crate::statuses::TaskFilterConfig>,
    /// Connections in the pool (default 4).
    pub pool_size: Option<usize>,
}

/// CloudWatch Logs and S3.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AwsConfig {
    /// Region.
    pub region: String,
    /// Endpoint override (a local AWS API in tests).
    pub endpoint: Option<String>,
    /// CloudWatch Logs group of FlowEngine's errors.
    pub log_group: String,
    /// Bucket of the context bundles.
    pub bucket: String,
    /// Key prefix of the bundles in the bucket.
    #[serde(default)]
    pub key_prefix: String,
}

/// The FlowEngine Deployment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct KubernetesConfig {
    /// A kubeconfig file (default: in-cluster, or KUBECONFIG / ~/.kube/config).
    pub kubeconfig: Option<PathBuf>,
    /// An API server URL reached without credentials (`kubectl proxy`, tests).
    pub api_url: Option<String>,
    /// The cluster's name, for the ledger scope: set it when Deployments of several clusters
    /// share one ledger (default: none).
    pub cluster: Option<String>,
    /// Namespace (with `[[deployment]]`: the default of each entry's).
    #[serde(default)]
    pub namespace: String,
    /// The Deployment (with `[[deployment]]`: left out, each entry names its own).
    #[serde(default)]
    pub deployment: String,
    /// The container whose env flowfail changes (default: the first).
    pub container: Option<String>,
}

impl KubernetesConfig {
    /// The ledger scope of this Deployment's incidents, pause and approvals:
    /// `[CLUSTER.]NAMESPACE.DEPLOYMENT`, so Deployments of one name in two namespaces (or
    /// clusters) sharing a ledger never share an incident, a pause or an approval.
    pub fn scope(&self) -> String {
        match &self.cluster {
            Some(c) => format!("{c}.{}.{}", self.namespace, self.deployment),
            None => format!("{}.{}", self.namespace, self.deployment),
        }
    }
}

/// One Deployment of several watched by one process: a `[[deployment]]` entry. What it leaves
/// out is taken from `[kubernetes]`, `[aws]` and `[postgres]`; everything else (vendors,
/// pager, policy, rules, listener, tracker) is the process's, shared by every entry.
///
/// ```toml
/// [[deployment]]
/// namespace = "prod"
/// deployment = "flowengine"
/// log_group = "/flowengine/prod/errors"
/// bucket = "flowengine-prod-bundles"
/// task_filter = { column = "environment", value = "prod" }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DeploymentConfig {
    /// The Deployment.
    pub deployment: String,
    /// Its namespace (default: `kubernetes.namespace`).
    pub namespace: Option<String>,
    /// The container whose env flowfail changes (default: `kubernetes.container`, else the
    /// first).
    pub container: Option<String>,
    /// Its CloudWatch Logs group (default: `aws.log_group`).
    pub log_group: Option<String>,
    /// Its bundle bucket (default: `aws.bucket`).
    pub bucket: Option<String>,
    /// Its bundles' key prefix (default: `aws.key_prefix`).
    pub key_prefix: Option<String>,
    /// Its tasks table (default: `postgres.table`).
    pub table: Option<String>,
    /// Its rows in a tasks table other entries read too (default: `postgres.task_filter`).
    pub task_filter: Option<crate::statuses::TaskFilterConfig>,
}

/// How a vendor's quota is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum QuotaSource {
    /// Anthropic's rate-limit headers.
    Anthropic,
    /// OpenAI's `x-ratelimit-*` headers.
    Openai,
    /// Not read: quota is unknown (the breaker never flips on errors alone).
    None,
}

/// One model vendor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct VendorConfig {
    /// How its quota is read.
    pub quota: QuotaSource,
    /// Its API base URL.
    pub api_url: Option<String>,
    /// Its API key, from an environment variable.
    pub api_key_env: Option<String>,
    /// Its API key, from a file.
    pub api_key_file: Option<PathBuf>,
    /// Refused: a key is never written in the config.
    pub api_key: Option<toml::Value>,
    /// Its status page's base URL.
    pub status_url: Option<String>,
    /// What the status page publishes: `statuspage` (Statuspage v2 `summary.json`, and
    /// incident.io's pages) or `google_cloud` (Google Cloud's `incidents.json`). Default: as
    /// the vendor's public page (`google_cloud` for `google`), else `statuspage`.
    pub status_format: Option<String>,
    /// The components (on Google's feed, products) that count, case-insensitive. Default: the
    /// vendor's (`Claude API`; `API`, `Chat Completions`; `Vertex Gemini API`, `Vertex AI
    /// Online Prediction`), none for another vendor (the page's overall indicator).
    pub status_components: Option<Vec<String>>,
}

/// Model vendors.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct VendorsConfig {
    /// The primary vendor (must be configured below).
    pub primary: String,
    /// Vendors by name.
    #[serde(flatten)]
    pub vendors: BTreeMap<String, VendorConfig>,
}

/// PagerDuty.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PagerConfig {
    /// Events API base URL (default `https://events.pagerduty.com`).
    pub url: Option<String>,
    /// A routing key per page target of the policy.
    pub routing_keys: BTreeMap<String, SecretRef>,
    /// The severity of every page: `critical`, `error` (the default: the runbook's alert is
    /// a P2), `warning` or `info`.
    #[serde(default = "default_severity")]
    pub severity: String,
    /// The runbook, linked from every page.
    pub runbook_url: Option<String>,
    /// The Grafana dashboard, linked from every page.
    pub grafana_url: Option<String>,
}

fn default_severity() -> String {
    flowfail_http::PagerDuty::DEFAULT_SEVERITY.to_owned()
}

/// Stakeholder webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NotifierConfig {
    /// The webhook URL (it carries a token), from an environment variable.
    pub url_env: Option<String>,
    /// The webhook URL, from a file.
    pub url_file: Option<PathBuf>,
    /// Refused: the URL carries a token.
    pub url: Option<toml::Value>,
}

/// The listener of `flowfail run`: alert webhooks, metrics, health and the control calls
/// (see [`crate::live::serve`]). Absent: no listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerConfig {
    /// `host:port` to listen on, e.g. `127.0.0.1:9464`.
    pub listen: String,
    /// The bearer token of the alert webhooks (at least 16 characters).
    pub webhook_token: SecretRef,
    /// The bearer token of the control calls: pause, resume, approve (at least 16 characters,
    /// different from the other two).
    pub control_token: SecretRef,
    /// The bearer token of `/metrics` (none: metrics are open).
    pub read_token: Option<SecretRef>,
    /// Grafana's HMAC secret, when its contact point signs the webhook.
    pub grafana_hmac_secret: Option<SecretRef>,
    /// The largest request body accepted, in bytes (default 262144, at most 16 MiB).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// TLS on the listener (none: plain HTTP).
    pub tls: Option<TlsConfig>,
}

/// TLS on the listener: PEM files, e.g. from a mounted `kubernetes.io/tls` Secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// The certificate chain (`tls.crt`).
    pub cert_file: PathBuf,
    /// Its private key (`tls.key`), readable by its owner only.
    pub key_file: SecretRef,
}

fn default_max_body() -> usize {
    256 * 1024
}

impl ServerConfig {
    /// The listener's TLS, when `[server.tls]` is set (files read and checked).
    pub fn tls(&self) -> Result<Option<super::serve::Tls>> {
        self.tls.as_ref().map(|t| self.tls_of(t)).transpose()
    }

    fn tls_of(&self, tls: &TlsConfig) -> Result<super::serve::Tls> {
        let key = tls.key_file.resolve("server.tls.key_file")?;
        super::serve::Tls::from_pem(&tls.cert_file, secrecy::ExposeSecret::expose_secret(&key))
    }

    /// The listener's options, secrets resolved.
    pub fn options(&self) -> Result<super::serve::ServerOptions> {
        let mut o = super::serve::ServerOptions::new(
            self.webhook_token.resolve("server.webhook_token")?,
            self.control_token.resolve("server.control_token")?,
        );
        o.read_token = self
            .read_token
            .as_ref()
            .map(|r| r.resolve("server.read_token"))
            .transpose()?;
        o.grafana_hmac_secret = self
            .grafana_hmac_secret
            .as_ref()
            .map(|r| r.resolve("server.grafana_hmac_secret"))
            .transpose()?;
        o.max_body_bytes = self.max_body_bytes;
        o.secure_cookies = self.tls.is_some();
        Ok(o)
    }

    fn validate(&self) -> Result<()> {
        self.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| invalid("server.listen", format!("not host:port ({e})")))?;
        let o = self.options()?;
        let tokens = [
            ("server.webhook_token", Some(&o.webhook_token)),
            ("server.control_token", Some(&o.control_token)),
            ("server.read_token", o.read_token.as_ref()),
            ("server.grafana_hmac_secret", o.grafana_hmac_secret.as_ref()),
        ];
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for (key, token) in tokens {
            let Some(token) = token.map(secrecy::ExposeSecret::expose_secret) else {
                continue;
            };
            if token.chars().count() < 16 {
                return Err(invalid(key, "must be at least 16 characters"));
            }
            if let Some((other, _)) = seen.iter().find(|(_, t)| *t == token) {
                return Err(invalid(
                    key,
                    format!("must differ from {other}: each credential opens different doors"),
                ));
            }
            seen.push((key, token));
        }
        if let Some(tls) = &self.tls {
            self.tls_of(tls)?;
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err(invalid(
                "server.max_body_bytes",
                "must be between 1024 and 16777216",
            ));
        }
        Ok(())
    }
}

/// The whole `flowfail.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Shadow (default) or act.
    #[serde(default)]
    pub mode: Mode,
    /// TaskDB and ledger.
    pub postgres: PostgresConfig,
    /// Logs and bundles.
    pub aws: AwsConfig,
    /// The Deployment.
    pub kubernetes: KubernetesConfig,
    /// Model vendors.
    pub vendors: VendorsConfig,
    /// The pager.
    pub pager: PagerConfig,
    /// Stakeholder notifications (none: notifications are refused and reported).
    pub notifier: Option<NotifierConfig>,
    /// The listener (none: no webhooks, metrics or control calls over HTTP).
    pub server: Option<ServerConfig>,
    /// The runbook's thresholds.
    #[serde(default)]
    pub policy: Policy,
    /// Users' classification rule files, added to the built-in rules (see
    /// [`RuleSet`](flowfail_core::RuleSet) for the format); relative paths are read from the
    /// working directory.
    #[serde(default)]
    pub rules: Vec<PathBuf>,
    /// FlowEngine's own TaskObject schemas by version, over the built-in v1 and v2.
    #[serde(default)]
    pub schemas: crate::schemas::SchemasConfig,
    /// The incident tracker (absent: none).
    pub tracker: Option<crate::tracker::TrackerConfig>,
    /// A file whose existence pulls the kill switch of the running service: every mutation is
    /// refused from the next call on, and the ledger is no longer written from the next pass
    /// on (`touch` it to stop, remove it to go on; no restart). Its directory must exist.
    /// `FLOWFAIL_KILL_SWITCH=1` in the environment pulls the switch for the whole run.
    pub kill_switch_file: Option<PathBuf>,
    /// Several Deployments watched by this one process (`[[deployment]]`), each with its own
    /// namespace, Deployment, container, log group, bucket and tasks; what an entry leaves out
    /// is the sections' above. Absent: the one Deployment of `[kubernetes]`. See
    /// [`DeploymentConfig`].
    #[serde(default, rename = "deployment")]
    pub deployments: Vec<DeploymentConfig>,
    /// Set on a member of several whose Deployment name another member shares: records an
    /// earlier version kept under that name alone cannot be told apart, and are not carried
    /// over to either.
    #[serde(skip)]
    pub(crate) name_shared: bool,
}

/// The environment variable that pulls the kill switch, for `flowfail run` and every command
/// that changes something.
pub const KILL_SWITCH_VAR: &str = "FLOWFAIL_KILL_SWITCH";

/// Whether [`KILL_SWITCH_VAR`] is on: any value other than empty, `0` or `false`.
pub fn kill_switch_env() -> bool {
    std::env::var_os(KILL_SWITCH_VAR).is_some_and(|v| {
        let v = v.to_string_lossy();
        let t = v.trim();
        !(t.is_empty() || t == "0" || t.eq_ignore_ascii_case("false"))
    })
}

impl Config {
    /// The kill switch of a run with this config: watching `kill_switch_file` when one is set,
    /// and pulled from the start when [`KILL_SWITCH_VAR`] is on.
    pub fn kill_switch(&self) -> flowfail_core::respond::KillSwitch {
        let k = match &self.kill_switch_file {
            Some(p) => flowfail_core::respond::KillSwitch::watching(p),
            None => flowfail_core::respond::KillSwitch::new(),
        };
        k.set(kill_switch_env());
        k
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid_input(format!("{}: {e}", path.display())))?;
        Self::from_toml_str(&text)
            .map_err(|e| Error::invalid_input(format!("{}: {}", path.display(), e.message())))
    }

    /// Parses and validates a config. An unknown key is an error naming its path.
    pub fn from_toml_str(text: &str) -> Result<Config> {
        // Errors name the key and the line, never a value: a secret written where a reference
        // belongs must not reach a terminal or a log.
        let value: toml::Value = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            Error::invalid_input(format!(
                "invalid TOML{}: {}",
                line.map_or_else(String::new, |l| format!(" at line {l}")),
                e.message().trim_end()
            ))
        })?;
        let policy_names = |key: &str| value.get("policy").and_then(|p| p.get(key)).is_some();
        let (names_deployment, names_vendor) =
            (policy_names("deployment"), policy_names("primary_vendor"));
        let mut config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            Error::invalid_input(format!(
                "{path}: {}",
                without_values(&e.inner().to_string())
            ))
        })?;
        if !config.deployments.is_empty() && names_deployment {
            return Err(invalid(
                "policy.deployment",
                "leave it out with [[deployment]]: each entry names its own Deployment",
            ));
        }
        if !names_deployment {
            config.policy.deployment = config.kubernetes.deployment.clone();
        }
        if !names_vendor {
            config.policy.primary_vendor = config.vendors.primary.clone();
        }
        config.validate()?;
        Ok(config)
    }
}

/// A deserializer's message without the value it quotes (`invalid type: string "…", expected
/// a table` → `invalid type: expected a table`); key names (in backticks) stay.
fn without_values(msg: &str) -> String {
    let quotes_a_value = [
        "invalid type:",
        "invalid value:",
        "invalid length",
        "unknown variant",
    ]
    .iter()
    .any(|p| msg.starts_with(p));
    match msg.split_once(", expected") {
        Some((head, expected)) if quotes_a_value => {
            let kind = head.split(':').next().unwrap_or(head).trim();
            let kind = kind.split(" `").next().unwrap_or(kind);
            format!("{kind}: expected{expected}")
        }
        _ if quotes_a_value => msg.split(':').next().unwrap_or(msg).to_owned(),
        _ => msg.to_owned(),
    }
}

pub(crate) fn invalid(what: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid_input(format!("{what}: {why}"))
}

fn http_url(what: &str, url: &str) -> Result<()> {
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() > "https://".len()
        && !url.contains(char::is_whitespace)
        && !url.contains('@');
    if ok {
        Ok(())
    } else {
        Err(invalid(what, "expected an http(s) URL without credentials"))
    }
}

/// A Kubernetes object name (DNS-1123 label).
pub(crate) fn k8s_name(what: &str, s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(invalid(what, "must be set"));
    }
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(invalid(what, "not a valid Kubernetes name"))
    }
}

fn one_secret(
    what: &str,
    env: &Option<String>,
    file: &Option<PathBuf>,
    inline: &Option<toml::Value>,
    inline_key: &str,
) -> Result<Option<SecretRef>> {
    if inline.is_some() {
        return Err(invalid(
            &format!("{what}.{inline_key}"),
            format!("a secret given inline is refused: use {inline_key}_env or {inline_key}_file"),
        ));
    }
    match (env, file) {
        (Some(_), Some(_)) => Err(invalid(
            what,
            format!("give one of {inline_key}_env and {inline_key}_file"),
        )),
        (Some(e), None) => Ok(Some(SecretRef::Env(e.clone()))),
        (None, Some(f)) => Ok(Some(SecretRef::File(f.clone()))),
        (None, None) => Ok(None),
    }
}

impl PostgresConfig {
    /// `[postgres.statuses]` over flowfail's defaults (not yet validated).
    pub fn task_statuses(&self) -> flowfail_pg::TaskStatuses {
        let mut s = flowfail_pg::TaskStatuses::default();
        for (status, values) in &self.statuses {
            *s.values_mut(*status) = values.to_vec();
        }
        s
    }

    /// The password reference: `password_env`, `password_file`, or none (PGPASSFILE, or
    /// trust authentication).
    pub fn password_ref(&self) -> Result<Option<SecretRef>> {
        one_secret(
            "postgres",
            &self.password_env,
            &self.password_file,
            &self.password,
            "password",
        )
    }
}

impl VendorConfig {
    /// The API key reference, if any.
    pub fn api_key_ref(&self, vendor: &str) -> Result<Option<SecretRef>> {
        one_secret(
            &format!("vendors.{vendor}"),
            &self.api_key_env,
            &self.api_key_file,
            &self.api_key,
            "api_key",
        )
    }
}

impl NotifierConfig {
    /// The webhook URL reference.
    pub fn url_ref(&self) -> Result<SecretRef> {
        one_secret("notifier", &self.url_env, &self.url_file, &self.url, "url")?
            .ok_or_else(|| invalid("notifier", "give url_env or url_file"))
    }
}

impl Config {
    /// Checks every value; reads no network. Secrets are resolved (environment, files) so a
    /// missing one is reported now, by name, never by value.
    pub fn validate(&self) -> Result<()> {
        if !self.deployments.is_empty() {
            return self.validate_fleet();
        }
        self.policy.validate()?;
        if let Some(p) = &self.kill_switch_file {
            let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
            if !p.is_absolute() || !dir.is_some_and(Path::is_dir) {
                return Err(invalid(
                    "kill_switch_file",
                    "must be an absolute path in a directory that exists (else the switch could never be pulled)",
                ));
            }
        }
        let pg = &self.postgres;
        let parsed: tokio_postgres::Config = pg
            .url
            .parse()
            .map_err(|e| invalid("postgres.url", format!("not a PostgreSQL URL ({e})")))?;
        if parsed.get_password().is_some() {
            return Err(invalid(
                "postgres.url",
                "carries a password: give it by reference (password_env, password_file or PGPASSFILE)",
            ));
        }
        if let Some(r) = pg.password_ref()? {
            r.resolve("postgres password")?;
        }
        if pg.pool_size == Some(0) {
            return Err(invalid("postgres.pool_size", "must be at least 1"));
        }
        pg.task_statuses().validate()?;
        if let Some(f) = &pg.task_filter {
            f.to_filter().check()?;
        }
        let aws = &self.aws;
        for (what, v) in [
            ("aws.region", &aws.region),
            ("aws.log_group", &aws.log_group),
            ("aws.bucket", &aws.bucket),
        ] {
            if v.trim().is_empty() {
                return Err(invalid(what, "must not be empty"));
            }
        }
        if let Some(e) = &aws.endpoint {
            http_url("aws.endpoint", e)?;
        }
        let k = &self.kubernetes;
        k8s_name("kubernetes.namespace", &k.namespace)?;
        k8s_name("kubernetes.deployment", &k.deployment)?;
        if let Some(c) = &k.cluster {
            k8s_name("kubernetes.cluster", c)?;
        }
        if let Some(u) = &k.api_url {
            http_url("kubernetes.api_url", u)?;
        }
        if k.api_url.is_some() && k.kubeconfig.is_some() {
            return Err(invalid(
                "kubernetes",
                "give kubeconfig or api_url, not both",
            ));
        }
        if self.policy.deployment != k.deployment {
            return Err(invalid(
                "policy.deployment",
                format!("must be kubernetes.deployment ({:?})", k.deployment),
            ));
        }
        if let Some(server) = &self.server {
            server.validate()?;
        }
        self.validate_vendors()?;
        self.validate_pager()?;
        self.schemas.load()?;
        if let Some(t) = &self.tracker {
            t.build()?;
        }
        self.rule_set().map(drop)
    }

    /// The built-in classification rules with the files of `rules`; an error names the file,
    /// the rule and the position.
    pub fn rule_set(&self) -> Result<flowfail_core::RuleSet> {
        flowfail_core::RuleSet::with_extra(&self.rules).map_err(|e| invalid("rules", e.message()))
    }

    fn validate_vendors(&self) -> Result<()> {
        let v = &self.vendors;
        if !v.vendors.contains_key(&v.primary) {
            return Err(invalid(
                "vendors.primary",
                format!("{:?} has no [vendors.{}] section", v.primary, v.primary),
            ));
        }
        if self.policy.primary_vendor != v.primary {
            return Err(invalid(
                "policy.primary_vendor",
                format!("must be vendors.primary ({:?})", v.primary),
            ));
        }
        for (name, c) in &v.vendors {
            let at = format!("vendors.{name}");
            if let Some(u) = &c.api_url {
                http_url(&format!("{at}.api_url"), u)?;
            }
            if let Some(u) = &c.status_url {
                http_url(&format!("{at}.status_url"), u)?;
            }
            if let Some(f) = &c.status_format
                && flowfail_http::PageFormat::parse(f).is_none()
            {
                return Err(invalid(
                    &format!("{at}.status_format"),
                    "must be \"statuspage\" or \"google_cloud\"",
                ));
            }
            let key = c.api_key_ref(name)?;
            if c.quota != QuotaSource::None {
                let key = key.ok_or_else(|| {
                    invalid(
                        &at,
                        "quota is read with the API key: give api_key_env or api_key_file",
                    )
                })?;
                key.resolve(&format!("{at} API key"))?;
                if c.api_url.is_none() {
                    return Err(invalid(&format!("{at}.api_url"), "needed to read quota"));
                }
            }
        }
        Ok(())
    }

    fn validate_pager(&self) -> Result<()> {
        let p = &self.pager;
        for (what, url) in [
            ("pager.url", &p.url),
            ("pager.runbook_url", &p.runbook_url),
            ("pager.grafana_url", &p.grafana_url),
        ] {
            if let Some(u) = url {
                http_url(what, u)?;
            }
        }
        let severities = flowfail_http::PagerDuty::SEVERITIES;
        if !severities.contains(&p.severity.as_str()) {
            return Err(invalid(
                "pager.severity",
                format!("{:?} is not one of {}", p.severity, severities.join(", ")),
            ));
        }
        for t in &self.policy.page_targets {
            let r = self.pager.routing_keys.get(t).ok_or_else(|| {
                invalid(
                    "pager.routing_keys",
                    format!("no routing key for the page target {t:?}"),
                )
            })?;
            r.resolve(&format!("pager.routing_keys.{t}"))?;
        }
        if let Some(n) = &self.notifier {
            n.url_ref()?.resolve("notifier url")?;
        }
        Ok(())
    }
}
