//! Waiting for results: subscribe-then-read, thousands of waits on one connection, no missed
//! results across a reconnect, timeouts, and ready/non-ready states.

use std::time::Duration;

use serde_json::json;
use shared::protocol::{ResultMeta, TaskState};
use shared::{Backend, QueueError, ResultWaiter, SendOptions};
use testkit::queue::Stack;
use testkit::{eventually, RedisServer, ServerOptions};

fn backend(stack: &Stack) -> Backend {
    Backend::new(stack.redis.clone(), Duration::from_secs(60))
}

/// Waits until Redis counts `count` subscribers on both the first and the last of the `n`
/// result channels `t0..t{n-1}`: subscription state lives in Redis and announces nothing.
async fn subscribers_on_ends(stack: &Stack, n: usize, count: &str, limit: Duration) -> bool {
    let last = format!("celery-task-meta-t{}", n - 1);
    eventually(limit, Duration::from_millis(20), || async {
        stack
            .server
            .cli(&["PUBSUB", "NUMSUB", "celery-task-meta-t0", &last])
            .lines()
            .filter(|l| *l == count)
            .count()
            == 2
    })
    .await
}

#[tokio::test]
async fn a_result_stored_before_the_wait_is_found() {
    let stack = Stack::new();
    let b = backend(&stack);
    b.store(&ResultMeta::success("early", json!(1)))
        .await
        .unwrap();
    let got = stack
        .client
        .result("early")
        .wait(Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(got.result, json!(1));
}

/// `apply` subscribes while it sends, so a fast worker's result may be published before the
/// subscription is confirmed: the wait must still find it (stored before it was published).
/// Stored here before `apply` is even called, the result is published to nobody.
#[tokio::test]
async fn apply_finds_a_result_published_before_its_subscription() {
    let stack = Stack::new();
    backend(&stack)
        .store(&ResultMeta::success("rapida", json!("ya")))
        .await
        .unwrap();
    let options = SendOptions {
        task_id: Some("rapida".into()),
        ..SendOptions::default()
    };
    let r = stack
        .client
        .apply("obtener_estado", vec![], Default::default(), options)
        .await
        .unwrap();
    let got = r.wait(Duration::from_secs(2)).await.unwrap();
    assert_eq!(got.result, json!("ya"));
}

#[tokio::test]
async fn a_result_published_after_subscribing_is_delivered() {
    let stack = Stack::new();
    let b = backend(&stack);
    let sub = stack.client.waiter().subscribe("later").await.unwrap();
    let waiting = tokio::spawn(sub.wait(Duration::from_secs(5)));
    // Not ready states do not end the wait.
    let mut started = ResultMeta::pending("later");
    started.status = TaskState::Started;
    b.store(&started).await.unwrap();
    b.store(&ResultMeta::success("later", json!("hecho")))
        .await
        .unwrap();
    let got = waiting.await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.result),
        (TaskState::Success, json!("hecho"))
    );
}

#[tokio::test]
async fn waiting_times_out_with_a_typed_error() {
    let stack = Stack::new();
    match stack
        .client
        .result("never")
        .wait(Duration::from_millis(100))
        .await
    {
        Err(QueueError::Timeout { task_id, .. }) => assert_eq!(task_id, "never"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        stack.client.result("never").state().await.unwrap().status,
        TaskState::Pending
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_waits_share_one_connection() {
    let stack = Stack::new();
    let waiter = ResultWaiter::start(backend(&stack));
    const N: usize = 2000;
    let mut waits = Vec::with_capacity(N);
    for i in 0..N {
        let w = waiter.clone();
        waits.push(tokio::spawn(async move {
            let id = format!("t{i}");
            w.subscribe(&id)
                .await
                .unwrap()
                .wait(Duration::from_secs(20))
                .await
        }));
    }
    let subscribed = subscribers_on_ends(&stack, N, "1", Duration::from_secs(20)).await;
    assert!(subscribed);
    let pubsub_clients = stack
        .server
        .cli(&["CLIENT", "LIST", "TYPE", "pubsub"])
        .lines()
        .count();
    // Ours plus the Stack's own client waiter (one each).
    assert!(
        pubsub_clients <= 2,
        "{N} waits must not open {pubsub_clients} pub/sub connections"
    );
    let b = backend(&stack);
    for i in 0..N {
        b.store(&ResultMeta::success(&format!("t{i}"), json!(i)))
            .await
            .unwrap();
    }
    for (i, w) in waits.into_iter().enumerate() {
        assert_eq!(w.await.unwrap().unwrap().result, json!(i));
    }
    // Once nobody waits, the channels are given up.
    let released = eventually(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async { waiter.subscriptions() == 0 },
    )
    .await;
    assert!(released);
    // The UNSUBSCRIBE goes out after the entries leave the map: await Redis's view of it.
    let unsubscribed = subscribers_on_ends(&stack, N, "0", Duration::from_secs(5)).await;
    assert!(
        unsubscribed,
        "Redis still counts subscribers on released channels"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn results_published_while_reconnecting_are_not_missed() {
    let server = RedisServer::start_with(ServerOptions {
        appendonly: true,
        ..Default::default()
    });
    let mut stack = Stack::on(server);
    let sub = stack.client.waiter().subscribe("across").await.unwrap();
    let waiting = tokio::spawn(sub.wait(Duration::from_secs(20)));
    stack.server.restart();
    // Stored (and published) by someone else before our waiter is back.
    stack.server.cli(&[
        "SET",
        "celery-task-meta-across",
        r#"{"status": "SUCCESS", "result": 5, "traceback": null, "children": [], "date_done": null, "task_id": "across"}"#,
    ]);
    let got = waiting.await.unwrap().unwrap();
    assert_eq!(got.result, json!(5));
    // And the waiter works normally afterwards.
    let b = backend(&stack);
    let sub = stack.client.waiter().subscribe("after").await.unwrap();
    b.store(&ResultMeta::success("after", json!(6)))
        .await
        .unwrap();
    assert_eq!(
        sub.wait(Duration::from_secs(5)).await.unwrap().result,
        json!(6)
    );
}
