//! Integration tests of sluice-jobs on real SQLite files in temp dirs and,
//! when `SLUICE_TEST_POSTGRES_URL` is set, on PostgreSQL (a schema per
//! test).

#[path = "../shared/pg_schema.rs"]
mod pg_schema;
#[macro_use]
mod support;

mod batches;
mod cancel;
mod changes;
mod checkpoint;
mod deps;
mod exec_tree;
mod kinds;
mod leases;
mod lifecycle;
mod postgres;
mod reads;
mod retries;
mod timeouts;
mod transitions;
