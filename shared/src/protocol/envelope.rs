//! kombu's message envelope: the JSON object that is LPUSHed onto a queue list or PUBLISHed
//! on an event channel. Its `body` is base64 of the payload; `headers` and `properties` carry
//! the metadata. Task messages and worker events both travel in it.
//!
//! This file holds the envelope's type, how we write it, and its checked reading, the reference
//! for what is accepted and how an error reads. A worker parses one envelope per task, so
//! [`Envelope::parse`] first tries the one-pass reader in `fast.rs`, which must agree with the
//! checked reading here: whatever it does not accept goes through the checked path, and what
//! it does accept comes out exactly as the checked path builds it. The tests below hold the two
//! together (`fast_path_reads_what_the_checked_path_reads`, on a real Celery message and
//! random edits of it, with `celery_envelope_takes_the_fast_path` and
//! `null_maps_and_unknown_fields_keep_the_checked_order`).

use std::borrow::Cow;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{kind, ProtocolError};
use super::fast::{self, EnvelopeFields};
use super::python_json::to_python_json;

/// Where kombu says a message was published: `exchange` `""` (the anonymous exchange) with
/// the queue name as `routing_key` for Celery's default routing. A Python worker needs both
/// fields (without them it dies with `KeyError('exchange')`), so we always write them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryInfo {
    pub exchange: String,
    pub routing_key: String,
}

/// The envelope with its body still encoded. Unknown fields are kept in `extra` so that a
/// message rewritten by us (for example marked as redelivered) loses nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub body: String,
    #[serde(rename = "content-encoding", default = "utf8")]
    pub content_encoding: String,
    #[serde(rename = "content-type", default = "json_type")]
    pub content_type: String,
    #[serde(default)]
    pub headers: Map<String, Value>,
    #[serde(default)]
    pub properties: Map<String, Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn utf8() -> String {
    "utf-8".to_owned()
}

fn json_type() -> String {
    "application/json".to_owned()
}

pub const CONTENT_TYPE_JSON: &str = "application/json";

impl Envelope {
    /// Wraps an already serialized JSON payload.
    pub fn new(
        payload_json: &str,
        headers: Map<String, Value>,
        properties: Map<String, Value>,
    ) -> Self {
        Envelope {
            body: base64::engine::general_purpose::STANDARD.encode(payload_json.as_bytes()),
            content_encoding: utf8(),
            content_type: json_type(),
            headers,
            properties,
            extra: Map::new(),
        }
    }

    /// Parses the envelope from raw bytes as found in Redis.
    pub fn parse(raw: &[u8]) -> Result<Self, ProtocolError> {
        // The checked path builds a `Value` tree, then builds every map in it a second time in
        // `from_value` (buffering the unknown fields for `flatten` on the way): for a worker
        // running small tasks, a large share of its CPU per task (docs/BENCHMARKS.md).
        // Envelopes that are well formed, nearly all of them, are read in one pass instead. The fast path gives
        // up on anything it is not sure of, and the checked path then starts from scratch, so
        // what is accepted, what is built and what an error says all stay the checked path's.
        match fast::envelope(raw) {
            Some(fields) => Ok(Self::from_fields(fields)),
            None => Self::parse_checked(raw),
        }
    }

    /// The envelope the fast path read, with the defaults `Deserialize` gives an absent field.
    fn from_fields(fields: EnvelopeFields) -> Self {
        Envelope {
            body: fields.body,
            content_encoding: fields.content_encoding.unwrap_or_else(utf8),
            content_type: fields.content_type.unwrap_or_else(json_type),
            headers: fields.headers.unwrap_or_default(),
            properties: fields.properties.unwrap_or_default(),
            extra: fields.extra,
        }
    }

