//! The worker runtime: runs registered async handlers on messages from one or more queues.
//!
//! A worker is a few small components, each a module with its own loop, all stopped by one
//! cancellation token:
//!
//! - [`lane`]: fetchers. Each lane takes batches from its lists while it has room (its slots
//!   times the prefetch multiplier) and, when they are empty, waits on Redis without polling.
//!   The *main* lane serves every priority list of the worker's queues in kombu's order (step
//!   0, the plain queue list where Celery's default priority goes, first), with `concurrency`
//!   slots, so Celery's default-priority traffic and ours at [`BUSINESS_PRIORITY`] run alike.
//!   A health ping never waits behind a backlog: the monitor puts it at the end of the list
//!   workers take from ([`crate::SendOptions::next_in_line`]), so the main lane's next fetch
//!   takes it; and while every main slot is busy (long tasks), the *health* lane's few slots
//!   of their own ([`WorkerConfig::health_slots`]) take a health task waiting there.
//! - [`executor`]: runs one message: decode (or quarantine), find the handler (or store
//!   `NotRegistered`), honour eta/expires/time limits, catch panics, hand the outcome on. A
//!   task's soft time limit reaches its handler ([`Task::soft_deadline`]); a task that asks to
//!   be retried ([`Retry`], or a failure its [`TaskOptions`] retry by themselves) is sent again
//!   with the same id as Celery's `Task.retry` sends it, its `RETRY` result stored and the old
//!   delivery acknowledged in one atomic step (`retry.rs` holds Celery's rules).
//! - [`canvas`]: Celery's canvas once the outcome is known, as a Celery worker does it: the
//!   `link`/`link_error` callbacks, a chain's next step, a group's id in the stored result, a
//!   chord's header counted in Celery's own keys (the last part, Python's or ours, sends the
//!   body), and the `children` stored. A task that is part of none of it pays one cheap check.
//! - [`completer`]: stores results and acknowledges, batching whatever finished meanwhile into
//!   one atomic script call. Each lane has its own.
//! - [`heartbeat`]: renews the consumer lease and sends `worker-online`, a `worker-heartbeat`
//!   every 2 s and `worker-offline`; every quarter of [`WorkerConfig::visibility_timeout`] it
//!   also refreshes the `unacked_index` scores of the messages this worker holds, so that a
//!   Python worker beside it does not restore (and run again) a task it is still running.
//! - [`recoverer`]: returns the messages of dead consumers (expired leases) to their queues,
//!   and parked tasks when they are due back.
//! - [`parking`]: which tasks waiting for a far eta a worker keeps in memory and which it parks
//!   in Redis, so a flood of `countdown` tasks costs a bounded amount of memory.
//!
//! Shutdown (SIGTERM/SIGINT via the token): the lanes stop taking messages, running tasks
//! finish (up to `shutdown_timeout`, after which they are requeued), results are flushed, the
//! worker says `worker-offline` and gives up its lease.

mod board;
pub mod canvas;
mod completer;
mod control;
mod executor;
mod heartbeat;
mod lane;
mod parking;
pub mod rate;
mod recoverer;
pub mod registry;
mod retry;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use parking::EtaLimits;
pub use rate::{InvalidRateLimit, RateLimit};
pub use registry::{Handler, Registry, Retry, Task, TaskError, TaskOptions, TaskResult};
pub use retry::backoff_countdown;

use crate::broker::{Broker, DEFAULT_MAX_MESSAGE_BYTES};
use crate::connection::{Outage, Redis};
use crate::error::Result;
use crate::events::{EventPublisher, TaskEvents, WorkerCounts};
use crate::keys;

/// The priority our producers give business tasks. Health pings no longer depend on it (they
/// go to the consuming end of the plain list), but it keeps our business tasks behind
/// Celery's default-priority traffic, as before.
pub const BUSINESS_PRIORITY: u8 = 6;

