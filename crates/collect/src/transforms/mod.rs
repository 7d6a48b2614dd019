//! Transform kinds: `parse_json`, `parse_lines`, `fields` and `filter`
//! (its expression language in `filter`). Each transform is a task
//! that reads its input channel until it closes, changes each record, and
//! sends it on with a reserved slot (so a slow sink slows it down too).

mod filter;

use serde_json::Value;
use tokio::sync::mpsc;

pub(crate) use filter::Expr;

use crate::config::{Fields, ParseJson, ParseLines, TransformKind};
use crate::pipeline::Output;
use crate::record::{Payload, Record};

pub(crate) async fn run(
    name: String,
    kind: TransformKind,
    mut rx: mpsc::Receiver<Record>,
    out: Output,
) {
    let compiled = match &kind {
        TransformKind::Filter(f) => match Expr::parse(&f.condition) {
            Ok(e) => Some(e),
            Err(e) => {
                // Config validation rejects this before a pipeline starts.
                tracing::error!(error = %e, "invalid filter condition; passing nothing");
                return;
            }
        },
        _ => None,
    };
    let filtered =
        metrics::counter!("sluice_collect_transform_filtered_total", "transform" => name.clone());
    while let Some(record) = rx.recv().await {
        if let TransformKind::ParseLines(p) = &kind {
            for line in split_lines(p, record, &name) {
                if out.send(line).await.is_err() {
                    return;
                }
            }
            continue;
        }
        let record = match &compiled {
            Some(expr) => {
                let keep = match &record.payload {
                    Payload::Json(v) => expr.eval(v),
                    Payload::Text(s) => expr.eval(&Value::String(s.clone())),
                };
                if !keep {
                    // Dropped on purpose: acknowledged, so the source moves on.
                    filtered.increment(1);
                    record.commit();
                    continue;
                }
                record
            }
            None => match apply(&kind, record, &name) {
                Some(r) => r,
                None => continue,
            },
        };
        if out.send(record).await.is_err() {
            return;
        }
    }
}

/// The record changed, or `None` when it is dropped (and acknowledged).
fn apply(kind: &TransformKind, record: Record, name: &str) -> Option<Record> {
    match kind {
        TransformKind::ParseJson(p) => parse_json(p, record, name),
        TransformKind::Fields(f) => Some(fields(f, record)),
        TransformKind::Filter(_) | TransformKind::ParseLines(_) => Some(record),
    }
}

/// One record per line of `record`'s text (`\n` or `\r\n`). Every line
/// carries a copy of the acknowledgement, so the source hears back once
/// all of them are committed; a record that gives no line is acknowledged
/// at once. Lines over `max_line_length` are dropped and counted; other
/// payloads pass unchanged.
fn split_lines(p: &ParseLines, record: Record, name: &str) -> Vec<Record> {
    let text = match (&p.field, &record.payload) {
        (None, Payload::Text(s)) => s.clone(),
        (Some(f), Payload::Json(Value::Object(o))) => match o.get(f) {
            Some(Value::String(s)) => s.clone(),
            _ => return vec![record],
        },
        _ => return vec![record],
    };
    let mut out = Vec::new();
    let mut too_long = 0u64;
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() && !p.keep_empty {
            continue;
        }
        if line.len() as u64 > p.max_line_length.0 {
            too_long += 1;
            continue;
        }
        let payload = match (&p.field, &record.payload) {
            (Some(f), Payload::Json(Value::Object(o))) => {
                let mut o = o.clone();
                o.insert(f.clone(), Value::String(line.to_owned()));
                Payload::Json(Value::Object(o))
            }
            _ => Payload::Text(line.to_owned()),
        };
        out.push(Record {
            source: record.source.clone(),
            timestamp: record.timestamp,
            id: record.id.as_ref().map(|id| format!("{id}:{i}")),
            payload,
            ack: record.ack.clone(),
        });
    }
    if too_long > 0 {
        metrics::counter!("sluice_collect_transform_errors_total", "transform" => name.to_owned())
            .increment(too_long);
    }
    // This copy's part is done: the lines hold their own copies.
    record.commit();
    out
}

