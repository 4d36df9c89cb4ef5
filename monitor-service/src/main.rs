//! monitor-service: pings the inventory worker through Redis, tells INICIANDO / OK / DEGRADADO / CAIDO,
//! and serves the result on port 3002. `--help` lists the settings.

use anyhow::Context;
use clap::Parser;
use monitor_service::{app, Config, Monitor};

/// mimalloc rather than glibc's malloc: allocation is a large part of the queue's CPU cost
/// (the measurement is in docs/BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Below this many bytes a MONITOR_TOKEN can be guessed (16 random bytes, base64, is 22).
const MIN_TOKEN_BYTES: usize = 22;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    shared::telemetry::init();
    log_access(&config);
    let shutdown = shared::shutdown::on_signals();
    let monitor = Monitor::start(config.clone(), shutdown.clone())?;
    let listener = http_server::bind(&config.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    let server = http_server::Server::new(listener, app(monitor.clone()), config.http.limits())
        .instance(&shared::hostname());
    // What the server cuts off (slow clients, timed-out requests) next to the monitor's own.
    if let Err(e) = monitor
        .metrics()
        .registry()
        .register(Box::new(server.stats()))
    {
        tracing::warn!(error = %e, "http server metrics not registered");
    }
    server.run(shutdown.clone()).await;
    monitor.stopped().await;
    Ok(())
}

/// Who may read the monitor, said once at start; never the token itself.
fn log_access(config: &Config) {
    match config.token() {
        Some(token) => {
            tracing::info!(
                "MONITOR_TOKEN is set: every route but GET /health needs Authorization: Bearer \
                 <token> (a browser: open /?token=<token> once)"
            );
            if token.len() < MIN_TOKEN_BYTES {
                tracing::warn!(
                    "MONITOR_TOKEN is shorter than {MIN_TOKEN_BYTES} bytes: use a long random \
                     token"
                );
            }
        }
        None => tracing::info!(
            "MONITOR_TOKEN is not set: every route is open to whoever reaches the port"
        ),
    }
}
