//! The monitor's API description, from the running binary with `MONITOR_TOKEN` set:
//! `GET /openapi.json` is a valid OpenAPI 3.1 document (checked by openapi-spec-validator, not
//! by us), it lists every route the monitor answers and every method of them, real answers fit
//! the schemas it gives for them, `GET /docs/` is Swagger UI served whole from the binary with
//! nothing fetched elsewhere, and both are behind the token like every route but `/health`.

mod common;

use std::time::Duration;

use common::Monitor;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testkit::demo::spawn_demo_worker;
use testkit::openapi::{self, Answers, Api};
use testkit::{eventually, Process, RedisServer};

const TOKEN: &str = "token-de-prueba-de-la-documentacion-0123456789";
const LIMIT: Duration = Duration::from_secs(30);

/// The routes the monitor is known to answer: each must be in the document.
const KNOWN: [(&str, &str); 20] = [
    ("get", "/health"),
    ("get", "/monitor"),
    ("get", "/monitor/historial"),
    ("get", "/monitor/colas"),
    ("get", "/monitor/tareas/{id}"),
    ("post", "/monitor/tareas/{id}/revocar"),
    ("get", "/monitor/cuarentena"),
    ("post", "/monitor/cuarentena/{id}/reencolar"),
    ("get", "/metrics"),
    ("get", "/"),
    ("get", "/assets/dashboard.css"),
    ("get", "/assets/dashboard.js"),
    ("get", "/monitor/stream"),
    ("get", "/tarea"),
    ("get", "/cuarentena"),
    ("get", "/assets/paginas.js"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
    ("get", "/docs/"),
    ("get", "/docs/{archivo}"),
];

/// The real binary with `MONITOR_TOKEN`, seen through [`Api`], and a demo worker answering its
/// pings if `worker`.
struct Documentado {
    api: Api,
    dir: tempfile::TempDir,
    _monitor: Monitor,
    _worker: Option<Process>,
    _redis: RedisServer,
}

async fn monitor(worker: bool) -> Documentado {
    let redis = RedisServer::start_tcp();
    let dir = tempfile::tempdir().unwrap();
    let monitor = Monitor::start(
        &redis,
        &[
            ("MONITOR_TOKEN", TOKEN),
            ("PING_INTERVAL_MS", "200"),
            ("PING_TIMEOUT_MS", "1000"),
        ],
        dir.path(),
    )
    .await;
    let worker =
        worker.then(|| spawn_demo_worker(&redis.url(), "documentacion@test", &[], dir.path()));
    Documentado {
        api: Api::new(monitor.base.clone(), Some(TOKEN)),
        dir,
        _monitor: monitor,
        _worker: worker,
        _redis: redis,
    }
}

/// A concrete URI for a documented path: its parameters filled in with plausible values.
fn concreta(path: &str) -> String {
    path.replace("{archivo}", "swagger-ui.css")
        .replace("{id}", "0123456789abcdef0123456789abcdef01234567")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_is_valid_and_holds_every_route_the_monitor_answers() {
    let m = monitor(true).await;
    let doc = m.api.document().await;
    let documentadas = openapi::documented(&doc);
    openapi::assert_documents(&documentadas, &KNOWN);
    // With the token, the monitor answers nothing the document does not say, and all it says.
    openapi::assert_routes_match(&m.api, &documentadas, concreta).await;

    // MONITOR_TOKEN is an optional bearer for the whole document; /health never needs it, and
    // every other route says it may answer 401.
    assert_eq!(
        doc["components"]["securitySchemes"]["monitor_token"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["security"], json!([{}, {"monitor_token": []}]));
    for (method, path) in &documentadas {
        let op = &doc["paths"][path][method];
        if path == "/health" {
            assert_eq!(op["security"], json!([{}]));
        } else {
            assert!(
                op["responses"].get("401").is_some(),
                "{method} {path} has no 401"
            );
        }
    }

    let respuestas = respuestas_reales(&m).await;
    openapi::validate(&doc, &respuestas, m.dir.path()).await;
}

/// Real answers of the running monitor, each with the documented route it came from.
async fn respuestas_reales(m: &Documentado) -> Answers {
    let mut out = Answers::default();
    // Once the worker answers, `/monitor` is 200 with a target and a worker to describe.
    let ok = eventually(LIMIT, Duration::from_millis(100), || async {
        let r = m.api.request(Method::GET, "/monitor").send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        status == 200
            && body["estado"] == "OK"
            && body["workers"].as_array().is_some_and(|w| !w.is_empty())
    })
    .await;
    assert!(ok, "the worker never answered the monitor");
    out.record("/monitor", m.api.request(Method::GET, "/monitor"), 200)
        .await;

    let tarea = "/monitor/tareas/{id}";
    let reencolar = "/monitor/cuarentena/{id}/reencolar";
    let historial = "/monitor/historial";
    let desconocida = "0123456789abcdef0123456789abcdef01234567";
    for (method, path, uri, sin_token, esperado) in [
        (
            Method::GET,
            "/monitor/colas",
            "/monitor/colas".into(),
            false,
            200,
        ),
        (
            Method::GET,
            "/monitor/cuarentena",
            "/monitor/cuarentena".into(),
            false,
            200,
        ),
        (
            Method::GET,
            tarea,
            format!("/monitor/tareas/{desconocida}"),
            false,
            404,
        ),
        (
            Method::GET,
            tarea,
            "/monitor/tareas/no%20valida".into(),
            false,
            400,
        ),
        (
            Method::POST,
            reencolar,
            format!("/monitor/cuarentena/{desconocida}/reencolar"),
            false,
            404,
        ),
        (Method::GET, "/health", "/health".into(), true, 200),
        (Method::GET, historial, historial.into(), false, 200),
        (
            Method::GET,
            historial,
            "/monitor/historial?limite=2".into(),
            false,
            200,
        ),
        (
            Method::GET,
            historial,
            "/monitor/historial?limite=x".into(),
            false,
            400,
        ),
        (Method::GET, historial, historial.into(), true, 401),
        (
            Method::GET,
            "/openapi.json",
            "/openapi.json".into(),
            true,
            401,
        ),
        (
            Method::GET,
            "/docs/{archivo}",
            "/docs/no-existe.js".into(),
            false,
            404,
        ),
    ] {
        let r = if sin_token {
            m.api.anonymous(method, &uri)
        } else {
            m.api.request(method, &uri)
        };
        out.record(path, r, esperado).await;
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_and_the_docs_follow_the_token_rule() {
    let m = monitor(false).await;
    for uri in ["/openapi.json", "/docs", "/docs/", "/docs/swagger-ui.css"] {
        let r = m.api.anonymous(Method::GET, uri).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{uri}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "no_autenticado", "{uri}");
        let r = m.api.request(Method::GET, uri).send().await.unwrap();
        assert!(
            r.status().is_success() || r.status().is_redirection(),
            "{uri}: {}",
            r.status()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn docs_is_swagger_ui_served_whole_from_the_binary() {
    let m = monitor(false).await;
    openapi::assert_swagger_ui(&m.api).await;
}
