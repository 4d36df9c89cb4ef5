//! Asking each worker directly, through Celery's remote control (`inspect ping`), besides
//! pinging the service through its queue.
//!
//! Why: the health task says whether *the queue* answers; it cannot say why it does not. A
//! worker can heartbeat and answer control messages (both are handled apart from its task
//! slots) while every slot is held by a task that never ends: the queue is stuck, the task
//! pings time out, and to the ping loop that looks exactly like a dead worker. So every
//! CONTROL_PING_INTERVAL_MS this loop sends one `ping` control request addressed to the workers
//! the heartbeats say are alive, and keeps, per worker:
//!
//! - whether it answered, its own answer and how long it took ([`WorkerControl`]);
//! - whether it consumes: a worker that answers control but whose heartbeat `processed` count
//!   has not moved for a window while messages wait in its queues does not ([`Stall`]). Its
//!   queues are asked once per worker process with `active_queues` (any worker, Python or
//!   ours, answers it); until then, the monitor's own target queues stand in for them.
//!
//! From that the monitor tells, for a target whose task pings fail, whether its workers answer
//! control but do not consume, or whether no worker answers at all ([`Board::diagnose`]).
//!
//! The loop only reads: one control request per round (plus `active_queues` for a worker seen
//! for the first time) and one pipelined `LLEN` of the queues, so its cost does not depend on
//! how busy the workers are. The state is a [`Board`] that the monitor reads for the API, the
//! dashboard and the metrics; the loop never calls back into the monitor.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use shared::connection::Outage;
use shared::control::{Control, Reply};
use shared::events::{WorkerStatus, WorkerTable};
use shared::shutdown::CancellationToken;
use shared::{keys, Redis};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::ping::{rfc3339_opt, round_ms};

/// How many heartbeat intervals (and control rounds) `processed` may stand still, while
/// messages wait, before the worker counts as not consuming. Heartbeats carry the count, so
/// the window must span several of them or a worker busy between two would look stuck.
pub const STALL_PERIODS: u32 = 3;

/// Why a target's task pings fail, as far as remote control can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Diagnostico {
    /// Some worker of the target's queue answers control pings: it is alive, but does not
    /// take the queue's messages.
    NoConsumen,
    /// No worker of the target's queue answers control pings (or none is alive).
    NingunoResponde,
}

impl Diagnostico {
    /// The words of `diagnostico` in `GET /monitor` and of the log line.
    pub fn mensaje(self) -> &'static str {
        match self {
            Diagnostico::NoConsumen => "los workers responden al control pero no consumen la cola",
            Diagnostico::NingunoResponde => "ningún worker responde",
        }
    }
}

/// A diagnosis with the workers it rests on, for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub diagnostico: Diagnostico,
    /// The target queue's workers that answered control (for `NoConsumen`), or those asked
    /// that did not (for `NingunoResponde`).
    pub workers: Vec<String>,
}

impl Diagnosis {
    /// The log line of a change of `servicio`'s diagnosis to `to`. `None` means there is
    /// nothing to explain any more when the target is no longer `failing`, or that its workers
    /// have not been asked yet when it still is.
    pub fn line(servicio: &str, to: Option<&Diagnosis>, failing: bool) -> String {
        match to {
            Some(d) if d.workers.is_empty() => {
                format!("[DIAGNOSTICO] {servicio}: {}", d.diagnostico.mensaje())
            }
            Some(d) => {
                let who = match d.diagnostico {
                    Diagnostico::NoConsumen => "responden",
                    Diagnostico::NingunoResponde => "sin respuesta",
                };
                format!(
                    "[DIAGNOSTICO] {servicio}: {} ({who}: {})",
                    d.diagnostico.mensaje(),
                    d.workers.join(", ")
                )
            }
            None if failing => format!(
                "[DIAGNOSTICO] {servicio}: sin diagnóstico (sus workers aún no recibieron el ping \
                 de control)"
            ),
            None => format!("[DIAGNOSTICO] {servicio}: la tarea de salud vuelve a responder"),
        }
    }
}

