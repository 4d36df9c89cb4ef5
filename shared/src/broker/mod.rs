//! The broker: the only code that issues Redis commands for queues. It publishes task messages
//! the way kombu does, and hands them to consumers with at-least-once delivery.
//!
//! How a message travels (see [`crate::keys`] for every key):
//!
//! 1. **publish**: `LPUSH <queue list> <message>` (the list picked by priority, as kombu), after
//!    recording kombu's binding once per queue; a health ping may instead be put at the end
//!    workers take from (`RPUSH`, [`Broker::publish_next`]), so it is served next.
//! 2. **fetch** (`lua/fetch.lua`): one atomic script pops a batch from the lists in priority
//!    order and, for each message, records it in kombu's `unacked`/`unacked_index` and in the
//!    consumer's `inflight` hash. There is no instant at which a message is in neither place.
//!    A well-formed message's tag is read without decoding it; the worker decodes every message
//!    and quarantines one that only looked well-formed (see `worker::executor`).
//! 3. **complete** (`lua/complete.lua`): stores results (SETEX + PUBLISH) and acknowledges, a
//!    batch at once. **settle** (`lua/settle.lua`) instead requeues or quarantines one message;
//!    **retry** (`lua/retry.lua`) swaps it for the message that runs its task again, storing
//!    the `RETRY` result in the same step.
//! 4. **recovery**: every consumer renews a lease in `rcelery:consumers` (`lua/lease.lua`);
//!    when one stops renewing (SIGKILL, crash, lost machine), [`Broker::recover_dead`], run by
//!    every live worker, puts the messages it held back at the front of their lists, marked
//!    redelivered, within seconds rather than kombu's one-hour visibility timeout.
//!
//! Idle consumers wait with `BLMOVE list list RIGHT RIGHT`, which blocks until the list has a
//! message and then leaves it where it is: waiting takes nothing, so nothing can be lost there.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connection::Redis;
use crate::error::{QueueError, Result};
use crate::keys;
use crate::protocol::{format_datetime, to_python_json, TaskMessage};

mod chord;
mod control;
pub mod quarantine;
mod retry;
pub mod stats;

pub use chord::ChordPart;

static FETCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/prelude.lua"),
        include_str!("lua/fetch.lua")
    ))
});
pub(crate) static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/prelude.lua"),
        include_str!("lua/complete.lua")
    ))
});
static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/prelude.lua"),
        include_str!("lua/settle.lua")
    ))
});
static LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/prelude.lua"),
        include_str!("lua/lease.lua")
    ))
});
static DEAD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/dead.lua")));
static FORGET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/prelude.lua"),
        include_str!("lua/forget.lua")
    ))
});
static TRIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/trim.lua")));
static PARK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/prelude.lua"),
        include_str!("lua/park.lua")
    ))
});
static DUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/prelude.lua"),
        include_str!("lua/due.lua")
    ))
});
static UNPARK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/prelude.lua"),
        include_str!("lua/unpark.lua")
    ))
});

/// Messages larger than this are quarantined unread unless configured otherwise.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// How much one fetch may take, and the lease that covers what it takes.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    pub max_messages: usize,
    /// Larger messages go to quarantine unread.
    pub max_bytes: usize,
    pub lease: Duration,
}

/// A message taken by a consumer and not yet settled.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub tag: String,
    /// The list it came from (its queue and priority step).
    pub list: String,
    /// The message exactly as it was on the list; if it was not UTF-8 (`not_utf8`), with each
    /// invalid sequence shown as U+FFFD.
    pub raw: String,
    /// The message was not valid UTF-8. It can only go to quarantine: `raw` is not what was
    /// sent. (The fetch script leaves this check to us: in Rust it costs nothing.)
    pub not_utf8: bool,
}

/// The quarantine reason of a message that is not UTF-8.
pub const NOT_UTF8: &str = "message is not valid UTF-8 (invalid bytes shown as U+FFFD)";

/// Text from Redis bytes, and whether they were valid UTF-8 (else U+FFFD stands for each
/// invalid sequence).
fn text(bytes: Vec<u8>) -> (String, bool) {
    match String::from_utf8(bytes) {
        Ok(s) => (s, true),
        Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), false),
    }
}

