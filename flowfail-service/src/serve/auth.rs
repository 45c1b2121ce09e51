//! Who may call: the bearer tokens (compared in constant time, as digests) and Grafana's HMAC
//! signature (checked in constant time, each signature accepted once).

use axum::http::{HeaderMap, header};
use hmac::{KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Digest;
use subtle::ConstantTimeEq;

use super::{AppState, MAX_SEEN};

pub(super) fn bearer_ok(headers: &HeaderMap, token: &SecretString) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Digests of equal length: the comparison says nothing about the token's length.
    let given = sha2::Sha256::digest(given.as_bytes());
    let want = sha2::Sha256::digest(token.expose_secret().as_bytes());
    given.as_slice().ct_eq(want.as_slice()).into()
}

/// How far Grafana's signed timestamp may be from now.
const HMAC_SKEW_S: u64 = 300;

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    let s = s.strip_prefix("sha256=").unwrap_or(s);
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Grafana's signature: HMAC-SHA256 of `timestamp:body`, the timestamp within five minutes of
/// now, each signature accepted once (a captured request cannot be replayed).
pub(super) fn hmac_ok(
    s: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    secret: &SecretString,
) -> bool {
    let Some(sig) = headers
        .get("x-grafana-alerting-signature")
        .and_then(|v| v.to_str().ok())
        .and_then(hex_decode)
    else {
        return false;
    };
    let Some(ts) = headers.get("x-grafana-alerting-timestamp") else {
        return false;
    };
    let Some(t) = ts.to_str().ok().and_then(|t| t.trim().parse::<i64>().ok()) else {
        return false;
    };
    let now = chrono::Utc::now().timestamp();
    if now.abs_diff(t) > HMAC_SKEW_S {
        return false;
    }
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.expose_secret().as_bytes())
    else {
        return false;
    };
    mac.update(ts.as_bytes());
    mac.update(b":");
    mac.update(body);
    if mac.verify_slice(&sig).is_err() {
        return false;
    }
    let Ok(key) = <[u8; 32]>::try_from(sig.as_slice()) else {
        return false;
    };
    let mut seen = s.seen.lock().unwrap_or_else(|p| p.into_inner());
    seen.retain(|_, at| now.abs_diff(*at) <= HMAC_SKEW_S);
    if seen.len() >= MAX_SEEN || seen.insert(key, t).is_some() {
        return false;
    }
    true
}

/// Whether a request carries Grafana's signature headers, well-formed and fresh: checked before
/// its body is read, so an unauthenticated sender cannot make the listener buffer a body. The
/// signature itself is verified with the body ([`hmac_ok`]).
pub(super) fn signature_headers_ok(headers: &HeaderMap) -> bool {
    let sig = headers
        .get("x-grafana-alerting-signature")
        .and_then(|v| v.to_str().ok())
        .and_then(hex_decode);
    let ts = headers
        .get("x-grafana-alerting-timestamp")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.trim().parse::<i64>().ok());
    match (sig, ts) {
        (Some(sig), Some(t)) => {
            sig.len() == 32 && chrono::Utc::now().timestamp().abs_diff(t) <= HMAC_SKEW_S
        }
        _ => false,
    }
}
