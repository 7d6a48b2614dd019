//! The collector's configuration: one TOML file of `[sources.NAME]`,
//! `[transforms.NAME]` and `[sinks.NAME]` tables, each with a `kind`.
//! [`Config::load`] reports every problem with its key path and line (see
//! `load`); each kind's keys are a struct that denies unknown keys.

mod load;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
pub use sluice_tomlspan::{ByteSize, Dur, Problem};

pub use load::ConfigError;

/// The whole collector configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where sources keep their durable positions (file checkpoints).
    pub data_dir: PathBuf,
    /// How long a shutdown may take to deliver what is in flight.
    pub drain_timeout: Dur,
    /// Capacity of each transform's and sink's input channel, in records.
    pub buffer: usize,
    /// Sources by name.
    pub sources: BTreeMap<String, SourceConfig>,
    /// Transforms by name.
    pub transforms: BTreeMap<String, TransformConfig>,
    /// Sinks by name.
    pub sinks: BTreeMap<String, SinkConfig>,
}

/// The top-level keys other than the component tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    #[serde(default = "default_data_dir")]
    pub(crate) data_dir: PathBuf,
    #[serde(default = "default_drain_timeout")]
    pub(crate) drain_timeout: Dur,
    #[serde(default = "default_buffer")]
    pub(crate) buffer: usize,
    // Read table by table by the loader, so each kind is checked on its own.
    #[serde(default, rename = "sources")]
    _sources: serde::de::IgnoredAny,
    #[serde(default, rename = "transforms")]
    _transforms: serde::de::IgnoredAny,
    #[serde(default, rename = "sinks")]
    _sinks: serde::de::IgnoredAny,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./sluice-data")
}
fn default_drain_timeout() -> Dur {
    Dur::secs(10)
}
fn default_buffer() -> usize {
    1000
}

/// What a source does when its output is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait: the source stops reading until there is room (the default).
    #[default]
    Block,
    /// Drop the record that does not fit, count it, and go on.
    DropNewest,
}

/// One source: its kind's settings plus the keys every source has.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceConfig {
    /// What to do when the output is full.
    pub when_full: WhenFull,
    /// The kind and its settings.
    pub kind: SourceKind,
}

/// The keys every source has, besides its kind's.
#[derive(Debug, Deserialize)]
pub(crate) struct SourceCommon {
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) when_full: WhenFull,
}

/// Source kinds.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceKind {
    /// Tail a file.
    File(FileSource),
    /// Newline-delimited records over TCP.
    Tcp(TcpSource),
    /// JSON and NDJSON pushed over HTTP.
    HttpPush(HttpPushSource),
    /// NATS core subjects or a JetStream pull consumer.
    Nats(NatsSource),
    /// MQTT subscriptions at QoS 1 with a persistent session.
    Mqtt(MqttSource),
    /// An HTTP URL polled on an interval, with a cursor.
    HttpPoll(HttpPollSource),
    /// A web crawl: one record per page.
    Crawl(CrawlSource),
}

impl SourceKind {
    /// The kind's name as written in the file.
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::File(_) => "file",
            SourceKind::Tcp(_) => "tcp",
            SourceKind::HttpPush(_) => "http_push",
            SourceKind::Nats(_) => "nats",
            SourceKind::Mqtt(_) => "mqtt",
            SourceKind::HttpPoll(_) => "http_poll",
            SourceKind::Crawl(_) => "crawl",
        }
    }
}

/// `kind = "file"`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    /// The file to tail.
    pub path: PathBuf,
    /// Where to start when there is no checkpoint: `beginning` or `end`.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// How often to look for new data at the end of the file.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Dur,
    /// Longest line emitted; longer lines are skipped and counted.
    #[serde(default = "default_max_line")]
    pub max_line_length: ByteSize,
}

/// Where a file source starts without a checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// From the first byte (the default).
    #[default]
    Beginning,
    /// From the end: only lines written from now on.
    End,
}

fn default_poll_interval() -> Dur {
    Dur::millis(250)
}
fn default_max_line() -> ByteSize {
    ByteSize(1 << 20)
}

