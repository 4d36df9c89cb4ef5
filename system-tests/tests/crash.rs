//! Crash tests: workers killed with SIGKILL in the middle of their work.
//!
//! What they prove: a message taken by a worker that dies is neither lost nor left held; it
//! goes back to its queue when the dead worker's lease runs out (seconds, not kombu's hour),
//! and the records we leave in `unacked` are kombu's, so a Python Celery worker can restore
//! them too. The killed workers are real `demo-worker` processes: nothing in them gets a
//! chance to clean up.
//!
//! The two drains (20 000 tasks each) count what at-least-once delivery costs: every run of a
//! task is read from the workers' logs, and each prints one line,
//! `crash: tasks=20000 lost=0 duplicates=N requeued=M kills=K seconds=S`, where `duplicates`
//! is runs beyond the first (never more than `requeued`, the messages recovery put back).
//! The kill points are random: the seed is printed, and `CRASH_SEED=<seed>` repeats a run.
//!
//! Needs `redis-server` and, for the kombu test, a Python with Celery (`$CELERY_PYTHON` or
//! `.venv/bin/python` at the workspace root).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};
use shared::broker::{FetchLimits, DEFAULT_MAX_MESSAGE_BYTES};
use shared::protocol::TaskState;
use shared::{keys, Redis, SendOptions, WorkerConfig};
use testkit::celery::PyWorker;
use testkit::demo::{requeued_in_logs, runs_in_logs, spawn_demo_worker, COUNT_RUNS};
use testkit::queue::{
    announced_successes, assert_nothing_held, business, cmd, consumers_of, diagnose, held_anywhere,
    held_by, held_by_host, send_many, stored, wait_announced, Stack, QUEUE,
};
use testkit::{eventually, seeded_rng, start_redis};

/// The tasks of a drain: half `noop(i)`, half `sleep(1..=5 ms)`, each with the value it must
/// return (`noop(i)` returns i and `sleep(ms)` returns ms: both return their argument).
async fn send_drain(stack: &Stack, rng: &mut StdRng, n: usize) -> Vec<(String, Value)> {
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        tasks.push(if rng.random_bool(0.5) {
            ("noop", json!(i))
        } else {
            ("sleep", json!(rng.random_range(1..=5u64)))
        });
    }
    let sent = Instant::now();
    let ids = send_many(
        &stack.client,
        tasks
            .iter()
            .map(|(name, arg)| (*name, vec![arg.clone()]))
            .collect(),
    )
    .await;
    println!("  sent {n} tasks in {:.1?}", sent.elapsed());
    ids.into_iter()
        .zip(tasks.into_iter().map(|(_, arg)| arg))
        .collect()
}

/// What a drain under SIGKILLs measured, once every task has a result.
struct Tally {
    tasks: usize,
    /// Tasks without a SUCCESS result carrying the value they must return.
    lost: usize,
    /// Runs beyond the first, over all tasks (from the workers' logs).
    duplicates: usize,
    /// Tasks that ran more than once.
    ran_twice: usize,
    /// Messages put back by recovery, as the workers logged it.
    requeued: u64,
    /// Messages the killed workers held when they died.
    held: usize,
    kills: usize,
    seconds: f64,
}

