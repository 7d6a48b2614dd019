//! A Server-Sent Events reader for `sluice watch`: parses the byte stream
//! into events and reconnects with `Last-Event-ID` when the stream breaks,
//! so a watch survives a server restart without missing a change.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;

use super::remote::Remote;

/// One event: its `event:` name (default `message`), `id:` and joined
/// `data:` lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) name: String,
    pub(crate) id: Option<String>,
    pub(crate) data: String,
}

/// Incremental parser: feed bytes, take whole events.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    buf: Vec<u8>,
    current: Event,
    has_data: bool,
}

impl Parser {
    /// Adds bytes; returns the events they completed.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                if self.has_data {
                    let mut ev = std::mem::take(&mut self.current);
                    if ev.name.is_empty() {
                        ev.name = "message".into();
                    }
                    out.push(ev);
                } else {
                    self.current = Event::default();
                }
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue; // comment (keep-alive)
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_ref(), ""),
            };
            match field {
                "event" => self.current.name = value.to_owned(),
                "id" => self.current.id = Some(value.to_owned()),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        out
    }
}

/// Follows `path` (an events URL path) and calls `on_event` for each event
/// until it returns `false`. Broken streams are resumed from the last id
/// after a short pause; a refusal (4xx) ends the watch with its message.
pub(crate) async fn follow(
    remote: &Remote,
    path: &str,
    mut on_event: impl FnMut(Event) -> bool,
) -> anyhow::Result<()> {
    let mut last_id: Option<String> = None;
    let mut pause = Duration::from_millis(200);
    loop {
        let mut req = remote
            .request(Method::GET, path)
            .header("accept", "text/event-stream");
        if let Some(id) = &last_id {
            req = req.header("last-event-id", id);
        }
        match req.send().await {
            Ok(resp) if resp.status().is_client_error() => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                anyhow::bail!("{}: {status}: {}", remote.url(path), body.trim());
            }
            Ok(resp) if resp.status().is_success() => {
                pause = Duration::from_millis(200);
                let mut parser = Parser::default();
                let mut stream = resp.bytes_stream();
                while let Some(chunk) = stream.next().await {
                    let Ok(chunk) = chunk else { break };
                    for ev in parser.feed(&chunk) {
                        if ev.id.is_some() {
                            last_id.clone_from(&ev.id);
                        }
                        if !on_event(ev) {
                            return Ok(());
                        }
                    }
                }
            }
            Ok(resp) => tracing::warn!(status = %resp.status(), "event stream refused; retrying"),
            Err(e) => tracing::warn!(error = %e, "event stream broke; resuming"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_lines() {
        let mut p = Parser::default();
        assert!(p.feed(b": keep-alive\n\nid: 1-a\nevent: jo").is_empty());
        let evs = p.feed(b"b\ndata: {\"x\":\ndata: 1}\r\n\r\nevent: batch\ndata: {}\n\n");
        assert_eq!(
            evs,
            vec![
                Event {
                    name: "job".into(),
                    id: Some("1-a".into()),
                    data: "{\"x\":\n1}".into()
                },
                Event {
                    name: "batch".into(),
                    id: None,
                    data: "{}".into()
                },
            ]
        );
    }
}
