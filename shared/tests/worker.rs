//! The worker runtime end to end, in process, against a real Redis: outcomes (success,
//! failure, unknown task, panic, time limit, eta, expiry, ignore_result, reject), health
//! pings under a backlog, every slot for Celery's default priority, bounded concurrency, several queues, events, graceful shutdown.
//! Malformed and hostile messages, against a worker process, are in `hostile.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use shared::protocol::{TaskState, WorkerEvent};
use shared::worker::BUSINESS_PRIORITY;
use shared::{keys, QueueError, Registry, SendOptions, TaskError, WorkerConfig};
use testkit::eventually;
use testkit::queue::{
    assert_stopped_gracefully, business, config, worker_events, RunningWorker, Stack, QUEUE,
};

const WAIT: Duration = Duration::from_secs(10);

async fn run(
    stack: &Stack,
    name: &str,
    args: Vec<Value>,
    opts: SendOptions,
) -> shared::protocol::ResultMeta {
    let pending = stack
        .client
        .apply(name, args, Default::default(), opts)
        .await
        .unwrap();
    pending.wait(WAIT).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn outcomes_are_stored_as_celery_stores_them() {
    let stack = Stack::new();
    let worker = stack.worker(config());

    let ok = run(
        &stack,
        "add",
        vec![json!(2), json!(40)],
        SendOptions::default(),
    )
    .await;
    assert_eq!(
        (ok.status, ok.result.clone()),
        (TaskState::Success, json!(42))
    );
    assert!(ok.date_done.is_some());

    let failed = run(&stack, "fail", vec![json!("sin stock")], business()).await;
    assert_eq!(failed.status, TaskState::Failure);
    assert_eq!(
        failed.result,
        json!({"exc_type": "ValueError", "exc_message": ["sin stock"], "exc_module": "builtins"})
    );

    let unknown = run(&stack, "no_existe", vec![], SendOptions::default()).await;
    assert_eq!(unknown.status, TaskState::Failure);
    assert_eq!(unknown.result["exc_type"], "NotRegistered");
    assert_eq!(unknown.result["exc_module"], "celery.exceptions");
    assert_eq!(unknown.result["exc_message"], json!(["no_existe"]));

    let panicked = run(&stack, "panic", vec![], business()).await;
    assert_eq!(panicked.status, TaskState::Failure);
    assert_eq!(panicked.result["exc_type"], "RuntimeError");
    // ... and the worker lives on.
    let after = run(&stack, "add", vec![json!(1), json!(1)], business()).await;
    assert_eq!(after.result, json!(2));

    // get() turns a failure into the task's exception.
    let pending = stack
        .client
        .apply("fail", vec![json!("x")], Default::default(), business())
        .await
        .unwrap();
    match pending.get(WAIT).await {
        Err(QueueError::TaskFailed { exception, .. }) => {
            assert_eq!(exception.exc_type, "ValueError")
        }
        other => panic!("{other:?}"),
    }
    worker.stop().await.unwrap();
    assert_eq!(stack.server.cli(&["HLEN", keys::UNACKED]), "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn time_limit_eta_expiry_and_ignore_result() {
    let stack = Stack::new();
    let worker = stack.worker(config());

    let limited = SendOptions {
        time_limit: Some(0.2),
        ..business()
    };
    let meta = run(&stack, "sleep", vec![json!(5_000)], limited).await;
    assert_eq!(meta.status, TaskState::Failure);
    assert_eq!(meta.result["exc_type"], "TimeLimitExceeded");

    let sent = chrono::Utc::now();
    let later = SendOptions {
        countdown: Some(Duration::from_millis(400)),
        ..business()
    };
    let meta = run(&stack, "add", vec![json!(1), json!(2)], later).await;
    let done = shared::protocol::parse_datetime(meta.date_done.as_deref().unwrap()).unwrap();
    assert!(
        done - sent >= chrono::Duration::milliseconds(400),
        "ran before its eta: {done} vs {sent}"
    );

    let expired = SendOptions {
        expires: Some(Duration::ZERO),
        ..business()
    };
    let meta = run(&stack, "add", vec![json!(1), json!(2)], expired).await;
    assert_eq!(meta.status, TaskState::Revoked);
    assert_eq!(meta.result["exc_type"], "TaskRevokedError");
    assert_eq!(meta.result["exc_message"], json!(["expired"]));

    let quiet = SendOptions {
        ignore_result: true,
        ..business()
    };
    let id = stack
        .client
        .send_task("add", vec![json!(1), json!(2)], Default::default(), quiet)
        .await
        .unwrap();
    // Processed (acknowledged) without storing anything.
    let acked = eventually(WAIT, Duration::from_millis(20), || async {
        stack
            .server
            .cli(&["LLEN", &keys::queue_list(QUEUE, BUSINESS_PRIORITY)])
            == "0"
            && stack.server.cli(&["HLEN", keys::UNACKED]) == "0"
    })
    .await;
    assert!(acked);
    assert_eq!(stack.server.cli(&["EXISTS", &keys::result_key(&id)]), "0");
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_messages_are_requeued_or_quarantined() {
    let stack = Stack::new();
    let attempts = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::new();
    let seen = attempts.clone();
    registry.register("una_vez_mas", move |_task| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                Err(TaskError::Reject {
                    requeue: true,
                    reason: "later".into(),
                })
            } else {
                Ok(json!(n))
            }
        }
    });
    registry.register("rechazar", |_task| async {
        Err(TaskError::Reject {
            requeue: false,
            reason: "not for us".into(),
        })
    });
    let worker = RunningWorker::start(stack.redis.clone(), registry, config());

    let meta = run(&stack, "una_vez_mas", vec![], business()).await;
    assert_eq!(meta.result, json!(1), "requeued, then run again");
    assert_eq!(attempts.load(Ordering::SeqCst), 2);

    let id = stack
        .client
        .send_task("rechazar", vec![], Default::default(), business())
        .await
        .unwrap();
    let broker = stack.client.broker();
    let quarantined = eventually(WAIT, Duration::from_millis(20), || async {
        broker.quarantined(10).await.unwrap().len() == 1
    })
    .await;
    assert!(quarantined);
    let entry = broker.quarantined(1).await.unwrap().remove(0);
    assert!(entry.reason.contains("not for us"));
    assert!(entry.message.contains(&id), "the message is kept as it was");
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn health_pings_skip_the_backlog() {
    let stack = Stack::new();
    let cfg = WorkerConfig {
        concurrency: 2,
        ..config()
    };
    let worker = stack.worker(cfg);
    // Fill both business slots with long tasks and queue many more behind them.
    let mut backlog = Vec::new();
    for _ in 0..50 {
        backlog.push(
            stack
                .client
                .send_task("sleep", vec![json!(2_000)], Default::default(), business())
                .await
                .unwrap(),
        );
    }
    let busy = eventually(WAIT, Duration::from_millis(10), || async {
        worker.stats.active.load(Ordering::SeqCst) == 2
    })
    .await;
    assert!(busy);
    let ping = run(&stack, "obtener_estado", vec![], SendOptions::default()).await;
    assert_eq!(ping.status, TaskState::Success);
    // The ping was answered while the backlog had not moved: no long task has finished yet.
    let first = stack.client.backend().get(&backlog[0]).await.unwrap();
    assert_eq!(
        first.status,
        TaskState::Pending,
        "the ping did not wait for the backlog"
    );
    worker.token.cancel();
}

/// A ping sent as the monitor sends it (next in line) while every main slot runs a long task
/// sent at Celery's default priority, with more of them queued on the same plain list: the
/// reserved health slots take it, and no business task.
#[tokio::test(flavor = "multi_thread")]
async fn health_pings_skip_a_default_priority_backlog_of_long_tasks() {
    let stack = Stack::new();
    let cfg = WorkerConfig {
        concurrency: 2,
        ..config()
    };
    let worker = stack.worker(cfg);
    let backlog = stack
        .client
        .send_many(
            "sleep",
            (0..50).map(|_| vec![json!(2_000)]),
            SendOptions::default(),
        )
        .await
        .unwrap();
    let busy = eventually(WAIT, Duration::from_millis(10), || async {
        worker.stats.active.load(Ordering::SeqCst) == 2
    })
    .await;
    assert!(busy);
    let next_in_line = SendOptions {
        next_in_line: true,
        ..SendOptions::default()
    };
    for _ in 0..3 {
        let ping = run(&stack, "obtener_estado", vec![], next_in_line.clone()).await;
        assert_eq!(ping.status, TaskState::Success);
    }
    let first = stack.client.backend().get(&backlog[0]).await.unwrap();
    assert_eq!(
        first.status,
        TaskState::Pending,
        "the pings did not wait for the backlog"
    );
    // The reserved slots took no business task: two running, 48 still queued.
    assert_eq!(
        stack.client.broker().queue_len(QUEUE).await.unwrap(),
        48,
        "only the two main slots took from the backlog"
    );
    worker.token.cancel();
}

/// Celery's default priority (the plain list) gets every slot, as priority 6 does: the same
/// number of tasks runs at once whichever way they were sent.
#[tokio::test(flavor = "multi_thread")]
async fn default_priority_tasks_get_every_slot() {
    let stack = Stack::new();
    let cfg = WorkerConfig {
        concurrency: 6,
        ..config()
    };
    let worker = stack.worker(cfg);
    for (round, opts) in [SendOptions::default(), business()].into_iter().enumerate() {
        let ids = stack
            .client
            .send_many("sleep", (0..12).map(|_| vec![json!(1_500)]), opts)
            .await
            .unwrap();
        let all_busy = eventually(WAIT, Duration::from_millis(5), || async {
            worker.stats.active.load(Ordering::SeqCst) == 6
        })
        .await;
        assert!(all_busy, "round {round}: 6 tasks at once");
        let finished = eventually(
            Duration::from_secs(20),
            Duration::from_millis(50),
            || async {
                testkit::queue::stored(&stack.redis, &ids)
                    .await
                    .iter()
                    .all(|m| m.status == TaskState::Success)
            },
        )
        .await;
        assert!(finished, "round {round}: every task ran");
    }
    worker.stop().await.unwrap();
}

/// A ping sent as the monitor sends it is served before a backlog of default-priority tasks
/// that the worker is draining (its main lane has room: it takes the ping itself).
#[tokio::test(flavor = "multi_thread")]
async fn a_ping_next_in_line_overtakes_a_draining_backlog() {
    let stack = Stack::new();
    let worker = stack.worker(config());
    let backlog = 20_000;
    stack
        .client
        .send_many(
            "noop",
            (0..backlog).map(|i| vec![json!(i)]),
            SendOptions::default(),
        )
        .await
        .unwrap();
    let draining = eventually(WAIT, Duration::from_millis(5), || async {
        worker.stats.processed.load(Ordering::SeqCst) > 0
    })
    .await;
    assert!(draining);
    let next_in_line = SendOptions {
        next_in_line: true,
        ..SendOptions::default()
    };
    let ping = run(&stack, "obtener_estado", vec![], next_in_line).await;
    assert_eq!(ping.status, TaskState::Success);
    let processed = worker.stats.processed.load(Ordering::SeqCst);
    assert!(
        processed < backlog as u64 / 2,
        "answered before the backlog drained ({processed} of {backlog} done)"
    );
    worker.token.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_is_bounded_and_queues_are_shared() {
    let stack = Stack::new();
    let cfg = WorkerConfig {
        concurrency: 3,
        queues: vec![QUEUE.into(), "otra".into()],
        ..config()
    };
    let worker = stack.worker(cfg);
    let mut pending = Vec::new();
    for i in 0..12 {
        let queue = if i % 2 == 0 { QUEUE } else { "otra" };
        let opts = SendOptions {
            queue: Some(queue.into()),
            ..business()
        };
        pending.push(
            stack
                .client
                .apply("sleep", vec![json!(150)], Default::default(), opts)
                .await
                .unwrap(),
        );
    }
    // Count running tasks (finished ones may still wait for their batched acknowledgement).
    let watcher = {
        let stats = worker.stats.clone();
        tokio::spawn(async move {
            let mut most = 0u64;
            while stats.processed.load(Ordering::SeqCst) < 12 {
                most = most.max(stats.active.load(Ordering::SeqCst));
                tokio::task::yield_now().await;
            }
            most
        })
    };
    for p in pending {
        assert_eq!(p.wait(WAIT).await.unwrap().status, TaskState::Success);
    }
    let most = watcher.await.unwrap();
    assert!(
        (1..=3).contains(&most),
        "at most 3 tasks run at once, saw {most}"
    );
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_events_online_heartbeat_offline() {
    let stack = Stack::new();
    let mut events = worker_events(&stack.redis).await;
    let worker = stack.worker(config());
    let mut next = async || {
        let msg = tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap()
            .unwrap();
        let channel = msg.get_channel_name().to_owned();
        (
            channel,
            WorkerEvent::decode(msg.get_payload_bytes()).unwrap(),
        )
    };
    let (channel, online) = next().await;
    assert_eq!(
        (channel.as_str(), online.kind.as_str()),
        ("/0.celeryev/worker.online", "worker-online")
    );
    assert_eq!(online.hostname, "test@localhost");
    assert_eq!(online.freq, 0.5);
    let (channel, beat) = next().await;
    assert_eq!(
        (channel.as_str(), beat.kind.as_str()),
        ("/0.celeryev/worker.heartbeat", "worker-heartbeat")
    );
    assert!(beat.clock > online.clock);
    run(
        &stack,
        "add",
        vec![json!(1), json!(1)],
        SendOptions::default(),
    )
    .await;
    worker.stop().await.unwrap();
    let offline = loop {
        let (_, e) = next().await;
        if e.kind != "worker-heartbeat" {
            break e;
        }
        assert!(e.processed <= 1);
    };
    assert_eq!(offline.kind, "worker-offline");
    assert_eq!(offline.processed, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_stop_finishes_running_tasks_and_leaves_the_rest_queued() {
    let stack = Stack::new();
    let worker = stack.worker(WorkerConfig {
        concurrency: 3,
        ..config()
    });
    let mut running = Vec::new();
    for _ in 0..3 {
        running.push(
            stack
                .client
                .apply("sleep", vec![json!(500)], Default::default(), business())
                .await
                .unwrap(),
        );
    }
    let busy = eventually(WAIT, Duration::from_millis(5), || async {
        worker.stats.active.load(Ordering::SeqCst) == 3
    })
    .await;
    assert!(busy);
    for _ in 0..5 {
        stack
            .client
            .send_task("sleep", vec![json!(500)], Default::default(), business())
            .await
            .unwrap();
    }
    let consumer = worker.consumer.clone();
    worker.stop().await.expect("a clean exit");
    assert_stopped_gracefully(&stack, running, 5, Some(&consumer)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_overrunning_the_shutdown_timeout_are_requeued() {
    let stack = Stack::new();
    let worker = stack.worker(WorkerConfig {
        shutdown_timeout: Duration::from_millis(200),
        ..config()
    });
    let id = stack
        .client
        .send_task("sleep", vec![json!(60_000)], Default::default(), business())
        .await
        .unwrap();
    let busy = eventually(WAIT, Duration::from_millis(5), || async {
        worker.stats.active.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(busy);
    worker.stop().await.expect("a clean exit");
    assert_eq!(
        stack.client.broker().queue_len(QUEUE).await.unwrap(),
        1,
        "requeued for the next worker"
    );
    assert_eq!(stack.server.cli(&["HLEN", keys::UNACKED]), "0");
    assert_eq!(
        stack.client.backend().get(&id).await.unwrap().status,
        TaskState::Pending
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn track_started_stores_started_before_the_outcome() {
    let stack = Stack::new();
    let worker = stack.worker(WorkerConfig {
        track_started: true,
        ..config()
    });
    let id = stack
        .client
        .send_task("sleep", vec![json!(1_000)], Default::default(), business())
        .await
        .unwrap();
    let started = eventually(WAIT, Duration::from_millis(5), || async {
        stack.client.backend().get(&id).await.unwrap().status == TaskState::Started
    })
    .await;
    assert!(started, "STARTED is visible while the task runs");
    let meta = stack.client.backend().get(&id).await.unwrap();
    assert_eq!(meta.result["hostname"], "test@localhost");
    assert!(meta.result["pid"].as_u64().is_some());
    let done = stack.client.result(&id).wait(WAIT).await.unwrap();
    assert_eq!(done.status, TaskState::Success);
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_taken_by_a_fetch_whose_reply_was_lost_go_back() {
    let stack = Stack::new();
    let worker = stack.worker(WorkerConfig {
        orphan_sweep: Duration::from_millis(200),
        ..config()
    });
    // Record messages as held by the worker behind its back, as a fetch whose reply never
    // arrived leaves them (from a queue it does not consume, so only the sweep can move them).
    let otra = SendOptions {
        queue: Some("otra".into()),
        ..business()
    };
    for _ in 0..2 {
        stack
            .client
            .send_task(
                "add",
                vec![json!(1), json!(2)],
                Default::default(),
                otra.clone(),
            )
            .await
            .unwrap();
    }
    let limits = shared::broker::FetchLimits {
        max_messages: 10,
        max_bytes: 1 << 20,
        lease: Duration::from_secs(30),
    };
    let taken = stack
        .client
        .broker()
        .fetch(&worker.consumer, &keys::queue_lists("otra"), limits)
        .await
        .unwrap();
    assert_eq!(taken.deliveries.len(), 2);
    let inflight = keys::inflight(&worker.consumer);
    let returned = eventually(WAIT, Duration::from_millis(20), || async {
        stack.client.broker().queue_len("otra").await.unwrap() == 2
            && stack.server.cli(&["HLEN", &inflight]) == "0"
    })
    .await;
    assert!(returned, "orphans go back to their queue");
    assert_eq!(stack.server.cli(&["HLEN", keys::UNACKED]), "0");
    // A message the worker is running (across several sweeps) is never taken for an orphan:
    // it runs once, and nothing is put back.
    let stats = worker.stats.clone();
    let meta = run(&stack, "sleep", vec![json!(600)], business()).await;
    assert_eq!(meta.status, TaskState::Success);
    worker.stop().await.unwrap();
    assert_eq!(stats.processed.load(Ordering::SeqCst), 1);
    assert_eq!(stack.client.broker().queue_len(QUEUE).await.unwrap(), 0);
}

/// Rate limits (Celery's `rate_limit`): tasks of a limited name start one interval apart, one
/// at once after an idle spell; the worker's configuration overrides what the task was
/// registered with; other names are not held back. Also the task attribute `ignore_result`.
#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_space_a_tasks_starts_and_ignore_result_is_a_task_option() {
    let stack = Stack::new();
    let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut registry = Registry::new();
    for (name, rate) in [("limited", "1/s"), ("free", "1/h")] {
        let starts = starts.clone();
        registry.register_with(
            name,
            move |task: shared::Task| {
                let starts = starts.clone();
                async move {
                    starts
                        .lock()
                        .unwrap()
                        .push((task.name.clone(), std::time::Instant::now()));
                    Ok(json!(task.name))
                }
            },
            shared::worker::TaskOptions {
                rate_limit: Some(rate.parse().unwrap()),
                ..Default::default()
            },
        );
    }
    registry.register_with(
        "quiet",
        |_task: shared::Task| async { Ok(json!(1)) },
        shared::worker::TaskOptions {
            ignore_result: true,
            ..Default::default()
        },
    );
    let worker = RunningWorker::start(
        stack.redis.clone(),
        registry,
        WorkerConfig {
            // 1/s registered, 20/s configured; "free" (1/h registered) lifted.
            rate_limits: vec![
                ("limited".into(), "20/s".parse().unwrap()),
                ("free".into(), "0".parse().unwrap()),
            ],
            ..config()
        },
    );
    let mut sent = Vec::new();
    for _ in 0..4 {
        for name in ["limited", "free"] {
            let r = stack
                .client
                .apply(name, vec![], Default::default(), business())
                .await
                .unwrap();
            sent.push(r);
        }
    }
    for r in sent {
        r.get(WAIT).await.unwrap();
    }
    let starts = starts.lock().unwrap().clone();
    let of = |name: &str| -> Vec<std::time::Instant> {
        starts
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, at)| *at)
            .collect()
    };
    let limited = of("limited");
    assert_eq!(limited.len(), 4);
    for pair in limited.windows(2) {
        let gap = pair[1] - pair[0];
        // 50 ms apart under 20/s; under the registered 1/s the four would take 3 s.
        assert!(gap >= Duration::from_millis(45), "{gap:?}");
        assert!(gap < Duration::from_millis(900), "{gap:?}");
    }
    // Lifted: all four ran (each `get` above returned), where the registered 1/h would have
    // held three of them for hours.
    assert_eq!(of("free").len(), 4);

    let id = stack
        .client
        .send_task("quiet", vec![], Default::default(), business())
        .await
        .unwrap();
    let acked = eventually(WAIT, Duration::from_millis(20), || async {
        stack.server.cli(&["HLEN", keys::UNACKED]) == "0"
            && stack
                .server
                .cli(&["LLEN", &keys::queue_list(QUEUE, BUSINESS_PRIORITY)])
                == "0"
    })
    .await;
    assert!(acked);
    worker.stop().await.unwrap();
    assert_eq!(
        stack.server.cli(&["EXISTS", &keys::result_key(&id)]),
        "0",
        "quiet's result was stored"
    );
}

/// A flood of bad messages costs bounded memory: the quarantine keeps its newest
/// `quarantine_max` entries, and counts what it dropped; the worker goes on.
#[tokio::test(flavor = "multi_thread")]
async fn the_quarantine_keeps_its_newest_entries_and_counts_the_rest() {
    let stack = Stack::new();
    let worker = stack.worker(WorkerConfig {
        quarantine_max: 3,
        ..config()
    });
    let list = keys::queue_list(QUEUE, 0);
    for i in 0..7 {
        stack
            .server
            .cli(&["LPUSH", &list, &format!("not a message {i}")]);
    }
    let trimmed = eventually(WAIT, Duration::from_millis(20), || async {
        stack.server.cli(&["GET", keys::QUARANTINE_DROPPED]) == "4"
    })
    .await;
    assert!(
        trimmed,
        "dropped: {}",
        stack.server.cli(&["GET", keys::QUARANTINE_DROPPED])
    );
    assert_eq!(stack.server.cli(&["LLEN", keys::QUARANTINE]), "3");
    // The newest are kept (the last pushed was the last taken).
    let newest = stack
        .client
        .broker()
        .quarantined(1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(newest.message, "not a message 6");
    let r = stack
        .client
        .apply(
            "add",
            vec![json!(1), json!(1)],
            Default::default(),
            business(),
        )
        .await
        .unwrap();
    assert_eq!(r.get(WAIT).await.unwrap(), json!(2));
    worker.stop().await.unwrap();
}
