//! Runs one delivered message to its outcome, and hands the outcome on: a result to store and
//! acknowledge (the completer), a requeue, a quarantine, or a retry (the task sent again and
//! its `RETRY` result stored, in one atomic step with the acknowledgement; Celery's rules are
//! in `retry.rs`). Nothing a message contains can make this panic or lose the message.
//!
//! A lane starts one executor per message it takes. What an executor needs of that lane is
//! only its [`LaneContext`] (the slots its task runs in and the completer its outcome goes
//! to), defined here, so the executor knows nothing of how lanes fetch.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::board::{self, Board, Where};
use super::registry::{Retry, Task, TaskError, TaskOptions};
use super::retry::{self, Outcome};
use super::{canvas, parking, Context};
use crate::broker::{Completion, Delivery, NOT_UTF8};
use crate::protocol::{ExceptionInfo, ResultMeta, TaskMessage, TaskState};

/// What the executors of one lane share: the part of the lane that runs tasks, apart from the
/// part that fetches them.
pub(crate) struct LaneContext {
    /// Tasks the lane runs at once; a prefetched message waits for one of these.
    pub slots: Arc<Semaphore>,
    /// The lane's own completer: a health ping's result never queues behind a backlog's.
    pub completions: mpsc::Sender<Completion>,
}