impl Tally {
    /// Counts, prints the summary line (before any assertion, so a failure still shows its
    /// figures) and checks what at-least-once delivery promises.
    async fn take(
        label: &str,
        redis: &Redis,
        tasks: &[(String, Value)],
        logs: &[PathBuf],
        held_at_kill: &[usize],
        seconds: f64,
    ) -> Tally {
        let held: usize = held_at_kill.iter().sum();
        // The recoverers log after they requeue: give the last line a moment.
        eventually(Duration::from_secs(10), Duration::from_millis(50), || {
            let n = requeued_in_logs(logs);
            async move { n >= held as u64 }
        })
        .await;
        let ids: Vec<String> = tasks.iter().map(|(id, _)| id.clone()).collect();
        let results = stored(redis, &ids).await;
        let lost = tasks
            .iter()
            .zip(&results)
            .filter(|((_, arg), meta)| meta.status != TaskState::Success || &meta.result != arg)
            .count();
        let runs = runs_in_logs(logs);
        let tally = Tally {
            tasks: tasks.len(),
            lost,
            duplicates: runs.values().map(|n| n.saturating_sub(1)).sum(),
            ran_twice: runs.values().filter(|n| **n > 1).count(),
            requeued: requeued_in_logs(logs),
            held,
            kills: held_at_kill.len(),
            seconds,
        };
        println!(
            "crash: tasks={} lost={} duplicates={} requeued={} kills={} seconds={:.1} ({label}; \
             held at the kills {held_at_kill:?}, tasks run more than once {})",
            tally.tasks,
            tally.lost,
            tally.duplicates,
            tally.requeued,
            tally.kills,
            tally.seconds,
            tally.ran_twice,
        );
        for ((id, arg), meta) in tasks.iter().zip(&results) {
            assert_eq!(meta.status, TaskState::Success, "task {id}: {meta:?}");
            assert_eq!(&meta.result, arg, "task {id}");
        }
        assert_eq!(tally.lost, 0, "no task is lost");
        let unlogged = ids.iter().filter(|id| !runs.contains_key(*id)).count();
        assert_eq!(
            unlogged, 0,
            "every stored result comes from a run the worker logged (RUST_LOG lacks the executor's debug lines?)"
        );
        assert!(
            tally.held > 0,
            "no kill caught a message in flight: the test did not exercise recovery"
        );
        assert_eq!(
            tally.requeued, tally.held as u64,
            "recovery requeues exactly what the dead workers held"
        );
        assert!(
            tally.duplicates as u64 <= tally.requeued,
            "a task runs again only when its message was redelivered: {} extra runs, {} redeliveries",
            tally.duplicates,
            tally.requeued
        );
        tally
    }
}

/// Three SIGKILLs at random points of a 20 000-task drain, each followed by a new worker:
/// every task ends SUCCESS with its value, nothing stays held, and the tasks that ran twice
/// are counted (at most the messages the dead workers held).
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_work_loses_nothing() {
    tokio::time::timeout(Duration::from_secs(300), sigkill_during_work())
        .await
        .expect("the test takes under 300 s");
}

