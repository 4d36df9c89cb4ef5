//! What the integration tests share: a private Redis, a client on it, and in-process workers.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use shared::shutdown::CancellationToken;
use shared::testing::RedisServer;
use shared::worker::Stats;
use shared::{Client, Redis, Registry, Worker, WorkerConfig};

pub const QUEUE: &str = "inventario";

/// A private redis-server with a handle and a client on it.
pub struct Stack {
    pub server: RedisServer,
    pub redis: Redis,
    pub client: Client,
}

impl Stack {
    pub fn new() -> Self {
        Self::on(RedisServer::start())
    }

    pub fn on(server: RedisServer) -> Self {
        let redis = Redis::from_url(&server.url()).expect("redis url");
        let client = Client::new(redis.clone(), QUEUE);
        Stack {
            server,
            redis,
            client,
        }
    }

    pub fn worker(&self, config: WorkerConfig) -> RunningWorker {
        RunningWorker::start(self.redis.clone(), shared::worker::demo::registry(), config)
    }
}

/// Settings that keep tests quick: short leases and heartbeats.
pub fn config() -> WorkerConfig {
    WorkerConfig {
        hostname: "test@localhost".into(),
        queues: vec![QUEUE.into()],
        concurrency: 8,
        urgent_concurrency: 2,
        lease_ttl: Duration::from_secs(2),
        heartbeat_interval: Duration::from_millis(500),
        recover_interval: Duration::from_millis(200),
        idle_block: Duration::from_secs(1),
        ..WorkerConfig::default()
    }
}

/// A worker running in this process.
pub struct RunningWorker {
    pub token: CancellationToken,
    pub handle: tokio::task::JoinHandle<shared::Result<()>>,
    pub consumer: String,
    pub stats: Arc<Stats>,
}

impl RunningWorker {
    pub fn start(redis: Redis, registry: Registry, config: WorkerConfig) -> Self {
        let worker = Worker::new(redis, registry, config);
        let consumer = worker.consumer_id().to_owned();
        let stats = worker.stats();
        let token = CancellationToken::new();
        let handle = tokio::spawn(worker.run(token.clone()));
        RunningWorker {
            token,
            handle,
            consumer,
            stats,
        }
    }

    /// Graceful stop; returns the worker's own result.
    pub async fn stop(self) -> shared::Result<()> {
        self.token.cancel();
        self.handle.await.expect("worker task")
    }
}
