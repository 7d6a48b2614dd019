//! Refused submissions: every problem named by job index and field, the
//! right status, and nothing stored.

use serde_json::{Value, json};

use crate::support::{Server, expect_error};

/// `(index, field)` of each problem in an error body.
fn problems(err: &Value) -> Vec<(Value, String)> {
    err["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| (p["index"].clone(), p["field"].as_str().unwrap().to_owned()))
        .collect()
}

async fn nothing_stored(s: &Server) {
    let (_, jobs) = s.get("/v1/jobs").await;
    assert_eq!(jobs["items"], json!([]), "a refused batch stored jobs");
    let (_, batches) = s.get("/v1/batches").await;
    assert_eq!(
        batches["items"],
        json!([]),
        "a refused batch stored a batch"
    );
}

#[tokio::test]
async fn every_problem_is_named_and_nothing_is_stored() {
    let s = Server::start().await;
    let answer = s
        .post(
            "/v1/batches",
            json!({"jobs": [
                {"kind": "noop"},
                {"kind": "teleport"},
                {"kind": "sleep", "args": {"ms": "long"}},
                {"kind": "noop", "depends_on": [4]},
                {"kind": "noop", "depends_on": [3]},
            ]}),
        )
        .await;
    let err = expect_error(&answer, 422, "invalid_submission");
    assert_eq!(
        problems(&err),
        vec![
            (json!(1), "kind".to_owned()),
            (json!(2), "args.ms".to_owned()),
            (json!(3), "depends_on".to_owned()),
        ]
    );
    let p = &err["problems"];
    assert!(p[0]["message"].as_str().unwrap().contains("teleport"));
    assert!(
        p[2]["message"]
            .as_str()
            .unwrap()
            .contains("cycle: 3 -> 4 -> 3")
    );
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("nothing was stored")
    );
    nothing_stored(&s).await;
}

#[tokio::test]
async fn too_many_jobs_is_refused_by_the_configured_limit() {
    let s = Server::with(|c| c.max_jobs_per_batch = 2).await;
    let answer = s
        .post(
            "/v1/batches",
            json!({"jobs": [{"kind": "noop"}, {"kind": "noop"}, {"kind": "noop"}]}),
        )
        .await;
    let err = expect_error(&answer, 422, "invalid_submission");
    assert_eq!(problems(&err), vec![(Value::Null, "jobs".to_owned())]);
    assert_eq!(err["problems"][0]["message"], "3 jobs, at most 2");
    nothing_stored(&s).await;
}

#[tokio::test]
async fn a_lone_job_is_validated_too() {
    let s = Server::start().await;
    let err = expect_error(
        &s.post("/v1/jobs", json!({"kind": "sleep", "args": {"ms": "x"}}))
            .await,
        422,
        "invalid_submission",
    );
    assert_eq!(problems(&err), vec![(json!(0), "args.ms".to_owned())]);
    nothing_stored(&s).await;
}

#[tokio::test]
async fn malformed_json_is_400_with_line_and_column() {
    let s = Server::start().await;
    let err = expect_error(
        &s.post_raw("/v1/batches", "{\"jobs\": [\n  {\"kind\": \"noop\",}\n]}")
            .await,
        400,
        "bad_request",
    );
    let msg = err["message"].as_str().unwrap();
    assert!(msg.contains("line 2 column"), "{msg}");
    let err = expect_error(
        &s.post_raw("/v1/batches", r#"{"jobs": [{"kind": "noop"}]} {}"#)
            .await,
        400,
        "bad_request",
    );
    assert!(
        err["message"].as_str().unwrap().contains("trailing"),
        "{err}"
    );
    let err = expect_error(&s.post_raw("/v1/batches", "").await, 400, "bad_request");
    assert_eq!(err["message"], "empty body: expected JSON");
    nothing_stored(&s).await;
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_422_with_its_path() {
    let s = Server::start().await;
    let err = expect_error(
        &s.post(
            "/v1/batches",
            json!({"jobs": [{"kind": "noop"}, {"kind": "noop", "priority": "high"}]}),
        )
        .await,
        422,
        "invalid_body",
    );
    let msg = err["message"].as_str().unwrap();
    assert!(msg.starts_with("`jobs[1].priority`"), "{msg}");
    let err = expect_error(
        &s.post("/v1/batches", json!({"jobz": []})).await,
        422,
        "invalid_body",
    );
    assert!(err["message"].as_str().unwrap().contains("jobz"), "{err}");
    nothing_stored(&s).await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let s = Server::with(|c| c.body_limit = 1024).await;
    let jobs: Vec<Value> = (0..100).map(|_| json!({"kind": "noop"})).collect();
    let err = expect_error(
        &s.post("/v1/batches", json!({ "jobs": jobs })).await,
        413,
        "body_too_large",
    );
    assert!(err["message"].as_str().unwrap().contains("1024"));
    nothing_stored(&s).await;
}
