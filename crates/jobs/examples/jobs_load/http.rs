//! The HTTP client and the few API calls the generator makes; every error
//! names the URL and, for an unexpected status, the server's answer.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use crate::args::Error;

/// A client for one server: keeps connections open (a producer reuses them).
#[derive(Clone)]
pub(crate) struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    pub(crate) fn new(base: &str) -> Result<Self, Error> {
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1024)
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// POSTs a JSON body and expects 201; returns the answer.
    pub(crate) async fn post(&self, path: &str, body: Bytes) -> Result<Value, Error> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        Self::answer("POST", &url, resp, 201).await
    }

    /// GETs a JSON document and expects 200.
    pub(crate) async fn get(&self, path: &str) -> Result<Value, Error> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        Self::answer("GET", &url, resp, 200).await
    }

    /// Waits until `GET /healthz` answers 200, polling every 2 ms.
    pub(crate) async fn wait_healthy(&self, timeout: Duration) -> Result<(), Error> {
        let url = format!("{}/healthz", self.base);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(r) = self.client.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("GET {url}: no 200 within {timeout:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn answer(
        method: &str,
        url: &str,
        resp: reqwest::Response,
        want: u16,
    ) -> Result<Value, Error> {
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("{method} {url}: reading the answer: {e}"))?;
        if status != want {
            let text = String::from_utf8_lossy(&body);
            let text: String = text.chars().take(400).collect();
            return Err(
                format!("{method} {url}: status {status} (expected {want}): {text}").into(),
            );
        }
        serde_json::from_slice(&body)
            .map_err(|e| format!("{method} {url}: answer is not JSON: {e}").into())
    }
}

/// A `POST /v1/batches` body of `n` jobs of one kind and args, built once and reused.
pub(crate) fn batch_body(n: usize, kind: &str, args: &str, queue: Option<&str>) -> Bytes {
    let job = match queue {
        Some(q) => format!(r#"{{"kind":"{kind}","args":{args},"queue":"{q}"}}"#),
        None => format!(r#"{{"kind":"{kind}","args":{args}}}"#),
    };
    let mut s = String::with_capacity(16 + n * (job.len() + 1));
    s.push_str(r#"{"jobs":["#);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&job);
    }
    s.push_str("]}");
    Bytes::from(s)
}

/// A job's or batch's timestamp field (ms since the epoch), if set.
pub(crate) fn ms(v: &Value, field: &str) -> Option<i64> {
    v.get(field).and_then(Value::as_i64)
}
