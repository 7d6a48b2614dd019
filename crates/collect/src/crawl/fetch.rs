//! One HTTP exchange with retries: exponential backoff with jitter for
//! network errors and 5xx, `Retry-After` honoured on 429 and 503, every
//! attempt through the host's politeness gate. Redirects are not followed
//! here (the client never follows them): the crawl loop follows them so it
//! can de-duplicate and scope each hop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use tokio::sync::SemaphorePermit;
use url::Url;

use super::frontier::Host;

/// Retry and timeout settings of the fetcher.
#[derive(Clone, Debug)]
pub(crate) struct RetryPolicy {
    /// Attempts after the first.
    pub(crate) retries: u32,
    /// First backoff; doubles per attempt, with jitter.
    pub(crate) backoff: Duration,
    /// Ceiling on any one wait, backoff or Retry-After.
    pub(crate) max_wait: Duration,
}

/// Why a fetch gave no response.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// Could not connect (refused, DNS, reset before a response).
    Connect(String),
    /// The request or its body took longer than the timeout.
    Timeout,
    /// The server's certificate was not trusted (or the TLS handshake
    /// failed): not retried, it will not change.
    Tls {
        /// The URL requested.
        url: String,
        /// What TLS said.
        message: String,
    },
    /// Any other client error.
    Request(String),
}

impl FetchError {
    /// The error's kind, as counted in the stats.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            FetchError::Connect(_) => "connect",
            FetchError::Timeout => "timeout",
            FetchError::Tls { .. } => "tls",
            FetchError::Request(_) => "request",
        }
    }

    fn from_reqwest(e: &reqwest::Error, url: &Url) -> FetchError {
        if let Some(message) = crate::tls::certificate_error(e) {
            FetchError::Tls {
                url: url.to_string(),
                message,
            }
        } else if e.is_timeout() {
            FetchError::Timeout
        } else if e.is_connect() {
            FetchError::Connect(error_chain(e))
        } else {
            FetchError::Request(error_chain(e))
        }
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Connect(m) => write!(f, "connect: {m}"),
            FetchError::Timeout => f.write_str("timed out"),
            FetchError::Tls { url, message } => write!(
                f,
                "tls: the certificate of {url} is not trusted ({message}); trust its CA with --ca-cert FILE (ca_cert in a config)"
            ),
            FetchError::Request(m) => write!(f, "request: {m}"),
        }
    }
}

/// An error with its sources, one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// Statuses worth another attempt.
fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// The `Retry-After` of a response (delta-seconds or an HTTP date).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Backoff before retry number `attempt` (0-based): `base · 2^attempt`,
/// scaled by a random factor in [0.5, 1.0) so retries from many tasks do
/// not arrive together, capped at `max`.
pub(crate) fn backoff(base: Duration, attempt: u32, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16));
    let jitter = rand::rng().random_range(0.5..1.0);
    exp.mul_f64(jitter).min(max)
}

/// GETs `url` through `host`'s gate, retrying as the policy says. Returns
/// the response (any status, including a final 429/5xx once retries are
/// spent) and the host permit, which the caller holds while it reads the
/// body.
pub(crate) async fn get<'h>(
    client: &reqwest::Client,
    host: &'h Host,
    url: &Url,
    policy: &RetryPolicy,
    retries: &AtomicU64,
) -> Result<(reqwest::Response, SemaphorePermit<'h>), FetchError> {
    let mut attempt = 0;
    loop {
        let permit = host.turn().await;
        let result = client.get(url.clone()).send().await;
        let wait = match &result {
            Ok(resp) if retryable(resp.status()) && attempt < policy.retries => {
                let honoured = matches!(resp.status().as_u16(), 429 | 503)
                    .then(|| retry_after(resp.headers()))
                    .flatten();
                match honoured {
                    Some(d) => {
                        let d = d.min(policy.max_wait);
                        // The server asked the whole host to wait, not just
                        // this URL.
                        host.pause_for(d);
                        d
                    }
                    None => backoff(policy.backoff, attempt, policy.max_wait),
                }
            }
            Ok(_) => {
                break result
                    .map(|r| (r, permit))
                    .map_err(|e| FetchError::from_reqwest(&e, url));
            }
            Err(e)
                if attempt < policy.retries
                    && (e.is_connect() || e.is_timeout())
                    && crate::tls::certificate_error(e).is_none() =>
            {
                backoff(policy.backoff, attempt, policy.max_wait)
            }
            Err(e) => break Err(FetchError::from_reqwest(e, url)),
        };
        drop(result);
        drop(permit);
        attempt += 1;
        retries.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(url = %url, attempt, wait_ms = wait.as_millis() as u64, "retrying");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let later = SystemTime::now() + Duration::from_secs(120);
        h.insert(RETRY_AFTER, httpdate::fmt_http_date(later).parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_millis(100);
        for attempt in 0..4 {
            let d = backoff(base, attempt, Duration::from_secs(60));
            let full = base * (1 << attempt);
            assert!(d >= full / 2 && d < full, "attempt {attempt}: {d:?}");
        }
        assert_eq!(
            backoff(base, 30, Duration::from_secs(1)),
            Duration::from_secs(1)
        );
    }
}
