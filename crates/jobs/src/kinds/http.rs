//! `http {method, url, headers, body, expect_status}` and `sluice.webhook`
//! (batch webhooks), both on one shared reqwest client.
//!
//! The result keeps the status, the time to the end of the (capped) body and
//! at most `max_body_bytes` of the body. When an allow-list is set, only its
//! hosts may be called, redirects included: it is the guard against jobs
//! being used to reach internal services.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ArgsError, AsyncKind, JobContext, JobError};

/// The kind name of batch webhooks.
pub const WEBHOOK_KIND: &str = "sluice.webhook";

/// Settings of the HTTP kinds.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Hosts jobs may call: exact names, or `*.suffix`. `None` allows all.
    pub allow_hosts: Option<Vec<String>>,
    /// Most body bytes kept in a result.
    pub max_body_bytes: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            allow_hosts: None,
            max_body_bytes: 64 * 1024,
        }
    }
}

#[derive(Debug)]
struct Shared {
    client: reqwest::Client,
    options: HttpOptions,
}

/// The `http` kind.
#[derive(Clone, Debug)]
pub struct Http {
    shared: Arc<Shared>,
}

/// Args of [`Http`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpArgs {
    /// Method; GET when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// Absolute http:// URL.
    pub url: String,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A string is sent as is; any other JSON value is sent as JSON.
    #[serde(default)]
    pub body: Option<Value>,
    /// The one status that counts as success; without it, anything below 400.
    #[serde(default)]
    pub expect_status: Option<u16>,
}

fn host_allowed(allow: &Option<Vec<String>>, url: &Url) -> bool {
    let Some(allow) = allow else { return true };
    let Some(host) = url.host_str() else {
        return false;
    };
    allow.iter().any(|a| match a.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len()
                && host.ends_with(suffix)
                && host[..host.len() - suffix.len()].ends_with('.')
        }
        None => a.eq_ignore_ascii_case(host),
    })
}

impl Http {
    /// A kind with its own client.
    pub fn new(options: HttpOptions) -> Self {
        let allow = options.allow_hosts.clone();
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 10 {
                attempt.error("too many redirects")
            } else if host_allowed(&allow, attempt.url()) {
                attempt.follow()
            } else {
                attempt.error("redirect to a host outside the allow-list")
            }
        });
        let client = reqwest::Client::builder()
            .redirect(redirect)
            .user_agent(concat!("sluice-jobs/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            shared: Arc::new(Shared { client, options }),
        }
    }

    fn check_url(&self, url: &str) -> Result<Url, ArgsError> {
        let parsed = Url::parse(url).map_err(|e| ArgsError::new("url", e))?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err(ArgsError::new("url", "scheme must be http or https"));
        }
        if !host_allowed(&self.shared.options.allow_hosts, &parsed) {
            return Err(ArgsError::new("url", "host is not in the allow-list"));
        }
        Ok(parsed)
    }

    async fn call(
        &self,
        method: Method,
        url: Url,
        headers: &BTreeMap<String, String>,
        body: Option<&Value>,
        expect_status: Option<u16>,
    ) -> Result<Value, JobError> {
        let started = Instant::now();
        let mut req = self.shared.client.request(method, url);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        req = match body {
            Some(Value::String(s)) => req.body(s.clone()),
            Some(v) => req.json(v),
            None => req,
        };
        let mut resp = req
            .send()
            .await
            .map_err(|e| JobError::retryable(format!("request: {e}")))?;
        let status = resp.status().as_u16();
        let cap = self.shared.options.max_body_bytes;
        let mut body = Vec::new();
        let mut body_bytes: u64 = 0;
        let mut truncated = false;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| JobError::retryable(format!("body: {e}")))?
        {
            body_bytes += chunk.len() as u64;
            let room = cap.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..room.min(chunk.len())]);
            if chunk.len() > room {
                // Stop reading: a capped body is all we keep.
                truncated = true;
                break;
            }
        }
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let ok = match expect_status {
            Some(want) => status == want,
            None => status < 400,
        };
        if !ok {
            let msg = match expect_status {
                Some(want) => format!("status {status}, expected {want}"),
                None => format!("status {status}"),
            };
            // Client errors other than timeouts and rate limits will not
            // change on retry.
            let permanent = expect_status.is_none()
                && (400..500).contains(&status)
                && status != 408
                && status != 429;
            return Err(if permanent {
                JobError::permanent(msg)
            } else {
                JobError::retryable(msg)
            });
        }
        Ok(json!({
            "status": status,
            "elapsed_ms": elapsed_ms,
            "body": String::from_utf8_lossy(&body),
            "body_bytes": body_bytes,
            "truncated": truncated,
        }))
    }
}

