//! What every config-driven `check` subcommand prints and exits with:
//! 0 valid, 1 invalid (the problems on stdout, their count on stderr),
//! 2 unreadable.

use std::fmt::Display;
use std::path::Path;
use std::process::ExitCode;

/// Exit status of `check` when the file cannot be read.
const EXIT_UNREADABLE: u8 = 2;

/// The file at `path` is valid; `summary` says what it holds.
pub(crate) fn valid(path: &Path, summary: &str) -> ExitCode {
    println!("{}: ok ({summary})", path.display());
    ExitCode::SUCCESS
}

/// The file at `path` has `count` problems, listed by `report`.
pub(crate) fn invalid(path: &Path, report: &dyn Display, count: usize) -> ExitCode {
    println!("{report}");
    eprintln!(
        "{}: {count} problem{}",
        path.display(),
        if count == 1 { "" } else { "s" }
    );
    ExitCode::FAILURE
}

/// The file could not be read.
pub(crate) fn unreadable(error: &dyn Display) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(EXIT_UNREADABLE)
}
