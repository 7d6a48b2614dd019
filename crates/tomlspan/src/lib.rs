//! Loading TOML config files so that `check` can name every problem with its
//! key path and line, not just the first; and the human units config files
//! use.
//!
//! Modules:
//! - `locate`: key paths (`routes[1].timeout`) and the [`SpanIndex`] that
//!   maps byte spans to paths and paths back to lines.
//! - `check`: [`deserialize_all`], which deserializes a document, dropping
//!   and reporting each entry serde refuses until the rest deserializes, and
//!   the [`Problem`] type every report is made of.
//! - `units`: [`Dur`] (`"250ms"`), [`ByteSize`] (`"256MiB"`), [`Rate`] (`"100/s"`).

mod check;
mod locate;
mod units;

pub use check::{Deserialized, Problem, deserialize_all, original_path, render, syntax_problems};
pub use locate::{Entry, KeyPath, Seg, SpanIndex, remove};
pub use units::{ByteSize, Dur, Rate};
