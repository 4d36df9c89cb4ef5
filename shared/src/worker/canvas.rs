//! Celery's canvas on our worker: what a Celery 5.5 worker does once a task's outcome is known
//! (`celery/app/trace.py`, `backends/base.py`, `backends/redis.py`), so that `chain`, `group`,
//! `chord`, `link` and `link_error` built by a Python client run the same on either worker.
//!
//! - On success, the `link` callbacks (`embed.callbacks`) are sent with the result prepended to
//!   their arguments (unless immutable): one alone, several as a group. Then the next step of
//!   a `chain` (`embed.chain`, stored in reverse: the last element is next) is sent with the
//!   result prepended and the rest of the chain in its own embed. Both get this task as
//!   `parent_id` and its root as `root_id`, and are listed in the stored result's `children`
//!   as Celery writes them (`[[id, null], null]`, a group `[[gid, null], [members]]`).
//! - On failure, the `link_error` errbacks are sent as a group with this task's id as their
//!   argument (Celery's "old style", what it does for any errback it cannot call in-process),
//!   and the failure is stored for every later task of the chain that has an id, so a client
//!   waiting on the chain's last task is answered.
//! - A task of a group stores `group_id` (and `parent_id`, when it has one) in its result.
//! - A task of a chord's header (`embed.chord` set, `group` its header's id) counts itself in
//!   Celery's keys with `lua/chord.lua` (one atomic step, see there); the part that completes the
//!   header sends the body with the header's results in order, or, if a part failed, stores
//!   the body's `ChordError` and sends the body's errbacks, as Celery does.
//!
//! A task that takes part in none of this costs [`involved`]: two `Option`s and four JSON
//! nulls looked at. Everything else runs in a boxed future, off the executor's state.
//!
//! Bad input is contained: a callback, chain step or chord body that is not a plain task
//! signature sends nothing and turns the task's stored result into an `InvalidTaskError` that
//! says what was wrong (and is logged); a chord whose records in Redis are unusable stores a
//! `ChordError` for its body. The message is acknowledged as usual, so the lane never stalls.
//! If Redis cannot take what is to be sent, the message is left held and comes back to the
//! queue (at-least-once: a callback may then be sent twice, never lost).

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use serde_json::{json, Map, Value};

use super::executor::LaneContext;
use super::Context;
use crate::broker::{ChordPart, Completion, Delivery};
use crate::error::Result;
use crate::keys;
use crate::protocol::error::kind;
use crate::protocol::task::NewTask;
use crate::protocol::{
    parse_datetime, to_python_json, Embed, Envelope, ExceptionInfo, ResultMeta, TaskMessage,
    TaskState, TimeLimit,
};

/// Whether a finished task has anything for this module to do. Cheap on purpose: every task
/// asks.
pub(crate) fn involved(message: &TaskMessage) -> bool {
    message.group.is_some() || message.parent_id.is_some() || has_canvas(&message.embed)
}

fn has_canvas(embed: &Embed) -> bool {
    let set = |v: &Value| match v {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        _ => true,
    };
    set(&embed.callbacks) || set(&embed.errbacks) || set(&embed.chain) || set(&embed.chord)
}

/// What becomes of a task's message once what it links to is done.
pub(crate) enum Followed {
    /// Store this result and acknowledge the message.
    Store(ResultMeta),
    /// What it links to is malformed, so nothing was sent: store this result (an
    /// `InvalidTaskError`) and move the message to quarantine with the reason, for someone to
    /// look at.
    Quarantine(ResultMeta, String),
}

/// Does what Celery's worker does after `message`'s task ended with `meta`, and says what to
/// store (the result with its `children`, `group_id`, `parent_id`). `None`: what had to be
/// sent could not be (Redis failed); the message is then no longer held by this process and
/// comes back to the queue.
pub(crate) fn follow<'a>(
    ctx: &'a Context,
    lane: &'a LaneContext,
    delivery: &'a Delivery,
    message: &'a TaskMessage,
    meta: ResultMeta,
) -> BoxFuture<'a, Option<Followed>> {
    async move {
        match follow_inner(ctx, lane, delivery, message, meta).await {
            Ok(meta) => Some(meta),
            Err(error) => {
                tracing::warn!(task = %message.task, id = %message.id, %error, "could not send what the task links to; the message will be returned to the queue");
                ctx.held.lock().expect("held lock").remove(&delivery.tag);
                None
            }
        }
    }
    .boxed()
}

