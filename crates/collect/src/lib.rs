//! sluice's data collector: a pipeline of sources → transforms → sinks from
//! one TOML file, each source under its own `tokio::select!` loop, bounded
//! channels with backpressure, and acknowledgements that flow back from the
//! sinks so a source commits its position only after its records are
//! written (at least once, end to end; idempotent by stable id in SQLite).
//!
//! Modules:
//! - `config`: the TOML shape, and [`Config::load`], which reports every
//!   problem with its key path and line.
//! - `record`: [`Record`] (source, timestamp, stable id, payload) and its
//!   [`Ack`] handle back to the source.
//! - `pipeline`: wiring, backpressure, source supervision, the drain
//!   ([`Pipeline`]), reloads ([`Handle::reload`]) and live counters ([`Stats`]).
//! - `sources`: `file`, `tcp`, `http_push`, `http_poll`, `nats`, `mqtt`,
//!   `crawl`, one file each.
//! - `transforms`: `parse_json`, `parse_lines`, `fields`, `filter`.
//! - `sinks`: the batching and retry loop; `sqlite`, `postgres`, `jsonl`,
//!   `stdout`.
//! - [`crawl`]: the web crawler behind `sluice crawl` ([`crawl::crawl`]).
//! - `tls`: extra CA certificates for the HTTP clients, and certificate
//!   failures told apart from other connect errors.

mod config;
pub mod crawl;
mod pipeline;
mod record;
mod sinks;
mod sources;
mod tls;
mod transforms;

pub use config::{
    Batch, ByteSize, Config, ConfigError, CrawlSource, Dur, Fields, FileSource, HttpPushSource,
    JsonlSink, ParseJson, Problem, ReadFrom, Retry, SinkConfig, SinkKind, SourceConfig, SourceKind,
    SqliteSink, StdoutSink, TcpSource, TransformConfig, TransformKind, WhenFull,
};
pub use config::{
    Filter, HttpPollSource, JetStream, MqttSource, NatsSource, NextPage, ParseLines, PostgresSink,
};
pub use pipeline::{Handle, Pipeline, ReloadReport, SinkStats, SourceStats, StartError, Stats};
pub use record::{Ack, Acked, Payload, Record};