/// What remote control says of one worker, as `GET /monitor` and the dashboard show it beside
/// the worker's heartbeat fields. `None` fields are unknown (not asked yet, or control pings
/// disabled).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WorkerControl {
    /// Whether it answered the last control ping (a worker whose heartbeats stopped is not
    /// asked, and does not answer).
    pub responde_control: Option<bool>,
    /// How long its answer to the last control ping took, ms (`None` if it did not answer).
    pub latencia_control_ms: Option<f64>,
    /// Its own answer to the last control ping (`{"ok": "pong"}`).
    pub respuesta_control: Option<Value>,
    /// When it was last asked.
    #[serde(serialize_with = "rfc3339_opt")]
    pub ultimo_control: Option<DateTime<Utc>>,
    /// When it last answered.
    #[serde(serialize_with = "rfc3339_opt")]
    pub ultima_respuesta_control: Option<DateTime<Utc>>,
    /// The queues it consumes (its `active_queues` answer).
    pub colas: Option<Vec<String>>,
    /// Messages waiting in its queues (every priority list), at the last round.
    pub mensajes_en_cola: Option<u64>,
    /// `false` when it answers control, but its `processed` count has stood still for the
    /// window while messages waited in its queues; `None` when it does not answer control.
    pub consume: Option<bool>,
    /// How long messages have waited in its queues with its `processed` count standing still,
    /// seconds (`None` while nothing waits or it is consuming).
    pub sin_consumir_s: Option<f64>,
}

/// One row of the worker table: the heartbeat fields, then remote control's.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerView {
    #[serde(flatten)]
    pub heartbeat: WorkerStatus,
    #[serde(flatten)]
    pub control: WorkerControl,
}

/// The heartbeat table as the monitor shows it: every worker alive, and those gone (offline or
/// silent) for less than `forget_after` since their last event, judged at `now` on this
/// process's clock (as the table records arrivals). Workers gone for longer are forgotten, so
/// that a system whose workers come and go under new names (containers) does not list, and
/// keep metric series for, every name it ever had.
pub fn remembered(
    workers: Vec<WorkerStatus>,
    forget_after: Duration,
    now: DateTime<Utc>,
) -> Vec<WorkerStatus> {
    let forget_after = chrono::Duration::from_std(forget_after).unwrap_or(chrono::Duration::MAX);
    workers
        .into_iter()
        .filter(|w| w.alive || now.signed_duration_since(w.last_heartbeat) < forget_after)
        .collect()
}

/// Whether a worker consumes, judged from its `processed` count and the messages waiting in
/// its queues, as they are observed. A pure state machine (instants are passed in), so the rule
/// is unit-tested with exact times: messages must have waited for the whole window while the
/// count stood still; a count that moves, or an empty queue, starts the window again.
#[derive(Debug, Clone, Default)]
pub struct Stall {
    processed: Option<u64>,
    /// Since when messages have waited without the count moving.
    since: Option<Instant>,
}

impl Stall {
    /// Observes the worker's count and its queues' depth at `now`; returns how long messages
    /// have waited without the count moving (`None` if none wait).
    pub fn observe(&mut self, processed: u64, waiting: u64, now: Instant) -> Option<Duration> {
        let moved = self.processed != Some(processed);
        self.processed = Some(processed);
        if waiting == 0 {
            self.since = None;
        } else if moved || self.since.is_none() {
            self.since = Some(now);
        }
        self.since.map(|s| now.saturating_duration_since(s))
    }
}

/// The window after which a worker whose count stands still while messages wait does not
/// consume: [`STALL_PERIODS`] control rounds or heartbeat intervals, whichever is longer.
pub fn stall_window(interval: Duration, heartbeat_freq: f64) -> Duration {
    let heartbeat = Duration::try_from_secs_f64(heartbeat_freq.max(0.0)).unwrap_or(Duration::ZERO);
    interval.max(heartbeat) * STALL_PERIODS
}

/// What the loop knows of one worker.
#[derive(Debug, Clone, Default)]
struct Record {
    /// The process the record is about: a new pid under the same name is a new worker (its
    /// queues and count start again).
    pid: u32,
    view: WorkerControl,
    stall: Stall,
}

/// The loop's findings, read by the monitor. Cheap to clone; every clone is the same board.
#[derive(Clone)]
pub struct Board {
    inner: Arc<BoardInner>,
}

struct BoardInner {
    enabled: bool,
    records: Mutex<BTreeMap<String, Record>>,
    /// Bumped after every round, so the monitor re-diagnoses its targets at once.
    rounds: watch::Sender<u64>,
}

