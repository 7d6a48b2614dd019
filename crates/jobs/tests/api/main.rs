//! Integration tests of the REST API: real HTTP on loopback against a real
//! SQLite file, with a runner where jobs must run.

mod support;

mod auth;
mod batches;
mod events;
mod idempotency;
mod jobs;
mod service;
mod validation;
