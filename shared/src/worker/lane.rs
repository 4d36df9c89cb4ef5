//! Fetchers. A lane owns some queue lists, a number of execution slots and room to hold a few
//! times as many messages (the prefetch): while it has room it takes a batch (one atomic script
//! call) and starts an executor per message, which waits for a slot; when its lists are empty
//! it waits in Redis, on dedicated connections, until one of them is not. Prefetching keeps the
//! slots busy while the next batch is fetched, and makes batches larger under a backlog.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, Semaphore};

use super::executor::{self, LaneContext};
use super::{lists_for, semaphore, Context, WorkerConfig};
use crate::broker::{wait_for_message, Completion, FetchLimits};
use crate::connection::{Outage, Redis};
use crate::error::Result;

pub(crate) struct Lane {
    pub name: &'static str,
    pub lists: Vec<String>,
    /// Messages the lane may hold at once (taken and not finished): its slots times the
    /// prefetch multiplier. The fetcher takes a batch as large as the free room.
    pub room: Arc<Semaphore>,
    /// What its executors share: the slots they run tasks in, and the lane's own completer.
    pub executors: Arc<LaneContext>,
}

impl Lane {
    fn new(
        name: &'static str,
        lists: Vec<String>,
        slots: usize,
        prefetch: usize,
        completions: mpsc::Sender<Completion>,
    ) -> Self {
        let slots = slots.max(1);
        Lane {
            name,
            lists,
            room: semaphore(slots * prefetch.max(1)),
            executors: Arc::new(LaneContext {
                slots: semaphore(slots),
                completions,
            }),
        }
    }
}

/// The urgent lane (priority step 0) and the normal lane (steps 3, 6, 9), each with its own
/// slots and its own completer (a sender from `completer`). With `urgent_concurrency == 0` one
/// lane serves everything in kombu's order.
pub(crate) fn lanes(
    config: &WorkerConfig,
    mut completer: impl FnMut() -> mpsc::Sender<Completion>,
) -> Vec<Lane> {
    let prefetch = config.prefetch_multiplier;
    if config.urgent_concurrency == 0 {
        return vec![Lane::new(
            "all",
            lists_for(&config.queues, &crate::keys::PRIORITY_STEPS),
            config.concurrency,
            prefetch,
            completer(),
        )];
    }
    vec![
        Lane::new(
            "urgent",
            lists_for(&config.queues, &[0]),
            config.urgent_concurrency,
            prefetch,
            completer(),
        ),
        Lane::new(
            "normal",
            lists_for(&config.queues, &[3, 6, 9]),
            config.concurrency,
            prefetch,
            completer(),
        ),
    ]
}

pub(crate) async fn run(ctx: Arc<Context>, lane: Arc<Lane>) {
    let mut outage = Outage::new(lane.name);
    let mut idle = IdleWait::new(
        ctx.broker.redis().clone(),
        &lane.lists,
        ctx.config.idle_block,
    );
    let limits = |n| FetchLimits {
        max_messages: n,
        max_bytes: ctx.config.max_message_bytes,
        lease: ctx.config.lease_ttl,
    };
    loop {
        let first = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            p = lane.room.clone().acquire_owned() => p.expect("lane semaphore is never closed"),
        };
        let mut room = vec![first];
        while room.len() < ctx.config.batch {
            match lane.room.clone().try_acquire_owned() {
                Ok(p) => room.push(p),
                Err(_) => break,
            }
        }
        // Not raced against shutdown: once sent, the script runs in Redis whether or not its
        // reply is awaited, and dropping the call would leave what it took recorded as held by
        // this worker but unknown to it, still held after a clean exit. The call is bounded by
        // the command timeout; what it took is handed to executors, which put it back on its
        // queue if shutdown came first (see `executor::execute`).
        let fetched = ctx
            .broker
            .fetch(&ctx.consumer, &lane.lists, limits(room.len()))
            .await;
        let fetched = match fetched {
            Ok(f) => {
                outage.ok();
                f
            }
            Err(e) => {
                drop(room);
                let pause = outage.failed(&e);
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        for reason in &fetched.quarantined {
            ctx.stats
                .quarantined
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(lane = lane.name, %reason, "malformed message moved to quarantine");
        }
        if fetched.deliveries.is_empty() {
            drop(room);
            if fetched.quarantined.is_empty() {
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return,
                    _ = idle.wait() => {}
                }
            }
            continue;
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
    }
}

type Peek = Pin<Box<dyn Future<Output = Result<bool>> + Send>>;

/// Waits until any of a lane's lists holds a message, with one blocking command in flight per
/// list (each on its own connection). A wait that ends leaves the others in flight for the next
/// call, so commands never pile up on a connection.
struct IdleWait {
    redis: Redis,
    block: Duration,
    slots: Vec<PeekSlot>,
}

struct PeekSlot {
    list: String,
    conn: Option<MultiplexedConnection>,
    pending: Option<Peek>,
}

impl IdleWait {
    fn new(redis: Redis, lists: &[String], block: Duration) -> Self {
        IdleWait {
            redis,
            block,
            slots: lists
                .iter()
                .map(|l| PeekSlot {
                    list: l.clone(),
                    conn: None,
                    pending: None,
                })
                .collect(),
        }
    }

    /// Returns when a list may hold a message, when a wait timed out, or when a connection
    /// failed (the caller then fetches, which reports any outage).
    async fn wait(&mut self) {
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
