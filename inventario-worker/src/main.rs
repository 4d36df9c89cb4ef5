//! inventario-worker: consumes the inventory queue, answers the health task `obtener_estado`
//! and applies stock movements to the database it shares with inventario-service (a SQLite
//! file on one machine, PostgreSQL across several).
//! Run as many replicas as you like on one queue; they share the work.

use anyhow::Context;
use clap::Parser;
use inventario::Store;
use shared::cli::{RedisArgs, WorkerArgs};
use shared::Worker;

use inventario_worker::Faults;

/// mimalloc rather than glibc's malloc: allocation is a large part of the queue's CPU cost
/// (the measurement is in docs/BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "The inventory worker: consumes Celery tasks from Redis and applies them to the inventory"
)]
struct Config {
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    worker: WorkerArgs,
    /// The inventory database, shared with inventario-service: sqlite://file.db (created if
    /// missing) or postgres://user:password@host/db (the database must exist).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://inventario.db",
        hide_env_values = true
    )]
    database_url: String,
    #[command(flatten)]
    database_pool: inventario::cli::PoolArgs,
    #[command(flatten)]
    faults: Faults,
}

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    config.worker.runtime()?.block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
    shared::telemetry::init();
    let pool = config.database_pool.config();
    let store = Store::open_with(&config.database_url, pool)
        .await
        .with_context(|| {
            format!(
                "opening {}",
                shared::connection::mask_url(&config.database_url)
            )
        })?;
    // Whichever of service and worker starts first seeds; the other finds it done.
    store.seed_default().await.context("seeding productos")?;
    if config.faults.is_active() {
        tracing::warn!(
            failure_rate = config.faults.failure_rate,
            delay_ms = config.faults.delay_ms,
            movement_delay_ms = config.faults.movement_delay_ms,
            "fault injection is ON"
        );
    }
    let redis = shared::Redis::open(config.redis.config())?;
    // STARTED is stored by default here, so GET /tareas/{id} shows a movement in progress.
    let worker_config = config.worker.config("inventario", true);
    let registry = inventario_worker::registry(store, config.faults);
    Worker::new(redis, registry, worker_config)
        .run(shared::shutdown::on_signals())
        .await?;
    Ok(())
}
