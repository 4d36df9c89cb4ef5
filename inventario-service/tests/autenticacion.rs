//! Authentication of the writes, through the real router on a real SQLite file and Redis:
//! every state-changing route refuses a request without a valid HS256 token with a JSON 401
//! and `WWW-Authenticate: Bearer`, and changes nothing; reads need no token; without a secret
//! writes are refused as "not configured"; `AUTH_DISABLED` lets them through.
//! (The binary's side, the `token` subcommand, the start-up warnings and `sub` in the log,
//! is in `token.rs`.)

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{header, Method, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{Respuesta, TestApp, SECRETO, SUB};
use inventario_service::auth::{Autenticacion, LEEWAY_SECS};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

fn ahora() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Valid claims for [`SUB`], an hour to go.
fn claims() -> Value {
    json!({"sub": SUB, "exp": ahora() + 3600, "iat": ahora()})
}

/// `claims` signed with `alg` and `secreto` by `jsonwebtoken` itself.
fn firmado(alg: Algorithm, secreto: &str, claims: &Value) -> String {
    let key = EncodingKey::from_secret(secreto.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(alg), claims, &key).unwrap()
}

fn hs256(claims: &Value) -> String {
    firmado(Algorithm::HS256, SECRETO, claims)
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A token whose header is `header` and whose signature is `firma`, by hand: what no
/// library would make, as an attacker would.
fn a_mano(header: &Value, claims: &Value, firma: &str) -> String {
    format!("{}.{}.{firma}", b64(header), b64(claims))
}

/// Every state-changing route, each with a body it would accept.
fn escrituras() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (
            Method::POST,
            "/inventario",
            Some(json!({"nombre": "Azafrán 1 g", "cantidad": 3, "precio": 6.5})),
        ),
        (
            Method::PUT,
            "/inventario/1",
            // The stored stock: without If-Match a PUT renames and reprices, it cannot set it.
            Some(json!({"nombre": "Arroz bomba 1 kg", "cantidad": 240, "precio": 3.2})),
        ),
        (Method::DELETE, "/inventario/2", None),
        (
            Method::POST,
            "/inventario/3/movimientos",
            Some(json!({"tipo": "entrada", "cantidad": 4})),
        ),
    ]
}

async fn escribir(
    app: &TestApp,
    method: &Method,
    uri: &str,
    body: &Option<Value>,
    authorization: Option<&str>,
) -> Respuesta {
    match body {
        Some(b) => {
            app.raw_con(
                method.clone(),
                uri,
                Some("application/json"),
                b.to_string(),
                authorization,
            )
            .await
        }
        None => {
            app.raw_con(method.clone(), uri, None, Body::empty(), authorization)
                .await
        }
    }
}

/// A 401 with the JSON error `codigo`, a message, and the Bearer challenge.
fn es_401(r: &Respuesta, codigo: &str, what: &str) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.text);
    assert_eq!(r.json["error"], codigo, "{what}: {}", r.text);
    assert!(
        r.json["detalle"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}: {}",
        r.text
    );
    let challenge = r.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(challenge.starts_with("Bearer "), "{what}: {challenge}");
    assert_eq!(
        challenge.contains(r#"error="invalid_token""#),
        codigo == "token_invalido",
        "{what}: {challenge}"
    );
}

/// What the inventory holds, seen by a client and straight from Redis.
async fn estado(app: &TestApp) -> (Value, String) {
    (
        app.get("/inventario").await.json,
        app.server.cli(&["DBSIZE"]),
    )
}

