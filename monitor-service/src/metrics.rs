//! Prometheus metrics of the monitor, per target: the echo latency histogram, counters of
//! pings sent / answered / failed / timed out, state changes, and the current state as a gauge
//! (0 OK, 1 DEGRADADO, 2 CAIDO, -1 INICIANDO), plus the live workers seen through heartbeats
//! and, per worker, its answer to the control ping and whether it consumes its queue. They
//! exist so that what the monitor sees can be graphed and alerted on by Prometheus, over any
//! span, without polling `/monitor` (which sends a live ping each time).
//!
//! The queue sampler's figures ([`crate::queues`]) carry the names danihodovic/celery-exporter
//! gives them (`celery_queue_length`, `celery_worker_up`, ...), so its dashboards and alerts
//! work unchanged; what it has no name for is `monitor_*`. The process's own figures
//! (`process_*`: memory, CPU, open files) come from the prometheus crate's process collector.
//! [`Metrics::registry`] lets another module register its own metrics beside these.

use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use shared::broker::stats::QueueStats;

use crate::detector::{Change, Estado};
use crate::ping::{PingOutcome, PingResult};
use crate::queues::Cola;

/// Buckets of the ping latency: from 50 µs, since a ping on a local Redis answers well under
/// a millisecond, up to the seconds of a struggling worker.
const LATENCY_BUCKETS: [f64; 17] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.3, 0.5,
    0.75, 1.0, 2.0,
];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    latency: HistogramVec,
    sent: IntCounterVec,
    ok: IntCounterVec,
    failed: IntCounterVec,
    timeouts: IntCounterVec,
    changes: IntCounterVec,
    state: IntGaugeVec,
    workers_alive: IntGauge,
    control_latency: GaugeVec,
    control_answered: IntGaugeVec,
    consuming: IntGaugeVec,
    queue: QueueMetrics,
}