/// What one fetch did.
#[derive(Debug, Default)]
pub struct Fetched {
    pub deliveries: Vec<Delivery>,
    /// Reasons of the messages that went to quarantine instead.
    pub quarantined: Vec<String>,
}

/// One finished message: its tag to acknowledge, and the result to store (if any).
#[derive(Debug, Clone)]
pub struct Completion {
    pub tag: Option<String>,
    pub result: Option<(String, String)>,
}

/// A record in the quarantine list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    pub reason: String,
    pub list: String,
    pub consumer: String,
    pub quarantined_at: String,
    /// The message exactly as it was received.
    pub message: String,
}

/// What a recovery pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub dead_consumers: usize,
    pub requeued: usize,
}

/// Publishes and hands out task messages. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    redis: Redis,
    declared: Arc<std::sync::Mutex<HashSet<String>>>,
}

impl Broker {
    pub fn new(redis: Redis) -> Self {
        Broker {
            redis,
            declared: Arc::default(),
        }
    }

    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// Runs a prepared script call on the pooled connection, retried once on a broken
    /// connection as every command is: the one way the broker's scripts reach Redis.
    pub(crate) async fn invoke<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T> {
        self.redis
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await
    }

    /// Pushes a message onto `queue` (onto the sub-list of its priority), as kombu does.
    pub async fn publish(&self, queue: &str, message: &TaskMessage) -> Result<()> {
        self.publish_many(queue, std::slice::from_ref(message))
            .await
    }

    /// Pushes a message onto the *consuming* end of its list (`RPUSH`), where every worker,
    /// ours or kombu's, takes its next message from: it is served before anything already
    /// waiting on that list (a later one sent this way is served before it). For health pings,
    /// which must not wait behind a backlog of the same priority; Celery has no such send.
    pub async fn publish_next(&self, queue: &str, message: &TaskMessage) -> Result<()> {
        self.push(queue, std::slice::from_ref(message), true).await
    }

    /// Publishes messages to `queue` in one round trip, each on its priority's list, in order
    /// (a thousand per `LPUSH`).
    pub async fn publish_many(&self, queue: &str, messages: &[TaskMessage]) -> Result<()> {
        self.push(queue, messages, false).await
    }

    async fn push(&self, queue: &str, messages: &[TaskMessage], next: bool) -> Result<()> {
        let declare = !self.declared.lock().expect("declared lock").contains(queue);
        let mut pipe = redis::pipe();
        if declare {
            let (set, member) = keys::binding(queue);
            pipe.sadd(set, member).ignore();
        }
        // Consecutive messages for the same list go out together.
        for run in messages.chunk_by(|a, b| a.priority == b.priority) {
            let list = keys::queue_list(queue, run[0].priority.unwrap_or(0));
            for chunk in run.chunks(1000) {
                let payloads: Vec<String> = chunk.iter().map(TaskMessage::encode).collect();
                if next {
                    pipe.rpush(&list, payloads).ignore();
                } else {
                    pipe.lpush(&list, payloads).ignore();
                }
            }
        }
        // Acknowledged by replicas when so configured: a published task is what a failover
        // must not lose.
        self.redis
            .run_acknowledged(|mut c| {
                let pipe = &pipe;
                async move { pipe.query_async::<()>(&mut c).await }
            })
            .await?;
        if declare {
            self.declared
                .lock()
                .expect("declared lock")
                .insert(queue.to_owned());
        }
        Ok(())
    }

    /// Takes a published message back off its list if no worker has taken it yet (`LREM` of
    /// the exact message): `true` when it was still waiting. `next` says it was published with
    /// [`Broker::publish_next`], so the search starts from the consuming end, where it sits.
    pub async fn withdraw(&self, queue: &str, message: &TaskMessage, next: bool) -> Result<bool> {
        let list = keys::queue_list(queue, message.priority.unwrap_or(0));
        let payload = message.encode();
        let count: isize = if next { -1 } else { 1 };
        let removed: usize = self
            .redis
            .run(|mut c| {
                let (list, payload) = (&list, &payload);
                async move { c.lrem(list, count, payload).await }
            })
            .await?;
        Ok(removed > 0)
    }

