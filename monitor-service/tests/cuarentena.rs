//! The quarantine through the real monitor-service binary: messages a real demo-worker set
//! aside are listed by `GET /monitor/cuarentena`; `POST /monitor/cuarentena/{id}/reencolar`
//! is refused without `MONITOR_TOKEN` configured, and with it (and the token) puts the message
//! back on its list, once however many times it is asked, logs who asked, and a worker that now
//! accepts the message runs it.

mod common;

use std::time::Duration;

use common::Monitor;
use redis::AsyncCommands;
use reqwest::Method;
use serde_json::{json, Value};
use shared::protocol::TaskState;
use shared::{keys, Client, Redis, SendOptions};
use testkit::demo::spawn_demo_worker;
use testkit::queue::QUEUE;
use testkit::{eventually, RedisServer};

const TOKEN: &str = "token-de-prueba-de-la-cuarentena-0123456789";

/// The real monitor, its pings elsewhere (this test counts what waits on the queue), with
/// `MONITOR_TOKEN` if `token`.
async fn start(redis: &RedisServer, token: Option<&str>, dir: &std::path::Path) -> Monitor {
    let mut env = vec![("TARGETS", "Prueba:pings:obtener_estado")];
    env.extend(token.map(|t| ("MONITOR_TOKEN", t)));
    Monitor::start(redis, &env, dir).await
}

