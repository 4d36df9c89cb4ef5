//! # testkit: the workspace's test harness
//!
//! Real parts, not mocks: every test starts its own `redis-server` (and, where it needs them,
//! real worker processes, ours or Python Celery's) and never touches the machine's own
//! databases. A dev-only crate: nothing that ships depends on it.
//!
//! - [`redis_server`]: a private `redis-server` (unix socket or loopback port, TLS, password,
//!   append-only file), killed when dropped; filled to its `maxmemory` for tests of Redis full.
//! - [`sentinel`]: a private Redis Sentinel deployment (a master, a replica, three sentinels),
//!   whose master a test can kill to see a replica promoted.
//! - [`postgres`]: a private PostgreSQL server (`initdb` + `pg_ctl`, loopback port and unix
//!   socket), stopped and removed when dropped; each test creates its own database in it.
//! - [`process`]: the one guard for child processes (signals, SIGKILL, exit, logs), and the
//!   path of another crate's binary.
//! - [`wait`]: waiting on a condition with a deadline, for state that announces nothing.
//! - [`net`], [`rng`]: free loopback ports and waiting for a server's answer; seeded random
//!   sources that a failure can replay.
//! - [`queue`]: the queue as tests see it: a stack (Redis and a client), in-process workers,
//!   events, and counts of what is queued, held, quarantined and stored.
//! - [`demo`]: `demo-worker` processes and what their logs say they ran.
//! - [`celery`]: Python Celery 5.5 beside our code.
//! - [`hostile_http`]: proptest strategies for hostile HTTP requests (odd paths, queries,
//!   methods, content types, broken JSON) and the check of a JSON error answer.
//! - [`slow_http`]: slow HTTP clients (trickled heads, silent and idle connections) and a
//!   siege of them, for the servers' timeouts and connection cap.
//! - [`auth`]: tokens for the service's writes, from its own `token` subcommand, and HTTP clients
//!   that carry them.
//! - [`openapi`]: the services' OpenAPI document and Swagger UI checked against the running
//!   binary.

pub mod auth;
pub mod celery;
pub mod demo;
pub mod hostile_http;
pub mod net;
pub mod openapi;
pub mod postgres;
pub mod process;
pub mod queue;
pub mod redis_server;
pub mod rng;
pub mod sentinel;
pub mod slow_http;
pub mod wait;

pub use net::{free_port, wait_for_status};
pub use postgres::PostgresServer;
pub use process::{workspace_binary, Process};
pub use redis_server::{start_redis, RedisServer, ServerOptions};
pub use rng::seeded_rng;
pub use sentinel::Sentinels;
pub use wait::eventually;