    /// Takes up to `max` messages from `lists` (served in the order given) for `consumer`.
    pub async fn fetch(
        &self,
        consumer: &str,
        lists: &[String],
        limits: FetchLimits,
    ) -> Result<Fetched> {
        self.fetch_tasks(consumer, lists, limits, &[]).await
    }

    /// Like [`Broker::fetch`], but takes a list's message only while the one at its consuming
    /// end is a task named in `tasks` (all of them when `tasks` is empty), and leaves the rest
    /// where they are. The worker's reserved health slots take pings with it.
    pub async fn fetch_tasks(
        &self,
        consumer: &str,
        lists: &[String],
        limits: FetchLimits,
        tasks: &[String],
    ) -> Result<Fetched> {
        let now = chrono::Utc::now();
        let mut inv = FETCH.prepare_invoke();
        inv.key(keys::UNACKED)
            .key(keys::UNACKED_INDEX)
            .key(keys::inflight(consumer))
            .key(keys::QUARANTINE)
            .key(keys::CONSUMERS);
        for list in lists {
            inv.key(list);
        }
        inv.arg(limits.max_messages)
            // Whole seconds: kombu writes time() with its fraction, but only compares these
            // with its visibility timeout (an hour), and Redis keeps an integer score as an
            // integer; a fraction is printed and parsed again on every insertion into a small
            // sorted set (a listpack), a cost per message that showed in profiles.
            .arg(now.timestamp())
            .arg(limits.max_bytes)
            .arg(consumer)
            .arg(format_datetime(now))
            .arg(limits.lease.as_millis() as u64);
        for list in lists {
            inv.arg(keys::queue_of_list(list));
        }
        for task in tasks {
            inv.arg(task);
        }
        let (taken, quarantined): (Vec<redis::Value>, Vec<String>) = self.invoke(&inv).await?;
        let mut deliveries = Vec::with_capacity(taken.len() / 3);
        let mut it = taken.into_iter();
        while let (Some(index), Some(tag), Some(raw)) = (it.next(), it.next(), it.next()) {
            let index: usize = redis::from_redis_value(index).map_err(redis::RedisError::from)?;
            let (raw, utf8) = text(redis::from_redis_value(raw).map_err(redis::RedisError::from)?);
            deliveries.push(Delivery {
                list: lists
                    .get(index.saturating_sub(1))
                    .cloned()
                    .unwrap_or_default(),
                tag: redis::from_redis_value(tag).map_err(redis::RedisError::from)?,
                raw,
                not_utf8: !utf8,
            });
        }
        Ok(Fetched {
            deliveries,
            quarantined,
        })
    }

