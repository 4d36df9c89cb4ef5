//! Interoperability with real Python Celery 5.5, both ways: a Python client's
//! `send_task(...).get()` answered by our worker, and our client's tasks executed by a Python
//! Celery worker whose results we read. Also: we see the Python worker's events, and retries
//! and soft time limits behave the same with either worker.
//!
//! Needs a Python with `celery` and `redis` installed: `$CELERY_PYTHON`, or `.venv/bin/python`
//! at the workspace root (the README's test command creates it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use shared::protocol::{ResultMeta, TaskState};
use shared::{keys, QueueError, SendOptions};
use testkit::celery::{repository, run_script, PyWorker};
use testkit::queue::{config, Stack, QUEUE};
use testkit::RedisServer;

#[tokio::test(flavor = "multi_thread")]
async fn python_client_is_answered_by_our_worker() {
    let stack = Stack::on(RedisServer::start_tcp());
    let worker = stack.worker(config());
    let lines = run_script("send_and_get.py", vec![stack.server.url()]).await;
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
    let py = python_worker(&stack, &[]).await;
    let online = &py.online;
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

    // A custom state (Celery's update_state), as Celery stores it: read with its own name, not
    // ready, and written back unchanged.
    let progreso = client
        .apply(
            "progreso",
            vec![json!("larga"), json!(3)],
            Default::default(),
            SendOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(progreso.get(wait).await.unwrap(), json!(3));
    let larga = client.result("larga").state().await.unwrap();
    assert_eq!(larga.status, TaskState::Custom);
    assert_eq!(larga.status_name(), "PROGRESS");
    assert_eq!(larga.result, json!({"hecho": 3}));
    assert!(!larga.status.is_ready());
    let again = ResultMeta::parse(larga.to_json().as_bytes()).unwrap();
    assert_eq!(again, larga);
}

/// The Python test app's worker (`tests/python/celery_app.py`, two processes, `py@interop`),
/// with `env` besides.
async fn python_worker(stack: &Stack, env: &[(&str, &str)]) -> PyWorker {
    PyWorker::start(
        stack,
        &repository().join("tests/python"),
        "celery_app",
        &["-c", "2", "-n", "py@interop"],
        env,
    )
    .await
}

/// A script's output line keyed by its `case`.
fn by_case(line: Value) -> (String, Value) {
    (line["case"].as_str().unwrap().to_owned(), line)
}

/// What a Python client saw of `tests/python/retry_and_limits.py`'s cases (by case name), and
/// every result published for their tasks meanwhile, in order, by task id.
struct RetryRun {
    outcomes: HashMap<String, Value>,
    published: HashMap<String, Vec<Value>>,
}

/// Runs the retry and time-limit cases from a Python client against whichever worker serves
/// `stack`, listening to every result published while they run.
async fn retry_and_limit_cases(stack: &Stack) -> RetryRun {
    let mut pubsub = stack.redis.pubsub().await.expect("pub/sub connection");
    pubsub
        .psubscribe(format!("{}*", keys::RESULT_KEY_PREFIX))
        .await
        .expect("psubscribe to results");
    let mut stream = pubsub.into_on_message();
    let published: Arc<Mutex<Vec<Value>>> = Arc::default();
    let listener = tokio::spawn({
        let published = published.clone();
        async move {
            while let Some(msg) = stream.next().await {
                let doc: Value = serde_json::from_slice(msg.get_payload_bytes()).unwrap();
                published.lock().unwrap().push(doc);
            }
        }
    });
    let outcomes: HashMap<String, Value> =
        run_script("retry_and_limits.py", vec![stack.server.url()])
            .await
            .into_iter()
            .map(by_case)
            .collect();
    // Each task's final result is published after its RETRYs: once every final result is
    // seen, so is everything before it.
    let ids: Vec<String> = outcomes
        .values()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    let all_final = testkit::eventually(Duration::from_secs(5), Duration::from_millis(20), || {
        let published = published.clone();
        let ids = ids.clone();
        async move {
            let published = published.lock().unwrap();
            ids.iter().all(|id| {
                published
                    .iter()
                    .any(|d| d["task_id"] == id.as_str() && d["status"] != "RETRY")
            })
        }
    })
    .await;
    assert!(all_final, "every final result was published");
    listener.abort();
    let mut by_id: HashMap<String, Vec<Value>> = HashMap::new();
    for doc in published.lock().unwrap().drain(..) {
        let id = doc["task_id"].as_str().unwrap().to_owned();
        by_id.entry(id).or_default().push(doc);
    }
    RetryRun {
        outcomes,
        published: by_id,
    }
}

/// What must hold of a run, whichever worker ran it.
fn check_retry_run(who: &str, run: &RetryRun) {
    let case = |name: &str| &run.outcomes[name];
    let retried = case("retried");
    assert_eq!(
        (retried["ok"].clone(), retried["value"].clone()),
        (json!(true), json!(3)),
        "{who}: {retried}"
    );
    let exhausted = case("exhausted");
    assert_eq!(
        exhausted["exc_type"], "MaxRetriesExceededError",
        "{who}: {exhausted}"
    );
    assert_eq!(exhausted["exc_module"], "celery.exceptions");
    assert_eq!(
        exhausted["message"],
        format!(
            "Can't retry reintentar[{}] args:(5,) kwargs:{{}}",
            exhausted["id"].as_str().unwrap()
        ),
        "{who}"
    );
    let soft = case("soft_limit");
    assert_eq!(soft["exc_type"], "SoftTimeLimitExceeded", "{who}: {soft}");
    assert_eq!(soft["exc_module"], "billiard.exceptions");
    let within = case("within_limit");
    assert_eq!(within["value"], 50, "{who}: {within}");
    // Between attempts: RETRY, three times (Celery's default max_retries), then the outcome.
    for name in ["retried", "exhausted"] {
        let id = case(name)["id"].as_str().unwrap();
        let states: Vec<&str> = run.published[id]
            .iter()
            .map(|d| d["status"].as_str().unwrap())
            .collect();
        let last = if name == "retried" {
            "SUCCESS"
        } else {
            "FAILURE"
        };
        assert_eq!(states, ["RETRY", "RETRY", "RETRY", last], "{who}: {name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_and_soft_limits_as_a_python_worker_does() {
    let python_run = {
        let stack = Stack::on(RedisServer::start_tcp());
        let _py = python_worker(&stack, &[]).await;
        retry_and_limit_cases(&stack).await
    };
    check_retry_run("Python worker", &python_run);

    let stack = Stack::on(RedisServer::start_tcp());
    let worker = stack.worker(config());
    let our_run = retry_and_limit_cases(&stack).await;
    check_retry_run("our worker", &our_run);
    worker.stop().await.unwrap();
    assert_eq!(
        stack.server.cli(&["HLEN", keys::UNACKED]),
        "0",
        "nothing left held"
    );

    // The RETRY records between attempts, ours against the Python worker's, attempt by
    // attempt: the same fields with the same values, the task's own id standing for Celery's,
    // except the traceback (Celery's is the Python stack of the Retry raised; we have none).
    for name in ["retried", "exhausted"] {
        let records = |run: &RetryRun| -> Vec<Value> {
            let id = run.outcomes[name]["id"].as_str().unwrap().to_owned();
            run.published[&id]
                .iter()
                .filter(|d| d["status"] == "RETRY")
                .map(|d| {
                    let text = serde_json::to_string(d).unwrap().replace(&id, "<id>");
                    let mut d: Value = serde_json::from_str(&text).unwrap();
                    d.as_object_mut().unwrap().remove("traceback");
                    d
                })
                .collect()
        };
        assert_eq!(records(&our_run), records(&python_run), "{name}");
    }
    let traceback = |run: &RetryRun| {
        let id = run.outcomes["retried"]["id"].as_str().unwrap();
        run.published[id][0]["traceback"].clone()
    };
    assert!(traceback(&python_run).is_string());
    assert_eq!(traceback(&our_run), Value::Null);
}

/// kombu's workers restore any `unacked` entry whose `unacked_index` score is older than their
/// visibility timeout (`restore_visible`, run as a worker starts and every 100 s or so). A
/// Python worker with a short one starts while ours has held a long task for longer than that:
/// our worker keeps the score fresh, so the task is not restored, and runs once.
#[tokio::test(flavor = "multi_thread")]
async fn a_python_worker_does_not_restore_what_ours_still_runs() {
    const VISIBILITY: u64 = 3;
    let stack = Stack::on(RedisServer::start_tcp());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("visible_app.py"),
        format!(
            r#"import os, time
import redis
from celery import Celery

URL = os.environ["CELERY_URL"]
app = Celery("visible", broker=URL, backend=URL)
app.conf.update(
    task_default_queue="inventario",
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    broker_transport_options={{"visibility_timeout": {VISIBILITY}}},
)
runs = redis.Redis.from_url(URL)

@app.task(name="sleep")
def sleep(ms=100):
    runs.incr("python-runs")
    time.sleep(ms / 1000)
    return ms

@app.task(name="noop")
def noop(x=None):
    return x
"#
        ),
    )
    .unwrap();
    // One slot, busy with the long task: the Python worker gets everything else.
    let worker = stack.worker(shared::WorkerConfig {
        concurrency: 1,
        health_slots: 0,
        visibility_timeout: Duration::from_secs(VISIBILITY),
        ..config()
    });
    let long = stack
        .client
        .apply(
            "sleep",
            vec![json!(4 * VISIBILITY * 1000)],
            Default::default(),
            SendOptions::default(),
        )
        .await
        .unwrap();
    let running = testkit::eventually(
        Duration::from_secs(10),
        Duration::from_millis(10),
        || async {
            worker
                .stats
                .active
                .load(std::sync::atomic::Ordering::SeqCst)
                == 1
        },
    )
    .await;
    assert!(running);
    let redis_now = || {
        let time = stack.server.cli(&["TIME"]);
        time.lines().next().unwrap().parse::<u64>().unwrap()
    };
    // Until the delivery is older than the Python worker's visibility timeout (with a margin
    // for the whole-second scores).
    let taken = redis_now();
    let stale = testkit::eventually(
        Duration::from_secs(VISIBILITY + 5),
        Duration::from_millis(100),
        || async { redis_now() > taken + VISIBILITY + 1 },
    )
    .await;
    assert!(stale);
    let _py = PyWorker::start(
        &stack,
        dir.path(),
        "visible_app",
        &["-c", "1", "-P", "solo", "-n", "py@visible"],
        &[],
    )
    .await;
    // Once the Python worker has run a task, its start-up restore has been done.
    let echo = stack
        .client
        .apply(
            "noop",
            vec![json!(1)],
            Default::default(),
            SendOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(echo.get(Duration::from_secs(10)).await.unwrap(), json!(1));
    assert_eq!(
        long.get(Duration::from_secs(4 * VISIBILITY + 10))
            .await
            .unwrap(),
        json!(4 * VISIBILITY * 1000)
    );
    assert_eq!(
        stack.server.cli(&["GET", "python-runs"]),
        "",
        "the Python worker restored and ran the task ours was running"
    );
    assert_eq!(stack.client.broker().queue_len(QUEUE).await.unwrap(), 0);
    assert_eq!(
        worker
            .stats
            .processed
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    worker.stop().await.unwrap();
}

/// `tests/python/extended_and_rates.py` against whichever worker serves `stack`: what a Python
/// client read of an extended result, and when the rate-limited `noop`s were done.
async fn extended_and_rate_cases(stack: &Stack) -> HashMap<String, Value> {
    run_script("extended_and_rates.py", vec![stack.server.url()])
        .await
        .into_iter()
        .map(by_case)
        .collect()
}

/// When the four rate-limited `noop`s of a run were done, in order.
fn rate_limited_done(who: &str, run: &HashMap<String, Value>) -> Vec<f64> {
    let limited = &run["rate_limited"];
    assert_eq!(limited["values"], json!([0, 1, 2, 3]), "{who}");
    limited["done"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_f64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn extended_results_and_rate_limits_as_a_python_worker_does() {
    let python_run = {
        let stack = Stack::on(RedisServer::start_tcp());
        let _py = python_worker(
            &stack,
            &[("RESULT_EXTENDED", "true"), ("NOOP_RATE_LIMIT", "5/s")],
        )
        .await;
        extended_and_rate_cases(&stack).await
    };
    // Four noops limited to 5 a second, sent at once: a Python worker lets two through at once
    // (kombu's token bucket refills from a stale timestamp after an idle spell), then one
    // every 0.2 s, so the four take at least ~0.4 s (without a limit: milliseconds).
    let theirs = rate_limited_done("Python worker", &python_run);
    assert!(theirs[3] - theirs[0] >= 0.35, "Python worker: {theirs:?}");

    let stack = Stack::on(RedisServer::start_tcp());
    let worker = stack.worker(shared::worker::WorkerConfig {
        result_extended: true,
        rate_limits: vec![("noop".into(), "5/s".parse().unwrap())],
        ..config()
    });
    let our_run = extended_and_rate_cases(&stack).await;
    // Ours lets one through at once, then one every 0.2 s: never two together.
    let ours = rate_limited_done("our worker", &our_run);
    for pair in ours.windows(2) {
        assert!(pair[1] - pair[0] >= 0.15, "our worker: {ours:?}");
    }
    worker.stop().await.unwrap();

    // What AsyncResult reads of the extended result: the same from either worker, but for the
    // worker's own name.
    let extended = |run: &HashMap<String, Value>| {
        let mut e = run["extended"].clone();
        let e = e.as_object_mut().unwrap();
        e.remove("id");
        e.remove("worker")
    };
    assert_eq!(extended(&python_run), Some(json!("py@interop")));
    assert_eq!(extended(&our_run), Some(json!(config().hostname)));
    let mut ours = our_run["extended"].clone();
    let mut theirs = python_run["extended"].clone();
    for e in [&mut ours, &mut theirs] {
        let e = e.as_object_mut().unwrap();
        e.remove("id");
        e.remove("worker");
    }
    assert_eq!(
        ours,
        json!({"case": "extended", "value": 5, "name": "add", "args": [2], "kwargs": {"y": 3},
               "retries": 0, "queue": "inventario"})
    );
    assert_eq!(ours, theirs);
}
