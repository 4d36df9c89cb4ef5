//! The worker's end of Celery's remote control (kombu's pidbox): it listens on the broadcast
//! channel, acts on the commands meant for it, and replies the way a Python worker replies,
//! so `celery inspect`, `celery status`, `celery control revoke/shutdown/rate_limit/...` and
//! Flower work against it, alone or beside Python workers.
//!
//! What each command reads or changes is the worker's own state: the board of tasks it holds
//! (`board.rs`), the revocations (`crate::revoked`), the rate limits (`rate.rs`), the time
//! limits set at run time, the queues it consumes and whether it sends task events. The
//! request and reply formats are in `protocol/control.rs`.
//!
//! Hostile input is expected on a channel anyone with Redis access can publish to: a request
//! that does not decode, or whose arguments are wrong, is ignored with a warning (answered
//! with an error when it asked for a reply); nothing here can make the worker run a task, and
//! a request is handled within the loop, so a slow one delays only the next request, never
//! the lanes.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use super::board::Where;
use super::rate::RateLimit;
use super::Context;
use crate::connection::Outage;
use crate::error::Result;
use crate::keys;
use crate::protocol::control::{reply_envelope, ControlRequest, ReplyTo};
use crate::revoked;

/// A task's soft and hard time limits, in seconds.
type Limits = (Option<f64>, Option<f64>);

/// Time limits set at run time (Celery's `control time_limit`), by task name, used for a task
/// whose message carries none.
#[derive(Debug, Default)]
pub(crate) struct TimeLimits {
    any: std::sync::atomic::AtomicBool,
    by_name: Mutex<HashMap<String, Limits>>,
}

impl TimeLimits {
    pub fn set(&self, name: &str, soft: Option<f64>, hard: Option<f64>) {
        let mut by_name = self.by_name.lock().expect("time limits lock");
        by_name.insert(name.to_owned(), (soft, hard));
        self.any.store(true, Ordering::Release);
    }

    pub fn get(&self, name: &str) -> Option<Limits> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.by_name
            .lock()
            .expect("time limits lock")
            .get(name)
            .copied()
    }
}

