//! kombu's message envelope: the JSON object that is LPUSHed onto a queue list or PUBLISHed
//! on an event channel. Its `body` is base64 of the payload; `headers` and `properties` carry
//! the metadata. Task messages and worker events both travel in it.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ProtocolError;

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
        if !self.content_type.eq_ignore_ascii_case(CONTENT_TYPE_JSON) {
            return Err(ProtocolError::ContentType(self.content_type.clone()));
        }
        let encoding = self
            .properties
            .get("body_encoding")
            .and_then(Value::as_str)
            .unwrap_or("base64");
        let bytes = if encoding == "base64" {
            base64::engine::general_purpose::STANDARD
                .decode(self.body.trim())
                .map_err(|e| ProtocolError::Base64(e.to_string()))?
        } else {
            self.body.as_bytes().to_vec()
        };
        serde_json::from_slice(&bytes).map_err(|e| ProtocolError::Body(e.to_string()))
    }

    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(Value::as_str)
    }

    pub fn property_str(&self, name: &str) -> Option<&str> {
        self.properties.get(name).and_then(Value::as_str)
    }

    pub fn delivery_info(&self) -> Option<DeliveryInfo> {
        self.properties
            .get("delivery_info")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    pub fn to_json(&self) -> String {
        super::to_python_json(self)
    }
}

/// A word for the JSON type of `v`, for error messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
