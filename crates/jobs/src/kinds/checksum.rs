//! `checksum {path, algo}`: hashes a file on the rayon pool (SHA-256 with
//! ring, BLAKE3 with the blake3 crate), reading in chunks so a cancel or
//! timeout stops it between chunks.

use std::fs::File;
use std::io::Read;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{ArgsError, CpuContext, CpuKind, JobError};

/// Hashes a file.
#[derive(Clone, Copy, Debug, Default)]
pub struct Checksum;

/// Hash algorithms of [`Checksum`].
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Algo {
    /// SHA-256.
    Sha256,
    /// BLAKE3.
    Blake3,
}

/// Args of [`Checksum`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksumArgs {
    /// File to hash.
    pub path: String,
    /// Algorithm.
    pub algo: Algo,
}

const CHUNK: usize = 256 * 1024;

enum Hasher {
    Sha256(Box<ring::digest::Context>),
    Blake3(Box<blake3::Hasher>),
}

impl CpuKind for Checksum {
    type Args = ChecksumArgs;

    fn check(&self, args: &ChecksumArgs) -> Result<(), ArgsError> {
        if args.path.is_empty() {
            return Err(ArgsError::new("path", "must not be empty"));
        }
        Ok(())
    }

    fn run(&self, args: ChecksumArgs, ctx: &CpuContext) -> Result<Value, JobError> {
        let mut file = File::open(&args.path)
            .map_err(|e| JobError::permanent(format!("open {}: {e}", args.path)))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut hasher = match args.algo {
            Algo::Sha256 => {
                Hasher::Sha256(Box::new(ring::digest::Context::new(&ring::digest::SHA256)))
            }
            Algo::Blake3 => Hasher::Blake3(Box::new(blake3::Hasher::new())),
        };
        let mut buf = vec![0u8; CHUNK];
        let mut total: u64 = 0;
        loop {
            if ctx.is_cancelled() {
                return Err(JobError::retryable("cancelled"));
            }
            let n = file
                .read(&mut buf)
                .map_err(|e| JobError::retryable(format!("read {}: {e}", args.path)))?;
            if n == 0 {
                break;
            }
            match &mut hasher {
                Hasher::Sha256(c) => c.update(&buf[..n]),
                Hasher::Blake3(h) => {
                    h.update(&buf[..n]);
                }
            }
            total += n as u64;
            if size > 0 {
                ctx.set_progress(total as f64 / size as f64);
            }
        }
        let hex = match hasher {
            Hasher::Sha256(c) => to_hex(c.finish().as_ref()),
            Hasher::Blake3(h) => h.finalize().to_hex().to_string(),
        };
        let algo = match args.algo {
            Algo::Sha256 => "sha256",
            Algo::Blake3 => "blake3",
        };
        Ok(json!({ "algo": algo, "hex": hex, "bytes": total }))
    }
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
