//! The monitor's settings: one clap struct, every field a flag with an environment fallback,
//! so `--help` documents the whole configuration and tests build it with `Config::parse_from`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::targets::{Target, TargetError};

#[derive(Debug, Clone, Parser)]
#[command(
    version,
    about = "Ping-echo and heartbeat failure detector for the inventory worker"
)]
pub struct Config {
    #[command(flatten)]
    pub redis: shared::cli::RedisArgs,
    /// Address the HTTP API listens on.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:3002")]
    pub http_addr: String,
    /// Queue of the default target (ignored when TARGETS is set).
    #[arg(long, env = "QUEUE", default_value = "inventario")]
    pub queue: String,
    /// Services to watch, `name:queue:task` separated by commas; default: one target,
    /// InventarioService on QUEUE with task obtener_estado.
    #[arg(long, env = "TARGETS")]
    pub targets: Option<String>,
    /// A ping is sent to every target this often, whether or not earlier ones answered.
    #[arg(long, env = "PING_INTERVAL_MS", default_value_t = 250)]
    pub ping_interval_ms: u64,
    /// A ping unanswered after this long is a failure; a target silent this long is CAIDO.
    #[arg(long, env = "PING_TIMEOUT_MS", default_value_t = 750)]
    pub ping_timeout_ms: u64,
    /// A target that has not answered since the monitor started is INICIANDO for this long (at
    /// least PING_TIMEOUT_MS), not CAIDO: its failed pings while the system starts raise no
    /// alarm. Still silent after it, the target is CAIDO.
    #[arg(long, env = "STARTUP_GRACE_MS", default_value_t = 30_000)]
    pub startup_grace_ms: u64,
    /// A control ping (Celery's `inspect ping`) is sent to the live workers this often, to show
    /// each one's own answer and latency and to tell a worker that answers but does not consume
    /// its queue from one that is gone; 0 disables it.
    #[arg(long, env = "CONTROL_PING_INTERVAL_MS", default_value_t = 2000)]
    pub control_ping_interval_ms: u64,
    /// A worker whose heartbeats stopped is listed as offline for this long after its last
    /// event, then forgotten: it leaves GET /monitor, the dashboard and the per-worker metrics.
    #[arg(long, env = "WORKER_FORGET_AFTER_MS", default_value_t = 900_000)]
    pub worker_forget_after_ms: u64,
    /// The queues are read this often: messages waiting (every priority list), the age of the
    /// oldest, unacked, parked and quarantined counts, for /metrics and GET /monitor/colas.
    /// The age is known within one interval.
    #[arg(long, env = "QUEUE_SAMPLE_INTERVAL_MS", default_value_t = 1000)]
    pub queue_sample_interval_ms: u64,
    /// Queues to sample besides the targets' and those the live workers say they consume,
    /// separated by commas.
    #[arg(long, env = "MONITOR_QUEUES", value_delimiter = ',')]
    pub monitor_queues: Vec<String>,
    /// Echoes slower than this (median of the recent window) make the target DEGRADADO.
    #[arg(long, env = "DEGRADED_THRESHOLD_MS", default_value_t = 300)]
    pub degraded_threshold_ms: u64,
    /// Pings judged for DEGRADADO: any failure, or a slow median, among this many.
    #[arg(long, env = "DEGRADED_WINDOW", default_value_t = 8)]
    pub degraded_window: usize,
    /// Pings over which `disponibilidad` is computed (240 = one minute at the default rate).
    #[arg(long, env = "AVAILABILITY_WINDOW", default_value_t = 240)]
    pub availability_window: usize,
    /// Pings and state changes kept in memory for /monitor/historial (each).
    #[arg(long, env = "HISTORY_LEN", default_value_t = 1000)]
    pub history_len: usize,
    /// The Redis stream that also receives the history (browsable in Redis Insight).
    #[arg(long, env = "HISTORY_STREAM", default_value = shared::keys::MONITOR_HISTORY)]
    pub history_stream: String,
    /// Approximate cap of that stream (XADD MAXLEN ~).
    #[arg(long, env = "HISTORY_STREAM_MAXLEN", default_value_t = 10_000)]
    pub history_stream_maxlen: usize,
    /// If set, every history entry is also appended to this file as one JSON line.
    #[arg(long, env = "HISTORY_FILE")]
    pub history_file: Option<PathBuf>,
    /// Dashboard pages (`GET /monitor/stream`) served at once; more are refused with 503.
    #[arg(long, env = "DASHBOARD_MAX_CLIENTS", default_value_t = 32)]
    pub dashboard_max_clients: usize,
    /// If set, every route but GET /health needs this token: `Authorization: Bearer <token>`,
    /// or in a browser open `/?token=<token>` once (it becomes a cookie). Unset or empty:
    /// every route is open.
    #[arg(long, env = "MONITOR_TOKEN", hide_env_values = true)]
    pub monitor_token: Option<crate::auth::MonitorToken>,
    /// Timeouts and the connection cap of the HTTP server.
    #[command(flatten)]
    pub http: http_server::HttpArgs,
}

