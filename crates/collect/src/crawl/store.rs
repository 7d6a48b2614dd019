//! The crawl's durable state in SQLite: every URL ever queued with its
//! depth and state (the frontier and the seen set in one table), and, when
//! the output is `sqlite://`, the page records too.
//!
//! A page's record and its URL's `done` mark (with the URLs it added to the
//! frontier) are committed together after the record is written, so after
//! a `kill -9` a resumed crawl re-queues only what was not finished: pages
//! in flight at the kill are fetched again, finished ones never are.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection};
use url::Url;

use super::frontier::Item;
use super::{Error, PageRecord};

/// A URL's state in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// In the frontier.
    Queued = 0,
    /// Fetched; its record is written.
    Fetched = 1,
    /// Not fetched: robots.txt disallows it.
    Denied = 2,
    /// Reached through a redirect from another queued URL and recorded there.
    Redirected = 3,
}

/// What a resumed crawl starts from.
pub(crate) struct Loaded {
    /// URLs still queued, in the order they were queued.
    pub(crate) queued: Vec<Item>,
    /// Every URL in the store that is not queued.
    pub(crate) finished: Vec<String>,
    /// How many pages were fetched (counts against `--max-pages`).
    pub(crate) fetched: u64,
}

/// A boxed `Send` future. The store's futures are boxed so that the
/// crawl future, which awaits them, is provably `Send` (rustc cannot see
/// through sqlx's executor lifetimes in a large async fn).
pub(crate) type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

fn store_error(path: &Path, source: sqlx::Error) -> Error {
    Error::Store {
        path: path.to_owned(),
        source,
    }
}

/// The open state database.
pub(crate) struct Store {
    conn: SqliteConnection,
    path: PathBuf,
    seq: i64,
}

impl Store {
    /// Opens (creating) the store at `path`; `fresh` forgets an earlier crawl.
    pub(crate) fn open(path: &Path, fresh: bool) -> Boxed<'_, Result<Store, Error>> {
        Box::pin(Store::open_inner(path, fresh))
    }

    async fn open_inner(path: &Path, fresh: bool) -> Result<Store, Error> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::Output {
                path: dir.to_owned(),
                source,
            })?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let mut conn = SqliteConnection::connect_with(&opts)
            .await
            .map_err(|e| store_error(path, e))?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS crawl_urls (
                url TEXT PRIMARY KEY,
                depth INTEGER NOT NULL,
                hops INTEGER NOT NULL,
                state INTEGER NOT NULL,
                seq INTEGER NOT NULL
            );
            CREATE INDEX IF NOT EXISTS crawl_urls_queued ON crawl_urls(state, seq);
            CREATE TABLE IF NOT EXISTS crawl_pages (
                url TEXT PRIMARY KEY,
                final_url TEXT NOT NULL,
                status INTEGER,
                depth INTEGER NOT NULL,
                fetched_at TEXT NOT NULL,
                content_type TEXT,
                title TEXT,
                content_hash TEXT,
                links TEXT NOT NULL,
                bytes INTEGER NOT NULL,
                error TEXT,
                body TEXT
            );",
        )
        .execute(&mut conn)
        .await
        .map_err(|e| store_error(path, e))?;
        if fresh {
            sqlx::query("DELETE FROM crawl_urls; DELETE FROM crawl_pages;")
                .execute(&mut conn)
                .await
                .map_err(|e| store_error(path, e))?;
        }
        let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM crawl_urls")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| store_error(path, e))?;
        Ok(Store {
            conn,
            path: path.to_owned(),
            seq,
        })
    }

    fn err(&self, source: sqlx::Error) -> Error {
        store_error(&self.path, source)
    }

    /// Reads the frontier and the finished URLs of an earlier crawl.
    pub(crate) fn load(&mut self) -> Boxed<'_, Result<Loaded, Error>> {
        Box::pin(self.load_inner())
    }

    async fn load_inner(&mut self) -> Result<Loaded, Error> {
        let rows = sqlx::query("SELECT url, depth, hops, state FROM crawl_urls ORDER BY seq")
            .fetch_all(&mut self.conn)
            .await
            .map_err(|e| self.err(e))?;
        let mut loaded = Loaded {
            queued: Vec::new(),
            finished: Vec::new(),
            fetched: 0,
        };
        for row in rows {
            let url: String = row.get(0);
            let state: i64 = row.get(3);
            if state == State::Queued as i64 {
                if let Ok(parsed) = Url::parse(&url) {
                    loaded.queued.push(Item {
                        url: parsed,
                        depth: row.get::<i64, _>(1) as u32,
                        hops: row.get::<i64, _>(2) as u32,
                    });
                }
            } else {
                if state == State::Fetched as i64 {
                    loaded.fetched += 1;
                }
                loaded.finished.push(url);
            }
        }
        Ok(loaded)
    }

    /// Queues URLs (seeds, sitemap entries) outside any page's commit.
    pub(crate) fn queue<'a>(&'a mut self, items: &'a [Item]) -> Boxed<'a, Result<(), Error>> {
        self.commit(&[], items, None)
    }

    /// One transaction: mark `finished` URLs, queue `new` ones, and upsert
    /// `page` (only when the page records live in this database).
    pub(crate) fn commit<'a>(
        &'a mut self,
        finished: &'a [(&'a str, State)],
        new: &'a [Item],
        page: Option<&'a PageRecord>,
    ) -> Boxed<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut seq = self.seq;
            let result = commit_tx(&mut self.conn, &mut seq, finished, new, page).await;
            result.map_err(|e| self.err(e))?;
            self.seq = seq;
            Ok(())
        })
    }
}

