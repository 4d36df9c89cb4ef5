//! Our worker's task events as Celery's tools see them: the same scenario as the capture of a
//! Python worker started with `-E` (`tests/fixtures/celery-5.5-task-events.json`: a success, a
//! failure, a retry, a revoked countdown task, an unknown task) gives the same events, kind by
//! kind and field by field; and Flower, which switches events on with `enable_events` when it
//! starts, lists our tasks in its `/api/tasks`.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use shared::control::Control;
use shared::protocol::Envelope;
use shared::{SendOptions, WorkerConfig};
use testkit::celery::{python, repository, wait_for_control};
use testkit::net::{free_port, wait_for_status};
use testkit::process::Process;
use testkit::queue::{config, Stack};
use testkit::RedisServer;

const FIXTURE: &str = include_str!("fixtures/celery-5.5-task-events.json");

/// Every task event published on the stack's Redis, in order.
async fn collect_task_events(stack: &Stack) -> Arc<Mutex<Vec<Value>>> {
    let mut pubsub = stack.redis.pubsub().await.unwrap();
    pubsub.psubscribe("/0.celeryev/task.*").await.unwrap();
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let mut stream = pubsub.into_on_message();
    let sink = seen.clone();
    tokio::spawn(async move {
        while let Some(msg) = stream.next().await {
            let envelope = Envelope::parse(msg.get_payload_bytes()).unwrap();
            match envelope.payload().unwrap() {
                Value::Array(events) => sink.lock().unwrap().extend(events),
                one => sink.lock().unwrap().push(one),
            }
        }
    });
    seen
}

/// Whether an event of `kind` for task `id` arrives within 5 s.
async fn seen(events: &Arc<Mutex<Vec<Value>>>, id: &str, kind: &str) -> bool {
    testkit::eventually(
        Duration::from_secs(5),
        Duration::from_millis(10),
        || async {
            events
                .lock()
                .unwrap()
                .iter()
                .any(|e| e["uuid"] == id && e["type"] == kind)
        },
    )
    .await
}

/// The kinds of events each task got, in order, and the fields of each kind.
fn by_task(events: &[Value]) -> (HashMap<String, Vec<String>>, HashMap<String, Vec<String>>) {
    let mut kinds: HashMap<String, Vec<String>> = HashMap::new();
    let mut fields: HashMap<String, Vec<String>> = HashMap::new();
    for e in events {
        let kind = e["type"].as_str().unwrap().to_owned();
        let uuid = e["uuid"].as_str().unwrap().to_owned();
        kinds.entry(uuid).or_default().push(kind.clone());
        let mut keys: Vec<String> = e
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "local_received")
            .cloned()
            .collect();
        keys.sort();
        fields.insert(kind, keys);
    }
    (kinds, fields)
}

/// A worker of ours with task events on, listening for control, and every task event
/// published on the stack's Redis from before it started.
async fn worker_sending_events(
    stack: &Stack,
) -> (
    Arc<Mutex<Vec<Value>>>,
    testkit::queue::RunningWorker,
    String,
) {
    let events = collect_task_events(stack).await;
    let worker = stack.worker(WorkerConfig {
        task_events: true,
        ..config()
    });
    let node = config().hostname;
    wait_for_control(stack, &node).await;
    (events, worker, node)
}