pub(crate) async fn execute(
    ctx: Arc<Context>,
    lane: Arc<LaneContext>,
    delivery: Delivery,
    place: OwnedSemaphorePermit,
) {
    // The fetch script reads the tag of a well-formed message without decoding it or checking
    // its UTF-8, so a message that only looked well-formed there is caught here: not UTF-8,
    // undecodable, or another tag in its properties than the one its records were made under.
    let message = if delivery.not_utf8 {
        Err(NOT_UTF8.to_owned())
    } else {
        // Behind an Arc: the decoded message is large and is kept across every await below,
        // and the board (what `inspect` shows) shares it.
        TaskMessage::decode(delivery.raw.as_bytes())
            .map(Arc::new)
            .map_err(|e| e.to_string())
    };
    let message = message.and_then(|m| {
        if m.delivery_tag == delivery.tag {
            Ok(m)
        } else {
            Err(format!(
                "properties.delivery_tag {:?} is not the tag the message was taken under",
                m.delivery_tag
            ))
        }
    });
    let message = match message {
        Ok(m) => m,
        Err(error) => {
            ctx.stats.quarantined.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(tag = %delivery.tag, list = ?delivery.list, %error, "malformed message moved to quarantine");
            settle(&ctx, &delivery, Settle::Quarantine(error)).await;
            return;
        }
    };
    let Some(registered) = ctx.registry.task(&message.task) else {
        tracing::error!(task = %message.task, id = %message.id, "received unregistered task; storing NotRegistered");
        let exc = ExceptionInfo::not_registered(&message.task);
        // As a Python worker: no task-received, only task-failed.
        ctx.events.failed(&message.id, &exc, None);
        let meta = ResultMeta::failure(&message.id, &exc, None);
        finish(&ctx, &lane, &delivery, &message, meta).await;
        return;
    };
    registered.total.fetch_add(1, Ordering::Relaxed);
    ctx.events.received(&message);
    // One line as a task arrives and one as it ends, at debug, as Celery's worker logs them.
    tracing::debug!(task = %message.task, id = %message.id, eta = ?message.eta, "task received");

    // On the board (what `inspect` shows, and where a revoke finds it) until this returns.
    let waits_for_eta = message.eta.is_some_and(|eta| eta > chrono::Utc::now());
    let state = if waits_for_eta {
        Where::Scheduled
    } else {
        Where::Reserved
    };
    let entry = ctx.board.put(&delivery.list, message.clone(), state);
    let _on_board = OnBoard {
        board: &ctx.board,
        entry: &entry,
    };
    if ctx.revocations.contains(&message.id) {
        revoked(&ctx, &lane, &delivery, &message, Revoked::ByRequest).await;
        return;
    }

    // A task with an eta waits for it without taking room in its lane; the message stays held
    // (and recoverable) meanwhile, or is parked in Redis when its eta is far or this worker
    // holds enough already (parking.rs). At shutdown it goes back to the queue; revoked, it
    // ends now (Celery waits for the eta to say so).
    let place = match message.eta {
        Some(eta) if waits_for_eta => {
            drop(place);
            let wait = (eta - chrono::Utc::now()).to_std().unwrap_or_default();
            let size = delivery.raw.len();
            if let parking::Decision::Park { back_in } =
                parking::decide(wait, size, ctx.eta_held.load(), &ctx.config.eta)
            {
                if park(&ctx, &delivery, &message, back_in).await {
                    return;
                }
            }
            let _holding = ctx.eta_held.hold(size);
            tokio::select! {
                _ = ctx.shutdown.cancelled() => {
                    settle(&ctx, &delivery, Settle::Requeue).await;
                    return;
                }
                _ = tokio::time::sleep(wait) => {}
                _ = entry.revoked() => {}
            }
            entry.set(Where::Reserved);
            None
        }
        _ => Some(place),
    };
    // A rate-limited task waits for its turn (rate.rs), keeping its place but not a slot.
    if let Some(at) = ctx.rates.reserve(&message.task) {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => {
                settle(&ctx, &delivery, Settle::Requeue).await;
                return;
            }
            _ = tokio::time::sleep_until(at.into()) => {}
            _ = entry.revoked() => {}
        }
    }
    // A prefetched message waits here for a slot; once shutdown is requested it goes back to
    // the front of its queue instead. A free slot is taken at once (the usual case: a message is fetched when one is free),
    // shutdown or not: a message taken while a slot waited for it is as good as started, and
    // finishes with the running ones. Only a task that must wait for a slot registers for
    // shutdown (then it goes back to its queue) and for revokes.
    let slot = match lane.slots.clone().try_acquire_owned() {
        Ok(p) => Some(p),
        Err(_) => tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => {
                settle(&ctx, &delivery, Settle::Requeue).await;
                return;
            }
            _ = entry.revoked() => None,
            p = lane.slots.clone().acquire_owned() => Some(p.expect("lane semaphore is never closed")),
        },
    };
    let slot = match slot {
        Some(slot) if !ctx.revocations.contains(&message.id) => slot,
        _ => {
            revoked(&ctx, &lane, &delivery, &message, Revoked::ByRequest).await;
            return;
        }
    };
    if message.expires.is_some_and(|e| e <= chrono::Utc::now()) {
        revoked(&ctx, &lane, &delivery, &message, Revoked::Expired).await;
        return;
    }

    if ctx.config.track_started && !message.ignore_result {
        // Through the completer, so it is stored before the outcome (same channel, in order).
        let mut started = ResultMeta::started(&message.id, &ctx.config.hostname);
        describe(&ctx, &delivery, &message, &mut started);
        let _ = lane
            .completions
            .send(Completion {
                tag: None,
                result: Some((message.id.clone(), started.to_json())),
            })
            .await;
    }
    ctx.stats.active.fetch_add(1, Ordering::Relaxed);
    entry.set(Where::Active);
    ctx.events.started(&message.id);
    let started = Instant::now();
    // The message's limits; where it has none, those set at run time (`control time_limit`).
    let (soft, hard) = match (message.timelimit.soft, message.timelimit.hard) {
        (None, None) => ctx.time_limits.get(&message.task).unwrap_or_default(),
        given => given,
    };
    let task = Task::from_message(&message, &ctx.config.hostname, started, soft);
    let run = AssertUnwindSafe(registered.handler.call(task)).catch_unwind();
    // A limit too large for a Duration (1e20 s, 1e300 s) is no limit; `from_secs_f64` would
    // panic here, outside the handler's guard, and leave the message held for good.
    let hard_limit = hard
        .filter(|s| *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(Duration::MAX);
    let run = tokio::time::timeout(hard_limit, run);
    let outcome = tokio::select! {
        r = run => Ran::Done(r),
        _ = ctx.abort.cancelled() => Ran::Aborted,
        _ = entry.terminated() => Ran::Terminated,
    };
    ctx.stats.active.fetch_sub(1, Ordering::Relaxed);
    drop((slot, place));
    let outcome = match outcome {
        Ran::Done(outcome) => outcome,
        Ran::Aborted => {
            settle(&ctx, &delivery, Settle::Requeue).await;
            return;
        }
        Ran::Terminated => {
            revoked(&ctx, &lane, &delivery, &message, Revoked::Terminated).await;
            return;
        }
    };
    ctx.stats.processed.fetch_add(1, Ordering::Relaxed);

    let id = &message.id;
    let meta = match outcome {
        Ok(Ok(Ok(value))) => {
            ctx.events.succeeded(id, &value, started.elapsed());
            ResultMeta::success(id, value)
        }
        Ok(Ok(Err(TaskError::Retry(again)))) => {
            retry_task(
                &ctx,
                &lane,
                &delivery,
                &message,
                *again,
                &registered.options,
            )
            .await;
            return;
        }
        Ok(Ok(Err(TaskError::Failed(exc)))) => {
            match retry::autoretry(&exc, &registered.options, message.retries) {
                Some(again) => {
                    retry_task(&ctx, &lane, &delivery, &message, again, &registered.options).await;
                    return;
                }
                None => {
                    failed_event(&ctx, id, &exc);
                    ResultMeta::failure(id, &exc, None)
                }
            }
        }
        Ok(Ok(Err(TaskError::Reject { requeue, reason }))) => {
            tracing::info!(task = %message.task, %id, requeue, %reason, "task rejected its message");
            ctx.events.rejected(id, requeue);
            let how = if requeue {
                Settle::RequeueBack
            } else {
                Settle::Quarantine(format!("rejected by the task: {reason}"))
            };
            settle(&ctx, &delivery, how).await;
            return;
        }
        Ok(Err(panic)) => {
            let what = panic_message(&panic);
            tracing::error!(task = %message.task, %id, panic = %what, "task panicked; storing FAILURE");
            let exc =
                ExceptionInfo::new("RuntimeError", "builtins", format!("task panicked: {what}"));
            failed_event(&ctx, id, &exc);
            ResultMeta::failure(id, &exc, None)
        }
        Err(_) => {
            let exc = ExceptionInfo::new(
                "TimeLimitExceeded",
                "celery.exceptions",
                format!("{}", hard_limit.as_secs_f64()),
            );
            failed_event(&ctx, id, &exc);
            ResultMeta::failure(id, &exc, None)
        }
    };
    match meta.status {
        TaskState::Success => {
            tracing::debug!(task = %message.task, %id, runtime = ?started.elapsed(), "task succeeded")
        }
        _ => {
            tracing::warn!(task = %message.task, %id, runtime = ?started.elapsed(), error = ?meta.exception().map(|e| e.to_string()), "task failed")
        }
    }
    conclude(&ctx, &lane, &delivery, &message, meta).await;
}

