//! monitor-service: the monitor of the inventory worker (port 3002). For now only `GET /health`; its routes come with its own issue.

use axum::{routing::get, Json, Router};
use clap::Parser;
use serde_json::json;

#[derive(Parser)]
#[command(version, about = "the monitor of the inventory worker")]
struct Config {
    /// Address to listen on.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:3002")]
    http_addr: String,
}

fn app() -> Router {
    Router::new().route("/health", get(|| async { Json(json!({"status": "ok"})) }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    shared::telemetry::init();
    let listener = tokio::net::TcpListener::bind(&config.http_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    let shutdown = shared::shutdown::on_signals();
    axum::serve(listener, app())
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}
