//! Sending worker events the way Celery's event dispatcher does (`worker-online`,
//! `worker-heartbeat`, `worker-offline`), so Flower, `celery events` and our monitor see our
//! workers as they see Python ones.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::connection::Redis;
use crate::error::Result;
use crate::keys;
use crate::protocol::WorkerEvent;

/// What every event of one worker carries.
pub struct EventPublisher {
    redis: Redis,
    hostname: String,
    freq: f64,
    /// Celery's Lamport clock: one tick per event sent (shared with the rest of the process's
    /// Celery traffic, see [`EventPublisher::with_clock`]).
    clock: Arc<AtomicU64>,
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
            clock: Arc::default(),
        }
    }

    /// Ticks `clock` instead of a clock of its own: Celery keeps one per process, for worker
    /// events, task events and control replies alike.
    pub fn with_clock(mut self, clock: Arc<AtomicU64>) -> Self {
        self.clock = clock;
        self
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
        self.redis.publish(&channel, &payload).await.map(|_| ())
    }
}

/// Celery's `utcoffset()`: `time.timezone // 3600` (or `altzone` in summer time), hours
/// *west* of UTC, floored; computed per event as Celery does, so a change to summer time shows
/// at once. Worker and task events share it.
pub(crate) fn utc_offset_hours_west() -> i64 {
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
