//! Python's `repr` of JSON values, for the `argsrepr` and `kwargsrepr` headers Celery writes
//! (what its logs and Flower show of a task's arguments).
//!
//! No program of ours reads these headers back: they are for display. Still, for the arguments
//! Celery's own captures hold, the text is exactly what Celery writes (the fixture tests
//! compare every header), and like Celery's it is cut to a bounded length, so a large argument
//! cannot bloat every message.

use serde_json::{Map, Value};

/// Python's `repr` of a list of JSON values, as Celery puts in `argsrepr` (for logs and
/// Flower). Close enough for display: strings in single quotes, None/True/False.
fn python_repr_list(items: &[Value]) -> String {
    let inner: Vec<String> = items.iter().map(python_repr).collect();
    truncate_repr(format!("[{}]", inner.join(", ")))
}

/// Celery's `argsrepr`: `()` when a task is sent without arguments (Celery's default empty
/// tuple), the list's repr otherwise (`[7]`, as `send_task(args=[7])` writes).
pub(crate) fn python_repr_args(args: &[Value]) -> String {
    if args.is_empty() {
        "()".to_owned()
    } else {
        python_repr_list(args)
    }
}

/// Python's `repr` of the arguments as a tuple, `(4,)` or `(1, 'a')`: what Celery writes when it
/// re-sends a task (its signature keeps the arguments as a tuple), in `argsrepr` and in the
/// text of `MaxRetriesExceededError`. Not cut to a length: callers that need it cut say so.
pub(crate) fn python_repr_tuple(args: &[Value]) -> String {
    let inner: Vec<String> = args.iter().map(python_repr).collect();
    match inner.len() {
        1 => format!("({},)", inner[0]),
        _ => format!("({})", inner.join(", ")),
    }
}

/// [`python_repr_tuple`] cut to Celery's `argsrepr` length.
pub(crate) fn python_repr_tuple_cut(args: &[Value]) -> String {
    truncate_repr(python_repr_tuple(args))
}

pub(crate) fn python_repr_dict(map: &Map<String, Value>) -> String {
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

/// Python's `repr` of one JSON value (strings in single quotes, None/True/False, lists and
/// dicts as Python prints them), cut to Celery's `argsrepr` length.
pub(crate) fn python_repr(v: &Value) -> String {
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