/// How a worker runs. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Node name in events, `name@host`.
    pub hostname: String,
    pub queues: Vec<String>,
    /// Tasks run at once, whatever their priority (the main lane).
    pub concurrency: usize,
    /// Slots reserved for health tasks, used only while every main slot is busy (0: none).
    pub health_slots: usize,
    /// The tasks those slots may take (`obtener_estado` by default).
    pub health_tasks: Vec<String>,
    /// While the main lane is full, how often the health lane looks for a health task at the
    /// consuming end of the lists (one small script call each time).
    pub health_poll: Duration,
    /// The shortest `visibility_timeout` of any kombu (Python) worker on the same Redis: kombu
    /// restores an `unacked` entry whose `unacked_index` score is older than that, so this
    /// worker refreshes the scores of what it holds every quarter of it.
    pub visibility_timeout: Duration,
    /// Messages a lane may hold per task it runs at once (Celery's `worker_prefetch_multiplier`).
    /// Above 1, the next batch is taken while the current one runs, and in larger batches: a
    /// backlog of tiny tasks drains faster, but a health ping waits longer behind it (the CPU it
    /// would get goes to draining; docs/BENCHMARKS.md). Hence 1 by default: a message is taken
    /// only when a slot is free to run it.
    pub prefetch_multiplier: usize,
    /// Most messages taken in one fetch.
    pub batch: usize,
    /// A consumer that has not renewed its lease for this long is dead and its messages go back.
    pub lease_ttl: Duration,
    /// Heartbeat events and lease renewals.
    pub heartbeat_interval: Duration,
    /// How often dead consumers are looked for.
    pub recover_interval: Duration,
    pub result_ttl: Duration,
    pub max_message_bytes: usize,
    /// How long running tasks may take to finish after a shutdown signal.
    pub shutdown_timeout: Duration,
    /// How long an idle wait blocks in Redis before it is renewed.
    pub idle_block: Duration,
    /// Store STARTED before running each task (Celery's `task_track_started`).
    pub track_started: bool,
    /// How often the worker looks for messages recorded as its own that it does not know it
    /// holds (a fetch whose reply was lost); seen twice in a row, they go back to the queue.
    pub orphan_sweep: Duration,
    /// Rate limits by task name, over those the tasks were registered with (Celery's
    /// `task_annotations = {name: {"rate_limit": ...}}`).
    pub rate_limits: Vec<(String, RateLimit)>,
    /// Store the task's name, arguments, worker, retries and queue with its results (Celery's
    /// `result_extended`, which `AsyncResult.name`, `.args`, ... read).
    pub result_extended: bool,
    /// Most entries kept in the quarantine list; older ones are dropped (and counted in
    /// `rcelery:quarantine:dropped`), so a flood of bad messages costs bounded memory.
    pub quarantine_max: usize,
    /// Send task events (Celery's `-E`): `task-received`, `-started`, `-succeeded`, ... for
    /// Flower and `celery events`. Off by default, as in Celery; `control enable_events`
    /// switches them on at run time.
    pub task_events: bool,
    /// Which tasks waiting for an eta stay in memory; the others are parked in Redis.
    pub eta: EtaLimits,
}

/// Quarantine entries kept by default: enough to study a bad deploy, bounded in memory (each
/// holds its message, up to `max_message_bytes`).
pub const DEFAULT_QUARANTINE_MAX: usize = 1_000;

/// The health task the monitor sends.
pub const HEALTH_TASK: &str = "obtener_estado";

