//! Celery's canvas (chain, group, chord, link, link_error) on our worker, against real Python
//! Celery 5.5: the same Python script (`tests/python/canvas.py`) runs every scenario with
//! Python's own API against a Python worker and against ours, and the two outputs must be
//! equal. Also: a chord whose header is split between a Python worker and ours, a chord counted
//! by two of our workers at once, and malformed canvas, which must fail clearly without
//! stalling the worker.
//!
//! Needs a Python with `celery` and `redis`: `$CELERY_PYTHON`, or `.venv/bin/python`.

use std::time::Duration;

use serde_json::{json, Map, Value};
use shared::keys;
use shared::protocol::task::NewTask;
use shared::protocol::{to_python_json, Envelope, ResultMeta, TaskMessage, TaskState};
use testkit::celery::{repository, run_script, PyWorker};
use testkit::queue::{config, Stack, QUEUE};
use testkit::RedisServer;

/// Runs `canvas.py` against `url` (all scenarios when `names` is empty); one JSON value a line.
async fn scenarios(url: String, names: &[&str]) -> Vec<Value> {
    let args = std::iter::once(url)
        .chain(names.iter().map(|s| s.to_string()))
        .collect();
    run_script("canvas.py", args).await
}

async fn python_worker(stack: &Stack, args: &[&str]) -> PyWorker {
    PyWorker::start(
        stack,
        &repository().join("tests/python"),
        "celery_app",
        args,
        &[],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn canvas_on_our_worker_matches_a_python_worker() {
    let celery = {
        let stack = Stack::on(RedisServer::start_tcp());
        let _py = python_worker(&stack, &["-c", "2", "-n", "py@canvas"]).await;
        scenarios(stack.server.url(), &[]).await
    };
    let stack = Stack::on(RedisServer::start_tcp());
    let worker = stack.worker(config());
    let ours = scenarios(stack.server.url(), &[]).await;
    worker.stop().await.unwrap();

    // What Celery gives, so that a scenario broken the same way on both sides cannot pass.
    let by_name = |lines: &[Value], name: &str| {
        lines
            .iter()
            .find(|l| l["scenario"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {lines:?}"))
    };
    for (name, field, value) in [
        ("chain", "value", json!(10)),
        ("group", "value", json!([0, 2, 4, 6])),
        ("chord", "value", json!(20)),
        ("link", "callback", json!(14)),
        ("links", "callbacks", json!([3, 10])),
        ("link_error", "errback_got_the_task_id", json!(true)),
        ("exhausted_errback", "errback_got_the_task_id", json!(true)),
    ] {
        assert_eq!(by_name(&celery, name)[field], value, "Celery's {name}");
    }
    let expired = by_name(&celery, "chord_expired_part");
    assert_eq!(
        expired["body"]["exception"]["exc_type"], "ChordError",
        "{expired}"
    );
    let chord_failure = by_name(&celery, "chord_failure");
    assert_eq!(
        chord_failure["body"]["exception"]["exc_type"], "ChordError",
        "{chord_failure}"
    );
    // Ours, scenario by scenario: values, errors, stored results' keys and children.
    assert_eq!(ours.len(), celery.len());
    for c in &celery {
        let name = c["scenario"].as_str().unwrap();
        let mut c = c.clone();
        if name == "chord_expired_part" {
            // Celery fails the body outside any task's trace there (`mark_as_revoked`), so its
            // record has `children: null`; ours has `[]`, as every other record. The one known
            // difference in these scenarios: AsyncResult.children reads None, not [].
            assert_eq!(c["body"]["children"], Value::Null);
            c["body"]["children"] = json!([]);
        }
        assert_eq!(
            by_name(&ours, name),
            c,
            "scenario {name}: ours, then Celery's"
        );
    }
    assert_eq!(stack.server.cli(&["HLEN", keys::UNACKED]), "0");
    assert_eq!(stack.server.cli(&["LLEN", keys::QUARANTINE]), "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chord_split_between_python_and_rust_runs_its_body_once() {
    let stack = Stack::on(RedisServer::start_tcp());
    // The Python worker serves only `solo_python` (the last -Q wins); ours serves `inventario`.
    let _py = python_worker(&stack, &["-c", "2", "-n", "py@split", "-Q", "solo_python"]).await;
    let worker = stack.worker(config());
    let out = scenarios(stack.server.url(), &["split"]).await;
    assert_eq!(out[0]["values"], json!([450, 450]), "{out:?}");
    // Both bodies ran on ours (the Python worker does not serve their queue), once each:
    // ours ran one header part of each chord and the two bodies, nothing more.
    let stats = worker.stats.clone();
    worker.stop().await.unwrap();
    assert_eq!(
        stats.processed.load(std::sync::atomic::Ordering::Relaxed),
        4,
        "two header parts and two bodies"
    );
    assert_eq!(stack.server.cli(&["LLEN", QUEUE]), "0");
    assert_eq!(stack.server.cli(&["HLEN", keys::UNACKED]), "0");
}

/// A task message of ours with `embed` as its body's third part and, for a chord's header, a
/// group and its index.
fn with_canvas(
    task: &str,
    args: Vec<Value>,
    embed: Value,
    group: Option<(&str, usize)>,
) -> TaskMessage {
    let built = TaskMessage::build(
        task,
        args.clone(),
        Map::new(),
        QUEUE,
        "test",
        "test",
        NewTask::default(),
    );
    let mut headers = built.envelope.headers.clone();
    if let Some((id, index)) = group {
        headers.insert("group".into(), json!(id));
        headers.insert("group_index".into(), json!(index));
    }
    let body = to_python_json(&json!([args, {}, embed]));
    let envelope = Envelope::new(&body, headers, built.envelope.properties.clone());
    TaskMessage::from_envelope(envelope).unwrap()
}

fn chord_embed(body_id: &str) -> Value {
    json!({"callbacks": null, "errbacks": null, "chain": null, "chord": {
        "task": "xsum", "args": [], "kwargs": {}, "options": {"task_id": body_id},
        "subtask_type": null, "immutable": false}})
}

async fn send(stack: &Stack, m: &TaskMessage) {
    stack.client.broker().publish(QUEUE, m).await.unwrap();
}

async fn result(stack: &Stack, id: &str) -> ResultMeta {
    stack
        .client
        .result(id)
        .wait(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("result of {id}: {e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chord_counted_by_two_workers_sends_its_body_once() {
    let stack = Stack::new();
    let a = stack.worker(config());
    let b = stack.worker(config());
    let group = uuid::Uuid::new_v4().to_string();
    let body = uuid::Uuid::new_v4().to_string();
    let parts = 60;
    stack
        .server
        .cli(&["SET", &keys::chord_keys(&group)[2], &parts.to_string()]);
    let messages: Vec<TaskMessage> = (0..parts)
        .map(|i| {
            with_canvas(
                "add",
                vec![json!(i), json!(i)],
                chord_embed(&body),
                Some((&group, i)),
            )
        })
        .collect();
    stack
        .client
        .broker()
        .publish_many(QUEUE, &messages)
        .await
        .unwrap();
    let sum = result(&stack, &body).await;
    assert_eq!(sum.result, json!((0..parts).map(|i| 2 * i).sum::<usize>()));
    // A part delivered again after the chord completed (a redelivery) counts in a new, sizeless
    // set: no second body.
    let again = with_canvas(
        "add",
        vec![json!(1), json!(1)],
        chord_embed(&body),
        Some((&group, 1)),
    );
    send(&stack, &again).await;
    result(&stack, &again.id).await;
    let (sa, sb) = (a.stats.clone(), b.stats.clone());
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    let total = sa.processed.load(std::sync::atomic::Ordering::Relaxed)
        + sb.processed.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        total,
        parts as u64 + 2,
        "every part, the late duplicate and one body"
    );
    assert_eq!(stack.server.cli(&["LLEN", QUEUE]), "0");
    let [j, _, s] = keys::chord_keys(&group);
    assert_eq!(
        stack.server.cli(&["EXISTS", &s]),
        "0",
        "the chord's keys are gone"
    );
    assert_eq!(
        stack.server.cli(&["ZCARD", &j]),
        "1",
        "only the late duplicate"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_canvas_fails_clearly_and_the_worker_goes_on() {
    let stack = Stack::new();
    let worker = stack.worker(config());
    let null = json!(null);
    for (embed, says) in [
        (
            json!({"callbacks": 5, "errbacks": null, "chain": null, "chord": null}),
            "embed.callbacks is a number",
        ),
        (
            json!({"callbacks": null, "errbacks": null, "chain": [{"task": 7}], "chord": null}),
            "embed.chain[0]: no task name",
        ),
        (
            json!({"callbacks": [{"task": "noop", "subtask_type": "group"}], "errbacks": null,
                   "chain": null, "chord": null}),
            "embed.callbacks[0]: a \"group\" signature",
        ),
        (
            json!({"callbacks": [{"task": "noop", "args": {"a": 1}}], "errbacks": null,
                   "chain": null, "chord": null}),
            "args is an object",
        ),
    ] {
        let m = with_canvas("add", vec![json!(1), json!(2)], embed, None);
        send(&stack, &m).await;
        let meta = result(&stack, &m.id).await;
        assert_eq!(meta.status, TaskState::Failure, "{says}");
        let exc = meta.exception().unwrap();
        assert_eq!(exc.exc_type, "InvalidTaskError");
        assert_eq!(exc.exc_module.as_deref(), Some("celery.exceptions"));
        assert!(
            exc.message().contains(says) && exc.message().contains("returned 3"),
            "{says}: {exc}"
        );
        // And the message is in quarantine with the reason, for someone to look at (moved
        // there right after its result is stored).
        let broker = stack.client.broker();
        let moved = testkit::eventually(
            Duration::from_secs(5),
            Duration::from_millis(10),
            || async {
                broker
                    .quarantined(1)
                    .await
                    .unwrap()
                    .first()
                    .is_some_and(|q| q.message.contains(&m.id))
            },
        )
        .await;
        assert!(moved, "{says}: not quarantined");
        let quarantined = broker.quarantined(1).await.unwrap();
        assert!(
            quarantined[0].reason.contains("malformed canvas")
                && quarantined[0].reason.contains(says),
            "{says}: {:?}",
            quarantined[0].reason
        );
        assert!(quarantined[0].message.contains(&m.id));
    }
    // An errback that is not a signature, on a failing task: its own failure is still stored.
    let m = with_canvas(
        "fail",
        vec![json!("mal")],
        json!({"callbacks": null, "errbacks": "x", "chain": null, "chord": null}),
        None,
    );
    send(&stack, &m).await;
    let exc = result(&stack, &m.id).await.exception().unwrap();
    assert_eq!(exc.exc_type, "InvalidTaskError");
    assert!(
        exc.message().contains("embed.errbacks is a string"),
        "{exc}"
    );

    // Chord records that cannot be used: the body's ChordError says why.
    for (size, stale, says) in [
        ("abc", None, "chord size abc"),
        ("2", Some("nonsense"), "Join error: record \"nonsense\""),
    ] {
        let group = uuid::Uuid::new_v4().to_string();
        let body = uuid::Uuid::new_v4().to_string();
        let [j, _, s] = keys::chord_keys(&group);
        stack.server.cli(&["SET", &s, size]);
        if let Some(stale) = stale {
            stack.server.cli(&["ZADD", &j, "0", stale]);
        }
        let part = with_canvas(
            "add",
            vec![json!(1), json!(1)],
            chord_embed(&body),
            Some((&group, 1)),
        );
        send(&stack, &part).await;
        assert_eq!(result(&stack, &part.id).await.result, json!(2));
        let meta = result(&stack, &body).await;
        let exc = meta.exception().unwrap();
        assert_eq!(exc.exc_type, "ChordError", "{says}");
        assert!(exc.message().contains(says), "{says}: {exc}");
    }

    // The lane goes on: a plain task after all that.
    let ok = with_canvas("add", vec![json!(20), json!(22)], null, None);
    send(&stack, &ok).await;
    assert_eq!(result(&stack, &ok.id).await.result, json!(42));
    worker.stop().await.unwrap();
    assert_eq!(stack.server.cli(&["HLEN", keys::UNACKED]), "0");
    // The four malformed signatures and the malformed errback; nothing else.
    assert_eq!(stack.server.cli(&["LLEN", keys::QUARANTINE]), "5");
}
