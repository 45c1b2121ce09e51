//! The web console, in process, over HTTP: sign-in, sessions, roles, CSRF, escaping, security
//! headers. The buttons' effects are checked as interactions with a recording fake control
//! (the real ledger is driven in the CLI's browser test).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::Utc;
use http_body_util::BodyExt;
use secrecy::SecretString;
use tower::ServiceExt;

use flowfail_core::control::Pause;
use flowfail_core::history::{IncidentLine, IncidentView};
use flowfail_core::ports::{IncidentListing, IncidentRecord, TimelineEntry, TimelineKind};
use flowfail_core::respond::Wake;
use flowfail_core::{Error, Result};
use flowfail_service::Mode;
use flowfail_service::metrics::Metrics;
use flowfail_service::serve::{Control, Health, ServerOptions, router};

const WEBHOOK: &str = "a-webhook-token-of-enough-length";
const CONTROL: &str = "a-control-token-of-enough-length";
const READ: &str = "a-read-token-of-enough-length";
const KEY: &str = "flowengine-20261207T1000Z";
const HOSTILE: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>";

/// One incident whose recorded text is hostile; records every control call.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
}

fn record() -> IncidentRecord {
    let at = Utc::now();
    let mut rec = IncidentRecord::new(KEY, "flowengine", at, serde_json::json!({}));
    rec.timeline = vec![
        TimelineEntry::new(
            at,
            TimelineKind::Decision,
            serde_json::json!({"mode": "act", "acted": true,
                "alert": {"firing": true, "failure_rate": 0.3, "window_tasks": 100, "failed": 30},
                "skipped": [{"action": "retry_task", "reason": HOSTILE, "count": 1, "examples": [HOSTILE]}]}),
        ),
        TimelineEntry::new(
            at,
            TimelineKind::Action,
            serde_json::json!({"action": {"kind": "retry_task", "task_id": "t-1", "attempt": 1, "failure_kind": "unknown"},
                "outcome": "failed", "detail": HOSTILE}),
        ),
        TimelineEntry::new(
            at,
            TimelineKind::Proposed,
            serde_json::json!({"gate": "rollback", "action": "roll back flowengine", "reason": HOSTILE}),
        ),
        TimelineEntry::new(
            at + chrono::TimeDelta::seconds(60),
            TimelineKind::Sample,
            serde_json::json!({"firing": true, "failure_rate": 0.2, "window_tasks": 100, "failed": 20}),
        ),
    ];
    rec
}

#[async_trait]
impl Control for Fake {
    async fn ready(&self) -> Result<()> {
        Ok(())
    }
    fn deployments(&self) -> Vec<String> {
        vec!["default.flowengine".into()]
    }
    async fn pauses(&self) -> Result<Vec<(String, Option<Pause>)>> {
        Ok(vec![("default.flowengine".into(), None)])
    }
    async fn pause(&self, deployment: Option<&str>, reason: &str, by: &str) -> Result<String> {
        self.calls.lock().unwrap().push(match deployment {
            Some(d) => format!("pause {reason} {by} in {d}"),
            None => format!("pause {reason} {by}"),
        });
        Ok("default.flowengine".into())
    }
    async fn resume(&self, deployment: Option<&str>, by: &str) -> Result<String> {
        self.calls.lock().unwrap().push(match deployment {
            Some(d) => format!("resume {by} in {d}"),
            None => format!("resume {by}"),
        });
        Ok("default.flowengine".into())
    }
    async fn approve(&self, incident: &str, action: &str, by: &str) -> Result<String> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("approve {incident} {action} {by}"));
        Ok("approved".into())
    }
    async fn deny(&self, incident: &str, action: &str, reason: &str, by: &str) -> Result<String> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("deny {incident} {action} {reason} {by}"));
        Ok("denied".into())
    }
    async fn incidents(&self, _open: bool, _limit: usize) -> Result<Vec<IncidentLine>> {
        Ok(vec![IncidentLine::of(&IncidentListing::of(record()))])
    }
    async fn incident(&self, key: &str) -> Result<IncidentView> {
        if key != KEY {
            return Err(Error::not_found(format!("no incident {key:?}")));
        }
        Ok(IncidentView::from_record(&record(), &[], Utc::now()))
    }
}

struct App {
    router: axum::Router,
    control: Arc<Fake>,
}

fn app() -> App {
    let mut opts = ServerOptions::new(SecretString::from(WEBHOOK), SecretString::from(CONTROL));
    opts.read_token = Some(SecretString::from(READ));
    let control = Arc::new(Fake::default());
    let router = router(
        opts,
        Wake::new(),
        Arc::new(Metrics::new(Mode::Act)),
        control.clone(),
        Health::new(std::time::Duration::from_secs(60)),
    );
    App { router, control }
}

