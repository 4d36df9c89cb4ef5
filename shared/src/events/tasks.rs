//! Celery's *task events* (`task-received`, `task-started`, `task-succeeded`, `task-failed`,
//! `task-retried`, `task-revoked`, `task-rejected`): what a Python worker started with `-E`
//! sends, so that Flower, `celery events` and any `app.events.Receiver` follow our workers'
//! tasks as they follow Python ones. And the client's `task-sent` (Celery's
//! `task_send_sent_event`), the one event that names a task's queue, which a Celery client
//! publishes on its own, one message per event on `task.sent`
//! (`tests/fixtures/celery-5.5-task-sent.json`): [`TaskEvents::for_client`].
//!
//! What goes on the wire is what Celery 5.5 sends (`tests/fixtures/celery-5.5-task-events.json`
//! and `celery-5.5-redis-task-events.txt` hold a real worker's): every event is a JSON object
//! with Celery's fields in Celery's order, and events are PUBLISHed in batches, a JSON *list*
//! in kombu's envelope, on `/<db>.celeryev/task.multi` (Celery buffers the `task` group and
//! sends it with the routing key `task.multi`, up to 24 events a message).
//!
//! Emitting sits on the executor's path for every task, so it must cost nothing when events
//! are off and never wait when they are on: [`TaskEvents`] checks one flag, builds the event
//! and hands it to a bounded channel without waiting; [`TaskEventFlusher`], a task of its
//! own, PUBLISHes what is queued. Events are best effort: when Redis is down they are
//! dropped (and counted), never retried, and never hold a task back (Celery's dispatcher
//! would keep them to resend later; a monitor has little use for a late flood).

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::connection::Redis;
use crate::keys;
use crate::protocol::python_repr::{python_repr_args, python_repr_dict};
use crate::protocol::{to_python_json, ExceptionInfo, TaskMessage};

/// The routing key of every task event: Celery publishes its buffered `task` group as
/// `<group>.multi`, whatever the events' types.
pub const ROUTING_KEY: &str = "task.multi";

/// The routing key of a client's `task-sent`: a Celery client does not buffer, and each event
/// goes out alone under its own type.
pub const SENT_ROUTING_KEY: &str = "task.sent";

/// Events per PUBLISH at most: Celery's `EventDispatcher.buffer_limit`, so a listener never
/// meets a list longer than Celery's own.
pub const BATCH_LIMIT: usize = 24;

/// Events waiting for the flusher at most. A healthy flusher keeps the queue near empty; it
/// fills while Redis is unreachable, and past the bound new events are dropped and counted
/// (Celery's dispatcher keeps what it could not send in a deque without a bound; an outage
/// must not grow a worker's memory without end). Each queued event is its JSON text, a few
/// hundred bytes, so a full queue is tens of MiB.
const CAPACITY: usize = 65_536;

/// Celery's `resultrepr_maxsize`: a `task-succeeded` event carries the result's repr cut to
/// this many characters.
const RESULT_REPR_MAX: usize = 1024;

/// Sends a worker's task events. Shared by every lane of the executor (`Arc`); each method
/// returns at once, having queued the event or, when events are off, done nothing.
pub struct TaskEvents {
    /// Whether events are sent: `-E`, then Celery's `enable_events` / `disable_events`.
    enabled: AtomicBool,
    tx: mpsc::Sender<String>,
    hostname: String,
    pid: u32,
    /// The process's Lamport clock, shared with its worker events.
    clock: Arc<AtomicU64>,
    /// Events lost, shared with the flusher, which counts the batches Redis refused.
    dropped: Arc<AtomicU64>,
}

/// Publishes queued events in batches of up to 24 (what is waiting, without waiting for
/// more), one PUBLISH each; best effort like Celery (a Redis error is logged with
/// `tracing::warn` at most once per outage and the batch dropped).
pub struct TaskEventFlusher {
    redis: Redis,
    rx: mpsc::Receiver<String>,
    hostname: String,
    dropped: Arc<AtomicU64>,
    /// A client's flusher: each event in a message of its own on `task.sent`, as a Celery
    /// client sends them (what is waiting still goes in one round trip, pipelined).
    single: bool,
}

impl TaskEvents {
    /// `clock` is shared with the worker's other events (Celery has one Lamport clock per
    /// process). The flusher must be run ([`TaskEventFlusher::run`]) for events to leave.
    pub fn new(
        redis: Redis,
        hostname: &str,
        enabled: bool,
        clock: Arc<AtomicU64>,
    ) -> (Arc<TaskEvents>, TaskEventFlusher) {
        Self::with_capacity(redis, hostname, enabled, clock, CAPACITY)
    }

    /// A client's sender, for [`TaskEvents::sent`] only, on from the start (a client that
    /// wants no events makes none): `hostname` is the client's (`gen<pid>@<host>`, Celery's),
    /// and its flusher publishes as a Celery client does. Its own clock: a client process has
    /// no worker events to share one with.
    pub fn for_client(redis: Redis, hostname: &str) -> (Arc<TaskEvents>, TaskEventFlusher) {
        let (events, mut flusher) =
            Self::with_capacity(redis, hostname, true, Arc::default(), CAPACITY);
        flusher.single = true;
        (events, flusher)
    }

