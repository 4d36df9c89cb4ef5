//! What the monitor makes of task events (sent by workers started with `TASK_EVENTS`, Celery's
//! `-E`, and by clients with `task_send_sent_event`): Prometheus counters and a run-time
//! histogram named as danihodovic/celery-exporter names them, so its dashboards and alerts
//! work unchanged, and a bounded table of recent tasks, as Flower keeps, that
//! `GET /monitor/tareas/{id}` merges with the result backend.
//!
//! Only `task-sent` and `task-received` carry a task's name (and only `task-sent` its queue);
//! later events carry the id alone. The table of recent tasks is also the id → (name, queue)
//! map that labels them, so both are bounded by the same [`MAX_TASKS`]: a task whose first
//! event is older than the last [`MAX_TASKS`] tasks' is counted under `name="unknown"`. A
//! task whose queue is unknown (no `task-sent` seen: its client sends none, as
//! inventario-service without `TASK_SENT_EVENTS`) is counted under the monitor's default
//! queue, as celery-exporter does with its `--default-queue-name`; the table shows its queue
//! as unknown.
//!
//! Label values come from whoever publishes events, so each label takes at most a fixed
//! number of distinct values ([`MAX_NAMES`], ...); later ones are counted under [`OTHER`],
//! and a series per value ever seen cannot grow the monitor's memory or the scrape without
//! end.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use shared::events::{TaskEvent, TaskEventHandler, TaskEventKind};

/// Tasks kept in the table (Flower's default `max_tasks`).
pub const MAX_TASKS: usize = 10_000;
/// Distinct values per label at most; the rest are counted under [`OTHER`].
pub const MAX_NAMES: usize = 200;
pub const MAX_HOSTNAMES: usize = 200;
pub const MAX_QUEUES: usize = 50;
pub const MAX_EXCEPTIONS: usize = 100;
/// The label value of what is over its label's cap.
pub const OTHER: &str = "_other";
/// The name label of a task whose name was never seen (its first event was missed).
pub const UNKNOWN: &str = "unknown";

/// Run-time buckets, from 100 µs (a trivial task of ours) to a minute.
const RUNTIME_BUCKETS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// One task as its events describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub id: String,
    /// Celery's state name after the latest event (by the sender's timestamp).
    pub state: &'static str,
    pub name: Option<String>,
    /// Python reprs, as the sender wrote them.
    pub args: Option<String>,
    pub kwargs: Option<String>,
    /// The worker that last reported on it.
    pub worker: Option<String>,
    /// Known from `task-sent` only.
    pub queue: Option<String>,
    pub retries: Option<u32>,
    pub sent: Option<DateTime<Utc>>,
    pub received: Option<DateTime<Utc>>,
    pub started: Option<DateTime<Utc>>,
    /// When it succeeded, failed, was revoked or rejected.
    pub finished: Option<DateTime<Utc>>,
    /// Seconds, as the worker measured it (`task-succeeded`).
    pub runtime: Option<f64>,
    /// The result's repr (`task-succeeded`).
    pub result: Option<String>,
    /// The exception's repr and the traceback (`task-failed`, `task-retried`).
    pub exception: Option<String>,
    pub traceback: Option<String>,
    /// The sender's timestamp of the event that set `state`, so a late, older event (batches
    /// of two lanes, a client's `task-sent` after the worker's events) does not undo it.
    state_at: f64,
}

impl TaskRecord {
    fn new(id: &str) -> Self {
        TaskRecord {
            id: id.to_owned(),
            state: "PENDING",
            name: None,
            args: None,
            kwargs: None,
            worker: None,
            queue: None,
            retries: None,
            sent: None,
            received: None,
            started: None,
            finished: None,
            runtime: None,
            result: None,
            exception: None,
            traceback: None,
            state_at: f64::NEG_INFINITY,
        }
    }

