//! `/v1/jobs`: submit one, inspect, list, cancel, retry.

use serde_json::json;

use crate::support::{Server, expect_error};

#[tokio::test]
async fn a_lone_job_is_created_listed_and_cancelled() {
    let s = Server::start().await;
    let res = s
        .http
        .post(s.url("/v1/jobs"))
        .json(&json!({"kind": "sleep", "args": {"ms": 5}, "queue": "slow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let body: serde_json::Value = res.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/jobs/{id}"));

    let (status, job) = s.get(&location).await;
    assert_eq!(status, 200);
    assert_eq!(job["kind"], "sleep");
    assert_eq!(job["queue"], "slow");
    assert_eq!(job["state"], "queued");
    assert_eq!(job["batch_id"], serde_json::Value::Null);

    s.post("/v1/jobs", json!({"kind": "noop"})).await;
    let (_, sleeps) = s.get("/v1/jobs?kind=sleep").await;
    let sleeps = sleeps["items"].as_array().unwrap();
    assert_eq!(sleeps.len(), 1);
    assert_eq!(sleeps[0]["id"], id.as_str());
    let (_, all) = s.get("/v1/jobs?state=queued").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);

    let (status, body) = s.delete(&location).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cancelled"], 1);
    let (_, cancelled) = s.get("/v1/jobs?state=cancelled").await;
    assert_eq!(cancelled["items"].as_array().unwrap().len(), 1);
    expect_error(&s.delete(&location).await, 409, "already_finished");
}

#[tokio::test]
async fn a_finished_job_cannot_be_cancelled() {
    let s = Server::start().await;
    let runner = s.runner();
    let (_, jobs) = s.submit_noops(1).await;
    s.wait_job(&jobs[0], "succeeded").await;
    let err = expect_error(
        &s.delete(&format!("/v1/jobs/{}", jobs[0])).await,
        409,
        "already_finished",
    );
    assert!(err["message"].as_str().unwrap().contains(&jobs[0]));
    runner.shutdown().await;
}

#[tokio::test]
async fn retrying_a_failed_job_runs_it_again() {
    let s = Server::start().await;
    let runner = s.runner();
    let (status, body) = s
        .post(
            "/v1/jobs",
            json!({"kind": "flaky", "args": {"succeed_on": 2}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let failed = s.wait_job(&id, "failed").await;
    assert_eq!(failed["attempt"], 1);
    assert_eq!(failed["errors"][0]["message"], "failed attempt 1");

    let (status, job) = s.post(&format!("/v1/jobs/{id}/retry"), json!(null)).await;
    assert_eq!(status, 200, "{job}");
    let done = s.wait_job(&id, "succeeded").await;
    assert_eq!(done["attempt"], 2);
    assert_eq!(done["result"], json!({"attempt": 2}));

    let err = expect_error(
        &s.post(&format!("/v1/jobs/{id}/retry"), json!(null)).await,
        409,
        "not_retryable",
    );
    assert!(err["message"].as_str().unwrap().contains("succeeded"));
    runner.shutdown().await;
}

#[tokio::test]
async fn unknown_jobs_are_404() {
    let s = Server::start().await;
    let missing = uuid::Uuid::now_v7();
    let err = expect_error(
        &s.get(&format!("/v1/jobs/{missing}")).await,
        404,
        "not_found",
    );
    assert_eq!(err["message"], format!("no job {missing}"));
    expect_error(
        &s.delete(&format!("/v1/jobs/{missing}")).await,
        404,
        "not_found",
    );
    expect_error(
        &s.post(&format!("/v1/jobs/{missing}/retry"), json!(null))
            .await,
        404,
        "not_found",
    );
    let err = expect_error(&s.get("/v1/jobs/12").await, 400, "bad_request");
    assert_eq!(err["message"], "job id `12` is not a UUID");
    let err = expect_error(&s.get("/v1/jobs?state=done").await, 400, "bad_request");
    assert!(err["message"].as_str().unwrap().contains("timed_out"));
}

#[tokio::test]
async fn a_held_unique_key_answers_200_with_the_existing_job() {
    let s = Server::start().await;
    let spec = json!({"kind": "sleep", "args": {"ms": 5}, "unique_key": "nightly-report"});
    let (status, first) = s.post("/v1/jobs", spec.clone()).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["existing"], false);
    let (status, second) = s.post("/v1/jobs", spec).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["existing"], true);
    assert_eq!(second["id"], first["id"]);
    let (_, all) = s.get("/v1/jobs?kind=sleep").await;
    assert_eq!(
        all["items"].as_array().unwrap().len(),
        1,
        "nothing new stored"
    );
}
