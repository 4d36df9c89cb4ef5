//! # shared: a Celery-compatible task queue on Redis
//!
//! Rust programs and Python Celery programs can replace each other on the same Redis: what
//! this crate writes is what Celery 5.x with kombu's Redis transport writes, and it reads what
//! they write. On top of Celery's format it adds what Celery lacks on Redis: a hand-off in
//! which no message can be lost when a worker dies, and dead workers' messages back on their
//! queue in seconds instead of an hour.
//!
//! A tour, in the order data flows:
//!
//! - [`protocol`]: the wire format (task messages, results, events); no Redis in it.
//! - [`keys`]: every Redis key and channel, in one place.
//! - [`connection`]: `REDIS_URL`, the pooled connection, dedicated connections, outages.
//! - [`broker`]: the only code that issues queue commands, with its Lua scripts.
//! - [`backend`]: results (store, read, wait over one shared pub/sub connection).
//! - [`client`]: `send_task` and `AsyncResult`.
//! - [`events`]: Celery worker events.
//! - [`worker`]: the runtime: handlers by name, lanes, heartbeat, recovery, graceful stop.
//! - [`shutdown`]: the one cancellation token a process hands to its components.
//! - `cli` and `telemetry` (feature `cli`): the settings binaries flatten into their clap
//!   configuration, and their logging set-up.
//!
//! Nothing here knows what the tasks do: handlers are registered by the program that runs the
//! worker (the inventory worker, the demo worker in this workspace).

pub mod backend;
pub mod broker;
#[cfg(feature = "cli")]
pub mod cli;
pub mod client;
pub mod connection;
pub mod control;
pub mod error;
pub mod events;
pub mod keys;
pub mod protocol;
pub mod revoked;
pub mod shutdown;
#[cfg(feature = "cli")]
pub mod telemetry;
pub mod worker;

pub use backend::{Backend, ResultWaiter};
pub use broker::Broker;
pub use client::{AsyncResult, Client, SendOptions};
pub use connection::{Redis, RedisConfig};
pub use error::{QueueError, Result};
pub use worker::{Registry, Task, TaskError, TaskResult, Worker, WorkerConfig};

/// This machine's host name, for Celery's `name@host` node names and `origin` headers.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}
