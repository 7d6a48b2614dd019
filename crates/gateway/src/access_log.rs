//! The JSON access log. The proxy hands each record to a bounded channel with
//! `try_send` and moves on; a writer task formats and writes. When the writer
//! falls behind, records are dropped and counted — the proxy never waits.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderValue, Method};
use tokio::sync::mpsc;

use crate::config::AccessLogConfig;

/// One finished request.
#[derive(Debug)]
pub(crate) struct AccessRecord {
    pub(crate) request_id: HeaderValue,
    pub(crate) client: SocketAddr,
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) status: u16,
    pub(crate) route: Option<String>,
    pub(crate) upstream: Option<String>,
    pub(crate) target: Option<String>,
    pub(crate) tries: u32,
    pub(crate) duration: Duration,
}

/// Where records go; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct AccessLog {
    tx: Option<mpsc::Sender<AccessRecord>>,
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
        let (tx, rx) = mpsc::channel(config.buffer.max(1));
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

fn write_loop(mut rx: mpsc::Receiver<AccessRecord>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::new(out);
    while let Some(rec) = rx.blocking_recv() {
        let _ = writeln!(out, "{}", to_json(&rec));
        // Flush when the queue is empty: batches under load, prompt when idle.
        while let Ok(rec) = rx.try_recv() {
            let _ = writeln!(out, "{}", to_json(&rec));
        }
        let _ = out.flush();
    }
}

fn to_json(r: &AccessRecord) -> String {
    let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now());
    serde_json::json!({
        "ts": ts.to_string(),
        "request_id": r.request_id.to_str().unwrap_or("-"),
        "client": r.client.to_string(),
        "method": r.method.as_str(),
        "path": r.path,
        "status": r.status,
        "route": r.route,
        "upstream": r.upstream,
        "target": r.target,
        "tries": r.tries,
        "duration_ms": r.duration.as_secs_f64() * 1000.0,
    })
    .to_string()
}
