//! A worker with the generic demonstration tasks of `shared::worker::demo`, for trying the
//! queue by hand, for tests that kill a worker process, and for benchmarks.

use clap::Parser;
use shared::cli::{RedisArgs, WorkerArgs};
use shared::Worker;

/// mimalloc, not glibc's malloc, which took a fifth of the worker's CPU in a drain
/// (docs/BENCHMARKS.md).
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
        shared::worker::demo::registry(),
        config.worker.config("demo", false),
    );
    worker.run(shared::shutdown::on_signals()).await?;
    Ok(())
}
