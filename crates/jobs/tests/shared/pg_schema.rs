//! A PostgreSQL schema of its own for one test, shared by the test crates
//! (`#[path]`-included): created by the store that opens it, dropped at
//! the end even when the test panics.

use sluice_jobs::{PostgresConfig, PostgresStore};

/// The test server's URL, or `None` after saying the test is skipped.
pub(crate) fn postgres_url() -> Option<String> {
    match std::env::var("SLUICE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("skipping: SLUICE_TEST_POSTGRES_URL unset");
            None
        }
    }
}

/// A schema of its own for one test, dropped when the test ends (even by a
/// panic).
pub(crate) struct PgSchema {
    pub(crate) url: String,
    pub(crate) name: String,
}

impl PgSchema {
    pub(crate) fn new(url: String) -> Self {
        let name = format!("sluice_test_{}", uuid::Uuid::new_v4().simple());
        Self { url, name }
    }

    pub(crate) fn config(&self) -> PostgresConfig {
        PostgresConfig {
            schema: Some(self.name.clone()),
            max_connections: 4,
            ..PostgresConfig::new(self.url.clone())
        }
    }

    /// Another store on the same schema: another "process".
    pub(crate) async fn open(&self) -> PostgresStore {
        PostgresStore::open(self.config())
            .await
            .expect("open postgres store")
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be the one running
        // this: a thread of its own with its own runtime does the work.
        let (url, name) = (self.url.clone(), self.name.clone());
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(&url).await?;
                sqlx::query("SET lock_timeout = '10s'")
                    .execute(&mut c)
                    .await?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                    .execute(&mut c)
                    .await?;
                Ok::<_, sqlx::Error>(())
            })
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("could not drop schema {}: {done:?}", self.name);
        }
    }
}
