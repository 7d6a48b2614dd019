//! `GET /v1/events`: job changes as Server-Sent Events.
//!
//! Each changed job is an event `job` whose `id:` is its change cursor
//! (`SEQ-UUID`); a stream of one batch also sends an event `batch` with the
//! batch's counts once at the start and, when they changed, after each
//! group of job events that catches up (not in the middle of a backlog).
//! The batch is read before the changes, so its counts are never newer than
//! the job events before it.
//! Batch events carry no `id:`, so the last event id a client holds is
//! always a job cursor. A client resumes with `Last-Event-ID` (browsers do
//! this by themselves) or `?after=`: it gets exactly the changes after that
//! cursor. A new stream without a cursor starts at the beginning: every job
//! of the filter once, at its latest state, then live changes. (So a batch
//! stream gives the full picture on connect; an unfiltered stream replays
//! every stored job, and should pass `after=now` to start at the present.)
//!
//! Work is bounded: a stream reads at most `events_page` changes per query
//! and yields them before reading more, so a slow client slows only its own
//! stream; it reads when the store's change watch ticks, but at most once
//! per `events_min_interval`, however often the store commits.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures_util::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::ApiQuery;
use super::{ApiError, ApiState, ids};
use crate::client::Client;
use crate::model::{BatchId, ErrorKind, Job, JobId, JobState, Timestamp};
use crate::store::{ChangeCursor, ChangeFilter};

pub(crate) fn routes() -> Router<ApiState> {
    Router::new().route("/v1/events", get(events))
}

/// Set by [`super::serve`]: cancelled when the server shuts down.
#[derive(Clone, Debug)]
pub(crate) struct StreamsEnd(pub(crate) CancellationToken);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    batch: Option<String>,
    job: Option<String>,
    after: Option<String>,
    /// Read by auth; accepted here so it is not an unknown parameter.
    #[serde(rename = "access_token")]
    _access_token: Option<String>,
}

/// The compact job of a `job` event: no args or result, which may be large.
#[derive(Serialize)]
struct JobEvent<'a> {
    id: JobId,
    batch_id: Option<BatchId>,
    kind: &'a str,
    queue: &'a str,
    state: JobState,
    attempt: u32,
    max_attempts: u32,
    progress: f64,
    /// The last attempt's error, if any.
    error: Option<ErrorSummary<'a>>,
    updated_at: Timestamp,
    finished_at: Option<Timestamp>,
}

#[derive(Serialize)]
struct ErrorSummary<'a> {
    kind: ErrorKind,
    message: &'a str,
}

impl<'a> From<&'a Job> for JobEvent<'a> {
    fn from(j: &'a Job) -> Self {
        Self {
            id: j.id,
            batch_id: j.batch_id,
            kind: &j.kind,
            queue: &j.queue,
            state: j.state,
            attempt: j.attempt,
            max_attempts: j.max_attempts,
            progress: j.progress,
            error: j.errors.last().map(|e| ErrorSummary {
                kind: e.kind,
                message: &e.message,
            }),
            updated_at: j.updated_at,
            finished_at: j.finished_at,
        }
    }
}

async fn events(
    State(state): State<ApiState>,
    ends: Option<axum::Extension<StreamsEnd>>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let filter = match (q.batch.as_deref(), q.job.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "pass `batch` or `job`, not both".into(),
            ));
        }
        (Some(b), None) => {
            let id = ids::batch_id(b)?;
            if state.client.batch(id).await?.is_none() {
                return Err(ApiError::NotFound(format!("no batch {id}")));
            }
            ChangeFilter::Batch(id)
        }
        (None, Some(j)) => {
            let id = ids::job_id(j)?;
            if state.client.job(id).await?.is_none() {
                return Err(ApiError::NotFound(format!("no job {id}")));
            }
            ChangeFilter::Job(id)
        }
        (None, None) => ChangeFilter::All,
    };
    // The header wins: it is what a reconnecting browser sends, and it is
    // newer than the `after` of the URL it first opened.
    let last_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::BadRequest("Last-Event-ID is not ASCII".into()))
        })
        .transpose()?;
    let after = match last_id.or(q.after.as_deref()) {
        // The present: only changes from now on (an overview that does
        // not want every stored job replayed).
        Some("now") => state.client.store().latest_change().await?,
        Some(s) if !s.is_empty() => Some(
            s.parse::<ChangeCursor>()
                .map_err(|e| ApiError::BadRequest(format!("event id: {e}")))?,
        ),
        _ => None,
    };
    let serve_end = ends.map(|axum::Extension(StreamsEnd(t))| t);
    let feed = Feed {
        client: state.client.clone(),
        filter,
        after,
        ticks: state.client.store().subscribe_changes(),
        page: state.config.events_page.max(1),
        min_interval: state.config.events_min_interval,
        last_read: None,
        snapshot: after.is_none() && matches!(filter, ChangeFilter::Batch(_)),
        more: true,
        recheck: false,
        sent_batch: None,
        ends: [Some(state.shutdown.clone()), serve_end],
        done: false,
    };
    let stream = stream::unfold(feed, |mut feed| async move {
        let events = feed.next().await?;
        Some((events, feed))
    })
    .flat_map(|events| stream::iter(events.into_iter().map(Ok)));
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(state.config.keep_alive)))
}