/// The end of a task that ran: what it links to is sent (callbacks, chain, group and chord, in
/// canvas.rs; a task without them pays only `involved`), then its result is stored.
async fn conclude(
    ctx: &Context,
    lane: &LaneContext,
    delivery: &Delivery,
    message: &TaskMessage,
    meta: ResultMeta,
) {
    let meta = if canvas::involved(message) {
        match canvas::follow(ctx, lane, delivery, message, meta).await {
            Some(canvas::Followed::Store(meta)) => meta,
            Some(canvas::Followed::Quarantine(meta, reason)) => {
                quarantine_ran(ctx, delivery, message, meta, reason).await;
                return;
            }
            None => return,
        }
    } else {
        meta
    };
    finish(ctx, lane, delivery, message, meta).await;
}

/// Ends a task that ran but whose canvas is malformed: its result (an `InvalidTaskError`) is
/// stored at once, then the message goes to quarantine with the reason; should this process
/// die in between, the message is still held, runs again and ends here again. Boxed, like
/// [`settle`]: a Redis call's state would otherwise weigh on every task's state.
fn quarantine_ran<'a>(
    ctx: &'a Context,
    delivery: &'a Delivery,
    message: &'a TaskMessage,
    mut meta: ResultMeta,
    reason: String,
) -> BoxFuture<'a, ()> {
    async move {
        describe(ctx, delivery, message, &mut meta);
        let record = Completion {
            tag: None,
            result: Some((message.id.clone(), meta.to_json())),
        };
        let stored = ctx
            .broker
            .complete(&ctx.consumer, &[record], ctx.config.result_ttl)
            .await;
        if let Err(error) = stored {
            tracing::warn!(id = %message.id, %error, "could not store the InvalidTaskError; the message will be returned to the queue");
            ctx.held.lock().expect("held lock").remove(&delivery.tag);
            return;
        }
        ctx.stats.quarantined.fetch_add(1, Ordering::Relaxed);
        let why = format!("malformed canvas (the task ran; InvalidTaskError stored): {reason}");
        settle(ctx, delivery, Settle::Quarantine(why)).await;
    }
    .boxed()
}

