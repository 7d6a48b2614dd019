//! The jobs commands, `sluice gateway` and `sluice up` run as the real
//! binary against real servers it starts: SQLite files in temp dirs,
//! PostgreSQL schemas, loopback ports.

mod support;

mod crash;
mod gateway;
mod jobs_commands;
mod postgres_workers;
mod up;
