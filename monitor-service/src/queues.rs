//! The queue sampler: every QUEUE_SAMPLE_INTERVAL_MS the monitor reads the queues themselves,
//! so that a backlog shows before any ping times out, and publishes what it read on
//! `/metrics` (the names of danihodovic/celery-exporter, so its dashboards and alerts apply)
//! and on `GET /monitor/colas` with the last hour of samples.
//!
//! One sample is one read-only script call ([`shared::Broker::queue_stats`]): for each
//! watched queue the messages waiting on all its priority lists and the age of the oldest,
//! plus the delivered-unacknowledged, parked and quarantined counts. Its cost does not grow
//! with the backlog. The watched queues are the targets' queues, those of MONITOR_QUEUES, and
//! those the live workers say they consume (their `active_queues` answers, asked by the
//! control-ping loop).
//!
//! The age of the oldest waiting message is observed, not read: Celery messages carry no send
//! time. The library remembers which message was at each list's head at each sample, so the
//! age is known within one sample interval: the published figure is its lower bound (the
//! message has waited *at least* that long), and for a backlog already waiting when the
//! monitor started, it counts from the monitor's first sample (see `shared::broker::stats`).
//!
//! Beside the queues, the workers: from their heartbeats (alive, processed, active) and, once
//! per worker process, their concurrency from Celery's `stats` control command (asked apart,
//! so a silent worker never delays a sample; asked again later if it did not answer).
//! Throughput is the growth of the workers' `processed` counts over [`RATE_WINDOW`].
//!
//! When Redis goes away the outage is logged once; the last sample is kept, marked
//! `obsoleto` in the JSON and by `monitor_queue_sample_stale` on `/metrics`, and sampling
//! resumes by itself when Redis is back.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use shared::broker::stats::{QueueClocks, QueueStats};
use shared::connection::Outage;
use shared::control::Control;
use shared::events::{WorkerStatus, WorkerTable};
use shared::shutdown::CancellationToken;
use shared::Broker;

use crate::control_ping::{remembered, Board};
use crate::metrics::Metrics;
use crate::ping::rfc3339;

/// Throughput is measured over this span: heartbeats carry `processed` every two seconds (by
/// default), so a shorter span would swing between zero and twice the rate.
pub const RATE_WINDOW: Duration = Duration::from_secs(6);

/// How far back `historial` goes.
pub const HISTORY_SPAN: Duration = Duration::from_secs(3600);

/// Whatever the interval, no more history points than this are kept.
pub const MAX_HISTORY_POINTS: usize = 36_000;

/// `GET /monitor/colas`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Colas {
    /// When the queues were last read (`null` before the first sample).
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(serialize_with = "crate::ping::rfc3339_opt")]
    pub muestreado: Option<DateTime<Utc>>,
    pub intervalo_ms: u64,
    /// `true` while Redis does not answer: the figures are the last ones read.
    pub obsoleto: bool,
    pub colas: Vec<Cola>,
    /// Delivered and not acknowledged (kombu's `unacked`, parked tasks included).
    pub retenidos: u64,
    /// Tasks with a far eta, parked until it comes.
    pub aparcados: u64,
    pub cuarentena: u64,
    pub cuarentena_descartados: u64,
    pub trabajadores: Vec<Trabajador>,
    /// Workers alive now; 0: no worker is connected.
    pub trabajadores_conectados: u64,
    /// Tasks finished per second by all workers, over the last few seconds.
    pub rendimiento_por_s: f64,
    /// The last hour of samples, oldest first (with `?desde=`, those after it).
    pub historial: Vec<Punto>,
}

/// One watched queue.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Cola {
    pub nombre: String,
    /// Messages waiting, every priority list summed.
    pub pendientes: u64,
    /// The oldest waiting message has waited at least this long, seconds (`null`: none waits).
    pub antiguedad_s: Option<f64>,
    /// And at most this long (`null` when only the lower bound is known, e.g. for messages
    /// that were waiting when the monitor started).
    pub antiguedad_max_s: Option<f64>,
    /// Live workers consuming it (among those whose queues are known).
    pub consumidores: u64,
    /// Their task slots summed (those whose concurrency is known).
    pub procesos: u64,
}

