//! kombu's message envelope: the JSON object that is LPUSHed onto a queue list or PUBLISHed
//! on an event channel. Its `body` is base64 of the payload; `headers` and `properties` carry
//! the metadata. Task messages and worker events both travel in it.
//!
//! A worker parses one envelope per task, so [`Envelope::parse`] has a fast path that reads
//! the fields straight from the bytes. Whatever it does not accept goes through the checked
//! path, which alone decides what is an error and how the error reads.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
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
        // The checked path builds a `Value` tree, then builds every map in it a second time in
        // `from_value` (buffering the unknown fields for `flatten` on the way): for a worker
        // running small tasks, that was about a third of its CPU per task. Envelopes that are
        // well formed, nearly all of them, are read in one pass instead. The fast path gives
        // up on anything it is not sure of, and the checked path then starts from scratch, so
        // what is accepted, what is built and what an error says all stay the checked path's.
        match fast_parse::<FastEnvelope>(raw) {
            Some(FastEnvelope(envelope)) => Ok(envelope),
            None => Self::parse_checked(raw),
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
        super::to_python_json(self)
    }
}

/// Parses a payload's JSON text, with the error [`Envelope::payload`] reports.
pub(crate) fn parse_payload(bytes: &[u8]) -> Result<Value, ProtocolError> {
    serde_json::from_slice(bytes).map_err(|e| ProtocolError::Body(e.to_string()))
}

/// Reads `raw` with a fast-path reader, `None` if it does not take it. The text is checked to
/// be UTF-8 once, up front, rather than string by string as `from_slice` does: JSON text is
/// UTF-8 as a whole, so this refuses nothing the checked path would accept.
pub(crate) fn fast_parse<T: de::DeserializeOwned>(raw: &[u8]) -> Option<T> {
    let text = std::str::from_utf8(raw).ok()?;
    serde_json::from_str(text).ok()
}

/// Room for the maps of a Celery 5.5 task message (19 headers, 7 or 8 properties, and a few a
/// newer Celery or a redelivery may add), so that filling them does not grow and rehash them
/// several times. Only the capacity depends on it, never the contents.
const HEADERS_CAPACITY: usize = 24;
const PROPERTIES_CAPACITY: usize = 10;

/// [`Envelope::parse`]'s fast path: the envelope read field by field from the JSON text, with
/// nothing built twice. It fails (and the checked path takes over) on anything the checked
/// path would refuse, and also on one thing it accepts but orders differently (see below).
struct FastEnvelope(Envelope);

impl<'de> Deserialize<'de> for FastEnvelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FastEnvelopeVisitor)
    }
}

struct FastEnvelopeVisitor;

impl<'de> Visitor<'de> for FastEnvelopeVisitor {
    type Value = FastEnvelope;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a kombu envelope")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FastEnvelope, A::Error> {
        let mut body = None;
        let mut content_encoding = None;
        let mut content_type = None;
        // `Some(None)` is a field given as null.
        let mut headers: Option<Option<Map<String, Value>>> = None;
        let mut properties: Option<Option<Map<String, Value>>> = None;
        let mut extra = Map::new();
        // A repeated key keeps its last value (and an unknown one its first place), as in a
        // `Value` object, which is what the checked path reads.
        while let Some(key) = map.next_key::<EnvelopeKey>()? {
            match key {
                EnvelopeKey::Body => body = Some(map.next_value::<String>()?),
                EnvelopeKey::ContentEncoding => {
                    content_encoding = Some(map.next_value::<String>()?)
                }
                EnvelopeKey::ContentType => content_type = Some(map.next_value::<String>()?),
                EnvelopeKey::Headers => {
                    headers = Some(map.next_value_seed(NullableMap(HEADERS_CAPACITY))?)
                }
                EnvelopeKey::Properties => {
                    properties = Some(map.next_value_seed(NullableMap(PROPERTIES_CAPACITY))?)
                }
                EnvelopeKey::Other(key) => {
                    extra.insert(key, map.next_value::<Value>()?);
                }
            }
        }
        let body = body.ok_or_else(|| de::Error::missing_field("body"))?;
        // The checked path drops a null `headers` or `properties` with `Map::remove`, which
        // (with `preserve_order`) moves the last key into its place: the unknown fields can
        // come out in another order. Rare enough to leave to that path.
        let null = |m: &Option<Option<_>>| matches!(m, Some(None));
        if (null(&headers) || null(&properties)) && !extra.is_empty() {
            return Err(de::Error::custom(
                "null headers or properties with extra fields",
            ));
        }
        Ok(FastEnvelope(Envelope {
            body,
            content_encoding: content_encoding.unwrap_or_else(utf8),
            content_type: content_type.unwrap_or_else(json_type),
            headers: headers.flatten().unwrap_or_default(),
            properties: properties.flatten().unwrap_or_default(),
            extra,
        }))
    }
}

/// An envelope's key, told apart without allocating for the ones we know.
enum EnvelopeKey {
    Body,
    ContentEncoding,
    ContentType,
    Headers,
    Properties,
    Other(String),
}

impl EnvelopeKey {
    fn known(key: &str) -> Option<Self> {
        Some(match key {
            "body" => EnvelopeKey::Body,
            "content-encoding" => EnvelopeKey::ContentEncoding,
            "content-type" => EnvelopeKey::ContentType,
            "headers" => EnvelopeKey::Headers,
            "properties" => EnvelopeKey::Properties,
            _ => return None,
        })
    }
}

impl<'de> Deserialize<'de> for EnvelopeKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl Visitor<'_> for KeyVisitor {
            type Value = EnvelopeKey;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<EnvelopeKey, E> {
                Ok(EnvelopeKey::known(key).unwrap_or_else(|| EnvelopeKey::Other(key.to_owned())))
            }

            fn visit_string<E: de::Error>(self, key: String) -> Result<EnvelopeKey, E> {
                Ok(EnvelopeKey::known(&key).unwrap_or(EnvelopeKey::Other(key)))
            }
        }

        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// A JSON object or null, read into a map with room for `.0` entries. The entries go in
/// exactly as `Map`'s own `Deserialize` puts them.
struct NullableMap(usize);

impl<'de> DeserializeSeed<'de> for NullableMap {
    type Value = Option<Map<String, Value>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for NullableMap {
    type Value = Option<Map<String, Value>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut values = Map::with_capacity(self.0);
        while let Some((key, value)) = map.next_entry()? {
            values.insert(key, value);
        }
        Ok(Some(values))
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
        let fast = fast_parse::<FastEnvelope>(CELERY_NOOP.as_bytes()).expect("fast path");
        let checked = Envelope::parse_checked(CELERY_NOOP.as_bytes()).unwrap();
        assert_eq!(dump(&Ok(fast.0)), dump(&Ok(checked)));
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
