//! Reading a collector config and reporting every problem with its key path
//! and line.
//!
//! The text is parsed once into toml's spanned document. The top-level keys
//! deserialize as [`Settings`]; then each `[sources.NAME]`,
//! `[transforms.NAME]` and `[sinks.NAME]` table is read on its own: its
//! common keys (`kind`, `inputs`, `when_full`), then the rest as its kind's
//! struct, so an unknown kind or key in one component never hides a problem
//! in another. Last come the checks across components (inputs that name
//! nothing, cycles, sinks without inputs), whose paths are mapped back to
//! lines. Problems come out in file order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::de::DeserializeOwned;
use sluice_tomlspan::{
    Deserialized, KeyPath, Problem, SpanIndex, deserialize_all, render, syntax_problems,
};
use toml::Spanned;
use toml::de::DeTable;

use super::{
    Config, Settings, SinkConfig, SinkKind, SourceCommon, SourceConfig, SourceKind,
    TransformConfig, TransformKind, WithInputs,
};

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid config: every problem, in file order, one per
    /// line as `FILE:LINE: KEY.PATH: message`.
    #[error("{}", render(file, problems))]
    Invalid {
        /// The file (or `<string>`).
        file: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems, if the file was readable.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

const NO_INPUTS: &str = "needs at least one input: inputs = [\"SOURCE_OR_TRANSFORM\", …]";
const SOURCE_KINDS: &[&str] = &[
    "file",
    "tcp",
    "http_push",
    "nats",
    "mqtt",
    "http_poll",
    "crawl",
];
const TRANSFORM_KINDS: &[&str] = &["parse_json", "parse_lines", "fields", "filter"];
const SINK_KINDS: &[&str] = &["sqlite", "jsonl", "stdout", "postgres"];

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parse and validate config text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        match check(text) {
            (Some(config), problems) if problems.is_empty() => Ok(config),
            (_, problems) => Err(ConfigError::Invalid {
                file: file.to_owned(),
                problems,
            }),
        }
    }

    /// Every problem across components (inputs naming nothing, cycles,
    /// sinks without inputs, impossible values), without lines: a `Config`
    /// built in code has no file. [`Config::parse`] runs the same checks.
    pub fn validate(&self) -> Vec<Problem> {
        issues(self)
            .into_iter()
            .map(|(path, message)| Problem {
                path: path.to_string(),
                line: None,
                message,
            })
            .collect()
    }
}

struct Loader<'a> {
    index: &'a SpanIndex,
    problems: Vec<Problem>,
    /// Components that did not deserialize: later checks stay quiet about them.
    broken: BTreeSet<String>,
    /// What broken transforms and sinks read: those are not "going nowhere".
    broken_inputs: BTreeSet<String>,
}

impl Loader<'_> {
    fn problem(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_string(),
            line: self.index.line_of(path),
            message: message.into(),
        });
    }

    fn de<T: DeserializeOwned>(&mut self, table: Spanned<DeTable<'_>>) -> Option<T> {
        let Deserialized {
            value, problems, ..
        } = deserialize_all::<T>(table, self.index);
        let clean = problems.is_empty();
        self.problems.extend(problems);
        value.filter(|_| clean)
    }

    /// The named tables of one section, each as its path, name and table.
    fn section<'d>(
        &mut self,
        doc: &'d DeTable<'d>,
        key: &str,
    ) -> Vec<(KeyPath, String, Spanned<DeTable<'d>>)> {
        let at = KeyPath::root().key(key);
        let Some(v) = doc.get(key) else {
            return Vec::new();
        };
        let Some(t) = v.get_ref().as_table() else {
            self.problem(&at, format!("must be a table of named {key}"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, v) in t.iter() {
            let name = name.get_ref().to_string();
            let path = at.key(&name);
            match v.get_ref().as_table() {
                Some(table) => out.push((path, name, Spanned::new(v.span(), table.clone()))),
                None => {
                    self.problem(&path, format!("must be a table: [{key}.{name}]"));
                    self.broken.insert(name);
                }
            }
        }
        out
    }

    fn unknown_kind(&mut self, path: &KeyPath, kind: &str, known: &[&str]) {
        let message = format!(
            "unknown kind `{kind}`; expected one of {}",
            known.join(", ")
        );
        self.problem(&path.key("kind"), message);
    }
}

/// `table` without `keys`, for its kind's struct.
fn without<'d>(table: &Spanned<DeTable<'d>>, keys: &[&str]) -> Spanned<DeTable<'d>> {
    let mut t = table.get_ref().clone();
    let found: Vec<_> = t
        .keys()
        .filter(|k| {
            let name: &str = k.get_ref();
            keys.contains(&name)
        })
        .cloned()
        .collect();
    for k in found {
        t.remove(&k);
    }
    Spanned::new(table.span(), t)
}