/// `kind = "tcp"`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSource {
    /// Address to listen on, e.g. `"127.0.0.1:9500"`.
    pub address: SocketAddr,
    /// Longest line accepted; longer lines are skipped and counted.
    #[serde(default = "default_tcp_max_line")]
    pub max_line_length: ByteSize,
    /// Most connections at once; more wait to be accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_tcp_max_line() -> ByteSize {
    ByteSize(64 << 10)
}
fn default_max_connections() -> usize {
    256
}

/// `kind = "http_push"`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpPushSource {
    /// Address to listen on, e.g. `"127.0.0.1:9400"`.
    pub address: SocketAddr,
    /// The path records are POSTed to.
    #[serde(default = "default_push_path")]
    pub path: String,
    /// Largest request body; larger ones get 413.
    #[serde(default = "default_max_body")]
    pub max_body: ByteSize,
    /// How long a request waits for its records to be committed; then 503.
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout: Dur,
    /// A top-level string field of each JSON object to use as its stable id.
    #[serde(default)]
    pub id_field: Option<String>,
}

fn default_push_path() -> String {
    "/".to_owned()
}
fn default_max_body() -> ByteSize {
    ByteSize(1 << 20)
}
fn default_ack_timeout() -> Dur {
    Dur::secs(30)
}

/// One transform.
#[derive(Clone, Debug, PartialEq)]
pub struct TransformConfig {
    /// Sources and transforms it reads from.
    pub inputs: Vec<String>,
    /// The kind and its settings.
    pub kind: TransformKind,
}

/// The keys every transform and sink has, besides its kind's.
#[derive(Debug, Deserialize)]
pub(crate) struct WithInputs {
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) inputs: Vec<String>,
}

/// Transform kinds.
#[derive(Clone, Debug, PartialEq)]
pub enum TransformKind {
    /// Parse text payloads as JSON.
    ParseJson(ParseJson),
    /// Split text into one record per line.
    ParseLines(ParseLines),
    /// Rename, drop and add fields of JSON objects.
    Fields(Fields),
    /// Keep only records for which an expression is true.
    Filter(Filter),
}

/// `kind = "parse_json"`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseJson {
    /// Parse this string field of a JSON object instead of a text payload.
    #[serde(default)]
    pub field: Option<String>,
    /// Drop (and count) records that do not parse, instead of passing them on unchanged.
    #[serde(default)]
    pub drop_invalid: bool,
}

/// `kind = "parse_lines"`: one record per line of a text payload (or of a
/// string field of a JSON object), ids `ID:INDEX` when the record has an id.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseLines {
    /// Split this string field of a JSON object instead of a text payload;
    /// each line replaces the field in a copy of the object.
    #[serde(default)]
    pub field: Option<String>,
    /// Longest line passed on; longer lines are dropped and counted.
    #[serde(default = "default_max_line")]
    pub max_line_length: ByteSize,
    /// Pass on empty lines too (by default they are skipped).
    #[serde(default)]
    pub keep_empty: bool,
}

impl Default for ParseLines {
    fn default() -> Self {
        ParseLines {
            field: None,
            max_line_length: default_max_line(),
            keep_empty: false,
        }
    }
}

/// `kind = "fields"`: applied in the order rename, drop, add.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    /// Old name → new name.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Names to remove.
    #[serde(default)]
    pub drop: Vec<String>,
    /// Name → value to set (overwrites).
    #[serde(default)]
    pub add: BTreeMap<String, serde_json::Value>,
}

/// One sink.
#[derive(Clone, Debug, PartialEq)]
pub struct SinkConfig {
    /// Sources and transforms it reads from.
    pub inputs: Vec<String>,
    /// The kind and its settings.
    pub kind: SinkKind,
}

/// Sink kinds.
#[derive(Clone, Debug, PartialEq)]
pub enum SinkKind {
    /// Rows in an SQLite database.
    Sqlite(SqliteSink),
    /// JSON lines in rotating files.
    Jsonl(JsonlSink),
    /// JSON lines on standard output.
    Stdout(StdoutSink),
    /// Rows in a PostgreSQL table.
    Postgres(PostgresSink),
}

impl SinkKind {
    /// The kind's name as written in the file.
    pub fn name(&self) -> &'static str {
        match self {
            SinkKind::Sqlite(_) => "sqlite",
            SinkKind::Jsonl(_) => "jsonl",
            SinkKind::Stdout(_) => "stdout",
            SinkKind::Postgres(_) => "postgres",
        }
    }
}

