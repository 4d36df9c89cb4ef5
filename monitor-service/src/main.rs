//! monitor-service: pings the inventory worker through Redis, tells OK / DEGRADADO / CAIDO,
//! and serves the result on port 3002. `--help` lists the settings.

use anyhow::Context;
use clap::Parser;
use monitor_service::{app, Config, Monitor};

/// mimalloc rather than glibc's malloc: allocation is a large part of the queue's CPU cost
/// (the measurement is in docs/BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    shared::telemetry::init();
    let shutdown = shared::shutdown::on_signals();
    let monitor = Monitor::start(config.clone(), shutdown.clone())?;
    let listener = http_server::bind(&config.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    http_server::serve(
        listener,
        app(monitor.clone()),
        config.http.limits(),
        shutdown.clone(),
    )
    .await;
    monitor.stopped().await;
    Ok(())
}
