//! The monitor's API description, from the running binary with `MONITOR_TOKEN` set:
//! `GET /openapi.json` is a valid OpenAPI 3.1 document (checked by openapi-spec-validator, not
//! by us), it lists every route the monitor answers and every method of them, real answers fit
//! the schemas it gives for them, `GET /docs/` is Swagger UI served whole from the binary with
//! nothing fetched elsewhere, and both are behind the token like every route but `/health`.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use testkit::demo::spawn_demo_worker;
use testkit::{eventually, free_port, wait_for_status, Process, RedisServer};

const TOKEN: &str = "token-de-prueba-de-la-documentacion-0123456789";
const LIMIT: Duration = Duration::from_secs(30);

/// The routes the monitor is known to answer: each must be in the document.
const KNOWN: [(&str, &str); 19] = [
    ("get", "/health"),
    ("get", "/monitor"),
    ("get", "/monitor/historial"),
    ("get", "/monitor/colas"),
    ("get", "/monitor/tareas/{id}"),
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

struct Monitor {
    base: String,
    http: Client,
    dir: tempfile::TempDir,
    _process: Process,
    _worker: Option<Process>,
    _redis: RedisServer,
}

/// The real binary with `MONITOR_TOKEN`, and a demo worker answering its pings if `worker`.
async fn monitor(worker: bool) -> Monitor {
    let redis = RedisServer::start_tcp();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let process = Process::start(
        "monitor-service",
        Command::new(env!("CARGO_BIN_EXE_monitor-service"))
            .env_clear()
            .env("REDIS_URL", redis.url())
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("MONITOR_TOKEN", TOKEN)
            .env("PING_INTERVAL_MS", "200")
            .env("PING_TIMEOUT_MS", "1000")
            .env("RUST_LOG", "info"),
        &dir.path().join("monitor-service.log"),
    );
    let worker =
        worker.then(|| spawn_demo_worker(&redis.url(), "documentacion@test", &[], dir.path()));
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        wait_for_status(&http, &format!("{base}/health"), 200, LIMIT).await,
        "the monitor never answered: {}",
        process.log_tail(20)
    );
    Monitor {
        base,
        http,
        dir,
        _process: process,
        _worker: worker,
        _redis: redis,
    }
}

impl Monitor {
    fn request(&self, method: Method, uri: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{uri}", self.base))
            .bearer_auth(TOKEN)
    }