/// When a sink writes: whichever limit is reached first.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// Most records per write.
    #[serde(default = "default_batch_records")]
    pub max_records: usize,
    /// Most payload bytes per write.
    #[serde(default = "default_batch_bytes")]
    pub max_bytes: ByteSize,
    /// Longest a record waits for its batch to fill.
    #[serde(default = "default_batch_timeout")]
    pub timeout: Dur,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            max_records: default_batch_records(),
            max_bytes: default_batch_bytes(),
            timeout: default_batch_timeout(),
        }
    }
}

fn default_batch_records() -> usize {
    1000
}
fn default_batch_bytes() -> ByteSize {
    ByteSize(1 << 20)
}
fn default_batch_timeout() -> Dur {
    Dur::millis(100)
}

/// How a sink retries a failed write.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// First wait.
    #[serde(default = "default_retry_initial")]
    pub initial: Dur,
    /// Longest wait.
    #[serde(default = "default_retry_max")]
    pub max: Dur,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            initial: default_retry_initial(),
            max: default_retry_max(),
        }
    }
}

fn default_retry_initial() -> Dur {
    Dur::millis(100)
}
fn default_retry_max() -> Dur {
    Dur::secs(30)
}

/// `kind = "sqlite"`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSink {
    /// The database file; created with its directory if missing.
    pub path: PathBuf,
    /// The table records go to; created if missing.
    #[serde(default = "default_table")]
    pub table: String,
    /// How long one write waits for a lock held by another connection
    /// before the batch fails and is retried.
    #[serde(default = "default_busy_timeout")]
    pub busy_timeout: Dur,
    /// Records larger than this go to the dead-letter table instead.
    #[serde(default = "default_max_record")]
    pub max_record_size: ByteSize,
    /// When to write.
    #[serde(default)]
    pub batch: Batch,
    /// How to retry.
    #[serde(default)]
    pub retry: Retry,
}

fn default_busy_timeout() -> Dur {
    Dur::secs(5)
}
fn default_table() -> String {
    "records".to_owned()
}
fn default_max_record() -> ByteSize {
    ByteSize(16 << 20)
}

/// `kind = "jsonl"`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlSink {
    /// The file appended to; its directory is created if missing.
    pub path: PathBuf,
    /// Rotate when the file would grow past this (`FILE` → `FILE.1` → `FILE.2` …).
    #[serde(default = "default_rotate_size")]
    pub max_size: ByteSize,
    /// Rotated files kept.
    #[serde(default = "default_max_files")]
    pub max_files: usize,
    /// Call fsync after each batch before acknowledging it.
    #[serde(default)]
    pub fsync: bool,
    /// When to write.
    #[serde(default)]
    pub batch: Batch,
    /// How to retry.
    #[serde(default)]
    pub retry: Retry,
}

fn default_rotate_size() -> ByteSize {
    ByteSize(100 << 20)
}
fn default_max_files() -> usize {
    5
}

/// `kind = "stdout"`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSink {
    /// When to write.
    #[serde(default)]
    pub batch: Batch,
}

/// `kind = "nats"`: core NATS subjects, or a JetStream pull consumer when
/// `jetstream` is set.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSource {
    /// Server URL, e.g. `"nats://127.0.0.1:4222"`.
    pub url: String,
    /// The subject to read (wildcards allowed): a core subscription, or the
    /// consumer's filter subject with JetStream.
    pub subject: String,
    /// Core NATS only: a queue group, so several collectors share the subject.
    #[serde(default)]
    pub queue_group: Option<String>,
    /// Read through a durable JetStream pull consumer instead.
    #[serde(default)]
    pub jetstream: Option<JetStream>,
    /// Client name shown by the server.
    #[serde(default = "default_nats_name")]
    pub client_name: String,
    /// How long connecting may take before the run fails (and is retried).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
}

fn default_nats_name() -> String {
    "sluice-collect".to_owned()
}
fn default_connect_timeout() -> Dur {
    Dur::secs(5)
}

/// The `jetstream` table of a `nats` source.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JetStream {
    /// The stream; created with `subjects = [subject]` if missing and
    /// `create_stream` is true.
    pub stream: String,
    /// The durable consumer's name; created if missing (explicit acks).
    pub consumer: String,
    /// Create the stream when it does not exist.
    #[serde(default = "default_true")]
    pub create_stream: bool,
    /// How long the server waits for an ack before redelivering (set when
    /// the consumer is created).
    #[serde(default = "default_ack_wait")]
    pub ack_wait: Dur,
    /// Most messages delivered and not yet acked (set when the consumer is created).
    #[serde(default = "default_max_ack_pending")]
    pub max_ack_pending: i64,
    /// Messages asked for per pull request.
    #[serde(default = "default_pull_batch")]
    pub pull_batch: usize,
}

