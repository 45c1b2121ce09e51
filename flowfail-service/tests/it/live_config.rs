//! `flowfail.toml`: every value checked before anything connects; unknown keys named by path;
//! secrets only by reference, never echoed.

use std::path::PathBuf;

use flowfail_service::{Config, Mode};

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A secret in a file of its own (tests cannot set environment variables safely).
fn secret_file(name: &str, value: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flowfail-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    // Written aside and renamed: tests run in parallel, and a reader must never see the file
    // truncated by another test rewriting it.
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!("{name}.{n}.tmp"));
    std::fs::write(&tmp, format!("{value}\n")).unwrap();
    set_mode(&tmp, 0o600);
    std::fs::rename(&tmp, &p).unwrap();
    p
}

fn set_mode(p: &std::path::Path, mode: u32) {
    std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

pub(crate) fn base() -> String {
    let key = secret_file("key", "s3cr3t-canary-value");
    let k = key.display();
    format!(
        r#"
[postgres]
url = "postgres://flowfail@127.0.0.1:5432/postgres"
schema = "public"

[aws]
region = "us-east-1"
log_group = "/aws/lambda/flowengine"
bucket = "context-bundles"

[kubernetes]
namespace = "default"
deployment = "flowengine"

[vendors]
primary = "anthropic"
[vendors.anthropic]
quota = "anthropic"
api_url = "https://api.anthropic.com"
api_key_file = "{k}"
status_url = "https://status.anthropic.com"
[vendors.openai]
quota = "none"
status_url = "https://status.openai.com"

[pager.routing_keys]
on_call = {{ file = "{k}" }}
sre = {{ file = "{k}" }}
tech_lead = {{ file = "{k}" }}
"#
    )
}

pub(crate) fn err(text: &str) -> String {
    let e = Config::from_toml_str(text).unwrap_err().to_string();
    assert!(!e.contains("s3cr3t"), "a secret leaked into an error: {e}");
    e
}

#[test]
fn a_minimal_config_is_valid_and_shadow_by_default() {
    let c = Config::from_toml_str(&base()).unwrap();
    assert_eq!(c.mode, Mode::Shadow);
    // The policy follows the Deployment and the primary vendor named once.
    assert_eq!(c.policy.deployment, "flowengine");
    assert_eq!(c.policy.primary_vendor, "anthropic");
    let act = Config::from_toml_str(&format!("mode = \"act\"\n{}", base())).unwrap();
    assert_eq!(act.mode, Mode::Act);
}

#[test]
fn unknown_keys_are_errors_with_their_path() {
    let e = err(&base().replace("schema = \"public\"", "schema = \"public\"\ncolums = 1"));
    assert!(e.contains("postgres") && e.contains("colums"), "{e}");
    let e = err(&format!("{}\n[policy]\nalert_failure_rat = 0.02\n", base()));
    assert!(
        e.contains("policy") && e.contains("alert_failure_rat"),
        "{e}"
    );
    let e = err(&format!("moed = \"act\"\n{}", base()));
    assert!(e.contains("moed"), "{e}");
}

#[test]
fn nonsense_values_are_refused_before_anything_connects() {
    let e = err(&format!("{}\n[policy]\nalert_failure_rate = 1.5\n", base()));
    assert!(e.contains("alert_failure_rate"), "{e}");
    let e = err(&base().replace(
        "deployment = \"flowengine\"",
        "deployment = \"Flow_Engine\"",
    ));
    assert!(e.contains("kubernetes.deployment"), "{e}");
    let e = err(&base().replace("primary = \"anthropic\"", "primary = \"google\""));
    assert!(e.contains("vendors.primary"), "{e}");
    let e = err(&base().replace("https://status.openai.com", "ftp://status"));
    assert!(e.contains("vendors.openai.status_url"), "{e}");
    let e = err(&base().replace(
        "status_url = \"https://status.openai.com\"",
        "status_url = \"https://status.openai.com\"\nstatus_format = \"rss\"",
    ));
    assert!(
        e.contains("vendors.openai.status_format") && e.contains("google_cloud"),
        "{e}"
    );
    let e = err(&format!("mode = \"yolo\"\n{}", base()));
    assert!(e.contains("mode"), "{e}");
    // Every page target of the policy needs a routing key.
    let e = err(&base().replace("sre = {", "#sre = {"));
    assert!(e.contains("sre"), "{e}");
}

/// `[postgres.statuses]`: a value or a list per status flowfail knows, the first written; a
/// status flowfail does not know, or a value under two statuses, is refused by its key.
#[test]
fn task_status_values_are_mapped_by_status_and_checked() {
    let with = |lines: &str| {
        base().replace(
            "schema = \"public\"",
            &format!("schema = \"public\"\n[postgres.statuses]\n{lines}"),
        )
    };
    let c = Config::from_toml_str(&with(
        "failed = [\"FAILED\", \"error\"]\npending = \"QUEUED\"",
    ))
    .unwrap();
    let s = c.postgres.task_statuses();
    assert_eq!(s.failed, ["FAILED", "error"]);
    assert_eq!(s.pending, ["QUEUED"]);
    assert_eq!(s.succeeded, ["succeeded"]);
    // The unknown status is named by its place and the statuses there are (a map key is
    // never echoed: it could be a value put in the wrong place).
    let e = err(&with("errored = \"ERR\""));
    assert!(
        e.contains("postgres.statuses") && e.contains("failed_final"),
        "{e}"
    );
    let e = err(&with("failed = \"DONE\"\nsucceeded = \"DONE\""));
    assert!(
        e.contains("postgres.statuses.failed") && e.contains("succeeded"),
        "{e}"
    );
    let e = err(&with("failed = []"));
    assert!(e.contains("postgres.statuses.failed"), "{e}");
    let e = err(&with("failed = \"x' OR 'a'='a\""));
    assert!(e.contains("postgres.statuses.failed"), "{e}");
}

#[test]
fn secrets_are_only_accepted_by_reference() {
    let e = err(&base().replace(
        "schema = \"public\"",
        "schema = \"public\"\npassword = \"s3cr3t-inline\"",
    ));
    assert!(
        e.contains("inline is refused") && e.contains("postgres.password"),
        "{e}"
    );
    let e = err(&base().replace("postgres://flowfail@", "postgres://flowfail:s3cr3t-inline@"));
    assert!(e.contains("carries a password"), "{e}");
    let e = err(&base().replace("on_call = {", "on_call = \"s3cr3t-inline\"\n#"));
    assert!(
        e.contains("inline is refused") && e.contains("on_call"),
        "{e}"
    );
    let e = err(&base().replace(
        "quota = \"anthropic\"",
        "quota = \"anthropic\"\napi_key = \"s3cr3t-inline\"",
    ));
    assert!(e.contains("inline is refused"), "{e}");
    // A reference to a secret that is not there is named, not guessed.
    let e = err(&base().replace(
        "api_key_file = ",
        "api_key_env = \"FLOWFAIL_TEST_NO_SUCH_VARIABLE\"\n#",
    ));
    assert!(
        e.contains("FLOWFAIL_TEST_NO_SUCH_VARIABLE") && e.contains("not set"),
        "{e}"
    );
}

#[test]
fn the_example_in_the_repo_is_a_valid_config() {
    // The example references secrets that exist only in a deployment: point them at files.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../flowfail.example.toml"
    ))
    .unwrap();
    let key = secret_file("example-key", "x-test-secret-of-enough-length");
    let k = key.display().to_string();
    let text = text
        .replace(
            "password_env = \"FLOWFAIL_PG_PASSWORD\"",
            &format!("password_file = \"{k}\""),
        )
        .replace(
            "api_key_env = \"ANTHROPIC_API_KEY\"",
            &format!("api_key_file = \"{k}\""),
        )
        .replace(
            "api_key_env = \"OPENAI_API_KEY\"",
            &format!("api_key_file = \"{k}\""),
        )
        .replace(
            "{ env = \"PAGERDUTY_ON_CALL_KEY\" }",
            &format!("{{ file = \"{k}\" }}"),
        )
        .replace(
            "{ env = \"PAGERDUTY_SRE_KEY\" }",
            &format!("{{ file = \"{k}\" }}"),
        )
        .replace("/etc/flowfail/secrets/pagerduty-tech-lead", &k)
        .replace(
            "url_env = \"FLOWFAIL_STAKEHOLDER_WEBHOOK_URL\"",
            &format!("url_file = \"{k}\""),
        )
        .replace(
            "{ env = \"FLOWFAIL_WEBHOOK_TOKEN\" }",
            &format!("{{ file = \"{k}\" }}"),
        )
        .replace(
            "{ env = \"FLOWFAIL_CONTROL_TOKEN\" }",
            &format!(
                "{{ file = \"{}\" }}",
                secret_file("control", "a-control-token-value").display()
            ),
        );
    let c = Config::from_toml_str(&text).unwrap();
    assert_eq!(c.mode, Mode::Shadow);
    assert_eq!(c.policy.deployment, c.kubernetes.deployment);
    assert_eq!(c.pager.severity, "error");
    assert!(c.pager.runbook_url.is_some() && c.pager.grafana_url.is_some());
}