/// Applies a retry (Celery's `Task.retry`): the task is sent again with the same id to run
/// later, its `RETRY` result stored and this delivery acknowledged, all in one script call;
/// or, when its retries are used up, it fails as Celery says. Boxed, like [`settle`]: a rare
/// path whose Redis call should not weigh on every task's state.
fn retry_task<'a>(
    ctx: &'a Context,
    lane: &'a LaneContext,
    delivery: &'a Delivery,
    message: &'a TaskMessage,
    mut again: Retry,
    options: &'a TaskOptions,
) -> BoxFuture<'a, ()> {
    async move {
        let (args, kwargs) = (again.args.take(), again.kwargs.take());
        let (eta, exc) = match retry::decide(again, options, message, chrono::Utc::now()) {
            Outcome::Again { eta, exc } => (eta, exc),
            Outcome::GiveUp(exc) => {
                tracing::warn!(task = %message.task, id = %message.id, retries = message.retries, error = %exc, "task out of retries; storing FAILURE");
                failed_event(ctx, &message.id, &exc);
                // A failure like any other: its errbacks run and its chord counts it.
                let meta = ResultMeta::failure(&message.id, &exc, None);
                conclude(ctx, lane, delivery, message, meta).await;
                return;
            }
        };
        let record = (!message.ignore_result).then(|| {
            let mut meta =
                ResultMeta::retry(&message.id, exc.as_ref(), message.parent_id.as_deref());
            describe(ctx, delivery, message, &mut meta);
            meta.to_json()
        });
        let result = ctx
            .broker
            .retry(
                &ctx.consumer,
                delivery,
                &message.retried_with(eta, args.as_deref(), kwargs.as_ref()),
                record.as_deref().map(|r| (message.id.as_str(), r)),
                ctx.config.result_ttl,
            )
            .await;
        // As after a settle: this process is done with the delivery either way. If the script
        // did not run, the message is still held and the orphan sweep (or lease recovery)
        // returns it, so this attempt runs again: at least once, never lost.
        ctx.held.lock().expect("held lock").remove(&delivery.tag);
        match result {
            Ok(true) => {
                ctx.events.retried(&message.id, exc.as_ref());
                tracing::info!(task = %message.task, id = %message.id, retries = message.retries + 1, %eta, reason = ?exc.map(|e| e.to_string()), "task retry scheduled")
            }
            Ok(false) => {
                tracing::warn!(task = %message.task, id = %message.id, "retry of a delivery no longer held; not sent again")
            }
            Err(error) => {
                tracing::warn!(task = %message.task, id = %message.id, %error, "could not retry; the message will be returned to the queue")
            }
        }
    }
    .boxed()
}

/// Hands a final result to the completer (which stores it and acknowledges the message).
async fn finish(
    ctx: &Context,
    lane: &LaneContext,
    delivery: &Delivery,
    message: &TaskMessage,
    mut meta: ResultMeta,
) {
    let ignore = message.ignore_result || ctx.registry.ignores_result(&message.task);
    let store = !(ignore && meta.status == TaskState::Success);
    if store {
        describe(ctx, delivery, message, &mut meta);
    }
    let completion = Completion {
        tag: Some(delivery.tag.clone()),
        result: store.then(|| (message.id.clone(), meta.to_json())),
    };
    if lane.completions.send(completion).await.is_err() {
        tracing::warn!(id = %message.id, "completer gone; the message stays held and will be redelivered");
    }
}

/// What Celery stores about the request with every result of a task (`_get_result_meta`): its
/// group and parent and, with `result_extended`, its name, arguments, worker, retries and
/// queue, in Celery's order. Fields already there (the canvas sets some) keep their place.
fn describe(ctx: &Context, delivery: &Delivery, message: &TaskMessage, meta: &mut ResultMeta) {
    let extra = &mut meta.extra;
    if let Some(group) = &message.group {
        extra.insert("group_id".into(), group.as_str().into());
    }
    // A retried task is its own parent.
    if let Some(parent) = &message.parent_id {
        extra.insert("parent_id".into(), parent.as_str().into());
    }
    if ctx.config.result_extended {
        let queue = match message.delivery_info.routing_key.as_str() {
            "" => crate::keys::queue_of_list(&delivery.list),
            key => key,
        };
        extra.insert("name".into(), message.task.as_str().into());
        extra.insert("args".into(), message.args.clone().into());
        extra.insert("kwargs".into(), message.kwargs.clone().into());
        extra.insert("worker".into(), ctx.config.hostname.as_str().into());
        extra.insert("retries".into(), message.retries.into());
        extra.insert("queue".into(), queue.into());
    }
}

/// `task-failed` for a task that ran. Celery sends the Python traceback; a Rust task has
/// none, so the traceback's last line stands for it (`ValueError: sin stock`).
fn failed_event(ctx: &Context, id: &str, exc: &ExceptionInfo) {
    if ctx.events.is_enabled() {
        ctx.events.failed(id, exc, Some(&exc.to_string()));
    }
}

/// How a task ran, when it was let run.
enum Ran<T> {
    Done(T),
    /// Shutdown overran its time: the message goes back to its queue.
    Aborted,
    /// Revoked with `terminate`: stopped where it was.
    Terminated,
}

