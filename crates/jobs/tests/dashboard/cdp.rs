//! A small Chrome DevTools Protocol client: launches headless Chromium,
//! opens a page, evaluates JavaScript in it, and records what the page
//! reported as broken (uncaught exceptions, console errors, CSP refusals).
//!
//! One WebSocket to the browser; the page is attached in flat mode, so its
//! commands travel on the same socket with a `sessionId`. Calls are
//! sequential: a call sends its command and reads messages until its answer
//! arrives, keeping the events it passes on the way.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The Chromium to use: `$SLUICE_TEST_CHROMIUM`, else `chromium` or
/// `chromium-browser` on `PATH`; `None` when there is none (the test skips).
pub(crate) fn chromium_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SLUICE_TEST_CHROMIUM").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        // Set but wrong is a broken CI set-up, not a reason to skip quietly.
        assert!(
            p.is_file(),
            "SLUICE_TEST_CHROMIUM={} is not a file",
            p.display()
        );
        return Some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| [dir.join("chromium"), dir.join("chromium-browser")])
        .find(|p| p.is_file())
}

/// A running headless Chromium, killed when dropped (a panicking test
/// included), with its own throw-away profile directory.
pub(crate) struct Browser {
    child: Child,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Events read while waiting for answers, by session.
    events: Vec<(Option<String>, Value)>,
    /// The last lines Chromium wrote to stderr, for failure reports.
    stderr: Arc<Mutex<VecDeque<String>>>,
    _profile: TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // `kill_on_drop` would do it too; this also covers a leaked future.
        let _ = self.child.start_kill();
    }
}

impl Browser {
    /// Starts Chromium and connects to its DevTools endpoint.
    pub(crate) async fn launch(binary: &std::path::Path) -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new(binary)
            .args([
                "--headless=new",
                "--remote-debugging-port=0",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let ws_url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                remember(&stderr, &line);
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return Some(url.trim().to_owned());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!(
                "Chromium printed no DevTools URL; its stderr:\n{}",
                tail(&stderr)
            )
        });
        // Keep draining stderr: a full pipe would block Chromium.
        let keep = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                remember(&keep, &line);
            }
        });
        let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .unwrap_or_else(|e| panic!("DevTools WebSocket {ws_url}: {e}"));
        Self {
            child,
            ws,
            next_id: 0,
            events: Vec::new(),
            stderr,
            _profile: profile,
        }
    }

    /// Chromium's recent stderr.
    pub(crate) fn stderr_tail(&self) -> String {
        tail(&self.stderr)
    }

    /// Sends a command (to the browser, or to a page's session) and waits
    /// for its answer; a protocol error is an `Err` with its message.
    async fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .map_err(|e| format!("{method}: send: {e}"))?;
        let answer = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(frame) = self.ws.next().await {
                let frame = frame.map_err(|e| format!("{method}: read: {e}"))?;
                let Message::Text(text) = frame else { continue };
                let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                if v["id"].as_u64() == Some(id) {
                    return Ok(v);
                }
                if v.get("method").is_some() {
                    let session = v["sessionId"].as_str().map(str::to_owned);
                    self.events.push((session, v));
                }
            }
            Err(format!("{method}: DevTools connection closed"))
        })
        .await
        .map_err(|_| format!("{method}: no answer in 30 s"))??;
        match answer.get("error") {
            Some(e) => Err(format!("{method}: {e}")),
            None => Ok(answer["result"].clone()),
        }
    }

    /// Opens a new tab at `url` and attaches to it.
    pub(crate) async fn open(&mut self, url: &str) -> Page {
        let target = self
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await
            .expect("create target");
        let target_id = target["targetId"].as_str().expect("targetId").to_owned();
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await
            .expect("attach");
        let session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_owned();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            self.call(Some(&session), domain, json!({}))
                .await
                .expect(domain);
        }
        let page = Page { session };
        let nav = self
            .call(Some(&page.session), "Page.navigate", json!({ "url": url }))
            .await
            .expect("navigate");
        assert!(nav.get("errorText").is_none(), "navigating to {url}: {nav}");
        page
    }

    /// Evaluates `expr` in the page (awaiting a promise) and returns its
    /// value as JSON. An exception is an `Err` with its description.
    pub(crate) async fn eval(&mut self, page: &Page, expr: &str) -> Result<Value, String> {
        let r = self
            .call(
                Some(&page.session),
                "Runtime.evaluate",
                json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(ex) = r.get("exceptionDetails") {
            return Err(format!(
                "`{expr}` threw: {}",
                ex["exception"]["description"]
                    .as_str()
                    .unwrap_or(&ex.to_string())
            ));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Evaluates `expr` every 100 ms until `done` accepts its value; panics
    /// after `deadline` with the page's HTML, the last value and Chromium's
    /// stderr.
    pub(crate) async fn wait_for(
        &mut self,
        page: &Page,
        what: &str,
        expr: &str,
        deadline: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let until = tokio::time::Instant::now() + deadline;
        let mut last = Err("not evaluated".to_owned());
        while tokio::time::Instant::now() < until {
            last = self.eval(page, expr).await;
            if let Ok(v) = &last
                && done(v)
            {
                return v.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let html = self
            .eval(page, "document.documentElement.outerHTML")
            .await
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .unwrap_or_else(|e| e);
        panic!(
            "timed out after {deadline:?} waiting for {what}\nlast value of `{expr}`: {last:?}\n\
             page problems: {:?}\n--- page HTML ---\n{html}\n--- Chromium stderr ---\n{}",
            self.problems(page),
            self.stderr_tail()
        );
    }

    /// What the page reported as broken so far: uncaught exceptions,
    /// `console.error`, and error-level log entries (CSP refusals and failed
    /// loads are among them).
    pub(crate) fn problems(&self, page: &Page) -> Vec<String> {
        self.events
            .iter()
            .filter(|(s, _)| s.as_deref() == Some(page.session.as_str()))
            .filter_map(|(_, e)| {
                let p = &e["params"];
                match e["method"].as_str()? {
                    "Runtime.exceptionThrown" => Some(format!(
                        "exception: {}",
                        p["exceptionDetails"]["exception"]["description"]
                            .as_str()
                            .unwrap_or(&p["exceptionDetails"]["text"].to_string())
                    )),
                    "Runtime.consoleAPICalled" if p["type"] == "error" => {
                        Some(format!("console.error: {}", p["args"]))
                    }
                    "Log.entryAdded" if p["entry"]["level"] == "error" => Some(format!(
                        "log ({}): {} {}",
                        p["entry"]["source"].as_str().unwrap_or("?"),
                        p["entry"]["text"].as_str().unwrap_or("?"),
                        p["entry"]["url"].as_str().unwrap_or("")
                    )),
                    _ => None,
                }
            })
            .collect()
    }
}

/// An attached tab.
pub(crate) struct Page {
    session: String,
}

fn remember(lines: &Mutex<VecDeque<String>>, line: &str) {
    let mut lines = lines.lock().unwrap_or_else(|e| e.into_inner());
    if lines.len() == 50 {
        lines.pop_front();
    }
    lines.push_back(line.to_owned());
}

fn tail(lines: &Mutex<VecDeque<String>>) -> String {
    let lines = lines.lock().unwrap_or_else(|e| e.into_inner());
    lines.iter().cloned().collect::<Vec<_>>().join("\n")
}