fn check(text: &str) -> (Option<Config>, Vec<Problem>) {
    let (doc, syntax) = DeTable::parse_recoverable(text);
    let index = SpanIndex::build(doc.get_ref(), text);
    if !syntax.is_empty() {
        return (None, syntax_problems(&syntax, &index));
    }
    let mut l = Loader {
        index: &index,
        problems: Vec::new(),
        broken: BTreeSet::new(),
        broken_inputs: BTreeSet::new(),
    };
    let settings: Option<Settings> = l.de(doc.clone());
    let root = doc.get_ref();

    let mut sources = BTreeMap::new();
    for (path, name, table) in l.section(root, "sources") {
        let Some(common) = l.de::<SourceCommon>(table.clone()) else {
            l.broken.insert(name);
            continue;
        };
        let rest = without(&table, &["kind", "when_full"]);
        let kind = match common.kind.as_str() {
            "file" => l.de(rest).map(SourceKind::File),
            "tcp" => l.de(rest).map(SourceKind::Tcp),
            "http_push" => l.de(rest).map(SourceKind::HttpPush),
            "nats" => l.de(rest).map(SourceKind::Nats),
            "mqtt" => l.de(rest).map(SourceKind::Mqtt),
            "http_poll" => l.de(rest).map(SourceKind::HttpPoll),
            "crawl" => l.de(rest).map(SourceKind::Crawl),
            other => {
                l.unknown_kind(&path, other, SOURCE_KINDS);
                None
            }
        };
        match kind {
            Some(kind) => {
                sources.insert(
                    name,
                    SourceConfig {
                        when_full: common.when_full,
                        kind,
                    },
                );
            }
            None => {
                l.broken.insert(name);
            }
        }
    }

    let mut transforms = BTreeMap::new();
    for (path, name, table) in l.section(root, "transforms") {
        let Some(common) = l.de::<WithInputs>(table.clone()) else {
            l.broken.insert(name);
            continue;
        };
        let rest = without(&table, &["kind", "inputs"]);
        let kind = match common.kind.as_str() {
            "parse_json" => l.de(rest).map(TransformKind::ParseJson),
            "parse_lines" => l.de(rest).map(TransformKind::ParseLines),
            "fields" => l.de(rest).map(TransformKind::Fields),
            "filter" => l.de(rest).map(TransformKind::Filter),
            other => {
                l.unknown_kind(&path, other, TRANSFORM_KINDS);
                None
            }
        };
        match kind {
            Some(kind) => {
                transforms.insert(
                    name,
                    TransformConfig {
                        inputs: common.inputs,
                        kind,
                    },
                );
            }
            None => {
                if common.inputs.is_empty() {
                    l.problem(&path.key("inputs"), NO_INPUTS);
                }
                l.broken_inputs.extend(common.inputs);
                l.broken.insert(name);
            }
        }
    }

    let mut sinks = BTreeMap::new();
    for (path, name, table) in l.section(root, "sinks") {
        let Some(common) = l.de::<WithInputs>(table.clone()) else {
            l.broken.insert(name);
            continue;
        };
        let rest = without(&table, &["kind", "inputs"]);
        let kind = match common.kind.as_str() {
            "sqlite" => l.de(rest).map(SinkKind::Sqlite),
            "jsonl" => l.de(rest).map(SinkKind::Jsonl),
            "stdout" => l.de(rest).map(SinkKind::Stdout),
            "postgres" => l.de(rest).map(SinkKind::Postgres),
            other => {
                l.unknown_kind(&path, other, SINK_KINDS);
                None
            }
        };
        match kind {
            Some(kind) => {
                sinks.insert(
                    name,
                    SinkConfig {
                        inputs: common.inputs,
                        kind,
                    },
                );
            }
            None => {
                if common.inputs.is_empty() {
                    l.problem(&path.key("inputs"), NO_INPUTS);
                }
                l.broken_inputs.extend(common.inputs);
                l.broken.insert(name);
            }
        }
    }

    let config = settings.map(|s| Config {
        data_dir: s.data_dir,
        drain_timeout: s.drain_timeout,
        buffer: s.buffer,
        sources,
        transforms,
        sinks,
    });
    if let Some(config) = &config {
        let broken = l.broken.clone();
        let fed = l.broken_inputs.clone();
        for (path, message) in issues_with(config, &broken, &fed) {
            l.problem(&path, message);
        }
    }
    let mut problems = l.problems;
    // Stable: problems on one line keep the order they were found in.
    problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    (config.filter(|_| problems.is_empty()), problems)
}