    /// Takes what `e` says of the task.
    fn apply(&mut self, e: &TaskEvent) {
        let at = e.timestamp.unwrap_or_else(now_secs);
        let when = datetime(at);
        fill(&mut self.name, &e.name);
        fill(&mut self.args, &e.args);
        fill(&mut self.kwargs, &e.kwargs);
        fill(&mut self.queue, &e.queue);
        if e.retries.is_some() {
            self.retries = e.retries;
        }
        match e.kind {
            TaskEventKind::Sent => self.sent = Some(when),
            TaskEventKind::Received => self.received = Some(when),
            TaskEventKind::Started => self.started = Some(when),
            TaskEventKind::Succeeded => {
                self.finished = Some(when);
                self.runtime = e.runtime;
                fill(&mut self.result, &e.result);
            }
            TaskEventKind::Failed | TaskEventKind::Retried => {
                if e.kind == TaskEventKind::Failed {
                    self.finished = Some(when);
                }
                fill(&mut self.exception, &e.exception);
                fill(&mut self.traceback, &e.traceback);
            }
            TaskEventKind::Revoked | TaskEventKind::Rejected => self.finished = Some(when),
        }
        if e.kind != TaskEventKind::Sent && !e.hostname.is_empty() {
            self.worker = Some(e.hostname.clone());
        }
        if at >= self.state_at {
            self.state = e.kind.state();
            self.state_at = at;
        }
    }
}

fn fill(field: &mut Option<String>, from: &Option<String>) {
    if from.is_some() {
        field.clone_from(from);
    }
}

fn now_secs() -> f64 {
    Utc::now().timestamp_micros() as f64 / 1e6
}

fn datetime(secs: f64) -> DateTime<Utc> {
    Utc.timestamp_micros((secs * 1e6) as i64)
        .single()
        .unwrap_or_else(Utc::now)
}

/// The recent tasks, oldest first seen first out.
struct Table {
    tasks: HashMap<String, TaskRecord>,
    order: VecDeque<String>,
    names: Cap,
    hostnames: Cap,
    queues: Cap,
    exceptions: Cap,
}

impl Table {
    fn record(&mut self, e: &TaskEvent) -> &TaskRecord {
        if !self.tasks.contains_key(&e.id) {
            if self.order.len() >= MAX_TASKS {
                if let Some(old) = self.order.pop_front() {
                    self.tasks.remove(&old);
                }
            }
            self.order.push_back(e.id.clone());
        }
        let task = self
            .tasks
            .entry(e.id.clone())
            .or_insert_with(|| TaskRecord::new(&e.id));
        task.apply(e);
        task
    }
}

/// The distinct values one label has taken, up to a cap.
struct Cap {
    seen: HashSet<String>,
    max: usize,
}

impl Cap {
    fn new(max: usize) -> Self {
        Cap {
            seen: HashSet::new(),
            max,
        }
    }

    /// `value` if it is one of the first `max` values seen, else [`OTHER`].
    fn label<'a>(&mut self, value: &'a str) -> &'a str {
        if self.seen.contains(value) {
            return value;
        }
        if self.seen.len() < self.max {
            self.seen.insert(value.to_owned());
            return value;
        }
        OTHER
    }
}

/// celery-exporter's task series.
#[derive(Clone)]
struct TaskMetrics {
    counters: HashMap<TaskEventKind, IntCounterVec>,
    failed: IntCounterVec,
    runtime: HistogramVec,
}

impl TaskMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        const LABELS: [&str; 3] = ["name", "hostname", "queue_name"];
        let kinds = [
            (
                TaskEventKind::Sent,
                "sent",
                "Sent when a task message is published.",
            ),
            (
                TaskEventKind::Received,
                "received",
                "Sent when the worker receives a task.",
            ),
            (
                TaskEventKind::Started,
                "started",
                "Sent just before the worker executes the task.",
            ),
            (
                TaskEventKind::Succeeded,
                "succeeded",
                "Sent if the task executed successfully.",
            ),
            (
                TaskEventKind::Retried,
                "retried",
                "Sent if the task failed, but will be retried.",
            ),
            (
                TaskEventKind::Revoked,
                "revoked",
                "Sent if the task has been revoked.",
            ),
            (
                TaskEventKind::Rejected,
                "rejected",
                "The task was rejected by the worker.",
            ),
        ];
        let mut counters = HashMap::new();
        for (kind, word, help) in kinds {
            let c = IntCounterVec::new(
                Opts::new(format!("celery_task_{word}_total"), help),
                &LABELS,
            )?;
            registry.register(Box::new(c.clone()))?;
            counters.insert(kind, c);
        }
        let failed = IntCounterVec::new(
            Opts::new(
                "celery_task_failed_total",
                "Sent if the execution of the task failed.",
            ),
            &["name", "hostname", "exception", "queue_name"],
        )?;
        registry.register(Box::new(failed.clone()))?;
        let runtime = HistogramVec::new(
            HistogramOpts::new(
                "celery_task_runtime",
                "Histogram of task runtime measurements, seconds (task-succeeded's runtime).",
            )
            .buckets(RUNTIME_BUCKETS.to_vec()),
            &LABELS,
        )?;
        registry.register(Box::new(runtime.clone()))?;
        Ok(TaskMetrics {
            counters,
            failed,
            runtime,
        })
    }
}

