//! The result backend: task results stored the way Celery's Redis backend stores them
//! (`celery-task-meta-<id>`, SETEX, PUBLISH on the same channel), and waiting for them.
//!
//! Waiting never polls. A [`ResultWaiter`] owns one pub/sub connection for the whole process
//! and demultiplexes results by task id, so thousands of concurrent waits cost one connection.
//! A waiter subscribes, and once Redis has confirmed the subscription reads the stored key once,
//! so a result can neither arrive unseen nor be missed because it was stored already (a result
//! is stored before it is published). The task may be sent while the subscription is on its
//! way. If the connection drops, the waiter reconnects, subscribes again to every awaited
//! channel and reads their keys, so results published during the outage are still delivered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::PubSubSink;
use redis::AsyncCommands;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::broker::COMPLETE;
use crate::connection::{Outage, Redis};
use crate::error::{QueueError, Result};
use crate::keys;
use crate::protocol::ResultMeta;

/// Celery's default result expiry: one day.
pub const DEFAULT_RESULT_TTL: Duration = Duration::from_secs(86_400);

/// Stores and reads task results.
#[derive(Clone)]
pub struct Backend {
    redis: Redis,
    ttl: Duration,
}

impl Backend {
    pub fn new(redis: Redis, ttl: Duration) -> Self {
        Backend { redis, ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Stores a result and announces it, unless a SUCCESS is stored already.
    pub async fn store(&self, meta: &ResultMeta) -> Result<bool> {
        let mut inv = COMPLETE.prepare_invoke();
        inv.key(keys::UNACKED)
            .key(keys::UNACKED_INDEX)
            .key(keys::inflight(""))
            .key(keys::result_key(&meta.task_id))
            .arg(self.ttl.as_secs().max(1))
            .arg("")
            .arg(meta.to_json());
        let stored: i64 = self
            .redis
            .run(|mut c| {
                let inv = &inv;
                async move { inv.invoke_async(&mut c).await }
            })
            .await?;
        Ok(stored == 1)
    }

    /// The task's result now: PENDING if nothing is stored.
    pub async fn get(&self, task_id: &str) -> Result<ResultMeta> {
        let key = keys::result_key(task_id);
        let raw: Option<Vec<u8>> = self
            .redis
            .run(|mut c| {
                let key = &key;
                async move { c.get(key).await }
            })
            .await?;
        match raw {
            Some(raw) => Ok(ResultMeta::parse(&raw)?),
            None => Ok(ResultMeta::pending(task_id)),
        }
    }
}

type Slot = watch::Sender<Option<Arc<ResultMeta>>>;

struct Shared {
    /// Task id → the slot its waiters watch. An entry exists from the first subscription
    /// until no waiter is left (then the reaper unsubscribes).
    waits: Mutex<HashMap<String, Slot>>,
    /// The live connection's command side; `None` while disconnected.
    sink: Mutex<Option<PubSubSink>>,
    /// Serializes SUBSCRIBE decisions against the reaper's UNSUBSCRIBE.
    order: tokio::sync::Mutex<()>,
    connected: watch::Sender<bool>,
}

/// Waits for task results over one shared pub/sub connection. Cheap to clone; the connection
/// task stops when the last clone is dropped or the token is cancelled.
#[derive(Clone)]
pub struct ResultWaiter {
    shared: Arc<Shared>,
    backend: Backend,
    _stop: Arc<tokio_util::sync::DropGuard>,
}

impl ResultWaiter {
    /// Starts the connection task (it connects, and reconnects, in the background).
    pub fn start(backend: Backend) -> Self {
        let shared = Arc::new(Shared {
            waits: Mutex::default(),
            sink: Mutex::default(),
            order: tokio::sync::Mutex::new(()),
            connected: watch::Sender::new(false),
        });
        let stop = CancellationToken::new();
        tokio::spawn(run_connection(
            backend.clone(),
            shared.clone(),
            stop.clone(),
        ));
        ResultWaiter {
            shared,
            backend,
            _stop: Arc::new(stop.drop_guard()),
        }
    }

    /// Number of task ids currently subscribed to (for metrics and tests).
    pub fn subscriptions(&self) -> usize {
        self.shared.waits.lock().expect("waits lock").len()
    }

    /// Subscribes to `task_id`'s result channel and returns once Redis has confirmed the
    /// subscription. The task may be published before or meanwhile: [`Subscription::wait`] reads
    /// the stored key after this has returned, so an earlier result is found there.
    pub async fn subscribe(&self, task_id: &str) -> Result<Subscription> {
        let sink = self.wait_connected().await?;
        let (rx, new) = {
            // Decide under `order`, so the reaper cannot unsubscribe this channel in between;
            // the SUBSCRIBE itself goes out after, so subscriptions do not queue behind each other.
            let _order = self.shared.order.lock().await;
            let mut waits = self.shared.waits.lock().expect("waits lock");
            match waits.get(task_id) {
                Some(slot) => (slot.subscribe(), false),
                None => {
                    let (tx, rx) = watch::channel(None);
                    waits.insert(task_id.to_owned(), tx);
                    (rx, true)
                }
            }
        };
        if new {
            sink.clone().subscribe(keys::result_key(task_id)).await?;
        }
        Ok(Subscription {
            task_id: task_id.to_owned(),
            rx,
            backend: self.backend.clone(),
        })
    }

    async fn wait_connected(&self) -> Result<PubSubSink> {
        let mut connected = self.shared.connected.subscribe();
        let wait = connected.wait_for(|c| *c);
        match tokio::time::timeout(Duration::from_secs(2), wait).await {
            Ok(Ok(_)) => {}
            _ => return Err(QueueError::Pool("result pub/sub connection is down".into())),
        }
        self.shared
            .sink
            .lock()
            .expect("sink lock")
            .clone()
            .ok_or_else(|| QueueError::Pool("result pub/sub connection is down".into()))
    }
}

/// One caller's wait for one task's result.
pub struct Subscription {
    task_id: String,
    rx: watch::Receiver<Option<Arc<ResultMeta>>>,
    backend: Backend,
}

impl Subscription {
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// Waits until the task reaches a ready state (SUCCESS, FAILURE, REVOKED), or `timeout`.
    pub async fn wait(mut self, timeout: Duration) -> Result<ResultMeta> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Stored before we subscribed (or while the connection was being replaced)?
        let stored = tokio::time::timeout_at(deadline, self.backend.get(&self.task_id)).await;
        if let Ok(Ok(meta)) = stored {
            if meta.status.is_ready() {
                return Ok(meta);
            }
        }
        match tokio::time::timeout_at(deadline, self.rx.wait_for(Option::is_some)).await {
            Ok(Ok(meta)) => Ok(meta
                .as_ref()
                .map(|m| (**m).clone())
                .expect("checked is_some")),
            Ok(Err(_)) => Err(QueueError::Shutdown),
            Err(_) => Err(QueueError::Timeout {
                task_id: self.task_id.clone(),
                waited: timeout,
            }),
        }
    }
}

/// Owns the pub/sub connection: delivers results to the waiting slots, reconnects when the
/// connection drops, and unsubscribes from channels nobody waits on any more.
async fn run_connection(backend: Backend, shared: Arc<Shared>, stop: CancellationToken) {
    let mut outage = Outage::new("result-waiter");
    let mut reap = tokio::time::interval(Duration::from_secs(1));
    loop {
        let pubsub = tokio::select! {
            _ = stop.cancelled() => return,
            r = backend.redis.pubsub() => r,
        };
        let (sink, mut stream) = match pubsub {
            Ok(p) => p.split(),
            Err(e) => {
                let pause = outage.failed(&e);
                tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(pause) => continue }
            }
        };
        if let Err(e) = resubscribe(&backend, &shared, &sink).await {
            let pause = outage.failed(&e);
            tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(pause) => continue }
        }
        outage.ok();
        *shared.sink.lock().expect("sink lock") = Some(sink.clone());
        shared.connected.send_replace(true);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                msg = stream.next() => match msg {
                    Some(msg) => deliver(&shared, msg.get_channel_name(), msg.get_payload_bytes()),
                    None => break,
                },
                _ = reap.tick() => reap_idle(&shared, &sink).await,
            }
        }
        shared.connected.send_replace(false);
        *shared.sink.lock().expect("sink lock") = None;
        let pause = outage.failed(&QueueError::Pool("result pub/sub connection lost".into()));
        tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(pause) => {} }
    }
}