struct Res {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn call(app: &App, req: Request<Body>) -> Res {
    let res = app.router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Res {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).unwrap()
}

fn form(path: &str, cookie: Option<&str>, fields: &[(&str, &str)]) -> Request<Body> {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", url_encode(v)))
        .collect();
    let mut b = Request::post(path).header("content-type", "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::from(body.join("&"))).unwrap()
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Signs in; returns the cookie to send back and the session's CSRF token (read off a page).
async fn sign_in(app: &App, token: &str) -> (String, String) {
    let r = call(
        app,
        form("/login", None, &[("name", "ana"), ("token", token)]),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let set = r.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = call(app, get("/", Some(&cookie))).await;
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    (cookie, csrf)
}

#[tokio::test]
async fn viewing_needs_a_session_or_a_viewing_token() {
    let a = app();
    let r = call(&a, get("/", None)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers[header::LOCATION], "/login");
    let r = call(
        &a,
        get(&format!("/incidents/{KEY}"), Some("flowfail_session=0000")),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "a made-up session");
    // A name the record could not take (invisible characters, too long) is refused at sign-in.
    for name in ["\u{202e}ana", "", &"n".repeat(93)] {
        let r = call(
            &a,
            form("/login", None, &[("name", name), ("token", CONTROL)]),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name:?}");
    }
    // A sign-in form over 4 KiB is refused before it is read.
    let big = "x".repeat(8192);
    let r = call(
        &a,
        form("/login", None, &[("name", "ana"), ("token", &big)]),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    for bad in [WEBHOOK, "nope"] {
        let r = call(&a, form("/login", None, &[("name", "ana"), ("token", bad)])).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad}");
        assert!(!r.headers.contains_key(header::SET_COOKIE));
    }
    let bearer = Request::get("/")
        .header(header::AUTHORIZATION, format!("Bearer {READ}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&a, bearer).await.status, StatusCode::OK);
    let (cookie, _) = sign_in(&a, READ).await;
    let r = call(&a, get("/", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains(&format!("href=\"/incidents/{KEY}\"")),
        "{}",
        r.body
    );
    let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let r = call(
        &a,
        get("/incidents/flowengine-19990101T0000Z", Some(&cookie)),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_incident_page_renders_hostile_text_inert() {
    let a = app();
    let (cookie, _) = sign_in(&a, CONTROL).await;
    let r = call(&a, get(&format!("/incidents/{KEY}"), Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let b = &r.body;
    assert!(!b.contains("<script") && !b.contains("<img"), "{b}");
    assert!(b.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{b}");
    assert!(
        b.contains("<svg id=\"chart\"") && b.contains("<polyline"),
        "{b}"
    );
    assert_eq!(
        b.matches("class=\"firing\"").count(),
        2,
        "two points, both firing"
    );
    assert!(
        b.contains("id=\"approve-rollback\"") && b.contains("id=\"deny-rollback\""),
        "{b}"
    );
    assert!(
        b.contains("id=\"timeline\"") && b.contains("id=\"why-not\""),
        "{b}"
    );
}

#[tokio::test]
async fn buttons_need_a_control_session_and_its_csrf_token() {
    let a = app();
    let approve = |cookie: &str, csrf: &str| {
        form(
            "/console/approve",
            Some(cookie),
            &[("csrf", csrf), ("incident", KEY), ("action", "rollback")],
        )
    };
    // A read session sees no button and cannot press one.
    let (read, read_csrf) = sign_in(&a, READ).await;
    let page = call(&a, get(&format!("/incidents/{KEY}"), Some(&read))).await;
    assert!(!page.body.contains("id=\"approve-rollback\""));
    assert_eq!(
        call(&a, approve(&read, &read_csrf)).await.status,
        StatusCode::FORBIDDEN
    );
    // A control session without the right CSRF token: refused.
    let (ctl, csrf) = sign_in(&a, CONTROL).await;
    assert_eq!(
        call(&a, approve(&ctl, "")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&a, approve(&ctl, &read_csrf)).await.status,
        StatusCode::FORBIDDEN
    );
    // No session at all.
    assert_eq!(
        call(&a, approve("x=1", &csrf)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(a.control.calls.lock().unwrap().is_empty());
    // The right one: done, under the name given at sign-in, back to the incident.
    let r = call(&a, approve(&ctl, &csrf)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.headers[header::LOCATION], format!("/incidents/{KEY}"));
    let r = call(
        &a,
        form(
            "/console/deny",
            Some(&ctl),
            &[
                ("csrf", &csrf),
                ("incident", KEY),
                ("action", "prune_context"),
                ("reason", "evidence"),
            ],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = call(
        &a,
        form(
            "/console/pause",
            Some(&ctl),
            &[
                ("csrf", &csrf),
                ("reason", "freeze"),
                ("back", "//evil.example/"),
            ],
        ),
    )
    .await;
    assert_eq!(r.headers[header::LOCATION], "/", "an open redirect");
    assert_eq!(
        *a.control.calls.lock().unwrap(),
        [
            format!("approve {KEY} rollback console:ana"),
            format!("deny {KEY} prune_context evidence console:ana"),
            "pause freeze console:ana".to_owned(),
        ]
    );
    // A cross-site sign-out (no CSRF token) changes nothing.
    let r = call(&a, form("/logout", Some(&ctl), &[("csrf", "")])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!r.headers.contains_key(header::SET_COOKIE));
    assert_eq!(call(&a, get("/", Some(&ctl))).await.status, StatusCode::OK);
    // Signed out, the cookie opens nothing.
    let r = call(&a, form("/logout", Some(&ctl), &[("csrf", &csrf)])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        call(&a, get("/", Some(&ctl))).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn deny_over_http_needs_the_control_token() {
    let a = app();
    let body =
        serde_json::json!({"incident": KEY, "action": "rollback", "reason": "no", "by": "ops"})
            .to_string();
    let req = |auth: Option<String>| {
        let mut b = Request::post("/deny").header("content-type", "application/json");
        if let Some(t) = auth {
            b = b.header(header::AUTHORIZATION, t);
        }
        b.body(Body::from(body.clone())).unwrap()
    };
    for bad in [
        None,
        Some(format!("Bearer {WEBHOOK}")),
        Some(format!("Bearer {READ}")),
    ] {
        assert_eq!(call(&a, req(bad)).await.status, StatusCode::UNAUTHORIZED);
    }
    let r = call(&a, req(Some(format!("Bearer {CONTROL}")))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        *a.control.calls.lock().unwrap(),
        [format!("deny {KEY} rollback no http:ops")]
    );
}

/// P11's size bound: the incident page of a 250-task incident with 2 hours of passes (the
/// record the responder writes) stays under 300 KB. Its time is measured by
/// `cargo bench -p flowfail-service --bench console`.
#[test]
fn the_page_of_a_long_incident_stays_under_300_kb() {
    use chrono::TimeZone;
    let t0 = Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap();
    let rec =
        flowfail_testkit::ledger::long_incident(250, chrono::TimeDelta::hours(2), t0).unwrap();
    let view = IncidentView::from_record(&rec, &[], t0 + chrono::TimeDelta::hours(2));
    assert_eq!(view.report.actions.len(), 250 + 250 + 2 * (250 / 3));
    assert!(view.rates.len() >= 120, "{} points", view.rates.len());
    let viewer = flowfail_service::serve::console::pages::Viewer {
        control: true,
        csrf: "0".repeat(64),
        by: "t".into(),
    };
    let page = flowfail_service::serve::console::pages::incident_page(&view, &[], &viewer);
    assert!(page.len() <= 300_000, "{} bytes", page.len());
    assert!(
        page.contains("t-00249"),
        "the grouped timeline names the tasks"
    );
}

/// With several Deployments, the index says whose each incident is and has a banner per
/// Deployment, each of whose buttons names its Deployment; a hostile scope is escaped.
#[test]
fn several_deployments_have_a_banner_each_and_a_column() {
    use flowfail_service::serve::console::pages::{Viewer, index_page};
    let viewer = Viewer {
        control: true,
        csrf: "0".repeat(64),
        by: "t".into(),
    };
    let lines = vec![IncidentLine::of(&IncidentListing::of(record()))];
    let pauses = vec![
        ("default.flowengine".to_owned(), None),
        (
            "staging.<b>flowengine".to_owned(),
            Some(Pause::new("freeze", "sre", Utc::now())),
        ),
    ];
    let page = index_page(&lines, &pauses, &viewer);
    assert!(page.contains("<th>deployment</th>"), "{page}");
    // The fixture's incident is kept under the scope `flowengine`.
    assert!(
        page.contains("<td class=\"deployment\">flowengine</td>"),
        "{page}"
    );
    assert!(page.contains("id=\"pause-button-1\""), "{page}");
    assert!(page.contains("id=\"resume-2\""), "{page}");
    assert!(
        page.contains("name=\"deployment\" value=\"default.flowengine\""),
        "{page}"
    );
    assert!(page.contains("staging.&lt;b&gt;flowengine"), "{page}");
    assert!(!page.contains("staging.<b>"), "{page}");
    // One Deployment: the ids and the look of a single banner, no column.
    let one = index_page(&lines, &pauses[..1], &viewer);
    assert!(!one.contains("<th>deployment</th>"));
    assert!(one.contains("id=\"pause-button\""), "{one}");
}