/// `base()` with these lines in its `[pager]` section.
fn with_pager(lines: &str) -> String {
    base().replace(
        "[pager.routing_keys]",
        &format!("[pager]\n{lines}\n[pager.routing_keys]"),
    )
}

#[test]
fn pager_severity_defaults_to_error_and_only_events_v2_severities_are_accepted() {
    let c = Config::from_toml_str(&base()).unwrap();
    assert_eq!(c.pager.severity, "error", "the runbook's alert is a P2");
    assert_eq!((c.pager.runbook_url, c.pager.grafana_url), (None, None));
    for s in ["critical", "error", "warning", "info"] {
        let c = Config::from_toml_str(&with_pager(&format!("severity = \"{s}\""))).unwrap();
        assert_eq!(c.pager.severity, s);
    }
    for bad in ["\"fatal\"", "\"Critical\"", "\"\"", "2"] {
        let e = err(&with_pager(&format!("severity = {bad}")));
        assert!(e.contains("pager.severity"), "{bad}: {e}");
    }
    let e = err(&with_pager("severity = \"P2\""));
    assert!(
        e.contains("\"P2\"") && e.contains("critical, error, warning, info"),
        "{e}"
    );
}

#[test]
fn pager_links_are_http_urls() {
    let c = Config::from_toml_str(&with_pager(
        "runbook_url = \"https://wiki.internal/runbooks/flow-failure\"\ngrafana_url = \"http://grafana:3000/d/flowengine\"",
    ))
    .unwrap();
    assert_eq!(
        c.pager.runbook_url.as_deref(),
        Some("https://wiki.internal/runbooks/flow-failure")
    );
    assert_eq!(
        c.pager.grafana_url.as_deref(),
        Some("http://grafana:3000/d/flowengine")
    );
    for (key, bad) in [
        ("runbook_url", "wiki/runbooks"),
        ("runbook_url", "ftp://wiki/runbook"),
        ("grafana_url", "https://admin:pw@grafana/d/x"),
        ("grafana_url", "https://grafana/d/a b"),
    ] {
        let e = err(&with_pager(&format!("{key} = \"{bad}\"")));
        assert!(e.contains(&format!("pager.{key}")), "{key} = {bad}: {e}");
    }
    let e = err(&with_pager("runbook = \"https://wiki\""));
    assert!(e.contains("pager") && e.contains("runbook"), "{e}");
}