async fn follow_inner(
    ctx: &Context,
    lane: &LaneContext,
    delivery: &Delivery,
    message: &TaskMessage,
    mut meta: ResultMeta,
) -> Result<Followed> {
    // The request's group and parent go into the stored result where every result is
    // described (executor's `describe`), not here.
    let from = Parent::of(message, keys::queue_of_list(&delivery.list));
    let succeeded = match meta.status {
        TaskState::Success => true,
        TaskState::Failure => false,
        // A revoked (or expired) task calls nothing, but counts in its chord, which then fails
        // (Celery's `mark_as_revoked`).
        TaskState::Revoked => {
            if message.group.is_some() && !message.embed.chord.is_null() {
                chord_part_return(ctx, lane, message, &meta, &from).await?;
            }
            return Ok(Followed::Store(meta));
        }
        // A retry calls nothing (trace.py: call_errbacks=False); nothing else reaches here.
        _ => return Ok(Followed::Store(meta)),
    };
    let planned = if succeeded {
        plan_success(message, &meta.result, &from)
    } else {
        plan_failure(message, &from)
    };
    let mut malformed = None;
    match planned {
        Ok(plan) => {
            publish(ctx, &plan.send).await?;
            meta.children = plan.children;
            for failed in &plan.fail {
                store(lane, failed_like(failed, &meta)).await;
            }
        }
        Err(reason) => {
            tracing::warn!(task = %message.task, id = %message.id, %reason, "malformed canvas: nothing it links to was sent; storing InvalidTaskError");
            meta = invalid(meta, message, &reason);
            malformed = Some(reason);
        }
    }
    if message.group.is_some() && !message.embed.chord.is_null() {
        chord_part_return(ctx, lane, message, &meta, &from).await?;
    }
    Ok(match malformed {
        Some(reason) => Followed::Quarantine(meta, reason),
        None => Followed::Store(meta),
    })
}

// ---------------------------------------------------------------------------------------------
// Signatures and the messages they become

/// A plain task signature, as Celery serializes one (`canvas.Signature`): `{task, args, kwargs,
/// options, subtask_type, immutable}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub task: String,
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
    pub options: Map<String, Value>,
    pub immutable: bool,
}

