//! `TASK_SENT_EVENTS`: the service as a process announces each task it sends with Celery's
//! `task-sent` event, as a Celery client with `task_send_sent_event` does (one message per
//! event on `/0.celeryev/task.sent`), and sends none unless asked.

mod common;

use std::time::Duration;

use base64::Engine;
use futures_util::StreamExt;
use serde_json::{json, Value};
use shared::events::{task_feed, TaskEventKind};
use shared::Redis;
use testkit::RedisServer;

const LIMIT: Duration = Duration::from_secs(30);

/// Sends one movement with a token; returns the id of the task it queued.
async fn movimiento(base: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("{base}/inventario/1/movimientos"))
        .bearer_auth(common::token(common::SUB))
        .json(&json!({"tipo": "entrada", "cantidad": 2}))
        .send()
        .await
        .expect("POST movimientos");
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.expect("JSON answer");
    body["tarea_id"].as_str().expect("tarea_id").to_owned()
}

/// Every event message of database 0, from now on.
async fn eventos(redis: &Redis) -> impl futures_util::Stream<Item = redis::Msg> + Unpin {
    let mut pubsub = redis.pubsub().await.expect("pub/sub connection");
    pubsub
        .psubscribe("/0.celeryev/*")
        .await
        .expect("psubscribe");
    pubsub.into_on_message()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_task_sent_events_each_task_is_announced_as_celery_announces_it() {
    let redis_server = RedisServer::start_tcp();
    let redis = Redis::from_url(&redis_server.url()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut mensajes = eventos(&redis).await;
    let (mut servicio, base) = common::servicio(
        &redis_server,
        dir.path(),
        &[
            ("JWT_SECRET", common::SECRETO.into()),
            ("TASK_SENT_EVENTS", "true".into()),
        ],
    )
    .await;
    let id = movimiento(&base).await;

    let msg = tokio::time::timeout(LIMIT, mensajes.next())
        .await
        .expect("an event within the limit")
        .expect("the stream goes on");
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

    servicio.signal(libc::SIGTERM);
    let salida = servicio
        .wait_exit(LIMIT)
        .await
        .expect("exits after SIGTERM");
    assert!(salida.success(), "{salida:?}\n{}", servicio.log());
}

/// Off by default, as in Celery. The service flushes its events before it exits, so once it
/// has exited after a movement, a marker published then is the first thing the subscriber
/// sees if, and only if, no event was sent.
#[tokio::test(flavor = "multi_thread")]
async fn without_task_sent_events_nothing_is_announced() {
    let redis_server = RedisServer::start_tcp();
    let redis = Redis::from_url(&redis_server.url()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut mensajes = eventos(&redis).await;
    let (mut servicio, base) = common::servicio(
        &redis_server,
        dir.path(),
        &[("JWT_SECRET", common::SECRETO.into())],
    )
    .await;
    movimiento(&base).await;
    servicio.signal(libc::SIGTERM);
    let salida = servicio
        .wait_exit(LIMIT)
        .await
        .expect("exits after SIGTERM");
    assert!(salida.success(), "{salida:?}\n{}", servicio.log());

    redis
        .publish("/0.celeryev/marca", "fin")
        .await
        .expect("PUBLISH");
    let msg = tokio::time::timeout(LIMIT, mensajes.next())
        .await
        .expect("the marker within the limit")
        .expect("the stream goes on");
    assert_eq!(
        msg.get_channel_name(),
        "/0.celeryev/marca",
        "an event was sent: {:?}",
        String::from_utf8_lossy(msg.get_payload_bytes())
    );
}
