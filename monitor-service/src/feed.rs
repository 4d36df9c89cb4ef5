//! The dashboard's live feed: what the monitor has just seen, for every open page at once.
//!
//! It exists because a page needs two things the rest of the monitor does not keep: the last
//! hour of pings in a form cheap enough to send whole when the page opens (so a fresh page
//! shows its chart at once), and every ping and state change as it happens afterwards, for any
//! number of pages, without memory growing with time or with the number of pages. So:
//!
//! - one ring of chart points per target (send time, latency, outcome: 24 bytes a point),
//!   sized for [`CHART_SPAN`] at the configured interval and capped at
//!   [`MAX_POINTS_PER_TARGET`]; the oldest point is overwritten;
//! - a ring of the last [`CHANGES_KEPT`] state changes;
//! - one `tokio::sync::broadcast` channel of [`CHANNEL_CAPACITY`] events: every page reads the
//!   same ring buffer, and a page that falls behind skips what it missed (and is told how
//!   much) instead of making the server queue events for it;
//! - one sequence number over both, taken under the same lock as the subscription, so a
//!   page's opening [`Snapshot`] and the events that follow it neither overlap nor leave a gap;
//! - a cap on concurrent subscriptions (a semaphore), so pages cannot exhaust the server.
//!
//! The feed is storage and fan-out only: the monitor hands it each [`PingOutcome`] and
//! [`StateChange`] and it never calls back, so it depends on those records' modules and not on
//! [`crate::monitor`], which owns it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::ser::SerializeTuple;
use serde::{Serialize, Serializer};
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};

use crate::change::StateChange;
use crate::ping::{PingOutcome, PingResult};

/// How far back the chart can look: its longest window.
pub const CHART_SPAN: Duration = Duration::from_secs(3600);
/// Whatever the interval, a target never keeps more points than this (864 KB).
pub const MAX_POINTS_PER_TARGET: usize = 36_000;
/// State changes kept for a page that opens.
pub const CHANGES_KEPT: usize = 200;
/// Events buffered once for all subscribers; a subscriber further behind skips ahead.
pub const CHANNEL_CAPACITY: usize = 1024;

/// How a ping ended, as the chart draws it. Serialized as its code: 0, 1, 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok = 0,
    Fallo = 1,
    Timeout = 2,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fallo => "fallo",
            Outcome::Timeout => "timeout",
        }
    }
}

/// One ping on the chart. Serialized compactly as `[t, latencia_ms, codigo]`: an hour of them
/// is what a page receives when it opens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// When the ping was sent, milliseconds since the Unix epoch.
    pub t: i64,
    pub latencia_ms: f64,
    pub outcome: Outcome,
}

impl Point {
    pub fn of(outcome: &PingOutcome) -> Self {
        Point {
            t: outcome.enviado.timestamp_millis(),
            latencia_ms: outcome.latencia_ms,
            outcome: match outcome.result {
                PingResult::Ok { .. } => Outcome::Ok,
                PingResult::Fallo { .. } => Outcome::Fallo,
                PingResult::Timeout => Outcome::Timeout,
            },
        }
    }
}

impl Serialize for Point {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(3)?;
        t.serialize_element(&self.t)?;
        t.serialize_element(&self.latencia_ms)?;
        t.serialize_element(&(self.outcome as u8))?;
        t.end()
    }
}

/// What subscribers receive. Cheap to clone: the channel clones it once per subscriber.
#[derive(Debug, Clone)]
pub enum FeedEvent {
    Ping {
        seq: u64,
        servicio: Arc<str>,
        point: Point,
    },
    Cambio {
        seq: u64,
        change: Arc<StateChange>,
    },
}

impl FeedEvent {
    fn seq(&self) -> u64 {
        match self {
            FeedEvent::Ping { seq, .. } | FeedEvent::Cambio { seq, .. } => *seq,
        }
    }
}

/// What a page is sent first: the points of every target (oldest first) and the recent
/// changes (oldest first), as of sequence number `seq`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub seq: u64,
    pub points: Vec<(Arc<str>, Vec<Point>)>,
    pub changes: Vec<Arc<StateChange>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FeedError {
    #[error("ya hay {0} paneles en vivo abiertos (DASHBOARD_MAX_CLIENTS); inténtelo más tarde")]
    TooManyClients(usize),
}

pub struct Feed {
    rings: Mutex<Rings>,
    tx: broadcast::Sender<FeedEvent>,
    clients: Arc<Semaphore>,
    max_clients: usize,
    capacity: usize,
}

