//! Hostile HTTP requests, generated with proptest: random and broken JSON, raw bytes, odd
//! paths, query strings and percent-encoding, unusual methods and content types. These are the
//! parts that know nothing about any one service. Each service's test adds its own routes and
//! shapes on top: its field names, the words its fields take, the paths it nearly serves.
//!
//! The pieces are [`HostileRequest`] and [`HostileBody`] (what is sent), the strategies
//! ([`text`], [`json_value`], [`query`], [`odd_path`], [`method`], [`content_type`],
//! [`small_body`]...) and [`error_json`], the check for the `{"error", "detalle"}` JSON body
//! that every 4xx of our services carries.
//!
//! A strategy that mixes in a service's own words takes them as a parameter (`text_with`,
//! `odd_path`'s near misses, `query`'s parameter names), so a service's test can keep
//! generating exactly what it generated before.

use http::{header, HeaderMap, Method, StatusCode};
use proptest::prelude::*;
use proptest::strategy::Union;
use serde_json::Value;

/// A body as sent.
#[derive(Clone)]
pub enum HostileBody {
    Empty,
    Json(Value),
    /// Raw text: truncated or otherwise broken JSON.
    Text(String),
    Bytes(Vec<u8>),
    /// `len` bytes of a body over the service's limit; `stream` sends it chunked, with no
    /// `Content-Length`, so only the limit while reading can stop it. The caller builds it
    /// (its content and its body type are the service's business).
    Huge {
        len: usize,
        stream: bool,
    },
}

impl HostileBody {
    /// The bytes of a body of known content; `None` for [`HostileBody::Huge`], which the
    /// caller builds.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        match self {
            HostileBody::Empty => Some(Vec::new()),
            HostileBody::Json(v) => Some(v.to_string().into_bytes()),
            HostileBody::Text(t) => Some(t.clone().into_bytes()),
            HostileBody::Bytes(b) => Some(b.clone()),
            HostileBody::Huge { .. } => None,
        }
    }
}

impl std::fmt::Debug for HostileBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostileBody::Empty => write!(f, "Empty"),
            HostileBody::Json(v) => write!(f, "Json({})", truncate(&v.to_string())),
            HostileBody::Text(t) => write!(f, "Text({:?})", truncate(t)),
            HostileBody::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            HostileBody::Huge { len, stream } => write!(f, "Huge({len} bytes, stream: {stream})"),
        }
    }
}

/// One request as generated: `uri` is a path and query, to be put after the service's base.
#[derive(Clone, Debug)]
pub struct HostileRequest {
    pub method: Method,
    pub uri: String,
    pub content_type: Option<String>,
    pub body: HostileBody,
}

/// `s`, cut to its first 120 characters (with its length in bytes) for a failure message.
pub fn truncate(s: &str) -> String {
    if s.chars().count() > 120 {
        format!(
            "{}… ({} bytes)",
            s.chars().take(120).collect::<String>(),
            s.len()
        )
    } else {
        s.to_owned()
    }
}