#[tokio::test]
async fn every_write_refuses_every_kind_of_bad_token_and_changes_nothing() {
    let app = TestApp::start().await;
    let antes = estado(&app).await;
    assert_eq!(antes.1, "0");
    let valido = hs256(&claims());
    let (cabecera, carga, firma) = {
        let mut parts = valido.split('.');
        (
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
        )
    };
    let caducado = hs256(&json!({"sub": SUB, "exp": ahora() - LEEWAY_SECS as i64 - 90}));
    let otro_sub = format!(
        "{cabecera}.{}.{firma}",
        b64(&json!({"sub": "admin", "exp": ahora() + 3600}))
    );
    let casos: Vec<(&str, Option<String>, &str, &str)> = vec![
        // (what, Authorization, error code, a word the message must hold)
        ("no header", None, "no_autenticado", "Bearer"),
        (
            "scheme alone",
            Some("Bearer".into()),
            "no_autenticado",
            "Bearer",
        ),
        (
            "empty token",
            Some("Bearer   ".into()),
            "no_autenticado",
            "Bearer",
        ),
        (
            "Basic",
            Some("Basic dXNlcjpwYXNz".into()),
            "no_autenticado",
            "Bearer",
        ),
        (
            "token without scheme",
            Some(valido.clone()),
            "no_autenticado",
            "Bearer",
        ),
        (
            "not a JWT",
            Some("Bearer no-es-un-jwt".into()),
            "token_invalido",
            "HS256",
        ),
        (
            "two parts",
            Some(format!("Bearer {cabecera}.{carga}")),
            "token_invalido",
            "HS256",
        ),
        (
            "bad base64",
            Some(format!("Bearer {cabecera}.%%%.{firma}")),
            "token_invalido",
            "token",
        ),
        (
            "alg none, unsigned",
            Some(format!(
                "Bearer {}",
                a_mano(&json!({"alg": "none", "typ": "JWT"}), &claims(), "")
            )),
            "token_invalido",
            "HS256",
        ),
        (
            "alg none, with a signature",
            Some(format!(
                "Bearer {}",
                a_mano(&json!({"alg": "none"}), &claims(), &firma)
            )),
            "token_invalido",
            "HS256",
        ),
        (
            "alg HS512, same secret",
            Some(format!(
                "Bearer {}",
                firmado(Algorithm::HS512, SECRETO, &claims())
            )),
            "token_invalido",
            "HS256",
        ),
        (
            "alg HS384, same secret",
            Some(format!(
                "Bearer {}",
                firmado(Algorithm::HS384, SECRETO, &claims())
            )),
            "token_invalido",
            "HS256",
        ),
        (
            "alg RS256 over an HMAC signature",
            Some(format!(
                "Bearer {}",
                a_mano(&json!({"alg": "RS256", "typ": "JWT"}), &claims(), &firma)
            )),
            "token_invalido",
            "HS256",
        ),
        (
            "signed with another secret",
            Some(format!(
                "Bearer {}",
                firmado(Algorithm::HS256, "otro-secreto-cualquiera", &claims())
            )),
            "token_invalido",
            "firma",
        ),
        (
            "claims changed after signing",
            Some(format!("Bearer {otro_sub}")),
            "token_invalido",
            "firma",
        ),
        (
            "expired",
            Some(format!("Bearer {caducado}")),
            "token_invalido",
            "caducado",
        ),
        (
            "no exp",
            Some(format!("Bearer {}", hs256(&json!({"sub": SUB})))),
            "token_invalido",
            "exp",
        ),
        (
            "exp not a number",
            Some(format!(
                "Bearer {}",
                hs256(&json!({"sub": SUB, "exp": "mañana"}))
            )),
            "token_invalido",
            "exp",
        ),
        (
            "no sub",
            Some(format!("Bearer {}", hs256(&json!({"exp": ahora() + 3600})))),
            "token_invalido",
            "sub",
        ),
        (
            "empty sub",
            Some(format!(
                "Bearer {}",
                hs256(&json!({"sub": " ", "exp": ahora() + 3600}))
            )),
            "token_invalido",
            "sub",
        ),
        (
            "sub with a newline",
            Some(format!(
                "Bearer {}",
                hs256(&json!({"sub": "a\nINFO forjada", "exp": ahora() + 3600}))
            )),
            "token_invalido",
            "sub",
        ),
        (
            "not valid before an hour from now",
            Some(format!(
                "Bearer {}",
                hs256(&json!({"sub": SUB, "exp": ahora() + 7200, "nbf": ahora() + 3600}))
            )),
            "token_invalido",
            "nbf",
        ),
    ];
    let mut n = 0;
    for (method, uri, body) in escrituras() {
        for (what, authorization, codigo, palabra) in &casos {
            let what = format!("{method} {uri}, {what}");
            let r = escribir(&app, &method, uri, &body, authorization.as_deref()).await;
            es_401(&r, codigo, &what);
            let detalle = r.json["detalle"].as_str().unwrap();
            assert!(detalle.contains(palabra), "{what}: {detalle}");
            n += 1;
        }
    }
    // Refused before the path or the body is read: a bad id or a body over the limit is
    // still a 401, not a 400 or a 413.
    let r = app
        .raw_con(
            Method::PUT,
            "/inventario/abc",
            Some("application/json"),
            "{",
            None,
        )
        .await;
    es_401(&r, "no_autenticado", "PUT with a bad id and body");
    let enorme = "x".repeat(inventario_service::MAX_BODY_BYTES * 2);
    let r = app
        .raw_con(
            Method::POST,
            "/inventario",
            Some("application/json"),
            enorme,
            None,
        )
        .await;
    es_401(&r, "no_autenticado", "POST over the body limit");

    assert_eq!(
        estado(&app).await,
        antes,
        "a refused write changed something"
    );
    println!("{n} refused writes, nothing changed");

    // The same writes with the valid token all go through.
    for (method, uri, body) in escrituras() {
        let r = escribir(&app, &method, uri, &body, Some(&format!("Bearer {valido}"))).await;
        assert!(r.status.is_success(), "{method} {uri}: {}", r.text);
    }
    assert_ne!(estado(&app).await, antes);
}

