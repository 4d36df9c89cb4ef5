//! The broker against a real Redis: what publish writes, the atomic fetch and its records,
//! acknowledgement, requeue, quarantine at fetch time, leases and recovery.

use std::time::Duration;

use redis::AsyncCommands;
use serde_json::{json, Value};
use shared::broker::{Completion, FetchLimits};
use shared::protocol::{ResultMeta, TaskMessage};
use shared::{keys, Broker, SendOptions};
use testkit::queue::{Stack, QUEUE};

fn limits(n: usize) -> FetchLimits {
    FetchLimits {
        max_messages: n,
        max_bytes: 1024 * 1024,
        lease: Duration::from_secs(30),
    }
}

fn all_lists() -> Vec<String> {
    keys::queue_lists(QUEUE)
}

/// Whether recovery found one dead consumer within 5 s (its lease must run out first).
async fn one_dead_consumer_recovered(broker: &Broker) -> bool {
    testkit::eventually(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async { broker.recover_dead().await.unwrap().dead_consumers == 1 },
    )
    .await
}

async fn send(stack: &Stack, name: &str, args: Vec<Value>, priority: Option<u8>) -> String {
    let opts = SendOptions {
        priority,
        ..SendOptions::default()
    };
    stack
        .client
        .send_task(name, args, Default::default(), opts)
        .await
        .unwrap()
}

