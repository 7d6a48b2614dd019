//! What an experiment returns: a few tables of figures, printed aligned for
//! people or as JSON for scripts. Experiments fill tables; only this module
//! knows how they look.

use std::fmt::Write as _;

use serde_json::{Value, json};

/// One cell: a label or a number shown with a fixed number of decimals.
#[derive(Debug, Clone)]
pub(crate) enum Cell {
    Text(String),
    Num(f64, usize),
}

impl Cell {
    fn show(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Num(v, _) if v.is_nan() => "-".to_owned(),
            Cell::Num(v, decimals) => group_thousands(&format!("{v:.decimals$}")),
        }
    }

    fn json(&self) -> Value {
        match self {
            Cell::Text(s) => json!(s),
            Cell::Num(v, _) if v.is_nan() => Value::Null,
            Cell::Num(v, _) => json!(v),
        }
    }
}

/// `1234567.8` → `1,234,567.8`, so large job rates read at a glance.
fn group_thousands(s: &str) -> String {
    let (sign, rest) = s.strip_prefix('-').map_or(("", s), |r| ("-", r));
    let (int, frac) = rest
        .split_once('.')
        .map_or((rest, None), |(i, f)| (i, Some(f)));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{out}.{f}"),
        None => format!("{sign}{out}"),
    }
}

/// A titled table: a header and rows of cells.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub(crate) title: String,
    pub(crate) header: Vec<&'static str>,
    pub(crate) rows: Vec<Vec<Cell>>,
}

/// Everything one run of an experiment found.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) experiment: &'static str,
    /// Settings of the run (jobs, threads, runs...) as `key = value` pairs.
    pub(crate) settings: Vec<(&'static str, String)>,
    pub(crate) tables: Vec<Table>,
    /// Lines printed after the tables: what the columns mean, caveats.
    pub(crate) notes: Vec<String>,
}

impl Report {
    /// Aligned plain text: numbers right-aligned, labels left-aligned.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        let settings: Vec<String> = self
            .settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            out,
            "experiment {}: {}",
            self.experiment,
            settings.join(" ")
        );
        for table in &self.tables {
            let cells: Vec<Vec<String>> = table
                .rows
                .iter()
                .map(|r| r.iter().map(Cell::show).collect())
                .collect();
            let widths: Vec<usize> = (0..table.header.len())
                .map(|c| {
                    cells
                        .iter()
                        .map(|r| r[c].len())
                        .chain([table.header[c].len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let _ = writeln!(out, "\n{}", table.title);
            let line = |out: &mut String, row: &[String], numeric: &[bool]| {
                let parts: Vec<String> = row
                    .iter()
                    .zip(&widths)
                    .zip(numeric)
                    .map(|((s, w), num)| {
                        if *num {
                            format!("{s:>w$}")
                        } else {
                            format!("{s:<w$}")
                        }
                    })
                    .collect();
                let _ = writeln!(out, "  {}", parts.join("  ").trim_end());
            };
            let numeric: Vec<bool> = (0..table.header.len())
                .map(|c| {
                    table
                        .rows
                        .first()
                        .is_some_and(|r| matches!(r[c], Cell::Num(..)))
                })
                .collect();
            let header: Vec<String> = table.header.iter().map(|h| (*h).to_owned()).collect();
            line(&mut out, &header, &numeric);
            for row in &cells {
                line(&mut out, row, &numeric);
            }
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                let _ = writeln!(out, "{note}");
            }
        }
        out
    }

    /// `{"experiment", "settings": {..}, "tables": [{"title", "rows": [{column: value}]}], "notes"}`.
    pub(crate) fn json(&self) -> Value {
        let settings: serde_json::Map<String, Value> = self
            .settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        let tables: Vec<Value> = self
            .tables
            .iter()
            .map(|t| {
                let rows: Vec<Value> = t
                    .rows
                    .iter()
                    .map(|r| {
                        let obj: serde_json::Map<String, Value> = t
                            .header
                            .iter()
                            .zip(r)
                            .map(|(h, c)| ((*h).to_owned(), c.json()))
                            .collect();
                        Value::Object(obj)
                    })
                    .collect();
                json!({ "title": t.title, "rows": rows })
            })
            .collect();
        json!({ "experiment": self.experiment, "settings": settings, "tables": tables, "notes": self.notes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_and_aligned() {
        assert_eq!(group_thousands("1234567.89"), "1,234,567.89");
        assert_eq!(group_thousands("-1000"), "-1,000");
        assert_eq!(group_thousands("999"), "999");
        let report = Report {
            experiment: "demo",
            settings: vec![("jobs", "10".to_owned())],
            tables: vec![Table {
                title: "t".to_owned(),
                header: vec!["contender", "ns/job"],
                rows: vec![
                    vec![Cell::Text("a".to_owned()), Cell::Num(1234.5, 1)],
                    vec![Cell::Text("long name".to_owned()), Cell::Num(f64::NAN, 1)],
                ],
            }],
            notes: vec![],
        };
        let text = report.text();
        assert!(
            text.contains("  contender   ns/job\n  a          1,234.5\n  long name        -\n"),
            "{text}"
        );
        let json = report.json();
        assert_eq!(json["tables"][0]["rows"][0]["ns/job"], 1234.5);
        assert!(json["tables"][0]["rows"][1]["ns/job"].is_null());
    }
}
