//! `/openapi.json`: the API described in OpenAPI 3.1, hand-written in
//! `openapi.json` beside this file and kept honest by tests: every route in
//! [`ROUTES`] is in the document and in the router, and the document has no
//! other paths.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::ApiState;

/// The document.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// Every `(method, path)` the router serves, in OpenAPI path syntax.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/batches"),
    ("get", "/v1/batches"),
    ("get", "/v1/batches/{id}"),
    ("delete", "/v1/batches/{id}"),
    ("get", "/v1/batches/{id}/jobs"),
    ("post", "/v1/jobs"),
    ("get", "/v1/jobs"),
    ("get", "/v1/jobs/{id}"),
    ("delete", "/v1/jobs/{id}"),
    ("post", "/v1/jobs/{id}/retry"),
    ("get", "/v1/queues"),
    ("get", "/v1/events"),
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

pub(crate) fn routes() -> Router<ApiState> {
    Router::new().route("/openapi.json", get(document))
}

async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_describes_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("openapi.json parses");
        let paths = doc["paths"].as_object().expect("paths");
        for (method, path) in ROUTES {
            assert!(
                paths.get(*path).and_then(|p| p.get(*method)).is_some(),
                "{method} {path} is not in openapi.json"
            );
        }
        for (path, item) in paths {
            for method in item.as_object().expect("path item").keys() {
                if method == "parameters" {
                    continue;
                }
                assert!(
                    ROUTES.contains(&(method.as_str(), path.as_str())),
                    "openapi.json has {method} {path}, which ROUTES lacks"
                );
            }
        }
    }
}
