//! `/healthz`, `/metrics`, `/v1/queues`, `/openapi.json`, and the router
//! serving every route the document lists.

use std::sync::Arc;

use serde_json::json;
use sluice_jobs::api::openapi::ROUTES;

use crate::support::{Server, expect_error};

#[tokio::test]
async fn metrics_render_through_the_configured_closure() {
    let s = Server::with(|c| {
        c.metrics = Some(Arc::new(|| "# sluice metrics\nup 1\n".to_owned()));
    })
    .await;
    let res = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(res.text().await.unwrap(), "# sluice metrics\nup 1\n");

    let plain = Server::start().await;
    expect_error(&plain.get("/metrics").await, 404, "not_found");
}

#[tokio::test]
async fn queues_count_unfinished_jobs_per_state() {
    let s = Server::start().await;
    let later = sluice_jobs::Timestamp::now().0 + 3_600_000;
    s.post(
        "/v1/batches",
        json!({"jobs": [
            {"kind": "noop", "queue": "mail"},
            {"kind": "noop", "queue": "mail", "run_at": later},
            {"kind": "noop", "queue": "mail", "run_at": later},
            {"kind": "noop"},
        ]}),
    )
    .await;
    let (cancel_me, _) = s.submit_noops(1).await;
    s.delete(&format!("/v1/batches/{cancel_me}")).await;
    let (status, body) = s.get("/v1/queues").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["queues"],
        json!([
            {"queue": "default", "scheduled": 0, "queued": 1, "running": 0, "retrying": 0},
            {"queue": "mail", "scheduled": 2, "queued": 1, "running": 0, "retrying": 0},
        ])
    );
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let s = Server::with(|c| c.metrics = Some(Arc::new(String::new))).await;
    let (status, doc) = s.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let (_, jobs) = s.submit_noops(1).await;
    for (method, path) in ROUTES {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
        let url = s.url(&path.replace("{id}", &jobs[0]));
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let res = s.http.request(method.clone(), &url).send().await.unwrap();
        let status = res.status().as_u16();
        assert_ne!(status, 405, "{method} {path}");
        if path.contains("events") {
            continue;
        }
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        assert!(
            !body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("no route"),
            "{method} {path} is not routed"
        );
    }
    let err = expect_error(&s.get("/v2/nothing").await, 404, "not_found");
    assert_eq!(err["message"], "no route /v2/nothing");
    let res = s.http.put(s.url("/v1/jobs")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 405);
}
