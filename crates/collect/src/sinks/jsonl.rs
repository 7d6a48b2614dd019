//! `jsonl`: each record as one JSON line appended to a file, rotated by
//! size (`FILE` → `FILE.1` → … → `FILE.max_files`, the oldest dropped).
//! A batch counts as committed once written (and fsynced, with `fsync`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::WriteError;
use crate::config::JsonlSink;
use crate::record::Record;

struct State {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: usize,
    fsync: bool,
}

pub(crate) struct JsonlWriter {
    state: Option<State>,
}

fn open_append(path: &Path) -> std::io::Result<(File, u64)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl State {
    fn rotate(&mut self) -> std::io::Result<()> {
        if self.max_files == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(rotated(&self.path, self.max_files));
            for n in (1..self.max_files).rev() {
                let from = rotated(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, rotated(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        let (file, size) = open_append(&self.path)?;
        self.file = file;
        self.size = size;
        Ok(())
    }

    fn write(&mut self, lines: &[String]) -> std::io::Result<()> {
        let mut chunk = Vec::new();
        for line in lines {
            let len = line.len() as u64 + 1;
            if self.size + chunk.len() as u64 + len > self.max_size
                && self.size + chunk.len() as u64 > 0
            {
                self.file.write_all(&chunk)?;
                chunk.clear();
                self.rotate()?;
            }
            chunk.extend_from_slice(line.as_bytes());
            chunk.push(b'\n');
        }
        self.file.write_all(&chunk)?;
        self.size += chunk.len() as u64;
        if self.fsync {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

impl JsonlWriter {
    pub(crate) fn open(cfg: &JsonlSink) -> Result<JsonlWriter, String> {
        if let Some(dir) = cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let (file, size) =
            open_append(&cfg.path).map_err(|e| format!("opening {}: {e}", cfg.path.display()))?;
        Ok(JsonlWriter {
            state: Some(State {
                path: cfg.path.clone(),
                file,
                size,
                max_size: cfg.max_size.0,
                max_files: cfg.max_files,
                fsync: cfg.fsync,
            }),
        })
    }

    pub(crate) async fn write(&mut self, batch: &[Record]) -> Result<(), WriteError> {
        let lines: Vec<String> = batch.iter().map(|r| r.to_json().to_string()).collect();
        let Some(mut state) = self.state.take() else {
            return Err(WriteError("writer lost after a panic".to_owned()));
        };
        // File I/O off the runtime's workers.
        let (state, result) = tokio::task::spawn_blocking(move || {
            let r = state.write(&lines);
            (state, r)
        })
        .await
        .map_err(|e| WriteError(e.to_string()))?;
        self.state = Some(state);
        result.map_err(|e| WriteError(e.to_string()))
    }
}
