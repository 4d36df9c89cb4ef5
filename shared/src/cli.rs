//! Command-line settings shared by the binaries (each also read from its environment
//! variable), so every program spells them the same way.

use std::time::Duration;

use clap::Args;

use crate::connection::RedisConfig;
use crate::worker::{RateLimit, WorkerConfig};

/// How to reach Redis.
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis URL: redis://[user:password@]host:port/db, rediss:// for TLS, redis+unix:///path,
    /// or sentinels as kombu writes them, sentinel://[:password@]host:port[/db];sentinel://...
    /// (the password and db are the data servers'), with REDIS_SENTINEL_MASTER.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379/0",
        hide_env_values = true
    )]
    pub redis_url: String,
    /// Connections in the Redis pool.
    #[arg(long, env = "REDIS_POOL_SIZE", default_value_t = 8)]
    pub redis_pool_size: usize,
    /// PEM file of the CA that signed the Redis server's certificate (for rediss:// with a
    /// private CA; the system trust store is used otherwise).
    #[arg(long, env = "REDIS_CA_CERT")]
    pub redis_ca_cert: Option<std::path::PathBuf>,
    /// The master's name the sentinels of a sentinel:// REDIS_URL watch (their `sentinel
    /// monitor <name> ...`); required with one, refused with any other URL.
    #[arg(long, env = "REDIS_SENTINEL_MASTER")]
    pub redis_sentinel_master: Option<String>,
    /// The sentinels' own password, when they have a requirepass of their own (kombu's
    /// sentinel_kwargs); the password in REDIS_URL is the data servers'.
    #[arg(long, env = "REDIS_SENTINEL_PASSWORD", hide_env_values = true)]
    pub redis_sentinel_password: Option<String>,
    /// Replicas that must acknowledge each task sent (Redis WAIT) before the send succeeds;
    /// fewer within REDIS_WAIT_TIMEOUT_MS fail the send (the task is on the master and may
    /// still run). 0: no waiting.
    #[arg(long, env = "REDIS_WAIT_REPLICAS", default_value_t = 0)]
    pub redis_wait_replicas: usize,
    /// Milliseconds WAIT may take for REDIS_WAIT_REPLICAS (under the 3 s command timeout).
    #[arg(long, env = "REDIS_WAIT_TIMEOUT_MS", default_value_t = 500)]
    pub redis_wait_timeout_ms: u64,
}

impl RedisArgs {
    pub fn config(&self) -> RedisConfig {
        RedisConfig {
            pool_size: self.redis_pool_size,
            ca_cert: self.redis_ca_cert.clone(),
            sentinel_master: self.redis_sentinel_master.clone(),
            sentinel_password: self.redis_sentinel_password.clone(),
            wait_replicas: self.redis_wait_replicas,
            wait_timeout: Duration::from_millis(self.redis_wait_timeout_ms),
            ..RedisConfig::new(&self.redis_url)
        }
    }
}

