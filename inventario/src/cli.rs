//! The database pool's settings as command-line flags (each also read from its environment
//! variable), for the binaries that open the inventory: flattened into each one's clap struct,
//! so the service and the worker spell them the same way. DATABASE_URL itself stays in each
//! binary's struct, where it always was.

use std::time::Duration;

use clap::Args;

use crate::store::PoolConfig;

/// How the inventory's connection pool behaves.
#[derive(Debug, Clone, Args)]
pub struct PoolArgs {
    /// Connections in the inventory database's pool, per process. On PostgreSQL each is a
    /// server process: instances × this must stay under the server's max_connections.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = PoolConfig::default().max_connections)]
    pub database_max_connections: u32,
    /// Milliseconds an operation waits for a free connection of the pool before failing.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT_MS", default_value_t = millis(PoolConfig::default().acquire_timeout))]
    pub database_acquire_timeout_ms: u64,
    /// PostgreSQL only: milliseconds after which the server cancels a statement (a running
    /// query, or one waiting for a row lock). SQLite waits up to its busy timeout instead.
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT_MS", default_value_t = millis(PoolConfig::default().statement_timeout))]
    pub database_statement_timeout_ms: u64,
}

impl PoolArgs {
    pub fn config(&self) -> PoolConfig {
        PoolConfig {
            max_connections: self.database_max_connections.max(1),
            acquire_timeout: Duration::from_millis(self.database_acquire_timeout_ms.max(1)),
            statement_timeout: Duration::from_millis(self.database_statement_timeout_ms.max(1)),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
