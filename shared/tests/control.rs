//! Celery's remote control against our worker, from the real tools: Python's
//! `app.control.inspect()` and `app.control.*` (`tests/python/control.py`), the `celery` command
//! (`inspect ping`, `status`, `control revoke`, `control shutdown`), each reply compared with
//! what a Python worker replied in the captures (`tests/fixtures/celery-5.5-control-replies.json`).
//! Also: revocations kept in Redis (a worker started after a revoke does not run the task), and
//! hostile control messages, which are ignored and cannot run anything.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use shared::control::Control;
use shared::protocol::TaskState;
use shared::{keys, SendOptions, WorkerConfig};
use testkit::celery::{python, repository, run_script};
use testkit::queue::{config, Stack, QUEUE};
use testkit::RedisServer;

const FIXTURE: &str = include_str!("fixtures/celery-5.5-control-replies.json");
const PY_NODE: &str = "py@capture";

fn celery() -> Value {
    serde_json::from_str(FIXTURE).unwrap()
}

/// A value with every `from` (a node name, a task id) written as `to`, to compare replies
/// across workers and runs.
fn renamed(v: &Value, pairs: &[(&str, &str)]) -> Value {
    let mut text = v.to_string();
    for (from, to) in pairs {
        text = text.replace(from, to);
    }
    serde_json::from_str(&text).unwrap()
}

