//! The web console on the listener: what flowfail did and would have done, read from the
//! ledger, and the operator's buttons.
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /login`, `POST /login` | anyone, with a token | sign in: your name and the read or control token; a session cookie (HttpOnly, SameSite=Strict, Secure over TLS) for 12 h |
//! | `POST /logout` | a session | sign out |
//! | `GET /` | a session, or the read / control token as a bearer | incidents, newest first: mode, status, MTTR, actions, root cause; the pause state |
//! | `GET /incidents/KEY` | same | the record: summary, the failure rate as a chart, pending approvals, the grouped timeline, why not, decisions |
//! | `POST /console/approve`, `/console/deny`, `/console/pause`, `/console/resume` | a control session, with its CSRF token | the buttons |
//!
//! The pages are rendered on the server ([`pages`]): no script, no external resource. Every
//! response carries a Content-Security-Policy that allows no script at all, and every piece
//! of text from outside is escaped. Viewing needs the read token (or the control token); the
//! buttons need a session signed in with the control token, and every form carries the
//! session's CSRF token. What a button did is recorded in the ledger under the name given at
//! sign-in (`console:NAME`).

use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::Digest;
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use flowfail_core::ErrorKind;

use super::AppState;

mod chart;
pub mod pages;
mod session;

pub(super) use session::Sessions;
use session::{Role, Session};

/// The console's routes (merged into the listener's router).
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/incidents/{key}", get(incident))
        .route(
            "/login",
            get(login_form)
                .post(login)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_LOGIN_BYTES)),
        )
        .route("/logout", post(logout))
        .route("/console/approve", post(approve))
        .route("/console/deny", post(deny))
        .route("/console/pause", post(pause))
        .route("/console/resume", post(resume))
}

/// The incidents the index lists at most.
const INDEX_LIMIT: usize = 200;
/// The longest name a console session signs in with: `console:NAME` stays within an
/// operator's name ([`flowfail_core::control::MAX_BY_CHARS`]).
const MAX_NAME_CHARS: usize = flowfail_core::control::MAX_BY_CHARS - "console:".len();
/// The largest sign-in form: a name and a token.
const MAX_LOGIN_BYTES: usize = 4096;
/// Console pages reading the ledger at once: the supervisor's connections come first.
pub(super) const LEDGER_READS: usize = 2;
/// How long a page waits for its turn to read the ledger.
const READ_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Headers of every console page: no script, no frame, nothing cached, no referrer.
fn page(code: StatusCode, html: String) -> Response {
    let mut r = (code, Html(html)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn see_other(to: &str, cookie: Option<String>) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

fn token_is(given: &str, want: &secrecy::SecretString) -> bool {
    let a = sha2::Sha256::digest(given.as_bytes());
    let b = sha2::Sha256::digest(want.expose_secret().as_bytes());
    a.as_slice().ct_eq(b.as_slice()).into()
}

/// The role a token gives: the control token, or the read token when one is set.
fn role_of(s: &AppState, token: &str) -> Option<Role> {
    if token_is(token, &s.opts.control_token) {
        Some(Role::Control)
    } else if s
        .opts
        .read_token
        .as_ref()
        .is_some_and(|r| token_is(token, r))
    {
        Some(Role::Read)
    } else {
        None
    }
}

/// Whether a request to `path` may have its body read: the console's buttons and sign-out only
/// with a live session (checked again, with its CSRF token, once the form is read).
pub(super) fn body_allowed(s: &AppState, path: &str, headers: &HeaderMap) -> bool {
    if path.starts_with("/console/") || path == "/logout" {
        session(s, headers).is_some()
    } else {
        true
    }
}

fn session(s: &AppState, headers: &HeaderMap) -> Option<Session> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    s.sessions.get(session::cookie_id(cookies)?, Instant::now())
}

/// Who is looking: a session, or a bearer token (read or control; no forms without a
/// session). `None`: sign in first.
fn viewer(s: &AppState, headers: &HeaderMap) -> Option<pages::Viewer> {
    if let Some(se) = session(s, headers) {
        return Some(pages::Viewer {
            control: se.role == Role::Control,
            csrf: se.csrf,
            by: se.by,
        });
    }
    let bearer = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    role_of(s, bearer).map(|role| pages::Viewer {
        control: false,
        csrf: String::new(),
        by: if role == Role::Control {
            "control token".into()
        } else {
            "read token".into()
        },
    })
}

/// A ledger error as a page: unknown is 404, bad input 400, the rest 503.
fn failed(e: &flowfail_core::Error) -> Response {
    let code = match e.kind() {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::Refused | ErrorKind::Conflict => StatusCode::CONFLICT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    page(code, pages::message_page("flowfail", &e.to_string()))
}

/// A turn to read the ledger (at most [`LEDGER_READS`] pages at once), within [`READ_WAIT`].
async fn reading_turn(s: &AppState) -> Option<tokio::sync::SemaphorePermit<'_>> {
    tokio::time::timeout(READ_WAIT, s.console_reads.acquire())
        .await
        .ok()?
        .ok()
}

fn busy() -> Response {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::message_page("flowfail: busy", "The ledger is busy; reload in a moment."),
    )
}

async fn index(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let Some(v) = viewer(&s, &headers) else {
        return see_other("/login", None);
    };
    let Some(_turn) = reading_turn(&s).await else {
        return busy();
    };
    let lines = match s.control.incidents(false, INDEX_LIMIT).await {
        Ok(l) => l,
        Err(e) => return failed(&e),
    };
    let pauses = s.control.pauses().await.unwrap_or_default();
    page(StatusCode::OK, pages::index_page(&lines, &pauses, &v))
}

async fn incident(
    State(s): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(v) = viewer(&s, &headers) else {
        return see_other("/login", None);
    };
    let Some(_turn) = reading_turn(&s).await else {
        return busy();
    };
    let view = match s.control.incident(&key).await {
        Ok(view) => view,
        Err(e) => return failed(&e),
    };
    // The banner of the incident's own Deployment.
    let scope = view
        .scope
        .strip_suffix(flowfail_core::history::SHADOW_SUFFIX)
        .unwrap_or(&view.scope);
    let pauses: Vec<_> = s
        .control
        .pauses()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|(d, _)| d == scope)
        .collect();
    page(StatusCode::OK, pages::incident_page(&view, &pauses, &v))
}

async fn login_form() -> Response {
    page(StatusCode::OK, pages::login_page(None))
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    token: String,
}

async fn login(State(s): State<AppState>, Form(f): Form<LoginForm>) -> Response {
    let Some(role) = role_of(&s, &f.token) else {
        super::refuse(
            &s,
            "/login",
            "unauthenticated",
            StatusCode::UNAUTHORIZED,
            String::new(),
        );
        return page(
            StatusCode::UNAUTHORIZED,
            pages::login_page(Some("That token opens nothing here.")),
        );
    };
    // The name goes into the record as `console:NAME`, under the rules every operator's name
    // follows (so each button works for whoever could sign in).
    let name = match flowfail_core::control::operator_text("name", &f.name, MAX_NAME_CHARS) {
        Ok(n) => n,
        Err(e) => {
            return page(
                StatusCode::BAD_REQUEST,
                pages::login_page(Some(&format!(
                    "Give your name (it is recorded with what you approve): {}",
                    e.message()
                ))),
            );
        }
    };
    let Some((id, _)) = s.sessions.open(role, name, Instant::now()) else {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::message_page("flowfail", "no randomness for a session id"),
        );
    };
    see_other("/", Some(session::set_cookie(&id, s.opts.secure_cookies)))
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Some(cookies) = headers.get(header::COOKIE).and_then(|c| c.to_str().ok())
        && let Some(id) = session::cookie_id(cookies)
        && s.sessions
            .get(id, Instant::now())
            .is_some_and(|se| se.csrf_ok(&f.csrf))
    {
        s.sessions.close(id);
        return see_other("/login", Some(session::clear_cookie()));
    }
    // Only the session's own form signs it out: a cross-site POST changes nothing.
    super::refuse(&s, "/logout", "csrf", StatusCode::FORBIDDEN, String::new());
    page(
        StatusCode::FORBIDDEN,
        pages::message_page("flowfail: refused", "Sign out from the console's own page."),
    )
}

/// The control session of a button press, its CSRF token checked; or the refusal.
fn control_session(
    s: &AppState,
    path: &'static str,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Session, Box<Response>> {
    let refused = |reason: &'static str, code: StatusCode, text: &str| {
        super::refuse(s, path, reason, code, String::new());
        Box::new(page(code, pages::message_page("flowfail: refused", text)))
    };
    let Some(se) = session(s, headers) else {
        return Err(refused(
            "unauthenticated",
            StatusCode::UNAUTHORIZED,
            "Sign in first.",
        ));
    };
    if !se.csrf_ok(csrf) {
        return Err(refused(
            "csrf",
            StatusCode::FORBIDDEN,
            "The form's token does not match this session: reload the page and try again.",
        ));
    }
    if se.role != Role::Control {
        return Err(refused(
            "forbidden",
            StatusCode::FORBIDDEN,
            "This needs a session signed in with the control token.",
        ));
    }
    Ok(se)
}

#[derive(Deserialize)]
struct DecideForm {
    csrf: String,
    incident: String,
    action: String,
    #[serde(default)]
    reason: String,
}

fn incident_path(key: &str) -> String {
    format!("/incidents/{}", pages::path_segment(key))
}

async fn approve(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<DecideForm>,
) -> Response {
    let se = match control_session(&s, "/console/approve", &headers, &f.csrf) {
        Ok(se) => se,
        Err(r) => return *r,
    };
    let by = format!("console:{}", se.by);
    match s.control.approve(&f.incident, &f.action, &by).await {
        Ok(_) => see_other(&incident_path(&f.incident), None),
        Err(e) => failed(&e),
    }
}

async fn deny(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<DecideForm>,
) -> Response {
    let se = match control_session(&s, "/console/deny", &headers, &f.csrf) {
        Ok(se) => se,
        Err(r) => return *r,
    };
    let by = format!("console:{}", se.by);
    match s.control.deny(&f.incident, &f.action, &f.reason, &by).await {
        Ok(_) => see_other(&incident_path(&f.incident), None),
        Err(e) => failed(&e),
    }
}

#[derive(Deserialize)]
struct PauseForm {
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    back: String,
    /// The Deployment's scope (empty: the only one).
    #[serde(default)]
    deployment: String,
}

impl PauseForm {
    fn deployment(&self) -> Option<&str> {
        Some(self.deployment.as_str()).filter(|d| !d.is_empty())
    }
}

/// Where a button returns to: the index, or an incident's page of this console (its key as
/// [`pages::path_segment`] writes it); anything else is the index.
fn back_to(back: &str) -> &str {
    let incident = back.strip_prefix("/incidents/").is_some_and(|k| {
        !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'%'))
    });
    if back == "/" || incident { back } else { "/" }
}

async fn pause(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<PauseForm>,
) -> Response {
    let se = match control_session(&s, "/console/pause", &headers, &f.csrf) {
        Ok(se) => se,
        Err(r) => return *r,
    };
    match s
        .control
        .pause(f.deployment(), &f.reason, &format!("console:{}", se.by))
        .await
    {
        Ok(scope) => {
            s.metrics.set_paused(&scope, true);
            see_other(back_to(&f.back), None)
        }
        Err(e) => failed(&e),
    }
}

async fn resume(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<PauseForm>,
) -> Response {
    let se = match control_session(&s, "/console/resume", &headers, &f.csrf) {
        Ok(se) => se,
        Err(r) => return *r,
    };
    match s
        .control
        .resume(f.deployment(), &format!("console:{}", se.by))
        .await
    {
        Ok(scope) => {
            s.metrics.set_paused(&scope, false);
            see_other(back_to(&f.back), None)
        }
        Err(e) => failed(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_stays_on_this_console() {
        assert_eq!(back_to("/incidents/x"), "/incidents/x");
        assert_eq!(back_to("/"), "/");
        assert_eq!(
            back_to("/incidents/flowengine%3Ashadow-1"),
            "/incidents/flowengine%3Ashadow-1"
        );
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "",
            "/\t/evil.example",
            "/incidents/",
            "/incidents/a/../../x",
            "/login",
        ] {
            assert_eq!(back_to(bad), "/", "{bad}");
        }
    }
}