impl AsyncKind for Http {
    type Args = HttpArgs;

    fn check(&self, args: &HttpArgs) -> Result<(), ArgsError> {
        self.check_url(&args.url)?;
        if let Some(m) = &args.method {
            Method::from_bytes(m.as_bytes()).map_err(|e| ArgsError::new("method", e))?;
        }
        for (k, v) in &args.headers {
            reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| ArgsError::new(&format!("headers.{k}"), e))?;
            reqwest::header::HeaderValue::from_str(v)
                .map_err(|e| ArgsError::new(&format!("headers.{k}"), e))?;
        }
        if let Some(s) = args.expect_status {
            reqwest::StatusCode::from_u16(s).map_err(|e| ArgsError::new("expect_status", e))?;
        }
        Ok(())
    }

    async fn run(&self, args: HttpArgs, _ctx: JobContext) -> Result<Value, JobError> {
        self.check(&args).map_err(JobError::permanent)?;
        let url = self.check_url(&args.url).map_err(JobError::permanent)?;
        let method = match &args.method {
            Some(m) => Method::from_bytes(m.as_bytes()).map_err(JobError::permanent)?,
            None => Method::GET,
        };
        self.call(
            method,
            url,
            &args.headers,
            args.body.as_ref(),
            args.expect_status,
        )
        .await
    }
}

/// The `sluice.webhook` kind: POSTs a batch summary. Enqueued by the store
/// in the transaction that finishes a batch; retried like any job, so a
/// receiver may see it more than once and should dedupe on the
/// `Idempotency-Key` header (the webhook job's id, the same on every try).
#[derive(Clone, Debug)]
pub struct Webhook {
    http: Http,
}

/// Args of [`Webhook`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookArgs {
    /// Where to POST.
    pub url: String,
    /// The JSON body.
    pub payload: Value,
}

impl Webhook {
    /// A webhook kind sharing `http`'s client and allow-list.
    pub fn new(http: Http) -> Self {
        Self { http }
    }
}

impl AsyncKind for Webhook {
    type Args = WebhookArgs;

    fn check(&self, args: &WebhookArgs) -> Result<(), ArgsError> {
        self.http.check_url(&args.url).map(|_| ())
    }

    async fn run(&self, args: WebhookArgs, ctx: JobContext) -> Result<Value, JobError> {
        let url = self
            .http
            .check_url(&args.url)
            .map_err(JobError::permanent)?;
        let mut headers = BTreeMap::new();
        headers.insert("idempotency-key".to_owned(), ctx.id().to_string());
        let r = self
            .http
            .call(Method::POST, url, &headers, Some(&args.payload), None)
            .await;
        // A webhook receiver's 4xx is as likely a deploy in progress as a
        // real refusal: always retry while attempts remain.
        r.map_err(|e| JobError::retryable(e.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_matches_exact_and_suffix() {
        let allow = Some(vec![
            "api.example.com".to_owned(),
            "*.internal.test".to_owned(),
        ]);
        let ok = |u: &str| host_allowed(&allow, &Url::parse(u).unwrap());
        assert!(ok("http://api.example.com/x"));
        assert!(ok("http://a.b.internal.test/"));
        assert!(!ok("http://internal.test/"));
        assert!(!ok("http://evilinternal.test/"));
        assert!(!ok("http://example.com/"));
        assert!(host_allowed(
            &None,
            &Url::parse("http://anything/").unwrap()
        ));
    }
}
