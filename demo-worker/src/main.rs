//! A worker with the demonstration tasks of this crate's library, for trying the queue by
//! hand, for tests that kill a worker process, and for benchmarks.

use clap::Parser;
use shared::cli::{RedisArgs, WorkerArgs};
use shared::Worker;

/// mimalloc rather than glibc's malloc: allocation is a large part of the queue's CPU cost
/// (the measurement is in docs/BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "A Celery-compatible worker with demonstration tasks")]
struct Config {
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    worker: WorkerArgs,
}

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    config.worker.runtime()?.block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
    shared::telemetry::init();
    let redis = shared::Redis::open(config.redis.config())?;
    let worker = Worker::new(
        redis,
        demo_worker::registry(),
        config.worker.config("demo", false),
    );
    worker.run(shared::shutdown::on_signals()).await?;
    Ok(())
}
