//! `nats`: core NATS subjects, or a durable JetStream pull consumer.
//!
//! Core NATS has no acknowledgement: records carry none and no id, and what
//! the server sent while nothing listened is gone (at most once).
//!
//! JetStream: the stream is created if missing (`create_stream`), the durable
//! consumer too, with `ack_policy = explicit`. Each message becomes a record
//! whose id is its stream sequence (stable across redeliveries, so the
//! SQLite and PostgreSQL sinks write it once). The message is acked only when
//! every sink has committed its record; a record that was not committed is
//! nak'ed, so the server delivers it again. Messages that were delivered and
//! neither acked nor nak'ed (the process was killed, the drain deadline
//! passed) are delivered again by the server after `ack_wait`.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::config::{JetStream, NatsSource};
use crate::pipeline::{SourceCtx, SourceError};
use crate::record::{Acked, Payload, Record};
use async_nats::jetstream::{self, AckKind, consumer, message::Acker};

fn fail(what: &str, e: impl std::fmt::Display) -> SourceError {
    SourceError(format!("{what}: {e}"))
}

/// The payload as text (invalid UTF-8 replaced, and counted).
fn text(ctx: &SourceCtx, payload: &[u8]) -> String {
    match std::str::from_utf8(payload) {
        Ok(s) => s.to_owned(),
        Err(_) => {
            metrics::counter!("sluice_collect_source_invalid_utf8_total", "source" => ctx.name.to_string())
                .increment(1);
            String::from_utf8_lossy(payload).into_owned()
        }
    }
}

pub(crate) async fn run(ctx: &SourceCtx, cfg: &NatsSource) -> Result<(), SourceError> {
    let connect = async_nats::ConnectOptions::new()
        .name(&cfg.client_name)
        .connection_timeout(cfg.connect_timeout.0)
        .connect(cfg.url.as_str());
    let client = tokio::select! {
        biased;
        _ = ctx.shutdown.cancelled() => return Ok(()),
        c = connect => c.map_err(|e| fail("connecting", e))?,
    };
    tracing::info!(url = %cfg.url, subject = %cfg.subject, "connected");
    match &cfg.jetstream {
        None => core(ctx, cfg, client).await,
        Some(js) => pull(ctx, cfg, js, client).await,
    }
}

async fn core(
    ctx: &SourceCtx,
    cfg: &NatsSource,
    client: async_nats::Client,
) -> Result<(), SourceError> {
    let subject = cfg.subject.clone();
    let mut sub = match &cfg.queue_group {
        Some(g) => client.queue_subscribe(subject, g.clone()).await,
        None => client.subscribe(subject).await,
    }
    .map_err(|e| fail("subscribing", e))?;
    let mut pending: Option<Record> = None;
    loop {
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break,
            permit = ctx.output.reserve(), if pending.is_some() => {
                let permit = permit?;
                if let Some(r) = pending.take() {
                    ctx.count_in();
                    permit.send(r);
                }
            }
            // Cancel-safe: the subscription keeps what it has not handed out.
            m = sub.next(), if pending.is_none() => {
                let Some(m) = m else {
                    return Err(SourceError("subscription closed".to_owned()));
                };
                let record = Record::new(ctx.name.clone(), Payload::Text(text(ctx, &m.payload)));
                pending = ctx.offer(record)?;
            }
        }
    }
    // Best effort: tell the server we are gone.
    let _ = sub.unsubscribe().await;
    Ok(())
}

async fn pull(
    ctx: &SourceCtx,
    cfg: &NatsSource,
    js_cfg: &JetStream,
    client: async_nats::Client,
) -> Result<(), SourceError> {
    let js = jetstream::new(client);
    let stream = if js_cfg.create_stream {
        js.get_or_create_stream(jetstream::stream::Config {
            name: js_cfg.stream.clone(),
            subjects: vec![cfg.subject.clone()],
            ..Default::default()
        })
        .await
        .map_err(|e| fail("getting or creating the stream", e))?
    } else {
        js.get_stream(&js_cfg.stream)
            .await
            .map_err(|e| fail("getting the stream", e))?
    };
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &js_cfg.consumer,
            consumer::pull::Config {
                durable_name: Some(js_cfg.consumer.clone()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: js_cfg.ack_wait.0,
                max_ack_pending: js_cfg.max_ack_pending,
                filter_subject: cfg.subject.clone(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| fail("getting or creating the consumer", e))?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(js_cfg.pull_batch)
        .messages()
        .await
        .map_err(|e| fail("pulling", e))?;
    tracing::info!(stream = %js_cfg.stream, consumer = %js_cfg.consumer, "consuming");

    let (ack_tx, mut acks) = mpsc::unbounded_channel::<Acked>();
    // Local sequence of each record sent → the way to ack its message.
    let mut in_flight: HashMap<u64, Acker> = HashMap::new();
    let mut seq = 0u64;
    let mut pending: Option<Record> = None;
    let source: Arc<str> = ctx.name.clone();

    let result: Result<(), SourceError> = loop {
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break Ok(()),
            Some(a) = acks.recv() => {
                settle(&mut in_flight, a).await;
                while let Ok(a) = acks.try_recv() {
                    settle(&mut in_flight, a).await;
                }
            }
            permit = ctx.output.reserve(), if pending.is_some() => {
                let permit = permit?;
                if let Some(r) = pending.take() {
                    ctx.count_in();
                    permit.send(r);
                }
            }
            // Cancel-safe: the message stream keeps what it has not handed out.
            m = messages.next(), if pending.is_none() => {
                let m = match m {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => break Err(fail("receiving", e)),
                    None => break Err(SourceError("message stream ended".to_owned())),
                };
                let stream_seq = match m.info() {
                    Ok(info) => info.stream_sequence,
                    Err(e) => {
                        tracing::warn!(error = %e, "a message without JetStream metadata; skipped");
                        continue;
                    }
                };
                let (m, acker) = m.split();
                seq += 1;
                in_flight.insert(seq, acker);
                let record = Record {
                    id: Some(stream_seq.to_string()),
                    ack: Some(ctx.ack(seq, &ack_tx)),
                    ..Record::new(source.clone(), Payload::Text(text(ctx, &m.payload)))
                };
                pending = ctx.offer(record)?;
            }
        }
    };
    // Drain: stop pulling, and keep acking as the last commits come in;
    // done when every record sent is settled, or when the pipeline's drain
    // deadline aborts this task (the server redelivers after ack_wait).
    drop(pending);
    drop(ack_tx);
    drop(messages);
    while !in_flight.is_empty() {
        match acks.recv().await {
            Some(a) => settle(&mut in_flight, a).await,
            None => break,
        }
    }
    result
}

/// Ack a committed record's message, nak one that was not.
async fn settle(in_flight: &mut HashMap<u64, Acker>, a: Acked) {
    let Some(acker) = in_flight.remove(&a.seq) else {
        return;
    };
    let sent = if a.ok {
        acker.ack().await
    } else {
        acker.ack_with(AckKind::Nak(None)).await
    };
    // A lost ack means a redelivery after ack_wait, which the id absorbs.
    if let Err(e) = sent {
        tracing::warn!(error = %e, ok = a.ok, "sending an ack failed; the message will be redelivered");
    }
}
