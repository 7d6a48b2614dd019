//! Tracing across a call: the client's request id travels in the
//! `x-request-id` metadata and the server opens its span from it, so the
//! client's span and the server's span of one call can be joined by one
//! field, `request.id`, even when they are logged by different processes.
//! (Across services one would carry OpenTelemetry's `traceparent` the same
//! way, with `tracing-opentelemetry` reading and writing it.)
//!
//! A contender's runtimes may get their own subscriber ([`Tracing`]), set
//! as the thread default on every runtime thread, so the experiment never
//! touches the process-wide one. With none they use the process-wide
//! default: nothing in a normal build, tokio-console's in the `console`
//! build (which then shows the `tonic` contender's tasks, not the other's).

use std::cell::RefCell;
use std::io;

use tokio::runtime::{Builder, Runtime};
use tracing::Dispatch;
use tracing::dispatcher::{self, DefaultGuard};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;

/// The metadata key that carries the request id.
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// What the runtimes' threads do with spans and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tracing {
    /// The process-wide default, which is no subscriber outside the
    /// `console` build: every span and event is a disabled no-op.
    Off,
    /// `tracing-subscriber`'s fmt layer at debug level for this crate,
    /// writing to `io::sink`: every span's fields and every event are
    /// formatted as they would be for a log file, without the disk.
    Fmt,
}

impl Tracing {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Tracing::Off => "tonic",
            Tracing::Fmt => "tonic + tracing",
        }
    }

    /// The subscriber for the contender's threads; `None`: the process's.
    pub(crate) fn dispatch(self) -> Option<Dispatch> {
        match self {
            Tracing::Off => None,
            Tracing::Fmt => Some(Dispatch::new(
                tracing_subscriber::registry()
                    .with(
                        tracing_subscriber::fmt::layer()
                            .with_ansi(false)
                            .with_writer(io::sink),
                    )
                    .with(Targets::new().with_target("sluice_lab", LevelFilter::DEBUG)),
            )),
        }
    }
}

thread_local! {
    /// Keeps a runtime thread's default subscriber set while it runs.
    static THREAD_DEFAULT: RefCell<Option<DefaultGuard>> = const { RefCell::new(None) };
}

/// A multi-thread runtime of `workers` threads whose threads (workers and
/// blocking threads) report to `dispatch`, if given. Run work on it with
/// `spawn`: the future given to `block_on` runs on the calling thread.
pub(crate) fn runtime(workers: usize, dispatch: Option<Dispatch>) -> io::Result<Runtime> {
    let mut builder = Builder::new_multi_thread();
    builder.worker_threads(workers).enable_all();
    if let Some(dispatch) = dispatch {
        builder
            .on_thread_start(move || {
                let guard = dispatcher::set_default(&dispatch);
                THREAD_DEFAULT.with(|g| *g.borrow_mut() = Some(guard));
            })
            .on_thread_stop(|| THREAD_DEFAULT.with(|g| drop(g.borrow_mut().take())));
    }
    builder.build()
}

/// The server's span for one request; tonic's `Server::trace_fn` calls it
/// with each request's head, and the request's future runs inside it.
pub(crate) fn server_span(request: &http::Request<()>) -> tracing::Span {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    tracing::info_span!(
        "rpc.server",
        rpc.method = request.uri().path(),
        request.id = id
    )
}

/// The client's span for one call.
pub(crate) fn client_span(request_id: u64) -> tracing::Span {
    tracing::info_span!(
        "rpc.client",
        rpc.method = "/lab.Adder/Add",
        request.id = request_id
    )
}