#[tokio::test]
async fn a_valid_token_writes_with_any_case_of_the_scheme_and_within_the_leeway() {
    let app = TestApp::start().await;
    // Expired a little less than the leeway ago: still taken (clock skew).
    let casi = hs256(&json!({"sub": SUB, "exp": ahora() - LEEWAY_SECS as i64 + 10}));
    for authorization in [
        format!("Bearer {}", hs256(&claims())),
        format!("bearer {}", hs256(&claims())),
        format!("BEARER  {} ", hs256(&claims())),
        format!("Bearer {casi}"),
    ] {
        let r = app
            .raw_con(
                Method::POST,
                "/inventario",
                Some("application/json"),
                json!({"nombre": "Pimentón 75 g", "cantidad": 1, "precio": 2.0}).to_string(),
                Some(&authorization),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{authorization}: {}", r.text);
    }
}

#[tokio::test]
async fn reads_need_no_token() {
    let mut app = TestApp::start().await;
    app.token = None;
    for uri in [
        "/inventario",
        "/inventario?limit=2",
        "/inventario/1",
        "/tareas/cualquiera",
        "/health",
        "/ready",
        "/metrics",
    ] {
        // A task this service never issued is a 404: read, not refused for want of a token.
        let esperado = if uri.starts_with("/tareas/") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        let r = app.get(uri).await;
        assert_eq!(r.status, esperado, "{uri}: {}", r.text);
        // A bad token on a read is ignored, not refused.
        let r = app
            .raw_con(Method::GET, uri, None, Body::empty(), Some("Bearer basura"))
            .await;
        assert_eq!(r.status, esperado, "{uri} with a bad token: {}", r.text);
    }
}

#[tokio::test]
async fn without_a_secret_every_write_is_refused_as_not_configured() {
    let app = TestApp::start_con(Autenticacion::new(None, false)).await;
    let antes = estado(&app).await;
    for (method, uri, body) in escrituras() {
        // Even a token that would be valid elsewhere: there is nothing to check it with.
        for authorization in [None, Some(format!("Bearer {}", hs256(&claims())))] {
            let what = format!("{method} {uri} (token: {})", authorization.is_some());
            let r = escribir(&app, &method, uri, &body, authorization.as_deref()).await;
            es_401(&r, "autenticacion_no_configurada", &what);
            assert!(
                r.json["detalle"].as_str().unwrap().contains("JWT_SECRET"),
                "{what}: {}",
                r.text
            );
        }
    }
    assert_eq!(estado(&app).await, antes);
    assert_eq!(app.get("/inventario/1").await.status, StatusCode::OK);
}

#[tokio::test]
async fn auth_disabled_lets_writes_through_without_a_token() {
    let mut app = TestApp::start_con(Autenticacion::new(
        Some(&inventario_service::auth::Secreto::new(SECRETO)),
        true,
    ))
    .await;
    app.token = None;
    for (method, uri, body) in escrituras() {
        for authorization in [None, Some("Bearer basura")] {
            let r = escribir(&app, &method, uri, &body, authorization).await;
            assert!(
                r.status.is_success(),
                "{method} {uri} ({authorization:?}): {}",
                r.text
            );
            if method == Method::DELETE {
                break; // the second would find it gone
            }
        }
    }
}
