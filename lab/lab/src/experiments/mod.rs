//! The experiments. Each is one module with a clap `Args` struct (its
//! options) that implements [`Experiment`]; [`ALL`] lists them, one line
//! each. Adding one means `mod name;` here and `entry::<name::Type>()` in [`ALL`].

use anyhow::Result;
use clap::{ArgMatches, Args, Command, FromArgMatches};

use crate::report::Report;

mod actors;
mod backpressure;
mod blocking;
mod echo;
mod minirt;
mod rpc;
mod select;
mod taskpool;

/// One experiment: its name, one line saying what it measures, and how to run it.
pub(crate) trait Experiment: Args + FromArgMatches {
    const NAME: &'static str;
    const ABOUT: &'static str;
    fn run(self) -> Result<Report>;
}

/// An experiment as the runner sees it: type-erased to plain function pointers.
pub(crate) struct Entry {
    pub(crate) name: &'static str,
    pub(crate) about: &'static str,
    pub(crate) command: fn() -> Command,
    pub(crate) run: fn(&ArgMatches) -> Result<Report>,
}

const fn entry<E: Experiment>() -> Entry {
    Entry {
        name: E::NAME,
        about: E::ABOUT,
        command: command::<E>,
        run: run::<E>,
    }
}

fn command<E: Experiment>() -> Command {
    E::augment_args(Command::new(E::NAME).about(E::ABOUT))
}

fn run<E: Experiment>(matches: &ArgMatches) -> Result<Report> {
    E::from_arg_matches(matches)?.run()
}

/// The registry: one line per experiment.
pub(crate) const ALL: &[Entry] = &[
    entry::<taskpool::Taskpool>(),
    entry::<echo::Echo>(),
    entry::<select::Select>(),
    entry::<backpressure::Backpressure>(),
    entry::<minirt::Minirt>(),
    entry::<blocking::Blocking>(),
    entry::<actors::Actors>(),
    entry::<rpc::Rpc>(),
];
