//! Hostile HTTP input, generated with proptest: random JSON, wrong types, bodies over the
//! limit (with and without `Content-Length`), odd paths and ids (negative, huge, non-numeric,
//! unicode, percent-encoded, very long), wrong methods and content types, against every route
//! of the real router on a real SQLite file (or, with `TEST_DATABASE=postgres`, a private
//! PostgreSQL) and a private Redis.
//!
//! Most requests carry a valid bearer token; some none, an invalid one or a malformed header
//! (a write without a valid token is a JSON 401 that changes nothing).
//!
//! Every answer must be a correct one or a JSON `{"error", "detalle"}` 4xx; never a 5xx, a
//! panic or a hang. Afterwards the database must still hold only valid productos, as many as
//! the successful POSTs and DELETEs say, and Redis exactly the movements that were accepted.
//!
//! The generic pieces (odd paths, queries, methods, content types, broken bodies) are
//! `testkit::hostile_http`'s; the inventory's shapes, words and ids are here. The monitor's
//! routes get the same treatment in `monitor-service/tests/hostil.rs`.
//!
//! `PROPTEST_CASES` sets the number of requests (default 3000); `HOSTIL_TRAZA=1` prints each
//! request before it is sent.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, Method, Request, StatusCode};
use common::{Respuesta, TestApp};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use testkit::hostile_http::{
    self, cases, content_type, method, pct, text_with, truncate, HostileBody, HostileRequest,
};

/// The longest any request may take, however hostile: a hang fails the test.
const LIMITE: Duration = Duration::from_secs(30);
const SEMILLA: usize = 20;
const MAX: usize = inventario_service::MAX_BODY_BYTES;

// ---------------------------------------------------------------------------------------------
// What is sent

/// The request `p` is, with `authorization` as its header, for the router; `None` if the
/// `http` crate refuses its URI.
fn peticion_http(p: &HostileRequest, authorization: Option<&str>) -> Option<Request<Body>> {
    let mut builder = Request::builder()
        .method(p.method.clone())
        .uri(p.uri.as_str());
    if let Some(ct) = &p.content_type {
        builder = builder.header(header::CONTENT_TYPE, ct.as_str());
    }
    if let Some(a) = authorization {
        builder = builder.header(header::AUTHORIZATION, a);
    }
    let body = match &p.body {
        HostileBody::Empty => Body::empty(),
        HostileBody::Json(v) => Body::from(v.to_string()),
        HostileBody::Text(t) => Body::from(t.clone()),
        HostileBody::Bytes(b) => Body::from(b.clone()),
        HostileBody::Huge { len, stream } => cuerpo_enorme(*len, *stream),
    };
    // A URI the generator made that `http` refuses would be refused by hyper before the
    // router too (400): nothing to test in process.
    builder.body(body).ok()
}

/// `len` bytes: a valid producto padded with spaces (valid JSON, just too long), sent whole
/// or in 8 KiB chunks without a length.
fn cuerpo_enorme(len: usize, stream: bool) -> Body {
    let mut text = json!({"nombre": "Relleno", "cantidad": 1, "precio": 1.0}).to_string();
    text.push_str(&" ".repeat(len.saturating_sub(text.len())));
    if !stream {
        return Body::from(text);
    }
    let chunks: Vec<Result<Bytes, std::io::Error>> = text
        .into_bytes()
        .chunks(8 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Body::from_stream(futures_util::stream::iter(chunks))
}

// ---------------------------------------------------------------------------------------------
// Strategies

/// Any text, and the two words a movement's `tipo` takes.
fn texto() -> BoxedStrategy<String> {
    text_with(&["entrada", "salida"])
}

/// Any JSON, its keys often the inventory's field names.
fn json_valor() -> BoxedStrategy<Value> {
    hostile_http::json_value(texto(), clave())
}

fn clave() -> BoxedStrategy<String> {
    prop_oneof![
        Just("nombre".to_owned()),
        Just("cantidad".to_owned()),
        Just("precio".to_owned()),
        Just("tipo".to_owned()),
        Just("id".to_owned()),
        texto(),
    ]
    .boxed()
}

fn nombre() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => "[A-Za-zñáéíóú0-9][A-Za-zñáéíóú0-9 ,.]{0,40}".prop_map(Value::from),
        1 => Just(json!("")),
        1 => "[ \\t\\n]{1,5}".prop_map(Value::from),
        1 => "\\PC{115,125}".prop_map(Value::from),
        1 => "[\\x00-\\x1f]{1,2}[a-z]{0,5}".prop_map(Value::from),
        1 => texto().prop_map(Value::from),
    ]
    .boxed()
}

