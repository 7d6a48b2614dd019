//! Reading a config file: parse, deserialize, then validate the whole, and
//! report every problem with its key path and line.

use std::fmt;
use std::path::Path;

use super::Config;

/// One thing wrong with a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `routes[2].upstream`.
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

/// Why a config could not be loaded: every problem found, in file order.
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
    /// The file was read but is not a valid config.
    #[error("{} problem(s) in {file}:\n{}", problems.len(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file (or `<string>`).
        file: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems, if the file was readable.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parse and validate config text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let invalid = |problems| ConfigError::Invalid {
            file: file.to_owned(),
            problems,
        };
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            invalid(vec![Problem {
                path: String::from("<document>"),
                line,
                message: e.message().to_owned(),
            }])
        })?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(invalid(problems))
        }
    }

    /// Every semantic problem (names that point nowhere, impossible values).
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (i, route) in self.routes.iter().enumerate() {
            match (&route.upstream, &route.respond) {
                (Some(name), None) if !self.upstreams.contains_key(name) => {
                    problems.push(Problem {
                        path: format!("routes[{i}].upstream"),
                        line: None,
                        message: format!("no upstream named {name:?}"),
                    })
                }
                (None, None) => problems.push(Problem {
                    path: format!("routes[{i}]"),
                    line: None,
                    message: "a route needs `upstream` or `respond`".into(),
                }),
                (Some(_), Some(_)) => problems.push(Problem {
                    path: format!("routes[{i}]"),
                    line: None,
                    message: "a route has either `upstream` or `respond`, not both".into(),
                }),
                _ => {}
            }
        }
        problems.extend(crate::limit::validate(self));
        problems
    }
}

/// 1-based line number of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}
