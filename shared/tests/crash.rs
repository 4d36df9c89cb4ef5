//! Crash tests: workers killed with SIGKILL in the middle of their work.
//!
//! What they prove: a message taken by a worker that dies is neither lost nor left held; it
//! goes back to its queue when the dead worker's lease runs out (seconds, not kombu's hour),
//! and the records we leave in `unacked` are kombu's, so a Python Celery worker can restore
//! them too. The killed workers are real `demo-worker` processes: nothing in them gets a
//! chance to clean up.
//!
//! Needs `redis-server` and, for the kombu test, a Python with Celery (`$CELERY_PYTHON` or
//! `.venv/bin/python` at the workspace root).

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{business, spawn_demo_worker, KillOnDrop, PyWorker, Stack, QUEUE};
use futures_util::{FutureExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis::AsyncCommands;
use serde_json::{json, Value};
use shared::broker::{FetchLimits, DEFAULT_MAX_MESSAGE_BYTES};
use shared::protocol::{ResultMeta, TaskState};
use shared::testing::{eventually, RedisServer};
use shared::{keys, Redis, SendOptions, WorkerConfig};
use tokio::sync::watch;

/// A `demo-worker` child process that logs to a file. Dropping it SIGKILLs it, so a failing
/// test leaves no worker behind.
struct WorkerProcess {
    child: KillOnDrop,
    hostname: String,
    log: PathBuf,
}

impl WorkerProcess {
    /// Starts a worker named `hostname` on `QUEUE`, logging JSON lines to `<dir>/<hostname>.log`.
    fn spawn(url: &str, hostname: &str, env: &[(&str, &str)], dir: &Path) -> Self {
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

    /// SIGKILL, reaped; returns the instant it was gone. Panics if the worker had already
    /// exited on its own (that would be a bug of its own).
    fn sigkill(&mut self) -> Instant {
        if let Some(status) = self.child.0.try_wait().expect("try_wait") {
            panic!(
                "{} exited by itself ({status}) before it was killed; log: {}",
                self.hostname,
                self.log.display()
            );
        }
        self.child.0.kill().expect("SIGKILL");
        self.child.0.wait().expect("reap");
        Instant::now()
    }
}

/// Starts a private redis-server, bounded in time. The harness blocks its thread until the
/// server prints its readiness line; run on a thread of its own, a server that never prints
/// it fails the test instead of hanging it (a tokio timeout cannot interrupt a blocked thread).
async fn start_redis(tcp: bool) -> RedisServer {
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

/// Counts the distinct tasks whose SUCCESS has been announced. Results are PUBLISHed on their
/// own key when stored, so this follows the drain without polling Redis.
async fn announced_successes(redis: &Redis) -> watch::Receiver<usize> {
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
async fn wait_announced(rx: &mut watch::Receiver<usize>, n: usize, limit: Duration) -> bool {
    matches!(
        tokio::time::timeout(limit, rx.wait_for(|seen| *seen >= n)).await,
        Ok(Ok(_))
    )
}

async fn cmd<T: redis::FromRedisValue + Send + 'static>(redis: &Redis, cmd: redis::Cmd) -> T {
    redis
        .run(|mut c| {
            let cmd = &cmd;
            async move { cmd.query_async(&mut c).await }
        })
        .await
        .expect("redis command")
}

/// The consumer ids of the worker named `hostname` (`<hostname>/<uuid>`) in the lease table.
async fn consumers_of(redis: &Redis, hostname: &str) -> Vec<String> {
    let all: Vec<String> = redis
        .run(|mut c| async move { c.zrange(keys::CONSUMERS, 0, -1).await })
        .await
        .expect("ZRANGE consumers");
    let prefix = format!("{hostname}/");
    all.into_iter().filter(|c| c.starts_with(&prefix)).collect()
}

async fn held_by(redis: &Redis, consumer: &str) -> usize {
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
async fn held_by_host(redis: &Redis, hostname: &str) -> usize {
    let mut n = 0;
    for consumer in consumers_of(redis, hostname).await {
        n += held_by(redis, &consumer).await;
    }
    n
}

/// Every stored result of `ids` (PENDING where none is stored), in order.
async fn stored(redis: &Redis, ids: &[String]) -> Vec<ResultMeta> {
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
async fn held_anywhere(redis: &Redis) -> (usize, usize, Vec<(String, usize)>, usize) {
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
async fn assert_nothing_held(redis: &Redis) {
    eventually(
        Duration::from_secs(5),
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

/// Messages the worker processes logged as requeued from dead consumers (their JSON logs).
fn requeued_in_logs(logs: &[PathBuf]) -> u64 {
    logs.iter()
        .flat_map(|log| {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v["message"] == "recovered the messages of dead consumers")
                .filter_map(|v| v["requeued"].as_u64())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// Prints where the messages are, for a drain that did not finish.
async fn diagnose(redis: &Redis, ids: &[String]) -> String {
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

fn seed() -> u64 {
    std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_nanos() as u64
        })
}

/// Three SIGKILLs at random points of a 2000-task drain: every task still ends SUCCESS, and
/// nothing stays held.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_work_loses_nothing() {
    tokio::time::timeout(Duration::from_secs(120), sigkill_during_work())
        .await
        .expect("the test takes under 120 s");
}

async fn sigkill_during_work() {
    const N: usize = 2000;
    let stack = Stack::on(start_redis(false).await);
    let redis = &stack.redis;
    let logs = tempfile::tempdir().expect("log directory");
    let seed = seed();
    println!("sigkill_during_work: seed {seed} (set CRASH_SEED={seed} to repeat)");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut announced = announced_successes(redis).await;

    // Half `noop(i)`, half short sleeps, each with the value it must return.
    let mut tasks: Vec<(String, Value)> = Vec::with_capacity(N);
    for i in 0..N {
        let (name, arg) = if rng.random_bool(0.5) {
            ("noop", json!(i))
        } else {
            ("sleep", json!(rng.random_range(1..=5u64)))
        };
        let id = stack
            .client
            .send_task(name, vec![arg.clone()], Default::default(), business())
            .await
            .expect("send_task");
        tasks.push((id, arg));
    }
    let ids: Vec<String> = tasks.iter().map(|(id, _)| id.clone()).collect();

    // One kill point in each third of the drain, so the kills are spread out and each
    // incarnation gets some work done.
    let kills: Vec<usize> = (0..3)
        .map(|i| rng.random_range(i * 600 + 100..i * 600 + 500))
        .collect();
    let env = [("LEASE_TTL_SECS", "2"), ("CONCURRENCY", "8")];
    let url = stack.server.url();
    let mut workers = vec![WorkerProcess::spawn(&url, "crash0@test", &env, logs.path())];
    let mut held_at_kill = Vec::new();
    for (i, k) in kills.iter().copied().enumerate() {
        assert!(
            wait_announced(&mut announced, k, Duration::from_secs(30)).await,
            "{k} results within 30 s: {}",
            diagnose(redis, &ids).await
        );
        let victim = workers.last_mut().expect("a running worker");
        victim.sigkill();
        // What the dead worker held at its death is what recovery must give back (and the most
        // that can run twice: it may have run some of them without storing the result).
        let held = held_by_host(redis, &victim.hostname).await;
        println!(
            "kill {}: after {} results ({k} awaited), {} held {held} messages",
            i + 1,
            *announced.borrow(),
            victim.hostname
        );
        held_at_kill.push(held);
        let next = format!("crash{}@test", i + 1);
        workers.push(WorkerProcess::spawn(&url, &next, &env, logs.path()));
    }

    let drained = wait_announced(&mut announced, N, Duration::from_secs(60)).await;
    assert!(
        drained,
        "every task ends SUCCESS within 60 s: {}",
        diagnose(redis, &ids).await
    );
    let results = stored(redis, &ids).await;
    let mut succeeded = 0;
    for ((id, arg), meta) in tasks.iter().zip(&results) {
        assert_eq!(meta.status, TaskState::Success, "task {id}: {meta:?}");
        // `noop(i)` returns i and `sleep(ms)` returns ms: both return their argument.
        assert_eq!(&meta.result, arg, "task {id}");
        succeeded += 1;
    }
    assert_eq!(succeeded, N, "no task is missing");
    assert_nothing_held(redis).await;

    let held: usize = held_at_kill.iter().sum();
    assert!(
        held > 0,
        "no kill caught a message in flight: the test did not exercise recovery"
    );
    // Every message a dead worker held was put back by a live worker's recoverer, and only
    // those. The log line comes after the requeue, so give it a moment.
    let log_paths: Vec<PathBuf> = workers.iter().map(|w| w.log.clone()).collect();
    eventually(Duration::from_secs(5), Duration::from_millis(50), || {
        let n = requeued_in_logs(&log_paths);
        async move { n >= held as u64 }
    })
    .await;
    let requeued = requeued_in_logs(&log_paths);
    println!(
        "sigkill_during_work: {succeeded}/{N} SUCCESS after 3 SIGKILLs; held at the kills \
         {held_at_kill:?} = {held} messages, requeued by recovery {requeued} (at most {held} \
         tasks ran twice)"
    );
    assert_eq!(
        requeued, held as u64,
        "recovery requeues exactly what the dead workers held"
    );
}

/// With the default 6 s lease, the messages of a SIGKILLed worker run again on another worker
/// within 10 s of the kill.
#[tokio::test(flavor = "multi_thread")]
async fn dead_consumer_messages_return_within_lease() {
    tokio::time::timeout(Duration::from_secs(90), dead_consumer_messages_return())
        .await
        .expect("the test takes under 90 s");
}

async fn dead_consumer_messages_return() {
    // Long enough that the doomed worker cannot finish them before it is killed (about a lease
    // after it took them), short enough for the survivor to finish them.
    const TASK_MS: u64 = 10_000;
    let stack = Stack::on(start_redis(false).await);
    let redis = &stack.redis;
    let logs = tempfile::tempdir().expect("log directory");
    let lease = WorkerConfig::default().lease_ttl;
    assert_eq!(
        lease,
        Duration::from_secs(6),
        "the documented default lease"
    );

    // The doomed worker runs with the defaults (no LEASE_TTL_SECS).
    let mut doomed = WorkerProcess::spawn(
        &stack.server.url(),
        "doomed@test",
        &[("CONCURRENCY", "4")],
        logs.path(),
    );
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(
            stack
                .client
                .send_task(
                    "sleep",
                    vec![json!(TASK_MS)],
                    Default::default(),
                    business(),
                )
                .await
                .expect("send_task"),
        );
    }
    assert!(
        eventually(Duration::from_secs(10), Duration::from_millis(20), || {
            held_by_host(redis, "doomed@test").map(|n| n == 4)
        })
        .await,
        "the doomed worker takes all 4 tasks"
    );
    let taken_at = Instant::now();
    let dead = consumers_of(redis, "doomed@test").await;
    assert_eq!(dead.len(), 1, "one consumer id for the doomed worker");
    let dead = dead[0].clone();

    // The survivor starts only now, with nothing left to take, so that the doomed worker's
    // messages can reach it only through recovery.
    let survivor = stack.worker(WorkerConfig {
        hostname: "survivor@test".into(),
        queues: vec![QUEUE.into()],
        ..WorkerConfig::default()
    });
    // It must have been up for more than a lease before the kill: a recoverer judges others
    // only after a whole lease of Redis answering. Nothing announces that, so it is waited out.
    tokio::time::sleep(lease + Duration::from_secs(1)).await;
    for meta in stored(redis, &ids).await {
        assert_eq!(
            meta.status,
            TaskState::Pending,
            "the doomed worker is still running its tasks"
        );
    }
    assert!(
        taken_at.elapsed() < Duration::from_millis(TASK_MS - 1000),
        "the tasks must still be running at the kill; took {:?} to get here",
        taken_at.elapsed()
    );

    let killed_at = doomed.sigkill();
    let back = eventually(Duration::from_secs(15), Duration::from_millis(20), || {
        held_by(redis, &dead).map(|n| n == 0)
    })
    .await;
    let back_after = killed_at.elapsed();
    assert!(
        back,
        "the dead consumer's messages are taken back within 15 s"
    );
    let running = eventually(Duration::from_secs(5), Duration::from_millis(20), || {
        held_by(redis, &survivor.consumer).map(|n| n == 4)
    })
    .await;
    let running_after = killed_at.elapsed();
    assert!(running, "the survivor holds the 4 recovered messages");
    println!(
        "dead_consumer_messages_return: default lease {lease:?}; messages back on the queue \
         {back_after:.2?} after the SIGKILL, running on the survivor after {running_after:.2?}"
    );
    assert!(
        running_after < Duration::from_secs(10),
        "messages of a dead worker run again within 10 s with the default lease; took {running_after:?}"
    );

    // They came back marked as redelivered, as kombu marks what it restores.
    let records: Vec<String> = cmd(redis, redis::cmd("HVALS").arg(keys::UNACKED).clone()).await;
    assert_eq!(records.len(), 4);
    for record in &records {
        let record: Value = serde_json::from_str(record).expect("unacked record is JSON");
        assert_eq!(record[0]["headers"]["redelivered"], true, "{record}");
    }

    for id in &ids {
        let meta = stack
            .client
            .result(id)
            .wait(Duration::from_secs(30))
            .await
            .expect("result of a recovered task");
        assert_eq!(meta.status, TaskState::Success);
        assert_eq!(meta.result, json!(TASK_MS));
    }
    assert_eq!(
        survivor
            .stats
            .processed
            .load(std::sync::atomic::Ordering::Relaxed),
        4,
        "the survivor ran the 4 recovered tasks"
    );
    survivor.stop().await.expect("survivor stops cleanly");
    assert_nothing_held(redis).await;
}

/// A Celery app whose kombu restores unacknowledged messages after 1 s instead of an hour.
const KOMBU_APP: &str = r#"
import os

from celery import Celery

URL = os.environ["CELERY_URL"]
app = Celery("crash", broker=URL, backend=URL)
app.conf.update(
    broker_transport_options={"visibility_timeout": 1},
    # Results then name the worker that ran the task.
    result_extended=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="add")
def add(x, y):
    return x + y
"#;

/// A Rust consumer takes three messages and dies without acknowledging them; a Python Celery
/// worker restores them from our `unacked` records, runs them and stores their results.
#[tokio::test(flavor = "multi_thread")]
async fn kombu_restores_our_unacked_records() {
    tokio::time::timeout(Duration::from_secs(60), kombu_restores())
        .await
        .expect("the test takes under 60 s");
}

async fn kombu_restores() {
    let stack = Stack::on(start_redis(true).await);
    let redis = &stack.redis;
    let broker = stack.client.broker();
    let sums = [(1, 2), (20, 22), (100, -1)];
    let mut ids = Vec::new();
    for (x, y) in sums {
        ids.push(
            stack
                .client
                .send_task(
                    "add",
                    vec![json!(x), json!(y)],
                    Default::default(),
                    SendOptions::default(),
                )
                .await
                .expect("send_task"),
        );
    }

    // The consumer that dies: it takes the messages and never settles them.
    let ghost = "ghost@test/0";
    let fetched = broker
        .fetch(
            ghost,
            &keys::queue_lists(QUEUE),
            FetchLimits {
                max_messages: 10,
                max_bytes: DEFAULT_MAX_MESSAGE_BYTES,
                lease: Duration::from_secs(1),
            },
        )
        .await
        .expect("fetch");
    assert_eq!(fetched.deliveries.len(), 3);
    assert_eq!(broker.queue_len(QUEUE).await.unwrap(), 0);
    let unacked: usize = cmd(redis, redis::cmd("HLEN").arg(keys::UNACKED).clone()).await;
    assert_eq!(unacked, 3, "held messages are in kombu's unacked");

    // kombu restores, at start-up, the records older than its visibility timeout (1 s here);
    // the next look is far later. So the records must have aged past it before Python starts.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let app_dir = tempfile::tempdir().expect("Python app directory");
    std::fs::write(app_dir.path().join("crash_app.py"), KOMBU_APP).expect("write the app");
    let py = PyWorker::start(
        &stack,
        app_dir.path(),
        "crash_app",
        &[
            "-P",
            "solo",
            "-n",
            "py-crash@%h",
            "--without-mingle",
            "--without-gossip",
        ],
        &[("PYTHONDONTWRITEBYTECODE", "1")],
    )
    .await;
    let online = &py.online;
    assert!(online.hostname.starts_with("py-crash@"), "{online:?}");

    for (id, (x, y)) in ids.iter().zip(sums) {
        let meta = stack
            .client
            .result(id)
            .wait(Duration::from_secs(20))
            .await
            .expect("the restored task's result");
        assert_eq!(meta.status, TaskState::Success, "{meta:?}");
        assert_eq!(meta.result, json!(x + y));
        // Stored by Python (no Rust worker runs here, and the extended result says so).
        assert_eq!(
            meta.extra.get("worker"),
            Some(&json!(online.hostname)),
            "{meta:?}"
        );
    }
    assert!(
        eventually(
            Duration::from_secs(5),
            Duration::from_millis(50),
            || async {
                let (unacked, index, _, _) = held_anywhere(redis).await;
                (unacked, index) == (0, 0)
            }
        )
        .await,
        "unacked ends empty: {:?}",
        held_anywhere(redis).await
    );

    // Our recovery, coming after kombu's, clears the dead consumer's own record and must not
    // push a second copy of what kombu restored.
    let recovery = broker.recover_dead().await.expect("recover_dead");
    assert_eq!(recovery.dead_consumers, 1, "{recovery:?}");
    assert_eq!(recovery.requeued, 0, "{recovery:?}");
    assert_eq!(broker.queue_len(QUEUE).await.unwrap(), 0);
    assert_nothing_held(redis).await;
    println!(
        "kombu_restores_our_unacked_records: 3/3 restored and run by {}",
        online.hostname
    );
}

/// Two workers drain one queue; one is SIGKILLed and not restarted. The survivor recovers what
/// it held, and every task ends SUCCESS.
#[tokio::test(flavor = "multi_thread")]
async fn two_workers_share_a_queue_and_one_is_killed() {
    tokio::time::timeout(Duration::from_secs(90), two_workers_one_killed())
        .await
        .expect("the test takes under 90 s");
}

async fn two_workers_one_killed() {
    const N: usize = 1000;
    let stack = Stack::on(start_redis(false).await);
    let redis = &stack.redis;
    let logs = tempfile::tempdir().expect("log directory");
    let seed = seed();
    println!("two_workers_one_killed: seed {seed} (set CRASH_SEED={seed} to repeat)");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut announced = announced_successes(redis).await;
    let mut ids = Vec::with_capacity(N);
    for _ in 0..N {
        let ms = rng.random_range(20..=40u64);
        ids.push(
            stack
                .client
                .send_task("sleep", vec![json!(ms)], Default::default(), business())
                .await
                .expect("send_task"),
        );
    }
    let env = [("LEASE_TTL_SECS", "2"), ("CONCURRENCY", "4")];
    let url = stack.server.url();
    let mut victim = WorkerProcess::spawn(&url, "victim@test", &env, logs.path());
    let survivor = WorkerProcess::spawn(&url, "survivor@test", &env, logs.path());

    let kill_at = rng.random_range(200..400);
    assert!(
        wait_announced(&mut announced, kill_at, Duration::from_secs(30)).await,
        "{kill_at} results within 30 s: {}",
        diagnose(redis, &ids).await
    );
    victim.sigkill();
    let held = held_by_host(redis, "victim@test").await;
    println!(
        "two_workers_one_killed: victim killed after {} results, holding {held}",
        *announced.borrow()
    );

    assert!(
        wait_announced(&mut announced, N, Duration::from_secs(60)).await,
        "every task ends SUCCESS within 60 s: {}",
        diagnose(redis, &ids).await
    );
    let results = stored(redis, &ids).await;
    let succeeded = results
        .iter()
        .filter(|m| m.status == TaskState::Success)
        .count();
    assert_eq!(succeeded, N, "no task is missing");
    assert!(
        eventually(Duration::from_secs(5), Duration::from_millis(50), || {
            consumers_of(redis, "victim@test").map(|c| c.is_empty())
        })
        .await,
        "the dead consumer is forgotten"
    );
    assert_nothing_held(redis).await;

    let log = [survivor.log.clone()];
    eventually(Duration::from_secs(5), Duration::from_millis(50), || {
        let n = requeued_in_logs(&log);
        async move { n >= held as u64 }
    })
    .await;
    let requeued = requeued_in_logs(&log);
    println!(
        "two_workers_one_killed: {succeeded}/{N} SUCCESS; the survivor requeued {requeued} \
         of the {held} the victim held"
    );
    assert!(held > 0, "the kill caught messages in flight");
    assert_eq!(
        requeued, held as u64,
        "the survivor requeues exactly what the victim held"
    );
}
