//! JSON text written the way Python's `json.dumps` writes it, for everything we leave in Redis.
//!
//! Celery and kombu read any JSON, so nothing depends on it to be understood: it exists so that
//! what our programs write reads exactly like what Celery writes, and our results and messages
//! can be compared byte for byte with Celery's own traffic.

use serde::Serialize;

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
}
