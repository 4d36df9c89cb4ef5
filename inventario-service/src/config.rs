//! The service's settings: one clap struct, every field also read from its environment
//! variable (DESIGN.md's names), so `--help` documents them all. With no subcommand the
//! program serves; `token` prints a bearer token for the writes and exits.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use shared::cli::RedisArgs;

use crate::auth::{Autenticacion, Secreto};

#[derive(Debug, Clone, Parser)]
#[command(version, about = "inventario-service: the inventory REST API")]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:3001")]
    pub http_addr: String,
    /// The inventory database, shared with the workers: sqlite://file.db (created if missing)
    /// or postgres://user:password@host/db (the database must exist).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://inventario.db",
        hide_env_values = true
    )]
    pub database_url: String,
    /// The inventory database's connection pool.
    #[command(flatten)]
    pub database_pool: inventario::cli::PoolArgs,
    /// Queue the stock movements are sent to.
    #[arg(long, env = "QUEUE", default_value = "inventario")]
    pub queue: String,
    /// Send a task-sent event for every task sent (Celery's task_send_sent_event), so that
    /// Flower and the monitor see a task from the moment it is queued, with its queue. Off by
    /// default, as in Celery.
    #[arg(long, env = "TASK_SENT_EVENTS", default_value_t = false)]
    pub task_sent_events: bool,
    /// Milliseconds a queue route waits for Redis before answering 503.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 2000)]
    pub redis_timeout_ms: u64,
    /// HS256 secret of the bearer tokens (JWTs, `exp` and `sub` required) that the writes
    /// (POST, PUT, DELETE) need. Unset: every write is answered 401, unless AUTH_DISABLED.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, global = true)]
    pub jwt_secret: Option<Secreto>,
    /// Serve the writes without any token, for a trusted development set-up only (logged as a
    /// warning at start). The variable takes true or false (also 1/0, yes/no).
    #[arg(
        long,
        env = "AUTH_DISABLED",
        default_value_t = false,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub auth_disabled: bool,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Timeouts and the connection cap of the HTTP server.
    #[command(flatten)]
    pub http: http_server::HttpArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do instead of serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print a bearer token for the writes, signed with JWT_SECRET, and exit.
    Token(TokenArgs),
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// Who the token names (its `sub`): recorded in the service's log for each write.
    #[arg(long)]
    pub sub: String,
    /// How long the token is valid: 90s, 15m, 1h, 7d, ...
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
}

impl Config {
    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms.max(1))
    }

    /// How the writes are authenticated, from JWT_SECRET and AUTH_DISABLED.
    pub fn autenticacion(&self) -> Autenticacion {
        Autenticacion::new(self.jwt_secret.as_ref(), self.auth_disabled)
    }
}
