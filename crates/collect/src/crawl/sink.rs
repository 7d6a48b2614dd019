//! Where page records go: a JSONL file (one record a line, appended and
//! flushed before the page is marked done in the store) or the store's own
//! SQLite database (upserted by URL in the same transaction as the mark).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{Error, PageRecord};

/// Where `sluice crawl` writes its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// A JSONL file: one record per line.
    Jsonl(PathBuf),
    /// An SQLite database (`sqlite://PATH`): table `crawl_pages`, one row
    /// per URL; the crawl state lives in the same file.
    Sqlite(PathBuf),
}

impl Output {
    /// Parses `--out`: `sqlite://PATH`, or a file path for JSONL.
    pub fn parse(s: &str) -> Result<Output, String> {
        if let Some(p) = s.strip_prefix("sqlite://") {
            if p.is_empty() {
                return Err("`sqlite://` needs a path, e.g. sqlite://crawl.db".into());
            }
            return Ok(Output::Sqlite(PathBuf::from(p)));
        }
        if s.is_empty() || s.ends_with('/') {
            return Err(format!("`{s}` is not a file path"));
        }
        if s.contains("://") {
            return Err(format!(
                "`{s}`: unknown output scheme; use a .jsonl path or sqlite://PATH"
            ));
        }
        Ok(Output::Jsonl(PathBuf::from(s)))
    }

    /// The state database used with this output when none is named: the
    /// SQLite output itself, or `FILE.state.db` beside a JSONL file.
    pub fn default_state(&self) -> PathBuf {
        match self {
            Output::Sqlite(p) => p.clone(),
            Output::Jsonl(p) => {
                let mut s = p.clone().into_os_string();
                s.push(".state.db");
                PathBuf::from(s)
            }
        }
    }
}

/// The open record writer.
pub(crate) enum Sink {
    /// Appending to a JSONL file.
    Jsonl {
        /// The buffered file.
        file: BufWriter<File>,
        /// Its path, for errors.
        path: PathBuf,
    },
    /// Records go into the store's transaction.
    InStore,
}

impl Sink {
    /// Opens the output; a fresh crawl truncates a JSONL file, a resumed
    /// one appends to it.
    pub(crate) fn open(output: &Output, resume: bool) -> Result<Sink, Error> {
        match output {
            Output::Sqlite(_) => Ok(Sink::InStore),
            Output::Jsonl(path) => {
                let err = |source| Error::Output {
                    path: path.clone(),
                    source,
                };
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(err)?;
                }
                let file = OpenOptions::new()
                    .create(true)
                    .append(resume)
                    .write(true)
                    .truncate(!resume)
                    .open(path)
                    .map_err(err)?;
                Ok(Sink::Jsonl {
                    file: BufWriter::new(file),
                    path: path.clone(),
                })
            }
        }
    }

    /// Whether records are written by the store.
    pub(crate) fn in_store(&self) -> bool {
        matches!(self, Sink::InStore)
    }

    /// Writes one record and flushes it (JSONL); nothing for `InStore`.
    pub(crate) fn write(&mut self, record: &PageRecord) -> Result<(), Error> {
        let Sink::Jsonl { file, path } = self else {
            return Ok(());
        };
        let io = |source| Error::Output {
            path: path.clone(),
            source,
        };
        serde_json::to_writer(&mut *file, record).map_err(|e| io(e.into()))?;
        file.write_all(b"\n").map_err(io)?;
        file.flush().map_err(io)
    }
}

/// Reads a JSONL output back (tests, tools).
pub fn read_jsonl(path: &Path) -> std::io::Result<Vec<PageRecord>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(std::io::Error::other))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_forms() {
        assert_eq!(
            Output::parse("sqlite://x/c.db").unwrap(),
            Output::Sqlite("x/c.db".into())
        );
        assert_eq!(
            Output::parse("pages.jsonl").unwrap(),
            Output::Jsonl("pages.jsonl".into())
        );
        assert!(Output::parse("sqlite://").is_err());
        assert!(
            Output::parse("postgres://h/db")
                .unwrap_err()
                .contains("unknown output scheme")
        );
        assert_eq!(
            Output::parse("a/p.jsonl").unwrap().default_state(),
            PathBuf::from("a/p.jsonl.state.db")
        );
        assert_eq!(
            Output::parse("sqlite://c.db").unwrap().default_state(),
            PathBuf::from("c.db")
        );
    }
}
