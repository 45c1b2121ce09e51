//! A small WebDriver client (the W3C protocol over HTTP) for the console's browser test:
//! ChromeDriver started on a free port, headless Chromium, and the few commands the test uses.
//! Skips (returns `None`) when ChromeDriver is not installed, unless
//! `FLOWFAIL_BROWSER_REQUIRED=1` (CI), where that is a failure.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key of an element reference in WebDriver's JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// ChromeDriver, running; stopped on drop.
pub(crate) struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser session.
pub(crate) struct Browser<'a> {
    driver: &'a Driver,
    id: String,
}

impl Driver {
    /// ChromeDriver on a free port, once it answers; `None` (a visible skip) when it is not
    /// installed and the browser is not required.
    pub(crate) async fn start() -> Option<Driver> {
        let required = std::env::var("FLOWFAIL_BROWSER_REQUIRED").is_ok_and(|v| v == "1");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = match Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    !required,
                    "FLOWFAIL_BROWSER_REQUIRED=1 but chromedriver does not start: {e}"
                );
                eprintln!("skipping the browser test: chromedriver does not start ({e})");
                return None;
            }
        };
        let d = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(r) = d.http.get(format!("{}/status", d.base)).send().await
                && r.status().is_success()
            {
                return Some(d);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not answer within 20 s");
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.expect("chromedriver answers");
        let bytes = r.bytes().await.expect("chromedriver's answer");
        serde_json::from_slice(&bytes).expect("chromedriver's JSON")
    }

    /// A headless Chromium session (Debian's, at /usr/bin/chromium when there).
    pub(crate) async fn browser(&self) -> Browser<'_> {
        let mut opts = json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--window-size=1280,1800"]});
        if std::path::Path::new("/usr/bin/chromium").exists() {
            opts["binary"] = json!("/usr/bin/chromium");
        }
        let v = self
            .call(
                reqwest::Method::POST,
                "/session",
                Some(
                    json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
                    "goog:chromeOptions": opts}}}),
                ),
            )
            .await;
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        Browser { driver: self, id }
    }
}

impl Browser<'_> {
    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.driver
            .call(method, &format!("/session/{}{path}", self.id), body)
            .await
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// The page's HTML, as the browser holds it.
    pub(crate) async fn source(&self) -> String {
        let v = self.cmd(reqwest::Method::GET, "/source", None).await;
        v["value"].as_str().unwrap_or_default().to_owned()
    }

    pub(crate) async fn url(&self) -> String {
        let v = self.cmd(reqwest::Method::GET, "/url", None).await;
        v["value"].as_str().unwrap_or_default().to_owned()
    }

    /// The elements matching a CSS selector.
    pub(crate) async fn find_all(&self, css: &str) -> Vec<String> {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT].as_str().map(str::to_owned))
            .collect()
    }

    /// The first element matching a CSS selector, waiting up to 10 s for it (a click that
    /// navigates returns before the next page is there).
    pub(crate) async fn wait_for(&self, css: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(e) = self.find_all(css).await.into_iter().next() {
                return e;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no element {css} within 10 s: {}",
                self.source().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The one element matching a CSS selector (panics when there is none).
    pub(crate) async fn find(&self, css: &str) -> String {
        self.find_all(css)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element {css}"))
    }

    pub(crate) async fn text(&self, element: &str) -> String {
        let v = self
            .cmd(
                reqwest::Method::GET,
                &format!("/element/{element}/text"),
                None,
            )
            .await;
        v["value"].as_str().unwrap_or_default().to_owned()
    }

    pub(crate) async fn type_into(&self, element: &str, text: &str) {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub(crate) async fn click(&self, element: &str) {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Whether an alert (a dialog a script opened) is showing.
    pub(crate) async fn alert_open(&self) -> bool {
        let v = self.cmd(reqwest::Method::GET, "/alert/text", None).await;
        v["value"].get("error").is_none()
    }

    /// A PNG of the viewport.
    pub(crate) async fn screenshot(&self) -> Vec<u8> {
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        base64_decode(v["value"].as_str().unwrap_or_default())
    }

    pub(crate) async fn quit(self) {
        self.cmd(reqwest::Method::DELETE, "", None).await;
    }
}

/// Standard base64 (WebDriver's screenshots), padding and whitespace ignored.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("aGVsbG8gd29ybGQ="), b"hello world");
    assert_eq!(base64_decode("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
}
