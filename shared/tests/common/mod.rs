//! What the integration tests share: a private Redis, a client on it, in-process workers,
//! worker child processes (ours and Python Celery's), worker events, and the checks that
//! several tests make alike.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use redis::AsyncCommands;
use serde_json::Value;
use shared::protocol::{ResultMeta, TaskMessage, TaskState, WorkerEvent};
use shared::shutdown::CancellationToken;
use shared::testing::{eventually, RedisServer};
use shared::worker::{Stats, BUSINESS_PRIORITY};
use shared::{keys, AsyncResult, Client, Redis, Registry, SendOptions, Worker, WorkerConfig};
use tokio::sync::watch;

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

/// Starts a private redis-server, bounded in time. The harness blocks its thread until the
/// server prints its readiness line; run on a thread of its own, a server that never prints
/// it fails the test instead of hanging it (a tokio timeout cannot interrupt a blocked thread).
pub async fn start_redis(tcp: bool) -> RedisServer {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let server = if tcp {
            RedisServer::start_tcp()
        } else {
            RedisServer::start()
        };
        // If the test gave up meanwhile, the server is dropped here, which kills it.
        let _ = tx.send(server);
    });
    tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .expect("redis-server announces readiness within 20 s")
        .expect("redis-server could not start")
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

/// Sends every `(task, args)` at business priority, 64 in flight at a time; returns the ids in
/// the order given.
pub async fn send_many(client: &Client, tasks: Vec<(&str, Vec<Value>)>) -> Vec<String> {
    futures_util::stream::iter(tasks)
        .map(|(name, args)| async move {
            client
                .send_task(name, args, Default::default(), business())
                .await
                .expect("send_task")
        })
        .buffered(64)
        .collect()
        .await
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
        "PREFETCH_MULTIPLIER",
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

/// A `demo-worker` child process that logs JSON lines to a file. Dropping it SIGKILLs it, so a
/// failing test leaves no worker behind.
pub struct WorkerProcess {
    pub child: KillOnDrop,
    pub hostname: String,
    pub log: PathBuf,
}

impl WorkerProcess {
    /// Starts a worker named `hostname` on `QUEUE`, logging JSON lines to `<dir>/<hostname>.log`.
    pub fn spawn(url: &str, hostname: &str, env: &[(&str, &str)], dir: &Path) -> Self {
        let log = dir.join(format!("{hostname}.log"));
        let file = std::fs::File::create(&log).expect("worker log file");
        let env: Vec<(&str, &str)> = [("LOG_FORMAT", "json"), ("RUST_LOG", "info")]
            .into_iter()
            .chain(env.iter().copied())
            .collect();
        WorkerProcess {
            child: spawn_demo_worker(url, hostname, &env, file.into()),
            hostname: hostname.to_owned(),
            log,
        }
    }

    /// Panics, with the end of its log, if the worker has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.0.try_wait().expect("try_wait") {
            panic!(
                "{} exited by itself ({status}); its log ends with:\n{}",
                self.hostname,
                self.log_tail(20)
            );
        }
    }

    /// SIGKILL, reaped; returns the instant it was gone. Panics if the worker had already
    /// exited on its own (that would be a bug of its own).
    pub fn sigkill(&mut self) -> Instant {
        self.assert_alive();
        self.child.0.kill().expect("SIGKILL");
        self.child.0.wait().expect("reap");
        Instant::now()
    }

    /// Sends `signal` (`-TERM`, `-INT`) with kill(1).
    pub fn signal(&mut self, signal: &str) {
        self.assert_alive();
        let status = Command::new("kill")
            .args([signal, &self.child.0.id().to_string()])
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Waits up to `limit` for the process to exit; `None` if it is still running.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut status = None;
        eventually(limit, Duration::from_millis(20), || {
            status = self.child.0.try_wait().expect("try_wait");
            std::future::ready(status.is_some())
        })
        .await;
        status
    }

    /// The last `n` lines of its log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Its log lines that are JSON objects (a panic message, written by the runtime, is not).
    pub fn json_log(&self) -> Vec<Value> {
        json_log(&self.log)
    }
}

/// The JSON log lines of a worker's log file.
pub fn json_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
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
// Counting what is where, across processes

