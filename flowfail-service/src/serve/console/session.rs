//! The console's sessions: a browser signs in once with a token and gets a random session id
//! in an HttpOnly, SameSite=Strict cookie; the session knows its role (read or control), who
//! signed in, and its CSRF token, which every form carries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sha2::Digest;
use subtle::ConstantTimeEq;
use tokio::time::Instant;

/// The cookie's name.
pub(super) const COOKIE: &str = "flowfail_session";
/// How long a session lasts.
pub(super) const TTL: Duration = Duration::from_secs(12 * 3600);
/// The most sessions kept; signing in past it ends the oldest.
const MAX_SESSIONS: usize = 1024;

/// What a session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// View incidents (the read token).
    Read,
    /// View, approve, deny, pause and resume (the control token).
    Control,
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) role: Role,
    /// Who signed in (as they named themselves; recorded with their approvals).
    pub(crate) by: String,
    /// The token every form of this session carries.
    pub(crate) csrf: String,
    expires: Instant,
}

impl Session {
    /// Whether `given` is this session's CSRF token (constant time).
    pub(crate) fn csrf_ok(&self, given: &str) -> bool {
        let a = sha2::Sha256::digest(given.as_bytes());
        let b = sha2::Sha256::digest(self.csrf.as_bytes());
        a.as_slice().ct_eq(b.as_slice()).into()
    }
}

/// The sessions, by the digest of their id (a lookup never compares the id itself).
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_id: Mutex<HashMap<[u8; 32], Session>>,
}

/// 32 random bytes, hex: a session id or a CSRF token. `None` when the OS has no randomness.
fn random_hex() -> Option<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn digest(id: &str) -> [u8; 32] {
    sha2::Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// A new session: its id (for the cookie) and the session.
    pub(crate) fn open(&self, role: Role, by: String, now: Instant) -> Option<(String, Session)> {
        let id = random_hex()?;
        let s = Session {
            role,
            by,
            csrf: random_hex()?,
            expires: now + TTL,
        };
        let mut all = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|_, s| s.expires > now);
        // At the cap, the oldest read session ends first: signing in with the read token
        // again and again cannot sign the operators out.
        if all.len() >= MAX_SESSIONS
            && let Some(oldest) = all
                .iter()
                .min_by_key(|(_, s)| (s.role == Role::Control, s.expires))
                .map(|(k, _)| *k)
        {
            all.remove(&oldest);
        }
        all.insert(digest(&id), s.clone());
        Some((id, s))
    }

    /// The live session of `id`, if any.
    pub(crate) fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let all = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        all.get(&digest(id)).filter(|s| s.expires > now).cloned()
    }

    /// Ends the session of `id`.
    pub(crate) fn close(&self, id: &str) {
        let mut all = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        all.remove(&digest(id));
    }
}

/// The session id in a `Cookie` header, if any.
pub(super) fn cookie_id(cookies: &str) -> Option<&str> {
    cookies
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value of a session (`Secure` when served over TLS).
pub(super) fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends a session.
pub(super) fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_find_expire_close() {
        let s = Sessions::default();
        let now = Instant::now();
        let (id, sess) = s.open(Role::Control, "ana".into(), now).unwrap();
        assert_eq!(id.len(), 64);
        assert!(s.get(&id, now).is_some());
        assert!(s.get(&id, now + TTL).is_none(), "expired");
        assert!(sess.csrf_ok(&sess.csrf) && !sess.csrf_ok("x"));
        assert_ne!(id, sess.csrf);
        s.close(&id);
        assert!(s.get(&id, now).is_none());
    }

    #[test]
    fn at_most_max_sessions() {
        let s = Sessions::default();
        let now = Instant::now();
        let control = s.open(Role::Control, "ops".into(), now).unwrap().0;
        let first = s.open(Role::Read, "a".into(), now).unwrap().0;
        for i in 1..=MAX_SESSIONS {
            s.open(
                Role::Read,
                "a".into(),
                now + Duration::from_millis(i as u64),
            );
        }
        assert!(
            s.get(&first, now).is_none(),
            "the oldest read session ended"
        );
        assert!(
            s.get(&control, now).is_some(),
            "read sign-ins ended a control session"
        );
        assert_eq!(s.by_id.lock().unwrap().len(), MAX_SESSIONS);
    }

    #[test]
    fn cookies() {
        let id = "a".repeat(64);
        assert_eq!(cookie_id(&format!("x=1; {COOKIE}={id}")), Some(id.as_str()));
        assert_eq!(cookie_id(&format!("{COOKIE}=short")), None);
        assert_eq!(cookie_id(&format!("{COOKIE}={}", "z".repeat(64))), None);
        let c = set_cookie(&id, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
    }
}
