//! Task events against a real Redis: what a listener subscribed to `task.multi` receives
//! (batches of at most 24, every event, in order, clocks rising), nothing while events are
//! off, the queue flushed at shutdown, and an outage that drops events without blocking.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use redis::Msg;
use serde_json::{json, Value};
use shared::events::tasks::BATCH_LIMIT;
use shared::events::TaskEvents;
use shared::protocol::Envelope;
use shared::shutdown::CancellationToken;
use shared::Redis;
use testkit::{start_redis, RedisServer};

const CHANNEL: &str = "/0.celeryev/task.multi";
const HOST: &str = "rs@events";

/// A subscription to the task events channel, confirmed by Redis before it returns.
async fn subscribe(server: &RedisServer) -> impl Stream<Item = Msg> + Unpin {
    let redis = Redis::from_url(&server.url()).unwrap();
    let mut pubsub = redis.pubsub().await.expect("pub/sub connection");
    pubsub.subscribe(CHANNEL).await.expect("subscribe");
    pubsub.into_on_message()
}

/// The events of the next PUBLISH, after checking its envelope is Celery's.
async fn next_batch(stream: &mut (impl Stream<Item = Msg> + Unpin)) -> Vec<Value> {
    let msg = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a PUBLISH within 10 s")
        .expect("subscription open");
    let envelope = Envelope::parse(msg.get_payload_bytes()).unwrap();
    assert_eq!(
        envelope.headers,
        *json!({"hostname": HOST}).as_object().unwrap()
    );
    let info = envelope.delivery_info().unwrap();
    assert_eq!(
        (&*info.exchange, &*info.routing_key),
        ("celeryev", "task.multi")
    );
    assert_eq!(envelope.properties["delivery_mode"], json!(1));
    match envelope.payload().unwrap() {
        Value::Array(events) => events,
        other => panic!("a task.multi body is a list, not {other}"),
    }
}

#[tokio::test]
async fn events_arrive_in_order_in_batches_of_at_most_24() {
    let server = start_redis(false).await;
    let mut stream = subscribe(&server).await;
    let redis = Redis::from_url(&server.url()).unwrap();
    let clock = Arc::new(AtomicU64::new(0));
    let (events, flusher) = TaskEvents::new(redis, HOST, true, clock);

    // Queued before the flusher runs, so the first PUBLISH finds more than a batch waiting.
    for i in 0..30 {
        events.started(&format!("t-{i}"));
    }
    let stop = CancellationToken::new();
    let flushing = tokio::spawn(flusher.run(stop.clone()));

    let mut got = Vec::new();
    let mut sizes = Vec::new();
    while got.len() < 30 {
        let batch = next_batch(&mut stream).await;
        sizes.push(batch.len());
        got.extend(batch);
    }
    assert_eq!(sizes[0], BATCH_LIMIT, "batch sizes {sizes:?}");
    assert!(
        sizes.iter().all(|n| (1..=BATCH_LIMIT).contains(n)),
        "{sizes:?}"
    );
    let ids: Vec<&str> = got.iter().map(|e| e["uuid"].as_str().unwrap()).collect();
    let sent: Vec<String> = (0..30).map(|i| format!("t-{i}")).collect();
    assert_eq!(ids, sent);
    let clocks: Vec<u64> = got.iter().map(|e| e["clock"].as_u64().unwrap()).collect();
    assert!(clocks.windows(2).all(|w| w[0] < w[1]), "{clocks:?}");
    assert!(got
        .iter()
        .all(|e| e["type"] == "task-started" && e["hostname"] == HOST));

    // Off: nothing is queued, and the clock does not move. The first event after turning
    // them on again is the next PUBLISH, alone, one tick after the last.
    events.set_enabled(false);
    for i in 0..5 {
        events.started(&format!("off-{i}"));
        events.succeeded(&format!("off-{i}"), &json!(i), Duration::from_millis(1));
    }
    events.set_enabled(true);
    events.rejected("on-again", false);
    let batch = next_batch(&mut stream).await;
    assert_eq!(batch.len(), 1, "{batch:?}");
    assert_eq!(batch[0]["uuid"], "on-again");
    assert_eq!(batch[0]["clock"], json!(clocks[29] + 1));
    assert_eq!(events.dropped(), 0);

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), flushing)
        .await
        .expect("the flusher stops when told")
        .unwrap();
}

#[tokio::test]
async fn shutdown_publishes_what_is_queued() {
    let server = start_redis(false).await;
    let mut stream = subscribe(&server).await;
    let redis = Redis::from_url(&server.url()).unwrap();
    let (events, flusher) = TaskEvents::new(redis, HOST, true, Arc::default());
    events.started("a");
    events.succeeded("a", &json!("ok"), Duration::from_millis(5));
    let stop = CancellationToken::new();
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), flusher.run(stop))
        .await
        .expect("the flusher returns once the queue is sent");
    let batch = next_batch(&mut stream).await;
    let types: Vec<&str> = batch.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["task-started", "task-succeeded"]);
    assert_eq!(batch[1]["result"], "'ok'");
    // The flusher gone, emitting still returns at once.
    events.started("late");
    assert_eq!(events.dropped(), 1);
}

#[tokio::test]
async fn an_outage_drops_events_and_publishing_resumes_after_it() {
    let mut server = start_redis(false).await;
    let redis = Redis::from_url(&server.url()).unwrap();
    let (events, flusher) = TaskEvents::new(redis, HOST, true, Arc::default());
    let stop = CancellationToken::new();
    let flushing = tokio::spawn(flusher.run(stop.clone()));

    server.kill();
    events.started("lost");
    let counted = testkit::eventually(Duration::from_secs(10), Duration::from_millis(20), || {
        let n = events.dropped();
        async move { n == 1 }
    })
    .await;
    assert!(counted, "the refused batch is counted as dropped");

    server.restart();
    let mut stream = subscribe(&server).await;
    events.started("after");
    let batch = next_batch(&mut stream).await;
    assert_eq!(batch[0]["uuid"], "after");

    // A stop while Redis is down returns without waiting on every queued event.
    server.kill();
    for i in 0..100 {
        events.started(&format!("stop-{i}"));
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), flushing)
        .await
        .expect("the flusher gives up on a dead Redis at shutdown")
        .unwrap();
    assert_eq!(events.dropped(), 101);
}