    fn with_capacity(
        redis: Redis,
        hostname: &str,
        enabled: bool,
        clock: Arc<AtomicU64>,
        capacity: usize,
    ) -> (Arc<TaskEvents>, TaskEventFlusher) {
        let (tx, rx) = mpsc::channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let events = TaskEvents {
            enabled: AtomicBool::new(enabled),
            tx,
            hostname: hostname.to_owned(),
            pid: std::process::id(),
            clock,
            dropped: dropped.clone(),
        };
        let flusher = TaskEventFlusher {
            redis,
            rx,
            hostname: hostname.to_owned(),
            dropped,
            single: false,
        };
        (Arc::new(events), flusher)
    }

    /// Whether events are being sent: the whole cost of an event when they are not.
    pub fn is_enabled(&self) -> bool {
        // Relaxed: an event emitted just around a switch may go either way, as in Celery.
        self.enabled.load(Ordering::Relaxed)
    }

    /// Celery's `enable_events` / `disable_events` remote control commands.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Events lost: not queued because the queue was full (the flusher behind, Redis down or
    /// slow), or queued and then refused by Redis.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// `task-received`, when a message is taken for execution (Celery's strategy sends it for
    /// a task with an `eta` too, as it is received, not when it is due).
    pub fn received(&self, m: &TaskMessage) {
        self.emit("task-received", &m.id, |e| {
            let h = &m.envelope.headers;
            // Celery names the request after `shadow` when the sender set one.
            let name = match h.get("shadow") {
                Some(Value::String(s)) if !s.is_empty() => s,
                _ => &m.task,
            };
            e.insert("name".into(), json!(name));
            let (args, kwargs) = reprs(m);
            e.insert("args".into(), json!(args));
            e.insert("kwargs".into(), json!(kwargs));
            e.insert("root_id".into(), json!(m.root_id));
            e.insert("parent_id".into(), json!(m.parent_id));
            e.insert("retries".into(), json!(m.retries));
            e.insert("eta".into(), isoformat(h.get("eta"), m.eta));
            e.insert("expires".into(), isoformat(h.get("expires"), m.expires));
        });
    }

    /// `task-sent`, once a client's message is on `queue` (Celery's `send_task_message` sends
    /// it after the publish; the exchange is always the default one, so the routing key is
    /// the queue).
    pub fn sent(&self, m: &TaskMessage, queue: &str) {
        self.emit("task-sent", &m.id, |e| {
            let h = &m.envelope.headers;
            e.insert("root_id".into(), json!(m.root_id));
            e.insert("parent_id".into(), json!(m.parent_id));
            e.insert("name".into(), json!(m.task));
            let (args, kwargs) = reprs(m);
            e.insert("args".into(), json!(args));
            e.insert("kwargs".into(), json!(kwargs));
            e.insert("retries".into(), json!(m.retries));
            e.insert("eta".into(), isoformat(h.get("eta"), m.eta));
            e.insert("expires".into(), isoformat(h.get("expires"), m.expires));
            e.insert("queue".into(), json!(queue));
            e.insert("exchange".into(), json!(""));
            e.insert("routing_key".into(), json!(queue));
        });
    }

    /// `task-started`, when the task begins to run.
    pub fn started(&self, id: &str) {
        self.emit("task-started", id, |_| {});
    }

    /// `task-succeeded`: the return value's repr, cut as Celery cuts it, and the run time in
    /// seconds.
    pub fn succeeded(&self, id: &str, result: &Value, runtime: Duration) {
        self.emit("task-succeeded", id, |e| {
            e.insert("result".into(), json!(saferepr(result, RESULT_REPR_MAX)));
            e.insert("runtime".into(), json!(runtime.as_secs_f64()));
        });
    }

    /// `task-failed`: the exception's repr and the traceback. With no traceback the field is
    /// left out, as in the event Celery sends for an unknown task (`NotRegistered`); for a
    /// task that ran and failed Celery always sends the field.
    pub fn failed(&self, id: &str, exc: &ExceptionInfo, traceback: Option<&str>) {
        self.emit("task-failed", id, |e| {
            e.insert("exception".into(), json!(exc.python_repr()));
            if let Some(tb) = traceback {
                e.insert("traceback".into(), json!(tb));
            }
        });
    }

    /// `task-retried`: the exception the retry was given (`"None"` without one, Python's repr
    /// of `None`, as Celery sends it). Celery's `traceback` is the Python stack of its `Retry`;
    /// we have none (the RETRY result stores null too), so it is null here, the field kept for
    /// readers that expect it.
    pub fn retried(&self, id: &str, exc: Option<&ExceptionInfo>) {
        self.emit("task-retried", id, |e| {
            let shown = exc.map_or_else(|| "None".to_owned(), ExceptionInfo::python_repr);
            e.insert("exception".into(), json!(shown));
            e.insert("traceback".into(), Value::Null);
        });
    }