async fn sigkill_during_work() {
    const N: usize = 20_000;
    let stack = Stack::on(start_redis(false).await);
    let redis = &stack.redis;
    let logs = tempfile::tempdir().expect("log directory");
    let mut rng = seeded_rng("sigkill_during_work");
    let mut announced = announced_successes(redis).await;
    let tasks = send_drain(&stack, &mut rng, N).await;
    let ids: Vec<String> = tasks.iter().map(|(id, _)| id.clone()).collect();

    // One kill point in each third of the drain (away from its edges), so the kills are spread
    // out and each incarnation gets some work done.
    let third = N / 3;
    let kills: Vec<usize> = (0..3)
        .map(|i| rng.random_range(i * third + N / 20..(i + 1) * third - N / 20))
        .collect();
    let env = [("LEASE_TTL_SECS", "2"), ("CONCURRENCY", "8"), COUNT_RUNS];
    let url = stack.server.url();
    let started = Instant::now();
    let mut workers = vec![spawn_demo_worker(&url, "crash0@test", &env, logs.path())];
    let mut held_at_kill = Vec::new();
    for (i, k) in kills.iter().copied().enumerate() {
        assert!(
            wait_announced(&mut announced, k, Duration::from_secs(90)).await,
            "{k} results within 90 s: {}",
            diagnose(redis, &ids).await
        );
        // A seeded jitter, so that the kill falls anywhere in the fetch / run / store cycle
        // rather than just after a result was announced.
        tokio::time::sleep(Duration::from_micros(rng.random_range(0..20_000))).await;
        let victim = workers.last_mut().expect("a running worker");
        victim.sigkill();
        // What the dead worker held at its death is what recovery must give back (and the most
        // that can run twice: it may have run some of them without storing the result).
        let held = held_by_host(redis, victim.name()).await;
        println!(
            "  kill {} at {:.1?}: after {} results ({k} awaited), {} held {held} messages",
            i + 1,
            started.elapsed(),
            *announced.borrow(),
            victim.name()
        );
        held_at_kill.push(held);
        let next = format!("crash{}@test", i + 1);
        workers.push(spawn_demo_worker(&url, &next, &env, logs.path()));
    }

    assert!(
        wait_announced(&mut announced, N, Duration::from_secs(120)).await,
        "every task ends SUCCESS within 120 s of the last kill: {}",
        diagnose(redis, &ids).await
    );
    let seconds = started.elapsed().as_secs_f64();
    let log_paths: Vec<PathBuf> = workers.iter().map(|w| w.log_path().to_owned()).collect();
    Tally::take(
        "one worker, SIGKILLed and restarted 3 times",
        redis,
        &tasks,
        &log_paths,
        &held_at_kill,
        seconds,
    )
    .await;
    assert_nothing_held(redis).await;
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
    let mut doomed = spawn_demo_worker(
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

/// Two workers drain one queue of 20 000 tasks; one is SIGKILLed at a random point and not
/// restarted. The survivor recovers what it held, every task ends SUCCESS, and the tasks that
/// ran twice are counted.
#[tokio::test(flavor = "multi_thread")]
async fn two_workers_share_a_queue_and_one_is_killed() {
    tokio::time::timeout(Duration::from_secs(300), two_workers_one_killed())
        .await
        .expect("the test takes under 300 s");
}

async fn two_workers_one_killed() {
    const N: usize = 20_000;
    let stack = Stack::on(start_redis(false).await);
    let redis = &stack.redis;
    let logs = tempfile::tempdir().expect("log directory");
    let mut rng = seeded_rng("two_workers_one_killed");
    let mut announced = announced_successes(redis).await;
    let tasks = send_drain(&stack, &mut rng, N).await;
    let ids: Vec<String> = tasks.iter().map(|(id, _)| id.clone()).collect();

    let env = [("LEASE_TTL_SECS", "2"), ("CONCURRENCY", "4"), COUNT_RUNS];
    let url = stack.server.url();
    let started = Instant::now();
    let mut victim = spawn_demo_worker(&url, "victim@test", &env, logs.path());
    let mut survivor = spawn_demo_worker(&url, "survivor@test", &env, logs.path());

    let kill_at = rng.random_range(N / 5..N / 2);
    assert!(
        wait_announced(&mut announced, kill_at, Duration::from_secs(90)).await,
        "{kill_at} results within 90 s: {}",
        diagnose(redis, &ids).await
    );
    tokio::time::sleep(Duration::from_micros(rng.random_range(0..20_000))).await;
    victim.sigkill();
    let held = held_by_host(redis, "victim@test").await;
    println!(
        "  victim killed at {:.1?} after {} results ({kill_at} awaited), holding {held}",
        started.elapsed(),
        *announced.borrow()
    );

    assert!(
        wait_announced(&mut announced, N, Duration::from_secs(120)).await,
        "every task ends SUCCESS within 120 s of the kill: {}",
        diagnose(redis, &ids).await
    );
    let seconds = started.elapsed().as_secs_f64();
    survivor.assert_alive();
    let log_paths = [victim.log_path().to_owned(), survivor.log_path().to_owned()];
    let tally = Tally::take(
        "two workers, one SIGKILLed",
        redis,
        &tasks,
        &log_paths,
        &[held],
        seconds,
    )
    .await;
    // Only the survivor can have put the victim's messages back.
    assert_eq!(
        requeued_in_logs(&[survivor.log_path().to_owned()]),
        tally.requeued
    );
    assert!(
        eventually(Duration::from_secs(10), Duration::from_millis(50), || {
            consumers_of(redis, "victim@test").map(|c| c.is_empty())
        })
        .await,
        "the dead consumer is forgotten"
    );
    assert_nothing_held(redis).await;
}
