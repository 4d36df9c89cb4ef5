//! Receiving events: one pub/sub connection per listener, kept up across Redis outages,
//! feeding a [`WorkerTable`] with worker events and, when asked, a [`TaskEventHandler`] with
//! task events, so a monitor watching both needs no second connection.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::connection::{Outage, Redis};
use crate::error::{QueueError, Result};
use crate::events::task_feed::{self, TaskEventHandler};
use crate::events::WorkerTable;
use crate::keys;
use crate::protocol::WorkerEvent;

/// Listens to every worker event of one Redis database (PSUBSCRIBE `/<db>.celeryev/worker.*`)
/// on a pub/sub connection of its own, and keeps a [`WorkerTable`]. It reconnects by itself
/// after a Redis outage (logged once by [`Outage`]); events sent while it was disconnected are
/// lost, as with any pub/sub listener, but the next heartbeat (every `freq`) refills the table.
#[derive(Clone)]
pub struct EventListener {
    table: WorkerTable,
    connected: watch::Receiver<bool>,
    _stop: Arc<tokio_util::sync::DropGuard>,
}

impl EventListener {
    /// Starts listening in the background until `shutdown` is cancelled or the last clone is
    /// dropped. Must be called inside a tokio runtime.
    pub fn start(redis: Redis, shutdown: CancellationToken) -> Self {
        Self::spawn(redis, shutdown, None)
    }

    /// Like [`EventListener::start`], and on the same connection also listens to task events
    /// (PSUBSCRIBE `/<db>.celeryev/task.*`: `task.multi` batches and single events such as a
    /// client's `task-sent`), handing each to `on_task`. A message that cannot be read, or an
    /// item in it that is not a task event, is skipped (see [`task_feed`]); the worker table
    /// is fed exactly as by [`EventListener::start`].
    pub fn start_with_tasks(
        redis: Redis,
        shutdown: CancellationToken,
        on_task: TaskEventHandler,
    ) -> Self {
        Self::spawn(redis, shutdown, Some(on_task))
    }

    fn spawn(redis: Redis, shutdown: CancellationToken, on_task: Option<TaskEventHandler>) -> Self {
        let table = WorkerTable::default();
        let stop = shutdown.child_token();
        let (connected_tx, connected) = watch::channel(false);
        tokio::spawn(listen(
            redis,
            table.clone(),
            on_task,
            connected_tx,
            stop.clone(),
        ));
        EventListener {
            table,
            connected,
            _stop: Arc::new(stop.drop_guard()),
        }
    }

    pub fn table(&self) -> &WorkerTable {
        &self.table
    }

    /// Waits until the subscription is confirmed by Redis (events published from then on are
    /// seen), or `timeout`.
    pub async fn ready(&self, timeout: Duration) -> bool {
        let mut connected = self.connected.clone();
        let waited = tokio::time::timeout(timeout, connected.wait_for(|c| *c)).await;
        matches!(waited, Ok(Ok(_)))
    }
}

async fn listen(
    redis: Redis,
    table: WorkerTable,
    on_task: Option<TaskEventHandler>,
    connected: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let mut outage = Outage::new("event-listener");
    let mut patterns = vec![keys::worker_events_pattern(redis.db())];
    // Task events are told from worker events by their channel's prefix.
    let task_prefix = keys::event_channel(redis.db(), "task.");
    if on_task.is_some() {
        patterns.push(format!("{task_prefix}*"));
    }
    loop {
        let subscribed = tokio::select! {
            _ = stop.cancelled() => return,
            r = subscribe(&redis, &patterns) => r,
        };
        let mut stream = match subscribed {
            Ok(pubsub) => pubsub.into_on_message(),
            Err(e) => {
                let pause = outage.failed(&e);
                tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(pause) => continue }
            }
        };
        outage.ok();
        connected.send_replace(true);
        loop {
            let msg = tokio::select! {
                _ = stop.cancelled() => return,
                msg = stream.next() => msg,
            };
            let Some(msg) = msg else { break };
            if let Some(on_task) = &on_task {
                if msg.get_channel_name().starts_with(&task_prefix) {
                    match task_feed::decode(msg.get_payload_bytes()) {
                        Ok(events) => events.into_iter().for_each(|e| on_task(e)),
                        Err(error) => {
                            tracing::debug!(channel = msg.get_channel_name(), %error, "undecodable task event ignored")
                        }
                    }
                    continue;
                }
            }
            match WorkerEvent::decode(msg.get_payload_bytes()) {
                Ok(event) => table.record(event),
                Err(error) => {
                    tracing::debug!(channel = msg.get_channel_name(), %error, "undecodable worker event ignored")
                }
            }
        }
        connected.send_replace(false);
        let pause = outage.failed(&QueueError::Pool("event pub/sub connection lost".into()));
        tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(pause) => {} }
    }
}

async fn subscribe(redis: &Redis, patterns: &[String]) -> Result<redis::aio::PubSub> {
    let mut pubsub = redis.pubsub().await?;
    pubsub.psubscribe(patterns).await?;
    Ok(pubsub)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::events::{EventPublisher, TaskEvent, TaskEventKind, WorkerCounts};
    use crate::protocol::event::envelope;

    /// One connection carries both kinds: garbage and a huge message on the task channel are
    /// skipped, the listener goes on, and worker events still reach the table.
    #[tokio::test]
    async fn task_events_and_worker_events_share_one_listener() {
        let server = testkit::RedisServer::start();
        let redis = Redis::from_url(&server.url()).unwrap();
        let seen: Arc<Mutex<Vec<TaskEvent>>> = Arc::default();
        let sink = seen.clone();
        let listener = EventListener::start_with_tasks(
            redis.clone(),
            CancellationToken::new(),
            Arc::new(move |e| sink.lock().unwrap().push(e)),
        );
        assert!(listener.ready(Duration::from_secs(5)).await);
        let channel = keys::event_channel(redis.db(), "task.multi");
        let batch = r#"[{"type": "task-started", "uuid": "t1", "hostname": "w@h"}]"#;
        let good = envelope(batch, "w@h", "task.multi").to_json();
        for payload in [
            "garbage".to_owned(),
            "x".repeat(2 * 1024 * 1024),
            envelope("{\"type\": 1}", "w@h", "task.multi").to_json(),
            good,
        ] {
            redis.publish(&channel, &payload).await.unwrap();
        }
        EventPublisher::new(redis.clone(), "w@h", 2.0)
            .publish("worker-heartbeat", WorkerCounts::default())
            .await
            .unwrap();
        let arrived = testkit::eventually(
            Duration::from_secs(5),
            Duration::from_millis(10),
            || async { listener.table().is_alive("w@h") == Some(true) },
        )
        .await;
        assert!(arrived, "the worker table is still fed");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(
            (seen[0].kind, seen[0].id.as_str()),
            (TaskEventKind::Started, "t1")
        );
    }
}
