//! `[[deployment]]`: the config of each Deployment one process watches, checked as a config of
//! its own, and which one a control call names.

use std::collections::BTreeMap;

use flowfail_core::model::describe_untrusted_pub;
use flowfail_core::{Error, Result};

use crate::config::{Config, DeploymentConfig, invalid, k8s_name};

/// Readers of one tasks table: each entry's position and its filter (column, value).
type Readers = Vec<(usize, Option<(String, String)>)>;

impl Config {
    /// One config per Deployment this config watches: itself when it has no `[[deployment]]`,
    /// else each entry over the sections' defaults (not validated here: see
    /// [`Config::validate`]).
    pub fn members(&self) -> Vec<Config> {
        if self.deployments.is_empty() {
            return vec![self.clone()];
        }
        self.deployments
            .iter()
            .map(|d| {
                let mut m = self.member(d);
                m.name_shared = self
                    .deployments
                    .iter()
                    .filter(|o| o.deployment == d.deployment)
                    .count()
                    > 1;
                m
            })
            .collect()
    }

    fn member(&self, d: &DeploymentConfig) -> Config {
        let mut c = self.clone();
        c.deployments = Vec::new();
        let k = &mut c.kubernetes;
        k.deployment = d.deployment.clone();
        if let Some(n) = &d.namespace {
            k.namespace = n.clone();
        }
        if d.container.is_some() {
            k.container = d.container.clone();
        }
        let a = &mut c.aws;
        if let Some(g) = &d.log_group {
            a.log_group = g.clone();
        }
        if let Some(b) = &d.bucket {
            a.bucket = b.clone();
        }
        if let Some(p) = &d.key_prefix {
            a.key_prefix = p.clone();
        }
        if d.table.is_some() {
            c.postgres.table = d.table.clone();
        }
        if d.task_filter.is_some() {
            c.postgres.task_filter = d.task_filter.clone();
        }
        c.policy.deployment = d.deployment.clone();
        c
    }

    /// `[[deployment]]`: each entry checked as a config of its own (errors name the entry),
    /// no two under one ledger scope, and no two reading the same rows of a tasks table.
    pub(crate) fn validate_fleet(&self) -> Result<()> {
        if !self.kubernetes.deployment.is_empty() {
            return Err(invalid(
                "kubernetes.deployment",
                "leave it out with [[deployment]]: each entry names its own",
            ));
        }
        let mut scopes: BTreeMap<String, usize> = BTreeMap::new();
        // (schema, table) → the entries reading it, with their filters.
        let mut tables: BTreeMap<(Option<String>, String), Readers> = BTreeMap::new();
        for (i, (d, m)) in self.deployments.iter().zip(self.members()).enumerate() {
            let at = format!("deployment[{i}]");
            k8s_name(&format!("{at}.deployment"), &d.deployment)?;
            m.validate()
                .map_err(|e| Error::invalid_input(format!("{at}: {}", e.message())))?;
            if let Some(j) = scopes.insert(m.kubernetes.scope(), i) {
                return Err(invalid(
                    &at,
                    format!(
                        "watches {} as deployment[{j}] does: one supervisor per Deployment",
                        m.kubernetes.scope()
                    ),
                ));
            }
            let table = (
                m.postgres.schema.clone(),
                m.postgres.table.clone().unwrap_or_else(|| "tasks".into()),
            );
            let filter = m
                .postgres
                .task_filter
                .as_ref()
                .map(|f| (f.column.clone(), f.value.clone()));
            tables.entry(table).or_default().push((i, filter));
        }
        for ((_, table), readers) in &tables {
            shared_table_ok(table, readers)?;
        }
        let pool = self.postgres.pool_size;
        let need = 2 * self.deployments.len();
        if let Some(n) = pool.filter(|n| *n < need) {
            return Err(invalid(
                "postgres.pool_size",
                format!(
                    "{n} connections for {} Deployments: give each at least 2 (at least {need}), or leave it out",
                    self.deployments.len()
                ),
            ));
        }
        Ok(())
    }
}

/// Several entries reading one tasks table must each have a filter, all on one column, with
/// values that differ: any other filters can select the same row for two supervisors.
fn shared_table_ok(table: &str, readers: &Readers) -> Result<()> {
    if readers.len() < 2 {
        return Ok(());
    }
    let (first, column) = match &readers[0] {
        (i, Some((c, _))) => (*i, c),
        (i, None) => return Err(unfiltered(*i, table)),
    };
    for (n, (i, f)) in readers.iter().enumerate().skip(1) {
        let Some((c, v)) = f else {
            return Err(unfiltered(*i, table));
        };
        if c != column {
            return Err(invalid(
                &format!("deployment[{i}]"),
                format!(
                    "filters table {table} on {c} where deployment[{first}] filters on {column}: a row can match both (give every entry of one table a value of the same column)"
                ),
            ));
        }
        if let Some((j, _)) = readers[..n]
            .iter()
            .find(|(_, g)| g.as_ref().is_some_and(|(_, w)| w == v))
        {
            return Err(invalid(
                &format!("deployment[{i}]"),
                format!(
                    "reads the rows of table {table} that deployment[{j}] reads ({c} = {v:?}): give each its own value"
                ),
            ));
        }
    }
    Ok(())
}

fn unfiltered(i: usize, table: &str) -> Error {
    invalid(
        &format!("deployment[{i}]"),
        format!(
            "reads table {table} with other entries but has no task_filter: give each entry a task_filter value, or its own table (else one's failures would open the other's incident)"
        ),
    )
}

/// The position in `members` of the Deployment `name` names: its ledger scope
/// (`NAMESPACE.DEPLOYMENT`), or its Deployment's name when no other has that name; `None` when
/// there is only one. Anything else is [`flowfail_core::ErrorKind::InvalidInput`] (none named
/// of several, or a name several share) or [`flowfail_core::ErrorKind::NotFound`], with the
/// scopes to choose from.
pub(crate) fn pick(members: &[&Config], name: Option<&str>) -> Result<usize> {
    let list = || {
        members
            .iter()
            .map(|c| c.kubernetes.scope())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(name) = name else {
        return match members.len() {
            1 => Ok(0),
            n => Err(Error::invalid_input(format!(
                "{n} Deployments are watched here ({}): name one (its scope)",
                list()
            ))),
        };
    };
    if let Some(i) = members.iter().position(|c| c.kubernetes.scope() == name) {
        return Ok(i);
    }
    let by_name: Vec<usize> = (0..members.len())
        .filter(|&i| members[i].kubernetes.deployment == name)
        .collect();
    match by_name.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::not_found(format!(
            "no Deployment {} here (watching: {})",
            describe_untrusted_pub(name),
            list()
        ))),
        _ => Err(Error::invalid_input(format!(
            "{} names several Deployments here: give its scope ({})",
            describe_untrusted_pub(name),
            list()
        ))),
    }
}
