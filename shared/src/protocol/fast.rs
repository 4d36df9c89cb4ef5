//! The one-pass readers a worker runs for every task it takes: kombu's envelope and the task
//! body inside it, read straight from the JSON text into their parts.
//!
//! They exist for speed alone. The checked readers (`Envelope::parse_checked` in `envelope.rs`,
//! `decode_body_checked` in `task.rs`) first build a `Value` tree and then the parts from it;
//! these build the parts directly. A fast reader must agree with its checked reader: it
//! accepts only documents the checked one accepts, builds the same value from them, and gives
//! up (`None`) on everything else, so the caller runs the checked reader, which alone decides
//! what is refused and how the error reads. Tests in the callers hold them to that on a real
//! Celery message and thousands of random edits of it:
//! `protocol::envelope::tests::fast_path_reads_what_the_checked_path_reads` and
//! `protocol::task::tests::fast_body_reads_what_the_checked_body_reads`.
//!
//! They know JSON and the shape of these two documents, not the rules of our types: the
//! envelope comes back as the fields its text holds, and `Envelope::parse` applies the same
//! defaults its checked reading does, so this module depends on nothing that calls it.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::body::{Body, Embed};

/// An envelope read in one pass from the raw bytes of a message, `None` if this reader does
/// not take it (the checked reader then decides).
pub(crate) fn envelope(raw: &[u8]) -> Option<EnvelopeFields> {
    fast_parse::<FastEnvelope>(raw).map(|FastEnvelope(fields)| fields)
}

/// A task body (JSON text, already base64-decoded) read in one pass into its parts, `None` if
/// this reader does not take it (the checked reader then decides).
pub(crate) fn body(bytes: &[u8]) -> Option<Body> {
    fast_parse::<FastBody>(bytes).map(|FastBody(body)| body)
}

/// Reads `raw` with a fast-path reader, `None` if it does not take it. The text is checked to
/// be UTF-8 once, up front, rather than string by string as `from_slice` does: JSON text is
/// UTF-8 as a whole, so this refuses nothing the checked path would accept.
fn fast_parse<T: de::DeserializeOwned>(raw: &[u8]) -> Option<T> {
    let text = std::str::from_utf8(raw).ok()?;
    serde_json::from_str(text).ok()
}

/// Room for the maps of a Celery 5.5 task message (19 headers, 7 or 8 properties, and a few a
/// newer Celery or a redelivery may add), so that filling them does not grow and rehash them
/// several times. Only the capacity depends on it, never the contents.
const HEADERS_CAPACITY: usize = 24;
const PROPERTIES_CAPACITY: usize = 10;

/// An envelope's fields as its text gives them. `Envelope::parse` fills in what is absent (or
/// null) with the defaults the checked path's `Deserialize` gives.
pub(crate) struct EnvelopeFields {
    pub body: String,
    pub content_encoding: Option<String>,
    pub content_type: Option<String>,
    /// `None` when absent or null.
    pub headers: Option<Map<String, Value>>,
    /// `None` when absent or null.
    pub properties: Option<Map<String, Value>>,
    pub extra: Map<String, Value>,
}

/// `Envelope::parse`'s fast path: the envelope read field by field from the JSON text, with
/// nothing built twice. It fails (and the checked path takes over) on anything the checked
/// path would refuse, and also on one thing it accepts but orders differently (see below).
struct FastEnvelope(EnvelopeFields);

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
        Ok(FastEnvelope(EnvelopeFields {
            body,
            content_encoding,
            content_type,
            headers: headers.flatten(),
            properties: properties.flatten(),
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

/// The task body's fast path. It accepts what the checked path accepts, builds the same
/// parts, and fails on everything else.
struct FastBody(Body);

impl<'de> Deserialize<'de> for FastBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(FastBodyVisitor)
    }
}

struct FastBodyVisitor;

impl<'de> Visitor<'de> for FastBodyVisitor {
    type Value = FastBody;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("[args, kwargs, embed]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FastBody, A::Error> {
        let missing = || de::Error::custom("fewer than 3 elements");
        // Null stands for an empty part, as in the checked path.
        let args = seq
            .next_element::<Option<Vec<Value>>>()?
            .ok_or_else(missing)?;
        let kwargs = seq
            .next_element::<Option<Map<String, Value>>>()?
            .ok_or_else(missing)?;
        let embed = seq
            .next_element::<Option<FastEmbed>>()?
            .ok_or_else(missing)?;
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("more than 3 elements"));
        }
        Ok(FastBody((
            args.unwrap_or_default(),
            kwargs.unwrap_or_default(),
            embed.map(|e| e.0).unwrap_or_default(),
        )))
    }
}

/// The embed object read in place. Like `Embed::from_value` it keeps the four keys we know
/// (the last one of a repeated key, as a `Value` object does) and drops the others, which
/// are still parsed in full so that the same documents are refused.
struct FastEmbed(Embed);

impl<'de> Deserialize<'de> for FastEmbed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FastEmbedVisitor)
    }
}

struct FastEmbedVisitor;

impl<'de> Visitor<'de> for FastEmbedVisitor {
    type Value = FastEmbed;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an embed object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FastEmbed, A::Error> {
        let mut embed = Embed::default();
        while let Some(key) = map.next_key::<EmbedKey>()? {
            let value = map.next_value::<Value>()?;
            match key {
                EmbedKey::Callbacks => embed.callbacks = value,
                EmbedKey::Errbacks => embed.errbacks = value,
                EmbedKey::Chain => embed.chain = value,
                EmbedKey::Chord => embed.chord = value,
                EmbedKey::Other => {}
            }
        }
        Ok(FastEmbed(embed))
    }
}

enum EmbedKey {
    Callbacks,
    Errbacks,
    Chain,
    Chord,
    Other,
}

impl<'de> Deserialize<'de> for EmbedKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl Visitor<'_> for KeyVisitor {
            type Value = EmbedKey;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<EmbedKey, E> {
                Ok(match key {
                    "callbacks" => EmbedKey::Callbacks,
                    "errbacks" => EmbedKey::Errbacks,
                    "chain" => EmbedKey::Chain,
                    "chord" => EmbedKey::Chord,
                    _ => EmbedKey::Other,
                })
            }
        }

        deserializer.deserialize_identifier(KeyVisitor)
    }
}
