//! Tasks waiting for an eta cost a worker bounded memory: far ones are parked in Redis
//! (`rcelery:parked`, the message staying in kombu's `unacked`), come back to their queue
//! ahead of their eta, run on time, survive the worker that parked them, and never run twice
//! when a kombu worker restored them first. Against a real Redis, with in-process workers.

use std::time::Duration;

use serde_json::{json, Map, Value};
use shared::control::Control;
use shared::protocol::{parse_datetime, TaskState};
use shared::worker::EtaLimits;
use shared::{keys, SendOptions, WorkerConfig};
use testkit::eventually;
use testkit::queue::{business, config, held_by, stored, Stack};

const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

fn with_eta(limits: EtaLimits) -> WorkerConfig {
    WorkerConfig {
        eta: limits,
        ..config()
    }
}

fn countdown(d: Duration) -> SendOptions {
    SendOptions {
        countdown: Some(d),
        ..business()
    }
}

fn zcard(stack: &Stack, key: &str) -> usize {
    stack.server.cli(&["ZCARD", key]).parse().unwrap()
}

/// The `inspect scheduled` answer of the one worker: what it holds in memory for an eta.
async fn scheduled(stack: &Stack) -> Vec<Value> {
    let replies = Control::new(stack.redis.clone())
        .call(
            "scheduled",
            Map::new(),
            None,
            Duration::from_secs(2),
            Some(1),
        )
        .await
        .unwrap();
    replies[0].answer.as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn far_etas_are_parked_in_redis_not_held_and_the_worker_keeps_answering() {
    let stack = Stack::new();
    let worker = stack.worker(with_eta(EtaLimits {
        horizon: Duration::from_secs(60),
        ..EtaLimits::default()
    }));
    // 300 tasks due tomorrow, 8 kB each: held, they would be 300 futures and 2.4 MB of text.
    let padding = "x".repeat(8 * 1024);
    let day = Duration::from_secs(86_400);
    for _ in 0..300 {
        stack
            .client
            .send_task(
                "add",
                vec![json!(1), json!(padding)],
                Map::new(),
                countdown(day),
            )
            .await
            .unwrap();
    }
    let parked = eventually(WAIT, POLL, || async { zcard(&stack, keys::PARKED) == 300 }).await;
    assert!(parked, "parked: {}", zcard(&stack, keys::PARKED));
    // Still recorded for kombu (nothing lost), no longer this worker's.
    assert_eq!(stack.server.cli(&["HLEN", keys::UNACKED]), "300");
    assert_eq!(held_by(&stack.redis, &worker.consumer).await, 0);
    assert!(scheduled(&stack).await.is_empty());
    // A kombu worker (visibility timeout one hour) would not restore one before it is due back,
    // half a horizon before its eta.
    let lowest: Vec<String> = stack
        .server
        .cli(&["ZRANGE", keys::UNACKED_INDEX, "0", "0", "WITHSCORES"])
        .lines()
        .map(str::to_owned)
        .collect();
    let score: i64 = lowest[1].parse().unwrap();
    let restored_at = score + 3600;
    let expected = chrono::Utc::now().timestamp() + 86_400 - 30;
    assert!(
        (restored_at - expected).abs() < 30,
        "a kombu worker would restore it at {restored_at}, expected about {expected}"
    );
    // The worker still runs work and answers.
    let r = stack
        .client
        .apply("add", vec![json!(2), json!(3)], Map::new(), business())
        .await
        .unwrap();
    assert_eq!(r.get(WAIT).await.unwrap(), json!(5));
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parked_task_comes_back_and_runs_at_its_eta_even_after_its_worker_left() {
    let stack = Stack::new();
    // Due in 8 s, horizon 2 s: parked, back 3 s (MIN_PARK) before its eta.
    let limits = EtaLimits {
        horizon: Duration::from_secs(2),
        ..EtaLimits::default()
    };
    let first = stack.worker(with_eta(limits));
    let sent = chrono::Utc::now();
    let id = stack
        .client
        .send_task(
            "add",
            vec![json!(20), json!(22)],
            Map::new(),
            countdown(Duration::from_secs(8)),
        )
        .await
        .unwrap();
    let parked = eventually(WAIT, POLL, || async { zcard(&stack, keys::PARKED) == 1 }).await;
    assert!(parked, "the task was not parked");
    // The worker that parked it leaves; another one runs it.
    first.stop().await.unwrap();
    let second = stack.worker(with_eta(limits));
    let ran = eventually(WAIT, POLL, || async {
        stored(&stack.redis, std::slice::from_ref(&id)).await[0].status == TaskState::Success
    })
    .await;
    assert!(ran, "the parked task never ran");
    let meta = &stored(&stack.redis, std::slice::from_ref(&id)).await[0];
    assert_eq!(meta.result, json!(42));
    let done = parse_datetime(meta.date_done.as_deref().unwrap()).unwrap();
    assert!(
        done - sent >= chrono::Duration::seconds(8),
        "ran before its eta: {done} vs sent {sent}"
    );
    assert_eq!(zcard(&stack, keys::PARKED), 0);
    assert_eq!(stack.server.cli(&["HLEN", keys::UNACKED]), "0");
    second.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn over_its_budget_a_worker_parks_what_is_not_imminent_and_everything_runs_on_time() {
    let stack = Stack::new();
    let worker = stack.worker(with_eta(EtaLimits {
        horizon: Duration::from_secs(600),
        max_tasks: 5,
        ..EtaLimits::default()
    }));
    let sent = chrono::Utc::now();
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            stack
                .client
                .send_task(
                    "add",
                    vec![json!(i), json!(1)],
                    Map::new(),
                    countdown(Duration::from_secs(10)),
                )
                .await
                .unwrap(),
        );
    }
    let parked = eventually(WAIT, POLL, || async { zcard(&stack, keys::PARKED) == 15 }).await;
    assert!(parked, "parked: {}", zcard(&stack, keys::PARKED));
    assert_eq!(scheduled(&stack).await.len(), 5);
    let all_ran = eventually(Duration::from_secs(30), POLL, || async {
        stored(&stack.redis, &ids)
            .await
            .iter()
            .all(|m| m.status == TaskState::Success)
    })
    .await;
    assert!(all_ran, "not every task ran");
    for (i, meta) in stored(&stack.redis, &ids).await.iter().enumerate() {
        assert_eq!(meta.result, json!(i + 1));
        let done = parse_datetime(meta.date_done.as_deref().unwrap()).unwrap();
        assert!(
            done - sent >= chrono::Duration::seconds(10),
            "task {i} ran early"
        );
    }
    assert_eq!(zcard(&stack, keys::PARKED), 0);
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parked_task_a_kombu_worker_restored_is_not_pushed_twice() {
    let stack = Stack::new();
    let worker = stack.worker(with_eta(EtaLimits {
        horizon: Duration::from_secs(2),
        ..EtaLimits::default()
    }));
    let id = stack
        .client
        .send_task(
            "add",
            vec![json!(1), json!(1)],
            Map::new(),
            countdown(Duration::from_secs(6)),
        )
        .await
        .unwrap();
    let parked = eventually(WAIT, POLL, || async { zcard(&stack, keys::PARKED) == 1 }).await;
    assert!(parked);
    // As kombu's restore_by_tag: take the record and the index entry, push the message back.
    let tag = stack.server.cli(&["HKEYS", keys::UNACKED]);
    let record = stack.server.cli(&["HGET", keys::UNACKED, &tag]);
    let record: Vec<Value> = serde_json::from_str(&record).unwrap();
    stack.server.cli(&["HDEL", keys::UNACKED, &tag]);
    stack.server.cli(&["ZREM", keys::UNACKED_INDEX, &tag]);
    let list = keys::queue_list(testkit::queue::QUEUE, shared::worker::BUSINESS_PRIORITY);
    stack.server.cli(&["LPUSH", &list, &record[0].to_string()]);
    let ran = eventually(WAIT, POLL, || async {
        stored(&stack.redis, std::slice::from_ref(&id)).await[0].status == TaskState::Success
    })
    .await;
    assert!(ran);
    // Its first parked entry comes due and is dropped without pushing a second copy (the
    // restored copy was taken and parked anew, under another score).
    let settled = eventually(WAIT, POLL, || async {
        zcard(&stack, keys::PARKED) == 0
            && stack.server.cli(&["HLEN", keys::UNACKED]) == "0"
            && stack.server.cli(&["LLEN", &list]) == "0"
    })
    .await;
    assert!(settled, "something is still parked, held or queued");
    assert_eq!(
        worker
            .stats
            .processed
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the task ran more than once"
    );
    worker.stop().await.unwrap();
}
