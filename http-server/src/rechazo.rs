//! axum's rejections said in Spanish, for the `detalle` of the services' JSON errors.
//!
//! The HTTP contract is in Spanish (routes, fields, error codes and messages), but a body that
//! is not JSON, a field of the wrong type or an id that is not a number is refused by axum's
//! extractors, whose messages are English sentences wrapped around serde's ("Failed to
//! deserialize the JSON body into the target type: cantidad: invalid type: string \"x\",
//! expected i64 at line 1 column 15"). Both services turn their rejections into errors through
//! these functions, so a client reads one language whichever layer refused it. serde's messages
//! have a handful of stable shapes; those are translated, and anything else is kept as it is
//! after a Spanish lead-in rather than lost.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};

/// The `detalle` for a refused JSON body.
pub fn json(rejection: &JsonRejection) -> String {
    let text = rejection.body_text();
    match rejection {
        JsonRejection::JsonSyntaxError(_) => format!(
            "el cuerpo no es JSON válido: {}",
            serde(strip(&text, "Failed to parse the request body as JSON: "))
        ),
        JsonRejection::JsonDataError(_) => format!(
            "el JSON no tiene la forma esperada: {}",
            serde(strip(
                &text,
                "Failed to deserialize the JSON body into the target type: "
            ))
        ),
        JsonRejection::MissingJsonContentType(_) => {
            "el cuerpo debe ir con `Content-Type: application/json`".to_string()
        }
        _ if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            "el cuerpo es demasiado grande".to_string()
        }
        _ => format!("no se pudo leer el cuerpo de la petición ({text})"),
    }
}

/// The `detalle` for a path parameter that does not parse (an id that is not a number).
pub fn path(rejection: &PathRejection) -> String {
    let text = rejection.body_text();
    let inner = strip(&text, "Invalid URL: ");
    // axum: "Cannot parse `abc` to a `i64`" (or "... `value` with value `abc` to a `i64`").
    if let Some(rest) = inner.strip_prefix("Cannot parse ") {
        if let Some((value, kind)) = rest.rsplit_once(" to a ") {
            let value = value
                .rsplit_once("with value ")
                .map_or(value, |(_, v)| v)
                .trim_matches('`');
            return format!(
                "«{value}» no es {} válido en la ruta",
                tipo(kind.trim_matches('`'))
            );
        }
    }
    format!("parámetro de ruta inválido: {}", serde(inner))
}

/// The `detalle` for a query string that does not parse.
pub fn query(rejection: &QueryRejection) -> String {
    let text = rejection.body_text();
    format!(
        "consulta inválida: {}",
        serde(strip(&text, "Failed to deserialize query string: "))
    )
}

fn strip<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.strip_prefix(prefix).unwrap_or(text)
}

/// serde's (and serde_json's) message, in Spanish where its shape is known. A field path that
/// serde_path_to_error puts first (`cantidad: ...`) is kept.
fn serde(message: &str) -> String {
    let (message, place) = match message.rsplit_once(" at line ") {
        Some((m, pos)) => match pos.split_once(" column ") {
            Some((line, column)) => (m, format!(" (línea {line}, columna {column})")),
            None => (message, String::new()),
        },
        None => (message, String::new()),
    };
    let (field, message) = field_prefix(message);
    let said = translate(message);
    match field {
        Some(f) => format!("{f}: {said}{place}"),
        None => format!("{said}{place}"),
    }
}

/// `cantidad: invalid type ...` → (`Some("cantidad")`, `invalid type ...`); serde's own
/// messages never start with a bare word and a colon, so anything else has no path.
fn field_prefix(message: &str) -> (Option<&str>, &str) {
    match message.split_once(": ") {
        Some((path, rest))
            if !path.is_empty()
                && path
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '[' | ']' | '-'))
                && !["invalid type", "invalid value", "invalid length"].contains(&path) =>
        {
            (Some(path), rest)
        }
        _ => (None, message),
    }
}

