//! `/v1/batches`: submit, inspect, list, page, cancel.

use serde_json::json;

use crate::support::{Server, expect_error};

#[tokio::test]
async fn a_batch_is_created_inspected_and_listed() {
    let s = Server::start().await;
    let (status, body) = s
        .post(
            "/v1/batches",
            json!({"name": "nightly", "jobs": [{"kind": "noop"}, {"kind": "noop", "depends_on": [0]}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let batch = body["batch_id"].as_str().unwrap().to_owned();
    assert_eq!(body["jobs"].as_array().unwrap().len(), 2);
    assert_eq!(body["jobs"][0]["existing"], false);

    let (status, b) = s.get(&format!("/v1/batches/{batch}")).await;
    assert_eq!(status, 200);
    assert_eq!(b["name"], "nightly");
    assert_eq!(b["total"], 2);
    assert_eq!(b["counts"]["queued"], 1);
    assert_eq!(b["counts"]["scheduled"], 1);
    assert_eq!(b["state"], "running");

    let (status, jobs) = s.get(&format!("/v1/batches/{batch}/jobs")).await;
    assert_eq!(status, 200);
    assert_eq!(jobs["items"].as_array().unwrap().len(), 2);
    assert_eq!(jobs["next_cursor"], serde_json::Value::Null);
    let (_, queued) = s
        .get(&format!("/v1/batches/{batch}/jobs?state=queued"))
        .await;
    let queued = queued["items"].as_array().unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0]["id"], body["jobs"][0]["id"]);

    // Newest first.
    let (second, _) = s.submit_noops(1).await;
    let (status, list) = s.get("/v1/batches").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![second.as_str(), batch.as_str()]);
}

#[tokio::test]
async fn lists_page_with_cursors() {
    let s = Server::start().await;
    let (batch, jobs) = s.submit_noops(5).await;
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = if cursor.is_empty() {
            format!("/v1/batches/{batch}/jobs?limit=2")
        } else {
            format!("/v1/batches/{batch}/jobs?limit=2&cursor={cursor}")
        };
        let (status, page) = s.get(&path).await;
        assert_eq!(status, 200, "{page}");
        for j in page["items"].as_array().unwrap() {
            seen.push(j["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, jobs, "every job once, in submission order");

    s.submit_noops(1).await;
    s.submit_noops(1).await;
    let (_, first) = s.get("/v1/batches?limit=2").await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, rest) = s.get(&format!("/v1/batches?limit=2&cursor={cursor}")).await;
    let rest = rest["items"].as_array().unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["id"], batch.as_str(), "the oldest comes last");
}

#[tokio::test]
async fn cancelling_a_batch_then_again_conflicts() {
    let s = Server::start().await;
    let (batch, jobs) = s.submit_noops(3).await;
    let (status, body) = s.delete(&format!("/v1/batches/{batch}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cancelled"], 3);
    let (_, job) = s.get(&format!("/v1/jobs/{}", jobs[0])).await;
    assert_eq!(job["state"], "cancelled");
    let (_, b) = s.get(&format!("/v1/batches/{batch}")).await;
    assert_eq!(b["state"], "cancelled");
    let err = expect_error(
        &s.delete(&format!("/v1/batches/{batch}")).await,
        409,
        "already_finished",
    );
    assert!(err["message"].as_str().unwrap().contains(&batch));
}

#[tokio::test]
async fn unknown_batches_are_404_and_bad_ids_400() {
    let s = Server::start().await;
    let missing = uuid::Uuid::now_v7();
    for path in [
        format!("/v1/batches/{missing}"),
        format!("/v1/batches/{missing}/jobs"),
    ] {
        let err = expect_error(&s.get(&path).await, 404, "not_found");
        assert!(
            err["message"]
                .as_str()
                .unwrap()
                .contains(&missing.to_string())
        );
    }
    expect_error(
        &s.delete(&format!("/v1/batches/{missing}")).await,
        404,
        "not_found",
    );
    let err = expect_error(&s.get("/v1/batches/nope").await, 400, "bad_request");
    assert_eq!(err["message"], "batch id `nope` is not a UUID");
    let err = expect_error(&s.get("/v1/batches?state=done").await, 400, "bad_request");
    assert!(err["message"].as_str().unwrap().contains("state `done`"));
    let err = expect_error(&s.get("/v1/batches?limit=0").await, 400, "bad_request");
    assert!(err["message"].as_str().unwrap().contains("limit 0"));
    let err = expect_error(&s.get("/v1/batches?colour=red").await, 400, "bad_request");
    assert!(err["message"].as_str().unwrap().contains("colour"), "{err}");
}
