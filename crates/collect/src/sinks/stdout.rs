//! `stdout`: each record as one JSON line on standard output.

use tokio::io::AsyncWriteExt;

use super::WriteError;
use crate::record::Record;

pub(crate) struct StdoutWriter;

impl StdoutWriter {
    pub(crate) async fn write(&mut self, batch: &[Record]) -> Result<(), WriteError> {
        let mut out = String::new();
        for r in batch {
            out.push_str(&r.to_json().to_string());
            out.push('\n');
        }
        let mut stdout = tokio::io::stdout();
        stdout
            .write_all(out.as_bytes())
            .await
            .map_err(|e| WriteError(e.to_string()))?;
        stdout.flush().await.map_err(|e| WriteError(e.to_string()))
    }
}