/// The task-event side of the monitor: feed it events ([`TaskWatch::handler`]), read the table.
/// Cheap to clone; every clone is the same watch.
#[derive(Clone)]
pub struct TaskWatch {
    table: Arc<Mutex<Table>>,
    metrics: TaskMetrics,
    /// The queue label of a task whose queue no event said.
    default_queue: Arc<str>,
}

impl TaskWatch {
    /// Registers the task series in `registry`.
    pub fn new(registry: &Registry, default_queue: &str) -> Result<Self, prometheus::Error> {
        Ok(TaskWatch {
            table: Arc::new(Mutex::new(Table {
                tasks: HashMap::new(),
                order: VecDeque::new(),
                names: Cap::new(MAX_NAMES),
                hostnames: Cap::new(MAX_HOSTNAMES),
                queues: Cap::new(MAX_QUEUES),
                exceptions: Cap::new(MAX_EXCEPTIONS),
            })),
            metrics: TaskMetrics::new(registry)?,
            default_queue: default_queue.into(),
        })
    }

    /// What the event listener calls with each task event.
    pub fn handler(&self) -> TaskEventHandler {
        let watch = self.clone();
        Arc::new(move |e| watch.record(&e))
    }

    /// Counts the event and records it in the table.
    pub fn record(&self, e: &TaskEvent) {
        let mut guard = self.table.lock().expect("task table lock");
        let table = &mut *guard;
        let task = table.record(e);
        let name = task.name.clone().unwrap_or_else(|| UNKNOWN.to_owned());
        let queue = task
            .queue
            .clone()
            .unwrap_or_else(|| self.default_queue.to_string());
        let name = table.names.label(&name).to_owned();
        let queue = table.queues.label(&queue).to_owned();
        let hostname = table.hostnames.label(&e.hostname).to_owned();
        let labels = [name.as_str(), hostname.as_str(), queue.as_str()];
        match e.kind {
            TaskEventKind::Failed => {
                let exception = exception_name(e.exception.as_deref());
                let exception = table.exceptions.label(exception);
                self.metrics
                    .failed
                    .with_label_values(&[&name, &hostname, exception, &queue])
                    .inc();
            }
            kind => {
                if let Some(c) = self.metrics.counters.get(&kind) {
                    c.with_label_values(&labels).inc();
                }
                if let (TaskEventKind::Succeeded, Some(runtime)) = (kind, e.runtime) {
                    self.metrics
                        .runtime
                        .with_label_values(&labels)
                        .observe(runtime);
                }
            }
        }
    }

    /// The task's record, if its events are still in the table.
    pub fn get(&self, id: &str) -> Option<TaskRecord> {
        self.table
            .lock()
            .expect("task table lock")
            .tasks
            .get(id)
            .cloned()
    }

    /// The `n` tasks first seen last, newest first.
    pub fn recent(&self, n: usize) -> Vec<TaskRecord> {
        let table = self.table.lock().expect("task table lock");
        table
            .order
            .iter()
            .rev()
            .take(n)
            .filter_map(|id| table.tasks.get(id).cloned())
            .collect()
    }