    /// The reference reading of an envelope, with an error that names the field at fault.
    fn parse_checked(raw: &[u8]) -> Result<Self, ProtocolError> {
        let value: Value =
            serde_json::from_slice(raw).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
        Self::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<Self, ProtocolError> {
        let Value::Object(mut obj) = value else {
            return Err(ProtocolError::NotJson("top level is not an object".into()));
        };
        // Check the fields one by one so the error names the culprit.
        match obj.get("body") {
            Some(Value::String(_)) => {}
            Some(other) => {
                return Err(ProtocolError::WrongType {
                    field: "body",
                    detail: format!("expected a string, found {}", kind(other)),
                })
            }
            None => return Err(ProtocolError::Missing("body")),
        }
        for field in ["headers", "properties"] {
            match obj.get(field) {
                None | Some(Value::Object(_)) => {}
                Some(Value::Null) => {
                    obj.remove(field);
                }
                Some(other) => {
                    return Err(ProtocolError::WrongType {
                        field: if field == "headers" {
                            "headers"
                        } else {
                            "properties"
                        },
                        detail: format!("expected an object, found {}", kind(other)),
                    })
                }
            }
        }
        serde_json::from_value(Value::Object(obj))
            .map_err(|e| ProtocolError::NotJson(e.to_string()))
    }

    /// Decodes the body into its JSON payload, checking the content type and encoding.
    pub fn payload(&self) -> Result<Value, ProtocolError> {
        parse_payload(&self.payload_bytes()?)
    }

    /// The payload's JSON text, after the content type and encoding checks of [`payload`].
    /// For callers that read the payload into their own types.
    ///
    /// [`payload`]: Envelope::payload
    pub(crate) fn payload_bytes(&self) -> Result<Cow<'_, [u8]>, ProtocolError> {
        if !self.content_type.eq_ignore_ascii_case(CONTENT_TYPE_JSON) {
            return Err(ProtocolError::ContentType(self.content_type.clone()));
        }
        let encoding = self
            .properties
            .get("body_encoding")
            .and_then(Value::as_str)
            .unwrap_or("base64");
        if encoding == "base64" {
            base64::engine::general_purpose::STANDARD
                .decode(self.body.trim())
                .map(Cow::Owned)
                .map_err(|e| ProtocolError::Base64(e.to_string()))
        } else {
            Ok(Cow::Borrowed(self.body.as_bytes()))
        }
    }

    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(Value::as_str)
    }

    pub fn property_str(&self, name: &str) -> Option<&str> {
        self.properties.get(name).and_then(Value::as_str)
    }

    pub fn delivery_info(&self) -> Option<DeliveryInfo> {
        // Read through a reference: the same rules as `from_value` (an object, or a
        // two-element array), without copying the whole value first.
        self.properties
            .get("delivery_info")
            .and_then(|v| DeliveryInfo::deserialize(v).ok())
    }

    pub fn to_json(&self) -> String {
        to_python_json(self)
    }
}