/// Why a task is stored `REVOKED`, in Celery's words (the exception's message).
#[derive(Clone, Copy)]
enum Revoked {
    ByRequest,
    Expired,
    Terminated,
}

/// Ends a task that must not run (or run on): `REVOKED` stored through the canvas (a revoked
/// part of a chord fails the chord, as in Celery), and the `task-revoked` event.
fn revoked<'a>(
    ctx: &'a Context,
    lane: &'a LaneContext,
    delivery: &'a Delivery,
    message: &'a TaskMessage,
    why: Revoked,
) -> BoxFuture<'a, ()> {
    async move {
        let (reason, expired, terminated) = match why {
            Revoked::ByRequest => ("revoked", false, false),
            Revoked::Expired => ("expired", true, false),
            Revoked::Terminated => ("terminated", false, true),
        };
        tracing::info!(task = %message.task, id = %message.id, reason, "task not run; storing REVOKED");
        ctx.events
            .revoked(&message.id, terminated, terminated.then_some(15), expired);
        let meta = ResultMeta::revoked(&message.id, reason);
        conclude(ctx, lane, delivery, message, meta).await;
    }
    .boxed()
}

/// Takes a task off the board however its executor ends.
struct OnBoard<'a> {
    board: &'a Board,
    entry: &'a Arc<board::Entry>,
}

impl Drop for OnBoard<'_> {
    fn drop(&mut self) {
        self.board.remove(self.entry);
    }
}

enum Settle {
    /// Back at the front of its list (served next): shutdown, eta tasks.
    Requeue,
    /// Back at the end of its list: the task asked for it.
    RequeueBack,
    Quarantine(String),
}

/// Parks a task whose eta is far (parking.rs); returns whether it left this worker. If Redis
/// could not take it, the task is held in memory as before: nothing is lost either way. Boxed,
/// so the executor's own future does not grow by this rare path.
fn park<'a>(
    ctx: &'a Context,
    delivery: &'a Delivery,
    message: &'a TaskMessage,
    back_in: Duration,
) -> BoxFuture<'a, bool> {
    async move {
        let due_back = chrono::Utc::now()
            + chrono::Duration::from_std(back_in).unwrap_or(chrono::Duration::MAX);
        match ctx
            .broker
            .park(&ctx.consumer, delivery, due_back, ctx.config.visibility_timeout)
            .await
        {
            Ok(parked) => {
                ctx.held.lock().expect("held lock").remove(&delivery.tag);
                if parked {
                    tracing::debug!(task = %message.task, id = %message.id, eta = ?message.eta, back = %due_back, "eta far: task parked in Redis");
                }
                true
            }
            Err(e) => {
                tracing::warn!(id = %message.id, error = %e, "could not park a task with a far eta; holding it in memory");
                false
            }
        }
    }
    .boxed()
}

/// Boxed: a Redis call's state is large, and `execute` awaits this in five places, each of
/// which would otherwise add it to the state of every running task (what that cost is in
/// docs/BENCHMARKS.md).
fn settle<'a>(ctx: &'a Context, delivery: &'a Delivery, how: Settle) -> BoxFuture<'a, ()> {
    async move {
        let result = match &how {
            Settle::Requeue => ctx.broker.requeue(&ctx.consumer, delivery, true).await,
            Settle::RequeueBack => ctx.broker.requeue(&ctx.consumer, delivery, false).await,
            Settle::Quarantine(reason) => {
                ctx.broker.quarantine(&ctx.consumer, delivery, reason).await
            }
        };
        // Settled or not, this process no longer works on it: if the settle failed, the orphan
        // sweep (or, after exit, lease recovery) returns it to the queue.
        ctx.held.lock().expect("held lock").remove(&delivery.tag);
        if matches!(how, Settle::Quarantine(_)) && result.is_ok() {
            trim_quarantine(ctx).await;
        }
        if let Err(error) = result {
            tracing::warn!(tag = %delivery.tag, %error, "could not settle a message; it will be returned to the queue");
        }
    }
    .boxed()
}

/// Keeps the quarantine list to its cap after something was put there.
pub(crate) async fn trim_quarantine(ctx: &Context) {
    match ctx.broker.trim_quarantine(ctx.config.quarantine_max).await {
        Ok(0) => {}
        Ok(dropped) => {
            tracing::warn!(
                dropped,
                cap = ctx.config.quarantine_max,
                "quarantine full: oldest entries dropped (counted in rcelery:quarantine:dropped)"
            )
        }
        Err(error) => tracing::warn!(%error, "could not trim the quarantine list"),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
