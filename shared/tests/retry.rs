//! Retries and soft time limits against a real Redis, in process: the broker's retry script
//! (one atomic swap of the held message for its retry), a worker's retries as Celery's rules
//! say (explicit, automatic with `autoretry_for`, running out), and the soft limit reaching a
//! handler. The same scenarios against real Python Celery are in `interop.rs`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::{json, Value};
use shared::broker::FetchLimits;
use shared::protocol::{ExceptionInfo, ResultMeta, TaskMessage, TaskState};
use shared::worker::{Task, TaskError, TaskOptions, TaskResult};
use shared::{keys, Broker, QueueError, Registry, SendOptions};
use testkit::queue::{config, RunningWorker, Stack, QUEUE};

const WAIT: Duration = Duration::from_secs(10);

fn limits() -> FetchLimits {
    FetchLimits {
        max_messages: 1,
        max_bytes: 1024 * 1024,
        lease: Duration::from_secs(30),
    }
}

/// Every record of a held message, and every message queued, as (unacked, unacked_index,
/// inflight of `consumer`, queued ids with their retries).
async fn where_things_are(
    stack: &Stack,
    consumer: &str,
) -> (usize, usize, usize, Vec<(String, u32)>) {
    let mut c = stack.redis.conn().await.unwrap();
    let unacked: usize = c.hlen(keys::UNACKED).await.unwrap();
    let index: usize = c.zcard(keys::UNACKED_INDEX).await.unwrap();
    let inflight: usize = c.hlen(keys::inflight(consumer)).await.unwrap();
    let mut queued = Vec::new();
    for list in keys::queue_lists(QUEUE) {
        let raw: Vec<String> = c.lrange(&list, 0, -1).await.unwrap();
        for r in raw {
            let m = TaskMessage::decode(r.as_bytes()).unwrap();
            queued.push((m.id, m.retries));
        }
    }
    (unacked, index, inflight, queued)
}

#[tokio::test]
async fn the_retry_script_swaps_a_held_message_for_its_retry() {
    let stack = Stack::new();
    let broker = Broker::new(stack.redis.clone());
    let id = stack
        .client
        .send_task(
            "reintentar",
            vec![json!(2)],
            Default::default(),
            SendOptions::default(),
        )
        .await
        .unwrap();
    let lists = keys::queue_lists(QUEUE);
    let delivery = broker
        .fetch("c1", &lists, limits())
        .await
        .unwrap()
        .deliveries
        .remove(0);
    let message = TaskMessage::decode(delivery.raw.as_bytes()).unwrap();

    // Before the script (a crash here): the old message is held, recoverable, and alone.
    assert_eq!(where_things_are(&stack, "c1").await, (1, 1, 1, vec![]));

    let retried = message.retried(chrono::Utc::now() + chrono::Duration::seconds(1));
    let record = ResultMeta::retry(&id, None, None).to_json();
    let ttl = Duration::from_secs(60);
    let swapped = broker
        .retry("c1", &delivery, &retried, Some((&id, &record)), ttl)
        .await
        .unwrap();
    assert!(swapped);
    // After it: nothing held, exactly one message, the same task one retry on, and RETRY stored.
    assert_eq!(
        where_things_are(&stack, "c1").await,
        (0, 0, 0, vec![(id.clone(), 1)])
    );
    let stored = stack.client.result(&id).state().await.unwrap();
    assert_eq!(stored.status, TaskState::Retry);
    assert_eq!(stored.children, vec![json!([[id, null], null])]);

    // The same retry again (a second call after a lost reply): not held, so nothing is pushed.
    let again = broker
        .retry("c1", &delivery, &retried, Some((&id, &record)), ttl)
        .await
        .unwrap();
    assert!(!again);
    assert_eq!(
        where_things_are(&stack, "c1").await.3,
        vec![(id.clone(), 1)]
    );

    // A retry of a delivery its holder lost meanwhile (recovered after its lease ran out):
    // the recovered copy is queued, so the retry must not add a second one.
    let delivery = broker
        .fetch("c2", &lists, limits())
        .await
        .unwrap()
        .deliveries
        .remove(0);
    assert!(broker
        .give_back("c2", &delivery.tag, &delivery.list)
        .await
        .unwrap());
    let message = TaskMessage::decode(delivery.raw.as_bytes()).unwrap();
    let late = broker
        .retry(
            "c2",
            &delivery,
            &message.retried(chrono::Utc::now()),
            Some((&id, &record)),
            ttl,
        )
        .await
        .unwrap();
    assert!(!late);
    assert_eq!(
        where_things_are(&stack, "c2").await,
        (0, 0, 0, vec![(id.clone(), 1)])
    );
}