/// A one-request HTTP server on a thread: answers `202` and hands back the request's body.
fn one_request_server() -> (String, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = reader.into_inner();
        stream
            .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
            .unwrap();
        String::from_utf8(body).unwrap()
    });
    (url, handle)
}

/// `[pager]` reaches PagerDuty through `Config::connect`: the severity and the links are on
/// the trigger the pager port sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pager_section_is_wired_into_the_pager_port() {
    let (url, server) = one_request_server();
    let text = with_pager(&format!(
        "url = \"{url}\"\nseverity = \"warning\"\nrunbook_url = \"https://wiki.internal/runbooks/ffr\"\ngrafana_url = \"https://grafana.internal/d/flowengine\""
    ))
    .replace(
        "deployment = \"flowengine\"",
        "deployment = \"flowengine\"\napi_url = \"http://127.0.0.1:9\"",
    );
    let live = Config::from_toml_str(&text)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let page =
        flowfail_core::Page::new("on_call", "inc-1:page", "summary", serde_json::Value::Null);
    assert_eq!(
        live.ports.pager.page(&page).await.unwrap(),
        flowfail_core::Delivery::Sent
    );
    let body: serde_json::Value = serde_json::from_str(&server.join().unwrap()).unwrap();
    assert_eq!(body["payload"]["severity"], "warning", "{body}");
    assert_eq!(
        body["links"],
        serde_json::json!([
            {"href": "https://wiki.internal/runbooks/ffr", "text": "Runbook: Flow Failure Response"},
            {"href": "https://grafana.internal/d/flowengine", "text": "Grafana dashboard"},
        ])
    );
    assert_eq!(body["routing_key"], "s3cr3t-canary-value");
}

