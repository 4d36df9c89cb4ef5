//! Celery worker events on Redis pub/sub, both sides. [`EventPublisher`] sends them the way
//! Celery's event dispatcher does, so Flower, `celery events` and our monitor see our workers as
//! they see Python ones; [`EventListener`] receives them (from our workers and Python ones) and
//! keeps the table of live workers the way Celery's event state (and so Flower) judges it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use redis::AsyncCommands;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::connection::{Outage, Redis};
use crate::error::{QueueError, Result};
use crate::keys;
use crate::protocol::event::{WORKER_HEARTBEAT, WORKER_OFFLINE, WORKER_ONLINE};
use crate::protocol::WorkerEvent;

/// What every event of one worker carries.
pub struct EventPublisher {
    redis: Redis,
    hostname: String,
    freq: f64,
    /// Celery's Lamport clock: one tick per event sent.
    clock: AtomicU64,
}

/// A worker's counters at the time of an event.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerCounts {
    pub active: u64,
    pub processed: u64,
}

impl EventPublisher {
    /// `freq` is the heartbeat interval in seconds, which listeners use to judge liveness.
    pub fn new(redis: Redis, hostname: &str, freq: f64) -> Self {
        EventPublisher {
            redis,
            hostname: hostname.to_owned(),
            freq,
            clock: AtomicU64::new(0),
        }
    }

    /// Builds an event of `kind` (`worker-online`, `worker-heartbeat`, `worker-offline`).
    pub fn event(&self, kind: &str, counts: WorkerCounts) -> WorkerEvent {
        WorkerEvent {
            hostname: self.hostname.clone(),
            utcoffset: utc_offset_hours_west(),
            pid: std::process::id(),
            clock: self.clock.fetch_add(1, Ordering::Relaxed) + 1,
            freq: self.freq,
            active: counts.active,
            processed: counts.processed,
            loadavg: loadavg(),
            sw_ident: "rcelery".into(),
            sw_ver: env!("CARGO_PKG_VERSION").into(),
            sw_sys: capitalized_os(),
            timestamp: chrono::Utc::now().timestamp_micros() as f64 / 1e6,
            kind: kind.to_owned(),
            extra: Default::default(),
        }
    }

    /// PUBLISHes the event on `/<db>.celeryev/worker.<kind>`.
    pub async fn publish(&self, kind: &str, counts: WorkerCounts) -> Result<()> {
        let event = self.event(kind, counts);
        let channel = keys::event_channel(self.redis.db(), &event.routing_key());
        let payload = event.to_envelope().to_json();
        self.redis
            .run(|mut c| {
                let (channel, payload) = (&channel, &payload);
                async move { c.publish::<_, _, i64>(channel, payload).await }
            })
            .await
            .map(|_| ())
    }
}

/// Python's `time.timezone // 3600`: hours *west* of UTC.
fn utc_offset_hours_west() -> i64 {
    let east = chrono::Local::now().offset().local_minus_utc() as i64;
    (-east).div_euclid(3600)
}

