//! The parts of a task body, `[args, kwargs, embed]`: what both readers of a body build, the
//! checked one in `task.rs` and the fast one in `fast.rs`.
//!
//! Its own file so that the fast reader can build these parts without depending on the task
//! message that uses it (the task module calls the fast reader, so that would be a circle).

use serde_json::{json, Map, Value};

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
    pub(crate) fn to_value(&self) -> Value {
        json!({
            "callbacks": self.callbacks,
            "errbacks": self.errbacks,
            "chain": self.chain,
            "chord": self.chord,
        })
    }

    pub(crate) fn from_value(v: &Value) -> Self {
        let get = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
        Embed {
            callbacks: get("callbacks"),
            errbacks: get("errbacks"),
            chain: get("chain"),
            chord: get("chord"),
        }
    }
}

/// A task body's parts: `args`, `kwargs` and the embedded signatures.
pub(crate) type Body = (Vec<Value>, Map<String, Value>, Embed);