impl Board {
    /// An empty board; `enabled: false` when control pings are off (everything stays unknown).
    pub fn new(enabled: bool) -> Self {
        Board {
            inner: Arc::new(BoardInner {
                enabled,
                records: Mutex::default(),
                rounds: watch::channel(0).0,
            }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner.enabled
    }

    /// A receiver that changes after every round.
    pub fn rounds(&self) -> watch::Receiver<u64> {
        self.inner.rounds.subscribe()
    }

    /// What control says of `hostname` (all unknown if it was never asked).
    pub fn get(&self, hostname: &str) -> WorkerControl {
        self.inner
            .records
            .lock()
            .expect("board lock")
            .get(hostname)
            .map(|r| r.view.clone())
            .unwrap_or_default()
    }

    /// Why the task pings of a target on `queue` fail, given the heartbeat table `workers`:
    /// `None` when control pings are off, or when the queue's workers have not been asked yet.
    pub fn diagnose(&self, queue: &str, workers: &[WorkerStatus]) -> Option<Diagnosis> {
        if !self.enabled() {
            return None;
        }
        let records = self.inner.records.lock().expect("board lock");
        let mut answering = Vec::new();
        let mut silent = Vec::new();
        let mut unknown = false;
        for w in workers.iter().filter(|w| w.alive) {
            let record = records.get(&w.hostname).filter(|r| r.pid == w.pid);
            // A worker whose queues are not known yet may well serve this one.
            let serves = record
                .and_then(|r| r.view.colas.as_ref())
                .is_none_or(|colas| colas.iter().any(|c| c == queue));
            if !serves {
                continue;
            }
            match record.and_then(|r| r.view.responde_control) {
                Some(true) => answering.push(w.hostname.clone()),
                Some(false) => silent.push(w.hostname.clone()),
                None => unknown = true,
            }
        }
        if !answering.is_empty() {
            Some(Diagnosis {
                diagnostico: Diagnostico::NoConsumen,
                workers: answering,
            })
        } else if unknown {
            None
        } else {
            Some(Diagnosis {
                diagnostico: Diagnostico::NingunoResponde,
                workers: silent,
            })
        }
    }

    /// Whether some worker alive in `workers` has not been asked yet (under its current pid).
    fn has_newcomers(&self, workers: &[WorkerStatus]) -> bool {
        let records = self.inner.records.lock().expect("board lock");
        workers.iter().filter(|w| w.alive).any(|w| {
            records
                .get(&w.hostname)
                .is_none_or(|r| r.pid != w.pid || r.view.responde_control.is_none())
        })
    }

    /// The queues to count for each worker: its own if known, else `fallback`.
    fn queues_of(
        &self,
        workers: &[WorkerStatus],
        fallback: &[String],
    ) -> BTreeMap<String, Vec<String>> {
        let records = self.inner.records.lock().expect("board lock");
        workers
            .iter()
            .map(|w| {
                let own = records
                    .get(&w.hostname)
                    .filter(|r| r.pid == w.pid)
                    .and_then(|r| r.view.colas.clone());
                (w.hostname.clone(), own.unwrap_or_else(|| fallback.to_vec()))
            })
            .collect()
    }

    /// Hostnames (among `answered`) whose queues are not known for their current pid.
    fn queues_unknown(&self, workers: &[WorkerStatus], answered: &BTreeSet<String>) -> Vec<String> {
        let records = self.inner.records.lock().expect("board lock");
        workers
            .iter()
            .filter(|w| answered.contains(&w.hostname))
            .filter(|w| {
                records
                    .get(&w.hostname)
                    .is_none_or(|r| r.pid != w.pid || r.view.colas.is_none())
            })
            .map(|w| w.hostname.clone())
            .collect()
    }
}

/// What one round found, before it is written to the board.
struct Round {
    asked_at: DateTime<Utc>,
    now: Instant,
    /// Every worker of the heartbeat table, and whether it was asked (alive).
    workers: Vec<WorkerStatus>,
    replies: BTreeMap<String, Reply>,
    /// Queues learnt this round, by hostname.
    queues: BTreeMap<String, Vec<String>>,
    /// Messages waiting per queue.
    depths: BTreeMap<String, u64>,
}

/// The control-ping loop's settings and handles.
pub struct ControlPinger {
    pub board: Board,
    pub control: Control,
    pub redis: Redis,
    pub table: WorkerTable,
    pub metrics: Metrics,
    pub interval: Duration,
    /// How long a round waits for answers: min(interval, PING_TIMEOUT_MS).
    pub timeout: Duration,
    /// Workers gone for longer are dropped from the board and the metrics ([`remembered`]).
    pub forget_after: Duration,
    /// The monitor's target queues: counted for a worker whose own queues are not known.
    pub fallback_queues: Vec<String>,
}

impl ControlPinger {
    /// Runs a round every `interval`, and at once when a worker the board has not asked comes
    /// alive, until `shutdown`. A round under way when `shutdown` comes gets one more timeout
    /// to finish, so that it can remove its reply route from Redis as it does when it ends.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heartbeats = self.table.changes();
        let mut outage = Outage::new("control ping");
        let grace = self.timeout;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
                Ok(()) = heartbeats.changed() => {
                    if !self.board.has_newcomers(&self.table.workers()) {
                        continue;
                    }
                }
            }
            let round = self.round(&mut outage);
            tokio::pin!(round);
            let stopped = async {
                shutdown.cancelled().await;
                tokio::time::sleep(grace).await;
            };
            tokio::select! {
                _ = &mut round => {}
                _ = stopped => break,
            }
        }
    }

    async fn round(&self, outage: &mut Outage) {
        let asked_at = Utc::now();
        let workers = remembered(self.table.workers(), self.forget_after, asked_at);
        let alive: Vec<String> = workers
            .iter()
            .filter(|w| w.alive)
            .map(|w| w.hostname.clone())
            .collect();
        let mut replies = BTreeMap::new();
        let mut queues = BTreeMap::new();
        if !alive.is_empty() {
            match self.control.ping(Some(alive.clone()), self.timeout).await {
                Ok(got) => {
                    outage.ok();
                    for reply in got {
                        replies.insert(reply.hostname.clone(), reply);
                    }
                }
                Err(error) => {
                    outage.failed(&error);
                }
            }
            let answered: BTreeSet<String> = replies.keys().cloned().collect();
            let unknown = self.board.queues_unknown(&workers, &answered);
            if !unknown.is_empty() {
                let asked = self
                    .control
                    .call(
                        "active_queues",
                        Map::new(),
                        Some(unknown),
                        self.timeout,
                        None,
                    )
                    .await;
                for reply in asked.unwrap_or_default() {
                    if let Some(names) = queue_names(&reply.answer) {
                        queues.insert(reply.hostname, names);
                    }
                }
            }
        }
        let mut wanted: BTreeSet<String> = self.fallback_queues.iter().cloned().collect();
        for (hostname, own) in self.board.queues_of(&workers, &self.fallback_queues) {
            wanted.extend(queues.get(&hostname).cloned().unwrap_or(own));
        }
        let depths = match depths(&self.redis, &wanted).await {
            Ok(d) => d,
            Err(error) => {
                outage.failed(&error);
                BTreeMap::new()
            }
        };
        self.record(Round {
            asked_at,
            now: Instant::now(),
            workers,
            replies,
            queues,
            depths,
        });
    }

    /// Writes a round to the board and the metrics, and tells the monitor.
    fn record(&self, round: Round) {
        {
            let mut records = self.board.inner.records.lock().expect("board lock");
            // Forgotten workers: their records and series go.
            records.retain(|hostname, _| {
                let kept = round.workers.iter().any(|w| &w.hostname == hostname);
                if !kept {
                    self.metrics.forget_worker(hostname);
                }
                kept
            });
            for w in &round.workers {
                let record = records.entry(w.hostname.clone()).or_default();
                if record.pid != w.pid {
                    *record = Record {
                        pid: w.pid,
                        ..Record::default()
                    };
                }
                if let Some(colas) = round.queues.get(&w.hostname) {
                    record.view.colas = Some(colas.clone());
                }
                let view = &mut record.view;
                let reply = round.replies.get(&w.hostname);
                if w.alive {
                    view.ultimo_control = Some(round.asked_at);
                }
                view.responde_control = Some(reply.is_some());
                view.latencia_control_ms = reply.map(|r| round_ms(r.after));
                view.respuesta_control = reply.map(|r| r.answer.clone());
                if reply.is_some() {
                    view.ultima_respuesta_control = Some(Utc::now());
                }
                let own = view.colas.as_deref().unwrap_or(&self.fallback_queues);
                // Without depths (Redis did not answer), nothing is known to wait.
                let waiting = (!round.depths.is_empty())
                    .then(|| own.iter().filter_map(|q| round.depths.get(q)).sum::<u64>());
                view.mensajes_en_cola = waiting;
                let stalled = record
                    .stall
                    .observe(w.processed, waiting.unwrap_or(0), round.now);
                let window = stall_window(self.interval, w.freq);
                let view = &mut record.view;
                view.sin_consumir_s = stalled.map(|d| d.as_secs_f64());
                view.consume =
                    (w.alive && reply.is_some()).then(|| stalled.is_none_or(|d| d < window));
                self.metrics
                    .worker_control(&w.hostname, reply.map(|r| r.after), view.consume);
            }
        }
        self.board.inner.rounds.send_modify(|n| *n += 1);
    }
}