    /// Acknowledges and stores results for a batch, atomically.
    pub async fn complete(
        &self,
        consumer: &str,
        batch: &[Completion],
        result_ttl: Duration,
    ) -> Result<usize> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut inv = COMPLETE.prepare_invoke();
        inv.key(keys::UNACKED)
            .key(keys::UNACKED_INDEX)
            .key(keys::inflight(consumer))
            .arg(result_ttl.as_secs().max(1));
        for c in batch {
            let (key, payload) = match &c.result {
                Some((task_id, payload)) => (keys::result_key(task_id), payload.as_str()),
                None => (keys::RESULT_KEY_PREFIX.to_owned(), ""),
            };
            inv.key(key)
                .arg(c.tag.as_deref().unwrap_or(""))
                .arg(payload);
        }
        self.invoke(&inv).await
    }

    /// Puts a held message back on its list: at the back (`front == false`, like kombu's
    /// reject-with-requeue) or at the front (served next). Returns false if it was not held.
    pub async fn requeue(&self, consumer: &str, delivery: &Delivery, front: bool) -> Result<bool> {
        self.settle(
            consumer,
            &delivery.tag,
            &delivery.list,
            front,
            &delivery.raw,
        )
        .await
    }

    /// Moves a held message to the quarantine list with the reason.
    pub async fn quarantine(
        &self,
        consumer: &str,
        delivery: &Delivery,
        reason: &str,
    ) -> Result<bool> {
        let entry = QuarantineEntry {
            reason: reason.to_owned(),
            list: delivery.list.clone(),
            consumer: consumer.to_owned(),
            quarantined_at: format_datetime(chrono::Utc::now()),
            message: delivery.raw.clone(),
        };
        self.settle(
            consumer,
            &delivery.tag,
            keys::QUARANTINE,
            false,
            &to_python_json(&entry),
        )
        .await
    }

    /// Drops the oldest quarantine entries beyond the newest `cap`, counting them in
    /// [`keys::QUARANTINE_DROPPED`]; returns how many were dropped.
    pub async fn trim_quarantine(&self, cap: usize) -> Result<u64> {
        let mut inv = TRIM.prepare_invoke();
        inv.key(keys::QUARANTINE)
            .key(keys::QUARANTINE_DROPPED)
            .arg(cap.max(1));
        self.invoke(&inv).await
    }

    async fn settle(
        &self,
        holder: &str,
        tag: &str,
        dest: &str,
        front: bool,
        payload: &str,
    ) -> Result<bool> {
        let mut inv = SETTLE.prepare_invoke();
        inv.key(keys::UNACKED)
            .key(keys::UNACKED_INDEX)
            .key(keys::inflight(holder))
            .key(dest)
            .arg(tag)
            .arg(if front { "front" } else { "back" })
            .arg(payload);
        let moved: i64 = self.invoke(&inv).await?;
        Ok(moved == 1)
    }

    /// Renews `consumer`'s lease for `ttl`.
    pub async fn renew_lease(&self, consumer: &str, ttl: Duration) -> Result<()> {
        self.lease(consumer, ttl, false).await
    }

    /// Renews `consumer`'s lease for `ttl` and, in the same script call, scores every message
    /// it holds in `unacked_index` as delivered now: a kombu worker restores an entry older
    /// than its visibility timeout, even one a live worker of ours is still running.
    pub async fn renew_lease_and_refresh(&self, consumer: &str, ttl: Duration) -> Result<()> {
        self.lease(consumer, ttl, true).await
    }

    async fn lease(&self, consumer: &str, ttl: Duration, refresh: bool) -> Result<()> {
        let mut inv = LEASE.prepare_invoke();
        inv.key(keys::CONSUMERS)
            .arg(consumer)
            .arg(ttl.as_millis() as u64);
        if refresh {
            inv.key(keys::inflight(consumer))
                .key(keys::UNACKED_INDEX)
                // Whole seconds, as fetch.lua scores.
                .arg(chrono::Utc::now().timestamp());
        }
        self.invoke::<i64>(&inv).await.map(|_| ())
    }

    /// Ends `consumer`'s lease on a clean exit. If it still holds messages (results it could
    /// not store), the lease is left to run out so that another worker recovers them.
    pub async fn release(&self, consumer: &str) -> Result<bool> {
        self.forget(consumer, true).await
    }

    async fn forget(&self, consumer: &str, own_exit: bool) -> Result<bool> {
        let mut inv = FORGET.prepare_invoke();
        inv.key(keys::CONSUMERS)
            .key(keys::inflight(consumer))
            .arg(consumer)
            .arg(if own_exit { "1" } else { "0" });
        let removed: i64 = self.invoke(&inv).await?;
        Ok(removed == 1)
    }

    /// Finds consumers whose lease ran out and puts every message they held back at the front
    /// of its list, marked redelivered. Safe to run from many workers at once: each message
    /// moves once.
    pub async fn recover_dead(&self) -> Result<Recovery> {
        let dead: Vec<String> = self
            .redis
            .run(|mut c| async move { DEAD.key(keys::CONSUMERS).invoke_async(&mut c).await })
            .await?;
        let mut report = Recovery::default();
        for consumer in dead {
            for (tag, list) in self.held(&consumer).await? {
                if self.give_back(&consumer, &tag, &list).await? {
                    report.requeued += 1;
                }
            }
            if self.forget(&consumer, false).await? {
                report.dead_consumers += 1;
            }
        }
        Ok(report)
    }

    /// What `consumer` holds: delivery tag → source list.
    pub async fn held(&self, consumer: &str) -> Result<HashMap<String, String>> {
        let inflight = keys::inflight(consumer);
        self.redis
            .run(|mut c| {
                let inflight = &inflight;
                async move { c.hgetall(inflight).await }
            })
            .await
    }

    /// Puts one message `holder` holds back at the front of its list, marked redelivered.
    /// Returns whether it moved (false if it was settled meanwhile or kombu restored it).
    pub async fn give_back(&self, holder: &str, tag: &str, list: &str) -> Result<bool> {
        let record: Option<Vec<u8>> = self
            .redis
            .run(|mut c| async move { c.hget(keys::UNACKED, tag).await })
            .await?;
        // Held but unreadable: keep it, with the reason, rather than lose it.
        let keep = |raw: String, utf8: bool, reason: &'static str| async move {
            let delivery = Delivery {
                tag: tag.to_owned(),
                list: list.to_owned(),
                raw,
                not_utf8: !utf8,
            };
            self.quarantine(holder, &delivery, reason).await?;
            Ok(false)
        };
        match record.map(text) {
            Some((record, true)) => match redelivered_message(&record) {
                Some(message) => self.settle(holder, tag, list, true, &message).await,
                None => {
                    let reason = "unacked record is not [message, exchange, routing_key]";
                    keep(record, true, reason).await
                }
            },
            Some((record, false)) => keep(record, false, NOT_UTF8).await,
            // No record: a kombu worker restored it already; settle only clears ours.
            None => self.settle(holder, tag, list, true, "").await,
        }
    }

    /// Parks a message `consumer` holds until `due_back` (see `worker::parking`): it leaves
    /// the consumer's records but stays in kombu's, scored so that a kombu worker with a
    /// visibility timeout of at least `visibility_timeout` restores it no earlier than that
    /// either. Returns false if the consumer no longer held it.
    pub async fn park(
        &self,
        consumer: &str,
        delivery: &Delivery,
        due_back: chrono::DateTime<chrono::Utc>,
        visibility_timeout: Duration,
    ) -> Result<bool> {
        let index_score = due_back.timestamp() - visibility_timeout.as_secs() as i64;
        let mut inv = PARK.prepare_invoke();
        inv.key(keys::UNACKED)
            .key(keys::UNACKED_INDEX)
            .key(keys::inflight(consumer))
            .key(keys::PARKED)
            .arg(&delivery.tag)
            .arg(&delivery.list)
            .arg(due_back.timestamp_millis())
            .arg(index_score);
        let parked: i64 = self.invoke(&inv).await?;
        Ok(parked == 1)
    }

    /// Puts parked messages that are due back at the front of their lists, up to `max` of
    /// them; returns how many moved. Safe to run from every worker at once: each moves once.
    pub async fn unpark_due(&self, max: usize) -> Result<usize> {
        let mut inv = DUE.prepare_invoke();
        inv.key(keys::PARKED).arg(max.max(1));
        let due: Vec<String> = self.invoke(&inv).await?;
        let mut moved = 0;
        for entry in due {
            // The score is kept as the text Redis returns for it, and compared as a number.
            let parsed: Option<(String, String, String)> = serde_json::from_str(&entry).ok();
            let Some((tag, list, score)) = parsed else {
                // Not ours to read: dropped, since its message is still in unacked, where a
                // kombu worker restores it.
                tracing::warn!(%entry, "unreadable parked entry dropped; its message stays in unacked");
                let _: i64 = self
                    .redis
                    .run(|mut c| {
                        let entry = &entry;
                        async move { c.zrem(keys::PARKED, entry).await }
                    })
                    .await?;
                continue;
            };
            let record: Option<String> = self
                .redis
                .run(|mut c| {
                    let tag = &tag;
                    async move { c.hget(keys::UNACKED, tag).await }
                })
                .await?;
            let message = record
                .as_deref()
                .and_then(recorded_message)
                .unwrap_or_default();
            let mut inv = UNPARK.prepare_invoke();
            inv.key(keys::PARKED)
                .key(keys::UNACKED)
                .key(keys::UNACKED_INDEX)
                .key(&list)
                .arg(&entry)
                .arg(&tag)
                .arg(score)
                .arg(message);
            let done: i64 = self.invoke(&inv).await?;
            moved += done as usize;
        }
        Ok(moved)
    }

    /// Number of messages waiting on `queue`, all priorities.
    pub async fn queue_len(&self, queue: &str) -> Result<u64> {
        let mut pipe = redis::pipe();
        for list in keys::queue_lists(queue) {
            pipe.llen(list);
        }
        let lens: Vec<u64> = self
            .redis
            .run(|mut c| {
                let pipe = &pipe;
                async move { pipe.query_async(&mut c).await }
            })
            .await?;
        Ok(lens.iter().sum())
    }

    /// The newest `n` quarantine records.
    pub async fn quarantined(&self, n: usize) -> Result<Vec<QuarantineEntry>> {
        let raw: Vec<String> = self
            .redis
            .run(|mut c| async move { c.lrange(keys::QUARANTINE, 0, n as isize - 1).await })
            .await?;
        raw.iter()
            .map(|r| {
                serde_json::from_str(r).map_err(|e| {
                    QueueError::Protocol(crate::protocol::ProtocolError::NotJson(e.to_string()))
                })
            })
            .collect()
    }
}

