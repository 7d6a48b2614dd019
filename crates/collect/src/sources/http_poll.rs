//! `http_poll`: an URL fetched on an interval (with jitter), each poll
//! under a deadline, following pages, with a cursor kept across restarts.
//!
//! Each poll expands `{{cursor}}` and `{{now}}` in the URL (URL-encoded),
//! fetches the first page, and follows the next page (a `Link: <…>;
//! rel="next"` header, or a URL at a JSON pointer in the body) up to
//! `max_pages`. The records of a poll go out sharing one acknowledgement;
//! the new cursor (at a JSON pointer in the last page, or a field of the
//! last record; without either, the time the poll started, RFC 3339) is
//! written to `DATA_DIR/cursors/NAME.json` only once every
//! sink has committed every record of the poll. A poll that fails or
//! whose records are not all committed leaves the cursor where it was: the
//! next poll asks for the same records again (at least once; `id_field`
//! keeps the SQLite and PostgreSQL sinks from writing them twice).
//!
//! A 429 or 503 answer with `Retry-After` (seconds or an HTTP date) puts
//! the next poll off until then, if that is later than the interval.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::Url;
use reqwest::header::{LINK, RETRY_AFTER};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{HttpPollSource, NextPage};
use crate::pipeline::{SourceCtx, SourceError};
use crate::record::{Payload, Record};

/// What a poll brought.
struct Fetched {
    records: Vec<Value>,
    cursor: Option<String>,
}

enum PollError {
    /// Asked to come back later.
    RetryAfter(Duration, String),
    Other(String),
}

fn cursor_path(data_dir: &Path, source: &str) -> PathBuf {
    data_dir.join("cursors").join(format!("{source}.json"))
}

fn load_cursor(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("cursor")?.as_str().map(str::to_owned)
}

fn store_cursor(path: &Path, cursor: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::json!({ "cursor": cursor }).to_string())?;
    std::fs::rename(&tmp, path)
}

/// Percent-encode everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL with `{{cursor}}` and `{{now}}` filled in.
pub(crate) fn expand(template: &str, cursor: &str, now: SystemTime) -> String {
    let now = humantime::format_rfc3339_seconds(now).to_string();
    template
        .replace("{{cursor}}", &encode(cursor))
        .replace("{{now}}", &encode(&now))
}

/// The `rel="next"` target of a Link header.
pub(crate) fn link_next(header: &str) -> Option<String> {
    for part in header.split(',') {
        let (target, params) = part.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p.eq_ignore_ascii_case("rel=next") || p.eq_ignore_ascii_case("rel=\"next\"")
        });
        if is_next {
            return Some(target.to_owned());
        }
    }
    None
}

fn retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