/// One worker, from its heartbeats and control answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Trabajador {
    pub hostname: String,
    pub vivo: bool,
    #[schema(value_type = String, format = DateTime)]
    #[serde(serialize_with = "rfc3339")]
    pub ultimo_latido: DateTime<Utc>,
    pub procesadas: u64,
    pub activas: u64,
    /// The queues it consumes (`null` until it answered `active_queues`).
    pub colas: Option<Vec<String>>,
    /// Its task slots (`null` until it answered `stats`).
    pub concurrencia: Option<u64>,
    /// `rcelery` for ours, `py-celery` for Python Celery.
    pub software: String,
}

/// One sample in the history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Punto {
    /// Milliseconds since the epoch.
    pub t: i64,
    pub pendientes: BTreeMap<String, u64>,
    pub rendimiento_por_s: f64,
    pub retenidos: u64,
}

/// What the sampler has found, read by `GET /monitor/colas`. Cheap to clone; every clone is
/// the same.
#[derive(Clone)]
pub struct Queues {
    inner: Arc<Mutex<State>>,
}

struct State {
    interval: Duration,
    last: Option<Sample>,
    stale: bool,
    history: VecDeque<Punto>,
    capacity: usize,
    workers: Vec<Trabajador>,
    rate: f64,
}

/// The last successful read.
#[derive(Clone)]
struct Sample {
    at: DateTime<Utc>,
    stats: QueueStats,
    colas: Vec<Cola>,
}

impl Queues {
    pub fn new(interval: Duration) -> Self {
        let capacity = history_capacity(interval);
        Queues {
            inner: Arc::new(Mutex::new(State {
                interval,
                last: None,
                stale: false,
                history: VecDeque::with_capacity(capacity.min(4096)),
                capacity,
                workers: Vec::new(),
                rate: 0.0,
            })),
        }
    }

    /// The answer of `GET /monitor/colas`; with `desde` (ms since the epoch), only the
    /// history points after it.
    pub fn colas(&self, desde: Option<i64>) -> Colas {
        let s = self.inner.lock().expect("queues lock");
        let stats = s.last.as_ref().map(|l| &l.stats);
        Colas {
            muestreado: s.last.as_ref().map(|l| l.at),
            intervalo_ms: s.interval.as_millis() as u64,
            obsoleto: s.stale,
            colas: s.last.as_ref().map(|l| l.colas.clone()).unwrap_or_default(),
            retenidos: stats.map_or(0, |s| s.unacked),
            aparcados: stats.map_or(0, |s| s.parked),
            cuarentena: stats.map_or(0, |s| s.quarantined),
            cuarentena_descartados: stats.map_or(0, |s| s.quarantine_dropped),
            trabajadores_conectados: s.workers.iter().filter(|w| w.vivo).count() as u64,
            trabajadores: s.workers.clone(),
            rendimiento_por_s: s.rate,
            historial: match desde {
                None => s.history.iter().cloned().collect(),
                // Oldest first: the new points are a suffix.
                Some(after) => {
                    let first_new = s.history.partition_point(|p| p.t <= after);
                    s.history.range(first_new..).cloned().collect()
                }
            },
        }
    }
}

/// History points for [`HISTORY_SPAN`] at `interval`, at most [`MAX_HISTORY_POINTS`].
pub fn history_capacity(interval: Duration) -> usize {
    let per = interval.as_millis().max(1);
    (HISTORY_SPAN.as_millis().div_ceil(per) as usize).clamp(1, MAX_HISTORY_POINTS)
}

/// Tasks finished per second from the workers' `processed` counts, as heartbeats report them.
/// A worker seen for the first time, or under a new pid, is a baseline, not work done now.
#[derive(Debug, Default)]
pub struct Throughput {
    last: HashMap<String, (u32, u64)>,
    /// (when, tasks done since the start), oldest first, over [`RATE_WINDOW`] and one more.
    done: VecDeque<(Instant, u64)>,
    total: u64,
}

impl Throughput {
    /// Observes the workers at `now`; returns tasks per second over the window.
    pub fn observe(&mut self, workers: &[WorkerStatus], now: Instant) -> f64 {
        for w in workers {
            let before = self.last.insert(w.hostname.clone(), (w.pid, w.processed));
            if let Some((pid, processed)) = before {
                if pid == w.pid {
                    self.total += w.processed.saturating_sub(processed);
                }
            }
        }
        self.last
            .retain(|h, _| workers.iter().any(|w| &w.hostname == h));
        self.done.push_back((now, self.total));
        while self
            .done
            .get(1)
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= RATE_WINDOW)
        {
            self.done.pop_front();
        }
        let (since, base) = self.done.front().copied().unwrap_or((now, self.total));
        let span = now.saturating_duration_since(since).as_secs_f64();
        if span <= 0.0 {
            return 0.0;
        }
        let rate = (self.total - base) as f64 / span;
        (rate * 100.0).round() / 100.0
    }
}