fn issues(config: &Config) -> Vec<(KeyPath, String)> {
    issues_with(config, &BTreeSet::new(), &BTreeSet::new())
}

/// Checks across components. `broken` names components that failed to
/// deserialize: they exist, so inputs naming them are not reported again.
fn issues_with(
    config: &Config,
    broken: &BTreeSet<String>,
    broken_inputs: &BTreeSet<String>,
) -> Vec<(KeyPath, String)> {
    let mut out = Vec::new();
    let root = KeyPath::root();
    if config.buffer == 0 {
        out.push((root.key("buffer"), "must be at least 1".to_owned()));
    }
    if config.drain_timeout.0.is_zero() {
        out.push((
            root.key("drain_timeout"),
            "must be longer than zero".to_owned(),
        ));
    }
    if config.sources.is_empty() && broken.is_empty() {
        out.push((
            root.key("sources"),
            "no sources: add a [sources.NAME] table".to_owned(),
        ));
    }
    if config.sinks.is_empty() && broken.is_empty() {
        out.push((
            root.key("sinks"),
            "no sinks: add a [sinks.NAME] table".to_owned(),
        ));
    }

    // One namespace for every component: inputs name them without a section.
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    let sections = [
        ("sources", config.sources.keys().collect::<Vec<_>>()),
        ("transforms", config.transforms.keys().collect()),
        ("sinks", config.sinks.keys().collect()),
    ];
    for (section, names) in &sections {
        for name in names {
            if let Some(first) = seen.insert(name.as_str(), *section) {
                out.push((
                    root.key(section).key(name),
                    format!("the name `{name}` is also used in [{first}]; names must be unique across sources, transforms and sinks"),
                ));
            }
        }
    }

    let readable: BTreeSet<&str> = config
        .sources
        .keys()
        .chain(config.transforms.keys())
        .map(String::as_str)
        .collect();
    let mut fed: BTreeSet<&str> = broken_inputs.iter().map(String::as_str).collect();
    let consumers = config
        .transforms
        .iter()
        .map(|(n, t)| ("transforms", n, &t.inputs))
        .chain(config.sinks.iter().map(|(n, s)| ("sinks", n, &s.inputs)));
    for (section, name, inputs) in consumers {
        let at = root.key(section).key(name).key("inputs");
        if inputs.is_empty() {
            out.push((at.clone(), NO_INPUTS.to_owned()));
        }
        let mut dup = BTreeSet::new();
        for (i, input) in inputs.iter().enumerate() {
            fed.insert(input.as_str());
            if !dup.insert(input) {
                out.push((at.index(i), format!("`{input}` is listed twice")));
            } else if input == name {
                out.push((
                    at.index(i),
                    "a component cannot read its own output".to_owned(),
                ));
            } else if config.sinks.contains_key(input) {
                out.push((
                    at.index(i),
                    format!("`{input}` is a sink; inputs name sources and transforms"),
                ));
            } else if !readable.contains(input.as_str()) && !broken.contains(input) {
                let defined: Vec<&str> = readable.iter().copied().collect();
                out.push((
                    at.index(i),
                    format!(
                        "no source or transform named `{input}`; defined: {}",
                        if defined.is_empty() {
                            "none".to_owned()
                        } else {
                            defined.join(", ")
                        }
                    ),
                ));
            }
        }
    }
    for name in config.sources.keys().chain(config.transforms.keys()) {
        if !fed.contains(name.as_str()) {
            let section = if config.sources.contains_key(name) {
                "sources"
            } else {
                "transforms"
            };
            out.push((
                root.key(section).key(name),
                "its records go nowhere: name it in some transform's or sink's inputs".to_owned(),
            ));
        }
    }
    cycles(config, &mut out);
    for (name, s) in &config.sources {
        source(&root.key("sources").key(name), s, &mut out);
    }
    let mut listens = BTreeMap::new();
    for (name, s) in &config.sources {
        let addr = match &s.kind {
            SourceKind::Tcp(t) => t.address,
            SourceKind::HttpPush(h) => h.address,
            SourceKind::File(_)
            | SourceKind::Nats(_)
            | SourceKind::Mqtt(_)
            | SourceKind::HttpPoll(_)
            | SourceKind::Crawl(_) => continue,
        };
        if addr.port() != 0
            && let Some(first) = listens.insert(addr, name)
        {
            out.push((
                root.key("sources").key(name).key("address"),
                format!("{addr} is also the address of source `{first}`"),
            ));
        }
    }
    for (name, s) in &config.sinks {
        sink(&root.key("sinks").key(name), s, &mut out);
    }
    for (name, t) in &config.transforms {
        transform(&root.key("transforms").key(name), t, &mut out);
    }
    out
}