/// One Redis command, through the handle's retrying connection.
pub async fn cmd<T: redis::FromRedisValue + Send + 'static>(redis: &Redis, cmd: redis::Cmd) -> T {
    redis
        .run(|mut c| {
            let cmd = &cmd;
            async move { cmd.query_async(&mut c).await }
        })
        .await
        .expect("redis command")
}

/// Counts the distinct tasks whose SUCCESS has been announced. Results are PUBLISHed on their
/// own key when stored, so this follows a drain without polling Redis.
pub async fn announced_successes(redis: &Redis) -> watch::Receiver<usize> {
    let mut pubsub = redis.pubsub().await.expect("pub/sub connection");
    pubsub
        .psubscribe(format!("{}*", keys::RESULT_KEY_PREFIX))
        .await
        .expect("psubscribe to results");
    let mut stream = pubsub.into_on_message();
    let (tx, rx) = watch::channel(0);
    tokio::spawn(async move {
        let mut seen = HashSet::new();
        while let Some(msg) = stream.next().await {
            if let Ok(meta) = ResultMeta::parse(msg.get_payload_bytes()) {
                if meta.status == TaskState::Success && seen.insert(meta.task_id) {
                    tx.send_replace(seen.len());
                }
            }
        }
    });
    rx
}

/// Waits until at least `n` successes were announced; false after `limit`.
pub async fn wait_announced(rx: &mut watch::Receiver<usize>, n: usize, limit: Duration) -> bool {
    matches!(
        tokio::time::timeout(limit, rx.wait_for(|seen| *seen >= n)).await,
        Ok(Ok(_))
    )
}

/// The consumer ids of the worker named `hostname` (`<hostname>/<uuid>`) in the lease table.
pub async fn consumers_of(redis: &Redis, hostname: &str) -> Vec<String> {
    let all: Vec<String> = redis
        .run(|mut c| async move { c.zrange(keys::CONSUMERS, 0, -1).await })
        .await
        .expect("ZRANGE consumers");
    let prefix = format!("{hostname}/");
    all.into_iter().filter(|c| c.starts_with(&prefix)).collect()
}

/// Messages recorded as held by `consumer`.
pub async fn held_by(redis: &Redis, consumer: &str) -> usize {
    let key = keys::inflight(consumer);
    redis
        .run(|mut c| {
            let key = &key;
            async move { c.hlen(key).await }
        })
        .await
        .expect("HLEN inflight")
}

/// Messages held by every consumer of the worker named `hostname`.
pub async fn held_by_host(redis: &Redis, hostname: &str) -> usize {
    let mut n = 0;
    for consumer in consumers_of(redis, hostname).await {
        n += held_by(redis, &consumer).await;
    }
    n
}

/// Every stored result of `ids` (PENDING where none is stored), in order.
pub async fn stored(redis: &Redis, ids: &[String]) -> Vec<ResultMeta> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let mut mget = redis::cmd("MGET");
        for id in chunk {
            mget.arg(keys::result_key(id));
        }
        let raw: Vec<Option<Vec<u8>>> = cmd(redis, mget).await;
        for (id, raw) in chunk.iter().zip(raw) {
            out.push(match raw {
                Some(raw) => ResultMeta::parse(&raw).expect("stored result parses"),
                None => ResultMeta::pending(id),
            });
        }
    }
    out
}

/// What is held anywhere: (unacked, unacked_index, inflight hashes with their sizes, quarantine).
pub async fn held_anywhere(redis: &Redis) -> (usize, usize, Vec<(String, usize)>, usize) {
    let unacked: usize = cmd(redis, redis::cmd("HLEN").arg(keys::UNACKED).clone()).await;
    let index: usize = cmd(redis, redis::cmd("ZCARD").arg(keys::UNACKED_INDEX).clone()).await;
    let inflight_keys: Vec<String> =
        cmd(redis, redis::cmd("KEYS").arg(keys::inflight("*")).clone()).await;
    let mut inflight = Vec::new();
    for key in inflight_keys {
        let n: usize = cmd(redis, redis::cmd("HLEN").arg(&key).clone()).await;
        if n > 0 {
            inflight.push((key, n));
        }
    }
    let quarantine: usize = cmd(redis, redis::cmd("LLEN").arg(keys::QUARANTINE).clone()).await;
    (unacked, index, inflight, quarantine)
}

