//! The live-worker table: who is alive, judged from worker events the way Celery's event
//! state (and so Flower) judges it, on this process's clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;

use crate::protocol::event::{WORKER_HEARTBEAT, WORKER_OFFLINE, WORKER_ONLINE};
use crate::protocol::WorkerEvent;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::Redis;
    use crate::events::{EventPublisher, WorkerCounts};

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
