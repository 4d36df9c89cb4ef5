//! Task events as a listener reads them: anyone's (`task-sent` from a client, `task-received`
//! ... `task-rejected` from a worker, ours or Python Celery's), turned into [`TaskEvent`]s a
//! monitor can count and tabulate.
//!
//! Whoever can PUBLISH on the Redis server can send a listener anything, so reading is lenient
//! and bounded: a payload over [`MAX_PAYLOAD_BYTES`] is not even decoded, a batch yields at
//! most [`MAX_BATCH`] events, an item that is not an event (no known `type`, no `uuid`) is
//! skipped, a field of the wrong type reads as absent, and every text is cut to a length of
//! its own. Nothing a sender writes can make the reader fail for the next message.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::protocol::{Envelope, ProtocolError};

/// The largest event message decoded. Celery's batches are at most 24 events whose reprs it
/// cuts to a kilobyte or so each; anything far larger is not an event worth reading.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// Events taken from one message at most (Celery sends 24).
pub const MAX_BATCH: usize = 256;

/// Longest kept: names, host names, queues (label-sized texts).
const MAX_NAME: usize = 200;
/// Longest kept: argument and result reprs, exception reprs (Celery cuts its reprs to 1024).
const MAX_REPR: usize = 1024;
/// Longest kept: a traceback.
const MAX_TRACEBACK: usize = 4096;

/// The task event types Celery defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskEventKind {
    Sent,
    Received,
    Started,
    Succeeded,
    Failed,
    Retried,
    Revoked,
    Rejected,
}

impl TaskEventKind {
    /// From the event's `type`; `None` for anything else (worker events, unknown types).
    pub fn parse(kind: &str) -> Option<Self> {
        Some(match kind {
            "task-sent" => TaskEventKind::Sent,
            "task-received" => TaskEventKind::Received,
            "task-started" => TaskEventKind::Started,
            "task-succeeded" => TaskEventKind::Succeeded,
            "task-failed" => TaskEventKind::Failed,
            "task-retried" => TaskEventKind::Retried,
            "task-revoked" => TaskEventKind::Revoked,
            "task-rejected" => TaskEventKind::Rejected,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskEventKind::Sent => "task-sent",
            TaskEventKind::Received => "task-received",
            TaskEventKind::Started => "task-started",
            TaskEventKind::Succeeded => "task-succeeded",
            TaskEventKind::Failed => "task-failed",
            TaskEventKind::Retried => "task-retried",
            TaskEventKind::Revoked => "task-revoked",
            TaskEventKind::Rejected => "task-rejected",
        }
    }

    /// The task state Celery's event state gives a task after this event (`task-sent` is
    /// Celery's `PENDING`).
    pub fn state(self) -> &'static str {
        match self {
            TaskEventKind::Sent => "PENDING",
            TaskEventKind::Received => "RECEIVED",
            TaskEventKind::Started => "STARTED",
            TaskEventKind::Succeeded => "SUCCESS",
            TaskEventKind::Failed => "FAILURE",
            TaskEventKind::Retried => "RETRY",
            TaskEventKind::Revoked => "REVOKED",
            TaskEventKind::Rejected => "REJECTED",
        }
    }
}

/// One task event, with the fields Celery's event types carry; what a type does not carry
/// (or a sender left out, or sent with the wrong JSON type) is `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEvent {
    pub kind: TaskEventKind,
    /// The task id (`uuid`).
    pub id: String,
    /// The sender: the worker's node name, or the client's for `task-sent`.
    pub hostname: String,
    /// The sender's clock, seconds since the epoch.
    pub timestamp: Option<f64>,
    pub clock: Option<u64>,
    /// `task-sent`, `task-received`.
    pub name: Option<String>,
    /// Python reprs of the arguments (`task-sent`, `task-received`).
    pub args: Option<String>,
    pub kwargs: Option<String>,
    pub retries: Option<u32>,
    pub eta: Option<String>,
    pub expires: Option<String>,
    /// `task-sent`: the queue it was sent to (`queue`, else `routing_key`).
    pub queue: Option<String>,
    /// `task-succeeded`: the result's repr and the run time in seconds.
    pub result: Option<String>,
    pub runtime: Option<f64>,
    /// `task-failed`, `task-retried`: the exception's repr and the traceback.
    pub exception: Option<String>,
    pub traceback: Option<String>,
    /// `task-revoked`.
    pub terminated: Option<bool>,
    pub expired: Option<bool>,
    /// `task-rejected`.
    pub requeue: Option<bool>,
}

/// What a listener calls for each task event. Called on the listener's own task, in the order
/// events arrive: it should be quick (update memory, not wait on I/O), or the pub/sub
/// connection falls behind and Redis drops it.
pub type TaskEventHandler = Arc<dyn Fn(TaskEvent) + Send + Sync>;

