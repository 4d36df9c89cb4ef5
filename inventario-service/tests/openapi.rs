//! The API's description, from the running binary: `GET /openapi.json` is a valid OpenAPI 3.1
//! document (checked by openapi-spec-validator, not by us), it lists every route the service
//! answers and every method of them, real answers fit the schemas it gives for them, and
//! `GET /docs/` is Swagger UI served whole from the binary, with nothing fetched elsewhere.

mod common;

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use testkit::openapi::{self, Answers, Api};
use testkit::{eventually, free_port, wait_for_status, Process, RedisServer};

const LIMIT: Duration = Duration::from_secs(60);

/// The routes the service is known to answer: each must be in the document.
const KNOWN: [(&str, &str); 14] = [
    ("get", "/inventario"),
    ("post", "/inventario"),
    ("get", "/inventario/{id}"),
    ("put", "/inventario/{id}"),
    ("delete", "/inventario/{id}"),
    ("post", "/inventario/{id}/movimientos"),
    ("get", "/tareas/{id}"),
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
    ("get", "/docs/"),
    ("get", "/docs/{archivo}"),
];

struct Servicio {
    api: Api,
    process: Process,
    /// The real inventario worker, when the test reads finished tasks.
    _worker: Option<Process>,
    dir: tempfile::TempDir,
    _redis: RedisServer,
}

/// The real binary on a fresh database and Redis; with `worker`, a real inventario-worker
/// applies its movements.
async fn servicio(worker: bool) -> Servicio {
    let redis = RedisServer::start_tcp();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let api = Api::new(format!("http://127.0.0.1:{port}"), None);
    let process = Process::program(
        "inventario-service",
        &[
            ("REDIS_URL", redis.url()),
            ("HTTP_ADDR", format!("127.0.0.1:{port}")),
            (
                "DATABASE_URL",
                format!("sqlite://{}", dir.path().join("inventario.db").display()),
            ),
            ("JWT_SECRET", common::SECRETO.into()),
        ],
        &dir.path().join("inventario-service.log"),
    );
    let database_url = format!("sqlite://{}", dir.path().join("inventario.db").display());
    let worker = worker.then(|| {
        Process::program(
            "inventario-worker",
            &[
                ("REDIS_URL", redis.url()),
                ("DATABASE_URL", database_url.clone()),
            ],
            &dir.path().join("inventario-worker.log"),
        )
    });
    assert!(
        wait_for_status(&api.http, &format!("{}/ready", api.base), 200, LIMIT).await,
        "not ready:\n{}",
        process.log()
    );
    Servicio {
        api,
        process,
        _worker: worker,
        dir,
        _redis: redis,
    }
}

/// A concrete URI for a documented path: its parameters filled in with values of their type.
fn concreta(path: &str) -> String {
    path.replace("{id}", "1")
        .replace("{archivo}", "swagger-ui.css")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_is_valid_and_holds_every_route_the_service_answers() {
    let s = servicio(true).await;
    let doc = s.api.document().await;
    let documentadas = openapi::documented(&doc);
    openapi::assert_documents(&documentadas, &KNOWN);
    // The service answers nothing the document does not say, and all that it says.
    openapi::assert_routes_match(&s.api, &documentadas, concreta).await;

    // Writes name the bearer JWT; reads need nothing.
    assert_eq!(
        doc["components"]["securitySchemes"]["jwt"],
        json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
               "description": doc["components"]["securitySchemes"]["jwt"]["description"]})
    );
    for (method, path) in &documentadas {
        let security = &doc["paths"][path][method]["security"];
        if method == "get" {
            assert!(security.is_null(), "{method} {path} asks for a token");
        } else {
            assert_eq!(security, &json!([{"jwt": []}]), "{method} {path}");
            let responses = &doc["paths"][path][method]["responses"];
            assert!(responses.get("401").is_some(), "{method} {path} has no 401");
        }
    }

    let respuestas = respuestas_reales(&s).await;
    let resumen = openapi::validate(&doc, &respuestas, s.dir.path()).await;
    assert!(resumen["ejemplos"].as_u64().unwrap() >= 5, "{resumen}");
}

