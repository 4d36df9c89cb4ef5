//! The monitor itself: one ping loop per target, each feeding its [`Detector`], with the
//! heartbeat table as the second signal; the pings' records go to the log, the history and the
//! metrics, and state changes are logged once and broadcast; both also go to the dashboard's
//! [`Feed`]. Beside them, the control-ping loop ([`crate::control_ping`]) asks each worker
//! directly; from its [`Board`] a target whose task pings fail gets a diagnosis (its workers
//! answer control but do not consume, or none answers), logged once per change. `GET /monitor`
//! reads the summary kept here and adds a live ping, shared by the requests that come together
//! ([`crate::live`]).
//!
//! Pings are spawned on a timer and never wait for each other: a lost echo costs its own
//! timeout and nothing else. Every wait rides the `Client`'s single pub/sub connection.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use shared::control::Control;
use shared::events::{EventListener, WorkerStatus};
use shared::shutdown::CancellationToken;
use shared::{Client, Redis};
use tokio::sync::broadcast;
use tokio::task::{JoinHandle, JoinSet};

use crate::change::StateChange;
use crate::config::Config;
use crate::control_ping::{remembered, Board, ControlPinger, Diagnosis, WorkerView};
use crate::detector::{Change, Detector, DetectorConfig, Estado};
use crate::feed::Feed;
use crate::history::{History, Sinks};
use crate::metrics::Metrics;
use crate::ping::{rfc3339, PingOutcome, PingResult, Pinger};
use crate::targets::Target;
use crate::tasks::TaskWatch;

/// Cheap to clone; every clone is the same monitor.
#[derive(Clone)]
pub struct Monitor {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    client: Client,
    /// Sends the pings, the loop's and `GET /monitor`'s, and cleans up after them.
    pinger: Pinger,
    targets: Vec<Watched>,
    history: History,
    metrics: Metrics,
    listener: EventListener,
    changes: broadcast::Sender<StateChange>,
    feed: Feed,
    /// The process's stop signal, for what must end with it (the dashboard's streams).
    shutdown: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// `GET /monitor`'s live pings.
    live: crate::live::Shared<Vec<PingOutcome>>,
    /// What the control-ping loop has found of each worker.
    control: Board,
    /// Task events: their counters and the recent tasks.
    task_watch: TaskWatch,
    /// What the queue sampler has read.
    queues: crate::queues::Queues,
}

/// One target and what the loop knows of it.
struct Watched {
    target: Target,
    detector: Mutex<Detector>,
    stats: Mutex<Stats>,
}

struct Stats {
    last: Option<PingOutcome>,
    /// Recent outcomes (true: answered) for `disponibilidad`.
    window: VecDeque<bool>,
    sent: u64,
    ok: u64,
    failed: u64,
    timeouts: u64,
    /// Workers that have answered this target's pings (from our worker's `hostname`): the
    /// ones whose heartbeats are the second signal for it.
    workers: BTreeSet<String>,
    since: DateTime<Utc>,
    /// Why the task pings fail, while the target is CAIDO and remote control can tell.
    diagnosis: Option<Diagnosis>,
}

/// The loop's view of one target, for the API.
#[derive(Debug, Clone, Serialize)]
pub struct TargetSummary {
    pub servicio: String,
    pub cola: String,
    pub tarea: String,
    pub estado: Estado,
    #[serde(serialize_with = "rfc3339")]
    pub estado_desde: DateTime<Utc>,
    /// Percent of answered pings among the last AVAILABILITY_WINDOW (None before the first).
    pub disponibilidad: Option<f64>,
    pub ultimo_ping_del_ciclo: Option<PingOutcome>,
    pub pings: Value,
    pub workers: Vec<String>,
    /// While the target is CAIDO: whether its workers answer control pings but do not consume
    /// the queue, or no worker answers (`None` otherwise, or while it cannot be told).
    pub diagnostico: Option<&'static str>,
}