/// After (re)connecting: subscribe to every awaited channel, then read each key once, since
/// results may have been published while no connection listened.
async fn resubscribe(backend: &Backend, shared: &Shared, sink: &PubSubSink) -> Result<()> {
    let _order = shared.order.lock().await;
    let ids: Vec<String> = shared
        .waits
        .lock()
        .expect("waits lock")
        .keys()
        .cloned()
        .collect();
    for chunk in ids.chunks(500) {
        let channels: Vec<String> = chunk.iter().map(|id| keys::result_key(id)).collect();
        sink.clone().subscribe(&channels).await?;
        let stored: Vec<Option<Vec<u8>>> = backend
            .redis
            .run(|mut c| {
                let channels = &channels;
                async move { redis::cmd("MGET").arg(channels).query_async(&mut c).await }
            })
            .await?;
        for (channel, raw) in chunk.iter().map(|id| keys::result_key(id)).zip(stored) {
            if let Some(raw) = raw {
                deliver(shared, &channel, &raw);
            }
        }
    }
    Ok(())
}

fn deliver(shared: &Shared, channel: &str, payload: &[u8]) {
    let Some(task_id) = channel.strip_prefix(keys::RESULT_KEY_PREFIX) else {
        return;
    };
    let meta = match ResultMeta::parse(payload) {
        Ok(meta) if meta.status.is_ready() => meta,
        Ok(_) => return,
        Err(error) => {
            tracing::warn!(task_id, %error, "unreadable result published; ignored");
            return;
        }
    };
    if let Some(slot) = shared.waits.lock().expect("waits lock").get(task_id) {
        slot.send_replace(Some(Arc::new(meta)));
    }
}

/// Unsubscribes, in one command, from the channels whose waiters have all gone.
async fn reap_idle(shared: &Shared, sink: &PubSubSink) {
    let _order = shared.order.lock().await;
    let idle: Vec<String> = {
        let mut waits = shared.waits.lock().expect("waits lock");
        let idle: Vec<String> = waits
            .iter()
            .filter(|(_, slot)| slot.receiver_count() == 0)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &idle {
            waits.remove(id);
        }
        idle
    };
    for chunk in idle.chunks(500) {
        let channels: Vec<String> = chunk.iter().map(|id| keys::result_key(id)).collect();
        if let Err(error) = sink.clone().unsubscribe(&channels).await {
            tracing::debug!(%error, "unsubscribe failed; the connection will be replaced");
        }
    }
}
