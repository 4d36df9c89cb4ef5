//! The service's settings: one clap struct, every field also read from its environment
//! variable (DESIGN.md's names), so `--help` documents them all.

use std::time::Duration;

use clap::Parser;
use shared::cli::RedisArgs;

#[derive(Debug, Clone, Parser)]
#[command(version, about = "inventario-service: the inventory REST API")]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:3001")]
    pub http_addr: String,
    /// The inventory database (created if missing), shared with the workers.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://inventario.db")]
    pub database_url: String,
    /// Queue the stock movements are sent to.
    #[arg(long, env = "QUEUE", default_value = "inventario")]
    pub queue: String,
    /// Milliseconds a queue route waits for Redis before answering 503.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 2000)]
    pub redis_timeout_ms: u64,
    #[command(flatten)]
    pub redis: RedisArgs,
}

impl Config {
    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms.max(1))
    }
}