    async fn documento(&self) -> Value {
        let r = self
            .request(Method::GET, "/openapi.json")
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

/// A concrete URI for a documented path: its parameters filled in with plausible values.
fn concreta(path: &str) -> String {
    path.replace("{archivo}", "swagger-ui.css")
        .replace("{id}", "0123456789abcdef0123456789abcdef01234567")
}

/// Status and error code of an answer; a stream is not read.
async fn codigo(r: reqwest::Response) -> (StatusCode, Option<String>) {
    let status = r.status();
    let stream = r
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if stream {
        return (status, None);
    }
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, body["error"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_is_valid_and_holds_every_route_the_monitor_answers() {
    let m = monitor(true).await;
    let doc = m.documento().await;
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
        let r = m
            .request(method.clone(), &concreta(path))
            .send()
            .await
            .unwrap();
        let (status, code) = codigo(r).await;
        assert!(
            !matches!(
                code.as_deref(),
                Some("ruta_no_encontrada" | "metodo_no_permitido")
            ),
            "{method} {path}: {status} {code:?}"
        );
        assert_ne!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    // ...and on every documented path, the methods the document does not list are refused.
    let paths: BTreeSet<&String> = documentadas.iter().map(|(_, p)| p).collect();
    for path in paths {
        for method in ["get", "put", "post", "delete", "patch"] {
            if documentadas.contains(&(method.to_owned(), path.clone())) {
                continue;
            }
            let m_ = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, code) = codigo(m.request(m_, &concreta(path)).send().await.unwrap()).await;
            assert_eq!(
                (status, code.as_deref()),
                (StatusCode::METHOD_NOT_ALLOWED, Some("metodo_no_permitido")),
                "{method} {path} is answered but not documented"
            );
        }
    }
    let (status, code) = codigo(
        m.request(Method::GET, "/no-documentada")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_deref()),
        (StatusCode::NOT_FOUND, Some("ruta_no_encontrada"))
    );

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
    let doc_path = m.dir.path().join("openapi.json");
    let answers_path = m.dir.path().join("respuestas.json");
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
}

/// Real answers of the running monitor, each with the documented route it came from.
async fn respuestas_reales(m: &Monitor) -> Vec<Value> {
    let mut out = Vec::new();
    // Once the worker answers, `/monitor` is 200 with a target and a worker to describe.
    let ok = eventually(LIMIT, Duration::from_millis(100), || async {
        let r = m.request(Method::GET, "/monitor").send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        status == 200
            && body["estado"] == "OK"
            && body["workers"].as_array().is_some_and(|w| !w.is_empty())
    })
    .await;
    assert!(ok, "the worker never answered the monitor");
    let r = m.request(Method::GET, "/monitor").send().await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    out.push(json!({"method": "GET", "path": "/monitor", "status": status, "body": body}));

    let tarea = "/monitor/tareas/{id}";
    let reencolar = "/monitor/cuarentena/{id}/reencolar";
    let desconocida = "0123456789abcdef0123456789abcdef01234567";
    for (method, path, uri, sin_token, esperado) in [
        ("GET", "/monitor/colas", "/monitor/colas".into(), false, 200),
        (
            "GET",
            "/monitor/cuarentena",
            "/monitor/cuarentena".into(),
            false,
            200,
        ),
        (
            "GET",
            tarea,
            format!("/monitor/tareas/{desconocida}"),
            false,
            404,
        ),
        (
            "GET",
            tarea,
            "/monitor/tareas/no%20valida".into(),
            false,
            400,
        ),
        (
            "POST",
            reencolar,
            format!("/monitor/cuarentena/{desconocida}/reencolar"),
            false,
            404,
        ),
    ] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let r = if sin_token {
            m.http.request(method.clone(), format!("{}{uri}", m.base))
        } else {
            m.request(method.clone(), &uri)
        };
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, esperado, "{method} {uri}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        out.push(json!({"method": method.as_str(), "path": path, "status": status, "body": body}));
    }
    for (path, uri, sin_token, esperado) in [
        ("/health", "/health", true, 200),
        ("/monitor/historial", "/monitor/historial", false, 200),
        (
            "/monitor/historial",
            "/monitor/historial?limite=2",
            false,
            200,
        ),
        (
            "/monitor/historial",
            "/monitor/historial?limite=x",
            false,
            400,
        ),
        ("/monitor/historial", "/monitor/historial", true, 401),
        ("/openapi.json", "/openapi.json", true, 401),
        ("/docs/{archivo}", "/docs/no-existe.js", false, 404),
    ] {
        let r = if sin_token {
            m.http.get(format!("{}{uri}", m.base))
        } else {
            m.request(Method::GET, uri)
        };
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, esperado, "{uri}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        out.push(json!({"method": "GET", "path": path, "status": status, "body": body}));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_and_the_docs_follow_the_token_rule() {
    let m = monitor(false).await;
    for uri in ["/openapi.json", "/docs", "/docs/", "/docs/swagger-ui.css"] {
        let r = m.http.get(format!("{}{uri}", m.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{uri}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "no_autenticado", "{uri}");
        let r = m.request(Method::GET, uri).send().await.unwrap();
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
    let r = m.request(Method::GET, "/docs").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/docs/");

    let r = m.request(Method::GET, "/docs/").send().await.unwrap();
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
        let uri = format!("/docs/{}", url.trim_start_matches("./"));
        let r = m.request(Method::GET, &uri).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{uri}");
        assert!(!r.bytes().await.unwrap().is_empty(), "{uri} is empty");
    }
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page names another site: {page}"
    );
    let init = m
        .request(Method::GET, "/docs/swagger-initializer.js")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains(r#""url": "/openapi.json""#), "{init}");
    assert!(init.contains(r#""validatorUrl": "none""#), "{init}");
    assert!(!init.contains("http"), "{init}");
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