/// Concurrency of each worker process, asked with `stats` until it answers: by hostname, the
/// pid asked, its answer (`None` until it answers) and when it was asked (a worker busy past
/// the timeout is asked again after [`STATS_RETRY`]).
#[derive(Clone, Default)]
struct Concurrency {
    known: Arc<Mutex<HashMap<String, Asked>>>,
}

type Asked = (u32, Option<u64>, Instant);

/// A worker that did not answer `stats` is asked again after this long.
pub const STATS_RETRY: Duration = Duration::from_secs(30);

impl Concurrency {
    fn get(&self, w: &WorkerStatus) -> Option<u64> {
        let known = self.known.lock().expect("concurrency lock");
        known
            .get(&w.hostname)
            .filter(|(pid, _, _)| *pid == w.pid)
            .and_then(|(_, c, _)| *c)
    }

    /// Asks the live workers not asked yet under their current pid, in the background.
    fn ask_newcomers(&self, control: &Control, workers: &[WorkerStatus], timeout: Duration) {
        let mut asked = Vec::new();
        {
            let mut known = self.known.lock().expect("concurrency lock");
            known.retain(|h, _| workers.iter().any(|w| &w.hostname == h));
            for w in workers.iter().filter(|w| w.alive) {
                let now = Instant::now();
                let ask = known.get(&w.hostname).is_none_or(|(pid, c, at)| {
                    *pid != w.pid || (c.is_none() && now.duration_since(*at) >= STATS_RETRY)
                });
                if ask {
                    known.insert(w.hostname.clone(), (w.pid, None, now));
                    asked.push(w.hostname.clone());
                }
            }
        }
        if asked.is_empty() {
            return;
        }
        let control = control.clone();
        let this = self.clone();
        tokio::spawn(async move {
            let Ok(replies) = control
                .call("stats", Map::new(), Some(asked), timeout, None)
                .await
            else {
                return;
            };
            let mut known = this.known.lock().expect("concurrency lock");
            for reply in replies {
                let concurrency = reply
                    .answer
                    .pointer("/pool/max-concurrency")
                    .and_then(Value::as_u64);
                if let Some((_, c, _)) = known.get_mut(&reply.hostname) {
                    *c = concurrency;
                }
            }
        });
    }
}

/// The sampler's settings and handles.
pub struct QueueSampler {
    pub queues: Queues,
    pub broker: Broker,
    pub control: Control,
    pub table: WorkerTable,
    pub board: Board,
    pub metrics: Metrics,
    pub interval: Duration,
    /// Always watched: the targets' queues and MONITOR_QUEUES.
    pub fixed: Vec<String>,
    pub forget_after: Duration,
    /// How long a `stats` request waits for answers.
    pub control_timeout: Duration,
}

