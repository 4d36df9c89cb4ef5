//! inventario-worker: consumes the inventory queue and answers the health task
//! `obtener_estado`. Run as many replicas as you like on one queue; they share the work.

use clap::Parser;
use serde_json::json;
use shared::cli::{RedisArgs, WorkerArgs};
use shared::{Registry, Task, TaskResult, Worker};

#[derive(Parser)]
#[command(
    version,
    about = "The inventory worker: consumes Celery tasks from Redis"
)]
struct Config {
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    worker: WorkerArgs,
}

/// The health task the monitor pings. The database check joins it with the inventory issue.
async fn obtener_estado(task: Task) -> TaskResult {
    Ok(json!({
        "estado": "OK",
        "mensaje": "InventarioService responde correctamente - OK",
        "hostname": task.hostname,
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    shared::telemetry::init();
    let redis = shared::Redis::open(config.redis.config())?;
    let mut registry = Registry::new();
    registry.register("obtener_estado", obtener_estado);
    Worker::new(redis, registry, config.worker.config("inventario"))
        .run(shared::shutdown::on_signals())
        .await?;
    Ok(())
}