impl Monitor {
    /// Connects (lazily: Redis may be down at start) and starts the event listener, the
    /// history writer and one ping loop per target, all stopped by `shutdown`.
    pub fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let targets = config.target_list()?;
        let redis = Redis::open(config.redis.config())?;
        let client = Client::new(redis.clone(), targets[0].queue.clone());
        let metrics = Metrics::new()?;
        // Task events ride the worker events' connection.
        let task_watch = TaskWatch::new(metrics.registry(), &targets[0].queue)?;
        let listener =
            EventListener::start_with_tasks(redis.clone(), shutdown.clone(), task_watch.handler());
        let (history, writer) = History::start(
            config.history_len,
            redis.clone(),
            Sinks {
                stream: config.history_stream.clone(),
                stream_maxlen: config.history_stream_maxlen,
                file: config.history_file.clone(),
            },
            shutdown.clone(),
        );
        let feed = Feed::new(
            &targets.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
            config.ping_interval(),
            config.dashboard_max_clients,
        );
        let now = Instant::now();
        let detector_config = DetectorConfig {
            timeout: config.ping_timeout(),
            startup_grace: config.startup_grace(),
            degraded_threshold: config.degraded_threshold(),
            window: config.degraded_window,
        };
        let watched = targets
            .into_iter()
            .map(|target| {
                metrics.register_target(&target.name);
                Watched {
                    target,
                    detector: Mutex::new(Detector::new(detector_config.clone(), now)),
                    stats: Mutex::new(Stats {
                        last: None,
                        window: VecDeque::new(),
                        sent: 0,
                        ok: 0,
                        failed: 0,
                        timeouts: 0,
                        workers: BTreeSet::new(),
                        since: Utc::now(),
                        diagnosis: None,
                    }),
                }
            })
            .collect::<Vec<_>>();
        tracing::info!(
            redis = %redis.display_url(),
            targets = ?watched.iter().map(|w| format!("{}:{}:{}", w.target.name, w.target.queue, w.target.task)).collect::<Vec<_>>(),
            interval_ms = config.ping_interval_ms,
            timeout_ms = config.ping_timeout_ms,
            control_ping_interval_ms = config.control_ping_interval_ms,
            "monitor started"
        );
        let control = Board::new(config.control_ping_interval().is_some());
        let control_pinger = config
            .control_ping_interval()
            .map(|interval| ControlPinger {
                board: control.clone(),
                control: Control::new(redis.clone()),
                redis: redis.clone(),
                table: listener.table().clone(),
                metrics: metrics.clone(),
                interval,
                timeout: config.control_ping_timeout(),
                forget_after: config.worker_forget_after(),
                fallback_queues: watched.iter().map(|w| w.target.queue.clone()).collect(),
            });
        let queues = crate::queues::Queues::new(config.queue_sample_interval());
        let sampler = crate::queues::QueueSampler {
            queues: queues.clone(),
            broker: shared::Broker::new(redis.clone()),
            control: Control::new(redis.clone()),
            table: listener.table().clone(),
            board: control.clone(),
            metrics: metrics.clone(),
            interval: config.queue_sample_interval(),
            fixed: config.sampled_queues()?,
            forget_after: config.worker_forget_after(),
            control_timeout: config.ping_timeout(),
        };
        let monitor = Monitor {
            inner: Arc::new(Inner {
                config,
                pinger: Pinger::new(client.clone(), shutdown.clone()),
                client,
                targets: watched,
                history,
                metrics,
                listener,
                changes: broadcast::channel(256).0,
                feed,
                shutdown: shutdown.clone(),
                tasks: Mutex::new(vec![writer]),
                live: Default::default(),
                control,
                task_watch,
                queues,
            }),
        };
        let mut loops: Vec<JoinHandle<()>> = (0..monitor.inner.targets.len())
            .map(|i| tokio::spawn(monitor.clone().watch(i, shutdown.clone())))
            .collect();
        loops.extend(control_pinger.map(|p| tokio::spawn(p.run(shutdown.clone()))));
        loops.push(tokio::spawn(sampler.run(shutdown.clone())));
        monitor
            .inner
            .tasks
            .lock()
            .expect("tasks lock")
            .extend(loops);
        Ok(monitor)
    }

    /// Resolves when every background task has stopped (after `shutdown`).
    pub async fn stopped(&self) {
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.inner.tasks.lock().expect("tasks lock"));
        for task in tasks {
            let _ = task.await;
        }
    }

    /// State changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<StateChange> {
        self.inner.changes.subscribe()
    }

    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn history(&self) -> &History {
        &self.inner.history
    }

    pub fn listener(&self) -> &EventListener {
        &self.inner.listener
    }

    /// What task events have said, for `GET /monitor/tareas/{id}`.
    pub fn task_watch(&self) -> &TaskWatch {
        &self.inner.task_watch
    }

    /// What the queue sampler has read, for `GET /monitor/colas`.
    pub fn queues(&self) -> &crate::queues::Queues {
        &self.inner.queues
    }

    /// The dashboard's live feed.
    pub fn feed(&self) -> &Feed {
        &self.inner.feed
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Cancelled when the process stops: long-lived responses end on it.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    pub fn timeout(&self) -> Duration {
        self.inner.config.ping_timeout()
    }

    /// The current state of the target named `name`.
    pub fn state(&self, name: &str) -> Option<Estado> {
        self.inner
            .targets
            .iter()
            .find(|w| w.target.name == name)
            .map(|w| w.detector.lock().expect("detector lock").state())
    }

    /// The live-worker table: every worker seen on this Redis database, but those gone for
    /// longer than WORKER_FORGET_AFTER_MS.
    pub fn workers(&self) -> Vec<WorkerStatus> {
        let workers = remembered(
            self.inner.listener.table().workers(),
            self.inner.config.worker_forget_after(),
            Utc::now(),
        );
        self.inner
            .metrics
            .workers_alive(workers.iter().filter(|w| w.alive).count());
        workers
    }

    /// The live-worker table with what remote control says of each worker.
    pub fn workers_with_control(&self) -> Vec<WorkerView> {
        self.workers()
            .into_iter()
            .map(|heartbeat| WorkerView {
                control: self.inner.control.get(&heartbeat.hostname),
                heartbeat,
            })
            .collect()
    }

    /// Pings every target concurrently, each bounded by the timeout, in a round sent after this
    /// call: shared with the other callers waiting for the same round (see [`crate::live`]).
    pub async fn ping_now(&self) -> Arc<Vec<PingOutcome>> {
        let this = self.clone();
        self.inner
            .live
            .get(move || {
                let this = this.clone();
                async move {
                    let timeout = this.timeout();
                    let inner = &this.inner;
                    futures_util::future::join_all(
                        inner
                            .targets
                            .iter()
                            .map(|w| inner.pinger.ping(&w.target, timeout)),
                    )
                    .await
                }
            })
            .await
    }

    /// What the loop knows of every target.
    pub fn summaries(&self) -> Vec<TargetSummary> {
        self.inner.targets.iter().map(Watched::summary).collect()
    }

    /// One target's ping loop.
    async fn watch(self, index: usize, shutdown: CancellationToken) {
        let watched = &self.inner.targets[index];
        let mut tick = tokio::time::interval(self.inner.config.ping_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pings: JoinSet<(u64, PingOutcome)> = JoinSet::new();
        let mut heartbeats = self.inner.listener.table().changes();
        let mut control_rounds = self.inner.control.rounds();
        let mut seq = 0u64;
        loop {
            let deadline = watched.detector.lock().expect("detector lock").deadline();
            let silence = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    seq += 1;
                    watched.detector.lock().expect("detector lock").sent(seq, Instant::now());
                    watched.stats.lock().expect("stats lock").sent += 1;
                    self.inner.metrics.sent(&watched.target.name);
                    let pinger = self.inner.pinger.clone();
                    let target = watched.target.clone();
                    let timeout = self.timeout();
                    pings.spawn(async move { (seq, pinger.ping(&target, timeout).await) });
                    // Heartbeats expire with time, not with an event: re-judge them each tick.
                    self.judge_workers(watched);
                }
                Some(joined) = pings.join_next(), if !pings.is_empty() => {
                    if let Ok((seq, outcome)) = joined {
                        self.record(watched, seq, outcome);
                    }
                }
                _ = silence => {
                    let change = watched.detector.lock().expect("detector lock").evaluate(Instant::now());
                    self.publish(watched, change);
                }
                Ok(()) = heartbeats.changed() => self.judge_workers(watched),
                Ok(()) = control_rounds.changed() => self.diagnose(watched),
            }
        }
    }

    /// The second signal: every worker known to answer this target has gone offline or
    /// missed its heartbeats. Known workers gone for longer than WORKER_FORGET_AFTER_MS are
    /// forgotten here too.
    fn judge_workers(&self, watched: &Watched) {
        let mut known: Vec<String> = watched
            .stats
            .lock()
            .expect("stats lock")
            .workers
            .iter()
            .cloned()
            .collect();
        let table = self.inner.listener.table();
        if known.iter().any(|h| table.is_alive(h) == Some(false)) {
            let listed: BTreeSet<String> = self.workers().into_iter().map(|w| w.hostname).collect();
            known.retain(|h| table.is_alive(h) != Some(false) || listed.contains(h));
            watched.stats.lock().expect("stats lock").workers = known.iter().cloned().collect();
        }
        let gone = !known.is_empty() && known.iter().all(|h| table.is_alive(h) == Some(false));
        let change = watched
            .detector
            .lock()
            .expect("detector lock")
            .workers_gone(gone, Instant::now());
        self.publish(watched, change);
    }

    /// Re-judges why the target's task pings fail (only while it is CAIDO), and logs the
    /// diagnosis once when it changes. The `[ALERTA]`/`[RECUPERADO]` lines say *that* the
    /// target fails; this line says what remote control tells of *why*.
    fn diagnose(&self, watched: &Watched) {
        let estado = watched.detector.lock().expect("detector lock").state();
        let diagnosis = if estado == Estado::Caido {
            let workers = self.inner.listener.table().workers();
            self.inner.control.diagnose(&watched.target.queue, &workers)
        } else {
            None
        };
        let servicio = watched.target.name.as_str();
        let mut stats = watched.stats.lock().expect("stats lock");
        let kind = |d: &Option<Diagnosis>| d.as_ref().map(|d| d.diagnostico);
        if kind(&stats.diagnosis) == kind(&diagnosis) {
            stats.diagnosis = diagnosis;
            return;
        }
        let linea = Diagnosis::line(servicio, diagnosis.as_ref(), estado == Estado::Caido);
        if diagnosis.is_some() {
            tracing::warn!(target_service = servicio, "{linea}");
        } else {
            tracing::info!(target_service = servicio, "{linea}");
        }
        stats.diagnosis = diagnosis;
    }

    fn record(&self, watched: &Watched, seq: u64, outcome: PingOutcome) {
        let starting = watched.detector.lock().expect("detector lock").state() == Estado::Iniciando;
        outcome.log(starting);
        self.inner.metrics.outcome(&outcome);
        let mut entry = serde_json::to_value(&outcome).unwrap_or(Value::Null);
        if let Value::Object(o) = &mut entry {
            o.insert("tipo".into(), json!("ping"));
        }
        self.inner.history.record_ping(entry);
        self.inner.feed.ping(&outcome);
        let echo = outcome.echo();
        {
            let mut stats = watched.stats.lock().expect("stats lock");
            match &outcome.result {
                PingResult::Ok { worker, .. } => {
                    stats.ok += 1;
                    if let Some(w) = worker {
                        if !stats.workers.contains(w) {
                            stats.workers.insert(w.clone());
                        }
                    }
                }
                PingResult::Fallo { .. } => stats.failed += 1,
                PingResult::Timeout => stats.timeouts += 1,
            }
            stats.window.push_back(outcome.is_ok());
            while stats.window.len() > self.inner.config.availability_window.max(1) {
                stats.window.pop_front();
            }
            stats.last = Some(outcome);
        }
        let change =
            watched
                .detector
                .lock()
                .expect("detector lock")
                .completed(seq, echo, Instant::now());
        self.publish(watched, change);
    }

    /// Logs a change once, and sends it to the metrics, the history and subscribers.
    fn publish(&self, watched: &Watched, change: Option<Change>) {
        let Some(change) = change else { return };
        let servicio = watched.target.name.as_str();
        self.inner.metrics.change(servicio, &change);
        let event = StateChange::new(servicio, change, Utc::now());
        let linea = &event.linea;
        if event.is_alert() {
            tracing::error!(target_service = servicio, "{linea}");
        } else {
            tracing::info!(target_service = servicio, "{linea}");
        }
        watched.stats.lock().expect("stats lock").since = event.en;
        let mut entry = serde_json::to_value(&event).unwrap_or(Value::Null);
        if let Value::Object(o) = &mut entry {
            o.insert("tipo".into(), json!("cambio"));
        }
        self.inner.history.record_change(entry);
        self.inner.feed.change(&event);
        let _ = self.inner.changes.send(event);
        self.diagnose(watched);
    }
}

