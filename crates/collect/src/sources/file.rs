//! `file`: tail one file, line by line, with a checkpoint.
//!
//! Reading is by chunks into a buffer; a line leaves the buffer only once its
//! newline has been read, so a partial last line is never emitted (it waits
//! for the rest). At the end of the file the source checks the path: another
//! inode there means the file was rotated (the old one has been read to its
//! end, so the new one is read from its start); a file shorter than the read
//! position means it was truncated (read again from the start).
//!
//! Each record's id is `INODE:GENERATION:OFFSET` of its first byte
//! (GENERATION counts truncations of that inode, since offsets repeat after
//! one), stable across restarts. The checkpoint
//! (`DATA_DIR/checkpoints/SOURCE.json`: inode, generation and offset) moves only past records every sink has committed, so a restart
//! (even after `kill -9`) resumes at the first record not yet committed.
//! Replays carry the same ids, which the SQLite sink writes idempotently.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::lines::{Lines, Split};
use crate::config::{FileSource, ReadFrom};
use crate::pipeline::{SourceCtx, SourceError};
use crate::record::{Acked, Payload, Record};

const CHUNK: usize = 64 << 10;

/// The durable position of a file source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Checkpoint {
    inode: u64,
    /// Times this inode was truncated: offsets repeat after a truncation,
    /// so ids carry it to stay unique.
    #[serde(default)]
    generation: u64,
    offset: u64,
}

fn checkpoint_path(data_dir: &Path, source: &str) -> PathBuf {
    data_dir.join("checkpoints").join(format!("{source}.json"))
}

fn load_checkpoint(path: &Path) -> Option<Checkpoint> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

fn store_checkpoint(path: &Path, ck: Checkpoint) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(&ck).map_err(std::io::Error::other)?,
    )?;
    // Rename is atomic: a crash leaves the old checkpoint or the new one.
    std::fs::rename(&tmp, path)
}

/// A line read, with where it was.
struct Line {
    text: String,
    inode: u64,
    generation: u64,
    start: u64,
    end: u64,
}

/// The reading side: the open file and the bytes not yet made into lines.
struct Tail {
    path: PathBuf,
    file: Option<File>,
    inode: u64,
    generation: u64,
    lines: Lines,
    name: String,
    /// Read buffer, kept between reads.
    chunk: Vec<u8>,
}

impl Tail {
    fn open_at(&mut self, file: File, inode: u64, offset: u64) -> std::io::Result<()> {
        let mut file = file;
        file.seek(SeekFrom::Start(offset))?;
        self.file = Some(file);
        self.inode = inode;
        self.lines.reset(offset);
        Ok(())
    }

