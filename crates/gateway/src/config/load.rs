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
use std::path::Path;

use sluice_tomlspan::{
    Deserialized, SpanIndex, deserialize_all, original_path, render, syntax_problems,
};
use toml::de::DeTable;

pub use sluice_tomlspan::Problem;

use super::Config;
use super::validate;

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

/// Parse, deserialize and validate `text`: the config (when it deserialized
/// at all) and every problem, in file order.
fn check(text: &str) -> (Option<Config>, Vec<Problem>) {
    let (doc, syntax) = DeTable::parse_recoverable(text);
    let index = SpanIndex::build(doc.get_ref(), text);
    if !syntax.is_empty() {
        return (None, syntax_problems(&syntax, &index));
    }
    let upstream_names = upstream_names(doc.get_ref());
    let Deserialized {
        value: config,
        removed,
        mut problems,
    } = deserialize_all::<Config>(doc, &index);
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

/// The names under `[upstreams]`, whether or not each deserializes.
fn upstream_names(doc: &DeTable<'_>) -> BTreeSet<String> {
    doc.get("upstreams")
        .and_then(|v| v.get_ref().as_table())
        .map(|t| t.keys().map(|k| k.get_ref().to_string()).collect())
        .unwrap_or_default()
}
