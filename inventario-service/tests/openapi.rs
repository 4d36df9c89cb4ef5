//! The API's description, from the running binary: `GET /openapi.json` is a valid OpenAPI 3.1
//! document (checked by openapi-spec-validator, not by us), it lists every route the service
//! answers and every method of them, real answers fit the schemas it gives for them, and
//! `GET /docs/` is Swagger UI served whole from the binary, with nothing fetched elsewhere.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
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
    base: String,
    http: Client,
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
    let base = format!("http://127.0.0.1:{port}");
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
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    assert!(
        wait_for_status(&http, &format!("{base}/ready"), 200, LIMIT).await,
        "not ready:\n{}",
        process.log()
    );
    Servicio {
        base,
        http,
        process,
        _worker: worker,
        dir,
        _redis: redis,
    }
}

impl Servicio {
    async fn documento(&self) -> Value {
        let r = self
            .http
            .get(format!("{}/openapi.json", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        r.json().await.unwrap()
    }
}

/// Every (method, path) of the document.
fn documentadas(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .filter(|k| ["get", "put", "post", "delete", "patch"].contains(&k.as_str()))
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect()
}

/// A concrete URI for a documented path: its parameters filled in with values of their type.
fn concreta(path: &str) -> String {
    path.replace("{id}", "1")
        .replace("{archivo}", "swagger-ui.css")
}

/// The error code of an answer, if it is the services' JSON error.
async fn codigo(r: reqwest::Response) -> (StatusCode, Option<String>) {
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, body["error"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_is_valid_and_holds_every_route_the_service_answers() {
    let s = servicio(true).await;
    let doc = s.documento().await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let documentadas = documentadas(&doc);
    for (method, path) in KNOWN {
        assert!(
            documentadas.contains(&(method.to_owned(), path.to_owned())),
            "{method} {path} is not in the document: {documentadas:?}"
        );
    }

    // Every documented route is answered by a handler, not by the fallbacks...
    for (method, path) in &documentadas {
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let uri = format!("{}{}", s.base, concreta(path));
        let (status, code) =
            codigo(s.http.request(method.clone(), &uri).send().await.unwrap()).await;
        assert!(
            !matches!(
                code.as_deref(),
                Some("ruta_no_encontrada" | "metodo_no_permitido")
            ),
            "{method} {path}: {status} {code:?}"
        );
    }
    // ...and on every documented path, the methods the document does not list are refused:
    // the service answers nothing the document does not say.
    let paths: BTreeSet<&String> = documentadas.iter().map(|(_, p)| p).collect();
    for path in paths {
        for method in ["get", "put", "post", "delete", "patch"] {
            if documentadas.contains(&(method.to_owned(), path.clone())) {
                continue;
            }
            let uri = format!("{}{}", s.base, concreta(path));
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, code) = codigo(s.http.request(m, &uri).send().await.unwrap()).await;
            assert_eq!(
                (status, code.as_deref()),
                (StatusCode::METHOD_NOT_ALLOWED, Some("metodo_no_permitido")),
                "{method} {path} is answered but not documented"
            );
        }
    }
    // The probe can tell: a path nobody serves is the fallback's.
    let (status, code) = codigo(
        s.http
            .get(format!("{}/no-documentada", s.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_deref()),
        (StatusCode::NOT_FOUND, Some("ruta_no_encontrada"))
    );

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
    let doc_path = s.dir.path().join("openapi.json");
    let answers_path = s.dir.path().join("respuestas.json");
    std::fs::write(&doc_path, serde_json::to_vec(&doc).unwrap()).unwrap();
    std::fs::write(&answers_path, serde_json::to_vec(&respuestas).unwrap()).unwrap();
    let lines = testkit::celery::run_script(
        "openapi_check.py",
        vec![
            doc_path.display().to_string(),
            answers_path.display().to_string(),
        ],
    )
    .await;
    let resumen = lines.last().expect("a summary");
    assert_eq!(resumen["valido"], true, "{lines:?}");
    assert_eq!(resumen["respuestas"], respuestas.len());
    assert!(resumen["ejemplos"].as_u64().unwrap() >= 5, "{resumen}");
}

/// Real answers of the running service, one or more per kind, each with the documented route
/// it came from: the Python check validates each body against the document's schema.
async fn respuestas_reales(s: &Servicio) -> Vec<Value> {
    let token = common::token(common::SUB);
    let mut out = Vec::new();
    let mut pedir = async |method: Method,
                           path: &str,
                           uri: String,
                           headers: &[(&str, &str)],
                           body: Option<Value>,
                           esperado: u16|
           -> Value {
        let mut r = s.http.request(method.clone(), format!("{}{uri}", s.base));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, esperado, "{method} {uri}: {text}");
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        out.push(json!({"method": method.as_str(), "path": path, "status": status, "body": body}));
        body
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
        let uri = format!("{}/tareas/{tarea}", s.base);
        let termino = eventually(LIMIT, Duration::from_millis(50), || async {
            let r = s.http.get(&uri).send().await.unwrap();
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
    let r = s.http.get(format!("{}/docs", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/docs/");

    let r = s
        .http
        .get(format!("{}/docs/", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = r.text().await.unwrap();
    assert!(page.contains("swagger-ui"), "{page}");
    let recursos = recursos(&page);
    assert!(
        recursos.iter().any(|u| u.ends_with(".js")) && recursos.iter().any(|u| u.ends_with(".css")),
        "no script or style named: {page}"
    );
    for url in &recursos {
        assert!(
            !url.contains("//") && !url.contains(':'),
            "{url} is not on our own origin"
        );
        let uri = format!("{}/docs/{}", s.base, url.trim_start_matches("./"));
        let r = s.http.get(&uri).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{uri}");
        assert!(!r.bytes().await.unwrap().is_empty(), "{uri} is empty");
    }
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page names another site: {page}"
    );
    // The page's settings open our document and send it to no online validator.
    let init = s
        .http
        .get(format!("{}/docs/swagger-initializer.js", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains(r#""url": "/openapi.json""#), "{init}");
    assert!(init.contains(r#""validatorUrl": "none""#), "{init}");
    assert!(!init.contains("http"), "{init}");
    let _ = &s.process;
}

/// The `src` of every `<script>` and the `href` of every `<link>` of a page.
fn recursos(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (tag, attr) in [("<script", "src=\""), ("<link", "href=\"")] {
        for piece in page.split(tag).skip(1) {
            let element = piece.split('>').next().unwrap_or("");
            if let Some(rest) = element.split(attr).nth(1) {
                out.push(rest.split('"').next().unwrap_or("").to_owned());
            }
        }
    }
    out
}