fn cantidad() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => (0i64..1000).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => prop_oneof![
            Just(json!(1_000_000_000)),
            Just(json!(1_000_000_001)),
            Just(json!(-1)),
            Just(json!(1.5)),
            Just(json!(2.0)),
            Just(json!(u64::MAX)),
            Just(json!(1e300)),
            Just(json!("7")),
        ],
    ]
    .boxed()
}

fn precio() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => (0.0f64..1000.0).prop_map(Value::from),
        1 => any::<f64>().prop_map(Value::from),
        1 => prop_oneof![
            Just(json!(0)),
            Just(json!(-0.0)),
            Just(json!(-0.01)),
            Just(json!(1e9)),
            Just(json!(1_000_000_000.5)),
            Just(json!(5e-324)),
            Just(json!(i64::MAX)),
            Just(json!("1.5")),
        ],
    ]
    .boxed()
}

/// A field as a client might send it: usually plausible, sometimes any JSON, sometimes absent.
fn campo(s: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        8 => s.prop_map(Some),
        1 => json_valor().prop_map(Some),
        1 => Just(None),
    ]
    .boxed()
}

fn objeto(campos: Vec<(&'static str, Option<Value>)>, extra: Option<(String, Value)>) -> Value {
    let mut o = serde_json::Map::new();
    for (k, v) in campos {
        if let Some(v) = v {
            o.insert(k.to_owned(), v);
        }
    }
    if let Some((k, v)) = extra {
        o.insert(k, v);
    }
    Value::Object(o)
}

fn producto() -> BoxedStrategy<Value> {
    (
        campo(nombre()),
        campo(cantidad()),
        campo(precio()),
        proptest::option::weighted(0.1, (clave(), json_valor())),
    )
        .prop_map(|(n, c, p, extra)| {
            objeto(vec![("nombre", n), ("cantidad", c), ("precio", p)], extra)
        })
        .boxed()
}

fn movimiento() -> BoxedStrategy<Value> {
    let tipo = prop_oneof![
        4 => Just(json!("entrada")),
        4 => Just(json!("salida")),
        1 => texto().prop_map(Value::from),
    ];
    let cant = prop_oneof![
        6 => (1i64..20).prop_map(Value::from),
        1 => cantidad(),
    ];
    (
        campo(tipo),
        campo(cant),
        proptest::option::weighted(0.1, (clave(), json_valor())),
    )
        .prop_map(|(t, c, extra)| objeto(vec![("tipo", t), ("cantidad", c)], extra))
        .boxed()
}

/// Anything as a body, up to a few hundred bytes; the broken JSON is a cut producto.
fn cuerpo_pequeno() -> BoxedStrategy<HostileBody> {
    hostile_http::small_body(json_valor(), texto(), producto())
}

/// Anything as a body, sometimes over the limit.
fn cuerpo() -> BoxedStrategy<HostileBody> {
    prop_oneof![
        10 => cuerpo_pequeno(),
        1 => ((MAX + 1)..(MAX + 200_000), any::<bool>())
            .prop_map(|(len, stream)| HostileBody::Huge { len, stream }),
    ]
    .boxed()
}

/// The body for a route that takes one: mostly its own shape, sometimes anything.
fn cuerpo_de(forma: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<HostileBody> {
    prop_oneof![8 => forma.prop_map(HostileBody::Json), 2 => cuerpo()].boxed()
}

/// The content type for a route that takes JSON: mostly right.
fn tipo_json() -> BoxedStrategy<Option<String>> {
    prop_oneof![8 => Just(Some("application/json".to_owned())), 2 => content_type()].boxed()
}

/// A path segment where an id goes: existing ids, other numbers, and anything else.
fn id() -> BoxedStrategy<String> {
    prop_oneof![
        6 => (1i64..=(SEMILLA as i64 + 10)).prop_map(|n| n.to_string()),
        2 => any::<i64>().prop_map(|n| n.to_string()),
        1 => prop_oneof![
            Just("0".to_owned()),
            Just("-0".to_owned()),
            Just("+1".to_owned()),
            Just("01".to_owned()),
            Just("1.5".to_owned()),
            Just("1e3".to_owned()),
            Just("0x10".to_owned()),
            Just("9223372036854775808".to_owned()),
            Just("-9223372036854775809".to_owned()),
            Just("99999999999999999999999999999".to_owned()),
            Just("%00".to_owned()),
            Just("%FF".to_owned()),
            Just("%2F".to_owned()),
            Just("%20".to_owned()),
            Just("..".to_owned()),
            Just("1;x=2".to_owned()),
            Just("*".to_owned()),
        ],
        2 => texto().prop_map(|t| pct(&t)),
        1 => (1usize..20_000, "[0-9a-z]").prop_map(|(n, c)| c.repeat(n)),
    ]
    .boxed()
}

/// A query string, with the list's `limit` and `offset` among the names.
fn consulta() -> BoxedStrategy<String> {
    hostile_http::query(&["limit", "offset"], texto())
}

/// Paths no route takes, or takes only oddly: the generic ones and the inventory's near misses.
fn ruta_rara() -> BoxedStrategy<String> {
    hostile_http::odd_path(
        &[
            "/inventario/",
            "//inventario",
            "/INVENTARIO",
            "/inventario/1/",
            "/inventario/1/movimientos/2",
            "/inventario/./1",
            "/inventario/../health",
            "/tareas",
            "/tareas/",
            "/health/",
            "/metrics/x",
            "/%69nventario",
        ],
        texto(),
    )
}

fn peticion() -> BoxedStrategy<HostileRequest> {
    let p = |method: Method, uri: String, content_type: Option<String>, body: HostileBody| {
        HostileRequest {
            method,
            uri,
            content_type,
            body,
        }
    };
    prop_oneof![
        5 => (tipo_json(), cuerpo_de(producto()))
            .prop_map(move |(ct, c)| p(Method::POST, "/inventario".into(), ct, c)),
        4 => (id(), tipo_json(), cuerpo_de(producto()))
            .prop_map(move |(id, ct, c)| p(Method::PUT, format!("/inventario/{id}"), ct, c)),
        3 => id().prop_map(move |id| p(Method::DELETE, format!("/inventario/{id}"), None, HostileBody::Empty)),
        3 => id().prop_map(move |id| p(Method::GET, format!("/inventario/{id}"), None, HostileBody::Empty)),
        2 => consulta().prop_map(move |q| p(Method::GET, format!("/inventario{q}"), None, HostileBody::Empty)),
        3 => (id(), tipo_json(), cuerpo_de(movimiento())).prop_map(move |(id, ct, c)| {
            p(Method::POST, format!("/inventario/{id}/movimientos"), ct, c)
        }),
        1 => id().prop_map(move |id| p(Method::GET, format!("/tareas/{id}"), None, HostileBody::Empty)),
        1 => prop_oneof![Just("/health"), Just("/ready"), Just("/metrics")]
            .prop_map(move |r| p(Method::GET, r.into(), None, HostileBody::Empty)),
        5 => (
            method(),
            prop_oneof![
                Just("/inventario".to_owned()),
                id().prop_map(|id| format!("/inventario/{id}")),
                id().prop_map(|id| format!("/inventario/{id}/movimientos")),
                id().prop_map(|id| format!("/tareas/{id}")),
                Just("/health".to_owned()),
                Just("/ready".to_owned()),
                Just("/metrics".to_owned()),
                ruta_rara(),
            ],
            consulta(),
            content_type(),
            cuerpo(),
        )
            .prop_map(move |(m, ruta, q, ct, c)| p(m, format!("{ruta}{q}"), ct, c)),
    ]
    .boxed()
}

/// The `Authorization` header: mostly a valid token, sometimes none or anything else.
fn autorizacion() -> BoxedStrategy<Option<String>> {
    let valido = format!("Bearer {}", common::token(common::SUB));
    prop_oneof![
        8 => Just(Some(valido.clone())),
        1 => Just(None),
        1 => prop_oneof![
            Just("Bearer".to_owned()),
            Just("Bearer ".to_owned()),
            Just("Basic dXNlcjpwYXNz".to_owned()),
            Just(valido.to_lowercase()),
            Just(format!("{valido}x")),
            "Bearer [ -~]{0,80}".prop_map(|t| t.trim_end().to_owned()),
            "[ -~]{0,40}",
        ]
        .prop_map(Some),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// What must come back

fn producto_valido(p: &Value) -> Result<(), String> {
    let ok = p["id"].is_i64()
        && p["nombre"]
            .as_str()
            .is_some_and(|n| !n.trim().is_empty() && n.chars().count() <= 120)
        && p["cantidad"]
            .as_i64()
            .is_some_and(|c| (0..=1_000_000_000).contains(&c))
        && p["precio"]
            .as_f64()
            .is_some_and(|x| (0.0..=1e9).contains(&x));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "not a valid producto: {}",
            truncate(&p.to_string())
        ))
    }
}

/// A JSON error with a code and a message.
fn error_json(r: &Respuesta) -> Result<(), String> {
    hostile_http::error_json(r.status, &r.headers, &r.json, &r.text)
}

/// Checks one answer; returns why it is wrong.
fn comprobar(p: &HostileRequest, r: &Respuesta) -> Result<(), String> {
    let status = r.status;
    if status.is_server_error() {
        return Err(format!("{status}: {}", truncate(&r.text)));
    }
    if p.method == Method::HEAD {
        // No body by definition; the status was checked.
        return Ok(());
    }
    if status.is_client_error() {
        return error_json(r);
    }
    match status {
        StatusCode::CREATED => {
            producto_valido(&r.json)?;
            let id = r.json["id"].as_i64().unwrap_or_default();
            let location = r
                .headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok());
            if location != Some(format!("/inventario/{id}").as_str()) {
                return Err(format!("201 with Location {location:?}"));
            }
            Ok(())
        }
        StatusCode::NO_CONTENT if r.text.is_empty() => Ok(()),
        StatusCode::ACCEPTED => match r.json["tarea_id"].as_str() {
            Some(id) if !id.is_empty() && r.json["estado"] == "PENDING" => Ok(()),
            _ => Err(format!("202 without a task: {}", r.text)),
        },
        StatusCode::OK => match &r.json {
            Value::Array(productos) => productos.iter().try_for_each(producto_valido),
            Value::Object(o) if o.contains_key("nombre") => producto_valido(&r.json),
            Value::Object(o) if o.contains_key("tarea_id") || o.contains_key("status") => Ok(()),
            Value::Object(o) if o.get("estado").is_some_and(|e| e == "listo") => Ok(()),
            // /metrics: Prometheus text (empty before the first request is counted).
            Value::Null
                if r.headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("text/plain")) =>
            {
                Ok(())
            }
            _ => Err(format!("unexpected 200: {}", truncate(&r.text))),
        },
        other => Err(format!("unexpected {other}: {}", truncate(&r.text))),
    }
}