#[tokio::test(flavor = "multi_thread")]
async fn our_task_events_are_a_python_workers() {
    let stack = Stack::on(RedisServer::start_tcp());
    let (events, worker, node) = worker_sending_events(&stack).await;
    let send = |name: &'static str, args: Vec<Value>, options: SendOptions| {
        let client = stack.client.clone();
        async move {
            client
                .apply(name, args, Default::default(), options)
                .await
                .unwrap()
        }
    };
    // The fixture's scenario, in its order.
    let ok = send("noop", vec![json!(7)], Default::default()).await;
    let ok_id = ok.id().to_owned();
    ok.wait(Duration::from_secs(5)).await.unwrap();
    let failed = send("fail", vec![json!("sin stock")], Default::default()).await;
    let failed_id = failed.id().to_owned();
    failed.wait(Duration::from_secs(5)).await.unwrap();
    let retried = send("reintentar", vec![json!(1)], Default::default()).await;
    let retried_id = retried.id().to_owned();
    assert_eq!(retried.get(Duration::from_secs(5)).await.unwrap(), json!(1));
    let later = send(
        "noop",
        vec![json!(30)],
        SendOptions {
            countdown: Some(Duration::from_secs(30)),
            ..Default::default()
        },
    )
    .await;
    let later_id = later.id().to_owned();
    assert!(
        seen(&events, &later_id, "task-received").await,
        "the countdown task was received"
    );
    Control::new(stack.redis.clone())
        .revoke(std::slice::from_ref(&later_id), false)
        .await
        .unwrap();
    later.wait(Duration::from_secs(5)).await.unwrap();
    let unknown = send("no_such_task", vec![], Default::default()).await;
    let unknown_id = unknown.id().to_owned();
    unknown.wait(Duration::from_secs(5)).await.unwrap();
    assert!(seen(&events, &unknown_id, "task-failed").await);
    worker.stop().await.unwrap();

    let ours = events.lock().unwrap().clone();
    let theirs: Vec<Value> = serde_json::from_str::<Vec<Value>>(FIXTURE)
        .unwrap()
        .into_iter()
        .filter(|e| e["type"].as_str().unwrap().starts_with("task-"))
        .collect();
    let (our_kinds, our_fields) = by_task(&ours);
    let (their_kinds, their_fields) = by_task(&theirs);
    // The fixture's tasks, in the same order as ours.
    let mut their_ids: Vec<String> = Vec::new();
    for e in &theirs {
        let id = e["uuid"].as_str().unwrap().to_owned();
        if !their_ids.contains(&id) {
            their_ids.push(id);
        }
    }
    let our_ids = [ok_id, failed_id, retried_id, later_id, unknown_id];
    for (ours, theirs) in our_ids.iter().zip(&their_ids) {
        let (ours, theirs) = (&our_kinds[ours], &their_kinds[theirs]);
        // In order, but for a retry's `task-retried` and its copy's `task-received`, which
        // race in either worker (the copy is sent before the event).
        let sorted = |k: &Vec<String>| {
            let mut k = k.clone();
            k.sort();
            k
        };
        assert_eq!(sorted(ours), sorted(theirs), "ours, then Celery's");
        assert_eq!(
            (ours.first(), ours.last()),
            (theirs.first(), theirs.last()),
            "ours {ours:?}, Celery's {theirs:?}"
        );
    }
    for (kind, fields) in &their_fields {
        assert_eq!(&our_fields[kind], fields, "{kind}");
    }
    // Values where they do not depend on the moment or the machine.
    let first = |kind: &str, id: &str| {
        ours.iter()
            .find(|e| e["type"] == kind && e["uuid"] == id)
            .cloned()
            .unwrap()
    };
    let received = first("task-received", &our_ids[0]);
    assert_eq!(
        (&received["name"], &received["args"], &received["kwargs"]),
        (&json!("noop"), &json!("[7]"), &json!("{}"))
    );
    assert_eq!(received["hostname"], node.as_str());
    assert_eq!(first("task-succeeded", &our_ids[0])["result"], "7");
    assert_eq!(
        first("task-failed", &our_ids[1])["exception"],
        "ValueError('sin stock')"
    );
    let revoked = first("task-revoked", &our_ids[3]);
    assert_eq!(
        (&revoked["terminated"], &revoked["expired"]),
        (&json!(false), &json!(false))
    );
    let clocks: Vec<u64> = ours.iter().map(|e| e["clock"].as_u64().unwrap()).collect();
    assert!(clocks.windows(2).all(|w| w[0] < w[1]), "{clocks:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn flower_lists_our_workers_tasks() {
    let stack = Stack::on(RedisServer::start_tcp());
    // Events off: Flower turns them on (`enable_events`) when it starts.
    let worker = stack.worker(config());
    let node = config().hostname;
    wait_for_control(&stack, &node).await;
    let port = free_port();
    let _flower = Process::spawn(
        "flower",
        Command::new(python())
            .args(["-m", "celery", "-A", "celery_app", "flower"])
            .arg(format!("--port={port}"))
            .arg("--address=127.0.0.1")
            .current_dir(repository().join("tests/python"))
            .env("CELERY_URL", stack.server.url())
            .env("FLOWER_UNAUTHENTICATED_API", "true"),
    );
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        wait_for_status(
            &http,
            &format!("{base}/healthcheck"),
            200,
            Duration::from_secs(30)
        )
        .await,
        "flower started"
    );
    // Until Flower's enable_events has reached our worker, a task leaves no trace there: send
    // tasks until one shows up as SUCCESS, run by our worker.
    let sent: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = testkit::eventually(Duration::from_secs(30), Duration::from_millis(300), || {
        let (stack, http, base, node) = (&stack, &http, &base, &node);
        let sent = sent.clone();
        async move {
            let r = stack
                .client
                .apply(
                    "add",
                    vec![json!(20), json!(22)],
                    Default::default(),
                    Default::default(),
                )
                .await
                .unwrap();
            let id = r.id().to_owned();
            sent.lock().unwrap().push(id.clone());
            r.wait(Duration::from_secs(5)).await.unwrap();
            let tasks: Value = match http.get(format!("{base}/api/tasks")).send().await {
                Ok(resp) => resp.json().await.unwrap_or(Value::Null),
                Err(_) => return false,
            };
            tasks.get(&id).is_some_and(|t| {
                t["state"] == "SUCCESS" && t["worker"] == node.as_str() && t["name"] == "add"
            })
        }
    })
    .await;
    assert!(seen, "Flower never listed a task of ours (sent {sent:?})");
    // A failure too, with its exception.
    let failed = stack
        .client
        .apply(
            "fail",
            vec![json!("sin stock")],
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let id = failed.id().to_owned();
    failed.wait(Duration::from_secs(5)).await.unwrap();
    let listed = testkit::eventually(Duration::from_secs(10), Duration::from_millis(100), || {
        let url = format!("{base}/api/task/info/{id}");
        let http = &http;
        async move {
            let Ok(resp) = http.get(url).send().await else {
                return false;
            };
            let info: Value = resp.json().await.unwrap_or(Value::Null);
            info["state"] == "FAILURE"
                && info["exception"]
                    .as_str()
                    .is_some_and(|e| e.contains("sin stock"))
        }
    })
    .await;
    assert!(listed, "Flower shows the failure");
    worker.stop().await.unwrap();
}

