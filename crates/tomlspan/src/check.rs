//! Deserializing a whole document while collecting every problem.
//!
//! When serde fails, the error's span is mapped to the entry it falls in,
//! that entry is recorded as a problem and removed from the document, and
//! deserialization runs again — so one bad key never hides another. Callers
//! then run their own semantic checks and map those paths to lines with
//! [`SpanIndex::line_of`] (after [`original_path`]).

use std::collections::BTreeSet;
use std::fmt;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::locate::{self, Entry, KeyPath, Seg, SpanIndex};

/// One thing wrong with a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `routes[2].upstream` (`<toml>` for a syntax error).
    pub path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Problems one per line as `FILE:LINE: KEY.PATH: message`.
pub fn render(file: &str, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| match p.line {
            Some(line) => format!("{file}:{line}: {}: {}", p.path, p.message),
            None => format!("{file}: {}: {}", p.path, p.message),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Most syntax errors reported: after the first few, toml's recovery mostly
/// reports the consequences of the first.
const MAX_SYNTAX_ERRORS: usize = 20;

/// Problems for toml's syntax errors, one per line, in file order.
pub fn syntax_problems(errors: &[toml::de::Error], index: &SpanIndex) -> Vec<Problem> {
    let mut seen = BTreeSet::new();
    let mut out: Vec<Problem> = errors
        .iter()
        .map(|e| Problem {
            path: "<toml>".to_owned(),
            line: e.span().map(|s| index.line_at(s.start)),
            message: e.message().to_owned(),
        })
        // Recovery often reports several errors for one broken line; keep the first.
        .filter(|p| seen.insert(p.line))
        .take(MAX_SYNTAX_ERRORS)
        .collect();
    out.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    out
}

/// What [`deserialize_all`] made of a document.
#[derive(Debug)]
pub struct Deserialized<T> {
    /// The value, unless an error could not be pinned to an entry.
    pub value: Option<T>,
    /// The paths dropped, as in the file.
    pub removed: Vec<KeyPath>,
    /// A problem for each dropped entry.
    pub problems: Vec<Problem>,
}

/// Deserialize `doc` into `T`, dropping each entry serde refuses and trying
/// again.
pub fn deserialize_all<T: DeserializeOwned>(
    doc: Spanned<DeTable<'_>>,
    index: &SpanIndex,
) -> Deserialized<T> {
    let span = doc.span();
    let mut doc = doc.into_inner();
    let mut out = Deserialized {
        value: None,
        removed: Vec::new(),
        problems: Vec::new(),
    };
    // Each round drops one entry, so there are at most as many rounds as entries.
    for _ in 0..=index.len() {
        let value = Spanned::new(span.clone(), DeValue::Table(doc.clone()));
        let err = match T::deserialize(ValueDeserializer::from(value)) {
            Ok(v) => {
                out.value = Some(v);
                return out;
            }
            Err(e) => e,
        };
        let entry: Option<Entry> = err
            .span()
            .and_then(|s| index.locate(&s))
            .filter(|e| !e.path.is_root())
            .cloned();
        let Some(entry) = entry else {
            out.problems.push(Problem {
                path: KeyPath::root().to_string(),
                line: err.span().map(|s| index.line_at(s.start)),
                message: err.message().to_owned(),
            });
            return out;
        };
        if !follows_removal(err.message(), &entry.path, &out.removed) {
            out.problems.push(Problem {
                path: entry.path.to_string(),
                line: index.line_of(&entry.path),
                message: message(err.message()),
            });
        }
        if !locate::remove(&mut doc, &entry) {
            return out;
        }
        out.removed.push(entry.path);
    }
    out
}

/// serde's wording, made to read well after `KEY.PATH: `.
fn message(serde: &str) -> String {
    if let Some(rest) = serde.strip_prefix("unknown field ") {
        return format!("unknown key {rest}");
    }
    if let Some(rest) = serde.strip_prefix("missing field ") {
        return format!("missing required key {rest}");
    }
    serde.to_owned()
}

/// A "missing field `x`" error for a table whose `x` the loader itself
/// dropped (because it was invalid) is a consequence, not a new problem.
fn follows_removal(message: &str, at: &KeyPath, removed: &[KeyPath]) -> bool {
    let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|s| s.strip_suffix('`'))
    else {
        return false;
    };
    removed.contains(&at.key(field))
}

/// Map a path in the deserialized value (where dropped array elements left
/// no gap) back to the path in the file. `removed` holds file paths.
pub fn original_path(path: &KeyPath, removed: &[KeyPath]) -> KeyPath {
    let mut out: Vec<Seg> = Vec::with_capacity(path.0.len());
    for seg in &path.0 {
        match seg {
            Seg::Index(i) => {
                let gaps: BTreeSet<usize> = removed
                    .iter()
                    .filter(|r| r.0.len() == out.len() + 1 && r.0[..out.len()] == out[..])
                    .filter_map(|r| match r.0.last() {
                        Some(Seg::Index(g)) => Some(*g),
                        _ => None,
                    })
                    .collect();
                // The i-th index (from 0) that is not a gap; bounded by i + gaps.
                let orig = (0..=i + gaps.len())
                    .filter(|n| !gaps.contains(n))
                    .nth(*i)
                    .unwrap_or(*i);
                out.push(Seg::Index(orig));
            }
            key => out.push(key.clone()),
        }
    }
    KeyPath(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_indexes_past_dropped_elements() {
        let routes = KeyPath::root().key("routes");
        let removed = vec![routes.index(0), routes.index(2)];
        assert_eq!(
            original_path(&routes.index(0).key("x"), &removed),
            routes.index(1).key("x")
        );
        assert_eq!(original_path(&routes.index(1), &removed), routes.index(3));
    }
}
