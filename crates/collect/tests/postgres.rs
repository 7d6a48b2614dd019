//! The `postgres` sink against a real PostgreSQL (`SLUICE_TEST_POSTGRES_URL`):
//! batched inserts, idempotent by id, dead letters for records PostgreSQL
//! can never store, and a database that goes away (a proxy in the test cuts
//! every connection) and comes back with nothing lost or duplicated. Each
//! test writes its own table.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::PgPool;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use support::{p, service_url, start, unique, wait_until};

fn config(dir: &std::path::Path, url: &str, table: &str, max_records: usize) -> String {
    format!(
        r#"
data_dir = "{data}"

[sources.web]
kind = "http_push"
address = "127.0.0.1:0"
id_field = "id"
ack_timeout = "60s"

[sinks.pg]
kind = "postgres"
inputs = ["web"]
url = "{url}"
table = "{table}"
timeout = "2s"
max_record_size = "1KiB"
batch = {{ max_records = {max_records}, timeout = "10ms" }}
retry = {{ initial = "50ms", max = "200ms" }}
"#,
        data = p(&dir.join("data")),
    )
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .unwrap_or(-1)
}

fn body(ids: std::ops::Range<usize>) -> String {
    let v: Vec<serde_json::Value> = ids
        .map(|i| serde_json::json!({"id": format!("r{i}"), "n": i}))
        .collect();
    serde_json::Value::Array(v).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_idempotent_and_dead_letters() {
    let Some(url) = service_url("SLUICE_TEST_POSTGRES_URL", "PostgreSQL") else {
        return;
    };
    let pool = PgPool::connect(&url).await.unwrap();
    let table = unique("pgsink");
    let dir = tempfile::tempdir().unwrap();
    let run = start(&config(dir.path(), &url, &table, 500)).await;
    let push = format!("http://{}/", run.pipeline.local_addr("web").unwrap());
    let http = reqwest::Client::new();

    let r = http.post(&push).body(body(0..300)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // 200 means committed.
    assert_eq!(
        count(&pool, &format!("SELECT count(*) FROM {table}")).await,
        300
    );
    let n: i64 = sqlx::query_scalar(&format!(
        "SELECT (payload->>'n')::bigint FROM {table} WHERE record_id = 'r17'"
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(n, 17, "payload stored as JSONB");

    // The same records again, with new ones: only the new ones are added.
    let r = http.post(&push).body(body(250..350)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        count(&pool, &format!("SELECT count(*) FROM {table}")).await,
        350
    );

    // A NUL character and an oversized record go to the dead letters; the
    // rest of the request is written.
    let bad = serde_json::json!([
        {"id": "nul", "text": "a\u{0}b"},
        {"id": "ok1"},
        {"id": "big", "text": "x".repeat(2000)},
        {"id": "ok2"},
    ]);
    let r = http.post(&push).body(bad.to_string()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        count(&pool, &format!("SELECT count(*) FROM {table}")).await,
        352
    );
    assert_eq!(
        count(
            &pool,
            &format!("SELECT count(*) FROM {table}_dead_letters WHERE record_id IN ('nul', 'big')")
        )
        .await,
        2
    );
    let reason: String = sqlx::query_scalar(&format!(
        "SELECT error FROM {table}_dead_letters WHERE record_id = 'nul'"
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(reason.contains("NUL"), "{reason}");
    assert!(run.stop().await);
    for t in [format!("{table}_dead_letters"), table] {
        sqlx::query(&format!("DROP TABLE {t}"))
            .execute(&pool)
            .await
            .unwrap();
    }
}

/// A TCP proxy to PostgreSQL that can be cut: when down, it closes every
/// open connection and refuses new ones.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<JoinSet<()>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let conns = Arc::new(Mutex::new(JoinSet::new()));
        let (up2, conns2) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                conns2.lock().await.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Proxy { addr, up, conns }
    }

    async fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.conns.lock().await.abort_all();
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_down_then_back_loses_and_duplicates_nothing() {
    let Some(url) = service_url("SLUICE_TEST_POSTGRES_URL", "PostgreSQL") else {
        return;
    };
    let pool = PgPool::connect(&url).await.unwrap();
    let opts: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let target: SocketAddr =
        tokio::net::lookup_host(format!("{}:{}", opts.get_host(), opts.get_port()))
            .await
            .unwrap()
            .next()
            .unwrap();
    let proxy = Proxy::start(target).await;
    // The same database, through the proxy.
    let (scheme_user, rest) = url.split_once('@').unwrap();
    let (_, path) = rest.split_once('/').unwrap();
    let proxied = format!("{scheme_user}@{}/{path}", proxy.addr);

    let table = unique("pgdown");
    let dir = tempfile::tempdir().unwrap();
    let run = start(&config(dir.path(), &proxied, &table, 100)).await;
    let push = format!("http://{}/", run.pipeline.local_addr("web").unwrap());
    let http = reqwest::Client::new();

    let r = http.post(&push).body(body(0..200)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        count(&pool, &format!("SELECT count(*) FROM {table}")).await,
        200
    );

    proxy.down().await;
    let pending = tokio::spawn({
        let (http, push) = (http.clone(), push.clone());
        async move { http.post(&push).body(body(200..500)).send().await.unwrap() }
    });
    // The sink fails and retries while the database is away.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!pending.is_finished(), "no answer before the commit");
    assert_eq!(
        count(&pool, &format!("SELECT count(*) FROM {table}")).await,
        200
    );

    proxy.up();
    let r = pending.await.unwrap();
    assert_eq!(r.status(), 200);
    wait_until("every row", || async {
        count(&pool, &format!("SELECT count(*) FROM {table}")).await >= 500
    })
    .await;
    assert_eq!(
        count(
            &pool,
            &format!("SELECT count(DISTINCT record_id) FROM {table}")
        )
        .await,
        500
    );
    assert_eq!(
        count(&pool, &format!("SELECT count(*) FROM {table}")).await,
        500
    );
    assert!(run.stop().await);
    for t in [format!("{table}_dead_letters"), table] {
        sqlx::query(&format!("DROP TABLE {t}"))
            .execute(&pool)
            .await
            .unwrap();
    }
}
