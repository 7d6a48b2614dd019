//! Integration tests of sluice-jobs on real SQLite files in temp dirs.

mod support;

mod batches;
mod cancel;
mod changes;
mod deps;
mod exec_tree;
mod kinds;
mod leases;
mod lifecycle;
mod retries;
mod timeouts;
mod transitions;
