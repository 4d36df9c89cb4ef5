//! Fetchers. A worker has one *main* lane, which serves every priority list of its queues in
//! kombu's order (step 0, the plain list, first; then 3, 6, 9) with `concurrency` slots, and,
//! unless configured away, a *health* lane with a few slots of its own for health tasks
//! (`obtener_estado` by default).
//!
//! A lane owns a number of execution slots and room to hold a few times as many messages (the
//! prefetch): while it has room it takes a batch (one atomic script call) and starts an
//! executor per message, which waits for a slot. When its lists are empty the main lane waits
//! in Redis, on dedicated connections, until one of them is not. Prefetching keeps the slots
//! busy while the next batch is fetched, and makes batches larger under a backlog.
//!
//! Why health pings never wait behind a backlog: the monitor puts its ping at the consuming end
//! of the plain list (`RPUSH`, [`crate::SendOptions::next_in_line`]), so whenever the main lane
//! has room its next fetch takes the ping before any business task, whatever their priority.
//! The main lane is full only when all its slots run tasks (long ones, typically); then the
//! health lane looks at the consuming end of each list and takes what is there only if it is a
//! health task (`fetch.lua` with task names: recorded exactly as any delivery, in one atomic
//! step). It looks only while the main lane is full, every [`WorkerConfig::health_poll`]
//! (a short, bounded interval; one small script call each time, whose cost is measured in
//! docs/BENCHMARKS.md), and never while the main lane has room: then the main lane's own fetch
//! (or its wait in Redis, which a push ends) takes the ping. Polling, because nothing in Redis
//! announces a push onto a list that is not empty (keyspace notifications are off by default
//! and cannot be assumed). A ping sent the ordinary way (`LPUSH`) behind a backlog of the same list waits its
//! turn, as it would with any Celery worker.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use super::executor::{self, LaneContext};
use super::{semaphore, Context, WorkerConfig};
use crate::broker::{wait_for_message, Completion, FetchLimits};
use crate::connection::{Outage, Redis};
use crate::error::Result;

pub(crate) struct Lane {
    pub name: &'static str,
    /// Only tasks of these names are taken (the health lane); every message when empty.
    pub tasks: Vec<String>,
    /// Messages the lane may hold at once (taken and not finished): its slots times the
    /// prefetch multiplier. The fetcher takes a batch as large as the free room.
    pub room: Arc<Semaphore>,
    /// What its executors share: the slots they run tasks in, and the lane's own completer.
    pub executors: Arc<LaneContext>,
}

impl Lane {
    fn new(
        name: &'static str,
        tasks: Vec<String>,
        slots: usize,
        prefetch: usize,
        completions: mpsc::Sender<Completion>,
    ) -> Self {
        let slots = slots.max(1);
        Lane {
            name,
            tasks,
            room: semaphore(slots * prefetch.max(1)),
            executors: Arc::new(LaneContext {
                slots: semaphore(slots),
                completions,
            }),
        }
    }
}

/// The main lane and, when `health_slots > 0` and health tasks are named, the health lane, each
/// with its own completer (a sender from `completer`), so a ping's result is not written after a
/// backlog's batch.
pub(crate) fn lanes(
    config: &WorkerConfig,
    mut completer: impl FnMut() -> mpsc::Sender<Completion>,
) -> (Lane, Option<Lane>) {
    let main = Lane::new(
        "main",
        Vec::new(),
        config.concurrency,
        config.prefetch_multiplier,
        completer(),
    );
    let health = (config.health_slots > 0 && !config.health_tasks.is_empty()).then(|| {
        Lane::new(
            "health",
            config.health_tasks.clone(),
            config.health_slots,
            1,
            completer(),
        )
    });
    (main, health)
}

/// Runs the main lane. `full` says whether all its room is taken (what the health lane waits
/// for before it looks for pings).
pub(crate) async fn run(ctx: Arc<Context>, lane: Arc<Lane>, full: watch::Sender<bool>) {
    let mut outage = Outage::new(lane.name);
    let mut idle = IdleWait::new(ctx.broker.redis().clone(), ctx.config.idle_block);
    loop {
        let first = match lane.room.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                full.send_replace(true);
                let p = tokio::select! {
                    _ = ctx.shutdown.cancelled() => return,
                    p = lane.room.clone().acquire_owned() => p.expect("lane semaphore is never closed"),
                };
                full.send_replace(false);
                p
            }
        };
        let lists = ctx.lists();
        match take(&ctx, &lane, &lists, first, &mut outage).await {
            Took::Some => {}
            Took::Nothing => tokio::select! {
                _ = ctx.shutdown.cancelled() => return,
                _ = idle.wait(&lists) => {}
                // `control add_consumer`: the new queue's lists are looked at now.
                _ = ctx.queues_changed.notified() => {}
            },
            Took::Failed(pause) => tokio::select! {
                _ = ctx.shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            },
        }
    }
}

/// Runs the health lane: while the main lane is full, looks for health tasks at the consuming
/// end of every list every `health_poll`, and takes them into its own slots.
pub(crate) async fn run_health(
    ctx: Arc<Context>,
    lane: Arc<Lane>,
    mut full: watch::Receiver<bool>,
) {
    let mut outage = Outage::new(lane.name);
    let mut look_again = false;
    loop {
        if !look_again {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return,
                r = full.wait_for(|f| *f) => if r.is_err() { return },
            }
            // Meanwhile the main lane may get room back, and take a ping itself.
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return,
                _ = tokio::time::sleep(ctx.config.health_poll) => {}
            }
            if !*full.borrow() {
                continue;
            }
        }
        let first = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            p = lane.room.clone().acquire_owned() => p.expect("lane semaphore is never closed"),
        };
        look_again = false;
        let lists = ctx.lists();
        match take(&ctx, &lane, &lists, first, &mut outage).await {
            // Another ping may be next in line.
            Took::Some => look_again = true,
            Took::Nothing => {}
            Took::Failed(pause) => tokio::select! {
                _ = ctx.shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            },
        }
    }
}