    /// Tasks in the table.
    pub fn len(&self) -> usize {
        self.table.lock().expect("task table lock").order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The exception's class from its repr (`ValueError('sin stock')` → `ValueError`), as
/// celery-exporter labels failures; `unknown` when there is none or it is not a repr.
pub fn exception_name(repr: Option<&str>) -> &str {
    let Some(repr) = repr else { return UNKNOWN };
    let class = repr.split('(').next().unwrap_or_default().trim();
    let valid = !class.is_empty()
        && class.len() <= 100
        && class
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.');
    if valid {
        class
    } else {
        UNKNOWN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: TaskEventKind, id: &str, at: f64) -> TaskEvent {
        TaskEvent {
            kind,
            id: id.into(),
            hostname: "w@h".into(),
            timestamp: Some(at),
            clock: None,
            name: None,
            args: None,
            kwargs: None,
            retries: None,
            eta: None,
            expires: None,
            queue: None,
            result: None,
            runtime: None,
            exception: None,
            traceback: None,
            terminated: None,
            expired: None,
            requeue: None,
        }
    }

    fn watch() -> (TaskWatch, Registry) {
        let registry = Registry::new();
        (TaskWatch::new(&registry, "inventario").unwrap(), registry)
    }

    fn rendered(registry: &Registry) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut buf)
            .unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn later_events_are_labelled_with_the_received_name() {
        let (w, registry) = watch();
        w.record(&TaskEvent {
            name: Some("add".into()),
            args: Some("[1, 2]".into()),
            ..event(TaskEventKind::Received, "a", 10.0)
        });
        w.record(&event(TaskEventKind::Started, "a", 10.1));
        w.record(&TaskEvent {
            runtime: Some(0.002),
            result: Some("3".into()),
            ..event(TaskEventKind::Succeeded, "a", 10.2)
        });
        w.record(&TaskEvent {
            exception: Some("ValueError('mal')".into()),
            ..event(TaskEventKind::Failed, "b", 11.0)
        });
        let text = rendered(&registry);
        let labels = r#"hostname="w@h",name="add",queue_name="inventario""#;
        for series in [
            format!("celery_task_received_total{{{labels}}} 1"),
            format!("celery_task_started_total{{{labels}}} 1"),
            format!("celery_task_succeeded_total{{{labels}}} 1"),
            format!("celery_task_runtime_count{{{labels}}} 1"),
            r#"celery_task_failed_total{exception="ValueError",hostname="w@h",name="unknown",queue_name="inventario"} 1"#.into(),
        ] {
            assert!(text.contains(&series), "{series} in\n{text}");
        }
        let a = w.get("a").unwrap();
        assert_eq!((a.state, a.result.as_deref()), ("SUCCESS", Some("3")));
        assert_eq!(a.args.as_deref(), Some("[1, 2]"));
        assert!(a.received.unwrap() < a.finished.unwrap());
    }

    #[test]
    fn an_older_event_arriving_late_does_not_undo_the_state() {
        let (w, _) = watch();
        w.record(&event(TaskEventKind::Succeeded, "a", 10.2));
        w.record(&event(TaskEventKind::Started, "a", 10.1));
        assert_eq!(w.get("a").unwrap().state, "SUCCESS");
        assert!(w.get("a").unwrap().started.is_some());
        // A retried task is received again, later: that does move it on.
        w.record(&event(TaskEventKind::Retried, "a", 10.3));
        w.record(&event(TaskEventKind::Received, "a", 10.5));
        assert_eq!(w.get("a").unwrap().state, "RECEIVED");
    }

    #[test]
    fn the_table_and_the_labels_are_bounded() {
        let (w, registry) = watch();
        for i in 0..MAX_TASKS + 10 {
            w.record(&TaskEvent {
                name: Some(format!("t{}", i % (MAX_NAMES + 5))),
                ..event(TaskEventKind::Received, &format!("id{i}"), 1.0)
            });
        }
        assert_eq!(w.len(), MAX_TASKS);
        assert!(w.get("id0").is_none());
        assert!(w.get(&format!("id{}", MAX_TASKS + 9)).is_some());
        assert_eq!(w.recent(2)[0].id, format!("id{}", MAX_TASKS + 9));
        let text = rendered(&registry);
        let series = text
            .lines()
            .filter(|l| l.starts_with("celery_task_received_total{"))
            .count();
        assert_eq!(series, MAX_NAMES + 1, "the first names and {OTHER}");
        assert!(text.contains(r#"name="_other""#));
    }

    #[test]
    fn exception_names() {
        assert_eq!(exception_name(Some("ValueError('x')")), "ValueError");
        assert_eq!(
            exception_name(Some("celery.exceptions.Retry()")),
            "celery.exceptions.Retry"
        );
        assert_eq!(exception_name(Some("{\"a\": 1}")), UNKNOWN);
        assert_eq!(exception_name(None), UNKNOWN);
    }
}