impl Signature {
    /// Reads a signature; the error says what is wrong with it. Only plain task signatures are
    /// accepted: a group, chain or chord nested here is refused by name.
    pub fn parse(v: &Value) -> std::result::Result<Self, String> {
        let Value::Object(m) = v else {
            return Err(format!("{} is not a signature object", kind(v)));
        };
        match m.get("subtask_type") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) => {
                return Err(format!(
                    "a {t:?} signature: only plain task signatures are followed"
                ))
            }
            Some(other) => return Err(format!("subtask_type is {}", kind(other))),
        }
        let task = match m.get("task") {
            Some(Value::String(t)) if !t.is_empty() => t.clone(),
            _ => return Err("no task name".into()),
        };
        let args = match m.get("args") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(other) => return Err(format!("args is {}, not an array", kind(other))),
        };
        let kwargs = match m.get("kwargs") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(k)) => k.clone(),
            Some(other) => return Err(format!("kwargs is {}, not an object", kind(other))),
        };
        let options = match m.get("options") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(o)) => o.clone(),
            Some(other) => return Err(format!("options is {}, not an object", kind(other))),
        };
        match options.get("task_id") {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(other) => return Err(format!("options.task_id is {}", kind(other))),
        }
        let immutable = match m.get("immutable") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(format!("immutable is {}", kind(other))),
        };
        Ok(Signature {
            task,
            args,
            kwargs,
            options,
            immutable,
        })
    }

    /// The id the client gave it (`options.task_id`), if any.
    pub fn task_id(&self) -> Option<&str> {
        self.options.get("task_id").and_then(Value::as_str)
    }

    fn option_str(&self, name: &str) -> Option<&str> {
        self.options
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The message Celery's `apply_async(prefix, parent_id=..., root_id=...)` sends for this
    /// signature from inside a task: `prefix` goes before the signature's own arguments unless
    /// it is immutable; `chain` is the rest of a chain, `group` the group it is sent in.
    pub fn message(
        &self,
        prefix: Option<Value>,
        from: &Parent,
        chain: Value,
        group: Option<(&str, usize)>,
    ) -> TaskMessage {
        let args = match prefix {
            Some(p) if !self.immutable => {
                let mut args = Vec::with_capacity(self.args.len() + 1);
                args.push(p);
                args.extend(self.args.iter().cloned());
                args
            }
            _ => self.args.clone(),
        };
        let number = |name: &str| self.options.get(name).and_then(Value::as_f64);
        let now = chrono::Utc::now();
        let seconds = |s: f64| chrono::Duration::try_milliseconds((s * 1000.0) as i64);
        let eta = self
            .option_str("eta")
            .and_then(parse_datetime)
            .or_else(|| number("countdown").and_then(seconds).map(|d| now + d));
        let expires = self
            .option_str("expires")
            .and_then(parse_datetime)
            .or_else(|| number("expires").and_then(seconds).map(|d| now + d));
        let opts = NewTask {
            id: Some(
                self.task_id()
                    .map(str::to_owned)
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            ),
            eta,
            expires,
            priority: self
                .options
                .get("priority")
                .and_then(Value::as_u64)
                .map(|p| p.min(9) as u8),
            timelimit: TimeLimit {
                hard: number("time_limit"),
                soft: number("soft_time_limit"),
            },
            retries: 0,
            parent_id: Some(from.id.to_owned()),
            root_id: Some(from.root_id.to_owned()),
            ignore_result: self
                .options
                .get("ignore_result")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        };
        let queue = self.option_str("queue").unwrap_or(from.queue);
        let reply_to = self.option_str("reply_to").unwrap_or(from.reply_to);
        let mut m = TaskMessage::build(
            &self.task,
            args,
            self.kwargs.clone(),
            queue,
            &from.origin,
            reply_to,
            opts,
        );
        // What `build` leaves to its defaults and a signature sets.
        let embed = Embed {
            callbacks: as_list(self.options.get("link")),
            errbacks: as_list(self.options.get("link_error")),
            chain,
            chord: self.options.get("chord").cloned().unwrap_or(Value::Null),
        };
        let mut headers = std::mem::take(&mut m.envelope.headers);
        let properties = std::mem::take(&mut m.envelope.properties);
        if let Some((id, index)) = group {
            headers.insert("group".into(), json!(id));
            headers.insert("group_index".into(), json!(index));
            m.group = Some(id.to_owned());
        }
        // Celery's signatures hold their arguments as a tuple: `(3, 3)`, `([0, 2, 4],)`.
        if let Some(Value::String(list)) = headers.get("argsrepr") {
            let tuple = tuple_repr(list, m.args.len());
            headers.insert("argsrepr".into(), json!(tuple));
        }
        let body = to_python_json(&json!([m.args, m.kwargs, embed.to_value()]));
        m.envelope = Envelope::new(&body, headers, properties);
        m.embed = embed;
        m
    }
}

/// The task that sends: what its follow-ups inherit.
#[derive(Debug, Clone)]
pub struct Parent<'a> {
    pub id: &'a str,
    pub root_id: &'a str,
    /// Where a signature without `options.queue` goes: the queue this task came from (a Python
    /// worker routes it to its app's default queue, which is that queue in a shared set-up).
    pub queue: &'a str,
    /// The client id results are announced to, when a signature does not name one.
    pub reply_to: &'a str,
    /// `gen<pid>@<host>`, as Celery writes `origin`.
    pub origin: String,
}

impl<'a> Parent<'a> {
    pub fn of(message: &'a TaskMessage, queue: &'a str) -> Self {
        Parent {
            id: &message.id,
            root_id: message.root_id.as_deref().unwrap_or(&message.id),
            queue,
            reply_to: message.envelope.property_str("reply_to").unwrap_or(""),
            origin: format!("gen{}@{}", std::process::id(), crate::hostname()),
        }
    }
}

/// Celery's `maybe_list`: one signature or a list of them, as a list.
fn as_list(v: Option<&Value>) -> Value {
    match v {
        None | Some(Value::Null) => Value::Null,
        Some(Value::Object(_)) => Value::Array(vec![v.cloned().unwrap_or(Value::Null)]),
        Some(other) => other.clone(),
    }
}

/// `[a, b]` (Python's repr of a list of `n` items) as the tuple `(a, b)`, `(a,)` for one.
fn tuple_repr(list: &str, n: usize) -> String {
    let Some(inner) = list.strip_prefix('[') else {
        return list.to_owned(); // `()`: no arguments
    };
    match inner.strip_suffix(']') {
        Some(inner) if n == 1 => format!("({inner},)"),
        Some(inner) => format!("({inner})"),
        None => format!("({inner}"),
    }
}

