//! Prometheus metrics of the monitor, per target: the echo latency histogram, counters of
//! pings sent / answered / failed / timed out, state changes, and the current state as a gauge
//! (0 OK, 1 DEGRADADO, 2 CAIDO, -1 INICIANDO), plus the live workers seen through heartbeats
//! and, per worker, its answer to the control ping and whether it consumes its queue. They
//! exist so that what the monitor sees can be graphed and alerted on by Prometheus, over any
//! span, without polling `/monitor` (which sends a live ping each time).

use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::detector::{Change, Estado};
use crate::ping::{PingOutcome, PingResult};

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
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.3, 0.5, 0.75, 1.0, 2.0,
            ]),
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
        })
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
    }

    /// The text exposition format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}
