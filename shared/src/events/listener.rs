//! Receiving worker events: one pub/sub connection per listener, kept up across Redis
//! outages, feeding a [`WorkerTable`].

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::connection::{Outage, Redis};
use crate::error::{QueueError, Result};
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
        let table = WorkerTable::default();
        let stop = shutdown.child_token();
        let (connected_tx, connected) = watch::channel(false);
        tokio::spawn(listen(redis, table.clone(), connected_tx, stop.clone()));
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
    connected: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let mut outage = Outage::new("event-listener");
    let pattern = keys::worker_events_pattern(redis.db());
    loop {
        let subscribed = tokio::select! {
            _ = stop.cancelled() => return,
            r = subscribe(&redis, &pattern) => r,
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

async fn subscribe(redis: &Redis, pattern: &str) -> Result<redis::aio::PubSub> {
    let mut pubsub = redis.pubsub().await?;
    pubsub.psubscribe(pattern).await?;
    Ok(pubsub)
}