/// Blocks (on a dedicated connection) until `list` holds a message or `block` passes; returns
/// whether it does. `BLMOVE list list RIGHT RIGHT` moves the last element onto itself: the
/// list is unchanged, so waiting takes nothing from other consumers.
pub async fn wait_for_message(
    conn: &mut MultiplexedConnection,
    list: &str,
    block: Duration,
) -> Result<bool> {
    let found: Option<redis::Value> = redis::cmd("BLMOVE")
        .arg(list)
        .arg(list)
        .arg("RIGHT")
        .arg("RIGHT")
        .arg(block.as_secs_f64())
        .query_async(conn)
        .await?;
    Ok(found.is_some())
}

/// The message of an `unacked` record (`[message, exchange, routing_key]`) exactly as it was
/// sent: a parked message goes back unchanged (it was never delivered to a task).
fn recorded_message(record: &str) -> Option<&str> {
    let parts: Vec<&serde_json::value::RawValue> = serde_json::from_str(record).ok()?;
    parts.first().map(|m| m.get())
}

/// The message of an `unacked` record (`[message, exchange, routing_key]`) marked as
/// redelivered, as kombu marks what it restores. `None` if the record is not readable.
fn redelivered_message(record: &str) -> Option<String> {
    let Value::Array(mut parts) = serde_json::from_str(record).ok()? else {
        return None;
    };
    if parts.is_empty() {
        return None;
    }
    let mut message = parts.swap_remove(0);
    if let Some(headers) = message.get_mut("headers").and_then(Value::as_object_mut) {
        headers.insert("redelivered".into(), Value::Bool(true));
    }
    if let Some(info) = message
        .pointer_mut("/properties/delivery_info")
        .and_then(Value::as_object_mut)
    {
        info.insert("redelivered".into(), Value::Bool(true));
    }
    Some(to_python_json(&message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redelivery_marks_the_message() {
        let record = r#"[{"body": "W10=", "headers": {"id": "x"}, "properties": {"delivery_info": {"exchange": "", "routing_key": "q"}}}, "", "q"]"#;
        let msg: Value = serde_json::from_str(&redelivered_message(record).unwrap()).unwrap();
        assert_eq!(msg["headers"]["redelivered"], true);
        assert_eq!(msg["properties"]["delivery_info"]["redelivered"], true);
        assert_eq!(msg["headers"]["id"], "x");
        assert!(redelivered_message("not json").is_none());
    }

    #[test]
    fn a_parked_message_goes_back_byte_for_byte() {
        let message = r#"{"body": "W10=",  "headers": {"id": "x", "f": 1.50}}"#;
        let record = format!(r#"[{message}, "", "q"]"#);
        assert_eq!(recorded_message(&record), Some(message));
        assert_eq!(recorded_message("[]"), None);
        assert_eq!(recorded_message("{}"), None);
    }
}