async fn poll_once(
    http: &reqwest::Client,
    cfg: &HttpPollSource,
    cursor: &str,
) -> Result<Fetched, PollError> {
    let first = expand(&cfg.url, cursor, SystemTime::now());
    let mut url = Url::parse(&first).map_err(|e| PollError::Other(format!("url {first}: {e}")))?;
    let mut out = Fetched {
        records: Vec::new(),
        cursor: None,
    };
    for _ in 0..cfg.max_pages {
        let mut req = http.get(url.clone());
        for (k, v) in &cfg.headers {
            req = req.header(k, v);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| match crate::tls::certificate_error(&e) {
                Some(tls) => PollError::Other(format!(
                    "GET {url}: the certificate is not trusted ({tls}); trust its CA with ca_cert"
                )),
                None => PollError::Other(format!("GET {url}: {e}")),
            })?;
        let status = resp.status();
        if status.as_u16() == 429 || status.as_u16() == 503 {
            let wait = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(retry_after)
                .unwrap_or(cfg.interval.0);
            return Err(PollError::RetryAfter(wait, format!("GET {url}: {status}")));
        }
        if !status.is_success() {
            return Err(PollError::Other(format!("GET {url}: {status}")));
        }
        let link = resp
            .headers()
            .get(LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(link_next);
        let body: Value = resp
            .json()
            .await
            .map_err(|e| PollError::Other(format!("GET {url}: body: {e}")))?;
        let items = match &cfg.records {
            Some(p) => body.pointer(p).cloned().unwrap_or(Value::Null),
            None => body.clone(),
        };
        match items {
            Value::Array(a) => out.records.extend(a),
            Value::Null => {}
            v => out.records.push(v),
        }
        if let Some(p) = &cfg.cursor
            && let Some(c) = body.pointer(p).and_then(scalar)
        {
            out.cursor = Some(c);
        }
        let next = match &cfg.next {
            None => None,
            Some(NextPage::Link) => link,
            Some(NextPage::Pointer(p)) => {
                body.pointer(p).and_then(Value::as_str).map(str::to_owned)
            }
        };
        match next.filter(|n| !n.is_empty()) {
            Some(n) => {
                url = url
                    .join(&n)
                    .map_err(|e| PollError::Other(format!("next page {n:?}: {e}")))?;
            }
            None => break,
        }
    }
    if let Some(f) = &cfg.cursor_field
        && let Some(c) = out.records.last().and_then(|r| r.get(f)).and_then(scalar)
    {
        out.cursor = Some(c);
    }
    Ok(out)
}

fn id_of(v: &Value, field: Option<&str>) -> Option<String> {
    v.get(field?).and_then(scalar)
}

pub(crate) async fn run(ctx: &SourceCtx, cfg: &HttpPollSource) -> Result<(), SourceError> {
    let state = cursor_path(&ctx.data_dir, &ctx.name);
    let mut cursor = load_cursor(&state).unwrap_or_else(|| cfg.initial_cursor.clone());
    let roots = crate::tls::load_ca_certs(&cfg.ca_cert.iter().cloned().collect::<Vec<_>>())
        .map_err(|m| SourceError(format!("ca_cert: {m}")))?;
    let http = crate::tls::trusting(reqwest::Client::builder(), &roots)
        .user_agent("sluice-collect")
        .build()
        .map_err(|e| SourceError(e.to_string()))?;
    let jitter = cfg.jitter.map_or(cfg.interval.0 / 10, |j| j.0);
    tracing::info!(cursor = %cursor, "polling");
    let mut next_at = Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep_until(next_at) => {}
        }
        let started = Instant::now();
        let started_at = SystemTime::now();
        let mut wait = cfg.interval.0;
        let outcome = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => return Ok(()),
            r = tokio::time::timeout(cfg.timeout.0, poll_once(&http, cfg, &cursor)) => r,
        };
        match outcome {
            Err(_) => {
                tracing::warn!(
                    timeout_ms = cfg.timeout.0.as_millis() as u64,
                    "poll deadline passed"
                );
                metrics::counter!("sluice_collect_source_poll_errors_total", "source" => ctx.name.to_string()).increment(1);
            }
            Ok(Err(PollError::RetryAfter(d, what))) => {
                tracing::warn!(error = %what, retry_after_ms = d.as_millis() as u64, "asked to come back later");
                wait = wait.max(d);
            }
            Ok(Err(PollError::Other(e))) => {
                tracing::warn!(error = %e, "poll failed");
                metrics::counter!("sluice_collect_source_poll_errors_total", "source" => ctx.name.to_string()).increment(1);
            }
            Ok(Ok(fetched)) => {
                // Without `cursor` or `cursor_field`, the cursor is the time
                // the last fully committed poll started.
                let next = fetched.cursor.or_else(|| {
                    (cfg.cursor.is_none() && cfg.cursor_field.is_none())
                        .then(|| humantime::format_rfc3339_seconds(started_at).to_string())
                });
                if deliver(ctx, cfg, fetched.records).await? {
                    if let Some(c) = next
                        && c != cursor
                    {
                        store_cursor(&state, &c)?;
                        tracing::debug!(cursor = %c, "cursor committed");
                        cursor = c;
                    }
                } else {
                    tracing::warn!("records of a poll were not committed; the cursor stays");
                }
                if ctx.shutdown.is_cancelled() {
                    return Ok(());
                }
            }
        }
        let extra = rand::rng().random_range(0..=jitter.as_millis() as u64);
        next_at = started + wait + Duration::from_millis(extra);
    }
}

/// Send a poll's records and wait until every sink has committed them
/// (also while shutting down: the drain deadline bounds it). Whether all were.
async fn deliver(
    ctx: &SourceCtx,
    cfg: &HttpPollSource,
    records: Vec<Value>,
) -> Result<bool, SourceError> {
    if records.is_empty() {
        return Ok(true);
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let ack = ctx.ack(0, &tx);
    for v in records {
        let record = Record {
            id: id_of(&v, cfg.id_field.as_deref()),
            ack: Some(ack.clone()),
            ..Record::new(ctx.name.clone(), Payload::Json(v))
        };
        if let Some(record) = ctx.offer(record)? {
            // Blocking: wait for room (cancel-safe; on shutdown the rest of
            // the poll is not sent, so it is not committed either).
            let permit = tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => return Ok(false),
                p = ctx.output.reserve() => p?,
            };
            ctx.count_in();
            permit.send(record);
        }
    }
    // This poll's own handle: only the records' copies decide.
    ack.commit();
    Ok(rx.recv().await.is_some_and(|a| a.ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_links_and_retry_after() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400);
        assert_eq!(
            expand("http://h/p?since={{cursor}}&at={{now}}", "a b&c", at),
            "http://h/p?since=a%20b%26c&at=1970-01-02T00%3A00%3A00Z"
        );
        assert_eq!(
            link_next(r#"<http://h/p?page=1>; rel="prev", <http://h/p?page=3>; rel="next""#),
            Some("http://h/p?page=3".to_owned())
        );
        assert_eq!(link_next(r#"<http://h/p?page=1>; rel="prev""#), None);
        assert_eq!(retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon"), None);
    }
}