/// The body of [`Store::commit`], as a plain function: keeping the
/// transaction out of a closure or async block keeps the crawl future `Send`.
async fn commit_tx(
    conn: &mut SqliteConnection,
    seq: &mut i64,
    finished: &[(&str, State)],
    new: &[Item],
    page: Option<&PageRecord>,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    for (url, state) in finished {
        *seq += 1;
        sqlx::query(
            "INSERT INTO crawl_urls (url, depth, hops, state, seq) VALUES (?, 0, 0, ?, ?)
                 ON CONFLICT(url) DO UPDATE SET state = excluded.state",
        )
        .bind(*url)
        .bind(*state as i64)
        .bind(*seq)
        .execute(&mut *tx)
        .await?;
    }
    for item in new {
        *seq += 1;
        sqlx::query(
            "INSERT INTO crawl_urls (url, depth, hops, state, seq) VALUES (?, ?, ?, 0, ?)
                 ON CONFLICT(url) DO NOTHING",
        )
        .bind(item.url.as_str())
        .bind(i64::from(item.depth))
        .bind(i64::from(item.hops))
        .bind(*seq)
        .execute(&mut *tx)
        .await?;
    }
    if let Some(p) = page {
        let links = serde_json::to_string(&p.links).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO crawl_pages (url, final_url, status, depth, fetched_at,
                    content_type, title, content_hash, links, bytes, error, body)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT(url) DO UPDATE SET final_url = excluded.final_url,
                    status = excluded.status, depth = excluded.depth,
                    fetched_at = excluded.fetched_at, content_type = excluded.content_type,
                    title = excluded.title, content_hash = excluded.content_hash,
                    links = excluded.links, bytes = excluded.bytes,
                    error = excluded.error, body = excluded.body",
        )
        .bind(&p.url)
        .bind(&p.final_url)
        .bind(p.status.map(i64::from))
        .bind(i64::from(p.depth))
        .bind(&p.fetched_at)
        .bind(&p.content_type)
        .bind(&p.title)
        .bind(&p.content_hash)
        .bind(links)
        .bind(p.bytes as i64)
        .bind(&p.error)
        .bind(&p.body)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}