/// The queue sampler's series.
#[derive(Clone)]
struct QueueMetrics {
    length: IntGaugeVec,
    consumers: IntGaugeVec,
    workers: IntGaugeVec,
    processes: IntGaugeVec,
    oldest: GaugeVec,
    unacked: IntGauge,
    parked: IntGauge,
    quarantine: IntGauge,
    dropped: IntCounterVec,
    stale: IntGauge,
    worker_up: IntGaugeVec,
    worker_active: IntGaugeVec,
    processed: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), &["target"])?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let sent = counter("monitor_pings_sent_total", "Pings sent by the loop.")?;
        let ok = counter("monitor_pings_ok_total", "Pings answered successfully.")?;
        let failed = counter(
            "monitor_pings_failed_total",
            "Pings that failed (task failure, revoked, not sent); timeouts not included.",
        )?;
        let timeouts = counter(
            "monitor_pings_timeout_total",
            "Pings unanswered within PING_TIMEOUT_MS.",
        )?;
        let changes = IntCounterVec::new(
            Opts::new(
                "monitor_state_changes_total",
                "State changes, by new state.",
            ),
            &["target", "to"],
        )?;
        registry.register(Box::new(changes.clone()))?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "monitor_ping_latency_seconds",
                "Round trip of answered pings, from before the publish to the result.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["target"],
        )?;
        registry.register(Box::new(latency.clone()))?;
        let state = IntGaugeVec::new(
            Opts::new(
                "monitor_target_state",
                "Current state: 0 OK, 1 DEGRADADO, 2 CAIDO, -1 INICIANDO (no answer yet since \
                 the monitor started, within STARTUP_GRACE_MS).",
            ),
            &["target"],
        )?;
        registry.register(Box::new(state.clone()))?;
        let workers_alive = IntGauge::new(
            "monitor_workers_alive",
            "Workers whose heartbeats are current.",
        )?;
        registry.register(Box::new(workers_alive.clone()))?;
        let by_worker = |name: &str, help: &str| -> Result<IntGaugeVec, prometheus::Error> {
            let g = IntGaugeVec::new(Opts::new(name, help), &["hostname"])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let control_answered = by_worker(
            "monitor_worker_control_answered",
            "1 if the worker answered the last control ping (inspect ping), 0 if not.",
        )?;
        let consuming = by_worker(
            "monitor_worker_consuming",
            "0 if the worker answers control but its processed count stood still while messages \
             waited in its queues, 1 otherwise; absent while it does not answer control.",
        )?;
        let control_latency = GaugeVec::new(
            Opts::new(
                "monitor_worker_control_ping_seconds",
                "How long the worker took to answer the last control ping; absent while it does \
                 not answer.",
            ),
            &["hostname"],
        )?;
        registry.register(Box::new(control_latency.clone()))?;
        let queue = QueueMetrics::new(&registry)?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics {
            registry,
            latency,
            sent,
            ok,
            failed,
            timeouts,
            changes,
            state,
            workers_alive,
            control_latency,
            control_answered,
            consuming,
            queue,
        })
    }

    /// The registry every series is in: another module registers its own metrics here and
    /// they are rendered with these.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Makes a target's series appear (at zero, state INICIANDO) before its first ping.
    pub fn register_target(&self, target: &str) {
        for c in [&self.sent, &self.ok, &self.failed, &self.timeouts] {
            c.with_label_values(&[target]);
        }
        self.state(target, Estado::Iniciando);
    }

    pub fn sent(&self, target: &str) {
        self.sent.with_label_values(&[target]).inc();
    }

    pub fn outcome(&self, outcome: &PingOutcome) {
        let target = outcome.servicio.as_str();
        match outcome.result {
            PingResult::Ok { .. } => {
                self.ok.with_label_values(&[target]).inc();
                self.latency
                    .with_label_values(&[target])
                    .observe(outcome.latency.as_secs_f64());
            }
            PingResult::Fallo { .. } => self.failed.with_label_values(&[target]).inc(),
            PingResult::Timeout => self.timeouts.with_label_values(&[target]).inc(),
        }
    }

    pub fn change(&self, target: &str, change: &Change) {
        self.changes
            .with_label_values(&[target, change.to.as_str()])
            .inc();
        self.state(target, change.to);
    }

    pub fn state(&self, target: &str, state: Estado) {
        self.state.with_label_values(&[target]).set(state.gauge());
    }

    pub fn workers_alive(&self, n: usize) {
        self.workers_alive.set(n as i64);
    }

    /// A worker's last control ping: its answer's latency (`None`: it did not answer) and
    /// whether it consumes (`None`: unknown).
    pub fn worker_control(&self, hostname: &str, answer: Option<Duration>, consume: Option<bool>) {
        self.control_answered
            .with_label_values(&[hostname])
            .set(i64::from(answer.is_some()));
        match answer {
            Some(latency) => self
                .control_latency
                .with_label_values(&[hostname])
                .set(latency.as_secs_f64()),
            None => {
                let _ = self.control_latency.remove_label_values(&[hostname]);
            }
        }
        match consume {
            Some(c) => self
                .consuming
                .with_label_values(&[hostname])
                .set(i64::from(c)),
            None => {
                let _ = self.consuming.remove_label_values(&[hostname]);
            }
        }
    }

    /// Drops a forgotten worker's series.
    pub fn forget_worker(&self, hostname: &str) {
        let _ = self.control_answered.remove_label_values(&[hostname]);
        let _ = self.control_latency.remove_label_values(&[hostname]);
        let _ = self.consuming.remove_label_values(&[hostname]);
        let q = &self.queue;
        let _ = q.worker_up.remove_label_values(&[hostname]);
        let _ = q.worker_active.remove_label_values(&[hostname]);
        let _ = q.processed.remove_label_values(&[hostname]);
    }

    /// A queue sample: the queues' series (those of queues no longer watched are dropped) and
    /// the counts of unacked, parked and quarantined messages.
    pub fn queue_sample(&self, stats: &QueueStats, colas: &[Cola]) {
        let q = &self.queue;
        let names: Vec<&str> = colas.iter().map(|c| c.nombre.as_str()).collect();
        for vec in [&q.length, &q.consumers, &q.workers, &q.processes] {
            retain_queues(vec, &names);
        }
        retain_queues(&q.oldest, &names);
        for c in colas {
            let label = [c.nombre.as_str()];
            q.length.with_label_values(&label).set(c.pendientes as i64);
            q.consumers
                .with_label_values(&label)
                .set(c.consumidores as i64);
            q.workers
                .with_label_values(&label)
                .set(c.consumidores as i64);
            q.processes.with_label_values(&label).set(c.procesos as i64);
            match c.antiguedad_s {
                Some(age) => q.oldest.with_label_values(&label).set(age),
                None => q.oldest.with_label_values(&label).set(0.0),
            }
        }
        q.unacked.set(stats.unacked as i64);
        q.parked.set(stats.parked as i64);
        q.quarantine.set(stats.quarantined as i64);
        set_counter(&q.dropped, &[], stats.quarantine_dropped);
        q.stale.set(0);
    }

    /// Redis did not answer the sample: the queue series keep their last values, marked stale.
    pub fn queue_sample_stale(&self) {
        self.queue.stale.set(1);
    }

    /// A worker as the sampler saw it: up (alive) or not, its active tasks, its processed count.
    pub fn worker_sample(&self, hostname: &str, alive: bool, active: u64, processed: u64) {
        let q = &self.queue;
        q.worker_up
            .with_label_values(&[hostname])
            .set(i64::from(alive));
        q.worker_active
            .with_label_values(&[hostname])
            .set(active as i64);
        set_counter(&q.processed, &[hostname], processed);
    }

    /// The text exposition format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