/// Percent-encodes every byte but the unreserved ones, so any text becomes a valid segment.
pub fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The number of generated requests: `$PROPTEST_CASES`, or `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// Strategies

/// `arms`, each as likely as the others.
fn uniform<T: std::fmt::Debug + 'static>(arms: Vec<BoxedStrategy<T>>) -> BoxedStrategy<T> {
    Union::new(arms).boxed()
}

/// Each of `words`, as a strategy that always gives it.
fn each(words: &[&str]) -> Vec<BoxedStrategy<String>> {
    words
        .iter()
        .map(|w| Just((*w).to_owned()).boxed())
        .collect()
}

/// Any text: any string, plain words, any printable unicode, control characters, whitespace.
pub fn text() -> BoxedStrategy<String> {
    text_with(&[])
}

/// [`text`], with each of `extra` (words a service gives meaning to) as likely as each kind
/// of text.
pub fn text_with(extra: &[&str]) -> BoxedStrategy<String> {
    let mut arms = vec![
        any::<String>().boxed(),
        "[a-zA-Z0-9 ]{0,20}".boxed(),
        "\\PC{0,40}".boxed(),
        "[\\x00-\\x1f\\x7f]{1,4}".boxed(),
        "[ \\t\\n\\r\\u{a0}\\u{3000}]{0,4}".boxed(),
    ];
    arms.extend(each(extra));
    uniform(arms)
}

/// Any JSON, up to three levels deep: strings from `text`, object keys from `key`.
pub fn json_value(text: BoxedStrategy<String>, key: BoxedStrategy<String>) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text.prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

/// A JSON object of up to four [`json_value`]s.
pub fn json_object(
    text: BoxedStrategy<String>,
    key: BoxedStrategy<String>,
) -> BoxedStrategy<Value> {
    prop::collection::vec((key.clone(), json_value(text, key)), 0..5)
        .prop_map(|kv| Value::Object(kv.into_iter().collect()))
        .boxed()
}

/// Anything as a body, up to a few hundred bytes: nothing, `json`, `shape` (the JSON a route
/// expects) cut in half, `text`, or raw bytes.
pub fn small_body(
    json: BoxedStrategy<Value>,
    text: BoxedStrategy<String>,
    shape: BoxedStrategy<Value>,
) -> BoxedStrategy<HostileBody> {
    prop_oneof![
        2 => Just(HostileBody::Empty),
        4 => json.prop_map(HostileBody::Json),
        2 => shape.prop_map(|v| {
            // Cut somewhere: broken JSON.
            let t = v.to_string();
            let cut = t.len() / 2;
            HostileBody::Text(t.get(..cut).unwrap_or("{").to_owned())
        }),
        1 => text.prop_map(HostileBody::Text),
        1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(HostileBody::Bytes),
    ]
    .boxed()
}

/// A `Content-Type`: none, JSON and its variants, other types, empty, any printable ASCII.
pub fn content_type() -> BoxedStrategy<Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("application/json".to_owned())),
        Just(Some("application/json; charset=utf-8".to_owned())),
        Just(Some("application/problem+json".to_owned())),
        Just(Some("text/plain".to_owned())),
        Just(Some("application/x-www-form-urlencoded".to_owned())),
        Just(Some("multipart/form-data; boundary=x".to_owned())),
        Just(Some("application/jsonx".to_owned())),
        Just(Some(String::new())),
        "[ -~]{0,30}".prop_map(Some),
    ]
    .boxed()
}

/// A value in a query string: numbers in and out of range, empty, and any `text`
/// percent-encoded.
pub fn query_value(text: BoxedStrategy<String>) -> BoxedStrategy<String> {
    prop_oneof![
        (0u64..40).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("4294967295".to_owned()),
        Just("4294967296".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just(String::new()),
        text.prop_map(|t| pct(&t)),
    ]
    .boxed()
}

/// A query string (with its `?`), or none: pairs whose names are one of `params` (the ones the
/// service reads) or any `text`, and malformed ones (the first of `params` repeated, or
/// without a value).
pub fn query(params: &[&str], text: BoxedStrategy<String>) -> BoxedStrategy<String> {
    let first = *params.first().expect("at least one parameter name");
    let mut names = each(params);
    names.push(text.clone().prop_map(|t| pct(&t)).boxed());
    let pair = (uniform(names), query_value(text)).prop_map(|(k, v)| format!("{k}={v}"));
    prop_oneof![
        3 => Just(String::new()),
        4 => prop::collection::vec(pair, 1..4).prop_map(|ps| format!("?{}", ps.join("&"))),
        1 => Just("?".to_owned()),
        1 => Just(format!("?&&=&{first}")),
        1 => Just(format!("?{first}=1&{first}=2")),
        1 => Just("?%FF=%FF".to_owned()),
    ]
    .boxed()
}

/// Paths no route takes, or takes only oddly: `/`, `//`, each of `near_misses` (paths the
/// service nearly serves: a trailing slash, other case, `.` and `..`), up to four segments of
/// percent-encoded `text`, and one very long segment; all equally likely.
pub fn odd_path(near_misses: &[&str], text: BoxedStrategy<String>) -> BoxedStrategy<String> {
    let mut arms = vec![Just("/".to_owned()).boxed(), Just("//".to_owned()).boxed()];
    arms.extend(each(near_misses));
    arms.push(
        prop::collection::vec(text.prop_map(|t| pct(&t)), 1..5)
            .prop_map(|segs| format!("/{}", segs.join("/")))
            .boxed(),
    );
    arms.push(
        (1usize..20_000)
            .prop_map(|n| format!("/{}", "a".repeat(n)))
            .boxed(),
    );
    uniform(arms)
}

/// A method: the usual ones, and two no server knows.
pub fn method() -> BoxedStrategy<Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::POST),
        Just(Method::PUT),
        Just(Method::DELETE),
        Just(Method::PATCH),
        Just(Method::HEAD),
        Just(Method::OPTIONS),
        Just(Method::TRACE),
        Just(Method::from_bytes(b"PROPFIND").expect("method")),
        Just(Method::from_bytes(b"X-RARO").expect("method")),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// What must come back

/// Whether an answer (`json` is its body parsed, `Null` if it is not JSON; `text` the same body
/// as text) is a JSON error with a code and a message: `{"error": "...", "detalle": "..."}`
/// with a JSON content type. Returns why not.
pub fn error_json(
    status: StatusCode,
    headers: &HeaderMap,
    json: &Value,
    text: &str,
) -> Result<(), String> {
    let json_ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let code = json["error"].as_str().is_some_and(|s| !s.is_empty());
    let detalle = json["detalle"].as_str().is_some_and(|s| !s.is_empty());
    if json_ct && code && detalle {
        Ok(())
    } else {
        Err(format!(
            "{status} without a JSON error body: {:?}",
            truncate(text)
        ))
    }
}
