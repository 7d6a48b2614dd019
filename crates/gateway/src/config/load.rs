//! Reading a config file and reporting every problem with its key path and
//! line, not just the first.
//!
//! How: the text is parsed once into toml's spanned document (syntax errors
//! stop here, all of them reported). Then the whole document is deserialized
//! into [`Config`]; when serde fails, the error's span is mapped to the entry
//! it falls in, that entry is recorded as a problem and removed from the
//! document, and deserialization runs again — so one bad key never hides
//! another. What finally deserializes is checked by
//! [`validate`](super::validate), with each problem's path mapped back to
//! its line. Problems come out in file order.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::Config;
use super::locate::{self, Entry, KeyPath, Seg, SpanIndex};
use super::validate;

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
    /// The file is empty or holds only whitespace. Such a file would parse as
    /// a config with no routes, but it is far more likely a write caught half
    /// way (truncated, not yet filled) or a mistake, so it is refused.
    #[error(
        "{path} is empty (or only whitespace): refused, since it is far more likely a file being written than a config without routes"
    )]
    Empty {
        /// The file.
        path: String,
    },
    /// The file was read but is not a valid config: every problem, in file
    /// order, one per line as `FILE:LINE: KEY.PATH: message`.
    #[error("{}", render(file, problems))]
    Invalid {
        /// The file (or `<string>`).
        file: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

fn render(file: &str, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| match p.line {
            Some(line) => format!("{file}:{line}: {}: {}", p.path, p.message),
            None => format!("{file}: {}: {}", p.path, p.message),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// The problems, if the file was readable and not empty.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } | ConfigError::Empty { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }

    /// The file (or `<string>`) the error is about.
    pub fn file(&self) -> &str {
        match self {
            ConfigError::Read { path, .. } | ConfigError::Empty { path } => path,
            ConfigError::Invalid { file, .. } => file,
        }
    }
}

/// Whether config text is empty or only whitespace, which [`Config::load`] refuses.
pub(crate) fn is_blank(text: &str) -> bool {
    text.trim().is_empty()
}

impl Config {
    /// Read, parse and validate a config file. An empty or whitespace-only
    /// file is refused ([`ConfigError::Empty`]): at start, on `check` and on
    /// every reload path alike.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        if is_blank(&text) {
            return Err(ConfigError::Empty {
                path: path.display().to_string(),
            });
        }
        Config::parse(&text, &path.display().to_string())
    }

    /// Parse and validate config text; `file` names it in errors. Empty text
    /// is a valid config with no routes here: only files are refused when
    /// empty, since only a file can be caught half written.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        match check(text) {
            (Some(config), problems) if problems.is_empty() => Ok(config),
            (_, problems) => Err(ConfigError::Invalid {
                file: file.to_owned(),
                problems,
            }),
        }
    }

    /// Every semantic problem of an already deserialized config (names that
    /// point nowhere, impossible values), without lines: a `Config` built in
    /// code has no file. [`Config::parse`] runs the same checks with lines.
    pub fn validate(&self) -> Vec<Problem> {
        let names = self.upstreams.keys().cloned().collect();
        validate::check(self, &names)
            .into_iter()
            .map(|i| Problem {
                path: i.path.to_string(),
                line: None,
                message: i.message,
            })
            .collect()
    }
}

/// Most syntax errors reported: after the first few, toml's recovery mostly
/// reports the consequences of the first.
const MAX_SYNTAX_ERRORS: usize = 20;

/// Parse, deserialize and validate `text`: the config (when it deserialized
/// at all) and every problem, in file order.
fn check(text: &str) -> (Option<Config>, Vec<Problem>) {
    let (doc, syntax) = DeTable::parse_recoverable(text);
    let index = SpanIndex::build(doc.get_ref(), text);
    if !syntax.is_empty() {
        return (None, syntax_problems(&syntax, &index));
    }
    let upstream_names = upstream_names(doc.get_ref());
    let (config, removed, mut problems) = deserialize(doc, &index);
    if let Some(config) = &config {
        for issue in validate::check(config, &upstream_names) {
            // An issue about a key the loader dropped has been reported already.
            if issue
                .concerns
                .iter()
                .map(|c| original_path(c, &removed))
                .any(|c| removed.iter().any(|r| r.starts_with(&c)))
            {
                continue;
            }
            let path = original_path(&issue.path, &removed);
            problems.push(Problem {
                line: index.line_of(&path),
                path: path.to_string(),
                message: issue.message,
            });
        }
    }
    // Stable: problems on one line keep the order they were found in.
    problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    (config, problems)
}

fn syntax_problems(errors: &[toml::de::Error], index: &SpanIndex) -> Vec<Problem> {
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

/// The names under `[upstreams]`, whether or not each deserializes.
fn upstream_names(doc: &DeTable<'_>) -> BTreeSet<String> {
    doc.get("upstreams")
        .and_then(|v| v.get_ref().as_table())
        .map(|t| t.keys().map(|k| k.get_ref().to_string()).collect())
        .unwrap_or_default()
}

/// Deserialize, dropping each entry serde refuses and trying again. Returns
/// the config (unless an error could not be pinned to an entry), the paths
/// dropped (as in the file), and a problem for each.
fn deserialize(
    doc: Spanned<DeTable<'_>>,
    index: &SpanIndex,
) -> (Option<Config>, Vec<KeyPath>, Vec<Problem>) {
    let span = doc.span();
    let mut doc = doc.into_inner();
    let mut removed: Vec<KeyPath> = Vec::new();
    let mut problems = Vec::new();
    // Each round drops one entry, so there are at most as many rounds as entries.
    for _ in 0..=index.len() {
        let value = Spanned::new(span.clone(), DeValue::Table(doc.clone()));
        let err = match Config::deserialize(ValueDeserializer::from(value)) {
            Ok(config) => return (Some(config), removed, problems),
            Err(e) => e,
        };
        let entry: Option<Entry> = err
            .span()
            .and_then(|s| index.locate(&s))
            .filter(|e| !e.path.is_root())
            .cloned();
        let Some(entry) = entry else {
            problems.push(Problem {
                path: KeyPath::root().to_string(),
                line: err.span().map(|s| index.line_at(s.start)),
                message: err.message().to_owned(),
            });
            return (None, removed, problems);
        };
        if !follows_removal(err.message(), &entry.path, &removed) {
            problems.push(Problem {
                path: entry.path.to_string(),
                line: index.line_of(&entry.path),
                message: message(err.message()),
            });
        }
        if !locate::remove(&mut doc, &entry) {
            return (None, removed, problems);
        }
        removed.push(entry.path);
    }
    (None, removed, problems)
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

/// Map a path in the deserialized config (where dropped array elements left
/// no gap) back to the path in the file. `removed` holds file paths.
fn original_path(path: &KeyPath, removed: &[KeyPath]) -> KeyPath {
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