#[test]
fn the_listener_needs_an_address_and_three_separate_tokens_by_reference() {
    let hook = secret_file("webhook-token", "sixteen-chars-ok");
    let control = secret_file("control-token", "another-sixteen-chars");
    let short = secret_file("short-token", "too-short");
    let (h, c) = (hook.display(), control.display());
    let tokens =
        format!("webhook_token = {{ file = \"{h}\" }}\ncontrol_token = {{ file = \"{c}\" }}");
    let ok = format!(
        "{}\n[server]\nlisten = \"127.0.0.1:9464\"\n{tokens}\n",
        base()
    );
    let conf = Config::from_toml_str(&ok).unwrap();
    let server = conf.server.unwrap();
    assert_eq!(server.max_body_bytes, 262_144);
    assert!(server.read_token.is_none());
    for (server, why) in [
        (format!("listen = \"localhost\"\n{tokens}"), "server.listen"),
        (
            format!(
                "listen = \"127.0.0.1:9464\"\nwebhook_token = {{ file = \"{}\" }}\ncontrol_token = {{ file = \"{c}\" }}",
                short.display()
            ),
            "at least 16",
        ),
        (
            format!(
                "listen = \"127.0.0.1:9464\"\nwebhook_token = {{ file = \"{h}\" }}\ncontrol_token = {{ file = \"{h}\" }}"
            ),
            "server.control_token: must differ from server.webhook_token",
        ),
        (
            format!("listen = \"127.0.0.1:9464\"\n{tokens}\nread_token = {{ file = \"{c}\" }}"),
            "server.read_token: must differ from server.control_token",
        ),
        (
            format!(
                "listen = \"127.0.0.1:9464\"\nwebhook_token = \"an-inline-token-of-length\"\ncontrol_token = {{ file = \"{c}\" }}"
            ),
            "inline is refused",
        ),
        (
            format!("listen = \"127.0.0.1:9464\"\n{tokens}\nmax_body_bytes = 10"),
            "server.max_body_bytes",
        ),
        (
            format!(
                "listen = \"127.0.0.1:9464\"\n{tokens}\ngrafana_hmac_secret = {{ file = \"{}\" }}",
                short.display()
            ),
            "server.grafana_hmac_secret",
        ),
        (
            format!("listen = \"127.0.0.1:9464\"\n{tokens}\nlisten_on = 1"),
            "listen_on",
        ),
        (
            format!("listen = \"127.0.0.1:9464\"\ntoken = {{ file = \"{h}\" }}"),
            "token",
        ),
        (
            format!(
                "listen = \"127.0.0.1:9464\"\n{tokens}\n[server.tls]\ncert_file = \"/nonexistent/tls.crt\"\nkey_file = {{ file = \"{c}\" }}"
            ),
            "server.tls",
        ),
    ] {
        let text = format!("{}\n[server]\n{server}\n", base());
        let e = Config::from_toml_str(&text).unwrap_err().to_string();
        assert!(e.contains(why), "{why}: {e}");
        for secret in [
            "an-inline-token",
            "too-short",
            "sixteen-chars-ok",
            "another-sixteen",
        ] {
            assert!(!e.contains(secret), "{e}");
        }
    }
}