/// How a worker runs.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Queues to consume, comma-separated.
    #[arg(
        long = "queues",
        env = "QUEUE",
        default_value = "inventario",
        value_delimiter = ','
    )]
    pub queues: Vec<String>,
    /// Tasks run at once, whatever their priority (served in kombu's order: 0, Celery's
    /// default, first).
    #[arg(long, env = "CONCURRENCY", default_value_t = crate::worker::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Slots reserved for health tasks (HEALTH_TASKS), used only while all CONCURRENCY slots
    /// are busy: a health ping waiting at the end of a queue list that workers take from (where
    /// the monitor puts it) then runs at once. 0: none (a ping waits for a free slot).
    #[arg(
        long = "urgent-concurrency",
        env = "URGENT_CONCURRENCY",
        default_value_t = 2
    )]
    pub health_slots: usize,
    /// Health tasks, comma-separated: the only tasks the reserved slots run.
    #[arg(
        long,
        env = "HEALTH_TASKS",
        default_value = crate::worker::HEALTH_TASK,
        value_delimiter = ','
    )]
    pub health_tasks: Vec<String>,
    /// Seconds: the shortest visibility_timeout of any Python (kombu) worker on the same Redis.
    /// The scores of held messages in unacked_index are refreshed every quarter of it, so that
    /// such a worker does not restore, and run again, a task this one still runs.
    #[arg(long, env = "VISIBILITY_TIMEOUT_SECS", default_value_t = 3600.0)]
    pub visibility_timeout_secs: f64,
    /// Messages held per task slot (Celery's worker_prefetch_multiplier): above 1, larger
    /// fetch batches under a backlog (faster draining, slower health pings meanwhile); 1 takes
    /// a message only when a slot is free.
    #[arg(long, env = "PREFETCH_MULTIPLIER", default_value_t = 1)]
    pub prefetch_multiplier: usize,
    /// Node name in worker events (default: <prefix>@<host name>).
    #[arg(long, env = "WORKER_HOSTNAME")]
    pub hostname: Option<String>,
    /// Seconds without a lease renewal after which a worker is dead and its tasks go back.
    #[arg(long, env = "LEASE_TTL_SECS", default_value_t = 6.0)]
    pub lease_ttl_secs: f64,
    /// Seconds results are kept.
    #[arg(long, env = "RESULT_EXPIRES_SECS", default_value_t = 86_400)]
    pub result_expires_secs: u64,
    /// Largest message accepted, bytes; larger ones go to quarantine.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = crate::broker::DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// Store the STARTED state before running each task (Celery's task_track_started):
    /// true or false; each program has its own default.
    #[arg(long, env = "TRACK_STARTED")]
    pub track_started: Option<bool>,
    /// Threads that run the worker (fetching, tasks, results). One keeps a task's whole path
    /// on one thread, which was faster per task than two with Redis on the same cores
    /// (docs/BENCHMARKS.md); give more when handlers compute on the runtime's threads.
    #[arg(long, env = "WORKER_THREADS", default_value_t = 1)]
    pub threads: usize,
    /// Seconds running tasks may take to finish after SIGTERM before they are requeued.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECS", default_value_t = 30.0)]
    pub shutdown_timeout_secs: f64,
    /// Per-task rate limits in this worker, comma-separated NAME=RATE with Celery's rates
    /// ("noop=100/s,add=10/m"; 0 lifts a limit the task was registered with).
    #[arg(long, env = "RATE_LIMITS", value_delimiter = ',', value_parser = parse_rate_limit)]
    pub rate_limits: Vec<(String, RateLimit)>,
    /// Store each task's name, arguments, worker, retries and queue with its result (Celery's
    /// result_extended, read by AsyncResult.name, .args, ...).
    #[arg(long, env = "RESULT_EXTENDED", default_value_t = false)]
    pub result_extended: bool,
    /// Send task events (Celery's -E): task-received, -started, -succeeded, -failed, -retried,
    /// -revoked, -rejected, for Flower and `celery events`; `celery control enable_events`
    /// turns them on at run time. Off by default, as in Celery (their cost is in
    /// docs/BENCHMARKS.md).
    #[arg(long, env = "TASK_EVENTS", default_value_t = false)]
    pub task_events: bool,
    /// Most entries kept in the quarantine list (rcelery:quarantine); the oldest are dropped
    /// beyond it and counted in rcelery:quarantine:dropped.
    #[arg(long, env = "QUARANTINE_MAX", default_value_t = crate::worker::DEFAULT_QUARANTINE_MAX)]
    pub quarantine_max: usize,
    /// Tasks whose eta is further than this many seconds are parked in Redis (rcelery:parked,
    /// their message staying in unacked) rather than held in memory, and come back to their
    /// queue half this time before their eta.
    #[arg(long, env = "ETA_HORIZON_SECS", default_value_t = crate::worker::EtaLimits::default().horizon.as_secs_f64())]
    pub eta_horizon_secs: f64,
    /// Most tasks held in memory waiting for their eta; beyond it, tasks not due within a few
    /// seconds are parked in Redis.
    #[arg(long, env = "ETA_HOLD_MAX", default_value_t = crate::worker::EtaLimits::default().max_tasks)]
    pub eta_hold_max: usize,
    /// Most message bytes held in memory waiting for etas; beyond it, as ETA_HOLD_MAX.
    #[arg(long, env = "ETA_HOLD_MAX_BYTES", default_value_t = crate::worker::EtaLimits::default().max_bytes)]
    pub eta_hold_max_bytes: usize,
}

fn parse_rate_limit(s: &str) -> Result<(String, RateLimit), String> {
    let (name, rate) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=RATE (\"add=10/m\")"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("{s:?} names no task"));
    }
    Ok((
        name.to_owned(),
        rate.parse()
            .map_err(|e: crate::worker::InvalidRateLimit| e.to_string())?,
    ))
}

impl WorkerArgs {
    /// The runtime a worker process runs on, with `threads` worker threads (at least one).
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.threads.max(1))
            .enable_all()
            .build()
    }

    /// The worker configuration; `name` is the node name's prefix when none is given, and
    /// `track_started` applies when `TRACK_STARTED` is not set.
    pub fn config(&self, name: &str, track_started: bool) -> WorkerConfig {
        let defaults = WorkerConfig::default();
        let lease_ttl = secs(self.lease_ttl_secs, defaults.lease_ttl);
        WorkerConfig {
            hostname: self
                .hostname
                .clone()
                .unwrap_or_else(|| format!("{name}@{}", crate::hostname())),
            queues: self.queues.clone(),
            concurrency: self.concurrency.max(1),
            health_slots: self.health_slots,
            health_tasks: self.health_tasks.clone(),
            visibility_timeout: secs(self.visibility_timeout_secs, defaults.visibility_timeout),
            prefetch_multiplier: self.prefetch_multiplier.max(1),
            lease_ttl,
            // Renew three times per lease, and at most every 2 s (Celery's heartbeat rate).
            heartbeat_interval: (lease_ttl / 3).min(defaults.heartbeat_interval),
            result_ttl: Duration::from_secs(self.result_expires_secs.max(1)),
            max_message_bytes: self.max_message_bytes,
            shutdown_timeout: secs(self.shutdown_timeout_secs, defaults.shutdown_timeout),
            track_started: self.track_started.unwrap_or(track_started),
            rate_limits: self.rate_limits.clone(),
            result_extended: self.result_extended,
            task_events: self.task_events,
            quarantine_max: self.quarantine_max.max(1),
            eta: crate::worker::EtaLimits {
                horizon: secs(self.eta_horizon_secs, defaults.eta.horizon),
                max_tasks: self.eta_hold_max,
                max_bytes: self.eta_hold_max_bytes,
            },
            ..defaults
        }
    }
}

fn secs(s: f64, fallback: Duration) -> Duration {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .unwrap_or(fallback)
}