// ---------------------------------------------------------------------------------------------
// The tests

#[derive(Default)]
struct Cuenta {
    enviadas: u64,
    uri_invalida: u64,
    creados: i64,
    borrados: i64,
    movimientos: u64,
    por_status: BTreeMap<u16, u64>,
    mas_lenta: Duration,
}

#[test]
fn hostile_requests_get_a_correct_answer_or_a_json_4xx_and_the_database_stays_valid() {
    // Generating nested strategies takes deep stacks in debug builds: a thread with room.
    let run = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(hostil)
        .expect("thread");
    if let Err(panic) = run.join() {
        std::panic::resume_unwind(panic);
    }
}

fn hostil() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let app = rt.block_on(TestApp::start());
    let cuenta = RefCell::new(Cuenta::default());
    let config = Config {
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::with_cases(cases(3000))
    };
    let mut runner = TestRunner::new(config);
    let started = Instant::now();
    let result = runner.run(&(peticion(), autorizacion()), |(p, autorizacion)| {
        let Some(request) = peticion_http(&p, autorizacion.as_deref()) else {
            cuenta.borrow_mut().uri_invalida += 1;
            return Ok(());
        };
        if std::env::var_os("HOSTIL_TRAZA").is_some() {
            eprintln!("{p:?} Authorization: {autorizacion:?}");
        }
        let sent = Instant::now();
        let r = rt
            .block_on(async { tokio::time::timeout(LIMITE, app.send(request)).await })
            .map_err(|_| TestCaseError::fail(format!("no answer within {LIMITE:?}")))?;
        let took = sent.elapsed();
        let mut c = cuenta.borrow_mut();
        c.enviadas += 1;
        c.mas_lenta = c.mas_lenta.max(took);
        *c.por_status.entry(r.status.as_u16()).or_default() += 1;
        match r.status {
            StatusCode::CREATED => c.creados += 1,
            StatusCode::NO_CONTENT => c.borrados += 1,
            StatusCode::ACCEPTED => c.movimientos += 1,
            _ => {}
        }
        drop(c);
        comprobar(&p, &r).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let c = cuenta.into_inner();
    println!(
        "hostile HTTP: {} requests in {:.1} s ({} URIs refused by the http crate), statuses {:?}, \
         slowest {} ms; created {}, deleted {}, movements queued {}",
        c.enviadas,
        started.elapsed().as_secs_f64(),
        c.uri_invalida,
        c.por_status,
        c.mas_lenta.as_millis(),
        c.creados,
        c.borrados,
        c.movimientos
    );

    rt.block_on(async {
        // Every producto still valid, and as many as the successful writes say.
        let all = app.get("/inventario").await;
        assert_eq!(all.status, StatusCode::OK);
        let productos = all.json.as_array().expect("an array");
        for p in productos {
            producto_valido(p).unwrap();
        }
        let expected = SEMILLA as i64 + c.creados - c.borrados;
        assert_eq!(productos.len() as i64, expected, "productos after the run");
        assert_eq!(app.state.store.count().await.unwrap() as i64, expected);
        // The same rules, straight from SQL. On SQLite the types too: it would store a REAL or
        // a TEXT in an INTEGER column if anything let one through, where PostgreSQL's typed
        // columns refuse them (and its text cannot hold a NUL at all).
        let reglas = "cantidad < 0 OR cantidad > 1000000000 OR precio < 0 OR precio > 1000000000 \
                      OR length(trim(nombre)) NOT BETWEEN 1 AND 120";
        let tipos =
            " OR typeof(cantidad) != 'integer' OR typeof(precio) NOT IN ('real', 'integer') \
                     OR typeof(nombre) != 'text' OR instr(nombre, char(0)) > 0";
        let tipos = if app.state.store.is_postgres() {
            ""
        } else {
            tipos
        };
        let broken = app
            .contar(&format!(
                "SELECT count(*) FROM productos WHERE {reglas}{tipos}"
            ))
            .await;
        assert_eq!(broken, 0, "productos breaking the rules");
        // Every accepted movement, and nothing else, is waiting in its queue (no worker runs).
        let list = shared::keys::queue_list(common::QUEUE, shared::worker::BUSINESS_PRIORITY);
        let queued: u64 = app.server.cli(&["LLEN", &list]).parse().unwrap();
        assert_eq!(queued, c.movimientos, "movements in Redis");
        assert_eq!(app.get("/health").await.status, StatusCode::OK);
        assert_eq!(app.get("/ready").await.status, StatusCode::OK);
    });
}

/// The body limit, exactly: `MAX_BODY_BYTES` is accepted, one byte more is a JSON 413 on every
/// route that reads a body, whether the size is announced (`Content-Length`) or not (chunked),
/// and the refused requests write nothing.
#[tokio::test]
async fn the_body_limit_is_a_json_413_on_every_body_route() {
    let app = TestApp::start().await;
    let before = app.get("/inventario").await.json;
    // Producto 1's stored stock, so that the PUT (without If-Match) may replace it.
    let producto = json!({"nombre": "Límite", "cantidad": 240, "precio": 1.0});
    let movimiento = json!({"tipo": "entrada", "cantidad": 1});
    let rutas = [
        (Method::POST, "/inventario", &producto),
        (Method::PUT, "/inventario/1", &producto),
        (Method::POST, "/inventario/1/movimientos", &movimiento),
    ];
    let relleno = |v: &Value, len: usize| {
        let mut t = v.to_string();
        t.push_str(&" ".repeat(len - t.len()));
        t
    };
    for (method, uri, cuerpo) in &rutas {
        for stream in [false, true] {
            let text = relleno(cuerpo, MAX + 1);
            let body = if stream {
                Body::from_stream(futures_util::stream::iter(
                    text.into_bytes()
                        .chunks(4096)
                        .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
                        .collect::<Vec<_>>(),
                ))
            } else {
                Body::from(text)
            };
            let r = app
                .raw(method.clone(), uri, Some("application/json"), body)
                .await;
            let what = format!("{method} {uri} with {} bytes (stream: {stream})", MAX + 1);
            assert_eq!(
                r.status,
                StatusCode::PAYLOAD_TOO_LARGE,
                "{what}: {}",
                r.text
            );
            assert_eq!(r.json["error"], "cuerpo_demasiado_grande", "{what}");
            error_json(&r).unwrap();
        }
    }
    // Nothing the refused requests carried was written or queued.
    assert_eq!(app.get("/inventario").await.json, before);
    assert_eq!(app.server.cli(&["DBSIZE"]), "0");

    // Exactly the limit is fine.
    for (method, uri, cuerpo) in &rutas {
        let r = app
            .raw(
                method.clone(),
                uri,
                Some("application/json"),
                relleno(cuerpo, MAX),
            )
            .await;
        assert!(
            r.status.is_success(),
            "{method} {uri} at the limit: {}",
            r.text
        );
    }
}

/// The bug the hostile run found: a name starting with NUL passed validation (Rust's `trim`
/// and character count saw a non-empty name) but broke the table's CHECK (SQLite's `length()`
/// stops at NUL), answering 503. Control characters are now a 422.
#[tokio::test]
async fn control_characters_in_a_name_are_a_422_not_a_503() {
    let app = TestApp::start().await;
    for nombre in [
        "\u{0}",
        "\u{0}Arroz",
        "Arroz\u{0}",
        " \u{0} ",
        "Arroz\u{1b}[31m",
        "a\nb",
    ] {
        let body = json!({"nombre": nombre, "cantidad": 1, "precio": 1.0});
        for (method, uri) in [
            (Method::POST, "/inventario"),
            (Method::PUT, "/inventario/1"),
        ] {
            let r = app.json(method.clone(), uri, &body).await;
            assert_eq!(
                r.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{method} {nombre:?}: {}",
                r.text
            );
            assert_eq!(r.json["error"], "validacion");
        }
    }
    // Whitespace around the name is still trimmed, not refused.
    let body = json!({"nombre": "\t Arroz \n", "cantidad": 1, "precio": 1.0});
    let r = app.json(Method::POST, "/inventario", &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["nombre"], "Arroz");
}
