//! The queue as tests see it: a private Redis with a client on it ([`Stack`]), in-process
//! workers running the demonstration tasks, sending at business priority, worker events, and
//! the counts of what is where (queued, held, quarantined, stored) that several tests make
//! alike.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use redis::AsyncCommands;
use serde_json::Value;
use shared::protocol::{ResultMeta, TaskMessage, TaskState, WorkerEvent};
use shared::shutdown::CancellationToken;
use shared::worker::{Stats, BUSINESS_PRIORITY};
use shared::{keys, AsyncResult, Client, Redis, Registry, SendOptions, Worker, WorkerConfig};
use tokio::sync::watch;

use crate::redis_server::RedisServer;
use crate::wait::eventually;

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
    /// Starts a redis-server: a side effect a `Default` impl would hide.
    #[allow(clippy::new_without_default)]
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
        RunningWorker::start(self.redis.clone(), demo_worker::registry(), config)
    }
}

/// Settings that keep tests quick: short leases and heartbeats.
pub fn config() -> WorkerConfig {
    WorkerConfig {
        hostname: "test@localhost".into(),
        queues: vec![QUEUE.into()],
        concurrency: 8,
        health_slots: 2,
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
