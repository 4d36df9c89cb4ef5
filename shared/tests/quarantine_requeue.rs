//! Browsing the quarantine and requeueing one entry, against a real Redis: ids are the SHA-1 of
//! the stored entry, reading changes nothing, a requeue puts the message where workers take
//! next and removes exactly its entry, and two requeues of one entry, even at once, requeue it
//! once.

use std::time::Duration;

use redis::AsyncCommands;
use serde_json::json;
use shared::broker::quarantine::Requeue;
use shared::broker::FetchLimits;
use shared::protocol::TaskMessage;
use shared::{keys, Broker, SendOptions};
use testkit::queue::{Stack, QUEUE};

fn limits(max_bytes: usize) -> FetchLimits {
    FetchLimits {
        max_messages: 100,
        max_bytes,
        lease: Duration::from_secs(30),
    }
}

/// Sends `n` tasks too large for a 1 KiB fetch and fetches with that limit, so each goes to
/// quarantine as "over the limit"; returns their ids.
async fn quarantine_oversized(stack: &Stack, broker: &Broker, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = stack
            .client
            .send_task(
                "noop",
                vec![json!(format!("{i}:{}", "x".repeat(2000)))],
                Default::default(),
                SendOptions::default(),
            )
            .await
            .unwrap();
        ids.push(id);
    }
    let got = broker
        .fetch("c", &keys::queue_lists(QUEUE), limits(1024))
        .await
        .unwrap();
    assert!(got.deliveries.is_empty());
    assert_eq!(got.quarantined.len(), n, "{:?}", got.quarantined);
    ids
}

#[tokio::test]
async fn a_requeued_message_is_served_next_and_its_entry_is_gone() {
    let stack = Stack::new();
    let broker = Broker::new(stack.redis.clone());
    let ids = quarantine_oversized(&stack, &broker, 2).await;
    // Something else waiting: the requeued message must come before it.
    let waiting = stack
        .client
        .send_task(
            "noop",
            vec![json!(1)],
            Default::default(),
            SendOptions::default(),
        )
        .await
        .unwrap();

    let page = broker.quarantine_page(10).await.unwrap();
    assert_eq!((page.total, page.dropped, page.items.len()), (2, 0, 2));
    // Reading changed nothing.
    assert_eq!(stack.server.cli(&["LLEN", keys::QUARANTINE]), "2");
    let item = &page.items[0];
    let sha1 = stack
        .server
        .cli(&["EVAL", "return redis.sha1hex(ARGV[1])", "0", &item.raw]);
    assert_eq!(item.id, sha1);
    let entry = item.entry.as_ref().expect("a readable entry");
    let message = TaskMessage::decode(entry.message.as_bytes()).unwrap();
    assert!(ids.contains(&message.id));

    let done = broker.requeue_quarantined(&item.id).await.unwrap();
    assert_eq!(
        done,
        Requeue::Done {
            list: QUEUE.to_owned()
        }
    );
    assert_eq!(stack.server.cli(&["LLEN", keys::QUARANTINE]), "1");
    // At the end workers take from, byte for byte as it was sent.
    let mut conn = stack.redis.conn().await.unwrap();
    let next: String = conn.lindex(QUEUE, -1).await.unwrap();
    assert_eq!(next, entry.message);
    let got = broker
        .fetch("c", &keys::queue_lists(QUEUE), limits(1024 * 1024))
        .await
        .unwrap();
    let order: Vec<String> = got
        .deliveries
        .iter()
        .map(|d| TaskMessage::decode(d.raw.as_bytes()).unwrap().id)
        .collect();
    assert_eq!(order, [message.id.clone(), waiting]);

    assert_eq!(
        broker.requeue_quarantined(&item.id).await.unwrap(),
        Requeue::Unknown
    );
    assert_eq!(
        broker.requeue_quarantined("0000").await.unwrap(),
        Requeue::Unknown
    );
    assert_eq!(broker.quarantine_page(10).await.unwrap().items.len(), 1);
}

#[tokio::test]
async fn requeues_of_one_entry_at_once_requeue_it_once() {
    let stack = Stack::new();
    let broker = Broker::new(stack.redis.clone());
    let n = 20;
    quarantine_oversized(&stack, &broker, n).await;
    let page = broker.quarantine_page(n).await.unwrap();
    let mut tries = Vec::new();
    for item in &page.items {
        for _ in 0..3 {
            let (broker, id) = (broker.clone(), item.id.clone());
            tries.push(tokio::spawn(async move {
                broker.requeue_quarantined(&id).await.unwrap()
            }));
        }
    }
    let mut done = 0;
    for t in tries {
        match t.await.unwrap() {
            Requeue::Done { .. } => done += 1,
            Requeue::Unknown => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(done, n);
    assert_eq!(stack.server.cli(&["LLEN", QUEUE]), n.to_string());
    assert_eq!(stack.server.cli(&["LLEN", keys::QUARANTINE]), "0");
}

#[tokio::test]
async fn an_entry_that_is_not_a_record_is_listed_and_left_alone() {
    let stack = Stack::new();
    let broker = Broker::new(stack.redis.clone());
    let mut conn = stack.redis.conn().await.unwrap();
    let odd = [
        "not a record".to_owned(),
        json!({"reason": "r", "list": "", "consumer": "c", "quarantined_at": "t", "message": "m"})
            .to_string(),
    ];
    for o in &odd {
        let _: () = conn.lpush(keys::QUARANTINE, o).await.unwrap();
    }
    let _: () = conn.set(keys::QUARANTINE_DROPPED, 7).await.unwrap();
    let page = broker.quarantine_page(10).await.unwrap();
    assert_eq!((page.total, page.dropped), (2, 7));
    assert_eq!(page.items[1].raw, odd[0]);
    assert!(page.items[1].entry.is_none());
    for item in &page.items {
        assert_eq!(
            broker.requeue_quarantined(&item.id).await.unwrap(),
            Requeue::Unreadable
        );
    }
    assert_eq!(stack.server.cli(&["LLEN", keys::QUARANTINE]), "2");
    // A quarantine key of the wrong type reads as empty and requeues nothing.
    let _: () = conn.del(keys::QUARANTINE).await.unwrap();
    let _: () = conn.set(keys::QUARANTINE, "x").await.unwrap();
    assert_eq!(broker.quarantine_page(10).await.unwrap().total, 0);
    assert_eq!(
        broker.requeue_quarantined(&page.items[0].id).await.unwrap(),
        Requeue::Unknown
    );
}