impl Watched {
    fn summary(&self) -> TargetSummary {
        let estado = self.detector.lock().expect("detector lock").state();
        let stats = self.stats.lock().expect("stats lock");
        TargetSummary {
            servicio: self.target.name.clone(),
            cola: self.target.queue.clone(),
            tarea: self.target.task.clone(),
            estado,
            estado_desde: stats.since,
            disponibilidad: availability(&stats.window),
            ultimo_ping_del_ciclo: stats.last.clone(),
            pings: json!({
                "enviados": stats.sent,
                "ok": stats.ok,
                "fallidos": stats.failed,
                "timeouts": stats.timeouts,
            }),
            workers: stats.workers.iter().cloned().collect(),
            diagnostico: stats.diagnosis.as_ref().map(|d| d.diagnostico.mensaje()),
        }
    }
}

/// Percent answered, two decimals; `None` for an empty window.
fn availability(window: &VecDeque<bool>) -> Option<f64> {
    if window.is_empty() {
        return None;
    }
    let ok = window.iter().filter(|ok| **ok).count() as f64;
    Some((ok * 10_000.0 / window.len() as f64).round() / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_over_the_window() {
        assert_eq!(availability(&VecDeque::new()), None);
        let w: VecDeque<bool> = [true, true, true, false].into_iter().collect();
        assert_eq!(availability(&w), Some(75.0));
    }
}