fn transform(at: &KeyPath, t: &TransformConfig, out: &mut Vec<(KeyPath, String)>) {
    if let TransformKind::ParseLines(p) = &t.kind
        && p.max_line_length.0 == 0
    {
        out.push((at.key("max_line_length"), "must be at least 1".to_owned()));
    }
    if let TransformKind::Filter(f) = &t.kind
        && let Err(e) = crate::transforms::Expr::parse(&f.condition)
    {
        out.push((at.key("condition"), e.to_string()));
    }
}

fn plain_sql_name(at: &KeyPath, table: &str, out: &mut Vec<(KeyPath, String)>) {
    let ok = !table.is_empty()
        && !table.starts_with(|c: char| c.is_ascii_digit())
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        out.push((
            at.key("table"),
            format!("{table:?} is not a plain SQL name (letters, digits, _)"),
        ));
    }
}

fn url_scheme(at: &KeyPath, url: &str, schemes: &[&str], out: &mut Vec<(KeyPath, String)>) {
    let ok = url
        .split_once("://")
        .is_some_and(|(s, rest)| schemes.contains(&s) && !rest.is_empty());
    if !ok {
        out.push((
            at.key("url"),
            format!("{url:?} is not a URL of scheme {}", schemes.join(" or ")),
        ));
    }
}

fn cycles(config: &Config, out: &mut Vec<(KeyPath, String)>) {
    // Depth-first over transforms; sources and sinks cannot be on a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        name: &'a str,
        config: &'a Config,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
        found: &mut Vec<Vec<&'a str>>,
    ) {
        match marks.get(name) {
            Some(Mark::Done) => return,
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|s| *s == name).unwrap_or(0);
                found.push(stack[start..].to_vec());
                return;
            }
            None => {}
        }
        let Some(t) = config.transforms.get(name) else {
            return;
        };
        marks.insert(name, Mark::Visiting);
        stack.push(name);
        for input in &t.inputs {
            if input != name {
                visit(input, config, marks, stack, found);
            }
        }
        stack.pop();
        marks.insert(name, Mark::Done);
    }
    let mut marks = BTreeMap::new();
    let mut found = Vec::new();
    for name in config.transforms.keys() {
        visit(name, config, &mut marks, &mut Vec::new(), &mut found);
    }
    for cycle in found {
        let mut shown: Vec<&str> = cycle.iter().rev().copied().collect();
        shown.push(shown[0]);
        out.push((
            KeyPath::root()
                .key("transforms")
                .key(cycle[0])
                .key("inputs"),
            format!("inputs form a cycle: {}", shown.join(" -> ")),
        ));
    }
}

