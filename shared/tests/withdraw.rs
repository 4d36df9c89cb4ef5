//! Taking back what a sender gave up on, against a real Redis: a prepared task withdrawn from its
//! queue while it waits (and not once a consumer has it), and a read result forgotten.

use std::time::Duration;

use serde_json::json;
use shared::broker::FetchLimits;
use shared::protocol::ResultMeta;
use shared::{keys, Backend, Broker, SendOptions};
use testkit::queue::{Stack, QUEUE};

/// A task sent next in line, behind and before others, is withdrawn from its list alone, and
/// only once; one a consumer has taken cannot be withdrawn.
#[tokio::test]
async fn a_waiting_task_is_withdrawn_and_a_taken_one_is_not() {
    let stack = Stack::new();
    let client = &stack.client;
    let others = SendOptions::queue(QUEUE);
    client
        .send_task("noop", vec![json!(1)], Default::default(), others.clone())
        .await
        .unwrap();
    let ping = client.prepare(
        "obtener_estado",
        vec![],
        Default::default(),
        SendOptions {
            next_in_line: true,
            expires: Some(Duration::from_secs(300)),
            ..SendOptions::queue(QUEUE)
        },
    );
    let pending = client.apply_prepared(&ping).await.unwrap();
    assert_eq!(pending.id(), ping.id());
    client
        .send_task("noop", vec![json!(2)], Default::default(), others)
        .await
        .unwrap();
    assert_eq!(stack.server.cli(&["LLEN", QUEUE]), "3");

    assert!(client.withdraw(&ping).await.unwrap(), "it was waiting");
    assert_eq!(stack.server.cli(&["LLEN", QUEUE]), "2", "the others stay");
    assert!(!client.withdraw(&ping).await.unwrap(), "only once");

    // Sent at the default end, taken by a consumer: no longer the queue's to give back.
    let taken = client.prepare(
        "noop",
        vec![json!(3)],
        Default::default(),
        SendOptions::default(),
    );
    client.apply_prepared(&taken).await.unwrap();
    let broker = Broker::new(stack.redis.clone());
    let limits = FetchLimits {
        max_messages: 10,
        max_bytes: 1024 * 1024,
        lease: Duration::from_secs(30),
    };
    let got = broker
        .fetch("c", &keys::queue_lists(QUEUE), limits)
        .await
        .unwrap();
    assert_eq!(got.deliveries.len(), 3);
    assert!(!client.withdraw(&taken).await.unwrap(), "a consumer has it");
}

/// A result read and forgotten is gone from Redis; forgetting one that is not there is no error.
#[tokio::test]
async fn a_forgotten_result_is_deleted() {
    let stack = Stack::new();
    let backend = Backend::new(stack.redis.clone(), Duration::from_secs(60));
    backend
        .store(&ResultMeta::success("leido", json!("pong")))
        .await
        .unwrap();
    let key = keys::result_key("leido");
    assert_eq!(stack.server.cli(&["EXISTS", &key]), "1");
    let result = stack.client.result("leido");
    assert_eq!(result.state().await.unwrap().result, json!("pong"));
    result.forget().await.unwrap();
    assert_eq!(stack.server.cli(&["EXISTS", &key]), "0");
    result.forget().await.unwrap();
}
