//! The accept loop over real sockets: HTTP/1 only, headers bounded in time and size, the
//! oldest silent connection closed for a new one at the cap, TLS.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use flowfail_core::respond::Wake;
use flowfail_service::Mode;
use flowfail_service::metrics::Metrics;
use flowfail_service::serve::{self, Health, MAX_CONNECTIONS, ServerOptions, Tls};

struct Served {
    addr: std::net::SocketAddr,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn served(tls: Option<Tls>) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Arc::new(Metrics::new(Mode::Act));
    let router = serve::router(
        ServerOptions::new(
            SecretString::from("a-webhook-token-of-length"),
            SecretString::from("a-control-token-of-length"),
        ),
        Wake::new(),
        Arc::clone(&metrics),
        Arc::new(NoControl),
        Health::new(Duration::from_secs(600)),
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (stop, metrics) = (stop.clone(), Arc::clone(&metrics));
        async move {
            serve::serve(listener, router, stop.cancelled_owned(), tls, metrics)
                .await
                .unwrap();
        }
    });
    Served {
        addr,
        metrics,
        stop,
        task,
    }
}

struct NoControl;

#[async_trait::async_trait]
impl serve::Control for NoControl {
    async fn ready(&self) -> flowfail_core::Result<()> {
        Ok(())
    }
    fn deployments(&self) -> Vec<String> {
        Vec::new()
    }
    async fn pauses(
        &self,
    ) -> flowfail_core::Result<Vec<(String, Option<flowfail_core::control::Pause>)>> {
        Ok(Vec::new())
    }
    async fn pause(&self, _: Option<&str>, _: &str, _: &str) -> flowfail_core::Result<String> {
        Ok(String::new())
    }
    async fn resume(&self, _: Option<&str>, _: &str) -> flowfail_core::Result<String> {
        Ok(String::new())
    }
    async fn approve(&self, _: &str, _: &str, _: &str) -> flowfail_core::Result<String> {
        Ok(String::new())
    }
}

/// Everything the server sends until it closes (or `limit` passes).
async fn answer<S: tokio::io::AsyncRead + Unpin>(s: &mut S, limit: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: flowfail\r\nConnection: close\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_cleartext_is_not_spoken() {
    let s = served(None).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    // An HTTP/2 client with prior knowledge opens with this preface and a SETTINGS frame.
    c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let got = answer(&mut c, Duration::from_secs(10)).await;
    // Answered as HTTP/1 (a 4xx) or closed; never an HTTP/2 SETTINGS frame.
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 4"), "{got:?}");
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(HEALTHZ).await.unwrap();
    assert!(
        answer(&mut c, Duration::from_secs(10))
            .await
            .starts_with("HTTP/1.1 200")
    );
    s.stop.cancel();
    s.task.await.unwrap();
}

/// Headers that do not arrive in time, or do not fit, end the connection; the listener
/// answers others all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_or_huge_headers_end_the_connection() {
    let s = served(None).await;
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    slow.write_all(b"POST /hooks/grafana HTTP/1.1\r\nHost: flowfail\r\n")
        .await
        .unwrap();
    let mut huge = TcpStream::connect(s.addr).await.unwrap();
    let mut head = b"GET /healthz HTTP/1.1\r\nX-Pad: ".to_vec();
    head.resize(64 * 1024, b'a');
    let _ = huge.write_all(&head).await;
    let got = answer(&mut huge, Duration::from_secs(10)).await;
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 431"), "{got:?}");
    let started = std::time::Instant::now();
    let got = answer(&mut slow, Duration::from_secs(15)).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(10),
        "closed after {waited:?}: {got:?}"
    );
    s.stop.cancel();
    s.task.await.unwrap();
}

/// At the cap, a new connection closes the oldest one that has sent nothing: silent clients
/// cannot keep a request out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_make_room_for_a_request() {
    let s = served(None).await;
    let mut silent = Vec::new();
    for _ in 0..MAX_CONNECTIONS + 50 {
        silent.push(TcpStream::connect(s.addr).await.unwrap());
    }
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(HEALTHZ).await.unwrap();
    let got = answer(&mut c, Duration::from_secs(2)).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
    // The oldest silent connection was closed first.
    let got = answer(&mut silent[0], Duration::from_secs(2)).await;
    assert!(got.is_empty(), "{got:?}");
    let m = s.metrics.encode();
    let evicted = m
        .lines()
        .find_map(|l| {
            l.strip_prefix("flowfail_requests_refused_total{path=\"*\",reason=\"evicted\"} ")
        })
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(evicted >= 51, "{m}");
    s.stop.cancel();
    s.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_when_configured() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("flowfail-tls-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert_file = dir.join("tls.crt");
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    let tls = Tls::from_pem(&cert_file, &cert.signing_key.serialize_pem()).unwrap();
    assert!(
        Tls::from_pem(&cert_file, "not a key")
            .unwrap_err()
            .to_string()
            .contains("server.tls.key_file: not a PEM private key")
    );
    let s = served(Some(tls)).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut c = connector.connect(name, tcp).await.unwrap();
    c.write_all(HEALTHZ).await.unwrap();
    let got = answer(&mut c, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
    // Plain HTTP on the TLS port gets nothing.
    let mut plain = TcpStream::connect(s.addr).await.unwrap();
    plain.write_all(HEALTHZ).await.unwrap();
    assert!(
        !answer(&mut plain, Duration::from_secs(7))
            .await
            .contains("200")
    );
    s.stop.cancel();
    s.task.await.unwrap();
}