// ---------------------------------------------------------------------------------------------
// What a finished task sends

/// What to do after one outcome: messages to send (with their queue), the `children` to store,
/// and the tasks whose failure to store as well (a failed chain's later steps).
#[derive(Debug, Default)]
pub struct Plan {
    pub send: Vec<(String, TaskMessage)>,
    pub children: Vec<Value>,
    pub fail: Vec<FailedStep>,
}

/// A later step of a failed chain: its id and group, which get the same failure.
#[derive(Debug)]
pub struct FailedStep {
    pub id: String,
    pub group: Option<String>,
}

/// `[[id, null], null]`: Celery's `AsyncResult.as_tuple()` as it appears in `children`.
fn child(id: &str) -> Value {
    json!([[id, null], null])
}

fn queue_of(m: &TaskMessage) -> String {
    m.delivery_info.routing_key.clone()
}

/// Sends `sigs` as Celery's `group(sigs).apply_async((arg,), ...)` does: a new group id, each
/// member with its index. Returns the messages and the group's `children` entry.
fn group_messages(
    sigs: &[Signature],
    arg: Value,
    from: &Parent,
    send: &mut Vec<(String, TaskMessage)>,
) -> Value {
    let gid = uuid::Uuid::new_v4().to_string();
    let mut members = Vec::with_capacity(sigs.len());
    for (i, sig) in sigs.iter().enumerate() {
        let m = sig.message(Some(arg.clone()), from, Value::Null, Some((&gid, i)));
        members.push(child(&m.id));
        send.push((queue_of(&m), m));
    }
    json!([[gid, null], members])
}

fn signatures(v: &Value, what: &str) -> std::result::Result<Vec<Signature>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, s)| Signature::parse(s).map_err(|e| format!("{what}[{i}]: {e}")))
            .collect(),
        other => Err(format!(
            "{what} is {}, not a list of signatures",
            kind(other)
        )),
    }
}

/// After a success (trace.py): callbacks (one alone, several as a group), then the chain's
/// next step with the rest of the chain.
pub fn plan_success(
    message: &TaskMessage,
    result: &Value,
    from: &Parent,
) -> std::result::Result<Plan, String> {
    let embed = &message.embed;
    let callbacks = signatures(&embed.callbacks, "embed.callbacks")?;
    let mut plan = Plan::default();
    match callbacks.as_slice() {
        [] => {}
        [one] => {
            let m = one.message(Some(result.clone()), from, Value::Null, None);
            plan.children.push(child(&m.id));
            plan.send.push((queue_of(&m), m));
        }
        many => {
            let entry = group_messages(many, result.clone(), from, &mut plan.send);
            plan.children.push(entry);
        }
    }
    if let Some(m) = chain_next(message, result, from)? {
        plan.children.push(child(&m.id));
        plan.send.push((queue_of(&m), m));
    }
    Ok(plan)
}

/// The chain's next message after a success with `result`: the last element of `embed.chain`,
/// given the result and the rest of the chain. `None` when there is no chain (or it is done).
pub fn chain_next(
    message: &TaskMessage,
    result: &Value,
    from: &Parent,
) -> std::result::Result<Option<TaskMessage>, String> {
    let mut rest = match &message.embed.chain {
        Value::Null => return Ok(None),
        Value::Array(steps) => steps.clone(),
        other => {
            return Err(format!(
                "embed.chain is {}, not a list of signatures",
                kind(other)
            ))
        }
    };
    let Some(next) = rest.pop() else {
        return Ok(None);
    };
    let i = rest.len();
    let next = Signature::parse(&next).map_err(|e| format!("embed.chain[{i}]: {e}"))?;
    Ok(Some(next.message(
        Some(result.clone()),
        from,
        Value::Array(rest),
        None,
    )))
}

/// After a failure (backends/base.py `mark_as_failure`): the chain's later steps fail too, and
/// the errbacks are sent as a group with this task's id.
pub fn plan_failure(message: &TaskMessage, from: &Parent) -> std::result::Result<Plan, String> {
    let errbacks = signatures(&message.embed.errbacks, "embed.errbacks")?;
    let mut plan = Plan::default();
    if let Value::Array(steps) = &message.embed.chain {
        for step in steps {
            let options = step.get("options");
            let id = options
                .and_then(|o| o.get("task_id"))
                .and_then(Value::as_str);
            if let Some(id) = id {
                let group = options
                    .and_then(|o| o.get("group_id"))
                    .and_then(Value::as_str);
                plan.fail.push(FailedStep {
                    id: id.to_owned(),
                    group: group.map(str::to_owned),
                });
            }
        }
    }
    if !errbacks.is_empty() {
        // Celery sends them after storing the failure: they are not among its children.
        group_messages(&errbacks, json!(message.id), from, &mut plan.send);
    }
    Ok(plan)
}

