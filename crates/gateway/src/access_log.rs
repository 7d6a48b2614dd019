//! The JSON access log. The proxy hands each record to a bounded channel with
//! `try_send` and moves on; a writer thread formats and writes. When the
//! writer falls behind, records are dropped and counted — the proxy never
//! waits.
//!
//! The writer drains the channel on a short tick while records flow, and
//! blocks on it only after a quiet second: a busy proxy then never pays a
//! thread wake-up per request, and lines reach the file in batches (at most
//! [`FLUSH_EVERY`] late), as nginx's `access_log ... buffer= flush=` does.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use http::uri::Authority;
use http::{HeaderValue, Method};

use crate::ascii::{write_ip, write_thousandths, write_u64};
use crate::config::AccessLogConfig;

/// One finished request.
#[derive(Debug)]
pub(crate) struct AccessRecord {
    /// The request's id; none when the proxy makes none
    /// (`proxy_headers.request_id = false`) and the client sent none.
    pub(crate) request_id: Option<HeaderValue>,
    pub(crate) client: SocketAddr,
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) status: u16,
    pub(crate) route: Option<Arc<str>>,
    pub(crate) upstream: Option<Arc<str>>,
    pub(crate) target: Option<Authority>,
    pub(crate) tries: u32,
    pub(crate) duration: Duration,
}

/// Where records go; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct AccessLog {
    tx: Option<mpsc::SyncSender<AccessRecord>>,
}

