//! `--key value` options, parsed once and read by name, with errors that name
//! the option and the value.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

pub(crate) const USAGE: &str = "\
usage: jobs_load COMMAND --url http://127.0.0.1:PORT [options]
  enqueue     --n N [--batch B (1000; 1 = one POST /v1/jobs per job)] [--conc C (1)] [--ids FILE]
              [--wait-done true (then wait until no job is unfinished: end-to-end jobs/s)]
  drain-wait  --ids FILE --n N [--pid PID] [--broker-comm postgres] [--timeout S (600)]
  latency     --rate R --secs S [--warm W (1)] [--wait S (60)] [--conc C (256)] [--dump FILE]
  burn-fill   --n K --ms MS [--queue Q (burn)] [--ids FILE]
  queued      --queue Q";

/// Parsed options; every option given must be read by the command.
pub(crate) struct Opts {
    values: BTreeMap<String, String>,
    used: RefCell<BTreeSet<String>>,
}

/// An error in the command line or during a run.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

impl Opts {
    pub(crate) fn parse(mut it: impl Iterator<Item = String>) -> Result<Self, Error> {
        let mut values = BTreeMap::new();
        while let Some(k) = it.next() {
            let Some(name) = k.strip_prefix("--") else {
                return Err(format!("expected an option `--name value`, got `{k}`").into());
            };
            let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            if values.insert(name.to_owned(), v).is_some() {
                return Err(format!("--{name} given twice").into());
            }
        }
        Ok(Self {
            values,
            used: RefCell::new(BTreeSet::new()),
        })
    }

    /// The option's value parsed, or `default` when absent.
    pub(crate) fn get<T: FromStr>(&self, name: &str, default: Option<T>) -> Result<T, Error>
    where
        T::Err: std::fmt::Display,
    {
        self.used.borrow_mut().insert(name.to_owned());
        match self.values.get(name) {
            Some(v) => v.parse().map_err(|e| format!("--{name} `{v}`: {e}").into()),
            None => default.ok_or_else(|| format!("--{name} is required").into()),
        }
    }

    /// An optional string option.
    pub(crate) fn opt(&self, name: &str) -> Option<String> {
        self.used.borrow_mut().insert(name.to_owned());
        self.values.get(name).cloned()
    }

    /// Refuses options the command did not read (a typo would otherwise be ignored).
    pub(crate) fn check_all_used(&self) -> Result<(), Error> {
        let used = self.used.borrow();
        match self.values.keys().find(|k| !used.contains(*k)) {
            Some(k) => Err(format!("unknown option --{k} for this command").into()),
            None => Ok(()),
        }
    }
}