/// Tasks the main lane runs at once by default. Tasks await rather than compute, so this is
/// what a lane keeps in flight: more slots mean larger fetch and completion batches, so less
/// Redis work per task, but also a longer wait for a health ping behind a backlog. The value is
/// the largest that kept the backlog ping within its target (measured in docs/BENCHMARKS.md).
pub const DEFAULT_CONCURRENCY: usize = 32;

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            hostname: format!("rcelery@{}", crate::hostname()),
            queues: vec!["celery".into()],
            concurrency: DEFAULT_CONCURRENCY,
            health_slots: 2,
            health_tasks: vec![HEALTH_TASK.into()],
            health_poll: Duration::from_millis(2),
            // kombu's default.
            visibility_timeout: Duration::from_secs(3600),
            prefetch_multiplier: 1,
            batch: 32,
            lease_ttl: Duration::from_secs(6),
            heartbeat_interval: Duration::from_secs(2),
            recover_interval: Duration::from_secs(1),
            result_ttl: crate::backend::DEFAULT_RESULT_TTL,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            shutdown_timeout: Duration::from_secs(30),
            idle_block: Duration::from_secs(5),
            track_started: false,
            orphan_sweep: Duration::from_secs(5),
            rate_limits: Vec::new(),
            result_extended: false,
            task_events: false,
            quarantine_max: DEFAULT_QUARANTINE_MAX,
            eta: EtaLimits::default(),
        }
    }
}

/// Counters shown in heartbeats and returned by [`Worker::run`].
#[derive(Debug, Default)]
pub struct Stats {
    pub active: AtomicU64,
    pub processed: AtomicU64,
    pub quarantined: AtomicU64,
}

impl Stats {
    pub fn counts(&self) -> WorkerCounts {
        WorkerCounts {
            active: self.active.load(Ordering::Relaxed),
            processed: self.processed.load(Ordering::Relaxed),
        }
    }
}

/// The delivery tags a worker holds, shared by its fetchers, executors, completer and recoverer.
pub(crate) type Held = Arc<std::sync::Mutex<std::collections::HashSet<String>>>;

/// What every component of one running worker shares.
pub(crate) struct Context {
    pub broker: Broker,
    pub registry: Registry,
    pub config: WorkerConfig,
    pub consumer: String,
    pub stats: Arc<Stats>,
    /// Delivery tags taken and not yet settled, as this process knows them.
    pub held: Held,
    pub tracker: TaskTracker,
    /// Stop taking messages; tasks waiting for an eta or for a slot give theirs back.
    pub shutdown: CancellationToken,
    /// Running tasks overran `shutdown_timeout`: give their messages back.
    pub abort: CancellationToken,
    /// Rate-limited task names and when their next task may start.
    pub rates: rate::Buckets,
    /// The tasks this worker holds, and where each is (for `inspect` and revokes).
    pub board: board::Board,
    /// Revoked task ids (loaded from Redis, then kept up by the control channel).
    pub revocations: crate::revoked::Revocations,
    /// Time limits set at run time (`control time_limit`).
    pub time_limits: control::TimeLimits,
    /// Tasks held waiting for their eta, counted against [`WorkerConfig::eta`].
    pub eta_held: parking::Held,
    /// Since when this worker's lease renewals have succeeded (the recoverer's gate).
    pub lease_streak: Arc<heartbeat::Streak>,
    /// Task events, sent only while enabled.
    pub events: Arc<TaskEvents>,
    /// Celery's Lamport clock, one per process: events and control replies tick it.
    pub clock: Arc<AtomicU64>,
    pub started: std::time::Instant,
    /// The queues consumed now (`control add_consumer` / `cancel_consumer` change them).
    queues: std::sync::RwLock<QueueSet>,
    /// Wakes the lanes when the queues change.
    pub queues_changed: tokio::sync::Notify,
    /// Asks the heartbeat loop for a heartbeat now (`control heartbeat`).
    pub beat_now: tokio::sync::Notify,
}

/// Queue names, and the lists they make in serving order.
struct QueueSet {
    names: Vec<String>,
    lists: Arc<Vec<String>>,
}

impl QueueSet {
    fn of(names: Vec<String>) -> Self {
        let lists = Arc::new(lists_for(&names, &keys::PRIORITY_STEPS));
        QueueSet { names, lists }
    }
}