/// The queue names of an `active_queues` answer (`[{"name": ...}, ...]`).
fn queue_names(answer: &Value) -> Option<Vec<String>> {
    let names: Vec<String> = answer
        .as_array()?
        .iter()
        .filter_map(|q| q.get("name").and_then(Value::as_str))
        .map(str::to_owned)
        .collect();
    Some(names)
}

/// Messages waiting in each queue: LLEN summed over its priority lists, in one round trip.
async fn depths(redis: &Redis, queues: &BTreeSet<String>) -> shared::Result<BTreeMap<String, u64>> {
    if queues.is_empty() {
        return Ok(BTreeMap::new());
    }
    let lists: Vec<(String, String)> = queues
        .iter()
        .flat_map(|q| {
            keys::queue_lists(q)
                .into_iter()
                .map(move |l| (q.clone(), l))
        })
        .collect();
    let lengths: Vec<u64> = redis
        .run(|mut c| {
            let lists = &lists;
            async move {
                let mut pipe = redis::pipe();
                for (_, list) in lists {
                    pipe.llen(list);
                }
                pipe.query_async(&mut c).await
            }
        })
        .await?;
    let mut depths = BTreeMap::new();
    for ((queue, _), n) in lists.iter().zip(lengths) {
        *depths.entry(queue.clone()).or_insert(0) += n;
    }
    Ok(depths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waiting_without_progress_is_measured_from_when_it_began() {
        let t0 = Instant::now();
        let mut s = Stall::default();
        // Idle: nothing waits, whatever the count.
        assert_eq!(s.observe(5, 0, t0), None);
        assert_eq!(s.observe(5, 0, t0 + 5000 * MS), None);
        // Messages arrive: the window starts now, not at the last move of the count.
        assert_eq!(s.observe(5, 3, t0 + 6000 * MS), Some(Duration::ZERO));
        assert_eq!(s.observe(5, 4, t0 + 7500 * MS), Some(1500 * MS));
        // The count moves: consuming, the window starts again.
        assert_eq!(s.observe(6, 4, t0 + 8000 * MS), Some(Duration::ZERO));
        assert_eq!(s.observe(6, 4, t0 + 9000 * MS), Some(1000 * MS));
        // The queue empties: nothing waits.
        assert_eq!(s.observe(6, 0, t0 + 9500 * MS), None);
        assert_eq!(s.observe(6, 1, t0 + 9600 * MS), Some(Duration::ZERO));
    }

    #[test]
    fn workers_gone_for_long_are_forgotten() {
        let now = Utc::now();
        let seen = |hostname: &str, alive: bool, secs_ago: i64| WorkerStatus {
            last_heartbeat: now - chrono::Duration::seconds(secs_ago),
            ..status(hostname, alive)
        };
        let workers = vec![
            seen("vivo@h", true, 3600),
            seen("reciente@h", false, 899),
            seen("olvidado@h", false, 900),
        ];
        let names: Vec<String> = remembered(workers, Duration::from_secs(900), now)
            .into_iter()
            .map(|w| w.hostname)
            .collect();
        assert_eq!(names, ["vivo@h", "reciente@h"]);
    }

    #[test]
    fn the_window_spans_several_heartbeats_or_rounds() {
        assert_eq!(stall_window(2000 * MS, 2.0), 6000 * MS);
        assert_eq!(stall_window(200 * MS, 0.5), 1500 * MS);
        assert_eq!(stall_window(2000 * MS, 0.5), 6000 * MS);
        assert_eq!(stall_window(100 * MS, -1.0), 300 * MS);
    }

    fn status(hostname: &str, alive: bool) -> WorkerStatus {
        WorkerStatus {
            hostname: hostname.into(),
            alive,
            last_heartbeat: Utc::now(),
            processed: 0,
            active: 0,
            freq: 2.0,
            pid: 7,
            sw_ident: "rcelery".into(),
        }
    }

    fn set(board: &Board, hostname: &str, responde: bool, colas: Option<&[&str]>) {
        let mut records = board.inner.records.lock().unwrap();
        let r = records.entry(hostname.into()).or_default();
        r.pid = 7;
        r.view.responde_control = Some(responde);
        r.view.colas = colas.map(|c| c.iter().map(|s| s.to_string()).collect());
    }

    #[test]
    fn diagnosis_from_the_queues_workers() {
        let board = Board::new(true);
        let workers = [
            status("a@h", true),
            status("b@h", true),
            status("c@h", false),
        ];
        // Not asked yet: nothing to say.
        assert_eq!(board.diagnose("q", &workers), None);
        set(&board, "a@h", true, Some(&["q"]));
        set(&board, "b@h", false, Some(&["q"]));
        let d = board.diagnose("q", &workers).unwrap();
        assert_eq!(d.diagnostico, Diagnostico::NoConsumen);
        assert_eq!(d.workers, ["a@h"]);
        // A worker of another queue does not count for this one.
        set(&board, "a@h", true, Some(&["otra"]));
        let d = board.diagnose("q", &workers).unwrap();
        assert_eq!(d.diagnostico, Diagnostico::NingunoResponde);
        assert_eq!(d.workers, ["b@h"]);
        // No worker alive at all.
        let d = board.diagnose("q", &[status("c@h", false)]).unwrap();
        assert_eq!(d.diagnostico, Diagnostico::NingunoResponde);
        // Disabled: never a diagnosis.
        assert_eq!(Board::new(false).diagnose("q", &workers), None);
    }

    #[test]
    fn log_lines() {
        let d = Diagnosis {
            diagnostico: Diagnostico::NoConsumen,
            workers: vec!["a@h".into(), "b@h".into()],
        };
        assert_eq!(
            Diagnosis::line("InventarioService", Some(&d), true),
            "[DIAGNOSTICO] InventarioService: los workers responden al control pero no consumen \
             la cola (responden: a@h, b@h)"
        );
        let none = Diagnosis {
            diagnostico: Diagnostico::NingunoResponde,
            workers: vec![],
        };
        assert_eq!(
            Diagnosis::line("X", Some(&none), true),
            "[DIAGNOSTICO] X: ningún worker responde"
        );
        assert_eq!(
            Diagnosis::line("X", None, false),
            "[DIAGNOSTICO] X: la tarea de salud vuelve a responder"
        );
        assert!(Diagnosis::line("X", None, true).starts_with("[DIAGNOSTICO] X: sin diagnóstico"));
    }

    #[test]
    fn active_queues_answers() {
        let ours = json!([{"name": "inventario", "routing_key": "inventario"}, {"name": "b"}]);
        assert_eq!(queue_names(&ours).unwrap(), ["inventario", "b"]);
        assert_eq!(queue_names(&json!({"error": "x"})), None);
    }

    #[test]
    fn a_row_is_the_heartbeat_fields_then_controls() {
        let view = WorkerView {
            heartbeat: status("a@h", true),
            control: WorkerControl {
                responde_control: Some(true),
                latencia_control_ms: Some(1.25),
                consume: Some(false),
                ..WorkerControl::default()
            },
        };
        let v = serde_json::to_value(&view).unwrap();
        assert_eq!(v["hostname"], "a@h");
        assert_eq!(v["alive"], true);
        assert_eq!(v["responde_control"], true);
        assert_eq!(v["latencia_control_ms"], 1.25);
        assert_eq!(v["consume"], false);
        assert!(v["ultimo_control"].is_null());
    }
}
