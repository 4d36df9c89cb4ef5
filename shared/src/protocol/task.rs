//! A Celery protocol v2 task message: what `send_task` writes and what a worker executes.
//!
//! The headers name the task and its id; the body is `[args, kwargs, embed]`. We keep the
//! whole envelope next to the decoded fields, so a message can be re-published (restored,
//! requeued) without losing anything a newer Celery added.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::envelope::{kind, DeliveryInfo, Envelope};
use super::{format_datetime, parse_datetime, ProtocolError};

/// `[hard, soft]` time limits in seconds, in the order Celery's code uses (not the order its
/// protocol page states).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TimeLimit {
    pub hard: Option<f64>,
    pub soft: Option<f64>,
}

/// The third element of the body: callbacks, errbacks, chain and chord (signatures, kept as
/// JSON since we do not run canvas ourselves).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Embed {
    pub callbacks: Value,
    pub errbacks: Value,
    pub chain: Value,
    pub chord: Value,
}

impl Embed {
    fn to_value(&self) -> Value {
        json!({
            "callbacks": self.callbacks,
            "errbacks": self.errbacks,
            "chain": self.chain,
            "chord": self.chord,
        })
    }

    fn from_value(v: &Value) -> Self {
        let get = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
        Embed {
            callbacks: get("callbacks"),
            errbacks: get("errbacks"),
            chain: get("chain"),
            chord: get("chord"),
        }
    }
}

/// A decoded task message.
#[derive(Debug, Clone)]
pub struct TaskMessage {
    pub id: String,
    pub task: String,
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
    pub embed: Embed,
    pub eta: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
    pub retries: u32,
    pub timelimit: TimeLimit,
    pub root_id: Option<String>,
    pub parent_id: Option<String>,
    pub group: Option<String>,
    pub ignore_result: bool,
    pub priority: Option<u8>,
    pub delivery_tag: String,
    pub delivery_info: DeliveryInfo,
    pub redelivered: bool,
    /// The envelope as received or as it will be sent.
    pub envelope: Envelope,
}

/// What a producer chooses per message; everything else follows Celery's defaults.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    pub id: Option<String>,
    pub eta: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
    pub priority: Option<u8>,
    pub timelimit: TimeLimit,
    pub retries: u32,
    pub parent_id: Option<String>,
    pub root_id: Option<String>,
    pub ignore_result: bool,
}

impl TaskMessage {
    /// Builds a message exactly as Celery 5.5's `send_task` does for the anonymous exchange.
    pub fn build(
        name: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        queue: &str,
        origin: &str,
        reply_to: &str,
        opts: NewTask,
    ) -> Self {
        let id = opts.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let root_id = opts.root_id.unwrap_or_else(|| id.clone());
        let embed = Embed::default();
        let body = super::to_python_json(&json!([args, kwargs, embed.to_value()]));
        let nullable_time =
            |t: Option<DateTime<Utc>>| t.map(format_datetime).map_or(Value::Null, Value::String);
        let mut headers = Map::new();
        let mut put = |k: &str, v: Value| {
            headers.insert(k.to_owned(), v);
        };
        put("lang", json!("py"));
        put("task", json!(name));
        put("id", json!(id));
        put("shadow", Value::Null);
        put("eta", nullable_time(opts.eta));
        put("expires", nullable_time(opts.expires));
        put("group", Value::Null);
        put("group_index", Value::Null);
        put("retries", json!(opts.retries));
        put(
            "timelimit",
            json!([opts.timelimit.hard, opts.timelimit.soft]),
        );
        put("root_id", json!(root_id));
        put("parent_id", json!(opts.parent_id));
        put("argsrepr", json!(python_repr_args(&args)));
        put("kwargsrepr", json!(python_repr_dict(&kwargs)));
        put("origin", json!(origin));
        put("ignore_result", json!(opts.ignore_result));
        put("replaced_task_nesting", json!(0));
        put("stamped_headers", Value::Null);
        put("stamps", json!({}));

        let delivery_tag = uuid::Uuid::new_v4().to_string();
        let delivery_info = DeliveryInfo {
            exchange: String::new(),
            routing_key: queue.to_owned(),
        };
        let mut properties = Map::new();
        properties.insert("correlation_id".into(), json!(id));
        properties.insert("reply_to".into(), json!(reply_to));
        properties.insert("delivery_mode".into(), json!(2));
        properties.insert("delivery_info".into(), json!(delivery_info));
        properties.insert("priority".into(), json!(opts.priority.unwrap_or(0).min(9)));
        properties.insert("body_encoding".into(), json!("base64"));
        properties.insert("delivery_tag".into(), json!(delivery_tag));
        if let Some(expires) = opts.expires {
            let ms = (expires - Utc::now()).num_milliseconds().max(0);
            properties.insert("expiration".into(), json!(ms.to_string()));
        }

        TaskMessage {
            envelope: Envelope::new(&body, headers, properties),
            id,
            task: name.to_owned(),
            args,
            kwargs,
            embed,
            eta: opts.eta,
            expires: opts.expires,
            retries: opts.retries,
            timelimit: opts.timelimit,
            root_id: Some(root_id),
            parent_id: opts.parent_id,
            group: None,
            ignore_result: opts.ignore_result,
            priority: opts.priority,
            delivery_tag,
            delivery_info,
            redelivered: false,
        }
    }

