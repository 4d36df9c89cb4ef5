//! A Celery protocol v2 task message: what `send_task` writes and what a worker executes.
//!
//! The headers name the task and its id; the body is `[args, kwargs, embed]`. We keep the
//! whole envelope next to the decoded fields, so a message can be re-published (restored,
//! requeued) without losing anything a newer Celery added.
//!
//! This file holds the message's types, how we build one as Celery does, and its checked
//! decoding: every header and the body validated, with an error that names the field.
//! Decoding is on a worker's path for every task, so the body is first read by the one-pass
//! reader in `fast.rs`, with the `Value`-based reading here as the fallback that decides what
//! is refused and how the error reads (as the envelope does, see [`Envelope::parse`]). The two
//! body readers must agree; `fast_body_reads_what_the_checked_body_reads` below holds them
//! together on a real Celery body and random edits of it, with
//! `celery_body_takes_the_fast_path`.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::body::Body;
use super::datetime::{format_datetime, parse_datetime};
use super::envelope::{parse_payload, DeliveryInfo, Envelope};
use super::error::{kind, ProtocolError};
use super::fast;
use super::python_json::to_python_json;
use super::python_repr::{python_repr_args, python_repr_dict};

// Defined with the other parts of a body, in body.rs; a message's `embed` is still reached as
// `task::Embed` too.
pub use super::body::Embed;

/// `[hard, soft]` time limits in seconds, in the order Celery's code uses (not the order its
/// protocol page states).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TimeLimit {
    pub hard: Option<f64>,
    pub soft: Option<f64>,
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
        let body = to_python_json(&json!([args, kwargs, embed.to_value()]));
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
        let h = TaskHeaders::find(&envelope.headers);
        let task = required_str(h.task, "headers.task")?;
        let id = required_str(h.id, "headers.id")?;
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
        let eta = optional_time(h.eta, "headers.eta")?;
        let expires = optional_time(h.expires, "headers.expires")?;
        let retries = match h.retries {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .map(|n| n.min(u32::MAX as u64) as u32)
                .ok_or_else(|| ProtocolError::WrongType {
                    field: "headers.retries",
                    detail: format!("expected a non-negative integer, found {}", kind(v)),
                })?,
        };
        let timelimit = parse_timelimit(h.timelimit)?;
        let opt_string = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let ignore_result = h.ignore_result.and_then(Value::as_bool).unwrap_or(false);
        let redelivered = h.redelivered.and_then(Value::as_bool).unwrap_or(false);
        let priority = envelope
            .properties
            .get("priority")
            .and_then(Value::as_u64)
            .map(|p| p.min(9) as u8);
        let delivery_info = envelope.delivery_info().unwrap_or_else(|| DeliveryInfo {
            exchange: String::new(),
            routing_key: String::new(),
        });

        let (args, kwargs, embed) = decode_body(&envelope.payload_bytes()?)?;

        Ok(TaskMessage {
            root_id: opt_string(h.root_id),
            parent_id: opt_string(h.parent_id),
            group: opt_string(h.group),
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

/// Reads a task body, `[args, kwargs, embed]` (JSON text, already base64-decoded).
fn decode_body(bytes: &[u8]) -> Result<Body, ProtocolError> {
    // Straight into the parts, without a `Value` for the whole array (or copies of the embed);
    // as for the envelope, anything unusual is left to the checked path and its errors.
    match fast::body(bytes) {
        Some(body) => Ok(body),
        None => decode_body_checked(bytes),
    }
}

/// The reference reading of a task body, with an error that says what is wrong with it.
fn decode_body_checked(bytes: &[u8]) -> Result<Body, ProtocolError> {
    let payload = parse_payload(bytes)?;
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
    Ok((args, kwargs, embed))
}

/// The headers a task message is read from, found in one pass over the map. That is cheaper
/// than a hashed lookup for each (a hash of the key every time), and gives the same answers
/// since the keys of a map are unique.
#[derive(Default)]
struct TaskHeaders<'a> {
    task: Option<&'a Value>,
    id: Option<&'a Value>,
    eta: Option<&'a Value>,
    expires: Option<&'a Value>,
    retries: Option<&'a Value>,
    timelimit: Option<&'a Value>,
    root_id: Option<&'a Value>,
    parent_id: Option<&'a Value>,
    group: Option<&'a Value>,
    ignore_result: Option<&'a Value>,
    redelivered: Option<&'a Value>,
}

impl<'a> TaskHeaders<'a> {
    fn find(headers: &'a Map<String, Value>) -> Self {
        let mut found = TaskHeaders::default();
        for (key, value) in headers {
            let slot = match key.as_str() {
                "task" => &mut found.task,
                "id" => &mut found.id,
                "eta" => &mut found.eta,
                "expires" => &mut found.expires,
                "retries" => &mut found.retries,
                "timelimit" => &mut found.timelimit,
                "root_id" => &mut found.root_id,
                "parent_id" => &mut found.parent_id,
                "group" => &mut found.group,
                "ignore_result" => &mut found.ignore_result,
                "redelivered" => &mut found.redelivered,
                _ => continue,
            };
            *slot = Some(value);
        }
        found
    }
}

fn required_str(v: Option<&Value>, field: &'static str) -> Result<String, ProtocolError> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        None | Some(Value::Null) | Some(Value::String(_)) => Err(ProtocolError::Missing(field)),
        Some(other) => Err(ProtocolError::WrongType {
            field,
            detail: format!("expected a string, found {}", kind(other)),
        }),
    }
}

