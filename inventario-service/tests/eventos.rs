//! `TASK_SENT_EVENTS`: the service as a process announces each task it sends with Celery's
//! `task-sent` event, as a Celery client with `task_send_sent_event` does (one message per
//! event on `/0.celeryev/task.sent`), and sends none unless asked.

mod common;

use std::time::Duration;

use base64::Engine;
use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};
use shared::events::{task_feed, TaskEventKind};
use shared::Redis;
use testkit::{Process, RedisServer};

const LIMIT: Duration = Duration::from_secs(30);

/// A private Redis, a subscriber to every event message of its database 0, and the service as
/// a process on it.
struct Montaje {
    _redis_server: RedisServer,
    redis: Redis,
    _dir: tempfile::TempDir,
    mensajes: Box<dyn Stream<Item = redis::Msg> + Unpin + Send>,
    servicio: Process,
    base: String,
}

impl Montaje {
    /// The service runs with `env` besides its token secret; the subscriber listens before it
    /// starts.
    async fn iniciar(env: &[(&str, String)]) -> Self {
        let redis_server = RedisServer::start_tcp();
        let redis = Redis::from_url(&redis_server.url()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut pubsub = redis.pubsub().await.expect("pub/sub connection");
        pubsub
            .psubscribe("/0.celeryev/*")
            .await
            .expect("psubscribe");
        let mut all = vec![("JWT_SECRET", common::SECRETO.to_owned())];
        all.extend(env.iter().cloned());
        let (servicio, base) = common::servicio(&redis_server, dir.path(), &all).await;
        Montaje {
            _redis_server: redis_server,
            redis,
            _dir: dir,
            mensajes: Box::new(pubsub.into_on_message()),
            servicio,
            base,
        }
    }

    /// Sends one movement with a token; returns the id of the task it queued.
    async fn movimiento(&self) -> String {
        let r = reqwest::Client::new()
            .post(format!("{}/inventario/1/movimientos", self.base))
            .bearer_auth(common::token(common::SUB))
            .json(&json!({"tipo": "entrada", "cantidad": 2}))
            .send()
            .await
            .expect("POST movimientos");
        assert_eq!(r.status(), 202);
        let body: Value = r.json().await.expect("JSON answer");
        body["tarea_id"].as_str().expect("tarea_id").to_owned()
    }

    /// SIGTERM, and a clean exit: the service flushes its events before it exits.
    async fn detener(&mut self) {
        self.servicio.signal(libc::SIGTERM);
        let salida = self
            .servicio
            .wait_exit(LIMIT)
            .await
            .expect("exits after SIGTERM");
        assert!(salida.success(), "{salida:?}\n{}", self.servicio.log());
    }

    async fn siguiente(&mut self) -> redis::Msg {
        tokio::time::timeout(LIMIT, self.mensajes.next())
            .await
            .expect("a message within the limit")
            .expect("the stream goes on")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_task_sent_events_each_task_is_announced_as_celery_announces_it() {
    let mut m = Montaje::iniciar(&[("TASK_SENT_EVENTS", "true".into())]).await;
    let id = m.movimiento().await;

    let msg = m.siguiente().await;
    assert_eq!(msg.get_channel_name(), "/0.celeryev/task.sent");
    // The body is one event, not a list (Celery's client does not batch).
    let envelope: Value = serde_json::from_slice(msg.get_payload_bytes()).unwrap();
    assert_eq!(
        envelope["properties"]["delivery_info"],
        json!({"exchange": "celeryev", "routing_key": "task.sent"})
    );
    let body = base64::engine::general_purpose::STANDARD
        .decode(envelope["body"].as_str().unwrap())
        .unwrap();
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert!(event.is_object(), "{event}");
    assert_eq!(event["type"], "task-sent");
    assert_eq!(event["uuid"], id.as_str());
    assert_eq!(event["queue"], common::QUEUE);
    assert_eq!(event["routing_key"], common::QUEUE);
    assert_eq!(event["exchange"], "");
    assert!(
        event["hostname"].as_str().unwrap().starts_with("gen"),
        "{event}"
    );
    // Our own listener reads it as Celery's receivers do: a sent task with its queue.
    let read = task_feed::decode(msg.get_payload_bytes()).unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].kind, TaskEventKind::Sent);
    assert_eq!(read[0].id, id);
    assert_eq!(read[0].queue.as_deref(), Some(common::QUEUE));
    assert_eq!(
        read[0].name.as_deref(),
        Some(inventario::tareas::APLICAR_MOVIMIENTO)
    );
    m.detener().await;
}

/// Off by default, as in Celery. The service flushes its events before it exits, so once it
/// has exited after a movement, a marker published then is the first thing the subscriber
/// sees if, and only if, no event was sent.
#[tokio::test(flavor = "multi_thread")]
async fn without_task_sent_events_nothing_is_announced() {
    let mut m = Montaje::iniciar(&[]).await;
    m.movimiento().await;
    m.detener().await;

    m.redis
        .publish("/0.celeryev/marca", "fin")
        .await
        .expect("PUBLISH");
    let msg = m.siguiente().await;
    assert_eq!(
        msg.get_channel_name(),
        "/0.celeryev/marca",
        "an event was sent: {:?}",
        String::from_utf8_lossy(msg.get_payload_bytes())
    );
}
