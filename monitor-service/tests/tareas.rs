//! Task events in the monitor, end to end: a real demo-worker started with `TASK_EVENTS=true`
//! runs tasks, and the real monitor-service binary counts them on `/metrics` under
//! celery-exporter's names and shows each task on `GET /monitor/tareas/{id}`, merging the result
//! backend with the events. Hostile task events (garbage, huge, a flood of names) leave the
//! monitor alive, still counting, with its label cardinality capped.

mod common;

use std::time::Duration;

use common::Monitor;
use serde_json::{json, Value};
use shared::{keys, Client, Redis, SendOptions};
use testkit::demo::spawn_demo_worker;
use testkit::queue::QUEUE;
use testkit::{Process, RedisServer};

const WORKER: &str = "tareas@test";

/// `GET /monitor/tareas/{id}`.
async fn tarea(monitor: &Monitor, id: &str) -> (u16, Value) {
    monitor.json(&format!("/monitor/tareas/{id}")).await
}

/// Waits until `/metrics` satisfies `cond`; the last text.
async fn metrics_until(monitor: &Monitor, what: &str, cond: impl Fn(&str) -> bool) -> String {
    let (held, text) = monitor
        .until_text("/metrics", Duration::from_secs(15), cond)
        .await;
    assert!(held, "{what} never showed in\n{}", celery_lines(&text));
    text
}

