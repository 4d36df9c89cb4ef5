//! The client's end of Celery's remote control: what `app.control.inspect().ping()`,
//! `celery status` and `app.control.revoke(id)` do, for our programs (the monitor asks each
//! worker directly with it) and tests. Requests reach every worker, Python or ours, on kombu's
//! broadcast channel; replies come back on a reply list of this client's own, bound the way
//! kombu binds it, so Python workers answer it too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;
use serde_json::{Map, Value};

use crate::connection::Redis;
use crate::error::Result;
use crate::keys;
use crate::protocol::control::{ControlRequest, ReplyTo};
use crate::protocol::Envelope;
use crate::revoked;

/// The signal Celery's `revoke` names when none is given.
pub const DEFAULT_REVOKE_SIGNAL: &str = "SIGTERM";

/// Sends control requests on one Redis.
#[derive(Clone)]
pub struct Control {
    redis: Redis,
    /// The connection replies are awaited on (a blocking BRPOP), kept between calls so that a
    /// caller asking every few seconds does not open a connection each time; calls through one
    /// `Control` take turns on it.
    replies: Arc<tokio::sync::Mutex<Option<MultiplexedConnection>>>,
}

/// One worker's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub hostname: String,
    pub answer: Value,
    /// How long after the request was sent it arrived.
    pub after: Duration,
}

impl Control {
    pub fn new(redis: Redis) -> Self {
        Control {
            redis,
            replies: Arc::default(),
        }
    }

    /// Broadcasts `method` without waiting for answers (Celery's `reply=False`).
    pub async fn cast(
        &self,
        method: &str,
        arguments: Map<String, Value>,
        destination: Option<Vec<String>>,
    ) -> Result<()> {
        let request = request(method, arguments, destination, None);
        self.publish(&request, 1.0).await
    }

    /// Broadcasts `method` and collects answers until `timeout`, or until `limit` workers
    /// have answered (with a `destination`, Celery stops at as many answers as names).
    pub async fn call(
        &self,
        method: &str,
        arguments: Map<String, Value>,
        destination: Option<Vec<String>>,
        timeout: Duration,
        limit: Option<usize>,
    ) -> Result<Vec<Reply>> {
        let oid = uuid::Uuid::new_v4().to_string();
        let ticket = uuid::Uuid::new_v4().to_string();
        let (list, member) = keys::reply_queue(&oid);
        let limit = limit.or_else(|| destination.as_ref().map(Vec::len));
        let request = request(
            method,
            arguments,
            destination,
            Some((
                ticket.clone(),
                ReplyTo {
                    exchange: keys::REPLY_EXCHANGE.into(),
                    routing_key: oid,
                },
            )),
        );
        let mut slot = self.replies.lock().await;
        let mut conn = match slot.take() {
            Some(conn) => conn,
            None => self.redis.dedicated(None).await?,
        };
        conn.sadd::<_, _, ()>(keys::REPLY_BINDING, &member).await?;
        let collected = async {
            let sent = Instant::now();
            self.publish(&request, timeout.as_secs_f64()).await?;
            let mut replies = Vec::new();
            while limit.is_none_or(|n| replies.len() < n) {
                let left = timeout.saturating_sub(sent.elapsed());
                if left.is_zero() {
                    break;
                }
                // BRPOP's timeout is in seconds (fractions allowed since Redis 6).
                let got: Option<(String, String)> =
                    conn.brpop(&list, left.as_secs_f64().max(0.01)).await?;
                let Some((_, raw)) = got else { break };
                replies.extend(read_reply(raw.as_bytes(), &ticket, sent.elapsed()));
            }
            Result::Ok(replies)
        }
        .await;
        // Leave no route or list behind, whatever happened.
        let left: redis::RedisResult<()> = conn.srem(keys::REPLY_BINDING, &member).await;
        let cleaned: redis::RedisResult<()> = conn.del(&list).await;
        // A connection that failed is not kept: the next call opens a new one.
        if collected.is_ok() && left.is_ok() && cleaned.is_ok() {
            *slot = Some(conn);
        }
        collected
    }

    /// `inspect ping`: every worker that answers within `timeout`, with its latency.
    pub async fn ping(
        &self,
        destination: Option<Vec<String>>,
        timeout: Duration,
    ) -> Result<Vec<Reply>> {
        self.call("ping", Map::new(), destination, timeout, None)
            .await
    }

    /// Revokes tasks everywhere: kept in Redis for our workers (even those not running now),
    /// and broadcast as Celery's `revoke` for every running worker, Python ones included. A
    /// running task is terminated, with `terminate`, by Celery's default signal (SIGTERM).
    pub async fn revoke(&self, ids: &[String], terminate: bool) -> Result<()> {
        self.revoke_with_signal(ids, terminate, DEFAULT_REVOKE_SIGNAL)
            .await
    }

    /// [`Control::revoke`] with the signal a Python worker sends a running task it terminates
    /// (`revoke(terminate=True, signal=...)`), a name such as `SIGKILL`. Our workers stop the
    /// task itself whatever the signal: there is no child process to signal.
    pub async fn revoke_with_signal(
        &self,
        ids: &[String],
        terminate: bool,
        signal: &str,
    ) -> Result<()> {
        revoked::record(&self.redis, ids).await?;
        let mut arguments = Map::new();
        arguments.insert("task_id".into(), Value::from(ids.to_vec()));
        arguments.insert("terminate".into(), Value::Bool(terminate));
        arguments.insert("signal".into(), Value::from(signal));
        self.cast("revoke", arguments, None).await
    }

    async fn publish(&self, request: &ControlRequest, timeout: f64) -> Result<()> {
        let channel = keys::pidbox_channel(self.redis.db());
        let payload = request.to_envelope(0, timeout).to_json();
        self.redis.publish(&channel, &payload).await.map(|_| ())
    }
}

fn request(
    method: &str,
    arguments: Map<String, Value>,
    destination: Option<Vec<String>>,
    reply: Option<(String, ReplyTo)>,
) -> ControlRequest {
    let (ticket, reply_to) = reply.unzip();
    ControlRequest {
        method: method.to_owned(),
        arguments,
        destination,
        pattern: None,
        matcher: None,
        reply_to,
        ticket,
        clock: 0,
    }
}

/// The answers in one reply message (`{hostname: answer}`), if it carries our ticket.
fn read_reply(raw: &[u8], ticket: &str, after: Duration) -> Vec<Reply> {
    let Ok(envelope) = Envelope::parse(raw) else {
        return Vec::new();
    };
    if envelope.header_str("ticket") != Some(ticket) {
        return Vec::new();
    }
    match envelope.payload() {
        Ok(Value::Object(answers)) => answers
            .into_iter()
            .map(|(hostname, answer)| Reply {
                hostname,
                answer,
                after,
            })
            .collect(),
        _ => Vec::new(),
    }
}