fn source(at: &KeyPath, s: &SourceConfig, out: &mut Vec<(KeyPath, String)>) {
    match &s.kind {
        SourceKind::File(f) => {
            if f.max_line_length.0 == 0 {
                out.push((at.key("max_line_length"), "must be at least 1".to_owned()));
            }
            if f.poll_interval.0.is_zero() {
                out.push((
                    at.key("poll_interval"),
                    "must be longer than zero".to_owned(),
                ));
            }
            if f.path.as_os_str().is_empty() {
                out.push((at.key("path"), "must not be empty".to_owned()));
            }
        }
        SourceKind::Tcp(t) => {
            if t.max_line_length.0 == 0 {
                out.push((at.key("max_line_length"), "must be at least 1".to_owned()));
            }
            if t.max_connections == 0 {
                out.push((at.key("max_connections"), "must be at least 1".to_owned()));
            }
        }
        SourceKind::HttpPush(h) => {
            if s.when_full == super::WhenFull::DropNewest {
                out.push((
                    at.key("when_full"),
                    "does not apply to http_push, which answers 503 when full (the sender keeps the records)".to_owned(),
                ));
            }
            if !h.path.starts_with('/') {
                out.push((at.key("path"), format!("must start with '/': {:?}", h.path)));
            }
            if h.max_body.0 == 0 {
                out.push((at.key("max_body"), "must be at least 1".to_owned()));
            }
            if h.ack_timeout.0.is_zero() {
                out.push((at.key("ack_timeout"), "must be longer than zero".to_owned()));
            }
        }
        SourceKind::Nats(n) => {
            url_scheme(at, &n.url, &["nats", "tls"], out);
            if n.subject.is_empty() || n.subject.contains(char::is_whitespace) {
                out.push((
                    at.key("subject"),
                    format!("{:?} is not a NATS subject", n.subject),
                ));
            }
            if n.connect_timeout.0.is_zero() {
                out.push((
                    at.key("connect_timeout"),
                    "must be longer than zero".to_owned(),
                ));
            }
            if let Some(js) = &n.jetstream {
                if n.queue_group.is_some() {
                    out.push((
                        at.key("queue_group"),
                        "applies to core NATS only; a JetStream consumer is shared by name"
                            .to_owned(),
                    ));
                }
                for (key, v) in [("stream", &js.stream), ("consumer", &js.consumer)] {
                    let ok = !v.is_empty()
                        && !v.contains(|c: char| c.is_whitespace() || ".*>/\\".contains(c));
                    if !ok {
                        out.push((
                            at.key("jetstream").key(key),
                            format!(
                                "{v:?} is not a JetStream name (no spaces, '.', '*', '>', '/')"
                            ),
                        ));
                    }
                }
                let at = at.key("jetstream");
                if js.ack_wait.0.is_zero() {
                    out.push((at.key("ack_wait"), "must be longer than zero".to_owned()));
                }
                if js.max_ack_pending < 1 {
                    out.push((at.key("max_ack_pending"), "must be at least 1".to_owned()));
                }
                if js.pull_batch == 0 {
                    out.push((at.key("pull_batch"), "must be at least 1".to_owned()));
                }
            }
        }
        SourceKind::HttpPoll(h) => {
            url_scheme(at, &h.url, &["http", "https"], out);
            if h.interval.0.is_zero() {
                out.push((at.key("interval"), "must be longer than zero".to_owned()));
            }
            if h.timeout.0.is_zero() {
                out.push((at.key("timeout"), "must be longer than zero".to_owned()));
            }
            if h.max_pages == 0 {
                out.push((at.key("max_pages"), "must be at least 1".to_owned()));
            }
            for (key, p) in [("records", &h.records), ("cursor", &h.cursor)] {
                if let Some(p) = p
                    && !p.is_empty()
                    && !p.starts_with('/')
                {
                    out.push((
                        at.key(key),
                        format!("{p:?} is not a JSON pointer (\"\" or \"/a/b\")"),
                    ));
                }
            }
            if h.cursor.is_some() && h.cursor_field.is_some() {
                out.push((
                    at.key("cursor_field"),
                    "give cursor or cursor_field, not both".to_owned(),
                ));
            }
            ca_cert(at, h.ca_cert.as_ref(), out);
        }
        SourceKind::Crawl(c) => crawl(at, c, out),
        SourceKind::Mqtt(m) => {
            url_scheme(at, &m.url, &["mqtt", "tcp"], out);
            if m.topics.is_empty() {
                out.push((
                    at.key("topics"),
                    "needs at least one topic filter".to_owned(),
                ));
            }
            for (i, t) in m.topics.iter().enumerate() {
                if t.is_empty() || t.contains('\0') {
                    out.push((
                        at.key("topics").index(i),
                        "is not a topic filter".to_owned(),
                    ));
                }
            }
            if m.client_id.is_empty() {
                out.push((
                    at.key("client_id"),
                    "must not be empty: the broker keeps the session under it".to_owned(),
                ));
            }
            if m.max_inflight == 0 {
                out.push((at.key("max_inflight"), "must be at least 1".to_owned()));
            }
            if m.keep_alive.0 < std::time::Duration::from_secs(1) {
                out.push((at.key("keep_alive"), "must be at least 1s".to_owned()));
            }
            if m.password.is_some() && m.username.is_none() {
                out.push((at.key("password"), "needs username".to_owned()));
            }
        }
    }
}