fn optional_time(
    v: Option<&Value>,
    field: &'static str,
) -> Result<Option<DateTime<Utc>>, ProtocolError> {
    match v {
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

#[cfg(test)]
mod tests {
    use super::super::mutants::{edit_object, edit_text, weird, Rng};
    use super::*;

    /// The body Celery 5.5 sends for `noop(1)`.
    const CELERY_BODY: &str =
        r#"[[1], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]"#;

    fn dump(r: &Result<Body, ProtocolError>) -> String {
        match r {
            Ok(body) => format!("{body:?}"),
            Err(e) => format!("error {e:?}: {e}"),
        }
    }

    #[test]
    fn celery_body_takes_the_fast_path() {
        let fast = fast::body(CELERY_BODY.as_bytes()).expect("fast path");
        let checked = decode_body_checked(CELERY_BODY.as_bytes()).unwrap();
        assert_eq!(fast, checked);
        assert_eq!(fast.0, vec![json!(1)]);
    }

    #[test]
    fn fast_body_reads_what_the_checked_body_reads() {
        let keys = ["callbacks", "errbacks", "chain", "chord", "other", "a"];
        let doc: Value = serde_json::from_str(CELERY_BODY).unwrap();
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for _ in 0..5_000 {
            let mut d = doc.clone();
            for _ in 0..=rng.below(3) {
                let Value::Array(parts) = &mut d else { break };
                match rng.below(5) {
                    0 if !parts.is_empty() => {
                        let i = rng.below(parts.len());
                        parts[i] = weird(&mut rng);
                    }
                    1 => {
                        if rng.below(2) == 0 {
                            parts.pop();
                        } else {
                            parts.push(weird(&mut rng));
                        }
                    }
                    _ => {
                        let i = rng.below(3);
                        match parts.get_mut(i) {
                            Some(Value::Object(m)) => edit_object(&mut rng, m, &keys),
                            Some(Value::Array(a)) => a.push(weird(&mut rng)),
                            _ => {}
                        }
                    }
                }
            }
            if rng.below(50) == 0 {
                d = weird(&mut rng);
            }
            let text = serde_json::to_string(&d).unwrap();
            let raw = if rng.below(3) == 0 {
                edit_text(&mut rng, &text, &keys)
            } else {
                text.into_bytes()
            };
            assert_eq!(
                dump(&decode_body(&raw)),
                dump(&decode_body_checked(&raw)),
                "input: {}",
                String::from_utf8_lossy(&raw)
            );
        }
    }

    #[test]
    fn task_headers_are_what_lookups_find() {
        let names = [
            "task",
            "id",
            "eta",
            "expires",
            "retries",
            "timelimit",
            "root_id",
            "parent_id",
            "group",
            "ignore_result",
            "redelivered",
            "lang",
        ];
        let mut rng = Rng(0x1234_5678_9ABC_DEF1);
        for _ in 0..2_000 {
            let mut headers = Map::new();
            for _ in 0..rng.below(20) {
                edit_object(&mut rng, &mut headers, &names);
            }
            let h = TaskHeaders::find(&headers);
            let found = [
                h.task,
                h.id,
                h.eta,
                h.expires,
                h.retries,
                h.timelimit,
                h.root_id,
                h.parent_id,
                h.group,
                h.ignore_result,
                h.redelivered,
            ];
            for (name, got) in names.iter().zip(found) {
                assert_eq!(got, headers.get(*name), "{name} in {headers:?}");
            }
        }
    }
}