    /// Decodes a message as found on a queue list.
    pub fn decode(raw: &[u8]) -> Result<Self, ProtocolError> {
        Self::from_envelope(Envelope::parse(raw)?)
    }

    pub fn from_envelope(envelope: Envelope) -> Result<Self, ProtocolError> {
        let h = &envelope.headers;
        let task = required_str(h, "task", "headers.task")?;
        let id = required_str(h, "id", "headers.id")?;
        let delivery_tag = match envelope.properties.get("delivery_tag") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(ProtocolError::Missing("properties.delivery_tag"))
            }
            Some(other) => {
                return Err(ProtocolError::WrongType {
                    field: "properties.delivery_tag",
                    detail: format!("expected a string, found {}", kind(other)),
                })
            }
        };
        let eta = optional_time(h, "eta", "headers.eta")?;
        let expires = optional_time(h, "expires", "headers.expires")?;
        let retries = match h.get("retries") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .map(|n| n.min(u32::MAX as u64) as u32)
                .ok_or_else(|| ProtocolError::WrongType {
                    field: "headers.retries",
                    detail: format!("expected a non-negative integer, found {}", kind(v)),
                })?,
        };
        let timelimit = parse_timelimit(h.get("timelimit"))?;
        let opt_string = |k: &str| h.get(k).and_then(Value::as_str).map(str::to_owned);
        let ignore_result = h
            .get("ignore_result")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let redelivered = h
            .get("redelivered")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let priority = envelope
            .properties
            .get("priority")
            .and_then(Value::as_u64)
            .map(|p| p.min(9) as u8);
        let delivery_info = envelope.delivery_info().unwrap_or_else(|| DeliveryInfo {
            exchange: String::new(),
            routing_key: String::new(),
        });

        let payload = envelope.payload()?;
        let Value::Array(mut parts) = payload else {
            return Err(ProtocolError::Body(format!(
                "expected an array, found {}",
                kind(&payload)
            )));
        };
        if parts.len() != 3 {
            return Err(ProtocolError::Body(format!(
                "expected 3 elements [args, kwargs, embed], found {}",
                parts.len()
            )));
        }
        let embed_v = parts.pop().unwrap_or(Value::Null);
        let kwargs = match parts.pop() {
            Some(Value::Object(m)) => m,
            Some(Value::Null) => Map::new(),
            Some(other) => {
                return Err(ProtocolError::Body(format!(
                    "kwargs is {}, not an object",
                    kind(&other)
                )))
            }
            None => Map::new(),
        };
        let args = match parts.pop() {
            Some(Value::Array(a)) => a,
            Some(Value::Null) => Vec::new(),
            Some(other) => {
                return Err(ProtocolError::Body(format!(
                    "args is {}, not an array",
                    kind(&other)
                )))
            }
            None => Vec::new(),
        };
        let embed = match &embed_v {
            Value::Null => Embed::default(),
            Value::Object(_) => Embed::from_value(&embed_v),
            other => {
                return Err(ProtocolError::Body(format!(
                    "embed is {}, not an object",
                    kind(other)
                )))
            }
        };

        Ok(TaskMessage {
            root_id: opt_string("root_id"),
            parent_id: opt_string("parent_id"),
            group: opt_string("group"),
            id,
            task,
            args,
            kwargs,
            embed,
            eta,
            expires,
            retries,
            timelimit,
            ignore_result,
            priority,
            delivery_tag,
            delivery_info,
            redelivered,
            envelope,
        })
    }

    /// The JSON text to push onto a queue list.
    pub fn encode(&self) -> String {
        self.envelope.to_json()
    }
}