enum Took {
    /// Something was taken (or quarantined): there may be more.
    Some,
    /// The lists had nothing for this lane.
    Nothing,
    /// Redis failed: retry after the pause.
    Failed(Duration),
}

/// One fetch into the lane's free room (`first` and whatever else is free, up to a batch), with
/// an executor started for each message taken.
async fn take(
    ctx: &Arc<Context>,
    lane: &Arc<Lane>,
    lists: &[String],
    first: OwnedSemaphorePermit,
    outage: &mut Outage,
) -> Took {
    let mut room = vec![first];
    while room.len() < ctx.config.batch {
        match lane.room.clone().try_acquire_owned() {
            Ok(p) => room.push(p),
            Err(_) => break,
        }
    }
    let limits = FetchLimits {
        max_messages: room.len(),
        max_bytes: ctx.config.max_message_bytes,
        lease: ctx.config.lease_ttl,
    };
    // Not raced against shutdown: once sent, the script runs in Redis whether or not its
    // reply is awaited, and dropping the call would leave what it took recorded as held by
    // this worker but unknown to it, still held after a clean exit. The call is bounded by
    // the command timeout; what it took is handed to executors, which put it back on its
    // queue if shutdown came first (see `executor::execute`).
    let fetched = ctx
        .broker
        .fetch_tasks(&ctx.consumer, lists, limits, &lane.tasks)
        .await;
    let fetched = match fetched {
        Ok(f) => {
            outage.ok();
            f
        }
        Err(e) => return Took::Failed(outage.failed(&e)),
    };
    for reason in &fetched.quarantined {
        ctx.stats
            .quarantined
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(lane = lane.name, %reason, "malformed message moved to quarantine");
    }
    if !fetched.quarantined.is_empty() {
        executor::trim_quarantine(ctx).await;
    }
    if fetched.deliveries.is_empty() {
        return if fetched.quarantined.is_empty() {
            Took::Nothing
        } else {
            Took::Some
        };
    }
    ctx.held
        .lock()
        .expect("held lock")
        .extend(fetched.deliveries.iter().map(|d| d.tag.clone()));
    for delivery in fetched.deliveries {
        let place = room.pop().expect("never more deliveries than room");
        // Boxed: spawning the executor's state by value copied it several times over; it was
        // the largest item in the worker's profile (docs/BENCHMARKS.md).
        ctx.tracker.spawn(Box::pin(executor::execute(
            ctx.clone(),
            lane.executors.clone(),
            delivery,
            place,
        )));
    }
    Took::Some
}

type Peek = Pin<Box<dyn Future<Output = Result<bool>> + Send>>;

/// Waits until any of a lane's lists holds a message, with one blocking command in flight per
/// list (each on its own connection). A wait that ends leaves the others in flight for the next
/// call, so commands never pile up on a connection.
struct IdleWait {
    redis: Redis,
    block: Duration,
    /// The lists the slots wait on (rebuilt when the worker's queues change).
    lists: Arc<Vec<String>>,
    slots: Vec<PeekSlot>,
}

struct PeekSlot {
    list: String,
    conn: Option<MultiplexedConnection>,
    pending: Option<Peek>,
}

impl IdleWait {
    fn new(redis: Redis, block: Duration) -> Self {
        IdleWait {
            redis,
            block,
            lists: Arc::default(),
            slots: Vec::new(),
        }
    }

    /// Returns when a list may hold a message, when a wait timed out, or when a connection
    /// failed (the caller then fetches, which reports any outage).
    async fn wait(&mut self, lists: &Arc<Vec<String>>) {
        if !Arc::ptr_eq(&self.lists, lists) {
            // Waits still in flight on dropped lists end by their own timeout.
            self.lists = lists.clone();
            self.slots = lists
                .iter()
                .map(|l| PeekSlot {
                    list: l.clone(),
                    conn: None,
                    pending: None,
                })
                .collect();
        }
        if self.slots.is_empty() {
            // No queue at all (every one cancelled): wait for one to be added.
            std::future::pending::<()>().await;
        }
        for slot in &mut self.slots {
            if slot.pending.is_some() {
                continue;
            }
            if slot.conn.is_none() {
                match self.redis.dedicated(None).await {
                    Ok(c) => slot.conn = Some(c),
                    Err(error) => {
                        tracing::debug!(%error, "idle wait: no connection");
                        continue;
                    }
                }
            }
            let mut conn = slot.conn.clone().expect("connected above");
            let list = slot.list.clone();
            let block = self.block;
            // A guard on our side too, in case the connection hangs without failing.
            let guard = block * 2 + Duration::from_secs(2);
            slot.pending = Some(Box::pin(async move {
                match tokio::time::timeout(guard, wait_for_message(&mut conn, &list, block)).await {
                    Ok(r) => r,
                    Err(_) => Err(crate::error::QueueError::Pool("idle wait hung".into())),
                }
            }));
        }
        if self.slots.iter().all(|s| s.pending.is_none()) {
            // Redis is unreachable: let the fetch report it after a pause.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return;
        }
        std::future::poll_fn(|cx| {
            let mut done = false;
            for slot in &mut self.slots {
                if let Some(peek) = slot.pending.as_mut() {
                    if let Poll::Ready(result) = peek.as_mut().poll(cx) {
                        slot.pending = None;
                        if result.is_err() {
                            slot.conn = None;
                        }
                        done = true;
                    }
                }
            }
            if done {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}
