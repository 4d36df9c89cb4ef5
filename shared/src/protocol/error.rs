//! The one error every checked reader of this module returns, in its own file because all of
//! them (envelope, task, result, event) share it.
//!
//! A malformed document is always a [`ProtocolError`], never a panic, and its text names the
//! field and the problem: it is what a quarantine record says about the message. The fast
//! readers never build one; they give up, and the checked reader words the error.

use serde_json::Value;

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
