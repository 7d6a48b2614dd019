//! The admin API (axum), on its own listener, loopback by default:
//! `/metrics`, `/healthz`, `/readyz`, `/upstreams`, `POST /reload`,
//! `GET /cache` (entries and bytes) and `POST /cache/purge`.
//! With `admin.token` set, every call needs `Authorization: Bearer <token>`.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ConfigError;
use crate::gateway::{Error, Gateway};

/// Serve the admin API until `shutdown`.
pub(crate) async fn serve(
    gw: Gateway,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let app = router(gw);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|source| Error::Io {
            context: "admin listener".into(),
            source,
        })
}

fn router(gw: Gateway) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/upstreams", get(upstreams))
        .route("/config", get(config))
        .route("/reload", post(reload))
        .route("/cache", get(cache_stats))
        .route("/cache/purge", post(cache_purge))
        .layer(middleware::from_fn_with_state(gw.clone(), auth))
        .with_state(gw)
}

async fn auth(State(gw): State<Gateway>, req: Request, next: Next) -> Response {
    let config = gw.config();
    if let Some(token) = &config.admin.token {
        let ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()));
        if !ok {
            return json_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "admin API needs a valid bearer token",
            );
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// 200 with the readiness as JSON, or 503 with the same body and an
/// `error` saying why (see [`Gateway::readiness`] for the rule).
async fn readyz(State(gw): State<Gateway>) -> Response {
    let r = gw.readiness();
    let mut body = serde_json::to_value(&r).unwrap_or_default();
    if r.ready {
        return (StatusCode::OK, axum::Json(body)).into_response();
    }
    let why = if r.shutting_down {
        "the gateway is shutting down".to_owned()
    } else if !r.accepting {
        "the proxy listener is not accepting connections".to_owned()
    } else {
        format!(
            "no available target (healthy and not ejected) in upstream {}",
            r.unavailable.join(", ")
        )
    };
    body["error"] = serde_json::json!({"code": "not_ready", "message": why});
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

async fn metrics(State(gw): State<Gateway>) -> Response {
    match gw.shared.metrics_handle() {
        Some(h) => {
            for upstream in gw.shared.state().upstreams.values() {
                upstream.publish_gauges();
            }
            let mut text = h.render();
            crate::latency::render(&mut text);
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
        }
        None => json_error(
            StatusCode::NOT_FOUND,
            "no_metrics",
            "no metrics recorder is installed in this process",
        ),
    }
}

async fn upstreams(State(gw): State<Gateway>) -> Response {
    let state = gw.shared.state();
    let list: Vec<_> = state.upstreams.values().map(|u| u.snapshot()).collect();
    axum::Json(serde_json::json!({ "upstreams": list })).into_response()
}

async fn config(State(gw): State<Gateway>) -> Response {
    let cfg = gw.config();
    axum::Json(serde_json::json!({
        "path": gw.config_path().map(|p| p.display().to_string()),
        "reloads": gw.reload_count(),
        "routes": cfg.routes.iter().enumerate().map(|(i, r)| r.name.clone().unwrap_or_else(|| format!("route{i}"))).collect::<Vec<_>>(),
        "upstreams": cfg.upstreams.keys().collect::<Vec<_>>(),
    }))
    .into_response()
}

/// `POST /reload`: 200, or an error naming the file and every problem:
/// 422 for a file that is empty or invalid, 500 when it cannot be read, 409
/// for a gateway not started from a file.
async fn reload(State(gw): State<Gateway>) -> Response {
    let Some(path) = gw.config_path().map(|p| p.display().to_string()) else {
        return json_error(
            StatusCode::CONFLICT,
            "reload_refused",
            "this gateway was not started from a config file, so there is nothing to reload",
        );
    };
    let e = match gw.reload() {
        Ok(()) => {
            return axum::Json(serde_json::json!({"reloaded": true, "reloads": gw.reload_count()}))
                .into_response();
        }
        Err(e) => e,
    };
    let (status, problems) = match &e {
        Error::Config(ConfigError::Read { .. }) => (StatusCode::INTERNAL_SERVER_ERROR, &[][..]),
        Error::Config(c) => (StatusCode::UNPROCESSABLE_ENTITY, c.problems()),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, &[][..]),
    };
    let problems: Vec<_> = problems
        .iter()
        .map(|p| serde_json::json!({"path": p.path, "line": p.line, "message": p.message}))
        .collect();
    (
        status,
        axum::Json(serde_json::json!({"error": {
            "code": "reload_refused",
            "message": e.to_string(),
            "file": path,
            "problems": problems,
        }})),
    )
        .into_response()
}

async fn cache_stats(State(gw): State<Gateway>) -> Response {
    let (entries, bytes) = gw.shared.cache().stats();
    axum::Json(serde_json::json!({"entries": entries, "bytes": bytes})).into_response()
}

/// `POST /cache/purge` body: exactly one of `key` (a path with its query,
/// matched exactly) or `prefix` (matched as a prefix of path and query);
/// `host` limits it to one host, all hosts otherwise.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    key: Option<String>,
    prefix: Option<String>,
    host: Option<String>,
}

async fn cache_purge(State(gw): State<Gateway>, body: axum::body::Bytes) -> Response {
    use crate::cache::Purge;
    let req: PurgeRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_purge_request",
                &format!(
                    "expected {{\"key\": \"/path?query\"}} or {{\"prefix\": \"/path/\"}} with an optional \"host\": {e}"
                ),
            );
        }
    };
    let what = match (&req.key, &req.prefix) {
        (Some(k), None) if k.starts_with('/') => Purge::Key(k),
        (None, Some(p)) if p.starts_with('/') => Purge::Prefix(p),
        _ => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_purge_request",
                "give exactly one of \"key\" or \"prefix\", starting with \"/\"",
            );
        }
    };
    // The cache keys hosts lowercase and without their port.
    let host = req.host.as_deref().map(|h| {
        let h = match h.rsplit_once(':') {
            Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                name
            }
            _ => h,
        };
        h.to_ascii_lowercase()
    });
    let purged = gw.shared.cache().purge(host.as_deref(), &what);
    tracing::info!(purged, key = ?req.key, prefix = ?req.prefix, host = ?host, "cache purged");
    axum::Json(serde_json::json!({"purged": purged})).into_response()
}
