//! The Celery wire format (protocol v2 over kombu's Redis transport), with no Redis in it.
//!
//! Everything that crosses Redis is one of three JSON documents, each with its own module:
//! a task message ([`task`]), a stored task result ([`result`]) and a worker event ([`event`]).
//! Task messages and events share kombu's envelope ([`envelope`]): a JSON object whose `body`
//! is base64 of the payload. Decoding is tolerant of fields we do not use and strict about the
//! ones we need: a malformed document is a [`ProtocolError`], never a panic. The decoders a
//! worker runs for every task have a fast path, held by tests to the checked one: the same
//! documents accepted, the same values built, the same errors.
//!
//! We write JSON the way Python's `json.dumps` does (`", "` and `": "` separators), so what our
//! programs leave in Redis reads exactly like what Celery leaves there.

pub mod envelope;
pub mod event;
pub mod result;
pub mod task;

pub use envelope::{DeliveryInfo, Envelope};
pub use event::WorkerEvent;
pub use result::{ExceptionInfo, ResultMeta, TaskState};
pub use task::{Embed, TaskMessage, TimeLimit};

use serde::Serialize;

/// Why a document from Redis could not be understood. The text is what ends up in the
/// quarantine record, so it names the field and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("message is not a JSON object: {0}")]
    NotJson(String),
    #[error("unsupported content-type {0:?} (only application/json is accepted)")]
    ContentType(String),
    #[error("body is not valid base64: {0}")]
    Base64(String),
    #[error("body is not a JSON array [args, kwargs, embed]: {0}")]
    Body(String),
    #[error("missing required field {0}")]
    Missing(&'static str),
    #[error("field {field} has the wrong type: {detail}")]
    WrongType { field: &'static str, detail: String },
    #[error("message of {size} bytes is over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

/// Serializes `value` as Python's `json.dumps` does by default: `", "` between items and
/// `": "` after keys. Celery and kombu parse any JSON; this only keeps Redis readable and
/// byte-comparable with Celery's own traffic.
pub fn to_python_json<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    // Serializing plain data into a Vec cannot fail: no I/O, and our types have string keys.
    value
        .serialize(&mut ser)
        .expect("JSON serialization into memory");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

/// Parses a Celery timestamp: ISO 8601 with an offset (Celery ≥ 5.4) or naive, read as UTC
/// (Celery ≤ 5.3 and naive user datetimes).
pub fn parse_datetime(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{DateTime, NaiveDateTime, Utc};
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|naive| naive.and_utc())
}

/// Formats a timestamp as Celery 5.5 does: ISO 8601, microseconds, `+00:00`.
pub fn format_datetime(dt: chrono::DateTime<chrono::Utc>) -> String {
    dt.to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

/// Inputs for the tests that hold each fast path to its checked path: small random edits of a
/// real document, aimed at the type checks, repeated keys and JSON edge cases.
#[cfg(test)]
pub(crate) mod mutants {
    use serde_json::{json, Map, Value};

    /// A deterministic xorshift generator: the same mutants on every run.
    pub(crate) struct Rng(pub u64);

    impl Rng {
        pub(crate) fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    /// A value of some type a field may or may not accept.
    pub(crate) fn weird(rng: &mut Rng) -> Value {
        let values = [
            Value::Null,
            json!(true),
            json!(0),
            json!(-1),
            json!(1.5),
            json!(""),
            json!("x"),
            json!("base64"),
            json!("2026-11-23T04:49:25.690447+00:00"),
            json!([]),
            json!([null, null]),
            json!(["", "q"]),
            json!([1, "a", null]),
            json!({}),
            json!({"exchange": "", "routing_key": "q"}),
            json!({"callbacks": [1], "b": {"c": 2}}),
        ];
        rng.pick(&values).clone()
    }

    /// Sets, removes or moves to the end one key of `obj`, from `keys` or those it has.
    pub(crate) fn edit_object(rng: &mut Rng, obj: &mut Map<String, Value>, keys: &[&str]) {
        let key = if !obj.is_empty() && rng.below(2) == 0 {
            obj.keys()
                .nth(rng.below(obj.len()))
                .cloned()
                .unwrap_or_default()
        } else {
            rng.pick(keys).to_string()
        };
        match rng.below(4) {
            0 => {
                obj.shift_remove(&key);
            }
            1 => {
                if let Some(v) = obj.shift_remove(&key) {
                    obj.insert(key, v);
                }
            }
            _ => {
                let v = weird(rng);
                obj.insert(key, v);
            }
        }
    }

    /// JSON text with one edit a `Value` cannot express: a repeated key, a number or string
    /// the parser refuses, bytes that are not UTF-8, a cut, trailing bytes.
    pub(crate) fn edit_text(rng: &mut Rng, text: &str, keys: &[&str]) -> Vec<u8> {
        let mut bytes = text.as_bytes().to_vec();
        let objects: Vec<usize> = text.match_indices('{').map(|(i, _)| i + 1).collect();
        let anywhere = rng.below(bytes.len() + 1);
        match rng.below(6) {
            0 | 1 if !objects.is_empty() => {
                let at = *rng.pick(&objects);
                let odd = [
                    "null",
                    "1",
                    "\"s\"",
                    "{}",
                    "[]",
                    "1e400",
                    "\"\\ud800\"",
                    "-0",
                    "{\"a\": 1}",
                ];
                let entry = format!("\"{}\": {}, ", rng.pick(keys), rng.pick(&odd));
                bytes.splice(at..at, entry.into_bytes());
            }
            2 => bytes.insert(anywhere, 0xff),
            3 => bytes.truncate(anywhere),
            4 => bytes.extend_from_slice(b" x"),
            _ => {
                if let Some(b) = bytes.get_mut(anywhere) {
                    *b ^= 1 << rng.below(7);
                }
            }
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_style_separators() {
        let v = json!({"a": [1, 2, null], "b": {"c": "d"}});
        assert_eq!(
            to_python_json(&v),
            r#"{"a": [1, 2, null], "b": {"c": "d"}}"#
        );
    }

    #[test]
    fn datetimes_with_and_without_offset() {
        let aware = parse_datetime("2026-11-23T04:49:25.690447+00:00").unwrap();
        let naive = parse_datetime("2026-11-23T04:49:25.690447").unwrap();
        assert_eq!(aware, naive);
        let shifted = parse_datetime("2026-11-23T05:49:25.690447+01:00").unwrap();
        assert_eq!(aware, shifted);
        assert_eq!(format_datetime(aware), "2026-11-23T04:49:25.690447+00:00");
        assert!(parse_datetime("yesterday").is_none());
    }
}
