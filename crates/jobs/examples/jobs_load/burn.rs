//! `burn-fill` keeps the server's CPU pool busy with `burn {ms}` jobs on a
//! queue of their own; `queued` reads how many jobs a queue still holds (the
//! async scenario checks that the burn queue did not run dry).

use std::time::Duration;

use serde_json::{Value, json};

use crate::args::{Error, Opts};
use crate::http::{Api, batch_body};

pub(crate) async fn fill(o: &Opts) -> Result<(Value, bool), Error> {
    let api = Api::new(&o.get::<String>("url", None)?)?;
    let n: usize = o.get("n", None)?;
    let burn_ms: u64 = o.get("ms", None)?;
    let queue: String = o.get("queue", Some("burn".to_owned()))?;
    api.wait_healthy(Duration::from_secs(30)).await?;
    let args = format!(r#"{{"ms":{burn_ms}}}"#);
    let mut ids = Vec::new();
    let mut left = n;
    while left > 0 {
        let size = left.min(1000);
        let ans = api
            .post("/v1/batches", batch_body(size, "burn", &args, Some(&queue)))
            .await?;
        ids.push(ans["batch_id"].as_str().unwrap_or_default().to_owned());
        left -= size;
    }
    Ok((
        json!({ "queued": n, "ms": burn_ms, "queue": queue, "batch_ids": ids }),
        true,
    ))
}

pub(crate) async fn queued(o: &Opts) -> Result<(Value, bool), Error> {
    let api = Api::new(&o.get::<String>("url", None)?)?;
    let queue: String = o.get("queue", None)?;
    let ans = api.get("/v1/queues").await?;
    let row = ans["queues"]
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["queue"] == queue.as_str()))
        .cloned()
        .unwrap_or_else(|| json!({ "queue": queue, "queued": 0, "running": 0 }));
    Ok((row, true))
}