    /// `task-revoked`: `terminated` and `signum` (the signal, for a terminated task) when a
    /// running task was killed, `expired` when it was revoked for being past `expires`.
    pub fn revoked(&self, id: &str, terminated: bool, signum: Option<i32>, expired: bool) {
        self.emit("task-revoked", id, |e| {
            e.insert("terminated".into(), json!(terminated));
            e.insert("signum".into(), json!(signum));
            e.insert("expired".into(), json!(expired));
        });
    }

    /// `task-rejected`: the task refused its message (Celery's `Reject`), put back on its
    /// queue when `requeue`.
    pub fn rejected(&self, id: &str, requeue: bool) {
        self.emit("task-rejected", id, |e| {
            e.insert("requeue".into(), json!(requeue));
        });
    }

    /// Builds and queues one event in Celery's field order: `hostname`, `utcoffset`, `pid`,
    /// `clock`, `uuid`, the kind's own fields, `timestamp`, `type` (Celery's `Event()` adds
    /// the last two after the caller's fields). `fields` runs only when events are on, so a
    /// disabled worker never computes a repr.
    fn emit(&self, kind: &'static str, id: &str, fields: impl FnOnce(&mut Map<String, Value>)) {
        if !self.is_enabled() {
            return;
        }
        let mut e = Map::with_capacity(14);
        e.insert("hostname".into(), json!(self.hostname));
        e.insert("utcoffset".into(), json!(utcoffset()));
        e.insert("pid".into(), json!(self.pid));
        // Celery's `clock.forward()`, taken when the event is made: events of two lanes may
        // reach the queue a tick out of order, which a Lamport clock allows (readers order
        // events by clock, not by arrival).
        let clock = self.clock.fetch_add(1, Ordering::Relaxed) + 1;
        e.insert("clock".into(), json!(clock));
        e.insert("uuid".into(), json!(id));
        fields(&mut e);
        e.insert("timestamp".into(), json!(now()));
        e.insert("type".into(), json!(kind));
        // The text rather than the map: smaller while it waits, and the flusher only joins.
        if self.tx.try_send(to_python_json(&e)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl TaskEventFlusher {
    /// Publishes events as they come until `shutdown` is cancelled, then publishes what is
    /// queued and returns. Cancel it once the last event has been emitted (after the executor
    /// has stopped, not on the first SIGTERM), or the events of tasks finishing during a
    /// graceful stop are lost. It also returns once every [`TaskEvents`] is dropped.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let key = if self.single {
            SENT_ROUTING_KEY
        } else {
            ROUTING_KEY
        };
        let channel = keys::event_channel(self.redis.db(), key);
        let mut outage = false;
        let mut batch = Vec::with_capacity(BATCH_LIMIT);
        loop {
            // Shutdown first: under a steady stream of events it must still be seen.
            let first = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                e = self.rx.recv() => match e {
                    Some(e) => e,
                    None => break,
                },
            };
            batch.push(first);
            self.take_waiting(&mut batch);
            self.publish(&channel, &mut batch, &mut outage).await;
        }
        // Emitters from now on fail at once (and count the event as dropped) instead of
        // filling a queue nobody reads.
        self.rx.close();
        loop {
            self.take_waiting(&mut batch);
            if batch.is_empty() {
                break;
            }
            if !self.publish(&channel, &mut batch, &mut outage).await {
                // Redis is failing: each further try would wait for its timeout and stall the
                // shutdown, so what is left is dropped.
                let mut left = 0;
                while self.rx.try_recv().is_ok() {
                    left += 1;
                }
                self.dropped.fetch_add(left, Ordering::Relaxed);
                break;
            }
        }
    }

    /// Adds what is already queued to `batch`, up to the batch limit, without waiting.
    fn take_waiting(&mut self, batch: &mut Vec<String>) {
        while batch.len() < BATCH_LIMIT {
            match self.rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
    }

    /// PUBLISHes `batch` as one message (a client's: one message per event, pipelined) and
    /// empties it; whether Redis took it.
    async fn publish(&self, channel: &str, batch: &mut Vec<String>, outage: &mut bool) -> bool {
        let count = batch.len() as u64;
        let sent = if self.single {
            let mut pipe = redis::pipe();
            for event in batch.iter() {
                let payload =
                    crate::protocol::event::envelope(event, &self.hostname, SENT_ROUTING_KEY);
                pipe.publish(channel, payload.to_json()).ignore();
            }
            self.redis
                .run(|mut c| {
                    let pipe = &pipe;
                    async move { pipe.query_async::<()>(&mut c).await }
                })
                .await
        } else {
            let payload = self.envelope(batch);
            self.redis.publish(channel, &payload).await.map(|_| ())
        };
        batch.clear();
        match sent {
            Ok(_) => {
                if std::mem::take(outage) {
                    tracing::info!("task events are published again");
                }
                true
            }
            Err(error) => {
                self.dropped.fetch_add(count, Ordering::Relaxed);
                // Once per outage: a worker running thousands of tasks a second would
                // otherwise log as many lines while Redis is away.
                if !std::mem::replace(outage, true) {
                    tracing::warn!(%error, "task events dropped until Redis takes them again");
                }
                false
            }
        }
    }

    /// The envelope Celery's dispatcher PUBLISHes: the list of events as body, the sender's
    /// hostname as only header, the properties of every event message.
    fn envelope(&self, batch: &[String]) -> String {
        // Each event is Python-style JSON already; joined the way `json.dumps` joins a list.
        let body = format!("[{}]", batch.join(", "));
        crate::protocol::event::envelope(&body, &self.hostname, ROUTING_KEY).to_json()
    }
}

/// A message's arguments as its sender's reprs, as Celery shows them (`(1,)` on a retried
/// copy, which only the header knows). Celery shows "" when a message has none; we rebuild the
/// repr our own client would have written instead, which is what a reader wants to see.
fn reprs(m: &TaskMessage) -> (String, String) {
    let h = &m.envelope.headers;
    let args = header_str(h, "argsrepr").map_or_else(|| python_repr_args(&m.args), str::to_owned);
    let kwargs =
        header_str(h, "kwargsrepr").map_or_else(|| python_repr_dict(&m.kwargs), str::to_owned);
    (args, kwargs)
}

fn header_str<'a>(headers: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(Value::as_str)
}