struct Rings {
    seq: u64,
    series: Vec<(Arc<str>, VecDeque<Point>)>,
    changes: VecDeque<Arc<StateChange>>,
}

impl Feed {
    /// A feed for `targets` pinged every `interval`, open to at most `max_clients` pages.
    pub fn new(targets: &[String], interval: Duration, max_clients: usize) -> Self {
        let capacity = points_for(interval);
        Feed {
            rings: Mutex::new(Rings {
                seq: 0,
                series: targets
                    .iter()
                    .map(|t| (Arc::from(t.as_str()), VecDeque::new()))
                    .collect(),
                changes: VecDeque::new(),
            }),
            tx: broadcast::channel(CHANNEL_CAPACITY).0,
            clients: Arc::new(Semaphore::new(max_clients)),
            max_clients,
            capacity,
        }
    }

    /// Points kept per target.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Pages connected now.
    pub fn clients(&self) -> usize {
        self.max_clients - self.clients.available_permits()
    }

    /// Records a ping of the loop and sends it to the subscribers.
    pub fn ping(&self, outcome: &PingOutcome) {
        let point = Point::of(outcome);
        let mut rings = self.rings.lock().expect("feed lock");
        let Some(i) = rings
            .series
            .iter()
            .position(|(name, _)| **name == *outcome.servicio)
        else {
            return;
        };
        rings.seq += 1;
        let seq = rings.seq;
        let (servicio, ring) = &mut rings.series[i];
        if ring.len() >= self.capacity {
            ring.pop_front();
        }
        ring.push_back(point);
        let servicio = servicio.clone();
        // Sent under the lock, so the order of sequence numbers is the order on the channel.
        let _ = self.tx.send(FeedEvent::Ping {
            seq,
            servicio,
            point,
        });
    }

    /// Records a state change and sends it to the subscribers.
    pub fn change(&self, change: &StateChange) {
        let change = Arc::new(change.clone());
        let mut rings = self.rings.lock().expect("feed lock");
        rings.seq += 1;
        let seq = rings.seq;
        if rings.changes.len() >= CHANGES_KEPT {
            rings.changes.pop_front();
        }
        rings.changes.push_back(change.clone());
        let _ = self.tx.send(FeedEvent::Cambio { seq, change });
    }

    /// Admits one more page: what it should draw now, and the events from then on. Refused
    /// when `max_clients` pages are open; the slot is freed when the subscription is dropped.
    pub fn subscribe(&self) -> Result<Subscription, FeedError> {
        let permit = self
            .clients
            .clone()
            .try_acquire_owned()
            .map_err(|_| FeedError::TooManyClients(self.max_clients))?;
        let rings = self.rings.lock().expect("feed lock");
        let rx = self.tx.subscribe();
        let snapshot = Snapshot {
            seq: rings.seq,
            points: rings
                .series
                .iter()
                .map(|(name, ring)| (name.clone(), ring.iter().copied().collect()))
                .collect(),
            changes: rings.changes.iter().cloned().collect(),
        };
        Ok(Subscription {
            snapshot: Some(snapshot),
            rx,
            _permit: permit,
        })
    }
}

/// Points that cover [`CHART_SPAN`] at `interval`, capped.
fn points_for(interval: Duration) -> usize {
    let interval = interval.max(Duration::from_millis(1));
    let n = CHART_SPAN.as_millis().div_ceil(interval.as_millis());
    usize::try_from(n)
        .unwrap_or(MAX_POINTS_PER_TARGET)
        .clamp(1, MAX_POINTS_PER_TARGET)
}

/// One page's view of the feed. Holds a slot of the client cap until dropped.
pub struct Subscription {
    snapshot: Option<Snapshot>,
    rx: broadcast::Receiver<FeedEvent>,
    _permit: OwnedSemaphorePermit,
}

/// The next thing a subscriber should hear.
#[derive(Debug)]
pub enum Next {
    Event(FeedEvent),
    /// This many events went by while the subscriber was slow; they are not coming.
    Missed(u64),
    /// The feed is gone.
    Closed,
}

impl Subscription {
    /// The opening snapshot (once; `None` afterwards).
    pub fn take_snapshot(&mut self) -> Option<Snapshot> {
        self.snapshot.take()
    }