    /// The next complete line, if one can be read now. Never waits.
    fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            match self.lines.next() {
                Some(Split::Line { text, start, end }) => {
                    return Ok(Some(Line {
                        text,
                        inode: self.inode,
                        generation: self.generation,
                        start,
                        end,
                    }));
                }
                Some(Split::TooLong) => {
                    metrics::counter!("sluice_collect_source_lines_too_long_total", "source" => self.name.clone())
                        .increment(1);
                    tracing::warn!(offset = self.lines.read_to(), "line too long; skipped");
                    continue;
                }
                None => {}
            }
            let Some(file) = self.file.as_mut() else {
                if !self.reopen()? {
                    return Ok(None);
                }
                continue;
            };
            let n = file.read(&mut self.chunk)?;
            if n > 0 {
                self.lines.push(&self.chunk[..n]);
                continue;
            }
            // End of file: rotated, truncated, or just nothing new yet.
            let read_to = self.lines.read_to();
            match std::fs::metadata(&self.path) {
                Ok(m) if m.ino() != self.inode => {
                    if self.lines.pending() > 0 {
                        tracing::warn!(
                            bytes = self.lines.pending(),
                            "rotated file ended without a newline; its last partial line is dropped"
                        );
                    }
                    tracing::info!(inode = m.ino(), "file rotated; reading the new one");
                    self.file = None;
                    if !self.reopen()? {
                        return Ok(None);
                    }
                }
                Ok(m) if m.len() < read_to => {
                    tracing::info!(
                        size = m.len(),
                        was = read_to,
                        "file truncated; reading from the start"
                    );
                    let file = File::open(&self.path)?;
                    let inode = self.inode;
                    self.generation += 1;
                    self.open_at(file, inode, 0)?;
                }
                // Gone (rotated away, new one not there yet) or unchanged.
                _ => return Ok(None),
            }
        }
    }

    /// Open the file at the path from its start; `false` if it is not there.
    fn reopen(&mut self) -> std::io::Result<bool> {
        match File::open(&self.path) {
            Ok(f) => {
                let inode = f.metadata()?.ino();
                self.generation = 0;
                self.open_at(f, inode, 0)?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Records sent but not yet acknowledged, in order, and the checkpoint.
struct Positions {
    /// (seq, position after the record), oldest first.
    in_flight: VecDeque<(u64, Checkpoint)>,
    /// Acknowledgements that arrived ahead of older ones.
    done: BTreeMap<u64, bool>,
    committed: Checkpoint,
    file: PathBuf,
    failed: bool,
}

impl Positions {
    fn on_ack(&mut self, a: Acked) {
        self.done.insert(a.seq, a.ok);
    }

    /// Move the checkpoint past every acknowledged record at the front.
    fn advance(&mut self) -> std::io::Result<()> {
        let before = self.committed;
        while let Some(&(seq, ck)) = self.in_flight.front() {
            match self.done.get(&seq) {
                Some(true) => {
                    self.done.remove(&seq);
                    self.in_flight.pop_front();
                    self.committed = ck;
                }
                Some(false) => {
                    // Not committed by some sink: the checkpoint stays before
                    // it, so a restart reads it again.
                    if !self.failed {
                        tracing::warn!(
                            seq,
                            "a record was not committed; the checkpoint stops before it"
                        );
                    }
                    self.failed = true;
                    break;
                }
                None => break,
            }
        }
        if self.committed != before {
            store_checkpoint(&self.file, self.committed)?;
        }
        Ok(())
    }
}

pub(crate) async fn run(ctx: &SourceCtx, cfg: &FileSource) -> Result<(), SourceError> {
    let ck_file = checkpoint_path(&ctx.data_dir, &ctx.name);
    let saved = load_checkpoint(&ck_file);
    let mut tail = Tail {
        path: cfg.path.clone(),
        file: None,
        inode: 0,
        generation: 0,
        lines: Lines::new(0, cfg.max_line_length.0 as usize),
        name: ctx.name.to_string(),
        chunk: vec![0; CHUNK],
    };
    // Where to start: the checkpoint if it is about this file and still fits.
    let mut committed = Checkpoint::default();
    if let Ok(f) = File::open(&cfg.path) {
        let m = f.metadata()?;
        let (generation, offset) = match saved {
            Some(ck) if ck.inode == m.ino() && ck.offset <= m.len() => (ck.generation, ck.offset),
            // Truncated while we were away.
            Some(ck) if ck.inode == m.ino() => (ck.generation + 1, 0),
            Some(_) => (0, 0),
            None if cfg.read_from == ReadFrom::End => (0, m.len()),
            None => (0, 0),
        };
        tail.generation = generation;
        tail.open_at(f, m.ino(), offset)?;
        committed = Checkpoint {
            inode: m.ino(),
            generation,
            offset,
        };
        tracing::info!(inode = m.ino(), offset, "tailing");
    }
    let mut pos = Positions {
        in_flight: VecDeque::new(),
        done: BTreeMap::new(),
        committed,
        file: ck_file,
        failed: false,
    };
    let (ack_tx, mut acks) = mpsc::unbounded_channel::<Acked>();
    let mut seq = 0u64;
    let mut pending: Option<Record> = None;
    let poll = cfg.poll_interval.0;
    let result: Result<(), SourceError> = loop {
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break Ok(()),
            Some(a) = acks.recv() => {
                pos.on_ack(a);
                while let Ok(a) = acks.try_recv() {
                    pos.on_ack(a);
                }
                pos.advance()?;
            }
            permit = ctx.output.reserve(), if pending.is_some() => {
                let permit = permit?;
                if let Some(r) = pending.take() {
                    ctx.count_in();
                    permit.send(r);
                }
            }
            line = next(&mut tail, poll), if pending.is_none() => {
                let line = line?;
                seq += 1;
                pos.in_flight.push_back((
                    seq,
                    Checkpoint { inode: line.inode, generation: line.generation, offset: line.end },
                ));
                let record = Record {
                    id: Some(format!("{}:{}:{}", line.inode, line.generation, line.start)),
                    ack: Some(ctx.ack(seq, &ack_tx)),
                    ..Record::new(ctx.name.clone(), Payload::Text(line.text))
                };
                pending = ctx.offer(record)?;
            }
        }
    };
    // Drain: stop reading and keep committing positions as the last
    // acknowledgements come in (sinks flush on their batch timeout, so they
    // come without the channels closing); done when every record sent is
    // acknowledged, or when the pipeline's drain deadline aborts this task.
    drop(pending);
    drop(ack_tx);
    while let Some(a) = acks.recv().await {
        pos.on_ack(a);
        pos.advance()?;
    }
    pos.advance()?;
    result
}

/// Wait for the next line, polling at `poll`. Cancel-safe: all state changes
/// happen between awaits.
async fn next(tail: &mut Tail, poll: std::time::Duration) -> std::io::Result<Line> {
    loop {
        if let Some(line) = tail.next_line()? {
            return Ok(line);
        }
        tokio::time::sleep(poll).await;
    }
}
