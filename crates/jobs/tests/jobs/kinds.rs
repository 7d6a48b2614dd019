//! Built-in kinds: checksum, http, exec.

use serde_json::json;
use sluice_jobs::kinds::HttpOptions;
use sluice_jobs::{JobSpec, JobState, SubmitError};

use crate::support::{Harness, TestServer};

#[tokio::test]
async fn checksum_hashes_files_with_sha256_and_blake3() {
    let h = Harness::new().await;
    let runner = h.runner(|_| {});
    let path = h.dir.path().join("abc.txt");
    std::fs::write(&path, "abc").unwrap();
    let p = path.to_str().unwrap();
    let sha = h
        .client
        .submit_job(&JobSpec::new(
            "checksum",
            json!({"path": p, "algo": "sha256"}),
        ))
        .await
        .unwrap();
    let b3 = h
        .client
        .submit_job(&JobSpec::new(
            "checksum",
            json!({"path": p, "algo": "blake3"}),
        ))
        .await
        .unwrap();
    let sha = h.wait_state(sha, JobState::Succeeded).await.result.unwrap();
    let b3 = h.wait_state(b3, JobState::Succeeded).await.result.unwrap();
    assert_eq!(
        sha["hex"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        b3["hex"],
        "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
    );
    assert_eq!(sha["bytes"], 3);
    let mut missing = JobSpec::new(
        "checksum",
        json!({"path": "/nonexistent/x", "algo": "sha256"}),
    );
    missing.max_attempts = Some(3);
    let id = h.client.submit_job(&missing).await.unwrap();
    let j = h.wait_state(id, JobState::Failed).await;
    assert_eq!(j.attempt, 1, "a missing file is a permanent error");
    runner.shutdown().await;
}

#[tokio::test]
async fn http_stores_status_timing_and_a_capped_body() {
    let server = TestServer::start().await;
    let h = Harness::with_http(HttpOptions {
        allow_hosts: None,
        max_body_bytes: 16,
    })
    .await;
    let runner = h.runner(|_| {});
    let big = h
        .client
        .submit_job(&JobSpec::new("http", json!({"url": server.url("/big")})))
        .await
        .unwrap();
    let r = h.wait_state(big, JobState::Succeeded).await.result.unwrap();
    assert_eq!(r["status"], 200);
    assert_eq!(r["body"], "x".repeat(16));
    assert_eq!(r["truncated"], true);
    assert!(r["elapsed_ms"].as_f64().unwrap() >= 0.0);

    let echo = JobSpec::new(
        "http",
        json!({"method": "POST", "url": server.url("/echo"), "body": "ping", "expect_status": 200,
               "headers": {"x-test": "1"}}),
    );
    let id = h.client.submit_job(&echo).await.unwrap();
    assert_eq!(
        h.wait_state(id, JobState::Succeeded).await.result.unwrap()["body"],
        "ping"
    );

    let mut wrong = JobSpec::new(
        "http",
        json!({"url": server.url("/status/503"), "expect_status": 200}),
    );
    wrong.max_attempts = Some(1);
    let id = h.client.submit_job(&wrong).await.unwrap();
    let j = h.wait_state(id, JobState::Failed).await;
    assert_eq!(j.errors[0].message, "status 503, expected 200");
    let mut not_found = JobSpec::new("http", json!({"url": server.url("/status/404")}));
    not_found.max_attempts = Some(3);
    let id = h.client.submit_job(&not_found).await.unwrap();
    assert_eq!(
        h.wait_state(id, JobState::Failed).await.attempt,
        1,
        "a 404 is not retried"
    );
    runner.shutdown().await;
}

#[tokio::test]
async fn http_allow_list_is_checked_at_submission() {
    let h = Harness::with_http(HttpOptions {
        allow_hosts: Some(vec!["api.example.com".into()]),
        max_body_bytes: 16,
    })
    .await;
    let err = h
        .client
        .submit_job(&JobSpec::new(
            "http",
            json!({"url": "http://127.0.0.1:9/x"}),
        ))
        .await;
    let Err(SubmitError::Invalid(p)) = err else {
        panic!("accepted: {err:?}")
    };
    assert_eq!(p[0].field, "args.url");
    assert!(p[0].message.contains("allow-list"));
    assert!(
        h.client
            .submit_job(&JobSpec::new(
                "http",
                json!({"url": "http://api.example.com/"})
            ))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn exec_captures_output_up_to_its_cap() {
    let h = Harness::new().await;
    let runner = h.runner(|_| {});
    let spec = JobSpec::new(
        "exec",
        json!({"argv": ["sh", "-c", "printf \"$GREETING\"; head -c 500 /dev/zero | tr '\\0' y"],
               "env": {"GREETING": "hi "}}),
    );
    let id = h.client.submit_job(&spec).await.unwrap();
    let r = h.wait_state(id, JobState::Succeeded).await.result.unwrap();
    let out = r["stdout"].as_str().unwrap();
    assert!(out.starts_with("hi yyy"), "{out}");
    assert_eq!(out.len(), 64, "capped at max_output_bytes");
    assert_eq!(
        (r["exit_code"].clone(), r["truncated"].clone()),
        (json!(0), json!(true))
    );

    let mut failing = JobSpec::new(
        "exec",
        json!({"argv": ["sh", "-c", "echo bad >&2; exit 3"]}),
    );
    failing.max_attempts = Some(1);
    let id = h.client.submit_job(&failing).await.unwrap();
    let j = h.wait_state(id, JobState::Failed).await;
    assert!(
        j.errors[0].message.contains("bad"),
        "{}",
        j.errors[0].message
    );
    runner.shutdown().await;
}

#[tokio::test]
async fn exec_is_unknown_unless_enabled() {
    let registry = sluice_jobs::Registry::with_builtins(Default::default());
    let h = Harness::new().await;
    let client = sluice_jobs::Client::new(h.dyn_store(), std::sync::Arc::new(registry));
    let err = client
        .submit_job(&JobSpec::new("exec", json!({"argv": ["true"]})))
        .await;
    let Err(SubmitError::Invalid(p)) = err else {
        panic!("accepted")
    };
    assert_eq!((p[0].index, p[0].field.as_str()), (Some(0), "kind"));
}