fn celery_lines(text: &str) -> String {
    text.lines()
        .filter(|l| l.starts_with("celery_task") || l.starts_with("monitor_workers"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of the series `name{labels}` (labels as Prometheus prints them, sorted).
fn value(text: &str, name: &str, labels: &str) -> Option<f64> {
    common::value(text, &format!("{name}{{{labels}}}"))
}

/// The labels of a task series of this test's worker.
fn labels(name: &str) -> String {
    format!(r#"hostname="{WORKER}",name="{name}",queue_name="{QUEUE}""#)
}

struct Setup {
    redis: RedisServer,
    client: Client,
    monitor: Monitor,
    _worker: Process,
    _dir: tempfile::TempDir,
}

/// Redis, a demo-worker sending task events (and storing extended results), the monitor, and
/// a wait until the monitor hears the worker's heartbeats: from then on it hears its task
/// events too (one subscription carries both).
async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let worker = spawn_demo_worker(
        &redis.url(),
        WORKER,
        &[("TASK_EVENTS", "true"), ("RESULT_EXTENDED", "true")],
        dir.path(),
    );
    let monitor = Monitor::start(&redis, &[], dir.path()).await;
    metrics_until(&monitor, "the worker's heartbeat", |t| {
        t.lines().any(|l| l == "monitor_workers_alive 1")
    })
    .await;
    let client = Client::new(Redis::from_url(&redis.url()).unwrap(), QUEUE);
    Setup {
        redis,
        client,
        monitor,
        _worker: worker,
        _dir: dir,
    }
}

async fn run(client: &Client, name: &str, args: Vec<Value>) -> String {
    let id = client
        .send_task(name, args, Default::default(), SendOptions::default())
        .await
        .unwrap();
    let meta = client
        .result(&id)
        .wait(Duration::from_secs(15))
        .await
        .unwrap();
    assert!(meta.status.is_ready(), "{name}: {meta:?}");
    id
}

#[tokio::test]
async fn task_events_are_counted_as_celery_exporter_counts_them() {
    let s = setup().await;
    for i in 0..3 {
        run(&s.client, "add", vec![json!(i), json!(1)]).await;
    }
    run(&s.client, "fail", vec![json!("sin stock")]).await;
    let add = labels("add");
    let text = metrics_until(&s.monitor, "three adds and a failure", |t| {
        value(t, "celery_task_succeeded_total", &add) == Some(3.0)
            && value(t, "celery_task_runtime_count", &add) == Some(3.0)
            && t.contains("celery_task_failed_total{")
    })
    .await;
    assert_eq!(value(&text, "celery_task_received_total", &add), Some(3.0));
    assert_eq!(value(&text, "celery_task_started_total", &add), Some(3.0));
    assert!(value(&text, "celery_task_runtime_sum", &add).unwrap() > 0.0);
    // From 100 µs.
    assert!(text.contains(&format!(
        "celery_task_runtime_bucket{{{add},le=\"0.0001\"}}"
    )));
    let failed =
        format!(r#"exception="ValueError",hostname="{WORKER}",name="fail",queue_name="{QUEUE}""#);
    assert_eq!(value(&text, "celery_task_failed_total", &failed), Some(1.0));
    assert_eq!(
        value(&text, "celery_task_received_total", &labels("fail")),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_task_is_shown_from_its_result_and_its_events() {
    let s = setup().await;
    let ok = run(&s.client, "add", vec![json!(2), json!(3)]).await;
    let bad = run(&s.client, "fail", vec![json!("sin stock")]).await;
    metrics_until(&s.monitor, "both tasks' last events", |t| {
        value(t, "celery_task_succeeded_total", &labels("add")) == Some(1.0)
            && t.contains("celery_task_failed_total{")
    })
    .await;
    let key = keys::result_key(&ok);
    let before: String = s.redis.cli(&["GET", &key]);

    let (status, t) = tarea(&s.monitor, &ok).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["id"], json!(ok));
    assert_eq!(t["estado"], "SUCCESS");
    assert_eq!(t["nombre"], "add");
    assert_eq!(t["args"], "[2, 3]");
    assert_eq!(t["kwargs"], "{}");
    assert_eq!(t["resultado"], json!(5));
    assert_eq!(t["error"], Value::Null);
    assert_eq!(t["trabajador"], WORKER);
    assert_eq!(t["cola"], QUEUE);
    assert_eq!(t["reintentos"], json!(0));
    assert_eq!(t["fuentes"], json!(["resultado", "eventos"]));
    assert!(t["duracion_s"].as_f64().unwrap() > 0.0, "{t}");
    let at = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(t[k].as_str().unwrap_or_else(|| panic!("{k}: {t}")))
            .unwrap()
    };
    assert!(at("recibida") <= at("iniciada") && at("iniciada") <= at("terminada"));

    let (status, f) = tarea(&s.monitor, &bad).await;
    assert_eq!(status, 200, "{f}");
    assert_eq!(f["estado"], "FAILURE");
    assert_eq!(f["nombre"], "fail");
    assert_eq!(f["error"]["tipo"], "ValueError");
    assert_eq!(f["error"]["mensaje"], "sin stock");
    assert_eq!(f["resultado"], Value::Null);

    // Reading altered nothing.
    assert_eq!(s.redis.cli(&["GET", &key]), before);
    assert_ne!(s.redis.cli(&["TTL", &key]), "-1");

    // Known to nobody: never sent, or sent where no worker takes it (Celery would say PENDING).
    let waiting = s
        .client
        .send_task(
            "noop",
            vec![],
            Default::default(),
            SendOptions {
                queue: Some("nadie".into()),
                ..SendOptions::default()
            },
        )
        .await
        .unwrap();
    for id in ["00000000-0000-4000-8000-000000000000".to_owned(), waiting] {
        let (status, e) = tarea(&s.monitor, &id).await;
        assert_eq!(
            (status, e["error"].as_str()),
            (404, Some("tarea_desconocida")),
            "{e}"
        );
    }
    for id in ["no%20valido", "a%2Fb", &"x".repeat(200), "%C3%B1"] {
        let (status, e) = tarea(&s.monitor, id).await;
        assert_eq!(
            (status, e["error"].as_str()),
            (400, Some("id_invalido")),
            "{id}: {e}"
        );
        assert!(e["detalle"].is_string());
    }
}

#[tokio::test]
async fn hostile_task_events_leave_the_monitor_alive_and_counting() {
    let mut s = setup().await;
    // A name seen before the flood keeps its label (the cap takes names first come).
    run(&s.client, "noop", vec![json!(0)]).await;
    metrics_until(&s.monitor, "the first noop", |t| {
        value(t, "celery_task_succeeded_total", &labels("noop")) == Some(1.0)
    })
    .await;
    let redis = Redis::from_url(&s.redis.url()).unwrap();
    let channel = keys::event_channel(0, "task.multi");
    let envelope =
        |body: &str| shared::protocol::event::envelope(body, "intruso@h", "task.multi").to_json();
    let huge = "x".repeat(300_000);
    let mut hostile = vec![
        "garbage".to_owned(),
        "{".repeat(100_000),
        "x".repeat(3 * 1024 * 1024),
        envelope("[1, null, \"a\", {}]"),
        envelope(
            &json!([{"type": "task-failed", "uuid": huge, "exception": huge,
                           "traceback": huge, "hostname": huge}])
            .to_string(),
        ),
        envelope(
            &json!([{"type": "task-received", "uuid": "n", "name": {"nested": [1]},
                           "runtime": "NaN", "retries": -1}])
            .to_string(),
        ),
    ];
    // A flood of distinct task names, more than the cap.
    for chunk in 0..30 {
        let batch: Vec<Value> = (0..24)
            .map(|i| {
                let n = chunk * 24 + i;
                json!({"type": "task-received", "uuid": format!("flood-{n}"),
                       "name": format!("nombre-{n}"), "hostname": "intruso@h"})
            })
            .collect();
        hostile.push(envelope(&json!(batch).to_string()));
    }
    for payload in &hostile {
        redis.publish(&channel, payload).await.unwrap();
    }
    // Still counting real tasks after all that.
    let id = run(&s.client, "noop", vec![json!(1)]).await;
    let text = metrics_until(&s.monitor, "the noop after the hostile events", |t| {
        value(t, "celery_task_succeeded_total", &labels("noop")) == Some(2.0)
    })
    .await;
    let (status, t) = tarea(&s.monitor, &id).await;
    assert_eq!(
        (status, t["estado"].as_str()),
        (200, Some("SUCCESS")),
        "{t}"
    );
    // Label values are capped: the flood's names beyond the cap share one series.
    let flood_series = text
        .lines()
        .filter(|l| l.starts_with("celery_task_received_total{") && l.contains("intruso@h"))
        .count();
    assert!(
        flood_series <= monitor_service::tasks::MAX_NAMES + 1,
        "{flood_series}"
    );
    assert!(text.contains(r#"name="_other""#));
    // No label holds a huge text.
    assert!(
        text.lines().all(|l| l.len() < 2000),
        "a huge line in /metrics"
    );
    s.monitor.process.assert_alive();
    let (status, _) = s.monitor.get("/health").await;
    assert_eq!(status, 200);
    let (status, _) = tarea(&s.monitor, "flood-3").await;
    assert_eq!(status, 200);
}

/// A Python Celery worker started with `-E` is counted and shown the same way: the monitor
/// reads Celery's own task events, not only ours.
#[tokio::test]
async fn a_python_celery_workers_task_events_are_counted_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let stack = testkit::queue::Stack::on(RedisServer::start_tcp());
    let _py = testkit::celery::PyWorker::start(
        &stack,
        &testkit::celery::repository().join("tests/python"),
        "celery_app",
        &["-c", "1", "-n", "py@tareas", "-E"],
        &[],
    )
    .await;
    let monitor = Monitor::start(&stack.server, &[], dir.path()).await;
    metrics_until(&monitor, "the Python worker's heartbeat", |t| {
        t.lines().any(|l| l == "monitor_workers_alive 1")
    })
    .await;
    let id = run(&stack.client, "add", vec![json!(20), json!(22)]).await;
    let add = format!(r#"hostname="py@tareas",name="add",queue_name="{QUEUE}""#);
    metrics_until(&monitor, "the Python worker's add", |t| {
        value(t, "celery_task_succeeded_total", &add) == Some(1.0)
            && value(t, "celery_task_runtime_count", &add) == Some(1.0)
    })
    .await;
    let (status, t) = tarea(&monitor, &id).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["estado"], "SUCCESS");
    assert_eq!(t["nombre"], "add");
    assert_eq!(t["resultado"], json!(42));
    assert_eq!(t["trabajador"], "py@tareas");
    assert_eq!(t["fuentes"], json!(["resultado", "eventos"]));
    assert!(
        t["iniciada"].is_string() && t["duracion_s"].as_f64().unwrap() > 0.0,
        "{t}"
    );
}
