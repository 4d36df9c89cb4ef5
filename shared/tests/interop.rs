//! Interoperability with real Python Celery 5.5, both ways: a Python client's
//! `send_task(...).get()` answered by our worker, and our client's tasks executed by a Python
//! Celery worker whose results we read. Also: we see the Python worker's events.
//!
//! Needs a Python with `celery` and `redis` installed: `$CELERY_PYTHON`, or `.venv/bin/python`
//! at the workspace root (the README's test command creates it).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{config, Stack, QUEUE};
use futures_util::StreamExt;
use serde_json::{json, Value};
use shared::protocol::{TaskState, WorkerEvent};
use shared::testing::RedisServer;
use shared::{keys, QueueError, SendOptions};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    let p = std::env::var_os("CELERY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "no Python with Celery at {} (run scripts/test.sh, or set CELERY_PYTHON)",
        p.display()
    );
    p
}

/// Kills the Python worker even when the test fails.
struct PyWorker(Child);

impl Drop for PyWorker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn python_client_is_answered_by_our_worker() {
    let stack = Stack::on(RedisServer::start_tcp());
    let worker = stack.worker(config());
    let out = tokio::task::spawn_blocking({
        let url = stack.server.url();
        move || {
            Command::new(python())
                .arg(workspace().join("tests/python/send_and_get.py"))
                .arg(url)
                .output()
                .expect("run python")
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let case = |task: &str| {
        lines
            .iter()
            .find(|l| l["task"] == task)
            .cloned()
            .unwrap_or_else(|| panic!("no {task} in {lines:?}"))
    };

    let estado = case("obtener_estado");
    assert_eq!(estado["ok"], true, "{estado}");
    assert_eq!(estado["value"]["estado"], "OK");
    assert_eq!(
        estado["value"]["mensaje"],
        "InventarioService responde correctamente - OK"
    );
    let sums: Vec<&Value> = lines.iter().filter(|l| l["task"] == "add").collect();
    assert_eq!(sums.len(), 2);
    assert_eq!(sums[0]["value"], 5);
    assert_eq!(
        sums[1]["value"], 42,
        "priority 7 goes through the priority sub-list"
    );
    assert_eq!(
        case("noop")["value"],
        json!({"nested": [1, "dos", null]}),
        "countdown + expires"
    );
    let fail = case("fail");
    assert_eq!(
        (fail["ok"].clone(), fail["exc_type"].clone()),
        (json!(false), json!("ValueError"))
    );
    assert_eq!(fail["message"], "sin stock");
    let unknown = case("no_such_task");
    assert_eq!(unknown["exc_type"], "NotRegistered");
    assert_eq!(unknown["exc_module"], "celery.exceptions");
    let panicked = case("panic");
    assert_eq!(panicked["exc_type"], "RuntimeError");
    assert!(panicked["message"].as_str().unwrap().contains("boom"));

    worker.stop().await.unwrap();
    // Everything acknowledged: nothing left held.
    assert_eq!(stack.server.cli(&["HLEN", keys::UNACKED]), "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn our_client_is_answered_by_a_python_worker() {
    let stack = Stack::on(RedisServer::start_tcp());
    // Listen for worker events first, so the worker-online of the Python worker is seen.
    let mut events = stack.redis.pubsub().await.unwrap();
    events
        .psubscribe(keys::worker_events_pattern(0))
        .await
        .unwrap();
    let mut events = events.into_on_message();

    let _py = PyWorker(
        Command::new(python())
            .args([
                "-m",
                "celery",
                "-A",
                "celery_app",
                "worker",
                "-Q",
                QUEUE,
                "-c",
                "2",
                "-n",
                "py@interop",
                "--loglevel=WARNING",
            ])
            .current_dir(workspace().join("tests/python"))
            .env("CELERY_URL", stack.server.url())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the Python worker"),
    );
    let online = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(msg) = events.next().await {
            let event = WorkerEvent::decode(msg.get_payload_bytes())
                .expect("a Python worker event decodes");
            if event.kind == "worker-online" {
                return event;
            }
        }
        panic!("event stream ended");
    })
    .await
    .expect("the Python worker comes online within 30 s");
    assert_eq!(online.hostname, "py@interop");
    assert_eq!(online.sw_ident, "py-celery");
    assert_eq!(online.freq, 2.0);

    let client = &stack.client;
    let wait = Duration::from_secs(10);
    let estado = client
        .apply(
            "obtener_estado",
            vec![],
            Default::default(),
            SendOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        estado.get(wait).await.unwrap(),
        json!("InventarioService responde correctamente - OK")
    );

    let sum = client
        .apply(
            "add",
            vec![json!(19), json!(23)],
            Default::default(),
            SendOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(sum.get(wait).await.unwrap(), json!(42));

    let mut kwargs = serde_json::Map::new();
    kwargs.insert("x".into(), json!({"lista": [1, 2, 3]}));
    let opts = SendOptions {
        priority: Some(9),
        countdown: Some(Duration::from_millis(500)),
        expires: Some(Duration::from_secs(60)),
        ..SendOptions::default()
    };
    let noop = client.apply("noop", vec![], kwargs, opts).await.unwrap();
    assert_eq!(noop.get(wait).await.unwrap(), json!({"lista": [1, 2, 3]}));

    let fail = client
        .apply(
            "fail",
            vec![json!("sin stock")],
            Default::default(),
            SendOptions::default(),
        )
        .await
        .unwrap();
    let id = fail.id().to_owned();
    match fail.get(wait).await {
        Err(QueueError::TaskFailed { task_id, exception }) => {
            assert_eq!(task_id, id);
            assert_eq!(exception.exc_type, "ValueError");
            assert_eq!(exception.exc_module.as_deref(), Some("builtins"));
            assert_eq!(exception.message(), "sin stock");
        }
        other => panic!("expected the Python ValueError, got {other:?}"),
    }
    // The stored FAILURE, read back without waiting.
    assert_eq!(
        client.result(&id).state().await.unwrap().status,
        TaskState::Failure
    );

    // Fire-and-forget, then read the result later: the Python worker stored it as Celery does.
    let later = client
        .send_task(
            "add",
            vec![json!(1), json!(2)],
            Default::default(),
            SendOptions::queue(QUEUE),
        )
        .await
        .unwrap();
    assert_eq!(client.result(&later).get(wait).await.unwrap(), json!(3));
}
