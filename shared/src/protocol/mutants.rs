//! Inputs for the tests that hold each fast reader to its checked reader: small random edits
//! of a real document, aimed at the type checks, repeated keys and JSON edge cases.
//!
//! Shared by the envelope's tests and the task body's, so both are tried on the same kinds of
//! damage; deterministic, so a failure found once is found on every run.

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
