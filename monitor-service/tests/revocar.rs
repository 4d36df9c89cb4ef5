//! `POST /monitor/tareas/{id}/revocar` through the real monitor-service binary and a real
//! demo-worker sending task events: with `MONITOR_TOKEN` configured (and the token), a task
//! waiting for its eta and one waiting for a busy worker's only slot are revoked and never run,
//! a running `sleep` is terminated, both show REVOKED in `GET /monitor/tareas/{id}` and in the
//! result backend, a finished task is left as it was, and malformed requests are 400s. Without
//! `MONITOR_TOKEN` the route refuses (403) and the task runs.

mod common;

use std::time::Duration;

use common::Monitor;
use redis::AsyncCommands;
use reqwest::Method;
use serde_json::{json, Value};
use shared::protocol::{ResultMeta, TaskState};
use shared::{keys, Client, Redis, SendOptions};
use testkit::demo::{runs_in_logs, spawn_demo_worker, COUNT_RUNS};
use testkit::queue::QUEUE;
use testkit::{eventually, Process, RedisServer};

const TOKEN: &str = "token-de-prueba-de-la-revocacion-0123456789";
const WORKER: &str = "revocar@test";
const LIMIT: Duration = Duration::from_secs(20);

struct Setup {
    client: Client,
    monitor: Monitor,
    worker: Process,
    redis: RedisServer,
    _dir: tempfile::TempDir,
}

/// Redis, a demo-worker with one slot sending task events, the monitor (with `MONITOR_TOKEN`
/// if `token`), and a wait until the monitor hears the worker: from then on it hears its task
/// events too.
async fn setup(token: Option<&str>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let worker = spawn_demo_worker(
        &redis.url(),
        WORKER,
        &[("TASK_EVENTS", "true"), ("CONCURRENCY", "1"), COUNT_RUNS],
        dir.path(),
    );
    let mut env = vec![("TARGETS", "Prueba:pings:obtener_estado")];
    env.extend(token.map(|t| ("MONITOR_TOKEN", t)));
    let monitor = Monitor::start(&redis, &env, dir.path()).await;
    // `/metrics` is behind the token too, when there is one.
    let heard = eventually(LIMIT, Duration::from_millis(50), || async {
        let mut request = monitor.request(Method::GET, "/metrics");
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let text = request.send().await.unwrap().text().await.unwrap();
        common::value(&text, "monitor_workers_alive") == Some(1.0)
    })
    .await;
    assert!(
        heard,
        "the monitor never heard the worker: {}",
        monitor.process.log_tail(10)
    );
    let client = Client::new(Redis::from_url(&redis.url()).unwrap(), QUEUE);
    Setup {
        client,
        monitor,
        worker,
        redis,
        _dir: dir,
    }
}

impl Setup {
    async fn send(&self, name: &str, args: Vec<Value>, options: SendOptions) -> String {
        self.client
            .send_task(name, args, Default::default(), options)
            .await
            .unwrap()
    }