fn default_true() -> bool {
    true
}
fn default_ack_wait() -> Dur {
    Dur::secs(30)
}
fn default_max_ack_pending() -> i64 {
    20_000
}
fn default_pull_batch() -> usize {
    500
}

/// `kind = "mqtt"`: subscriptions at QoS 1 under a persistent session.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSource {
    /// Broker URL, `mqtt://HOST:PORT` (port 1883 when left out).
    pub url: String,
    /// Topic filters to subscribe to (wildcards `+` and `#` allowed).
    pub topics: Vec<String>,
    /// The fixed client id: the broker keeps the session (subscriptions and
    /// unacknowledged messages) under it across restarts.
    pub client_id: String,
    /// Keep-alive interval.
    #[serde(default = "default_keep_alive")]
    pub keep_alive: Dur,
    /// Most QoS 1 messages the broker may have in flight to us.
    #[serde(default = "default_mqtt_inflight")]
    pub max_inflight: u16,
    /// Largest packet accepted.
    #[serde(default = "default_mqtt_max_packet")]
    pub max_packet_size: ByteSize,
    /// User name, if the broker wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password, with `username`.
    #[serde(default)]
    pub password: Option<String>,
}

fn default_keep_alive() -> Dur {
    Dur::secs(30)
}
fn default_mqtt_inflight() -> u16 {
    100
}
fn default_mqtt_max_packet() -> ByteSize {
    ByteSize(1 << 20)
}

/// `kind = "filter"`: keep the records for which `condition` is true.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// The expression, e.g. `.level == "error" and .status >= 500`.
    pub condition: String,
}

/// `kind = "postgres"`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSink {
    /// Connection URL, e.g. `"postgres://user@127.0.0.1:5432/db"`.
    pub url: String,
    /// The table records go to; created if missing.
    #[serde(default = "default_table")]
    pub table: String,
    /// Records larger than this go to the dead-letter table instead.
    #[serde(default = "default_max_record")]
    pub max_record_size: ByteSize,
    /// How long one connection attempt or statement may take before the
    /// batch fails and is retried.
    #[serde(default = "default_pg_timeout")]
    pub timeout: Dur,
    /// When to write.
    #[serde(default)]
    pub batch: Batch,
    /// How to retry.
    #[serde(default)]
    pub retry: Retry,
}

fn default_pg_timeout() -> Dur {
    Dur::secs(10)
}

/// `kind = "http_poll"`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpPollSource {
    /// The URL; `{{cursor}}` and `{{now}}` are filled in (URL-encoded) at each poll.
    pub url: String,
    /// Time from the start of one poll to the start of the next.
    #[serde(default = "default_poll_every")]
    pub interval: Dur,
    /// Up to this much is added at random to each interval (default: a tenth of it).
    #[serde(default)]
    pub jitter: Option<Dur>,
    /// Deadline of one poll, every page included.
    #[serde(default = "default_poll_timeout")]
    pub timeout: Dur,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON pointer to the records in each page (default: the body; an
    /// array gives one record per element).
    #[serde(default)]
    pub records: Option<String>,
    /// JSON pointer to the next cursor in the (last) page.
    #[serde(default)]
    pub cursor: Option<String>,
    /// A field of the last record to take as the next cursor instead.
    #[serde(default)]
    pub cursor_field: Option<String>,
    /// The cursor before anything was committed.
    #[serde(default)]
    pub initial_cursor: String,
    /// How to find the next page: `"link"` (the Link header) or a JSON pointer to a URL.
    #[serde(default)]
    pub next: Option<NextPage>,
    /// Most pages per poll.
    #[serde(default = "default_max_pages")]
    pub max_pages: usize,
    /// A top-level string or number field of each record to use as its stable id.
    #[serde(default)]
    pub id_field: Option<String>,
    /// A PEM file of CA certificates trusted for `https://` besides the
    /// built-in roots (a private CA, a self-signed server).
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
}