#[tokio::test]
async fn publish_writes_what_kombu_writes() {
    let stack = Stack::new();
    let id = send(&stack, "add", vec![json!(2), json!(2)], None).await;
    let id5 = send(&stack, "add", vec![json!(1), json!(1)], Some(5)).await;

    assert_eq!(stack.server.cli(&["LLEN", QUEUE]), "1");
    assert_eq!(
        stack.server.cli(&["LLEN", &keys::queue_list(QUEUE, 5)]),
        "1"
    );
    let (set, member) = keys::binding(QUEUE);
    assert_eq!(stack.server.cli(&["SISMEMBER", &set, &member]), "1");

    let mut conn = stack.redis.conn().await.unwrap();
    let raw: String = conn.lindex(QUEUE, 0).await.unwrap();
    let msg = TaskMessage::decode(raw.as_bytes()).unwrap();
    assert_eq!((msg.id.as_str(), msg.task.as_str()), (id.as_str(), "add"));
    assert_eq!(msg.args, vec![json!(2), json!(2)]);
    assert_eq!(msg.delivery_info.routing_key, QUEUE);
    assert_eq!(msg.delivery_info.exchange, "");
    // Python's json.dumps spacing, as Celery writes it.
    assert!(raw.starts_with(r#"{"body": ""#), "{raw}");
    assert!(raw.contains(r#""content-type": "application/json""#));
    let raw5: String = conn.lindex(keys::queue_list(QUEUE, 5), 0).await.unwrap();
    assert_eq!(TaskMessage::decode(raw5.as_bytes()).unwrap().id, id5);
}

#[tokio::test]
async fn send_many_sends_in_order() {
    let stack = Stack::new();
    let broker = Broker::new(stack.redis.clone());
    // More than one LPUSH's worth (a thousand each).
    let ids = stack
        .client
        .send_many(
            "noop",
            (0..2500).map(|i| vec![json!(i)]),
            SendOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 2500);
    assert_eq!(stack.server.cli(&["LLEN", QUEUE]), "2500");
    let mut taken = Vec::new();
    while taken.len() < ids.len() {
        let got = broker.fetch("c", &all_lists(), limits(300)).await.unwrap();
        assert!(!got.deliveries.is_empty());
        for d in got.deliveries {
            let m = TaskMessage::decode(d.raw.as_bytes()).unwrap();
            assert_eq!(m.args, vec![json!(taken.len())]);
            taken.push(m.id);
        }
    }
    assert_eq!(taken, ids, "served in the order given");
    let none = stack
        .client
        .send_many("noop", std::iter::empty(), SendOptions::default())
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn fetch_takes_fifo_and_records_atomically() {
    let stack = Stack::new();
    let broker = Broker::new(stack.redis.clone());
    let ids = [
        send(&stack, "noop", vec![json!(1)], None).await,
        send(&stack, "noop", vec![json!(2)], None).await,
        send(&stack, "noop", vec![json!(3)], None).await,
    ];
    let got = broker.fetch("c1", &all_lists(), limits(2)).await.unwrap();
    assert!(got.quarantined.is_empty());
    let taken: Vec<String> = got
        .deliveries
        .iter()
        .map(|d| TaskMessage::decode(d.raw.as_bytes()).unwrap().id)
        .collect();
    assert_eq!(taken, ids[..2].to_vec(), "oldest first");
    assert_eq!(stack.server.cli(&["LLEN", QUEUE]), "1");

    let mut conn = stack.redis.conn().await.unwrap();
    for d in &got.deliveries {
        // kombu's record: [message, exchange, routing_key]
        let record: String = conn.hget(keys::UNACKED, &d.tag).await.unwrap();
        let record: Value = serde_json::from_str(&record).unwrap();
        assert_eq!(record[1], "");
        assert_eq!(record[2], QUEUE);
        assert_eq!(record[0], serde_json::from_str::<Value>(&d.raw).unwrap());
        let score: Option<f64> = conn.zscore(keys::UNACKED_INDEX, &d.tag).await.unwrap();
        let age = chrono::Utc::now().timestamp_micros() as f64 / 1e6 - score.unwrap();
        assert!((0.0..5.0).contains(&age), "scored with the delivery time");
        let list: String = conn.hget(keys::inflight("c1"), &d.tag).await.unwrap();
        assert_eq!(list, QUEUE);
        assert_eq!(d.list, QUEUE);
    }
    let lease: Option<f64> = conn.zscore(keys::CONSUMERS, "c1").await.unwrap();
    assert!(
        lease.is_some(),
        "a consumer that holds messages has a lease"
    );
}

/// The fetch script reads a plainly written tag and delivery_info without decoding the message;
/// whatever the layout, the records must be what a full decode gives.
#[tokio::test]
async fn records_match_the_decoded_message_whatever_its_layout() {
    let stack = Stack::new();
    let broker = Broker::new(stack.redis.clone());
    let id = send(&stack, "noop", vec![json!(1)], None).await;
    let mut conn = stack.redis.conn().await.unwrap();
    let celery: String = conn.rpop(QUEUE, None).await.unwrap();
    assert!(
        celery.contains(r#""delivery_tag": ""#),
        "Celery's layout: {celery}"
    );
    let base: Value = serde_json::from_str(&celery).unwrap();
    let with = |tag: &str, change: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        v["properties"]["delivery_tag"] = json!(tag);
        change(&mut v);
        serde_json::to_string(&v).unwrap()
    };
    let layouts = vec![
        // Celery's own spacing, and compact JSON.
        celery.replace(
            &base["properties"]["delivery_tag"]
                .as_str()
                .unwrap()
                .to_owned(),
            "t-celery",
        ),
        with("t-compact", &|_| {}),
        with("t-other-route", &|v| {
            v["properties"]["delivery_info"] = json!({"exchange": "ex", "routing_key": "rk"})
        }),
        with("t-keys-swapped", &|v| {
            v["properties"]["delivery_info"] = json!({"routing_key": "rk2", "exchange": "ex2"})
        }),
        with(
            "t-extra-field",
            &|v| {
                v["properties"]["delivery_info"] =
                    json!({"exchange": "ex3", "routing_key": "rk3", "redelivered": true})
            },
        ),
        with("t-no-info", &|v| {
            v["properties"]
                .as_object_mut()
                .unwrap()
                .remove("delivery_info");
        }),
        with("t-info-not-strings", &|v| {
            v["properties"]["delivery_info"] = json!({"exchange": 1, "routing_key": null})
        }),
        with("t-decoy", &|v| {
            v["headers"]["delivery_tag"] = json!("decoy");
            v["headers"]["delivery_info"] = json!({"exchange": "decoy", "routing_key": "decoy"});
        }),
        // The keys' names at the end of a text, and quoted inside one.
        with("t-in-text", &|v| {
            v["headers"]["argsrepr"] = json!("about delivery_tag");
            v["headers"]["kwargsrepr"] = json!("about delivery_info");
        }),
        with("t-quoted-in-text", &|v| {
            v["headers"]["argsrepr"] = json!("a \"delivery_tag\": \"x\", \"delivery_info\": {}")
        }),
        with("t-quote\"inside", &|_| {}),
        with("t-ñ-💥", &|_| {}),
    ];
    for raw in &layouts {
        let _: () = conn.lpush(QUEUE, raw).await.unwrap();
    }
    let got = broker
        .fetch("c", &all_lists(), limits(layouts.len()))
        .await
        .unwrap();
    assert!(got.quarantined.is_empty(), "{:?}", got.quarantined);
    assert_eq!(got.deliveries.len(), layouts.len());
    for (d, raw) in got.deliveries.iter().zip(&layouts) {
        assert_eq!(&d.raw, raw);
        let v: Value = serde_json::from_str(raw).unwrap();
        let info = &v["properties"]["delivery_info"];
        let exchange = info["exchange"].as_str().unwrap_or("");
        let routing_key = info["routing_key"].as_str().unwrap_or(QUEUE);
        assert_eq!(d.tag, v["properties"]["delivery_tag"].as_str().unwrap());
        let record: String = conn.hget(keys::UNACKED, &d.tag).await.unwrap();
        let record: Value = serde_json::from_str(&record).unwrap();
        assert_eq!(record, json!([v, exchange, routing_key]), "{raw}");
        assert!(TaskMessage::decode(raw.as_bytes()).unwrap().id == id);
    }
}

/// A tag names one held message: a second message with a tag already held, taken in the same
/// fetch or later, goes to quarantine instead of sharing (and losing) the first one's records.
#[tokio::test]
async fn a_message_whose_tag_is_already_held_is_quarantined() {
    let stack = Stack::new();
    let broker = Broker::new(stack.redis.clone());
    let mut conn = stack.redis.conn().await.unwrap();
    let mut with_tag = Vec::new();
    for i in 0..4 {
        send(&stack, "noop", vec![json!(i)], None).await;
        let raw: String = conn.rpop(QUEUE, None).await.unwrap();
        let mut v: Value = serde_json::from_str(&raw).unwrap();
        v["properties"]["delivery_tag"] = json!("dup");
        with_tag.push(serde_json::to_string(&v).unwrap());
    }
    let fetch = || async { broker.fetch("c", &all_lists(), limits(10)).await.unwrap() };

    // In one fetch: the first is taken, the second quarantined.
    let _: () = conn.lpush(QUEUE, &with_tag[..2]).await.unwrap();
    let got = fetch().await;
    assert_eq!(got.deliveries.len(), 1);
    assert_eq!(got.deliveries[0].raw, with_tag[0]);
    assert_eq!(got.quarantined.len(), 1);
    assert!(
        got.quarantined[0].contains("already held"),
        "{:?}",
        got.quarantined
    );
    // In a later fetch while the first is held: quarantined too.
    let _: () = conn.lpush(QUEUE, &with_tag[2]).await.unwrap();
    let got = fetch().await;
    assert!(got.deliveries.is_empty());
    assert_eq!(got.quarantined.len(), 1);
    let records = broker.quarantined(10).await.unwrap();
    let mut kept: Vec<&str> = records.iter().map(|r| r.message.as_str()).collect();
    kept.sort();
    let mut expected = vec![with_tag[1].as_str(), with_tag[2].as_str()];
    expected.sort();
    assert_eq!(kept, expected, "each kept whole");
    // The first's records are its own.
    let record: String = conn.hget(keys::UNACKED, "dup").await.unwrap();
    assert!(record.contains(&with_tag[0]));

    // Once it is acknowledged, the tag can be used again.
    let done = Completion {
        tag: Some("dup".into()),
        result: None,
    };
    broker
        .complete("c", &[done], Duration::from_secs(60))
        .await
        .unwrap();
    let _: () = conn.lpush(QUEUE, &with_tag[3]).await.unwrap();
    let got = fetch().await;
    assert_eq!(got.deliveries.len(), 1);
    assert_eq!(got.deliveries[0].raw, with_tag[3]);
}

#[tokio::test]
async fn priority_zero_is_served_first() {
    let stack = Stack::new();
    let broker = Broker::new(stack.redis.clone());
    let low = send(&stack, "noop", vec![], Some(9)).await;
    let mid = send(&stack, "noop", vec![], Some(4)).await;
    let high = send(&stack, "noop", vec![], None).await;
    let got = broker.fetch("c", &all_lists(), limits(10)).await.unwrap();
    let order: Vec<String> = got
        .deliveries
        .iter()
        .map(|d| TaskMessage::decode(d.raw.as_bytes()).unwrap().id)
        .collect();
    assert_eq!(order, vec![high, mid, low]);
}

#[tokio::test]
async fn next_in_line_is_served_before_what_waits_on_its_list() {
    let stack = Stack::new();
    let broker = Broker::new(stack.redis.clone());
    // Celery's default priority: LPUSH onto the plain list, as a Python client sends.
    let first = send(&stack, "noop", vec![], None).await;
    assert_eq!(stack.server.cli(&["LLEN", QUEUE]), "1");
    let ping = stack
        .client
        .send_task(
            "obtener_estado",
            vec![],
            Default::default(),
            SendOptions {
                next_in_line: true,
                ..SendOptions::default()
            },
        )
        .await
        .unwrap();
    let later = send(&stack, "noop", vec![], None).await;
    // Where kombu's BRPOP looks first: the right end of the plain list.
    let tail = TaskMessage::decode(stack.server.cli(&["LINDEX", QUEUE, "-1"]).as_bytes()).unwrap();
    assert_eq!(tail.id, ping);
    let got = broker.fetch("c", &all_lists(), limits(10)).await.unwrap();
    let order: Vec<String> = got
        .deliveries
        .iter()
        .map(|d| TaskMessage::decode(d.raw.as_bytes()).unwrap().id)
        .collect();
    assert_eq!(order, vec![ping, first, later]);
}

/// The reserved health slots' fetch: a health task at the consuming end of a list is taken and
/// recorded as any delivery; anything else there is left where it is.
#[tokio::test]
async fn a_fetch_for_named_tasks_takes_only_those_next_in_line() {
    let stack = Stack::new();
    let broker = Broker::new(stack.redis.clone());
    let health = vec!["obtener_estado".to_owned()];
    // At the end of its list, and a decoy: its id is the health task's name.
    let business = stack
        .client
        .send_task(
            "noop",
            vec![],
            Default::default(),
            SendOptions {
                priority: Some(6),
                task_id: Some("obtener_estado".into()),
                ..SendOptions::default()
            },
        )
        .await
        .unwrap();
    let default = send(&stack, "sleep", vec![json!(1)], None).await;
    // Behind the default-priority task, so not next in line: not taken.
    let behind = send(&stack, "obtener_estado", vec![], None).await;
    let got = broker
        .fetch_tasks("c", &all_lists(), limits(10), &health)
        .await
        .unwrap();
    assert!(got.deliveries.is_empty() && got.quarantined.is_empty());
    assert_eq!(stack.server.cli(&["LLEN", QUEUE]), "2");
    assert_eq!(stack.server.cli(&["HLEN", keys::UNACKED]), "0");

    let next = |stack: &Stack| {
        let client = stack.client.clone();
        async move {
            client
                .send_task(
                    "obtener_estado",
                    vec![],
                    Default::default(),
                    SendOptions {
                        next_in_line: true,
                        ..SendOptions::default()
                    },
                )
                .await
                .unwrap()
        }
    };
    let ping1 = next(&stack).await;
    let ping2 = next(&stack).await;
    let got = broker
        .fetch_tasks("c", &all_lists(), limits(10), &health)
        .await
        .unwrap();
    let ids: Vec<String> = got
        .deliveries
        .iter()
        .map(|d| TaskMessage::decode(d.raw.as_bytes()).unwrap().id)
        .collect();
    // The later one is nearer the end; both taken, the default-priority task stays.
    assert_eq!(ids, vec![ping2, ping1]);
    // Recorded as fetch records any delivery: unacked, unacked_index, inflight, lease.
    for d in &got.deliveries {
        let record: Value =
            serde_json::from_str(&stack.server.cli(&["HGET", keys::UNACKED, &d.tag])).unwrap();
        assert_eq!(record[0], serde_json::from_str::<Value>(&d.raw).unwrap());
        assert_eq!(record[2], json!(QUEUE));
        assert_ne!(
            stack.server.cli(&["ZSCORE", keys::UNACKED_INDEX, &d.tag]),
            ""
        );
        assert_eq!(
            stack.server.cli(&["HGET", &keys::inflight("c"), &d.tag]),
            QUEUE
        );
    }
    assert_ne!(stack.server.cli(&["ZSCORE", keys::CONSUMERS, "c"]), "");
    assert_eq!(stack.server.cli(&["LLEN", QUEUE]), "2");

    // The plain fetch still serves everything, in kombu's order.
    let got = broker.fetch("c", &all_lists(), limits(10)).await.unwrap();
    let ids: Vec<String> = got
        .deliveries
        .iter()
        .map(|d| TaskMessage::decode(d.raw.as_bytes()).unwrap().id)
        .collect();
    assert_eq!(ids, vec![default, behind, business]);
}

/// What the heartbeat does every quarter of the visibility timeout: the held messages' scores
/// in unacked_index become now (kombu restores entries older than its visibility timeout), and
/// nothing acknowledged comes back.
#[tokio::test]
async fn lease_renewal_refreshes_the_scores_of_held_messages() {
    let stack = Stack::new();
    let broker = Broker::new(stack.redis.clone());
    send(&stack, "noop", vec![], None).await;
    send(&stack, "noop", vec![], None).await;
    let held = broker.fetch("c", &all_lists(), limits(10)).await.unwrap();
    // Another holder's entry, and one as old as kombu would restore.
    stack
        .server
        .cli(&["ZADD", keys::UNACKED_INDEX, "5", "someone-else"]);
    for d in &held.deliveries {
        stack
            .server
            .cli(&["ZADD", keys::UNACKED_INDEX, "5", &d.tag]);
    }
    broker
        .renew_lease("c", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        stack
            .server
            .cli(&["ZSCORE", keys::UNACKED_INDEX, &held.deliveries[0].tag]),
        "5",
        "a plain renewal leaves the scores"
    );
    broker
        .renew_lease_and_refresh("c", Duration::from_secs(30))
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    for d in &held.deliveries {
        let score: i64 = stack
            .server
            .cli(&["ZSCORE", keys::UNACKED_INDEX, &d.tag])
            .parse()
            .unwrap();
        assert!(
            (now - 2..=now).contains(&score),
            "{score} is not now ({now})"
        );
    }
    assert_eq!(
        stack
            .server
            .cli(&["ZSCORE", keys::UNACKED_INDEX, "someone-else"]),
        "5",
        "only this consumer's messages"
    );
    // Acknowledged messages are not brought back into the index.
    let acks: Vec<Completion> = held
        .deliveries
        .iter()
        .map(|d| Completion {
            tag: Some(d.tag.clone()),
            result: None,
        })
        .collect();
    broker
        .complete("c", &acks, Duration::from_secs(100))
        .await
        .unwrap();
    broker
        .renew_lease_and_refresh("c", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(stack.server.cli(&["ZCARD", keys::UNACKED_INDEX]), "1");
}

#[tokio::test]
async fn complete_acknowledges_stores_and_never_overwrites_success() {
    let stack = Stack::new();
    let broker = Broker::new(stack.redis.clone());
    let id = send(&stack, "noop", vec![], None).await;
    let d = broker
        .fetch("c", &all_lists(), limits(1))
        .await
        .unwrap()
        .deliveries
        .remove(0);

    let ok = ResultMeta::success(&id, json!(7));
    let stored = broker
        .complete(
            "c",
            &[Completion {
                tag: Some(d.tag.clone()),
                result: Some((id.clone(), ok.to_json())),
            }],
            Duration::from_secs(100),
        )
        .await
        .unwrap();
    assert_eq!(stored, 1);
    assert_eq!(stack.server.cli(&["HLEN", keys::UNACKED]), "0");
    assert_eq!(stack.server.cli(&["ZCARD", keys::UNACKED_INDEX]), "0");
    assert_eq!(stack.server.cli(&["HLEN", &keys::inflight("c")]), "0");
    let ttl: i64 = stack
        .server
        .cli(&["TTL", &keys::result_key(&id)])
        .parse()
        .unwrap();
    assert!(
        (1..=100).contains(&ttl),
        "SETEX with the configured expiry, got {ttl}"
    );
    assert_eq!(stack.client.backend().get(&id).await.unwrap(), ok);

    // A later FAILURE for the same id (a duplicate run) does not replace the SUCCESS.
    let fail = ResultMeta::failure(
        &id,
        &shared::protocol::ExceptionInfo::new("ValueError", "builtins", "x"),
        None,
    );
    let stored = broker
        .complete(
            "c",
            &[Completion {
                tag: None,
                result: Some((id.clone(), fail.to_json())),
            }],
            Duration::from_secs(100),
        )
        .await
        .unwrap();
    assert_eq!(stored, 0);
    assert_eq!(
        stack.client.backend().get(&id).await.unwrap().result,
        json!(7)
    );
}

#[tokio::test]
async fn only_the_holder_can_acknowledge() {
    let stack = Stack::new();
    let broker = Broker::new(stack.redis.clone());
    send(&stack, "noop", vec![], None).await;
    let d = broker
        .fetch("owner", &all_lists(), limits(1))
        .await
        .unwrap()
        .deliveries
        .remove(0);
    broker
        .complete(
            "intruder",
            &[Completion {
                tag: Some(d.tag.clone()),
                result: None,
            }],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(stack.server.cli(&["HEXISTS", keys::UNACKED, &d.tag]), "1");
    assert_eq!(
        stack
            .server
            .cli(&["HEXISTS", &keys::inflight("owner"), &d.tag]),
        "1"
    );
}

#[tokio::test]
async fn requeue_front_and_back() {
    let stack = Stack::new();
    let broker = Broker::new(stack.redis.clone());
    let first = send(&stack, "noop", vec![], None).await;
    let second = send(&stack, "noop", vec![], None).await;
    let third = send(&stack, "noop", vec![], None).await;
    let mut got = broker
        .fetch("c", &all_lists(), limits(2))
        .await
        .unwrap()
        .deliveries;
    let (d2, d1) = (got.pop().unwrap(), got.pop().unwrap());
    assert!(
        broker.requeue("c", &d1, true).await.unwrap(),
        "front: served next"
    );
    assert!(
        broker.requeue("c", &d2, false).await.unwrap(),
        "back: served last"
    );
    assert!(
        !broker.requeue("c", &d2, false).await.unwrap(),
        "a message is requeued once"
    );
    assert_eq!(stack.server.cli(&["HLEN", keys::UNACKED]), "0");
    let order: Vec<String> = broker
        .fetch("c", &all_lists(), limits(10))
        .await
        .unwrap()
        .deliveries
        .iter()
        .map(|d| TaskMessage::decode(d.raw.as_bytes()).unwrap().id)
        .collect();
    assert_eq!(order, vec![first, third, second]);
}

#[tokio::test]
async fn malformed_messages_are_quarantined_at_fetch_with_the_reason() {
    let stack = Stack::new();
    let broker = Broker::new(stack.redis.clone());
    let oversized = format!(
        r#"{{"body": "{}", "properties": {{"delivery_tag": "big"}}}}"#,
        "A".repeat(2048)
    );
    let bad = [
        "this is not json".to_owned(),
        "[1, 2, 3]".to_owned(),
        r#"{"body": "W10=", "headers": {"task": "noop", "id": "x"}, "properties": {}}"#.to_owned(),
        oversized.clone(),
    ];
    let mut conn = stack.redis.conn().await.unwrap();
    for b in &bad {
        let _: () = conn.lpush(QUEUE, b).await.unwrap();
    }
    let good = send(&stack, "noop", vec![], None).await;
    let small = FetchLimits {
        max_bytes: 1024,
        ..limits(10)
    };
    let got = broker.fetch("c", &all_lists(), small).await.unwrap();
    assert_eq!(
        got.deliveries.len(),
        1,
        "the good message still comes through"
    );
    assert_eq!(
        TaskMessage::decode(got.deliveries[0].raw.as_bytes())
            .unwrap()
            .id,
        good
    );
    assert_eq!(got.quarantined.len(), 4, "{:?}", got.quarantined);

    let records = broker.quarantined(10).await.unwrap();
    assert_eq!(records.len(), 4);
    let reason_of = |raw: &str| {
        records
            .iter()
            .find(|r| r.message == raw)
            .map(|r| r.reason.clone())
            .unwrap()
    };
    assert!(
        reason_of(&bad[0]).contains("not JSON"),
        "{}",
        reason_of(&bad[0])
    );
    assert!(reason_of(&bad[2]).contains("delivery_tag"));
    assert!(reason_of(&oversized).contains("over the limit"));
    assert!(records.iter().all(|r| r.list == QUEUE && r.consumer == "c"));
    assert_eq!(stack.server.cli(&["LLEN", QUEUE]), "0");
}

/// A message with a plainly written tag is taken unchecked; if it is not UTF-8 the delivery
/// says so (and carries the text with U+FFFD), and a dead holder's copy goes to quarantine, not
/// back to the queue, and not lost.
#[tokio::test]
async fn a_message_that_is_not_utf8_is_delivered_flagged_and_recovered_into_quarantine() {
    let stack = Stack::new();
    let broker = Broker::new(stack.redis.clone());
    send(&stack, "noop", vec![json!("x")], None).await;
    let mut conn = stack.redis.conn().await.unwrap();
    let good: Vec<u8> = conn.rpop(QUEUE, None).await.unwrap();
    // Invalid bytes in a header's text; the tag stays ASCII.
    let text = String::from_utf8(good).unwrap();
    let bad = text.replacen(r#""lang": "py""#, "\"lang\": \"p\u{1}\"", 1);
    let mut bad = bad.into_bytes();
    let pos = bad.iter().position(|b| *b == 1).unwrap();
    bad.splice(pos..pos + 1, [0xff, 0xfe]);
    let _: () = conn.lpush(QUEUE, &bad).await.unwrap();

    let short = FetchLimits {
        lease: Duration::from_millis(300),
        ..limits(10)
    };
    let got = broker.fetch("doomed", &all_lists(), short).await.unwrap();
    assert!(got.quarantined.is_empty(), "{:?}", got.quarantined);
    let [d] = got.deliveries.as_slice() else {
        panic!("{:?}", got.deliveries)
    };
    assert!(d.not_utf8);
    assert_eq!(d.raw, String::from_utf8_lossy(&bad));
    assert!(d.raw.contains("\"lang\": \"p\u{fffd}\u{fffd}\""));

    broker
        .renew_lease("alive", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(one_dead_consumer_recovered(&broker).await);
    assert_eq!(stack.server.cli(&["LLEN", QUEUE]), "0", "not requeued");
    assert_eq!(stack.server.cli(&["HLEN", keys::UNACKED]), "0");
    assert_eq!(stack.server.cli(&["ZCARD", keys::UNACKED_INDEX]), "0");
    let records = broker.quarantined(10).await.unwrap();
    let [r] = records.as_slice() else {
        panic!("{records:?}")
    };
    assert_eq!(r.reason, shared::broker::NOT_UTF8);
    assert!(r.message.contains(&d.raw), "the record holds the message");
}

/// A dead consumer's record that is text but not kombu's `[message, exchange, routing_key]`
/// (overwritten by hand, say) cannot be requeued: recovery quarantines it with the reason.
#[tokio::test]
async fn a_held_record_that_is_not_a_kombu_record_is_recovered_into_quarantine() {
    let stack = Stack::new();
    let broker = Broker::new(stack.redis.clone());
    send(&stack, "noop", vec![], None).await;
    let short = FetchLimits {
        lease: Duration::from_millis(300),
        ..limits(10)
    };
    let got = broker.fetch("doomed", &all_lists(), short).await.unwrap();
    let [d] = got.deliveries.as_slice() else {
        panic!("{:?}", got.deliveries)
    };
    stack
        .server
        .cli(&["HSET", keys::UNACKED, &d.tag, "not a record"]);

    broker
        .renew_lease("alive", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(one_dead_consumer_recovered(&broker).await);
    assert_eq!(stack.server.cli(&["LLEN", QUEUE]), "0", "not requeued");
    assert_eq!(stack.server.cli(&["HLEN", keys::UNACKED]), "0");
    let records = broker.quarantined(10).await.unwrap();
    let [r] = records.as_slice() else {
        panic!("{records:?}")
    };
    assert_eq!(
        r.reason,
        "unacked record is not [message, exchange, routing_key]"
    );
    assert_eq!(r.message, "not a record");
}

#[tokio::test]
async fn dead_consumers_messages_return_marked_redelivered() {
    let stack = Stack::new();
    let broker = Broker::new(stack.redis.clone());
    let ids = [
        send(&stack, "noop", vec![], None).await,
        send(&stack, "noop", vec![], Some(6)).await,
    ];
    let short = FetchLimits {
        lease: Duration::from_millis(300),
        ..limits(10)
    };
    let held = broker
        .fetch("doomed", &all_lists(), short)
        .await
        .unwrap()
        .deliveries;
    assert_eq!(held.len(), 2);
    broker
        .renew_lease("alive", Duration::from_secs(60))
        .await
        .unwrap();

    // Nothing is recovered while the lease runs.
    assert_eq!(broker.recover_dead().await.unwrap().requeued, 0);
    let expired = testkit::eventually(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async { broker.recover_dead().await.unwrap().requeued == 2 },
    )
    .await;
    assert!(expired, "messages of an expired lease are requeued");
    assert_eq!(stack.server.cli(&["HLEN", keys::UNACKED]), "0");
    assert_eq!(
        stack.server.cli(&["EXISTS", &keys::inflight("doomed")]),
        "0"
    );
    assert_eq!(stack.server.cli(&["ZSCORE", keys::CONSUMERS, "doomed"]), "");
    assert_ne!(
        stack.server.cli(&["ZSCORE", keys::CONSUMERS, "alive"]),
        "",
        "the live consumer stays"
    );

    // Each went back to the list it came from, marked as kombu marks restored messages.
    let again = broker
        .fetch("heir", &all_lists(), limits(10))
        .await
        .unwrap()
        .deliveries;
    let back: Vec<(String, String, bool)> = again
        .iter()
        .map(|d| {
            let m = TaskMessage::decode(d.raw.as_bytes()).unwrap();
            let info: Value = serde_json::from_str(&d.raw).unwrap();
            assert_eq!(info["properties"]["delivery_info"]["redelivered"], true);
            (m.id, d.list.clone(), m.redelivered)
        })
        .collect();
    assert_eq!(
        back,
        vec![
            (ids[0].clone(), QUEUE.to_owned(), true),
            (ids[1].clone(), keys::queue_list(QUEUE, 6), true)
        ]
    );
}

#[tokio::test]
async fn recovery_leaves_alone_what_kombu_already_restored() {
    let stack = Stack::new();
    let broker = Broker::new(stack.redis.clone());
    send(&stack, "noop", vec![], None).await;
    let short = FetchLimits {
        lease: Duration::from_millis(200),
        ..limits(1)
    };
    let d = broker
        .fetch("doomed", &all_lists(), short)
        .await
        .unwrap()
        .deliveries
        .remove(0);
    // A Python worker's restore_visible removes kombu's records and pushes the message back.
    stack.server.cli(&["HDEL", keys::UNACKED, &d.tag]);
    stack.server.cli(&["RPUSH", QUEUE, &d.raw]);
    assert!(one_dead_consumer_recovered(&broker).await);
    assert_eq!(stack.server.cli(&["LLEN", QUEUE]), "1", "no second copy");
}

#[tokio::test]
async fn waiting_takes_nothing() {
    let stack = Stack::new();
    let mut conn = stack.redis.dedicated(None).await.unwrap();
    let empty = shared::broker::wait_for_message(&mut conn, QUEUE, Duration::from_millis(100))
        .await
        .unwrap();
    assert!(!empty);
    let id = send(&stack, "noop", vec![], None).await;
    send(&stack, "noop", vec![], None).await;
    assert!(
        shared::broker::wait_for_message(&mut conn, QUEUE, Duration::from_secs(1))
            .await
            .unwrap()
    );
    assert_eq!(stack.server.cli(&["LLEN", QUEUE]), "2");
    let broker = Broker::new(stack.redis.clone());
    let first = broker
        .fetch("c", &all_lists(), limits(1))
        .await
        .unwrap()
        .deliveries
        .remove(0);
    assert_eq!(
        TaskMessage::decode(first.raw.as_bytes()).unwrap().id,
        id,
        "order unchanged by waiting"
    );

    // A waiter blocked on an empty list wakes when a message arrives.
    let stack_redis = stack.redis.clone();
    let waiter = tokio::spawn(async move {
        let mut conn = stack_redis.dedicated(None).await.unwrap();
        shared::broker::wait_for_message(&mut conn, "otra", Duration::from_secs(10))
            .await
            .unwrap()
    });
    stack
        .client
        .send_task(
            "noop",
            vec![],
            Default::default(),
            SendOptions::queue("otra"),
        )
        .await
        .unwrap();
    assert!(tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap());
}

/// Redis does not roll a script back when one of its commands fails: a key of the wrong type
/// met half-way would leave a message popped and recorded nowhere. Every script checks its
/// keys' types first, so such a call fails having written nothing.
#[tokio::test]
async fn a_wrongly_typed_key_fails_a_script_before_it_writes() {
    let stack = Stack::new();
    let broker = Broker::new(stack.redis.clone());
    let id = send(&stack, "add", vec![json!(1), json!(2)], None).await;
    let queued = |stack: &Stack| {
        all_lists()
            .iter()
            .map(|l| stack.server.cli(&["LLEN", l]).parse::<usize>().unwrap())
            .sum::<usize>()
    };

    // Fetch: each key it writes, in turn, of the wrong type.
    for key in [
        keys::UNACKED,
        keys::UNACKED_INDEX,
        keys::QUARANTINE,
        keys::CONSUMERS,
    ] {
        stack.server.cli(&["SET", key, "oops"]);
        let err = broker
            .fetch("c1", &all_lists(), limits(10))
            .await
            .expect_err(key);
        assert!(err.to_string().contains("WRONGTYPE"), "{key}: {err}");
        assert_eq!(queued(&stack), 1, "{key}: the message is still queued");
        stack.server.cli(&["DEL", key]);
    }
    stack.server.cli(&["SET", &keys::inflight("c1"), "oops"]);
    assert!(broker.fetch("c1", &all_lists(), limits(10)).await.is_err());
    assert_eq!(queued(&stack), 1);
    stack.server.cli(&["DEL", &keys::inflight("c1")]);

    // Held, then acknowledge, requeue and quarantine against wrongly typed records: each
    // fails, and the message stays held (recoverable) as it was.
    let mut fetched = broker.fetch("c1", &all_lists(), limits(10)).await.unwrap();
    let delivery = fetched.deliveries.remove(0);
    let held = |stack: &Stack| {
        (
            stack.server.cli(&["HEXISTS", keys::UNACKED, &delivery.tag]),
            stack
                .server
                .cli(&["HEXISTS", &keys::inflight("c1"), &delivery.tag]),
        )
    };
    assert_eq!(held(&stack), ("1".into(), "1".into()));
    stack.server.cli(&["SET", keys::UNACKED_INDEX, "oops"]);
    let done = Completion {
        tag: Some(delivery.tag.clone()),
        result: Some((id.clone(), ResultMeta::success(&id, json!(3)).to_json())),
    };
    assert!(broker
        .complete("c1", std::slice::from_ref(&done), Duration::from_secs(60))
        .await
        .is_err());
    assert!(broker.requeue("c1", &delivery, true).await.is_err());
    stack.server.cli(&["DEL", keys::UNACKED_INDEX]);
    stack.server.cli(&["SET", keys::QUARANTINE, "oops"]);
    assert!(broker.quarantine("c1", &delivery, "test").await.is_err());
    assert_eq!(held(&stack), ("1".into(), "1".into()), "still held");
    assert_eq!(stack.server.cli(&["EXISTS", &keys::result_key(&id)]), "0");
    stack.server.cli(&["DEL", keys::QUARANTINE]);
    // Once the keys are right again, the same calls work.
    assert_eq!(
        broker
            .complete("c1", std::slice::from_ref(&done), Duration::from_secs(60))
            .await
            .unwrap(),
        1
    );
    assert_eq!(held(&stack), ("0".into(), "0".into()));
}