/// The stored result of a later chain step that fails with `failed`.
fn failed_like(step: &FailedStep, failed: &ResultMeta) -> ResultMeta {
    let mut meta = failed.clone();
    meta.task_id = step.id.clone();
    meta.children = Vec::new();
    meta.extra = Map::new();
    if let Some(group) = &step.group {
        meta.extra.insert("group_id".into(), json!(group));
    }
    meta
}

/// The task's result when what it links to is malformed.
fn invalid(meta: ResultMeta, message: &TaskMessage, reason: &str) -> ResultMeta {
    let outcome = match meta.status {
        TaskState::Success => format!("returned {}", meta.result),
        _ => "failed".to_owned(),
    };
    let exc = ExceptionInfo::new(
        "InvalidTaskError",
        "celery.exceptions",
        format!(
            "{} {} {outcome}, but what it links to is malformed, so nothing was sent: {reason}",
            message.task, message.id
        ),
    );
    let mut failed = ResultMeta::failure(&message.id, &exc, None);
    failed.extra = meta.extra;
    failed
}

async fn publish(ctx: &Context, send: &[(String, TaskMessage)]) -> Result<()> {
    // Usually one queue; each run of the same queue goes out in one round trip.
    for run in send.chunk_by(|a, b| a.0 == b.0) {
        let messages: Vec<TaskMessage> = run.iter().map(|(_, m)| m.clone()).collect();
        ctx.broker.publish_many(&run[0].0, &messages).await?;
    }
    Ok(())
}

/// A result to store that is not this message's own (no acknowledgement with it), through the
/// lane's completer, in order with the rest.
async fn store(lane: &LaneContext, meta: ResultMeta) {
    let completion = Completion {
        tag: None,
        result: Some((meta.task_id.clone(), meta.to_json())),
    };
    if lane.completions.send(completion).await.is_err() {
        tracing::warn!(id = %meta.task_id, "completer gone; a linked result was not stored");
    }
}

// ---------------------------------------------------------------------------------------------
// Chords

/// What the body of a complete chord gets: the header's results in order, or the error Celery
/// raises instead (`ChordError`).
pub fn chord_results(records: &[String]) -> std::result::Result<Vec<Value>, ExceptionInfo> {
    let chord_error = |m: String| ExceptionInfo::new("ChordError", "celery.exceptions", m);
    records
        .iter()
        .map(|raw| {
            let record: Value = serde_json::from_str(raw)
                .map_err(|e| chord_error(format!("Join error: record {raw:?}: {e}")))?;
            let (Some(id), Some(state), Some(result)) = (
                record.get(1).and_then(Value::as_str),
                record.get(2).and_then(Value::as_str),
                record.get(3),
            ) else {
                return Err(chord_error(format!(
                    "Join error: record {raw:?} is not [1, task id, state, result]"
                )));
            };
            if state == "FAILURE" || state == "REVOKED" {
                let exc: Option<ExceptionInfo> = serde_json::from_value(result.clone()).ok();
                let shown = exc.map_or_else(|| result.to_string(), |e| e.python_repr());
                return Err(chord_error(format!("Dependency {id} raised {shown}")));
            }
            Ok(result.clone())
        })
        .collect()
}

/// A header part's record in the chord's sorted set, as Celery writes it:
/// `[1, task id, state, result]` in Python's JSON.
pub fn chord_record(task_id: &str, meta: &ResultMeta) -> String {
    to_python_json(&json!([1, task_id, meta.status_name(), meta.result]))
}

