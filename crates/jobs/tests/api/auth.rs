//! Bearer tokens: 401 without or with a wrong one, through with a right
//! one; `/healthz` open; `?access_token=` only on the event stream.

use crate::support::{Server, SseReader, expect_error};

async fn start() -> Server {
    Server::with(|c| c.tokens = vec!["alpha".into(), "beta".into()]).await
}

#[tokio::test]
async fn requests_need_an_accepted_token() {
    let s = start().await;
    let res = s.http.get(s.url("/v1/batches")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    expect_error(&s.get("/v1/jobs").await, 401, "unauthorized");
    expect_error(&s.get("/metrics").await, 401, "unauthorized");

    for wrong in ["Bearer gamma", "Bearer alph", "Basic YWxwaGE6", "Bearer "] {
        let res = s
            .http
            .get(s.url("/v1/batches"))
            .header("authorization", wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 401, "{wrong}");
    }
    for right in ["Bearer alpha", "bearer beta"] {
        let res = s
            .http
            .get(s.url("/v1/batches"))
            .header("authorization", right)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "{right}");
    }
}

#[tokio::test]
async fn healthz_and_the_document_are_open() {
    let s = start().await;
    let (status, body) = s.get("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    let (status, _) = s.get("/openapi.json").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_event_stream_takes_a_token_in_the_query() {
    let s = start().await;
    let res = s
        .http
        .get(s.url("/v1/events?access_token=beta"))
        .send()
        .await
        .unwrap();
    // Headers come at once; the stream itself is open.
    let _stream = SseReader::new(res);
    let res = s
        .http
        .get(s.url("/v1/events?access_token=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    // Only there: elsewhere a query token is not a credential.
    let res = s
        .http
        .get(s.url("/v1/batches?access_token=beta"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
}
