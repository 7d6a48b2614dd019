//! `Idempotency-Key`: the same key returns the first batch, once stored.

use serde_json::json;

use crate::support::{Server, expect_error};

#[tokio::test]
async fn the_same_key_returns_the_same_batch() {
    let s = Server::start().await;
    let body = json!({"jobs": [{"kind": "noop"}, {"kind": "noop"}]});
    let send = || {
        s.http
            .post(s.url("/v1/batches"))
            .header("Idempotency-Key", "order-42")
            .json(&body)
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status().as_u16(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: serde_json::Value = first.json().await.unwrap();

    let again = send().await.unwrap();
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(again, first, "the original answer, job ids included");

    // The body field is the same key.
    let (status, by_field) = s
        .post(
            "/v1/batches",
            json!({"idempotency_key": "order-42", "jobs": [{"kind": "noop"}]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(by_field, first);

    let (_, batches) = s.get("/v1/batches").await;
    assert_eq!(batches["items"].as_array().unwrap().len(), 1);
    let (_, jobs) = s.get("/v1/jobs").await;
    assert_eq!(jobs["items"].as_array().unwrap().len(), 2);

    // Another key is another batch.
    let (status, other) = s
        .post(
            "/v1/batches",
            json!({"idempotency_key": "order-43", "jobs": [{"kind": "noop"}]}),
        )
        .await;
    assert_eq!(status, 201);
    assert_ne!(other["batch_id"], first["batch_id"]);
}

#[tokio::test]
async fn header_and_body_keys_must_agree() {
    let s = Server::start().await;
    let res = s
        .http
        .post(s.url("/v1/batches"))
        .header("Idempotency-Key", "a")
        .json(&json!({"idempotency_key": "b", "jobs": [{"kind": "noop"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("differs")
    );
    let err = expect_error(
        &s.post(
            "/v1/batches",
            json!({"idempotency_key": "", "jobs": [{"kind": "noop"}]}),
        )
        .await,
        422,
        "invalid_submission",
    );
    assert_eq!(err["problems"][0]["field"], "idempotency_key");
}