impl Context {
    /// The queues consumed now.
    pub fn queues(&self) -> Vec<String> {
        self.queues.read().expect("queues lock").names.clone()
    }

    /// The lists the lanes take from, in serving order (shared until the queues change).
    pub fn lists(&self) -> Arc<Vec<String>> {
        self.queues.read().expect("queues lock").lists.clone()
    }

    /// Starts consuming `queue`; false if it already was.
    pub fn add_queue(&self, queue: &str) -> bool {
        let mut set = self.queues.write().expect("queues lock");
        if set.names.iter().any(|q| q == queue) {
            return false;
        }
        let mut names = set.names.clone();
        names.push(queue.to_owned());
        *set = QueueSet::of(names);
        drop(set);
        self.queues_changed.notify_waiters();
        true
    }

    /// Stops consuming `queue` (what is held from it still finishes).
    pub fn cancel_queue(&self, queue: &str) {
        let mut set = self.queues.write().expect("queues lock");
        let names: Vec<String> = set.names.iter().filter(|q| *q != queue).cloned().collect();
        *set = QueueSet::of(names);
        drop(set);
        self.queues_changed.notify_waiters();
    }
}

/// A worker, ready to run.
pub struct Worker {
    redis: Redis,
    registry: Registry,
    config: WorkerConfig,
    consumer: String,
    stats: Arc<Stats>,
}

impl Worker {
    pub fn new(redis: Redis, registry: Registry, config: WorkerConfig) -> Self {
        let consumer = format!("{}/{}", config.hostname, uuid::Uuid::new_v4().simple());
        Worker {
            redis,
            registry,
            config,
            consumer,
            stats: Arc::default(),
        }
    }

