//! The jobs commands and `sluice up` run as the real binary against real
//! servers it starts: SQLite files in temp dirs, PostgreSQL schemas,
//! loopback ports.

mod support;

mod crash;
mod jobs_commands;
mod postgres_workers;
mod up;
