//! `http_push`: records POSTed as JSON (one value, or an array of them) or
//! NDJSON (`Content-Type: application/x-ndjson`, one value per line).
//!
//! The answer waits for the sinks: 200 `{"accepted":N}` only once every
//! sink has committed every record of the request. When the pipeline has no
//! room for all of them at once the answer is 503 with `Retry-After`, and
//! nothing of the request was taken: the client keeps its records and tries
//! again. 413 for a body over `max_body` (or more records than the buffer
//! holds), 400 for a body that does not parse, 415 for other content types.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::config::HttpPushSource;
use crate::pipeline::{SourceCtx, SourceError, TryError};
use crate::record::{Payload, Record};

struct Push {
    ctx: SourceCtx,
    cfg: HttpPushSource,
}

pub(crate) async fn run(
    ctx: &SourceCtx,
    cfg: &HttpPushSource,
    listener: TcpListener,
) -> Result<(), SourceError> {
    let state = Arc::new(Push {
        ctx: ctx.clone(),
        cfg: cfg.clone(),
    });
    let app = Router::new().route(&cfg.path, post(push)).with_state(state);
    tracing::info!(address = %cfg.address, path = %cfg.path, "listening");
    let shutdown = ctx.shutdown.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.cancelled().await;
    });
    // Graceful: on shutdown, stop accepting and let requests waiting for
    // their commit get their answer.
    server.await.map_err(SourceError::from)
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message.into()}});
    (status, axum::Json(body)).into_response()
}

fn full() -> Response {
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "full",
        "the pipeline is full; nothing of this request was taken; retry later",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// A refusal: status, code and message of the JSON error body.
type Refusal = (StatusCode, &'static str, String);

fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Vec<serde_json::Value>, Refusal> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let mime = ctype
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
            let mut out = Vec::new();
            for (i, line) in body.split(|&b| b == b'\n').enumerate() {
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                let v = serde_json::from_slice(line).map_err(|e| {
                    (
                        StatusCode::BAD_REQUEST,
                        "invalid_json",
                        format!("line {}: {e}", i + 1),
                    )
                })?;
                out.push(v);
            }
            Ok(out)
        }
        "application/json" | "" => {
            let v: serde_json::Value = serde_json::from_slice(body)
                .map_err(|e| (StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?;
            Ok(match v {
                serde_json::Value::Array(a) => a,
                v => vec![v],
            })
        }
        other => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("content type {other:?}; send application/json or application/x-ndjson"),
        )),
    }
}

fn id_of(v: &serde_json::Value, field: Option<&str>) -> Option<String> {
    match v.get(field?)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

async fn push(State(p): State<Arc<Push>>, headers: HeaderMap, body: Body) -> Response {
    let max = p.cfg.max_body.0 as usize;
    let too_big = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("body larger than max_body ({max} bytes)"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return too_big();
    }
    let Ok(bytes) = axum::body::to_bytes(body, max).await else {
        return too_big();
    };
    let values = match parse(&headers, &bytes) {
        Ok(v) => v,
        Err((status, code, message)) => return error(status, code, message),
    };
    if values.is_empty() {
        return (
            StatusCode::OK,
            axum::Json(serde_json::json!({"accepted": 0})),
        )
            .into_response();
    }
    let cap = p.ctx.output.capacity();
    if values.len() > cap {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_records",
            format!(
                "{} records in one request; at most {cap} (the pipeline's buffer)",
                values.len()
            ),
        );
    }
    // All or nothing: room for every record, or 503 and nothing taken.
    let permits = match p.ctx.output.try_reserve_many(values.len()) {
        Ok(permits) => permits,
        Err(TryError::Full) => {
            metrics::counter!("sluice_collect_source_rejected_total", "source" => p.ctx.name.to_string())
                .increment(values.len() as u64);
            return full();
        }
        Err(TryError::Closed) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "stopping",
                "the collector is stopping",
            );
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let ack = p.ctx.ack(0, &tx);
    let n = values.len();
    for (v, permit) in values.into_iter().zip(permits) {
        let record = Record {
            id: id_of(&v, p.cfg.id_field.as_deref()),
            ack: Some(ack.clone()),
            ..Record::new(p.ctx.name.clone(), Payload::Json(v))
        };
        p.ctx.count_in();
        permit.send(record);
    }
    // The request's own handle: only the records' copies decide.
    ack.commit();
    match tokio::time::timeout(p.cfg.ack_timeout.0, rx.recv()).await {
        Ok(Some(a)) if a.ok => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"accepted": n})),
        )
            .into_response(),
        Ok(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_committed",
            "the records were not committed (the collector is stopping); send them again",
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ack_timeout",
            "the records were not committed within ack_timeout; they may still be; send them again (records with an id are not duplicated)",
        ),
    }
}