    /// This worker's consumer id (its lease and inflight hash are named after it).
    pub fn consumer_id(&self) -> &str {
        &self.consumer
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Runs until `shutdown` is cancelled, then drains and returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let broker = Broker::new(self.redis.clone());
        let clock = Arc::new(AtomicU64::new(0));
        let events = EventPublisher::new(
            self.redis.clone(),
            &self.config.hostname,
            self.config.heartbeat_interval.as_secs_f64(),
        )
        .with_clock(clock.clone());
        let (task_events, flusher) = TaskEvents::new(
            self.redis.clone(),
            &self.config.hostname,
            self.config.task_events,
            clock.clone(),
        );
        let held = Held::default();
        // The configuration's limits come second, so they win over the registered ones.
        let rates = rate::Buckets::new(
            self.registry.rate_limits().chain(
                self.config
                    .rate_limits
                    .iter()
                    .map(|(name, limit)| (name.as_str(), *limit)),
            ),
        );
        let ctx = Arc::new(Context {
            broker: broker.clone(),
            registry: self.registry,
            consumer: self.consumer,
            stats: self.stats,
            held: held.clone(),
            tracker: TaskTracker::new(),
            shutdown: shutdown.clone(),
            abort: CancellationToken::new(),
            rates,
            board: Default::default(),
            revocations: Default::default(),
            time_limits: Default::default(),
            eta_held: Default::default(),
            lease_streak: Default::default(),
            events: task_events,
            clock,
            started: std::time::Instant::now(),
            queues: std::sync::RwLock::new(QueueSet::of(self.config.queues.clone())),
            queues_changed: tokio::sync::Notify::new(),
            beat_now: tokio::sync::Notify::new(),
            config: self.config,
        });
        let cfg = &ctx.config;
        tracing::info!(
            hostname = %cfg.hostname, consumer = %ctx.consumer, queues = ?cfg.queues,
            concurrency = cfg.concurrency, health_slots = cfg.health_slots,
            tasks = ?ctx.registry.names(), redis = %ctx.broker.redis().display_url(),
            "worker starting"
        );

        // The lease must exist before anything is fetched: it is what makes held messages
        // recoverable.
        if !take_lease(&ctx, &shutdown).await {
            return Ok(());
        }

        let background = CancellationToken::new();
        let drain = CancellationToken::new();
        let give_up = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat::run(ctx.clone(), events, background.clone()));
        let flushing = tokio::spawn(flusher.run(background.clone()));
        // Remote control, and the revocations kept in Redis, before anything is fetched: a
        // task revoked before this worker started must not run.
        let (control_ready, ready) = tokio::sync::oneshot::channel();
        let control = tokio::spawn(control::run(ctx.clone(), control_ready, background.clone()));
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = ready => {}
        }
        let recoverer = tokio::spawn(recoverer::run(
            broker.clone(),
            recoverer::Own {
                consumer: ctx.consumer.clone(),
                held: held.clone(),
                sweep: ctx.config.orphan_sweep,
                streak: ctx.lease_streak.clone(),
            },
            ctx.config.recover_interval,
            ctx.config.lease_ttl,
            background.clone(),
        ));
        // Each lane with its own completer.
        let mut completers = Vec::new();
        let (main, health) = lane::lanes(&ctx.config, || {
            let (tx, rx) = mpsc::channel(4096);
            completers.push(tokio::spawn(completer::run(
                broker.clone(),
                ctx.consumer.clone(),
                rx,
                held.clone(),
                ctx.config.result_ttl,
                drain.clone(),
                give_up.clone(),
            )));
            tx
        });
        let (full, main_full) = watch::channel(false);
        let mut lanes = vec![tokio::spawn(lane::run(ctx.clone(), Arc::new(main), full))];
        if let Some(health) = health {
            lanes.push(tokio::spawn(lane::run_health(
                ctx.clone(),
                Arc::new(health),
                main_full,
            )));
        }
        ctx.broker.redis().warn_if_evicting().await;
        tracing::info!(hostname = %ctx.config.hostname, "worker ready");

        shutdown.cancelled().await;
        tracing::info!("shutdown requested: taking no new tasks, finishing running ones");
        for l in lanes {
            let _ = l.await;
        }
        ctx.tracker.close();
        if tokio::time::timeout(ctx.config.shutdown_timeout, ctx.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(timeout = ?ctx.config.shutdown_timeout, "tasks still running; requeueing them");
            ctx.abort.cancel();
            ctx.tracker.wait().await;
        }
        // Every task has handed its outcome to its lane's completer; let them flush.
        drain.cancel();
        let mut flushed = futures_util::future::join_all(completers);
        if tokio::time::timeout(Duration::from_secs(10), &mut flushed)
            .await
            .is_err()
        {
            tracing::warn!("results could not be stored in time; their messages stay held and will be redelivered");
            give_up.cancel();
            flushed.await;
        }
        background.cancel();
        let _ = recoverer.await;
        let _ = heartbeat.await;
        let _ = control.await;
        let _ = flushing.await;
        tracing::info!("worker stopped");
        Ok(())
    }
}

/// Renews the lease until it works (Redis may be down at start) or shutdown.
async fn take_lease(ctx: &Context, shutdown: &CancellationToken) -> bool {
    let mut outage = Outage::new("worker");
    loop {
        match ctx
            .broker
            .renew_lease(&ctx.consumer, ctx.config.lease_ttl)
            .await
        {
            Ok(()) => {
                ctx.lease_streak.renewed();
                outage.ok();
                return true;
            }
            Err(e) => {
                let pause = outage.failed(&e);
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

/// The lists of `queues` served by a lane, in serving order: for each priority step in
/// `steps`, every queue's list of that step.
pub(crate) fn lists_for(queues: &[String], steps: &[u8]) -> Vec<String> {
    steps
        .iter()
        .flat_map(|step| queues.iter().map(move |q| keys::queue_list(q, *step)))
        .collect()
}

pub(crate) fn semaphore(n: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(n.max(1)))
}