/// Parses a payload's JSON text, with the error [`Envelope::payload`] reports.
pub(crate) fn parse_payload(bytes: &[u8]) -> Result<Value, ProtocolError> {
    serde_json::from_slice(bytes).map_err(|e| ProtocolError::Body(e.to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::mutants::{edit_object, edit_text, weird, Rng};
    use super::*;

    /// A `noop(1)` as Celery 5.5 LPUSHes it.
    const CELERY_NOOP: &str = r#"{"body": "W1sxXSwge30sIHsiY2FsbGJhY2tzIjogbnVsbCwgImVycmJhY2tzIjogbnVsbCwgImNoYWluIjogbnVsbCwgImNob3JkIjogbnVsbH1d", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"lang": "py", "task": "noop", "id": "bc4cc68c-a085-4179-82e1-fa8dbb6f8e93", "shadow": null, "eta": null, "expires": null, "group": null, "group_index": null, "retries": 0, "timelimit": [null, null], "root_id": "bc4cc68c-a085-4179-82e1-fa8dbb6f8e93", "parent_id": null, "argsrepr": "[1]", "kwargsrepr": "{}", "origin": "gen23084@vm", "ignore_result": false, "replaced_task_nesting": 0, "stamped_headers": null, "stamps": {}}, "properties": {"correlation_id": "bc4cc68c-a085-4179-82e1-fa8dbb6f8e93", "reply_to": "9e5bce56-1624-3568-8719-55316ebd618e", "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "inventario"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "c2dbb526-e403-43fa-8307-f85d59035253"}}"#;

    /// Everything an envelope holds, in order, for comparing two readings of one document.
    fn dump(r: &Result<Envelope, ProtocolError>) -> String {
        match r {
            Ok(e) => format!("{e:?} {}", e.to_json()),
            Err(e) => format!("error {e:?}: {e}"),
        }
    }

    fn assert_same_as_checked(raw: &[u8]) {
        assert_eq!(
            dump(&Envelope::parse(raw)),
            dump(&Envelope::parse_checked(raw)),
            "input: {}",
            String::from_utf8_lossy(raw)
        );
    }

    #[test]
    fn celery_envelope_takes_the_fast_path() {
        let fast = fast::envelope(CELERY_NOOP.as_bytes()).expect("fast path");
        let checked = Envelope::parse_checked(CELERY_NOOP.as_bytes()).unwrap();
        assert_eq!(dump(&Ok(Envelope::from_fields(fast))), dump(&Ok(checked)));
    }

    #[test]
    fn fast_path_reads_what_the_checked_path_reads() {
        let top = [
            "body",
            "content-encoding",
            "content-type",
            "headers",
            "properties",
            "extra",
            "zz",
        ];
        let inner = [
            "task",
            "id",
            "delivery_tag",
            "delivery_info",
            "body_encoding",
            "x",
        ];
        let doc: Value = serde_json::from_str(CELERY_NOOP).unwrap();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..5_000 {
            let mut d = doc.clone();
            for _ in 0..=rng.below(3) {
                let Value::Object(obj) = &mut d else { break };
                match rng.below(3) {
                    0 => edit_object(&mut rng, obj, &top),
                    n => {
                        let field = if n == 1 { "headers" } else { "properties" };
                        if let Some(Value::Object(m)) = obj.get_mut(field) {
                            edit_object(&mut rng, m, &inner);
                        }
                    }
                }
            }
            if rng.below(50) == 0 {
                d = weird(&mut rng);
            }
            let text = serde_json::to_string(&d).unwrap();
            let raw = if rng.below(3) == 0 {
                edit_text(&mut rng, &text, &top)
            } else {
                text.into_bytes()
            };
            assert_same_as_checked(&raw);
        }
    }

    #[test]
    fn null_maps_and_unknown_fields_keep_the_checked_order() {
        // The checked path's `Map::remove` of a null `headers` reorders the fields after it.
        for raw in [
            r#"{"body": "", "headers": null, "a": 1, "b": 2, "c": 3}"#,
            r#"{"a": 1, "properties": null, "body": "", "b": 2, "headers": null, "c": 3}"#,
            r#"{"body": "", "headers": null, "properties": {}}"#,
            r#"{"body": "", "a": 1, "a": 2, "b": [], "a": 3}"#,
            r#"{"body": 1, "body": "x", "headers": {"a": 1}, "headers": null}"#,
        ] {
            assert_same_as_checked(raw.as_bytes());
        }
    }

    #[test]
    fn delivery_info_reads_as_from_value_does() {
        let cases = [
            json!({"exchange": "", "routing_key": "q"}),
            json!({"routing_key": "q", "exchange": "e", "redelivered": true}),
            json!({"exchange": ""}),
            json!({"exchange": 1, "routing_key": "q"}),
            json!(["", "q"]),
            json!(["", "q", "extra"]),
            json!([""]),
            json!("q"),
            Value::Null,
        ];
        for v in cases {
            let mut properties = Map::new();
            properties.insert("delivery_info".into(), v.clone());
            let env = Envelope::new("[]", Map::new(), properties);
            let expected: Option<DeliveryInfo> = serde_json::from_value(v.clone()).ok();
            assert_eq!(env.delivery_info(), expected, "{v}");
        }
    }
}