impl QueueSampler {
    /// Samples every `interval` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut outage = Outage::new("queue sampler");
        let mut clocks = QueueClocks::default();
        let mut throughput = Throughput::default();
        let concurrency = Concurrency::default();
        let mut reported: HashSet<String> = HashSet::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = Utc::now();
            let workers = remembered(self.table.workers(), self.forget_after, now);
            concurrency.ask_newcomers(&self.control, &workers, self.control_timeout);
            let rate = throughput.observe(&workers, Instant::now());
            let rows: Vec<Trabajador> = workers
                .iter()
                .map(|w| Trabajador {
                    hostname: w.hostname.clone(),
                    vivo: w.alive,
                    ultimo_latido: w.last_heartbeat,
                    procesadas: w.processed,
                    activas: w.active,
                    colas: self.board.get(&w.hostname).colas,
                    concurrencia: concurrency.get(w),
                    software: w.sw_ident.clone(),
                })
                .collect();
            self.report_workers(&rows, &mut reported);
            let watched: Vec<String> = self
                .fixed
                .iter()
                .cloned()
                .chain(
                    rows.iter()
                        .filter(|w| w.vivo)
                        .flat_map(|w| w.colas.clone().unwrap_or_default()),
                )
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let read = tokio::select! {
                _ = shutdown.cancelled() => break,
                read = self.broker.queue_stats(&mut clocks, &watched) => read,
            };
            let mut state = self.queues.inner.lock().expect("queues lock");
            state.rate = rate;
            match read {
                Ok(stats) => {
                    outage.ok();
                    let colas = colas(&stats, &rows);
                    self.metrics.queue_sample(&stats, &colas);
                    state.stale = false;
                    state.history.push_back(Punto {
                        t: now.timestamp_millis(),
                        pendientes: colas
                            .iter()
                            .map(|c| (c.nombre.clone(), c.pendientes))
                            .collect(),
                        rendimiento_por_s: rate,
                        retenidos: stats.unacked,
                    });
                    while state.history.len() > state.capacity {
                        state.history.pop_front();
                    }
                    state.last = Some(Sample {
                        at: now,
                        stats,
                        colas,
                    });
                }
                Err(error) => {
                    outage.failed(&error);
                    state.stale = true;
                    self.metrics.queue_sample_stale();
                }
            }
            state.workers = rows;
        }
    }

    /// The per-worker series: set for every remembered worker, removed for forgotten ones.
    fn report_workers(&self, rows: &[Trabajador], reported: &mut HashSet<String>) {
        let now: HashSet<String> = rows.iter().map(|w| w.hostname.clone()).collect();
        for gone in reported.difference(&now) {
            self.metrics.forget_worker(gone);
        }
        for w in rows {
            self.metrics
                .worker_sample(&w.hostname, w.vivo, w.activas, w.procesadas);
        }
        *reported = now;
    }
}

/// The queues' rows: what was read, with the live workers that consume each.
fn colas(stats: &QueueStats, workers: &[Trabajador]) -> Vec<Cola> {
    stats
        .queues
        .iter()
        .map(|(nombre, sample)| {
            let consumers: Vec<&Trabajador> = workers
                .iter()
                .filter(|w| w.vivo && w.colas.as_ref().is_some_and(|c| c.contains(nombre)))
                .collect();
            Cola {
                nombre: nombre.clone(),
                pendientes: sample.waiting,
                antiguedad_s: sample.oldest.map(|a| round_s(a.at_least)),
                antiguedad_max_s: sample.oldest.and_then(|a| a.at_most).map(round_s),
                consumidores: consumers.len() as u64,
                procesos: consumers.iter().filter_map(|w| w.concurrencia).sum(),
            }
        })
        .collect()
}

/// Seconds, to the millisecond.
fn round_s(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(hostname: &str, pid: u32, processed: u64) -> WorkerStatus {
        WorkerStatus {
            hostname: hostname.into(),
            alive: true,
            last_heartbeat: Utc::now(),
            processed,
            active: 0,
            freq: 2.0,
            pid,
            sw_ident: "rcelery".into(),
        }
    }

    #[test]
    fn throughput_from_processed_counts() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut t = Throughput::default();
        // The first count is a baseline, however large.
        assert_eq!(t.observe(&[worker("a", 1, 1000)], t0), 0.0);
        assert_eq!(t.observe(&[worker("a", 1, 1020)], t0 + 2 * s), 10.0);
        // A restarted worker (new pid) starts a new baseline; another worker adds up.
        let rate = t.observe(&[worker("a", 2, 5), worker("b", 1, 0)], t0 + 4 * s);
        assert_eq!(rate, 5.0);
        let rate = t.observe(&[worker("a", 2, 17), worker("b", 1, 12)], t0 + 6 * s);
        // 44 done over the six seconds the window spans.
        assert_eq!(rate, 7.33);
        // Later, the oldest points leave the window.
        let rate = t.observe(&[worker("a", 2, 29), worker("b", 1, 12)], t0 + 10 * s);
        assert_eq!(rate, (56.0 - 20.0) / 6.0);
    }

    #[test]
    fn an_hour_of_history() {
        assert_eq!(history_capacity(Duration::from_secs(1)), 3600);
        assert_eq!(history_capacity(Duration::from_millis(700)), 5143);
        assert_eq!(
            history_capacity(Duration::from_millis(1)),
            MAX_HISTORY_POINTS
        );
    }
}