/// A `ca_cert` file must be readable and hold PEM certificates.
fn ca_cert(at: &KeyPath, path: Option<&std::path::PathBuf>, out: &mut Vec<(KeyPath, String)>) {
    if let Some(p) = path
        && let Err(m) = crate::tls::load_ca_certs(std::slice::from_ref(p))
    {
        out.push((at.key("ca_cert"), m));
    }
}

fn crawl(at: &KeyPath, c: &super::CrawlSource, out: &mut Vec<(KeyPath, String)>) {
    ca_cert(at, c.ca_cert.as_ref(), out);
    if c.seeds.is_empty() {
        out.push((at.key("seeds"), "needs at least one seed URL".to_owned()));
    }
    for (i, seed) in c.seeds.iter().enumerate() {
        let ok = url::Url::parse(seed)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
        if !ok {
            out.push((
                at.key("seeds").index(i),
                format!("{seed:?} is not an absolute http:// or https:// URL"),
            ));
        }
    }
    for (key, v) in [("concurrency", c.concurrency), ("per_host", c.per_host)] {
        if v == 0 {
            out.push((at.key(key), "must be at least 1".to_owned()));
        }
    }
    if c.max_pages == Some(0) {
        out.push((at.key("max_pages"), "must be at least 1".to_owned()));
    }
    for (i, d) in c.allow_domains.iter().enumerate() {
        if d.trim().is_empty() || d.contains('/') || d.contains(':') {
            out.push((
                at.key("allow_domains").index(i),
                format!("{d:?} is not a domain name (give e.g. example.com, no scheme or path)"),
            ));
        }
    }
    if c.content_types.is_empty() {
        out.push((
            at.key("content_types"),
            "needs at least one media type".to_owned(),
        ));
    }
    for (i, t) in c.content_types.iter().enumerate() {
        if !t.contains('/') {
            out.push((
                at.key("content_types").index(i),
                format!("{t:?} is not a media type like text/html or text/*"),
            ));
        }
    }
    if c.timeout.0.is_zero() {
        out.push((at.key("timeout"), "must be longer than zero".to_owned()));
    }
    if c.max_body.0 == 0 {
        out.push((at.key("max_body"), "must be at least 1".to_owned()));
    }
    if matches!(&c.state, Some(p) if p.as_os_str().is_empty()) {
        out.push((at.key("state"), "must not be empty".to_owned()));
    }
}

fn batch(at: &KeyPath, b: &super::Batch, out: &mut Vec<(KeyPath, String)>) {
    if b.max_records == 0 {
        out.push((at.key("max_records"), "must be at least 1".to_owned()));
    }
    if b.max_bytes.0 == 0 {
        out.push((at.key("max_bytes"), "must be at least 1".to_owned()));
    }
}

fn retry(at: &KeyPath, r: &super::Retry, out: &mut Vec<(KeyPath, String)>) {
    if r.initial.0.is_zero() {
        out.push((at.key("initial"), "must be longer than zero".to_owned()));
    }
    if r.max < r.initial {
        out.push((
            at.key("max"),
            format!("must be at least retry.initial ({})", r.initial),
        ));
    }
}

fn sink(at: &KeyPath, s: &SinkConfig, out: &mut Vec<(KeyPath, String)>) {
    match &s.kind {
        SinkKind::Sqlite(q) => {
            batch(&at.key("batch"), &q.batch, out);
            retry(&at.key("retry"), &q.retry, out);
            plain_sql_name(at, &q.table, out);
        }
        SinkKind::Postgres(q) => {
            batch(&at.key("batch"), &q.batch, out);
            retry(&at.key("retry"), &q.retry, out);
            plain_sql_name(at, &q.table, out);
            url_scheme(at, &q.url, &["postgres", "postgresql"], out);
            if q.timeout.0.is_zero() {
                out.push((at.key("timeout"), "must be longer than zero".to_owned()));
            }
        }
        SinkKind::Jsonl(j) => {
            batch(&at.key("batch"), &j.batch, out);
            retry(&at.key("retry"), &j.retry, out);
            if j.max_size.0 == 0 {
                out.push((at.key("max_size"), "must be at least 1".to_owned()));
            }
        }
        SinkKind::Stdout(o) => batch(&at.key("batch"), &o.batch, out),
    }
}