impl Config {
    /// `MONITOR_TOKEN` when it is set and not empty (empty counts as unset).
    pub fn token(&self) -> Option<&crate::auth::MonitorToken> {
        self.monitor_token.as_ref().filter(|t| !t.is_empty())
    }

    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms.max(1))
    }

    pub fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.ping_timeout_ms.max(1))
    }

    /// The start-up grace as set (the detector never makes it shorter than the ping timeout).
    pub fn startup_grace(&self) -> Duration {
        Duration::from_millis(self.startup_grace_ms)
    }

    pub fn worker_forget_after(&self) -> Duration {
        Duration::from_millis(self.worker_forget_after_ms)
    }

    /// The control-ping interval; `None` when control pings are disabled.
    pub fn control_ping_interval(&self) -> Option<Duration> {
        (self.control_ping_interval_ms > 0)
            .then(|| Duration::from_millis(self.control_ping_interval_ms))
    }

    /// How long a control ping waits for answers: the interval, at most the ping timeout.
    pub fn control_ping_timeout(&self) -> Duration {
        self.control_ping_interval()
            .map_or(self.ping_timeout(), |i| i.min(self.ping_timeout()))
    }

    pub fn queue_sample_interval(&self) -> Duration {
        Duration::from_millis(self.queue_sample_interval_ms.max(1))
    }

    /// The queues always sampled: the targets' and MONITOR_QUEUES, without repeats.
    pub fn sampled_queues(&self) -> Result<Vec<String>, TargetError> {
        let mut queues: Vec<String> = self.target_list()?.into_iter().map(|t| t.queue).collect();
        for q in self.monitor_queues.iter().map(|q| q.trim()) {
            if !q.is_empty() && !queues.iter().any(|known| known == q) {
                queues.push(q.to_owned());
            }
        }
        Ok(queues)
    }

    pub fn degraded_threshold(&self) -> Duration {
        Duration::from_millis(self.degraded_threshold_ms)
    }

    /// The watched services, parsed (a bad TARGETS is an error at start, not later).
    pub fn target_list(&self) -> Result<Vec<Target>, TargetError> {
        match self.targets.as_deref().map(str::trim) {
            Some(list) if !list.is_empty() => Target::parse_list(list),
            _ => Ok(vec![Target::default_for(&self.queue)]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_design() {
        let c = Config::parse_from(["monitor-service"]);
        assert_eq!(c.http_addr, "0.0.0.0:3002");
        assert_eq!(c.ping_interval(), Duration::from_millis(250));
        assert_eq!(c.ping_timeout(), Duration::from_millis(750));
        assert_eq!(c.startup_grace(), Duration::from_secs(30));
        assert_eq!(c.worker_forget_after(), Duration::from_secs(15 * 60));
        assert_eq!(c.control_ping_interval(), Some(Duration::from_secs(2)));
        assert_eq!(c.control_ping_timeout(), Duration::from_millis(750));
        assert_eq!(c.queue_sample_interval(), Duration::from_secs(1));
        assert_eq!(c.sampled_queues().unwrap(), ["inventario"]);
        let targets = c.target_list().unwrap();
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].name, "InventarioService");
        assert_eq!(targets[0].queue, "inventario");
        assert_eq!(targets[0].task, "obtener_estado");
    }

    #[test]
    fn control_pings_can_be_disabled() {
        let c = Config::parse_from(["m", "--control-ping-interval-ms", "0"]);
        assert_eq!(c.control_ping_interval(), None);
        let c = Config::parse_from(["m", "--control-ping-interval-ms", "200"]);
        assert_eq!(c.control_ping_timeout(), Duration::from_millis(200));
    }

    #[test]
    fn monitor_queues_add_to_the_targets() {
        let c = Config::parse_from(["m", "--monitor-queues", "a, inventario,,b"]);
        assert_eq!(c.sampled_queues().unwrap(), ["inventario", "a", "b"]);
    }

    #[test]
    fn targets_flag_replaces_the_default() {
        let c = Config::parse_from(["m", "--targets", "A:qa:t1,B:qb:t2"]);
        let names: Vec<_> = c
            .target_list()
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["A", "B"]);
    }
}