impl AccessLog {
    /// Start the writer task (when enabled).
    pub(crate) fn start(config: &AccessLogConfig) -> std::io::Result<AccessLog> {
        if !config.enabled {
            return Ok(AccessLog { tx: None });
        }
        let out: Box<dyn Write + Send> = match &config.path {
            Some(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
            None => Box::new(std::io::stdout()),
        };
        let (tx, rx) = mpsc::sync_channel(config.buffer.max(1));
        // Formatting and writes happen on a blocking thread so slow disks or a
        // blocked stdout never stall a runtime worker.
        std::thread::Builder::new()
            .name("sluice-access-log".into())
            .spawn(move || write_loop(rx, out))?;
        Ok(AccessLog { tx: Some(tx) })
    }

    /// A log that writes nothing.
    pub(crate) fn disabled() -> AccessLog {
        AccessLog { tx: None }
    }

    /// Whether records are written at all.
    pub(crate) fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Hand over a record without waiting.
    pub(crate) fn record(&self, rec: AccessRecord) {
        if let Some(tx) = &self.tx
            && tx.try_send(rec).is_err()
        {
            metrics::counter!("sluice_gateway_access_log_dropped_total").increment(1);
        }
    }
}

/// How long the writer sleeps between drains while records flow.
const DRAIN_EVERY: Duration = Duration::from_millis(10);
/// Lines reach the output at most this late.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// After this long without records, the writer blocks until the next one.
const QUIET_AFTER: Duration = Duration::from_secs(1);

fn write_loop(rx: mpsc::Receiver<AccessRecord>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 << 10, out);
    let mut line = Vec::with_capacity(512);
    let mut clock = Clock::default();
    let mut last_record = Instant::now();
    let mut last_flush = Instant::now();
    let mut dirty = false;
    loop {
        let mut got = false;
        loop {
            match rx.try_recv() {
                Ok(rec) => {
                    write_line(&mut out, &mut line, &mut clock, &rec);
                    got = true;
                }
                Err(mpsc::TryRecvError::Empty) => {
                    // One clock reading per drain rather than per record:
                    // the quiet check needs no finer grain than a drain.
                    if got {
                        dirty = true;
                        last_record = Instant::now();
                    }
                    break;
                }
                Err(mpsc::TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            }
        }
        let quiet = last_record.elapsed() >= QUIET_AFTER;
        if dirty && (quiet || last_flush.elapsed() >= FLUSH_EVERY) {
            let _ = out.flush();
            dirty = false;
            last_flush = Instant::now();
        }
        if !quiet {
            std::thread::sleep(DRAIN_EVERY);
            continue;
        }
        // Quiet: sleep until the next record (the sender wakes us once).
        match rx.recv() {
            Ok(rec) => {
                write_line(&mut out, &mut line, &mut clock, &rec);
                dirty = true;
                last_record = Instant::now();
            }
            Err(mpsc::RecvError) => return,
        }
    }
}

fn write_line(out: &mut impl Write, line: &mut Vec<u8>, clock: &mut Clock, rec: &AccessRecord) {
    line.clear();
    encode(line, clock.now(), rec);
    line.push(b'\n');
    let _ = out.write_all(line);
}

/// RFC 3339 timestamps with milliseconds; the part up to the second is
/// formatted once per second.
#[derive(Default)]
struct Clock {
    second: u64,
    prefix: String,
    text: Vec<u8>,
}

impl Clock {
    fn now(&mut self) -> &str {
        let now = std::time::SystemTime::now();
        let since = now
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        if since.as_secs() != self.second || self.prefix.is_empty() {
            self.second = since.as_secs();
            let whole = humantime::format_rfc3339_seconds(now).to_string();
            self.prefix = whole.trim_end_matches('Z').to_owned();
        }
        self.text.clear();
        self.text.extend_from_slice(self.prefix.as_bytes());
        self.text.push(b'.');
        write_thousandths(&mut self.text, u64::from(since.subsec_millis()));
        self.text.push(b'Z');
        // ASCII throughout: the humantime prefix and digits.
        std::str::from_utf8(&self.text).unwrap_or_default()
    }
}

/// One record as a JSON object. Written by hand rather than through a
/// `serde_json::Value`: building and printing a map per request cost more
/// than proxying the request.
fn encode(out: &mut Vec<u8>, ts: &str, r: &AccessRecord) {
    out.extend_from_slice(b"{\"ts\":\"");
    out.extend_from_slice(ts.as_bytes());
    out.extend_from_slice(b"\",\"request_id\":");
    match r.request_id.as_ref().map(HeaderValue::to_str) {
        Some(Ok(id)) => string(out, id),
        Some(Err(_)) => string(out, "-"),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"client\":\"");
    match r.client {
        SocketAddr::V4(a) => {
            write_ip(out, std::net::IpAddr::V4(*a.ip()));
            out.push(b':');
            write_u64(out, u64::from(a.port()));
        }
        SocketAddr::V6(a) => out.extend_from_slice(a.to_string().as_bytes()),
    }
    out.extend_from_slice(b"\",\"method\":");
    string(out, r.method.as_str());
    out.extend_from_slice(b",\"path\":");
    string(out, &r.path);
    out.extend_from_slice(b",\"status\":");
    write_u64(out, u64::from(r.status));
    for (key, value) in [
        (&b",\"route\":"[..], &r.route),
        (b",\"upstream\":", &r.upstream),
    ] {
        out.extend_from_slice(key);
        match value {
            Some(v) => string(out, v),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.extend_from_slice(b",\"target\":");
    match &r.target {
        // An authority never holds a quote, a backslash or a control
        // character (the URI grammar has none), so it needs no escaping.
        Some(a) => {
            out.push(b'"');
            out.extend_from_slice(a.as_str().as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"tries\":");
    write_u64(out, u64::from(r.tries));
    // Milliseconds with microsecond precision, without float formatting.
    let micros = u64::try_from(r.duration.as_micros()).unwrap_or(u64::MAX);
    out.extend_from_slice(b",\"duration_ms\":");
    write_u64(out, micros / 1000);
    out.push(b'.');
    write_thousandths(out, micros % 1000);
    out.push(b'}');
}

/// A JSON string, quoted and escaped.
fn string(out: &mut Vec<u8>, s: &str) {
    // Request ids, methods, paths and names almost never hold a character
    // JSON must escape; copying those directly costs a tenth of the
    // serializer's call (about 170 instructions a string).
    if !needs_escape(s.as_bytes()) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Whether `s` holds a byte JSON must escape: a control character, `"` or
/// `\`. Eight bytes at a time (the has-zero-byte trick), as a byte loop
/// took about eight instructions a byte.
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // High bit of each byte of `x` that is below `n` (n <= 128): exact as a
    // whole (any set bit means some byte is below `n`).
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let mut chunks = s.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // A byte equal to `c` is a zero byte of `x ^ c…c`, i.e. below 1.
        let hit = below(x, 0x20) | below(x ^ (ONES * 0x22), 1) | below(x ^ (ONES * 0x5c), 1);
        if hit != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AccessRecord {
        AccessRecord {
            request_id: Some(HeaderValue::from_static("0193-abc")),
            client: "10.1.2.3:4567".parse().unwrap(),
            method: Method::POST,
            path: "/api/\"q\"\\\u{1}é".to_owned(),
            status: 201,
            route: Some(Arc::from("api")),
            upstream: None,
            target: Some(Authority::from_static("127.0.0.1:8081")),
            tries: 2,
            duration: Duration::from_micros(12_045_007),
        }
    }

    #[test]
    fn records_are_valid_json_with_every_field() {
        let mut line = Vec::new();
        encode(&mut line, "2026-11-29T01:02:03.004Z", &record());
        let v: serde_json::Value = serde_json::from_slice(&line).expect("valid JSON");
        assert_eq!(v["ts"], "2026-11-29T01:02:03.004Z");
        assert_eq!(v["request_id"], "0193-abc");
        assert_eq!(v["client"], "10.1.2.3:4567");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/api/\"q\"\\\u{1}é");
        assert_eq!(v["status"], 201);
        assert_eq!(v["route"], "api");
        assert!(v["upstream"].is_null());
        assert_eq!(v["target"], "127.0.0.1:8081");
        assert_eq!(v["tries"], 2);
        assert_eq!(v["duration_ms"].as_f64(), Some(12045.007));
    }

    #[test]
    fn ipv6_clients_and_zero_durations() {
        let mut rec = record();
        rec.client = "[2001:db8::1]:443".parse().unwrap();
        rec.duration = Duration::ZERO;
        let mut line = Vec::new();
        encode(&mut line, "t", &rec);
        let v: serde_json::Value = serde_json::from_slice(&line).expect("valid JSON");
        assert_eq!(v["client"], "[2001:db8::1]:443");
        assert_eq!(v["duration_ms"].as_f64(), Some(0.0));
    }

    #[test]
    fn clock_text_is_rfc3339_with_millis() {
        let mut clock = Clock::default();
        let text = clock.now().to_owned();
        assert_eq!(text.len(), "2026-11-29T01:02:03.004Z".len(), "{text}");
        assert!(humantime::parse_rfc3339(&text).is_ok(), "{text}");
    }

    fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is JSON"))
            .collect()
    }

    #[test]
    fn lines_reach_the_file_within_the_flush_interval_and_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let config = AccessLogConfig {
            enabled: true,
            path: Some(path.clone()),
            buffer: 16,
        };
        let log = AccessLog::start(&config).unwrap();
        for _ in 0..3 {
            log.record(record());
        }
        // Batched, but never later than the flush interval (plus a margin).
        let deadline = Instant::now() + FLUSH_EVERY + Duration::from_secs(2);
        while lines(&path).len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(lines(&path).len(), 3);
        // After a quiet spell the writer blocks; a new record still lands.
        std::thread::sleep(QUIET_AFTER + Duration::from_millis(100));
        log.record(record());
        let deadline = Instant::now() + FLUSH_EVERY + Duration::from_secs(2);
        while lines(&path).len() < 4 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let all = lines(&path);
        assert_eq!(all.len(), 4);
        assert!(all.iter().all(|v| v["status"] == 201));
    }

    proptest::proptest! {
        #[test]
        fn the_word_check_agrees_with_a_byte_loop(s in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            let by_bytes = s.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
            proptest::prop_assert_eq!(needs_escape(&s), by_bytes);
        }

        #[test]
        fn strings_are_the_json_encoders(s in "\\PC{0,30}|[a-z\"\\\\\u{0}-\u{1f}]{0,30}") {
            let mut ours = Vec::new();
            string(&mut ours, &s);
            proptest::prop_assert_eq!(ours, serde_json::to_vec(&s).unwrap());
        }
    }
}
