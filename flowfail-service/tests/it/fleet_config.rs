//! `[[deployment]]`: several Deployments in one config, each checked as a config of its own,
//! never two on one ledger scope or on the same tasks.

use flowfail_core::ErrorKind;
use flowfail_service::Config;

use super::live_config::{base, err};

/// The base config without its one Deployment, with these entries.
fn fleet(entries: &str) -> String {
    format!(
        "{}\n{entries}",
        base().replace("deployment = \"flowengine\"\n", "")
    )
}

const TWO: &str = r#"
[[deployment]]
namespace = "default"
deployment = "flowengine"
task_filter = { column = "environment", value = "prod" }

[[deployment]]
namespace = "staging"
deployment = "flowengine"
log_group = "/aws/lambda/flowengine-staging"
bucket = "staging-bundles"
container = "engine"
task_filter = { column = "environment", value = "staging" }
"#;

#[test]
fn each_entry_is_a_config_of_its_own_over_the_shared_sections() {
    let c = Config::from_toml_str(&fleet(TWO)).unwrap();
    let m = c.members();
    assert_eq!(m.len(), 2);
    let scopes: Vec<String> = m.iter().map(|c| c.kubernetes.scope()).collect();
    assert_eq!(scopes, ["default.flowengine", "staging.flowengine"]);
    assert_eq!(m[0].aws.log_group, "/aws/lambda/flowengine");
    assert_eq!(m[1].aws.log_group, "/aws/lambda/flowengine-staging");
    assert_eq!(m[1].aws.bucket, "staging-bundles");
    assert_eq!(m[1].kubernetes.container.as_deref(), Some("engine"));
    assert_eq!(m[0].kubernetes.container, None);
    for (member, env) in m.iter().zip(["prod", "staging"]) {
        assert_eq!(member.policy.deployment, "flowengine");
        assert!(member.deployments.is_empty());
        let f = member.postgres.task_filter.as_ref().unwrap();
        assert_eq!((f.column.as_str(), f.value.as_str()), ("environment", env));
        // Shared: vendors and pager.
        assert_eq!(member.vendors.primary, "anthropic");
        assert_eq!(member.pager.routing_keys.len(), 3);
    }
    // A config of one Deployment is its own only member.
    let one = Config::from_toml_str(&base()).unwrap();
    assert_eq!(one.members().len(), 1);
    assert_eq!(one.members()[0].kubernetes.scope(), "default.flowengine");
}

#[test]
fn entries_that_would_share_a_scope_or_tasks_are_refused() {
    // The Deployment named twice: once in [kubernetes], once per entry.
    let e = err(&format!("{}\n{TWO}", base()));
    assert!(e.contains("kubernetes.deployment: leave it out"), "{e}");
    let e = err(&format!(
        "{}\n[policy]\ndeployment = \"flowengine\"\n",
        fleet(TWO)
    ));
    assert!(e.contains("policy.deployment"), "{e}");
    // Two entries on one scope.
    let e = err(&fleet(
        r#"
[[deployment]]
deployment = "flowengine"
task_filter = { column = "environment", value = "a" }
[[deployment]]
deployment = "flowengine"
task_filter = { column = "environment", value = "b" }
"#,
    ));
    assert!(
        e.contains("deployment[1]") && e.contains("default.flowengine"),
        "{e}"
    );
    // One tasks table, no filter on one of them: one's failures would be the other's.
    let e = err(&fleet(
        r#"
[[deployment]]
deployment = "flowengine"
[[deployment]]
deployment = "flowengine-eu"
task_filter = { column = "environment", value = "eu" }
"#,
    ));
    assert!(
        e.contains("task_filter") && e.contains("table tasks"),
        "{e}"
    );
    // The same filter twice.
    let e = err(&fleet(
        r#"
[[deployment]]
deployment = "flowengine"
task_filter = { column = "environment", value = "prod" }
[[deployment]]
deployment = "flowengine-eu"
task_filter = { column = "environment", value = "prod" }
"#,
    ));
    assert!(
        e.contains("deployment[1]") && e.contains("deployment[0]"),
        "{e}"
    );
    // Each its own table: no filter needed.
    Config::from_toml_str(&fleet(
        r#"
[[deployment]]
deployment = "flowengine"
table = "tasks_us"
[[deployment]]
deployment = "flowengine-eu"
table = "tasks_eu"
"#,
    ))
    .unwrap();
    // An entry's own values are checked, and the error names the entry.
    let e = err(&fleet(
        r#"
[[deployment]]
deployment = "Flow_Engine"
"#,
    ));
    assert!(e.contains("deployment[0].deployment"), "{e}");
    let e = err(&fleet(
        r#"
[[deployment]]
deployment = "flowengine"
log_group = " "
"#,
    ));
    assert!(
        e.contains("deployment[0]") && e.contains("aws.log_group"),
        "{e}"
    );
    let e = err(&fleet(
        r#"
[[deployment]]
deployment = "flowengine"
colour = "blue"
"#,
    ));
    assert!(e.contains("colour"), "{e}");
}

#[tokio::test]
async fn controls_and_connections_name_one_deployment_of_several() {
    let c = Config::from_toml_str(&fleet(TWO)).unwrap();
    // Which Deployment: by scope, or by a name no other entry has.
    let e = c.controls().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.message()
            .contains("default.flowengine, staging.flowengine"),
        "{e}"
    );
    assert_eq!(
        c.controls_of(Some("staging.flowengine")).unwrap().scope(),
        "staging.flowengine"
    );
    let e = c.controls_of(Some("flowengine")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = c.controls_of(Some("prod.\u{1b}[2Jflowengine")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(!e.message().contains('\u{1b}'), "{e}");
    // One Deployment's connect is refused with the way to several; connect_fleet builds both.
    let e = c.connect().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("connect_fleet"), "{e}");
}