/// The task events in one pub/sub message: a kombu envelope whose body is one event (Celery's
/// unbuffered dispatcher, `task-sent`) or a list of them (`task.multi`). Errors only when the
/// message itself cannot be read; items that are not task events are left out.
pub fn decode(raw: &[u8]) -> Result<Vec<TaskEvent>, ProtocolError> {
    if raw.len() > MAX_PAYLOAD_BYTES {
        return Err(ProtocolError::TooLarge {
            size: raw.len(),
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    let payload = Envelope::parse(raw)?.payload()?;
    let events = match payload {
        Value::Array(items) => items
            .iter()
            .take(MAX_BATCH)
            .filter_map(|v| v.as_object().and_then(from_fields))
            .collect(),
        Value::Object(fields) => from_fields(&fields).into_iter().collect(),
        _ => Vec::new(),
    };
    Ok(events)
}

/// One event from its JSON fields; `None` unless it has a task event `type` and a `uuid`.
pub fn from_fields(e: &Map<String, Value>) -> Option<TaskEvent> {
    let kind = TaskEventKind::parse(e.get("type")?.as_str()?)?;
    let id = e.get("uuid")?.as_str().filter(|s| !s.is_empty())?;
    let text = |key: &str, max: usize| e.get(key).and_then(|v| shown(v, max));
    let flag = |key: &str| e.get(key).and_then(Value::as_bool);
    Some(TaskEvent {
        kind,
        id: cut(id, MAX_NAME),
        hostname: text("hostname", MAX_NAME).unwrap_or_default(),
        timestamp: e
            .get("timestamp")
            .and_then(Value::as_f64)
            .filter(|t| t.is_finite()),
        clock: e.get("clock").and_then(Value::as_u64),
        name: text("name", MAX_NAME),
        args: text("args", MAX_REPR),
        kwargs: text("kwargs", MAX_REPR),
        retries: e
            .get("retries")
            .and_then(Value::as_u64)
            .and_then(|r| u32::try_from(r).ok()),
        eta: text("eta", MAX_NAME),
        expires: text("expires", MAX_NAME),
        queue: text("queue", MAX_NAME).or_else(|| text("routing_key", MAX_NAME)),
        result: text("result", MAX_REPR),
        runtime: e
            .get("runtime")
            .and_then(Value::as_f64)
            .filter(|r| r.is_finite() && *r >= 0.0),
        exception: text("exception", MAX_REPR),
        traceback: text("traceback", MAX_TRACEBACK),
        terminated: flag("terminated"),
        expired: flag("expired"),
        requeue: flag("requeue"),
    })
}

/// A field as text: a string as it is, a number or boolean as JSON writes it (some senders
/// put the result itself instead of its repr), null and containers as absent; cut to `max`.
fn shown(v: &Value, max: usize) -> Option<String> {
    match v {
        Value::String(s) => Some(cut(s, max)),
        Value::Number(n) => Some(cut(&n.to_string(), max)),
        Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_owned()),
        _ => None,
    }
}

/// `s` cut to at most `max` bytes on a character boundary, with `...` when cut.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::event::envelope;
    use serde_json::json;

    fn message(body: &Value) -> Vec<u8> {
        envelope(&body.to_string(), "w@h", "task.multi")
            .to_json()
            .into_bytes()
    }

    #[test]
    fn reads_celerys_captured_events() {
        let fixture: Vec<Map<String, Value>> = serde_json::from_str(include_str!(
            "../../tests/fixtures/celery-5.5-task-events.json"
        ))
        .unwrap();
        let events: Vec<TaskEvent> = fixture.iter().filter_map(from_fields).collect();
        assert_eq!(events.len(), 15, "every task event of the capture");
        let received = &events[0];
        assert_eq!(received.kind, TaskEventKind::Received);
        assert_eq!(received.name.as_deref(), Some("noop"));
        assert_eq!(received.args.as_deref(), Some("[7]"));
        assert_eq!(received.hostname, "py@capture");
        let succeeded = events
            .iter()
            .find(|e| e.kind == TaskEventKind::Succeeded)
            .unwrap();
        assert_eq!(succeeded.result.as_deref(), Some("7"));
        assert!(succeeded.runtime.unwrap() > 0.0);
    }

    #[test]
    fn a_batch_and_a_single_event_both_read() {
        let one = json!({"type": "task-sent", "uuid": "a", "hostname": "c@h", "name": "add",
                         "queue": "inventario", "args": "(1, 2)"});
        let events = decode(&message(
            &json!([one, {"type": "task-started", "uuid": "a"}]),
        ))
        .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].queue.as_deref(), Some("inventario"));
        assert_eq!(decode(&message(&one)).unwrap().len(), 1);
    }

    #[test]
    fn hostile_items_are_skipped_or_cut() {
        let huge = "x".repeat(100_000);
        let body = json!([
            1, "text", null, [], {},
            {"type": "task-started"},
            {"type": "task-bogus", "uuid": "a"},
            {"type": "worker-heartbeat", "uuid": "a"},
            {"type": "task-started", "uuid": ""},
            {"type": "task-failed", "uuid": 5},
            {"type": "task-failed", "uuid": "ok", "exception": huge, "traceback": huge,
             "name": {"a": 1}, "retries": -3, "runtime": "slow", "hostname": [1]},
        ]);
        let events = decode(&message(&body)).unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.exception.as_ref().unwrap().len(), MAX_REPR + 3);
        assert_eq!(e.traceback.as_ref().unwrap().len(), MAX_TRACEBACK + 3);
        assert_eq!(
            (e.name.as_deref(), e.retries, e.runtime),
            (None, None, None)
        );
        assert_eq!(e.hostname, "");
        assert!(decode(b"not json").is_err());
        assert!(decode(&vec![b'{'; MAX_PAYLOAD_BYTES + 1]).is_err());
        let many: Vec<Value> = (0..1000)
            .map(|i| json!({"type": "task-started", "uuid": format!("t{i}")}))
            .collect();
        assert_eq!(decode(&message(&json!(many))).unwrap().len(), MAX_BATCH);
    }

    #[test]
    fn cut_keeps_characters_whole() {
        assert_eq!(cut("ñandú", 2), "ñ...");
        assert_eq!(cut("ñandú", 3), "ña...");
        assert_eq!(cut("abc", 3), "abc");
    }
}