#[tokio::test]
async fn the_retry_script_never_overwrites_a_success() {
    let stack = Stack::new();
    let broker = Broker::new(stack.redis.clone());
    let id = stack
        .client
        .send_task(
            "reintentar",
            vec![json!(1)],
            Default::default(),
            SendOptions::default(),
        )
        .await
        .unwrap();
    let success = ResultMeta::success(&id, json!(1)).to_json();
    let mut c = stack.redis.conn().await.unwrap();
    let _: () = c.set(keys::result_key(&id), &success).await.unwrap();
    let delivery = broker
        .fetch("c1", &keys::queue_lists(QUEUE), limits())
        .await
        .unwrap()
        .deliveries
        .remove(0);
    let message = TaskMessage::decode(delivery.raw.as_bytes()).unwrap();
    let record = ResultMeta::retry(&id, None, None).to_json();
    let retried = message.retried(chrono::Utc::now());
    broker
        .retry(
            "c1",
            &delivery,
            &retried,
            Some((&id, &record)),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let kept: String = c.get(keys::result_key(&id)).await.unwrap();
    assert_eq!(kept, success);
}

/// A task that fails with `exc_type` while it has been retried fewer than `until` times, then
/// returns its retries; `runs` counts its attempts.
fn flaky(
    exc_type: &'static str,
    until: u32,
    runs: Arc<AtomicU32>,
) -> impl Fn(Task) -> std::pin::Pin<Box<dyn std::future::Future<Output = TaskResult> + Send>>
       + Send
       + Sync
       + 'static {
    move |task: Task| {
        runs.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if task.retries < until {
                Err(TaskError::new(exc_type, "builtins", "sin red"))
            } else {
                Ok(json!(task.retries))
            }
        })
    }
}