/// Asserts that no message is held or quarantined. Acknowledgements of the last results may
/// still be on their way, so the state is given a few seconds to settle first.
pub async fn assert_nothing_held(redis: &Redis) {
    eventually(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async { held_anywhere(redis).await == (0, 0, Vec::new(), 0) },
    )
    .await;
    let (unacked, index, inflight, quarantine) = held_anywhere(redis).await;
    assert_eq!(unacked, 0, "unacked must end empty");
    assert_eq!(index, 0, "unacked_index must end empty");
    assert!(
        inflight.is_empty(),
        "inflight hashes must end empty: {inflight:?}"
    );
    assert_eq!(quarantine, 0, "nothing may end in quarantine");
}

/// The task ids of the messages waiting on every list of `QUEUE`, with their multiplicity.
pub async fn queued_ids(redis: &Redis) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    for list in keys::queue_lists(QUEUE) {
        let raw: Vec<Vec<u8>> = cmd(
            redis,
            redis::cmd("LRANGE").arg(&list).arg(0).arg(-1).clone(),
        )
        .await;
        for raw in raw {
            let message = TaskMessage::decode(&raw).expect("a queued message decodes");
            *ids.entry(message.id).or_default() += 1;
        }
    }
    ids
}

/// Messages the worker processes logged as requeued from dead consumers (their JSON logs).
pub fn requeued_in_logs(logs: &[PathBuf]) -> u64 {
    logs.iter()
        .flat_map(|log| json_log(log))
        .filter(|v| v["message"] == "recovered the messages of dead consumers")
        .filter_map(|v| v["requeued"].as_u64())
        .sum()
}

/// How many times each task ran to a successful end, by task id, from the workers' JSON logs.
/// The workers must run with `RUST_LOG=info,shared::worker::executor=debug` (see
/// [`COUNT_RUNS`]), which logs `task succeeded` with the id once per run, before the result is
/// handed on: a run whose result never reached Redis (its worker was killed) is counted too,
/// and that is exactly what at-least-once delivery may repeat.
pub fn runs_in_logs(logs: &[PathBuf]) -> HashMap<String, usize> {
    let mut runs = HashMap::new();
    for v in logs.iter().flat_map(|log| json_log(log)) {
        if v["message"] == "task succeeded" {
            if let Some(id) = v["id"].as_str() {
                *runs.entry(id.to_owned()).or_default() += 1;
            }
        }
    }
    runs
}

/// The log filter under which [`runs_in_logs`] can count the runs of each task.
pub const COUNT_RUNS: (&str, &str) = ("RUST_LOG", "info,shared::worker::executor=debug");

/// Where the messages are, for a drain that did not finish.
pub async fn diagnose(redis: &Redis, ids: &[String]) -> String {
    let results = stored(redis, ids).await;
    let missing: Vec<&str> = results
        .iter()
        .filter(|m| m.status != TaskState::Success)
        .map(|m| m.task_id.as_str())
        .collect();
    let consumers: Vec<(String, f64)> = cmd(
        redis,
        redis::cmd("ZRANGE")
            .arg(keys::CONSUMERS)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .clone(),
    )
    .await;
    let mut lens = Vec::new();
    for list in keys::queue_lists(QUEUE) {
        let n: usize = cmd(redis, redis::cmd("LLEN").arg(&list).clone()).await;
        lens.push(n);
    }
    format!(
        "{} of {} without SUCCESS (first: {:?}); queue lists {lens:?}; held {:?}; consumers {consumers:?}",
        missing.len(),
        ids.len(),
        &missing[..missing.len().min(5)],
        held_anywhere(redis).await,
    )
}

/// The random source of a randomized test, seeded from `$CRASH_SEED` or the clock. The seed is
/// printed under the test's name, so a failing run can be repeated with `CRASH_SEED=<seed>`.
pub fn seeded_rng(test: &str) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_nanos() as u64
        });
    println!("{test}: seed {seed} (set CRASH_SEED={seed} to repeat)");
    rand::rngs::StdRng::seed_from_u64(seed)
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
