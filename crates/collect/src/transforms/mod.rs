//! Transform kinds: `parse_json`, `fields` and `filter` (its expression
//! language in `filter`). Each transform is a task
//! that reads its input channel until it closes, changes each record, and
//! sends it on with a reserved slot (so a slow sink slows it down too).

mod filter;

use serde_json::Value;
use tokio::sync::mpsc;

pub(crate) use filter::Expr;

use crate::config::{Fields, ParseJson, TransformKind};
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
        TransformKind::Filter(_) => Some(record),
    }
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
