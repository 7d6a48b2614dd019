//! Integration tests of the REST API: real HTTP on loopback against a real
//! SQLite file (the event streams also on PostgreSQL, when
//! `SLUICE_TEST_POSTGRES_URL` is set), with a runner where jobs must run.

#[path = "../shared/pg_schema.rs"]
mod pg_schema;
mod support;

mod auth;
mod batches;
mod events;
mod idempotency;
mod jobs;
mod service;
mod validation;