    /// The next event after the snapshot. Cancel-safe, so it can be raced in `select!`.
    pub async fn next(&mut self, after: u64) -> Next {
        loop {
            match self.rx.recv().await {
                Ok(event) if event.seq() <= after => continue,
                Ok(event) => return Next::Event(event),
                Err(broadcast::error::RecvError::Lagged(n)) => return Next::Missed(n),
                Err(broadcast::error::RecvError::Closed) => return Next::Closed,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::Estado;
    use chrono::{TimeZone, Utc};

    fn outcome(servicio: &str, ms: i64, result: PingResult) -> PingOutcome {
        PingOutcome {
            servicio: servicio.into(),
            task_id: None,
            enviado: Utc.timestamp_millis_opt(ms).unwrap(),
            latencia_ms: 1.5,
            result,
            latency: Duration::from_micros(1500),
        }
    }

    fn ok(servicio: &str, ms: i64) -> PingOutcome {
        outcome(
            servicio,
            ms,
            PingResult::Ok {
                respuesta: "OK".into(),
                worker: None,
            },
        )
    }

    fn change() -> StateChange {
        StateChange {
            servicio: "A".into(),
            de: Estado::Ok,
            a: Estado::Caido,
            detectado_en_s: 0.7,
            tras_s: 3.0,
            motivo: "silencio".into(),
            en: Utc::now(),
            linea: "[ALERTA] A CAIDO".into(),
        }
    }

    #[test]
    fn an_hour_of_points_capped() {
        assert_eq!(points_for(Duration::from_millis(250)), 14_400);
        assert_eq!(points_for(Duration::from_secs(1)), 3_600);
        assert_eq!(points_for(Duration::from_millis(7)), MAX_POINTS_PER_TARGET);
        assert_eq!(points_for(Duration::ZERO), MAX_POINTS_PER_TARGET);
        assert_eq!(points_for(Duration::from_secs(7200)), 1);
    }

    #[test]
    fn points_serialize_as_triples() {
        let p = Point::of(&outcome("A", 1_000, PingResult::Timeout));
        assert_eq!(serde_json::to_string(&p).unwrap(), "[1000,1.5,2]");
    }

    #[test]
    fn rings_are_bounded_and_drop_the_oldest() {
        // One second between pings: 3600 points kept.
        let feed = Feed::new(&["A".into()], Duration::from_secs(1), 4);
        for i in 0..5_000 {
            feed.ping(&ok("A", i));
        }
        for _ in 0..(CHANGES_KEPT + 10) {
            feed.change(&change());
        }
        feed.ping(&ok("desconocido", 0));
        let mut sub = feed.subscribe().unwrap();
        let snap = sub.take_snapshot().unwrap();
        let points = &snap.points[0].1;
        assert_eq!(points.len(), 3_600);
        assert_eq!(points.first().unwrap().t, 5_000 - 3_600);
        assert_eq!(points.last().unwrap().t, 4_999);
        assert_eq!(snap.changes.len(), CHANGES_KEPT);
        assert_eq!(snap.seq, 5_000 + CHANGES_KEPT as u64 + 10);
        assert!(sub.take_snapshot().is_none());
    }

    #[tokio::test]
    async fn the_stream_continues_exactly_where_the_snapshot_ends() {
        let feed = Feed::new(&["A".into()], Duration::from_millis(250), 4);
        feed.ping(&ok("A", 1));
        let mut sub = feed.subscribe().unwrap();
        let snap = sub.take_snapshot().unwrap();
        feed.ping(&ok("A", 2));
        feed.change(&change());
        match sub.next(snap.seq).await {
            Next::Event(FeedEvent::Ping { point, seq, .. }) => {
                assert_eq!((point.t, seq), (2, snap.seq + 1))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            sub.next(snap.seq).await,
            Next::Event(FeedEvent::Cambio { .. })
        ));
    }

    #[tokio::test]
    async fn a_slow_subscriber_skips_instead_of_buffering() {
        let feed = Feed::new(&["A".into()], Duration::from_millis(250), 4);
        let mut sub = feed.subscribe().unwrap();
        let after = sub.take_snapshot().unwrap().seq;
        for i in 0..(CHANNEL_CAPACITY as i64 + 100) {
            feed.ping(&ok("A", i));
        }
        assert!(matches!(sub.next(after).await, Next::Missed(100)));
        match sub.next(after).await {
            Next::Event(FeedEvent::Ping { point, .. }) => assert_eq!(point.t, 100),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn subscribers_are_capped_and_freed_on_drop() {
        let feed = Feed::new(&["A".into()], Duration::from_millis(250), 2);
        let a = feed.subscribe().unwrap();
        let _b = feed.subscribe().unwrap();
        assert_eq!(feed.clients(), 2);
        assert_eq!(feed.subscribe().err(), Some(FeedError::TooManyClients(2)));
        drop(a);
        assert_eq!(feed.clients(), 1);
        assert!(feed.subscribe().is_ok());
    }
}