fn required_str(
    h: &Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<String, ProtocolError> {
    match h.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        None | Some(Value::Null) | Some(Value::String(_)) => Err(ProtocolError::Missing(field)),
        Some(other) => Err(ProtocolError::WrongType {
            field,
            detail: format!("expected a string, found {}", kind(other)),
        }),
    }
}

fn optional_time(
    h: &Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<Option<DateTime<Utc>>, ProtocolError> {
    match h.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            parse_datetime(s)
                .map(Some)
                .ok_or_else(|| ProtocolError::WrongType {
                    field,
                    detail: format!("{s:?} is not an ISO 8601 time"),
                })
        }
        Some(other) => Err(ProtocolError::WrongType {
            field,
            detail: format!("expected an ISO 8601 string, found {}", kind(other)),
        }),
    }
}

fn parse_timelimit(v: Option<&Value>) -> Result<TimeLimit, ProtocolError> {
    let bad = |detail: String| ProtocolError::WrongType {
        field: "headers.timelimit",
        detail,
    };
    let seconds = |v: &Value| -> Result<Option<f64>, ProtocolError> {
        match v {
            Value::Null => Ok(None),
            Value::Number(n) => n
                .as_f64()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Some)
                .ok_or_else(|| bad(format!("{n} is not a valid number of seconds"))),
            other => Err(bad(format!(
                "expected numbers or nulls, found {}",
                kind(other)
            ))),
        }
    };
    match v {
        None | Some(Value::Null) => Ok(TimeLimit::default()),
        Some(Value::Array(a)) if a.len() == 2 => Ok(TimeLimit {
            hard: seconds(&a[0])?,
            soft: seconds(&a[1])?,
        }),
        Some(other) => Err(bad(format!("expected [hard, soft], found {other}"))),
    }
}

/// Python's `repr` of a list of JSON values, as Celery puts in `argsrepr` (for logs and
/// Flower). Close enough for display: strings in single quotes, None/True/False.
fn python_repr_list(items: &[Value]) -> String {
    let inner: Vec<String> = items.iter().map(python_repr).collect();
    truncate_repr(format!("[{}]", inner.join(", ")))
}

/// Celery's `argsrepr`: `()` when a task is sent without arguments (Celery's default empty
/// tuple), the list's repr otherwise (`[7]`, as `send_task(args=[7])` writes).
fn python_repr_args(args: &[Value]) -> String {
    if args.is_empty() {
        "()".to_owned()
    } else {
        python_repr_list(args)
    }
}

fn python_repr_dict(map: &Map<String, Value>) -> String {
    let inner: Vec<String> = map
        .iter()
        .map(|(k, v)| {
            format!(
                "{}: {}",
                python_repr(&Value::String(k.clone())),
                python_repr(v)
            )
        })
        .collect();
    truncate_repr(format!("{{{}}}", inner.join(", ")))
}

fn python_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(a) => python_repr_list(a),
        Value::Object(m) => python_repr_dict(m),
    }
}

/// Celery caps argsrepr/kwargsrepr at 1024 characters.
fn truncate_repr(mut s: String) -> String {
    const MAX: usize = 1024;
    if s.len() > MAX {
        let mut cut = MAX - 3;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}
