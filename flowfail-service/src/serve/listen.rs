//! The accept loop: HTTP/1 only, through hyper directly, so every connection has bounds —
//! headers within [`HEADER_READ_TIMEOUT`] and [`MAX_HEADER_BYTES`], an idle keep-alive
//! connection closed after the same timeout, at most [`MAX_CONNECTIONS`] open, TLS when
//! configured, and a graceful stop.
//!
//! **At the cap, the oldest idle connection goes, not the new one.** A connection that has not
//! yet sent a whole request is the first to be closed when one more arrives (the oldest of
//! those first; then the oldest of all): a client holding connections open without sending
//! (slowloris) cannot keep a webhook out, since the webhook's connection sends its request at
//! once and its older, silent neighbours are closed for it. Each closing is counted in
//! `flowfail_requests_refused_total{reason="evicted"}`.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use flowfail_core::{Error, Result};

use crate::metrics::Metrics;

/// Open connections at most; at the cap, one more closes the oldest silent one.
pub const MAX_CONNECTIONS: usize = 512;
/// How long a client has to send a request's headers, and how long an idle keep-alive
/// connection stays open.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The most a connection buffers while reading headers (hyper answers 431 past it).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// TLS on the listener: a certificate chain and its key, PEM (e.g. a mounted Secret).
#[derive(Clone)]
pub struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// The chain from `cert` and the key from its PEM text. Errors name the file or the key,
    /// never their contents.
    pub fn from_pem(cert: &Path, key_pem: &str) -> Result<Tls> {
        let bad = |why: String| {
            Error::invalid_input(format!("server.tls.cert_file: {}: {why}", cert.display()))
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| bad(e.to_string()))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if chain.is_empty() {
            return Err(bad("no certificate in the file".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|_| Error::invalid_input("server.tls.key_file: not a PEM private key"))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::invalid_input(format!("server.tls: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| Error::invalid_input(format!("server.tls: {e}")))?;
        let mut config = config;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }
}

/// Whether the supervisor is alive: when it last completed a pass, and how long a silence
/// `/healthz` tolerates (a few poll intervals). Cloned into the supervisor's pass callback.
#[derive(Debug, Clone)]
pub struct Health {
    /// When each supervisor last completed a pass.
    last: Arc<Mutex<Vec<tokio::time::Instant>>>,
    /// This handle's supervisor in `last`.
    slot: usize,
    tolerance: Duration,
}

impl Health {
    /// Healthy until `tolerance` passes without a completed pass (counted from now).
    pub fn new(tolerance: Duration) -> Self {
        Health {
            last: Arc::new(Mutex::new(vec![tokio::time::Instant::now()])),
            slot: 0,
            tolerance,
        }
    }

    /// A handle for one more supervisor (a process watching several Deployments): `/healthz`
    /// is healthy only while every supervisor completes passes.
    pub fn another(&self) -> Health {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.push(tokio::time::Instant::now());
        Health {
            last: Arc::clone(&self.last),
            slot: last.len() - 1,
            tolerance: self.tolerance,
        }
    }

    /// A pass of this handle's supervisor completed.
    pub fn pass_done(&self) {
        if let Some(at) = self
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(self.slot)
        {
            *at = tokio::time::Instant::now();
        }
    }

    /// `None` while healthy; how long since the oldest last completed pass otherwise.
    pub fn stale_for(&self) -> Option<Duration> {
        let since = self
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(tokio::time::Instant::elapsed)
            .max()
            .unwrap_or_default();
        (since > self.tolerance).then_some(since)
    }
}

/// The open connections, by age: those that have not sent a whole request yet (`silent`) and
/// the others, each with the switch that closes it.
#[derive(Default)]
struct Conns {
    next: u64,
    silent: std::collections::BTreeMap<u64, CancellationToken>,
    served: std::collections::BTreeMap<u64, CancellationToken>,
}

impl Conns {
    /// Room for one more: the oldest silent connection (or, if none, the oldest) is closed
    /// when the table is full. Returns the new connection's id and switch, and whether one was
    /// closed for it.
    fn admit(&mut self) -> (u64, CancellationToken, bool) {
        let mut evicted = false;
        if self.silent.len() + self.served.len() >= MAX_CONNECTIONS {
            let oldest = self.silent.pop_first().or_else(|| self.served.pop_first());
            if let Some((_, close)) = oldest {
                close.cancel();
                evicted = true;
            }
        }
        let id = self.next;
        self.next += 1;
        let close = CancellationToken::new();
        self.silent.insert(id, close.clone());
        (id, close, evicted)
    }

    /// The connection sent a whole request.
    fn served(&mut self, id: u64) {
        if let Some(close) = self.silent.remove(&id) {
            self.served.insert(id, close);
        }
    }

    /// The connection ended.
    fn gone(&mut self, id: u64) {
        self.silent.remove(&id);
        self.served.remove(&id);
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets the requests in
/// progress finish (the caller bounds how long it waits). See the [module docs](self).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()>,
    tls: Option<Tls>,
    metrics: Arc<Metrics>,
) -> Result<()> {
    let table = Arc::new(Mutex::new(Conns::default()));
    let tasks = TaskTracker::new();
    let stop = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a reset before accept: wait a little, never spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (id, close, evicted) = lock(&table).admit();
        if evicted {
            metrics.refused("*", "evicted");
        }
        let _ = stream.set_nodelay(true);
        let service = {
            let (table, router) = (Arc::clone(&table), router.clone());
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                lock(&table).served(id);
                let mut router = router.clone();
                async move {
                    use tower::Service;
                    router.call(req.map(axum::body::Body::new)).await
                }
            })
        };
        let (tls, stop, table) = (tls.clone(), stop.clone(), Arc::clone(&table));
        tasks.spawn(async move {
            match tls {
                None => connection(stream, service, stop, close).await,
                Some(t) => {
                    let accepted =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, t.acceptor.accept(stream));
                    if let Ok(Ok(s)) = accepted.await {
                        connection(s, service, stop, close).await;
                    }
                }
            }
            lock(&table).gone(id);
        });
    }
    drop(listener);
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One HTTP/1 connection, bounded as the [module docs](self) say, until it ends, `close`
/// (evicted: dropped at once) or `stop` (the request in progress finishes, then it closes).
async fn connection<I, S>(io: I, service: S, stop: CancellationToken, close: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended");
            }
        }
        () = close.cancelled() => {}
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