fn default_poll_every() -> Dur {
    Dur::secs(10)
}
fn default_poll_timeout() -> Dur {
    Dur::secs(10)
}
fn default_max_pages() -> usize {
    100
}

/// Where an `http_poll` source finds the next page.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum NextPage {
    /// The `Link: <URL>; rel="next"` response header.
    Link,
    /// A URL (absolute or relative) at this JSON pointer in the body.
    Pointer(String),
}

impl TryFrom<String> for NextPage {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s == "link" {
            Ok(NextPage::Link)
        } else if s.starts_with('/') {
            Ok(NextPage::Pointer(s))
        } else {
            Err(format!(
                "{s:?}: use \"link\" (the Link header) or a JSON pointer such as \"/next\""
            ))
        }
    }
}

/// `kind = "crawl"`: the crawler of `sluice crawl` as a source, one record
/// per page (its canonical URL is the record id). The frontier and seen set
/// live in `state` and a page is marked done only once its record is
/// committed, so a restart fetches no finished page again.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrawlSource {
    /// Seed URLs (absolute `http://` or `https://`).
    pub seeds: Vec<String>,
    /// Deepest link depth queued (seeds are 0); no limit when absent.
    #[serde(default)]
    pub depth: Option<u32>,
    /// Pages fetched at most, over every run of this state; no limit when absent.
    #[serde(default)]
    pub max_pages: Option<u64>,
    /// Requests in flight at once, over all hosts.
    #[serde(default = "default_crawl_concurrency")]
    pub concurrency: usize,
    /// Requests in flight at once to one host.
    #[serde(default = "default_per_host")]
    pub per_host: usize,
    /// Least gap between request starts to one host (a longer robots.txt
    /// Crawl-delay wins).
    #[serde(default = "default_crawl_delay")]
    pub delay: Dur,
    /// Domains (and their subdomains) whose links are followed; empty: the seeds' hosts.
    #[serde(default)]
    pub allow_domains: Vec<String>,
    /// The state database (frontier and seen set); default `DATA_DIR/crawl/NAME.db`.
    #[serde(default)]
    pub state: Option<PathBuf>,
    /// Obey robots.txt (Allow/Disallow, Crawl-delay) and read its sitemaps.
    #[serde(default = "default_true")]
    pub robots: bool,
    /// Media types (`text/html`, `text/*`) whose bodies are read.
    #[serde(default = "default_content_types")]
    pub content_types: Vec<String>,
    /// Put each page's body (UTF-8, lossily) in its record.
    #[serde(default)]
    pub include_body: bool,
    /// The `User-Agent` header; default `sluice/VERSION (crawler)`.
    #[serde(default)]
    pub user_agent: Option<String>,
    /// Limit on one request, body included.
    #[serde(default = "default_crawl_timeout")]
    pub timeout: Dur,
    /// Retries after the first attempt (network errors, 429, 5xx).
    #[serde(default = "default_crawl_retries")]
    pub retries: u32,
    /// First retry backoff; doubles each retry, with jitter.
    #[serde(default = "default_crawl_backoff")]
    pub backoff: Dur,
    /// Longest wait for one retry or Retry-After, and the largest Crawl-delay obeyed.
    #[serde(default = "default_crawl_max_wait")]
    pub max_wait: Dur,
    /// Redirects followed from one URL.
    #[serde(default = "default_max_redirects")]
    pub max_redirects: u32,
    /// Bytes of one body read at most.
    #[serde(default = "default_crawl_max_body")]
    pub max_body: ByteSize,
    /// A PEM file of CA certificates trusted for `https://` besides the
    /// built-in roots (a private CA, a self-signed server).
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
}

fn default_crawl_concurrency() -> usize {
    16
}
fn default_per_host() -> usize {
    8
}
fn default_crawl_delay() -> Dur {
    Dur::millis(0)
}
fn default_content_types() -> Vec<String> {
    vec!["text/html".to_owned()]
}
fn default_crawl_timeout() -> Dur {
    Dur::secs(30)
}
fn default_crawl_retries() -> u32 {
    3
}
fn default_crawl_backoff() -> Dur {
    Dur::millis(500)
}
fn default_crawl_max_wait() -> Dur {
    Dur::secs(60)
}
fn default_max_redirects() -> u32 {
    10
}
fn default_crawl_max_body() -> ByteSize {
    ByteSize(10 << 20)
}