/// Real answers of the running service, one or more per kind, each with the documented route
/// it came from: the Python check validates each body against the document's schema.
async fn respuestas_reales(s: &Servicio) -> Answers {
    let token = common::token(common::SUB);
    let mut out = Answers::default();
    let mut pedir = async |method: Method,
                           path: &str,
                           uri: String,
                           headers: &[(&str, &str)],
                           body: Option<Value>,
                           esperado: u16|
           -> Value {
        let mut r = s.api.request(method, &uri);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        out.record(path, r, esperado).await
    };
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];

    pedir(Method::GET, "/health", "/health".into(), &[], None, 200).await;
    pedir(Method::GET, "/ready", "/ready".into(), &[], None, 200).await;
    let creado = pedir(
        Method::POST,
        "/inventario",
        "/inventario".into(),
        &auth,
        Some(json!({"nombre": "Miel de azahar 500 g", "cantidad": 12, "precio": 7.25})),
        201,
    )
    .await;
    let id = creado["id"].as_i64().expect("an id");
    pedir(
        Method::GET,
        "/inventario",
        "/inventario".into(),
        &[],
        None,
        200,
    )
    .await;
    pedir(
        Method::GET,
        "/inventario",
        "/inventario?limit=2&offset=1".into(),
        &[],
        None,
        200,
    )
    .await;
    pedir(
        Method::GET,
        "/inventario",
        "/inventario?limit=x".into(),
        &[],
        None,
        400,
    )
    .await;
    let p = "/inventario/{id}";
    pedir(Method::GET, p, format!("/inventario/{id}"), &[], None, 200).await;
    pedir(Method::GET, p, "/inventario/999999".into(), &[], None, 404).await;
    pedir(Method::GET, p, "/inventario/abc".into(), &[], None, 400).await;
    pedir(
        Method::POST,
        "/inventario",
        "/inventario".into(),
        &[],
        Some(json!({"nombre": "x", "cantidad": 1, "precio": 1})),
        401,
    )
    .await;
    pedir(
        Method::POST,
        "/inventario",
        "/inventario".into(),
        &auth,
        Some(json!({"nombre": "", "cantidad": 1, "precio": 1})),
        422,
    )
    .await;
    let cambio = json!({"nombre": "Miel", "cantidad": 13, "precio": 7.25});
    pedir(
        Method::PUT,
        p,
        format!("/inventario/{id}"),
        &auth,
        Some(cambio.clone()),
        428,
    )
    .await;
    let stale = [auth[0], ("if-match", "\"99\"")];
    pedir(
        Method::PUT,
        p,
        format!("/inventario/{id}"),
        &stale,
        Some(cambio.clone()),
        412,
    )
    .await;
    let current = [auth[0], ("if-match", "\"1\"")];
    pedir(
        Method::PUT,
        p,
        format!("/inventario/{id}"),
        &current,
        Some(cambio),
        200,
    )
    .await;
    let m = "/inventario/{id}/movimientos";
    let aceptado = pedir(
        Method::POST,
        m,
        format!("/inventario/{id}/movimientos"),
        &auth,
        Some(json!({"tipo": "salida", "cantidad": 3})),
        202,
    )
    .await;
    pedir(
        Method::POST,
        m,
        format!("/inventario/{id}/movimientos"),
        &auth,
        Some(json!({"tipo": "regalo", "cantidad": 3})),
        422,
    )
    .await;
    let tarea = aceptado["tarea_id"].as_str().expect("tarea_id").to_owned();
    pedir(
        Method::GET,
        "/tareas/{id}",
        format!("/tareas/{tarea}"),
        &[],
        None,
        200,
    )
    .await;
    // A movement more than the stock fails in the worker: FAILURE, with its error.
    let imposible = pedir(
        Method::POST,
        m,
        format!("/inventario/{id}/movimientos"),
        &auth,
        Some(json!({"tipo": "salida", "cantidad": 1000})),
        202,
    )
    .await;
    let imposible = imposible["tarea_id"].as_str().expect("tarea_id").to_owned();
    for (tarea, estado) in [(tarea, "SUCCESS"), (imposible, "FAILURE")] {
        let uri = format!("/tareas/{tarea}");
        let termino = eventually(LIMIT, Duration::from_millis(50), || async {
            let r = s.api.request(Method::GET, &uri).send().await.unwrap();
            r.json::<Value>().await.unwrap()["estado"] == estado
        })
        .await;
        assert!(termino, "{tarea} never reached {estado}");
        pedir(
            Method::GET,
            "/tareas/{id}",
            format!("/tareas/{tarea}"),
            &[],
            None,
            200,
        )
        .await;
    }
    pedir(
        Method::GET,
        "/tareas/{id}",
        "/tareas/no-emitida".into(),
        &[],
        None,
        404,
    )
    .await;
    pedir(
        Method::DELETE,
        p,
        format!("/inventario/{id}"),
        &auth,
        None,
        204,
    )
    .await;
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn docs_is_swagger_ui_served_whole_from_the_binary() {
    let s = servicio(false).await;
    openapi::assert_swagger_ui(&s.api).await;
    let _ = &s.process;
}
