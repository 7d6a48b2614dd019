//! The CLI's HTTP client for a running jobs server: one place for the base
//! URL, the bearer token, and turning the server's JSON errors into
//! messages that say what went wrong and where.

use anyhow::{Context, anyhow};
use clap::Args;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Where the jobs API is, for the commands that talk to it.
#[derive(Clone, Debug, Args)]
pub(crate) struct RemoteArgs {
    /// Base URL of the jobs API (`sluice up` and `sluice server` both listen
    /// on 127.0.0.1:8080 by default).
    #[arg(long, env = "SLUICE_SERVER", default_value = DEFAULT_SERVER)]
    pub(crate) server: String,
    /// Bearer token, when the server requires one.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

/// Where `sluice up` and `sluice server` listen unless told otherwise.
pub(crate) const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// A failed call: the status (if the server answered) and a message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct RemoteError {
    pub(crate) status: Option<StatusCode>,
    pub(crate) message: String,
}

/// A client bound to one server.
#[derive(Clone, Debug)]
pub(crate) struct Remote {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Remote {
    pub(crate) fn new(args: &RemoteArgs) -> anyhow::Result<Self> {
        let base = args.server.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base).with_context(|| format!("--server `{base}` is not a URL"))?;
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base,
            token: args.token.clone(),
            http,
        })
    }

    /// The full URL of an API path.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with auth set.
    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, self.url(path));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Sends and decodes a JSON answer; a non-2xx answer becomes a
    /// [`RemoteError`] carrying the server's message and problems.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        req: RequestBuilder,
    ) -> Result<T, RemoteError> {
        let resp = req.send().await.map_err(|e| RemoteError {
            status: None,
            message: format!("cannot reach the jobs API at {}: {e}", self.base),
        })?;
        let status = resp.status();
        let url = resp.url().to_string();
        let body = resp.bytes().await.map_err(|e| RemoteError {
            status: Some(status),
            message: format!("{url}: reading the answer: {e}"),
        })?;
        if !status.is_success() {
            return Err(RemoteError {
                status: Some(status),
                message: error_message(status, &url, &body),
            });
        }
        serde_json::from_slice(&body).map_err(|e| RemoteError {
            status: Some(status),
            message: format!("{url}: unexpected answer: {e}"),
        })
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, RemoteError> {
        self.call(self.request(Method::GET, path)).await
    }
}

/// `{"error": {"code", "message", "problems": [{index, field, message}]}}`
/// as lines a person reads; anything else as the status and body.
fn error_message(status: StatusCode, url: &str, body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        let text = String::from_utf8_lossy(body);
        return format!("{url}: {status}: {}", text.trim());
    };
    let err = v.get("error").unwrap_or(&v);
    let mut out = format!(
        "{status}: {}",
        err.get("message")
            .and_then(Value::as_str)
            .unwrap_or("request refused")
    );
    if let Some(problems) = err.get("problems").and_then(Value::as_array) {
        for p in problems {
            let at = match (p.get("index").and_then(Value::as_u64), p.get("field")) {
                (Some(i), Some(Value::String(f))) => format!("jobs[{i}].{f}"),
                (Some(i), _) => format!("jobs[{i}]"),
                (None, Some(Value::String(f))) => f.clone(),
                _ => String::new(),
            };
            let msg = p.get("message").and_then(Value::as_str).unwrap_or("");
            out.push_str(&format!("\n  {at}: {msg}"));
        }
    }
    out
}

/// Turns a [`RemoteError`] into an `anyhow` error with context.
pub(crate) fn context(e: RemoteError, what: &str) -> anyhow::Error {
    anyhow!("{what}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_listed_with_job_index_and_field() {
        let body = br#"{"error":{"code":"invalid","message":"invalid batch","problems":[
            {"index":3,"field":"args.ms","message":"expected an integer"},
            {"index":0,"message":"unknown kind `nope`"}]}}"#;
        let m = error_message(StatusCode::UNPROCESSABLE_ENTITY, "u", body);
        assert!(
            m.starts_with("422 Unprocessable Entity: invalid batch"),
            "{m}"
        );
        assert!(
            m.contains("\n  jobs[3].args.ms: expected an integer"),
            "{m}"
        );
        assert!(m.contains("\n  jobs[0]: unknown kind `nope`"), "{m}");
    }

    #[test]
    fn a_non_json_answer_keeps_url_and_status() {
        let m = error_message(StatusCode::BAD_GATEWAY, "http://x/v1", b"upstream down\n");
        assert_eq!(m, "http://x/v1: 502 Bad Gateway: upstream down");
    }
}