    /// `POST /monitor/tareas/{id}/revocar{query}` with `body` (none if null): status and body.
    async fn revocar(
        &self,
        id: &str,
        query: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let path = format!("/monitor/tareas/{id}/revocar{query}");
        let mut request = self.monitor.request(Method::POST, &path);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Waits until `GET /monitor/tareas/{id}` says `estado` (with the token, if any).
    async fn until_state(&self, id: &str, estado: &str, token: Option<&str>) -> Value {
        let path = format!("/monitor/tareas/{id}");
        let last = std::cell::RefCell::new(Value::Null);
        let held = eventually(LIMIT, Duration::from_millis(50), || async {
            let mut request = self.monitor.request(Method::GET, &path);
            if let Some(t) = token {
                request = request.bearer_auth(t);
            }
            let body: Value = request.send().await.unwrap().json().await.unwrap();
            let ok = body["estado"] == estado;
            *last.borrow_mut() = body;
            ok
        })
        .await;
        let last = last.into_inner();
        assert!(
            held,
            "{id} never became {estado}: {last}\nworker: {}",
            self.worker.log_tail(20)
        );
        last
    }

    async fn stored(&self, id: &str) -> ResultMeta {
        self.client.backend().get(id).await.unwrap()
    }

    /// Whether the worker logged the revocation of `id` (its control handler ran).
    fn worker_heard_revoke(&self, id: &str) -> bool {
        self.worker.json_log().iter().any(|v| {
            v["message"] == "tasks revoked" && v["ids"].as_str().is_some_and(|s| s.contains(id))
        })
    }
}

/// The reason a REVOKED result gives (`revoked`, `expired`, `terminated`).
fn reason(meta: &ResultMeta) -> String {
    meta.exception().map(|e| e.message()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_token_waiting_tasks_are_revoked_and_a_running_one_terminated() {
    let s = setup(Some(TOKEN)).await;
    let token = Some(TOKEN);

    // A task held for its eta; then the worker's one slot taken by a long sleep, and behind it
    // a task that would run as soon as the slot frees.
    let later = s
        .send(
            "noop",
            vec![json!("luego")],
            SendOptions {
                countdown: Some(Duration::from_secs(300)),
                ..Default::default()
            },
        )
        .await;
    s.until_state(&later, "RECEIVED", token).await;
    let blocker = s
        .send("sleep", vec![json!(60_000)], SendOptions::default())
        .await;
    s.until_state(&blocker, "STARTED", token).await;
    let behind = s
        .send("noop", vec![json!("detras")], SendOptions::default())
        .await;

    for id in [&behind, &later] {
        let (status, body) = s.revocar(id, "", None, token).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(
            body,
            json!({"revocada": true, "tarea_id": id, "terminar": false, "senal": null})
        );
    }
    // The one held for its eta is dropped at once; the other still waits on the queue (the
    // busy worker took nothing more), the revocation kept in Redis for whoever takes it.
    let shown = s.until_state(&later, "REVOKED", token).await;
    assert!(shown["iniciada"].is_null(), "{shown}");
    // Only a revoke: the sleep still runs.
    assert_ne!(s.stored(&blocker).await.status, TaskState::Revoked);

    // Terminated, by the body's options (which win over the query's), with Celery's spelling
    // of a signal.
    let (status, body) = s
        .revocar(
            &blocker,
            "?terminar=false",
            Some(r#"{"terminar": true, "senal": "kill"}"#),
            token,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body,
        json!({"revocada": true, "tarea_id": blocker, "terminar": true, "senal": "SIGKILL"})
    );
    s.until_state(&blocker, "REVOKED", token).await;
    let meta = s.stored(&blocker).await;
    assert_eq!(meta.status, TaskState::Revoked, "{meta:?}");
    assert_eq!(reason(&meta), "terminated", "{meta:?}");

    // With the slot free the worker takes the task that waited behind the sleep, and does not
    // run it either.
    for id in [&behind, &later] {
        let shown = s.until_state(id, "REVOKED", token).await;
        assert!(shown["iniciada"].is_null(), "{shown}");
        let meta = s.stored(id).await;
        assert_eq!(meta.status, TaskState::Revoked, "{meta:?}");
        assert_eq!(reason(&meta), "revoked", "{meta:?}");
    }

    // The slot is free: a new task runs, and neither revoked task ever did.
    let after = s.send("noop", vec![json!(1)], SendOptions::default()).await;
    s.until_state(&after, "SUCCESS", token).await;
    let runs = runs_in_logs(&[s.worker.log_path().to_path_buf()]);
    assert_eq!(runs.get(&after), Some(&1), "{runs:?}");
    for id in [&behind, &later] {
        assert_eq!(runs.get(id), None, "{id} ran: {runs:?}");
    }

    // Revoking a finished task is harmless, as in Celery: 202, and it stays as it ended.
    let (status, body) = s.revocar(&after, "?terminar=true", None, token).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["senal"], "SIGTERM");
    let heard = eventually(LIMIT, Duration::from_millis(50), || async {
        s.worker_heard_revoke(&after)
    })
    .await;
    assert!(heard, "{}", s.worker.log_tail(20));
    assert_eq!(s.stored(&after).await.status, TaskState::Success);

    // Each revoke is logged with who asked.
    let lines = s.monitor.log_lines("task revoked");
    assert_eq!(lines.len(), 4, "{lines:?}");
    let terminated = lines.iter().find(|l| l.contains(&blocker)).unwrap();
    for part in ["127.0.0.1", "SIGKILL", "terminate=true"] {
        assert!(terminated.contains(part), "{part} in {terminated}");
    }

    // Malformed requests are refused before anything is sent.
    for (id, query, body, code) in [
        ("x".repeat(129), "", None, "id_invalido"),
        ("a%20b".to_owned(), "", None, "id_invalido"),
        (behind.clone(), "?senal=SIGNADA", None, "senal_invalida"),
        (
            behind.clone(),
            "",
            Some(r#"{"terminar": "si"}"#),
            "cuerpo_invalido",
        ),
        (behind.clone(), "", Some("no es json"), "cuerpo_invalido"),
        (
            behind.clone(),
            "?terminar=quizas",
            None,
            "consulta_invalida",
        ),
    ] {
        let (status, answer) = s.revocar(&id, query, body, token).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some(code)),
            "{id}{query} {answer}"
        );
    }
    assert_eq!(s.monitor.log_lines("task revoked").len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_monitor_token_revoking_is_refused_and_the_task_runs() {
    let s = setup(None).await;
    let id = s
        .send(
            "noop",
            vec![json!("sigue")],
            SendOptions {
                countdown: Some(Duration::from_secs(1)),
                ..Default::default()
            },
        )
        .await;
    let (status, body) = s.revocar(&id, "?terminar=true", None, None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "revocacion_deshabilitada");
    assert!(body["detalle"].as_str().unwrap().contains("MONITOR_TOKEN"));

    s.until_state(&id, "SUCCESS", None).await;
    assert_eq!(s.stored(&id).await.status, TaskState::Success);
    // Nothing revoked anywhere, nothing logged as revoked.
    let redis = Redis::from_url(&s.redis.url()).unwrap();
    let kept: usize = redis
        .conn()
        .await
        .unwrap()
        .zcard(keys::REVOKED)
        .await
        .unwrap();
    assert_eq!(kept, 0);
    assert!(s.monitor.log_lines("task revoked").is_empty());
    assert!(!s.worker_heard_revoke(&id));
}