fn loadavg() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| {
            s.split_whitespace()
                .take(3)
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn capitalized_os() -> String {
    let os = std::env::consts::OS;
    let mut c = os.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// Celery's `HEARTBEAT_EXPIRE_WINDOW` (200 %): a worker is alive while its last heartbeat is
/// younger than twice its announced heartbeat interval.
const EXPIRE_WINDOW: f64 = 2.0;

/// What the listener knows of one worker. Liveness is judged on this process's clock (when the
/// event arrived), not on the worker's timestamp, so clock skew between machines cannot make a
/// worker look dead or alive.
#[derive(Debug, Clone)]
struct WorkerEntry {
    last: WorkerEvent,
    received: Instant,
    received_at: DateTime<Utc>,
    offline: bool,
}

impl WorkerEntry {
    fn alive_at(&self, now: Instant) -> bool {
        let window = Duration::try_from_secs_f64(self.last.freq.max(0.0) * EXPIRE_WINDOW)
            .unwrap_or(Duration::ZERO);
        !self.offline && now.saturating_duration_since(self.received) < window
    }
}

/// One row of the live-worker table, as shown to users.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerStatus {
    pub hostname: String,
    /// Alive: not gone offline, and last heard from within `2 × freq`.
    pub alive: bool,
    /// When its last event (heartbeat, online or offline) arrived.
    pub last_heartbeat: DateTime<Utc>,
    /// Tasks it has finished, as it last reported.
    pub processed: u64,
    pub active: u64,
    /// Its heartbeat interval, seconds.
    pub freq: f64,
    pub pid: u32,
    /// `rcelery` for ours, `py-celery` for Python Celery.
    pub sw_ident: String,
}

/// The live-worker table, fed by worker events. Cheap to clone; every clone sees the same table.
#[derive(Clone, Default)]
pub struct WorkerTable {
    entries: Arc<Mutex<HashMap<String, WorkerEntry>>>,
    /// Bumped on every event, so a watcher can re-judge at once (e.g. on `worker-offline`).
    version: Arc<watch::Sender<u64>>,
}

impl WorkerTable {
    /// Records an event received now. Events other than worker-online/heartbeat/offline are
    /// ignored.
    pub fn record(&self, event: WorkerEvent) {
        self.record_at(event, Instant::now());
    }

    fn record_at(&self, event: WorkerEvent, now: Instant) {
        let offline = match event.kind.as_str() {
            WORKER_ONLINE | WORKER_HEARTBEAT => false,
            WORKER_OFFLINE => true,
            _ => return,
        };
        let entry = WorkerEntry {
            last: event,
            received: now,
            received_at: Utc::now(),
            offline,
        };
        self.entries
            .lock()
            .expect("worker table lock")
            .insert(entry.last.hostname.clone(), entry);
        self.version.send_modify(|v| *v += 1);
    }

    /// Whether `hostname` is alive now; `None` if no event of it has been seen.
    pub fn is_alive(&self, hostname: &str) -> Option<bool> {
        let now = Instant::now();
        self.entries
            .lock()
            .expect("worker table lock")
            .get(hostname)
            .map(|e| e.alive_at(now))
    }

    /// Every worker seen, sorted by host name.
    pub fn workers(&self) -> Vec<WorkerStatus> {
        self.workers_at(Instant::now())
    }

    fn workers_at(&self, now: Instant) -> Vec<WorkerStatus> {
        let mut rows: Vec<WorkerStatus> = self
            .entries
            .lock()
            .expect("worker table lock")
            .values()
            .map(|e| WorkerStatus {
                hostname: e.last.hostname.clone(),
                alive: e.alive_at(now),
                last_heartbeat: e.received_at,
                processed: e.last.processed,
                active: e.last.active,
                freq: e.last.freq,
                pid: e.last.pid,
                sw_ident: e.last.sw_ident.clone(),
            })
            .collect();
        rows.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        rows
    }

    /// A receiver that changes whenever an event is recorded.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(host: &str, kind: &str, freq: f64, processed: u64) -> WorkerEvent {
        let publisher =
            EventPublisher::new(Redis::from_url("redis://127.0.0.1/0").unwrap(), host, freq);
        WorkerEvent {
            processed,
            ..publisher.event(kind, WorkerCounts::default())
        }
    }

    #[test]
    fn alive_while_younger_than_twice_freq() {
        let table = WorkerTable::default();
        let t0 = Instant::now();
        table.record_at(event("a@h", WORKER_HEARTBEAT, 2.0, 7), t0);
        let row = |now| table.workers_at(now).into_iter().next().unwrap();
        assert!(row(t0 + Duration::from_millis(3900)).alive);
        assert_eq!(row(t0).processed, 7);
        assert!(!row(t0 + Duration::from_millis(4000)).alive);
    }

    #[test]
    fn offline_at_once_and_online_again() {
        let table = WorkerTable::default();
        let changes = table.changes();
        table.record(event("a@h", WORKER_ONLINE, 2.0, 0));
        assert_eq!(table.is_alive("a@h"), Some(true));
        table.record(event("a@h", WORKER_OFFLINE, 2.0, 3));
        assert_eq!(table.is_alive("a@h"), Some(false));
        assert!(changes.has_changed().unwrap());
        table.record(event("a@h", WORKER_ONLINE, 2.0, 0));
        assert_eq!(table.is_alive("a@h"), Some(true));
        assert_eq!(table.is_alive("b@h"), None);
    }

    #[test]
    fn other_event_kinds_are_ignored() {
        let table = WorkerTable::default();
        table.record(event("a@h", "task-succeeded", 2.0, 0));
        assert!(table.workers().is_empty());
    }
}
