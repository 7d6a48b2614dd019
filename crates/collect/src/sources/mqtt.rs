//! `mqtt`: subscriptions at QoS 1 under a persistent session.
//!
//! The client connects with `clean_session = false` and the fixed
//! `client_id`, so the broker keeps the subscriptions and every message not
//! yet acknowledged while the collector is down. Acks are manual: a
//! message's PUBACK is sent only when every sink has committed its record,
//! and in the order the messages came (as MQTT wants). A record that was
//! not committed cannot be refused in MQTT 3.1.1: the source then
//! reconnects, and the broker delivers again everything not yet acked.
//!
//! The event loop runs in its own task so acks go out while the source
//! waits for room downstream; the broker's in-flight window (Mosquitto's
//! `max_inflight_messages`) bounds what it holds. MQTT messages have no
//! stable id: a message delivered again after a crash between the commit
//! and its PUBACK is written again.

use std::collections::{BTreeMap, VecDeque};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use tokio::sync::mpsc;

use crate::config::MqttSource;
use crate::pipeline::{SourceCtx, SourceError};
use crate::record::{Acked, Payload, Record};

/// `mqtt://HOST[:PORT]` (or `tcp://`) as host and port.
pub(crate) fn host_port(url: &str) -> Option<(String, u16)> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        return None;
    }
    match rest.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => {
            Some((h.trim_matches(['[', ']']).to_owned(), p.parse().ok()?))
        }
        Some(_) => None,
        None => Some((rest.to_owned(), 1883)),
    }
}

/// Aborts the event-loop task when the run ends.
struct Abort(tokio::task::JoinHandle<()>);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Poll the event loop for ever, handing publishes (or the first error) over.
async fn drive(mut events: EventLoop, tx: mpsc::UnboundedSender<Result<Publish, String>>) {
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                // Closed while draining: the message stays unacked and the
                // broker keeps it for the next session.
                let _ = tx.send(Ok(p));
            }
            Ok(Event::Incoming(Packet::ConnAck(c))) => {
                tracing::info!(session_present = c.session_present, "connected");
            }
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
        }
    }
}

pub(crate) async fn run(ctx: &SourceCtx, cfg: &MqttSource) -> Result<(), SourceError> {
    let (host, port) = host_port(&cfg.url)
        .ok_or_else(|| SourceError(format!("not an mqtt:// URL: {}", cfg.url)))?;
    let mut opts = MqttOptions::new(cfg.client_id.clone(), host, port);
    opts.set_keep_alive(cfg.keep_alive.0)
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_inflight(cfg.max_inflight)
        .set_max_packet_size(
            cfg.max_packet_size.0 as usize,
            cfg.max_packet_size.0 as usize,
        );
    if let Some(user) = &cfg.username {
        opts.set_credentials(user.clone(), cfg.password.clone().unwrap_or_default());
    }
    let (client, events) = AsyncClient::new(opts, usize::from(cfg.max_inflight) * 2 + 16);
    let (tx, mut incoming) = mpsc::unbounded_channel();
    let _driver = Abort(tokio::spawn(drive(events, tx)));
    for topic in &cfg.topics {
        client
            .subscribe(topic.clone(), QoS::AtLeastOnce)
            .await
            .map_err(|e| SourceError(format!("subscribing to {topic}: {e}")))?;
    }
    tracing::info!(url = %cfg.url, topics = ?cfg.topics, client_id = %cfg.client_id, "subscribed");

    let (ack_tx, mut acks) = mpsc::unbounded_channel::<Acked>();
    let mut order = Order::default();
    let mut seq = 0u64;
    let mut pending: Option<Record> = None;
    let result: Result<(), SourceError> = loop {
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break Ok(()),
            Some(a) = acks.recv() => {
                order.done.insert(a.seq, a.ok);
                while let Ok(a) = acks.try_recv() {
                    order.done.insert(a.seq, a.ok);
                }
                if let Err(e) = order.advance(&client).await {
                    break Err(e);
                }
            }
            permit = ctx.output.reserve(), if pending.is_some() => {
                let permit = permit?;
                if let Some(r) = pending.take() {
                    ctx.count_in();
                    permit.send(r);
                }
            }
            m = incoming.recv(), if pending.is_none() => {
                let p = match m {
                    Some(Ok(p)) => p,
                    Some(Err(e)) => break Err(SourceError(format!("connection: {e}"))),
                    None => break Err(SourceError("event loop ended".to_owned())),
                };
                seq += 1;
                let text = match std::str::from_utf8(&p.payload) {
                    Ok(s) => s.to_owned(),
                    Err(_) => String::from_utf8_lossy(&p.payload).into_owned(),
                };
                let mut key = p;
                key.payload = bytes::Bytes::new();
                order.in_flight.push_back((seq, key));
                let record = Record {
                    ack: Some(ctx.ack(seq, &ack_tx)),
                    ..Record::new(ctx.name.clone(), Payload::Text(text))
                };
                pending = ctx.offer(record)?;
            }
        }
    };
    // Drain: take nothing more, ack what gets committed, until every record
    // sent is settled (or the drain deadline aborts this task: the broker
    // keeps the rest for the next session).
    drop(pending);
    drop(ack_tx);
    incoming.close();
    if result.is_ok() {
        while !order.in_flight.is_empty() {
            let Some(a) = acks.recv().await else { break };
            order.done.insert(a.seq, a.ok);
            if order.advance(&client).await.is_err() {
                break;
            }
        }
        // Let the acks leave before saying goodbye; the session stays.
        let _ = client.disconnect().await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    result
}

/// Messages in the order they came, and acknowledgements that arrived early.
#[derive(Default)]
struct Order {
    in_flight: VecDeque<(u64, Publish)>,
    done: BTreeMap<u64, bool>,
}

impl Order {
    /// Send PUBACKs for the committed messages at the front.
    async fn advance(&mut self, client: &AsyncClient) -> Result<(), SourceError> {
        while let Some((seq, _)) = self.in_flight.front() {
            match self.done.remove(seq) {
                Some(true) => {
                    let Some((_, p)) = self.in_flight.pop_front() else {
                        break;
                    };
                    client
                        .ack(&p)
                        .await
                        .map_err(|e| SourceError(format!("sending an ack: {e}")))?;
                }
                Some(false) => {
                    return Err(SourceError(
                        "a record was not committed; reconnecting so the broker delivers it again"
                            .to_owned(),
                    ));
                }
                None => break,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn urls() {
        assert_eq!(
            host_port("mqtt://127.0.0.1:1884"),
            Some(("127.0.0.1".into(), 1884))
        );
        assert_eq!(host_port("mqtt://broker"), Some(("broker".into(), 1883)));
        assert_eq!(host_port("tcp://h:1/"), Some(("h".into(), 1)));
        assert_eq!(host_port("http://h:1"), None);
        assert_eq!(host_port("mqtt://h:x"), None);
    }
}