/// A secret file: readable by its owner only, at most 64 KiB, one trailing newline removed
/// and nothing else (a token's own spaces are part of it).
#[test]
fn secret_files_are_private_small_and_read_as_written() {
    let config = |path: &std::path::Path| {
        format!(
            "{}\n[server]\nlisten = \"127.0.0.1:9464\"\nwebhook_token = {{ file = \"{}\" }}\ncontrol_token = {{ file = \"{}\" }}\n",
            base(),
            path.display(),
            secret_file("control-token-2", "another-sixteen-chars").display()
        )
    };
    let open = secret_file("open-token", "sixteen-chars-ok");
    for mode in [0o644, 0o604, 0o620, 0o606] {
        set_mode(&open, mode);
        let e = Config::from_toml_str(&config(&open))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("readable by group or others") && e.contains(&format!("{mode:03o}")),
            "{e}"
        );
        assert!(!e.contains("sixteen-chars-ok"), "{e}");
    }
    // Readable by the process's own group (a Secret mounted with the pod's fsGroup): fine.
    set_mode(&open, 0o440);
    Config::from_toml_str(&config(&open)).unwrap();
    let big = secret_file("big-token", &"x".repeat(70_000));
    let e = Config::from_toml_str(&config(&big))
        .unwrap_err()
        .to_string();
    assert!(e.contains("larger than 65536 bytes"), "{e}");
    // Trailing spaces are the token's; a CRLF ending is not.
    let spaced = secret_file("spaced-token", "sixteen-chars-ok  \r");
    let c = Config::from_toml_str(&config(&spaced)).unwrap();
    let o = c.server.unwrap().options().unwrap();
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(&o.webhook_token),
        "sixteen-chars-ok  "
    );
}

/// Config errors name the key and the line, never the value: a secret typed where a
/// reference belongs, or on a line that does not parse, stays out of the error.
#[test]
fn config_errors_name_the_key_never_the_value() {
    let secret = "hunter2-correct-horse-battery";
    for (text, names) in [
        (
            base().replace(
                "[postgres]",
                &format!("[postgres]\npassword = {{ env = [\"{secret}\"] }}"),
            ),
            "postgres",
        ),
        (
            base().replace("[postgres]", &format!("[postgres]\npassword = 7{secret}")),
            "line",
        ),
        (format!("mode = \"{secret}\"\n{}", base()), "mode"),
        (
            base().replace("[postgres]", &format!("[postgres]\nurl = \"{secret}")),
            "line",
        ),
    ] {
        let e = Config::from_toml_str(&text).unwrap_err().to_string();
        assert!(e.contains(names), "{names}: {e}");
        assert!(!e.contains(secret), "the value leaked: {e}");
        assert!(!e.contains("hunter2"), "the value leaked: {e}");
    }
}