/// One stream's position and what it waits on.
struct Feed {
    client: Client,
    filter: ChangeFilter,
    after: Option<ChangeCursor>,
    ticks: watch::Receiver<u64>,
    page: u32,
    min_interval: Duration,
    last_read: Option<Instant>,
    /// A batch event is due before anything else.
    snapshot: bool,
    /// The last read filled a page: read again without waiting.
    more: bool,
    /// The last read found changes: read once more without waiting for a
    /// tick, because the batch read just before them may be older than
    /// they are, and the commit that finished the batch ticks no more.
    recheck: bool,
    /// The data of the last batch event sent; an unchanged batch is not
    /// sent again.
    sent_batch: Option<String>,
    /// Either ends the stream: the state's token, the server's.
    ends: [Option<CancellationToken>; 2],
    done: bool,
}

impl Feed {
    /// The next group of events; `None` ends the stream.
    async fn next(&mut self) -> Option<Vec<Event>> {
        loop {
            if self.done || self.ends.iter().flatten().any(|t| t.is_cancelled()) {
                return None;
            }
            if std::mem::take(&mut self.snapshot) {
                match self.batch().await {
                    Ok(Some(data)) => return Some(vec![self.batch_event(data)]),
                    Ok(None) => {}
                    Err(e) => return Some(vec![self.fail(e)]),
                }
            }
            if !self.more {
                let go = if std::mem::take(&mut self.recheck) {
                    self.throttle().await
                } else {
                    self.wait().await
                };
                if !go {
                    return None;
                }
            }
            // Marked seen before the read: a commit after it ticks again.
            self.ticks.borrow_and_update();
            self.last_read = Some(Instant::now());
            // The batch is read before its jobs' changes, so its counts
            // are never newer than the job events sent before it: a client
            // that sees the batch finished has seen every job's last change.
            let batch = match self.batch().await {
                Ok(b) => b,
                Err(e) => return Some(vec![self.fail(e)]),
            };
            let rows = match self
                .client
                .changes(self.filter, self.after, self.page)
                .await
            {
                Ok(rows) => rows,
                Err(e) => return Some(vec![self.fail(e.into())]),
            };
            self.more = rows.len() >= self.page as usize;
            self.recheck = !rows.is_empty();
            if let Some(&(last, _)) = rows.last() {
                self.after = Some(last);
            }
            let mut events: Vec<Event> = rows
                .iter()
                .filter_map(|(cursor, job)| {
                    Event::default()
                        .event("job")
                        .id(cursor.to_string())
                        .json_data(JobEvent::from(job))
                        .ok()
                })
                .collect();
            // Mid-backlog the counts would describe jobs not sent yet.
            if !self.more
                && let Some(data) = batch
                && self.sent_batch.as_ref() != Some(&data)
            {
                events.push(self.batch_event(data));
            }
            if !events.is_empty() {
                return Some(events);
            }
        }
    }

    /// Something that completes when the stream must end.
    fn ended(&self) -> impl std::future::Future<Output = ()> + use<> {
        let [a, b] = self.ends.clone();
        async move {
            match (a, b) {
                (Some(a), Some(b)) => tokio::select! {
                    _ = a.cancelled() => {},
                    _ = b.cancelled() => {},
                },
                (Some(t), None) | (None, Some(t)) => t.cancelled().await,
                (None, None) => std::future::pending().await,
            }
        }
    }

    /// Waits for a change tick, then for the throttle. `false` when the
    /// stream should end instead.
    async fn wait(&mut self) -> bool {
        let ended = self.ended();
        tokio::select! {
            _ = ended => return false,
            changed = self.ticks.changed() => {
                if changed.is_err() {
                    // The store closed: nothing more will change.
                    return false;
                }
            }
        }
        self.throttle().await
    }

    /// Waits until `min_interval` has passed since the last read. `false`
    /// when the stream should end instead.
    async fn throttle(&self) -> bool {
        let Some(last) = self.last_read else {
            return true;
        };
        tokio::select! {
            _ = self.ended() => false,
            _ = tokio::time::sleep_until(last + self.min_interval) => true,
        }
    }

    /// The batch as JSON, for a batch stream.
    async fn batch(&self) -> Result<Option<String>, ApiError> {
        let ChangeFilter::Batch(id) = self.filter else {
            return Ok(None);
        };
        let Some(batch) = self.client.batch(id).await? else {
            return Ok(None);
        };
        Ok(serde_json::to_string(&batch).ok())
    }

    /// A `batch` event, remembered as the last one sent.
    fn batch_event(&mut self, data: String) -> Event {
        let event = Event::default().event("batch").data(&data);
        self.sent_batch = Some(data);
        event
    }

    /// An `error` event; the stream ends after it and the client resumes
    /// from its last event id.
    fn fail(&mut self, e: ApiError) -> Event {
        self.done = true;
        if let ApiError::Internal(inner) = &e {
            tracing::error!(error = %inner, "event stream read failed");
        }
        let body = serde_json::json!({ "code": e.code(), "message": e.to_string() });
        Event::default().event("error").data(body.to_string())
    }
}