fn keys_of(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

/// One slot and room for two: a second long task waits in the prefetch (*reserved*).
fn one_slot() -> WorkerConfig {
    WorkerConfig {
        concurrency: 1,
        prefetch_multiplier: 2,
        health_slots: 0,
        ..config()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_and_control_from_python_answer_as_a_python_worker_does() {
    let stack = Stack::on(RedisServer::start_tcp());
    let worker = stack.worker(one_slot());
    let node = config().hostname;
    testkit::celery::wait_for_control(&stack, &node).await;
    let lines = run_script("control.py", vec![stack.server.url(), node.clone()]).await;
    let step: HashMap<String, Value> = lines
        .into_iter()
        .map(|l| (l["step"].as_str().unwrap().to_owned(), l))
        .collect();
    let ours = |name: &str| step[name]["reply"].clone();
    let theirs = celery();
    let py = |name: &str| renamed(&theirs[name], &[(PY_NODE, &node)]);

    // Answers that must be equal, node names aside.
    assert_eq!(ours("ping"), py("inspect.ping"));
    assert_eq!(ours("ping_destination_match"), py("inspect.ping"));
    assert_eq!(ours("ping_destination_other"), Value::Null);
    for (o, p) in [
        ("rate_limit", "control.rate_limit"),
        ("time_limit", "control.time_limit"),
        ("add_consumer", "control.add_consumer"),
        ("cancel_consumer", "control.cancel_consumer"),
        ("enable_events", "control.enable_events"),
        ("disable_events", "control.disable_events"),
    ] {
        assert_eq!(ours(o), py(p), "{o}");
    }
    assert_eq!(
        ours("rate_limit_unknown"),
        json!([{ &node: {"error": "unknown task"} }])
    );
    assert_eq!(step["extra_queue_served"]["reply"], 5);

    // Stats: the same keys as Celery's at the top and in `broker` and `rusage`.
    let stats = &ours("stats")[&node];
    let py_stats = &theirs["inspect.stats"][PY_NODE];
    assert_eq!(keys_of(stats), keys_of(py_stats));
    assert_eq!(keys_of(&stats["broker"]), keys_of(&py_stats["broker"]));
    assert_eq!(keys_of(&stats["rusage"]), keys_of(&py_stats["rusage"]));
    assert_eq!(stats["pool"]["max-concurrency"], 1);
    assert!(
        stats["clock"].is_string(),
        "Celery sends the clock as a string"
    );
    assert_eq!(stats["pid"], std::process::id());

    let registered = ours("registered")[&node].clone();
    let names: Vec<&str> = registered
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(names.contains(&"obtener_estado") && names.contains(&"sleep"));
    assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted: {names:?}");

    let queues = ours("active_queues")[&node].clone();
    let py_queues = &theirs["inspect.active_queues"][PY_NODE];
    assert_eq!(queues.as_array().unwrap().len(), 1);
    assert_eq!(keys_of(&queues[0]), keys_of(&py_queues[0]));
    assert_eq!(
        keys_of(&queues[0]["exchange"]),
        keys_of(&py_queues[0]["exchange"])
    );
    assert_eq!(queues[0]["name"], QUEUE);

    // Requests: the same fields as Celery's `Request.info()`.
    let py_request = &theirs["inspect.active"][PY_NODE][0];
    let active = &ours("active")[&node];
    assert_eq!(active.as_array().unwrap().len(), 1, "{active}");
    assert_eq!(keys_of(&active[0]), keys_of(py_request));
    assert_eq!(active[0]["id"], step["active"]["running"]);
    assert!(active[0]["time_start"].is_f64());
    assert_eq!(active[0]["worker_pid"], std::process::id());
    assert_eq!(
        active[0]["delivery_info"],
        json!({"exchange": "", "routing_key": QUEUE, "priority": 0, "redelivered": false})
    );
    let reserved = &ours("reserved")[&node];
    assert_eq!(keys_of(&reserved[0]), keys_of(py_request));
    assert_eq!(reserved[0]["id"], step["reserved"]["waiting"]);
    assert_eq!(reserved[0]["time_start"], Value::Null);
    let scheduled = &ours("scheduled")[&node];
    let py_scheduled = &theirs["inspect.scheduled"][PY_NODE][0];
    assert_eq!(keys_of(&scheduled[0]), keys_of(py_scheduled));
    assert_eq!(keys_of(&scheduled[0]["request"]), keys_of(py_request));
    assert_eq!(scheduled[0]["request"]["id"], step["scheduled"]["later"]);
    assert!(scheduled[0]["eta"].is_string());

    // Revocations: Celery's replies, and the tasks stored REVOKED (a scheduled one at once).
    let later = step["scheduled"]["later"].as_str().unwrap();
    let py_later = theirs["about"]["task_ids"]["scheduled"].as_str().unwrap();
    assert_eq!(
        ours("revoke"),
        renamed(&py("control.revoke"), &[(py_later, later)])
    );
    assert_eq!(ours("revoked")[&node], json!([later]));
    assert_eq!(step["revoked_scheduled_state"]["reply"], "REVOKED");
    let running = step["active"]["running"].as_str().unwrap();
    let py_terminated = theirs["about"]["task_ids"]["terminated"].as_str().unwrap();
    assert_eq!(
        ours("revoke_terminate"),
        renamed(&py("control.revoke.terminate"), &[(py_terminated, running)])
    );
    assert_eq!(step["terminated_state"]["reply"], "REVOKED");
    assert!(step["terminated_state"]["result"]
        .as_str()
        .unwrap()
        .contains("terminated"));
    assert_eq!(step["reserved_ran"]["reply"], 50);

    // Kept in Redis for workers to come.
    let kept = stack.server.cli(&["ZRANGE", keys::REVOKED, "0", "-1"]);
    assert!(kept.contains(later) && kept.contains(running), "{kept}");
    worker.stop().await.unwrap();
    assert_eq!(stack.server.cli(&["HLEN", keys::UNACKED]), "0");
    assert_eq!(
        stack.server.cli(&[
            "SISMEMBER",
            keys::PIDBOX_BINDING,
            &keys::pidbox_member(&node)
        ]),
        "0",
        "the worker left kombu's record of listeners"
    );
}

/// Runs the `celery` command with the test app against `stack`.
fn celery_cli(stack: &Stack, args: &[&str]) -> (i32, String) {
    let out = Command::new(python())
        .args(["-m", "celery", "-A", "celery_app"])
        .args(args)
        .current_dir(repository().join("tests/python"))
        .env("CELERY_URL", stack.server.url())
        .output()
        .expect("run celery");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_celery_command_inspects_revokes_and_shuts_down_our_worker() {
    let stack = Stack::on(RedisServer::start_tcp());
    let worker = stack.worker(config());
    let node = config().hostname;
    testkit::celery::wait_for_control(&stack, &node).await;

    let (code, text) = celery_cli(&stack, &["inspect", "ping", "--timeout", "2"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&node) && text.contains("pong"), "{text}");
    let (code, text) = celery_cli(&stack, &["status", "--timeout", "2"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&format!("{node}: OK")), "{text}");
    assert!(text.contains("1 node online"), "{text}");
    // Beside a Python worker: both answer, each under its name.
    let py = testkit::celery::PyWorker::start(
        &stack,
        &repository().join("tests/python"),
        "celery_app",
        &["-c", "1", "-P", "solo", "-n", "py@beside"],
        &[],
    )
    .await;
    // Its worker-online comes before its pidbox consumer starts: wait until it answers.
    let control = Control::new(stack.redis.clone());
    let answers = testkit::eventually(Duration::from_secs(20), Duration::ZERO, || async {
        let names = Some(vec!["py@beside".to_owned()]);
        control
            .ping(names, Duration::from_millis(500))
            .await
            .is_ok_and(|r| r.len() == 1)
    })
    .await;
    assert!(answers, "the Python worker answers pings");
    let (code, text) = celery_cli(&stack, &["status", "--timeout", "2"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("{node}: OK")) && text.contains("py@beside: OK"),
        "{text}"
    );
    assert!(text.contains("2 nodes online"), "{text}");
    let replies = control
        .call(
            "stats",
            Default::default(),
            None,
            Duration::from_secs(2),
            Some(2),
        )
        .await
        .unwrap();
    let mut names: Vec<&str> = replies.iter().map(|r| r.hostname.as_str()).collect();
    names.sort();
    assert_eq!(names, ["py@beside", node.as_str()]);
    drop(py);

    // Revoked from the command line while waiting for its eta: never runs, stored REVOKED.
    let later = stack
        .client
        .apply(
            "add",
            vec![json!(1), json!(2)],
            Default::default(),
            SendOptions {
                countdown: Some(Duration::from_secs(30)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let held = testkit::eventually(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async { stack.server.cli(&["HLEN", keys::UNACKED]) == "1" },
    )
    .await;
    assert!(held);
    let (code, text) = celery_cli(&stack, &["control", "revoke", later.id()]);
    assert_eq!(code, 0, "{text}");
    let meta = later.wait(Duration::from_secs(5)).await.unwrap();
    assert_eq!(meta.status, TaskState::Revoked, "{meta:?}");
    assert_eq!(meta.result["exc_type"], "TaskRevokedError");

    let (code, text) = celery_cli(&stack, &["control", "shutdown", "--timeout", "1"]);
    // Celery's shutdown has no reply: the command says no node replied, as with a Python worker.
    assert_ne!(code, 0, "{text}");
    let stopped = tokio::time::timeout(Duration::from_secs(10), worker.handle)
        .await
        .expect("the worker stops on `celery control shutdown`");
    stopped.unwrap().unwrap();
    assert_eq!(stack.server.cli(&["HLEN", keys::UNACKED]), "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_outlives_the_workers_that_heard_it() {
    let stack = Stack::on(RedisServer::start_tcp());
    let control = Control::new(stack.redis.clone());
    // Queued while no worker runs, revoked, then a worker starts: it never runs it.
    let doomed = stack
        .client
        .apply(
            "add",
            vec![json!(2), json!(2)],
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let spared = stack
        .client
        .apply(
            "add",
            vec![json!(3), json!(3)],
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    control
        .revoke(&[doomed.id().to_owned()], false)
        .await
        .unwrap();
    let worker = stack.worker(config());
    assert_eq!(spared.get(Duration::from_secs(10)).await.unwrap(), json!(6));
    let meta = doomed.wait(Duration::from_secs(10)).await.unwrap();
    assert_eq!(meta.status, TaskState::Revoked);
    assert_eq!(meta.result["exc_message"], json!(["revoked"]));
    let stats = worker.stats.clone();
    worker.stop().await.unwrap();
    assert_eq!(
        stats.processed.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

/// Control messages anyone with Redis access could publish: none crashes or stalls the
/// worker, none makes it run a task, and it still answers pings and runs tasks after them.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_control_messages_are_ignored() {
    let stack = Stack::on(RedisServer::start_tcp());
    let worker = stack.worker(config());
    let node = config().hostname;
    testkit::celery::wait_for_control(&stack, &node).await;
    let channel = keys::pidbox_channel(0);
    let raw = |text: String| {
        json!({
            "body": base64_of(&text),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {},
            "properties": {"body_encoding": "base64", "delivery_tag": "x"},
        })
        .to_string()
    };
    let body = |v: Value| raw(v.to_string());
    let hostile: Vec<String> = vec![
        "not json".into(),
        "{}".into(),
        "[1, 2, 3]".into(),
        json!({"body": "!!!not base64", "properties": {"body_encoding": "base64"}}).to_string(),
        body(json!([1])),
        body(json!({"method": null})),
        body(json!({"method": "shutdown", "destination": ["someone@else"]})),
        body(json!({"method": "shutdown", "pattern": "nobody*", "matcher": "glob"})),
        body(json!({"method": "shutdown", "pattern": ".*", "matcher": "pcre"})),
        body(json!({"method": "revoke", "arguments": {"task_id": {"$gt": ""}}})),
        body(json!({"method": "revoke", "arguments": "everything"})),
        body(
            json!({"method": "rate_limit", "arguments": {"task_name": "noop", "rate_limit": "fast"}}),
        ),
        body(json!({"method": "time_limit", "arguments": {"task_name": [], "soft": "x"}})),
        body(json!({"method": "add_consumer", "arguments": {"queue": ""}})),
        body(json!({"method": "apply", "arguments": {"task": "add", "args": [1, 2]}})),
        body(json!({"method": "add", "arguments": {"x": 1, "y": 2}})),
        body(
            json!({"method": "ping", "reply_to": {"exchange": "celery", "routing_key": "inventario"}, "ticket": "t"}),
        ),
        body(
            json!({"method": "ping", "reply_to": {"exchange": "reply.celery.pidbox", "routing_key": "x"}, "ticket": "t"}),
        ),
        body(json!({"method": "x".repeat(100_000)})),
        // Nested far deeper than any decoder's recursion limit.
        raw(format!(
            r#"{{"method": "ping", "arguments": {{"deep": {}{}}}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        )),
    ];
    for payload in &hostile {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(payload)
            .query_async(&mut stack.redis.conn().await.unwrap())
            .await
            .unwrap();
    }
    // Still listening (the pings come after every hostile message on the same channel).
    let control = Control::new(stack.redis.clone());
    let replies = control
        .ping(Some(vec![node.clone()]), Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].answer, json!({"ok": "pong"}));
    // No task ran, nothing went onto a queue, and it still runs tasks.
    assert_eq!(
        worker
            .stats
            .processed
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(stack.server.cli(&["LLEN", QUEUE]), "0");
    let r = stack
        .client
        .apply(
            "add",
            vec![json!(1), json!(1)],
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.get(Duration::from_secs(5)).await.unwrap(), json!(2));
    assert!(!worker.handle.is_finished(), "the worker is still running");
    worker.stop().await.unwrap();
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}