/// Listens for control requests until `stop`, reconnecting after outages. Each (re)connection
/// subscribes first, then loads the revocations kept in Redis, so none is missed in between.
pub(crate) async fn run(
    ctx: Arc<Context>,
    ready: tokio::sync::oneshot::Sender<()>,
    stop: CancellationToken,
) {
    let mut outage = Outage::new("control");
    let mut ready = Some(ready);
    let channel = keys::pidbox_channel(ctx.broker.redis().db());
    let member = keys::pidbox_member(&ctx.config.hostname);
    loop {
        let attempt = async {
            let mut pubsub = ctx.broker.redis().pubsub().await?;
            pubsub.subscribe(&channel).await?;
            listening(&ctx, "SADD", &member).await?;
            ctx.revocations
                .add(revoked::load(ctx.broker.redis()).await?);
            Result::Ok(pubsub)
        };
        let pubsub = tokio::select! {
            _ = stop.cancelled() => break,
            r = attempt => r,
        };
        let pubsub = match pubsub {
            Ok(p) => {
                outage.ok();
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
                p
            }
            Err(e) => {
                let pause = outage.failed(&e);
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        let mut messages = pubsub.into_on_message();
        loop {
            let msg = tokio::select! {
                _ = stop.cancelled() => break,
                m = messages.next() => m,
            };
            let Some(msg) = msg else {
                tracing::warn!("control channel lost; resubscribing");
                break;
            };
            handle(&ctx, msg.get_payload_bytes()).await;
        }
        if stop.is_cancelled() {
            break;
        }
    }
    // Leave kombu's record of listeners, as a Python worker does at shutdown.
    let _ = listening(&ctx, "SREM", &member).await;
}

/// Adds this worker to kombu's record of control listeners (`SADD`), or takes it out (`SREM`).
async fn listening(ctx: &Context, command: &'static str, member: &str) -> Result<()> {
    ctx.broker
        .redis()
        .run(|mut c| async move {
            redis::cmd(command)
                .arg(keys::PIDBOX_BINDING)
                .arg(member)
                .query_async::<()>(&mut c)
                .await
        })
        .await
}

/// Decodes one request, acts on it if it is meant for this worker, and replies if asked.
async fn handle(ctx: &Arc<Context>, raw: &[u8]) {
    let request = match ControlRequest::decode(raw) {
        Ok(r) => r,
        Err(error) => {
            tracing::warn!(%error, bytes = raw.len(), "malformed control message ignored");
            return;
        }
    };
    ctx.clock.fetch_max(request.clock, Ordering::Relaxed);
    ctx.clock.fetch_add(1, Ordering::Relaxed);
    if !request.is_for(&ctx.config.hostname) {
        return;
    }
    tracing::debug!(method = %request.method, "control command");
    let answer = answer(ctx, &request).await;
    if let (Some(answer), Some(to)) = (answer, &request.reply_to) {
        if let Err(error) = reply(ctx, &request, to, &answer).await {
            tracing::warn!(method = %request.method, %error, "could not reply to a control command");
        }
    }
}

/// Sends a reply where kombu would route it: the list bound to the reply exchange under the
/// request's routing key (nowhere, if the client is gone).
async fn reply(
    ctx: &Context,
    request: &ControlRequest,
    to: &ReplyTo,
    answer: &Value,
) -> Result<()> {
    if to.exchange != keys::REPLY_EXCHANGE {
        // Replies go through the reply exchange only: a request cannot make this worker push
        // onto a task queue (`reply_to: {exchange: "celery", routing_key: "inventario"}`).
        tracing::warn!(exchange = %to.exchange, "control reply to another exchange refused");
        return Ok(());
    }
    let clock = ctx.clock.fetch_add(1, Ordering::Relaxed) + 1;
    let envelope = reply_envelope(
        &ctx.config.hostname,
        answer,
        request.ticket.as_deref(),
        to,
        clock,
    )
    .to_json();
    ctx.broker
        .reply(&to.routing_key, &envelope)
        .await
        .map(|_| ())
}

fn ok(text: impl Into<String>) -> Value {
    json!({"ok": text.into()})
}

fn error(text: impl Into<String>) -> Value {
    json!({"error": text.into()})
}

/// Python's repr of a set of strings, as Celery's revoke reply shows it: `{'a', 'b'}`.
fn python_set(ids: &[String]) -> String {
    let items: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
    format!("{{{}}}", items.join(", "))
}

/// The answer to a command, `None` when none is sent (shutdown, as Celery's).
async fn answer(ctx: &Arc<Context>, request: &ControlRequest) -> Option<Value> {
    let args = &request.arguments;
    let hostname = &ctx.config.hostname;
    let text = |name: &str| args.get(name).and_then(Value::as_str);
    Some(match request.method.as_str() {
        "ping" => ok("pong"),
        "clock" => json!({"clock": ctx.clock.load(Ordering::Relaxed)}),
        "stats" => stats(ctx),
        "registered" => json!(ctx.registry.names()),
        "active" => requests(ctx, Where::Active),
        "reserved" => requests(ctx, Where::Reserved),
        "scheduled" => Value::Array(
            ctx.board
                .in_state(Where::Scheduled)
                .iter()
                .map(|e| e.scheduled_info(hostname))
                .collect(),
        ),
        "active_queues" => Value::Array(ctx.queues().iter().map(|q| active_queue(q)).collect()),
        "revoked" => json!(ctx.revocations.ids()),
        "query_task" => {
            let ids = ids_of(args.get("ids").or_else(|| args.get("task_id")));
            let mut found = Map::new();
            for id in ids {
                if let Some((state, info)) = ctx.board.query(&id, hostname) {
                    found.insert(id, json!([state, info]));
                }
            }
            Value::Object(found)
        }
        "revoke" => revoke(ctx, args).await,
        "shutdown" => {
            tracing::warn!("shutdown requested by remote control");
            ctx.shutdown.cancel();
            return None;
        }
        "rate_limit" => {
            let Some(name) = text("task_name") else {
                return Some(error("task_name missing"));
            };
            let given = match args.get("rate_limit") {
                None | Some(Value::Null) => "0".to_owned(),
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(other) => other.to_string(),
            };
            let limit: RateLimit = match given.parse() {
                Ok(l) => l,
                Err(e) => return Some(error(format!("Invalid rate limit string: {e}"))),
            };
            if ctx.registry.get(name).is_none() {
                tracing::error!(task = %name, "rate limit for an unknown task");
                return Some(error("unknown task"));
            }
            ctx.rates.set(name, Some(limit));
            if limit.interval().is_none() {
                tracing::info!(task = %name, "rate limit disabled");
                ok("rate limit disabled successfully")
            } else {
                tracing::info!(task = %name, rate = %given, "new rate limit");
                ok("new rate limit set successfully")
            }
        }
        "time_limit" => {
            let Some(name) = text("task_name") else {
                return Some(error("task_name missing"));
            };
            if ctx.registry.get(name).is_none() {
                tracing::error!(task = %name, "time limit for an unknown task");
                return Some(error("unknown task"));
            }
            let secs = |k: &str| args.get(k).and_then(Value::as_f64).filter(|s| *s > 0.0);
            ctx.time_limits.set(name, secs("soft"), secs("hard"));
            tracing::info!(task = %name, soft = ?secs("soft"), hard = ?secs("hard"), "new time limits");
            ok("time limits set successfully")
        }
        "add_consumer" => {
            let Some(queue) = text("queue").filter(|q| !q.is_empty()) else {
                return Some(error("queue missing"));
            };
            if ctx.add_queue(queue) {
                tracing::info!(%queue, "consuming from a new queue");
                ok(format!("add consumer {queue}"))
            } else {
                ok(format!("already consuming from {queue}"))
            }
        }
        "cancel_consumer" => {
            let Some(queue) = text("queue") else {
                return Some(error("queue missing"));
            };
            ctx.cancel_queue(queue);
            tracing::info!(%queue, "no longer consuming from a queue");
            ok(format!("no longer consuming from {queue}"))
        }
        "heartbeat" => {
            ctx.beat_now.notify_one();
            Value::Null
        }
        "conf" => conf(ctx),
        "enable_events" => {
            ctx.events.set_enabled(true);
            ok("task events enabled")
        }
        "disable_events" => {
            ctx.events.set_enabled(false);
            ok("task events disabled")
        }
        other => {
            tracing::warn!(method = %other, "unknown control command ignored");
            error(format!("No such control command: {other}"))
        }
    })
}

/// A task id or a list of them (Celery's revoke takes either).
fn ids_of(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// Celery's `revoke`: the ids are revoked everywhere (kept in Redis), waiting copies here wake
/// and are stored `REVOKED`, and with `terminate` a running one is stopped.
async fn revoke(ctx: &Arc<Context>, args: &Map<String, Value>) -> Value {
    let ids = ids_of(args.get("task_id"));
    if ids.is_empty() {
        return error("task_id missing");
    }
    let terminate = args
        .get("terminate")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    ctx.revocations.revoke_now(&ids);
    if let Err(e) = revoked::record(ctx.broker.redis(), &ids).await {
        tracing::warn!(error = %e, "could not keep a revocation in Redis; this worker still honours it");
    }
    let running = ctx.board.revoke(&ids, terminate);
    tracing::info!(ids = ?ids, terminate, "tasks revoked");
    if terminate {
        if running.is_empty() {
            ok("terminate: tasks unknown")
        } else {
            ok(format!("terminate: {}", running.join(", ")))
        }
    } else {
        ok(format!("tasks {} flagged as revoked", python_set(&ids)))
    }
}

fn requests(ctx: &Context, state: Where) -> Value {
    Value::Array(
        ctx.board
            .in_state(state)
            .iter()
            .map(|e| e.info(&ctx.config.hostname))
            .collect(),
    )
}

/// A queue as kombu's `Queue.as_dict(recurse=True)` shows it in `inspect active_queues`.
fn active_queue(name: &str) -> Value {
    json!({
        "name": name,
        "exchange": {
            "name": name, "type": "direct", "arguments": null, "durable": true,
            "passive": false, "auto_delete": false, "delivery_mode": null, "no_declare": false,
        },
        "routing_key": name,
        "queue_arguments": null,
        "binding_arguments": null,
        "consumer_arguments": null,
        "durable": true,
        "exclusive": false,
        "auto_delete": false,
        "no_ack": false,
        "alias": null,
        "bindings": [],
        "no_declare": null,
        "expires": null,
        "message_ttl": null,
        "max_length": null,
        "max_length_bytes": null,
        "max_priority": null,
    })
}

/// Celery's `inspect conf`: this worker's settings under Celery's names (Flower shows them).
fn conf(ctx: &Context) -> Value {
    let cfg = &ctx.config;
    let url = ctx.broker.redis().display_url();
    json!({
        "broker_url": url,
        "result_backend": url,
        "task_default_queue": cfg.queues.first(),
        "worker_concurrency": cfg.concurrency,
        "worker_prefetch_multiplier": cfg.prefetch_multiplier,
        "task_track_started": cfg.track_started,
        "result_extended": cfg.result_extended,
        "result_expires": cfg.result_ttl.as_secs(),
        "worker_send_task_events": ctx.events.is_enabled(),
        "accept_content": ["json"],
    })
}

/// Celery's `inspect stats`, with the same keys; the pool is this worker's async slots.
fn stats(ctx: &Context) -> Value {
    let cfg = &ctx.config;
    let (host, port) = ctx.broker.redis().endpoint();
    json!({
        "total": ctx.registry.totals(),
        "pid": std::process::id(),
        "clock": ctx.clock.load(Ordering::Relaxed).to_string(),
        "uptime": ctx.started.elapsed().as_secs(),
        "pool": {
            "implementation": "rcelery:async",
            "max-concurrency": cfg.concurrency,
            "processes": [std::process::id()],
            "max-tasks-per-child": "N/A",
            "put-guarded-by-semaphore": false,
            "timeouts": [0, 0],
            "health-slots": cfg.health_slots,
        },
        "broker": {
            "hostname": host,
            "userid": null,
            "virtual_host": ctx.broker.redis().db().to_string(),
            "port": port,
            "insist": false,
            "ssl": ctx.broker.redis().display_url().starts_with("rediss:"),
            "transport": "redis",
            "connect_timeout": 4,
            "transport_options": {},
            "login_method": null,
            "uri_prefix": null,
            "heartbeat": 120.0,
            "failover_strategy": "round-robin",
            "alternates": [],
        },
        "prefetch_count": cfg.concurrency * cfg.prefetch_multiplier.max(1),
        "rusage": rusage(),
    })
}

/// `getrusage(RUSAGE_SELF)`, as Python's `resource.getrusage` fields.
fn rusage() -> Value {
    // SAFETY: getrusage writes into the struct we own and reads nothing else.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) } != 0 {
        return Value::Null;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    json!({
        "utime": secs(r.ru_utime), "stime": secs(r.ru_stime), "maxrss": r.ru_maxrss,
        "ixrss": r.ru_ixrss, "idrss": r.ru_idrss, "isrss": r.ru_isrss,
        "minflt": r.ru_minflt, "majflt": r.ru_majflt, "nswap": r.ru_nswap,
        "inblock": r.ru_inblock, "oublock": r.ru_oublock, "msgsnd": r.ru_msgsnd,
        "msgrcv": r.ru_msgrcv, "nsignals": r.ru_nsignals, "nvcsw": r.ru_nvcsw,
        "nivcsw": r.ru_nivcsw,
    })
}
