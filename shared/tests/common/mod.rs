//! What the integration tests share: a private Redis, a client on it, in-process workers,
//! worker child processes (ours and Python Celery's), worker events, and the checks that
//! several tests make alike.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use shared::protocol::{TaskState, WorkerEvent};
use shared::shutdown::CancellationToken;
use shared::testing::RedisServer;
use shared::worker::{Stats, BUSINESS_PRIORITY};
use shared::{keys, AsyncResult, Client, Redis, Registry, SendOptions, Worker, WorkerConfig};

pub const QUEUE: &str = "inventario";

// ---------------------------------------------------------------------------------------------
// Redis, client and in-process workers

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

// ---------------------------------------------------------------------------------------------
// Sending

/// Business priority, as our producers send: the normal lane, a `\x06\x166` sub-list. Most tests
/// send their work this way, so that the health lane stays free.
pub fn business() -> SendOptions {
    SendOptions {
        priority: Some(BUSINESS_PRIORITY),
        ..SendOptions::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Worker events

/// The worker events of database 0, as a stream of pub/sub messages. Subscribe before the
/// worker starts, or its `worker-online` is missed.
pub async fn worker_events(redis: &Redis) -> impl Stream<Item = redis::Msg> + Unpin {
    let mut pubsub = redis.pubsub().await.expect("pub/sub connection");
    pubsub
        .psubscribe(keys::worker_events_pattern(0))
        .await
        .expect("psubscribe to worker events");
    pubsub.into_on_message()
}

/// Waits up to `limit` for the next event of type `kind` (`worker-online`, `worker-offline`),
/// passing over the others. Every event on the way must decode.
pub async fn wait_for_event(
    events: &mut (impl Stream<Item = redis::Msg> + Unpin),
    kind: &str,
    limit: Duration,
) -> WorkerEvent {
    tokio::time::timeout(limit, async {
        while let Some(msg) = events.next().await {
            let event =
                WorkerEvent::decode(msg.get_payload_bytes()).expect("a worker event decodes");
            if event.kind == kind {
                return event;
            }
        }
        panic!("the event stream ended before a {kind}");
    })
    .await
    .unwrap_or_else(|_| panic!("a {kind} event within {limit:?}"))
}

// ---------------------------------------------------------------------------------------------
// Child processes

/// A child process that is killed and reaped when dropped, so that a failing test leaves no
/// worker behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a `demo-worker` process named `hostname` on `QUEUE`, with `env` on top of the
/// binary's defaults (settings the caller does not give do not come from whatever this shell
/// happens to export). Its stdout is dropped, its stderr (the logs) goes to `stderr`.
pub fn spawn_demo_worker(
    url: &str,
    hostname: &str,
    env: &[(&str, &str)],
    stderr: Stdio,
) -> KillOnDrop {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_demo-worker"));
    for var in [
        "LEASE_TTL_SECS",
        "CONCURRENCY",
        "URGENT_CONCURRENCY",
        "SHUTDOWN_TIMEOUT_SECS",
        "RESULT_EXPIRES_SECS",
        "MAX_MESSAGE_BYTES",
        "REDIS_POOL_SIZE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("REDIS_URL", url)
        .env("QUEUE", QUEUE)
        .env("WORKER_HOSTNAME", hostname)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    KillOnDrop(cmd.spawn().expect("start demo-worker"))
}

/// The workspace root, where the Python test scripts and the default virtualenv live.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A Python with `celery` and `redis`: `$CELERY_PYTHON`, or `.venv/bin/python` at the
/// workspace root.
pub fn python() -> PathBuf {
    let p = std::env::var_os("CELERY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "no Python with Celery at {} (run scripts/test.sh, or set CELERY_PYTHON)",
        p.display()
    );
    p
}

/// A Python Celery worker on `QUEUE`, up (its `worker-online` seen); killed when dropped.
pub struct PyWorker {
    _process: KillOnDrop,
    /// Its `worker-online` event.
    pub online: WorkerEvent,
}

impl PyWorker {
    /// Runs `celery -A <app> worker -Q QUEUE <args>` in `dir` against the stack's Redis (given
    /// as `$CELERY_URL`, with `env` besides), and waits up to 30 s for it to come online.
    pub async fn start(
        stack: &Stack,
        dir: &Path,
        app: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        // Listen first, so that its worker-online is seen.
        let mut events = worker_events(&stack.redis).await;
        let process = KillOnDrop(
            Command::new(python())
                .args(["-m", "celery", "-A", app, "worker", "-Q", QUEUE])
                .args(args)
                .arg("--loglevel=WARNING")
                .current_dir(dir)
                .env("CELERY_URL", stack.server.url())
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .spawn()
                .expect("start the Python worker"),
        );
        let online = wait_for_event(&mut events, "worker-online", Duration::from_secs(30)).await;
        PyWorker {
            _process: process,
            online,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared checks

/// What a graceful stop must leave, whether the worker ran in this process or as a child
/// process: the `running` tasks finished with SUCCESS, `queued` tasks stay queued for the next
/// worker, nothing is left in `unacked`, and the lease is given up: that of `consumer`, or,
/// when its id is not known (a child process), every lease.
pub async fn assert_stopped_gracefully(
    stack: &Stack,
    running: Vec<AsyncResult>,
    queued: u64,
    consumer: Option<&str>,
) {
    for r in running {
        assert_eq!(
            r.state().await.unwrap().status,
            TaskState::Success,
            "running tasks finished before exit"
        );
    }
    assert_eq!(
        stack.client.broker().queue_len(QUEUE).await.unwrap(),
        queued,
        "the rest stays queued for the next worker"
    );
    assert_eq!(stack.server.cli(&["HLEN", keys::UNACKED]), "0");
    match consumer {
        Some(consumer) => assert_eq!(
            stack.server.cli(&["ZSCORE", keys::CONSUMERS, consumer]),
            "",
            "lease given up"
        ),
        None => assert_eq!(
            stack.server.cli(&["ZCARD", keys::CONSUMERS]),
            "0",
            "lease given up"
        ),
    }
}
