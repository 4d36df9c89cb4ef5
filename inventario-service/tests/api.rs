//! The CRUD routes and their validation, against a real SQLite file, through the real router.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use serde_json::{json, Value};

#[tokio::test]
async fn a_fresh_database_lists_the_twenty_seeded_productos_and_pages() {
    let app = TestApp::start().await;
    let all = app.get("/inventario").await;
    assert_eq!(all.status, StatusCode::OK);
    let productos = all.json.as_array().expect("an array");
    assert_eq!(productos.len(), 20);
    for p in productos {
        assert!(p["id"].is_i64(), "{p}");
        assert!(!p["nombre"].as_str().unwrap().is_empty());
        assert!(p["cantidad"].as_i64().unwrap() >= 0);
        assert!(p["precio"].as_f64().unwrap() >= 0.0);
    }

    let page = app.get("/inventario?limit=5&offset=17").await;
    assert_eq!(page.status, StatusCode::OK);
    let ids: Vec<i64> = page
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [18, 19, 20]);
    assert_eq!(
        app.get("/inventario?limit=2")
            .await
            .json
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(app.get("/inventario?offset=20").await.json, json!([]));
}

#[tokio::test]
async fn create_read_replace_delete() {
    let app = TestApp::start().await;
    let created = app
        .json(
            Method::POST,
            "/inventario",
            &json!({"nombre": "  Miel de azahar 500 g ", "cantidad": 12, "precio": 7.25}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.json["id"].as_i64().unwrap();
    assert_eq!(created.json["nombre"], "Miel de azahar 500 g");
    assert_eq!(
        created.headers["location"],
        format!("/inventario/{id}").as_str()
    );

    assert_eq!(created.json["version"], 1);
    assert_eq!(created.headers["etag"], "\"1\"");
    let read = app.get(&format!("/inventario/{id}")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.json, created.json);
    assert_eq!(read.headers["etag"], "\"1\"");

    // A new stock by hand needs the version it was decided on.
    let replaced = app
        .con_if_match(
            Method::PUT,
            &format!("/inventario/{id}"),
            "\"1\"",
            &json!({"nombre": "Miel de romero 500 g", "cantidad": 0, "precio": 0}),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);
    assert_eq!(replaced.headers["etag"], "\"2\"");
    let read = app.get(&format!("/inventario/{id}")).await.json;
    assert_eq!(
        (&read["nombre"], &read["cantidad"], &read["precio"]),
        (&json!("Miel de romero 500 g"), &json!(0), &json!(0.0))
    );

    let deleted = app.delete(&format!("/inventario/{id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = app.get(&format!("/inventario/{id}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.json["error"], "producto_no_encontrado");
    assert_eq!(
        app.delete(&format!("/inventario/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    let put_missing = app
        .json(
            Method::PUT,
            "/inventario/999",
            &json!({"nombre": "x", "cantidad": 1, "precio": 1}),
        )
        .await;
    assert_eq!(put_missing.status, StatusCode::NOT_FOUND);
    assert_eq!(put_missing.json["error"], "producto_no_encontrado");
}

/// One bad request: method, uri, content type, body, expected status, expected error code.
type Caso<'a> = (Method, &'a str, Option<&'a str>, String, u16, &'a str);

/// Every bad request gets its JSON error and 4xx, and writes nothing.
#[tokio::test]
async fn every_bad_request_is_a_json_4xx_and_writes_nothing() {
    let app = TestApp::start().await;
    let before = app.get("/inventario").await.json;
    let ok = |nombre: Value, cantidad: Value, precio: Value| {
        json!({"nombre": nombre, "cantidad": cantidad, "precio": precio}).to_string()
    };
    let json_ct = Some("application/json");
    let long_name = "a".repeat(121);
    let huge = format!(
        r#"{{"nombre": "{}", "cantidad": 1, "precio": 1}}"#,
        "a".repeat(70 * 1024)
    );
    let cases: Vec<Caso> = vec![
        (
            Method::POST,
            "/inventario",
            json_ct,
            ok(json!(""), json!(1), json!(1)),
            422,
            "validacion",
        ),
        (
            Method::POST,
            "/inventario",
            json_ct,
            ok(json!("   "), json!(1), json!(1)),
            422,
            "validacion",
        ),
        (
            Method::POST,
            "/inventario",
            json_ct,
            ok(json!(long_name), json!(1), json!(1)),
            422,
            "validacion",
        ),
        (
            Method::POST,
            "/inventario",
            json_ct,
            ok(json!("x"), json!(-1), json!(1)),
            422,
            "validacion",
        ),
        (
            Method::POST,
            "/inventario",
            json_ct,
            ok(json!("x"), json!(1), json!(-0.5)),
            422,
            "validacion",
        ),
        (
            Method::POST,
            "/inventario",
            json_ct,
            ok(json!("x"), json!(1.5), json!(1)),
            422,
            "tipos_invalidos",
        ),
        (
            Method::POST,
            "/inventario",
            json_ct,
            ok(json!("x"), json!("3"), json!(1)),
            422,
            "tipos_invalidos",
        ),
        (
            Method::POST,
            "/inventario",
            json_ct,
            ok(json!("x"), json!(1), json!("caro")),
            422,
            "tipos_invalidos",
        ),
        (
            Method::POST,
            "/inventario",
            json_ct,
            ok(json!(7), json!(1), json!(1)),
            422,
            "tipos_invalidos",
        ),
        (
            Method::POST,
            "/inventario",
            json_ct,
            ok(json!(null), json!(1), json!(1)),
            422,
            "tipos_invalidos",
        ),
        (
            Method::POST,
            "/inventario",
            json_ct,
            r#"{"nombre": "x", "precio": 1}"#.into(),
            422,
            "tipos_invalidos",
        ),
        (
            Method::POST,
            "/inventario",
            json_ct,
            "[]".into(),
            422,
            "tipos_invalidos",
        ),
        (
            Method::POST,
            "/inventario",
            json_ct,
            r#"{"nombre": "x","#.into(),
            400,
            "json_malformado",
        ),
        (
            Method::POST,
            "/inventario",
            json_ct,
            "".into(),
            400,
            "json_malformado",
        ),
        (
            Method::POST,
            "/inventario",
            None,
            ok(json!("x"), json!(1), json!(1)),
            415,
            "content_type_invalido",
        ),
        (
            Method::POST,
            "/inventario",
            Some("text/plain"),
            ok(json!("x"), json!(1), json!(1)),
            415,
            "content_type_invalido",
        ),
        (
            Method::POST,
            "/inventario",
            json_ct,
            huge,
            413,
            "cuerpo_demasiado_grande",
        ),
        (
            Method::PUT,
            "/inventario/1",
            json_ct,
            ok(json!(""), json!(5), json!(5)),
            422,
            "validacion",
        ),
        (
            Method::PUT,
            "/inventario/1",
            json_ct,
            ok(json!("x"), json!(-5), json!(5)),
            422,
            "validacion",
        ),
        (
            Method::PUT,
            "/inventario/1",
            json_ct,
            r#"{"nombre""#.into(),
            400,
            "json_malformado",
        ),
        (
            Method::PUT,
            "/inventario/abc",
            json_ct,
            ok(json!("x"), json!(1), json!(1)),
            400,
            "id_invalido",
        ),
        (
            Method::GET,
            "/inventario/abc",
            None,
            String::new(),
            400,
            "id_invalido",
        ),
        (
            Method::GET,
            "/inventario/99999999999999999999",
            None,
            String::new(),
            400,
            "id_invalido",
        ),
        (
            Method::DELETE,
            "/inventario/1.5",
            None,
            String::new(),
            400,
            "id_invalido",
        ),
        (
            Method::GET,
            "/inventario/12345",
            None,
            String::new(),
            404,
            "producto_no_encontrado",
        ),
        (
            Method::GET,
            "/inventario?limit=muchos",
            None,
            String::new(),
            400,
            "parametros_invalidos",
        ),
        (
            Method::GET,
            "/inventario?offset=-1",
            None,
            String::new(),
            400,
            "parametros_invalidos",
        ),
        (
            Method::GET,
            "/no/existe",
            None,
            String::new(),
            404,
            "ruta_no_encontrada",
        ),
        (
            Method::PATCH,
            "/inventario/1",
            json_ct,
            "{}".into(),
            405,
            "metodo_no_permitido",
        ),
        (
            Method::POST,
            "/inventario/1/movimientos",
            json_ct,
            r#"{"tipo": "robo", "cantidad": 1}"#.into(),
            422,
            "validacion",
        ),
        (
            Method::POST,
            "/inventario/1/movimientos",
            json_ct,
            r#"{"tipo": "salida", "cantidad": 0}"#.into(),
            422,
            "validacion",
        ),
        (
            Method::POST,
            "/inventario/1/movimientos",
            json_ct,
            r#"{"tipo": "salida", "cantidad": -2}"#.into(),
            422,
            "validacion",
        ),
        (
            Method::POST,
            "/inventario/1/movimientos",
            json_ct,
            r#"{"tipo": "salida"}"#.into(),
            422,
            "tipos_invalidos",
        ),
        (
            Method::POST,
            "/inventario/1/movimientos",
            None,
            r#"{"tipo": "salida", "cantidad": 1}"#.into(),
            415,
            "content_type_invalido",
        ),
        (
            Method::POST,
            "/inventario/777/movimientos",
            json_ct,
            r#"{"tipo": "salida", "cantidad": 1}"#.into(),
            404,
            "producto_no_encontrado",
        ),
        (
            Method::POST,
            "/inventario/x/movimientos",
            json_ct,
            r#"{"tipo": "salida", "cantidad": 1}"#.into(),
            400,
            "id_invalido",
        ),
    ];
    for (method, uri, ct, body, status, code) in cases {
        let what = format!(
            "{method} {uri} {ct:?} {}",
            body.chars().take(60).collect::<String>()
        );
        let r = app.raw(method, uri, ct, body).await;
        assert_eq!(r.status.as_u16(), status, "{what}: {}", r.text);
        assert_eq!(r.json["error"], code, "{what}: {}", r.text);
        assert!(
            r.json["detalle"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}: {}",
            r.text
        );
        // In Spanish, like the rest of the contract: none of axum's or serde's English.
        let detalle = r.json["detalle"].as_str().unwrap_or_default();
        for english in [
            "Failed to",
            "Expected request",
            "Cannot parse",
            "missing field",
            "invalid type",
            "expected",
            "at line",
        ] {
            assert!(!detalle.contains(english), "{what}: {detalle}");
        }
    }
    for (uri, body, detalle) in [
        (
            "/inventario",
            r#"{"nombre": "x", "cantidad": "3", "precio": 1}"#,
            "el JSON no tiene la forma esperada: cantidad: tipo inválido: el texto \"3\", se esperaba un número entero (línea 1, columna 31)",
        ),
        (
            "/inventario/1/movimientos",
            r#"{"tipo": "salida"}"#,
            "el JSON no tiene la forma esperada: falta el campo `cantidad` (línea 1, columna 18)",
        ),
        (
            "/inventario/x/movimientos",
            r#"{"tipo": "salida", "cantidad": 1}"#,
            "«x» no es un número entero válido en la ruta",
        ),
        (
            "/inventario",
            r#"{"nombre": "x""#,
            "el cuerpo no es JSON válido: el JSON termina antes de cerrar un objeto (línea 1, columna 14)",
        ),
    ] {
        let r = app.raw(Method::POST, uri, json_ct, body.to_string()).await;
        assert_eq!(r.json["detalle"], detalle, "{uri} {body}: {}", r.text);
    }
    // Nothing was written, and no movement was queued.
    assert_eq!(app.get("/inventario").await.json, before);
    assert_eq!(app.server.cli(&["DBSIZE"]), "0");
}

#[tokio::test]
async fn name_length_limit_counts_characters() {
    let app = TestApp::start().await;
    let name = "ñ".repeat(120);
    let r = app
        .json(
            Method::POST,
            "/inventario",
            &json!({"nombre": name, "cantidad": 0, "precio": 0.0}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let app = TestApp::start().await;
    let health = app.get("/health").await;
    assert_eq!(health.status, StatusCode::OK);

    let ready = app.get("/ready").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    assert_eq!(
        ready.json,
        json!({"base_de_datos": "ok", "redis": "ok", "estado": "listo"})
    );

    app.get("/inventario/3").await;
    app.get("/inventario/4").await;
    app.get("/inventario/4040").await;
    app.get("/nada").await;
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = metrics.text;
    assert!(
        text.contains(
            r#"http_requests_total{method="GET",route="/inventario/{id}",status="200"} 2"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"http_requests_total{method="GET",route="/inventario/{id}",status="404"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="sin_ruta",status="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"http_request_duration_seconds_bucket{method="GET",route="/inventario/{id}",le="+Inf"} 3"#),
        "{text}"
    );
    // Buckets resolve what a cached read takes: a fraction of a millisecond.
    assert!(
        text.contains(r#"http_request_duration_seconds_bucket{method="GET",route="/inventario/{id}",le="0.00005"}"#),
        "{text}"
    );
    // Labelled by template, never by the raw path.
    assert!(!text.contains("/inventario/4040"), "{text}");
}

/// A producto's version is its `ETag`; `If-Match` with an older one is a 412 that changes
/// nothing, and without `If-Match` a `PUT` renames and reprices but cannot set the stock (428).
#[tokio::test]
async fn writes_name_the_version_they_read_and_stale_ones_change_nothing() {
    let app = TestApp::start().await;
    let uri = "/inventario/1";
    let leido = app.get(uri).await;
    assert_eq!(leido.headers["etag"], "\"1\"");
    assert_eq!(leido.json["version"], 1);
    let stock = leido.json["cantidad"].as_i64().unwrap();
    let producto = |nombre: &str, cantidad: i64| json!({"nombre": nombre, "cantidad": cantidad, "precio": 2.5});

    // Current version: everything is replaced, the stock too, and the version moves.
    let r = app
        .con_if_match(Method::PUT, uri, "\"1\"", &producto("Arroz A", stock + 5))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (r.json["cantidad"].as_i64(), &r.json["version"]),
        (Some(stock + 5), &json!(2))
    );
    assert_eq!(r.headers["etag"], "\"2\"");

    // Stale, weak (If-Match compares strongly) or malformed tags: 412 with the current ETag,
    // and nothing changes.
    for tag in ["\"1\"", "W/\"2\"", "2", "\"1\", \"3\""] {
        let r = app
            .con_if_match(Method::PUT, uri, tag, &producto("Arroz B", 0))
            .await;
        assert_eq!(
            r.status,
            StatusCode::PRECONDITION_FAILED,
            "{tag}: {}",
            r.text
        );
        assert_eq!(r.json["error"], "version_obsoleta", "{tag}");
        assert!(
            r.json["detalle"].as_str().unwrap().contains("versión 2"),
            "{}",
            r.text
        );
        assert_eq!(r.headers["etag"], "\"2\"", "{tag}");
        let r = app
            .con_if_match(Method::DELETE, uri, tag, &Value::Null)
            .await;
        assert_eq!(
            r.status,
            StatusCode::PRECONDITION_FAILED,
            "DELETE {tag}: {}",
            r.text
        );
    }
    let ahora = app.get(uri).await;
    assert_eq!(ahora.json["nombre"], "Arroz A");
    assert_eq!(ahora.json["version"], 2);

    // Without If-Match (or with `*`, which names no version), a different stock is refused
    // with what is stored; the same stock is a rename.
    for if_match in [None, Some("*")] {
        let cuerpo = producto("Arroz C", stock);
        let r = match if_match {
            None => app.json(Method::PUT, uri, &cuerpo).await,
            Some(tag) => app.con_if_match(Method::PUT, uri, tag, &cuerpo).await,
        };
        assert_eq!(
            r.status,
            StatusCode::PRECONDITION_REQUIRED,
            "{if_match:?}: {}",
            r.text
        );
        assert_eq!(r.json["error"], "if_match_requerido");
        let detalle = r.json["detalle"].as_str().unwrap();
        assert!(
            detalle.contains(&format!("tiene {} unidades", stock + 5)),
            "{detalle}"
        );
        assert_eq!(r.headers["etag"], "\"2\"");
    }
    assert_eq!(
        app.get(uri).await.json,
        ahora.json,
        "a refused PUT changed something"
    );
    let r = app
        .json(Method::PUT, uri, &producto("Arroz D", stock + 5))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (&r.json["nombre"], &r.json["version"]),
        (&json!("Arroz D"), &json!(3))
    );

    // A list naming the current version matches; a bad body is a 422 whatever the version.
    let r = app
        .con_if_match(Method::PUT, uri, "\"1\", \"3\"", &producto("Arroz E", 1))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app
        .con_if_match(Method::PUT, uri, "\"1\"", &producto("", 1))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);

    // A missing producto is a 404, If-Match or not.
    let r = app
        .con_if_match(Method::PUT, "/inventario/999", "\"1\"", &producto("x", 1))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);

    // DELETE with the current version goes through.
    let r = app
        .con_if_match(Method::DELETE, uri, "\"4\"", &Value::Null)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(app.get(uri).await.status, StatusCode::NOT_FOUND);
}