/// Celery's `on_chord_part_return` for this task, a part of a chord's header.
async fn chord_part_return(
    ctx: &Context,
    lane: &LaneContext,
    message: &TaskMessage,
    meta: &ResultMeta,
    from: &Parent<'_>,
) -> Result<()> {
    let Some(group) = &message.group else {
        return Ok(());
    };
    let record = chord_record(&message.id, meta);
    let score = match message.envelope.headers.get("group_index") {
        Some(Value::Number(n)) => n.to_string(),
        _ => "+inf".to_owned(),
    };
    let ChordPart {
        code,
        records,
        reason,
    } = ctx
        .broker
        .chord_part_return(group, &record, &score, ctx.config.result_ttl)
        .await?;
    let outcome = match code {
        1 => chord_results(&records),
        2 => Err(ExceptionInfo::new(
            "ChordError",
            "celery.exceptions",
            format!("Join error: {reason}"),
        )),
        3 => Err(ExceptionInfo::new(
            "ChordError",
            "celery.exceptions",
            "Join error: the header holds groups (a saved GroupResult), which this worker does not join",
        )),
        _ => return Ok(()),
    };
    let body = match Signature::parse(&message.embed.chord) {
        Ok(body) => body,
        Err(reason) => {
            tracing::error!(%group, %reason, "chord complete but its body is malformed; nothing sent");
            return Ok(());
        }
    };
    match outcome {
        Ok(results) => {
            let m = body.message(Some(Value::Array(results)), from, Value::Null, None);
            tracing::debug!(%group, body = %m.id, "chord complete; body sent");
            ctx.broker.publish(&queue_of(&m), &m).await
        }
        Err(exc) => {
            tracing::warn!(%group, error = %exc, "chord failed; storing the body's ChordError");
            let Some(body_id) = body.task_id() else {
                return Ok(());
            };
            // chord_error_from_stack: the body's errbacks, then its failure.
            let errbacks = signatures(&as_list(body.options.get("link_error")), "link_error")
                .unwrap_or_default();
            if !errbacks.is_empty() {
                let errback_from = Parent {
                    id: body_id,
                    root_id: body_id,
                    queue: from.queue,
                    reply_to: from.reply_to,
                    origin: from.origin.clone(),
                };
                let mut send = Vec::new();
                group_messages(&errbacks, json!(body_id), &errback_from, &mut send);
                publish(ctx, &send).await?;
            }
            store(lane, ResultMeta::failure(body_id, &exc, None)).await;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tasks_are_not_involved() {
        let m = TaskMessage::build(
            "add",
            vec![json!(1)],
            Map::new(),
            "q",
            "o",
            "r",
            NewTask::default(),
        );
        assert!(!involved(&m));
        let mut chained = m.clone();
        chained.embed.chain = json!([]);
        assert!(!involved(&chained), "an empty chain is the end of one");
        chained.embed.chain = json!([{"task": "add"}]);
        assert!(involved(&chained));
    }

    #[test]
    fn tuple_reprs() {
        assert_eq!(tuple_repr("[3, 3]", 2), "(3, 3)");
        assert_eq!(tuple_repr("[[0, 2, 4]]", 1), "([0, 2, 4],)");
        assert_eq!(tuple_repr("()", 0), "()");
    }

    #[test]
    fn signatures_refuse_what_they_cannot_send() {
        for (bad, why) in [
            (json!(3), "a number is not a signature object"),
            (json!({"args": []}), "no task name"),
            (json!({"task": "add", "args": 1}), "args is a number"),
            (json!({"task": "add", "kwargs": []}), "kwargs is an array"),
            (
                json!({"task": "celery.group", "subtask_type": "group"}),
                "a \"group\" signature",
            ),
            (
                json!({"task": "add", "options": {"task_id": 5}}),
                "options.task_id",
            ),
        ] {
            let err = Signature::parse(&bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn chord_records_give_results_in_order_or_the_error() {
        let ok = [
            r#"[1, "a", "SUCCESS", 0]"#.to_owned(),
            r#"[1, "b", "SUCCESS", [1, 2]]"#.to_owned(),
        ];
        assert_eq!(chord_results(&ok).unwrap(), vec![json!(0), json!([1, 2])]);
        let failed = [
            r#"[1, "a", "SUCCESS", 0]"#.to_owned(),
            r#"[1, "b", "FAILURE", {"exc_type": "ValueError", "exc_message": ["mal"], "exc_module": "builtins"}]"#.to_owned(),
        ];
        let err = chord_results(&failed).unwrap_err();
        assert_eq!(err.exc_type, "ChordError");
        assert_eq!(err.message(), "Dependency b raised ValueError('mal')");
        let err = chord_results(&["nonsense".to_owned()]).unwrap_err();
        assert!(err.message().starts_with("Join error"), "{err}");
    }
}
