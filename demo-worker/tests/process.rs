//! The worker as a process: SIGTERM and SIGINT stop it gracefully (running tasks finish, the
//! rest stays queued, `worker-offline` is sent, exit status 0), also in the middle of a
//! 5 000-task backlog, which a new worker then drains with nothing lost or run twice; and
//! `--help` documents every setting with its environment variable.

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};
use shared::keys;
use shared::protocol::{TaskMessage, TaskState};
use testkit::demo::{runs_in_logs, spawn_demo_worker, COUNT_RUNS};
use testkit::queue::{
    announced_successes, assert_stopped_gracefully, business, cmd, consumers_of, diagnose,
    held_anywhere, queued_ids, send_many, stored, wait_announced, wait_for_event, worker_events,
    Stack,
};
use testkit::{eventually, seeded_rng, start_redis};

async fn stops_gracefully_on(signal: libc::c_int) {
    let stack = Stack::new();
    let logs = tempfile::tempdir().unwrap();
    let mut events = worker_events(&stack.redis).await;
    // Three slots: three tasks run, the rest wait.
    let mut worker = spawn_demo_worker(
        &stack.server.url(),
        "proc@test",
        &[("CONCURRENCY", "3")],
        logs.path(),
    );

    let mut running = Vec::new();
    for _ in 0..3 {
        running.push(
            stack
                .client
                .apply("sleep", vec![json!(700)], Default::default(), business())
                .await
                .unwrap(),
        );
    }
    // All three taken (held by the worker), none finished yet.
    let held = eventually(
        Duration::from_secs(10),
        Duration::from_millis(5),
        || async { stack.server.cli(&["HLEN", keys::UNACKED]) == "3" },
    )
    .await;
    assert!(held);
    for _ in 0..4 {
        stack
            .client
            .send_task("sleep", vec![json!(700)], Default::default(), business())
            .await
            .unwrap();
    }
    worker.signal(signal);
    let status = worker
        .wait_exit(Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("exits within 20 s; log:\n{}", worker.log_tail(20)));
    assert_eq!(status.code(), Some(0), "exit 0 after signal {signal}");

    assert_stopped_gracefully(&stack, running, 4, None).await;
    let offline = wait_for_event(&mut events, "worker-offline", Duration::from_secs(5)).await;
    assert_eq!(offline.hostname, "proc@test");
    assert_eq!(offline.processed, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_running_tasks_and_exits_0() {
    stops_gracefully_on(libc::SIGTERM).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_finishes_running_tasks_and_exits_0() {
    stops_gracefully_on(libc::SIGINT).await;
}

/// Reads, in one atomic step, the messages `consumer` holds (its inflight hash, then their
/// `unacked` records) and returns their task ids.
/// At `RUST_LOG=debug` the worker logs each task as Celery's does: one line when it arrives,
/// one when it ends, with its runtime.
#[tokio::test(flavor = "multi_thread")]
async fn at_debug_each_task_logs_its_arrival_and_its_end_with_the_runtime() {
    let stack = Stack::new();
    let logs = tempfile::tempdir().unwrap();
    let mut worker = spawn_demo_worker(
        &stack.server.url(),
        "debug@test",
        &[("RUST_LOG", "info,shared::worker=debug")],
        logs.path(),
    );
    let r = stack
        .client
        .apply(
            "add",
            vec![json!(1), json!(2)],
            Default::default(),
            business(),
        )
        .await
        .unwrap();
    let id = r.id().to_owned();
    assert_eq!(r.get(Duration::from_secs(10)).await.unwrap(), json!(3));
    worker.signal(libc::SIGTERM);
    worker
        .wait_exit(Duration::from_secs(20))
        .await
        .expect("exits");
    let lines = worker.json_log();
    let about = |message: &str| {
        lines
            .iter()
            .filter(|v| v["message"] == message && v["id"] == id.as_str())
            .cloned()
            .collect::<Vec<Value>>()
    };
    assert_eq!(about("task received").len(), 1, "one arrival line");
    let ended = about("task succeeded");
    assert_eq!(ended.len(), 1, "one end line");
    assert_eq!(ended[0]["task"], "add");
    assert!(ended[0]["runtime"]
        .as_str()
        .is_some_and(|r| r.ends_with('s')));
}

async fn held_task_ids(stack: &Stack, consumer: &str) -> Vec<String> {
    const SNAPSHOT: &str = "local out = {} \
        for _, tag in ipairs(redis.call('HKEYS', KEYS[1])) do \
          out[#out + 1] = redis.call('HGET', KEYS[2], tag) \
        end \
        return out";
    let records: Vec<String> = cmd(
        &stack.redis,
        redis::cmd("EVAL")
            .arg(SNAPSHOT)
            .arg(2)
            .arg(keys::inflight(consumer))
            .arg(keys::UNACKED)
            .clone(),
    )
    .await;
    records
        .iter()
        .map(|record| {
            let record: Value = serde_json::from_str(record).expect("unacked record is JSON");
            let message = record[0]
                .as_object()
                .expect("[message, exchange, routing_key]");
            let raw = serde_json::to_vec(message).expect("re-encode the message");
            TaskMessage::decode(&raw)
                .expect("a held message decodes")
                .id
        })
        .collect()
}

/// SIGTERM while a backlog of 5 000 short tasks drains: the tasks running at that moment
/// finish and store their results, nothing stays in `unacked`, `unacked_index` or an inflight
/// hash, the lease is given up and the exit status is 0; every other task is still queued
/// (each task done or queued, never both, never twice). A new worker then drains the rest:
/// nothing lost, and no task ran twice.
///
/// Without prefetch (`PREFETCH_MULTIPLIER=1`) a worker holds only what it runs, so every
/// message held at the signal must end done.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_backlog_finishes_running_tasks_and_keeps_the_rest() {
    tokio::time::timeout(Duration::from_secs(240), sigterm_during_a_backlog("1"))
        .await
        .expect("the test takes under 240 s");
}

/// The same with a prefetch of 4: the worker also holds messages waiting for a slot, and
/// those go back to the queue at the signal instead of starting; the totals must still add up.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_backlog_returns_prefetched_messages() {
    tokio::time::timeout(Duration::from_secs(240), sigterm_during_a_backlog("4"))
        .await
        .expect("the test takes under 240 s");
}

async fn sigterm_during_a_backlog(prefetch: &str) {
    const N: usize = 5_000;
    let stack = Stack::on(start_redis(false).await);
    let redis = &stack.redis;
    let logs = tempfile::tempdir().expect("log directory");
    let mut rng = seeded_rng("sigterm_during_a_backlog");
    let mut announced = announced_successes(redis).await;
    let mut events = worker_events(redis).await;
    let tasks = (0..N)
        .map(|_| ("sleep", vec![json!(rng.random_range(2..=10u64))]))
        .collect();
    let ids = send_many(&stack.client, tasks).await;
    let all: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let env = [
        ("CONCURRENCY", "8"),
        ("PREFETCH_MULTIPLIER", prefetch),
        COUNT_RUNS,
    ];
    let url = stack.server.url();

    let started = Instant::now();
    let mut first = spawn_demo_worker(&url, "first@test", &env, logs.path());
    let stop_after = rng.random_range(N / 10..N / 2);
    assert!(
        wait_announced(&mut announced, stop_after, Duration::from_secs(90)).await,
        "{stop_after} results within 90 s: {}",
        diagnose(redis, &ids).await
    );
    let consumer = consumers_of(redis, "first@test").await;
    assert_eq!(consumer.len(), 1, "one consumer for the first worker");
    // What it holds just before the signal: each of these is running or finished, and must
    // end SUCCESS, not back on the queue.
    let running = held_task_ids(&stack, &consumer[0]).await;
    first.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let status = first
        .wait_exit(Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("exits within 60 s of SIGTERM; log:\n{}", first.log_tail(20)));
    let stop_seconds = signalled.elapsed().as_secs_f64();
    assert_eq!(status.code(), Some(0), "exit 0 after SIGTERM");

    let results = stored(redis, &ids).await;
    let done: HashSet<&str> = results
        .iter()
        .filter(|m| m.status == TaskState::Success)
        .map(|m| m.task_id.as_str())
        .collect();
    let odd: Vec<_> = results
        .iter()
        .filter(|m| !matches!(m.status, TaskState::Success | TaskState::Pending))
        .collect();
    let queued = queued_ids(redis).await;
    let queued_set: HashSet<&str> = queued.keys().map(String::as_str).collect();
    let twice_queued = queued.values().filter(|n| **n > 1).count();
    let both = done.intersection(&queued_set).count();
    let neither = all
        .iter()
        .filter(|id| !done.contains(*id) && !queued_set.contains(*id))
        .count();
    let (unacked, index, inflight, quarantine) = held_anywhere(redis).await;
    let leases: usize = cmd(redis, redis::cmd("ZCARD").arg(keys::CONSUMERS).clone()).await;
    let offline = wait_for_event(&mut events, "worker-offline", Duration::from_secs(10)).await;
    println!(
        "graceful: tasks={N} completed={} queued_after={} running_at_sigterm={} both={both} \
         neither={neither} unacked={unacked} unacked_index={index} inflight={inflight:?} \
         exit={:?} stop_seconds={stop_seconds:.2}",
        done.len(),
        queued.len(),
        running.len(),
        status.code(),
    );
    assert!(odd.is_empty(), "only SUCCESS or nothing: {odd:?}");
    assert_eq!(both, 0, "no task is both done and still queued");
    assert_eq!(twice_queued, 0, "no message is queued twice");
    assert_eq!(neither, 0, "every task is done or queued");
    assert_eq!(
        done.len() + queued.len(),
        N,
        "completed + queued_after == tasks"
    );
    assert!(
        !running.is_empty(),
        "the worker was running tasks at the signal"
    );
    let held_done = running
        .iter()
        .filter(|id| done.contains(id.as_str()))
        .count();
    println!(
        "graceful: prefetch={prefetch}: of {} held at the signal, {held_done} finished and {} \
         went back to the queue",
        running.len(),
        running.len() - held_done
    );
    if prefetch == "1" {
        for id in &running {
            assert!(
                done.contains(id.as_str()),
                "task {id}, held at the signal, finished and stored its result"
            );
        }
    }
    assert_eq!((unacked, index, quarantine), (0, 0, 0), "nothing held");
    assert!(inflight.is_empty(), "no inflight hash left: {inflight:?}");
    assert_eq!(leases, 0, "lease given up");
    assert_eq!(offline.hostname, "first@test");
    assert_eq!(
        offline.processed,
        done.len() as u64,
        "worker-offline counts the tasks it finished"
    );
    assert!(
        !queued.is_empty(),
        "the signal came before the backlog was drained"
    );

    // A new worker drains the rest.
    let mut second = spawn_demo_worker(&url, "second@test", &env, logs.path());
    assert!(
        wait_announced(&mut announced, N, Duration::from_secs(120)).await,
        "the second worker drains the rest within 120 s: {}",
        diagnose(redis, &ids).await
    );
    let seconds = started.elapsed().as_secs_f64();
    second.signal(libc::SIGTERM);
    let status = second.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit 0 after SIGTERM"
    );
    let results = stored(redis, &ids).await;
    let lost = results
        .iter()
        .filter(|m| m.status != TaskState::Success)
        .count();
    let runs = runs_in_logs(&[first.log_path().to_owned(), second.log_path().to_owned()]);
    let duplicates: usize = runs.values().map(|n| n.saturating_sub(1)).sum();
    println!(
        "graceful: tasks={N} lost={lost} duplicates={duplicates} completed_by_first={} \
         completed_by_second={} seconds={seconds:.1}",
        done.len(),
        queued.len(),
    );
    assert_eq!(lost, 0, "every task ends SUCCESS");
    assert_eq!(duplicates, 0, "a graceful stop makes no task run twice");
    assert_eq!(runs.len(), N, "every task ran (logged by its worker)");
    let (unacked, index, inflight, quarantine) = held_anywhere(redis).await;
    assert_eq!((unacked, index, quarantine), (0, 0, 0), "nothing held");
    assert!(inflight.is_empty(), "no inflight hash left: {inflight:?}");
}

#[test]
fn help_documents_settings_and_their_variables() {
    let out = Command::new(env!("CARGO_BIN_EXE_demo-worker"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--redis-url",
        "REDIS_URL",
        "--queues",
        "QUEUE",
        "--concurrency",
        "CONCURRENCY",
        "REDIS_CA_CERT",
        "LEASE_TTL_SECS",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}