impl QueueMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let by = |name: &str, help: &str, label: &str| -> Result<IntGaugeVec, prometheus::Error> {
            let g = IntGaugeVec::new(Opts::new(name, help), &[label])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let one = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let oldest = GaugeVec::new(
            Opts::new(
                "monitor_queue_oldest_age_seconds",
                "Lower bound of how long the oldest waiting message of the queue has waited (0 \
                 when none waits). Messages carry no send time: the monitor marks the newest \
                 message at each sample, so the age is known within one \
                 QUEUE_SAMPLE_INTERVAL_MS; messages already waiting when the monitor started \
                 count from its first sample.",
            ),
            &["queue_name"],
        )?;
        registry.register(Box::new(oldest.clone()))?;
        Ok(QueueMetrics {
            length: by(
                "celery_queue_length",
                "Messages waiting in the queue, every priority list summed.",
                "queue_name",
            )?,
            consumers: by(
                "celery_active_consumer_count",
                "Live workers consuming the queue (those whose active_queues answer is known).",
                "queue_name",
            )?,
            workers: by(
                "celery_active_worker_count",
                "Live workers consuming the queue.",
                "queue_name",
            )?,
            processes: by(
                "celery_active_process_count",
                "Task slots (concurrency) of the live workers consuming the queue, for those \
                 whose stats answer is known.",
                "queue_name",
            )?,
            oldest,
            unacked: one(
                "monitor_unacked_messages",
                "Messages delivered and not acknowledged (kombu's unacked hash, parked eta \
                 tasks included).",
            )?,
            parked: one(
                "monitor_parked_messages",
                "Tasks with a far eta parked until it comes (rcelery:parked).",
            )?,
            quarantine: one(
                "monitor_quarantine_length",
                "Entries in the quarantine list (rcelery:quarantine).",
            )?,
            dropped: counter(
                "monitor_quarantine_dropped_total",
                "Quarantine entries dropped to keep the list to its cap \
                 (rcelery:quarantine:dropped).",
                &[],
            )?,
            stale: one(
                "monitor_queue_sample_stale",
                "1 while Redis does not answer the queue sampler: the queue series hold the \
                 last values read.",
            )?,
            worker_up: by(
                "celery_worker_up",
                "1 if the worker's heartbeats are current, 0 if it went offline or silent \
                 (until WORKER_FORGET_AFTER_MS forgets it).",
                "hostname",
            )?,
            worker_active: by(
                "celery_worker_tasks_active",
                "Tasks the worker is running, as its last heartbeat said.",
                "hostname",
            )?,
            processed: counter(
                "monitor_tasks_processed_total",
                "Tasks the worker has finished, as its last heartbeat said (starts again when \
                 the worker restarts); rate() of it is the throughput.",
                &["hostname"],
            )?,
        })
    }
}

/// Drops the series of queues not in `names`.
fn retain_queues<T: prometheus::core::MetricVecBuilder>(
    vec: &prometheus::core::MetricVec<T>,
    names: &[&str],
) {
    let families = prometheus::core::Collector::collect(vec);
    for family in families {
        for metric in family.get_metric() {
            let label = metric
                .get_label()
                .iter()
                .find(|l| l.name() == "queue_name")
                .map(|l| l.value().to_owned());
            if let Some(label) = label.filter(|l| !names.contains(&l.as_str())) {
                let _ = vec.remove_label_values(&[label.as_str()]);
            }
        }
    }
}

/// Sets a counter to a value read elsewhere: it grows by the difference, and starts again
/// (a reset, which rate() understands) when the value went down.
fn set_counter(vec: &IntCounterVec, labels: &[&str], value: u64) {
    let counter = vec.with_label_values(labels);
    let current = counter.get();
    if value < current {
        let _ = vec.remove_label_values(labels);
        vec.with_label_values(labels).inc_by(value);
    } else {
        counter.inc_by(value - current);
    }
}
