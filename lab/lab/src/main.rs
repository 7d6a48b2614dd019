//! `sluice-lab`: runs the lab's experiments and prints their figures.
//!
//! ```text
//! sluice-lab list
//! sluice-lab run taskpool --jobs 1000000 --threads 2
//! sluice-lab run --json taskpool
//! ```
//!
//! Modules: `experiments` (one module per experiment and the registry),
//! `report` (tables as text or JSON), `measure` (interleaved runs, medians),
//! `actor` (the hand-written tokio actor the `actors` experiment measures).

mod actor;
mod experiments;
mod measure;
mod report;

use anyhow::{Result, bail};
use clap::{Arg, ArgAction, Command};

use experiments::ALL;

fn cli() -> Command {
    Command::new("sluice-lab")
        .about("The roadmap's foundations, measured against the crates people use instead")
        .long_about(
            "The roadmap's foundations, measured against the crates people use instead.\n\n\
             Build with --release: debug builds measure the debug build. docs/roadmap.md maps each \
             roadmap topic to its code and experiment; docs/benchmarks.md has the figures.",
        )
        .subcommand_required(true)
        .subcommand(Command::new("list").about("List the experiments, one line each"))
        .subcommand(
            Command::new("run")
                .about(
                    "Run one experiment and print a table of each contender's figures and ratios",
                )
                .arg(
                    Arg::new("json")
                        .long("json")
                        .global(true)
                        .action(ArgAction::SetTrue)
                        .help("Print JSON instead of a table"),
                )
                .subcommand_required(true)
                .subcommands(ALL.iter().map(|e| (e.command)())),
        )
}

#[cfg(all(feature = "console", not(tokio_unstable)))]
compile_error!(
    "the `console` feature needs tokio's unstable instrumentation: build with \
     RUSTFLAGS=\"--cfg tokio_unstable\" CARGO_TARGET_DIR=target/console"
);

fn main() -> Result<()> {
    // tokio-console's subscriber: serves task data on 127.0.0.1:6669 from
    // its own thread for as long as the process runs.
    #[cfg(all(feature = "console", tokio_unstable))]
    console_subscriber::init();
    let matches = cli().get_matches();
    match matches.subcommand() {
        Some(("list", _)) => {
            let width = ALL.iter().map(|e| e.name.len()).max().unwrap_or(0);
            for e in ALL {
                println!("{:width$}  {}", e.name, e.about);
            }
        }
        Some(("run", run)) => {
            let Some((name, args)) = run.subcommand() else {
                bail!("name an experiment (see `list`)")
            };
            let Some(entry) = ALL.iter().find(|e| e.name == name) else {
                bail!("no experiment {name:?}")
            };
            if cfg!(debug_assertions) {
                eprintln!("note: a debug build; figures mean little without --release");
            }
            let report = (entry.run)(args)?;
            if args.get_flag("json") {
                println!("{}", serde_json::to_string_pretty(&report.json())?);
            } else {
                print!("{}", report.text());
            }
        }
        _ => unreachable!("clap requires a subcommand"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_is_well_formed_and_names_are_unique() {
        cli().debug_assert();
        let mut names: Vec<_> = ALL.iter().map(|e| e.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }
}