/// `celery control disable_events` / `enable_events` switch a running worker's task events.
#[tokio::test(flavor = "multi_thread")]
async fn events_are_switched_off_and_on_at_run_time() {
    let stack = Stack::on(RedisServer::start_tcp());
    let (events, worker, node) = worker_sending_events(&stack).await;
    let control = Control::new(stack.redis.clone());
    let switch = |method: &'static str| {
        let control = control.clone();
        let node = node.clone();
        async move {
            let replies = control
                .call(
                    method,
                    Default::default(),
                    Some(vec![node]),
                    Duration::from_secs(2),
                    None,
                )
                .await
                .unwrap();
            replies[0].answer.clone()
        }
    };
    let run = |x: i64| {
        let client = stack.client.clone();
        async move {
            let r = client
                .apply(
                    "add",
                    vec![json!(x), json!(0)],
                    Default::default(),
                    Default::default(),
                )
                .await
                .unwrap();
            let id = r.id().to_owned();
            assert_eq!(r.get(Duration::from_secs(5)).await.unwrap(), json!(x));
            id
        }
    };

    let on = run(1).await;
    assert!(
        seen(&events, &on, "task-succeeded").await,
        "events while on"
    );
    assert_eq!(
        switch("disable_events").await,
        json!({"ok": "task events disabled"})
    );
    let off = run(2).await;
    assert_eq!(
        switch("enable_events").await,
        json!({"ok": "task events enabled"})
    );
    let again = run(3).await;
    assert!(
        seen(&events, &again, "task-succeeded").await,
        "events on again"
    );
    // Events leave in order: once the later task's are in, the earlier one's would be too.
    assert!(
        !events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e["uuid"] == off.as_str()),
        "no event for the task run while events were off"
    );
    worker.stop().await.unwrap();
}