fn translate(message: &str) -> String {
    if let Some(field) = message.strip_prefix("missing field ") {
        return format!("falta el campo {field}");
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return match rest.split_once(", expected ") {
            Some((field, expected)) => {
                format!(
                    "campo desconocido {field} (se esperaba {})",
                    expected_es(expected)
                )
            }
            None => format!("campo desconocido {rest}"),
        };
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        return match rest.split_once(", expected ") {
            Some((value, expected)) => {
                format!(
                    "valor desconocido {value} (se esperaba {})",
                    expected_es(expected)
                )
            }
            None => format!("valor desconocido {rest}"),
        };
    }
    for (english, spanish) in [
        ("invalid type: ", "tipo inválido: "),
        ("invalid value: ", "valor inválido: "),
        ("invalid length ", "longitud inválida: "),
    ] {
        if let Some(rest) = message.strip_prefix(english) {
            return match rest.split_once(", expected ") {
                Some((got, expected)) => format!(
                    "{spanish}{}, se esperaba {}",
                    unexpected_es(got),
                    expected_es(expected)
                ),
                None => format!("{spanish}{rest}"),
            };
        }
    }
    if let Some(field) = message.strip_prefix("duplicate field ") {
        return format!("campo repetido {field}");
    }
    let fixed = [
        (
            "EOF while parsing a value",
            "el JSON termina antes de tiempo",
        ),
        (
            "EOF while parsing an object",
            "el JSON termina antes de cerrar un objeto",
        ),
        (
            "EOF while parsing a list",
            "el JSON termina antes de cerrar una lista",
        ),
        (
            "EOF while parsing a string",
            "el JSON termina antes de cerrar un texto",
        ),
        ("expected value", "se esperaba un valor JSON"),
        ("expected `:`", "se esperaba `:`"),
        ("expected `,` or `}`", "se esperaba `,` o `}`"),
        ("expected `,` or `]`", "se esperaba `,` o `]`"),
        ("key must be a string", "las claves deben ser textos"),
        ("trailing characters", "sobran caracteres tras el JSON"),
        ("trailing comma", "sobra una coma"),
        ("invalid number", "número inválido"),
        ("number out of range", "número fuera de rango"),
        (
            "recursion limit exceeded",
            "el JSON anida demasiados niveles",
        ),
        (
            "control character (\\u0000-\\u001F) found while parsing a string",
            "carácter de control en un texto",
        ),
        ("invalid escape", "secuencia de escape inválida"),
        (
            "invalid unicode code point",
            "punto de código Unicode inválido",
        ),
        ("invalid digit found in string", "no es un número"),
        (
            "cannot parse integer from empty string",
            "está vacío, se esperaba un número",
        ),
        (
            "number too large to fit in target type",
            "número demasiado grande",
        ),
        (
            "number too small to fit in target type",
            "número demasiado pequeño",
        ),
        ("invalid float literal", "no es un número"),
    ];
    for (english, spanish) in fixed {
        if message == english {
            return spanish.to_string();
        }
    }
    message.to_string()
}

/// serde's "what it got": `string "x"`, `integer `-3``, `floating point `1.5``, `boolean `true``,
/// `null`, `map`, `sequence`...
fn unexpected_es(got: &str) -> String {
    for (english, spanish) in [
        ("string ", "el texto "),
        ("integer ", "el entero "),
        ("floating point ", "el número "),
        ("boolean ", "el booleano "),
    ] {
        if let Some(value) = got.strip_prefix(english) {
            return format!("{spanish}{value}");
        }
    }
    match got {
        "null" => "null".to_string(),
        "map" => "un objeto".to_string(),
        "sequence" => "una lista".to_string(),
        "unit value" => "un valor vacío".to_string(),
        other => other.to_string(),
    }
}

/// serde's "what it expected": a Rust type or a phrase.
fn expected_es(expected: &str) -> String {
    if let Some(alternatives) = expected.strip_prefix("one of ") {
        return format!("uno de {alternatives}");
    }
    // Two variants: "`entrada` or `salida`"; two kinds: "either a string or a number".
    if expected.contains("` or `") {
        return expected.replace("` or `", "` o `");
    }
    if let Some(alternatives) = expected.strip_prefix("either ") {
        return match alternatives.split_once(" or ") {
            Some((a, b)) => format!("{} o {}", tipo(a), tipo(b)),
            None => alternatives.to_string(),
        };
    }
    tipo(expected)
}

/// A Rust or serde type name as a client would say it.
fn tipo(kind: &str) -> String {
    match kind {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128"
        | "usize" | "an integer" => "un número entero".to_string(),
        "f32" | "f64" | "a number" => "un número".to_string(),
        "a string" | "a borrowed string" | "string" => "un texto".to_string(),
        "a boolean" | "bool" => "un booleano".to_string(),
        "a sequence" => "una lista".to_string(),
        "a map" => "un objeto".to_string(),
        other if other.starts_with("struct ") => "un objeto".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::serde;

    #[test]
    fn serde_messages_are_said_in_spanish() {
        for (english, spanish) in [
            (
                "missing field `nombre` at line 1 column 2",
                "falta el campo `nombre` (línea 1, columna 2)",
            ),
            (
                "cantidad: invalid type: string \"x\", expected i64 at line 1 column 15",
                "cantidad: tipo inválido: el texto \"x\", se esperaba un número entero (línea 1, columna 15)",
            ),
            (
                "tipo: unknown variant `robo`, expected `entrada` or `salida`",
                "tipo: valor desconocido `robo` (se esperaba `entrada` o `salida`)",
            ),
            (
                "expected value at line 1 column 1",
                "se esperaba un valor JSON (línea 1, columna 1)",
            ),
            ("limite: invalid digit found in string", "limite: no es un número"),
            (
                "precio: invalid type: map, expected f64",
                "precio: tipo inválido: un objeto, se esperaba un número",
            ),
            ("something serde never said", "something serde never said"),
        ] {
            assert_eq!(serde(english), spanish, "{english}");
        }
    }
}
