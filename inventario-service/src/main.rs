//! inventario-service: the inventory REST API (port 3001). Parses its settings, opens (and
//! seeds, once) the database, serves until SIGTERM/SIGINT, then finishes in-flight requests.

use anyhow::Context;
use clap::Parser;
use inventario::Store;
use inventario_service::{app, AppState, Config};

/// mimalloc rather than glibc's malloc: allocation is a large part of the queue's CPU cost
/// (the measurement is in docs/BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    shared::telemetry::init();
    let store = Store::open(&config.database_url)
        .await
        .with_context(|| format!("opening {}", config.database_url))?;
    let seeded = store.seed_default().await.context("seeding productos")?;
    tracing::info!(database = %config.database_url, seeded, "database ready");
    let redis = shared::Redis::open(config.redis.config())?;
    let state = AppState::new(store, redis, &config.queue, config.redis_timeout());
    let listener = tokio::net::TcpListener::bind(&config.http_addr)
        .await
        .with_context(|| format!("binding {}", config.http_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    let shutdown = shared::shutdown::on_signals();
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    tracing::info!("stopped");
    Ok(())
}
