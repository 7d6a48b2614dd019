//! The jobs commands: `server` and `worker` run jobs; `submit`, `watch`,
//! `status`, `cancel` and `jobs` talk to a running server over its REST API.

pub(crate) mod app;
pub(crate) mod inspect;
pub(crate) mod remote;
pub(crate) mod serve;
pub(crate) mod settings;
pub(crate) mod sse;
pub(crate) mod submit;
pub(crate) mod watch;