async fn send(request: reqwest::RequestBuilder, token: Option<&str>) -> (u16, Value) {
    let request = match token {
        Some(t) => request.bearer_auth(t),
        None => request,
    };
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn listar(monitor: &Monitor, token: Option<&str>) -> (u16, Value) {
    send(
        monitor.request(Method::GET, "/monitor/cuarentena?n=10"),
        token,
    )
    .await
}

async fn reencolar(monitor: &Monitor, id: &str, token: Option<&str>) -> (u16, Value) {
    let path = format!("/monitor/cuarentena/{id}/reencolar");
    send(monitor.request(Method::POST, &path), token).await
}

async fn llen(redis: &Redis, key: &str) -> usize {
    redis.conn().await.unwrap().llen(key).await.unwrap()
}

/// What waits on the queue, from the end workers take last to the one they take next.
async fn waiting(redis: &Redis) -> Vec<String> {
    redis
        .conn()
        .await
        .unwrap()
        .lrange(QUEUE, 0, -1)
        .await
        .unwrap()
}

fn task_id(message: &str) -> Option<String> {
    let v: Value = serde_json::from_str(message).ok()?;
    v["headers"]["id"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn a_quarantined_message_is_listed_requeued_once_and_then_runs() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start();
    let redis = Redis::from_url(&server.url()).unwrap();
    let client = Client::new(redis.clone(), QUEUE);

    // A worker that takes nothing over 1 KiB: a large noop goes to quarantine, as does a
    // message that is not JSON at all.
    let mut strict = spawn_demo_worker(
        &server.url(),
        "estricto@test",
        &[("MAX_MESSAGE_BYTES", "1024")],
        dir.path(),
    );
    let big = client
        .send_task(
            "noop",
            vec![json!("x".repeat(3000))],
            Default::default(),
            SendOptions::default(),
        )
        .await
        .unwrap();
    let _: () = redis
        .conn()
        .await
        .unwrap()
        .lpush(QUEUE, "esto no es json")
        .await
        .unwrap();
    let both = eventually(
        Duration::from_secs(15),
        Duration::from_millis(20),
        || async { llen(&redis, keys::QUARANTINE).await == 2 },
    )
    .await;
    assert!(
        both,
        "the worker never quarantined both: {}",
        strict.log_tail(20)
    );

    // Listed by an open monitor, newest first; requeueing is refused there.
    let open = start(&server, None, dir.path()).await;
    let (status, page) = listar(&open, None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        (page["total"].as_u64(), page["descartados"].as_u64()),
        (Some(2), Some(0))
    );
    let entradas = page["entradas"].as_array().unwrap();
    assert_eq!(entradas.len(), 2);
    let large = entradas
        .iter()
        .find(|e| e["tarea_id"] == json!(big))
        .unwrap_or_else(|| panic!("{page}"));
    assert_eq!(large["tarea"], "noop");
    assert_eq!(large["lista"], QUEUE);
    assert!(
        large["motivo"].as_str().unwrap().contains("over the limit"),
        "{large}"
    );
    assert!(
        large["consumidor"]
            .as_str()
            .unwrap()
            .contains("estricto@test"),
        "{large}"
    );
    assert!(chrono::DateTime::parse_from_rfc3339(large["en_cuarentena"].as_str().unwrap()).is_ok());
    let shown = large["mensaje"].as_str().unwrap();
    assert!(shown.len() <= 4096 && shown.starts_with('{'), "{shown}");
    let id = large["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 40);
    let garbage = entradas
        .iter()
        .find(|e| e["mensaje"] == "esto no es json")
        .unwrap();
    assert_eq!(
        (&garbage["tarea"], &garbage["tarea_id"]),
        (&Value::Null, &Value::Null)
    );
    let garbage_id = garbage["id"].as_str().unwrap().to_owned();

    let (status, e) = reencolar(&open, &id, None).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (403, Some("reencolado_deshabilitado")),
        "{e}"
    );
    assert!(e["detalle"].is_string());
    assert_eq!(
        llen(&redis, keys::QUARANTINE).await,
        2,
        "a refused requeue changed nothing"
    );

    // The worker that refused it stops; a monitor with a token may requeue.
    strict.signal(libc::SIGTERM);
    assert!(strict.wait_exit(Duration::from_secs(15)).await.is_some());
    let guarded = start(&server, Some(TOKEN), dir.path()).await;
    let (status, e) = reencolar(&guarded, &id, None).await;
    assert_eq!(status, 401, "{e}");
    let (status, e) = reencolar(&guarded, &id, Some("otro-token")).await;
    assert_eq!(status, 401, "{e}");
    let (status, done) = reencolar(&guarded, &id, Some(TOKEN)).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done, json!({"reencolada": true, "lista": QUEUE}));
    let queued = waiting(&redis).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(task_id(&queued[0]).as_deref(), Some(big.as_str()));
    assert_eq!(llen(&redis, keys::QUARANTINE).await, 1);
    let (status, again) = reencolar(&guarded, &id, Some(TOKEN)).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (404, Some("entrada_desconocida")),
        "{again}"
    );
    for bogus in ["nada", &"0".repeat(40), &"z".repeat(40)] {
        let (status, e) = reencolar(&guarded, bogus, Some(TOKEN)).await;
        assert_eq!(
            (status, e["error"].as_str()),
            (404, Some("entrada_desconocida")),
            "{e}"
        );
    }

    // Two requeues of one entry at once: one requeues, the other finds nothing.
    let (a, b) = tokio::join!(
        reencolar(&guarded, &garbage_id, Some(TOKEN)),
        reencolar(&guarded, &garbage_id, Some(TOKEN))
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 404], "{a:?} {b:?}");
    let queued = waiting(&redis).await;
    assert_eq!(queued.len(), 2);
    // At the end workers take next.
    assert_eq!(queued[1], "esto no es json");
    assert_eq!(llen(&redis, keys::QUARANTINE).await, 0);

    // Each requeue is logged with who asked, the entry, the task and the list.
    let logged = eventually(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async {
            guarded
                .process
                .log()
                .lines()
                .filter(|l| l.contains("quarantined message requeued"))
                .count()
                == 2
        },
    )
    .await;
    let log = guarded.process.log();
    assert!(logged, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("quarantined message requeued") && l.contains(&id))
        .unwrap();
    for part in ["127.0.0.1", big.as_str(), "noop", QUEUE] {
        assert!(line.contains(part), "{part} in {line}");
    }

    // A worker that accepts larger messages runs it; the one that is not JSON goes back to
    // quarantine.
    let _lenient = spawn_demo_worker(&server.url(), "tolerante@test", &[], dir.path());
    let meta = client
        .result(&big)
        .wait(Duration::from_secs(15))
        .await
        .unwrap();
    assert_eq!(meta.status, TaskState::Success);
    assert_eq!(meta.result, json!("x".repeat(3000)));
    let back = eventually(
        Duration::from_secs(15),
        Duration::from_millis(20),
        || async { llen(&redis, keys::QUARANTINE).await == 1 },
    )
    .await;
    assert!(back);
    let (status, page) = listar(&guarded, Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(page["entradas"][0]["mensaje"], "esto no es json");
}