/// Seconds since the epoch, as Python's `time.time()`.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

use super::publisher::utc_offset_hours_west as utcoffset;

/// Celery's `eta and eta.isoformat()` for `task-received`: Python's `isoformat()` of the
/// time as the request holds it, with the offset the header was written with (naive times
/// are UTC), or null.
fn isoformat(header: Option<&Value>, parsed: Option<DateTime<Utc>>) -> Value {
    let Some(utc) = parsed else {
        return Value::Null;
    };
    let dt = header
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .unwrap_or_else(|| utc.fixed_offset());
    Value::String(python_isoformat(dt))
}

/// Python's `datetime.isoformat()`: microseconds only when not zero, the offset as `+HH:MM`
/// (seconds only when it has some).
fn python_isoformat(dt: DateTime<FixedOffset>) -> String {
    let mut s = dt.format("%Y-%m-%dT%H:%M:%S").to_string();
    let micros = dt.timestamp_subsec_micros() % 1_000_000;
    if micros != 0 {
        s.push_str(&format!(".{micros:06}"));
    }
    let offset = dt.offset().local_minus_utc();
    let sign = if offset < 0 { '-' } else { '+' };
    let a = offset.unsigned_abs();
    s.push_str(&format!("{sign}{:02}:{:02}", a / 3600, a % 3600 / 60));
    if !a.is_multiple_of(60) {
        s.push_str(&format!(":{:02}", a % 60));
    }
    s
}

/// How deep Celery's `saferepr` goes: containers deeper are shown as `[...]` / `{...}`.
const SAFEREPR_MAXLEVELS: usize = 3;

/// Celery's `saferepr(value, maxlen)` (`celery.utils.saferepr`), which the worker applies to a
/// task's return value for `task-succeeded`: not Python's `repr` cut at a length, but a
/// stream of pieces where each string and number is cut to what is left of `maxlen` (at its
/// last space, with `...`), and once nothing is left `, ...` and the open brackets' closers
/// end it. Its quirks are kept (strings always in single quotes with only `'` escaped, a
/// closer lost when the budget runs out just before it) so the text is Celery's own: the
/// tests compare it with Celery's output.
fn saferepr(value: &Value, maxlen: usize) -> String {
    let mut w = Repr {
        out: String::new(),
        left: maxlen as i64,
        closers: Vec::new(),
        done: false,
    };
    w.value(value, 0);
    w.out
}

/// One piece of Celery's repr stream.
enum Piece<'a> {
    /// An opening bracket and its closer.
    Open(&'static str, &'static str),
    Close,
    /// `, ` and `: `: never cut, dropped once the budget is spent.
    Sep(&'static str),
    /// A string (a value or a dict key), quoted and cut.
    Quoted(&'a str),
    /// A number, `None`, `True`, `False`, or a too-deep container: cut.
    Text(Cow<'a, str>),
}

struct Repr {
    out: String,
    /// What is left of `maxlen`, in characters; Celery lets it go below zero.
    left: i64,
    /// The closers of the brackets open, innermost last.
    closers: Vec<&'static str>,
    done: bool,
}

impl Repr {
    fn value(&mut self, v: &Value, level: usize) {
        if self.done {
            return;
        }
        match v {
            Value::Null => self.piece(Piece::Text("None".into())),
            Value::Bool(b) => self.piece(Piece::Text(if *b { "True" } else { "False" }.into())),
            Value::Number(n) => self.piece(Piece::Text(python_number(n).into())),
            Value::String(s) => self.piece(Piece::Quoted(s)),
            Value::Array(items) => {
                if level >= SAFEREPR_MAXLEVELS {
                    self.piece(Piece::Text("[...]".into()));
                    return;
                }
                self.piece(Piece::Open("[", "]"));
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.piece(Piece::Sep(", "));
                    }
                    self.value(item, level + 1);
                    if self.done {
                        return;
                    }
                }
                self.piece(Piece::Close);
            }
            Value::Object(map) => {
                if level >= SAFEREPR_MAXLEVELS {
                    self.piece(Piece::Text("{...}".into()));
                    return;
                }
                self.piece(Piece::Open("{", "}"));
                for (i, (key, item)) in map.iter().enumerate() {
                    if i > 0 {
                        self.piece(Piece::Sep(", "));
                    }
                    self.piece(Piece::Quoted(key));
                    self.piece(Piece::Sep(": "));
                    self.value(item, level + 1);
                    if self.done {
                        return;
                    }
                }
                self.piece(Piece::Close);
            }
        }
    }

    fn piece(&mut self, piece: Piece<'_>) {
        if self.done {
            return;
        }
        if self.left <= 0 {
            // Celery has already taken this piece from its stream: it is lost, closer or not,
            // and only the closers still pending in the stream are written after `, ...`.
            match piece {
                Piece::Open(_, close) => self.closers.push(close),
                Piece::Close => {
                    self.closers.pop();
                }
                _ => {}
            }
            self.out.push_str(", ...");
            while let Some(close) = self.closers.pop() {
                self.out.push_str(close);
            }
            self.done = true;
            return;
        }
        let text: Cow<'_, str> = match piece {
            Piece::Open(open, close) => {
                self.closers.push(close);
                open.into()
            }
            Piece::Close => self.closers.pop().unwrap_or_default().into(),
            Piece::Sep(sep) => sep.into(),
            Piece::Quoted(s) => format!("'{}'", truncate(s, self.left).replace('\'', "\\'")).into(),
            Piece::Text(s) => truncate(&s, self.left).into_owned().into(),
        };
        self.left -= text.chars().count() as i64;
        self.out.push_str(&text);
    }
}