async fn run(stack: &Stack, name: &str) -> (String, Result<Value, QueueError>) {
    let result = stack
        .client
        .apply(name, vec![], Default::default(), SendOptions::default())
        .await
        .unwrap();
    let id = result.id().to_owned();
    (id, result.get(WAIT).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn autoretry_for_retries_the_listed_failures_only() {
    let stack = Stack::new();
    let quick = |max_retries| TaskOptions {
        autoretry_for: vec!["ConnectionError".into()],
        max_retries,
        default_retry_delay: Duration::from_millis(50),
        ..TaskOptions::default()
    };
    let (recovers, exhausts, unlisted) = (Arc::default(), Arc::default(), Arc::default());
    let mut registry = Registry::new();
    registry
        .register_with(
            "recupera",
            flaky("ConnectionError", 2, Arc::clone(&recovers)),
            quick(Some(3)),
        )
        .register_with(
            "agota",
            flaky("ConnectionError", 99, Arc::clone(&exhausts)),
            quick(Some(1)),
        )
        .register_with(
            "otro_error",
            flaky("ValueError", 99, Arc::clone(&unlisted)),
            quick(Some(3)),
        );
    let worker = RunningWorker::start(stack.redis.clone(), registry, config());

    let (_, value) = run(&stack, "recupera").await;
    assert_eq!(value.unwrap(), json!(2));
    assert_eq!(recovers.load(Ordering::SeqCst), 3);

    // Out of retries: the failure is the task's own exception, as Celery's retry(exc=...).
    let (_, value) = run(&stack, "agota").await;
    match value {
        Err(QueueError::TaskFailed { exception, .. }) => {
            assert_eq!(
                *exception,
                ExceptionInfo::new("ConnectionError", "builtins", "sin red")
            )
        }
        other => panic!("expected the ConnectionError, got {other:?}"),
    }
    assert_eq!(
        exhausts.load(Ordering::SeqCst),
        2,
        "the first run and one retry"
    );

    let (_, value) = run(&stack, "otro_error").await;
    assert!(
        matches!(value, Err(QueueError::TaskFailed { exception, .. }) if exception.exc_type == "ValueError")
    );
    assert_eq!(unlisted.load(Ordering::SeqCst), 1, "not listed: no retry");

    worker.stop().await.unwrap();
    assert_eq!(stack.server.cli(&["HLEN", keys::UNACKED]), "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_explicit_retry_stores_its_exception_and_counts_attempts() {
    let stack = Stack::new();
    let mut registry = Registry::new();
    registry.register("con_motivo", |task: Task| async move {
        if task.retries == 0 {
            let why = ExceptionInfo::new("TimeoutError", "builtins", "lento");
            return Err(task
                .retry()
                .countdown(Duration::from_millis(300))
                .exc(why)
                .into());
        }
        Ok(json!(task.retries))
    });
    let worker = RunningWorker::start(stack.redis.clone(), registry, config());
    let result = stack
        .client
        .apply(
            "con_motivo",
            vec![],
            Default::default(),
            SendOptions::default(),
        )
        .await
        .unwrap();
    let id = result.id().to_owned();
    // Between the attempts (the retry waits 300 ms), the RETRY record holds the exception.
    let retrying = testkit::eventually(WAIT, Duration::from_millis(10), || async {
        stack.client.result(&id).state().await.unwrap().status == TaskState::Retry
    })
    .await;
    assert!(retrying, "RETRY stored between the attempts");
    let meta = stack.client.result(&id).state().await.unwrap();
    assert_eq!(
        meta.result,
        json!({"exc_type": "TimeoutError", "exc_message": ["lento"], "exc_module": "builtins"})
    );
    assert_eq!(meta.date_done, None);
    assert_eq!(result.get(WAIT).await.unwrap(), json!(1));
    // The final result names the task as its own parent, as Celery's does after a retry.
    let done = stack.client.result(&id).state().await.unwrap();
    assert_eq!(done.extra["parent_id"], json!(id));
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_soft_limit_reaches_the_handler() {
    let stack = Stack::new();
    let worker = stack.worker(config());
    let with_limits = |soft, hard| SendOptions {
        soft_time_limit: soft,
        time_limit: hard,
        ..SendOptions::default()
    };
    let sleep = |ms: u64, opts| {
        let client = &stack.client;
        async move {
            client
                .apply("sleep", vec![json!(ms)], Default::default(), opts)
                .await
                .unwrap()
                .get(WAIT)
                .await
        }
    };
    let started = std::time::Instant::now();
    match sleep(5_000, with_limits(Some(0.2), None)).await {
        Err(QueueError::TaskFailed { exception, .. }) => {
            assert_eq!(exception.exc_type, "SoftTimeLimitExceeded");
            assert_eq!(exception.exc_module.as_deref(), Some("billiard.exceptions"));
            assert_eq!(exception.exc_message, json!([]));
        }
        other => panic!("expected SoftTimeLimitExceeded, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "stopped at the soft limit"
    );
    assert_eq!(
        sleep(20, with_limits(Some(5.0), None)).await.unwrap(),
        json!(20)
    );
    worker.stop().await.unwrap();

    // A handler that ignores its soft limit is stopped at the hard one.
    let mut registry = Registry::new();
    registry.register("terco", |_task: Task| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(Value::Null)
    });
    let worker = RunningWorker::start(stack.redis.clone(), registry, config());
    let result = stack
        .client
        .apply(
            "terco",
            vec![],
            Default::default(),
            with_limits(Some(0.1), Some(0.3)),
        )
        .await
        .unwrap();
    match result.get(WAIT).await {
        Err(QueueError::TaskFailed { exception, .. }) => {
            assert_eq!(exception.exc_type, "TimeLimitExceeded")
        }
        other => panic!("expected TimeLimitExceeded, got {other:?}"),
    }
    worker.stop().await.unwrap();
}

/// Celery's `self.retry(args=..., kwargs=...)`: the next attempt runs with the arguments given,
/// and its message says so (`argsrepr`, the body), whatever the first attempt had.
#[tokio::test(flavor = "multi_thread")]
async fn a_retry_can_replace_the_arguments() {
    let stack = Stack::new();
    let mut registry = Registry::new();
    registry.register("contar", |task: Task| async move {
        let n = task.arg(0, "n").and_then(Value::as_u64).unwrap_or(0);
        if n < 3 {
            let mut kwargs = serde_json::Map::new();
            kwargs.insert("visto".into(), json!(n));
            return Err(task
                .retry()
                .countdown(Duration::ZERO)
                .args(vec![json!(n + 1)])
                .kwargs(kwargs)
                .into());
        }
        Ok(json!({"n": n, "retries": task.retries, "kwargs": task.kwargs}))
    });
    let worker = RunningWorker::start(stack.redis.clone(), registry, config());
    let result = stack
        .client
        .apply(
            "contar",
            vec![json!(0)],
            Default::default(),
            SendOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        result.get(WAIT).await.unwrap(),
        json!({"n": 3, "retries": 3, "kwargs": {"visto": 2}})
    );
    worker.stop().await.unwrap();
}