fn parse_json(p: &ParseJson, mut record: Record, name: &str) -> Option<Record> {
    let ok = match (&p.field, &mut record.payload) {
        (None, payload @ Payload::Text(_)) => {
            let Payload::Text(s) = &*payload else {
                return Some(record);
            };
            match serde_json::from_str::<Value>(s) {
                Ok(v) => {
                    *payload = Payload::Json(v);
                    true
                }
                Err(_) => false,
            }
        }
        (Some(field), Payload::Json(Value::Object(o))) => match o.get(field) {
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(v) => {
                    o.insert(field.clone(), v);
                    true
                }
                Err(_) => false,
            },
            _ => true,
        },
        _ => true,
    };
    if !ok {
        metrics::counter!("sluice_collect_transform_errors_total", "transform" => name.to_owned())
            .increment(1);
        if p.drop_invalid {
            record.commit();
            return None;
        }
    }
    Some(record)
}

fn fields(f: &Fields, mut record: Record) -> Record {
    if let Payload::Json(Value::Object(o)) = &mut record.payload {
        for (from, to) in &f.rename {
            if let Some(v) = o.remove(from) {
                o.insert(to.clone(), v);
            }
        }
        for k in &f.drop {
            o.remove(k);
        }
        for (k, v) in &f.add {
            o.insert(k.clone(), v.clone());
        }
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn rec(p: Payload) -> Record {
        Record::new(Arc::from("t"), p)
    }

    #[test]
    fn parses_text_and_fields() {
        let r = parse_json(
            &ParseJson::default(),
            rec(Payload::Text(r#"{"a":1,"b":2}"#.into())),
            "p",
        )
        .unwrap();
        let f = Fields {
            rename: [("a".to_owned(), "x".to_owned())].into(),
            drop: vec!["b".to_owned()],
            add: [("env".to_owned(), Value::from("prod"))].into(),
        };
        let r = fields(&f, r);
        assert_eq!(
            r.payload,
            Payload::Json(serde_json::json!({"x": 1, "env": "prod"}))
        );
    }

    #[test]
    fn invalid_json_passes_or_drops() {
        let keep = parse_json(
            &ParseJson::default(),
            rec(Payload::Text("nope".into())),
            "p",
        );
        assert_eq!(keep.unwrap().payload, Payload::Text("nope".into()));
        let drop = ParseJson {
            drop_invalid: true,
            ..ParseJson::default()
        };
        assert!(parse_json(&drop, rec(Payload::Text("nope".into())), "p").is_none());
    }

    #[test]
    fn splits_lines_with_derived_ids_and_one_ack() {
        let (tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
        let mut r = rec(Payload::Text("a\r\n\nbb\ntoolong\nc".into()));
        r.id = Some("f:0".into());
        r.ack = Some(crate::record::Ack::new(9, tx));
        let p = ParseLines {
            max_line_length: crate::config::ByteSize(3),
            ..ParseLines::default()
        };
        let lines = split_lines(&p, r, "l");
        let got: Vec<_> = lines
            .iter()
            .map(|l| (l.id.clone().unwrap(), l.payload.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("f:0:0".to_owned(), Payload::Text("a".into())),
                ("f:0:2".to_owned(), Payload::Text("bb".into())),
                ("f:0:4".to_owned(), Payload::Text("c".into())),
            ]
        );
        assert!(acks.try_recv().is_err(), "the lines are not committed yet");
        for l in lines {
            l.commit();
        }
        assert!(acks.try_recv().unwrap().ok);
    }

    #[test]
    fn splits_a_string_field_and_passes_other_payloads() {
        let p = ParseLines {
            field: Some("msg".into()),
            keep_empty: true,
            ..ParseLines::default()
        };
        let r = rec(Payload::Json(serde_json::json!({"msg": "x\n", "n": 1})));
        let lines = split_lines(&p, r, "l");
        let got: Vec<_> = lines.into_iter().map(|l| l.payload).collect();
        assert_eq!(
            got,
            vec![
                Payload::Json(serde_json::json!({"msg": "x", "n": 1})),
                Payload::Json(serde_json::json!({"msg": "", "n": 1})),
            ]
        );
        let other = split_lines(&p, rec(Payload::Text("a\nb".into())), "l");
        assert_eq!(other.len(), 1, "no such field: passed unchanged");
    }

    #[test]
    fn parses_a_string_field() {
        let p = ParseJson {
            field: Some("msg".into()),
            ..ParseJson::default()
        };
        let r = parse_json(
            &p,
            rec(Payload::Json(serde_json::json!({"msg": "[1,2]"}))),
            "p",
        )
        .unwrap();
        assert_eq!(r.payload, Payload::Json(serde_json::json!({"msg": [1, 2]})));
    }
}