/// Celery's `truncate(s, maxlen)`: a text of `maxlen` characters or more is cut to `maxlen`,
/// then back to its last space, and `...` appended.
fn truncate(s: &str, maxlen: i64) -> Cow<'_, str> {
    let n = maxlen.max(0) as usize;
    // `len(s) >= maxlen`, counted in characters without walking a long string to its end.
    if n == 0 || s.chars().nth(n - 1).is_none() {
        return Cow::Borrowed(s);
    }
    let cut = s.char_indices().nth(n).map_or(s.len(), |(i, _)| i);
    let head = &s[..cut];
    let head = head.rsplit_once(' ').map_or(head, |(before, _)| before);
    Cow::Owned(format!("{head}..."))
}

/// Python's `str()` of a JSON number: integers as they are, floats as Python's shortest
/// repr (`100.0`, `1e+16`, `1.5e-07`), which differs from JSON's (`1e16`, `1.5e-7`).
fn python_number(n: &serde_json::Number) -> String {
    if n.is_f64() {
        n.as_f64().map_or_else(|| n.to_string(), python_float)
    } else {
        n.to_string()
    }
}

fn python_float(f: f64) -> String {
    // Rust's `{:e}` gives the shortest digits that read back, as Python's repr does; only
    // the layout differs. Python uses the exponent form below 1e-4 and from 1e16.
    let sci = format!("{f:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return sci;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if f == 0.0 || (-4..16).contains(&exp) {
        let plain = f.to_string();
        if plain.contains('.') {
            plain
        } else {
            plain + ".0"
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::task::NewTask;
    use crate::protocol::{parse_datetime, Envelope};

    const FIXTURE: &str = include_str!("../../tests/fixtures/celery-5.5-task-events.json");
    const CAPTURE: &str = include_str!("../../tests/fixtures/celery-5.5-redis-task-events.txt");
    const HOST: &str = "py@capture";

    fn fixture() -> Vec<Map<String, Value>> {
        let all: Vec<Map<String, Value>> = serde_json::from_str(FIXTURE).unwrap();
        all.into_iter()
            .filter(|e| e["type"].as_str().is_some_and(|t| t.starts_with("task-")))
            .collect()
    }

    /// A sender and its flusher that never reach Redis (nothing is opened until used).
    fn events(enabled: bool, capacity: usize) -> (Arc<TaskEvents>, TaskEventFlusher) {
        let redis = Redis::from_url("redis://127.0.0.1:1/0").unwrap();
        let clock = Arc::new(AtomicU64::new(0));
        TaskEvents::with_capacity(redis, HOST, enabled, clock, capacity)
    }

    fn next_event(flusher: &mut TaskEventFlusher) -> Map<String, Value> {
        let text = flusher.rx.try_recv().expect("an event queued");
        serde_json::from_str(&text).unwrap()
    }

    fn message(name: &str, id: &str, args: Vec<Value>, eta: Option<&str>) -> TaskMessage {
        let opts = NewTask {
            id: Some(id.to_owned()),
            eta: eta.map(|s| parse_datetime(s).unwrap()),
            ..NewTask::default()
        };
        TaskMessage::build(name, args, Map::new(), "inventario", "gen1@vm", "r", opts)
    }

    const TRACEBACK: &str = "Traceback (most recent call last):\n  ValueError: sin stock\n";

    /// Emits, with the fixture's clock, the event that Celery sent as `expected`.
    fn emit_like(events: &TaskEvents, expected: &Map<String, Value>) {
        let id = expected["uuid"].as_str().unwrap();
        let clock = expected["clock"].as_u64().unwrap();
        events.clock.store(clock - 1, Ordering::Relaxed);
        let str_of = |k: &str| expected[k].as_str().unwrap().to_owned();
        match expected["type"].as_str().unwrap() {
            "task-received" => {
                let name = str_of("name");
                let m = match (name.as_str(), expected["retries"].as_u64().unwrap()) {
                    ("noop", _) => {
                        let arg = str_of("args").trim_matches(['[', ']']).parse::<i64>();
                        message(
                            "noop",
                            id,
                            vec![json!(arg.unwrap())],
                            expected["eta"].as_str(),
                        )
                    }
                    ("fail", _) => message("fail", id, vec![json!("sin stock")], None),
                    ("reintentar", 0) => message("reintentar", id, vec![json!(1)], None),
                    ("reintentar", _) => {
                        // The copy Celery's `retry` re-sent, as our retry writes it.
                        let first = message("reintentar", id, vec![json!(1)], None);
                        let eta = parse_datetime(expected["eta"].as_str().unwrap()).unwrap();
                        TaskMessage::decode(first.retried(eta).as_bytes()).unwrap()
                    }
                    other => panic!("no input for {other:?}"),
                };
                events.received(&m);
            }
            "task-started" => events.started(id),
            "task-succeeded" => {
                let result: Value = serde_json::from_str(&str_of("result")).unwrap();
                let runtime = Duration::from_secs_f64(expected["runtime"].as_f64().unwrap());
                events.succeeded(id, &result, runtime);
            }
            "task-failed" if expected.contains_key("traceback") => {
                let exc = ExceptionInfo::new("ValueError", "builtins", "sin stock");
                events.failed(id, &exc, Some(TRACEBACK));
            }
            "task-failed" => {
                events.failed(id, &ExceptionInfo::not_registered("no_such_task"), None)
            }
            "task-retried" => events.retried(id, None),
            "task-revoked" => events.revoked(id, false, None, false),
            other => panic!("no input for {other}"),
        }
    }

    #[test]
    fn events_have_celerys_fields_in_celerys_order() {
        let (events, mut flusher) = events(true, 64);
        let expected = fixture();
        assert_eq!(expected.len(), 15, "the task events of the capture");
        for want in &expected {
            emit_like(&events, want);
            let got = next_event(&mut flusher);
            let kind = want["type"].as_str().unwrap();
            let want_keys: Vec<&str> = want
                .keys()
                .map(String::as_str)
                .filter(|k| *k != "local_received") // added by the receiver
                .collect();
            let got_keys: Vec<&str> = got.keys().map(String::as_str).collect();
            assert_eq!(got_keys, want_keys, "{kind} clock {}", want["clock"]);
            for (key, value) in &got {
                match key.as_str() {
                    // The machine's, the moment's, and (for a retry) Python's stack.
                    "utcoffset" | "pid" => assert!(value.is_i64(), "{kind} {key}"),
                    "timestamp" => assert!((value.as_f64().unwrap() - now()).abs() < 60.0),
                    "runtime" => {
                        let (g, w) = (value.as_f64().unwrap(), want[key].as_f64().unwrap());
                        assert!((g - w).abs() < 1e-9, "{kind} runtime {g} {w}");
                    }
                    "traceback" if kind == "task-retried" => assert_eq!(value, &Value::Null),
                    "traceback" => assert_eq!(value, TRACEBACK),
                    _ => assert_eq!(value, &want[key], "{kind} {key}"),
                }
            }
        }
        assert!(flusher.rx.try_recv().is_err());
        assert_eq!(events.dropped(), 0);
    }

    /// A Celery 5.5 client's `task-sent` events (`tests/python/capture_sent.py`) and ours for
    /// the same sends: the same fields in the same order, the same values but for the moment's.
    #[test]
    fn sent_matches_a_celery_clients_event() {
        const SENT: &str = include_str!("../../tests/fixtures/celery-5.5-task-sent.json");
        let expected: Vec<Map<String, Value>> = serde_json::from_str(SENT).unwrap();
        assert_eq!(expected.len(), 2);
        let redis = Redis::from_url("redis://127.0.0.1:1/0").unwrap();
        let (events, mut flusher) = TaskEvents::for_client(redis, "gen1@vm");
        assert!(flusher.single);
        let mut kwargs = Map::new();
        kwargs.insert("clave".into(), json!("k-1"));
        let eta = parse_datetime(expected[0]["eta"].as_str().unwrap()).unwrap();
        let expires = parse_datetime(expected[0]["expires"].as_str().unwrap()).unwrap();
        let sends = [
            TaskMessage::build(
                "aplicar_movimiento",
                vec![json!(21), json!("entrada"), json!(5)],
                kwargs,
                "inventario",
                "gen1@vm",
                "r",
                NewTask {
                    id: expected[0]["uuid"].as_str().map(str::to_owned),
                    eta: Some(eta),
                    expires: Some(expires),
                    ..NewTask::default()
                },
            ),
            TaskMessage::build(
                "obtener_estado",
                vec![],
                Map::new(),
                "inventario",
                "gen1@vm",
                "r",
                NewTask {
                    id: expected[1]["uuid"].as_str().map(str::to_owned),
                    priority: Some(0),
                    ..NewTask::default()
                },
            ),
        ];
        for (m, want) in sends.iter().zip(&expected) {
            events.sent(m, "inventario");
            let got = next_event(&mut flusher);
            let got_keys: Vec<&str> = got.keys().map(String::as_str).collect();
            let want_keys: Vec<&str> = want.keys().map(String::as_str).collect();
            assert_eq!(got_keys, want_keys);
            for (key, value) in &got {
                match key.as_str() {
                    "hostname" => assert_eq!(value, "gen1@vm"),
                    "utcoffset" | "pid" => assert!(value.is_i64(), "{key}"),
                    "timestamp" => assert!((value.as_f64().unwrap() - now()).abs() < 60.0),
                    _ => assert_eq!(value, &want[key], "{key}"),
                }
            }
        }
        assert!(flusher.rx.try_recv().is_err());
    }

    #[test]
    fn rejected_has_celerys_fields() {
        let (events, mut flusher) = events(true, 4);
        events.rejected("r-1", true);
        let got = next_event(&mut flusher);
        let keys: Vec<&str> = got.keys().map(String::as_str).collect();
        let want = [
            "hostname",
            "utcoffset",
            "pid",
            "clock",
            "uuid",
            "requeue",
            "timestamp",
            "type",
        ];
        assert_eq!(keys, want);
        assert_eq!(got["requeue"], json!(true));
        assert_eq!(got["type"], json!("task-rejected"));
    }

    #[test]
    fn received_reads_shadow_and_missing_reprs() {
        let (events, mut flusher) = events(true, 4);
        let mut m = message("noop", "s-1", vec![json!("a"), json!(2)], None);
        m.envelope.headers.insert("shadow".into(), json!("alias"));
        m.envelope.headers.remove("argsrepr");
        m.envelope.headers.remove("kwargsrepr");
        m.kwargs.insert("k".into(), json!([1, null]));
        let eta = "2026-12-05T12:35:32+01:00";
        m.envelope.headers.insert("eta".into(), json!(eta));
        m.eta = parse_datetime(eta);
        events.received(&m);
        let got = next_event(&mut flusher);
        assert_eq!(got["name"], json!("alias"));
        assert_eq!(got["args"], json!("['a', 2]"));
        assert_eq!(got["kwargs"], json!("{'k': [1, None]}"));
        // Python's isoformat: the header's offset kept, no microseconds when there are none.
        assert_eq!(got["eta"], json!(eta));
    }

    #[test]
    fn clock_ticks_per_event_and_is_shared() {
        let (events, mut flusher) = events(true, 8);
        events.clock.store(41, Ordering::Relaxed);
        events.started("a");
        events.started("b");
        assert_eq!(next_event(&mut flusher)["clock"], json!(42));
        assert_eq!(next_event(&mut flusher)["clock"], json!(43));
        assert_eq!(events.clock.load(Ordering::Relaxed), 43);
    }

    #[test]
    fn disabled_events_cost_a_flag_and_tick_nothing() {
        let (events, mut flusher) = events(false, 8);
        let m = message("noop", "d-1", vec![json!(1)], None);
        events.received(&m);
        events.started("d-1");
        events.succeeded("d-1", &json!(1), Duration::from_millis(1));
        events.failed("d-1", &ExceptionInfo::not_registered("x"), None);
        events.retried("d-1", None);
        events.revoked("d-1", true, Some(15), false);
        events.rejected("d-1", false);
        assert!(flusher.rx.try_recv().is_err());
        assert_eq!(events.clock.load(Ordering::Relaxed), 0);
        events.set_enabled(true);
        assert!(events.is_enabled());
        events.revoked("d-1", true, Some(15), false);
        let got = next_event(&mut flusher);
        assert_eq!(got["clock"], json!(1));
        assert_eq!(got["signum"], json!(15));
        assert_eq!(got["terminated"], json!(true));
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let (events, mut flusher) = events(true, 2);
        for id in ["1", "2", "3", "4"] {
            events.started(id);
        }
        assert_eq!(events.dropped(), 2);
        assert_eq!(next_event(&mut flusher)["uuid"], json!("1"));
        assert_eq!(next_event(&mut flusher)["uuid"], json!("2"));
        // The flusher gone, emitting still returns at once.
        drop(flusher);
        events.started("5");
        assert_eq!(events.dropped(), 3);
    }

    /// The body and envelope of the capture's first `task.multi` PUBLISH, as MONITOR quoted it.
    fn captured_publish() -> (String, Envelope, String) {
        let line = CAPTURE
            .lines()
            .find(|l| l.contains(r#""PUBLISH" "/0.celeryev/task.multi" "#))
            .unwrap();
        let quoted = line.rsplit_once(r#"" ""#).unwrap().1.trim_end_matches('"');
        let raw = quoted.replace(r#"\""#, "\"").replace(r"\\", r"\");
        let envelope = Envelope::parse(raw.as_bytes()).unwrap();
        let body = String::from_utf8(envelope.payload_bytes().unwrap().into_owned()).unwrap();
        (raw, envelope, body)
    }

    #[test]
    fn the_batch_reads_byte_for_byte_as_celerys() {
        let (raw, captured, captured_body) = captured_publish();
        let want: Vec<Map<String, Value>> = serde_json::from_str(&captured_body).unwrap();
        let (events, mut flusher) = events(true, 4);
        emit_like(&events, &want[0]);
        // What only the machine and the moment decide, taken from the capture.
        let mut got = next_event(&mut flusher);
        for key in ["utcoffset", "pid", "timestamp"] {
            got.insert(key.into(), want[0][key].clone());
        }
        let text = flusher.envelope(&[to_python_json(&got)]);
        let ours = Envelope::parse(text.as_bytes()).unwrap();
        let body = String::from_utf8(ours.payload_bytes().unwrap().into_owned()).unwrap();
        assert_eq!(body, captured_body);
        assert_eq!(ours.headers, captured.headers);
        let without_tag = |e: &Envelope| {
            let mut p = e.properties.clone();
            assert!(p.remove("delivery_tag").is_some_and(|t| t.is_string()));
            p
        };
        assert_eq!(without_tag(&ours), without_tag(&captured));
        assert_eq!(
            (&ours.content_type, &ours.content_encoding),
            (&captured.content_type, &captured.content_encoding)
        );
        // The envelope's own field order, as kombu writes it.
        let order = |t: &str| {
            let v: Map<String, Value> = serde_json::from_str(t).unwrap();
            v.keys().cloned().collect::<Vec<_>>()
        };
        assert_eq!(order(&text), order(&raw));
    }

    #[test]
    fn saferepr_is_celerys() {
        // Each expected text is what Celery 5.5.3's `saferepr(value, 1024)` returns.
        let x = |n: usize| "x".repeat(n);
        let cases: Vec<(Value, String)> = vec![
            (json!(7), "7".into()),
            (json!(null), "None".into()),
            (json!(true), "True".into()),
            (json!(-3), "-3".into()),
            (
                json!("InventarioService responde correctamente - OK"),
                "'InventarioService responde correctamente - OK'".into(),
            ),
            (
                json!({"a": [1, 2.5, null, true], "b": "it's"}),
                r"{'a': [1, 2.5, None, True], 'b': 'it\'s'}".into(),
            ),
            (json!([[[[1]]]]), "[[[[...]]]]".into()),
            (json!({"a": {"b": {"c": {"d": 1}}}}), "{'a': {'b': {'c': {...}}}}".into()),
            (json!([[], {}, ""]), "[[], {}, '']".into()),
            (json!("a\nb\\c"), "'a\nb\\c'".into()),
            (
                json!([1e16, 1.5e-7, 0.1, 100.0, -0.0, 1e15, 123456789.123, 0.0001, 0.00001, 1e300]),
                "[1e+16, 1.5e-07, 0.1, 100.0, -0.0, 1000000000000000.0, 123456789.123, 0.0001, 1e-05, 1e+300]".into(),
            ),
            (json!(x(2000)), format!("'{}...'", x(1024))),
            (json!(x(1024)), format!("'{}...'", x(1024))),
            (json!(x(1023)), format!("'{}'", x(1023))),
            (json!("word ".repeat(300)), format!("'{}...'", ["word"; 204].join(" "))),
            (json!("ñandú ".repeat(300)), format!("'{}...'", ["ñandú"; 170].join(" "))),
            (
                json!((0..500).collect::<Vec<_>>()),
                format!(
                    "[{}, 226..., ...]",
                    (0..226).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
                ),
            ),
            (
                json!(["a".repeat(600), "b".repeat(600)]),
                format!("['{}', '{}...', ...", "a".repeat(600), "b".repeat(419)),
            ),
            (json!([x(1020), [1, 2]]), format!("['{}', , ...]]", x(1020))),
            (json!([x(1022)]), format!("['{}', ...", x(1022))),
            (
                Value::Object(Map::from_iter([("k".repeat(1030), json!(1))])),
                format!("{{'{}...', ...}}", "k".repeat(1023)),
            ),
            (json!([["y".repeat(1015), 1], 2]), format!("[['{}', 1], , ...]", "y".repeat(1015))),
            (json!({"a": "z".repeat(1100), "b": 2}), format!("{{'a': '{}...', ...}}", "z".repeat(1018))),
        ];
        for (value, want) in cases {
            assert_eq!(saferepr(&value, 1024), want, "saferepr of {value}");
        }
    }

    #[test]
    fn isoformat_is_pythons() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap();
        assert_eq!(
            python_isoformat(at("2026-12-05T11:35:32.992737+00:00")),
            "2026-12-05T11:35:32.992737+00:00"
        );
        assert_eq!(
            python_isoformat(at("2026-12-05T11:35:32Z")),
            "2026-12-05T11:35:32+00:00"
        );
        assert_eq!(
            python_isoformat(at("2026-12-05T11:35:32.5-03:30")),
            "2026-12-05T11:35:32.500000-03:30"
        );
        // A naive header is UTC, as Celery makes it aware.
        let naive = json!("2026-12-05T11:35:32.000001");
        assert_eq!(
            isoformat(Some(&naive), parse_datetime("2026-12-05T11:35:32.000001")),
            json!("2026-12-05T11:35:32.000001+00:00")
        );
        assert_eq!(isoformat(Some(&Value::Null), None), Value::Null);
    }
}