/// Two configs with different rule files connect in one process, and each one's responders
/// classify with its own rules (nothing is installed for the process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_configs_with_different_rules_live_in_one_process() {
    let timeout = secret_file(
        "rules-timeout.toml",
        "[[rule]]\nname = \"team-a:budget\"\nstage = \"pattern\"\nkind = \"timeout\"\npattern = 'step budget of \\d+s spent'",
    );
    let rate = secret_file(
        "rules-rate.toml",
        "[[rule]]\nname = \"team-b:budget\"\nstage = \"pattern\"\nkind = \"rate_limit\"\npattern = 'step budget of \\d+s spent'",
    );
    let local_api = |text: String| {
        text.replace(
            "deployment = \"flowengine\"",
            "deployment = \"flowengine\"\napi_url = \"http://127.0.0.1:9\"",
        )
    };
    let mut lives = Vec::new();
    for file in [&timeout, &rate] {
        let text = local_api(format!("rules = [\"{}\"]\n{}", file.display(), base()));
        lives.push(
            Config::from_toml_str(&text)
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
    }
    let plain = Config::from_toml_str(&local_api(base()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let kind =
        |live: &flowfail_service::Live| live.rules.classify("step budget of 45s spent", None).kind;
    assert_eq!(kind(&lives[0]), flowfail_core::FailureKind::Timeout);
    assert_eq!(kind(&lives[1]), flowfail_core::FailureKind::RateLimit);
    assert_eq!(kind(&plain), flowfail_core::FailureKind::Unknown);
}

#[test]
fn users_rule_files_are_loaded_and_a_bad_one_is_refused_by_name() {
    let good = secret_file(
        "flowengine-rules.toml",
        "[[rule]]\nname = \"flowengine:step_budget\"\nstage = \"pattern\"\nkind = \"timeout\"\npattern = 'step budget of \\d+s spent'",
    );
    let config =
        Config::from_toml_str(&format!("rules = [\"{}\"]\n{}", good.display(), base())).unwrap();
    assert_eq!(config.rules, std::slice::from_ref(&good));
    let c = config
        .rule_set()
        .unwrap()
        .classify("step budget of 45s spent", None);
    assert_eq!(c.rule, "flowengine:step_budget");

    let bad = secret_file(
        "bad-rules.toml",
        "[[rule]]\nname = \"flowengine:broken\"\nstage = \"pattern\"\nkind = \"timeout\"\npattern = 'step (budget'",
    );
    let e = Config::from_toml_str(&format!("rules = [\"{}\"]\n{}", bad.display(), base()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("rules") && e.contains("bad-rules.toml"), "{e}");
    assert!(
        e.contains("flowengine:broken") && e.contains("column 6"),
        "{e}"
    );
    let e = Config::from_toml_str(&format!("rules = [\"/no/such/rules.toml\"]\n{}", base()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/no/such/rules.toml"), "{e}");
    // No key: the built-in rules.
    assert!(Config::from_toml_str(&base()).unwrap().rules.is_empty());
}

/// Issue 27 #13: the kill switch file of `flowfail run`: an absolute path in a directory that
/// exists (else it could never be pulled); the switch reads the file each time.
#[test]
fn the_kill_switch_file_must_be_pullable_and_is_read_each_time() {
    for bad in ["kill", "/no/such/dir/kill"] {
        let e = err(&format!("kill_switch_file = \"{bad}\"\n{}", base()));
        assert!(e.contains("kill_switch_file"), "{bad}: {e}");
    }
    let dir = std::env::temp_dir().join(format!("ff-kill-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("kill");
    let c = Config::from_toml_str(&format!(
        "kill_switch_file = \"{}\"\n{}",
        file.display(),
        base()
    ))
    .unwrap();
    let k = c.kill_switch();
    assert!(!k.is_on());
    std::fs::write(&file, "").unwrap();
    assert!(k.is_on());
    std::fs::remove_file(&file).unwrap();
    assert!(!k.is_on());
    std::fs::remove_dir_all(&dir).unwrap();
}
